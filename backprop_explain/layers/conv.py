"""2-D convolution, written as PyTorch and the course write it: a cross-correlation.

z[o,r,s] = Σ_c Σ_u Σ_v x_pad[c, r·stride + u, s·stride + v] · f[o,c,u,v] + b[o]

Zero padding adds constant 0 entries around the input; a product with a padded
entry is 0 and drops out of the expression. SymPy derives every partial.
"""

import sympy as sp


def window(r: int, s: int, kernel, stride, padding, in_size):
    """The cells under the window of output cell (r, s), row-major: (u, v, i, j) with
    (u, v) the kernel position and (i, j) the input cell, or i = j = None on padding."""
    cells = []
    for u in range(kernel[0]):
        for v in range(kernel[1]):
            i = r * stride[0] + u - padding[0]
            j = s * stride[1] + v - padding[1]
            inside = 0 <= i < in_size[0] and 0 <= j < in_size[1]
            cells.append((u, v, i, j) if inside else (u, v, None, None))
    return cells


def pre_activation(products: list[tuple[sp.Symbol, sp.Symbol]], bias: sp.Symbol | None) -> sp.Expr:
    """Σ x·f (+ b) over the (input, filter weight) pairs of one window, all channels."""
    # evaluate=False keeps the terms in the order a lecturer writes them
    terms = [sp.Mul(x, f, evaluate=False) for x, f in products]
    if bias is not None:
        terms.append(bias)
    return sp.Add(*terms, evaluate=False) if terms else sp.Integer(0)
