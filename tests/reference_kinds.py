"""Independent plain-NumPy references for the newer kinds: the optimizers (SGD with its
variants, Adam, AdamW), written from the algorithms in PyTorch's documentation, and a
mini-batch forward pass through every layer kind, batch normalization and dropout
included (batch normalization couples the examples, so the loss of a batch is computed
in one pass; dropout applies each example's fixed mask as x · mask / (1 − p)).

Like tests/reference.py (whose activations and losses it uses) it imports nothing from
the package: each function is the
textbook rule on arrays, so comparing the package with it checks the package, not a copy
of itself.
"""

from __future__ import annotations

import numpy as np

from reference import activate, finite_difference_gradients, loss_value

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


# ---------------------------------------------------------------------------
# Networks: a whole mini-batch forward in plain NumPy, layer by layer, from the spec's
# layers' attributes (names, sizes, settings) and parameter values by name.


def _activate(kind: str, y: np.ndarray, slope: float = 0.01) -> np.ndarray:
    """tests/reference.py's activation, row by row (softmax over each row's last axis)."""
    rows = y.reshape(-1, y.shape[-1])
    return np.array([activate(kind, row, slope) for row in rows]).reshape(y.shape)


def _conv(x, filters, biases, stride, padding):
    """Cross-correlation of a batch (B, C, H, W) with filters (O, C, kh, kw)."""
    ph, pw = padding
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out, _, kh, kw = filters.shape
    rows = (x.shape[2] - kh) // stride[0] + 1
    cols = (x.shape[3] - kw) // stride[1] + 1
    z = np.zeros((x.shape[0], out, rows, cols))
    for r in range(rows):
        for s in range(cols):
            window = x[:, :, r * stride[0]:r * stride[0] + kh, s * stride[1]:s * stride[1] + kw]
            z[:, :, r, s] = np.einsum("bcuv,ocuv->bo", window, filters) + biases
    return z


def _pool(x, kind, kernel, stride, padding):
    ph, pw = padding
    fill = -np.inf if kind == "maxpool2d" else 0.0
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    rows = (x.shape[2] - kernel[0]) // stride[0] + 1
    cols = (x.shape[3] - kernel[1]) // stride[1] + 1
    out = np.zeros(x.shape[:2] + (rows, cols))
    for r in range(rows):
        for s in range(cols):
            window = x[:, :, r * stride[0]:r * stride[0] + kernel[0],
                       s * stride[1]:s * stride[1] + kernel[1]]
            out[:, :, r, s] = (window.max(axis=(2, 3)) if kind == "maxpool2d"
                               else window.mean(axis=(2, 3)))
    return out


def batchnorm(x, gamma, beta, eps, train, running_mean, running_var):
    """nn.BatchNorm1d (x: (B, F)) or nn.BatchNorm2d (x: (B, C, H, W)) as documented:
    the normalized output and, in train mode, the biased batch mean and variance."""
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    shape = (1, -1) if x.ndim == 2 else (1, -1, 1, 1)
    if train:
        mean = x.mean(axis=axes)
        var = x.var(axis=axes)  # biased: what normalizes
    else:
        mean, var = np.asarray(running_mean), np.asarray(running_var)
    normalized = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    return gamma.reshape(shape) * normalized + beta.reshape(shape), mean, var


def running_statistics(mean, var, count, momentum, running_mean, running_var):
    """PyTorch's update: the unbiased variance of the batch for the running variance."""
    return ((1 - momentum) * np.asarray(running_mean) + momentum * mean,
            (1 - momentum) * np.asarray(running_var) + momentum * var * count / (count - 1))


def _values(params, names):
    return np.vectorize(lambda n: params[n], otypes=[float])(np.array(names, dtype=object))


def network_outputs(spec, params: dict, inputs, indices=None):
    """The outputs of a batch (B, *input shape) through the spec's layers (dense, conv2d,
    pooling, flatten, batchnorm, dropout); ``indices``: the examples' positions in the spec
    (their dropout masks)."""
    x = np.asarray(inputs, dtype=float)
    indices = list(range(len(x))) if indices is None else list(indices)
    for layer in spec.layers:
        kind = layer.kind
        if kind == "dense":
            w, b = _values(params, layer.weight_names), _values(params, layer.bias_names)
            x = _activate(layer.activation, x.reshape(len(x), -1) @ w.T + b,
                          layer.negative_slope)
        elif kind == "conv2d":
            f = _values(params, layer.filter_names)
            b = (_values(params, layer.bias_names) if layer.bias_names
                 else np.zeros(f.shape[0]))
            x = _activate(layer.activation, _conv(x, f, b, layer.stride, layer.padding),
                          layer.negative_slope)
        elif kind in ("maxpool2d", "avgpool2d"):
            x = _pool(x, kind, layer.kernel, layer.stride, layer.padding)
        elif kind == "flatten":
            x = x.reshape(len(x), -1)
        elif kind == "batchnorm":
            y, _, _ = batchnorm(
                x, _values(params, layer.gamma_names), _values(params, layer.beta_names),
                layer.eps, layer.mode == "train",
                [layer.running[n] for n in layer.running_mean_names],
                [layer.running[n] for n in layer.running_var_names])
            x = _activate(layer.activation, y, layer.negative_slope)
        elif kind == "dropout":
            if layer.mode == "train":  # the examples' fixed masks, inverted scaling
                mask = np.array([layer.masks[k] for k in indices]).reshape(x.shape)
                x = x * mask / (1 - layer.p)
        else:
            raise ValueError(kind)
    return x


def network_loss(spec, params: dict, indices=None) -> float:
    """The loss of a mini-batch of the spec's examples (all of them by default), the mean
    or the sum of the examples' losses, the whole batch in one forward pass (batch
    normalization couples the examples)."""
    indices = list(range(len(spec.examples))) if indices is None else list(indices)
    x = np.array([np.reshape(spec.examples[k].inputs, spec.input_shape) for k in indices])
    t = np.array([spec.examples[k].targets for k in indices])
    outputs = network_outputs(spec, params, x, indices)
    per_example = np.array([loss_value(spec.loss.kind, o, y) for o, y in zip(outputs, t)])
    return float(per_example.mean() if spec.reduction == "mean" else per_example.sum())


def finite_differences(spec, h: float = 1e-6) -> dict[str, float]:
    """Central differences of network_loss for every named parameter."""
    return finite_difference_gradients(spec, network_loss, h)
