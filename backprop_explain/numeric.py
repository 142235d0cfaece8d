"""Numbers of a graph: every forward expression and local partial, at 40 digits (mpmath)
or more: every evaluation is repeated at twice the precision, doubled again while the
two give different float64s (a difference of nearly equal terms, as a softmax's
e^z₁/S − e^2z₁/S² at z = (100, 0), needs hundreds of digits), so every float64 returned
is the true value rounded; a value beyond float64's range is a DomainError, not inf/nan.

A network has many nodes but few kinds of node: every sigmoid, every unit of a dense
layer with n inputs, every output of a softmax, every 2×2 max pool computes one function
of its parents, taken in some order. A node's expression brought to its *canonical
shape* (its symbols renamed a000000, a000001, … as met level by level in it, SymPy then
ordering the terms) is shared by every node of its kind; each shape is differentiated
(partials.shape_partial) and compiled (sympy.lambdify, mpmath) once: one function for its
value, one returning all its partials (their common subexpressions computed once). A
node is evaluated by calling them with its parents' values in the shape's order.

Comparisons (ReLU's y > 0, a max pool's "first maximum of its window") are decided on the
values at the evaluation's precision (40 digits or more), except that two values agreeing
to TIE_DIGITS significant digits are equal: cells equal in exact arithmetic, such as two average-pooled cells whose terms come
in different orders, differ in the last of the 40 digits, and the max pool's tie rule
(first maximum in row-major order, as the fast path and PyTorch) must still apply.

The numbers a spec gives are read as written: a float as the shortest decimal that reads
back to it (``exact_number``: 0.1 is one tenth, not the binary double
0.1000000000000000055…), so that 0.1 + 0.2 − 0.3 is 0 on the page as on the blackboard.
Such a sum comes out of 40-digit arithmetic as a residue of the last digits (±1e-41), and
so does a batch's variance over equal values (a mean of sixths is not exact in binary):
a value of an algebraic node (sums, products, powers, ReLU's and the max pool's cases,
no exp or ln) within NOISE_DIGITS digits of the working precision of its largest parent
is that residue, and is 0 (``CompiledShape.settle``). ReLU's derivative at that 0 is then
0, PyTorch's convention at 0, whatever the residue's sign, at every precision. A true
value that small (an input of 1e-35) is 0 at 40 digits but not at 80, so the doubling
precisions (``settled``) go on until they agree on it.

The renaming is one-to-one and the shape is the node's function, so the values are those
of the node's own expression; only the order of some roundings may differ from compiling
that expression itself, in the last of the 40 digits (tests/test_numeric.py compares with
sympy.lambdify of each node's expression and partials to 1e-30). The symbolic partials a
worked solution shows are the graph's own (Graph.local_partial), derived when shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import mpmath
import sympy as sp
from sympy.printing.pycode import MpmathPrinter

from .errors import DomainError
from .nodes import GIVEN_KINDS, Graph, Node
from .partials import dummy, shape_partial

PRECISION = 40  # decimal digits of the first evaluation; results are returned as float64
MAX_PRECISION = 2560  # doubled from PRECISION while two successive precisions disagree
TIE_DIGITS = 24  # values agreeing to this many digits compare equal (float64 keeps ~16)
NOISE_DIGITS = 8  # an algebraic node's value this close to the working precision is 0


@lru_cache(maxsize=8192)
def canonical_shape(expr: sp.Expr) -> tuple[sp.Expr, tuple[str, ...]]:
    """(the shape of ``expr``, the names its dummies a000000, a000001, … stand for).

    Symbols are numbered as met level by level, smaller arguments first: the input of a
    softmax output's numerator, the cells of a pooling window in window order, come first,
    so that every output of a softmax, every window, has the same shape."""
    sizes: dict[int, int] = {}

    def size(e) -> int:
        if id(e) not in sizes:
            sizes[id(e)] = 1 + sum(size(a) for a in e.args)
        return sizes[id(e)]

    numbers: dict[sp.Symbol, int] = {}
    level = [expr]
    while level:
        below = []
        for e in level:
            if e.is_Symbol:
                numbers.setdefault(e, len(numbers))
            below += sorted(e.args, key=size)
        level = below
    names = tuple(s.name for s in numbers)
    tree = _numbered_tree(expr, numbers)
    if tree not in _SHAPES:  # SymPy's ordering of the renamed expression: the slow part
        if len(_SHAPES) > 4096:
            _SHAPES.clear()
        _SHAPES[tree] = expr.xreplace({s: dummy(k) for s, k in numbers.items()})
    return _SHAPES[tree], names


_SHAPES: dict[tuple, sp.Expr] = {}  # numbered tree → shape


def _numbered_tree(expr: sp.Basic, numbers: dict) -> tuple | int:
    """``expr`` as nested tuples, each symbol replaced by its number: two expressions with
    the same tree are one expression in two namings, so they have one shape."""
    if expr.is_Symbol:
        return numbers[expr]
    if not expr.args:
        return (type(expr), expr._hashable_content())
    return (expr.func, tuple(_numbered_tree(a, numbers) for a in expr.args))


def exact_number(value) -> mpmath.mpf:
    """A number as written: a float as the shortest decimal that reads back to it, at the
    working precision (an int, or an mpmath number, as it is)."""
    if isinstance(value, float):
        return mpmath.mpf(float.__repr__(float(value)))
    return mpmath.mpf(value)


@dataclass(frozen=True)
class CompiledShape:
    value: Callable  # the shape's value at its arguments
    partials: Callable  # a tuple: ∂shape/∂a_k for each k of ``wanted``, in that order
    wanted: tuple[int, ...]
    algebraic: bool = False  # no exp, ln or other transcendental function in the shape

    def settle(self, value, arguments, noise):
        """``value`` of the shape at ``arguments``, or 0 when the shape is algebraic and
        the value is within ``noise`` (10^(NOISE_DIGITS − digits)) of its largest
        argument (the residue of a cancellation: see the module docstring)."""
        if not self.algebraic or not value or not arguments:
            return value
        if abs(value) <= noise * max(abs(a) for a in arguments):
            return mpmath.mpf(0)
        return value


ALGEBRAIC = (sp.Piecewise, sp.Max, sp.Min, sp.Abs)  # functions of an algebraic shape


def _difference(a, b):
    """a − b, or 0 when a and b agree to TIE_DIGITS significant digits."""
    d = a - b
    return 0 if abs(d) <= mpmath.mpf(10) ** -TIE_DIGITS * max(abs(a), abs(b)) else d


_COMPARISONS = {  # a comparison in a compiled shape → its function
    ">": ("_greater", lambda a, b: _difference(a, b) > 0),
    ">=": ("_greater_equal", lambda a, b: _difference(a, b) >= 0),
    "<": ("_less", lambda a, b: _difference(a, b) < 0),
    "<=": ("_less_equal", lambda a, b: _difference(a, b) <= 0),
}
_NAMESPACE = {name: function for name, function in _COMPARISONS.values()}


class _ComparingPrinter(MpmathPrinter):
    """mpmath code whose comparisons go through _difference."""

    def _print_Relational(self, expr):
        if expr.rel_op not in _COMPARISONS:
            return super()._print_Relational(expr)
        name = _COMPARISONS[expr.rel_op][0]
        return f"{name}({self._print(expr.lhs)}, {self._print(expr.rhs)})"


def _lambdify(symbols, expr, **options):
    printer = _ComparingPrinter({"fully_qualified_modules": False, "inline": True,
                                 "allow_unknown_functions": True})  # as lambdify's own
    return sp.lambdify(symbols, expr, modules=[_NAMESPACE, "mpmath"], printer=printer,
                       **options)


@lru_cache(maxsize=4096)
def compiled_shape(shape: sp.Expr, arguments: int, wanted: tuple[int, ...]) -> CompiledShape:
    symbols = [dummy(k) for k in range(arguments)]
    partials = tuple(shape_partial(shape, k) for k in wanted)
    algebraic = all(isinstance(f, ALGEBRAIC) for f in shape.atoms(sp.Function))
    return CompiledShape(_lambdify(symbols, shape),
                         _lambdify(symbols, partials, cse=True), wanted, algebraic)


@dataclass
class _Step:
    """One computed node: its compiled shape and its parents in the shape's order."""

    node: Node
    arguments: tuple[str, ...]
    compiled: CompiledShape
    edges: list[tuple[str, str]]  # (node, parent) for each partial the shape returns


class NumericGraph:
    """Every forward expression and local partial of a graph, compiled once per shape and
    evaluated in mpmath at 40 digits or more until two precisions agree (the module
    docstring); results are returned as float64."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self._steps: list[_Step] = []
        self._edges: list[tuple[str, str]] = []  # graph order: what partial_values returns
        for node in graph.nodes.values():
            if node.expr is None:
                continue
            shape, arguments = canonical_shape(node.expr)
            wanted = tuple(k for k, name in enumerate(arguments)
                           if graph.nodes[name].kind not in GIVEN_KINDS)
            compiled = compiled_shape(shape, len(arguments), wanted)
            self._steps.append(_Step(node, arguments, compiled,
                                     [(node.name, arguments[k]) for k in wanted]))
            self._edges += [(node.name, p) for p in node.parents
                            if graph.nodes[p].kind not in GIVEN_KINDS]
        # the backward sweep's order: children from the loss back, each child's parents
        self._sweep = [(name, parent) for name in reversed(graph.nodes)
                       for parent in graph.nodes[name].parents]

    @property
    def edges(self) -> list[tuple[str, str]]:
        """Every (child, parent) with a local partial (parent not a given number: a target,
        a constant), graph order."""
        return list(self._edges)

    def forward(self, leaves: dict[str, float], finite: bool = True) -> dict[str, float]:
        """Every node's value as float64 (settled, see the module docstring); ``finite=False``:
        a value beyond float64's range is inf (the loss after too large a step: a divergence
        the document says in words)."""
        values, exact = settled(lambda digits: self.exact_forward(leaves, digits),
                                lambda name: name, finite)
        values.update(leaves)
        # partial_values() of these very values reuses the exact ones: a sigmoid that
        # rounds to 1.0 in float64 still has 1 - σ > 0 there.
        self._last = (values, exact)
        return values

    def partial_values(self, values: dict[str, float]) -> dict[tuple[str, str], float]:
        """Every local partial ∂child/∂parent at the given values (after forward())."""
        last = getattr(self, "_last", (None, None))
        if last[0] is values:
            exact = last[1]
        else:
            exact = {k: exact_number(v) for k, v in values.items()}
        partials, exact_partials = settled(
            lambda digits: self.exact_partials(exact, digits),
            lambda edge: f"∂{edge[0]}/∂{edge[1]}")
        self._last_partials = (partials, exact_partials)
        return partials

    def exact_forward(self, leaves: dict[str, float],
                      digits: int = PRECISION) -> dict[str, mpmath.mpf]:
        """Every node's value at ``digits`` digits, the leaves' included."""
        with mpmath.workdps(digits):
            exact = {k: exact_number(v) for k, v in leaves.items()}
            noise = mpmath.mpf(10) ** (NOISE_DIGITS - digits)
            for step in self._steps:
                arguments = [exact[p] for p in step.arguments]
                value = _checked(step, exact, arguments, step.compiled.value)[0]
                exact[step.node.name] = step.compiled.settle(value, arguments, noise)
        return exact

    def exact_partials(self, exact: dict[str, mpmath.mpf],
                       digits: int = PRECISION) -> dict[tuple[str, str], mpmath.mpf]:
        """Every local partial at ``digits`` digits, at the values ``exact``."""
        found = {}
        with mpmath.workdps(digits):
            for step in self._steps:
                arguments = [exact[p] for p in step.arguments]
                found.update(zip(step.edges, _checked(step, exact, arguments,
                                                      step.compiled.partials)))
        return {edge: found[edge] for edge in self._edges}

    def partial_expr(self, child: str, parent: str) -> sp.Expr:
        return self.graph.local_partial(child, parent)

    def backward(self, partials: dict[tuple[str, str], float]) -> dict[str, float]:
        """∂E/∂node for every node: one reverse sweep, summing over every child (from the
        exact partials when ``partials`` is what partial_values() returned: a product of a
        huge and a tiny local partial stays exact)."""
        graph = self.graph
        last, exact_partials = getattr(self, "_last_partials", (None, None))
        if last is not partials:
            exact_partials = {edge: mpmath.mpf(v) for edge, v in partials.items()}

        def sweep(digits):
            with mpmath.workdps(digits):
                exact = {name: mpmath.mpf(0) for name in graph.nodes}
                exact[graph.loss.name] = mpmath.mpf(1)
                for edge in self._sweep:
                    if edge in exact_partials:
                        exact[edge[1]] += exact[edge[0]] * exact_partials[edge]
            return exact
        adjoints, _ = settled(sweep, lambda name: f"∂{graph.loss.name}/∂{name}")
        return adjoints


def settled(compute, label, finite: bool = True):
    """``compute(digits)`` (a dict of mpmath numbers) at doubling precisions until two
    successive ones round to the same float64s: (those floats, the exact values). A value
    outside its function's domain at every precision (σ(1000) is 1 to 40 digits: ln(1 − σ)
    needs more), one that never settles, or (``finite``) one beyond float64's range, is a
    DomainError (``label(key)`` names it)."""
    digits, previous, failure, unsettled = PRECISION, None, None, []
    while True:
        try:
            exact = compute(digits)
        except DomainError as err:
            exact, previous, failure = None, None, err
        if exact is not None:
            floats = {key: float(value) for key, value in exact.items()}
            unsettled = [key for key, value in floats.items()
                         if previous is not None and not _same_float(value, previous[key])]
            if previous is not None and not unsettled:
                break
            previous = floats
        if digits >= MAX_PRECISION:
            if exact is None or not unsettled:
                raise failure
            raise DomainError(f"{label(unsettled[0])} cannot be computed to double precision "
                              f"even with {digits} digits (terms too far apart: use smaller "
                              f"weights or inputs)")
        digits *= 2
    for key, value in floats.items() if finite else ():
        if math.isinf(value):  # finite in mpmath (DomainError otherwise), not in float64
            raise DomainError(
                f"{label(key)} = {mpmath.nstr(exact[key], 4)} is beyond double precision "
                f"(about 1.8e308), so it cannot be written out: a saturated softmax or sigmoid "
                f"(logits far apart) or an overflow; use smaller weights or inputs")
    return floats, exact


def _same_float(a: float, b: float) -> bool:
    return a == b or abs(a - b) <= 1e-14 * max(abs(a), abs(b))


def _checked(step: _Step, env: dict, arguments: list, function) -> tuple:
    """The compiled function at ``arguments`` (the step's parents' values in ``env``), as a
    tuple; no real finite value is a DomainError naming the node."""
    try:
        results = function(*arguments)
    except (ZeroDivisionError, OverflowError, ValueError):
        results = (mpmath.nan,)
    if not isinstance(results, tuple):
        results = (results,)
    for value in results:
        if isinstance(value, mpmath.mpc) or not mpmath.isfinite(value):
            node = step.node
            args = ", ".join(f"{p} = {float(mpmath.re(env[p])):.6g}" for p in node.parents
                             if p in env)
            raise DomainError(f"{node.name} = {sp.sstr(node.expr)} has no real finite value "
                              f"at {args} (ln of a value <= 0, a division by 0, an "
                              f"overflow, or a value too close to such a point even to "
                              f"{mpmath.mp.dps} digits)")
    return results
