"""Document stage: turn a derived Solution into a worked solution (Markdown or LaTeX).

Python prepares every formula as LaTeX (through the SymPy printer of notation.py)
and every number as displayed text; the Jinja2 templates in ``templates/`` hold
the words and the layout. Languages are phrase files (``templates/lang/*.toml``).
This module writes the quantities node by node; a layer shown otherwise (conv, pool:
grids) gives its own parts, which its template fragment prints (layers/, ``templates/
layers/``). This module never computes a derivative: it only reads the Solution, and
the textbook forms of the activation and loss entries (proved equal to SymPy's).

Two levels of detail: ``full`` writes every factor of every chain-rule product;
``compact`` writes each layer's δ's, then its gradients as one table, frozen parameters
and gradients that are exactly 0 on one line each, with the reason. Either way a
gradient that every path carries through a derivative equal to 0 is said to be 0 in one
line, as the course's slides do, and every gradient comes before any update.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import sympy as sp

from .activations import ACTIVATIONS
from .derivation import ChainStep, Factor, Solution, Term, UpdateStep
from .layers import grid
from .layers.grid import GridNotation
from .losses import LOSSES
from .keys import example_name, state_key
from .nodes import ACTIVATION, EXAMPLE_LOSS, LEAF_KINDS, LOSS, LOSS_TERM
from .notation import (DISPLAY_WIDTH, DocumentSymbols, Equation, NumberFormat, generic_name, is_atomic,
                       partial, partial_inline, primed, relabel, same_math, substituted, tex,
                       tex_around, math_width, wrapped_sum)
from .optimizers import OPTIMIZERS
from .templating import fill, phrases, render_template, tidy_tex  # noqa: F401 (also read from here)

FORMATS = {"md": "solution.md.j2", "tex": "solution.tex.j2", "html": "solution.html.j2"}
DETAILS = ("full", "compact")
DERIVATIVE_FORMS = ("course", "textbook", "both")
COMPACT_ABOVE = 20  # parameters: a larger network is explained compactly by default
NAMES_LISTED = 6  # a longer list of names (frozen, zero) is shown as first, …, last


def default_detail(spec) -> str:
    return "full" if len(spec.parameters) <= COMPACT_ABOVE else "compact"


# ---------------------------------------------------------------------------
# The view of a solution that templates walk


@dataclass
class FactorView:
    symbol: str  # \frac{∂a}{∂b}
    already_computed: bool
    value: str
    steps: Equation | None = None  # its derivation, when shown for the first time
    key: str = ""  # derivation.Factor.key


@dataclass
class ChainView:
    kind: str  # gradient | adjoint
    target: str
    symbol: str  # \frac{∂E}{∂θ}
    chain: str  # Σ of products of partial symbols
    factors: list[FactorView]
    numbers: str  # the product with numbers
    value: str
    frozen: bool
    paths: int  # how many chain-rule products are summed


@dataclass
class Item:
    """One piece of a backward section, printed by the template's ``item`` macro:
    ``derivation`` (a heading, words, equations), ``equations``, ``table``, or ``words``
    (a sentence, then equations if any)."""

    kind: str
    title: str = ""
    words: str = ""
    equations: list[Equation] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    columns: tuple = (0,)
    wrap: tuple = ()  # table columns too wide for a line: their cells wrap (LaTeX p{})
    names: list[str] = field(default_factory=list)  # the steps an item of zeros stands for
    steps: list[ChainStep] = field(default_factory=list)  # the chain-rule steps it shows


def _sum(products: list[str], wrap: bool = True) -> str:
    """Terms added up; ``wrap``: broken over the lines of a display when too long (a
    table cell is not)."""
    if wrap and products:
        return wrapped_sum(products, DISPLAY_WIDTH - 10)  # room for the left-hand side
    return " + ".join(products).replace("+ -", "- ") or "0"


class SolutionView:
    """Formulas and numbers of a Solution, formatted for one language and rounding."""

    def __init__(self, solution: Solution, lang: str, numbers: NumberFormat,
                 detail: str | None = None, derivatives: str = "both", marks: bool = False):
        self.solution = solution
        # ``marks``: a factor recalled as already computed is written \known{k}{…}, k its
        # place in ``known`` (a page links it to where it was computed: derived_in)
        self.marks = marks
        self.known: list[str] = []
        self.derived_in: dict[str, str] = {}  # a factor's key → the target of its derivation
        self.spec = solution.spec
        self.graph = solution.graph
        self.lang = lang
        self.detail = detail or default_detail(self.spec)
        self.derivatives = derivatives
        self.loss_name = self.spec.loss.total_name
        self.symbols = DocumentSymbols(self.graph.nodes)
        self.t = document_phrases(solution, lang, self.symbols)
        self.n = numbers
        self.n.given_names = frozenset(
            [n.name for n in self.graph.nodes.values() if n.kind in LEAF_KINDS]
            + [name for layer in self.spec.layers for name in layer.buffers()])
        self.optimizer = OPTIMIZERS[self.spec.optimizer]
        self._written_in_full = False  # a tabular optimizer's update, written out once
        # what layers show beyond the chain rule (derivation.layer_forms), by index; those
        # shown as a whole (conv, pool: grids) rather than node by node: self.forms
        self.layer_forms = {f.layer: f for f in solution.example.convolutions}
        self.forms = {index: f for index, f in self.layer_forms.items()
                      if self.spec.layers[index - 1].shows_grids}
        self.grids = GridNotation(self) if self.forms else None
        self._take_derivatives()
        self._inputs = {}
        names = list(self.spec.input_names)
        for layer in self.spec.layers:
            self._inputs[layer.index] = names
            names = layer.outputs(names)
        self.outputs = names  # what the loss reads

    def _take_derivatives(self) -> None:
        """Every derivative the document shows node by node, taken before any number is
        put in: a substitution enters sympy.evaluate(False), which empties SymPy's cache,
        and a derivative taken after that is several times slower (those of the cells of
        a grid layer are not shown, and not taken)."""
        nodes = self.graph.nodes
        for section in self.solution.example.sections:
            for step in section.steps:
                for term in step.terms:
                    for factor in term.factors:
                        if factor.kind == "local" and nodes[factor.numerator].layer not in self.forms:
                            factor.derivative  # noqa: B018 (cached on the factor)

    # Layers ---------------------------------------------------------------
    def inputs_of(self, layer) -> list[str]:
        """The names a layer reads, in flatten order."""
        return self._inputs[layer.index]

    def next_layer(self, layer):
        """The layer after ``layer``, or None for the last one."""
        layers = self.spec.layers
        return layers[layer.index] if layer.index < len(layers) else None

    # Forward pass -------------------------------------------------------
    def forward_equation(self, step, values) -> Equation:
        node = self.graph.nodes[step.name]
        parts = []
        display = ACTIVATIONS[node.activation].display if node.kind == ACTIVATION else None
        if display:
            args = [tex(self.graph.symbol(p)) for p in node.parents]
            parts.append(display.format(arg=", ".join(args), index=_unit_index(node, self.graph)))
        if node.kind == LOSS_TERM:
            definition = LOSSES[self.spec.loss.kind].term_textbook(
                *self._loss_symbols(node.example),
                self._in_example(self.spec.loss.term_names, node.example).index(node.name))
            if definition is not None:
                parts.append(tex(definition))
        parts.append(tex(node.expr, wrap=True))
        if not node.expr.has(sp.Piecewise):  # numbers in the cases of ReLU tell nothing
            parts.append(substituted(node.expr, values, self.n, wrap=True))
        parts.append(self.n.tex(values[step.name]))
        return Equation(step.name, _dedupe(parts))

    def forward_layers(self, steps, values) -> list[dict]:
        """Each layer's forward pass, in order: a group of parts under its label; a layer
        that computes nothing (flatten) joins the group of the layer before."""
        groups = []
        for layer in self.spec.layers:
            own = [s for s in steps if s.layer == layer.index]
            part = layer.forward_part(self, own, values)
            if part is None:
                continue
            if own:
                groups.append({"layer": layer.index, "label": self.layer_label(layer.index),
                               "parts": [part]})
            elif groups:
                groups[-1]["parts"].append(part)
        return groups

    def loss_equations(self, steps, values) -> list[Equation]:
        return [self.forward_equation(s, values) for s in steps
                if s.kind in (LOSS_TERM, EXAMPLE_LOSS, LOSS)]

    def _in_example(self, names: list[str], example: int | None) -> list[str]:
        """The spec's names as the graph has them for ``example`` (its copies in a graph
        spanning a mini-batch)."""
        if example is None or not self.graph.spans_batch:
            return list(names)
        return [n if n in self.graph.nodes else example_name(n, example) for n in names]

    def _loss_symbols(self, example: int | None = None) -> tuple[list[sp.Symbol],
                                                                 list[sp.Symbol]]:
        return ([self.graph.symbol(n) for n in self._in_example(self.outputs, example)],
                [self.graph.symbol(n)
                 for n in self._in_example(self.spec.loss.target_names, example)])

    # Derivatives: SymPy's form, the textbook's, the numbers -------------------
    def textbook_forms(self, child: str, parent: str) -> list[sp.Expr]:
        """∂child/∂parent as a course writes it, from the activation or loss entry."""
        node = self.graph.nodes[child]
        if node.kind == ACTIVATION:
            entry = ACTIVATIONS[node.activation]
            slope = getattr(self.spec.layers[node.layer - 1], "negative_slope", 0.01)
            ys = [self.graph.symbol(p) for p in node.parents]
            if entry.elementwise:
                return entry.textbook(ys, [node.symbol], 0, 0, slope)
            siblings = [n for n in self.graph.of_kind(ACTIVATION)
                        if n.layer == node.layer and n.example == node.example]
            return entry.textbook(ys, [s.symbol for s in siblings], siblings.index(node),
                                  node.parents.index(parent), slope)
        outputs = self._in_example(self.outputs, node.example)
        if node.kind == LOSS_TERM and parent in outputs:
            return LOSSES[self.spec.loss.kind].textbook(
                *self._loss_symbols(node.example),
                self._in_example(self.spec.loss.term_names, node.example).index(child),
                outputs.index(parent))
        return []

    def derivative_parts(self, factor: Factor, values, differentiated: bool = True) -> list[str]:
        """The right-hand sides of a local derivative: what is differentiated, SymPy's
        derivative and/or the textbook's (``derivatives``), the numbers, the value."""
        forms = self.textbook_forms(factor.numerator, factor.denominator)
        course, textbook = [factor.derivative], forms
        if self.derivatives == "course" or not forms:
            shown = course
        elif self.derivatives == "textbook":
            shown = textbook
        else:
            shown = course + textbook
        parts = []
        if differentiated:
            parts.append(r"\frac{\partial}{\partial " + factor.denominator + r"}\left("
                         + tex_around(factor.of_expr, self.graph.symbol(factor.denominator))
                         + r"\right)")
        parts += [tex(form) for form in shown]
        if not is_atomic(shown[-1]):
            parts.append(substituted(shown[-1], values, self.n))
        if not shown[-1].is_Number:  # a constant (∂y/∂b = 1) is its own value
            parts.append(self.factor_value(factor))
        return _dedupe(parts)

    def factor(self, factor: Factor, values) -> FactorView:
        symbol = partial(factor.numerator, factor.denominator)
        view = FactorView(symbol, factor.already_computed, self.factor_value(factor),
                          key=factor.key)
        if factor.kind == "local" and not factor.already_computed:
            view.steps = Equation(symbol, self.derivative_parts(factor, values))
        return view

    def shortcut(self, name: str, values) -> Equation | None:
        """∂E/∂y_k of an output pre-activation as the course's shortcut (out_k − t_k),
        when the loss and the output activation make one."""
        last = self.spec.layers[-1]
        example = self.graph.nodes[name].example
        pre = self._in_example(getattr(last, "pre_activation_names", None) or [], example)
        if name not in pre:
            return None
        targets = [values[t] for t in self._in_example(self.spec.loss.target_names, example)]
        expr = LOSSES[self.spec.loss.kind].delta_textbook(
            last.activation, *self._loss_symbols(example), pre.index(name),
            abs(sum(targets) - 1) < 1e-12)
        if expr is None:
            return None
        parts = _dedupe([tex(expr), substituted(expr, values, self.n),
                         self.n.tex(self.solution.example.adjoints[name])])
        return Equation(partial(self.loss_name, name), parts, note=self.t["backward"]["shortcut"])

    def signed(self, value: float) -> str:
        return tex(self.n.placeholder(value))  # negative numbers in parentheses

    def _given_factor(self, factor: Factor) -> bool:
        """A local derivative that is a constant (∂y/∂b = 1) or a given name (∂y/∂x = w):
        its value is shown as given."""
        derivative = factor.derivative if factor.kind == "local" else None
        return derivative is not None and (derivative.is_Number or (
            derivative.is_Symbol and derivative.name in self.n.given_names))

    def factor_value(self, factor: Factor) -> str:
        return (self.n.given if self._given_factor(factor) else self.n.tex)(factor.value)

    def factor_number(self, factor: Factor) -> str:
        """A factor's value in a product (in parentheses when negative)."""
        return tex(self.n.placeholder(factor.value, given=self._given_factor(factor)))

    # Backward pass ------------------------------------------------------
    def chain(self, step: ChainStep, values) -> ChainView:
        products, numbers, factors = [], [], []
        for term in step.terms:
            products.append(r" \cdot ".join(partial(f.numerator, f.denominator)
                                            for f in term.factors))
            numbers.append(r" \cdot ".join(self.factor_number(f) for f in term.factors))
            factors += [self.factor(f, values) for f in term.factors]
        single = len(step.terms) == 1 and len(step.terms[0].factors) == 1
        return ChainView(step.kind, step.target, partial(self.loss_name, step.target),
                         _sum(products), factors, "" if single else _sum(numbers),
                         self.n.tex(step.value), step.frozen, len(step.terms))

    def derivation(self, step: ChainStep, values) -> Item:
        """Every factor of ∂E/∂target: the chain rule, the factors computed before (in
        display size), each new factor derived, then the product; one equation when the
        chain has one factor."""
        t = self.t["backward"]
        view = self.chain(step, values)
        self.derived_in.setdefault(step.key, step.target)
        for f in view.factors:
            if f.steps:
                self.derived_in.setdefault(f.key, step.target)
        title = fill(t["gradient_of" if step.kind == "gradient" else "adjoint_of"],
                     name=step.target)
        words = fill(t["adjoint_intro"], name=step.target) if view.paths > 1 else ""
        if not view.numbers:  # one factor: ∂E/∂a = ∂E_k/∂a = … = value
            only = view.factors[0]
            rhs = [view.chain] + (only.steps.rhs if only.steps else [only.value])
            equations = [Equation(view.symbol, _dedupe(rhs))]
        else:
            equations = [Equation(view.symbol, [view.chain])]
            known = list({f.symbol: f for f in view.factors if not f.steps}.values())
            equations += self.known_rows(known)
            equations += [f.steps for f in view.factors if f.steps]
            equations.append(Equation(view.symbol, [view.numbers, view.value]))
        shortcut = self.shortcut(step.target, values)
        if shortcut is not None:
            equations.append(shortcut)
        return Item("derivation", title=title, words=words, equations=equations, steps=[step])

    def known_rows(self, factors: list[FactorView]) -> list[Equation]:
        """Factors computed before, recalled in display size, several to a row."""
        rows, width = [], 0.0
        for f in factors:  # as many to a row as fit
            size = math_width(f"{f.symbol} = {f.value}") + 2
            if rows and width + size <= DISPLAY_WIDTH - 12:
                rows[-1].append(f)
                width += size
            else:
                rows.append([f])
                width = size
        note = self.t["backward"]["already_computed"]
        if self.marks:
            return [Equation(self.marked(first, first.symbol), [first.value + "".join(
                        rf",\quad {self.marked(f, f.symbol + ' = ' + f.value)}" for f in rest)],
                             note=note) for first, *rest in rows]
        return [Equation(first.symbol, [first.value + "".join(
                    rf",\quad {f.symbol} = {f.value}" for f in rest)], note=note)
                for first, *rest in rows]

    def marked(self, factor: FactorView, shown: str) -> str:
        """``shown`` marked as the factor ``factor`` computed before (\\known{k}{…})."""
        self.known.append(factor.key)
        return rf"\known{{{len(self.known) - 1}}}{{{shown}}}"

    # Compact: δ's, then one table per layer
    def compact_step(self, step: ChainStep, values, shown: set[str]) -> list[Equation]:
        """∂E/∂target in one line: the course's shortcut when there is one (out_k − t_k),
        else each local factor by its derivative when that is a name or a number
        (∂y/∂out_{h1} = wo_{1,1}), the numbers, the value, the factors needing a
        derivation of their own first, on a line each."""
        shortcut = self.shortcut(step.target, values)
        if shortcut is not None:
            return [Equation(shortcut.lhs, shortcut.rhs)]
        before, products, numbers = [], [], []
        for term in step.terms:
            shown_factors = []
            for f in term.factors:
                if f.kind == "local" and is_atomic(f.derivative):
                    shown_factors.append(tex(f.derivative))
                    continue
                if f.kind == "local" and not f.already_computed and f.key not in shown:
                    before.append(Equation(partial(f.numerator, f.denominator),
                                           self.derivative_parts(f, values, False)))
                shown.add(f.key)
                shown_factors.append(partial(f.numerator, f.denominator))
            products.append(r" \cdot ".join(shown_factors))
            numbers.append(r" \cdot ".join(self.factor_number(f) for f in term.factors))
        symbol = partial(self.loss_name, step.target)
        single = len(step.terms) == 1 and len(step.terms[0].factors) == 1
        f = step.terms[0].factors[0] if step.terms else None
        if single and f.kind == "local":  # ∂E/∂out = −v_1/out_{o1} = …
            rhs = [partial(f.numerator, f.denominator)] + self.derivative_parts(f, values, False)
            before = [b for b in before if b.lhs != rhs[0]]
        else:
            rhs = [_sum(products), _sum(numbers), self.n.tex(step.value)]
        return before + [Equation(symbol, _dedupe(rhs))]

    def delta_of(self, child: str, term, values, shown: set[str]) -> list[Equation]:
        """∂E/∂child from the factors of a gradient's term before its last (the δ a
        gradient table multiplies), when not written yet."""
        key = f"delta:{child}"
        if key in shown or f"d{self.loss_name}/d{child}" in shown:
            return []
        shown.add(key)
        prefix = ChainStep(child, key, "adjoint", [Term(term.factors[:-1], 0.0)],
                           self.solution.example.adjoints[child])
        return self.compact_step(prefix, values, shown)

    def gradient_table(self, steps: list[ChainStep], values, shown: set[str]):
        """(the δ's the rows use, the table item): parameter, ∂E/∂δ · ∂δ/∂θ, numbers, value."""
        t = self.t["backward"]
        deltas, rows = [], []
        for step in steps:
            products, numbers = [], []
            for term in step.terms:
                *prefix, last = term.factors
                child = last.numerator
                if prefix:
                    deltas += self.delta_of(child, term, values, shown)
                delta = (partial_inline(self.loss_name, child) if prefix else "")
                local = tex(last.derivative)
                products.append(r" \cdot ".join(p for p in (delta, local) if p))
                value = self.solution.example.adjoints[child] if prefix else 1.0
                numbers.append(r" \cdot ".join(([self.signed(value)] if prefix else [])
                                                + [self.factor_number(last)]))
            rows.append([step.target, _sum(products, False), _sum(numbers, False),
                         self.n.tex(step.value)])
        header = [t["table_parameter"], t["table_chain"], t["table_numbers"], t["table_value"]]
        widest = max(sum(math_width(cell) for cell in row) for row in rows)
        return deltas, Item("table", header=header, rows=rows, columns=(0, 1, 2, 3),
                            wrap=(1, 2) if widest > DISPLAY_WIDTH else ())

    def zero_reason(self, step: ChainStep, gradients_too: bool) -> Factor | None:
        """The derivative equal to 0 that every path of ``step`` goes through (an
        adjoint: ∂E/∂out_{o2} = 0; in compact detail, for a gradient, any factor)."""
        if step.value != 0 or not step.terms:
            return None
        reasons = []
        for term in step.terms:
            zero = [f for f in term.factors if f.value == 0
                    and (f.kind == "adjoint" or (gradients_too and step.kind == "gradient"))]
            if not zero:
                return None
            reasons.append(zero[0])
        return reasons[0]

    def zero_item(self, reason: Factor, values) -> Item:
        symbol = partial_inline(reason.numerator, reason.denominator)
        words = fill(self.t["backward"]["zero_through"], factor=f"${symbol} = 0$")
        return Item("words", words=words)

    def backward_items(self, steps: list[ChainStep], values) -> list[Item]:
        """A section's steps as items: in full detail each derivation; in compact detail
        the δ's on a line each and the gradients in one table; either way the steps that
        go through a derivative equal to 0 on one line, frozen ones (compact) on one."""
        compact = self.detail == "compact"
        items, zeros, shown = [], {}, set()
        frozen = [s.target for s in steps if compact and s.kind == "gradient" and s.frozen]
        table_steps = []
        for step in steps:
            if step.target in frozen:
                continue
            reason = self.zero_reason(step, compact)
            if reason is not None:
                key = (reason.numerator, reason.denominator)
                if key not in zeros:
                    zeros[key] = self.zero_item(reason, values)
                    items.append(zeros[key])
                zeros[key].names.append(partial(self.loss_name, step.target))
                zeros[key].steps.append(step)
                shown.add(step.key)
                continue
            if not compact:
                items.append(self.derivation(step, values))
            elif step.kind == "adjoint":
                if f"delta:{step.target}" not in shown:
                    items.append(Item("equations", equations=self.compact_step(step, values,
                                                                              shown),
                                      steps=[step]))
                shown.add(step.key)
            else:
                table_steps.append(step)
        if table_steps:
            deltas, table = self.gradient_table(table_steps, values, shown)
            if deltas:
                items.append(Item("equations", equations=deltas))
            table.steps = table_steps
            items.append(table)
        for item in zeros.values():  # ∂E/∂a = ∂E/∂b = … = 0
            item.equations = [Equation(item.names[0], item.names[1:] + ["0"])]
        if frozen:
            items.append(Item("words", words=fill(self.t["backward"]["frozen_compact"],
                                                  names=self.name_list(frozen)),
                              steps=[s for s in steps if s.target in frozen]))
        return items

    def name_list(self, names: list[str]) -> str:
        """Names as inline math, a long list as first, second, third, …, last."""
        shown = names if len(names) <= NAMES_LISTED else names[:3] + [r"\dots"] + names[-1:]
        return ", ".join(f"${n}$" for n in shown)

    # Updates ------------------------------------------------------------
    def update(self, update: UpdateStep) -> list[Equation]:
        """One parameter's update written out (the optimizer's state first, if any), in
        the document's letters (η, the momentum buffer, … none a spec name)."""
        equations = self.optimizer.equations(update, self.n, self.loss_name,
                                             self.n.given(self.spec.learning_rate),
                                             self.spec.optimizer_settings)
        return [self.relabel(eq, update.parameter) for eq in equations]

    def relabel(self, eq: Equation, name: str) -> Equation:
        """An optimizer's equation with its usual letters (η, μ, λ, β, ε; the state v_θ,
        m_θ, g_θ) replaced by the document's, the spec's names untouched."""
        symbols = self.symbols
        commands = {r"\eta": symbols["rate"], r"\mu": symbols["momentum"],
                    r"\lambda": symbols["decay"], r"\beta": symbols["betas"],
                    r"\varepsilon": symbols["epsilon"]}
        states = {"g": symbols["gradient"], "v": symbols["buffer"], "m": symbols["moment"],
                  r"\hat{m}": r"\hat{" + symbols["moment"] + "}",
                  r"\hat{v}": r"\hat{" + symbols["buffer"] + "}"}
        keys = {state_key(k, name): state_key(v, name) for k, v in states.items()}

        def put(latex: str) -> str:
            return relabel(latex, [name, self.loss_name], commands, keys)
        return Equation(put(eq.lhs), [put(part) for part in eq.rhs], eq.note)

    @property
    def plain_update(self) -> bool:
        """Whether every update is θ − η·∂E/∂θ (a layer may show its updates as grids)."""
        return self.optimizer.plain(self.spec.optimizer_settings)

    def update_items(self, updates: list[UpdateStep]) -> list[Item]:
        """One layer's updates: an equation each (full), one table (compact, θ − η·∂E/∂θ),
        or, for an optimizer keeping several numbers per parameter (Adam), the first
        written out in full once in the document, then a table; the parameters whose
        update leaves them as they were (a gradient of 0) and the frozen ones on a line."""
        t = self.t["backward"]
        moving = [u for u in updates if not u.frozen and u.new != u.old]
        kept = [u.parameter for u in updates if not u.frozen and u.new == u.old]
        frozen = [u.parameter for u in updates if u.frozen]
        items = []
        if moving and self.optimizer.tabular:
            if not self._written_in_full:
                self._written_in_full = True
                items.append(Item("equations", equations=self.update(moving[0])))
            header, rows = self.optimizer.table(self.t, moving, self.n)
            state = {"m": self.symbols["moment"], "v": self.symbols["buffer"]}
            header = [relabel(cell, [], {}, {f"${k}$": f"${v}$" for k, v in state.items()}
                              | {f"$\\hat{{{k}}}$": f"$\\hat{{{v}}}$" for k, v in state.items()})
                      for cell in header]
            items.append(Item("words", words=self.t["optimizers"]["table"]))
            items.append(Item("table", header=header, rows=rows,
                              columns=tuple(range(len(header)))))
        elif moving and self.detail == "compact" and self.plain_update:
            header = [t["table_parameter"], t["update_before"], t["table_value"],
                      t["update_after"]]
            rows = [[u.parameter, self.n.value(u.parameter, u.old), self.n.tex(u.gradient),
                     self.n.tex_change(u.old, u.new)] for u in moving]
            items.append(Item("table", header=header, rows=rows, columns=(0, 1, 2, 3)))
        elif moving:
            items.append(Item("equations", equations=[eq for u in moving
                                                      for eq in self.update(u)]))
        if kept:
            items.append(Item("words", words=fill(t["zero_kept"], names=", ".join(
                f"${primed(n)} = {n}$" for n in kept))))
        if frozen:
            items.append(Item("words", words=fill(t["frozen_kept"],
                                                  names=self.name_list(frozen))))
        return items

    def update_groups(self) -> list[dict]:
        """The updates, layer by layer in the order of the backward pass, after every
        gradient (and after the examples' gradients are combined)."""
        by_name = {u.parameter: u for u in self.solution.updates}
        groups = []
        for section in self.solution.example.sections:
            layer = self.spec.layers[section.layer - 1]
            names = [s.target for s in section.steps if s.kind == "gradient"]
            updates = [by_name[n] for n in names if n in by_name]
            if not updates:
                continue
            part = layer.update_part(self, updates)
            groups.append({"label": self.layer_label(section.layer),
                           "parts": [part] if part is not None else [],
                           "items": [] if part is not None else self.update_items(updates)})
        return groups

    def sections(self, example) -> list[dict]:
        """Each layer's backward section (a layer with parameters), as its kind shows it;
        from the second on, a reminder that they use the weights before the update."""
        out = []
        for k, section in enumerate(example.sections):
            label = self.layer_label(section.layer)
            shown = self.spec.layers[section.layer - 1].section(self, section, example)
            old = fill(self.t["backward"]["old_weights"], label=label) if k else ""
            claimed = {id(s) for it in shown["items"] for s in it.steps}
            # what the kind's own parts derive (grids): the steps no item shows
            unclaimed = [s for s in section.steps if id(s) not in claimed]
            out.append(dict(label=label, old_weights=old, unclaimed=unclaimed, **shown))
        return out

    # Words ----------------------------------------------------------------
    def layer_label(self, index: int | None) -> str:
        t = self.t["network"]
        if index is None:
            return ""
        layer = self.spec.layers[index - 1]
        activation = t["activations"].get(getattr(layer, "activation", ""), "")
        if index == len(self.spec.layers):
            return fill(t["output_layer"], n=index, activation=activation)
        label = self.t["layers"].get(layer.kind, {}).get("label", t["hidden_layer"])
        return fill(label, n=index, activation=activation)

    def loss_formula(self) -> str:
        """The loss in the spec's names: −Σ_k v_k ln out_{ok}; written out term by term
        when the names have no common pattern."""
        index = self.symbols["index"]
        entry = LOSSES[self.spec.loss.kind]
        out = generic_name(self.outputs, index)
        target = generic_name(self.spec.loss.target_names, index)
        if out is None or target is None or len(self.outputs) == 1:
            return self.loss_name + " = " + tex(sp.Add(*[
                self.graph.nodes[n].expr for n in self.spec.loss.term_names]))
        every = self.outputs if len(self.outputs) <= 3 else \
            [self.outputs[0], r"\dots", self.outputs[-1]]
        return self.loss_name + " = " + fill(entry.display, index=index, out=out,
                                             target=target, outs=", ".join(every),
                                             n=len(self.outputs))

    def network_summary(self) -> list[str]:
        t = self.t["network"]
        lines = [grid.input_summary(self) if self.forms else
                 fill(t["inputs"], count=len(self.spec.input_names))]
        lines += [line for line in (layer.summary(self) for layer in self.spec.layers) if line]
        loss = self.spec.loss.kind
        lines.append(fill(t["loss"], loss=fill(t["losses"][loss], formula=self.loss_formula())))
        return lines

    def given_list(self, values: dict) -> str:
        """``x_1 = 0.15``, … as inline math, numbers as given."""
        return ", ".join(f"${name} = {self.n.given(v)}$" for name, v in values.items())

    def parameter_rows(self, names: list[str]) -> list[list[str]]:
        rows = []
        for name in names:
            frozen = self.t["backward"]["frozen_short"] if name in self.spec.frozen else ""
            rows.append([name, self.n.given(self.spec.parameters[name]), frozen])
        return rows

    def context(self) -> dict:
        solution, spec = self.solution, self.spec
        example = solution.example
        forward_values = example.values
        loss_change = solution.loss_after - solution.loss
        layers = spec.layers
        network_parts = [grid.input_part(self)] if self.forms else []
        network_parts += [p for p in (layer.network_part(self) for layer in layers) if p]
        in_parts = {n for p in network_parts for n in getattr(p, "parameters", ())}
        after_steps = {s.name: s.value for s in solution.forward_after[0]}
        t = self.t
        return {
            "t": t,
            "title": spec.title,
            "detail": self.detail,
            "summary": self.network_summary(),
            "inputs": "" if self.forms else self.given_list(example.inputs),
            "targets": self.given_list(example.targets),
            "parameters": self.parameter_rows([n for n in spec.parameters if n not in in_parts]),
            "network_parts": network_parts,
            "learning_rate": self.n.given(spec.learning_rate),
            "rate": self.symbols["rate"],
            "loss_name": self.loss_name,
            "loss_name_after": primed(self.loss_name),
            "several_examples": len(spec.examples) > 1,
            "without_bias": any(layer.without_bias for layer in layers),
            # one graph for the whole mini-batch (a layer couples its examples)
            "batch_graph": fill(self.t["document"]["batch_graph"], count=len(spec.examples),
                                reduction=self.t["document"][spec.reduction])
            if self.graph.spans_batch else "",
            "optimizer": self.optimizer.title,
            "update_rule": self.optimizer.rule(self.t, spec.optimizer_settings, self.n,
                                               self.n.given(spec.learning_rate)),
            "forward": self.forward_layers(example.forward, forward_values),
            "loss": self.loss_equations(example.forward, forward_values),
            "sections": self.sections(example),
            "update_groups": self.update_groups(),
            "forward_after": [
                [s.name, *self.n.pair(before.value, s.value)]
                for before, s in zip(example.forward, solution.forward_after[0])
                if s.layer not in self.forms],  # cells of layers shown whole: below
            "after_parts": [p for p in (layer.after_part(self, forward_values, after_steps)
                                        for layer in layers) if p],
            "loss_before": self.n.pair(solution.loss, solution.loss_after)[0],
            "loss_after": self.n.pair(solution.loss, solution.loss_after)[1],
            "loss_change": self.n.tex(abs(loss_change)),
            "loss_decreased": loss_change < 0,
            "loss_unchanged": loss_change == 0,
            "loss_diverged": not math.isfinite(solution.loss_after),
        }


def document_phrases(solution: Solution, lang: str, symbols: DocumentSymbols | None = None
                     ) -> dict:
    """The phrase table of a solution's documents, the document's own letters put in
    ({@rate} → \\eta, or another letter when a spec name is η …)."""
    symbols = symbols or DocumentSymbols(solution.graph.nodes)
    return _with_symbols(phrases(lang), {**symbols.placeholders(),
                                         "@loss": solution.spec.loss.total_name})


def _with_symbols(table: dict, symbols: dict[str, str]) -> dict:
    """The phrase table with the document's letters put in ({@rate} → \\eta …)."""
    def put(value):
        if isinstance(value, dict):
            return {k: put(v) for k, v in value.items()}
        if isinstance(value, str) and "{@" in value:
            return fill(value, **symbols)
        return value
    return put(copy.deepcopy(table))


def _nothing(*args) -> str:
    """A document's step marks (steps.py marks the steps of slides and of the page)."""
    return ""


def _unit_index(node, graph) -> int:
    siblings = [n for n in graph.nodes.values()  # of its own example in a batch graph
                if n.kind == ACTIVATION and n.layer == node.layer and n.example == node.example]
    return siblings.index(node) + 1


def _dedupe(parts: list[str]) -> list[str]:
    """Parts with a repeat of the part before left out (the same formula written twice,
    tanh(z_1) and \\tanh{(z_1)} alike)."""
    out = []
    for part in parts:
        if not out or not same_math(out[-1], part):
            out.append(part)
    return out


def render_solution(solution: Solution, fmt: str = "md", lang: str = "en", digits: int = 4,
                    decimal_comma: bool | None = None, diagram: str | None = None,
                    loss_figure: str | None = None, detail: str | None = None,
                    derivatives: str = "both") -> str:
    """The worked solution of ``solution`` as Markdown or a complete LaTeX document.

    ``diagram``: the network drawn (diagram.py), TikZ code or a Markdown image link;
    ``loss_figure``: the loss-history SVG a Markdown document links to after several steps;
    ``detail``: ``full`` or ``compact`` (default: full up to 20 parameters);
    ``derivatives``: ``course`` (as SymPy derives them, as the slides write them),
    ``textbook`` (σ(y)(1 − σ(y)), …) or ``both``."""
    text = render_template(FORMATS[fmt], solution_context(
        solution, fmt, lang, digits, decimal_comma, diagram, loss_figure, detail, derivatives))
    return tidy_tex(text) if fmt == "tex" else text


def solution_context(solution: Solution, fmt: str = "md", lang: str = "en", digits: int = 4,
                     decimal_comma: bool | None = None, diagram: str | None = None,
                     loss_figure: str | None = None, detail: str | None = None,
                     derivatives: str = "both", syntax: str | None = None,
                     marks: bool = False) -> dict:
    """What the templates of a solution walk; computed once, it can render several
    templates (an exercise sheet and its solution, sheet.py). ``syntax``: the macros'
    file when not the format's (slides: macros.beamer.j2 for LaTeX); ``marks``: the
    factors computed before are marked (SolutionView; the page links them)."""
    if decimal_comma is None:
        decimal_comma = phrases(lang)["meta"]["decimal_comma"]
    view = SolutionView(solution, lang, NumberFormat(digits, decimal_comma), detail,
                        derivatives, marks)
    context = view.context()
    context.update(lang=lang, fmt=fmt, digits=digits, macros=f"macros.{syntax or fmt}.j2",
                   diagram=diagram, step=_nothing, shows=_nothing, view=view)
    from .document_training import TrainingView  # mini-batches and loss history
    training = TrainingView(view)
    context.update(batch=training.batch(), history=training.history(fmt, loss_figure))
    return context
