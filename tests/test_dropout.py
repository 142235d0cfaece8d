"""Dropout (type = "dropout"): a fixed mask per example, given or drawn from a seed,
inverted scaling 1/(1 − p), the identity in eval mode.

Checked against: the plain-NumPy reference (tests/reference.py, x · mask / (1 − p), the
seeded masks drawn as the README says), its loss and central finite differences of it, on
random networks with dense, conv, pooling and batch-normalization layers; PyTorch
training with the same masks applied as x * mask / (1 - p) (and nn.Dropout in eval mode);
the fast path against the symbolic engine; the worked solution, verify's keys, bad input.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest

from backprop_explain.answers import Answer, parse_number
from backprop_explain.api import explain, solve, verify
from backprop_explain.diagram import network_diagram
from backprop_explain.errors import SpecError
from backprop_explain.fastpath import compile_network
from backprop_explain.keys import adjoint_key, example_name
from backprop_explain.sheet import draw_variants
from backprop_explain.sheet_spec import template_from_dict
from backprop_explain.spec import load_spec, spec_from_dict
from backprop_explain.training import train

import reference
from crosscheck import assert_matches_finite_differences, fast_path_agreeing

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def dense(rng, units, inputs, activation="identity"):
    return {"type": "dense", "units": units, "activation": activation,
            "weights": rng.uniform(-1, 1, (units, inputs)).tolist(),
            "biases": rng.uniform(-0.5, 0.5, units).tolist()}


def document(name, seed=0, examples=3, **training) -> dict:
    rng = np.random.default_rng(seed)
    shape, loss = (3,), "cross_entropy"
    if name == "dense_dropout_dense":  # a mask per example
        masks = [[1, 0, 1, 1], [0, 1, 1, 0], [1, 1, 0, 1], [1, 1, 1, 1]][:examples]
        layers = [dense(rng, 4, 3, "relu"), {"type": "dropout", "p": 0.25, "mask": masks},
                  dense(rng, 2, 4, "softmax")]
    elif name == "seeded":  # one drawn mask per example, on the inputs then after tanh
        layers = [{"type": "dropout", "p": 0.4, "seed": 5}, dense(rng, 4, 3, "tanh"),
                  {"type": "dropout", "p": 0.5, "seed": 11, "names": {"p": "q"}},
                  dense(rng, 2, 4, "sigmoid")]
        loss = "binary_cross_entropy"
    elif name == "eval":
        layers = [dense(rng, 4, 3, "tanh"), {"type": "dropout", "p": 0.5, "mode": "eval"},
                  dense(rng, 2, 4, "softmax")]
    elif name == "batchnorm_dropout":  # one graph for the batch, masks per example copy
        layers = [dense(rng, 4, 3), {"type": "batchnorm", "activation": "relu"},
                  {"type": "dropout", "p": 0.5, "seed": 2}, dense(rng, 2, 4, "softmax")]
    elif name == "conv_dropout":  # cells of an image, one mask for every example
        shape, loss = (1, 4, 4), "half_squared_error"
        layers = [{"type": "conv2d", "activation": "tanh",
                   "filters": rng.uniform(-1, 1, (2, 1, 2, 2)).tolist(), "biases": [0.1, 0.0]},
                  {"type": "dropout", "p": 0.3,
                   "mask": rng.integers(0, 2, (2, 3, 3)).tolist()},
                  {"type": "avgpool2d", "kernel": 3}, {"type": "flatten"},
                  dense(rng, 1, 2, "sigmoid")]
    else:
        raise ValueError(name)
    outputs = layers[-1]["units"]
    targets = (np.eye(outputs)[rng.integers(0, outputs, examples)] if outputs > 1
               else rng.uniform(0.2, 0.8, (examples, 1)))
    return {"inputs": {"shape": list(shape)}, "layers": layers, "loss": {"type": loss},
            "examples": [{"inputs": rng.uniform(-1, 1, shape).tolist(), "targets": t.tolist()}
                         for t in targets],
            "training": {"learning_rate": 0.2, **training}}


NETWORKS = [("dense_dropout_dense", 3), ("seeded", 3), ("eval", 2),
            ("batchnorm_dropout", 3), ("conv_dropout", 2)]


@functools.lru_cache(maxsize=None)
def solved(name, examples):
    spec = spec_from_dict(document(name, examples=examples))
    return spec, solve(spec)


@pytest.mark.parametrize("name, examples", NETWORKS)
def test_gradients_match_finite_differences(name, examples):
    spec, solution = solved(name, examples)
    net = reference.Network(document(name, examples=examples))
    assert_matches_finite_differences(spec, solution, net)


@pytest.mark.parametrize("name, examples", NETWORKS)
def test_fast_path_matches_the_symbolic_engine(name, examples):
    spec, solution = solved(name, examples)
    result = fast_path_agreeing(spec, solution)
    dropout = next(layer for layer in spec.layers if layer.kind == "dropout")
    if dropout.mode == "train":
        batch = solution.graph.spans_batch
        for k in range(len(spec.examples) if batch else 1):
            for name_ in dropout.output_names:
                copy = example_name(name_, k + 1) if batch else name_
                assert result.values[name_][k] == pytest.approx(
                    solution.example.values[copy], rel=1e-12, abs=1e-15)


def test_dropped_units_pass_no_gradient():
    spec, solution = solved("dense_dropout_dense", 1)
    dropout = spec.layers[1]
    assert dropout.masks == [[1, 0, 1, 1]]
    hidden = spec.layers[0].activation_names
    adjoints = solution.example.adjoints
    assert adjoints[hidden[1]] == 0.0 and adjoints[dropout.output_names[1]] != 0.0
    assert all(adjoints[h] != 0.0 for h in (hidden[0], hidden[2], hidden[3]))
    # the next layer's weights from the dropped unit learn nothing from this example
    out = spec.layers[2]
    assert all(solution.gradients[row[1]] == 0.0 for row in out.weight_names)
    # and the dropped unit's output is 0, the others scaled by 1/(1 − p)
    values = solution.example.values
    assert values[dropout.output_names[1]] == 0.0
    assert values[dropout.output_names[0]] == pytest.approx(values[hidden[0]] / 0.75,
                                                            rel=1e-15)


def test_a_seed_draws_one_mask_per_example():
    spec, _ = solved("seeded", 3)
    first, second = spec.layers[0], spec.layers[2]
    expected = (np.random.default_rng(5).random((3, 3)) >= 0.4).astype(int)
    assert first.masks == expected.tolist()
    assert second.masks == (np.random.default_rng(11).random((3, 4)) >= 0.5).astype(
        int).tolist()
    assert spec_from_dict(document("seeded")).layers[0].masks == first.masks  # reproducible


def test_eval_mode_is_the_identity():
    spec, solution = solved("eval", 2)
    data = document("eval", examples=2)
    del data["layers"][1]
    without = solve(spec_from_dict(data))
    assert solution.loss == pytest.approx(without.loss, rel=1e-15)
    assert not [n for n in solution.graph.nodes.values() if n.layer == 2]
    assert "is in eval mode (model.eval())" in explain(spec)


def test_training_matches_pytorch_with_the_same_masks():
    """Mini-batches of two: each step applies the masks of its own examples, in PyTorch
    as x * mask / (1 - p); then nn.Dropout in eval mode is the identity."""
    torch = pytest.importorskip("torch")
    spec = spec_from_dict(document("dense_dropout_dense", examples=4, steps=6, batch_size=2,
                                   momentum=0.9))
    run = train(spec)
    net = compile_network(spec)
    layers = [{r: torch.tensor(a[0], requires_grad=True) for r, a in layer.items()}
              for layer in net.default_parameters() if layer]
    optimizer = torch.optim.SGD([p for layer in layers for p in layer.values()],
                                lr=spec.learning_rate, momentum=0.9)
    x = torch.tensor([e.inputs for e in spec.examples], dtype=torch.float64)
    t = torch.tensor([e.targets for e in spec.examples], dtype=torch.float64)
    masks = torch.tensor(spec.layers[1].masks, dtype=torch.float64)
    history = []
    for step in run.steps:
        rows = [k - 1 for k in step.examples]
        optimizer.zero_grad()
        hidden = torch.relu(x[rows] @ layers[0]["weights"].T + layers[0]["biases"])
        hidden = hidden * masks[rows] / (1 - 0.25)
        out = torch.softmax(hidden @ layers[1]["weights"].T + layers[1]["biases"], -1)
        loss = -(t[rows] * torch.log(out)).sum(-1).mean()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    np.testing.assert_allclose(run.history, history, rtol=1e-11)
    final = net.layer_parameters(run.parameters)
    np.testing.assert_allclose(final[0]["weights"][0], layers[0]["weights"].detach().numpy(),
                               rtol=1e-11)
    dropout = torch.nn.Dropout(0.25)
    dropout.eval()
    hidden = torch.relu(x @ layers[0]["weights"].T + layers[0]["biases"])
    assert torch.equal(dropout(hidden), hidden)


def test_the_example_writes_the_masks_and_the_zero_gradients():
    spec = load_spec(EXAMPLES / "cnn_batchnorm_dropout.toml")
    kinds = [layer.kind for layer in spec.layers]
    assert kinds == ["conv2d", "batchnorm", "flatten", "dropout", "dense"]
    dropout = spec.layers[3]
    assert dropout.masks == (np.random.default_rng(6).random((1, 8)) >= 0.5).astype(
        int).tolist()
    solution = solve(spec)
    text = explain(spec)
    assert "numpy.random.default\\_rng(6)" in text
    assert r"\left(1, 0, 0, 0, 1, 1, 1, 0\right)" in text
    inputs, adjoints = spec.layers[1].activation_names, solution.example.adjoints
    for x, d, keep in zip(inputs, dropout.output_names, dropout.masks[0]):
        assert adjoints[x] == pytest.approx(2 * adjoints[d] if keep else 0.0, rel=1e-14)
    assert sum(adjoints[x] != 0 for x in inputs) == sum(dropout.masks[0])
    assert "The dropped units ($a^{(2)}_{1,1,2}$, $a^{(2)}_{1,2,1}$, $a^{(2)}_{1,2,2}$, " \
           "$a^{(2)}_{2,2,2}$) pass no gradient back" in text
    french = explain(spec, lang="fr")
    assert "ne rétropropagent pas l'erreur" in french
    data = json.loads(explain(spec, fmt="json"))
    assert [data["forward"][d] for d in dropout.output_names] == [
        solution.example.values[d] for d in dropout.output_names]
    figure = network_diagram(spec)  # example 1's mask above each unit
    masks = [t.label.tex for t in figure.texts if t.label.tex.startswith("m^{(4)}")]
    expected = [f"{name} = {keep}" for name, keep in zip(dropout.mask_names,
                                                          dropout.masks[0])]
    assert masks == [expected[k] for k in (0, 1, 7)]  # a column of 8 shows 1, 2, ⋮, 8


def answer(key: str, value: float) -> Answer:
    text = f"{value:.6g}"
    number, integer = parse_number(text)
    return Answer(key, text, number, integer=integer)


def test_verify_knows_the_masks_and_the_outputs():
    spec, solution = solved("dense_dropout_dense", 1)
    dropout = spec.layers[1]
    values = solution.example.values
    given = [answer(dropout.mask_names[1], 0), answer(dropout.output_names[0],
                                                       values[dropout.output_names[0]]),
             answer(adjoint_key("E", spec.layers[0].activation_names[1]), 0.0)]
    result = verify(spec, given)
    assert [c.status for c in result.checks] == ["correct"] * 3
    forgot_scale = values[spec.layers[0].activation_names[0]]  # x · m, without 1/(1 − p)
    check = verify(spec, [answer(dropout.output_names[0], forgot_scale)]).checks[0]
    assert check.status == "wrong"


@pytest.mark.parametrize("change, expected", [
    ({"p": 1.0}, "layers[1].p: a drop probability in [0, 1), got 1.0"),
    ({"mode": "test"}, "layers[1].mode: one of train, eval"),
    ({"seed": 3}, "layers[1].seed: a mask or a seed that draws one, not both"),
    ({"mask": None}, "layers[1].mask: a mask per example (0 drops a unit, 1 keeps it) or a seed"),
    ({"mask": [[1, 0, 1]]}, "layers[1].mask: one mask of shape 4 for every example, or 3 "
                            "of them (one per example), got 1×3"),
    ({"mask": [1, 0, 2, 1]}, "layers[1].mask: 0 (dropped) or 1 (kept) for every unit, got 2 "
                             "at position 3"),
    ({"names": {"drop": "q"}}, "layers[1].names.drop: one of the keys"),
])
def test_bad_tables_are_one_line_errors(change, expected):
    data = document("dense_dropout_dense")
    data["layers"][1].update(change)
    if change.get("mask", 0) is None:
        del data["layers"][1]["mask"]
    with pytest.raises(SpecError) as error:
        spec_from_dict(data, source="net.toml")
    assert str(error.value).startswith("net.toml: " + expected), str(error.value)


def test_a_sheet_asks_the_outputs_after_dropout():
    data = document("dense_dropout_dense", examples=1)
    data["layers"][0]["weights"] = {"uniform": [-1, 1], "decimals": 1}
    data["exercise"] = {"ask": ["forward:2", "gradients:1"]}
    variants = draw_variants(template_from_dict(data), 2, seed=1)
    for variant in variants:
        solution = solve(variant.spec)
        for name in variant.spec.layers[1].output_names:
            assert variant.answers[name] == pytest.approx(solution.example.values[name],
                                                          rel=1e-12, abs=1e-15)
