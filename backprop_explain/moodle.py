"""Output stage: exercise variants as Moodle XML (Question bank → Import → Moodle XML format).

One numerical question per requested key per variant. Each question is self-contained:
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

import math
import xml.etree.ElementTree as ET
from decimal import Decimal
from functools import lru_cache

from .escaping import xml_chars
from .notation import NumberFormat


def tolerance(value: float, digits: int) -> Decimal:
    """One unit in the ``digits``-th significant digit of ``value`` (see the module doc)."""
    if value == 0:
        return Decimal(10) ** -digits
    exponent = math.floor(math.log10(abs(value)))
    return Decimal(10) ** (exponent - digits + 1)


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
