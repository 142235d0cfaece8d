"""The NumPy fast path against independent references: the symbolic engine (mpmath, 40
digits), the plain-NumPy reference (tests/reference.py), central finite differences,
PyTorch (float64) when installed and the course's published figures."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from backprop_explain.derivation import NumericGraph, leaf_values
from backprop_explain.fastpath import compile_network, evaluate
from backprop_explain.graph import build_graph
from backprop_explain.spec import ACTIVATIONS, LOSSES, spec_from_dict

from reference import Network

RTOL = 1e-10


def _targets(rng, loss, n_out, n_examples):
    if loss == "softmax_cross_entropy":
        t = rng.uniform(0, 1, (n_examples, n_out))
        return t / t.sum(axis=1, keepdims=True)
    if loss in ("cross_entropy", "binary_cross_entropy"):
        return rng.uniform(0, 1, (n_examples, n_out))
    return rng.uniform(-1, 1, (n_examples, n_out))


def random_dense_spec(*args, **kwargs):
    return spec_from_dict(random_dense_data(*args, **kwargs))


def random_dense_data(seed, hidden_act, out_act, loss, reduction="mean", n_examples=3,
                      sizes=(3, 4, 3), scale=1.0, shared=False) -> dict:
    rng = np.random.default_rng(seed)
    layers = []
    for k, (n_in, units) in enumerate(zip(sizes[:-1], sizes[1:])):
        act = out_act if k == len(sizes) - 2 else hidden_act
        w = rng.uniform(-1, 1, (units, n_in))
        b = rng.uniform(-1, 1, units)
        layer = {"type": "dense", "units": units, "activation": act,
                 "negative_slope": 0.1, "weights": w.tolist(), "biases": b.tolist()}
        if shared:  # w_{#j} shared across a unit's inputs; one bias "c" for every unit
            w[:] = w[:, :1]
            b[:] = 0.3
            layer.update(weights=w.tolist(), biases=b.tolist(),
                         names={"weights": f"w^{{({k + 1})}}_{{#j}}", "biases": "c"})
        layers.append(layer)
    x = rng.uniform(-2, 2, (n_examples, sizes[0])) * scale
    t = _targets(rng, loss, sizes[-1], n_examples)
    return {
        "inputs": {"size": sizes[0]}, "layers": layers,
        "loss": {"type": loss},
        "examples": [{"inputs": xi.tolist(), "targets": ti.tolist()} for xi, ti in zip(x, t)],
        "training": {"learning_rate": 0.1, "reduction": reduction}}


def assert_matches_reference(data, result, rtol=1e-10):
    """The fast path's loss, layer gradients and ∂E/∂inputs against the reference's
    hand-written reverse pass (tests/reference.py) on every example of the spec."""
    net = Network(data)
    np.testing.assert_allclose(result.loss, net.batch_loss(net.parameters), rtol=1e-12)
    expected = net.backward(net.parameters)["layers"]  # the batch's mean or sum
    for fast, ref in zip(result.layer_gradients, expected):
        ref = {"weights" if role == "filters" else role: g for role, g in ref.items()}
        assert set(fast) == set(ref)
        for role in ref:
            np.testing.assert_allclose(fast[role], ref[role], rtol=rtol, atol=1e-13)


def symbolic(spec):
    """Per-example forward values and combined gradients from the symbolic engine."""
    graph = build_graph(spec)
    numeric = NumericGraph(graph)
    values, grads = [], []
    for example in spec.examples:
        v = numeric.forward(leaf_values(spec, spec.parameters, example))
        adjoints = numeric.backward(numeric.partial_values(v))
        values.append(v)
        grads.append({p.name: adjoints[p.name] for p in graph.parameters})
    combine = np.mean if spec.reduction == "mean" else np.sum
    gradients = {n: combine([g[n] for g in grads]) for n in spec.parameters}
    loss = combine([v[spec.loss.total_name] for v in values])
    return values, gradients, loss


def assert_matches_symbolic(spec, result=None):
    values, gradients, loss = symbolic(spec)
    result = result or evaluate(spec)
    assert set(result.values) <= set(values[0])
    scale = max(1.0, max(abs(g) for g in gradients.values()))
    for name, fast in result.values.items():
        np.testing.assert_allclose(fast, [v[name] for v in values], rtol=RTOL, atol=1e-14,
                                   err_msg=name)
    for name, fast in result.gradients.items():
        np.testing.assert_allclose(fast, gradients[name], rtol=RTOL, atol=1e-14 * scale,
                                   err_msg=name)
    np.testing.assert_allclose(result.loss, loss, rtol=RTOL)
    # every forward node of the symbolic graph has its fast counterpart
    computed = {n for n, node in build_graph(spec).nodes.items() if node.expr is not None}
    assert computed == set(result.values)


def valid_pairs():
    """(output activation, loss) pairs where every loss is real: logs of values in (0, 1)."""
    for loss in LOSSES:
        for act in ACTIVATIONS:
            if loss == "softmax_cross_entropy" and act != "identity":
                continue
            if loss in ("cross_entropy", "binary_cross_entropy") and act not in ("sigmoid",
                                                                                 "softmax"):
                continue
            yield act, loss


PAIRS = list(valid_pairs())


@pytest.mark.parametrize("out_act,loss", PAIRS)
def test_every_activation_and_loss_matches_symbolic(out_act, loss):
    k = PAIRS.index((out_act, loss))
    for j, reduction in enumerate(("mean", "sum")):
        hidden = ACTIVATIONS[(k + j) % len(ACTIVATIONS)]
        assert_matches_symbolic(random_dense_spec(100 * k + j, hidden, out_act, loss, reduction))


@pytest.mark.parametrize("hidden", ACTIVATIONS)
def test_every_hidden_activation_matches_symbolic(hidden):
    assert_matches_symbolic(random_dense_spec(7, hidden, "sigmoid", "half_squared_error",
                                              sizes=(2, 3, 3, 2)))


def test_relu_derivative_is_zero_at_zero_like_the_piecewise():
    spec = random_dense_spec(3, "relu", "identity", "squared_error", n_examples=1)
    spec.parameters.update({name: 0.0 for name in spec.parameters if name.startswith("b^{(1)}")})
    spec.examples[0].inputs[:] = [0.0, 0.0, 0.0]  # every hidden pre-activation is exactly 0
    result = evaluate(spec)
    assert np.all(result.layers[0]["pre_activation"] == 0)
    assert_matches_symbolic(spec, result)
    assert all(result.gradients[n] == 0 for n in spec.parameters if n.startswith("w^{(1)}"))


def test_shared_parameters_get_the_sum_of_their_gradients():
    spec = random_dense_spec(11, "tanh", "softmax", "cross_entropy", shared=True)
    assert "c" in spec.parameters and len(spec.parameters) == 4 + 3 + 1
    assert_matches_symbolic(spec)


def test_course_network_published_figures():
    result = evaluate(Path(__file__).resolve().parent.parent
                      / "examples" / "mlp_3_2_2_cross_entropy.toml")
    assert result.values["out_{o1}"][0] == pytest.approx(0.8738232, abs=5e-8)
    assert result.values["out_{o2}"][0] == pytest.approx(0.2177180, abs=5e-8)
    assert float(result.loss) == pytest.approx(0.134877, abs=5e-7)


def test_gradients_match_central_finite_differences():
    """All ±h perturbations of every parameter evaluated in one call as variants."""
    for seed, (act, loss) in enumerate([("sigmoid", "binary_cross_entropy"),
                                        ("softmax", "cross_entropy"),
                                        ("tanh", "mean_squared_error")]):
        spec = random_dense_spec(seed, "leaky_relu", act, loss, n_examples=4)
        net = compile_network(spec)
        names = net.parameter_names
        h = 1e-6
        base = np.array([spec.parameters[n] for n in names])
        shifted = np.repeat(base[None], 2 * len(names), axis=0)
        for k in range(len(names)):
            shifted[2 * k, k] += h
            shifted[2 * k + 1, k] -= h
        x = [e.inputs for e in spec.examples]
        t = [e.targets for e in spec.examples]
        losses = net.run(x, t, {n: shifted[:, k] for k, n in enumerate(names)},
                         gradients=False).loss
        numeric = (losses[0::2] - losses[1::2]) / (2 * h)
        analytic = net.run(x, t).gradients
        np.testing.assert_allclose([analytic[n] for n in names], numeric, rtol=1e-6,
                                   atol=1e-8)


def test_variants_in_one_call_equal_separate_calls():
    spec = random_dense_spec(5, "sigmoid", "softmax", "cross_entropy", n_examples=2)
    net = compile_network(spec)
    rng = np.random.default_rng(1)
    params = {n: rng.uniform(-1, 1, 6) for n in net.parameter_names}
    x = [e.inputs for e in spec.examples]
    t = [e.targets for e in spec.examples]
    together = net.run(x, t, params)
    assert together.loss.shape == (6,)
    for v in range(6):
        alone = net.run(x, t, {n: p[v] for n, p in params.items()})
        assert np.ndim(alone.loss) == 0
        np.testing.assert_allclose(together.loss[v], alone.loss, rtol=1e-13)
        for n in net.parameter_names:
            np.testing.assert_allclose(together.gradients[n][v], alone.gradients[n],
                                       rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(together.values["a^{(2)}_{1}"][v],
                                   alone.values["a^{(2)}_{1}"], rtol=1e-13)


def test_per_layer_arrays_with_variant_inputs():
    """Parameters given per layer, inputs with a variant axis: each variant is the
    reference's network on those inputs."""
    data = random_dense_data(8, "relu", "identity", "half_squared_error", n_examples=2)
    net = compile_network(data)
    reference = Network(data)
    arrays = reference.layer_arrays(reference.parameters)  # the spec's numbers, per layer
    x = np.array([x for x, _ in reference.examples])
    t = np.array([t for _, t in reference.examples])
    by_layers = net.run(np.stack([x, 2 * x]), t, arrays)  # variants along the inputs
    assert by_layers.loss.shape == (2,)
    for v, scale in enumerate((1, 2)):
        doubled = dict(data, examples=[{"inputs": (scale * xi).tolist(), "targets": ti.tolist()}
                                       for xi, ti in zip(x, t)])
        expected = Network(doubled)
        np.testing.assert_allclose(by_layers.loss[v], expected.batch_loss(expected.parameters),
                                   rtol=1e-13)
        gradients = expected.gradients(expected.parameters)
        for name, g in gradients.items():
            np.testing.assert_allclose(by_layers.gradients[name][v], g, rtol=1e-12,
                                       atol=1e-15, err_msg=name)
    with pytest.raises(ValueError, match="inputs"):
        net.run(x[:, :2], t)


@pytest.mark.parametrize("pair", [("sigmoid", "cross_entropy"),
                                  ("sigmoid", "binary_cross_entropy"),
                                  ("softmax", "cross_entropy"),
                                  ("identity", "softmax_cross_entropy")])
def test_large_inputs_stay_finite_without_warnings(pair):
    act, loss = pair
    spec = random_dense_spec(21, "tanh", act, loss, sizes=(3, 3), n_examples=4, scale=400.0)
    net = compile_network(spec)
    x = np.array([e.inputs for e in spec.examples])
    t = np.array([e.targets for e in spec.examples])
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise"):
        warnings.simplefilter("error")
        result = net.run(x, t)
        z = result.layers[-1]["pre_activation"]
        assert np.abs(z).max() > 300  # σ and e^z would overflow or round to 0/1 naively
        assert np.isfinite(result.loss)
        assert all(np.isfinite(g) for g in result.gradients.values())
    # exactness at moderately large |z| (~15); the symbolic engine passes floats between
    # nodes, so σ(z) rounds to 1.0 and its ∂E/∂out divides by zero long before |z| ~ 400
    assert_matches_symbolic(random_dense_spec(21, "tanh", act, loss, sizes=(3, 3),
                                              n_examples=4, scale=6.0))


# ---------------------------------------------------------------------------
# PyTorch (float64) cross-check


def torch_loss_and_grads(spec, torch):
    F = torch.nn.functional
    net = compile_network(spec)
    params = [{r: torch.tensor(a[0], requires_grad=True) for r, a in layer.items()}
              for layer in net.default_parameters()]
    a = torch.tensor([e.inputs for e in spec.examples], dtype=torch.float64)
    t = torch.tensor([e.targets for e in spec.examples], dtype=torch.float64)
    for layer, p in zip(spec.layers, params):
        z = a @ p["weights"].T + p["biases"]
        a = {"identity": lambda z: z, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
             "relu": torch.relu, "softmax": lambda z: torch.softmax(z, -1),
             "leaky_relu": lambda z: F.leaky_relu(z, layer.negative_slope)}[layer.activation](z)
    kind = spec.loss.kind
    per_example = {
        "half_squared_error": lambda: 0.5 * F.mse_loss(a, t, reduction="none").sum(-1),
        "squared_error": lambda: F.mse_loss(a, t, reduction="none").sum(-1),
        "mean_squared_error": lambda: F.mse_loss(a, t, reduction="none").mean(-1),
        "cross_entropy": lambda: -(t * torch.log(a)).sum(-1),
        "binary_cross_entropy": lambda: F.binary_cross_entropy(a, t, reduction="none").sum(-1),
        "softmax_cross_entropy": lambda: F.cross_entropy(a, t, reduction="none"),
    }[kind]()
    loss = per_example.mean() if spec.reduction == "mean" else per_example.sum()
    loss.backward()
    return loss.item(), [{r: v.grad.numpy() for r, v in p.items()} for p in params]


def pytorch_case(out_act, loss):
    k = PAIRS.index((out_act, loss))
    return random_dense_data(50 + k, ACTIVATIONS[k % len(ACTIVATIONS)], out_act, loss,
                             reduction=("mean", "sum")[k % 2], n_examples=5)


@pytest.mark.parametrize("out_act,loss", PAIRS)
def test_against_the_reference(out_act, loss):
    """The PyTorch check's networks, against tests/reference.py: runs without PyTorch."""
    data = pytorch_case(out_act, loss)
    assert_matches_reference(data, evaluate(data))


@pytest.mark.parametrize("out_act,loss", PAIRS)
def test_against_pytorch(out_act, loss):
    torch = pytest.importorskip("torch")
    spec = spec_from_dict(pytorch_case(out_act, loss))
    expected_loss, expected = torch_loss_and_grads(spec, torch)
    result = evaluate(spec)
    np.testing.assert_allclose(result.loss, expected_loss, rtol=1e-12)
    for fast, ref in zip(result.layer_gradients, expected):
        for role in ref:
            np.testing.assert_allclose(fast[role], ref[role], rtol=1e-10, atol=1e-14)


# ---------------------------------------------------------------------------
# Small CNNs: conv2d, max/avg pooling, flatten


def random_cnn_spec(*args, **kwargs):
    return spec_from_dict(random_cnn_data(*args, **kwargs))


def random_cnn_data(seed, conv_act="relu", pool="maxpool2d", in_shape=(2, 5, 5), out_ch=3,
                    kernel=3, stride=2, padding=1, pool_kernel=2, pool_stride=1,
                    pool_padding=0, bias=True, loss="cross_entropy", out_act="softmax",
                    n_examples=2, reduction="mean", ties=False):
    rng = np.random.default_rng(seed)
    f = rng.uniform(-1, 1, (out_ch, in_shape[0], kernel, kernel))
    x = rng.uniform(-2, 2, (n_examples,) + in_shape)
    if ties:  # whole numbers: pooling windows with several equal maxima
        f, x = np.round(f * 2), np.round(x)
    conv = {"type": "conv2d", "filters": f.tolist(), "stride": stride, "padding": padding,
            "activation": conv_act, "negative_slope": 0.1,
            "biases": np.round(rng.uniform(-1, 1, out_ch)).tolist() if bias else False}
    side = (in_shape[1] - kernel + 2 * padding) // stride + 1
    pooled = (side - pool_kernel + 2 * pool_padding) // pool_stride + 1
    n = out_ch * pooled * pooled
    dense = {"type": "dense", "units": 3, "activation": out_act,
             "weights": rng.uniform(-1, 1, (3, n)).tolist(),
             "biases": rng.uniform(-1, 1, 3).tolist()}
    layers = [conv, {"type": pool, "kernel": pool_kernel, "stride": pool_stride,
                     "padding": pool_padding}, {"type": "flatten"}, dense]
    t = _targets(rng, loss, 3, n_examples)
    return {
        "inputs": {"shape": list(in_shape)}, "layers": layers, "loss": {"type": loss},
        "examples": [{"inputs": xi.tolist(), "targets": ti.tolist()} for xi, ti in zip(x, t)],
        "training": {"learning_rate": 0.1, "reduction": reduction}}


CNN_CASES = {
    "relu-stride2-pad1-maxpool": dict(),
    "no-bias-avgpool-padded": dict(pool="avgpool2d", pool_kernel=3, pool_stride=2,
                                   pool_padding=1, bias=False, conv_act="tanh",
                                   loss="half_squared_error", out_act="sigmoid",
                                   reduction="sum"),
    "maxpool-ties-first-maximum": dict(ties=True, conv_act="identity", stride=1, padding=0,
                                       pool_kernel=3, pool_stride=1, in_shape=(1, 5, 5),
                                       out_ch=2, loss="softmax_cross_entropy",
                                       out_act="identity"),
    "leaky-padded-maxpool": dict(conv_act="leaky_relu", stride=1, pool_kernel=3,
                                 pool_stride=3, pool_padding=1, in_shape=(1, 4, 4),
                                 loss="binary_cross_entropy", out_act="sigmoid"),
}


@pytest.mark.parametrize("case", CNN_CASES)
def test_cnn_matches_symbolic(case):
    spec = random_cnn_spec(3, **CNN_CASES[case])
    result = evaluate(spec)
    if case == "maxpool-ties-first-maximum":
        z = result.layers[0]["activation"]  # some 3×3 windows hold their maximum twice
        windows = np.lib.stride_tricks.sliding_window_view(z, (3, 3), axis=(-2, -1))
        top = windows.max(axis=(-2, -1), keepdims=True)
        assert ((windows == top).sum(axis=(-2, -1)) > 1).any()
    assert_matches_symbolic(spec, result)


def torch_cnn_loss_and_grads(spec, torch):
    F = torch.nn.functional
    net = compile_network(spec)
    conv, pool, _, dense = spec.layers
    params = [{r: torch.tensor(a[0], requires_grad=True) for r, a in layer.items()}
              for layer in net.default_parameters()]
    x = torch.tensor(np.array([e.inputs for e in spec.examples]).reshape(
        (-1,) + tuple(spec.input_shape)))
    t = torch.tensor([e.targets for e in spec.examples], dtype=torch.float64)
    z = F.conv2d(x, params[0]["weights"], params[0].get("biases"), stride=conv.stride,
                 padding=conv.padding)
    a = {"relu": torch.relu, "tanh": torch.tanh, "identity": lambda z: z,
         "leaky_relu": lambda z: F.leaky_relu(z, conv.negative_slope)}[conv.activation](z)
    pooling = F.max_pool2d if pool.kind == "maxpool2d" else F.avg_pool2d
    a = pooling(a, pool.kernel, pool.stride, pool.padding).view(a.shape[0], -1)
    z = a @ params[3]["weights"].T + params[3]["biases"]
    kind = spec.loss.kind
    if kind == "softmax_cross_entropy":
        per_example = F.cross_entropy(z, t, reduction="none")
    elif kind == "cross_entropy":
        per_example = -(t * torch.log_softmax(z, -1)).sum(-1)
    elif kind == "binary_cross_entropy":
        per_example = F.binary_cross_entropy(torch.sigmoid(z), t, reduction="none").sum(-1)
    else:
        per_example = 0.5 * ((torch.sigmoid(z) - t) ** 2).sum(-1)
    loss = per_example.mean() if spec.reduction == "mean" else per_example.sum()
    loss.backward()
    return loss.item(), [{r: v.grad.numpy() for r, v in p.items()} for p in params]


def large_cnn_case(case):
    channels = CNN_CASES[case].get("in_shape", (2,))[0]
    side = 7 if case == "leaky-padded-maxpool" else 9  # larger images than the symbolic tests
    return random_cnn_data(4, **dict(CNN_CASES[case], n_examples=6,
                                     in_shape=(channels, side, side)))


@pytest.mark.parametrize("case", CNN_CASES)
def test_cnn_against_the_reference(case):
    """The PyTorch check's CNNs, against tests/reference.py: runs without PyTorch."""
    data = large_cnn_case(case)
    assert_matches_reference(data, evaluate(data))


@pytest.mark.parametrize("case", CNN_CASES)
def test_cnn_against_pytorch(case):
    torch = pytest.importorskip("torch")
    spec = spec_from_dict(large_cnn_case(case))
    expected_loss, expected = torch_cnn_loss_and_grads(spec, torch)
    result = evaluate(spec)
    np.testing.assert_allclose(result.loss, expected_loss, rtol=1e-12)
    for fast, ref in zip(result.layer_gradients, expected):
        assert set(fast) == set(ref)
        for role in ref:
            np.testing.assert_allclose(fast[role], ref[role], rtol=1e-10, atol=1e-13)


def test_cnn_input_gradient_matches_finite_differences():
    spec = random_cnn_spec(5, pool="avgpool2d", pool_kernel=3, pool_stride=2, pool_padding=1)
    net = compile_network(spec)
    x = np.array([e.inputs for e in spec.examples]).reshape((-1,) + net.input_shape)
    t = np.array([e.targets for e in spec.examples])
    analytic = net.run(x, t, input_gradient=True).input_gradient
    h = 1e-6
    bumps = np.eye(x.size).reshape((x.size,) + x.shape) * h
    numeric = (net.run(x + bumps, t, gradients=False).loss
               - net.run(x - bumps, t, gradients=False).loss) / (2 * h)
    np.testing.assert_allclose(analytic.ravel(), numeric, rtol=1e-6, atol=1e-9)


def test_docstring_examples_run(monkeypatch):
    import doctest

    monkeypatch.chdir(Path(__file__).resolve().parent.parent)  # the examples' paths

    from backprop_explain import fastpath
    failures, tried = doctest.testmod(fastpath, optionflags=doctest.ELLIPSIS)
    assert tried >= 8 and failures == 0
