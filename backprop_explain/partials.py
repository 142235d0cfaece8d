"""Local partial derivatives ∂child/∂parent: each SymPy ``diff`` done once per shape.

Every sigmoid node has the same expression up to the name of its input, every unit of a
dense layer the same up to its inputs', weights' and bias's names. With its symbols
renamed ``a000000``, ``a000001``, … in the order of their names, such an expression becomes
one *shape*: SymPy differentiates a shape once, and a node's partial is the shape's with
the names put back. Both renamings keep every argument where it is (no evaluation), and
SymPy orders the terms of sums, products and conditions by comparing names, an order the
renaming keeps: the result is the very expression ``sympy.diff`` gives for the node
(tests/test_numeric.py checks it edge by edge on every example and on random networks).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sympy as sp
from sympy.core.sorting import ordered

# Classes whose constructor takes evaluate=False; And/Or (lattices) skip their constructor
# (below); the others (the pairs of a Piecewise) rebuild from their arguments as given.
_LATTICES = sp.core.operations.LatticeOp
_EVALUATING = (sp.core.operations.AssocOp, sp.Pow, sp.Function, sp.core.relational.Relational,
               sp.Piecewise)


def rename(expr: sp.Basic, names: dict) -> sp.Basic:
    """``expr`` with symbols replaced per ``names``, every argument kept in its place.

    Not ``with sympy.evaluate(False): expr.xreplace(names)``: entering that context empties
    SymPy's cache, whose cached assumptions and derivatives the next diff would redo."""
    if expr in names:
        return names[expr]
    if not expr.args:
        return expr
    args = [rename(a, names) for a in expr.args]
    if isinstance(expr, _LATTICES):
        # And/Or: sorted by name as SymPy sorts them; the conditions' filtering (each put in
        # canonical form to find duplicates and contradictions, the slow part) finds
        # nothing new under a one-to-one renaming of conditions it has already filtered
        lattice = sp.Basic.__new__(expr.func, *ordered(args))
        lattice._argset = frozenset(args)
        return lattice
    if isinstance(expr, _EVALUATING):
        return expr.func(*args, evaluate=False)
    return expr.func(*args)


@lru_cache(maxsize=None)
def dummy(k: int) -> sp.Symbol:
    return sp.Symbol(f"a{k:06d}")  # zero-padded: the names sort as the indices do


@dataclass(frozen=True)
class _Shape:
    expr: sp.Expr  # in the dummies
    index: dict  # original symbol → its dummy's index
    back: dict  # dummy → original symbol


@lru_cache(maxsize=8192)
def _shape_of(expr: sp.Expr) -> _Shape:
    symbols = sorted(expr.free_symbols, key=lambda s: s.name)
    dummies = [dummy(k) for k in range(len(symbols))]
    return _Shape(rename(expr, dict(zip(symbols, dummies))),
                  {s: k for k, s in enumerate(symbols)}, dict(zip(dummies, symbols)))


@lru_cache(maxsize=16384)
def shape_partial(shape: sp.Expr, k: int) -> sp.Expr:
    """∂shape/∂a_k (the shape's symbols are the dummies a000000, a000001, …)."""
    symbol = dummy(k)
    if shape.is_Add:  # what sympy.diff does with a sum, skipping the terms without symbol
        return sp.Add(*[sp.diff(term, symbol) for term in shape.args
                        if symbol in term.free_symbols])
    return sp.diff(shape, symbol)


def local_partial(expr: sp.Expr, symbol: sp.Symbol) -> sp.Expr:
    """∂expr/∂symbol, equal to ``sympy.diff(expr, symbol)`` (see the module doc)."""
    shape = _shape_of(expr)
    if symbol not in shape.index:
        return sp.Integer(0)
    return rename(shape_partial(shape.expr, shape.index[symbol]), shape.back)
