"""Numbers of a graph: every forward expression and local partial, at 40 digits (mpmath).

A network has many nodes but few kinds of node: every sigmoid, every unit of a dense
layer with n inputs, every output of a softmax, every 2×2 max pool computes one function
of its parents, taken in some order. A node's expression brought to its *canonical
shape* (its symbols renamed a000000, a000001, … as met level by level in it, SymPy then
ordering the terms) is shared by every node of its kind; each shape is differentiated
(partials.shape_partial) and compiled (sympy.lambdify, mpmath) once: one function for its
value, one returning all its partials (their common subexpressions computed once). A
node is evaluated by calling them with its parents' values in the shape's order.

Comparisons (ReLU's y > 0, a max pool's "first maximum of its window") are decided on the
40-digit values, except that two values agreeing to TIE_DIGITS significant digits are
equal: cells equal in exact arithmetic, such as two average-pooled cells whose terms come
in different orders, differ in the last of the 40 digits, and the max pool's tie rule
(first maximum in row-major order, as the fast path and PyTorch) must still apply.

The renaming is one-to-one and the shape is the node's function, so the values are those
of the node's own expression; only the order of some roundings may differ from compiling
that expression itself, in the last of the 40 digits (tests/test_numeric.py compares with
sympy.lambdify of each node's expression and partials to 1e-30). The symbolic partials a
worked solution shows are the graph's own (Graph.local_partial), derived when shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import mpmath
import sympy as sp
from sympy.printing.pycode import MpmathPrinter

from .errors import DomainError
from .nodes import GIVEN_KINDS, Graph, Node
from .partials import dummy, shape_partial

PRECISION = 40  # decimal digits for evaluation; results are returned as float64
TIE_DIGITS = 24  # values agreeing to this many digits compare equal (float64 keeps ~16)


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


@dataclass(frozen=True)
class CompiledShape:
    value: Callable  # the shape's value at its arguments
    partials: Callable  # a tuple: ∂shape/∂a_k for each k of ``wanted``, in that order
    wanted: tuple[int, ...]


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
    return CompiledShape(_lambdify(symbols, shape),
                         _lambdify(symbols, partials, cse=True), wanted)


@dataclass
class _Step:
    """One computed node: its compiled shape and its parents in the shape's order."""

    node: Node
    arguments: tuple[str, ...]
    compiled: CompiledShape
    edges: list[tuple[str, str]]  # (node, parent) for each partial the shape returns


class NumericGraph:
    """Every forward expression and local partial of a graph, compiled once per shape and
    evaluated in mpmath at 40 digits; results are returned as float64."""

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

    def forward(self, leaves: dict[str, float]) -> dict[str, float]:
        exact = self.exact_forward(leaves)
        values = dict(leaves)
        values.update((step.node.name, float(exact[step.node.name])) for step in self._steps)
        # partial_values() of these very values reuses the 40-digit ones: a sigmoid that
        # rounds to 1.0 in float64 still has 1 - σ > 0 there.
        self._last = (values, exact)
        return values

    def partial_values(self, values: dict[str, float]) -> dict[tuple[str, str], float]:
        """Every local partial ∂child/∂parent at the given values (after forward())."""
        last = getattr(self, "_last", (None, None))
        if last[0] is values:
            exact = last[1]
        else:
            with mpmath.workdps(PRECISION):
                exact = {k: mpmath.mpf(v) for k, v in values.items()}
        return {edge: float(value) for edge, value in self.exact_partials(exact).items()}

    def exact_forward(self, leaves: dict[str, float]) -> dict[str, mpmath.mpf]:
        """Every node's value at 40 digits, the leaves' included."""
        with mpmath.workdps(PRECISION):
            exact = {k: mpmath.mpf(v) for k, v in leaves.items()}
            for step in self._steps:
                exact[step.node.name] = _checked(step, exact, step.compiled.value)[0]
        return exact

    def exact_partials(self, exact: dict[str, mpmath.mpf]) -> dict[tuple[str, str], mpmath.mpf]:
        """Every local partial at 40 digits, at the 40-digit values ``exact``."""
        found = {}
        with mpmath.workdps(PRECISION):
            for step in self._steps:
                found.update(zip(step.edges, _checked(step, exact, step.compiled.partials)))
        return {edge: found[edge] for edge in self._edges}

    def partial_expr(self, child: str, parent: str) -> sp.Expr:
        return self.graph.local_partial(child, parent)

    def backward(self, partials: dict[tuple[str, str], float]) -> dict[str, float]:
        """∂E/∂node for every node: one reverse sweep, summing over every child."""
        graph = self.graph
        with mpmath.workdps(PRECISION):
            exact = {name: mpmath.mpf(0) for name in graph.nodes}
            exact[graph.loss.name] = mpmath.mpf(1)
            for edge in self._sweep:
                if edge in partials:
                    exact[edge[1]] += exact[edge[0]] * partials[edge]
            return {name: float(exact[name]) for name in graph.nodes}


def _checked(step: _Step, env: dict, function) -> tuple:
    """The compiled function at ``env`` (a tuple); no real finite value is a DomainError
    naming the node."""
    arguments = [env[p] for p in step.arguments]
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
                              f"at {args} (ln of a value <= 0, a division by 0, or an "
                              f"overflow)")
    return results
