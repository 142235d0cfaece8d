"""The fast path: the network's numbers in NumPy, a whole batch (and many variants) at once.

The symbolic engine (graph.py, derivation.py) explains one example; this module computes
the same forward values and gradients for a batch of examples, and for many parameter
sets ("variants" of an exercise) in one call, with no Python loop over examples, units or
pixels. It is a sibling of the symbolic graph, checked against it in tests/test_fastpath.py.

Shapes: every array carries a leading variant axis V and a batch axis B inside this module,
``(V, B, ...)``; the public functions drop V again when nothing had one.

Example (run from the repository's root; also ``from backprop_explain.api import ...``)::

    >>> from backprop_explain.fastpath import compile_network, evaluate
    >>> result = evaluate("examples/mlp_3_2_2_cross_entropy.toml")
    >>> round(float(result.loss), 6)
    0.134877
    >>> result.values["out_{o1}"]                 # one value per example of the batch
    array([0.87382321])
    >>> result.gradients["wo_{1,1}"]             # by parameter name (combined over the batch)
    array(-0.07749774)

    500 randomised variants of the exercise in one call: a leading axis on the parameters

    >>> import numpy as np
    >>> net = compile_network("examples/mlp_3_2_2_cross_entropy.toml")
    >>> rng = np.random.default_rng(0)
    >>> params = {name: rng.uniform(-1, 1, 500) for name in net.parameter_names}
    >>> r = net.run(inputs=[[0.15, 0.25, -0.5]], targets=[[1, 0]], parameters=params)
    >>> r.loss.shape, r.gradients["wh_{1,1}"].shape, r.values["out_{o1}"].shape
    ((500,), (500,), (500, 1))
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .activations import ACTIVATIONS
from .losses import LOSSES
from .spec import NetworkSpec
from .validate import flatten_names

__all__ = ["FastNetwork", "FastResult", "compile_network", "evaluate"]


# ---------------------------------------------------------------------------
# Layer kernels. Each works on arrays with axes (V, B, ...) and keeps what backward needs.


def _matmul(a, b):
    """a @ b over (V, …) stacks; one variant goes through a plain 2-D BLAS product, which
    NumPy runs much faster than a stacked product of the same size."""
    if a.shape[0] == 1 and b.shape[0] == 1:
        return (a[0] @ b[0])[None]
    return np.matmul(a, b)


class _Dense:
    kind = "dense"

    def __init__(self, layer, in_shape):
        self.layer = layer
        self.units = layer.units
        self.activation = layer.activation
        self.slope = layer.negative_slope
        self.in_shape = in_shape
        self.out_shape = (layer.units,)
        self.names = {"weights": np.array(layer.weight_names, dtype=object),
                      "biases": np.array(layer.bias_names, dtype=object)}
        self.value_names = {"pre_activation": layer.pre_activation_names,
                            "activation": layer.activation_names}

    def forward(self, x, p):
        w, b = p["weights"], p["biases"]  # (V, units, n_in), (V, units)
        z = _matmul(x, np.swapaxes(w, -1, -2))
        z += b[:, None, :]
        a = ACTIVATIONS[self.activation].forward(z, self.slope)
        return z, a, None

    def backward(self, x, p, delta, need_input_grad, cache=None):
        """delta = ∂L/∂z (V, B, units) → parameter gradients and ∂L/∂x."""
        if delta.shape[1] == 1:  # one example: an outer product (BLAS is slow with K = 1)
            gw = np.einsum("vbj,vbi->vji", delta, x)
        else:
            gw = _matmul(np.swapaxes(delta, -1, -2), x)
        grads = {"weights": gw, "biases": delta.sum(axis=1)}
        gx = _matmul(delta, p["weights"]) if need_input_grad else None
        return grads, gx


def _attr(layer, *names, default=None):
    """The first attribute of ``layer`` among ``names`` (the conv specs are read defensively)."""
    for name in names:
        if hasattr(layer, name):
            return getattr(layer, name)
    return default


def _pair(value):
    if isinstance(value, (tuple, list)):
        return tuple(int(v) for v in value)
    return (int(value), int(value))


def _windows(x, kernel, stride):
    """Strided view (V, B, C, Ho, Wo, kh, kw) of every window of a padded image batch."""
    view = sliding_window_view(x, kernel, axis=(-2, -1))
    return view[..., ::stride[0], ::stride[1], :, :]


def _pad(x, padding, value=0.0):
    if padding == (0, 0):
        return x
    ph, pw = padding
    return np.pad(x, [(0, 0)] * (x.ndim - 2) + [(ph, ph), (pw, pw)], constant_values=value)


def _scatter_windows(grad_windows_at, shape, kernel, stride, out_hw):
    """Sum per-window gradients back onto the (padded) image: one slice per kernel offset."""
    g = np.zeros(shape)
    ho, wo = out_hw
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            g[..., i:i + stride[0] * (ho - 1) + 1:stride[0],
              j:j + stride[1] * (wo - 1) + 1:stride[1]] += grad_windows_at(i, j)
    return g


class _Conv2d:
    kind = "conv2d"

    def __init__(self, layer, in_shape):
        self.layer = layer
        filters = np.array(_attr(layer, "filter_names", "weight_names"), dtype=object)
        self.out_channels, in_channels, kh, kw = filters.shape
        self.kernel = (kh, kw)
        self.stride = _pair(_attr(layer, "stride", default=1))
        self.padding = _pair(_attr(layer, "padding", default=0))
        self.activation = _attr(layer, "activation", default="identity")
        self.slope = _attr(layer, "negative_slope", default=0.01)
        c, h, w = in_shape
        self.in_shape = in_shape
        ho = (h + 2 * self.padding[0] - kh) // self.stride[0] + 1
        wo = (w + 2 * self.padding[1] - kw) // self.stride[1] + 1
        self.out_shape = (self.out_channels, ho, wo)
        self.names = {"weights": filters}
        if _attr(layer, "bias_names", default=None):  # biases = false in the spec: none
            self.names["biases"] = np.array(layer.bias_names, dtype=object)
        self.value_names = {"pre_activation": _attr(layer, "pre_activation_names"),
                            "activation": _attr(layer, "activation_names", "output_names")}

    def forward(self, x, p):
        """im2col: the windows as columns (one copy), then one small BLAS product per example
        whose result is already channels first: z_b = F · cols_b, (O, C·kh·kw)(C·kh·kw, Ho·Wo)."""
        w = p["weights"]  # (V, O, C, kh, kw); biases (V, O)
        v, batch = x.shape[:2]
        o, ho, wo = self.out_shape
        windows = _windows(_pad(x, self.padding), self.kernel, self.stride)  # (V,B,C,Ho,Wo,kh,kw)
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
        kh, kw = self.kernel
        # col2im: each column's gradient Fᵀ·δ_b, added back under its window
        grad_cols = np.matmul(np.swapaxes(w.reshape(w.shape[0], 1, o, -1), -1, -2),
                              delta).reshape(v, batch, c, kh, kw, ho, wo)
        padded = (v, batch, c, h + 2 * self.padding[0], wd + 2 * self.padding[1])
        g = _scatter_windows(lambda i, j: grad_cols[:, :, :, i, j],
                             padded, self.kernel, self.stride, self.out_shape[1:])
        return grads, g[..., self.padding[0]:self.padding[0] + h,
                        self.padding[1]:self.padding[1] + wd]


class _Pool2d:

    def __init__(self, layer, in_shape):
        self.layer = layer
        self.kind = layer.kind
        self.kernel = _pair(_attr(layer, "kernel_size", "kernel", "size"))
        self.stride = _pair(_attr(layer, "stride", default=None) or self.kernel)
        self.padding = _pair(_attr(layer, "padding", default=0))
        self.count_include_pad = bool(_attr(layer, "count_include_pad", default=True))
        self.activation = "identity"
        c, h, w = in_shape
        self.in_shape = in_shape
        ho = (h + 2 * self.padding[0] - self.kernel[0]) // self.stride[0] + 1
        wo = (w + 2 * self.padding[1] - self.kernel[1]) // self.stride[1] + 1
        self.out_shape = (c, ho, wo)
        self.names = {}
        outs = _attr(layer, "output_names", "activation_names")
        self.value_names = {"activation": outs}

    def _divisor(self):
        if self.count_include_pad or self.padding == (0, 0):
            return float(self.kernel[0] * self.kernel[1])
        ones = np.ones((1, 1, 1) + self.in_shape[1:])
        counts = _windows(_pad(ones, self.padding), self.kernel, self.stride).sum(axis=(-2, -1))
        return counts

    def _offsets(self, padded):
        """The window cell at each kernel offset (i, j), for every output cell at once."""
        ho, wo = self.out_shape[1:]
        (sh, sw), (kh, kw) = self.stride, self.kernel
        for i in range(kh):
            for j in range(kw):
                yield i * kw + j, padded[..., i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]

    def forward(self, x, p):
        if self.kind == "maxpool2d":
            # padded cells are −∞: they never win
            cells = list(self._offsets(_pad(x, self.padding, -np.inf)))
            out = cells[0][1].copy()
            for _, cell in cells[1:]:
                np.maximum(out, cell, out=out)
            # the winner is the first maximum in row-major order, as in PyTorch: walk the
            # offsets backwards, each equal cell overwriting the later ones (integer
            # arithmetic: much faster than boolean-masked assignment)
            dtype = np.int8 if len(cells) <= 127 else np.int32
            winner = np.full(out.shape, len(cells) - 1, dtype=dtype)
            for k, cell in reversed(cells[:-1]):
                winner -= (winner - dtype(k)) * (cell == out).view(np.int8)
            return out, out, winner
        total = None
        for _, cell in self._offsets(_pad(x, self.padding)):
            total = cell.copy() if total is None else total + cell
        out = total / self._divisor()
        return out, out, None

    def backward(self, x, p, delta, need_input_grad, winner=None):
        if not need_input_grad:
            return {}, None
        c, h, w = self.in_shape
        padded = x.shape[:2] + (c, h + 2 * self.padding[0], w + 2 * self.padding[1])
        kw = self.kernel[1]
        if self.kind == "maxpool2d":
            at = lambda i, j: delta * (winner == i * kw + j)  # noqa: E731
        else:
            share = delta / self._divisor()
            at = lambda i, j: share  # noqa: E731
        g = _scatter_windows(at, padded, self.kernel, self.stride, self.out_shape[1:])
        return {}, g[..., self.padding[0]:self.padding[0] + h, self.padding[1]:self.padding[1] + w]


class _Flatten:
    kind = "flatten"
    activation = "identity"

    def __init__(self, layer, in_shape):
        self.layer = layer
        self.in_shape = in_shape
        self.out_shape = (int(np.prod(in_shape)),)
        self.names = {}
        self.value_names = {"activation": _attr(layer, "output_names", "activation_names")}

    def forward(self, x, p):
        out = x.reshape(x.shape[:2] + self.out_shape)  # row-major, channels first: view(N, -1)
        return out, out, None

    def backward(self, x, p, delta, need_input_grad, cache=None):
        return {}, (delta.reshape(x.shape) if need_input_grad else None)


KERNELS = {"dense": _Dense, "conv2d": _Conv2d, "maxpool2d": _Pool2d, "avgpool2d": _Pool2d,
           "flatten": _Flatten}


# ---------------------------------------------------------------------------
# Results


@dataclass
class FastResult:
    """Numbers of one batch: loss, forward values and gradients as NumPy arrays.

    With a variant axis, every array starts with it (V, ...); without one it is dropped.
    ``loss`` is the batch loss (mean or sum of the examples' losses, as ``reduction``),
    ``example_losses`` (…, B) each example's Σ_k E_k, ``terms`` (…, B, outputs) the E_k.
    ``layers[k]`` holds layer k+1's arrays: ``pre_activation`` and ``activation``
    (…, B, *shape); ``layer_gradients[k]`` its ``weights`` and ``biases`` gradients.
    ``values`` and ``gradients`` give the same numbers under the spec's names.
    """

    network: "FastNetwork"
    loss: np.ndarray
    example_losses: np.ndarray
    terms: np.ndarray
    layers: list[dict[str, np.ndarray]]
    layer_gradients: list[dict[str, np.ndarray]] | None
    input_gradient: np.ndarray | None = None
    has_variants: bool = True
    _by_name: dict | None = field(default=None, repr=False)
    _gradients: dict | None = field(default=None, repr=False)

    @property
    def values(self) -> dict[str, np.ndarray]:
        """Every forward quantity by the spec's name: an array (…, B) per name."""
        if self._by_name is None:
            self._by_name = self.network.name_values(self)
        return self._by_name

    @property
    def gradients(self) -> dict[str, np.ndarray]:
        """∂loss/∂θ by parameter name (…,); a shared name gets the sum over its places."""
        if self.layer_gradients is None:
            raise ValueError("gradients were not computed (run(..., gradients=False))")
        if self._gradients is None:
            self._gradients = self.network.gradients_by_name(self.layer_gradients,
                                                             self.has_variants)
        return self._gradients


# ---------------------------------------------------------------------------
# The compiled network


class FastNetwork:
    """A spec's architecture, compiled once into NumPy kernels.

    ``run`` evaluates it on arrays: inputs (B, *input_shape) or (V, B, *input_shape),
    targets (B, outputs) or (V, B, outputs), and parameters either by name
    (``{name: scalar or (V,) array}``) or per layer (``[{"weights": ..., "biases": ...},
    ...]``, each array optionally with a leading variant axis). Missing parameters take
    the spec's values.
    """

    def __init__(self, spec: NetworkSpec):
        self.spec = spec
        self.input_shape = tuple(spec.input_shape)
        self.kernels = []
        shape = self.input_shape
        for layer in spec.layers:
            kernel = KERNELS[layer.kind](layer, shape)
            self.kernels.append(kernel)
            shape = kernel.out_shape
        self.output_size = shape[0]
        self.loss = LOSSES[spec.loss.kind]
        self.parameter_names = list(spec.parameters)
        position = {name: k for k, name in enumerate(self.parameter_names)}
        # per layer and role: the index of each entry's parameter in parameter_names
        self._index = [{role: np.vectorize(position.__getitem__, otypes=[np.intp])(names)
                        for role, names in k.names.items()} for k in self.kernels]
        self._unique = [{role: len(np.unique(ix)) == ix.size for role, ix in layers.items()}
                        for layers in self._index]

    # -- parameters -------------------------------------------------------

    def default_parameters(self) -> list[dict[str, np.ndarray]]:
        return self.layer_parameters({})

    def layer_parameters(self, by_name) -> list[dict[str, np.ndarray]]:
        """Per-layer arrays (V, ...) from values by name (scalars or (V,) arrays)."""
        values = [by_name.get(n, self.spec.parameters[n]) for n in self.parameter_names]
        unknown = set(by_name) - set(self.spec.parameters)
        if unknown:
            raise KeyError(f"not parameters of this network: {sorted(unknown)}")
        arrays = [np.asarray(v, dtype=np.float64) for v in values]
        variants = max((a.shape[0] for a in arrays if a.ndim), default=None)
        theta = np.stack([np.broadcast_to(a, (variants or 1,)) for a in arrays], axis=-1)
        return [{role: theta[:, ix] for role, ix in layer.items()} for layer in self._index]

    def gradients_by_name(self, layer_gradients, has_variants=True) -> dict[str, np.ndarray]:
        first = next((g for layer in layer_gradients for g in layer.values()), None)
        v = first.shape[0] if (first is not None and has_variants) else None
        total = np.zeros(((v,) if v else ()) + (len(self.parameter_names),))
        for grads, index, unique in zip(layer_gradients, self._index, self._unique):
            for role, g in grads.items():
                flat_g = g.reshape(((v,) if v else ()) + (-1,))
                ix = index[role].ravel()
                if unique[role]:
                    total[..., ix] += flat_g
                else:  # a name repeated inside the layer: accumulate each place
                    np.add.at(total, (Ellipsis, ix), flat_g)
        return {name: total[..., k] for k, name in enumerate(self.parameter_names)}

    def _as_layer_arrays(self, parameters):
        if parameters is None:
            return self.default_parameters(), False
        if isinstance(parameters, dict):
            arrays = self.layer_parameters(parameters)
            has_v = any(np.ndim(v) for v in parameters.values())
            return arrays, has_v
        arrays, has_v = [], False
        for kernel, given in zip(self.kernels, parameters):
            layer = {}
            for role in kernel.names:
                a = np.asarray(given[role], dtype=np.float64)
                expected = kernel.names[role].shape
                if a.shape == expected:
                    a = a[None]
                elif a.shape[1:] == expected:
                    has_v = True
                else:
                    raise ValueError(f"layer {kernel.layer.index} {role}: shape "
                                     f"{expected} or (V, *{expected}), got {a.shape}")
                layer[role] = a
            arrays.append(layer)
        return arrays, has_v

    def _batch(self, array, shape, what):
        a = np.asarray(array, dtype=np.float64)
        if a.ndim == len(shape) + 1 and a.shape[1:] == shape:
            return a[None], False
        if a.ndim == len(shape) + 2 and a.shape[2:] == shape:
            return a, True
        raise ValueError(f"{what}: shape (B, {', '.join(map(str, shape))}) or (V, B, ...), "
                         f"got {a.shape}")

    # -- evaluation -------------------------------------------------------

    def run(self, inputs, targets, parameters=None, reduction: str | None = None,
            gradients: bool = True, input_gradient: bool = False) -> FastResult:
        """Forward (and backward) pass over the whole batch; see the class docstring."""
        reduction = reduction or self.spec.reduction
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction: 'mean' or 'sum', got {reduction!r}")
        x, vx = self._batch(inputs, self.input_shape, "inputs")
        t, vt = self._batch(targets, (self.output_size,), "targets")
        params, vp = self._as_layer_arrays(parameters)
        has_variants = vx or vt or vp
        # broadcast the variant axis of inputs/targets where only the parameters have one
        v = max([x.shape[0], t.shape[0]] + [a.shape[0] for layer in params
                                              for a in layer.values()])
        if x.shape[0] != v:
            x = np.broadcast_to(x, (v,) + x.shape[1:])
        if t.shape[0] != v:
            t = np.broadcast_to(t, (v,) + t.shape[1:])
        batch = x.shape[1]

        layers, caches, a = [], [], x
        for kernel, p in zip(self.kernels, params):
            z, a, cache = kernel.forward(a, p)
            layers.append({"pre_activation": z, "activation": a})
            caches.append(cache)
        last = self.kernels[-1]
        terms, d, fused = self.loss.terms_and_delta(last.activation,
                                                    layers[-1]["pre_activation"], a, t)
        example_losses = terms.sum(axis=-1)
        scale = 1.0 / batch if reduction == "mean" else 1.0
        loss = example_losses.sum(axis=-1) * scale

        layer_gradients = gx = None
        if gradients:
            delta = d * scale
            layer_gradients = [None] * len(self.kernels)
            inputs_of = [x] + [layer["activation"] for layer in layers[:-1]]
            for k in range(len(self.kernels) - 1, -1, -1):
                kernel = self.kernels[k]
                if not (k == len(self.kernels) - 1 and fused):
                    delta = ACTIVATIONS[kernel.activation].backward(
                        layers[k]["pre_activation"], layers[k]["activation"], delta,
                        getattr(kernel, "slope", 0.01))
                need = k > 0 or input_gradient
                grads, delta = kernel.backward(inputs_of[k], params[k], delta, need, caches[k])
                layer_gradients[k] = grads
            gx = delta if input_gradient else None

        if not has_variants:
            squeeze = lambda a: a[0] if a is not None else None  # noqa: E731
            loss, example_losses, terms, gx = map(squeeze, (loss, example_losses, terms, gx))
            layers = [{k: a[0] for k, a in layer.items()} for layer in layers]
            if layer_gradients is not None:
                layer_gradients = [{k: a[0] for k, a in g.items()} for g in layer_gradients]
        return FastResult(self, loss, example_losses, terms, layers, layer_gradients, gx,
                          has_variants)

    def name_values(self, result: FastResult) -> dict[str, np.ndarray]:
        """The forward arrays under the spec's names: each (…, B)."""
        out: dict[str, np.ndarray] = {}
        batch_axes = result.example_losses.ndim
        for kernel, arrays in zip(self.kernels, result.layers):
            for role, names in kernel.value_names.items():
                if names is None or role not in arrays:
                    continue
                flat = flatten_names(names)
                values = arrays[role].reshape(arrays[role].shape[:batch_axes] + (-1,))
                for k, name in enumerate(flat):
                    out[name] = values[..., k]
        for k, name in enumerate(self.spec.loss.term_names):
            out[name] = result.terms[..., k]
        out[self.spec.loss.total_name] = result.example_losses
        return out


def compile_network(spec) -> FastNetwork:
    """A FastNetwork from a spec: a path (.toml/.json), a dict or a NetworkSpec."""
    from .spec import as_spec
    return FastNetwork(as_spec(spec))


def evaluate(spec, inputs=None, targets=None, parameters=None, reduction=None,
             gradients=True) -> FastResult:
    """Loss, forward values and gradients of a spec's network as NumPy arrays.

    ``inputs``/``targets`` default to the spec's examples (one batch); ``parameters``
    (by name, values scalars or (V,) arrays for V variants; or per-layer arrays) default to
    the spec's values; ``reduction`` to the spec's ('mean' or 'sum').
    """
    network = compile_network(spec)
    if inputs is None:
        inputs = [np.reshape(e.inputs, network.input_shape) for e in network.spec.examples]
    if targets is None:
        targets = [e.targets for e in network.spec.examples]
    return network.run(inputs, targets, parameters, reduction, gradients)
