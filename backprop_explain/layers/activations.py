"""Activation functions as SymPy expressions of the pre-activation.

Each entry gives the forward expression only; derivatives come from SymPy.
``display`` is how the course writes the function applied to its argument.
"""

import sympy as sp


def unit_activation(kind: str, y: sp.Symbol, negative_slope: float = 0.01) -> sp.Expr:
    """out = f(y) for an element-wise activation."""
    if kind == "identity":
        return y
    if kind == "sigmoid":
        return 1 / (1 + sp.exp(-y))
    if kind == "tanh":
        return sp.tanh(y)
    if kind == "relu":
        return sp.Piecewise((y, y > 0), (0, True))
    if kind == "leaky_relu":
        return sp.Piecewise((y, y > 0), (sp.Float(negative_slope) * y, True))
    raise ValueError(f"not an element-wise activation: {kind}")


def softmax_activation(ys: list[sp.Symbol], j: int) -> sp.Expr:
    """out_j = e^{y_j} / Σ_k e^{y_k}: depends on the whole layer (non-diagonal Jacobian)."""
    return sp.exp(ys[j]) / sp.Add(*[sp.exp(y) for y in ys])


# How a worked solution names f in "out = f(y)"; LaTeX, filled with the argument.
DISPLAY = {
    "identity": "{arg}",
    "sigmoid": r"\sigma\left({arg}\right)",
    "tanh": r"\tanh\left({arg}\right)",
    "relu": r"\operatorname{{ReLU}}\left({arg}\right)",
    "leaky_relu": r"\operatorname{{LeakyReLU}}\left({arg}\right)",
    "softmax": r"\operatorname{{softmax}}_{{{index}}}\left({arg}\right)",
}
