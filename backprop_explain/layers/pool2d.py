"""Pooling (``maxpool2d``, ``avgpool2d``): the maximum or the mean of each window, per channel.

Max pooling routes the gradient to the maximum; on a tie, to the FIRST maximum in
row-major order of the window (as PyTorch): cell k wins when it is > every earlier
cell and >= every later one, and SymPy's derivative is 1 for the winner, 0 elsewhere
(cells equal but for the rounding of their 40 digits tie: numeric.TIE_DIGITS).
Padded cells never win (PyTorch pads with −∞). Average pooling divides by the window
size, padded zeros included (PyTorch's count_include_pad=True), so the gradient is
spread evenly, 1/(kh·kw) to each cell. The stride defaults to the window (PyTorch).

Everything particular to pooling layers is here: the spec table, the graph's nodes (one
per pooled cell), the NumPy kernel, the routing of the gradient for the worked solution,
the solution's parts (templates/layers/pool2d.j2), the figure's panel (→ pooled maps).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..lazy import numpy as np  # executed at first use: lazy.py
import sympy as sp

from ..keys import local_key
from ..partials import rename
from ..templating import fill
from ..validate import flatten_names, only, only_defaults
from . import grid
from .base import Layer, Part, register

POOL = "pool"  # the graph's node kind of a pooled cell
WINNERS_SHOWN = 8  # the maxima receiving a gradient named in the text, when no more


@register("maxpool2d", "avgpool2d")
@dataclass
class Pool2dLayer(Layer):
    index: int
    kind: str  # "maxpool2d" or "avgpool2d"
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    output_names: list[str]  # row-major (channel, row, column)
    fragment = "layers/pool2d.j2"
    shows_grids = True
    torch_classes = ("MaxPool2d", "AvgPool2d")

    @property
    def takes_maximum(self) -> bool:
        return self.kind == "maxpool2d"

    # Spec stage --------------------------------------------------------------
    @classmethod
    def read(cls, raw, place, index, in_shape, params):
        kind = raw["type"]
        only(raw, {"type", "kernel", "stride", "padding", "names"}, place)
        channels, h_in, w_in = grid.image_input(place, kind, in_shape)
        if "kernel" not in raw:
            (place / "kernel").fail(f"the {kind} window size (a whole number or [rows, columns])")
        kernel = grid.pair(raw["kernel"], place / "kernel", None, 1)
        stride = grid.pair(raw.get("stride"), place / "stride", kernel, 1)  # PyTorch: = kernel
        padding = grid.pair(raw.get("padding"), place / "padding", (0, 0), 0)
        if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
            (place / "padding").fail(f"a padding of at most half the window {kernel[0]}×"
                                     f"{kernel[1]} (as PyTorch), got {padding[0]}×{padding[1]}")
        h_out = grid.output_size(place, kind, "rows", h_in, kernel[0], padding[0], stride[0])
        w_out = grid.output_size(place, kind, "columns", w_in, kernel[1], padding[1], stride[1])
        names = (place / "names").table(raw.get("names", {}))
        only(names, {"outputs"}, place / "names")
        out_shape = (channels, h_out, w_out)
        outputs = grid.block_names(names, "outputs", place, out_shape, "crs",
                                   grid.default_names(index, 1, channels)["outputs"], index)
        return cls(index=index, kind=kind, in_shape=(channels, h_in, w_in), out_shape=out_shape,
                   kernel=kernel, stride=stride, padding=padding,
                   output_names=flatten_names(outputs))

    def quantity_names(self):
        return list(self.output_names)

    def outputs(self, inputs):
        return list(self.output_names)

    @classmethod
    def sheet_blocks(cls, raw, in_shape, place):
        kernel = grid.lenient_pair(raw.get("kernel"))
        if len(in_shape) != 3 or not kernel:
            return None
        return {}, (in_shape[0],) + grid.lenient_output_hw(in_shape, kernel, raw,
                                                           default_stride=kernel)

    # Graph stage -------------------------------------------------------------
    def build(self, graph, inputs):
        """One node per pooled cell, per channel."""
        channels, out_rows, out_columns = self.out_shape
        window_size = self.kernel[0] * self.kernel[1]
        for c in range(channels):
            for r in range(out_rows):
                for s in range(out_columns):
                    cells = [graph.symbol(n) for n in grid.window_names(self, inputs, c, r, s)]
                    expr = (max_pool(cells) if self.takes_maximum
                            else avg_pool(cells, window_size))
                    name = self.output_names[(c * out_rows + r) * out_columns + s]
                    graph.computed(name, POOL, expr, layer=self.index)
        return list(self.output_names)

    # Fast path ---------------------------------------------------------------
    def fast_kernel(self, in_shape):
        return Pool2dKernel(self, in_shape)

    # Derivation --------------------------------------------------------------
    def forms(self, spec, graph, example, inputs):
        """Where each pooled cell's gradient goes (below); one example's grids, so none in
        a graph spanning a mini-batch (shown node by node)."""
        if graph.spans_batch:
            return None
        return pooling_routing(graph, example, self, inputs)

    # Document: grids ---------------------------------------------------------
    def summary(self, doc):
        return fill(self.words(doc)["summary"], label=doc.layer_label(self.index),
                    kernel=f"{self.kernel[0]}×{self.kernel[1]}", stride=grid.size(self.stride),
                    padding=grid.size(self.padding))

    def forward_part(self, doc, steps, values):
        if self.index not in doc.forms:
            return super().forward_part(doc, steps, values)
        routing, g = doc.forms[self.index], doc.grids
        channels = self.in_shape[0]
        operator = r"\operatorname{maxpool}" if self.takes_maximum else r"\operatorname{avgpool}"
        pooled = [f"{g.name('P', self.index, (c, channels))} = {operator}\\left("
                  f"{g.matrix(routing.input[c])}\\right) = {g.matrix(routing.output[c])}"
                  for c in range(channels)]
        return Part(self.fragment, "forward", kind=self.kind,
                    kernel=f"{self.kernel[0]}×{self.kernel[1]}", stride=grid.size(self.stride),
                    padding=grid.size(self.padding), pooled=pooled)

    def routed_gradient(self, doc, previous, section):
        """∂E/∂P as grids, how the pooling routes it, ∂E/∂(the previous layer's output)."""
        if self.index not in doc.forms:
            return None
        routing, g = doc.forms[self.index], doc.grids
        winners = sorted({w for channel in routing.winners for row in channel
                          for w in row if w is not None}, key=lambda name: _position(doc, name))
        shown = (", ".join(f"${w}$" for w in winners)
                 if winners and len(winners) <= WINNERS_SHOWN else "")  # more: the grid shows them
        return grid.gradient_source(doc, self, section) + [Part(
            self.fragment, "routing", kind=self.kind,
            gradients=g.gradient_grids("P", self.index, routing.output_gradient), winners=shown,
            previous=g.gradient_grids("A", previous.index, routing.input_gradient))]

    def after_part(self, doc, before, after):
        if self.index not in doc.forms:  # node by node: in the table of values
            return None
        return grid.after_part(doc, self, [("P", self.output_names)], before, after)

    # PyTorch -----------------------------------------------------------------
    @classmethod
    def torch_table(cls, module, place):
        maximum = type(module).__name__ == "MaxPool2d"
        if maximum:
            only_defaults(module, place, dilation=(1, 1), ceil_mode=False,
                                return_indices=False)
        else:
            only_defaults(module, place, ceil_mode=False, count_include_pad=True,
                                divisor_override=None)
        kernel = grid.torch_pair(module, "kernel_size", place)
        stride = grid.torch_pair(module, "stride", place) if module.stride else kernel
        return {"type": "maxpool2d" if maximum else "avgpool2d", "kernel": grid.spec_size(kernel),
                "stride": grid.spec_size(stride),
                "padding": grid.spec_size(grid.torch_pair(module, "padding", place))}

    def torch_modules(self):
        sizes = grid.torch_sizes(kernel_size=self.kernel, stride=self.stride,
                                 padding=self.padding if self.padding != (0, 0) else None)
        return [f"nn.{'MaxPool2d' if self.takes_maximum else 'AvgPool2d'}({sizes[2:]})"]

    # Diagram -----------------------------------------------------------------
    def draw(self, sketch):
        """→ the pooled maps, by name."""
        sketch.operator(r"\rightarrow", "→")
        sketch.maps(self.output_names, self.out_shape, sketch.words[self.kind])


def first_maximum_indicator(cells: list[sp.Symbol], k: int) -> sp.Expr:
    """1 when cell k is the first maximum of the window (row-major), else 0."""
    beats = [cells[k] > earlier for earlier in cells[:k]]
    beats += [cells[k] >= later for later in cells[k + 1:]]
    return sp.Piecewise((1, sp.And(*beats)), (0, True))


def max_pool(cells: list[sp.Symbol]) -> sp.Expr:
    """max of the (non-padded) window cells, given in row-major order, as Σ_k x_k·[k wins].

    Exactly one indicator is 1, so the value is the maximum; each indicator is piecewise
    constant, so ∂max/∂x_k is the indicator of k: the gradient goes to the first maximum.

    SymPy writes each condition and orders the conditions by comparing the cells' names
    (most of the graph's time went there), so windows whose names come in the same order
    have one expression up to the names: SymPy builds it for the first such window, the
    others take it with their names put in, nothing re-evaluated (partials.rename), the
    very expression SymPy would build (tests/test_cnn.py compares them).
    """
    if len(cells) == 1:
        return cells[0]
    order = tuple(sorted(range(len(cells)), key=lambda k: cells[k].name))
    if order not in _WINDOW_FORMS:
        if len(_WINDOW_FORMS) > 1024:  # bounded: a 3×3 window has 9! orders
            _WINDOW_FORMS.clear()
        _WINDOW_FORMS[order] = (tuple(cells), built_max_pool(cells))
    symbols, expr = _WINDOW_FORMS[order]
    return rename(expr, dict(zip(symbols, cells)))


_WINDOW_FORMS: dict[tuple[int, ...], tuple[tuple[sp.Symbol, ...], sp.Expr]] = {}


def built_max_pool(cells: list[sp.Symbol]) -> sp.Expr:
    """max_pool's expression as SymPy builds it, condition by condition."""
    return sp.Add(*[sp.Mul(x, first_maximum_indicator(cells, k), evaluate=False)
                    for k, x in enumerate(cells)], evaluate=False)


def avg_pool(cells: list[sp.Symbol], window_size: int) -> sp.Expr:
    """(Σ cells)/(kh·kw); padded cells are zeros in the sum."""
    return sp.Mul(sp.Rational(1, window_size), sp.Add(*cells, evaluate=False), evaluate=False)


class Pool2dKernel:
    """Arrays with axes (V, B, channels, rows, columns): V parameter variants, B examples."""

    activation = "identity"
    slope = 0.01

    def __init__(self, layer: Pool2dLayer, in_shape):
        self.layer = layer
        self.kind = layer.kind
        self.kernel = tuple(layer.kernel)
        self.stride = tuple(layer.stride)
        self.padding = tuple(layer.padding)
        c, h, w = in_shape
        self.in_shape = in_shape
        ho = (h + 2 * self.padding[0] - self.kernel[0]) // self.stride[0] + 1
        wo = (w + 2 * self.padding[1] - self.kernel[1]) // self.stride[1] + 1
        self.out_shape = (c, ho, wo)
        self.names = {}
        self.value_names = {"activation": layer.output_names}
        self.window_size = float(self.kernel[0] * self.kernel[1])  # padded zeros count
        # windows that share no cell (stride ≥ kernel), and that tile the padded input
        self.disjoint = all(s >= k for s, k in zip(self.stride, self.kernel))
        self.tiles = self.disjoint and all(
            s == k and n + 2 * p == o * k for s, k, n, p, o in
            zip(self.stride, self.kernel, (h, w), self.padding, (ho, wo)))

    def _cells(self, padded) -> list:
        """The window cell at each kernel offset (i, j), row-major, for every output cell at
        once: views of the (padded) input."""
        return grid.offset_views(padded, self.kernel, self.stride, self.out_shape[1:])

    def forward(self, x, p):
        if self.layer.takes_maximum:
            # padded cells are −∞: they never win
            cells = self._cells(grid.pad_images(x, self.padding, -np.inf))
            if len(cells) == 1:  # a 1×1 window: its one cell
                out = cells[0].copy()
                return out, out, np.zeros(out.shape, np.int8)
            # the winner is the first maximum in row-major order, as in PyTorch: the last
            # cell above every cell before it (integer arithmetic: much faster than masks);
            # after the second cell, it is whether that one is above the first
            winner = np.greater(cells[1], cells[0]).view(np.int8)
            out = np.maximum(cells[0], cells[1])  # the maximum so far
            if len(cells) > 127:
                winner = winner.astype(np.int32)
            dtype = winner.dtype.type
            for k in range(2, len(cells)):
                above = np.greater(cells[k], out).view(np.int8)
                np.maximum(out, cells[k], out=out)
                np.maximum(winner, np.multiply(above, dtype(k), dtype=dtype), out=winner)
            return out, out, winner
        cells = self._cells(grid.pad_images(x, self.padding))
        total = cells[0].copy()
        for cell in cells[1:]:
            total += cell
        total /= self.window_size
        return total, total, None

    def backward(self, x, p, delta, need_input_grad, winner=None):
        if not need_input_grad:
            return {}, None
        c, h, w = self.in_shape
        ph, pw = self.padding
        shape = x.shape[:2] + (c, h + 2 * ph, w + 2 * pw)
        share = None if self.layer.takes_maximum else delta / self.window_size
        if self.disjoint:
            # each input cell in one window at most: its gradient written in place, then
            # + 0.0, which is what adding it to zeros gives (−0.0 becomes 0.0)
            g = np.empty(shape) if self.tiles else np.zeros(shape)
            for k, cell in enumerate(self._cells(g)):
                if share is None:
                    np.multiply(delta, np.equal(winner, k), out=cell)
                else:
                    cell[...] = share
            g += 0.0
        else:
            g = np.zeros(shape)
            for k, cell in enumerate(self._cells(g)):  # each window's gradient, added
                cell += share if share is not None else delta * (winner == k)
        if ph or pw:
            g = g[..., ph:ph + h, pw:pw + w]
        return {}, g


# ---------------------------------------------------------------------------
# Derivation: where each pooled cell's gradient goes (read off SymPy's derivatives)


@dataclass
class PoolingRouting:
    """One pooling layer of one example: where each pooled cell's gradient goes."""

    layer: int
    kind: str  # "maxpool2d" or "avgpool2d"
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    input_names: list  # [channel][row][column]
    input: np.ndarray
    output_names: list
    output: np.ndarray
    output_gradient: np.ndarray  # ∂E/∂P
    input_gradient: np.ndarray  # ∂E/∂(pooled input), from the graph
    winners: list = field(default_factory=list)  # max: [c][r][s] → name of the winning cell


def pooling_routing(graph, example, layer: Pool2dLayer, inputs: list[str]) -> PoolingRouting:
    values, adjoints = example.values, example.adjoints
    channels, out_rows, out_columns = layer.out_shape
    winners = []
    if layer.takes_maximum:
        # read off the derivative SymPy took: the cell whose ∂p/∂x is 1
        for c in range(channels):
            winners.append([])
            for r in range(out_rows):
                row = []
                for s in range(out_columns):
                    p = layer.output_names[(c * out_rows + r) * out_columns + s]
                    cells = grid.window_names(layer, inputs, c, r, s)
                    row.append(next((x for x in cells
                                     if example.local_partials.get(local_key(p, x)) == 1.0),
                                    None))
                winners[c].append(row)
    return PoolingRouting(
        layer=layer.index, kind=layer.kind, kernel=layer.kernel, stride=layer.stride,
        padding=layer.padding, input_names=grid.nest(inputs, layer.in_shape),
        input=grid.as_grid([values[n] for n in inputs], layer.in_shape),
        output_names=grid.nest(layer.output_names, layer.out_shape),
        output=grid.as_grid([values[n] for n in layer.output_names], layer.out_shape),
        output_gradient=grid.as_grid([adjoints[n] for n in layer.output_names], layer.out_shape),
        input_gradient=grid.input_gradient_chain(graph, example, inputs).reshape(layer.in_shape),
        winners=winners)


def _position(doc, name: str):
    """Where a node comes in the worked solution: by layer, then in graph order."""
    return doc.graph.nodes[name].layer or 0, list(doc.graph.nodes).index(name)
