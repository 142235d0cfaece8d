"""A reader of Moodle's Cloze (embedded answers) syntax, to check what sheet --format moodle
writes as Moodle will read it.

The patterns are those of Moodle's importer, question/type/multianswer/questiontype.php
(qtype_multianswer_extract_question): a subquestion is ``{weight:TYPE:alternatives}``,
alternatives are separated by ``~``; each is an optional fraction (``=`` or ``%n%``), an
answer ending before an unescaped ``~``, ``#`` or ``}``, and an optional ``#feedback``
ending before an unescaped ``~`` or ``}``. A NUMERICAL answer is ``value:tolerance``. The
feedback is then ``html_entity_decode``d and ``\\}``, ``\\#`` unescaped, as Moodle does.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

FRACTION = r"=|%(?P<percent>-?[0-9]+(?:[.,][0-9]*)?)%"
ANSWER = r".+?(?<!\\)(?<!&)(?<!&amp;)(?=[~#}]|$)"  # Moodle: (?<!\\|&|&amp;)
FEEDBACK = r".*?(?<!\\)(?=[~}]|$)"
ALTERNATIVE = rf"(?P<fraction>{FRACTION})?(?P<answer>{ANSWER})(?:#(?P<feedback>{FEEDBACK}))?"
TYPES = ("NUMERICAL|NM|MULTICHOICE|MC|MULTICHOICE_V|MCV|MULTICHOICE_H|MCH|SHORTANSWER|SA|MW|"
         "SHORTANSWER_C|SAC|MWC|MULTICHOICE_S|MCS|MULTICHOICE_VS|MCVS|MULTICHOICE_HS|MCHS|"
         "MULTIRESPONSE|MR|MULTIRESPONSE_H|MRH|MULTIRESPONSE_S|MRS|MULTIRESPONSE_HS|MRHS")
_ALT = ALTERNATIVE.replace("?P<percent>", "?:").replace("?P<fraction>", "?:").replace(
    "?P<answer>", "?:").replace("?P<feedback>", "?:")
SUBQUESTION = re.compile(rf"\{{(?P<weight>[0-9]*):(?P<type>{TYPES}):"
                         rf"(?P<alternatives>{_ALT}(?:~{_ALT})*)\}}", re.S)
NUMBER = r"-?(?:(?:[0-9]+[.,]?[0-9]*|[.,][0-9]+)(?:[eE][-+]?[0-9]+)?)"
NUMERICAL = re.compile(rf"^(?P<value>{NUMBER})(?::(?P<tolerance>{NUMBER}))?$", re.S)


@dataclass
class Alternative:
    fraction: float  # 1 for "=", n/100 for "%n%", 0 when left out
    answer: str
    value: float | None  # NUMERICAL
    tolerance: float | None
    feedback: str  # as Moodle stores it (HTML)


@dataclass
class Blank:
    weight: int
    type: str
    alternatives: list[Alternative]


def parse(text: str) -> tuple[list[Blank], str]:
    """(every subquestion in order, the text with each replaced by {#k}) — Moodle's reading."""
    blanks = []
    while (match := SUBQUESTION.search(text)) is not None:
        rest, alternatives = match.group("alternatives"), []
        while rest:
            alt = re.match(r"~?" + ALTERNATIVE, rest, re.S)
            if alt is None or not alt.group(0):
                raise ValueError(f"unreadable alternative at {rest[:40]!r}")
            fraction = (1.0 if alt.group("fraction") == "=" else
                        float(alt.group("percent").replace(",", ".")) / 100
                        if alt.group("percent") else 0.0)
            feedback = html.unescape(alt.group("feedback") or "")
            feedback = feedback.replace("\\}", "}").replace("\\#", "#")
            value = tolerance = None
            number = NUMERICAL.match(alt.group("answer"))
            if match.group("type") in ("NUMERICAL", "NM") and number:
                value = float(number.group("value").replace(",", "."))
                tolerance = float((number.group("tolerance") or "0").replace(",", "."))
            alternatives.append(Alternative(fraction, alt.group("answer"), value, tolerance,
                                            feedback))
            rest = rest[len(alt.group(0)):]
        blanks.append(Blank(int(match.group("weight") or 1), match.group("type"), alternatives))
        text = text[:match.start()] + "{#" + str(len(blanks)) + "}" + text[match.end():]
    return blanks, text
