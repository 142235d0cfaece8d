"""Graph stage: one SymPy node per named quantity, each with its local expression.

A node's expression is written in terms of its parents' *symbols*, never expanded
through them, so expressions stay small and every local partial derivative is one
SymPy ``diff``. The graph knows nothing of numbers' formatting or of languages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from .layers import activations, conv, dense, losses, pool
from .partials import local_partial
from .spec import DenseLayer, NetworkSpec, flatten_names

# Node kinds, from leaves to the loss.
INPUT, TARGET, PARAMETER = "input", "target", "parameter"
PRE_ACTIVATION, ACTIVATION, LOSS_TERM, LOSS = "pre_activation", "activation", "loss_term", "loss"
POOL = "pool"  # a max- or average-pooled cell
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

    def __init__(self, spec: NetworkSpec):
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


# Builders per layer type; other layer modules add theirs (conv, pooling, flatten).
LAYER_BUILDERS = {}


def layer_builder(kind):
    def register(function):
        LAYER_BUILDERS[kind] = function
        return function
    return register


def build_graph(spec: NetworkSpec) -> Graph:
    """The computation graph of one example: inputs → layers → loss terms → total loss."""
    graph = Graph(spec)
    for name in spec.input_names:
        graph.leaf(name, INPUT)
    previous = list(spec.input_names)
    for layer in spec.layers:
        previous = LAYER_BUILDERS[layer.kind](graph, layer, previous)
    outputs = [graph.symbol(n) for n in previous]
    targets = [graph.leaf(n, TARGET).symbol for n in spec.loss.target_names]
    terms = losses.loss_terms(spec.loss.kind, outputs, targets)
    for name, expr in zip(spec.loss.term_names, terms):
        graph.computed(name, LOSS_TERM, expr)
    graph.computed(spec.loss.total_name, LOSS,
                   sp.Add(*[graph.symbol(n) for n in spec.loss.term_names], evaluate=False))
    return graph


@layer_builder("dense")
def _build_dense(graph: Graph, layer: DenseLayer, inputs: list[str]) -> list[str]:
    x = [graph.symbol(n) for n in inputs]
    for name in flatten_names(layer.weight_names) + layer.bias_names:
        graph.leaf(name, PARAMETER)
    ys = []
    for j in range(layer.units):
        weights = [graph.symbol(n) for n in layer.weight_names[j]]
        expr = dense.pre_activation(weights, x, graph.symbol(layer.bias_names[j]))
        ys.append(graph.computed(layer.pre_activation_names[j], PRE_ACTIVATION, expr,
                                 layer=layer.index).symbol)
    if layer.activation_names == layer.pre_activation_names:  # identity: the output is y
        return list(layer.pre_activation_names)
    for j, name in enumerate(layer.activation_names):
        if layer.activation == "softmax":
            expr = activations.softmax_activation(ys, j)
        else:
            expr = activations.unit_activation(layer.activation, ys[j], layer.negative_slope)
        graph.computed(name, ACTIVATION, expr, layer=layer.index, activation=layer.activation)
    return list(layer.activation_names)


def _activate(graph: Graph, layer, pre_activations: list[str]) -> list[str]:
    """Element-wise activation nodes after the pre-activations (none for identity)."""
    if layer.activation_names == pre_activations:
        return list(pre_activations)
    for name, y in zip(layer.activation_names, pre_activations):
        expr = activations.unit_activation(layer.activation, graph.symbol(y),
                                           layer.negative_slope)
        graph.computed(name, ACTIVATION, expr, layer=layer.index, activation=layer.activation)
    return list(layer.activation_names)


@layer_builder("conv2d")
def _build_conv2d(graph: Graph, layer, inputs: list[str]) -> list[str]:
    """One node per feature-map cell; the filters and biases are shared parameter leaves."""
    channels, rows, columns = layer.in_shape
    for name in flatten_names(layer.filter_names) + layer.bias_names:
        graph.leaf(name, PARAMETER)
    out_channels, out_rows, out_columns = layer.out_shape
    for o in range(out_channels):
        bias = graph.symbol(layer.bias_names[o]) if layer.bias_names else None
        for r in range(out_rows):
            for s in range(out_columns):
                products = [
                    (graph.symbol(inputs[(c * rows + i) * columns + j]),
                     graph.symbol(layer.filter_names[o][c][u][v]))
                    for c in range(channels)
                    for u, v, i, j in conv.window(r, s, layer.kernel, layer.stride,
                                                  layer.padding, (rows, columns))
                    if i is not None]
                name = layer.pre_activation_names[(o * out_rows + r) * out_columns + s]
                graph.computed(name, PRE_ACTIVATION, conv.pre_activation(products, bias),
                               layer=layer.index)
    return _activate(graph, layer, layer.pre_activation_names)


@layer_builder("maxpool2d")
@layer_builder("avgpool2d")
def _build_pool2d(graph: Graph, layer, inputs: list[str]) -> list[str]:
    """One node per pooled cell, per channel."""
    channels, rows, columns = layer.in_shape
    _, out_rows, out_columns = layer.out_shape
    window_size = layer.kernel[0] * layer.kernel[1]
    for c in range(channels):
        for r in range(out_rows):
            for s in range(out_columns):
                cells = [graph.symbol(inputs[(c * rows + i) * columns + j])
                         for _, _, i, j in conv.window(r, s, layer.kernel, layer.stride,
                                                       layer.padding, (rows, columns))
                         if i is not None]
                expr = (pool.max_pool(cells) if layer.kind == "maxpool2d"
                        else pool.avg_pool(cells, window_size))
                name = layer.output_names[(c * out_rows + r) * out_columns + s]
                graph.computed(name, POOL, expr, layer=layer.index)
    return list(layer.output_names)


@layer_builder("flatten")
def _build_flatten(graph: Graph, layer, inputs: list[str]) -> list[str]:
    """Nothing to compute: images are kept in flatten order (layers/flatten.py)."""
    return list(inputs)
