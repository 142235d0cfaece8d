"""One graph for a whole mini-batch (graph.build_graph with span_batch, what a layer that
couples the examples asks for): the same gradients, loss and update as the examples
derived one by one and combined, every per-example quantity copied under its example's
name, and a document that says so."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from backprop_explain.derivation import NumericGraph, derive
from backprop_explain.document import render_solution
from backprop_explain.graph import build_graph
from backprop_explain.keys import example_name
from backprop_explain.nodes import EXAMPLE_LOSS, INPUT, PARAMETER
from backprop_explain.spec import load_spec

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_example_names():
    assert example_name("x_1", 2) == "x_1^{[2]}"
    assert example_name("z^{(1)}_{1}", 3) == "{z^{(1)}_{1}}^{[3]}"
    assert example_name("a'", 1) == "{a'}^{[1]}"


@pytest.fixture(scope="module")
def three_examples():
    spec = load_spec(EXAMPLES / "mlp_minibatch.toml")
    return dataclasses.replace(spec, examples=spec.examples[:3], epochs=None,
                               batch_size=None)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_one_graph_for_the_batch_gives_the_combined_gradients(three_examples, reduction):
    spec = dataclasses.replace(three_examples, reduction=reduction)
    one_by_one = derive(spec)
    graph = build_graph(spec, span_batch=True)
    together = derive(spec, NumericGraph(graph))
    assert graph.spans_batch and len(together.examples) == 1
    assert together.loss == pytest.approx(one_by_one.loss, rel=1e-14)
    for name, gradient in one_by_one.gradients.items():
        assert together.gradients[name] == pytest.approx(gradient, rel=1e-12, abs=1e-15)
        assert together.parameters_after[name] == pytest.approx(
            one_by_one.parameters_after[name], rel=1e-13)
    assert together.loss_after == pytest.approx(one_by_one.loss_after, rel=1e-13)
    # each example's loss, as the per-example derivations compute it
    for k, example in enumerate(one_by_one.examples):
        assert together.example.values[example_name("E", k + 1)] == pytest.approx(
            example.loss, rel=1e-14)


def test_per_example_quantities_are_copied_and_parameters_shared(three_examples):
    graph = build_graph(three_examples, span_batch=True)
    inputs = [n for n in graph.nodes.values() if n.kind == INPUT]
    assert [n.name for n in inputs] == [example_name(x, k) for k in (1, 2, 3)
                                        for x in ("x_1", "x_2")]
    assert [n.example for n in inputs] == [1, 1, 2, 2, 3, 3]
    assert {n.name for n in graph.parameters} == set(three_examples.parameters)
    assert all(n.example is None for n in graph.nodes.values() if n.kind == PARAMETER)
    assert graph.copies("h_2") == [example_name("h_2", k) for k in (1, 2, 3)]
    assert graph.copies("w_{1,1}") == ["w_{1,1}"]
    # w_{1,1} reaches the loss through z_1 of every example
    assert graph.children["w_{1,1}"] == [example_name("z_1", k) for k in (1, 2, 3)]
    losses = [n.name for n in graph.nodes.values() if n.kind == EXAMPLE_LOSS]
    assert graph.nodes["E"].parents == losses


def test_a_one_example_spec_keeps_its_own_graph(three_examples):
    spec = dataclasses.replace(three_examples, examples=three_examples.examples[:1])
    graph = build_graph(spec, span_batch=True)
    assert not graph.spans_batch and "x_1" in graph.nodes


def test_the_document_writes_the_batch_once_with_example_superscripts(three_examples):
    solution = derive(three_examples, NumericGraph(build_graph(three_examples,
                                                               span_batch=True)))
    text = render_solution(solution)
    assert "computes its 3 examples together, in one graph" in text
    assert r"E &= \frac{E^{[1]} + E^{[2]} + E^{[3]}}{3}" in text
    assert "## 2. Loss" in text and "Combining the examples" not in text
    # the chain rule of w_{1,1} sums over the three examples' z_1
    chain = text.split(r"\frac{\partial E}{\partial w_{1,1}} &= ", 1)[1].split("\n")[0]
    assert chain.count(r"\frac{\partial z_1^{[") == 3
    # ∂E/∂E^{[k]} = 1/3 appears as a factor, ∂E^{[k]}/∂E_j^{[k]} = 1 is left out
    assert r"\frac{\partial E}{\partial E^{[1]}} \cdot \frac{\partial E_1^{[1]}}" in text
    assert "forward pass again, with the new parameters" in text.lower()
    french = render_solution(solution, lang="fr")
    assert "l'exposant $[k]$" in french


def test_grid_layers_are_written_node_by_node_in_a_batch_graph():
    spec = load_spec(EXAMPLES / "cnn_3x3_filter_2x2.toml")
    assert len(spec.examples) == 2
    one_by_one = derive(spec)
    together = derive(spec, NumericGraph(build_graph(spec, span_batch=True)))
    np.testing.assert_allclose([together.gradients[n] for n in spec.parameters],
                               [one_by_one.gradients[n] for n in spec.parameters],
                               rtol=1e-12, atol=1e-15)
    assert together.example.convolutions == []  # one example's grids: none for a batch
    text = render_solution(together, fmt="tex")
    assert r"\begin{bmatrix}" not in text and example_name("x_{11}", 2) in text
