"""Graph stage: one SymPy node per named quantity, each with its local expression.

A node's expression is written in terms of its parents' *symbols*, never expanded
through them, so expressions stay small and every local partial derivative is one
SymPy ``diff``. Each layer kind adds its own nodes (``build``, layers/); the loss entry
gives the loss terms (losses.py). The graph knows nothing of numbers' formatting or
of languages.

The graph is one example's, evaluated for each example in turn, unless a layer couples
the examples of a mini-batch (batch normalization in train mode): then it spans the whole
mini-batch, each per-example quantity copied once per example (keys.example_name:
``z_1^{[2]}``), the quantities the examples share (batch statistics) once, and the loss
is the mean (or sum) of the examples' losses, so the chain rule sums over every path
through the shared quantities by itself.
"""

from __future__ import annotations

import sympy as sp

from .keys import example_name
from .limits import MAX_LOCAL_PARTIALS, check_symbolic, quantity_count
from .losses import LOSSES
from .nodes import EXAMPLE_LOSS, INPUT, LOSS, LOSS_TERM, PER_EXAMPLE_LEAVES, TARGET, Graph, Node
from .spec import NetworkSpec


def build_graph(spec: NetworkSpec, span_batch: bool | None = None) -> Graph:
    """The computation graph of one example: inputs → layers → loss terms → total loss;
    of the whole mini-batch (the spec's examples) when a layer couples them, or when
    ``span_batch`` asks for it."""
    if span_batch is None:
        span_batch = spec.couples_examples
    if span_batch and len(spec.examples) > 1:
        return _batch_graph(spec)
    graph = Graph(spec)
    for name in spec.input_names:
        graph.leaf(name, INPUT)
    previous = list(spec.input_names)
    for layer in spec.layers:
        previous = layer.build(graph, previous)
    _loss(spec, graph, previous)
    graph.computed(spec.loss.total_name, LOSS,
                   sp.Add(*[graph.symbol(n) for n in spec.loss.term_names], evaluate=False))
    return graph


def local_partials(spec: NetworkSpec) -> int:
    """How many local partials (graph edges) a worked solution of ``spec`` writes, for the
    limits checked before any work (limits.check_symbolic). Every parameter feeds a node
    and every quantity has a parent, so when either count alone is beyond the limit it is
    returned as it is, without building the graph. Counted on one example's graph (a
    mini-batch graph is about as many copies as examples: limits.check_symbolic multiplies)."""
    lower = max(len(spec.parameters), quantity_count(spec))
    if lower > MAX_LOCAL_PARTIALS:
        return lower
    graph = build_graph(spec, span_batch=False)
    return sum(len(node.parents) for node in graph.nodes.values())


def check_worked_solution(spec: NetworkSpec) -> int:
    """Refuse, with one line, a worked solution too large to finish (limits.py); its
    local partials otherwise. Its examples: the first step's (the first mini-batch)."""
    partials = local_partials(spec)
    check_symbolic(spec, partials, spec.batch_size or len(spec.examples))
    return partials
def _loss(spec, graph, outputs: list[str]) -> None:
    """The loss terms of one example's outputs (``graph``: the graph or an example's view)."""
    symbols = [graph.symbol(n) for n in outputs]
    targets = [graph.leaf(n, TARGET).symbol for n in spec.loss.target_names]
    terms = LOSSES[spec.loss.kind].terms(symbols, targets)
    for name, expr in zip(spec.loss.term_names, terms):
        graph.computed(name, LOSS_TERM, expr)


def _batch_graph(spec: NetworkSpec) -> Graph:
    count = len(spec.examples)
    graph = Graph(spec, examples=count)
    views = [ExampleView(graph, k) for k in range(1, count + 1)]
    for view in views:
        for name in spec.input_names:
            view.leaf(name, INPUT)
    previous = list(spec.input_names)
    for layer in spec.layers:
        previous = layer.build_batch(graph, previous, views)
    total = spec.loss.total_name
    for view in views:
        _loss(spec, view, previous)
        view.computed(total, EXAMPLE_LOSS,
                      sp.Add(*[view.symbol(n) for n in spec.loss.term_names], evaluate=False))
    losses = sp.Add(*[view.symbol(total) for view in views], evaluate=False)
    if spec.reduction == "mean":  # as PyTorch's losses: the mean over the mini-batch
        losses = sp.Mul(sp.Rational(1, count), losses, evaluate=False)
    graph.computed(total, LOSS, losses)
    return graph


class ExampleView:
    """The graph of a mini-batch as the layers of example k (1-based) see it: a quantity
    they name is example k's copy when it has one; parameters, constants and the nodes a
    coupling layer shares between the examples keep their names. Layers build through
    it as through a Graph (``symbol``, ``leaf``, ``computed``)."""

    def __init__(self, graph: Graph, k: int):
        self.graph = graph
        self.k = k
        self.spec = graph.spec

    def name(self, name: str) -> str:
        copy = example_name(name, self.k)
        return copy if copy in self.graph.nodes else name

    def symbol(self, name: str) -> sp.Symbol:
        return self.graph.symbol(self.name(name))

    def leaf(self, name: str, kind: str) -> Node:
        if kind not in PER_EXAMPLE_LEAVES:
            return self.graph.leaf(name, kind)
        copy = example_name(name, self.k)
        return self.graph.add(Node(copy, sp.Symbol(copy), kind, example=self.k))

    def computed(self, name: str, kind: str, expr: sp.Expr, **extra) -> Node:
        copy = example_name(name, self.k)
        return self.graph.add(Node(copy, sp.Symbol(copy), kind, expr=expr, example=self.k,
                                   **extra))
