"""Document stage: turn a derived Solution into a worked solution (Markdown or LaTeX).

Python prepares every formula as LaTeX (through the SymPy printer of notation.py)
and every number as displayed text; the Jinja2 templates in ``templates/`` hold
the words and the layout. Languages are phrase files (``templates/lang/*.toml``).
This module never computes a derivative: it only reads the Solution.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import jinja2

from .derivation import ChainStep, Factor, Solution, UpdateStep
from .document_cnn import CnnView
from .graph import ACTIVATION, LOSS, LOSS_TERM
from .layers.activations import DISPLAY
from .escaping import md_code, visible
from .notation import NumberFormat, is_atomic, partial, primed, substituted, tex, tex_around

FORMATS = {"md": "solution.md.j2", "tex": "solution.tex.j2"}


# ---------------------------------------------------------------------------
# Templates and phrases


def templates_dir() -> Path:
    """The installed ``backprop_explain.templates`` package, or ``templates/`` in a checkout."""
    try:
        return Path(str(resources.files("backprop_explain.templates")))
    except ModuleNotFoundError:  # pragma: no cover - running from a bare checkout
        return Path(__file__).resolve().parent.parent / "templates"


@lru_cache(maxsize=None)
def phrases(lang: str) -> dict:
    """The phrase file of a language; English fills any phrase a translation lacks."""
    def read(code):
        with open(templates_dir() / "lang" / f"{code}.toml", "rb") as handle:
            return tomllib.load(handle)
    table = read("en")
    if lang != "en":
        _deep_update(table, read(lang))
    return table


def _deep_update(base: dict, extra: dict) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value


@lru_cache(maxsize=None)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["fill"] = fill
    env.filters["tex_escape"] = tex_escape
    env.filters["md_escape"] = md_escape
    env.filters["md_code"] = md_code
    env.filters["visible"] = visible
    return env


def fill(phrase: str, **values) -> str:
    """Put values into a phrase's {placeholders}; other braces (LaTeX) are left alone."""
    for key, value in values.items():
        phrase = phrase.replace("{" + key + "}", str(value))
    return phrase


_TEX_SPECIALS = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
    "^": r"\textasciicircum{}", "_": r"\_", "~": r"\textasciitilde{}", "%": r"\%",
}


def tex_escape(text: str) -> str:
    """Free text from a spec, made inert in LaTeX: it prints, it never runs (control
    characters become "?": TeX would stop on them)."""
    return "".join(_TEX_SPECIALS.get(char, char) for char in visible(text, "?"))


def md_escape(text: str) -> str:
    """Free text from a spec, shown literally in Markdown (no markup, no HTML, no entity,
    no math), on one line."""
    return re.sub(r"([\\`*_\[\]#|<>$~&!])", r"\\\1", visible(text))


# ---------------------------------------------------------------------------
# The view of a solution that templates walk


@dataclass
class Equation:
    """lhs = rhs[0] = rhs[1] = …, every part LaTeX."""

    lhs: str
    rhs: list[str]
    note: str = ""


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
        self.cnn = CnnView(self) if solution.convolutions else None  # conv/pool layers as grids

    # Forward pass -------------------------------------------------------
    def forward_equation(self, step, values) -> Equation:
        node = self.graph.nodes[step.name]
        parts = []
        if node.kind == ACTIVATION:
            args = [tex(self.graph.symbol(p)) for p in node.parents]
            shown = DISPLAY[node.activation].format(arg=", ".join(args),
                                                    index=_unit_index(node, self.graph))
            if node.activation != "identity":
                parts.append(shown)
        parts.append(tex(node.expr, wrap=True))
        numbers = substituted(node.expr, values, self.n, wrap=True)
        if numbers != parts[-1]:
            parts.append(numbers)
        parts.append(self.n.tex(values[step.name]))
        return Equation(step.name, _dedupe(parts))

    def forward_layers(self, steps, values) -> list[dict]:
        """Forward equations grouped by layer, in order."""
        groups = []
        for step in steps:
            if step.kind in (LOSS_TERM, LOSS):
                continue
            if self.cnn and step.layer in self.cnn.forms:  # one group of grids per layer
                if not groups or groups[-1]["layer"] != step.layer:
                    groups.append(self.cnn.forward_group(step.layer, values))
                continue
            if not groups or groups[-1]["layer"] != step.layer:
                groups.append({"layer": step.layer, "label": self.layer_label(step.layer),
                               "equations": []})
            groups[-1]["equations"].append(self.forward_equation(step, values))
        return groups

    def loss_equations(self, steps, values) -> list[Equation]:
        return [self.forward_equation(s, values) for s in steps if s.kind in (LOSS_TERM, LOSS)]

    # Backward pass ------------------------------------------------------
    def factor(self, factor: Factor, values) -> FactorView:
        symbol = partial(factor.numerator, factor.denominator)
        value = self.n.tex(factor.value)
        view = FactorView(symbol, factor.already_computed, value)
        if factor.kind == "local" and not factor.already_computed:
            steps = [r"\frac{\partial}{\partial " + factor.denominator + r"}\left("
                     + tex_around(factor.of_expr, self.graph.symbol(factor.denominator))
                     + r"\right)", tex(factor.derivative)]
            if not is_atomic(factor.derivative):
                numbers = substituted(factor.derivative, values, self.n)
                if numbers != steps[-1]:
                    steps.append(numbers)
            steps.append(value)
            view.steps = Equation(symbol, _dedupe(steps))
        return view

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

    def update(self, update: UpdateStep) -> Equation:
        rate = self.n.tex(self.spec.learning_rate)
        grad = tex(self.n.placeholder(update.gradient))
        if update.frozen:
            return Equation(primed(update.parameter), [update.parameter, self.n.tex(update.old)],
                            note=self.t["backward"]["frozen"])
        if update.velocity is not None:
            return Equation(primed(update.parameter), [
                update.parameter + r" - \eta \cdot v_{" + update.parameter + "}",
                f"{self.n.tex(update.old)} - {rate} \\cdot "
                f"{tex(self.n.placeholder(update.velocity))}",
                self.n.tex_change(update.old, update.new)])
        return Equation(primed(update.parameter), [
            update.parameter + r" - \eta \cdot " + partial(self.loss_name, update.parameter),
            f"{self.n.tex(update.old)} - {rate} \\cdot {grad}",
            self.n.tex_change(update.old, update.new)])

    def sections(self, example) -> list[dict]:
        out = []
        for section in example.sections:
            if self.cnn and section.layer in self.cnn.forms:  # grids, not cell by cell
                out.append({"label": self.layer_label(section.layer), "updates": [],
                            "steps": [self.chain(s, example.values)
                                      for s in self.cnn.other_steps(section)],
                            "cnn": self.cnn.backward_items(section, example)})
                continue
            out.append({
                "label": self.layer_label(section.layer),
                "steps": [self.chain(s, example.values) for s in section.steps],
                # several examples: the updates follow their combination (template block batch)
                "updates": ([self.update(u) for u in section.updates]
                            if len(self.solution.examples) == 1 else []),
            })
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
        return fill(t.get(f"{layer.kind}_layer", t["hidden_layer"]), n=index,
                    activation=activation)

    def network_summary(self) -> list[str]:
        t = self.t["network"]
        lines = [self.cnn.input_summary() if self.cnn else
                 fill(t["inputs"], count=len(self.spec.input_names))]
        for layer in self.spec.layers:
            if layer.kind == "dense":
                lines.append(fill(
                    t["dense_summary"], label=self.layer_label(layer.index), units=layer.units,
                    activation=t["activations"][layer.activation]))
            elif self.cnn:
                lines.append(self.cnn.summary_line(layer))
        lines.append(fill(t["loss"], loss=t["losses"][self.spec.loss.kind]))
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
        return {
            "t": self.t,
            "title": spec.title,
            "summary": self.network_summary(),
            "inputs": [] if self.cnn else [[name, self.n.tex(v)]
                                           for name, v in example.inputs.items()],
            "targets": [[name, self.n.tex(v)] for name, v in example.targets.items()],
            "parameters": self.parameter_rows(
                {k: v for k, v in spec.parameters.items()
                 if not self.cnn or k not in self.cnn.filter_names()}),
            "cnn_network": self.cnn.input_items() + self.cnn.parameter_items() if self.cnn else [],
            "learning_rate": self.n.tex(spec.learning_rate),
            "loss_name": self.loss_name,
            "loss_name_after": primed(self.loss_name),
            "several_examples": len(solution.examples) > 1,
            "momentum": self.n.tex(spec.momentum) if spec.momentum else "",
            "forward": self.forward_layers(example.forward, forward_values),
            "loss": self.loss_equations(example.forward, forward_values),
            "sections": self.sections(example),
            "parameters_after": [
                [primed(u.parameter), self.n.tex_change(u.old, u.new), self.n.tex(u.new - u.old)]
                for u in solution.updates],
            "forward_after": [
                [s.name, *self.n.pair(before.value, s.value)]
                for before, s in zip(example.forward, solution.forward_after[0])
                if not self.cnn or s.layer not in self.cnn.forms],  # CNN cells: grids below
            "cnn_after": self.cnn.after_items(solution.forward_after[0]) if self.cnn else [],
            "loss_before": self.n.pair(solution.loss, solution.loss_after)[0],
            "loss_after": self.n.pair(solution.loss, solution.loss_after)[1],
            "loss_change": self.n.tex(abs(loss_change)),
            "loss_decreased": loss_change < 0,
            "loss_unchanged": loss_change == 0,
            "loss_diverged": not math.isfinite(solution.loss_after),
        }


def _unit_index(node, graph) -> int:
    siblings = [n for n in graph.nodes.values()
                if n.kind == ACTIVATION and n.layer == node.layer]
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


def render_template(name: str, context: dict) -> str:
    text = environment().get_template(name).render(**context)
    return re.sub(r"\n{3,}", "\n\n", text).lstrip("\n")

