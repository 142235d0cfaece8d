"""Dense (fully connected) layer: y_j = Σ_i w_{j,i} · x_i + b_j."""

import sympy as sp


def pre_activation(weights: list[sp.Symbol], inputs: list[sp.Symbol], bias: sp.Symbol) -> sp.Expr:
    # evaluate=False keeps the terms in the order a lecturer writes them
    terms = [sp.Mul(x, w, evaluate=False) for w, x in zip(weights, inputs)]
    return sp.Add(*terms, bias, evaluate=False)
