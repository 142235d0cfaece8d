"""Dense layers without bias (biases = false, as nn.Linear(bias=False)).

Checked against: the plain-NumPy reference (tests/reference.py: z = W·x, no b) and central
finite differences of its loss, on MLPs mixing layers with and without bias and on a CNN
ending in one; the reference's SGD training run; the fast path against the symbolic
engine; the worked solution, the diagram, verify's keys and a sheet (no bias anywhere for
those layers); bad input as one-line errors with exit status 2. PyTorch's nn.Linear
(bias=False) both ways and under Adam: tests/test_torch.py.
"""

from __future__ import annotations

import functools
import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from backprop_explain.api import explain, keys, solve
from backprop_explain.cli import main
from backprop_explain.diagram import network_diagram
from backprop_explain.errors import SpecError
from backprop_explain.sheet import draw_variants
from backprop_explain.sheet_spec import template_from_dict
from backprop_explain.spec import spec_from_dict
from backprop_explain.training import train

import reference
from crosscheck import assert_matches_finite_differences, fast_path_agreeing


def dense(rng, units, inputs, activation, bias=True):
    return {"type": "dense", "units": units, "activation": activation,
            "weights": rng.uniform(-1, 1, (units, inputs)).round(3).tolist(),
            "biases": rng.uniform(-0.5, 0.5, units).round(3).tolist() if bias else False}


def document(name, seed=0, examples=2, **training) -> dict:
    rng = np.random.default_rng(seed)
    shape, loss = (3,), "cross_entropy"
    if name == "mlp":  # bias-free first and last layers around one with biases
        layers = [dense(rng, 4, 3, "tanh", bias=False), dense(rng, 3, 4, "leaky_relu"),
                  dense(rng, 2, 3, "softmax", bias=False)]
    elif name == "single":  # one unit, one input: the pre-activation is one product
        shape, loss = (1,), "half_squared_error"
        layers = [dense(rng, 1, 1, "sigmoid", bias=False)]
    elif name == "cnn":
        shape, loss = (1, 3, 3), "half_squared_error"
        layers = [{"type": "conv2d", "activation": "relu",
                   "filters": rng.uniform(-1, 1, (2, 1, 2, 2)).tolist(), "biases": [0.1, -0.1]},
                  {"type": "flatten"}, dense(rng, 2, 8, "sigmoid", bias=False)]
    else:
        raise ValueError(name)
    outputs = layers[-1]["units"]
    targets = (np.eye(outputs)[rng.integers(0, outputs, examples)] if loss == "cross_entropy"
               else rng.uniform(0.2, 0.8, (examples, outputs)))
    return {"inputs": {"shape": list(shape)}, "layers": layers, "loss": {"type": loss},
            "examples": [{"inputs": rng.uniform(-1, 1, shape).round(3).tolist(), "targets": t.tolist()}
                         for t in targets],
            "training": {"learning_rate": 0.2, **training}}


NETWORKS = [("mlp", 2), ("mlp", 1), ("single", 1), ("cnn", 2)]


@functools.lru_cache(maxsize=None)
def solved(name, examples):
    spec = spec_from_dict(document(name, examples=examples))
    return spec, solve(spec)


def bias_free(spec):
    return [layer for layer in spec.layers if layer.kind == "dense" and layer.without_bias]


@pytest.mark.parametrize("name, examples", NETWORKS)
def test_gradients_match_finite_differences(name, examples):
    spec, solution = solved(name, examples)
    net = reference.Network(document(name, examples=examples))
    assert_matches_finite_differences(spec, solution, net)
    assert solution.gradients == pytest.approx(net.gradients(net.parameters), rel=1e-10,
                                               abs=1e-13)


@pytest.mark.parametrize("name, examples", NETWORKS)
def test_no_bias_parameter_and_the_weighted_sum_alone(name, examples):
    spec, solution = solved(name, examples)
    layers = bias_free(spec)
    assert layers
    for layer in layers:
        assert layer.bias_names == []
        assert layer.parameter_names() == [n for row in layer.weight_names for n in row]
        for j, z in enumerate(layer.pre_activation_names):
            node = solution.graph.nodes[z]
            parameters = [p for p in node.parents if p in spec.parameters]
            assert parameters == layer.weight_names[j]
    assert not any(n.startswith(f"b^{{({layer.index})}}") for layer in layers
                   for n in spec.parameters)
    if name == "single":  # z = w·x exactly
        x, = spec.examples[0].inputs
        w, = spec.parameters.values()
        assert solution.example.values["z^{(1)}_{1}"] == pytest.approx(x * w, rel=1e-15)


@pytest.mark.parametrize("name, examples", NETWORKS)
def test_fast_path_matches_the_symbolic_engine(name, examples):
    spec, solution = solved(name, examples)
    result = fast_path_agreeing(spec, solution)
    for layer in bias_free(spec):
        assert set(result.layer_gradients[layer.index - 1]) == {"weights"}


def test_training_matches_the_reference():
    """SGD with momentum and weight decay, mini-batches of one: the reference's own
    gradients and update rule, every step."""
    data = document("mlp", examples=3, steps=5, batch_size=1, momentum=0.9,
                    weight_decay=0.01)
    run = train(spec_from_dict(data))
    expected = reference.Network(data).train()
    np.testing.assert_allclose(run.history, expected["history"], rtol=1e-10)
    final = expected["parameters"][-1]
    assert run.parameters.keys() == final.keys()
    for name, value in final.items():
        assert run.parameters[name] == pytest.approx(value, rel=1e-10, abs=1e-13), name


def test_the_worked_solution_says_there_is_no_bias():
    spec, solution = solved("mlp", 1)
    text = explain(spec)
    hidden, _ = text.split("Parameters of the hidden layer 2", 1)
    table = hidden.split("Parameters of the hidden layer 1", 1)[1]
    assert "| unit | weights |\n" in table and "bias |" not in table
    assert "No bias: each pre-activation is the weighted sum of its inputs alone." in table
    assert "weighted sum, plus a bias where its layer has one" in text
    # the forward equation of a bias-free unit ends with its last product
    first = spec.layers[0]
    weighted_sum = " + ".join(f"x_{{{i + 1}}} \\cdot {w}"
                              for i, w in enumerate(first.weight_names[0]))
    assert re.search(re.escape(f"{first.pre_activation_names[0]} &= {weighted_sum}")
                     + r" (=|\\\\)", text)
    french = explain(spec, lang="fr")
    assert "Pas de biais : chaque neurone calcule la somme pondérée de ses entrées" in french
    latex = explain(spec, fmt="tex")
    assert "No bias: each pre-activation is the weighted sum of its inputs alone." in latex
    data = json.loads(explain(spec, fmt="json"))
    assert data["gradients"].keys() == spec.parameters.keys()
    assert explain(solved("cnn", 2)[0]).count("No bias:") == 1  # its conv layer has biases


def test_the_diagram_shows_no_bias_above_the_units():
    spec, _ = solved("mlp", 1)
    labels = [t.label.tex for t in network_diagram(spec).texts]
    biases = [label for label in labels if label.startswith("b^{(")]
    assert biases and all(label.startswith("b^{(2)}") for label in biases)
    assert len(biases) == spec.layers[1].units


def test_keys_list_no_bias_and_say_so():
    spec, _ = solved("mlp", 1)
    lines = keys(spec).splitlines()
    assert not [line for line in lines if line.startswith(("b^{(1)}", "b^{(3)}"))]
    meanings = {line.split("\t")[0]: line.split("\t")[1] for line in lines}
    assert meanings["z^{(1)}_{1}"] == "pre-activation z^{(1)}_{1}: weighted sum of the " \
                                      "inputs (no bias)"
    assert meanings["z^{(2)}_{1}"].endswith("plus the bias")


def test_a_sheet_template_with_a_bias_free_layer():
    data = document("mlp", examples=1)
    data["layers"][0]["weights"] = {"uniform": [-1, 1], "decimals": 1}
    data["layers"][1]["biases"] = {"uniform": [-1, 1], "decimals": 1}
    data["exercise"] = {"ask": ["forward", "gradients", "update"]}
    for variant in draw_variants(template_from_dict(data), 2, seed=3):
        solution = solve(variant.spec)
        assert not variant.spec.layers[0].bias_names
        assert len(variant.spec.layers[1].bias_names) == 3
        asked = set(variant.answers)
        assert {f"dE/d{n}" for n in variant.spec.parameters} <= asked
        assert not any("b^{(1)}" in key or "b^{(3)}" in key for key in asked)
        for name in variant.spec.parameters:
            assert variant.answers[f"dE/d{name}"] == pytest.approx(
                solution.gradients[name], rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("layer, change, expected", [
    (0, {"biases": True}, "layers[0].biases: a list of 4 numbers, one number for all, or "
                          "false for no bias, got the boolean true"),
    (0, {"names": {"biases": "c_#j"}}, "layers[0].names.biases: no bias names in a layer "
                                       "with biases = false (it has no bias)"),
    (1, {"biases": "none"}, "layers[1].biases: a list of 3 numbers, one number for all, or "
                            "false for no bias, got the text \"none\""),
])
def test_bad_biases_are_one_line_errors(layer, change, expected):
    data = document("mlp")
    data["layers"][layer].update(change)
    with pytest.raises(SpecError) as error:
        spec_from_dict(data, source="net.json")
    assert str(error.value) == "net.json: " + expected


def test_a_conv_layer_without_bias_names_no_bias_either():
    data = document("cnn")
    data["layers"][0].update(biases=False, names={"biases": "c"})
    with pytest.raises(SpecError, match=r"^net.json: layers\[0\].names.biases: no bias names"):
        spec_from_dict(data, source="net.json")


def test_the_command_line_stops_with_one_line_and_status_2(tmp_path):
    data = document("mlp")
    data["layers"][2]["biases"] = True
    path = tmp_path / "net.json"
    path.write_text(json.dumps(data))
    result = CliRunner().invoke(main, ["explain", str(path), "-o", str(tmp_path / "out.md")])
    assert result.exit_code == 2
    assert result.output == (f"Error: {path}: layers[2].biases: a list of 2 numbers, one "
                             "number for all, or false for no bias, got the boolean true\n")
    assert not (tmp_path / "out.md").exists()
