"""Document stage: the network drawn as in the course's figures.

Dense layers are columns of neurons: the inputs (name inside, value on the left), each
layer's units (the activation's name inside, the bias above), the weights' values on the
edges, and the targets on the right of the outputs. Convolutional layers are grids: the
input image, ⋆ the filter(s), = the feature map, then the pooled map; a flatten layer
feeds the cells' names to the first dense layer's column.

Only the *given* numbers are written (inputs, parameters, targets); every computed
quantity appears by its name, so the same figure serves an exercise and its solution.

This module does the layout (coordinates in centimetres, y upwards) and reduces the
picture to four primitives: circles, lines, texts and grid cells. The templates
``diagram.tikz.j2`` (LaTeX/PDF) and ``diagram.svg.j2`` (a standalone SVG for Markdown:
GitHub shows a relative ``![](file.svg)`` image but strips inline SVG) draw them.
"""

from __future__ import annotations

from .drawing import (CELL, COLUMN_GAP, PANEL_GAP, RADIUS, ROW_GAP, Cell, Circle, Diagram, Label,
                      Line, Text, plain_text, caption_label, name_label, number_label,
                      svg_name)  # noqa: F401 (svg_name: also read from here)
from .notation import NumberFormat
from .spec import NetworkSpec
from .templating import environment, extra_phrases, phrases
from .validate import flatten_names

# ---------------------------------------------------------------------------
# Layout


def network_diagram(spec: NetworkSpec, numbers: NumberFormat | None = None,
                    example: int = 0, panel_words: dict | None = None) -> Diagram:
    """The layout of the spec's network with its given numbers (one example's inputs and
    targets). ``panel_words`` captions the grids of a CNN (input, filter, feature map…)."""
    numbers = numbers or NumberFormat(3)
    words = {"input": "input", "filter": "filter", "feature_map": "feature map",
             "maxpool2d": "max pooling", "avgpool2d": "average pooling"}
    words.update(panel_words or {})
    diagram = Diagram()
    values = dict(spec.parameters)
    sample = spec.examples[example]
    values.update(zip(spec.input_names, sample.inputs))
    dense_start = next(k for k, layer in enumerate(spec.layers) if layer.kind == "dense")
    x = 0.0
    if dense_start:  # grids first: the convolutional part
        x, column = _grid_part(diagram, spec, spec.layers[:dense_start], values, numbers,
                               words)
        first_column = [(name, None) for name in column]
    else:
        first_column = [(name, values[name]) for name in spec.input_names]
    _dense_part(diagram, spec, spec.layers[dense_start:], first_column, x, values, numbers,
                sample.targets)
    return diagram


def _column_ys(count: int, gap: float = ROW_GAP) -> list[float]:
    top = (count - 1) * gap / 2
    return [top - k * gap for k in range(count)]


def _dense_part(diagram, spec, layers, first_column, x0, values, numbers, targets):
    ys = _column_ys(len(first_column))
    previous = []
    for (name, value), y in zip(first_column, ys):
        diagram.circles.append(Circle(x0, y, RADIUS, name_label(name), "input"))
        if value is not None:
            diagram.texts.append(Text(x0 - RADIUS - 0.15, y, number_label(value, numbers),
                                      "east"))
        previous.append((x0, y))
    x = x0
    for depth, layer in enumerate(layers):
        x += COLUMN_GAP
        ys = _column_ys(layer.units)
        current = []
        last = depth == len(layers) - 1
        for j, y in enumerate(ys):
            for i, (px, py) in enumerate(previous):
                _edge(diagram, (px, py), (x, y), i, len(previous),
                      number_label(values[layer.weight_names[j][i]], numbers))
            diagram.circles.append(Circle(x, y, RADIUS, name_label(layer.activation_names[j]),
                                          "output" if last else "unit"))
            if layer.bias_names:
                bias = layer.bias_names[j]
                diagram.texts.append(Text(x, y + RADIUS + 0.3,
                                          number_label(values[bias], numbers, bias),
                                          size="tiny"))
            current.append((x, y))
        previous = current
    for (px, py), name, value in zip(previous, spec.loss.target_names, targets):
        diagram.lines.append(Line(px + RADIUS, py, px + RADIUS + 0.9, py))
        diagram.texts.append(Text(px + RADIUS + 1.0, py, number_label(value, numbers, name),
                                  "west"))


def _edge(diagram, start, end, i, fan_in, label):
    """An arrow between two neurons, its weight written on it; labels of edges entering the
    same neuron sit at different distances along them, so they never overlap."""
    (x1, y1), (x2, y2) = start, end
    dx, dy = x2 - x1, y2 - y1
    length = (dx * dx + dy * dy) ** 0.5
    ux, uy = dx / length, dy / length
    a = (x1 + RADIUS * ux, y1 + RADIUS * uy)
    b = (x2 - RADIUS * ux, y2 - RADIUS * uy)
    diagram.lines.append(Line(a[0], a[1], b[0], b[1]))
    t = 0.22 + 0.5 * (i / (fan_in - 1) if fan_in > 1 else 0.5)
    diagram.texts.append(Text(a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]), label,
                              boxed=True, size="tiny"))


def _grid(diagram, x, y_top, names_or_values, rows, cols, numbers, given, caption):
    """One grid of rows×cols cells with its top-left corner at (x, y_top)."""
    for r in range(rows):
        for s in range(cols):
            item = names_or_values[r * cols + s]
            label = number_label(item, numbers) if given else name_label(item)
            diagram.cells.append(Cell(x + s * CELL, y_top - (r + 1) * CELL, CELL, label, given))
    if caption:
        diagram.texts.append(Text(x + cols * CELL / 2, y_top + 0.35,
                                  caption_label(caption), size="tiny"))
    return cols * CELL


def _stack(diagram, x, blocks, numbers):
    """Grids one above the other, centred on y = 0; returns the width used."""
    heights = [rows * CELL for _, rows, _, _, _ in blocks]
    total = sum(heights) + 0.8 * (len(blocks) - 1)
    y = total / 2
    width = 0.0
    for (items, rows, cols, given, caption), height in zip(blocks, heights):
        width = max(width, _grid(diagram, x, y, items, rows, cols, numbers, given, caption))
        y -= height + 0.8
    return width


def _operator(diagram, x, symbol_tex, symbol_svg):
    diagram.texts.append(Text(x + PANEL_GAP / 2, 0.0, Label(symbol_tex, symbol_svg, 1)))
    return x + PANEL_GAP


def _grid_part(diagram, spec, layers, values, numbers, words):
    """Input grids, filters, feature maps, pooled maps, left to right; returns the x where
    the dense part starts and the names feeding it."""
    channels, rows, cols = spec.input_shape
    per_channel = rows * cols
    names = spec.input_names
    blocks = [([values[n] for n in names[c * per_channel:(c + 1) * per_channel]], rows, cols,
               True, words["input"] if c == 0 else "") for c in range(channels)]
    x = _stack(diagram, 0.0, blocks, numbers)
    current = names
    for layer in layers:
        if layer.kind == "conv2d":
            x = _operator(diagram, x, r"\star", "⋆")
            kh, kw = layer.kernel
            filters = []
            for o, per_out in enumerate(layer.filter_names):
                for c, grid in enumerate(per_out):
                    flat = flatten_names(grid)
                    filters.append(([values[n] for n in flat], kh, kw, True,
                                    words["filter"] if not filters else ""))
            x += _stack(diagram, x, filters, numbers)
            if layer.bias_names:  # one bias per output channel, listed one under the other
                x = _operator(diagram, x, "+", "+")
                ys = _column_ys(len(layer.bias_names), 0.6)
                for bias, y in zip(layer.bias_names, ys):
                    diagram.texts.append(Text(x, y, number_label(values[bias], numbers, bias),
                                              "west", size="small"))
                x += 0.25 * max(len(plain_text(b)) + 8 for b in layer.bias_names)
            x = _operator(diagram, x, "=", "=")
            current = layer.activation_names
            x += _maps(diagram, x, current, layer.out_shape, numbers, words["feature_map"])
        elif layer.kind in ("maxpool2d", "avgpool2d"):
            x = _operator(diagram, x, r"\rightarrow", "→")
            current = layer.output_names
            x += _maps(diagram, x, current, layer.out_shape, numbers, words[layer.kind])
        elif layer.kind == "flatten":
            pass  # the next column lists the cells in flatten order
    x += COLUMN_GAP * 0.6
    return x, list(current)


def _maps(diagram, x, names, shape, numbers, caption):
    channels, rows, cols = shape
    per = rows * cols
    blocks = [(names[c * per:(c + 1) * per], rows, cols, False, caption if c == 0 else "")
              for c in range(channels)]
    return _stack(diagram, x, blocks, numbers)


# ---------------------------------------------------------------------------
# Rendering


def render_diagram(diagram: Diagram, fmt: str) -> str:
    """TikZ code (``tex``) or a standalone SVG document (``svg``)."""
    template = {"tex": "diagram.tikz.j2", "svg": "diagram.svg.j2"}[fmt]
    width, height = diagram.svg_size()
    return environment().get_template(template).render(d=diagram, width=width, height=height)


def diagram_for(spec: NetworkSpec, fmt: str, lang: str = "en",
                decimal_comma: bool | None = None, digits: int = 4) -> str:
    """The network of ``spec`` drawn for a document in ``lang``: TikZ or SVG text."""
    if decimal_comma is None:
        decimal_comma = phrases(lang)["meta"]["decimal_comma"]
    words = extra_phrases(lang)["diagram"]
    return render_diagram(network_diagram(spec, NumberFormat(digits, decimal_comma),
                                          panel_words=words), fmt)


def document_figure(spec: NetworkSpec, fmt: str, lang: str = "en",
                    svg_path: str | None = None, decimal_comma: bool | None = None) -> str:
    """What a document shows of the network: TikZ code in LaTeX; in Markdown an image
    link to ``svg_path`` (the SVG written beside it), or nothing when there is no file."""
    if fmt == "tex":
        return diagram_for(spec, "tex", lang, decimal_comma)
    if fmt == "md" and svg_path:
        alt = extra_phrases(lang)["diagram"]["alt"]
        return f"![{alt}]({svg_path})"
    return ""
