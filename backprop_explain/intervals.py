"""Interval arithmetic over SymPy expressions: what a quantity can be when the numbers it
is computed from are only known to the digits written.

A student who writes ``0.4411`` may have had any value from 0.44105 to 0.44115 on the
calculator. Pushed through a formula, such intervals give every value the formula can
take from numbers written that way: a later answer is consistent with the earlier ones
when it rounds to a value inside (verify.py). Bounds are floats moved one unit in the
last place outward after every operation, so an interval always holds the exact result;
comparisons in a ``Piecewise`` (ReLU, max pooling) that an interval cannot decide take
the hull of every branch that may apply. An operation outside its domain (ln of a value
≤ 0, a division by an interval that is exactly 0) gives None, as the float evaluation
does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import sympy as sp

INF = math.inf


def _down(x: float) -> float:
    return math.nextafter(x, -INF) if math.isfinite(x) else x


def _up(x: float) -> float:
    return math.nextafter(x, INF) if math.isfinite(x) else x


def _times(a: float, b: float) -> float:
    return 0.0 if a == 0 or b == 0 else a * b  # 0·∞ = 0 for bounds


@dataclass(frozen=True, slots=True)
class Interval:
    """Every real number from ``lo`` to ``hi`` (bounds included; ±inf allowed)."""

    lo: float
    hi: float

    @classmethod
    def point(cls, value: float) -> "Interval":
        return cls(float(value), float(value))

    @classmethod
    def around(cls, value: float, half_width: float) -> "Interval":
        """``value ± half_width``, rounded outward."""
        return cls(_down(value - half_width), _up(value + half_width))

    def nearest(self, x: float) -> float:
        """The point of the interval nearest to ``x``."""
        return min(max(x, self.lo), self.hi)

    def contains(self, x: float) -> bool:
        return self.lo <= x <= self.hi

    @property
    def mid(self) -> float:
        if math.isinf(self.lo) or math.isinf(self.hi):
            return self.lo if math.isinf(self.hi) else self.hi
        return 0.5 * (self.lo + self.hi)

    @property
    def width(self) -> float:
        return self.hi - self.lo

    def hull(self, other: "Interval") -> "Interval":
        return Interval(min(self.lo, other.lo), max(self.hi, other.hi))

    def intersection(self, other: "Interval") -> "Interval | None":
        lo, hi = max(self.lo, other.lo), min(self.hi, other.hi)
        return Interval(lo, hi) if lo <= hi else None

    # Arithmetic (with floats on either side) ------------------------------------
    def __add__(self, other):
        other = as_interval(other)
        return Interval(_down(self.lo + other.lo), _up(self.hi + other.hi))

    __radd__ = __add__

    def __neg__(self):
        return Interval(-self.hi, -self.lo)

    def __sub__(self, other):
        return self + (-as_interval(other))

    def __rsub__(self, other):
        return as_interval(other) + (-self)

    def __mul__(self, other):
        other = as_interval(other)
        products = [_times(a, b) for a in (self.lo, self.hi) for b in (other.lo, other.hi)]
        return Interval(_down(min(products)), _up(max(products)))

    __rmul__ = __mul__

    def reciprocal(self) -> "Interval | None":
        if self.lo == self.hi == 0:
            return None
        if self.lo <= 0 <= self.hi:  # 1/x over an interval holding 0: unbounded
            return Interval(-INF, INF)
        return Interval(_down(1 / self.hi), _up(1 / self.lo))

    def __truediv__(self, other):
        inverse = as_interval(other).reciprocal()
        return None if inverse is None else self * inverse

    def __rtruediv__(self, other):
        inverse = self.reciprocal()
        return None if inverse is None else as_interval(other) * inverse

    def __abs__(self):
        if self.lo >= 0:
            return self
        if self.hi <= 0:
            return -self
        return Interval(0.0, max(-self.lo, self.hi))

    def __pow__(self, n):
        if not isinstance(n, int):
            return NotImplemented
        return self.power(n)

    def power(self, n: int) -> "Interval | None":
        """self**n for a whole number n."""
        if n < 0:
            positive = self.power(-n)
            return None if positive is None else positive.reciprocal()
        if n == 0:
            return Interval(1.0, 1.0)
        if n % 2:  # odd: increasing
            return Interval(_down(_pow(self.lo, n)), _up(_pow(self.hi, n)))
        magnitude = abs(self)
        return Interval(max(0.0, _down(_pow(magnitude.lo, n))), _up(_pow(magnitude.hi, n)))


def _pow(x: float, n: int) -> float:
    try:
        return x ** n
    except OverflowError:
        return math.copysign(INF, x) if n % 2 else INF


def as_interval(value) -> Interval:
    return value if isinstance(value, Interval) else Interval.point(value)


def _monotone(function, increasing=True, low=-INF, high=INF):
    """An increasing (or decreasing) function on [low, high], applied to the bounds."""
    def apply(x: Interval) -> Interval | None:
        if x.hi < low or x.lo > high:
            return None
        lo, hi = max(x.lo, low), min(x.hi, high)
        a, b = _safe(function, lo), _safe(function, hi)
        if not increasing:
            a, b = b, a
        return Interval(_down(a), _up(b))
    return apply


def _safe(function, x: float) -> float:
    try:
        return function(x)
    except OverflowError:
        return INF
    except ValueError:  # log(0)
        return -INF


def _log(x: float) -> float:
    return -INF if x == 0 else math.log(x)


def _atanh(x: float) -> float:
    return math.copysign(INF, x) if abs(x) >= 1 else math.atanh(x)


_FUNCTIONS = {
    sp.exp: _monotone(math.exp),
    sp.log: _monotone(_log, low=0.0),
    sp.tanh: _monotone(math.tanh),
    sp.atan: _monotone(math.atan),
    sp.sinh: _monotone(math.sinh),
    sp.asinh: _monotone(math.asinh),
    sp.atanh: _monotone(_atanh, low=-1.0, high=1.0),
}


class Unsupported(Exception):
    """An expression this module cannot bound (the caller falls back to plain floats)."""


def compile_interval(expr: sp.Basic, symbols: list[sp.Symbol]):
    """A function of intervals (or floats), one per symbol, giving the interval of
    ``expr`` or None (out of its domain). Raises Unsupported for what it cannot bound."""
    position = {s: k for k, s in enumerate(symbols)}
    node = _compile(expr, position)

    def evaluate(*args):
        return node([as_interval(a) for a in args])
    return evaluate


def _compile(expr, position):  # noqa: C901 (one case per kind of SymPy node)
    if expr in position:
        k = position[expr]
        return lambda args: args[k]
    if expr.is_Number or isinstance(expr, sp.NumberSymbol):
        value = float(expr)
        exact = bool(expr.is_Rational) and sp.Rational(value) == expr  # else widened an ulp
        constant = Interval.point(value) if exact else Interval(_down(value), _up(value))
        return lambda args: constant
    if expr is sp.true or expr is sp.false:
        truth = bool(expr)
        return lambda args: truth
    if expr.is_Add or expr.is_Mul:
        parts = [_compile(a, position) for a in expr.args]
        combine = (lambda a, b: a + b) if expr.is_Add else (lambda a, b: a * b)

        def fold(args):
            total = None
            for part in parts:
                value = part(args)
                if value is None:
                    return None
                total = value if total is None else combine(total, value)
            return total
        return fold
    if expr.is_Pow:
        return _compile_pow(expr, position)
    if isinstance(expr, sp.Piecewise):
        return _compile_piecewise(expr, position)
    if isinstance(expr, (sp.Max, sp.Min)):
        parts = [_compile(a, position) for a in expr.args]
        pick = max if isinstance(expr, sp.Max) else min

        def extreme(args):
            values = [p(args) for p in parts]
            if any(v is None for v in values):
                return None
            return Interval(pick(v.lo for v in values), pick(v.hi for v in values))
        return extreme
    if isinstance(expr, sp.Abs):
        inner = _compile(expr.args[0], position)
        return lambda args: None if (v := inner(args)) is None else abs(v)
    if isinstance(expr, sp.core.relational.Relational):
        return _compile_relation(expr, position)
    if isinstance(expr, (sp.And, sp.Or, sp.Not)):
        return _compile_logic(expr, position)
    function = _FUNCTIONS.get(type(expr)) or _FUNCTIONS.get(expr.func)
    if function is not None and len(expr.args) == 1:
        inner = _compile(expr.args[0], position)
        return lambda args: None if (v := inner(args)) is None else function(v)
    raise Unsupported(f"no interval form for {type(expr).__name__}")


def _compile_pow(expr, position):
    base = _compile(expr.base, position)
    exponent = expr.exp
    if exponent.is_Integer:
        n = int(exponent)
        return lambda args: None if (b := base(args)) is None else b.power(n)
    if exponent == sp.Rational(1, 2):
        root = _monotone(math.sqrt, low=0.0)
        return lambda args: None if (b := base(args)) is None else root(b)
    power = _compile(exponent, position)
    logarithm, exponential = _FUNCTIONS[sp.log], _FUNCTIONS[sp.exp]

    def general(args):  # b**e = exp(e·ln b), for b > 0
        b, e = base(args), power(args)
        if b is None or e is None:
            return None
        ln = logarithm(b)
        return None if ln is None else exponential(e * ln)
    return general


def _compile_piecewise(expr, position):
    branches = [(_compile(value, position), _compile(condition, position))
                for value, condition in expr.args]

    def choose(args):
        found = None
        for value, condition in branches:
            applies = condition(args)
            if applies is False:
                continue
            result = value(args)
            if result is not None:
                found = result if found is None else found.hull(result)
            if applies is True:
                break
        return found
    return choose


def _compile_relation(expr, position):
    difference = _compile(expr.lhs - expr.rhs, position)
    op = expr.rel_op

    def decide(args):
        d = difference(args)
        if d is None:
            return None
        if op in (">", ">="):
            d, op_ = d, op
        else:  # a < b  ⇔  b − a > 0
            d, op_ = -d, {"<": ">", "<=": ">="}.get(op, op)
        if op_ == ">":
            return True if d.lo > 0 else False if d.hi <= 0 else None
        if op_ == ">=":
            return True if d.lo >= 0 else False if d.hi < 0 else None
        if op_ == "==":
            return True if d.lo == d.hi == 0 else False if not d.contains(0.0) else None
        if op_ == "!=":
            return False if d.lo == d.hi == 0 else True if not d.contains(0.0) else None
        raise Unsupported(f"no interval form for the relation {op}")
    return decide


def _compile_logic(expr, position):
    parts = [_compile(a, position) for a in expr.args]
    if isinstance(expr, sp.Not):
        return lambda args: None if (v := parts[0](args)) is None else not v

    def combine(args):
        values = [p(args) for p in parts]
        if isinstance(expr, sp.And):
            return False if False in values else None if None in values else True
        return True if True in values else None if None in values else False
    return combine
