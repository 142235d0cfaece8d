"""Independent plain-NumPy references for the newer kinds: the optimizers (SGD with its
variants, Adam, AdamW), written from the algorithms in PyTorch's documentation.

Like tests/reference.py it imports nothing from the package: each function is the
textbook rule on arrays, so comparing the package with it checks the package, not a copy
of itself.
"""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------------------
# Optimizers: one step on a vector of parameters; ``state`` is carried between steps.


def sgd_step(theta, grad, state: dict, lr: float, momentum: float = 0.0,
             dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False):
    """torch.optim.SGD's documented algorithm (maximize = False)."""
    g = grad + weight_decay * theta
    if momentum:
        if "b" not in state:
            state["b"] = g.copy()
        else:
            state["b"] = momentum * state["b"] + (1.0 - dampening) * g
        g = g + momentum * state["b"] if nesterov else state["b"]
    return theta - lr * g


def adam_step(theta, grad, state: dict, lr: float = 1e-3, betas=(0.9, 0.999),
              eps: float = 1e-8, weight_decay: float = 0.0, decoupled: bool = False):
    """torch.optim.Adam (``decoupled``: torch.optim.AdamW), amsgrad = False."""
    beta1, beta2 = betas
    t = state.get("t", 0) + 1
    if decoupled:
        theta = theta * (1.0 - lr * weight_decay)
        g = grad
    else:
        g = grad + weight_decay * theta
    m = beta1 * state.get("m", np.zeros_like(theta)) + (1.0 - beta1) * g
    v = beta2 * state.get("v", np.zeros_like(theta)) + (1.0 - beta2) * g * g
    state.update(t=t, m=m, v=v)
    m_hat = m / (1.0 - beta1 ** t)
    v_hat = v / (1.0 - beta2 ** t)
    return theta - lr * m_hat / (np.sqrt(v_hat) + eps)
