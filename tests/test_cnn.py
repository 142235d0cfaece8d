"""Small CNNs: conv2d, max/avg pooling, flatten.

Checked against independent references: the plain-NumPy reference network
(tests/reference.py: its hand-written reverse pass, and central finite
differences of its forward pass, which shares nothing with the package), the
course's published feature map, PyTorch when installed, and the element-wise
chain rule for the convolution forms of the gradients.
"""

import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from backprop_explain.api import as_spec, solve
from backprop_explain.cli import main
from backprop_explain.errors import SpecError

import reference
from reference import Network

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@functools.lru_cache(maxsize=None)
def solved(example: str):
    """The solution of an example, derived once for the whole file."""
    return solve(EXAMPLES / example)


def random_cnn(seed, channels, size, filters, kernel, stride, padding, activation,
               pool=None, second_conv=None, head=("sigmoid", 2), loss="half_squared_error"):
    """A spec dict with random numbers; pool = (kind, kernel, stride, padding)."""
    rng = np.random.default_rng(seed)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    layers = [{"type": "conv2d", "activation": activation, "stride": stride,
               "padding": padding,
               "filters": rng.uniform(-1, 1, (filters, channels, kh, kw)).round(3).tolist(),
               "biases": rng.uniform(-0.5, 0.5, filters).round(3).tolist()}]
    if second_conv:
        out, k2, s2, act2 = second_conv
        layers.append({"type": "conv2d", "activation": act2, "stride": s2,
                       "filters": rng.uniform(-1, 1, (out, filters, k2, k2)).round(3).tolist(),
                       "biases": rng.uniform(-0.5, 0.5, out).round(3).tolist()})
    if pool:
        kind, k, s, p = pool
        layers.append({"type": kind, "kernel": k, "stride": s, "padding": p})
    layers.append({"type": "flatten"})
    spec = {"inputs": {"shape": [channels, size, size]}, "layers": layers,
            "loss": {"type": loss}, "training": {"learning_rate": 0.1}}
    n_flat = _flat_size(spec)
    activation_out, units = head
    layers.append({"type": "dense", "activation": activation_out,
                   "weights": rng.uniform(-1, 1, (units, n_flat)).round(3).tolist(),
                   "biases": rng.uniform(-0.5, 0.5, units).round(3).tolist()})
    targets = [1.0] + [0.0] * (units - 1)
    spec["examples"] = [{"inputs": rng.uniform(-1, 1, (channels, size, size)).round(3).tolist(),
                         "targets": targets}]
    return spec


def _flat_size(spec):
    """C·H·W before the flatten layer, from the output-size formula."""
    c, h, w = spec["inputs"]["shape"]
    for layer in spec["layers"]:
        if layer["type"] == "flatten":
            return c * h * w
        k = layer.get("kernel") or len(layer["filters"][0][0])
        k = k if isinstance(k, int) else k[0]
        s = layer.get("stride", k if layer["type"] != "conv2d" else 1)
        p = layer.get("padding", 0)
        kw = k if layer["type"] != "conv2d" else len(layer["filters"][0][0][0])
        if layer["type"] == "conv2d":
            c = len(layer["filters"])
        sh, sw = (s, s) if isinstance(s, int) else s
        ph, pw = (p, p) if isinstance(p, int) else p
        h, w = (h - k + 2 * ph) // sh + 1, (w - kw + 2 * pw) // sw + 1
    raise AssertionError("no flatten layer")


NETWORKS = {
    "1ch-k2-maxpool-sigmoid": dict(seed=1, channels=1, size=4, filters=1, kernel=2, stride=1,
                                   padding=0, activation="sigmoid",
                                   pool=("maxpool2d", 2, 1, 0)),
    "2ch-k3-s2-p1-relu-avgpool": dict(seed=2, channels=2, size=5, filters=2, kernel=3, stride=2,
                                      padding=1, activation="relu",
                                      pool=("avgpool2d", 2, 1, 0), head=("identity", 2),
                                      loss="softmax_cross_entropy"),
    "1ch-k3-p1-tanh-maxpool3-s2-p1": dict(seed=3, channels=1, size=3, filters=2, kernel=3,
                                          stride=1, padding=1, activation="tanh",
                                          pool=("maxpool2d", 3, 2, 1), head=("identity", 1),
                                          loss="mean_squared_error"),
    "2ch-k2x3-s21-p01-leaky": dict(seed=4, channels=2, size=4, filters=1, kernel=(2, 3),
                                   stride=[2, 1], padding=[0, 1], activation="leaky_relu",
                                   loss="binary_cross_entropy"),
    "conv-conv-avgpool": dict(seed=5, channels=1, size=5, filters=2, kernel=2, stride=1,
                              padding=0, activation="identity",
                              second_conv=(1, 2, 2, "sigmoid"), pool=("avgpool2d", 2, 2, 0),
                              head=("sigmoid", 1), loss="squared_error"),
    "3ch-k1-identity-avgpool3-p1": dict(seed=6, channels=3, size=3, filters=2, kernel=1,
                                        stride=1, padding=0, activation="identity",
                                        pool=("avgpool2d", 3, 1, 1), head=("softmax", 2),
                                        loss="cross_entropy"),
}


def finite_differences(spec, h=1e-6):
    """Central differences of the loss of the reference's forward pass (tests/reference.py,
    which shares no code with the package), for every parameter."""
    net = Network(spec)
    return net.numeric_gradients(net.parameters, h=h)


@functools.lru_cache(maxsize=None)
def solved_network(key: str):
    data = random_cnn(**NETWORKS[key])
    return data, as_spec(data), solve(data)


@pytest.fixture(params=sorted(NETWORKS))
def network(request):
    """(spec dict, NetworkSpec, Solution) of a random CNN, derived once."""
    return solved_network(request.param)


def test_gradients_match_finite_differences(network):
    data, _, solution = network
    numeric = finite_differences(data)
    for name, value in numeric.items():
        assert solution.gradients[name] == pytest.approx(value, rel=1e-5, abs=1e-7), name


def test_forward_values_and_every_gradient_match_the_reference(network):
    """Every forward value, ∂E/∂quantity and ∂E/∂θ against the reference's forward and
    hand-written reverse pass, to 1e-9: a wrong conv window, padding or stride changes them."""
    data, _, solution = network
    net = Network(data)
    values, adjoints = net.values(net.parameters)[0], net.adjoints(net.parameters)[0]
    for name, value in values.items():
        assert solution.example.values[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    for name, value in adjoints.items():
        assert solution.example.adjoints[name] == pytest.approx(value, rel=1e-9, abs=1e-12), \
            name
    for name, g in net.gradients(net.parameters).items():
        assert solution.gradients[name] == pytest.approx(g, rel=1e-9, abs=1e-12), name


def test_input_gradient_matches_finite_differences(network):
    data, _, solution = network
    net = Network(data)
    first = solution.convolutions[0]
    np.testing.assert_allclose(first.input_gradient, net.numeric_input_gradient(net.parameters)[0],
                               rtol=1e-5, atol=1e-7)


def test_convolution_forms_equal_the_chain_rule(network):
    _, _, solution = network
    convs = [f for f in solution.convolutions if f.kind == "conv2d"]
    assert convs
    for forms in convs:
        assert forms.agrees, forms.max_difference
        np.testing.assert_allclose(forms.filter_gradient, forms.filter_gradient_chain,
                                   rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(forms.bias_gradient, forms.bias_gradient_chain,
                                   rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(forms.input_gradient, forms.input_gradient_chain,
                                   rtol=1e-10, atol=1e-12)
        # the chain-rule sum of each filter weight, term by term
        for name, terms in forms.filter_terms.items():
            total = sum(t.output_gradient * t.input_value for t in terms)
            assert total == pytest.approx(solution.gradients[name], rel=1e-10, abs=1e-12)


def test_second_conv_layer_needs_the_input_gradient():
    convs = [f for f in solved_network("conv-conv-avgpool")[2].convolutions
             if f.kind == "conv2d"]
    assert [f.input_gradient_needed for f in convs] == [False, True]


# ---------------------------------------------------------------------------
# Pooling: routing rule, ties


def _pool_spec(kind, image, kernel=2, stride=2):
    return {"inputs": {"values": image},
            "layers": [{"type": kind, "kernel": kernel, "stride": stride},
                       {"type": "flatten"},
                       {"type": "dense", "weights": [[1.0, 2.0, 3.0, 4.0]], "biases": 0}],
            "loss": {"type": "half_squared_error", "targets": [0]},
            "training": {"learning_rate": 0.1}}


def test_max_pool_sends_the_gradient_to_the_first_maximum_on_ties():
    image = [[1, 1, 0, 2], [1, 0, 2, 2], [5, 3, 0, 0], [4, 5, 0, 0]]
    solution = solve(_pool_spec("maxpool2d", image))
    routing = solution.convolutions[0]
    # windows: {1,1,1,0} tie → first (1,1); {0,2,2,2} → (1,4); {5,3,4,5} → (3,1); zeros → (3,3)
    assert routing.winners == [[["x_{1,1}", "x_{1,4}"], ["x_{3,1}", "x_{3,3}"]]]
    grad = routing.input_gradient[0]
    dy = routing.output_gradient[0]
    expected = np.zeros((4, 4))
    expected[0, 0], expected[0, 3], expected[2, 0], expected[2, 2] = dy.ravel()
    np.testing.assert_allclose(grad, expected)
    assert routing.output[0].tolist() == [[1, 2], [5, 0]]


def test_max_pool_expressions_are_those_sympy_builds():
    """max_pool reuses the expression of a window whose names come in the same order: the
    very expression (structure, argument order, printing) SymPy builds for each window."""
    import itertools

    import sympy as sp

    from backprop_explain.layers.pool2d import built_max_pool, max_pool

    names = ["a_{1,1}", "a_{1,2}", "a_{2,1}", "a_{2,2}", "x", "p^{(2)}_{10,3}", "b_{9}"]
    windows = [list(order) for size in (2, 3, 4) for order in
               itertools.permutations(names[:size])]  # every order of 2, 3, 4 names
    rng = np.random.default_rng(0)
    windows += [list(rng.permutation(names)[:4]) for _ in range(12)]  # names apart
    for k, window in enumerate(windows):
        cells = [sp.Symbol(n) for n in window]
        expected = built_max_pool(cells)
        reused = max_pool(cells)
        assert sp.srepr(reused) == sp.srepr(expected), window
        assert reused == expected and str(reused) == str(expected)
        assert sp.latex(reused) == sp.latex(expected)
        for cell in cells if k % 4 == 0 else []:  # and their derivatives
            assert sp.diff(reused, cell) == sp.diff(expected, cell)


def test_avg_pool_spreads_the_gradient_evenly():
    image = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]]
    routing = solve(_pool_spec("avgpool2d", image)).convolutions[0]
    dy = routing.output_gradient[0]
    np.testing.assert_allclose(routing.input_gradient[0], np.kron(dy, np.ones((2, 2))) / 4)
    assert routing.output[0].tolist() == [[3.5, 5.5], [11.5, 13.5]]


def test_max_pool_ties_like_the_reference():
    """The twin of the PyTorch check below: the reference's max pool (first maximum in
    row-major order) routes the same gradient."""
    image = [[1, 1, 0, 2], [1, 0, 2, 2], [5, 3, 0, 0], [4, 5, 0, 0]]
    solution = solve(_pool_spec("maxpool2d", image))
    x = np.array([image], dtype=float)
    y = reference.maxpool_forward(x, (2, 2), (2, 2), (0, 0))
    out = y.ravel() @ np.array([1.0, 2.0, 3.0, 4.0])
    expected = reference.maxpool_backward(x, out * np.array([[[1.0, 2.0], [3.0, 4.0]]]),
                                          (2, 2), (2, 2), (0, 0))
    np.testing.assert_allclose(solution.convolutions[0].input_gradient, expected)
    assert expected[0, 0, 0] != 0 and expected[0, 0, 1] == expected[0, 1, 0] == 0  # first of 3
    assert expected[0, 2, 0] != 0 and expected[0, 3, 1] == 0  # 5 and 5: the first


def test_max_pool_ties_like_pytorch():
    torch = pytest.importorskip("torch")
    image = [[1, 1, 0, 2], [1, 0, 2, 2], [5, 3, 0, 0], [4, 5, 0, 0]]
    solution = solve(_pool_spec("maxpool2d", image))
    x = torch.tensor([[image]], dtype=torch.float64, requires_grad=True)
    y = torch.nn.functional.max_pool2d(x, 2).reshape(-1) @ torch.tensor(
        [1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    (0.5 * y ** 2).backward()
    np.testing.assert_allclose(solution.convolutions[0].input_gradient[0], x.grad[0, 0].numpy())


# ---------------------------------------------------------------------------
# The course's figures


def test_course_feature_map_6x6_filter_3x3():
    solution = solved("conv_6x6_filter_3x3.toml")
    forms = solution.convolutions[0]
    z = forms.pre_activation[0].round(2)
    assert z[0, 0] == 469.05 and z[0, 1] == 486.58  # first row
    assert z[1, 0] == 303.74  # below the first cell
    assert z[3, 3] == 450.28  # last cell
    assert z.shape == (4, 4)
    # the course's written-out first cell: (146·−0.09) + (99·0.66) + … + (232·1.00)
    assert [(x, f) for _, x, _, f in forms.first_cell] == [
        (146, -0.09), (99, 0.66), (147, 0.68), (212, 0.32), (135, -0.75), (152, 0.63),
        (105, 0.13), (127, 0.07), (232, 1.00)]
    assert forms.agrees


def test_course_example_gradients_finite_differences():
    solution = solved("conv_6x6_filter_3x3.toml")
    numeric = finite_differences(EXAMPLES / "conv_6x6_filter_3x3.toml", h=1e-4)
    filters = [n for n in numeric if n.startswith("f_")]
    for name in filters:
        assert solution.gradients[name] == pytest.approx(numeric[name], rel=1e-6)
    # the frozen averaging readout keeps its weights
    assert all(u.new == u.old for u in solution.updates if u.parameter.startswith("v_"))
    assert solution.loss_after < solution.loss


def test_blog_cnn_structure():
    spec = as_spec(EXAMPLES / "cnn_3x3_filter_2x2.toml")
    assert list(spec.parameters)[:4] == ["f_{11}", "f_{12}", "f_{21}", "f_{22}"]
    assert len(spec.parameters) == 4 + 8 + 2 + 4 + 2  # no bias on the convolution
    solution = solved("cnn_3x3_filter_2x2.toml")
    # x_11 = i_11 f_11 + i_12 f_12 + i_21 f_21 + i_22 f_22, as the blog writes it
    forms = solution.convolutions[0]
    assert [(i, f) for i, _, f, _ in forms.first_cell] == [
        ("i_{11}", "f_{11}"), ("i_{12}", "f_{12}"), ("i_{21}", "f_{21}"), ("i_{22}", "f_{22}")]
    # ∂E/∂f_12 = ∂E/∂x_11·i_12 + ∂E/∂x_12·i_13 + ∂E/∂x_21·i_22 + ∂E/∂x_22·i_23 (the blog)
    assert [(t.output, t.input) for t in forms.filter_terms["f_{12}"]] == [
        ("x_{11}", "i_{12}"), ("x_{12}", "i_{13}"), ("x_{21}", "i_{22}"), ("x_{22}", "i_{23}")]
    for example in solution.examples:
        assert all(f.agrees for f in example.convolutions if f.kind == "conv2d")


# ---------------------------------------------------------------------------
# PyTorch


def _torch_loss_and_gradients(spec):
    """The spec's network written with torch.nn.functional, on its first example."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    p, leaves = spec.parameters, {}

    def tensor(names):
        nested = [tensor(n) for n in names] if isinstance(names, list) else None
        if nested is None:
            leaves.setdefault(names, torch.tensor(p[names], dtype=torch.float64,
                                                  requires_grad=True))
            return leaves[names]
        return torch.stack(nested)

    def activate(kind, z, slope):
        return {"identity": lambda v: v, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
                "relu": torch.relu, "leaky_relu": lambda v: F.leaky_relu(v, slope),
                "softmax": lambda v: torch.softmax(v, dim=-1)}[kind](z)

    x = torch.tensor(spec.examples[0].inputs, dtype=torch.float64).reshape(1, *spec.input_shape)
    for layer in spec.layers:
        if layer.kind == "conv2d":
            bias = tensor(layer.bias_names) if layer.bias_names else None
            x = activate(layer.activation, F.conv2d(x, tensor(layer.filter_names), bias,
                                                    stride=layer.stride,
                                                    padding=layer.padding),
                         layer.negative_slope)
        elif layer.kind == "maxpool2d":
            x = F.max_pool2d(x, layer.kernel, layer.stride, layer.padding)
        elif layer.kind == "avgpool2d":
            x = F.avg_pool2d(x, layer.kernel, layer.stride, layer.padding,
                             count_include_pad=True)
        elif layer.kind == "flatten":
            x = x.view(x.size(0), -1)
        else:
            x = activate(layer.activation, x @ tensor(layer.weight_names).T
                         + tensor(layer.bias_names), layer.negative_slope)
    o = x[0]
    t = torch.tensor(spec.examples[0].targets, dtype=torch.float64)
    loss = {"half_squared_error": lambda: 0.5 * ((o - t) ** 2).sum(),
            "squared_error": lambda: ((o - t) ** 2).sum(),
            "mean_squared_error": lambda: ((o - t) ** 2).mean(),
            "cross_entropy": lambda: -(t * torch.log(o)).sum(),
            "binary_cross_entropy": lambda: -(t * torch.log(o)
                                              + (1 - t) * torch.log(1 - o)).sum(),
            "softmax_cross_entropy": lambda: -(t * torch.log_softmax(o, dim=-1)).sum(),
            }[spec.loss.kind]()
    loss.backward()
    return loss.item(), {name: leaf.grad.item() for name, leaf in leaves.items()}


def test_the_reference_agrees_on_the_two_channel_example():
    net = Network(EXAMPLES / "cnn_2ch_stride2_maxpool.toml")
    solution = solved("cnn_2ch_stride2_maxpool.toml")
    assert solution.loss == pytest.approx(net.batch_loss(net.parameters), rel=1e-12)
    expected = net.gradients(net.parameters)
    assert set(expected) == set(solution.gradients)
    for name, g in expected.items():
        assert solution.gradients[name] == pytest.approx(g, rel=1e-9, abs=1e-12), name


def test_pytorch_agrees_on_the_two_channel_example():
    spec = as_spec(EXAMPLES / "cnn_2ch_stride2_maxpool.toml")
    loss, grads = _torch_loss_and_gradients(spec)
    solution = solved("cnn_2ch_stride2_maxpool.toml")
    assert solution.loss == pytest.approx(loss, rel=1e-12)
    assert set(grads) == set(solution.gradients)
    for name, g in grads.items():
        assert solution.gradients[name] == pytest.approx(g, rel=1e-9, abs=1e-12), name


def test_pytorch_agrees_on_random_networks(network):
    _, spec, solution = network
    loss, grads = _torch_loss_and_gradients(spec)
    assert solution.loss == pytest.approx(loss, rel=1e-10)
    assert set(grads) == set(solution.gradients)
    for name, g in grads.items():
        assert solution.gradients[name] == pytest.approx(g, rel=1e-9, abs=1e-12), name


# ---------------------------------------------------------------------------
# JSON, names, errors


@pytest.mark.parametrize("example", ["conv_6x6_filter_3x3.toml", "cnn_2ch_stride2_maxpool.toml"])
def test_json_carries_every_filter_gradient_and_update(example):
    if example.startswith("conv_6x6"):  # through the command line
        result = CliRunner().invoke(main, ["explain", str(EXAMPLES / example), "--format", "json"])
        assert result.exit_code == 0, result.output
        data = json.loads(result.output)
    else:
        from backprop_explain.jsonout import solution_to_data
        data = json.loads(json.dumps(solution_to_data(solved(example))))
    spec = as_spec(EXAMPLES / example)
    conv = spec.layers[0]
    names = [n for n in np.array(conv.filter_names, dtype=object).ravel()] + conv.bias_names
    assert len(names) == math.prod((conv.out_channels, conv.in_channels) + conv.kernel) \
        + conv.out_channels
    for name in names:
        assert name in data["gradients"] and name in data["updated"], name
        expected = spec.parameters[name] - spec.learning_rate * data["gradients"][name]
        assert data["updated"][name] == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_default_names():
    spec = as_spec({
        "inputs": {"shape": [2, 4, 4]},
        "layers": [
            {"type": "conv2d", "filters": np.zeros((2, 2, 3, 3)).tolist(), "padding": 1},
            {"type": "maxpool2d", "kernel": 2},
            {"type": "conv2d", "filters": np.zeros((1, 2, 2, 2)).tolist(),
             "activation": "relu"},
            {"type": "flatten"},
            {"type": "dense", "weights": [[1.0]]}],
        "loss": {"type": "half_squared_error"},
        "examples": [{"inputs": np.zeros((2, 4, 4)).tolist(), "targets": [0]}],
        "training": {"learning_rate": 0.1}})
    first, pool, second = spec.layers[:3]
    assert first.filter_names[1][0][2][1] == "f_{2,1,3,2}"
    assert first.bias_names == ["b_{1}", "b_{2}"]
    assert first.pre_activation_names[:2] == ["z_{1,1,1}", "z_{1,1,2}"]
    assert first.activation_names == first.pre_activation_names  # identity
    assert pool.output_names[:2] == ["p^{(2)}_{1,1,1}", "p^{(2)}_{1,1,2}"]
    assert second.filter_names[0][1][0][0] == "f^{(3)}_{2,1,1}"
    assert second.bias_names == ["b^{(3)}"]
    assert second.activation_names == ["a^{(3)}_{1,1}"]
    assert spec.input_names[:2] == ["x^{(1)}_{1,1}", "x^{(1)}_{1,2}"]


def _bad(tmp_path, spec_text):
    path = tmp_path / "bad.toml"
    path.write_text(spec_text)
    with pytest.raises(SpecError) as err:
        as_spec(path)
    result = CliRunner().invoke(main, ["explain", str(path)])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1, result.output
    return str(err.value)


_HEAD = """
[inputs]
values = [[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6],
          [1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]]
[loss]
type = "half_squared_error"
targets = [0]
[training]
learning_rate = 0.1
"""


def test_sizes_that_do_not_divide(tmp_path):
    message = _bad(tmp_path, _HEAD + """
[[layers]]
type = "conv2d"
stride = 2
filters = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
[[layers]]
type = "flatten"
[[layers]]
type = "dense"
weights = [[1, 1, 1, 1]]
""")
    assert "layers[0]" in message and "(6 − 3 + 2·0)/2 + 1 = 2.5" in message


def test_flatten_size_must_match_the_dense_layer(tmp_path):
    message = _bad(tmp_path, _HEAD + """
[[layers]]
type = "conv2d"
filters = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
[[layers]]
type = "maxpool2d"
kernel = 2
[[layers]]
type = "flatten"
[[layers]]
type = "dense"
weights = [[1, 1, 1]]
""")
    assert "layers[3].weights[0]" in message
    assert "flatten layer 3 turns 1×2×2 values into 4" in message and "got 3" in message


def test_wrong_filter_shape_and_missing_flatten(tmp_path):
    message = _bad(tmp_path, _HEAD + """
[[layers]]
type = "conv2d"
filters = [[[[1, 0], [0, 1]]], [[[1, 0], [0]]]]
[[layers]]
type = "flatten"
[[layers]]
type = "dense"
weights = [[1]]
""")
    assert "layers[0].filters[1][0][1]" in message
    message = _bad(tmp_path, _HEAD + """
[[layers]]
type = "conv2d"
filters = [[1, 0], [0, 1]]
[[layers]]
type = "dense"
weights = [[1]]
""")
    assert "layers[1]" in message and "flatten" in message


# ---------------------------------------------------------------------------
# The worked solution


CNN_EXAMPLES = ["cnn_3x3_filter_2x2.toml", "conv_6x6_filter_3x3.toml",
                "cnn_2ch_stride2_maxpool.toml"]


@pytest.mark.parametrize("example", CNN_EXAMPLES)
@pytest.mark.parametrize("fmt,lang", [("md", "en"), ("md", "fr"), ("tex", "fr")])
def test_worked_solution_shows_grids_not_cells(example, fmt, lang):
    from backprop_explain.document import render_solution
    text = render_solution(solved(example), fmt=fmt, lang=lang)
    assert text == render_solution(solved(example), fmt=fmt, lang=lang)  # deterministic
    spec = as_spec(EXAMPLES / example)
    conv = spec.layers[0]
    assert r"\star" in text and r"\begin{bmatrix}" in text
    # no chain-rule heading for a single feature-map cell: they are grids
    for name in conv.pre_activation_names + conv.activation_names:
        assert f"respect to ${name}$" not in text and f"rapport à ${name}$" not in text
        assert f"| ${name}$ |" not in text  # nor a table row per cell after the update
    # every filter weight still has its chain-rule sum (the first filter at least)
    assert r"\frac{\partial " + spec.loss.total_name + r"}{\partial "\
        + conv.filter_names[0][0][0][0] + "}" in text
    assert ("Both ways give the same values" in text
            or "Les deux calculs donnent les mêmes valeurs" in text)
    if example.startswith("cnn_2ch"):
        assert ("first maximum in row-major order" in text
                or "premier maximum dans l'ordre de lecture" in text)
        assert r"\operatorname{rot}_{180}" not in text  # the input gradient is not needed here


def test_worked_solution_shows_the_course_feature_map():
    from backprop_explain.document import render_solution
    text = render_solution(solved("conv_6x6_filter_3x3.toml"), digits=5)
    for value in ("469.05", "486.58", "303.74", "450.28"):
        assert value in text
    assert r"146 \cdot \left(-0.09\right) + 99 \cdot 0.66" in text  # the first cell, term by term


def test_worked_solution_of_a_conv_after_a_conv_has_the_input_gradient():
    from backprop_explain.document import render_solution
    text = render_solution(solved_network("conv-conv-avgpool")[2])
    assert r"\operatorname{rot}_{180}" in text and r"\operatorname{full}" in text


def test_latex_of_a_cnn_compiles(tmp_path):
    import shutil
    import subprocess
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed")
    from backprop_explain.document import render_solution
    (tmp_path / "cnn.tex").write_text(
        render_solution(solved("cnn_2ch_stride2_maxpool.toml"), fmt="tex", lang="fr"))
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "cnn.tex"],
                         cwd=tmp_path, capture_output=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:].decode("latin-1")


def test_several_examples_and_a_frozen_conv_layer():
    spec = {"inputs": {"shape": [1, 3, 3]},
            "layers": [{"type": "conv2d", "filters": [[0.5, -0.2], [0.1, 0.4]], "frozen": True,
                        "activation": "tanh"},
                       {"type": "flatten"},
                       {"type": "dense", "weights": [[0.1, 0.2, 0.3, 0.4]],
                        "activation": "sigmoid"}],
            "loss": {"type": "binary_cross_entropy"},
            "examples": [{"inputs": [[1, 0, 1], [0, 1, 0], [1, 0, 1]], "targets": [1]},
                         {"inputs": [[0, 1, 0], [1, 0, 1], [0, 1, 0]], "targets": [0]}],
            "training": {"learning_rate": 0.5}}
    solution = solve(spec)
    # each example's convolution form uses its own image; their mean is the step's gradient
    forms = [e.convolutions[0] for e in solution.examples]
    assert all(f.agrees for f in forms)
    assert not np.allclose(forms[0].filter_gradient, forms[1].filter_gradient)
    mean = np.mean([f.filter_gradient for f in forms], axis=0).ravel()
    names = ["f_{1,1}", "f_{1,2}", "f_{2,1}", "f_{2,2}"]
    np.testing.assert_allclose(mean, [solution.gradients[n] for n in names], rtol=1e-12)
    assert all(solution.parameters_after[n] == spec["layers"][0]["filters"][k // 2][k % 2]
               for k, n in enumerate(names))  # frozen
    from backprop_explain.document import render_solution
    one = render_solution(solve({**spec, "examples": spec["examples"][:1]}))
    several = render_solution(solution)
    for text in (one, several):  # frozen: said once, with the updates, after every gradient
        assert "Frozen, not updated: $F$" in text
        assert text.index("## 3. Backward pass") < text.index("Frozen, not updated: $F$")
    # several examples: the updates come after the gradients are combined
    assert several.index("Combining the examples") < several.index("## 4. Update")


def test_conv_pool_conv_gradients_and_worked_solution():
    data = {
        "inputs": {"shape": [1, 4, 4]},
        "layers": [{"type": "conv2d", "padding": 1, "activation": "relu",
                    "filters": [[[[0.2, -0.5, 0.1], [0.4, 0.3, -0.2], [-0.1, 0.6, 0.2]]],
                                [[[-0.3, 0.2, 0.5], [0.1, -0.4, 0.3], [0.2, 0.1, -0.6]]]],
                    "biases": [0.1, 0.05]},
                   {"type": "maxpool2d", "kernel": 2},
                   {"type": "conv2d", "activation": "sigmoid",
                    "filters": [[[[0.3, -0.2], [0.5, 0.1]], [[-0.4, 0.2], [0.1, 0.6]]]]},
                   {"type": "flatten"},
                   {"type": "dense", "weights": [[1.5]], "activation": "sigmoid"}],
        "loss": {"type": "binary_cross_entropy"},
        "examples": [{"inputs": [[0.9, 0.1, 0.4, 0.7], [0.2, 0.8, 0.3, 0.5],
                                 [0.6, 0.0, 0.9, 0.2], [0.3, 0.7, 0.1, 0.8]], "targets": [1]}],
        "training": {"learning_rate": 0.1}}
    spec = as_spec(data)
    solution = solve(spec)
    numeric = finite_differences(data)
    for name, value in numeric.items():
        assert solution.gradients[name] == pytest.approx(value, rel=1e-5, abs=1e-7), name
    convs = [f for f in solution.convolutions if f.kind == "conv2d"]
    assert all(f.agrees for f in convs)
    assert [f.input_gradient_needed for f in convs] == [False, True]
    from backprop_explain.document import render_solution
    text = render_solution(solution)
    assert "the input of the convolution layer 3" in text  # layer 1 reads it from layer 3
    assert r"\operatorname{rot}_{180}\left(F^{(3)}_{2}\right)" in text


def test_shared_filter_weights_and_biases():
    """One name in several places is one parameter, inside a filter and across layers."""
    data = {
        "inputs": {"shape": [1, 4, 4]},
        "layers": [{"type": "conv2d", "filters": [[0.3, 0.3], [0.3, 0.3]], "activation": "tanh",
                    "names": {"filters": "w"}},
                   {"type": "conv2d", "filters": [[0.3, 0.2], [0.2, 0.3]],
                    "names": {"filters": [["w", "u"], ["u", "w"]], "biases": "b"}},
                   {"type": "flatten"},
                   {"type": "dense", "weights": [[0.5, -0.5, 0.2, 0.1]], "activation": "sigmoid"}],
        "loss": {"type": "half_squared_error"},
        "examples": [{"inputs": [[0.1, 0.5, 0.2, 0.9], [0.4, 0.3, 0.8, 0.1],
                                 [0.7, 0.2, 0.6, 0.3], [0.5, 0.9, 0.1, 0.4]], "targets": [1]}],
        "training": {"learning_rate": 0.1}}
    spec = as_spec(data)
    assert list(spec.parameters)[:3] == ["w", "b", "u"]  # b: layer 1's default, shared
    solution = solve(spec)
    numeric = finite_differences(data)
    for name, value in numeric.items():
        assert solution.gradients[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
    assert all(f.agrees for f in solution.convolutions)
    # u appears twice in layer 2 only: its gradient is the sum of its two grid positions
    second = solution.convolutions[1]
    assert second.filter_gradient[0, 0, 0, 1] + second.filter_gradient[0, 0, 1, 0] \
        == pytest.approx(solution.gradients["u"], rel=1e-12)
