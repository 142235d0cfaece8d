"""2-D convolution, written as PyTorch and the course write it: a cross-correlation.

z[o,r,s] = Σ_c Σ_u Σ_v x_pad[c, r·stride + u, s·stride + v] · f[o,c,u,v] + b[o]

then a[o,r,s] = f(z[o,r,s]) for an element-wise activation f. Zero padding adds constant 0
entries around the input; a product with a padded entry is 0 and drops out of the
expression. SymPy derives every partial. Filters are nested lists [out][in][row][column]
(the order of nn.Conv2d.weight), one bias per output channel (or none: biases = false).

Everything particular to conv2d layers is here: the spec table, the graph's nodes (one
per feature-map cell), the NumPy kernel (im2col), the gradients written as convolutions
for the worked solution and checked against the chain rule, the solution's parts
(templates/layers/conv2d.j2), the figure's panels (∗ filters = feature maps) and the
blocks a sheet may draw.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..lazy import numpy as np  # executed at first use: lazy.py

from ..activations import ACTIVATIONS
from ..nodes import PARAMETER, PRE_ACTIVATION
from ..notation import Equation, broken_sum, generic_name, partial_inline, primed
from ..templating import fill
from ..validate import expand_names, flatten_names, infer_shape, is_draw, only, only_defaults
from . import grid
from .base import (Part, WeightedLayer, read_biases, register, units_then_bias,
                   weighted_sum)

TERM_BY_TERM_LIMIT = 18  # filter weights written out term by term; more: the first filter only


@register("conv2d")
@dataclass
class Conv2dLayer(WeightedLayer):
    index: int
    in_shape: tuple[int, int, int]  # (channels, rows, columns) of its input
    out_shape: tuple[int, int, int]  # (out channels, rows, columns) of its feature map
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    activation: str
    negative_slope: float
    filter_names: list  # [out][in][row][column]
    bias_names: list[str]  # one per output channel; empty without bias
    pre_activation_names: list[str]  # row-major (out channel, row, column)
    activation_names: list[str]
    kind: str = "conv2d"
    frozen: bool = False
    fragment = "layers/conv2d.j2"
    shows_grids = True
    torch_classes = ("Conv2d",)
    torch_parameters = {"filters": "weight", "biases": "bias"}

    @property
    def in_channels(self) -> int:
        return self.in_shape[0]

    @property
    def out_channels(self) -> int:
        return self.out_shape[0]

    # Spec stage --------------------------------------------------------------
    @classmethod
    def read(cls, raw, place, index, in_shape, params):
        only(raw, {"type", "in_channels", "out_channels", "kernel", "stride", "padding",
                   "activation", "negative_slope", "filters", "biases", "names", "frozen"},
             place)
        c_in, h_in, w_in = grid.image_input(place, "conv2d", in_shape)
        if "in_channels" in raw and (place / "in_channels").integer(raw["in_channels"]) != c_in:
            (place / "in_channels").fail(f"{c_in} (the channels of this layer's input), "
                                         f"got {raw['in_channels']}")
        if "filters" not in raw:
            (place / "filters").fail("the filters, nested lists [out][in][row][column] (the "
                                     "order of PyTorch's Conv2d.weight); a plain grid for one "
                                     "filter on one channel")
        given = raw["filters"]
        depth = infer_shape(given)
        one_grid = len(depth) == 2  # one filter on one channel, given as rows
        if one_grid and c_in != 1:
            (place / "filters").fail(f"filters [out][in][row][column] for an input of {c_in} "
                                     f"channels, got a plain grid")
        if len(depth) not in (2, 4):
            (place / "filters").fail("nested lists [out][in][row][column] of numbers "
                                     "(or a plain grid for one filter on one channel)")
        out_ch = (place / "out_channels").integer(raw.get("out_channels",
                                                          1 if one_grid else depth[0]))
        kernel = grid.pair(raw.get("kernel"), place / "kernel", tuple(depth[-2:]), 1)
        stride = grid.pair(raw.get("stride"), place / "stride", (1, 1), 1)
        padding = grid.pair(raw.get("padding"), place / "padding", (0, 0), 0)
        if one_grid:
            if out_ch != 1:
                (place / "filters").fail(f"{out_ch} filters [out][in][row][column], got one grid")
            filters = [[(place / "filters").array(given, kernel)]]
        else:
            filters = (place / "filters").array(given, (out_ch, c_in) + kernel)
        h_out = grid.output_size(place, "conv2d", "rows", h_in, kernel[0], padding[0], stride[0])
        w_out = grid.output_size(place, "conv2d", "columns", w_in, kernel[1], padding[1],
                                 stride[1])
        activation = (place / "activation").choice(raw.get("activation", "identity"),
                                                   tuple(ACTIVATIONS))
        if not ACTIVATIONS[activation].elementwise:
            (place / "activation").fail(f"an element-wise activation for conv2d, got {activation}")
        slope = (place / "negative_slope").number(raw.get("negative_slope", 0.01))
        biases = read_biases(raw, place, out_ch)
        names = (place / "names").table(raw.get("names", {}))
        only(names, {"filters", "biases", "pre_activations", "activations"}, place / "names")
        default = grid.default_names(index, out_ch, c_in)
        feature_map = (out_ch, h_out, w_out)

        def named(key, shape, letters):
            return grid.block_names(names, key, place, shape, letters, default[key], index)

        layer = cls(
            index=index, in_shape=(c_in, h_in, w_in), out_shape=feature_map, kernel=kernel,
            stride=stride, padding=padding, activation=activation, negative_slope=slope,
            filter_names=named("filters", (out_ch, c_in) + kernel, "ocrs"),
            bias_names=(expand_names(names.get("biases"), place / "names" / "biases",
                                     (out_ch,), "o", default["biases"], index)
                        if biases is not None else []),
            pre_activation_names=flatten_names(named("pre_activations", feature_map, "ors")),
            activation_names=flatten_names(named("activations", feature_map, "ors")),
        )
        if activation == "identity" and "activations" not in names:
            layer.activation_names = list(layer.pre_activation_names)
        params.add(layer.filter_names, filters, place / "filters")
        if biases is not None:
            params.add(layer.bias_names, biases, place / "biases")
        layer.frozen = bool(raw.get("frozen", False))
        return layer

    def parameter_names(self):
        return units_then_bias(self.filter_names, self.bias_names)

    @classmethod
    def sheet_blocks(cls, raw, in_shape, place):
        if len(in_shape) != 3:
            return None
        kernel = grid.lenient_pair(raw.get("kernel"))
        out = raw.get("out_channels")
        if out is None and isinstance(raw.get("filters"), list):
            depth = infer_shape(raw["filters"])
            out = 1 if len(depth) == 2 else depth[0]
            kernel = kernel or tuple(depth[-2:])
        if not isinstance(out, int) or not kernel:
            if is_draw(raw.get("filters")):
                place.fail("kernel and out_channels with drawn filters")
            return None
        return ({"filters": (out, in_shape[0]) + kernel, "biases": (out,)},
                (out,) + grid.lenient_output_hw(in_shape, kernel, raw))

    # Graph stage -------------------------------------------------------------
    def build(self, graph, inputs):
        """One node per feature-map cell; the filters and biases are shared parameter leaves."""
        channels, rows, columns = self.in_shape
        for name in flatten_names(self.filter_names) + self.bias_names:
            graph.leaf(name, PARAMETER)
        out_channels, out_rows, out_columns = self.out_shape
        for o in range(out_channels):
            bias = graph.symbol(self.bias_names[o]) if self.bias_names else None
            for r in range(out_rows):
                for s in range(out_columns):
                    products = [
                        (graph.symbol(inputs[(c * rows + i) * columns + j]),
                         graph.symbol(self.filter_names[o][c][u][v]))
                        for c in range(channels)
                        for u, v, i, j in grid.window(r, s, self.kernel, self.stride,
                                                      self.padding, (rows, columns))
                        if i is not None]
                    name = self.pre_activation_names[(o * out_rows + r) * out_columns + s]
                    graph.computed(name, PRE_ACTIVATION, weighted_sum(products, bias),
                                   layer=self.index)
        return self.activate(graph)

    # Fast path ---------------------------------------------------------------
    def fast_kernel(self, in_shape):
        return Conv2dKernel(self, in_shape)

    # Derivation --------------------------------------------------------------
    def forms(self, spec, graph, example, inputs):
        """The gradients as convolutions, checked against the chain rule (below); one
        example's grids, so none in a graph spanning a mini-batch (shown node by node)."""
        if graph.spans_batch:
            return None
        return convolution_forms(spec, graph, example, self, inputs)

    # Document: grids ---------------------------------------------------------
    def summary(self, doc):
        return fill(self.words(doc)["summary"], label=doc.layer_label(self.index),
                    filters=self.out_channels, kernel=f"{self.kernel[0]}×{self.kernel[1]}",
                    channels=self.in_channels, stride=grid.size(self.stride),
                    padding=grid.size(self.padding),
                    activation=doc.t["network"]["activations"][self.activation])

    def network_part(self, doc):
        """The filters as grids and the biases."""
        if self.index not in doc.forms:  # node by node: in the table of parameters
            return None
        forms = doc.forms[self.index]
        biases = r",\quad ".join(f"{n} = {doc.n.given(float(b))}"
                                 for n, b in zip(self.bias_names, forms.biases))
        return Part(self.fragment, "network", label=doc.layer_label(self.index),
                    filters=self._filter_grids(doc, forms.filters), biases=biases,
                    parameters=self.parameter_names())

    def _filter_grids(self, doc, filters) -> list[str]:
        return [f"{self._filter_name(doc, o, c)} = {doc.grids.matrix(filters[o, c], True)}"
                for o in range(self.out_channels) for c in range(self.in_channels)]

    def _filter_name(self, doc, o: int, c: int) -> str:
        return doc.grids.name("F", self.index, (o, self.out_channels), (c, self.in_channels))

    def forward_part(self, doc, steps, values):
        if self.index not in doc.forms:
            return super().forward_part(doc, steps, values)
        forms, g = doc.forms[self.index], doc.grids
        c_in, o_ch = self.in_channels, self.out_channels
        given = self.index == 1  # its input is the network's
        if any(self.padding):
            inputs = [f"{g.name('X', self.index, (c, c_in), pad=True)} = "
                      f"{g.matrix(forms.padded_input[c], given)}" for c in range(c_in)]
        elif self.index > 1:  # the first layer's input is already shown with the network
            inputs = [f"{g.name('X', self.index, (c, c_in))} = {g.matrix(forms.input[c])}"
                      for c in range(c_in)]
        else:
            inputs = []
        channel = doc.symbols["channel"]
        maps = []
        for o in range(o_ch):
            z = g.name("Z", self.index, (o, o_ch))
            if c_in > 1:  # Σ_c X_c ⋆ F_{o,c}, the generic names agreeing with the grids
                xs = [g.name("X", self.index, (c, c_in)) for c in range(c_in)]
                fs = [self._filter_name(doc, o, c) for c in range(c_in)]
                sum_over = (rf"\sum_{{{channel}}} {generic_name(xs, channel) or xs[0]} \star "
                            f"{generic_name(fs, channel) or fs[0]}")
            else:
                sum_over = (g.name("X", self.index) + r" \star "
                            + self._filter_name(doc, o, 0))
            bias = f" + {self.bias_names[o]}" if self.bias_names else ""
            maps.append(f"{z} = {sum_over}{bias} = {g.matrix(forms.pre_activation[o])}")
        function = doc.symbols["function"]
        activated = [] if self.activation == "identity" else [
            f"{g.name('A', self.index, (o, o_ch))} = {function}\\left("
            f"{g.name('Z', self.index, (o, o_ch))}\\right) = "
            f"{g.matrix(forms.activation_values[o])}" for o in range(o_ch)]
        return Part(self.fragment, "forward", stride=grid.size(self.stride),
                    padding=grid.size(self.padding), padded=any(self.padding), inputs=inputs,
                    first_cell=self._first_cell(doc, forms, values), maps=maps,
                    activation=doc.t["network"]["activations"][self.activation],
                    activated=activated)

    def _first_cell(self, doc, forms, values) -> Equation:
        """z of the first cell: each input of its window times the filter weight over it."""
        g = doc.grids
        symbols = [f"{x} \\cdot {f}" for x, _, f, _ in forms.first_cell]
        given = self.index == 1  # its input is the network's
        numbers = [f"{g.signed(xv, given)} \\cdot {g.signed(fv, True)}"
                   for _, xv, _, fv in forms.first_cell]
        if self.bias_names:
            symbols.append(self.bias_names[0])
            numbers.append(g.signed(float(forms.biases[0]), True))
        name = self.pre_activation_names[0]
        return Equation(name, [broken_sum(symbols), broken_sum(numbers), doc.n.tex(values[name])])

    def gradient_source(self, doc):
        """The gradient of this layer's input is computed as a full convolution."""
        if self.index not in doc.forms:
            return None
        return Part(self.fragment, "from_next", label=doc.layer_label(self.index))

    def section(self, doc, section, example):
        """The gradient arriving at the feature maps, then the filters' gradients as a
        chain-rule sum and as one convolution, the bias, the input."""
        if self.index not in doc.forms:
            return super().section(doc, section, example)
        return {"items": doc.backward_items(grid.node_steps(doc, section), example.values),
                "parts": grid.arrival(doc, self, section, example) + [self._backward(doc)]}

    def _backward(self, doc) -> Part:
        forms, g = doc.forms[self.index], doc.grids
        o_ch, c_in = self.out_channels, self.in_channels
        function = doc.symbols["function"]
        through = [] if self.activation == "identity" else [
            f"{g.grad(g.name('Z', self.index, (o, o_ch)))} = "
            f"{g.grad(g.name('A', self.index, (o, o_ch)))} \\odot "
            f"{function}'\\left({g.name('Z', self.index, (o, o_ch))}\\right) = "
            f"{g.matrix(forms.output_gradient[o])}" for o in range(o_ch)]
        convolutions = []
        for o in range(o_ch):
            for c in range(c_in):
                f = self._filter_name(doc, o, c)
                x = g.name("X", self.index, (c, c_in), pad=any(self.padding))
                convolutions.append(Equation(g.grad(f), [
                    f"{x} \\star {g.grad(g.name('Z', self.index, (o, o_ch)))}",
                    f"{g.matrix(forms.padded_input[c], self.index == 1)} \\star "
                    f"{g.matrix(forms.dilated_output_gradient[o])}",
                    g.matrix(forms.filter_gradient[o, c])]))
        row, column = doc.symbols["row"], doc.symbols["column"]
        bias = [f"{g.grad(name)} = \\sum_{{{row},{column}}} \\left("
                f"{g.grad(g.name('Z', self.index, (o, o_ch)))}\\right)_{{{row},{column}}} = "
                f"{doc.n.tex(float(forms.bias_gradient[o]))}"
                for o, name in enumerate(self.bias_names)]
        filter_chain, more_filters = self._filter_chain(doc, forms)
        z, a = g.name("Z", self.index, (0, o_ch)), g.name("A", self.index, (0, o_ch))
        first_term = next(iter(forms.filter_terms.values()), [])[:1]
        local = (partial_inline(first_term[0].output, flatten_names(self.filter_names)[0])
                 + f" = {first_term[0].input}") if first_term else ""
        gap = (f"{self.stride[0] - 1}" if self.stride[0] == self.stride[1]
               else f"{self.stride[0] - 1}\\times{self.stride[1] - 1}")
        return Part(self.fragment, "backward", through=through, filter_chain=filter_chain,
                    more_filters=more_filters, dilated=self.stride != (1, 1),
                    stride=grid.size(self.stride), gap=gap, convolutions=convolutions,
                    agree=forms.agrees, difference=doc.n.tex(forms.max_difference), bias=bias,
                    identity=f"{g.grad_inline(z)} = {g.grad_inline(a)}", local=local,
                    formula=(f"{g.grad_inline(self._filter_name(doc, 0, 0))} = "
                             f"{g.name('X', self.index, (0, c_in))} \\star {g.grad_inline(z)}"),
                    input_formula=g.grad_inline(z),
                    input_gradient=(self._input_gradient(doc, forms)
                                    if forms.input_gradient_needed else []),
                    cropped=any(self.padding), padding=grid.size(self.padding))

    def _filter_chain(self, doc, forms):
        """∂E/∂f = Σ ∂E/∂z · x over the feature-map cells each weight touches; the first
        filter only when there are many weights, the first weight only in compact detail."""
        g = doc.grids
        count = self.out_channels * self.in_channels * self.kernel[0] * self.kernel[1]
        names = np.array(self.filter_names, dtype=object)
        shown = (names.ravel() if count <= TERM_BY_TERM_LIMIT else names[0, 0].ravel()).tolist()
        if doc.detail == "compact":
            shown = shown[:1]
        equations = []
        for name in dict.fromkeys(shown):
            terms = forms.filter_terms.get(name, [])
            symbols = broken_sum([f"{g.grad(t.output)} \\cdot {t.input}" for t in terms])
            numbers = broken_sum([f"{g.signed(t.output_gradient)} \\cdot "
                                  f"{g.signed(t.input_value, self.index == 1)}" for t in terms])
            value = doc.n.tex(doc.solution.example.gradients[name])
            equations.append(Equation(g.grad(name), [symbols, numbers, value]))
        return equations, len(shown) < count

    def _input_gradient(self, doc, forms) -> list[tuple[str, Equation]]:
        """(the rotated filters, ∂E/∂X as full convolutions) per input channel."""
        g = doc.grids
        o_ch, c_in = self.out_channels, self.in_channels
        out = []
        for c in range(c_in):
            x = g.name("X", self.index, (c, c_in))
            parts = [f"\\operatorname{{full}}\\left({g.grad(g.name('Z', self.index, (o, o_ch)))}, "
                     f"\\operatorname{{rot}}_{{180}}\\left({self._filter_name(doc, o, c)}"
                     f"\\right)\\right)" for o in range(o_ch)]
            rotated = r",\quad ".join(
                f"\\operatorname{{rot}}_{{180}}\\left({self._filter_name(doc, o, c)}\\right) = "
                f"{g.matrix(forms.rotated_filters[o, c], True)}" for o in range(o_ch))
            out.append((rotated, Equation(g.grad(x), [broken_sum(parts, 2),
                                                      g.matrix(forms.input_gradient[c])])))
        return out

    def update_part(self, doc, updates):
        """F' = F − η·∂E/∂F, filter by filter, all weights at once; the biases one by one;
        the frozen ones on a line (another optimizer, or no grids: as any layer's)."""
        if self.index not in doc.forms or not doc.plain_update:
            return None
        forms, g = doc.forms[self.index], doc.grids
        after = doc.solution.parameters_after
        rate = doc.n.given(doc.spec.learning_rate)
        eta = doc.symbols["rate"]
        names = np.array(self.filter_names, dtype=object).ravel()
        new = np.array([after[n] for n in names]).reshape(forms.filters.shape)
        # the gradient of the step: combined over the examples, as the updates of every layer
        gradient = np.array([doc.solution.gradients[n] for n in names]).reshape(new.shape)
        equations, frozen = [], []
        for o in range(self.out_channels):
            for c in range(self.in_channels):
                f = self._filter_name(doc, o, c)
                if all(n in doc.spec.frozen for n in flatten_names(self.filter_names[o][c])):
                    frozen.append(f)
                    continue
                equations.append(Equation(primed(f), [
                    f"{f} - {eta} \\cdot {g.grad(f)}",
                    f"{g.matrix(forms.filters[o, c], True)} - {rate} \\cdot "
                    f"{g.matrix(gradient[o, c])}", g.matrix(new[o, c])]))
        by_name = {u.parameter: u for u in updates}
        biases = [by_name[n] for n in self.bias_names if n in by_name]
        frozen += [u.parameter for u in biases if u.frozen]
        return Part(self.fragment, "updates", updates=equations,
                    bias_updates=[eq for u in biases if not u.frozen for eq in doc.update(u)],
                    frozen=doc.name_list(frozen) if frozen else "")

    def after_part(self, doc, before, after):
        if self.index not in doc.forms:  # node by node: in the table of values
            return None
        blocks = [("Z", self.pre_activation_names)]
        if self.activation_names != self.pre_activation_names:
            blocks.append(("A", self.activation_names))
        return grid.after_part(doc, self, blocks, before, after)

    # PyTorch -----------------------------------------------------------------
    @classmethod
    def torch_table(cls, module, place):
        only_defaults(module, place, dilation=(1, 1), groups=1, padding_mode="zeros")
        table = {"type": "conv2d", "out_channels": module.out_channels,
                 "kernel": grid.spec_size(grid.torch_pair(module, "kernel_size", place)),
                 "stride": grid.spec_size(grid.torch_pair(module, "stride", place)),
                 "padding": grid.spec_size(grid.torch_pair(module, "padding", place))}
        return {**table, **cls.torch_bias(module)}

    def parameter_blocks(self):
        return {"filters": self.filter_names, "biases": self.bias_names}

    def torch_module(self):
        sizes = grid.torch_sizes(kernel_size=self.kernel,
                                 stride=self.stride if self.stride != (1, 1) else None,
                                 padding=self.padding if self.padding != (0, 0) else None)
        return (f"nn.Conv2d({self.in_channels}, {self.out_channels}{sizes}"
                f"{self.torch_bias_argument()})")

    # Diagram -----------------------------------------------------------------
    def draw(self, sketch):
        """∗ the filters (+ the biases) = the feature maps, by name."""
        sketch.operator(r"\ast", "∗")
        sketch.panel([grid for per_out in self.filter_names for grid in per_out],
                     sketch.words["filter"], given=True)
        if self.bias_names:  # one bias per output channel, listed one under the other
            sketch.operator("+", "+")
            sketch.listing([sketch.number(bias, named=True) for bias in self.bias_names])
        sketch.operator("=", "=")
        sketch.maps(self.activation_names, self.out_shape, sketch.words["feature_map"])


class Conv2dKernel:
    """Arrays with axes (V, B, channels, rows, columns): V parameter variants, B examples."""

    def __init__(self, layer: Conv2dLayer, in_shape):
        self.layer = layer
        filters = np.array(layer.filter_names, dtype=object)
        self.out_channels, in_channels, kh, kw = filters.shape
        self.kernel = (kh, kw)
        self.stride = tuple(layer.stride)
        self.padding = tuple(layer.padding)
        self.activation = layer.activation
        self.slope = layer.negative_slope
        c, h, w = in_shape
        self.in_shape = in_shape
        ho = (h + 2 * self.padding[0] - kh) // self.stride[0] + 1
        wo = (w + 2 * self.padding[1] - kw) // self.stride[1] + 1
        self.out_shape = (self.out_channels, ho, wo)
        self.names = {"weights": filters}
        if layer.bias_names:  # biases = false in the spec: none
            self.names["biases"] = np.array(layer.bias_names, dtype=object)
        self.value_names = {"pre_activation": layer.pre_activation_names,
                            "activation": layer.activation_names}

    def forward(self, x, p):
        """im2col: the windows as columns (one copy), then one small BLAS product per example
        whose result is already channels first: z_b = F · cols_b, (O, C·kh·kw)(C·kh·kw, Ho·Wo)."""
        w = p["weights"]  # (V, O, C, kh, kw); biases (V, O)
        v, batch = x.shape[:2]
        o, ho, wo = self.out_shape
        windows = grid.windows_view(grid.pad_images(x, self.padding), self.kernel,
                                    self.stride)  # (V, B, C, Ho, Wo, kh, kw)
        cols = np.ascontiguousarray(windows.transpose(0, 1, 2, 5, 6, 3, 4)).reshape(
            v, batch, -1, ho * wo)  # rows (c, u, v), columns (r, s)
        z = np.matmul(w.reshape(w.shape[0], 1, o, -1), cols)  # (V, B, O, Ho·Wo)
        if "biases" in p:
            z += p["biases"][:, None, :, None]
        z = z.reshape(z.shape[:3] + (ho, wo))
        return z, ACTIVATIONS[self.activation].forward(z, self.slope), cols

    def backward(self, x, p, delta, need_input_grad, cols):
        w = p["weights"]
        v, batch = delta.shape[:2]
        o, ho, wo = self.out_shape
        delta = delta.reshape(v, batch, o, ho * wo)
        # ∂L/∂F = Σ_b δ_b · cols_bᵀ: per-example products summed (faster here than einsum)
        grads = {"weights": np.matmul(delta, np.swapaxes(cols, -1, -2)).sum(axis=1).reshape(
            (v,) + w.shape[1:])}
        if "biases" in p:
            grads["biases"] = delta.sum(axis=(1, 3))
        if not need_input_grad:
            return grads, None
        c, h, wd = self.in_shape
        (kh, kw), (ph, pw) = self.kernel, self.padding
        # col2im: each column's gradient Fᵀ·δ_b, added back under its window
        grad_cols = np.matmul(np.swapaxes(w.reshape(w.shape[0], 1, o, -1), -1, -2),
                              delta).reshape(v, batch, c, kh * kw, ho, wo)
        g = np.zeros((v, batch, c, h + 2 * ph, wd + 2 * pw))
        for k, cell in enumerate(grid.offset_views(g, self.kernel, self.stride, (ho, wo))):
            cell += grad_cols[:, :, :, k]
        return grads, g[..., ph:ph + h, pw:pw + wd]


# ---------------------------------------------------------------------------
# Derivation: the chain rule of a conv layer written as convolutions
#
# For input X (zero-padded by p), filters F, stride s and feature-map gradient
# G = ∂E/∂Z (taken from the graph's element-wise chain rule):
#
# - ∂E/∂F[o,c] = X_pad[c] ⋆ dilate_s(G[o])   (valid cross-correlation)
# - ∂E/∂b[o]   = Σ_{r,s} G[o,r,s]
# - ∂E/∂X[c]   = Σ_o full convolution of dilate_s(G[o]) with F[o,c]
#              = Σ_o pad_{k−1}(dilate_s(G[o])) ⋆ rot180(F[o,c]), cropped by p
#
# where dilate_s puts s − 1 zeros between the cells (nothing when s = 1). ∂E/∂X is
# computed for every conv layer; the worked solution needs it when the layer's input is
# not the network's input (a conv layer after another conv or pool layer). Each form is
# compared with the element-wise chain-rule values of the graph: the filter and bias
# gradients with the parameters' adjoints, ∂E/∂X with Σ over the children of each input
# cell.

TOLERANCE = 1e-9  # relative agreement of the convolution forms with the chain rule


def pad(cells: np.ndarray, padding) -> np.ndarray:
    """Zeros around the last two axes."""
    widths = [(0, 0)] * (cells.ndim - 2) + [(padding[0], padding[0]), (padding[1], padding[1])]
    return np.pad(cells, widths)


def dilate(cells: np.ndarray, stride) -> np.ndarray:
    """stride − 1 zeros between neighbouring cells of the last two axes."""
    rows, columns = cells.shape[-2:]
    out = np.zeros(cells.shape[:-2] + ((rows - 1) * stride[0] + 1, (columns - 1) * stride[1] + 1))
    out[..., ::stride[0], ::stride[1]] = cells
    return out


def rotate180(cells: np.ndarray) -> np.ndarray:
    return cells[..., ::-1, ::-1]


def cross_correlate(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Valid cross-correlation of two 2-D grids (the kernel slides inside the image)."""
    kr, kc = kernel.shape
    rows, columns = image.shape[0] - kr + 1, image.shape[1] - kc + 1
    return np.array([[float(np.sum(image[r:r + kr, c:c + kc] * kernel)) for c in range(columns)]
                     for r in range(rows)])


def full_convolution(cells: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Full convolution: the grid padded by kernel − 1, cross-correlated with the rotated
    kernel."""
    kr, kc = kernel.shape
    return cross_correlate(pad(cells, (kr - 1, kc - 1)), rotate180(kernel))


@dataclass
class FilterTerm:
    """One term ∂E/∂z · x of a filter weight's chain-rule sum (x = 0 on padding: left out)."""

    output: str  # feature-map cell z
    output_gradient: float  # ∂E/∂z
    input: str  # input cell x
    input_value: float


@dataclass
class ConvolutionForms:
    """One conv layer of one example: forward grids and gradients as convolutions."""

    layer: int
    stride: tuple[int, int]
    padding: tuple[int, int]
    kernel: tuple[int, int]
    activation: str
    input_names: list  # [channel][row][column]
    input: np.ndarray  # (C, H, W)
    padded_input: np.ndarray  # (C, H + 2p, W + 2p)
    filter_names: list  # [out][in][row][column]
    filters: np.ndarray  # (O, C, kh, kw)
    bias_names: list[str]
    biases: np.ndarray  # (O,), zeros without bias
    pre_activation_names: list  # [out][row][column]
    pre_activation: np.ndarray  # Z (O, H_out, W_out)
    activation_names: list
    activation_values: np.ndarray  # A = f(Z)
    first_cell: list[tuple[str, float, str, float]]  # the weighted sum of z[0,0,0], term by term
    output_gradient: np.ndarray  # ∂E/∂Z from the graph (element-wise chain rule)
    dilated_output_gradient: np.ndarray  # ∂E/∂Z dilated by the stride
    filter_terms: dict[str, list[FilterTerm]]  # chain-rule sum of each filter weight
    filter_gradient: np.ndarray  # ∂E/∂F as X ⋆ ∂E/∂Z
    filter_gradient_chain: np.ndarray  # ∂E/∂F from the graph, per filter position
    bias_gradient: np.ndarray  # Σ ∂E/∂Z per output channel
    bias_gradient_chain: np.ndarray
    input_gradient: np.ndarray  # ∂E/∂X as full convolution with the rotated filters
    input_gradient_chain: np.ndarray  # ∂E/∂X, Σ over the children of each input cell
    input_gradient_needed: bool  # the layer's input is not the network's input
    max_difference: float  # largest |convolution form − chain rule|, relative
    kind: str = "conv2d"

    @property
    def agrees(self) -> bool:
        return self.max_difference <= TOLERANCE

    @property
    def rotated_filters(self) -> np.ndarray:
        return rotate180(self.filters)


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))


def convolution_forms(spec, graph, example, layer: Conv2dLayer,
                      inputs: list[str]) -> ConvolutionForms:
    values = example.values
    x = grid.as_grid([values[n] for n in inputs], layer.in_shape)
    filters = grid.as_grid([spec.parameters[n] for n in grid.flat(layer.filter_names)],
                           (layer.out_channels, layer.in_channels) + layer.kernel)
    biases = np.array([spec.parameters[n] for n in layer.bias_names] or
                      [0.0] * layer.out_channels)
    z = grid.as_grid([values[n] for n in layer.pre_activation_names], layer.out_shape)
    a = grid.as_grid([values[n] for n in layer.activation_names], layer.out_shape)
    g = grid.as_grid([example.adjoints[n] for n in layer.pre_activation_names], layer.out_shape)
    padded = pad(x, layer.padding)
    dilated = dilate(g, layer.stride)

    filter_gradient = np.array([[cross_correlate(padded[c], dilated[o])
                                 for c in range(layer.in_channels)]
                                for o in range(layer.out_channels)])
    bias_gradient = g.sum(axis=(1, 2))
    full = sum(np.array([full_convolution(dilated[o], filters[o, c])
                         for c in range(layer.in_channels)])
               for o in range(layer.out_channels))
    ph, pw = layer.padding
    input_gradient = full[:, ph:full.shape[1] - ph, pw:full.shape[2] - pw]

    # The same gradients from the graph's element-wise chain rule.
    gradient_of = example.gradients
    filter_chain = grid.as_grid([gradient_of[n] for n in grid.flat(layer.filter_names)],
                                filters.shape)
    bias_chain = np.array([gradient_of[n] for n in layer.bias_names]) if layer.bias_names \
        else bias_gradient.copy()
    input_chain = grid.input_gradient_chain(graph, example, inputs).reshape(layer.in_shape)
    # a name used in several places is one parameter: compare the sums over its places,
    # and only for names this layer alone uses
    shared_elsewhere = _names_outside(spec, layer)
    compared = _by_name(layer.filter_names, filter_gradient, shared_elsewhere)
    compared.update(_by_name(layer.bias_names, bias_gradient, shared_elsewhere))
    differences = [abs(total - gradient_of[n]) / max(1.0, abs(gradient_of[n]))
                   for n, total in compared.items()]
    differences.append(_relative(input_gradient, input_chain))

    return ConvolutionForms(
        layer=layer.index, stride=layer.stride, padding=layer.padding, kernel=layer.kernel,
        activation=layer.activation,
        input_names=grid.nest(inputs, layer.in_shape), input=x, padded_input=padded,
        filter_names=layer.filter_names, filters=filters, bias_names=list(layer.bias_names),
        biases=biases,
        pre_activation_names=grid.nest(layer.pre_activation_names, layer.out_shape),
        pre_activation=z,
        activation_names=grid.nest(layer.activation_names, layer.out_shape), activation_values=a,
        first_cell=_first_cell(layer, inputs, values, spec.parameters),
        output_gradient=g, dilated_output_gradient=dilated,
        filter_terms=_filter_terms(layer, inputs, values, example.adjoints),
        filter_gradient=filter_gradient, filter_gradient_chain=filter_chain,
        bias_gradient=bias_gradient, bias_gradient_chain=bias_chain,
        input_gradient=input_gradient, input_gradient_chain=input_chain,
        input_gradient_needed=list(inputs) != list(spec.input_names),
        max_difference=max(differences))


def _names_outside(spec, layer) -> set[str]:
    return {n for other in spec.layers if other is not layer for n in other.parameter_names()}


def _by_name(names, gradients: np.ndarray, skip: set[str]) -> dict[str, float]:
    """Sum a gradient grid over the positions sharing a name (shared filter weights)."""
    totals: dict[str, float] = {}
    for name, value in zip(grid.flat(names), np.asarray(gradients).ravel()):
        if name not in skip:
            totals[name] = totals.get(name, 0.0) + float(value)
    return totals


def _first_cell(layer, inputs, values, parameters):
    """(input name, input value, filter name, filter value) of z[0, 0, 0], channel by channel."""
    _, rows, columns = layer.in_shape
    terms = []
    for c in range(layer.in_channels):
        for u, v, i, j in grid.layer_window(layer, 0, 0):
            if i is not None:
                x_name = inputs[(c * rows + i) * columns + j]
                f_name = layer.filter_names[0][c][u][v]
                terms.append((x_name, values[x_name], f_name, parameters[f_name]))
    return terms


def _filter_terms(layer, inputs, values, adjoints) -> dict[str, list[FilterTerm]]:
    """For each filter weight, the feature-map cells it touches and the input it meets there."""
    _, rows, columns = layer.in_shape
    out_channels, out_rows, out_columns = layer.out_shape
    terms: dict[str, list[FilterTerm]] = {}
    for o in range(out_channels):
        for r in range(out_rows):
            for s in range(out_columns):
                z = layer.pre_activation_names[(o * out_rows + r) * out_columns + s]
                for c in range(layer.in_channels):
                    for u, v, i, j in grid.layer_window(layer, r, s):
                        if i is None:
                            continue
                        x_name = inputs[(c * rows + i) * columns + j]
                        terms.setdefault(layer.filter_names[o][c][u][v], []).append(
                            FilterTerm(z, adjoints[z], x_name, values[x_name]))
    return terms
