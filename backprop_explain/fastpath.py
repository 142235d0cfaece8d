"""The fast path: the network's numbers in NumPy, a whole batch (and many variants) at once.

The symbolic engine (graph.py, derivation.py) explains one example; this module computes
the same forward values and gradients for a batch of examples, and for many parameter
sets ("variants" of an exercise) in one call, with no Python loop over examples, units or
pixels. It is a sibling of the symbolic graph, checked against it in tests/test_fastpath.py.
Each layer kind brings its NumPy kernel (``fast_kernel``, layers/), each activation and
loss its NumPy forms (activations.py, losses.py); this module chains them.

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

from .activations import ACTIVATIONS
from .losses import LOSSES
from .spec import NetworkSpec
from .validate import flatten_names

__all__ = ["FastNetwork", "FastResult", "compile_network", "evaluate"]


# ---------------------------------------------------------------------------
# Results


@dataclass
class FastResult:
    """Numbers of one batch: loss, forward values and gradients as NumPy arrays.

    With a variant axis, every array starts with it (V, ...); without one it is dropped.
    ``loss`` is the batch loss (mean or sum of the examples' losses, as ``reduction``),
    ``example_losses`` (…, B) each example's Σ_k E_k, ``terms`` (…, B, outputs) the E_k.
    ``layers[k]`` holds layer k+1's arrays: ``pre_activation`` and ``activation``
    (…, B, *shape); ``layer_gradients[k]`` its parameters' gradients by role (``weights``
    and ``biases``, …). ``values`` and ``gradients`` give the same numbers under the spec's
    names; ``buffers`` what layers keep from step to step (running statistics) as this
    forward pass leaves them, by name (…,).
    """

    network: "FastNetwork"
    loss: np.ndarray
    example_losses: np.ndarray
    terms: np.ndarray
    layers: list[dict[str, np.ndarray]]
    layer_gradients: list[dict[str, np.ndarray]] | None
    input_gradient: np.ndarray | None = None
    has_variants: bool = True
    buffers: dict[str, np.ndarray] | None = None  # the layers' buffers after this forward pass
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
            kernel = layer.fast_kernel(shape)
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

    def _buffer_arrays(self, buffers, variants: int) -> list[dict[str, np.ndarray]]:
        """Per layer, its buffers (running statistics) by role, (V, …), from values by
        name (default: the spec's)."""
        given = dict(self.spec.buffers)
        given.update(buffers or {})
        out = []
        for kernel in self.kernels:
            roles = {}
            for role, names in getattr(kernel, "buffer_names", {}).items():
                flat = [np.broadcast_to(np.asarray(given[n], dtype=np.float64), (variants,))
                        for n in names.ravel()]
                roles[role] = np.stack(flat, axis=-1).reshape((variants,) + names.shape)
            out.append(roles)
        return out

    def _example_arrays(self, examples, batch: int) -> list[dict[str, np.ndarray]]:
        """Per layer, its per-example constants (dropout masks) of the batch's examples,
        (1, B, …): ``examples`` are their 0-based positions in the spec."""
        out = []
        for kernel in self.kernels:
            roles = {}
            for role, array in getattr(kernel, "example_arrays", {}).items():
                chosen = list(range(batch)) if examples is None else list(examples)
                if len(chosen) != batch or max(chosen) >= len(array):
                    raise ValueError(f"layer {kernel.layer.index}: per-example data for "
                                     f"{len(array)} examples; give examples=[positions of "
                                     f"the batch's {batch} examples in the spec]")
                roles[role] = array[chosen][None]
            out.append(roles)
        return out

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
            gradients: bool = True, input_gradient: bool = False, examples=None,
            buffers: dict | None = None) -> FastResult:
        """Forward (and backward) pass over the whole batch; see the class docstring.

        ``examples``: the 0-based positions in the spec of the batch's examples, for layers
        with per-example data (dropout masks; default: the first B examples); ``buffers``:
        the running statistics by name (default: the spec's)."""
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
        # what the kernels read besides their parameters: buffers and per-example data
        params = [dict(p, **b, **e) for p, b, e in zip(
            params, self._buffer_arrays(buffers, v), self._example_arrays(examples, batch))]

        layers, caches, a = [], [], x
        for kernel, p in zip(self.kernels, params):
            z, a, cache = kernel.forward(a, p)
            # a kernel may name more of its quantities (batch statistics), (V, B, …) each
            more = kernel.more_values(cache) if hasattr(kernel, "more_values") else {}
            layers.append({"pre_activation": z, "activation": a, **more})
            caches.append(cache)
        updated = {}
        for kernel, p, cache in zip(self.kernels, params, caches):
            if getattr(kernel, "buffer_names", None):
                for role, array in kernel.updated_buffers(p, cache).items():
                    names = kernel.buffer_names[role].ravel()
                    flat = array.reshape(array.shape[0], -1)
                    updated.update({n: flat[:, k] for k, n in enumerate(names)})
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
            updated = {n: a[0] for n, a in updated.items()}
        return FastResult(self, loss, example_losses, terms, layers, layer_gradients, gx,
                          has_variants, buffers=updated)

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
