"""How expressions and numbers are written: a SymPy LaTeX printer for the course's notation.

Names in a spec are already LaTeX (``wh_{1,1}``) and were checked safe by the spec
stage, so the printer writes them as they are. Numbers are rounded for display
only, to a number of significant digits, with a decimal point or comma.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import sympy as sp
from sympy.printing.latex import LatexPrinter


@dataclass
class Equation:
    """lhs = rhs[0] = rhs[1] = …, every part LaTeX (the templates' equation layout)."""

    lhs: str
    rhs: list[str]
    note: str = ""


# Below this a number is shown as 0: the 40-digit evaluation's rounding noise of a quantity
# that is 0 in exact arithmetic (∂σ²_B/∂μ_B = −(2/m)·Σ(x − μ_B) comes out as ±1e-42).
NOISE = 1e-30


class NumberFormat:
    """Display rounding: ``digits`` significant digits, decimal point or comma."""

    def __init__(self, digits: int = 4, decimal_comma: bool = False):
        self.digits = digits
        self.decimal_comma = decimal_comma

    def plain(self, value: float, digits: int | None = None) -> str:
        """The number as text, e.g. ``-0.1262`` or ``0,1262`` (no LaTeX)."""
        digits = digits or self.digits
        if abs(value) < NOISE:
            return "0"
        if not math.isfinite(value):
            return "NaN" if math.isnan(value) else ("−∞" if value < 0 else "∞")
        text = f"{value:.{digits}g}"
        if "e" in text:
            mantissa, exponent = text.split("e")
            text = f"{_trim(mantissa)}e{int(exponent)}"
        else:
            text = _trim(text)
        return text.replace(".", ",") if self.decimal_comma else text

    def tex(self, value: float, digits: int | None = None) -> str:
        """The number in LaTeX math: ``1.5 \\cdot 10^{-5}``, ``0{,}874``."""
        if not math.isfinite(value):  # said in words by the document; shown as such
            return r"\text{NaN}" if math.isnan(value) else ("-" if value < 0 else "") + r"\infty"
        text = self.plain(value, digits)
        if "e" in text:
            mantissa, exponent = text.split("e")
            text = mantissa + r" \cdot 10^{" + exponent + "}"
        return text.replace(",", "{,}") if self.decimal_comma else text

    def tex_change(self, old: float, new: float) -> str:
        """``new`` with enough digits to show how it differs from ``old``."""
        return self.tex(new, digits_to_show_change(old, new, self.digits))

    def pair(self, old: float, new: float) -> tuple[str, str]:
        """``old`` and ``new`` with the same digits, enough to see how they differ."""
        digits = digits_to_show_change(old, new, self.digits)
        return self.tex(old, digits), self.tex(new, digits)

    def placeholder(self, value: float) -> sp.Symbol:
        """A symbol that prints as the number, so substituted expressions keep their shape."""
        text = self.tex(value)
        return sp.Symbol(rf"\left({text}\right)" if text.startswith("-") else text)


def digits_to_show_change(old: float, new: float, digits: int) -> int:
    """Significant digits of ``new`` needed to show ``digits`` digits of new − old."""
    change = abs(new - old)
    if change == 0 or new == 0 or not math.isfinite(change) or not math.isfinite(new):
        return digits  # no change to show, or one too large to measure
    needed = math.floor(math.log10(abs(new))) - math.floor(math.log10(change)) + digits
    return max(digits, min(needed, 15))


def _trim(text: str) -> str:
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


class CoursePrinter(LatexPrinter):
    """SymPy's LaTeX printer, writing our names verbatim, · for products, ln for logs."""

    def __init__(self, settings=None):
        base = {"mul_symbol": "dot", "ln_notation": True, "order": "none"}
        base.update(settings or {})
        super().__init__(base)

    def _print_Symbol(self, expr, style="plain"):
        return expr.name


TERMS_PER_LINE = 4  # a longer sum (a unit reading a flattened feature map) is broken


@lru_cache(maxsize=8192)
def tex(expr, wrap: bool = False) -> str:
    r"""LaTeX of a SymPy expression in the course's notation (cached: a pure function of
    the expression, and exercise variants print the same expressions again and again).

    ``wrap``: a sum of many terms is broken every TERMS_PER_LINE terms with ``\\ &\quad``,
    for a right-hand side inside an ``aligned``/``align*`` environment."""
    printer = CoursePrinter()
    if not (wrap and expr.is_Add and len(expr.args) > TERMS_PER_LINE):
        return printer.doprint(expr)
    return broken_sum([printer.doprint(term)
                       for term in printer._as_ordered_terms(expr, order="none")])


def broken_sum(terms: list[str], per_line: int = TERMS_PER_LINE) -> str:
    r"""LaTeX terms added up, a line break (``\\ &\quad``) every ``per_line`` terms, for the
    right-hand side of an aligned equation; a term written "-…" is subtracted."""
    if not terms:
        return "0"
    text = ""
    for k, piece in enumerate(terms):
        negative = piece.startswith("-")
        piece = piece[1:].lstrip() if negative else piece
        if k and k % per_line == 0:
            text += r" \\ &\quad"
        if k or negative:
            text += (" - " if negative else " + ") if k else "- "
        text += piece
    return text


def tex_around(expr: sp.Expr, symbol: sp.Symbol) -> str:
    r"""A long sum shown by the terms holding ``symbol`` only: ``\cdots + x_1 \cdot w_1 + \cdots``
    (what ∂/∂symbol keeps); a short expression whole."""
    if not (expr.is_Add and len(expr.args) > TERMS_PER_LINE):
        return tex(expr)
    printer = CoursePrinter()
    terms = printer._as_ordered_terms(expr, order="none")
    kept = [k for k, term in enumerate(terms) if symbol in term.free_symbols]
    text = ""
    for position, k in enumerate(kept):
        piece = printer.doprint(terms[k])
        negative = piece.startswith("-")
        piece = piece[1:].lstrip() if negative else piece
        if k > 0 and (position == 0 or kept[position - 1] != k - 1):
            text += r"\cdots"
        if k > 0 or negative:
            text += " - " if negative else " + "
        text += piece
    if not kept or kept[-1] < len(terms) - 1:
        text += r" + \cdots"
    return text


def substituted(expr: sp.Expr, values: dict, numbers: NumberFormat, wrap: bool = False) -> str:
    """LaTeX of ``expr`` with each symbol replaced by its displayed number, shape kept.

    The expression is printed once with a marker per symbol (cached: exercise variants
    share their expressions), then the markers are replaced by the numbers."""
    symbols = tuple(sorted((s for s in expr.free_symbols if s.name in values),
                           key=lambda s: s.name))
    text = _substitution_shape(expr, symbols, wrap)
    for k, symbol in enumerate(symbols):
        text = text.replace(_marker(k), numbers.placeholder(values[symbol.name]).name)
    return text


def _marker(k: int) -> str:
    return f"\x00{k}\x00"  # cannot occur in a name (spec.check_name) nor in LaTeX output


@lru_cache(maxsize=8192)
def _substitution_shape(expr: sp.Expr, symbols: tuple, wrap: bool = False) -> str:
    mapping = {s: sp.Symbol(_marker(k)) for k, s in enumerate(symbols)}
    with sp.evaluate(False):
        shown = expr.xreplace(mapping)
    return tex(shown, wrap)


def is_atomic(expr: sp.Expr) -> bool:
    """A symbol or a number: substituting it adds nothing to the display."""
    return expr.is_Symbol or expr.is_Number


def primed(name: str) -> str:
    """LaTeX of the updated quantity θ' (braced when θ already has a superscript)."""
    return ("{" + name + "}'") if "^" in name else name + "'"


def partial(numerator: str, denominator: str) -> str:
    return r"\frac{\partial " + numerator + r"}{\partial " + denominator + "}"
