"""Batch normalization (type = "batchnorm"), train and eval, after dense and conv layers.

Checked against: the plain-NumPy reference (tests/reference.py: its forward pass, its
running statistics, central finite differences of its loss) on random networks combining
it with dense, conv, pooling and flatten layers; nn.BatchNorm1d/2d in PyTorch, running
statistics included, over several steps and then in eval mode; the fast path against the
symbolic engine; the condensed formula of ∂E/∂x against the chain rule; the course-style
example, verify's keys, sheets, bad input.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import numpy as np
import pytest

from backprop_explain.answers import Answer, parse_number
from backprop_explain.api import explain, solve
from backprop_explain.diagram import network_diagram
from backprop_explain.errors import SpecError
from backprop_explain.keys import example_name
from backprop_explain.sheet import draw_variants
from backprop_explain.sheet_spec import template_from_dict
from backprop_explain.spec import load_spec, spec_from_dict
from backprop_explain.training import train
from backprop_explain.verify import Catalog, verify_answers

import reference
from crosscheck import assert_matches_finite_differences, fast_path_agreeing

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def dense(rng, units, inputs, activation="identity"):
    return {"type": "dense", "units": units, "activation": activation,
            "weights": rng.uniform(-1, 1, (units, inputs)).tolist(),
            "biases": rng.uniform(-0.5, 0.5, units).tolist()}


def bn(rng, features, mode="train", activation="identity", **more):
    table = {"type": "batchnorm", "mode": mode, "activation": activation,
             "gamma": rng.uniform(0.5, 1.5, features).tolist(),
             "beta": rng.uniform(-0.5, 0.5, features).tolist(),
             "running_mean": rng.uniform(-0.3, 0.3, features).tolist(),
             "running_var": rng.uniform(0.5, 1.5, features).tolist()}
    table.update(more)
    return table


def conv(rng, out, channels, kernel=2, activation="identity", **more):
    return {"type": "conv2d", "activation": activation,
            "filters": rng.uniform(-1, 1, (out, channels, kernel, kernel)).tolist(),
            "biases": rng.uniform(-0.5, 0.5, out).tolist(), **more}


def network(name, seed=0, examples=3, **training):
    return spec_from_dict(document(name, seed, examples, **training))


def document(name, seed=0, examples=3, **training) -> dict:
    """Random networks: batch normalization with every other kind, in both modes."""
    rng = np.random.default_rng(seed)
    image = None
    if name == "dense_bn_dense":  # the course's Linear → BatchNorm1d → ReLU → Linear
        layers = [dense(rng, 3, 2), bn(rng, 3, activation="relu"),
                  dense(rng, 2, 3, "softmax")]
        loss, size = "cross_entropy", 2
    elif name == "dense_bn_eval":
        layers = [dense(rng, 3, 2), bn(rng, 3, "eval", "tanh"), dense(rng, 2, 3, "sigmoid")]
        loss, size = "binary_cross_entropy", 2
    elif name == "two_bn":  # two layers sharing the default ε
        layers = [dense(rng, 3, 2, "tanh"), bn(rng, 3), dense(rng, 2, 3),
                  bn(rng, 2, activation="sigmoid"), dense(rng, 1, 2)]
        loss, size = "half_squared_error", 2
    elif name == "bn_first":  # on the network's inputs, eps and momentum set
        layers = [bn(rng, 2, eps=0.01, momentum=0.3), dense(rng, 2, 2, "softmax")]
        loss, size = "cross_entropy", 2
    elif name == "conv_bn_pool":  # Conv2d → BatchNorm2d → ReLU → MaxPool → Linear
        image = (1, 3, 3)
        layers = [conv(rng, 2, 1), bn(rng, 2, activation="leaky_relu"),
                  {"type": "maxpool2d", "kernel": 2}, {"type": "flatten"},
                  dense(rng, 2, 2, "softmax")]
        loss = "cross_entropy"
    elif name == "conv_bn_eval_conv":
        image = (2, 3, 3)
        layers = [conv(rng, 2, 2, padding=1), bn(rng, 2, "eval", "tanh"),
                  conv(rng, 1, 2, activation="sigmoid"), {"type": "flatten"},
                  dense(rng, 1, 9)]
        loss = "half_squared_error"
    elif name == "conv_bn_one_example":  # BatchNorm2d over the cells of one image
        image = (1, 3, 3)
        layers = [conv(rng, 1, 1), bn(rng, 1, activation="relu"), {"type": "flatten"},
                  dense(rng, 2, 4, "sigmoid")]
        loss = "half_squared_error"
    else:
        raise ValueError(name)
    shape = image or (size,)
    outputs = layers[-1]["units"]
    targets = np.eye(outputs)[rng.integers(0, outputs, examples)] if outputs > 1 else \
        rng.uniform(0.1, 0.9, (examples, 1))
    return {
        "inputs": {"shape": list(shape)},
        "layers": layers, "loss": {"type": loss},
        "examples": [{"inputs": rng.uniform(-1, 1, shape).tolist(), "targets": t.tolist()}
                     for t in targets],
        "training": {"learning_rate": 0.1, **training}}


NETWORKS = [("dense_bn_dense", 3), ("dense_bn_eval", 3), ("two_bn", 4), ("bn_first", 3),
            ("conv_bn_pool", 2), ("conv_bn_eval_conv", 2), ("conv_bn_one_example", 1)]


@functools.lru_cache(maxsize=None)
def solved(name, examples):
    spec = network(name, examples=examples)
    return spec, solve(spec)


@functools.lru_cache(maxsize=None)
def referenced(name, examples) -> reference.Network:
    return reference.Network(document(name, examples=examples))


@pytest.mark.parametrize("name, examples", NETWORKS)
def test_gradients_match_finite_differences(name, examples):
    spec, solution = solved(name, examples)
    net = referenced(name, examples)
    assert solution.graph.spans_batch == (spec.couples_examples and examples > 1)
    assert_matches_finite_differences(spec, solution, net)
    after = net.updated_buffers(net.forward(net.parameters), net.buffers)
    assert solution.loss_after == pytest.approx(
        net.batch_loss(solution.parameters_after, buffers=after), rel=1e-12)


@pytest.mark.parametrize("name, examples", NETWORKS)
def test_fast_path_matches_the_symbolic_engine(name, examples):
    spec, solution = solved(name, examples)
    result = fast_path_agreeing(spec, solution)
    values = solution.example.values  # every example's in a batch graph, else example 1's
    examples = range(len(spec.examples)) if solution.graph.spans_batch else range(1)
    checked = set()
    for name_, array in result.values.items():
        for k in examples:
            copy = example_name(name_, k + 1) if solution.graph.spans_batch else name_
            copy = copy if copy in values else name_  # a batch statistic: one node
            assert array[k] == pytest.approx(values[copy], rel=1e-10, abs=1e-12), name_
            checked.add(copy)
    # every computed quantity (the loss of the batch: result.loss above)
    assert {s.name for s in solution.example.forward} - checked <= {spec.loss.total_name}
    for buffer, value in solution.buffers_after.items():
        assert float(result.buffers[buffer]) == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize("name, examples", NETWORKS)
def test_condensed_formula_equals_the_chain_rule(name, examples):
    spec, solution = solved(name, examples)
    forms = [f for f in solution.example.convolutions if f.kind == "batchnorm"]
    assert forms and all(f.agrees and f.max_difference < 1e-12 for f in forms)
    for form in forms:
        layer = spec.layers[form.layer - 1]
        assert form.train == (layer.mode == "train")
        copies = len(spec.examples) if solution.graph.spans_batch else 1
        assert form.count == copies * layer.cells
        for feature in form.features:
            assert len(feature.chain) == form.count
            assert np.any(np.abs(feature.chain) > 1e-6)  # a test that can fail


def test_running_statistics_follow_pytorch_after_a_step():
    spec, solution = solved("dense_bn_dense", 3)
    net = referenced("dense_bn_dense", 3)
    expected = net.updated_buffers(net.forward(net.parameters), net.buffers)
    layer = spec.layers[1]
    names = layer.running_mean_names + layer.running_var_names
    assert set(names) == expected.keys() == solution.buffers_after.keys()
    assert [expected[n] for n in names] != [net.buffers[n] for n in names]  # they moved
    for name in names:
        assert solution.buffers_after[name] == pytest.approx(expected[name], rel=1e-13), name


# ---------------------------------------------------------------------------
# PyTorch


def torch_model(torch, spec):
    """The spec's network as torch modules, with its parameter values."""
    nn = torch.nn
    modules = []
    for layer in spec.layers:
        p = spec.parameters
        if layer.kind == "dense":
            m = nn.Linear(len(layer.weight_names[0]), layer.units, dtype=torch.float64)
            m.weight.data = torch.tensor([[p[n] for n in row] for row in layer.weight_names],
                                         dtype=torch.float64)
            m.bias.data = torch.tensor([p[n] for n in layer.bias_names], dtype=torch.float64)
        elif layer.kind == "conv2d":
            f = np.vectorize(p.__getitem__, otypes=[float])(
                np.array(layer.filter_names, dtype=object))
            m = nn.Conv2d(f.shape[1], f.shape[0], f.shape[2:], stride=layer.stride,
                          padding=layer.padding, dtype=torch.float64)
            m.weight.data = torch.tensor(f)
            m.bias.data = torch.tensor([p[n] for n in layer.bias_names], dtype=torch.float64)
        elif layer.kind == "batchnorm":
            cls = nn.BatchNorm2d if layer.image else nn.BatchNorm1d
            m = cls(layer.features, eps=layer.eps, momentum=layer.momentum,
                    dtype=torch.float64)
            m.weight.data = torch.tensor([p[n] for n in layer.gamma_names], dtype=torch.float64)
            m.bias.data = torch.tensor([p[n] for n in layer.beta_names], dtype=torch.float64)
            m.running_mean = torch.tensor([layer.running[n] for n in layer.running_mean_names],
                                          dtype=torch.float64)
            m.running_var = torch.tensor([layer.running[n] for n in layer.running_var_names],
                                         dtype=torch.float64)
            m.train(layer.mode == "train")
        elif layer.kind == "maxpool2d":
            m = nn.MaxPool2d(layer.kernel, layer.stride, layer.padding)
        elif layer.kind == "flatten":
            m = nn.Flatten()
        modules.append(m)
        activation = {"relu": nn.ReLU(), "tanh": nn.Tanh(), "sigmoid": nn.Sigmoid(),
                      "softmax": nn.Softmax(-1),
                      "leaky_relu": nn.LeakyReLU(getattr(layer, "negative_slope", 0.01))}.get(
            getattr(layer, "activation", "identity"))
        if activation is not None:
            modules.append(activation)
    return nn.Sequential(*modules)


@pytest.mark.parametrize("name", ["dense_bn_dense", "conv_bn_pool"])
def test_training_and_eval_match_pytorch(name):
    """Several mini-batch SGD steps in train mode (losses, parameters, running statistics),
    then the network in eval mode with the learned running statistics (nn.BatchNorm
    after model.eval()): loss and gradients."""
    torch = pytest.importorskip("torch")
    data = document(name, examples=4, steps=6, batch_size=2, momentum=0.9)
    spec = spec_from_dict(data)
    run = train(spec)
    model = torch_model(torch, spec)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=spec.learning_rate, momentum=0.9)
    x = torch.tensor(np.array([np.reshape(e.inputs, spec.input_shape) for e in spec.examples]))
    t = torch.tensor([e.targets for e in spec.examples])
    history = []
    for step in run.steps:
        indices = [k - 1 for k in step.examples]
        optimizer.zero_grad()
        loss = -(t[indices] * torch.log(model(x[indices]))).sum(-1).mean()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    np.testing.assert_allclose(run.history, history, rtol=1e-11)
    batchnorms = [m for m in model if isinstance(m, (torch.nn.BatchNorm1d,
                                                     torch.nn.BatchNorm2d))]
    layer = next(layer for layer in spec.layers if layer.kind == "batchnorm")
    np.testing.assert_allclose([run.buffers[n] for n in layer.running_mean_names],
                               batchnorms[0].running_mean.numpy(), rtol=1e-11)
    np.testing.assert_allclose([run.buffers[n] for n in layer.running_var_names],
                               batchnorms[0].running_var.numpy(), rtol=1e-11)
    np.testing.assert_allclose([run.parameters[n] for n in layer.gamma_names],
                               batchnorms[0].weight.detach().numpy(), rtol=1e-11)

    # eval mode, with what training learned
    model.eval()
    model.zero_grad()
    loss = -(t * torch.log(model(x))).sum(-1).mean()
    loss.backward()
    for raw in data["layers"]:
        if raw["type"] == "batchnorm":
            raw.update(mode="eval",
                       running_mean=[run.buffers[n] for n in layer.running_mean_names],
                       running_var=[run.buffers[n] for n in layer.running_var_names])
    data["training"] = {"learning_rate": 0.1}
    evaluated = spec_from_dict(data)
    evaluated = dataclasses.replace(evaluated, parameters=dict(run.parameters))
    solution = solve(evaluated)
    assert solution.loss == pytest.approx(loss.item(), rel=1e-11)
    gamma = batchnorms[0].weight.grad.numpy()
    np.testing.assert_allclose([solution.gradients[n] for n in layer.gamma_names], gamma,
                               rtol=1e-9)
    first = next(m for m in model if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)))
    names = spec.layers[0].weight_names if spec.layers[0].kind == "dense" else \
        spec.layers[0].filter_names
    np.testing.assert_allclose(
        np.vectorize(solution.gradients.__getitem__, otypes=[float])(np.array(names,
                                                                              dtype=object)),
        first.weight.grad.numpy(), rtol=1e-9, atol=1e-14)


# ---------------------------------------------------------------------------
# The worked solution, JSON, verify, sheets, the figure


@functools.lru_cache(maxsize=None)
def course_example():
    spec = load_spec(EXAMPLES / "mlp_batchnorm.toml")
    return spec, solve(spec)


def test_the_example_is_the_course_network_in_french():
    spec, solution = course_example()
    kinds = [layer.kind for layer in spec.layers]
    assert kinds == ["dense", "batchnorm", "dense"] and len(spec.examples) == 3
    assert solution.graph.spans_batch and spec.steps == 1
    text = explain(spec, lang="fr", detail="full")  # every factor, each with its heading
    # the forward pass: μ_B and σ²_B with their numbers, then each example's ẑ and y
    z = [solution.example.values[example_name("z_1", k)] for k in (1, 2, 3)]
    mean = solution.example.values["\\mu_1"]
    assert mean == pytest.approx(np.mean(z), rel=1e-14)
    assert r"\mu_1 &= \frac{z_1^{[1]} + z_1^{[2]} + z_1^{[3]}}{3}" in text
    assert r"\sigma^2_1 &= \frac{\left(z_1^{[1]} - \mu_1\right)^{2}" in text
    assert r"\hat{z}_1^{[2]} &= \frac{z_1^{[2]} - \mu_1}{\sqrt{\sigma^2_1 + \varepsilon}}" in text
    # the backward pass node by node through ẑ, σ², μ, then the condensed formula
    backward = text.split("## 3.")[1]
    order = [backward.index(f"rapport à ${name}$") for name in
             (r"\hat{z}_1^{[1]}", r"\sigma^2_1", r"\mu_1", "z_1^{[1]}")]
    assert order == sorted(order)
    assert (r"\frac{\partial E}{\partial z_1^{[1]}} &= \frac{\partial E}{\partial \mu_1} \cdot "
            r"\frac{\partial \mu_1}{\partial z_1^{[1]}} + \frac{\partial E}{\partial \sigma^2_1}"
            in backward)
    assert "La formule et la règle de dérivation en chaîne donnent les mêmes valeurs." in text
    # the running statistics' update, with the unbiased variance
    assert r"{\sigma^2_{r,1}}' &= (1 - 0{,}1) \cdot \sigma^2_{r,1} + 0{,}1 \cdot \frac{3}{2}" in text
    assert "mode train (model.train())" in text


def test_eval_mode_does_not_couple_the_examples():
    spec, solution = solved("dense_bn_eval", 3)
    assert not solution.graph.spans_batch and len(solution.examples) == 3
    assert solution.buffers_after == {}
    text = explain(spec)
    assert "eval mode (model.eval())" in text
    # the formula in the layer's own names, its feature written with the document's index
    assert (r"\frac{\gamma^{(2)}_{k}}{\sqrt{(\sigma^{(2)}_{\mathrm{run},k})^2 + \varepsilon}}"
            in text)
    assert "Combining the examples" in text


def test_json_has_every_quantity_and_the_running_statistics():
    spec, solution = course_example()
    data = json.loads(explain(spec, fmt="json"))
    assert data["forward"]["\\mu_2"] == solution.example.values["\\mu_2"]
    assert data["forward"][example_name("\\hat{z}_3", 2)] == pytest.approx(
        solution.example.values[example_name("\\hat{z}_3", 2)])
    assert data["buffers"]["\\sigma^2_{r,1}"] == 1.0
    assert data["buffers_after"] == solution.buffers_after
    assert set(data["gradients"]) == set(spec.parameters)


def answer(key: str, value: float) -> Answer:
    text = f"{value:.6g}"
    number, integer = parse_number(text)
    return Answer(key, text, number, integer=integer)


def test_verify_checks_the_batch_statistics_and_the_running_statistics():
    spec, solution = course_example()
    values = solution.example.values
    keys = ["\\mu_1", "\\sigma^2_1", example_name("\\hat{z}_1", 2), example_name("y_1", 2),
            "dE/d\\mu_1", "dE/d\\sigma^2_1", "dE/d\\gamma_1"]
    given = [answer(k, values[k]) for k in keys[:4]]
    given += [answer(k, solution.example.adjoints[k.split("/d")[1]]) for k in keys[4:6]]
    given.append(answer(keys[6], solution.gradients["\\gamma_1"]))
    given.append(answer("\\sigma^2_{r,1}'", solution.buffers_after["\\sigma^2_{r,1}"]))
    catalog = Catalog(spec)  # built once for the three checks
    result = verify_answers(catalog, given)
    assert [c.status for c in result.checks] == ["correct"] * len(given)
    # the running variance with the biased variance (a usual slip) is wrong
    biased = 0.9 * 1.0 + 0.1 * values["\\sigma^2_1"]
    check = verify_answers(catalog, [answer("\\sigma^2_{r,1}'", biased)]).checks[0]
    assert check.status == "wrong"
    # a wrong σ² carried into x̂: consistent with the student's own σ²
    wrong = values["\\sigma^2_1"] * 1.5
    x = values[example_name("z_1", 2)]
    xhat = (x - values["\\mu_1"]) / np.sqrt(wrong + 1e-5)
    checks = verify_answers(catalog, [answer("\\sigma^2_1", wrong),
                                      answer(example_name("\\hat{z}_1", 2), xhat)]).checks
    assert [c.status for c in checks] == ["wrong", "consistent"]


@pytest.mark.parametrize("change, expected", [
    ({"mode": "test"}, "layers[1].mode: one of train, eval, got the text \"test\""),
    ({"gamma": [1.0, 2.0]}, "layers[1].gamma: a list of 3 numbers, got 2"),
    ({"eps": 0}, "layers[1].eps: a positive ε, got 0.0"),
    ({"momentum": 1.5}, "layers[1].momentum: a momentum in [0, 1], got 1.5"),
    ({"running_var": [1.0, -1.0, 1.0]}, "layers[1].running_var[1]: a variance >= 0"),
    ({"num_features": 4}, "layers[1].num_features: 3 (the values of this layer's input)"),
    ({"names": {"mu": "m"}}, "layers[1].names.mu: one of the keys"),
])
def test_bad_tables_are_one_line_errors(change, expected):
    data = document("dense_bn_dense")
    data["layers"][1].update(change)
    with pytest.raises(SpecError) as error:
        spec_from_dict(data, source="net.toml")
    assert str(error.value).startswith("net.toml: " + expected), str(error.value)


def test_train_mode_needs_two_examples_per_batch():
    data = document("dense_bn_dense", examples=1)
    with pytest.raises(SpecError, match="examples: at least 2 examples: layer 2 "
                                        r"\(batchnorm\) computes statistics"):
        spec_from_dict(data, source="net.toml")
    data = document("dense_bn_dense", examples=3, batch_size=2, steps=3)
    with pytest.raises(SpecError, match="training.batch_size: mini-batches of at least 2 "
                                        "examples .*got one of 1"):
        solve(spec_from_dict(data))
    data["layers"][1]["mode"] = "eval"  # eval mode: any batch
    assert len(train(spec_from_dict(data)).steps) == 3


def test_two_layers_with_different_eps_need_two_names():
    data = document("two_bn")
    data["layers"][3]["eps"] = 1e-3
    with pytest.raises(SpecError, match=r"layers\[3\]: the value 1e-05 of the constant "
                                        r"\\varepsilon \(layers\[1\]\) or another name"):
        spec_from_dict(data)
    data["layers"][3]["names"] = {"eps": "\\varepsilon_2"}
    assert spec_from_dict(data).layers[3].eps == 1e-3


def test_sheets_draw_gamma_and_ask_the_batch_statistics():
    data = document("dense_bn_dense")
    data["layers"][1]["gamma"] = {"uniform": [0.5, 1.5], "decimals": 1}
    data["exercise"] = {"ask": ["forward:2", "gradients:2", "\\gamma^{(2)}_{1}'"]}
    template = template_from_dict(data)
    variants = draw_variants(template, 2, seed=3)
    for variant in variants:
        solution = solve(variant.spec)
        values = solution.example.values
        assert variant.answers["\\mu^{(2)}_{1}"] == pytest.approx(values["\\mu^{(2)}_{1}"],
                                                                   rel=1e-10)
        key = example_name("\\hat{x}^{(2)}_{2}", 1)
        assert variant.answers[key] == pytest.approx(values[key], rel=1e-10)
        assert variant.answers["dE/d\\gamma^{(2)}_{3}"] == pytest.approx(
            solution.gradients["\\gamma^{(2)}_{3}"], rel=1e-10)
        assert variant.answers["\\gamma^{(2)}_{1}'"] == pytest.approx(
            solution.parameters_after["\\gamma^{(2)}_{1}"], rel=1e-12)


def test_the_figure_draws_a_column_or_maps():
    spec, _ = course_example()
    figure = network_diagram(spec)
    labels = [c.label.tex for c in figure.circles]
    assert labels[5:8] == ["h_1", "h_2", "h_3"]  # after x_1, x_2 and z_1…z_3
    assert any(t.label.tex == "\\gamma_2 = 0.8" for t in figure.texts)
    assert len(figure.lines) == 6 + 3 + 6 + 2  # z_j → h_j one to one; the targets
    spec, _ = solved("conv_bn_pool", 2)
    cells = [c.label.tex for c in network_diagram(spec).cells]
    assert "a^{(2)}_{1,1,1}" in cells
