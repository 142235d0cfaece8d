"""Output stage: exercise variants as Moodle XML (Question bank → Import → Moodle XML format).

Cloze (the default): one "Embedded answers" question per variant, all in one category, so
that a quiz's random question from it gives each student one whole exercise: the network
drawn (an SVG file embedded in the question, ``<file … encoding="base64">`` referred to as
``@@PLUGINFILE@@/network_NN.svg``), its numbers, the formulas and index conventions it
relies on, and one NUMERICAL blank per asked key in the order of the worked solution::

    {1:NUMERICAL:=0.87382321:0.0001~%0%-0.87382321:0.0001#opposite sign~%0%…}

Each blank's wrong answers are what the usual slips give for this variant (verify.py's
catalogue: log base 10, sign, η forgotten, + for −, σ for σ′, an index swap, the value
before the update…), worth 0 %, with the slip named as their feedback; one that falls
within the right answer's tolerance is left out. The general feedback is the variant's
worked solution (HTML, math as MathJax ``\\( … \\)``). Moodle's Cloze parser
(question/type/multianswer/questiontype.php) ends a feedback at a ``~`` or ``}`` and an
answer at a ``#`` unless a backslash precedes them, and undoes only ``\\}`` and ``\\#``
(after ``html_entity_decode``): so every ``{ } # ~ \\`` of a feedback (the LaTeX of its
math) is written as a character reference, which that decoding turns back.

Per key (``style="per-key"``): one numerical question per requested key per variant.
Each question is self-contained:
its text (HTML, math as MathJax ``\\( … \\)``) gives the variant's whole network — inputs,
targets, every parameter, the learning rate — and asks for one value.

Categories: one per question key, ``$course$/top/<title>/<NN key>``, holding that key's N
variants. A quiz then adds, for each key, one "random question from category": Moodle
draws one variant per student and per attempt. (Moodle cannot draw the *same* variant
across several random slots, which is why every question repeats its network's numbers
rather than referring to a shared statement.) A ``/`` in a category name is written
``//``, Moodle's escape in category paths.

Tolerance (absolute, Moodle's "nominal" numerical tolerance): one unit in the last asked
significant digit, 10^(e − d + 1) for a value v with e = ⌊log10 |v|⌋ and d digits. A
correctly rounded answer is within half of that (½·10^(e − d + 1)), so it always passes,
even when rounding carries into a new digit (0.99996 → 1.000); the other half absorbs a
last-digit slip from rounding intermediate results by hand, as the course does. Anything
off by more than one unit in the last digit is marked wrong.
"""

from __future__ import annotations

import base64
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from .escaping import xml_chars
from .notation import NumberFormat


def tolerance(value: float, digits: int) -> Decimal:
    """One unit in the ``digits``-th significant digit of ``value`` (see the module doc)."""
    return _unit(_tolerance_exponent(value, digits))


def _tolerance_exponent(value: float, digits: int) -> int:
    return -digits if value == 0 else math.floor(math.log10(abs(value))) - digits + 1


@lru_cache(maxsize=1024)
def _unit(exponent: int) -> Decimal:
    return Decimal(10) ** exponent


@lru_cache(maxsize=1024)
def _unit_text(exponent: int) -> tuple[float, str]:
    """A tolerance 10^exponent as compared (float) and as written in a blank."""
    return float(_unit(exponent)), format(_unit(exponent), "f")


def category_path(*names: str) -> str:
    """``$course$/top/a/b`` with each name's ``/`` escaped as ``//``."""
    return "/".join(["$course$", "top"] + [n.strip().replace("/", "//") for n in names])


def _text(parent: ET.Element, tag: str, text: str, **attrs) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    ET.SubElement(element, "text").text = xml_chars(text)  # else the file would not parse
    return element


def question_html(variant, question, digits: int, lang: str) -> str:
    """The question text: the network's numbers and what to compute (HTML, escaped)."""
    from .templating import extra_phrases, phrases
    spec = variant.spec
    t = phrases(lang)
    numbers = NumberFormat(12, t["meta"]["decimal_comma"])
    example = spec.examples[0]
    context = {
        "t": t, "s": extra_phrases(lang), "title": spec.title, "digits": digits,
        "summary": _summary(spec, t),
        "inputs": [(n, numbers.plain(v)) for n, v in zip(spec.input_names, example.inputs)],
        "targets": [(n, numbers.plain(v))
                    for n, v in zip(spec.loss.target_names, example.targets)],
        "parameters": [(n, numbers.plain(v)) for n, v in spec.parameters.items()],
        "learning_rate": numbers.plain(spec.learning_rate),
        "quantity": question.tex,
    }
    return _question_template().render(**context).strip() + "\n"


@lru_cache(maxsize=None)
def _question_template():
    """The question's HTML template, autoescaping, compiled once (not once per question)."""
    from .templating import environment
    return environment().overlay(autoescape=True).get_template("moodle_question.html.j2")


def _summary(spec, t) -> list[str]:
    network = t["network"]
    lines = []
    for layer in spec.layers:
        lines.append(layer.short_summary(network))
    lines.append(network["losses"][spec.loss.kind].split(" $")[0])
    return lines


def moodle_quiz(variants, questions, template, lang: str = "en") -> bytes:
    """The Moodle XML document (UTF-8 bytes) of every question of every variant."""
    from .templating import extra_phrases
    words = extra_phrases(lang)["sheet"]
    digits = template.digits
    title = variants[0].spec.title or words["exercises_title"]
    quiz = ET.Element("quiz")
    width = len(str(len(questions)))
    for index, question in enumerate(questions, start=1):
        category = ET.SubElement(quiz, "question", {"type": "category"})
        _text(category, "category", category_path(title, f"{index:0{width}d} {question.key}"))
        for variant in variants:
            value = variant.answers[question.key]
            label = words["variant"].replace("{n}", str(variant.number))
            item = ET.SubElement(quiz, "question", {"type": "numerical"})
            _text(item, "name", f"{question.key} — {label}")
            _text(item, "questiontext", question_html(variant, question, digits, lang),
                  format="html")
            _text(item, "generalfeedback",
                  f"<p>\\({question.tex} = {NumberFormat(digits).plain(value)}\\)</p>",
                  format="html")
            ET.SubElement(item, "defaultgrade").text = "1"
            ET.SubElement(item, "penalty").text = "0.3333333"
            ET.SubElement(item, "hidden").text = "0"
            answer = _text(item, "answer", f"{value:.15g}", fraction="100",
                           format="moodle_auto_format")
            ET.SubElement(answer, "tolerance").text = format(tolerance(value, digits), "f")
            _text(answer, "feedback", "", format="html")
            ET.SubElement(item, "unitgradingtype").text = "0"
            ET.SubElement(item, "unitpenalty").text = "0.1000000"
            ET.SubElement(item, "showunits").text = "3"
            ET.SubElement(item, "unitsleft").text = "0"
    ET.indent(quiz)
    return ET.tostring(quiz, encoding="UTF-8", xml_declaration=True) + b"\n"


# ---------------------------------------------------------------------------
# Cloze: one question per variant

STYLES = ("cloze", "per-key")
BLANK = "\x00BLANK{}\x00"  # an answer cell until its blank is written (no user text holds
# a U+0000: escaping.py replaces it, so a title cannot spell a blank)
PENALTY = "0.3333333"


@dataclass
class ClozeVariant:
    """What one variant's question is made of (sheet.py renders the documents)."""

    number: int
    name: str  # the question's name in the bank
    text: str  # the exercise as HTML, its blanks written (cloze_text)
    feedback: str  # the worked solution as HTML
    figure: str  # the diagram's file name
    svg: str


def cloze_text(exercise: str, keys: list[str], answers: dict[str, float], slips: dict,
               digits: int, lang: str) -> str:
    """The exercise (HTML, BLANK.format(k) in the k-th answer cell) with each cell's
    blank for ``keys`` in that order: its right value (``answers``: key → value) and its
    slips (key → (Diagnosis, value) pairs, a list or verify.each_usual_slip's iterators).
    Written as each variant is made, so that its slips are dropped at once rather than
    kept until the whole quiz is written."""
    for k, key in enumerate(keys):
        exercise = exercise.replace(BLANK.format(k), numerical_blank(
            answers[key], digits, slips.get(key, []), lang))
    return exercise


def cloze_quiz(variants: list[ClozeVariant], title: str) -> bytes:
    """The Moodle XML document (UTF-8 bytes): one category, one Cloze question per
    variant."""
    quiz = ET.Element("quiz")
    category = ET.SubElement(quiz, "question", {"type": "category"})
    _text(category, "category", category_path(title))
    for variant in variants:
        item = ET.SubElement(quiz, "question", {"type": "cloze"})
        _text(item, "name", variant.name)
        question = _text(item, "questiontext", variant.text, format="html")
        embedded = ET.SubElement(question, "file", {"name": variant.figure, "path": "/",
                                                    "encoding": "base64"})
        embedded.text = base64.b64encode(variant.svg.encode("utf-8")).decode("ascii")
        _text(item, "generalfeedback", variant.feedback, format="html")
        ET.SubElement(item, "penalty").text = PENALTY
        ET.SubElement(item, "hidden").text = "0"
    ET.indent(quiz)
    return ET.tostring(quiz, encoding="UTF-8", xml_declaration=True) + b"\n"


def numerical_blank(value: float, digits: int, slips: list, lang: str) -> str:
    """``{1:NUMERICAL:=value:tolerance~%0%slip:tolerance#feedback~…}``: the right answer
    with the tolerance of the digits asked, then each slip's value (0 %) naming the slip,
    unless it falls within the tolerance of an answer before it."""
    right, written = _unit_text(_tolerance_exponent(value, digits))
    kept = [(value, right)]
    seen = {value}  # a value met before is within tolerance of a kept one: skipped at once
    parts = [f"={_number(value, digits)}:{written}"]
    for diagnosis, slip in slips:
        if slip in seen:
            continue
        seen.add(slip)
        for other, tol in kept:
            if abs(slip - other) <= tol:
                break
        else:
            tol, written = _unit_text(_tolerance_exponent(slip, digits))
            kept.append((slip, tol))
            parts.append(f"%0%{_number(slip, digits)}:{written}#"
                         f"{cloze_feedback(diagnosis, lang)}")
    return "{1:NUMERICAL:" + "~".join(parts) + "}"


def _number(value: float, digits: int) -> str:
    """A blank's value: digits enough beyond those asked that its own rounding never shows
    (Moodle also shows it as the right answer)."""
    return f"{value:.{digits + 4}g}" if value else "0"


def cloze_feedback(diagnosis, lang: str) -> str:
    """The slip named in the sheet's language, its quantities as math, as HTML written
    inside a Cloze blank (see the module doc: { } # ~ \\ as character references).
    Written once per slip and language: a sheet's variants share most of them."""
    cached = (diagnosis.code, repr(diagnosis.values), lang)
    text = _FEEDBACKS.get(cached)
    if text is None:
        text = _FEEDBACKS[cached] = _cloze_feedback(diagnosis, lang)
    return text


_FEEDBACKS: dict[tuple, str] = {}


def _cloze_feedback(diagnosis, lang: str) -> str:
    from .escaping import html_text
    shown = {name: (_math_keys(value) if name in _KEY_VALUES else value)
             for name, value in diagnosis.values.items()}
    text = html_text(type(diagnosis)(diagnosis.code, shown).text(lang))
    return "".join(_CLOZE_INERT.get(char, char) for char in text)


_KEY_VALUES = ("key", "other", "used", "param", "parent", "keys", "factor")
_CLOZE_INERT = {"&": "&amp;", "{": "&#123;", "}": "&#125;", "#": "&#35;", "~": "&#126;",
                "\\": "&#92;"}


def _math_keys(value):
    from .keys import key_tex
    if isinstance(value, (list, tuple)):
        return [_math_keys(v) for v in value]
    return f"${key_tex(str(value))}$"
