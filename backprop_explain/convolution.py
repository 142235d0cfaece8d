"""Derivation stage, CNN part: the chain rule of a conv layer written as convolutions.

For a conv layer with input X (zero-padded by p), filters F, stride s and feature-map
gradient G = ∂E/∂Z (taken from the graph's element-wise chain rule):

- ∂E/∂F[o,c] = X_pad[c] ⋆ dilate_s(G[o])   (valid cross-correlation)
- ∂E/∂b[o]   = Σ_{r,s} G[o,r,s]
- ∂E/∂X[c]   = Σ_o full convolution of dilate_s(G[o]) with F[o,c]
             = Σ_o pad_{k−1}(dilate_s(G[o])) ⋆ rot180(F[o,c]), cropped by p

where dilate_s puts s − 1 zeros between the cells (nothing when s = 1). ∂E/∂X is
computed for every conv layer; the worked solution needs it when the layer's input
is not the network's input (a conv layer after another conv or pool layer).

Each form is compared with the element-wise chain-rule values of the graph: the
filter and bias gradients with the parameters' adjoints, ∂E/∂X with Σ over the
children of each input cell. Pooling layers get the routing of their gradient.
Everything here is plain data (NumPy grids) for the document stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .keys import local_key
from .layers import grid as conv
from .layers.conv2d import Conv2dLayer
from .layers.pool2d import Pool2dLayer
from .spec import NetworkSpec

TOLERANCE = 1e-9  # relative agreement of the convolution forms with the chain rule


# ---------------------------------------------------------------------------
# Grid operations (NumPy, float64)


def pad(grid: np.ndarray, padding) -> np.ndarray:
    """Zeros around the last two axes."""
    widths = [(0, 0)] * (grid.ndim - 2) + [(padding[0], padding[0]), (padding[1], padding[1])]
    return np.pad(grid, widths)


def dilate(grid: np.ndarray, stride) -> np.ndarray:
    """stride − 1 zeros between neighbouring cells of the last two axes."""
    rows, columns = grid.shape[-2:]
    out = np.zeros(grid.shape[:-2] + ((rows - 1) * stride[0] + 1, (columns - 1) * stride[1] + 1))
    out[..., ::stride[0], ::stride[1]] = grid
    return out


def rotate180(grid: np.ndarray) -> np.ndarray:
    return grid[..., ::-1, ::-1]


def cross_correlate(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Valid cross-correlation of two 2-D grids (the kernel slides inside the image)."""
    kr, kc = kernel.shape
    rows, columns = image.shape[0] - kr + 1, image.shape[1] - kc + 1
    return np.array([[float(np.sum(image[r:r + kr, c:c + kc] * kernel)) for c in range(columns)]
                     for r in range(rows)])


def full_convolution(grid: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Full convolution: the grid padded by kernel − 1, cross-correlated with the rotated kernel."""
    kr, kc = kernel.shape
    return cross_correlate(pad(grid, (kr - 1, kc - 1)), rotate180(kernel))


# ---------------------------------------------------------------------------
# The data a worked solution shows


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


# ---------------------------------------------------------------------------
# Building them from a derived example


def layer_inputs(spec: NetworkSpec) -> list[list[str]]:
    """The names each layer reads, in flatten order."""
    names, inputs = list(spec.input_names), []
    for layer in spec.layers:
        inputs.append(names)
        if layer.kind != "flatten":
            names = list(getattr(layer, "activation_names", None) or layer.output_names)
    return inputs


def _grid(values: list[float], shape) -> np.ndarray:
    return np.array(values, dtype=float).reshape(shape)


def _nest(names: list[str], shape) -> list:
    return np.array(names, dtype=object).reshape(shape).tolist()


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))


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


def convolution_forms(spec: NetworkSpec, graph, example, layer: Conv2dLayer,
                      inputs: list[str]) -> ConvolutionForms:
    values = example.values
    x = _grid([values[n] for n in inputs], layer.in_shape)
    filters = _grid([spec.parameters[n] for n in _flat(layer.filter_names)],
                    (layer.out_channels, layer.in_channels) + layer.kernel)
    biases = np.array([spec.parameters[n] for n in layer.bias_names] or
                      [0.0] * layer.out_channels)
    z = _grid([values[n] for n in layer.pre_activation_names], layer.out_shape)
    a = _grid([values[n] for n in layer.activation_names], layer.out_shape)
    g = _grid([example.adjoints[n] for n in layer.pre_activation_names], layer.out_shape)
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
    filter_chain = _grid([gradient_of[n] for n in _flat(layer.filter_names)], filters.shape)
    bias_chain = np.array([gradient_of[n] for n in layer.bias_names]) if layer.bias_names \
        else bias_gradient.copy()
    input_chain = input_gradient_chain(graph, example, inputs).reshape(layer.in_shape)
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
        input_names=_nest(inputs, layer.in_shape), input=x, padded_input=padded,
        filter_names=layer.filter_names, filters=filters, bias_names=list(layer.bias_names),
        biases=biases,
        pre_activation_names=_nest(layer.pre_activation_names, layer.out_shape),
        pre_activation=z,
        activation_names=_nest(layer.activation_names, layer.out_shape), activation_values=a,
        first_cell=_first_cell(layer, inputs, values, spec.parameters),
        output_gradient=g, dilated_output_gradient=dilated,
        filter_terms=_filter_terms(layer, inputs, values, example.adjoints),
        filter_gradient=filter_gradient, filter_gradient_chain=filter_chain,
        bias_gradient=bias_gradient, bias_gradient_chain=bias_chain,
        input_gradient=input_gradient, input_gradient_chain=input_chain,
        input_gradient_needed=list(inputs) != list(spec.input_names),
        max_difference=max(differences))


def _flat(nested) -> list:
    return np.array(nested, dtype=object).ravel().tolist()


def _names_outside(spec: NetworkSpec, layer) -> set[str]:
    return {n for other in spec.layers if other is not layer for n in other.parameter_names()}


def _by_name(names, grid: np.ndarray, skip: set[str]) -> dict[str, float]:
    """Sum a gradient grid over the positions sharing a name (shared filter weights)."""
    totals: dict[str, float] = {}
    for name, value in zip(_flat(names), np.asarray(grid).ravel()):
        if name not in skip:
            totals[name] = totals.get(name, 0.0) + float(value)
    return totals


def _windows(layer, r: int, s: int):
    return conv.window(r, s, layer.kernel, layer.stride, layer.padding, layer.in_shape[1:])


def _first_cell(layer, inputs, values, parameters):
    """(input name, input value, filter name, filter value) of z[0, 0, 0], channel by channel."""
    _, rows, columns = layer.in_shape
    terms = []
    for c in range(layer.in_channels):
        for u, v, i, j in _windows(layer, 0, 0):
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
                    for u, v, i, j in _windows(layer, r, s):
                        if i is None:
                            continue
                        x_name = inputs[(c * rows + i) * columns + j]
                        terms.setdefault(layer.filter_names[o][c][u][v], []).append(
                            FilterTerm(z, adjoints[z], x_name, values[x_name]))
    return terms


def pooling_routing(graph, example, layer: Pool2dLayer, inputs: list[str]) -> PoolingRouting:
    values, adjoints = example.values, example.adjoints
    _, rows, columns = layer.in_shape
    channels, out_rows, out_columns = layer.out_shape
    winners = []
    if layer.kind == "maxpool2d":
        # read off the derivative SymPy took: the cell whose ∂p/∂x is 1
        for c in range(channels):
            winners.append([])
            for r in range(out_rows):
                row = []
                for s in range(out_columns):
                    p = layer.output_names[(c * out_rows + r) * out_columns + s]
                    cells = [inputs[(c * rows + i) * columns + j]
                             for _, _, i, j in _windows(layer, r, s) if i is not None]
                    row.append(next((x for x in cells
                                     if example.local_partials.get(local_key(p, x)) == 1.0),
                                    None))
                winners[c].append(row)
    return PoolingRouting(
        layer=layer.index, kind=layer.kind, kernel=layer.kernel, stride=layer.stride,
        padding=layer.padding, input_names=_nest(inputs, layer.in_shape),
        input=_grid([values[n] for n in inputs], layer.in_shape),
        output_names=_nest(layer.output_names, layer.out_shape),
        output=_grid([values[n] for n in layer.output_names], layer.out_shape),
        output_gradient=_grid([adjoints[n] for n in layer.output_names], layer.out_shape),
        input_gradient=input_gradient_chain(graph, example, inputs).reshape(layer.in_shape),
        winners=winners)


def cnn_forms(spec: NetworkSpec, graph, example) -> list:
    """The convolution forms and pooling routings of every conv/pool layer, in layer order."""
    forms = []
    for layer, inputs in zip(spec.layers, layer_inputs(spec)):
        if layer.kind == "conv2d":
            forms.append(convolution_forms(spec, graph, example, layer, inputs))
        elif layer.kind in ("maxpool2d", "avgpool2d"):
            forms.append(pooling_routing(graph, example, layer, inputs))
    return forms
