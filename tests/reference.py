"""An independent reference: the spec format's networks in plain NumPy, from the textbook.

Nothing here comes from backprop_explain (it imports nothing of it): the spec is read from
its documented structure (README, "The network description"), every layer kind, activation,
loss and optimizer is written from its definition, with explicit loops where that is the
definition (a convolution is a sum over window cells). Gradients are written twice: by
hand (the reverse pass of each definition, so they can be compared to 1e-9) and as central
finite differences of this module's forward pass (``numeric_gradients``), which check the
hand-written ones.

Conventions (the README's, which are PyTorch's):
- dense: z_j = Σ_i w[j][i]·x_i + b_j;
- conv2d: a cross-correlation, z[o,r,s] = Σ_c Σ_u Σ_v x_pad[c, r·sh+u, s·sw+v]·f[o,c,u,v] + b[o],
  zero padding;
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
    units, inputs = w.shape
    z = np.zeros(units)
    for j in range(units):
        z[j] = sum(w[j, i] * x[i] for i in range(inputs)) + b[j]
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

    def __init__(self, raw: dict, index: int, in_shape: tuple):
        self.raw = raw
        self.index = index
        self.kind = raw["type"]
        self.in_shape = in_shape
        self.activation = raw.get("activation", "identity")
        self.slope = raw.get("negative_slope", 0.01)
        self.frozen = bool(raw.get("frozen", False))
        self.params: dict[str, np.ndarray] = {}  # role -> values
        self.names: dict[str, np.ndarray] = {}  # role -> parameter names, same shape
        self.value_names: dict[str, np.ndarray] = {}  # pre_activation / activation / output
        names = raw.get("names", {})
        getattr(self, "_read_" + self.kind)(raw, names)

    def _read_dense(self, raw, names):
        (n_in,) = self.in_shape
        w = np.array(raw["weights"], dtype=float)
        units = raw.get("units", w.shape[0])
        b = raw.get("biases", 0.0)
        b = np.full(units, float(b)) if not isinstance(b, list) else np.array(b, dtype=float)
        self.params = {"weights": w.reshape(units, n_in), "biases": b}
        sup = self.index
        self.names = {
            "weights": fill_names(names.get("weights"), (units, n_in), "ji",
                                  "w^{(#l)}_{#j,#i}", sup),
            "biases": fill_names(names.get("biases"), (units,), "j", "b^{(#l)}_{#j}", sup)}
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

    def _read_conv2d(self, raw, names):
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

    def _read_pool(self, raw, names):
        self.kernel = pair(raw["kernel"], None)
        self.stride = pair(raw.get("stride"), self.kernel)
        self.padding = pair(raw.get("padding"), (0, 0))
        self.out_shape = pool_shape(self.in_shape, self.kernel, self.stride, self.padding)
        default = self._cnn_default(1, self.in_shape[0])["outputs"]
        self.value_names = {"output": fill_names(names.get("outputs"), self.out_shape, "crs",
                                                 default, self.index)}

    _read_maxpool2d = _read_avgpool2d = _read_pool

    def _read_flatten(self, raw, names):
        self.out_shape = (math.prod(self.in_shape),)

    # -- numbers ------------------------------------------------------------

    def forward(self, x, p):
        """(values by role, the layer's output) for input x and parameter arrays p."""
        if self.kind == "dense":
            z = dense_forward(x, p["weights"], p["biases"])
            return {"pre_activation": z}, z
        if self.kind == "conv2d":
            z = conv2d_forward(x, p["filters"], p.get("biases"), self.stride, self.padding)
            return {"pre_activation": z}, z
        if self.kind == "maxpool2d":
            y = maxpool_forward(x, self.kernel, self.stride, self.padding)
            return {"output": y}, y
        if self.kind == "avgpool2d":
            y = avgpool_forward(x, self.kernel, self.stride, self.padding)
            return {"output": y}, y
        y = flatten_forward(x)
        return {}, y

    def backward(self, x, p, grad_y):
        """(gradients by role, ∂E/∂x) from ∂E/∂(pre-activation or output)."""
        if self.kind == "dense":
            gw, gb, gx = dense_backward(x, p["weights"], grad_y)
            return {"weights": gw, "biases": gb}, gx
        if self.kind == "conv2d":
            gf, gb, gx = conv2d_backward(x, p["filters"], grad_y, self.stride, self.padding)
            grads = {"filters": gf}
            if "biases" in p:
                grads["biases"] = gb
            return grads, gx
        if self.kind == "maxpool2d":
            return {}, maxpool_backward(x, grad_y, self.kernel, self.stride, self.padding)
        if self.kind == "avgpool2d":
            return {}, avgpool_backward(x, grad_y, self.kernel, self.stride, self.padding)
        return {}, flatten_backward(self.in_shape, grad_y)

    @property
    def has_activation(self) -> bool:
        return self.kind in ("dense", "conv2d")


class Network:
    """A spec's network: parameters by name (one name in several places is one parameter),
    examples, training settings; forward, backward and SGD training from the definitions."""

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
        self.layers = []
        in_shape = shape
        for k, raw in enumerate(data["layers"]):
            layer = Layer(raw, k + 1, in_shape)
            self.layers.append(layer)
            in_shape = layer.out_shape
        loss = data["loss"]
        self.loss_kind = loss["type"]
        n_out = in_shape[0]
        names = loss.get("names", {})
        self.term_names = fill_names(names.get("terms"), (n_out,), "j", "E_{#j}")
        self.total_name = names.get("total", "E")
        self.target_names = fill_names(names.get("targets"), (n_out,), "j", "t_{#j}")
        if "examples" in data:
            raw = [(e["inputs"], e["targets"]) for e in data["examples"]]
        else:
            raw = [(inputs["values"], loss["targets"])]
        self.examples = [(np.array(x, dtype=float).reshape(shape), np.array(t, dtype=float))
                         for x, t in raw]
        # parameters by name, in order of first appearance
        self.parameters: dict[str, float] = {}
        for layer in self.layers:
            for role, names_ in layer.names.items():
                for index in np.ndindex(*names_.shape):
                    self.parameters.setdefault(names_[index], float(layer.params[role][index]))
        training = data.get("training", {})
        if training.get("optimizer", "sgd") != "sgd":  # a new optimizer: write it here first
            raise NotImplementedError(f"reference: no optimizer {training['optimizer']!r}")
        self.learning_rate = training["learning_rate"]
        self.momentum = training.get("momentum", 0.0)
        self.reduction = training.get("reduction", "mean")
        self.steps = training.get("steps", 1)
        self.epochs = training.get("epochs")
        self.batch_size = training.get("batch_size")
        self.frozen = set(training.get("frozen", []))
        for layer in self.layers:
            if layer.frozen:
                for names_ in layer.names.values():
                    self.frozen.update(names_.ravel())

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

    # -- one example --------------------------------------------------------

    def forward(self, params: dict[str, float], x, t) -> dict:
        """Every layer's arrays, the loss terms and the loss of one example."""
        arrays = self.layer_arrays(params)
        a = np.array(x, dtype=float).reshape(self.input_shape)
        record = []
        for layer, p in zip(self.layers, arrays):
            values, y = layer.forward(a, p)
            if layer.has_activation:
                values["activation"] = activate(layer.activation, y, layer.slope)
                y = values["activation"]
            record.append({"input": a, **values})
            a = y
        terms = loss_terms(self.loss_kind, a, np.array(t, dtype=float))
        return {"layers": record, "arrays": arrays, "output": a, "terms": terms,
                "loss": float(np.sum(terms))}

    def values(self, params, x, t) -> dict[str, float]:
        """Every named quantity of one example: inputs, layers' values, loss terms, loss."""
        run = self.forward(params, x, t)
        out = dict(zip(self.input_names.ravel(), np.ravel(x).tolist()))
        for layer, record in zip(self.layers, run["layers"]):
            for role, names in layer.value_names.items():
                out.update(zip(names.ravel(), record[role].ravel().tolist()))
        out.update(zip(self.term_names, run["terms"].tolist()))
        out[self.total_name] = run["loss"]
        return out

    def backward(self, params, x, t, adjoints: dict | None = None):
        """(per-layer gradients, ∂E/∂input) of one example's loss, by the reverse pass;
        ``adjoints``, if given, receives ∂E/∂q of every named quantity q of the layers."""
        run = self.forward(params, x, t)
        grad = loss_backward(self.loss_kind, run["output"], np.array(t, dtype=float))
        layer_grads = [None] * len(self.layers)
        for k in range(len(self.layers) - 1, -1, -1):
            layer, record, p = self.layers[k], run["layers"][k], run["arrays"][k]
            seen = {"activation" if layer.has_activation else "output": grad}
            if layer.has_activation:
                grad = activation_backward(layer.activation, record["pre_activation"],
                                           record["activation"], grad, layer.slope)
                seen["pre_activation"] = grad
            if adjoints is not None:
                for role, names in layer.value_names.items():
                    adjoints.update(zip(names.ravel(), seen[role].ravel().tolist()))
            layer_grads[k], grad = layer.backward(record["input"], p, grad)
        return layer_grads, grad

    def adjoints(self, params, x, t) -> dict[str, float]:
        """∂E/∂q for every named quantity q of the layers, for one example."""
        out: dict[str, float] = {}
        self.backward(params, x, t, out)
        return out

    # -- a batch ------------------------------------------------------------

    def combine(self, values):
        return sum(values) / len(values) if self.reduction == "mean" else sum(values)

    def batch_loss(self, params, indices=None) -> float:
        indices = range(len(self.examples)) if indices is None else indices
        return self.combine([self.forward(params, *self.examples[k])["loss"] for k in indices])

    def gradients(self, params, indices=None) -> dict[str, float]:
        """∂(batch loss)/∂θ by name, combined over the examples (mean or sum)."""
        indices = range(len(self.examples)) if indices is None else indices
        per_example = [self.by_name(self.backward(params, *self.examples[k])[0])
                       for k in indices]
        return {n: self.combine([g[n] for g in per_example]) for n in self.parameters}

    def numeric_gradients(self, params, indices=None, h: float = 1e-6) -> dict[str, float]:
        """Central differences (L(θ+h) − L(θ−h)) / 2h of the batch loss, name by name."""
        out = {}
        for name in self.parameters:
            up, down = dict(params), dict(params)
            up[name] += h
            down[name] -= h
            out[name] = (self.batch_loss(up, indices) - self.batch_loss(down, indices)) / (2 * h)
        return out

    def numeric_input_gradient(self, params, example: int = 0, h: float = 1e-6):
        x, t = self.examples[example]
        grad = np.zeros_like(x)
        for index in np.ndindex(*x.shape):
            up, down = x.copy(), x.copy()
            up[index] += h
            down[index] -= h
            grad[index] = (self.forward(params, up, t)["loss"]
                           - self.forward(params, down, t)["loss"]) / (2 * h)
        return grad

    def kink_distance(self, params, indices=None) -> float:
        """How far the forward pass is from a point where it is not differentiable (a ReLU
        at 0, a max-pool tie): finite differences need more than their step h of it."""
        indices = range(len(self.examples)) if indices is None else indices
        distance = math.inf
        for k in indices:
            run = self.forward(params, *self.examples[k])
            for layer, record in zip(self.layers, run["layers"]):
                if layer.has_activation and layer.activation in ("relu", "leaky_relu"):
                    distance = min(distance, np.abs(record["pre_activation"]).min())
                if layer.kind == "maxpool2d":
                    x = record["input"]
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

    def sgd_step(self, params, grads, velocity):
        """One update: θ ← θ − η·g, or with momentum v ← μv + g (v₀ = g), θ ← θ − η·v."""
        new = dict(params)
        for name, g in grads.items():
            if name in self.frozen:
                continue
            if self.momentum:
                velocity[name] = self.momentum * velocity[name] + g if name in velocity else g
                new[name] = params[name] - self.learning_rate * velocity[name]
            else:
                new[name] = params[name] - self.learning_rate * g
        return new

    def train(self) -> dict:
        """Every step of the spec's schedule: history (the loss before each step), the
        parameters after each step, the velocities, and the loss on every example after."""
        params = dict(self.parameters)
        velocity: dict[str, float] = {}
        history, after, batches = [], [], []
        for epoch, indices in self.schedule():
            history.append(self.batch_loss(params, indices))
            params = self.sgd_step(params, self.gradients(params, indices), velocity)
            after.append(params)
            batches.append((epoch, [k + 1 for k in indices]))
        return {"history": history, "parameters": after, "batches": batches,
                "velocity": velocity, "loss_after": self.batch_loss(params)}
