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

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .activations import ACTIVATIONS
from .losses import LOSSES
from .spec import NetworkSpec
from .validate import flatten_names

__all__ = ["FastNetwork", "FastResult", "compile_network", "evaluate"]


# ---------------------------------------------------------------------------
# Results


class LayerArrays(Mapping):
    """One layer's arrays by role (``pre_activation``, ``activation``, …), (…, B, *shape).

    A layer's activation is computed from its pre-activations when first read: a pass over
    a large batch keeps only the pre-activations (a CNN's feature maps twice over would be
    most of its memory); computing them again gives the very same numbers."""

    def __init__(self, arrays: dict, lazy: dict | None = None):
        self._arrays = arrays
        self._lazy = lazy or {}  # role → function of this mapping's arrays

    def __getitem__(self, role):
        if role not in self._arrays and role in self._lazy:
            self._arrays[role] = self._lazy[role](self._arrays)
        return self._arrays[role]

    def __iter__(self):
        return iter(list(self._arrays) + [r for r in self._lazy if r not in self._arrays])

    def __len__(self):
        return len(set(self._arrays) | set(self._lazy))


@dataclass
class FastResult:
    """Numbers of one batch: loss, forward values and gradients as NumPy arrays.

    With a variant axis, every array starts with it (V, ...); without one it is dropped.
    ``loss`` is the batch loss (mean or sum of the examples' losses, as ``reduction``),
    ``example_losses`` (…, B) each example's Σ_k E_k, ``terms`` (…, B, outputs) the E_k.
    ``layers[k]`` holds layer k+1's arrays (a LayerArrays): ``pre_activation`` and
    ``activation`` (…, B, *shape); ``layer_gradients[k]`` its parameters' gradients by
    role (``weights`` and ``biases``, …). ``values`` and ``gradients`` give the same numbers
    under the spec's names; ``buffers`` what layers keep from step to step (running
    statistics) as this forward pass leaves them, by name (…,).
    """

    network: "FastNetwork"
    loss: np.ndarray
    example_losses: np.ndarray
    terms: np.ndarray
    layers: list[LayerArrays]
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

# A batch whose arrays would take more than BATCH_BYTES goes through the network in chunks
# of examples, each chunk's arrays about CHUNK_BYTES (they stay in the processor's caches):
# the batch's memory is then its pre-activations and little more (a CNN's feature maps of
# 1024 examples: 58 MB instead of 234 MB, and faster). A smaller batch goes whole
# (BLAS is fastest on large products).
BATCH_BYTES = 64 * 2 ** 20
CHUNK_BYTES = 4 * 2 ** 20


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
        self._position_of: dict[str, int] | None = None  # see _position
        # per layer and role: the index of each entry's parameter in parameter_names
        self._index = [{role: self._positions(names) for role, names in k.names.items()}
                       for k in self.kernels]
        self._unique = [{role: _distinct(ix, len(self.parameter_names))
                         for role, ix in layers.items()} for layers in self._index]
        self._couples = any(layer.couples_examples for layer in spec.layers)
        self._buffers = any(getattr(k, "buffer_names", None) for k in self.kernels)
        self._per_example = any(getattr(k, "example_arrays", None) for k in self.kernels)
        self._defaults: np.ndarray | None = None  # the spec's values, by position
        # per kernel, what a pass asks of it beyond forward and backward, looked up once:
        # its activation's entry, its slope and its optional methods
        self._steps = [(ACTIVATIONS[k.activation], getattr(k, "slope", 0.01),
                        getattr(k, "more_values", None),
                        getattr(k, "activation_kept", None)) for k in self.kernels]
        # float64 numbers one example puts through a pass (each layer's input and output,
        # forward and backward), for cutting large batches into chunks
        self._example_numbers = 2 * sum(math.prod(getattr(k, "in_shape", k.out_shape))
                                        + math.prod(k.out_shape) for k in self.kernels)

    # -- parameters -------------------------------------------------------

    @property
    def _position(self) -> dict[str, int]:
        """Each parameter name's index in parameter_names (made when first needed)."""
        if self._position_of is None:
            names = self.parameter_names
            self._position_of = dict(zip(names, range(len(names))))
        return self._position_of

    def _positions(self, names: np.ndarray) -> np.ndarray:
        """The index in parameter_names of each name of an object array, same shape: a
        block whose names are parameter_names' own, in their order (no name shared with
        an earlier block), is a range of them."""
        flat = names.ravel().tolist()
        if flat and flat[0] in self.spec.parameters:
            start = self.parameter_names.index(flat[0])
            if self.parameter_names[start:start + len(flat)] == flat:
                return np.arange(start, start + len(flat)).reshape(names.shape)
        return np.fromiter(map(self._position.__getitem__, flat), dtype=np.intp,
                           count=len(flat)).reshape(names.shape)

    def default_parameters(self) -> list[dict[str, np.ndarray]]:
        return self.layer_parameters({})

    def layer_parameters(self, by_name) -> list[dict[str, np.ndarray]]:
        """Per-layer arrays (V, ...) from values by name (scalars or (V,) arrays)."""
        unknown = [name for name in by_name if name not in self._position]
        if unknown:
            raise KeyError(f"not parameters of this network: {sorted(unknown)}")
        if self._defaults is None:
            self._defaults = np.fromiter(self.spec.parameters.values(), dtype=np.float64,
                                         count=len(self.parameter_names))
        given = {name: np.asarray(v, dtype=np.float64) for name, v in by_name.items()}
        variants = max((a.shape[0] for a in given.values() if a.ndim), default=1)
        theta = np.empty((variants, len(self.parameter_names)))
        theta[:] = self._defaults
        if given:
            columns = [self._position[name] for name in given]
            theta[:, columns] = np.stack([np.broadcast_to(a, (variants,))
                                          for a in given.values()], axis=-1)
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
        """(per-layer arrays (V, ...), whether they have a variant axis, V)."""
        if parameters is None:
            arrays, has_v = self.default_parameters(), False
        elif isinstance(parameters, dict):
            arrays = self.layer_parameters(parameters)
            has_v = any(np.ndim(v) for v in parameters.values())
        else:
            arrays, has_v = [], False
            for kernel, given in zip(self.kernels, parameters):
                layer = {}
                for role, names in kernel.names.items():
                    a = np.asarray(given[role], dtype=np.float64)
                    if a.shape == names.shape:
                        a = a[None]
                    elif a.shape[1:] == names.shape:
                        has_v = True
                    else:
                        raise ValueError(f"layer {kernel.layer.index} {role}: shape "
                                         f"{names.shape} or (V, *{names.shape}), got {a.shape}")
                    layer[role] = a
                arrays.append(layer)
        variants = max((a.shape[0] for layer in arrays for a in layer.values()), default=1)
        return arrays, has_v, variants

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
        params, vp, v = self._as_layer_arrays(parameters)
        has_variants = vx or vt or vp
        # broadcast the variant axis of inputs/targets where only the parameters have one
        v = max(x.shape[0], t.shape[0], v)
        if x.shape[0] != v:
            x = np.broadcast_to(x, (v,) + x.shape[1:])
        if t.shape[0] != v:
            t = np.broadcast_to(t, (v,) + t.shape[1:])
        batch = x.shape[1]
        scale = 1.0 / batch if reduction == "mean" else 1.0
        # what the kernels read besides their parameters: buffers, per-example data (V or
        # 1, B, …)
        if self._buffers:
            params = [dict(p, **b) for p, b in zip(params, self._buffer_arrays(buffers, v))]
        per_example = self._example_arrays(examples, batch) if self._per_example else None

        size = self._chunk_size(v, batch)
        if size >= batch:
            passed = self._pass(x, t, params, per_example, scale, gradients, input_gradient)
            layers, lazy = passed.layers, [None] * len(passed.layers)
            terms, layer_gradients, gx = passed.terms, passed.gradients, passed.input_gradient
            updated = passed.buffers
        else:
            layers, terms, layer_gradients, gx = self._in_chunks(
                x, t, params, per_example, scale, gradients, input_gradient, size)
            lazy = [self._lazy(k, arrays) for k, arrays in enumerate(layers)]
            updated = {}
        example_losses = terms.sum(axis=-1)
        loss = example_losses.sum(axis=-1) * scale

        if not has_variants:
            loss, example_losses, terms = loss[0], example_losses[0], terms[0]
            gx = gx[0] if gx is not None else None
            layers = [{role: a[0] for role, a in arrays.items()} for arrays in layers]
            if layer_gradients is not None:
                layer_gradients = [{k: a[0] for k, a in g.items()} for g in layer_gradients]
            updated = {n: a[0] for n, a in updated.items()}
        layers = [LayerArrays(arrays, how) for arrays, how in zip(layers, lazy)]
        return FastResult(self, loss, example_losses, terms, layers, layer_gradients, gx,
                          has_variants, buffers=updated)

    def _pass(self, x, t, params, per_example, scale, gradients, input_gradient) -> "_Pass":
        """Forward (and backward) through every kernel for the examples of x and t
        (``per_example``: each layer's data of these examples, or None)."""
        if per_example is not None:
            params = [dict(p, **e) if e else p for p, e in zip(params, per_example)]
        layers, caches, kept, a = [], [], [], x
        for kernel, p, (_, _, more_values, activation_kept) in zip(self.kernels, params,
                                                                   self._steps):
            z, a, cache = kernel.forward(a, p)
            # a kernel may name more of its quantities (batch statistics), (V, B, …) each
            arrays = {"pre_activation": z, "activation": a}
            if more_values is not None:
                arrays.update(more_values(cache))
            layers.append(arrays)
            caches.append(cache)
            # what its activation's forward pass kept for the backward (or a fused loss)
            kept.append(activation_kept(cache) if activation_kept is not None else None)
        updated = self._updated_buffers(params, caches) if self._buffers else {}
        last = self.kernels[-1]
        terms, d, fused = self.loss.terms_and_delta(last.activation,
                                                    layers[-1]["pre_activation"], a, t,
                                                    kept[-1])
        if not gradients:
            return _Pass(layers, terms, buffers=updated)
        delta = d * scale if scale != 1.0 else d
        layer_gradients = [None] * len(self.kernels)
        for k in range(len(self.kernels) - 1, -1, -1):
            kernel = self.kernels[k]
            activation, slope = self._steps[k][:2]
            if not (k == len(self.kernels) - 1 and fused):
                delta = activation.backward(layers[k]["pre_activation"],
                                            layers[k]["activation"], delta, slope, kept[k])
            below = layers[k - 1]["activation"] if k else x
            need = k > 0 or input_gradient
            layer_gradients[k], delta = kernel.backward(below, params[k], delta, need,
                                                        caches[k])
        return _Pass(layers, terms, layer_gradients, delta if input_gradient else None,
                     updated)

    def _updated_buffers(self, params, caches) -> dict[str, np.ndarray]:
        """The layers' buffers after this forward pass, by name (V,)."""
        updated = {}
        for kernel, p, cache in zip(self.kernels, params, caches):
            if getattr(kernel, "buffer_names", None):
                for role, array in kernel.updated_buffers(p, cache).items():
                    names = kernel.buffer_names[role].ravel()
                    flat = array.reshape(array.shape[0], -1)
                    updated.update({n: flat[:, k] for k, n in enumerate(names)})
        return updated

    def _chunk_size(self, variants: int, batch: int) -> int:
        """Examples per chunk: the whole batch when its arrays are small, or when a layer
        mixes the examples (batch statistics) or keeps numbers from step to step."""
        per_example = 8 * variants * self._example_numbers
        if per_example * batch <= BATCH_BYTES or self._couples or self._buffers:
            return batch
        return max(1, CHUNK_BYTES // per_example)

    def _in_chunks(self, x, t, params, per_example, scale, gradients, input_gradient, size):
        """The pass chunk by chunk of examples (they do not depend on one another): the
        pre-activations written into whole-batch arrays, the gradients summed."""
        batch = x.shape[1]
        kept: list[dict] = []  # per layer: role → whole-batch array
        filled: list[tuple[int, str]] = []  # (layer, role) of the arrays written chunk by chunk
        terms = gx = layer_gradients = None
        for start in range(0, batch, size):
            part = slice(start, start + size)
            examples = None if per_example is None else [
                {role: a[:, part] for role, a in e.items()} for e in per_example]
            passed = self._pass(x[:, part], t[:, part], params, examples, scale, gradients,
                                input_gradient)
            if start == 0:
                for k, arrays in enumerate(passed.layers):
                    below = passed.layers[k - 1]["activation"] if k else None
                    kept.append(self._batch_arrays(arrays, batch, below,
                                                   kept[-1] if k else {}, filled, k))
                terms = np.empty(t.shape[:2] + passed.terms.shape[2:])
                gx = np.empty(x.shape) if passed.input_gradient is not None else None
                layer_gradients = passed.gradients
            elif gradients:
                for total, grads in zip(layer_gradients, passed.gradients):
                    for role, g in grads.items():
                        total[role] += g
            for k, role in filled:
                kept[k][role][:, part] = passed.layers[k][role]
            terms[:, part] = passed.terms
            if gx is not None:
                gx[:, part] = passed.input_gradient
        return kept, terms, layer_gradients, gx

    @staticmethod
    def _batch_arrays(arrays: dict, batch: int, below, kept_below: dict, filled: list,
                      k: int) -> dict:
        """Whole-batch arrays for what layer k keeps of a chunk (``arrays``; ``below`` the
        chunk's input): its pre-activations, and its activations when they are the
        pre-activations themselves (pooling, identity); its input reshaped (flatten) is a
        view of the layer below's whole-batch array."""
        z = arrays["pre_activation"]
        shape = z.shape[:1] + (batch,) + z.shape[2:]
        if "activation" in kept_below and np.may_share_memory(z, below):
            out = {"pre_activation": kept_below["activation"].reshape(shape)}
        else:
            out = {"pre_activation": np.empty(shape)}
            filled.append((k, "pre_activation"))
        if arrays["activation"] is z:
            out["activation"] = out["pre_activation"]
        # any other activation is computed from the pre-activations when read
        for role, a in arrays.items():
            if role not in ("pre_activation", "activation"):
                out[role] = np.empty(a.shape[:1] + (batch,) + a.shape[2:])
                filled.append((k, role))
        return out

    def _lazy(self, k: int, arrays: dict) -> dict | None:
        """How layer k's activations are computed from its pre-activations, if not kept
        (from the arrays as they are handed over: with or without their variant axis)."""
        if "activation" in arrays:
            return None
        kernel = self.kernels[k]
        activation = ACTIVATIONS[kernel.activation]
        slope = getattr(kernel, "slope", 0.01)
        return {"activation": lambda kept: activation.forward(kept["pre_activation"], slope)}

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


@dataclass
class _Pass:
    """What one pass over some examples computed, axes (V, B, …)."""

    layers: list[dict[str, np.ndarray]]
    terms: np.ndarray
    gradients: list[dict[str, np.ndarray]] | None = None
    input_gradient: np.ndarray | None = None
    buffers: dict[str, np.ndarray] = field(default_factory=dict)  # updated, by name


def _distinct(index: np.ndarray, count: int) -> bool:
    """Whether no index repeats (no parameter name used twice in one block)."""
    return index.size == 0 or int(np.bincount(index.ravel(), minlength=count).max()) <= 1


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
