"""Loss functions as SymPy expressions: one term per output, and the total.

Only forward expressions live here; SymPy derives every partial.
"""

import sympy as sp


def loss_terms(kind: str, outputs: list[sp.Symbol], targets: list[sp.Symbol]) -> list[sp.Expr]:
    """E_k for each output k, so that the total loss is Σ_k E_k."""
    n = len(outputs)
    if kind == "half_squared_error":
        return [sp.Rational(1, 2) * (o - t) ** 2 for o, t in zip(outputs, targets)]
    if kind == "squared_error":
        return [(o - t) ** 2 for o, t in zip(outputs, targets)]
    if kind == "mean_squared_error":
        return [(o - t) ** 2 / n for o, t in zip(outputs, targets)]
    if kind == "cross_entropy":
        return [-t * sp.log(o) for o, t in zip(outputs, targets)]
    if kind == "binary_cross_entropy":
        return [-(t * sp.log(o) + (1 - t) * sp.log(1 - o)) for o, t in zip(outputs, targets)]
    if kind == "softmax_cross_entropy":
        # -t_k ln softmax_k(z), written with the log-sum-exp of the logits z
        log_sum_exp = sp.log(sp.Add(*[sp.exp(o) for o in outputs]))
        return [-t * (o - log_sum_exp) for o, t in zip(outputs, targets)]
    raise ValueError(f"unknown loss: {kind}")


# Where the loss takes a logarithm: (argument, what it must be) for the domain check.
def log_arguments(kind: str, outputs: list[sp.Symbol]):
    if kind == "cross_entropy":
        return [(o, "> 0") for o in outputs]
    if kind == "binary_cross_entropy":
        return [(o, "in (0, 1)") for o in outputs]
    return []
