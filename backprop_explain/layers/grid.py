"""What the grid kinds (conv2d.py, pool2d.py) share: images, windows, padding, grids shown.

Conventions (PyTorch's; the NumPy fast path follows the same):

- images are (channels, rows, columns), kept in row-major order (channels first) as
  lists of names; conv filters are nested lists [out][in][row][column], the order of
  nn.Conv2d.weight.
- a window of output cell (r, s) covers input cells r·stride + u − padding, s·stride +
  v − padding for kernel positions (u, v); padding p adds p rows/columns of constant
  zeros (conv2d, avgpool2d; max pooling never picks a padded cell, PyTorch pads it with
  −∞).
- output size H_out = (H_in − k + 2p)/s + 1 must be a whole number ≥ 1.

Default names (placeholders #l layer, #o output channel, #c input channel, #r row, #s
column; all from 1): filters f_{#r,#s}, bias b, feature map z_{#r,#s} before and a_{#r,#s}
after the activation, pooled cells p_{#r,#s}. A channel index is added when there are
several channels (f_{#o,#c,#r,#s}, b_{#o}, z_{#o,#r,#s}, p_{#c,#r,#s}) and a layer
superscript ^{(#l)} for every layer but the first (f^{(2)}_{#r,#s}, …).
"""

from __future__ import annotations

from ..keys import local_key
from ..lazy import numpy as np  # executed at first use: lazy.py
from ..notation import Equation, grid_name, name_base, partial, partial_inline, primed, tex
from ..templating import fill
from ..validate import Place, expand_names, infer_shape
from .base import Part

# ---------------------------------------------------------------------------
# Reading a grid layer's table


def pair(value, place: Place, default, minimum: int) -> tuple[int, int]:
    """A size given as one whole number or as [rows, columns]."""
    if value is None:
        return default
    if isinstance(value, list):
        if len(value) != 2:
            place.fail(f"a whole number or [rows, columns], got a list of {len(value)}")
        return tuple((place / k).integer(v, minimum) for k, v in enumerate(value))
    n = place.integer(value, minimum)
    return (n, n)


def output_size(place: Place, kind: str, axis: str, n_in: int, k: int, p: int, s: int) -> int:
    span = n_in - k + 2 * p
    if span < 0 or span % s:
        place.fail(f"sizes giving a whole number of {kind} output {axis}, got "
                   f"(H_in − k + 2p)/s + 1 = ({n_in} − {k} + 2·{p})/{s} + 1 = {span / s + 1:g}"
                   f" (change the kernel, stride or padding)")
    return span // s + 1


def image_input(place: Place, kind: str, in_shape) -> tuple[int, int, int]:
    if len(in_shape) != 3:
        place.fail(f"an image input [channels][rows][columns] for {kind}, got a vector of "
                   f"{in_shape[0]} values ({kind} cannot follow a flatten or dense layer)")
    return tuple(in_shape)


def default_names(index: int, out_channels: int, in_channels: int = 1) -> dict:
    sup = "" if index == 1 else "^{(#l)}"
    o = "#o," if out_channels > 1 else ""
    c = "#c," if in_channels > 1 else ""
    return {
        "filters": f"f{sup}_{{{o}{c}#r,#s}}",
        "biases": f"b{sup}_{{#o}}" if out_channels > 1 else f"b{sup}",
        "pre_activations": f"z{sup}_{{{o}#r,#s}}",
        "activations": f"a{sup}_{{{o}#r,#s}}",
        "outputs": f"p{sup}_{{{c}#r,#s}}",
    }


def block_names(names: dict, key: str, place: Place, shape, letters: str, default: str,
                index: int):
    """Names of a block; a nested list may leave out a leading channel axis of size 1."""
    given = names.get(key)
    if isinstance(given, list) and len(infer_shape(given)) < len(shape):
        missing = len(shape) - len(infer_shape(given))
        if all(n == 1 for n in shape[:missing]):
            for _ in range(missing):
                given = [given]
    return expand_names(given, place / "names" / key, shape, letters, default, index)


# Sheet templates: sizes read leniently (the spec stage reports what is wrong)

def lenient_pair(value):
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return tuple(value)
    return None


def lenient_output_hw(shape, kernel, raw: dict, default_stride=(1, 1)):
    stride = lenient_pair(raw.get("stride")) or default_stride
    padding = lenient_pair(raw.get("padding")) or (0, 0)
    # max(s, 1): a stride of 0 is refused by the spec stage, with its place, after drawing
    return tuple((n - k + 2 * p) // max(s, 1) + 1
                 for n, k, p, s in zip(shape[1:], kernel, padding, stride))


# ---------------------------------------------------------------------------
# Windows


def window(r: int, s: int, kernel, stride, padding, in_size):
    """The cells under the window of output cell (r, s), row-major: (u, v, i, j) with
    (u, v) the kernel position and (i, j) the input cell, or i = j = None on padding."""
    cells = []
    for u in range(kernel[0]):
        for v in range(kernel[1]):
            i = r * stride[0] + u - padding[0]
            j = s * stride[1] + v - padding[1]
            inside = 0 <= i < in_size[0] and 0 <= j < in_size[1]
            cells.append((u, v, i, j) if inside else (u, v, None, None))
    return cells


def layer_window(layer, r: int, s: int):
    """window() of output cell (r, s) of a conv or pool layer."""
    return window(r, s, layer.kernel, layer.stride, layer.padding, layer.in_shape[1:])


def window_names(layer, inputs: list[str], c: int, r: int, s: int) -> list[str]:
    """The names of the (non-padded) input cells of channel c under output cell (r, s)."""
    _, rows, columns = layer.in_shape
    return [inputs[(c * rows + i) * columns + j]
            for _, _, i, j in layer_window(layer, r, s) if i is not None]


# ---------------------------------------------------------------------------
# Fast path: every window of a batch at once (arrays (V, B, C, H, W))


def windows_view(x, kernel, stride):
    """Strided view (V, B, C, Ho, Wo, kh, kw) of every window of a padded image batch."""
    (kh, kw), (sh, sw) = kernel, stride
    ho, wo = (x.shape[-2] - kh) // sh + 1, (x.shape[-1] - kw) // sw + 1
    rows, columns = x.strides[-2:]
    shape = x.shape[:-2] + (ho, wo, kh, kw)
    strides = x.strides[:-2] + (rows * sh, columns * sw, rows, columns)
    if x.flags.c_contiguous:  # a view of its buffer: a fraction of as_strided's cost
        view = np.ndarray(shape, x.dtype, x, 0, strides)
        view.flags.writeable = False
        return view
    return np.lib.stride_tricks.as_strided(x, shape, strides, writeable=False)


def offset_views(x, kernel, stride, out_hw) -> list:
    """For each kernel offset (i, j), row-major: the view (…, Ho, Wo) of the cell at that
    offset in every window of a padded image batch (writable when x is)."""
    (kh, kw), (sh, sw), (ho, wo) = kernel, stride, out_hw
    return [x[..., i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
            for i in range(kh) for j in range(kw)]


def pad_images(x, padding, value=0.0):
    if padding == (0, 0):
        return x
    ph, pw = padding
    return np.pad(x, [(0, 0)] * (x.ndim - 2) + [(ph, ph), (pw, pw)], constant_values=value)


# ---------------------------------------------------------------------------
# Derivation: a derived example's values as grids (NumPy, float64)


def as_grid(values: list[float], shape) -> np.ndarray:
    return np.array(values, dtype=float).reshape(shape)


def nest(names: list[str], shape) -> list:
    """Names in row-major order as nested lists of ``shape``."""
    return np.array(names, dtype=object).reshape(shape).tolist()


def flat(nested) -> list:
    return np.array(nested, dtype=object).ravel().tolist()


def input_gradient_chain(graph, example, names: list[str]) -> np.ndarray:
    """∂E/∂x of each named cell as Σ over its children of ∂E/∂child · ∂child/∂x."""
    loss = graph.loss.name
    values = []
    for name in names:
        if name in example.adjoints:
            values.append(example.adjoints[name])
            continue
        total = 0.0  # a network input: the derivation keeps no adjoint for it
        for child in graph.children[name]:
            key = local_key(child, name)
            if key in example.local_partials:
                total += (1.0 if child == loss else example.adjoints[child]) \
                    * example.local_partials[key]
        values.append(total)
    return np.array(values, dtype=float)


# ---------------------------------------------------------------------------
# PyTorch: sizes of Conv2d, MaxPool2d and AvgPool2d


def torch_pair(module, attribute: str, place: Place) -> tuple[int, int]:
    """A module's kernel_size, stride or padding as (rows, columns)."""
    value = getattr(module, attribute)
    if isinstance(value, str):  # padding="valid" or "same"
        kernel = torch_pair(module, "kernel_size", place)
        if value == "valid":
            return (0, 0)
        if value == "same" and kernel[0] % 2 and kernel[1] % 2:
            return (kernel[0] // 2, kernel[1] // 2)
        place.fail(f"a whole-number {attribute} (or \"same\" with an odd kernel), got {value!r}")
    if isinstance(value, int):
        return (value, value)
    return tuple(int(v) for v in value)


def spec_size(pair):
    """A size as a spec table writes it: 2, or [2, 3]."""
    return pair[0] if pair[0] == pair[1] else list(pair)


def torch_size(pair) -> str:
    """A size as PyTorch code writes it: 2, or (2, 3)."""
    return str(pair[0]) if pair[0] == pair[1] else f"({pair[0]}, {pair[1]})"


def torch_sizes(**pairs) -> str:
    """Keyword arguments of sizes, those at PyTorch's default (None) left out."""
    return "".join(f", {key}={torch_size(value)}" for key, value in pairs.items()
                   if value is not None)


# ---------------------------------------------------------------------------
# Document: grids written as LaTeX matrices (bmatrix works in Markdown math and LaTeX)


def size(pair) -> str:
    """A kernel, stride or padding as the solution writes it: 2, or 2\\times3."""
    return f"{pair[0]}" if pair[0] == pair[1] else f"{pair[0]}\\times{pair[1]}"


class GridNotation:
    """How one document writes grids: matrices, names of whole grids, their gradients.

    A grid is named after its cells (x_{r,s} → X, x^{(2)}_{r,s} → X^{(2)}, f_{1,2,r,s} →
    F_{1,2}, z^{(3)}_{r,s} → Z^{(3)}); cells whose names share no such pattern give the
    grid the letter of its role, indexed by layer and channel."""

    def __init__(self, doc):
        self.doc = doc
        self.n = doc.n
        self.several = len(doc.forms) > 1  # several grid layers: Z^{(l)}
        self.loss = doc.loss_name
        self.taken = doc.symbols.taken

    def matrix(self, cells, given: bool = False) -> str:
        """A grid of numbers; ``given``: the spec's numbers, shown as given."""
        cells = np.asarray(cells, dtype=float)
        # rounding noise of a sum that is 0 in exact arithmetic (1e-18 beside 0.1) shows as 0
        scale = float(np.max(np.abs(cells))) if cells.size else 0.0
        cells = np.where(np.abs(cells) <= 1e-12 * scale, 0.0, cells)
        number = self.n.given if given else self.n.tex
        rows = [" & ".join(number(float(v)) for v in row) for row in cells]
        return r"\begin{bmatrix} " + r" \\ ".join(rows) + r" \end{bmatrix}"

    def matrix_pair(self, old: list[float], new: list[float], columns: int):
        """Two grids with, cell by cell, the digits that show how they differ."""
        pairs = [self.n.pair(a, b) for a, b in zip(old, new)]
        grids = []
        for side in (0, 1):
            rows = [" & ".join(p[side] for p in pairs[k:k + columns])
                    for k in range(0, len(pairs), columns)]
            grids.append(r"\begin{bmatrix} " + r" \\ ".join(rows) + r" \end{bmatrix}")
        return grids

    def cells(self, letter: str, layer: int, indices) -> list[str]:
        """The names of the cells of grid ``letter`` of a layer (X its input, F a filter,
        Z its pre-activations, A and P its outputs), channel(s) ``indices``."""
        kind = self.doc.spec.layers[layer - 1]
        channel = [i for i, _ in indices]
        if letter == "X":
            names, shape = self.doc.inputs_of(kind), getattr(kind, "in_shape", None)
        elif letter == "F":
            if len(channel) < 2:
                return []
            return flat(kind.filter_names[channel[0]][channel[1]])
        elif letter == "Z":
            names, shape = getattr(kind, "pre_activation_names", None), kind.out_shape
        else:  # A, P: what the layer outputs
            names, shape = kind.outputs(self.doc.inputs_of(kind)), kind.out_shape
        if not names or not shape or len(shape) != 3:
            return []
        size = shape[1] * shape[2]
        c = channel[0] if channel else 0
        return list(names[c * size:(c + 1) * size])

    def name(self, letter: str, layer: int, *indices, pad: bool = False) -> str:
        """X, F_{1,2}, Z^{(3)}: named after the grid's cells when they agree; else the
        letter with a layer superscript when several grid layers, channel indices only
        when a layer has several channels; X_{pad} for the zero-padded input."""
        derived = grid_name(self.cells(letter, layer, indices))
        if derived and derived not in self.taken and name_base(derived) not in self.taken:
            base = derived
        else:
            sup = f"^{{({layer})}}" if self.several else ""
            shown = [str(i + 1) for i, count in indices if count > 1]
            base = letter + sup + (f"_{{{','.join(shown)}}}" if shown else "")
        if not pad:
            return base
        if base.endswith("}") and "_{" in base:
            return base[:-1] + r",\mathrm{pad}}"
        return base + r"_{\mathrm{pad}}"

    def grad(self, what: str) -> str:
        return partial(self.loss, what)

    def signed(self, value: float, given: bool = False) -> str:
        return tex(self.n.placeholder(value, given))  # negative numbers in parentheses

    def grad_inline(self, what: str) -> str:
        return partial_inline(self.loss, what)

    def grids(self, letter: str, layer: int, cells, given: bool = False) -> list[str]:
        """name = matrix, channel by channel (cells: channels × rows × columns)."""
        channels = len(cells)
        return [f"{self.name(letter, layer, (c, channels))} = {self.matrix(cells[c], given)}"
                for c in range(channels)]

    def gradient_grids(self, letter: str, layer: int, cells) -> list[str]:
        """∂E/∂name = matrix, channel by channel."""
        channels = len(cells)
        return [f"{self.grad(self.name(letter, layer, (c, channels)))} = {self.matrix(cells[c])}"
                for c in range(channels)]


FRAGMENT = "layers/grid.j2"


def input_summary(doc) -> str:
    """The network's input in the summary, as an image."""
    return fill(doc.t["layers"]["grid"]["input_summary"], count=len(doc.spec.input_names),
                shape="×".join(map(str, doc.spec.input_shape)))


def input_part(doc) -> Part:
    """The input image, one grid per channel."""
    values = doc.solution.example.values
    x = np.array([values[n] for n in doc.spec.input_names]).reshape(doc.spec.input_shape)
    return Part(FRAGMENT, "input_image", shape="×".join(map(str, doc.spec.input_shape)),
                grids=doc.grids.grids("X", 1, x, given=True))


def node_steps(doc, section) -> list:
    """The steps of a grid layer's section shown node by node: the quantities outside grid
    layers (the dense layer after a flatten), before the grids."""
    layers = [doc.graph.nodes[s.target].layer for s in section.steps]
    return [s for s, layer in zip(section.steps, layers)
            if s.kind == "adjoint" and layer is not None and layer not in doc.forms]


def sample_chain(doc, section, cell: str) -> list[Part]:
    """The chain rule of one cell, written out in full: the others are alike."""
    step = next((s for s in section.steps if s.target == cell), None)
    if step is None:
        return []
    chain = doc.chain(step, doc.solution.example.values)
    parts = [chain.chain] + ([chain.numbers] if chain.numbers else []) + [chain.value]
    return [Part(FRAGMENT, "sample_chain", name=cell, equation=Equation(chain.symbol, parts))]


def gradient_source(doc, layer, section) -> list[Part]:
    """Where ∂E/∂(layer's output) comes from: said by the next layer when it computes it
    as a whole (a conv layer), else one cell's chain rule written out."""
    after = doc.next_layer(layer)
    told = after.gradient_source(doc) if after is not None else None
    if told is not None:
        return [told]
    return sample_chain(doc, section, layer.outputs(doc.inputs_of(layer))[0])


def arrival(doc, layer, section, example) -> list[Part]:
    """How the gradient reaches a grid layer's output, then its grids (∂E/∂A); the next
    layer may explain it itself (pooling: its routing)."""
    after = doc.next_layer(layer)
    routed = after.routed_gradient(doc, layer, section) if after is not None else None
    if routed is not None:
        return routed
    names = layer.outputs(doc.inputs_of(layer))
    cells = np.array([example.adjoints[n] for n in names]).reshape(layer.out_shape)
    return gradient_source(doc, layer, section) + [
        Part(FRAGMENT, "displays", grids=doc.grids.gradient_grids("A", layer.index, cells))]


def after_part(doc, layer, blocks, before: dict, after: dict) -> Part:
    """The layer's maps before and after the step (blocks: (letter, names) of each map),
    Z = … above Z' = …, the digits showing how each cell changed."""
    channels, rows, columns = layer.out_shape
    notation = doc.grids
    equations = []
    for letter, names in blocks:
        for c in range(channels):
            cells = names[c * rows * columns:(c + 1) * rows * columns]
            old, new = notation.matrix_pair([before[n] for n in cells],
                                            [after[n] for n in cells], columns)
            name = notation.name(letter, layer.index, (c, channels))
            equations += [Equation(name, [old]), Equation(primed(name), [new])]
    return Part(FRAGMENT, "after", label=doc.layer_label(layer.index), equations=equations)
