"""An independent reference: the spec format's networks in plain NumPy, from the textbook.

Nothing here comes from backprop_explain (it imports nothing of it): the spec is read from
its documented structure (README, "The network description"), every layer kind, activation,
loss and optimizer is written from its definition, with explicit loops where that is the
definition (a convolution is a sum over window cells). Gradients are written twice: by
hand (the reverse pass of each definition, so they can be compared to 1e-9) and as central
finite differences of this module's forward pass (``numeric_gradients``), which check the
hand-written ones.

Conventions (the README's, which are PyTorch's):
- dense: z_j = Σ_i w[j][i]·x_i + b_j (no b_j with biases = false);
- conv2d: a cross-correlation, z[o,r,s] = Σ_c Σ_u Σ_v x_pad[c, r·sh+u, s·sw+v]·f[o,c,u,v] + b[o],
  zero padding (no b[o] with biases = false);
- max pooling: padded cells never win; on a tie the first maximum in row-major order takes
  the gradient; average pooling divides by kh·kw, padded zeros included;
- flatten: row-major, channels first;
- SGD: θ ← θ − η·g; momentum as torch.optim.SGD: v ← μ·v + g (v = g at the first step),
  θ ← θ − η·v; frozen parameters keep their value; mini-batches in order, the last one of
  an epoch smaller; a step's loss is the mean (or sum) of its examples' losses.
"""

from __future__ import annotations

import copy
import json
import math
import tomllib
from pathlib import Path

import numpy as np

ELEMENTWISE = ("identity", "sigmoid", "tanh", "relu", "leaky_relu")


# ---------------------------------------------------------------------------
# Activations and losses


def activate(kind: str, z: np.ndarray, slope: float = 0.01) -> np.ndarray:
    if kind == "identity":
        return z.copy()
    if kind == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if kind == "tanh":
        return np.tanh(z)
    if kind == "relu":
        return np.where(z > 0, z, 0.0)
    if kind == "leaky_relu":
        return np.where(z > 0, z, slope * z)
    if kind == "softmax":
        e = np.exp(z - z.max())
        return e / e.sum()
    raise ValueError(kind)


def activation_backward(kind: str, z: np.ndarray, a: np.ndarray, grad_a: np.ndarray,
                        slope: float = 0.01) -> np.ndarray:
    """∂E/∂z from ∂E/∂a. ReLU'(0) = 0 and LeakyReLU'(0) = slope (the z > 0 branch is open)."""
    if kind == "identity":
        return grad_a.copy()
    if kind == "sigmoid":
        return grad_a * a * (1 - a)
    if kind == "tanh":
        return grad_a * (1 - a ** 2)
    if kind == "relu":
        return np.where(z > 0, grad_a, 0.0)
    if kind == "leaky_relu":
        return np.where(z > 0, grad_a, slope * grad_a)
    if kind == "softmax":  # ∂a_i/∂z_j = a_i (δ_ij − a_j)
        jacobian = np.diag(a) - np.outer(a, a)
        return jacobian.T @ grad_a
    raise ValueError(kind)


def loss_terms(kind: str, out: np.ndarray, t: np.ndarray) -> np.ndarray:
    """E_k for each output k; the example's loss is their sum."""
    n = len(out)
    if kind == "half_squared_error":
        return 0.5 * (out - t) ** 2
    if kind == "squared_error":
        return (out - t) ** 2
    if kind == "mean_squared_error":
        return (out - t) ** 2 / n
    if kind == "cross_entropy":
        return -t * np.log(out)
    if kind == "binary_cross_entropy":
        return -(t * np.log(out) + (1 - t) * np.log(1 - out))
    if kind == "softmax_cross_entropy":  # −t_k ln softmax_k(z), the logits z given as out
        top = out.max()
        log_sum_exp = top + np.log(np.sum(np.exp(out - top)))
        return -t * (out - log_sum_exp)
    raise ValueError(kind)


def loss_value(kind: str, out: np.ndarray, t: np.ndarray) -> float:
    """One example's loss: the sum of its terms."""
    return float(np.sum(loss_terms(kind, out, t)))


def loss_backward(kind: str, out: np.ndarray, t: np.ndarray) -> np.ndarray:
    """∂(Σ_k E_k)/∂out."""
    n = len(out)
    if kind == "half_squared_error":
        return out - t
    if kind == "squared_error":
        return 2 * (out - t)
    if kind == "mean_squared_error":
        return 2 * (out - t) / n
    if kind == "cross_entropy":
        return -t / out
    if kind == "binary_cross_entropy":
        return -t / out + (1 - t) / (1 - out)
    if kind == "softmax_cross_entropy":
        e = np.exp(out - out.max())
        return e / e.sum() * t.sum() - t
    raise ValueError(kind)


# ---------------------------------------------------------------------------
# Layers: forward and backward, written from their definitions


def dense_forward(x, w, b):
    """b None: no bias."""
    units, inputs = w.shape
    z = np.zeros(units)
    for j in range(units):
        z[j] = sum(w[j, i] * x[i] for i in range(inputs)) + (b[j] if b is not None else 0.0)
    return z


def dense_backward(x, w, grad_z):
    """(∂E/∂w, ∂E/∂b, ∂E/∂x)."""
    units, inputs = w.shape
    grad_w = np.zeros_like(w)
    grad_x = np.zeros(inputs)
    for j in range(units):
        for i in range(inputs):
            grad_w[j, i] = grad_z[j] * x[i]
            grad_x[i] += w[j, i] * grad_z[j]
    return grad_w, grad_z.copy(), grad_x


def output_size(n_in: int, kernel: int, padding: int, stride: int) -> int:
    """H_out = (H_in − k + 2p)/s + 1, a whole number in a valid spec."""
    span = n_in - kernel + 2 * padding
    assert span >= 0 and span % stride == 0, (n_in, kernel, padding, stride)
    return span // stride + 1


def window_cells(r, s, kernel, stride, padding, rows, columns):
    """The window of output cell (r, s), row-major: (u, v, i, j), i = j = None when padded."""
    cells = []
    for u in range(kernel[0]):
        for v in range(kernel[1]):
            i = r * stride[0] + u - padding[0]
            j = s * stride[1] + v - padding[1]
            inside = 0 <= i < rows and 0 <= j < columns
            cells.append((u, v, i, j) if inside else (u, v, None, None))
    return cells


def conv2d_forward(x, f, b, stride, padding):
    """x (C, H, W), f (O, C, kh, kw), b (O,) or None."""
    channels, rows, columns = x.shape
    out_ch, _, kh, kw = f.shape
    h_out = output_size(rows, kh, padding[0], stride[0])
    w_out = output_size(columns, kw, padding[1], stride[1])
    z = np.zeros((out_ch, h_out, w_out))
    for o in range(out_ch):
        for r in range(h_out):
            for s in range(w_out):
                total = 0.0
                for c in range(channels):
                    for u, v, i, j in window_cells(r, s, (kh, kw), stride, padding, rows, columns):
                        if i is not None:  # a padded cell is a 0: its product drops out
                            total += x[c, i, j] * f[o, c, u, v]
                z[o, r, s] = total + (b[o] if b is not None else 0.0)
    return z


def conv2d_backward(x, f, grad_z, stride, padding):
    """(∂E/∂f, ∂E/∂b, ∂E/∂x): each product x·f of the sum sends ∂E/∂z to both factors."""
    channels, rows, columns = x.shape
    out_ch, _, kh, kw = f.shape
    grad_f, grad_x = np.zeros_like(f), np.zeros_like(x)
    grad_b = np.zeros(out_ch)
    for o in range(out_ch):
        for r in range(grad_z.shape[1]):
            for s in range(grad_z.shape[2]):
                g = grad_z[o, r, s]
                grad_b[o] += g
                for c in range(channels):
                    for u, v, i, j in window_cells(r, s, (kh, kw), stride, padding, rows, columns):
                        if i is not None:
                            grad_f[o, c, u, v] += g * x[c, i, j]
                            grad_x[c, i, j] += g * f[o, c, u, v]
    return grad_f, grad_b, grad_x


def pool_windows(x, kernel, stride, padding):
    """(c, r, s, cells inside the image) of every output cell of a pooling layer."""
    channels, rows, columns = x.shape
    h_out = output_size(rows, kernel[0], padding[0], stride[0])
    w_out = output_size(columns, kernel[1], padding[1], stride[1])
    for c in range(channels):
        for r in range(h_out):
            for s in range(w_out):
                cells = [(i, j) for _, _, i, j in
                         window_cells(r, s, kernel, stride, padding, rows, columns)
                         if i is not None]
                yield c, r, s, cells


def pool_shape(x_shape, kernel, stride, padding):
    channels, rows, columns = x_shape
    return (channels, output_size(rows, kernel[0], padding[0], stride[0]),
            output_size(columns, kernel[1], padding[1], stride[1]))


def first_maximum(x, c, cells):
    """The first cell (row-major) holding the window's maximum; padding (−∞) never wins."""
    best = None
    for i, j in cells:
        if best is None or x[c, i, j] > x[c, best[0], best[1]]:
            best = (i, j)
    return best


def maxpool_forward(x, kernel, stride, padding):
    y = np.zeros(pool_shape(x.shape, kernel, stride, padding))
    for c, r, s, cells in pool_windows(x, kernel, stride, padding):
        y[c, r, s] = max(x[c, i, j] for i, j in cells)
    return y


def maxpool_backward(x, grad_y, kernel, stride, padding):
    grad_x = np.zeros_like(x)
    for c, r, s, cells in pool_windows(x, kernel, stride, padding):
        i, j = first_maximum(x, c, cells)
        grad_x[c, i, j] += grad_y[c, r, s]
    return grad_x


def avgpool_forward(x, kernel, stride, padding):
    """The window's sum over kh·kw cells, padded zeros counted (count_include_pad=True)."""
    y = np.zeros(pool_shape(x.shape, kernel, stride, padding))
    for c, r, s, cells in pool_windows(x, kernel, stride, padding):
        y[c, r, s] = sum(x[c, i, j] for i, j in cells) / (kernel[0] * kernel[1])
    return y


def avgpool_backward(x, grad_y, kernel, stride, padding):
    grad_x = np.zeros_like(x)
    for c, r, s, cells in pool_windows(x, kernel, stride, padding):
        for i, j in cells:
            grad_x[c, i, j] += grad_y[c, r, s] / (kernel[0] * kernel[1])
    return grad_x


def flatten_forward(x):
    """Cell (c, r, s) of a C×H×W image goes to c·H·W + r·W + s."""
    channels, rows, columns = x.shape
    out = np.zeros(channels * rows * columns)
    for c in range(channels):
        for r in range(rows):
            for s in range(columns):
                out[c * rows * columns + r * columns + s] = x[c, r, s]
    return out


def flatten_backward(shape, grad_out):
    channels, rows, columns = shape
    grad = np.zeros(shape)
    for c in range(channels):
        for r in range(rows):
            for s in range(columns):
                grad[c, r, s] = grad_out[c * rows * columns + r * columns + s]
    return grad


# ---------------------------------------------------------------------------
# Reading a spec: the documented structure, its defaults and its naming scheme


def read_spec(spec) -> dict:
    """A spec dict from a dict (copied) or a .toml/.json path."""
    if isinstance(spec, dict):
        return copy.deepcopy(spec)
    path = Path(spec)
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    return tomllib.loads(path.read_text(encoding="utf-8"))


def shape_of(nested) -> tuple[int, ...]:
    shape = []
    while isinstance(nested, list):
        shape.append(len(nested))
        nested = nested[0]
    return tuple(shape)


def fill_names(given, shape, letters: str, default: str, layer: int | None = None):
    """An object array of names: a nested list as given, or a pattern filled with 1-based
    indices (#l the layer, then one letter per axis)."""
    given = default if given is None else given
    out = np.empty(shape, dtype=object)
    if isinstance(given, list):
        while len(shape_of(given)) < len(shape):  # a leading axis of size 1 left out
            given = [given]
        for index in np.ndindex(*shape):
            value = given
            for k in index:
                value = value[k]
            out[index] = value
        return out
    for index in np.ndindex(*shape):
        name = given if layer is None else given.replace("#l", str(layer))
        for letter, k in zip(letters, index):
            name = name.replace("#" + letter, str(k + 1))
        out[index] = name
    return out


def pair(value, default) -> tuple[int, int]:
    if value is None:
        return tuple(default)
    if isinstance(value, list):
        return tuple(value)
    return (value, value)


class Layer:
    """One layer: kind, geometry, parameter arrays and the names of its places."""

    def __init__(self, raw: dict, index: int, in_shape: tuple, n_examples: int):
        self.raw = raw
        self.index = index
        self.kind = raw["type"]
        self.in_shape = in_shape
        self.out_shape = in_shape
        self.activation = raw.get("activation", "identity")
        self.slope = raw.get("negative_slope", 0.01)
        self.frozen = bool(raw.get("frozen", False))
        self.params: dict[str, np.ndarray] = {}  # role -> values
        self.names: dict[str, np.ndarray] = {}  # role -> parameter names, same shape
        self.value_names: dict[str, np.ndarray] = {}  # role -> names of its quantities
        self.batch_names: dict[str, np.ndarray] = {}  # quantities shared by a mini-batch
        self.buffers: dict[str, float] = {}  # running statistics by name
        self.couples_examples = False
        names = raw.get("names", {})
        getattr(self, "_read_" + self.kind)(raw, names, n_examples)

    def _read_dense(self, raw, names, n_examples):
        (n_in,) = self.in_shape
        w = np.array(raw["weights"], dtype=float)
        units = raw.get("units", w.shape[0])
        sup = self.index
        self.params = {"weights": w.reshape(units, n_in)}
        self.names = {"weights": fill_names(names.get("weights"), (units, n_in), "ji",
                                            "w^{(#l)}_{#j,#i}", sup)}
        b = raw.get("biases", 0.0)
        if b is not False:  # false: no bias at all
            self.params["biases"] = (np.full(units, float(b)) if not isinstance(b, list)
                                     else np.array(b, dtype=float))
            self.names["biases"] = fill_names(names.get("biases"), (units,), "j",
                                              "b^{(#l)}_{#j}", sup)
        z = fill_names(names.get("pre_activations"), (units,), "j", "z^{(#l)}_{#j}", sup)
        a = fill_names(names.get("activations"), (units,), "j", "a^{(#l)}_{#j}", sup)
        if self.activation == "identity" and "activations" not in names:
            a = z
        self.value_names = {"pre_activation": z, "activation": a}
        self.out_shape = (units,)

    def _cnn_default(self, out_channels: int, in_channels: int) -> dict:
        sup = "" if self.index == 1 else "^{(#l)}"
        o = "#o," if out_channels > 1 else ""
        c = "#c," if in_channels > 1 else ""
        return {"filters": f"f{sup}_{{{o}{c}#r,#s}}",
                "biases": f"b{sup}_{{#o}}" if out_channels > 1 else f"b{sup}",
                "pre_activations": f"z{sup}_{{{o}#r,#s}}",
                "activations": f"a{sup}_{{{o}#r,#s}}",
                "outputs": f"p{sup}_{{{c}#r,#s}}"}

    def _read_conv2d(self, raw, names, n_examples):
        channels, rows, columns = self.in_shape
        f = np.array(raw["filters"], dtype=float)
        if f.ndim == 2:  # one filter on one channel, given as a grid
            f = f[None, None]
        out_ch, _, kh, kw = f.shape
        self.stride = pair(raw.get("stride"), (1, 1))
        self.padding = pair(raw.get("padding"), (0, 0))
        default = self._cnn_default(out_ch, channels)
        self.params["filters"] = f
        self.names["filters"] = fill_names(names.get("filters"), f.shape, "ocrs",
                                           default["filters"], self.index)
        b = raw.get("biases", 0.0)
        if b is not False:
            self.params["biases"] = (np.full(out_ch, float(b)) if not isinstance(b, list)
                                     else np.array(b, dtype=float))
            self.names["biases"] = fill_names(names.get("biases"), (out_ch,), "o",
                                              default["biases"], self.index)
        self.out_shape = (out_ch, output_size(rows, kh, self.padding[0], self.stride[0]),
                          output_size(columns, kw, self.padding[1], self.stride[1]))
        z = fill_names(names.get("pre_activations"), self.out_shape, "ors",
                       default["pre_activations"], self.index)
        a = fill_names(names.get("activations"), self.out_shape, "ors",
                       default["activations"], self.index)
        if self.activation == "identity" and "activations" not in names:
            a = z
        self.value_names = {"pre_activation": z, "activation": a}

    def _read_pool(self, raw, names, n_examples):
        self.kernel = pair(raw["kernel"], None)
        self.stride = pair(raw.get("stride"), self.kernel)
        self.padding = pair(raw.get("padding"), (0, 0))
        self.out_shape = pool_shape(self.in_shape, self.kernel, self.stride, self.padding)
        default = self._cnn_default(1, self.in_shape[0])["outputs"]
        self.value_names = {"output": fill_names(names.get("outputs"), self.out_shape, "crs",
                                                 default, self.index)}

    _read_maxpool2d = _read_avgpool2d = _read_pool

    def _read_flatten(self, raw, names, n_examples):
        self.out_shape = (math.prod(self.in_shape),)

    def _read_batchnorm(self, raw, names, n_examples):
        """nn.BatchNorm1d after a dense layer, nn.BatchNorm2d after a conv layer (README,
        "Batch normalization"): γ, β and the running statistics one per feature (channel)."""
        image = len(self.in_shape) == 3
        features = self.in_shape[0]
        self.mode = raw.get("mode", "train")
        self.couples_examples = self.mode == "train"
        self.eps = raw.get("eps", 1e-5)
        self.momentum = raw.get("momentum", 0.1)
        feature = "#c" if image else "#j"
        cell = ("#c,#r,#s" if features > 1 else "#r,#s") if image else "#j"
        per_feature, per_cell = ((features,), feature[1]), (self.in_shape,
                                                            "crs" if image else "j")

        def named(key, default, where):
            return fill_names(names.get(key), where[0], where[1], default, self.index)

        def vector(key, default):
            value = raw.get(key, default)
            return np.full(features, float(value)) if not isinstance(value, list) \
                else np.array(value, dtype=float)

        self.params = {"gamma": vector("gamma", 1.0), "beta": vector("beta", 0.0)}
        self.names = {
            "gamma": named("gamma", rf"\gamma^{{(#l)}}_{{{feature}}}", per_feature),
            "beta": named("beta", rf"\beta^{{(#l)}}_{{{feature}}}", per_feature)}
        self.running_names = {
            "mean": named("running_mean", rf"\mu^{{(#l)}}_{{\mathrm{{run}},{feature}}}",
                          per_feature),
            "variance": named("running_var",
                              rf"(\sigma^{{(#l)}}_{{\mathrm{{run}},{feature}}})^2", per_feature)}
        self.buffers = dict(zip(self.running_names["mean"], vector("running_mean", 0.0)))
        self.buffers.update(zip(self.running_names["variance"], vector("running_var", 1.0)))
        y = named("outputs", f"y^{{(#l)}}_{{{cell}}}", per_cell)
        a = named("activations", f"a^{{(#l)}}_{{{cell}}}", per_cell)
        if self.activation == "identity" and "activations" not in names:
            a = y
        self.value_names = {"normalized": named("normalized", rf"\hat{{x}}^{{(#l)}}_{{{cell}}}",
                                                per_cell),
                            "pre_activation": y, "activation": a}
        if self.mode == "train":
            self.batch_names = {
                "mean": named("mean", rf"\mu^{{(#l)}}_{{{feature}}}", per_feature),
                "variance": named("variance", rf"(\sigma^{{(#l)}}_{{{feature}}})^2",
                                  per_feature)}

    def _read_dropout(self, raw, names, n_examples):
        """nn.Dropout(p) with a fixed mask per example (README, "Dropout"): given, one for
        every example or one each, or drawn with numpy.random.default_rng(seed), a unit
        dropped when its uniform draw in [0, 1) is below p."""
        self.p = raw.get("p", 0.5)
        self.mode = raw.get("mode", "train")
        size = math.prod(self.in_shape)
        image = len(self.in_shape) == 3
        if self.mode != "train":
            return  # the identity: no quantity of its own
        if "mask" in raw:
            mask = np.array(raw["mask"], dtype=float)
            masks = mask.reshape(n_examples, size) if mask.ndim == len(self.in_shape) + 1 \
                else np.tile(mask.reshape(1, size), (n_examples, 1))
        else:
            draws = np.random.default_rng(raw["seed"]).random((n_examples, size))
            masks = (draws >= self.p).astype(float)
        self.masks = masks.reshape((n_examples,) + tuple(self.in_shape))
        cell = ("#c,#r,#s" if self.in_shape[0] > 1 else "#r,#s") if image else "#j"
        self.value_names = {"output": fill_names(names.get("outputs"), self.in_shape,
                                                 "crs" if image else "j",
                                                 f"d^{{(#l)}}_{{{cell}}}", self.index)}

    @property
    def has_activation(self) -> bool:
        return self.kind in ("dense", "conv2d", "batchnorm")

    # -- numbers: a mini-batch (B, ...) at a time ---------------------------------

    def forward(self, xs, p, indices, buffers):
        """(arrays by role, batch statistics by role, the layer's output before its
        activation) for the inputs ``xs`` of the examples ``indices``."""
        if self.kind == "dense":
            z = np.array([dense_forward(x, p["weights"], p.get("biases")) for x in xs])
            return {"pre_activation": z}, {}, z
        if self.kind == "conv2d":
            z = np.array([conv2d_forward(x, p["filters"], p.get("biases"), self.stride,
                                         self.padding) for x in xs])
            return {"pre_activation": z}, {}, z
        if self.kind in ("maxpool2d", "avgpool2d"):
            pool = maxpool_forward if self.kind == "maxpool2d" else avgpool_forward
            y = np.array([pool(x, self.kernel, self.stride, self.padding) for x in xs])
            return {"output": y}, {}, y
        if self.kind == "flatten":
            y = np.array([flatten_forward(x) for x in xs])
            return {}, {}, y
        if self.kind == "dropout":
            if self.mode != "train":
                return {}, {}, xs.copy()
            y = xs * self.masks[indices] / (1 - self.p)
            return {"output": y}, {}, y
        return self._batchnorm_forward(xs, p, buffers)

    def _feature_cells(self, xs, f):
        """The values of feature f over the batch: (B,) after dense, (B, H, W) after conv."""
        return xs[:, f]

    def _batchnorm_forward(self, xs, p, buffers):
        normalized, stats = np.zeros_like(xs), {"mean": [], "variance": [], "count": 0}
        for f in range(self.in_shape[0]):
            cells = self._feature_cells(xs, f)
            if self.mode == "train":
                mean = cells.mean()
                variance = ((cells - mean) ** 2).mean()  # biased: what normalizes
            else:
                mean = buffers[self.running_names["mean"][f]]
                variance = buffers[self.running_names["variance"][f]]
            normalized[:, f] = (cells - mean) / np.sqrt(variance + self.eps)
            stats["mean"].append(mean)
            stats["variance"].append(variance)
            stats["count"] = cells.size
        y = np.zeros_like(xs)
        for f in range(self.in_shape[0]):
            y[:, f] = p["gamma"][f] * normalized[:, f] + p["beta"][f]
        batch = ({"mean": np.array(stats["mean"]), "variance": np.array(stats["variance"]),
                  "count": stats["count"]} if self.mode == "train" else {})
        return {"normalized": normalized, "pre_activation": y}, batch, y

    def backward(self, record, p, grad, indices, adjoints):
        """(gradients by role, ∂E/∂input) from ∂E/∂(the output before the activation);
        ``adjoints`` receives ∂E/∂ of the layer's batch statistics."""
        xs = record["input"]
        if self.kind == "dense":
            parts = [dense_backward(x, p["weights"], g) for x, g in zip(xs, grad)]
            grads = {"weights": sum(q[0] for q in parts)}
            if "biases" in p:
                grads["biases"] = sum(q[1] for q in parts)
            return grads, np.array([q[2] for q in parts])
        if self.kind == "conv2d":
            parts = [conv2d_backward(x, p["filters"], g, self.stride, self.padding)
                     for x, g in zip(xs, grad)]
            grads = {"filters": sum(q[0] for q in parts)}
            if "biases" in p:
                grads["biases"] = sum(q[1] for q in parts)
            return grads, np.array([q[2] for q in parts])
        if self.kind == "maxpool2d":
            return {}, np.array([maxpool_backward(x, g, self.kernel, self.stride, self.padding)
                                 for x, g in zip(xs, grad)])
        if self.kind == "avgpool2d":
            return {}, np.array([avgpool_backward(x, g, self.kernel, self.stride, self.padding)
                                 for x, g in zip(xs, grad)])
        if self.kind == "flatten":
            return {}, np.array([flatten_backward(self.in_shape, g) for g in grad])
        if self.kind == "dropout":
            if self.mode != "train":
                return {}, grad.copy()
            return {}, grad * self.masks[indices] / (1 - self.p)
        return self._batchnorm_backward(record, p, grad, adjoints)

    def _batchnorm_backward(self, record, p, grad, adjoints):
        """The textbook reverse pass of x̂ = (x − μ)/√(σ² + ε), y = γ·x̂ + β: through x̂, σ²
        and μ in train mode (the statistics depend on every example), x̂ alone in eval."""
        xs, normalized = record["input"], record["normalized"]
        grads = {"gamma": np.zeros(self.in_shape[0]), "beta": np.zeros(self.in_shape[0])}
        grad_x = np.zeros_like(xs)
        for f in range(self.in_shape[0]):
            g, xhat, x = grad[:, f], normalized[:, f], xs[:, f]
            grads["gamma"][f] = np.sum(g * xhat)
            grads["beta"][f] = np.sum(g)
            grad_xhat = g * p["gamma"][f]
            if self.mode != "train":
                variance = record["running_variance"][f]
                grad_x[:, f] = grad_xhat / np.sqrt(variance + self.eps)
                continue
            mean, variance = record["mean"][f], record["variance"][f]
            m = x.size
            std = np.sqrt(variance + self.eps)
            grad_variance = np.sum(grad_xhat * (x - mean)) * -0.5 * std ** -3
            grad_mean = -np.sum(grad_xhat) / std + grad_variance * -2 * np.sum(x - mean) / m
            grad_x[:, f] = grad_xhat / std + grad_variance * 2 * (x - mean) / m + grad_mean / m
            adjoints[self.batch_names["mean"][f]] = float(grad_mean)
            adjoints[self.batch_names["variance"][f]] = float(grad_variance)
        return grads, grad_x


class Network:
    """A spec's network: parameters by name (one name in several places is one parameter),
    examples, training settings; forward, backward and training from the definitions."""

    def __init__(self, spec):
        data = read_spec(spec)
        self.data = data
        inputs = data.get("inputs", {})
        if "shape" in inputs:
            shape = tuple(inputs["shape"])
        elif "values" in inputs:
            shape = shape_of(inputs["values"])
        else:
            shape = (inputs["size"],)
        if len(shape) == 2:
            shape = (1,) + shape
        self.input_shape = shape
        default_inputs = ("x_{#i}" if len(shape) == 1
                          else "x_{#r,#s}" if shape[0] == 1 else "x^{(#c)}_{#r,#s}")
        self.input_names = fill_names(inputs.get("names"), shape,
                                      "i" if len(shape) == 1 else "crs", default_inputs)
        loss = data["loss"]
        if "examples" in data:
            raw = [(e["inputs"], e["targets"]) for e in data["examples"]]
        else:
            raw = [(inputs["values"], loss["targets"])]
        self.examples = [(np.array(x, dtype=float).reshape(shape), np.array(t, dtype=float))
                         for x, t in raw]
        self.layers = []
        in_shape = shape
        for k, layer_table in enumerate(data["layers"]):
            layer = Layer(layer_table, k + 1, in_shape, len(self.examples))
            self.layers.append(layer)
            in_shape = layer.out_shape
        self.couples_examples = any(layer.couples_examples for layer in self.layers)
        self.loss_kind = loss["type"]
        n_out = in_shape[0]
        names = loss.get("names", {})
        self.term_names = fill_names(names.get("terms"), (n_out,), "j", "E_{#j}")
        self.total_name = names.get("total", "E")
        self.target_names = fill_names(names.get("targets"), (n_out,), "j", "t_{#j}")
        # parameters by name, in order of first appearance
        self.parameters: dict[str, float] = {}
        self.buffers: dict[str, float] = {}
        for layer in self.layers:
            for role, names_ in layer.names.items():
                for index in np.ndindex(*names_.shape):
                    self.parameters.setdefault(names_[index], float(layer.params[role][index]))
            self.buffers.update(layer.buffers)
        training = data.get("training", {})
        self.optimizer = Optimizer(training)
        self.reduction = training.get("reduction", "mean")
        self.steps = training.get("steps", 1)
        self.epochs = training.get("epochs")
        self.batch_size = training.get("batch_size")
        self.frozen = set(training.get("frozen", []))
        for layer in self.layers:
            if layer.frozen:
                for names_ in layer.names.values():
                    self.frozen.update(names_.ravel())

    @property
    def momentum(self) -> float:
        return self.optimizer.settings.get("momentum", 0.0)

    # -- parameters ---------------------------------------------------------

    def layer_arrays(self, params: dict[str, float]) -> list[dict[str, np.ndarray]]:
        """Each layer's parameter arrays filled from values by name."""
        out = []
        for layer in self.layers:
            arrays = {}
            for role, names in layer.names.items():
                arrays[role] = np.vectorize(params.__getitem__, otypes=[float])(names)
            out.append(arrays)
        return out

    def by_name(self, layer_grads) -> dict[str, float]:
        """Gradients by name: a shared name gets the sum over its places."""
        total = {name: 0.0 for name in self.parameters}
        for layer, grads in zip(self.layers, layer_grads):
            for role, names in layer.names.items():
                for index in np.ndindex(*names.shape):
                    total[names[index]] += float(grads[role][index])
        return total

    # -- a mini-batch -------------------------------------------------------

    def _indices(self, indices):
        return list(range(len(self.examples))) if indices is None else list(indices)

    def forward(self, params, indices=None, inputs=None, buffers=None) -> dict:
        """Every layer's arrays over the mini-batch ``indices`` (all examples by default;
        ``inputs`` in place of theirs), the loss terms, each example's loss and the batch
        statistics of the layers that have some."""
        indices = self._indices(indices)
        buffers = self.buffers if buffers is None else buffers
        arrays = self.layer_arrays(params)
        a = (np.array([self.examples[k][0] for k in indices]) if inputs is None
             else np.asarray(inputs, dtype=float))
        targets = np.array([self.examples[k][1] for k in indices])
        records = []
        for layer, p in zip(self.layers, arrays):
            values, stats, y = layer.forward(a, p, indices, buffers)
            record = {"input": a, **values, **stats}
            if layer.kind == "batchnorm" and layer.mode != "train":
                record["running_variance"] = [buffers[n] for n in layer.running_names["variance"]]
            if layer.has_activation:
                y = np.array([activate(layer.activation, row, layer.slope) for row in y])
                record["activation"] = y
            records.append(record)
            a = y
        terms = np.array([loss_terms(self.loss_kind, out, t) for out, t in zip(a, targets)])
        return {"layers": records, "arrays": arrays, "output": a, "targets": targets,
                "terms": terms, "losses": terms.sum(axis=1), "indices": indices}

    def combine(self, values):
        return sum(values) / len(values) if self.reduction == "mean" else sum(values)

    def batch_loss(self, params, indices=None, buffers=None) -> float:
        return float(self.combine(list(self.forward(params, indices, buffers=buffers)["losses"])))

    def values(self, params, indices=None) -> list[dict[str, float]]:
        """Every named quantity of each example of the mini-batch: inputs, the layers'
        values, loss terms and loss; a batch statistic appears in each example's."""
        run = self.forward(params, indices)
        out = []
        for b in range(len(run["indices"])):
            values = dict(zip(self.input_names.ravel(), run["layers"][0]["input"][b].ravel()
                              .tolist()))
            for layer, record in zip(self.layers, run["layers"]):
                for role, names in layer.value_names.items():
                    values.update(zip(names.ravel(), record[role][b].ravel().tolist()))
                for role, names in layer.batch_names.items():
                    values.update(zip(names.ravel(), record[role].tolist()))
            values.update(zip(self.term_names, run["terms"][b].tolist()))
            values[self.total_name] = float(run["losses"][b])
            out.append(values)
        return out

    def backward(self, params, indices=None, inputs=None) -> dict:
        """The reverse pass of the mini-batch's loss (the mean or the sum of its examples'):
        per-layer gradients, ∂E/∂inputs (B, ...), and ∂E/∂q of every named quantity q, for
        each example (a batch statistic's in each)."""
        run = self.forward(params, indices, inputs)
        weight = 1 / len(run["indices"]) if self.reduction == "mean" else 1.0
        grad = np.array([loss_backward(self.loss_kind, out, t) * weight
                         for out, t in zip(run["output"], run["targets"])])
        layer_grads = [None] * len(self.layers)
        per_example = [dict() for _ in run["indices"]]
        shared: dict[str, float] = {}
        for k in range(len(self.layers) - 1, -1, -1):
            layer, record, p = self.layers[k], run["layers"][k], run["arrays"][k]
            seen = {"activation" if layer.has_activation else "output": grad}
            if layer.has_activation:
                grad = np.array([activation_backward(layer.activation, z, a, g, layer.slope)
                                 for z, a, g in zip(record["pre_activation"],
                                                    record["activation"], grad)])
                seen["pre_activation"] = grad
            layer_grads[k], grad_input = layer.backward(record, p, grad, run["indices"],
                                                        shared)
            if layer.kind == "batchnorm":  # ∂E/∂x̂ = γ·∂E/∂y
                seen["normalized"] = grad * np.reshape(
                    p["gamma"], (1, -1) + (1,) * (grad.ndim - 2))
            for role, names in layer.value_names.items():
                for b, adjoints in enumerate(per_example):
                    adjoints.update(zip(names.ravel(), seen[role][b].ravel().tolist()))
            grad = grad_input
        for adjoints in per_example:
            adjoints.update(shared)
        return {"layers": layer_grads, "inputs": grad, "adjoints": per_example,
                "batch": run}

    def adjoints(self, params, indices=None) -> list[dict[str, float]]:
        """∂E/∂q for every named quantity q of the layers, for each example of the batch."""
        return self.backward(params, indices)["adjoints"]

    def gradients(self, params, indices=None) -> dict[str, float]:
        """∂(batch loss)/∂θ by name, combined over the examples (mean or sum)."""
        return self.by_name(self.backward(params, indices)["layers"])

    def numeric_gradients(self, params, indices=None, h: float = 1e-6) -> dict[str, float]:
        """Central differences (L(θ+h) − L(θ−h)) / 2h of the batch loss, name by name."""
        grads = {}
        for name in params:
            up, down = dict(params), dict(params)
            up[name] += h
            down[name] -= h
            grads[name] = (self.batch_loss(up, indices) - self.batch_loss(down, indices)) / (2 * h)
        return grads

    def numeric_input_gradient(self, params, indices=None, h: float = 1e-6):
        """Central differences of the batch loss with respect to every input value."""
        indices = self._indices(indices)
        x = np.array([self.examples[k][0] for k in indices])
        grad = np.zeros_like(x)
        for index in np.ndindex(*x.shape):
            up, down = x.copy(), x.copy()
            up[index] += h
            down[index] -= h
            grad[index] = (self.combine(list(self.forward(params, indices, up)["losses"]))
                           - self.combine(list(self.forward(params, indices, down)["losses"]))
                           ) / (2 * h)
        return grad

    def kink_distance(self, params, indices=None) -> float:
        """How far the forward pass is from a point where it is not differentiable (a ReLU
        at 0, a max-pool tie) or bends sharply (a batch variance near 0): finite differences
        need more than their step h of it."""
        run = self.forward(params, indices)
        distance = math.inf
        for layer, record in zip(self.layers, run["layers"]):
            if layer.has_activation and layer.activation in ("relu", "leaky_relu"):
                distance = min(distance, np.abs(record["pre_activation"]).min())
            if layer.kind == "batchnorm" and layer.mode == "train":
                distance = min(distance, record["variance"].min())
            if layer.kind == "maxpool2d":
                for x in record["input"]:
                    for c, _, _, cells in pool_windows(x, layer.kernel, layer.stride,
                                                       layer.padding):
                        ranked = sorted((x[c, i, j] for i, j in cells), reverse=True)
                        if len(ranked) > 1:
                            distance = min(distance, ranked[0] - ranked[1])
        return distance

    # -- training -----------------------------------------------------------

    def schedule(self) -> list[tuple[int, list[int]]]:
        """(epoch, example indices) of every step: batches in order, the last one smaller."""
        n = len(self.examples)
        size = self.batch_size or n
        per_epoch = math.ceil(n / size)
        total = self.epochs * per_epoch if self.epochs is not None else self.steps
        out = []
        for k in range(total):
            start = (k % per_epoch) * size
            out.append((k // per_epoch + 1, list(range(start, min(start + size, n)))))
        return out

    def updated_buffers(self, run, buffers) -> dict[str, float]:
        """PyTorch's running statistics after a train-mode forward pass: μ_run ← (1 − m)·μ_run
        + m·μ_B, σ²_run ← (1 − m)·σ²_run + m·σ²_B·n/(n − 1) (the unbiased variance)."""
        new = dict(buffers)
        for layer, record in zip(self.layers, run["layers"]):
            if layer.kind != "batchnorm" or layer.mode != "train":
                continue
            n, m = record["count"], layer.momentum
            for f in range(layer.in_shape[0]):
                mean, var = layer.running_names["mean"][f], layer.running_names["variance"][f]
                new[mean] = (1 - m) * buffers[mean] + m * record["mean"][f]
                new[var] = (1 - m) * buffers[var] + m * record["variance"][f] * n / (n - 1)
        return new

    def train(self, follow: list[dict] | None = None, gradients=None) -> dict:
        """Every step of the spec's schedule: history (the loss before each step), the
        parameters and running statistics after each step, the optimizer's state, and the
        loss on every example after the last step. ``follow``: the parameters after each
        step of another run, each step then taken from there, with ``gradients(parameters,
        indices, buffers)`` if given (checks every step of an optimizer alone)."""
        params, buffers = dict(self.parameters), dict(self.buffers)
        state: dict = {}
        history, after, batches, buffer_history, shown = [], [], [], [], []
        for k, (epoch, indices) in enumerate(self.schedule()):
            if follow and k:
                params = dict(follow[k - 1])
            backward = self.backward(params, indices)
            run = backward["batch"]
            history.append(float(self.combine(list(run["losses"]))))
            grads = (gradients(params, indices, buffers) if gradients
                     else self.by_name(backward["layers"]))
            buffers = self.updated_buffers(run, buffers)
            params, seen = self.optimizer.step(params, grads, state, self.frozen)
            after.append(params)
            shown.append(seen)
            buffer_history.append(buffers)
            batches.append((epoch, [k + 1 for k in indices]))
        final = dict(follow[-1]) if follow else params
        return {"history": history, "parameters": after, "batches": batches,
                "buffers": buffer_history, "state": shown,
                "loss_after": self.batch_loss(final, buffers=buffers)}


class Optimizer:
    """The update rules of torch.optim's documented algorithms (README, "Optimizers"), on
    parameters by name; frozen parameters keep their value and have no state."""

    def __init__(self, training: dict):
        self.name = training.get("optimizer", "sgd")
        if self.name not in ("sgd", "adam", "adamw"):  # a new optimizer: write it here first
            raise NotImplementedError(f"reference: no optimizer {self.name!r}")
        adam = self.name != "sgd"
        self.learning_rate = training.get("learning_rate", 1e-3 if adam else None)
        if adam:
            self.settings = {"betas": tuple(training.get("betas", (0.9, 0.999))),
                             "eps": training.get("eps", 1e-8),
                             "weight_decay": training.get(
                                 "weight_decay", 0.01 if self.name == "adamw" else 0.0),
                             "amsgrad": training.get("amsgrad", False)}
        else:
            self.settings = {key: training.get(key, default) for key, default in (
                ("momentum", 0.0), ("dampening", 0.0), ("nesterov", False),
                ("weight_decay", 0.0))}

    def step(self, params, grads, state, frozen):
        """(the new parameters, what each parameter's update used: g, v or m, v)."""
        new, seen = dict(params), {}
        for name, g in grads.items():
            if name not in frozen:
                new[name], seen[name] = getattr(self, self.name)(params[name], g, state, name)
        return new, seen

    def sgd(self, theta, g, state, name):
        """g ← g + λθ; v ← μv + (1 − d)g (v = g at the first step); θ ← θ − η·v, or with
        Nesterov θ ← θ − η·(g + μv); without momentum θ ← θ − η·g."""
        s, eta = self.settings, self.learning_rate
        g = g + s["weight_decay"] * theta
        if not s["momentum"]:
            return theta - eta * g, {"g": g}
        v = s["momentum"] * state[name] + (1 - s["dampening"]) * g if name in state else g
        state[name] = v
        step = g + s["momentum"] * v if s["nesterov"] else v
        return theta - eta * step, {"g": g, "v": v}

    def adam(self, theta, g, state, name, decoupled=False):
        """g ← g + λθ (AdamW: θ ← θ(1 − ηλ) instead); m ← β₁m + (1 − β₁)g,
        v ← β₂v + (1 − β₂)g² (0 before step 1); θ ← θ − η·m̂/(√v̂ + ε), m̂ = m/(1 − β₁ᵗ),
        v̂ = v/(1 − β₂ᵗ) at step t; AMSGrad: v̂ = v_max/(1 − β₂ᵗ), v_max the largest v of
        the steps so far."""
        (beta1, beta2), eps, decay = (self.settings["betas"], self.settings["eps"],
                                      self.settings["weight_decay"])
        eta = self.learning_rate
        if decoupled:
            theta = theta * (1 - eta * decay)
        else:
            g = g + decay * theta
        m, v, t, seen = state.get(name, (0.0, 0.0, 0, []))
        t += 1
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        seen = seen + [v]
        state[name] = (m, v, t, seen)
        m_hat = m / (1 - beta1 ** t)
        v_hat = (max(seen) if self.settings["amsgrad"] else v) / (1 - beta2 ** t)
        return theta - eta * m_hat / (math.sqrt(v_hat) + eps), {"g": g, "m": m, "v": v}

    def adamw(self, theta, g, state, name):
        return self.adam(theta, g, state, name, decoupled=True)
