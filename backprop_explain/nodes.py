"""The computation graph's data: nodes, their kinds, and the graph that holds them.

graph.py builds a Graph from a spec (each layer kind adds its nodes, layers/); the
derivation walks it. A node's expression is written in terms of its parents' *symbols*,
never expanded through them, so every local partial derivative is one SymPy ``diff``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from .keys import example_name
from .partials import local_partial

# Node kinds, from leaves to the loss (a layer kind may add its own, as pooled cells).
INPUT, TARGET, PARAMETER = "input", "target", "parameter"
# given numbers a layer reads that are not learned: shared (ε, running statistics in eval
# mode) or one per example (a dropout mask)
CONSTANT, EXAMPLE_CONSTANT = "constant", "example_constant"
PRE_ACTIVATION, ACTIVATION, LOSS_TERM, LOSS = "pre_activation", "activation", "loss_term", "loss"
EXAMPLE_LOSS = "example_loss"  # one example's loss, in a graph spanning a mini-batch
LEAF_KINDS = (INPUT, TARGET, PARAMETER, CONSTANT, EXAMPLE_CONSTANT)
GIVEN_KINDS = (TARGET, CONSTANT, EXAMPLE_CONSTANT)  # leaves no derivative is taken for
PER_EXAMPLE_LEAVES = (INPUT, TARGET, EXAMPLE_CONSTANT)  # one copy per example in a batch graph


@dataclass
class Node:
    name: str
    symbol: sp.Symbol
    kind: str
    expr: sp.Expr | None = None  # local expression in the parents' symbols
    parents: list[str] = field(default_factory=list)
    layer: int | None = None  # 1-based spec layer index; None for leaves and the loss
    activation: str | None = None  # for activation nodes
    example: int | None = None  # 1-based, its example's copy in a graph spanning a batch


class Graph:
    """Nodes in topological order (every node after its parents).

    ``examples``: how many examples it spans. 1: the graph of one example, evaluated for
    each example in turn; more: one graph for a whole mini-batch (a layer couples the
    examples), every per-example quantity copied once per example under the name
    keys.example_name gives it, and the loss the mean (or sum) of the examples' losses."""

    def __init__(self, spec, examples: int = 1):
        self.spec = spec
        self.examples = examples
        self.nodes: dict[str, Node] = {}
        self.children: dict[str, list[str]] = {}
        self._position: dict[str, int] = {}  # insertion order, to sort a node's parents
        self._paths: dict[str, list[tuple[str, ...]]] = {}  # paths_to_loss, once each
        self._partials: dict[tuple[str, str], sp.Expr] = {}  # local_partial, once each

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

    @property
    def spans_batch(self) -> bool:
        return self.examples > 1

    def copies(self, name: str) -> list[str]:
        """The nodes of a quantity: its per-example copies in a graph spanning a batch,
        else the quantity itself."""
        if name in self.nodes:
            return [name]
        return [example_name(name, k) for k in range(1, self.examples + 1)
                if example_name(name, k) in self.nodes]

    def paths_to_loss(self, name: str) -> list[tuple[str, ...]]:
        """Every path from ``name`` to the loss, following each node to its children: the
        chain rule sums one product per path (``name`` first, the loss last)."""
        if name not in self._paths:
            kids = self.children[name]
            self._paths[name] = [(name,)] if not kids else [
                (name,) + path for kid in kids for path in self.paths_to_loss(kid)]
        return self._paths[name]

    def local_partial(self, child: str, parent: str) -> sp.Expr:
        """∂child/∂parent: ``sympy.diff`` of the child's expression, done once per shape
        of expression (partials.py)."""
        if (child, parent) not in self._partials:
            self._partials[child, parent] = local_partial(self.nodes[child].expr,
                                                          self.nodes[parent].symbol)
        return self._partials[child, parent]
