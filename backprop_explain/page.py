"""Document stage: the worked solution as one interactive page that works offline.

One self-contained HTML file: the network drawn (the SVG of diagram.py, each element
saying what it is) at the top, the worked solution below, cut into its steps (steps.py),
its formulas as MathML written now (mathml.py), a small script and style sheet inline,
nothing fetched (a Content-Security-Policy allowing only these, by their hashes).

The script reads what each element lights and where it leads from a JSON block written
here: clicking a parameter, a unit, a cell or a target scrolls to its derivation and
lights every arrow of its chain-rule paths (steps.Lighting, from the derivation's own
paths); hovering a factor recalled as already computed outlines the step that computed
it; a step mode reveals the steps one by one (buttons, arrow keys), as slides do.
Printed, every step shows and the buttons do not.
"""

from __future__ import annotations

import base64
import hashlib
import json

from .derivation import Solution
from .diagram import figure_for, render_diagram
from .document import solution_context
from .mathml import html_math
from .nodes import TARGET
from .steps import Lighting, Steps
from .templating import extra_phrases, phrases, render_template, templates_dir


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def _json_block(data) -> str:
    """JSON inside a <script> element: no "</" can close it, no "<!--" open a comment."""
    return json.dumps(data, ensure_ascii=False, sort_keys=True).replace("<", "\\u003c")


def render_page(solution: Solution, lang: str = "en", digits: int = 4,
                decimal_comma: bool | None = None, detail: str | None = None,
                derivatives: str = "both") -> str:
    """The interactive page of ``solution`` (a complete HTML document)."""
    steps = Steps(solution.spec.title + lang)
    context = solution_context(solution, "html", lang, digits, decimal_comma, detail=detail,
                               derivatives=derivatives, marks=True)
    context.update(steps.context())
    cut = steps.cut(render_template("solution.html.j2", context))
    view = context["view"]
    words = phrases(lang)["page"]
    diagram = figure_for(solution.spec, lang, decimal_comma, digits)
    lighting = Lighting(diagram, solution.graph)

    sections, anchors = [], {}
    for index, step in enumerate(cut):
        for target in step.targets:
            anchors.setdefault(target, index)
        sections.append({"kind": step.kind, "title": step.title, "html": html_math(step.text),
                         "lit": lighting.chain(step.chain)})
    loss_step = next((k for k, s in enumerate(cut) if s.kind == "loss"), -1)

    def leads_to(name: str) -> int:
        """The step deriving ∂E/∂name, or ∂E/∂ what feeds it alone (a pre-activation)."""
        if name in anchors:
            return anchors[name]
        node = solution.graph.nodes.get(name)
        for parent in (node.parents if node is not None else []):
            if parent in anchors and len(solution.graph.children[parent]) == 1:
                return anchors[parent]
        return -1

    clicks = {}
    for element_id, name in _clickable(diagram):
        node = solution.graph.nodes.get(name)
        if node is None:
            continue
        if node.kind == TARGET:  # a target stands for its loss term
            lit = [i for term in solution.graph.children[name] for i in lighting.from_node(term)]
            lit += [i for k, line in enumerate(diagram.lines) if line.target == name
                    for i in (f"e{k}", f"h{k}")]
            clicks[element_id] = {"step": loss_step, "lit": list(dict.fromkeys(lit + [element_id]))}
            continue
        step = leads_to(name)
        chain = [s for s in cut[step].chain if s.target == name] if step >= 0 else []
        clicks[element_id] = {"step": step, "lit": lighting.chain(chain) if chain
                              else lighting.from_node(name)}
    known = [anchors.get(view.derived_in.get(key, ""), -1) for key in view.known]

    page_words = dict(words)
    data = {"clicks": clicks, "lit": [s["lit"] for s in sections], "known": known,
            "words": {k: page_words[k] for k in ("step_of", "computed_in")}}
    style = (templates_dir() / "page.css").read_text(encoding="utf-8")
    script = (templates_dir() / "page.js").read_text(encoding="utf-8")
    svg = render_diagram(diagram, "svg", interactive=True,
                         alt=extra_phrases(lang)["diagram"]["alt"])
    return render_template("page.html.j2", {
        "lang": lang, "title": solution.spec.title, "t": context["t"], "words": page_words,
        "sections": sections, "svg": svg, "style": style, "script": script,
        "data": _json_block(data),
        "csp": f"default-src 'none'; style-src {_csp_hash(style)}; "
               f"script-src {_csp_hash(script)}; base-uri 'none'; form-action 'none'",
    })


def _clickable(diagram) -> list[tuple[str, str]]:
    """(SVG id, the quantity it stands for) of every element a reader may click: units,
    cells, given values (weights, biases, targets)."""
    out = [(f"n{k}", c.name) for k, c in enumerate(diagram.circles) if c.name]
    out += [(f"c{k}", c.name) for k, c in enumerate(diagram.cells) if c.name]
    out += [(f"t{k}", t.label.ref) for k, t in enumerate(diagram.texts) if t.label.ref]
    return out
