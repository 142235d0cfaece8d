"""Pooling: the maximum or the mean of a window (window geometry as in conv.window).

Max pooling routes the gradient to the maximum; on a tie, to the FIRST maximum in
row-major order of the window (as PyTorch): cell k wins when it is > every earlier
cell and >= every later one, and SymPy's derivative is 1 for the winner, 0 elsewhere.
Average pooling divides by the window size, padded zeros included (PyTorch's
count_include_pad=True), so the gradient is spread evenly, 1/(kh·kw) to each cell.
"""

import sympy as sp


def first_maximum_indicator(cells: list[sp.Symbol], k: int) -> sp.Expr:
    """1 when cell k is the first maximum of the window (row-major), else 0."""
    beats = [cells[k] > earlier for earlier in cells[:k]]
    beats += [cells[k] >= later for later in cells[k + 1:]]
    return sp.Piecewise((1, sp.And(*beats)), (0, True))


def max_pool(cells: list[sp.Symbol]) -> sp.Expr:
    """max of the (non-padded) window cells, given in row-major order, as Σ_k x_k·[k wins].

    Exactly one indicator is 1, so the value is the maximum; each indicator is piecewise
    constant, so ∂max/∂x_k is the indicator of k: the gradient goes to the first maximum.
    """
    if len(cells) == 1:
        return cells[0]
    return sp.Add(*[sp.Mul(x, first_maximum_indicator(cells, k), evaluate=False)
                    for k, x in enumerate(cells)], evaluate=False)


def avg_pool(cells: list[sp.Symbol], window_size: int) -> sp.Expr:
    """(Σ cells)/(kh·kw); padded cells are zeros in the sum."""
    return sp.Mul(sp.Rational(1, window_size), sp.Add(*cells, evaluate=False), evaluate=False)
