"""Batch normalization, as nn.BatchNorm1d after a dense layer and nn.BatchNorm2d after a
conv layer: each feature (each channel of an image, over examples × rows × columns) is
centred and scaled, then γ·x̂ + β, then an optional element-wise activation.

    train mode:  μ_B = (1/m)·Σ x,  σ²_B = (1/m)·Σ (x − μ_B)²,  x̂ = (x − μ_B)/√(σ²_B + ε)
    eval mode:   x̂ = (x − μ_run)/√(σ²_run + ε)  with the running statistics
    both:        y = γ·x̂ + β,  a = f(y)

In train mode the statistics couple the examples of a mini-batch: the graph of a step
spans the whole mini-batch (μ_B and σ²_B are nodes shared by the examples), so SymPy's
chain rule sums every ∂E/∂x_i over the paths through μ_B and σ²_B, which the worked
solution writes step by step, then checks against the condensed formula
∂E/∂x_i = γ/(m·√(σ²_B + ε))·(m·g_i − Σ_j g_j − x̂_i·Σ_j g_j·x̂_j), g = ∂E/∂y. PyTorch's
running statistics follow each train-mode forward pass: μ_run ← (1 − momentum)·μ_run +
momentum·μ_B and σ²_run ← (1 − momentum)·σ²_run + momentum·σ²_B·m/(m − 1) (the unbiased
variance). Eval mode reads them as constants and keeps the examples independent.

Everything particular to batch normalization is here: the spec table, the nodes, the
NumPy kernel, the condensed formula checked against the chain rule, the worked solution's
parts (templates/layers/batchnorm.j2), the figure's column or maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..lazy import numpy as np  # executed at first use: lazy.py
import sympy as sp

from ..activations import ACTIVATIONS
from ..nodes import CONSTANT, PARAMETER
from ..notation import Equation, generic_name, primed, tex
from ..templating import fill
from ..validate import expand_names, flatten_names, only, only_defaults
from . import grid
from .base import ActivatedLayer, Part, register

MEAN, VARIANCE, NORMALIZED, OUTPUT = ("batch_mean", "batch_variance", "normalized",
                                      "batchnorm_output")  # its node kinds
TOLERANCE = 1e-9  # relative agreement of the condensed formula with the chain rule
MODES = ("train", "eval")


def default_names(image: bool, channels: int) -> dict[str, str]:
    """Names by layer #l, feature #j (channel #c of an image) and cell #c,#r,#s."""
    feature = "#c" if image else "#j"
    cell = ("#c,#r,#s" if channels > 1 else "#r,#s") if image else "#j"
    return {
        "gamma": rf"\gamma^{{(#l)}}_{{{feature}}}", "beta": rf"\beta^{{(#l)}}_{{{feature}}}",
        "mean": rf"\mu^{{(#l)}}_{{{feature}}}",
        "variance": rf"(\sigma^{{(#l)}}_{{{feature}}})^2",
        "normalized": rf"\hat{{x}}^{{(#l)}}_{{{cell}}}", "outputs": f"y^{{(#l)}}_{{{cell}}}",
        "activations": f"a^{{(#l)}}_{{{cell}}}",
        "running_mean": rf"\mu^{{(#l)}}_{{\mathrm{{run}},{feature}}}",
        "running_var": rf"(\sigma^{{(#l)}}_{{\mathrm{{run}},{feature}}})^2",
        "eps": r"\varepsilon",
    }


@register("batchnorm")
@dataclass
class BatchNormLayer(ActivatedLayer):
    index: int
    in_shape: tuple  # (features,) or (channels, rows, columns)
    mode: str  # train | eval
    eps: float
    momentum: float
    running: dict  # name → value of the running means and variances (given)
    gamma_names: list[str]  # one per feature (channel)
    beta_names: list[str]
    mean_names: list[str]
    variance_names: list[str]
    running_mean_names: list[str]
    running_var_names: list[str]
    eps_name: str
    normalized_names: list[str]  # one per input cell, row-major
    pre_activation_names: list[str]  # y = γ·x̂ + β
    activation_names: list[str]
    activation: str
    negative_slope: float
    kind: str = "batchnorm"
    frozen: bool = False
    fragment = "layers/batchnorm.j2"

    @property
    def out_shape(self):
        return tuple(self.in_shape)

    @property
    def image(self) -> bool:
        return len(self.in_shape) == 3

    @property
    def features(self) -> int:
        return self.in_shape[0]

    @property
    def cells(self) -> int:
        """Input cells per feature and example: rows × columns of an image, else 1."""
        return math.prod(self.in_shape[1:])

    @property
    def couples_examples(self) -> bool:
        return self.mode == "train"

    @property
    def smallest_batch(self) -> int:
        return 2 if self.mode == "train" and self.cells == 1 else 1  # a variance of one value

    # Spec stage --------------------------------------------------------------
    @classmethod
    def read(cls, raw, place, index, in_shape, params):
        only(raw, {"type", "num_features", "mode", "eps", "momentum", "gamma", "beta",
                   "running_mean", "running_var", "activation", "negative_slope", "names",
                   "frozen"}, place)
        if len(in_shape) not in (1, 3):
            place.fail("a vector (after a dense layer) or an image (after a conv layer)")
        image = len(in_shape) == 3
        features = in_shape[0]
        if "num_features" in raw and (place / "num_features").integer(
                raw["num_features"]) != features:
            (place / "num_features").fail(f"{features} (the {'channels' if image else 'values'}"
                                          f" of this layer's input), got {raw['num_features']}")
        mode = (place / "mode").choice(raw.get("mode", "train"), MODES)
        eps = (place / "eps").number(raw.get("eps", 1e-5))
        if eps <= 0:
            (place / "eps").fail(f"a positive ε, got {eps}")
        momentum = (place / "momentum").number(raw.get("momentum", 0.1))
        if not 0 <= momentum <= 1:
            (place / "momentum").fail(f"a momentum in [0, 1], got {momentum}")

        def vector(key, default):
            value = raw.get(key, default)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = [value] * features
            return (place / key).vector(value, features)

        gamma, beta = vector("gamma", 1.0), vector("beta", 0.0)
        running_mean, running_var = vector("running_mean", 0.0), vector("running_var", 1.0)
        for k, value in enumerate(running_var):
            if value < 0:
                (place / "running_var" / k).fail(f"a variance >= 0, got {value}")
        activation = (place / "activation").choice(raw.get("activation", "identity"),
                                                   tuple(ACTIVATIONS))
        if image and not ACTIVATIONS[activation].elementwise:
            (place / "activation").fail(f"an element-wise activation after BatchNorm2d, got "
                                        f"{activation}")
        slope = (place / "negative_slope").number(raw.get("negative_slope", 0.01))
        names = (place / "names").table(raw.get("names", {}))
        defaults = default_names(image, features)
        only(names, set(defaults), place / "names")

        def named(key, shape, letters):
            return flatten_names(expand_names(names.get(key), place / "names" / key, shape,
                                              letters, defaults[key], index))

        per_feature = ((features,), "c" if image else "j")
        per_cell = (tuple(in_shape), "crs" if image else "j")
        layer = cls(
            index=index, in_shape=tuple(in_shape), mode=mode, eps=eps, momentum=momentum,
            running={}, gamma_names=named("gamma", *per_feature),
            beta_names=named("beta", *per_feature), mean_names=named("mean", *per_feature),
            variance_names=named("variance", *per_feature),
            running_mean_names=named("running_mean", *per_feature),
            running_var_names=named("running_var", *per_feature),
            eps_name=expand_names(names.get("eps"), place / "names" / "eps", (), "",
                                  defaults["eps"], index),
            normalized_names=named("normalized", *per_cell),
            pre_activation_names=named("outputs", *per_cell),
            activation_names=named("activations", *per_cell),
            activation=activation, negative_slope=slope)
        if activation == "identity" and "activations" not in names:
            layer.activation_names = list(layer.pre_activation_names)
        layer.running = dict(zip(layer.running_mean_names, running_mean))
        layer.running.update(zip(layer.running_var_names, running_var))
        params.add(layer.gamma_names, gamma, place / "gamma")
        params.add(layer.beta_names, beta, place / "beta")
        layer.frozen = bool(raw.get("frozen", False))
        return layer

    def parameter_names(self):
        return list(dict.fromkeys(self.gamma_names + self.beta_names))

    def quantity_names(self):
        return self.batch_quantity_names() + self.normalized_names + super().quantity_names()

    def batch_quantity_names(self):
        return self.mean_names + self.variance_names if self.mode == "train" else []

    def constants(self):
        values = {self.eps_name: self.eps}
        if self.mode == "eval":
            values.update(self.running)
        return values

    def buffers(self):
        return dict(self.running)

    @classmethod
    def sheet_blocks(cls, raw, in_shape, place):
        block = (in_shape[0],)
        return {key: block for key in ("gamma", "beta", "running_mean", "running_var")}, \
            tuple(in_shape)

    # Graph stage -------------------------------------------------------------
    def positions(self, feature: int) -> range:
        """The input cells of one feature (channel), row-major."""
        return range(feature * self.cells, (feature + 1) * self.cells)

    def build(self, graph, inputs):
        return self._build(graph, [graph], inputs)

    def build_batch(self, graph, inputs, examples):
        if not self.couples_examples:
            return super().build_batch(graph, inputs, examples)
        return self._build(graph, examples, inputs)

    def _build(self, graph, views, inputs):
        """The statistics (shared by ``views``, the examples), then x̂, y and a of each
        example."""
        for name in self.gamma_names + self.beta_names:
            graph.leaf(name, PARAMETER)
        eps = graph.leaf(self.eps_name, CONSTANT).symbol
        if self.mode == "train":
            for f in range(self.features):
                xs = [view.symbol(inputs[i]) for view in views for i in self.positions(f)]
                graph.computed(self.mean_names[f], MEAN, batch_mean(xs), layer=self.index)
                mu = graph.symbol(self.mean_names[f])
                graph.computed(self.variance_names[f], VARIANCE, batch_variance(xs, mu),
                               layer=self.index)
            means, variances = self.mean_names, self.variance_names
        else:
            for name in self.running:
                graph.leaf(name, CONSTANT)
            means, variances = self.running_mean_names, self.running_var_names
        for view in views:
            for f in range(self.features):
                mu, var = graph.symbol(means[f]), graph.symbol(variances[f])
                for i in self.positions(f):
                    view.computed(self.normalized_names[i], NORMALIZED,
                                  normalize(view.symbol(inputs[i]), mu, var, eps),
                                  layer=self.index)
            for f in range(self.features):
                gamma, beta = graph.symbol(self.gamma_names[f]), graph.symbol(self.beta_names[f])
                for i in self.positions(f):
                    y = sp.Add(sp.Mul(gamma, view.symbol(self.normalized_names[i]),
                                      evaluate=False), beta, evaluate=False)
                    view.computed(self.pre_activation_names[i], OUTPUT, y, layer=self.index)
            self.activate(view)
        return list(self.activation_names)

    def buffer_updates(self, graph):
        """PyTorch's update of the running statistics in train mode (the variance
        unbiased: m/(m − 1) times the batch's)."""
        if self.mode != "train":
            return {}
        count = graph.examples * self.cells
        momentum = sp.Rational(repr(self.momentum))
        out = {}
        for f in range(self.features):
            mean, var = self.running_mean_names[f], self.running_var_names[f]
            out[mean] = ((1 - momentum) * sp.Symbol(mean)
                         + momentum * graph.symbol(self.mean_names[f]))
            out[var] = ((1 - momentum) * sp.Symbol(var) + momentum
                        * sp.Rational(count, count - 1) * graph.symbol(self.variance_names[f]))
        return out

    # Fast path ---------------------------------------------------------------
    def fast_kernel(self, in_shape):
        return BatchNormKernel(self, in_shape)

    # Derivation --------------------------------------------------------------
    def explains_inputs(self):
        return True

    def forms(self, spec, graph, example, inputs):
        """∂E/∂x from the condensed formula, against the chain rule (below)."""
        return normalization_forms(graph, example, self, inputs)

    # Document ----------------------------------------------------------------
    def summary(self, doc):
        w = self.words(doc)
        return fill(w["summary"], label=doc.layer_label(self.index), features=self.features,
                    what=w["channels" if self.image else "values"],
                    module="BatchNorm2d" if self.image else "BatchNorm1d",
                    mode=w[self.mode + "_mode"],
                    activation=doc.t["network"]["activations"][self.activation])

    def short_summary(self, network_words):
        return f"{self.kind} ×{self.features} ({self.mode})"

    def letters(self, doc) -> dict[str, str]:
        """Its statistics and parameters in its formulas: the spec's own names, the feature
        written with the document's index (μ_k, σ²_k, γ_k, β_k), so that no letter of
        the formulas is another spec name's; the values use the document's letters."""
        k = doc.symbols["index"]

        def generic(names):
            return generic_name(names, k) or names[0]
        return {"mu": generic(self.mean_names), "var": generic(self.variance_names),
                "murun": generic(self.running_mean_names),
                "varrun": generic(self.running_var_names), "gamma": generic(self.gamma_names),
                "beta": generic(self.beta_names), "eps": self.eps_name}

    def network_part(self, doc):
        n = doc.n
        running = [[name, n.given(value)] for name, value in self.running.items()]
        return Part(self.fragment, "network", label=doc.layer_label(self.index),
                    mode=self.mode, eps=f"{self.eps_name} = {n.given(self.eps)}",
                    momentum=n.given(self.momentum), running=running,
                    several=doc.graph.spans_batch, letters=self.letters(doc))

    def forward_part(self, doc, steps, values):
        equations = super().forward_part(doc, steps, values).equations
        updates = []
        if self.mode == "train":  # PyTorch updates the running statistics in this pass
            n, count = doc.n, doc.graph.examples * self.cells
            m = n.given(self.momentum)
            before, after = doc.solution.buffers, doc.solution.buffers_after
            for f in range(self.features):
                mean, var = self.running_mean_names[f], self.running_var_names[f]
                mu, sigma = self.mean_names[f], self.variance_names[f]
                updates.append(Equation(primed(mean), [
                    rf"(1 - {m}) \cdot {mean} + {m} \cdot {mu}",
                    rf"(1 - {m}) \cdot {n.value(mean, before[mean])} + {m} \cdot "
                    rf"{_signed(n, values[mu])}", n.tex(after[mean])]))
                updates.append(Equation(primed(var), [
                    rf"(1 - {m}) \cdot {var} + {m} \cdot \frac{{{count}}}{{{count - 1}}} "
                    rf"\cdot {sigma}",
                    rf"(1 - {m}) \cdot {n.value(var, before[var])} + {m} \cdot "
                    rf"\frac{{{count}}}{{{count - 1}}} \cdot {n.tex(values[sigma])}",
                    n.tex(after[var])]))
        return Part(self.fragment, "forward", mode=self.mode, equations=equations,
                    count=doc.graph.examples * self.cells, cells=self.cells,
                    examples=doc.graph.examples, image=self.image, updates=updates,
                    momentum=doc.n.given(self.momentum), letters=self.letters(doc),
                    activation=doc.t["network"]["activations"][self.activation])

    def section(self, doc, section, example):
        """The chain rule node by node (γ, β, then ∂E/∂x through x̂, σ², μ), then the
        condensed formula, checked equal."""
        out = super().section(doc, section, example)
        out["parts"] = [self._condensed(doc, doc.layer_forms[self.index])]
        return out

    def _condensed(self, doc, forms) -> Part:
        n = doc.n
        first = forms.features[0]
        loss = doc.loss_name
        m = forms.count
        rows = [[x, n.tex(g), n.tex(xh), n.tex(c), n.tex(ch)] for x, g, xh, c, ch in zip(
            first.inputs, first.output_gradient, first.normalized, first.condensed,
            first.chain)]
        sym = doc.symbols
        x, y, i, j, count = (sym["value"], sym["output"], sym["value_index"], sym["other_index"],
                             sym["count"])
        g = rf"\frac{{\partial {loss}}}{{\partial {y}_{j}}}"
        sums = [Equation(rf"\sum_{j} {g}", [
            " + ".join(_signed(n, v) for v in first.output_gradient), n.tex(first.sum_g)]),
            Equation(rf"\sum_{j} {g} \cdot \hat{{{x}}}_{j}", [
                " + ".join(f"{_signed(n, a)} \\cdot {_signed(n, b)}"
                           for a, b in zip(first.output_gradient, first.normalized)),
                n.tex(first.sum_gx)])] if forms.train else []
        factor = (rf"\frac{{{first.gamma_name}}}{{{m} \cdot \sqrt{{{first.variance_name} + "
                  rf"{first.eps_name}}}}} = \frac{{{n.tex(first.gamma)}}}{{{m} \cdot "
                  rf"\sqrt{{{n.tex(first.variance)} + {n.given(first.eps)}}}}} = "
                  rf"{n.tex(first.factor)}") if forms.train else (
            rf"\frac{{{first.gamma_name}}}{{\sqrt{{{first.variance_name} + {first.eps_name}}}}}"
            rf" = \frac{{{n.tex(first.gamma)}}}{{\sqrt{{{n.tex(first.variance)} + "
            rf"{n.given(first.eps)}}}}} = {n.tex(first.factor)}")
        letters = self.letters(doc)
        gamma, var, eps = letters["gamma"], letters["var"], letters["eps"]
        gx, gy = (rf"\frac{{\partial {loss}}}{{\partial {x}_{i}}}",
                  rf"\frac{{\partial {loss}}}{{\partial {y}_{i}}}")
        formula = (rf"{gx} = \frac{{{gamma}}}{{{count} \sqrt{{{var} + {eps}}}}} \left({count} "
                   rf"\cdot {gy} - \sum_{j} {g} - \hat{{{x}}}_{i} \sum_{j} {g} \hat{{{x}}}_{j}"
                   rf"\right)") if forms.train else (
            rf"{gx} = \frac{{{gamma}}}{{\sqrt{{{letters['varrun']} + {eps}}}}} \cdot {gy}")
        return Part(self.fragment, "backward", train=forms.train, count=m, sums=sums,
                    formula=formula, letters=letters,
                    factor=factor, rows=rows, mean=first.mean_name,
                    variance=first.variance_name,
                    more=len(forms.features) > 1, agree=forms.agrees,
                    difference=n.tex(forms.max_difference), loss=loss)

    # PyTorch -----------------------------------------------------------------
    torch_classes = ("BatchNorm1d", "BatchNorm2d")
    torch_parameters = {"gamma": "weight", "beta": "bias"}
    torch_buffers = {"running_mean": "running_mean", "running_var": "running_var"}
    torch_block = "bn"

    @classmethod
    def torch_table(cls, module, place):
        only_defaults(module, place, affine=True, track_running_stats=True)
        if module.momentum is None:
            place.fail("a momentum (momentum=None, a cumulative average, has no spec "
                       "equivalent)")
        return {"type": "batchnorm", "mode": "train" if module.training else "eval",
                "eps": float(module.eps), "momentum": float(module.momentum)}

    def parameter_blocks(self):
        return {"gamma": self.gamma_names, "beta": self.beta_names}

    def buffer_blocks(self) -> dict[str, list[str]]:
        """{spec key of ``torch_buffers``: the names of its running statistics}."""
        return {"running_mean": self.running_mean_names, "running_var": self.running_var_names}

    def torch_module(self):
        settings = "".join(f", {key}={value!r}" for key, value, default in
                           (("eps", self.eps, 1e-5), ("momentum", self.momentum, 0.1))
                           if value != default)
        module = f"nn.BatchNorm{'2' if self.image else '1'}d({self.features}{settings})"
        return module + (".eval()" if self.mode == "eval" else "")

    # Diagram -----------------------------------------------------------------
    def draw(self, sketch):
        """Maps after a conv layer; after a dense layer a column, each unit joined to its
        input, its γ above."""
        if self.image:
            sketch.operator(r"\rightarrow", "→")
            sketch.maps(self.activation_names, self.out_shape, sketch.words["batchnorm"])
            return
        column = sketch.neurons(self.activation_names, output=sketch.is_last(self))
        for j, gamma in enumerate(self.gamma_names):
            column.connect(j, j)
            column.above(j, sketch.number(gamma, named=True))


def _signed(n, value: float) -> str:
    return tex(n.placeholder(value))  # a negative number in parentheses


def batch_mean(xs: list[sp.Symbol]) -> sp.Expr:
    return sp.Mul(sp.Rational(1, len(xs)), sp.Add(*xs, evaluate=False), evaluate=False)


def batch_variance(xs: list[sp.Symbol], mu: sp.Symbol) -> sp.Expr:
    """The biased variance (1/m)·Σ (x − μ)², what normalizes in train mode."""
    squares = [sp.Pow(sp.Add(x, -mu, evaluate=False), 2, evaluate=False) for x in xs]
    return sp.Mul(sp.Rational(1, len(xs)), sp.Add(*squares, evaluate=False), evaluate=False)


def normalize(x: sp.Symbol, mu: sp.Symbol, var: sp.Symbol, eps: sp.Symbol) -> sp.Expr:
    return sp.Mul(sp.Add(x, -mu, evaluate=False),
                  sp.Pow(sp.Add(var, eps, evaluate=False), sp.Rational(-1, 2), evaluate=False),
                  evaluate=False)


# ---------------------------------------------------------------------------
# Fast path: arrays (V, B, features) or (V, B, channels, rows, columns)


class BatchNormKernel:
    def __init__(self, layer: BatchNormLayer, in_shape):
        self.layer = layer
        self.in_shape = tuple(in_shape)
        self.out_shape = tuple(in_shape)
        self.activation = layer.activation
        self.slope = layer.negative_slope
        self.train = layer.mode == "train"
        self.eps, self.momentum = layer.eps, layer.momentum
        self.axes = (1, 3, 4) if layer.image else (1,)  # examples (× rows × columns)
        self.names = {"gamma": np.array(layer.gamma_names, dtype=object),
                      "beta": np.array(layer.beta_names, dtype=object)}
        self.buffer_names = {"running_mean": np.array(layer.running_mean_names, dtype=object),
                             "running_var": np.array(layer.running_var_names, dtype=object)}
        self.value_names = {"pre_activation": layer.pre_activation_names,
                            "activation": layer.activation_names,
                            "normalized": layer.normalized_names}
        if self.train:
            self.value_names.update(mean=layer.mean_names, variance=layer.variance_names)

    def _per_feature(self, values):
        """(V, features) → broadcastable over (V, B, features[, rows, columns])."""
        return values[:, None, :, None, None] if self.layer.image else values[:, None, :]

    def forward(self, x, p):
        if self.train:
            mean = x.mean(axis=self.axes, keepdims=True)
            var = ((x - mean) ** 2).mean(axis=self.axes, keepdims=True)
        else:
            mean = self._per_feature(p["running_mean"])
            var = self._per_feature(p["running_var"])
        std = np.sqrt(var + self.eps)
        normalized = (x - mean) / std
        y = self._per_feature(p["gamma"]) * normalized + self._per_feature(p["beta"])
        count = math.prod(x.shape[a] for a in self.axes)
        return y, ACTIVATIONS[self.activation].forward(y, self.slope), (normalized, std, mean,
                                                                           var, count)

    def more_values(self, cache):
        normalized, _, mean, var, _ = cache
        out = {"normalized": normalized}
        if self.train:  # shared by the mini-batch: the same value for every example
            v, batch = normalized.shape[:2]
            for role, stat in (("mean", mean), ("variance", var)):
                out[role] = np.broadcast_to(stat.reshape(v, 1, -1), (v, batch, self.in_shape[0]))
        return out

    def backward(self, x, p, delta, need_input_grad, cache):
        normalized, std, _, _, count = cache
        grads = {"gamma": (delta * normalized).sum(axis=self.axes).reshape(
                     delta.shape[0], -1),
                 "beta": delta.sum(axis=self.axes).reshape(delta.shape[0], -1)}
        if not need_input_grad:
            return grads, None
        d_normalized = delta * self._per_feature(p["gamma"])
        if not self.train:
            return grads, d_normalized / std
        total = d_normalized.sum(axis=self.axes, keepdims=True)
        weighted = (d_normalized * normalized).sum(axis=self.axes, keepdims=True)
        return grads, (count * d_normalized - total - normalized * weighted) / (count * std)

    def updated_buffers(self, p, cache):
        if not self.train:
            return {}
        _, _, mean, var, count = cache
        v = mean.shape[0]
        return {"running_mean": (1 - self.momentum) * p["running_mean"]
                + self.momentum * mean.reshape(v, -1),
                "running_var": (1 - self.momentum) * p["running_var"]
                + self.momentum * var.reshape(v, -1) * count / (count - 1)}


# ---------------------------------------------------------------------------
# Derivation: ∂E/∂x by the condensed formula, against the chain rule of the graph


@dataclass
class FeatureForms:
    """One feature (channel) of the layer, over the m cells of the mini-batch."""

    gamma_name: str
    gamma: float
    mean_name: str  # μ_B in train mode, μ_run in eval mode
    variance_name: str  # σ²_B in train mode, σ²_run in eval mode
    variance: float
    eps_name: str
    eps: float
    inputs: list[str]  # x_i, every example's copy
    output_gradient: list[float]  # g_i = ∂E/∂y_i
    normalized: list[float]  # x̂_i
    condensed: list[float]  # ∂E/∂x_i by the formula
    chain: list[float]  # ∂E/∂x_i by the chain rule (the graph)
    sum_g: float
    sum_gx: float
    factor: float  # γ/(m·√(σ² + ε)) in train mode, γ/√(σ² + ε) in eval mode


@dataclass
class NormalizationForms:
    layer: int
    train: bool
    count: int  # m: cells per feature in the mini-batch
    features: list[FeatureForms]
    max_difference: float  # largest |formula − chain rule|, relative
    kind: str = "batchnorm"

    @property
    def agrees(self) -> bool:
        return self.max_difference <= TOLERANCE


def normalization_forms(graph, example, layer: BatchNormLayer, inputs) -> NormalizationForms:
    values, adjoints = example.values, example.adjoints
    train = layer.mode == "train"
    features, differences, count = [], [], 0
    for f in range(layer.features):
        cells = [(x, nz, y) for i in layer.positions(f)
                 for x, nz, y in zip(graph.copies(inputs[i]),
                                     graph.copies(layer.normalized_names[i]),
                                     graph.copies(layer.pre_activation_names[i]))]
        count = len(cells)
        g = np.array([adjoints[y] for _, _, y in cells])
        normalized = np.array([values[nz] for _, nz, _ in cells])
        mean_name = (layer.mean_names if train else layer.running_mean_names)[f]
        variance_name = (layer.variance_names if train else layer.running_var_names)[f]
        gamma, variance = values[layer.gamma_names[f]], values[variance_name]
        if train:
            factor = gamma / (count * math.sqrt(variance + layer.eps))
            condensed = factor * (count * g - g.sum() - normalized * (g * normalized).sum())
        else:
            factor = gamma / math.sqrt(variance + layer.eps)
            condensed = factor * g
        chain = grid.input_gradient_chain(graph, example, [x for x, _, _ in cells])
        scale = max(1.0, float(np.max(np.abs(chain))))
        differences.append(float(np.max(np.abs(condensed - chain))) / scale)
        features.append(FeatureForms(
            layer.gamma_names[f], gamma, mean_name, variance_name, variance, layer.eps_name, layer.eps,
            [x for x, _, _ in cells], g.tolist(), normalized.tolist(), condensed.tolist(),
            chain.tolist(), float(g.sum()), float((g * normalized).sum()), factor))
    return NormalizationForms(layer.index, train, count, features, max(differences))
