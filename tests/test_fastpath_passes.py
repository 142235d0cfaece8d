"""How the fast path saves time and memory without changing a digit: a large batch goes
chunk by chunk of examples, with the numbers of one pass over the whole batch (itself
checked against SymPy, PyTorch and finite differences in test_fastpath.py) in far less
memory, activations computed from the pre-activations when read; the element-wise forms
written in fewer passes give the very bits of the plain formulas."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from backprop_explain import fastpath
from backprop_explain.activations import ACTIVATIONS
from backprop_explain.fastpath import FastNetwork, compile_network
from backprop_explain.losses import LOSSES
from backprop_explain.spec import spec_from_dict


def cnn(seed, side=6, channels=2, filters=3, activation="relu", pool="maxpool2d"):
    rng = np.random.default_rng(seed)
    pooled = (side - 2) // 2
    return spec_from_dict({
        "inputs": {"values": rng.uniform(0, 1, (channels, side, side)).tolist()},
        "layers": [
            {"type": "conv2d", "activation": activation,
             "filters": rng.uniform(-1, 1, (filters, channels, 3, 3)).tolist(),
             "biases": rng.uniform(-1, 1, filters).tolist()},
            {"type": pool, "kernel": 2}, {"type": "flatten"},
            {"type": "dense", "units": 4, "activation": "softmax",
             "weights": rng.uniform(-1, 1, (4, filters * pooled * pooled)).tolist(),
             "biases": rng.uniform(-1, 1, 4).tolist()}],
        "loss": {"type": "cross_entropy", "targets": [1, 0, 0, 0]},
        "training": {"learning_rate": 0.1}})


def mlp(seed):
    rng = np.random.default_rng(seed)
    return spec_from_dict({
        "inputs": {"values": [0.1, 0.2, 0.3, 0.4, 0.5]},
        "layers": [
            {"type": "dense", "units": 4, "activation": "sigmoid",
             "weights": rng.uniform(-2, 2, (4, 5)).tolist(), "biases": [0.1] * 4},
            {"type": "dense", "units": 3, "activation": "tanh",
             "weights": rng.uniform(-2, 2, (3, 4)).tolist(), "biases": [0.2] * 3},
            {"type": "dense", "units": 2, "activation": "identity",
             "weights": rng.uniform(-2, 2, (2, 3)).tolist(), "biases": [0.0, 0.3]}],
        "loss": {"type": "half_squared_error", "targets": [0.5, -0.5]},
        "training": {"learning_rate": 0.1, "reduction": "sum"}})


def with_dropout(seed, examples=13):
    """A CNN with a dropout layer, one mask per example of the spec (drawn from a seed)."""
    rng = np.random.default_rng(seed)
    return spec_from_dict({
        "inputs": {"shape": [1, 5, 5]},
        "layers": [
            {"type": "conv2d", "activation": "relu", "biases": [0.1, -0.1],
             "filters": rng.uniform(-1, 1, (2, 1, 2, 2)).tolist()},
            {"type": "dropout", "p": 0.3, "seed": 4}, {"type": "maxpool2d", "kernel": 2},
            {"type": "flatten"},
            {"type": "dense", "units": 3, "activation": "softmax",
             "weights": rng.uniform(-1, 1, (3, 8)).tolist()}],
        "loss": {"type": "cross_entropy"},
        "examples": [{"inputs": rng.uniform(0, 1, (1, 5, 5)).tolist(),
                      "targets": [1, 0, 0]} for _ in range(examples)],
        "training": {"learning_rate": 0.1}})


def batch(network, size, seed, variants=None):
    rng = np.random.default_rng(seed)
    lead = (variants,) if variants else ()
    x = rng.uniform(-1, 1, lead + (size,) + network.input_shape)
    t = rng.dirichlet(np.ones(network.output_size), lead + (size,))
    return x, t


def assert_same(chunked, whole):
    np.testing.assert_allclose(chunked.loss, whole.loss, rtol=1e-13)
    # a term −t·ln softmax(z) near 0 is a difference of numbers near |z|: its last digits
    # follow the rounding of z (BLAS sums a chunk's products in its own order)
    np.testing.assert_allclose(chunked.terms, whole.terms, rtol=1e-13, atol=1e-13)
    assert [set(a) for a in chunked.layers] == [set(a) for a in whole.layers]
    # A gradient cell is a sum over the batch and the map: one that nearly cancels (−0.034
    # out of cells near 50) keeps the rounding of the largest terms, which follows the order
    # BLAS sums a chunk in (it differs between builds): its error is relative to them.
    scale = max((float(np.abs(a).max(initial=0.0)) for layer in whole.layers
                 for a in layer.values()), default=0.0)
    atol = max(1e-15, 1e-14 * scale)
    for mine, theirs in zip(chunked.layers, whole.layers):
        for role in theirs:
            np.testing.assert_allclose(mine[role], theirs[role], rtol=1e-13, atol=atol)
    assert chunked.values.keys() == whole.values.keys()
    if whole.layer_gradients is not None:
        for name, g in whole.gradients.items():
            np.testing.assert_allclose(chunked.gradients[name], g, rtol=1e-12, atol=atol)
    if whole.input_gradient is not None:
        np.testing.assert_allclose(chunked.input_gradient, whole.input_gradient, rtol=1e-13,
                                   atol=1e-16)


@pytest.mark.parametrize("size", [1, 4, 5])
@pytest.mark.parametrize("spec", [cnn(1), cnn(2, pool="avgpool2d", activation="tanh"),
                                  mlp(3), with_dropout(4)],
                         ids=["maxpool", "avgpool", "mlp", "dropout"])
def test_chunks_give_the_numbers_of_one_pass(monkeypatch, spec, size):
    network = compile_network(spec)
    x, t = batch(network, 13, 4)
    rng = np.random.default_rng(5)
    variants = {name: rng.uniform(-1, 1, 3) for name in network.parameter_names[:7]}
    runs = [dict(), dict(input_gradient=True), dict(parameters=variants),
            dict(gradients=False)]
    whole = [network.run(x, t, **options) for options in runs]
    monkeypatch.setattr(FastNetwork, "_chunk_size", lambda self, v, b: size)
    for options, expected in zip(runs, whole):
        assert_same(network.run(x, t, **options), expected)


def test_activations_are_computed_from_pre_activations_when_read(monkeypatch):
    network = compile_network(cnn(6))
    x, t = batch(network, 9, 7, variants=2)
    monkeypatch.setattr(FastNetwork, "_chunk_size", lambda self, v, b: 2)
    result = network.run(x, t)
    conv, pool, flatten, dense = result.layers
    assert set(conv) == {"pre_activation", "activation"} and len(conv) == 2
    np.testing.assert_array_equal(conv["activation"], np.maximum(conv["pre_activation"], 0))
    assert pool["activation"] is pool["pre_activation"]  # pooling has no activation
    # flatten's arrays are the pooled maps themselves, reshaped
    assert np.shares_memory(flatten["pre_activation"], pool["activation"])
    np.testing.assert_array_equal(flatten["activation"],
                                  pool["activation"].reshape(2, 9, -1))
    np.testing.assert_array_equal(dense["activation"],
                                  ACTIVATIONS["softmax"].forward(dense["pre_activation"]))
    assert result.values["a_{1,1,1}"].shape == (2, 9)


def test_a_large_batch_of_a_cnn_takes_a_fraction_of_the_memory(monkeypatch):
    network = compile_network(cnn(8, side=28, channels=1, filters=8))
    x, t = batch(network, 256, 9)  # each layer's arrays: 256 × 8 × 26 × 26 numbers, 11 MB

    def peak(**options):
        network.run(x, t, **options)
        tracemalloc.start()
        result = network.run(x, t, **options)
        used = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return used, result

    chunked, in_chunks = peak()
    monkeypatch.setattr(fastpath, "BATCH_BYTES", 2 ** 40)
    whole, at_once = peak()
    assert chunked < 0.4 * whole
    assert_same(in_chunks, at_once)


def test_fewer_passes_give_the_bits_of_the_plain_formulas():
    rng = np.random.default_rng(10)
    z = np.concatenate([rng.normal(0, 3, 5000), rng.uniform(-800, 800, 500),
                        [0.0, -0.0, np.inf, -np.inf, 1e-320, -1e-320, 709.8, -745.2]])
    g = rng.normal(size=z.shape)
    e = np.exp(-np.abs(z))
    plain = {"sigmoid": (np.where(z >= 0, 1.0, e) / (1.0 + e), g * (e / (1.0 + e) ** 2)),
             "tanh": (np.tanh(z), g * (1.0 - np.tanh(z) ** 2))}
    for name, (forward, backward) in plain.items():
        a = ACTIVATIONS[name].forward(z)
        assert np.array_equal(a, forward) and np.array_equal(np.signbit(a), np.signbit(forward))
        np.testing.assert_array_equal(ACTIVATIONS[name].backward(z, a, g), backward)
    y = rng.normal(0, 30, (4, 7, 10))
    shifted = np.exp(y - y.max(axis=-1, keepdims=True))
    np.testing.assert_array_equal(ACTIVATIONS["softmax"].forward(y),
                                  shifted / shifted.sum(axis=-1, keepdims=True))


def test_what_a_forward_pass_keeps_gives_its_backward_the_same_bits():
    """The sigmoid's backward from the e^{−|z|} and 1 + e^{−|z|} its forward pass kept, the
    fused cross-entropy from the softmax's max and Σ e^{z − max}: the bits of the plain
    formulas, which compute them again."""
    rng = np.random.default_rng(11)
    z = np.concatenate([rng.normal(0, 3, 5000), rng.uniform(-800, 800, 500),
                        [0.0, -0.0, np.inf, -np.inf, 1e-320, -1e-320, 709.8, -745.2]])
    g = rng.normal(size=z.shape)
    e = np.exp(-np.abs(z))
    sigmoid = ACTIVATIONS["sigmoid"]
    a, kept = sigmoid.forward_kept(z)
    np.testing.assert_array_equal(a, sigmoid.forward(z))
    np.testing.assert_array_equal(sigmoid.backward(z, a, g, kept=kept), g * (e / (1.0 + e) ** 2))
    y = rng.normal(0, 30, (4, 7, 10))
    t = rng.dirichlet(np.ones(10), (4, 7))
    out, kept = ACTIVATIONS["softmax"].forward_kept(y)
    log_softmax = y - (y.max(axis=-1) + np.log(np.exp(y - y.max(axis=-1, keepdims=True))
                                               .sum(axis=-1)))[..., None]
    terms, delta, fused = LOSSES["cross_entropy"].terms_and_delta("softmax", y, out, t, kept)
    assert fused
    np.testing.assert_array_equal(terms, -t * log_softmax)
    np.testing.assert_array_equal(delta, out * t.sum(axis=-1, keepdims=True) - t)


@pytest.mark.parametrize("units, inputs", [(3, 5), (40, 600), (300, 100)],
                         ids=["small", "long-rows", "short-rows"])
def test_one_examples_weight_gradient_is_the_outer_product(units, inputs):
    """Each entry of one example's weight gradient is the one product δ_j·x_i: the bits of
    np.outer, signed zeros too where it is a broadcast product (BLAS adds +0 to a −0)."""
    rng = np.random.default_rng(units)
    network = compile_network(spec_from_dict({
        "inputs": {"values": [0.5] * inputs},
        "layers": [{"type": "dense", "units": units, "activation": "sigmoid",
                    "weights": rng.uniform(-1, 1, (units, inputs)).tolist()}],
        "loss": {"type": "half_squared_error", "targets": [0.0] * units},
        "training": {"learning_rate": 0.1}}))
    x = rng.normal(size=(2, 1, inputs))
    x[:, :, ::7] = -0.0
    delta = rng.normal(size=(2, 1, units)) * 10.0 ** rng.integers(-300, 300, (2, 1, units))
    delta[:, :, ::5] = 0.0
    p = {"weights": rng.normal(size=(2, units, inputs)), "biases": np.zeros((2, units))}
    buffer_size = np.getbufsize()
    gradients, _ = network.kernels[0].backward(x, p, delta, False)
    expected = np.stack([np.outer(delta[v, 0], x[v, 0]) for v in range(2)])
    np.testing.assert_array_equal(gradients["weights"], expected)
    if units * inputs < 2 ** 14 or inputs >= 512:
        np.testing.assert_array_equal(np.signbit(gradients["weights"]), np.signbit(expected))
    assert np.getbufsize() == buffer_size  # NumPy's setting as it was


def test_parameters_by_name_replace_the_specs_values_and_keep_the_rest():
    spec = mlp(12)
    network = compile_network(spec)
    names = network.parameter_names
    rng = np.random.default_rng(13)
    given = {names[0]: rng.uniform(-1, 1, 4), names[5]: 0.25, names[-1]: rng.uniform(-1, 1, 4)}
    layers = network.layer_parameters(given)
    for v in range(4):
        values = dict(spec.parameters, **{n: (a[v] if np.ndim(a) else a)
                                          for n, a in given.items()})
        expected = [{"weights": np.array([[values[n] for n in row] for row in layer.weight_names]),
                     "biases": np.array([values[n] for n in layer.bias_names])}
                    for layer in spec.layers]
        for mine, theirs in zip(layers, expected):
            for role in theirs:
                np.testing.assert_array_equal(mine[role][v], theirs[role])
    with pytest.raises(KeyError, match="not parameters"):
        network.layer_parameters({"nope": 1.0})


@pytest.mark.parametrize("kind", ["maxpool2d", "avgpool2d"])
@pytest.mark.parametrize("kernel, stride, padding, side",
                         [(2, 2, 0, 6), (2, 3, 0, 8), (2, 2, 1, 8), (3, 2, 1, 7), (2, 1, 0, 5)],
                         ids=["tiling", "gaps", "padded", "overlapping", "stride-1"])
def test_pooling_routes_each_gradient_as_adding_it_to_zeros(kind, kernel, stride, padding,
                                                            side):
    """Windows that share no cell get their gradients written in place: the bits of adding
    each window's share to a zero gradient, window after window (signed zeros, inf and NaN
    included), which is what overlapping windows still do."""
    rng = np.random.default_rng(kernel * 10 + stride)
    out = (side + 2 * padding - kernel) // stride + 1
    network = compile_network(spec_from_dict({
        "inputs": {"values": np.zeros((2, side, side)).tolist()},
        "layers": [{"type": kind, "kernel": kernel, "stride": stride, "padding": padding},
                   {"type": "flatten"},
                   {"type": "dense", "units": 2, "weights": np.ones((2, 2 * out * out)).tolist()}],
        "loss": {"type": "half_squared_error", "targets": [0.0, 0.0]},
        "training": {"learning_rate": 0.1}}))
    pool = network.kernels[0]
    x = rng.integers(-2, 3, (1, 3, 2, side, side)).astype(float)  # ties: the first wins
    delta = rng.normal(size=(1, 3, 2, out, out))
    delta[..., ::3] = -0.0
    delta[0, 0, 0, 0, :3] = [np.inf, np.nan, -np.inf]
    _, _, winner = pool.forward(x, {})
    with np.errstate(invalid="ignore"):
        _, g = pool.backward(x, {}, delta, True, winner)
        padded = np.pad(x, [(0, 0)] * 3 + [(padding, padding)] * 2, constant_values=-np.inf)
        shares = {}  # (r, s) → each window cell's share (…, kernel, kernel)
        for r in range(out):
            for s in range(out):
                window = padded[..., r * stride:r * stride + kernel,
                                s * stride:s * stride + kernel].reshape(x.shape[:3] + (-1,))
                first = np.arange(kernel * kernel) == window.argmax(axis=-1)[..., None]
                share = (delta[..., r, s, None] * first if kind == "maxpool2d"
                         else np.repeat(delta[..., r, s, None] / kernel ** 2, kernel ** 2, -1))
                shares[r, s] = share.reshape(share.shape[:3] + (kernel, kernel))
        # added to zeros offset by offset in the window (a cell gets one share per offset)
        expected = np.zeros(padded.shape)
        for i in range(kernel):
            for j in range(kernel):
                for (r, s), share in shares.items():
                    expected[..., r * stride + i, s * stride + j] += share[..., i, j]
    expected = expected[..., padding:padding + side, padding:padding + side]
    np.testing.assert_array_equal(g, expected)
    numbers = ~np.isnan(expected)  # a NaN's sign follows the order of the sums
    np.testing.assert_array_equal(np.signbit(g)[numbers], np.signbit(expected)[numbers])
