"""Dense (fully connected) layer: y_j = Σ_i w_{j,i} · x_i + b_j, then out_j = f(y)_j.

Everything particular to dense layers: the spec table (``units``, ``activation``,
``weights`` [unit][input], ``biases`` (or false for none, as nn.Linear(bias=False): then
y_j = Σ_i w_{j,i} · x_i), ``names``, ``frozen``), the graph's nodes (one
pre-activation and one activation per unit), the NumPy kernel, the worked solution's
parts (equation by equation: templates/layers/dense.j2) and the column of neurons in
the figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..lazy import numpy as np  # executed at first use: lazy.py

from ..activations import ACTIVATIONS
from ..nodes import PARAMETER, PRE_ACTIVATION
from ..templating import fill
from ..validate import expand_names, flatten_names, is_draw, only
from .base import (Part, WeightedLayer, read_biases, register, units_then_bias,
                   weighted_sum)

WEIGHTS_PER_ROW = 4  # the network's table: a unit with more weights takes several rows

# Default names (documented in the README): #l layer, #j unit, #i input of the unit.
DEFAULT_NAMES = {
    "weights": "w^{(#l)}_{#j,#i}",
    "biases": "b^{(#l)}_{#j}",
    "pre_activations": "z^{(#l)}_{#j}",
    "activations": "a^{(#l)}_{#j}",
}


@register("dense")
@dataclass
class DenseLayer(WeightedLayer):
    index: int  # 1-based position among the spec's layers
    units: int
    activation: str
    negative_slope: float  # leaky ReLU only
    weight_names: list[list[str]]  # [unit][input]
    bias_names: list[str]  # one per unit; empty without bias
    pre_activation_names: list[str]
    activation_names: list[str]
    kind: str = "dense"
    frozen: bool = False
    fragment = "layers/dense.j2"
    torch_classes = ("Linear",)
    torch_parameters = {"weights": "weight", "biases": "bias"}
    torch_block = "fc"
    naming_schemes = {"course": {"weights": "w@_{#j,#i}", "biases": "b@_#j",
                                 "pre_activations": "y_{@#j}", "activations": "out_{@#j}"}}

    # Spec stage --------------------------------------------------------------
    @classmethod
    def read(cls, raw, place, index, in_shape, params):
        allowed = {"type", "units", "activation", "negative_slope", "weights", "biases",
                   "names", "frozen"}
        only(raw, allowed, place)
        if len(in_shape) != 1:
            place.fail(f"a flatten layer before this dense layer (its input has shape "
                       f"{'×'.join(map(str, in_shape))})")
        n_in = in_shape[0]
        weights_raw = raw.get("weights")
        units = raw.get("units")
        if units is None and isinstance(weights_raw, list):
            units = len(weights_raw)
        units = (place / "units").integer(units)
        activation = (place / "activation").choice(raw.get("activation", "identity"),
                                                   tuple(ACTIVATIONS))
        slope = (place / "negative_slope").number(raw.get("negative_slope", 0.01))
        if "weights" not in raw:
            (place / "weights").fail(f"a {units}×{n_in} list of weights (one row per unit)")
        flat_note = getattr(in_shape, "note", "")
        if (flat_note and isinstance(weights_raw, list) and weights_raw
                and isinstance(weights_raw[0], list) and len(weights_raw[0]) != n_in):
            (place / "weights" / 0).fail(f"{n_in} weights per unit, one per input{flat_note}, "
                                         f"got {len(weights_raw[0])}")
        weights = (place / "weights").array(weights_raw, (units, n_in))
        biases = read_biases(raw, place, units)
        names = (place / "names").table(raw.get("names", {}))
        only(names, set(DEFAULT_NAMES), place / "names")

        def named(key, shape, letters):
            return expand_names(names.get(key), place / "names" / key, shape, letters,
                                DEFAULT_NAMES[key], index)

        layer = cls(
            index=index, units=units, activation=activation, negative_slope=slope,
            weight_names=named("weights", (units, n_in), "ji"),
            bias_names=named("biases", (units,), "j") if biases is not None else [],
            pre_activation_names=named("pre_activations", (units,), "j"),
            activation_names=named("activations", (units,), "j"),
        )
        if activation == "identity" and "activations" not in names:
            layer.activation_names = list(layer.pre_activation_names)
        params.add(layer.weight_names, weights, place / "weights")
        if biases is not None:
            params.add(layer.bias_names, biases, place / "biases")
        layer.frozen = bool(raw.get("frozen", False))
        return layer

    @property
    def out_shape(self):
        return (self.units,)

    def parameter_names(self):
        return units_then_bias(self.weight_names, self.bias_names)

    @classmethod
    def sheet_blocks(cls, raw, in_shape, place):
        units = raw.get("units")
        if units is None and isinstance(raw.get("weights"), list):
            units = len(raw["weights"])
        if not isinstance(units, int):
            if is_draw(raw.get("weights")):
                place.fail("units (how many) with drawn weights")
            return None
        return {"weights": (units, math.prod(in_shape)), "biases": (units,)}, (units,)

    # Graph stage -------------------------------------------------------------
    def build(self, graph, inputs):
        x = [graph.symbol(n) for n in inputs]
        for name in flatten_names(self.weight_names) + self.bias_names:
            graph.leaf(name, PARAMETER)
        for j in range(self.units):
            weights = [graph.symbol(n) for n in self.weight_names[j]]
            bias = graph.symbol(self.bias_names[j]) if self.bias_names else None
            expr = weighted_sum(list(zip(x, weights)), bias)
            graph.computed(self.pre_activation_names[j], PRE_ACTIVATION, expr, layer=self.index)
        return self.activate(graph)

    # Fast path ---------------------------------------------------------------
    def fast_kernel(self, in_shape):
        return DenseKernel(self, in_shape)

    # Document: node by node --------------------------------------------------
    def summary(self, doc):
        return fill(self.words(doc)["summary"], label=doc.layer_label(self.index),
                    units=self.units, activation=doc.t["network"]["activations"][self.activation])

    def short_summary(self, network_words):
        return (f"{self.kind} ×{self.units}, "
                f"{network_words['activations'][self.activation].split(' $')[0]}")

    def network_part(self, doc):
        """The parameters, a row per unit: its weights, its bias (a long row of weights
        continues on the next row); without bias, a line saying so."""
        words = self.words(doc)
        given = doc.n.given
        rows = []
        for j in range(self.units):
            weights = [f"{n} = {given(doc.spec.parameters[n])}" for n in self.weight_names[j]]
            bias = ([f"{self.bias_names[j]} = {given(doc.spec.parameters[self.bias_names[j]])}"]
                    if j < len(self.bias_names) else [])
            for k in range(0, max(len(weights), 1), WEIGHTS_PER_ROW):
                first = k == 0
                rows.append([self.activation_names[j] if first else "",
                             r",\; ".join(weights[k:k + WEIGHTS_PER_ROW])] +
                            ([bias[0] if first else ""] if bias else []))
        header = [words["unit"], words["weights"]] + ([words["bias"]] if self.bias_names else [])
        names = [n for n in self.parameter_names()]
        frozen = [n for n in names if n in doc.spec.frozen]
        return Part(self.fragment, "parameters", label=doc.layer_label(self.index),
                    header=header, rows=rows, parameters=names, no_bias=self.without_bias,
                    frozen=doc.name_list(frozen) if frozen else "")

    def index_convention(self, inputs, t):
        """wh_{j,i} connects input i to unit j: wh_{1,2} carries x_2 into y_{h1}."""
        if len(inputs) < 2:
            return None
        words = t["layers"][self.kind]
        weight = self.weight_names[0][1]
        example = dict(weight=weight, input=inputs[1], unit=self.pre_activation_names[0])
        indexed = weight.endswith("{1,2}") and (len(self.weight_names) < 2
                                                or self.weight_names[1][0].endswith("{2,1}"))
        if not indexed:  # names given one by one: the example alone
            return fill(words["convention"], **example)
        return fill(words["convention_indices"], pattern=weight[:-len("{1,2}")] + "{j,i}",
                    **example)

    # PyTorch -----------------------------------------------------------------
    @classmethod
    def torch_table(cls, module, place):
        return {"type": "dense", "units": module.out_features, **cls.torch_bias(module)}

    def parameter_blocks(self):
        return {"weights": self.weight_names, "biases": self.bias_names}

    def torch_module(self):
        return (f"nn.Linear({len(self.weight_names[0])}, {self.units}"
                f"{self.torch_bias_argument()})")

    # Diagram -----------------------------------------------------------------
    def draw(self, sketch):
        """A column of neurons: the activation's name inside, the bias above, the weights'
        values on the edges from the column before."""
        column = sketch.neurons(self.activation_names, output=sketch.is_last(self))
        for j, row in enumerate(self.weight_names):
            for i, weight in enumerate(row):
                column.connect(i, j, sketch.number(weight))
            if self.bias_names:
                column.above(j, sketch.number(self.bias_names[j], named=True))


def _matmul(a, b):
    """a @ b over (V, …) stacks; one variant goes through a plain 2-D BLAS product, which
    NumPy runs much faster than a stacked product of the same size."""
    if a.shape[0] == 1 and b.shape[0] == 1:
        return (a[0] @ b[0])[None]
    return np.matmul(a, b)


class DenseKernel:
    """Arrays with axes (V, B, units): V parameter variants, B examples."""

    def __init__(self, layer: DenseLayer, in_shape):
        self.layer = layer
        self.units = layer.units
        self.activation = layer.activation
        self.slope = layer.negative_slope
        self.in_shape = in_shape
        self.out_shape = (layer.units,)
        self.names = {"weights": np.array(layer.weight_names, dtype=object)}
        if layer.bias_names:  # biases = false in the spec: none
            self.names["biases"] = np.array(layer.bias_names, dtype=object)
        self.value_names = {"pre_activation": layer.pre_activation_names,
                            "activation": layer.activation_names}

    def forward(self, x, p):
        w = p["weights"]  # (V, units, n_in); biases (V, units)
        z = _matmul(x, w.swapaxes(-1, -2))
        if "biases" in p:
            z += p["biases"][:, None, :]
        a, kept = ACTIVATIONS[self.activation].forward_kept(z, self.slope)
        return z, a, kept

    @staticmethod
    def activation_kept(cache):
        """What the activation's forward pass kept for its backward: the whole cache (the
        layer's own backward needs none)."""
        return cache

    def backward(self, x, p, delta, need_input_grad, cache=None):
        """delta = ∂L/∂z (V, B, units) → parameter gradients and ∂L/∂x."""
        if delta.shape[1] == 1:  # one example: an outer product
            gw = _outer(delta, x)
        else:
            gw = _matmul(delta.swapaxes(-1, -2), x)
        grads = {"weights": gw}
        if "biases" in p:
            grads["biases"] = delta.sum(axis=1)
        gx = _matmul(delta, p["weights"]) if need_input_grad else None
        return grads, gx


def _outer(delta, x):
    """δᵀ·x of one example, (V, 1, units) and (V, 1, inputs) → (V, units, inputs): each
    entry the one product δ_j·x_i, the bits of np.outer. Rows of 512 inputs or more are a
    broadcast product with NumPy's buffers at most a row long (its default 8192-number
    buffers copy the broadcast δ_j over and over: 256 × 784 takes 21 µs instead of 76; BLAS,
    with a second, zero example, 16-20 µs with OpenBLAS's AVX-512 kernels but 45 µs with
    its Haswell ones; 10 × 1352: 4 µs instead of 5.5). Shorter rows of a large product go
    through BLAS (a broadcast product pays per row), of a small one are broadcast as they
    are."""
    v, _, units = delta.shape
    inputs = x.shape[-1]
    column, row = delta[:, 0, :, None], x[:, 0, None, :]
    if inputs >= 512:
        default = np.setbufsize(min(inputs - inputs % 16, 8192))
        try:
            return np.multiply(column, row)
        finally:
            np.setbufsize(default)
    if units * inputs < 2 ** 14:
        return np.multiply(column, row)
    padded_delta = np.zeros((v, 2, units))
    padded_delta[:, :1] = delta
    padded_x = np.zeros((v, 2, inputs))
    padded_x[:, :1] = x
    return _matmul(padded_delta.swapaxes(-1, -2), padded_x)
