"""Derivation stage: chain rule, numbers, the update (SGD), the loss again.

Walks the graph once backwards (reverse topological order), summing over every
path. It produces plain dataclasses that the document stage walks: which
partial is needed where, its symbolic form, its value, and whether it was
already computed earlier in the solution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import mpmath
import sympy as sp

from .errors import DomainError, SpecError
from .graph import build_graph
from .keys import adjoint_key, local_key, updated_key  # noqa: F401 (also read from here)
from .keys import example_name
from .nodes import (ACTIVATION, EXAMPLE_LOSS, GIVEN_KINDS, INPUT, LEAF_KINDS, LOSS, LOSS_TERM,
                    PARAMETER, PRE_ACTIVATION, TARGET, Graph)
from .numeric import PRECISION, NumericGraph, exact_number
from .optimizers import OPTIMIZERS
from .spec import NetworkSpec


# ---------------------------------------------------------------------------
# The data a worked solution is made of


@dataclass
class ForwardStep:
    name: str
    kind: str
    expr: sp.Expr  # in the parents' symbols
    value: float
    layer: int | None
    activation: str | None = None


@dataclass
class Factor:
    """One factor of a chain-rule product: ∂E/∂node (adjoint) or ∂child/∂parent (local)."""

    kind: str  # "adjoint" or "local"
    key: str
    numerator: str
    denominator: str
    value: float
    already_computed: bool
    of_expr: sp.Expr | None = None  # the expression being differentiated (local)
    graph: Graph | None = field(default=None, repr=False, compare=False)  # local

    @cached_property
    def derivative(self) -> sp.Expr | None:
        """The symbolic local partial, derived when first read: a document shows some, the
        numbers need none."""
        if self.kind != "local":
            return None
        return self.graph.local_partial(self.numerator, self.denominator)


@dataclass
class Term:
    factors: list[Factor]
    value: float


@dataclass
class ChainStep:
    """∂E/∂target as a sum over paths of chain-rule products."""

    target: str
    key: str
    kind: str  # "gradient" (a parameter) or "adjoint" (an intermediate quantity)
    terms: list[Term]
    value: float
    frozen: bool = False
    graph: Graph | None = field(default=None, repr=False, compare=False)

    @cached_property
    def paths(self) -> list[tuple[str, ...]]:
        """The paths of the graph its products follow, ``target`` first, the loss last:
        each term goes from ``target`` to a child (its last factor, ∂child/∂target), then
        along every path on from that child (∂E/∂child sums them)."""
        return [(self.target,) + path for term in self.terms
                for path in self.graph.paths_to_loss(term.factors[-1].numerator)]


@dataclass
class UpdateStep:
    parameter: str
    key: str
    old: float
    gradient: float
    new: float
    frozen: bool
    state: dict | None = None  # what the optimizer shows of its state (velocity, moments)


@dataclass
class LayerSection:
    layer: int
    kind: str
    steps: list[ChainStep]
    updates: list[UpdateStep]


@dataclass
class ExampleDerivation:
    inputs: dict[str, float]
    targets: dict[str, float]
    forward: list[ForwardStep]
    loss: float
    sections: list[LayerSection]
    gradients: dict[str, float]
    adjoints: dict[str, float]
    local_partials: dict[str, float]
    values: dict[str, float]
    # what layers show beyond the chain rule, in layer order (layer_forms): conv2d's
    # convolution forms, pool2d's routings (layers/)
    convolutions: list = field(default_factory=list)


@dataclass
class Solution:
    """Everything a worked solution shows, for one SGD step on the spec's examples."""

    spec: NetworkSpec
    graph: Graph
    examples: list[ExampleDerivation]
    loss: float  # combined over the examples (mean or sum)
    gradients: dict[str, float]  # combined
    updates: list[UpdateStep]
    parameters_after: dict[str, float]
    forward_after: list[list[ForwardStep]]
    loss_after: float
    history: list[float] = field(default_factory=list)
    training: object | None = None  # training.TrainingRun when several SGD steps are run
    buffers: dict[str, float] = field(default_factory=dict)  # running statistics, before
    buffers_after: dict[str, float] = field(default_factory=dict)  # after the step's forward

    @property
    def example(self) -> ExampleDerivation:
        return self.examples[0]

    @property
    def convolutions(self) -> list:
        """Conv/pool layers of the first example as grids (empty for an MLP)."""
        return self.examples[0].convolutions


# ---------------------------------------------------------------------------
# Building it


def leaf_values(spec: NetworkSpec, parameters: dict[str, float], example,
                k: int | None = None) -> dict[str, float]:
    """The leaves of one example's graph: its inputs and targets, the parameters, the
    layers' constants and the example's own (``k``: its 0-based position in the spec,
    found when not given)."""
    if k is None:
        k = next((i for i, e in enumerate(spec.examples) if e is example), 0)
    values = dict(zip(spec.input_names, example.inputs))
    values.update(zip(spec.loss.target_names, example.targets))
    values.update(parameters)
    for layer in spec.layers:
        values.update(layer.constants())
        values.update(layer.example_constants(k))
    return values


def leaf_sets(spec: NetworkSpec, graph: Graph, parameters: dict[str, float]) -> list[dict]:
    """The leaves of each evaluation of the graph: one per example, or a single one for
    the whole mini-batch when the graph spans it (each example's leaves under its copies'
    names)."""
    sets = [leaf_values(spec, parameters, e, k) for k, e in enumerate(spec.examples)]
    if not graph.spans_batch:
        return sets
    shared = set(parameters) | {n for layer in spec.layers for n in layer.constants()}
    batch = {}
    for k, values in enumerate(sets):
        batch.update({name if name in shared else example_name(name, k + 1): value
                      for name, value in values.items()})
    return [batch]


def forward_steps(graph: Graph, values: dict[str, float]) -> list[ForwardStep]:
    return [ForwardStep(n.name, n.kind, n.expr, values[n.name], n.layer, n.activation)
            for n in graph.nodes.values() if n.kind not in LEAF_KINDS]


class _ChainWriter:
    """Writes the chain-rule steps of one example, remembering what is already computed."""

    def __init__(self, graph: Graph, partials, adjoints):
        self.graph = graph
        self.partials = partials
        self.adjoints = adjoints
        self.loss = graph.loss.name
        self.shown: set[str] = set()
        self.pending: list[ChainStep] = []  # adjoint steps written before the step needing them

    def local(self, child: str, parent: str) -> Factor:
        key = local_key(child, parent)
        factor = Factor("local", key, child, parent, self.partials[(child, parent)],
                        key in self.shown, self.graph.nodes[child].expr, self.graph)
        self.shown.add(key)
        return factor

    def adjoint(self, node: str) -> Factor:
        key = adjoint_key(self.loss, node)
        if key not in self.shown:
            self.explain(node)
        return Factor("adjoint", key, self.loss, node, self.adjoints[node], True)

    def _example_loss(self, term: str) -> str | None:
        """The example's loss a loss term adds up to, in a graph spanning a mini-batch."""
        kids = self.graph.children[term]
        if len(kids) == 1 and self.graph.nodes[kids[0]].kind == EXAMPLE_LOSS:
            return kids[0]
        return None

    def _is_elementwise(self, child: str) -> str | None:
        """The activation node fed by ``child`` alone, if there is one."""
        kids = self.graph.children[child]
        if len(kids) != 1:
            return None
        node = self.graph.nodes[kids[0]]
        if node.kind == ACTIVATION and len(node.parents) == 1:
            return node.name
        return None

    def terms(self, node: str, through_activation: bool) -> list[Term]:
        terms = []
        for child in self.graph.children[node]:
            kind = self.graph.nodes[child].kind
            if kind == LOSS_TERM and self.graph.children[child] == [self.loss]:
                factors = [self.local(child, node)]  # ∂E/∂E_k = 1: left out
            elif kind == LOSS_TERM and self._example_loss(child):
                # a mini-batch: ∂E/∂E^{[i]} (1/m for a mean), then ∂E^{[i]}/∂E_k = 1 left out
                factors = [self.local(self.loss, self._example_loss(child)),
                           self.local(child, node)]
            elif kind == EXAMPLE_LOSS:
                factors = [self.local(self.loss, child), self.local(child, node)]
            elif kind == LOSS:
                factors = [self.local(child, node)]
            else:
                activation = self._is_elementwise(child) if through_activation else None
                if activation and kind == PRE_ACTIVATION:
                    factors = [self.adjoint(activation), self.local(activation, child),
                               self.local(child, node)]
                else:
                    factors = [self.adjoint(child), self.local(child, node)]
            value = 1.0
            for f in factors:
                value *= f.value
            terms.append(Term(factors, value))
        return terms

    def explain(self, node: str) -> None:
        key = adjoint_key(self.loss, node)
        self.shown.add(key)
        step = ChainStep(node, key, "adjoint", [], self.adjoints[node], graph=self.graph)
        step.terms = self.terms(node, through_activation=False)
        self.pending.append(step)

    def own_deltas(self, layer: int) -> list[ChainStep]:
        """∂E/∂q for the quantities q of ``layer`` computed straight from its input (the
        pre-activations), not yet written, with what they need."""
        for name, node in self.graph.nodes.items():
            if node.layer != layer or node.kind in LEAF_KINDS:
                continue
            if any(self.graph.nodes[p].layer != layer
                   and self.graph.nodes[p].kind not in (TARGET, PARAMETER)
                   for p in node.parents):
                if adjoint_key(self.loss, name) not in self.shown:
                    self.explain(name)
        written, self.pending = self.pending, []
        return written

    def adjoint_steps(self, node: str) -> list[ChainStep]:
        """∂E/∂node derived now (with what it needs), unless already shown."""
        if adjoint_key(self.loss, node) not in self.shown:
            self.explain(node)
        written, self.pending = self.pending, []
        return written

    def gradient(self, parameter: str, frozen: bool) -> list[ChainStep]:
        key = adjoint_key(self.loss, parameter)
        terms = self.terms(parameter, through_activation=True)
        self.shown.add(key)
        step = ChainStep(parameter, key, "gradient", terms, self.adjoints[parameter], frozen,
                         self.graph)
        written, self.pending = self.pending + [step], []
        return written


def derive_example(spec, graph, numeric, leaves: dict[str, float]) -> ExampleDerivation:
    """One evaluation of the graph (an example, or a whole mini-batch when the graph spans
    it): forward pass, chain-rule steps and gradients; updates come later, once every
    example's gradients are combined (derive)."""
    values = numeric.forward(leaves)
    partials = numeric.partial_values(values)
    adjoints = numeric.backward(partials)
    writer = _ChainWriter(graph, partials, adjoints)
    inputs_of, names = {}, list(spec.input_names)
    for layer in spec.layers:
        inputs_of[layer.index], names = names, layer.outputs(names)
    sections = []
    for position, layer in reversed(list(enumerate(spec.layers))):
        names = layer.parameter_names()
        steps = []
        for name in names:
            if adjoint_key(graph.loss.name, name) in writer.shown:
                continue  # a parameter shared with a later layer is derived there once
            steps += writer.gradient(name, name in spec.frozen)
        if layer.explains_inputs():
            for name in inputs_of[layer.index]:
                for node in graph.copies(name):
                    steps += writer.adjoint_steps(node)
        elif names and any(earlier.parameter_names() for earlier in spec.layers[:position]):
            # the layer's own δ's (∂E/∂ of what it computes from its input), which the
            # layers before it need: derived here, in its section, not in theirs
            steps += writer.own_deltas(layer.index)
        if names or steps:
            sections.append(LayerSection(layer.index, layer.kind, steps, []))
    gradients = {p.name: adjoints[p.name] for p in graph.parameters}
    leaf = {n.name: leaves[n.name] for n in graph.nodes.values() if n.kind in (INPUT, TARGET)}
    return ExampleDerivation(
        inputs={n: v for n, v in leaf.items() if graph.nodes[n].kind == INPUT},
        targets={n: v for n, v in leaf.items() if graph.nodes[n].kind == TARGET},
        forward=forward_steps(graph, values), loss=values[graph.loss.name],
        sections=sections, gradients=gradients,
        adjoints={n: adjoints[n] for n in graph.nodes
                  if graph.nodes[n].kind not in (INPUT,) + GIVEN_KINDS},
        local_partials={local_key(c, p): v for (c, p), v in partials.items()},
        values=values)


def layer_forms(spec: NetworkSpec, graph: Graph, example: ExampleDerivation) -> list:
    """What each layer shows beyond the chain rule (conv: the gradients as convolutions;
    pool: the routing), in layer order; layers with nothing to add are left out."""
    forms, names = [], list(spec.input_names)
    for layer in spec.layers:
        form = layer.forms(spec, graph, example, names)
        if form is not None:
            forms.append(form)
        names = layer.outputs(names)
    return forms


def buffers_after(spec: NetworkSpec, graph: Graph, values: dict[str, float]) -> dict[str, float]:
    """What the layers keep from step to step (running statistics) after the step's
    forward pass, each from the formula its layer gives (``values``: the forward values
    of the graph; the first example's when the graph is one example's)."""
    env = dict(values)
    env.update(spec.buffers)
    out = {}
    with mpmath.workdps(PRECISION):
        for layer in spec.layers:
            for name, expr in layer.buffer_updates(graph).items():
                symbols = sorted(expr.free_symbols, key=lambda s: s.name)
                function = sp.lambdify(symbols, expr, modules="mpmath")
                out[name] = float(function(*[exact_number(env[s.name]) for s in symbols]))
    return out


def combine(values: list[float], reduction: str) -> float:
    total = mpmath.fsum(values)
    return float(total / len(values)) if reduction == "mean" else float(total)


def update_parameters(parameters, gradients, spec: NetworkSpec, state=None):
    """Each parameter moved by the spec's optimizer (optimizers.py); frozen ones kept.
    ``state``: what the optimizer carries from step to step (training.py passes it on)."""
    optimizer = OPTIMIZERS[spec.optimizer]
    steps, new = [], dict(parameters)
    state = {} if state is None else state
    for name, old in parameters.items():
        g = gradients[name]
        frozen = name in spec.frozen
        shown = None
        if not frozen:
            new[name], shown = optimizer.update(name, old, g, spec.learning_rate,
                                                spec.optimizer_settings, state)
        steps.append(UpdateStep(name, updated_key(name), old, g, new[name], frozen, shown))
    return steps, new


def derive(spec: NetworkSpec, numeric: NumericGraph | None = None) -> Solution:
    """The full worked solution of one SGD step on the spec's examples.

    ``numeric``: a NumericGraph of a spec with the same names and layers (only numbers
    differ), reused across exercise variants to skip rebuilding and recompiling it.
    A value outside a function's domain (ln of 0, …) is bad input: a SpecError naming the
    spec's file and the quantity."""
    try:
        return _derive(spec, numeric)
    except DomainError as err:
        raise SpecError(spec.source, "values", str(err)) from None


def _derive(spec: NetworkSpec, numeric: NumericGraph | None) -> Solution:
    numeric = numeric or NumericGraph(build_graph(spec))
    graph = numeric.graph
    params = dict(spec.parameters)
    examples = [derive_example(spec, graph, numeric, leaves)
                for leaves in leaf_sets(spec, graph, params)]
    for derived in examples:
        derived.convolutions = layer_forms(spec, graph, derived)
    if graph.spans_batch:  # one derivation of the whole mini-batch: its loss combines them
        gradients, loss = dict(examples[0].gradients), examples[0].loss
    else:
        gradients = {name: combine([e.gradients[name] for e in examples], spec.reduction)
                     for name in params}
        loss = combine([e.loss for e in examples], spec.reduction)
    updates, after = update_parameters(params, gradients, spec)
    by_name = {u.parameter: u for u in updates}
    # The course shows each layer's updates right after its gradients (one example).
    for section in examples[0].sections:
        names = [s.target for s in section.steps if s.kind == "gradient"]
        section.updates = [by_name[n] for n in names]
    forward_after = []
    losses_after = []
    for leaves in leaf_sets(spec, graph, after):
        values = numeric.forward(leaves, finite=False)  # an overflow: said in words
        forward_after.append(forward_steps(graph, values))
        losses_after.append(values[graph.loss.name])
    loss_after = losses_after[0] if graph.spans_batch else combine(losses_after,
                                                                     spec.reduction)
    return Solution(spec, graph, examples, loss, gradients, updates, after, forward_after,
                    loss_after, history=[loss], buffers=dict(spec.buffers),
                    buffers_after=buffers_after(spec, graph, examples[0].values))
