"""Document stage: the network drawn as in the course's figures.

Dense layers are columns of neurons: the inputs (name inside, value on the left), each
layer's units (the activation's name inside, the bias above), the weights' values on the
edges, and the targets on the right of the outputs. Convolutional layers are grids: the
input image, ∗ the filter(s), = the feature map, then the pooled map; a flatten layer
feeds the cells' names to the first dense layer's column.

Only the *given* numbers are written (inputs, parameters, targets); every computed
quantity appears by its name, so the same figure serves an exercise and its solution.

This module assembles the figure: each layer kind draws its part (``draw``, layers/)
on a drawing.Sketch, in four primitives (coordinates in centimetres, y upwards):
circles, lines, texts and grid cells. The templates
``diagram.tikz.j2`` (LaTeX/PDF) and ``diagram.svg.j2`` (a standalone SVG for Markdown:
GitHub shows a relative ``![](file.svg)`` image but strips inline SVG) draw them.
"""

from __future__ import annotations

from .drawing import Diagram, Sketch, svg_name  # noqa: F401 (svg_name: also read from here)
from .notation import NumberFormat
from .spec import NetworkSpec
from .templating import environment, extra_phrases, phrases

# ---------------------------------------------------------------------------
# Layout


def network_diagram(spec: NetworkSpec, numbers: NumberFormat | None = None,
                    example: int = 0, panel_words: dict | None = None,
                    frame: tuple[float, float] | None = None) -> Diagram:
    """The layout of the spec's network with its given numbers (one example's inputs and
    targets), each layer drawing its part (layers/). ``panel_words`` captions the grids of
    a CNN (input, filter, feature map…: the [diagram] phrases; English by default);
    ``frame``: (width, height) in cm of a slide it should fill (Sketch.finish)."""
    values = dict(spec.parameters)
    sample = spec.examples[example]
    values.update(zip(spec.input_names, sample.inputs))
    sketch = Sketch(spec, values, numbers or NumberFormat(3),
                    panel_words or extra_phrases("en")["diagram"])
    for layer in spec.layers:
        layer.draw(sketch)
    sketch.targets(spec.loss.target_names, sample.targets)
    return sketch.finish(frame)


# ---------------------------------------------------------------------------
# Rendering


def render_diagram(diagram: Diagram, fmt: str, **options) -> str:
    """TikZ code (``tex``) or a standalone SVG document (``svg``). ``options``: the SVG
    for a page (``interactive``, with its ``alt`` text); a TikZ picture for a slide
    (``lit``: the elements lit, drawing.Lit; ``height``: scaled to it, unframed)."""
    template = {"tex": "diagram.tikz.j2", "svg": "diagram.svg.j2"}[fmt]
    width, height = diagram.svg_size()
    defaults = {"interactive": False, "alt": "", "lit": None, "fit": None, "only": False}
    return environment().get_template(template).render(
        d=diagram, width=width, height=height, **(defaults | options))


def figure_for(spec: NetworkSpec, lang: str = "en", decimal_comma: bool | None = None,
               digits: int = 4, frame: tuple[float, float] | None = None) -> Diagram:
    """The layout of the network of ``spec`` for a document in ``lang`` (``frame``: for a
    slide of that width and height in cm)."""
    if decimal_comma is None:
        decimal_comma = phrases(lang)["meta"]["decimal_comma"]
    words = extra_phrases(lang)["diagram"]
    return network_diagram(spec, NumberFormat(digits, decimal_comma), panel_words=words,
                           frame=frame)


def diagram_for(spec: NetworkSpec, fmt: str, lang: str = "en",
                decimal_comma: bool | None = None, digits: int = 4) -> str:
    """The network of ``spec`` drawn for a document in ``lang``: TikZ or SVG text."""
    return render_diagram(figure_for(spec, lang, decimal_comma, digits), fmt)


def document_figure(spec: NetworkSpec, fmt: str, lang: str = "en",
                    svg_path: str | None = None, decimal_comma: bool | None = None) -> str:
    """What a document shows of the network: TikZ code in LaTeX; in Markdown an image
    link to ``svg_path`` (the SVG written beside it), or nothing when there is no file."""
    if fmt == "tex":
        return diagram_for(spec, "tex", lang, decimal_comma)
    if fmt == "md" and svg_path:
        alt = extra_phrases(lang)["diagram"]["alt"]
        return f"![{alt}]({svg_path})"
    if fmt == "html" and svg_path:  # a Moodle question: the SVG file embedded beside it
        from html import escape
        alt = escape(extra_phrases(lang)["diagram"]["alt"])
        return f'<p><img src="{escape(svg_path)}" alt="{alt}" /></p>'
    return ""
