"""Document stage: the worked solution as slides (beamer LaTeX, and its PDF).

The steps of the worked solution (steps.py) become frames, in the order of the document:
the network and its numbers, each forward layer, the loss, each chain-rule derivation
(in compact detail, each layer's δ's and gradients), each layer's updates, the loss
after. Frames are titled as the course's ("Rétropropagation : exemple k/N"); a frame
whose step derives gradients shows a small copy of the network at the right of its title,
every arrow of those chain rules lit (steps.Lighting, from the derivation's paths). The
text of a step is the document's, set at the document's width and scaled to the frame,
so no line runs over and nothing runs off a frame. The PDF is compiled as the
document's (pdf.py: a fresh directory, shell escape off).
"""

from __future__ import annotations

from .derivation import Solution
from .diagram import figure_for, render_diagram
from .document import solution_context
from .limits import check_frame
from .steps import Lighting, Steps
from .templating import render_template

FIGURE_HEIGHT = 1.4  # cm: the small copy of the network beside a frame's title
FIGURE_WIDEST = 6.0  # cm: a wider copy is scaled to this width instead


def render_slides(solution: Solution, lang: str = "en", digits: int = 4,
                  decimal_comma: bool | None = None, detail: str | None = None,
                  derivatives: str = "both") -> str:
    """The slides of ``solution`` as a complete beamer document."""
    steps = Steps(solution.spec.title + lang)
    diagram = figure_for(solution.spec, lang, decimal_comma, digits)
    context = solution_context(solution, "tex", lang, digits, decimal_comma, detail=detail,
                               derivatives=derivatives, syntax="beamer",
                               diagram=render_diagram(diagram, "tex"))
    context.update(steps.context())
    cut = steps.cut(render_template("solution.beamer.j2", context))
    lighting = Lighting(diagram, solution.graph)
    x0, y0, x1, y1 = diagram.bounds
    scale = min(FIGURE_HEIGHT / (y1 - y0), FIGURE_WIDEST / (x1 - x0))
    height = f"{(y1 - y0) * scale:.2f}cm"
    frames = []
    for step in cut[1:]:
        check_frame(solution.spec, step.title, step.text.count("\\\\") + 1)
        lit = lighting.chain(step.chain) if step.chain else []
        # the copy with nothing lit is set once (\networkbox), the lit elements over it
        figure = (r"\resizebox{!}{" + height + r"}{\rlap{\usebox{\networkbox}}"
                  + render_diagram(diagram, "tex", lit=lit, fit="", only=True).strip() + "}"
                  ) if lit else ""
        frames.append({"title": step.title, "text": step.text.strip(), "figure": figure,
                       "figure_width": (x1 - x0) * scale + 0.2})
    title, _, intro = cut[0].text.strip().partition("\n")
    return render_template("slides.tex.j2", {
        "t": context["t"], "title": title.strip(), "intro": intro.strip(), "steps": frames,
        "frame_title": context["t"]["slides"]["frame_title"],
        "network": render_diagram(diagram, "tex", lit=[], fit="").strip(),
        "pgfplots": bool(context.get("history"))})
