"""The computation graph's data: nodes, their kinds, and the graph that holds them.

graph.py builds a Graph from a spec (each layer kind adds its nodes, layers/); the
derivation walks it. A node's expression is written in terms of its parents' *symbols*,
never expanded through them, so every local partial derivative is one SymPy ``diff``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from .partials import local_partial

# Node kinds, from leaves to the loss (a layer kind may add its own, as pooled cells).
INPUT, TARGET, PARAMETER = "input", "target", "parameter"
PRE_ACTIVATION, ACTIVATION, LOSS_TERM, LOSS = "pre_activation", "activation", "loss_term", "loss"
LEAF_KINDS = (INPUT, TARGET, PARAMETER)


@dataclass
class Node:
    name: str
    symbol: sp.Symbol
    kind: str
    expr: sp.Expr | None = None  # local expression in the parents' symbols
    parents: list[str] = field(default_factory=list)
    layer: int | None = None  # 1-based spec layer index; None for leaves and the loss
    activation: str | None = None  # for activation nodes


class Graph:
    """Nodes in topological order (every node after its parents)."""

    def __init__(self, spec):
        self.spec = spec
        self.nodes: dict[str, Node] = {}
        self.children: dict[str, list[str]] = {}
        self._position: dict[str, int] = {}  # insertion order, to sort a node's parents

    def symbol(self, name: str) -> sp.Symbol:
        return self.nodes[name].symbol

    def add(self, node: Node) -> Node:
        if node.name in self.nodes:  # a shared parameter: one node, several consumers
            return self.nodes[node.name]
        if node.expr is not None:
            free = [s.name for s in node.expr.free_symbols if s.name in self.nodes]
            node.parents = sorted(free, key=self._position.__getitem__)
        self._position[node.name] = len(self.nodes)
        self.nodes[node.name] = node
        self.children[node.name] = []
        for parent in node.parents:
            self.children[parent].append(node.name)
        return node

    def leaf(self, name: str, kind: str) -> Node:
        return self.add(Node(name, sp.Symbol(name), kind))

    def computed(self, name: str, kind: str, expr: sp.Expr, **extra) -> Node:
        return self.add(Node(name, sp.Symbol(name), kind, expr=expr, **extra))

    # Views used by the later stages
    def of_kind(self, *kinds) -> list[Node]:
        return [n for n in self.nodes.values() if n.kind in kinds]

    @property
    def loss(self) -> Node:
        return self.nodes[self.spec.loss.total_name]

    @property
    def parameters(self) -> list[Node]:
        return self.of_kind(PARAMETER)

    def local_partial(self, child: str, parent: str) -> sp.Expr:
        """∂child/∂parent: ``sympy.diff`` of the child's expression, done once per shape
        of expression (partials.py)."""
        return local_partial(self.nodes[child].expr, self.nodes[parent].symbol)
