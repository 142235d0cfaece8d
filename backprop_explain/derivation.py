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
from .nodes import ACTIVATION, INPUT, LEAF_KINDS, LOSS, LOSS_TERM, PRE_ACTIVATION, TARGET, Graph
from .numeric import NumericGraph
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


@dataclass
class UpdateStep:
    parameter: str
    key: str
    old: float
    gradient: float
    new: float
    frozen: bool
    velocity: float | None = None


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

    @property
    def example(self) -> ExampleDerivation:
        return self.examples[0]

    @property
    def convolutions(self) -> list:
        """Conv/pool layers of the first example as grids (empty for an MLP)."""
        return self.examples[0].convolutions


# ---------------------------------------------------------------------------
# Building it


def leaf_values(spec: NetworkSpec, parameters: dict[str, float], example) -> dict[str, float]:
    values = dict(zip(spec.input_names, example.inputs))
    values.update(zip(spec.loss.target_names, example.targets))
    values.update(parameters)
    return values


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
        step = ChainStep(node, key, "adjoint", [], self.adjoints[node])
        step.terms = self.terms(node, through_activation=False)
        self.pending.append(step)

    def gradient(self, parameter: str, frozen: bool) -> list[ChainStep]:
        key = adjoint_key(self.loss, parameter)
        terms = self.terms(parameter, through_activation=True)
        self.shown.add(key)
        step = ChainStep(parameter, key, "gradient", terms, self.adjoints[parameter], frozen)
        written, self.pending = self.pending + [step], []
        return written


def derive_example(spec, graph, numeric, parameters, example) -> ExampleDerivation:
    """One example's forward pass, chain-rule steps and gradients; updates come later,
    once every example's gradients are combined (derive)."""
    leaves = leaf_values(spec, parameters, example)
    values = numeric.forward(leaves)
    partials = numeric.partial_values(values)
    adjoints = numeric.backward(partials)
    writer = _ChainWriter(graph, partials, adjoints)
    sections = []
    for layer in reversed(spec.layers):
        names = layer.parameter_names()
        steps = []
        for name in names:
            if adjoint_key(graph.loss.name, name) in writer.shown:
                continue  # a parameter shared with a later layer is derived there once
            steps += writer.gradient(name, name in spec.frozen)
        if names:
            sections.append(LayerSection(layer.index, layer.kind, steps, []))
    gradients = {p.name: adjoints[p.name] for p in graph.parameters}
    return ExampleDerivation(
        inputs=dict(zip(spec.input_names, example.inputs)),
        targets=dict(zip(spec.loss.target_names, example.targets)),
        forward=forward_steps(graph, values), loss=values[graph.loss.name],
        sections=sections, gradients=gradients,
        adjoints={n: adjoints[n] for n in graph.nodes if graph.nodes[n].kind not in (INPUT, TARGET)},
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
            new[name], shown = optimizer.update(name, old, g, spec, state)
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
    examples = []
    for example in spec.examples:
        examples.append(derive_example(spec, graph, numeric, params, example))
    for derived in examples:
        derived.convolutions = layer_forms(spec, graph, derived)
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
    for example in spec.examples:
        values = numeric.forward(leaf_values(spec, after, example), finite=False)
        forward_after.append(forward_steps(graph, values))
        losses_after.append(values[graph.loss.name])
    return Solution(spec, graph, examples, loss, gradients, updates, after, forward_after,
                    combine(losses_after, spec.reduction), history=[loss])
