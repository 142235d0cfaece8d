"""Graph stage: one SymPy node per named quantity, each with its local expression.

A node's expression is written in terms of its parents' *symbols*, never expanded
through them, so expressions stay small and every local partial derivative is one
SymPy ``diff``. Each layer kind adds its own nodes (``build``, layers/); the loss entry
gives the loss terms (losses.py). The graph knows nothing of numbers' formatting or
of languages.
"""

from __future__ import annotations

import sympy as sp

from .limits import MAX_LOCAL_PARTIALS, check_symbolic, quantity_count
from .losses import LOSSES
from .nodes import INPUT, LOSS, LOSS_TERM, TARGET, Graph
from .spec import NetworkSpec


def build_graph(spec: NetworkSpec) -> Graph:
    """The computation graph of one example: inputs → layers → loss terms → total loss."""
    graph = Graph(spec)
    for name in spec.input_names:
        graph.leaf(name, INPUT)
    previous = list(spec.input_names)
    for layer in spec.layers:
        previous = layer.build(graph, previous)
    outputs = [graph.symbol(n) for n in previous]
    targets = [graph.leaf(n, TARGET).symbol for n in spec.loss.target_names]
    terms = LOSSES[spec.loss.kind].terms(outputs, targets)
    for name, expr in zip(spec.loss.term_names, terms):
        graph.computed(name, LOSS_TERM, expr)
    graph.computed(spec.loss.total_name, LOSS,
                   sp.Add(*[graph.symbol(n) for n in spec.loss.term_names], evaluate=False))
    return graph


def local_partials(spec: NetworkSpec) -> int:
    """How many local partials (graph edges) a worked solution of ``spec`` writes, for the
    limits checked before any work (limits.check_symbolic). Every parameter feeds a node
    and every quantity has a parent, so when either count alone is beyond the limit it is
    returned as it is, without building the graph."""
    lower = max(len(spec.parameters), quantity_count(spec))
    if lower > MAX_LOCAL_PARTIALS:
        return lower
    return sum(len(node.parents) for node in build_graph(spec).nodes.values())


def check_worked_solution(spec: NetworkSpec, examples: int | None = None) -> int:
    """Refuse, with one line, a worked solution too large to finish (limits.py); its
    local partials otherwise. ``examples``: derived in full (all the spec's by default)."""
    partials = local_partials(spec)
    check_symbolic(spec, partials, examples)
    return partials
