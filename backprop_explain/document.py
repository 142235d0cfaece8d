"""Document stage: turn a derived Solution into a worked solution (Markdown or LaTeX).

Python prepares every formula as LaTeX (through the SymPy printer of notation.py)
and every number as displayed text; the Jinja2 templates in ``templates/`` hold
the words and the layout. Languages are phrase files (``templates/lang/*.toml``).
This module writes the quantities node by node; a layer shown otherwise (conv, pool:
grids) gives its own parts, which its template fragment prints (layers/, ``templates/
layers/``). This module never computes a derivative: it only reads the Solution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .activations import ACTIVATIONS
from .derivation import ChainStep, Factor, Solution, UpdateStep
from .layers import grid
from .layers.grid import GridNotation
from .losses import LOSSES
from .nodes import ACTIVATION, EXAMPLE_LOSS, LOSS, LOSS_TERM
from .notation import (Equation, NumberFormat, is_atomic, partial, primed, substituted, tex,
                       tex_around)
from .optimizers import OPTIMIZERS
from .templating import fill, phrases, render_template  # noqa: F401 (also read from here)

FORMATS = {"md": "solution.md.j2", "tex": "solution.tex.j2", "html": "solution.html.j2"}


# ---------------------------------------------------------------------------
# The view of a solution that templates walk


@dataclass
class FactorView:
    symbol: str  # \frac{∂a}{∂b}
    already_computed: bool
    value: str
    steps: Equation | None = None  # its derivation, when shown for the first time


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


class SolutionView:
    """Formulas and numbers of a Solution, formatted for one language and rounding."""

    def __init__(self, solution: Solution, lang: str, numbers: NumberFormat):
        self.solution = solution
        self.spec = solution.spec
        self.graph = solution.graph
        self.t = phrases(lang)
        self.n = numbers
        self.loss_name = self.spec.loss.total_name
        self.optimizer = OPTIMIZERS[self.spec.optimizer]
        self._written_in_full = False  # a tabular optimizer's update, written out once
        # what layers show beyond the chain rule (derivation.layer_forms), by index; those
        # shown as a whole (conv, pool: grids) rather than node by node: self.forms
        self.layer_forms = {f.layer: f for f in solution.example.convolutions}
        self.forms = {index: f for index, f in self.layer_forms.items()
                      if self.spec.layers[index - 1].shows_grids}
        self.grids = GridNotation(self) if self.forms else None
        self._unsubstituted = []  # factors whose derivative gets its numbers last (context)
        self._inputs = {}
        names = list(self.spec.input_names)
        for layer in self.spec.layers:
            self._inputs[layer.index] = names
            names = layer.outputs(names)

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
        parts.append(tex(node.expr, wrap=True))
        numbers = substituted(node.expr, values, self.n, wrap=True)
        if numbers != parts[-1]:
            parts.append(numbers)
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

    # Backward pass ------------------------------------------------------
    def factor(self, factor: Factor, values) -> FactorView:
        symbol = partial(factor.numerator, factor.denominator)
        value = self.n.tex(factor.value)
        view = FactorView(symbol, factor.already_computed, value)
        if factor.kind == "local" and not factor.already_computed:
            steps = [r"\frac{\partial}{\partial " + factor.denominator + r"}\left("
                     + tex_around(factor.of_expr, self.graph.symbol(factor.denominator))
                     + r"\right)", tex(factor.derivative)]
            self._unsubstituted.append((view, factor.derivative, values, steps))
        return view

    def _substitute(self) -> None:
        """Each derivative shown, with the numbers put in: done after every derivative is
        taken (context), since a substitution enters sympy.evaluate(False), which empties
        SymPy's cache, and a derivative taken after that is several times slower."""
        for view, derivative, values, steps in self._unsubstituted:
            if not is_atomic(derivative):
                numbers = substituted(derivative, values, self.n)
                if numbers != steps[-1]:
                    steps.append(numbers)
            steps.append(view.value)
            view.steps = Equation(view.symbol, _dedupe(steps))
        self._unsubstituted.clear()

    def chain(self, step: ChainStep, values) -> ChainView:
        products, numbers, factors = [], [], []
        for term in step.terms:
            products.append(r" \cdot ".join(partial(f.numerator, f.denominator)
                                            for f in term.factors))
            numbers.append(r" \cdot ".join(tex(self.n.placeholder(f.value))
                                           for f in term.factors))
            factors += [self.factor(f, values) for f in term.factors]
        single = len(step.terms) == 1 and len(step.terms[0].factors) == 1
        return ChainView(step.kind, step.target, partial(self.loss_name, step.target),
                         " + ".join(products) or "0", factors,
                         "" if single else (" + ".join(numbers) or "0"),
                         self.n.tex(step.value), step.frozen, len(step.terms))

    def update(self, update: UpdateStep) -> list[Equation]:
        """One parameter's update written out (the optimizer's state first, if any)."""
        if update.frozen:
            return [Equation(primed(update.parameter), [update.parameter,
                                                        self.n.tex(update.old)],
                             note=self.t["backward"]["frozen"])]
        return self.optimizer.equations(update, self.n, self.loss_name,
                                        self.n.tex(self.spec.learning_rate),
                                        self.spec.optimizer_settings)

    def updates(self, updates: list[UpdateStep]) -> dict:
        """A group of updates: every one written out, or, for an optimizer that keeps
        several numbers per parameter (Adam), the first written out in full once in the
        document, then a table of the group."""
        rule = self.optimizer.rule(self.t, self.spec.optimizer_settings, self.n,
                                   self.n.tex(self.spec.learning_rate))
        if not self.optimizer.tabular:
            return {"updates": [eq for u in updates for eq in self.update(u)],
                    "update_table": None, "update_rule": rule}
        equations = []
        first = next((u for u in updates if not u.frozen), None)
        if first is not None and not self._written_in_full:
            self._written_in_full = True
            equations = self.update(first)
        else:
            rule = []  # said with the update written in full
        header, rows = self.optimizer.table(self.t, updates, self.n)
        return {"updates": equations, "update_rule": rule,
                "update_table": {"intro": self.t["optimizers"]["table"], "header": header,
                                 "rows": rows, "columns": tuple(range(len(header)))}
                if rows else None}

    def section_updates(self, section) -> dict:
        """The updates shown right after a layer's gradients (one example; with several,
        they follow the combination of the examples' gradients: template block batch)."""
        if len(self.solution.examples) != 1:
            return {"updates": [], "update_table": None, "update_rule": []}
        return self.updates(section.updates)

    @property
    def plain_update(self) -> bool:
        """Whether every update is θ − η·∂E/∂θ (a layer may show its updates as grids)."""
        return self.optimizer.plain(self.spec.optimizer_settings)

    def sections(self, example) -> list[dict]:
        """Each layer's backward section (a layer with parameters), as its kind shows it."""
        return [{"label": self.layer_label(section.layer), "update_table": None, "update_rule": []}
                | self.spec.layers[section.layer - 1].section(self, section, example)
                for section in example.sections]

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

    def network_summary(self) -> list[str]:
        t = self.t["network"]
        lines = [grid.input_summary(self) if self.forms else
                 fill(t["inputs"], count=len(self.spec.input_names))]
        lines += [line for line in (layer.summary(self) for layer in self.spec.layers) if line]
        loss = self.spec.loss.kind
        lines.append(fill(t["loss"], loss=fill(t["losses"][loss], formula=LOSSES[loss].display)))
        return lines

    def parameter_rows(self, values: dict) -> list[list[str]]:
        rows = []
        for name, value in values.items():
            frozen = self.t["backward"]["frozen_short"] if name in self.spec.frozen else ""
            rows.append([name, self.n.tex(value), frozen])
        return rows

    def context(self) -> dict:
        solution, spec = self.solution, self.spec
        example = solution.example
        forward_values = example.values
        after_values = {s.name: s.value for s in solution.forward_after[0]}
        after_values.update(example.inputs)
        after_values.update(example.targets)
        after_values.update(solution.parameters_after)
        loss_change = solution.loss_after - solution.loss
        layers = spec.layers
        in_grids = {n for layer in layers if layer.index in self.forms
                    for n in layer.parameter_names()}  # shown with their layer instead
        network_parts = [grid.input_part(self)] if self.forms else []
        network_parts += [p for p in (layer.network_part(self) for layer in layers) if p]
        after_steps = {s.name: s.value for s in solution.forward_after[0]}
        context = {
            "t": self.t,
            "title": spec.title,
            "summary": self.network_summary(),
            "inputs": [] if self.forms else [[name, self.n.tex(v)]
                                             for name, v in example.inputs.items()],
            "targets": [[name, self.n.tex(v)] for name, v in example.targets.items()],
            "parameters": self.parameter_rows(
                {k: v for k, v in spec.parameters.items() if k not in in_grids}),
            "network_parts": network_parts,
            "learning_rate": self.n.tex(spec.learning_rate),
            "loss_name": self.loss_name,
            "loss_name_after": primed(self.loss_name),
            "several_examples": len(spec.examples) > 1,
            # one graph for the whole mini-batch (a layer couples its examples)
            "batch_graph": fill(self.t["document"]["batch_graph"], count=len(spec.examples),
                                reduction=self.t["document"][spec.reduction])
            if self.graph.spans_batch else "",
            "optimizer": self.optimizer.title,
            "forward": self.forward_layers(example.forward, forward_values),
            "loss": self.loss_equations(example.forward, forward_values),
            "sections": self.sections(example),
            "parameters_after": [
                [primed(u.parameter), self.n.tex_change(u.old, u.new), self.n.tex(u.new - u.old)]
                for u in solution.updates],
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
        self._substitute()
        return context


def _unit_index(node, graph) -> int:
    siblings = [n for n in graph.nodes.values()  # of its own example in a batch graph
                if n.kind == ACTIVATION and n.layer == node.layer and n.example == node.example]
    return siblings.index(node) + 1


def _dedupe(parts: list[str]) -> list[str]:
    out = []
    for part in parts:
        if not out or out[-1] != part:
            out.append(part)
    return out


def render_solution(solution: Solution, fmt: str = "md", lang: str = "en", digits: int = 4,
                    decimal_comma: bool | None = None, diagram: str | None = None,
                    loss_figure: str | None = None) -> str:
    """The worked solution of ``solution`` as Markdown or a complete LaTeX document.

    ``diagram``: the network drawn (diagram.py), TikZ code or a Markdown image link;
    ``loss_figure``: the loss-history SVG a Markdown document links to after several steps."""
    return render_template(FORMATS[fmt], solution_context(solution, fmt, lang, digits,
                                                          decimal_comma, diagram, loss_figure))


def solution_context(solution: Solution, fmt: str = "md", lang: str = "en", digits: int = 4,
                     decimal_comma: bool | None = None, diagram: str | None = None,
                     loss_figure: str | None = None) -> dict:
    """What the templates of a solution walk; computed once, it can render several
    templates (an exercise sheet and its solution, sheet.py)."""
    if decimal_comma is None:
        decimal_comma = phrases(lang)["meta"]["decimal_comma"]
    view = SolutionView(solution, lang, NumberFormat(digits, decimal_comma))
    context = view.context()
    context.update(lang=lang, fmt=fmt, digits=digits, macros=f"macros.{fmt}.j2",
                   diagram=diagram)
    from .document_training import TrainingView  # mini-batches and loss history
    training = TrainingView(view)
    context.update(batch=training.batch(), history=training.history(fmt, loss_figure))
    return context
