"""How expressions and numbers are written: a SymPy LaTeX printer for the course's notation.

Names in a spec are already LaTeX (``wh_{1,1}``) and were checked safe by the spec
stage, so the printer writes them as they are. Numbers are rounded for display
only, to a number of significant digits, with a decimal point or comma.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

import re

import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter


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
    """Display rounding: ``digits`` significant digits, decimal point or comma.

    A computed value is shown with exactly ``digits`` significant digits, trailing zeros
    kept (0.2370), rounded half up as a person rounds; a value the spec gives is shown as
    given (``given``: 0.1, 2, 10^{-6}). In LaTeX (``tex``, also the math of Markdown) a
    long run of digits is grouped by three with a thin space (0.100\\,077\\,5), after the
    separator when it has more than six decimals, before it from five whole digits."""

    def __init__(self, digits: int = 4, decimal_comma: bool = False,
                 given_names: frozenset = frozenset()):
        self.digits = digits
        self.decimal_comma = decimal_comma
        self.given_names = given_names  # quantities the spec gives (inputs, targets, θ)

    def plain(self, value: float, digits: int | None = None) -> str:
        """The number as text, e.g. ``-0.1262`` or ``0,1262`` (no LaTeX, trailing zeros
        dropped: labels, reports)."""
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
        """A computed value in LaTeX math with exactly ``digits`` significant digits:
        ``1.500 \\cdot 10^{-5}``, ``0{,}8738``, ``0.100\\,077\\,5``."""
        if not math.isfinite(value):  # said in words by the document; shown as such
            return r"\text{NaN}" if math.isnan(value) else ("-" if value < 0 else "") + r"\infty"
        return self._tex(significant(value, digits or self.digits))

    def given(self, value: float) -> str:
        """A number of the spec in LaTeX math, as given: ``0.1``, ``2``, ``10^{-6}``."""
        return self._tex(shortest(value))

    def value(self, name: str, value: float) -> str:
        """A named quantity's value: as given when the spec gives it, else rounded."""
        return self.given(value) if name in self.given_names else self.tex(value)

    def _tex(self, text: str) -> str:
        mantissa, _, exponent = text.partition("e")
        negative = mantissa.startswith("-")
        whole, _, decimals = mantissa.lstrip("-").partition(".")
        if len(whole) > 4:
            whole = _group(whole[::-1])[::-1].replace(_THIN[::-1], _THIN)
        if len(decimals) > GROUP_DECIMALS_ABOVE:
            decimals = _group(decimals)
        point = "{,}" if self.decimal_comma else "."
        out = ("-" if negative else "") + whole + (point + decimals if decimals else "")
        if exponent:
            out = ("-" if negative else "") + "10^{" + exponent + "}" \
                if out.lstrip("-") == "1" else out + r" \cdot 10^{" + exponent + "}"
        return out

    def tex_change(self, old: float, new: float) -> str:
        """``new`` with enough digits to show how it differs from ``old``."""
        return self.tex(new, digits_to_show_change(old, new, self.digits))

    def pair(self, old: float, new: float) -> tuple[str, str]:
        """``old`` and ``new`` with the same digits, enough to see how they differ."""
        digits = digits_to_show_change(old, new, self.digits)
        return self.tex(old, digits), self.tex(new, digits)

    def placeholder(self, value: float, given: bool = False) -> sp.Symbol:
        """A symbol that prints as the number, so substituted expressions keep their shape."""
        text = self.given(value) if given else self.tex(value)
        return sp.Symbol(rf"\left({text}\right)" if text.startswith("-") else text)


_THIN = r"\,"
GROUP_DECIMALS_ABOVE = 6  # a longer run of decimals is grouped by three: 0.100 077 5


def _group(digits: str) -> str:
    return _THIN.join(digits[k:k + 3] for k in range(0, len(digits), 3))


def significant(value: float, digits: int) -> str:
    """``value`` with exactly ``digits`` significant digits, rounded half up from its
    shortest decimal form (0.105 → 0.11 at 2 digits), trailing zeros kept; an exponent
    ``e-5`` below 10^{-4} or from 10^{digits}, as ``%g``; exactly 0 is ``0``."""
    if value == 0:
        return "0"
    exact = Decimal(repr(float(value)))
    exponent = exact.adjusted()
    rounded = exact.quantize(Decimal(1).scaleb(exponent - digits + 1), rounding=ROUND_HALF_UP)
    if rounded.adjusted() != exponent:  # 9.9996 → 10.00: one digit fewer after the point
        exponent = rounded.adjusted()
        rounded = exact.quantize(Decimal(1).scaleb(exponent - digits + 1),
                                 rounding=ROUND_HALF_UP)
    if exponent < -4 or exponent >= digits:
        mantissa = rounded.scaleb(-exponent)
        return f"{mantissa:f}e{exponent}"
    return f"{rounded:f}"


def shortest(value: float) -> str:
    """The shortest decimal form of a float (``repr``), exponent as ``e-6``, no ``.0``."""
    value = float(value)
    if value == 0:
        return "0"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    text = repr(value)
    mantissa, _, exponent = text.partition("e")
    if exponent:
        return _trim(mantissa) + "e" + str(int(exponent))
    return text


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

    def _print_Function(self, expr, exp=None):
        # a number put in for the argument is already in parentheses when negative:
        # tanh(−0.5), not tanh((−0.5))
        args = [sp.Symbol(_unwrapped(a.name)) if isinstance(a, sp.Symbol) else a
                for a in expr.args]
        if args != list(expr.args):
            expr = expr.func(*args, evaluate=False)
        return super()._print_Function(expr, exp)


def _unwrapped(name: str) -> str:
    return name[6:-7] if name.startswith(r"\left(") and name.endswith(r"\right)") else name


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
        number = numbers.placeholder(values[symbol.name], symbol.name in numbers.given_names).name
        if number.startswith(r"\left("):  # tanh(−0.5), not tanh((−0.5))
            text = re.sub(r"\\left\(" + re.escape(_marker(k)) + r" ?\\right\)",
                          lambda _: number, text)
        text = text.replace(_marker(k), number)
    return text


def _marker(k: int) -> str:
    return f"\x00{k}\x00"  # cannot occur in a name (spec.check_name) nor in LaTeX output


@lru_cache(maxsize=8192)
def _substitution_shape(expr: sp.Expr, symbols: tuple, wrap: bool = False) -> str:
    mapping = {s: sp.Symbol(_marker(k)) for k, s in enumerate(symbols)}
    with sp.evaluate(False):
        shown = expr.xreplace(mapping)
    return tex(shown, wrap)


def same_math(a: str, b: str) -> bool:
    """Two LaTeX formulas that print alike (tanh(z_1) and \\tanh{\\left(z_1 \\right)})."""
    return _normal(a) == _normal(b)


def _normal(latex: str) -> str:
    return re.sub(r"\\left|\\right|[{}\s]", "", latex)


def is_atomic(expr: sp.Expr) -> bool:
    """A symbol or a number: substituting it adds nothing to the display."""
    return expr.is_Symbol or expr.is_Number


def primed(name: str) -> str:
    """LaTeX of the updated quantity θ' (braced when θ already has a superscript)."""
    return ("{" + name + "}'") if "^" in name else name + "'"


def partial_inline(numerator: str, denominator: str) -> str:
    """∂a/∂b on one line (a table cell, a phrase)."""
    return r"\partial " + numerator + r"/\partial " + denominator


def partial(numerator: str, denominator: str) -> str:
    return r"\frac{\partial " + numerator + r"}{\partial " + denominator + "}"


# ---------------------------------------------------------------------------
# Mathematics as readable text (keys, verify reports): −v₁·ln(out_{o1})

_SUBSCRIPT_DIGITS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
_SUPERSCRIPT_DIGITS = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
_GREEK = {r"\alpha": "α", r"\beta": "β", r"\gamma": "γ", r"\delta": "δ",
          r"\epsilon": "ε", r"\varepsilon": "ε", r"\zeta": "ζ", r"\eta": "η",
          r"\theta": "θ", r"\vartheta": "ϑ", r"\iota": "ι", r"\kappa": "κ",
          r"\lambda": "λ", r"\mu": "μ", r"\nu": "ν", r"\xi": "ξ", r"\pi": "π",
          r"\rho": "ρ", r"\sigma": "σ", r"\tau": "τ", r"\upsilon": "υ", r"\phi": "φ",
          r"\varphi": "φ", r"\chi": "χ", r"\psi": "ψ", r"\omega": "ω", r"\Gamma": "Γ",
          r"\Delta": "Δ", r"\Theta": "Θ", r"\Lambda": "Λ", r"\Xi": "Ξ", r"\Pi": "Π",
          r"\Sigma": "Σ", r"\Phi": "Φ", r"\Psi": "Ψ", r"\Omega": "Ω"}


# One pass over a name for every Greek command, the longest first (\varepsilon, \epsilon).
_GREEK_COMMAND = re.compile(
    "(" + "|".join(re.escape(command) for command in sorted(_GREEK, key=len, reverse=True))
    + r")(?![A-Za-z])\s*")
_DIGIT_INDEX = re.compile(r"_\{?(\d+)\}?(?![\d,])")


@lru_cache(maxsize=4096)
def text_name(name: str) -> str:
    """A name as readable text: Greek letters as letters, a subscript or superscript of
    digits only as Unicode digits (v_1 → v₁, x_{12} → x₁₂); any other index kept as
    written (out_{o1}), since it is what one types."""
    if "\\" in name:
        name = _GREEK_COMMAND.sub(lambda m: _GREEK[m.group(1)], name)
    return _DIGIT_INDEX.sub(lambda m: m.group(1).translate(_SUBSCRIPT_DIGITS), name)


class TextPrinter(StrPrinter):
    """SymPy's string printer writing mathematics for people: −, ·, ln, e^(…), ², a/b,
    names through ``text_name``, derivative keys ``dA/dB`` as ∂A/∂B."""

    def __init__(self):
        super().__init__({"order": "none"})

    def _print_Symbol(self, expr):
        name = expr.name
        if "/" in name and name.startswith("d"):
            top, _, bottom = name.partition("/")
            return f"(∂{text_name(top[1:])}/∂{text_name(bottom[1:])})"
        return text_name(name)

    def _print_log(self, expr):
        return f"ln({self._print(expr.args[0])})"

    def _print_exp(self, expr):
        arg = self._print(expr.args[0])
        return f"e^{arg}" if expr.args[0].is_Symbol or expr.args[0].is_Number else f"e^({arg})"

    def _print_Function(self, expr):
        name = getattr(expr.func, "text_name", None) or text_name(str(expr.func))
        return f"{name}({', '.join(self._print(a) for a in expr.args)})"

    def _print_Mul(self, expr):
        # η before the gradient, as written: θ − η·∂E/∂θ
        args = sorted(expr.args, key=lambda a: 0 if a.is_Number else
                      1 if a.is_Symbol and a.name in ("η", r"\eta") else 2)
        if args != list(expr.args):
            expr = sp.Mul(*args, evaluate=False)
        return super()._print_Mul(expr).replace("*", "·")

    def _print_Pow(self, expr, rational=False):
        base, exponent = expr.args
        if exponent.is_Integer and exponent > 1:
            shown = self.parenthesize(base, PRECEDENCE["Pow"], strict=False)
            return shown + str(exponent).translate(_SUPERSCRIPT_DIGITS)
        return super()._print_Pow(expr, rational)

    def _print_Piecewise(self, expr):
        cases = [f"{self._print(value)} if {self._print(condition)}"
                 for value, condition in expr.args[:-1]]
        return "(" + ", ".join(cases) + f", else {self._print(expr.args[-1][0])})"

    def _print_Float(self, expr):
        return NumberFormat(15).plain(float(expr))


class KeyPrinter(CoursePrinter):
    """LaTeX of a formula written in keys: dA/dB as ∂A/∂B, η as \\eta."""

    def _print_Symbol(self, expr, style="plain"):
        name = expr.name
        if "/" in name and name.startswith("d"):
            top, _, bottom = name.partition("/")
            return partial(top[1:], bottom[1:])
        return {"η": r"\eta"}.get(name, name)


def key_tex(expr) -> str:
    """LaTeX of a formula in keys (verify's Markdown report)."""
    return KeyPrinter().doprint(expr)


def text_math(expr) -> str:
    """A SymPy expression as one line of readable text: ``−v₁·ln(out_{o1})``."""
    text = TextPrinter().doprint(expr)
    return re.sub(r"(^|[\s(])-", lambda m: m.group(1) + "−", text).replace(" - ", " − ")


# ---------------------------------------------------------------------------
# Display layout: how wide a formula is, where a long one breaks

_WIDE_COMMANDS = {r"\cdot": 0.8, r"\quad": 1.0, r"\qquad": 2.0, r"\star": 1.0,
                  r"\odot": 1.0, r"\longrightarrow": 2.6, r"\leftarrow": 1.6,
                  r"\partial": 0.6, r"\sum": 1.4, r"\ln": 1.2, r"\dots": 1.2,
                  r"\cdots": 1.2, r"\,": 0.17, r"\;": 0.28, r"\:": 0.22, r"\!": -0.17,
                  r"\left": 0.0, r"\right": 0.0, r"\mathrm": 0.0, r"\operatorname": 0.0,
                  r"\text": 0.0, r"\mathbb": 0.0, r"\tanh": 1.9, r"\exp": 1.6,
                  r"\sqrt": 1.6}


_CHAR_WIDTHS = {**dict.fromkeys("=+<>", 1.3), "-": 1.0, **dict.fromkeys("()[]|", 0.4),
                **dict.fromkeys(",.;", 0.3), " ": 0.0, "&": 0.0, "'": 0.3}


def math_width(latex: str) -> float:
    """A rough width of LaTeX math in ems (11pt), enough to decide where a display breaks:
    a fraction is as wide as its wider part, an index 0.7 of its size, a matrix the sum of
    its widest column entries."""
    return _width(latex, 0, len(latex))[0]


def _group_end(latex: str, start: int) -> int:
    depth = 0
    for k in range(start, len(latex)):
        depth += {"{": 1, "}": -1}.get(latex[k], 0)
        if depth == 0:
            return k
    return len(latex) - 1


def _width(latex: str, start: int, end: int) -> tuple[float, int]:
    total, k = 0.0, start
    while k < end:
        char = latex[k]
        if char == "{":
            close = _group_end(latex, k)
            total += _width(latex, k + 1, close)[0]
            k = close + 1
        elif char in "_^":
            k += 1
            if k < end and latex[k] == "{":
                close = _group_end(latex, k)
                total += 0.7 * _width(latex, k + 1, close)[0]
                k = close + 1
            elif k < end and latex[k] == "\\":
                match = re.match(r"\\[A-Za-z]+", latex[k:])
                total += 0.7 * 0.6
                k += match.end() if match else 1
            else:
                total += 0.7 * 0.55
                k += 1
        elif char == "\\":
            match = re.match(r"\\([A-Za-z]+|.)", latex[k:])
            command = match.group(0)
            k += match.end()
            if command in (r"\frac", r"\dfrac", r"\tfrac"):
                widths = []
                for _ in range(2):
                    while k < end and latex[k] == " ":
                        k += 1
                    close = _group_end(latex, k)
                    widths.append(_width(latex, k + 1, close)[0])
                    k = close + 1
                total += max(widths) + 0.3
            elif command == r"\begin" and latex.startswith("{bmatrix}", k):
                stop = latex.find(r"\end{bmatrix}", k)
                stop = end if stop < 0 else stop
                total += _matrix_width(latex[k + 9:stop]) + 1.0
                k = stop + len(r"\end{bmatrix}")
            elif command in (r"\text", r"\mathrm", r"\operatorname") and k < end \
                    and latex[k] == "{":
                close = _group_end(latex, k)
                total += 0.5 * len(latex[k + 1:close])
                k = close + 1
            elif command in _WIDE_COMMANDS:
                total += _WIDE_COMMANDS[command]
            elif command in (r"\left", r"\right"):
                pass
            else:
                total += 0.6  # a Greek letter, a symbol
        else:
            total += _CHAR_WIDTHS.get(char, 0.5 if char.isdigit() else 0.55)
            k += 1
    return total, k


def _matrix_width(body: str) -> float:
    rows = [row.split("&") for row in body.split(r"\\")]
    columns = max(len(r) for r in rows)
    widths = [max((math_width(r[c]) for r in rows if c < len(r)), default=0.0)
              for c in range(columns)]
    return sum(widths) + 1.0 * (columns - 1)


def as_equation(latex: str) -> Equation:
    """``a = b = c`` (LaTeX) as Equation("a", ["b", "c"]): split at every ``=`` outside
    braces and environments, so that a long display breaks between its parts."""
    parts, depth, start, k = [], 0, 0, 0
    while k < len(latex):
        char = latex[k]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif latex.startswith(r"\begin", k):
            depth += 1
        elif latex.startswith(r"\end", k):
            depth -= 1
        elif char == "=" and depth == 0:
            parts.append(latex[start:k].strip())
            start = k + 1
        k += 1
    parts.append(latex[start:].strip())
    return Equation(parts[0], parts[1:])


def wrapped_sum(terms: list[str], width: float) -> str:
    """Terms added up (a term written "-…" subtracted), a line break (``\\\\ &\\quad``)
    before a term that would make the line wider than ``width`` ems."""
    text, used = "", 0.0
    for k, term in enumerate(terms):
        negative = term.startswith("-")
        piece = term[1:].lstrip() if negative else term
        size = math_width(piece) + 1.3
        if k and used + size > width:
            text += r" \\ &\quad"
            used = 2.0
        if k or negative:
            text += (" - " if negative else " + ") if k else "- "
        text += piece
        used += size
    return text


def _lines(latex: str) -> list[str]:
    """A part cut at its own line breaks (``\\\\`` outside any environment)."""
    return split_outside(latex, "\\\\")


def split_outside(latex: str, separator: str) -> list[str]:
    """``latex`` cut at each ``separator`` outside braces and environments."""
    pieces, depth, start, k = [], 0, 0, 0
    while k < len(latex):
        if latex.startswith(r"\begin{", k):
            depth += 1
        elif latex.startswith(r"\end{", k):
            depth -= 1
        elif latex[k] == "\\" and latex.startswith(separator, k) and depth == 0:
            pieces.append(latex[start:k])
            k += len(separator)
            start = k
            continue
        elif latex[k] == "\\":
            k += 2  # an escaped character (\{, \\ inside a group) is one token
            continue
        elif latex[k] == "{":
            depth += 1
        elif latex[k] == "}":
            depth -= 1
        elif latex[k] == separator and depth == 0:
            pieces.append(latex[start:k])
            start = k + 1
        k += 1
    pieces.append(latex[start:])
    return pieces


DISPLAY_WIDTH = 42.0  # ems of a display line (A4, 2 cm margins, 11 pt), with room to spare


def equation_rows(equations: list[Equation], width: float = DISPLAY_WIDTH) -> list[str]:
    """The rows of one ``align*`` (``aligned`` in Markdown) holding ``equations``: each
    ``lhs = parts[0] = parts[1] = …`` packed greedily into rows no wider than ``width``
    ems, a part with its own line breaks (``\\\\``) on rows of its own, every row after
    an equation's first starting with ``=``; a note at the end of its last row."""
    head = max((math_width(eq.lhs) for eq in equations), default=0.0) + 1.3
    out = []
    for eq in equations:
        if not eq.rhs:  # a formula without a relation
            out.append(eq.lhs)
            continue
        note = r"\qquad\text{(" + eq.note + ")}" if eq.note else ""
        rows, current, used = [], [], head
        for k, part in enumerate(eq.rhs):
            lines = _lines(part)
            own_lines = len(lines) > 1
            size = max(math_width(line) for line in lines) + 1.3
            if not own_lines and head + size > width:  # no place to break it: smaller
                part = r"\textstyle " + part
                size = 0.75 * size
            if k == len(eq.rhs) - 1 and note:
                size += 0.5 * len(eq.note) + 3
            if current and (own_lines or used + size > width):
                rows.append(current)
                current, used = [], head
            current.append(part)
            used += size
            if own_lines:
                rows.append(current)
                current, used = [], head
        if current:
            rows.append(current)
        for k, row in enumerate(rows):
            lhs = eq.lhs if k == 0 else ""
            out.append(f"{lhs} &= " + " = ".join(row) + (note if k == len(rows) - 1 else ""))
    return out


# ---------------------------------------------------------------------------
# The document's own letters, chosen not to coincide with the spec's names


def name_base(name: str) -> str:
    """The letters of a name before its indices: ``wh`` of ``wh_{1,1}``, ``x`` of
    ``x^{(2)}_{1,1}``, ``\\hat{y}`` of ``\\hat{y}_k``, ``\\theta`` of ``\\theta_2``."""
    match = re.match(r"\\[A-Za-z]+(\{[^{}]*\})?|[A-Za-z]+|.", name.strip())
    return match.group(0) if match else name


# role → candidates: the first one free (no spec name has it as its letters, no other
# role took it) is the document's letter for that role
SYMBOL_ROLES = {
    "index": ("k", "j", "n", "q"),            # Σ_k over the outputs
    "second_index": ("j", "i", "q", "l"),     # softmax's δ_jk
    "argument": ("y", "s", "u", r"\xi"),      # σ(y) = 1/(1 + e^{−y})
    "parameter": (r"\theta", r"\vartheta", r"\omega", r"\phi"),
    "rate": (r"\eta", r"\alpha", r"\lambda", r"\epsilon"),
    "momentum": (r"\mu", r"\beta", r"\gamma", r"\rho"),
    "buffer": ("v", "u", "m", r"\nu"),        # the momentum buffer v ← μv + g
    "gradient": ("g", "G", r"\gamma", "d"),
    "moment": ("m", "p", "M", "q"),           # Adam's first moment m
    "decay": (r"\lambda", r"\kappa", r"\omega", r"\zeta"),
    "betas": (r"\beta", r"\rho", r"\gamma", r"\chi"),
    "epsilon": (r"\varepsilon", r"\epsilon", r"\delta", r"\iota"),
    "dampening": ("d", "D", r"\tau", "h"),
    "step": ("t", "s", "n", "T"),
    "function": ("f", "h", r"\varphi", r"\psi"),
    "example": ("k", "n", "q", "e"),          # E^{(k)}: example k of a mini-batch
    "count": ("m", "N", "B", "M"),            # examples in a step
    "channel": ("c", "q", "l", "h"),
    "row": ("r", "i", "p", "a"),
    "column": ("s", "j", "q", "b"),
    "value": ("x", "u", r"\xi", "w"),        # a value a layer normalizes or drops
    "output": ("y", "o", "q", r"\zeta"),     # what it makes of it
    "mask": ("m", "M", "n", r"\nu"),         # a dropout mask
    "value_index": ("i", "l", "n", "p"),
    "other_index": ("j", "q", "l", "r"),
}


# roles that meet in one formula, so their letters differ
SYMBOL_GROUPS = (("index", "second_index"), ("argument",),
                 ("parameter", "rate", "momentum", "buffer", "gradient", "moment", "decay",
                  "betas", "epsilon", "dampening", "step"), ("function",),
                 ("example", "count"), ("channel", "row", "column"),
                 ("count", "value", "output", "mask", "value_index", "other_index"))


class DocumentSymbols:
    """The letters a document introduces itself (sum indices, θ, η, μ, the momentum
    buffer, a function's argument, grid indices), none the letters of a spec name."""

    def __init__(self, spec_names):
        bases = {name_base(n) for n in spec_names}
        # \hat{x} takes x too: the document's x̂ would read as the spec's
        accented = {m.group(1) for b in bases for m in [re.match(r"\\[A-Za-z]+\{(.*)\}$", b)] if m}
        self.taken = bases | accented | set(spec_names)
        chosen: dict[str, str] = {}
        for group in SYMBOL_GROUPS:
            in_group: set[str] = set()
            for role in group:
                if role not in chosen:  # a role in two groups keeps its first letter
                    free = [c for c in SYMBOL_ROLES[role] if c not in self.taken | in_group]
                    chosen[role] = free[0] if free else SYMBOL_ROLES[role][0] + "'"
                in_group.add(chosen[role])
        self.roles = chosen

    def __getitem__(self, role: str) -> str:
        return self.roles[role]

    def placeholders(self) -> dict[str, str]:
        """``{@role}`` → the role's letter, for the phrase files."""
        return {"@" + role: letter for role, letter in self.roles.items()}


def relabel(latex: str, names: list[str], commands: dict[str, str],
            words: dict[str, str]) -> str:
    """LaTeX with its letters ``commands`` (\\eta → \\alpha, not inside \\etaX) and its
    exact ``words`` (v_{w} → u_{w}) replaced, the spec's ``names`` in it left as they are."""
    kept = {}
    for old, new in words.items():  # a state of a name (v_{w}) before the name alone
        if old in latex:
            marker = f"\x02{len(kept)}\x02"
            latex = latex.replace(old, marker)
            kept[marker] = new
    for k, name in enumerate(sorted(set(names), key=len, reverse=True)):
        marker = f"\x01{k}\x01"
        latex = latex.replace(name, marker)
        kept[marker] = name
    for old, new in commands.items():
        if old != new:
            latex = re.sub(re.escape(old) + r"(?![A-Za-z])", lambda _: new, latex)
    for marker, text in kept.items():
        latex = latex.replace(marker, text)
    return latex


def generic_name(names: list[str], index: str) -> str | None:
    """One name standing for every name of a list, the index that tells them apart
    written ``index``: out_{o1}, out_{o2} → out_{ok}; v_1, v_2 → v_k. None when the names
    differ otherwise."""
    if not names:
        return None
    if len(names) == 1:
        return names[0]
    prefix = names[0]
    for name in names[1:]:
        while not name.startswith(prefix):
            prefix = prefix[:-1]
    suffix = names[0]
    for name in names[1:]:
        while not name.endswith(suffix):
            suffix = suffix[1:]
    while prefix and prefix[-1].isdigit():  # out_{o1}, out_{o11}: the whole number varies
        prefix = prefix[:-1]
    while suffix and suffix[0].isdigit():
        suffix = suffix[1:]
    middles = [n[len(prefix):len(n) - len(suffix)] for n in names]
    if middles != [str(k + 1) for k in range(len(names))]:
        return None
    if prefix.endswith("_"):  # v_1 → v_k
        return prefix + index + suffix
    return prefix + index + suffix


def grid_name(cells: list[str]) -> str | None:
    """The name of a grid whose cells are ``cells``, agreeing with them: x_{r,s} → X,
    x^{(2)}_{r,s} → X^{(2)}, f_{1,2,r,s} → F_{1,2}, i_{11} → I. None when the cells do
    not share their letters and upper indices."""
    parsed = []
    for cell in cells:
        match = re.fullmatch(r"([A-Za-z]+)((?:\^\{[^{}]*\}|\^\w)?)_(\{[^{}]*\}|\w)((?:\^\{[^{}]*\}|\^\w)?)",
                             cell)
        if not match:
            return None
        letters, upper, index, upper_after = match.groups()
        index = index.strip("{}")
        parts = index.split(",")
        keep = parts[:-2] if len(parts) > 2 else []
        parsed.append((letters, upper + upper_after, tuple(keep)))
    if len(set(parsed)) != 1:
        return None
    letters, upper, keep = parsed[0]
    name = letters.upper() + upper
    return name + ("_{" + ",".join(keep) + "}" if keep else "")
