"""LaTeX math as MathML, for a page that typesets its formulas itself (page.py).

The LaTeX is our own (notation.py's printers, the phrase files, spec names: letters,
digits, _ ^ { } ( ) , . ' + - |, Greek letters, accents), converted at build time by the
small pure-Python ``latex2mathml`` (the ``html`` extra), with what it leaves out done
here: ``aligned`` displays (an ``mtable``, the left-hand sides right-aligned on the
relation), decimal commas (``0{,}15`` is one number, with no space after its comma) and
the factors a page links to where they were computed (``\\known{k}{…}``, an ``mrow`` of
class ``known``). Browsers lay MathML out natively (MathML Core: Chromium, Firefox,
Safari), so the page needs no script and no font for its mathematics.
"""

from __future__ import annotations

import re

from .errors import SpecError
from .notation import split_outside

_MATH = re.compile(r'^<math xmlns="http://www.w3.org/1998/Math/MathML" display="inline">(.*)</math>$',
                   re.S)
_DECIMAL = re.compile(r"<mn>(\d+)</mn><mrow><mo>&#x0002C;</mo></mrow><mn>(\d+)</mn>")
_KNOWN = r"\known{"
# \left( and \right) hug what they hold, as in TeX
_FENCE = re.compile(r'(<mo stretchy="true" fence="true" form="(?:prefix|postfix)")>')
# a function's name (\ln, \tanh) is followed by a thin space, as TeX sets an operator
_FUNCTION = re.compile(r"(?<!<msup>)(?<!<msub>)(?<!<msubsup>)"
                       r"(<mi>(?:ln|log|exp|tanh|sinh|cosh|max|min)</mi>)")


class MathError(SpecError):
    """The converter is not installed, or cannot convert a formula."""

    def __init__(self, message: str):
        super().__init__("html", "", message)


def _converter():
    try:
        from latex2mathml.converter import convert
    except ImportError:  # the html extra is optional (tests/test_page.py hides it)
        raise MathError("the page typesets its formulas as MathML with latex2mathml: "
                        "pip install 'backprop_explain[html]'") from None
    return convert


def _group_end(latex: str, start: int) -> int:
    """The index just after the braced group opening at ``latex[start]``."""
    depth = 0
    for k in range(start, len(latex)):
        if latex[k] == "\\":
            continue
        depth += {"{": 1, "}": -1}.get(latex[k], 0)
        if depth == 0:
            return k + 1
    raise ValueError(f"unbalanced braces in {latex!r}")


def _inner(latex: str) -> str:
    """The MathML of a piece of LaTeX, without its ``math`` element; ``\\known{k}{…}``
    pieces in an ``mrow`` of class ``known`` that says which (``data-known``)."""
    out, k = [], 0
    while True:
        found = latex.find(_KNOWN, k)
        if found < 0:
            out.append(_convert(latex[k:]))
            return "".join(out)
        out.append(_convert(latex[k:found]))
        index_end = _group_end(latex, found + len(_KNOWN) - 1)
        index = latex[found + len(_KNOWN):index_end - 1]
        body_end = _group_end(latex, index_end)
        out.append(f'<mrow class="known" data-known="{int(index)}">'
                   f"{_convert(latex[index_end + 1:body_end - 1])}</mrow>")
        k = body_end


def _convert(latex: str) -> str:
    if not latex.strip():
        return ""
    convert = _converter()  # not installed: its own line, not "check the spec's names"
    try:
        mathml = _MATH.match(convert(latex)).group(1)
    except Exception as err:  # noqa: BLE001 - the converter's errors share no base class
        raise MathError(f"a formula MathML can carry, got {latex[:80]!r} "
                        f"({type(err).__name__}): check the spec's names") from None
    mathml = _FUNCTION.sub(r'\1<mspace width="0.1667em"></mspace>', mathml)
    mathml = _FENCE.sub(r'\1 lspace="0em" rspace="0em">', mathml)
    return _DECIMAL.sub(r"<mn>\1,\2</mn>", mathml)


def to_mathml(latex: str, display: bool = False) -> str:
    """A ``math`` element for ``latex``; a display's ``aligned`` rows as a table whose
    first column (the left-hand sides) is right-aligned on the relation."""
    body = latex.strip()
    head, tail = r"\begin{aligned}", r"\end{aligned}"
    if body.startswith(head) and body.endswith(tail):
        rows = []
        for row in split_outside(body[len(head):-len(tail)], r"\\"):
            cells = split_outside(row, "&")
            lhs, rhs = (cells[0], "".join(cells[1:])) if len(cells) > 1 else ("", cells[0])
            rows.append(f'<mtr><mtd columnalign="right">{_inner(lhs)}</mtd>'
                        f'<mtd columnalign="left">{_inner(rhs)}</mtd></mtr>')
        content = f'<mtable columnalign="right left" displaystyle="true">{"".join(rows)}</mtable>'
    else:
        content = _inner(body)
    kind = "block" if display else "inline"
    return f'<math xmlns="http://www.w3.org/1998/Math/MathML" display="{kind}">{content}</math>'


_DISPLAY = re.compile(r"\\\[(.+?)\\\]", re.S)
_INLINE = re.compile(r"\\\((.+?)\\\)", re.S)


def html_math(html: str) -> str:
    """HTML whose math is written for MathJax (``\\[…\\]``, ``\\(…\\)``, with &, <, >
    as entities: macros.html.j2) with every formula as MathML."""
    def put(match, display):
        latex = (match.group(1).replace("&lt;", "<").replace("&gt;", ">")
                 .replace("&amp;", "&"))
        return to_mathml(latex, display)
    html = _DISPLAY.sub(lambda m: put(m, True), html)
    return _INLINE.sub(lambda m: put(m, False), html)
