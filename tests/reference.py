"""An independent NumPy reference for dense networks, written from the textbook formulas.

It shares nothing with the SymPy engine but the spec's parameter names, so central
finite differences of its loss are an independent check of every symbolic gradient.
"""

from __future__ import annotations

import numpy as np


def activate(kind: str, y: np.ndarray, slope: float = 0.01) -> np.ndarray:
    if kind == "identity":
        return y
    if kind == "sigmoid":
        return 1.0 / (1.0 + np.exp(-y))
    if kind == "tanh":
        return np.tanh(y)
    if kind == "relu":
        return np.where(y > 0, y, 0.0)
    if kind == "leaky_relu":
        return np.where(y > 0, y, slope * y)
    if kind == "softmax":
        e = np.exp(y - y.max())
        return e / e.sum()
    raise ValueError(kind)


def loss_value(kind: str, out: np.ndarray, t: np.ndarray) -> float:
    if kind == "half_squared_error":
        return 0.5 * np.sum((out - t) ** 2)
    if kind == "squared_error":
        return np.sum((out - t) ** 2)
    if kind == "mean_squared_error":
        return np.mean((out - t) ** 2)
    if kind == "cross_entropy":
        return -np.sum(t * np.log(out))
    if kind == "binary_cross_entropy":
        return -np.sum(t * np.log(out) + (1 - t) * np.log(1 - out))
    if kind == "softmax_cross_entropy":
        shifted = out - out.max()
        return -np.sum(t * (shifted - np.log(np.sum(np.exp(shifted)))))
    raise ValueError(kind)


def mlp_loss(spec, params: dict[str, float], example) -> float:
    """Loss of one example of a dense-only NetworkSpec with parameter values ``params``."""
    x = np.array(example.inputs, dtype=float)
    for layer in spec.layers:
        w = np.array([[params[n] for n in row] for row in layer.weight_names])
        b = np.array([params[n] for n in layer.bias_names])
        x = activate(layer.activation, w @ x + b, layer.negative_slope)
    return float(loss_value(spec.loss.kind, x, np.array(example.targets, dtype=float)))


def batch_loss(spec, params) -> float:
    losses = [mlp_loss(spec, params, e) for e in spec.examples]
    return float(np.mean(losses) if spec.reduction == "mean" else np.sum(losses))


def finite_difference_gradients(spec, loss=batch_loss, h: float = 1e-6) -> dict[str, float]:
    """Central differences (L(θ+h) − L(θ−h)) / 2h for every named parameter."""
    grads = {}
    for name in spec.parameters:
        up, down = dict(spec.parameters), dict(spec.parameters)
        up[name] += h
        down[name] -= h
        grads[name] = (loss(spec, up) - loss(spec, down)) / (2 * h)
    return grads
