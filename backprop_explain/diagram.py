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

import re
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from xml.sax.saxutils import escape

from .notation import NumberFormat
from .spec import NetworkSpec, flatten_names

PX_PER_CM = 48  # SVG user units per centimetre
COLUMN_GAP = 3.8  # cm between neuron columns
ROW_GAP = 1.7  # cm between neurons of a column
RADIUS = 0.5
CELL = 0.8  # cm, side of a grid cell
PANEL_GAP = 1.2


@dataclass
class Circle:
    x: float
    y: float
    r: float
    label: "Label"
    kind: str  # input | unit | output


@dataclass
class Line:
    x1: float
    y1: float
    x2: float
    y2: float
    arrow: bool = True


@dataclass
class Text:
    x: float
    y: float
    label: "Label"
    anchor: str = "center"  # center | west | east
    boxed: bool = False  # on a white box (a weight over crossing edges)
    size: str = "small"  # small | tiny


@dataclass
class Cell:
    x: float  # lower-left corner
    y: float
    size: float
    label: "Label"
    given: bool  # a given number (shaded) or the name of a computed quantity


@dataclass
class Label:
    """One label in both syntaxes: LaTeX math and SVG text (tspans), plus a width guess."""

    tex: str
    svg: str
    chars: int
    math: bool = True  # the LaTeX is math ($…$), or plain text already escaped


@dataclass
class Diagram:
    circles: list[Circle] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    texts: list[Text] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)

    @cached_property
    def bounds(self) -> tuple[float, float, float, float]:
        xs, ys = [0.0], [0.0]
        for c in self.circles:
            xs += [c.x - c.r, c.x + c.r]
            ys += [c.y - c.r, c.y + c.r]
        for c in self.cells:
            xs += [c.x, c.x + c.size]
            ys += [c.y, c.y + c.size]
        for t in self.texts:
            width = 0.2 * t.label.chars
            left = {"west": 0, "east": -width}.get(t.anchor, -width / 2)
            xs += [t.x + left, t.x + left + width]
            ys += [t.y - 0.3, t.y + 0.3]
        return min(xs) - 0.3, min(ys) - 0.3, max(xs) + 0.3, max(ys) + 0.3

    # SVG coordinates: pixels, y downwards, origin at the top-left of the bounds
    def svg_size(self) -> tuple[int, int]:
        x0, y0, x1, y1 = self.bounds
        return round((x1 - x0) * PX_PER_CM), round((y1 - y0) * PX_PER_CM)

    scale = PX_PER_CM

    def px(self, x: float) -> float:
        return round((x - self.bounds[0]) * PX_PER_CM, 1)

    def py(self, y: float) -> float:
        return round((self.bounds[3] - y) * PX_PER_CM, 1)


# ---------------------------------------------------------------------------
# Labels: a spec name (safe LaTeX, see spec.check_name) in math and in SVG text

_GREEK = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ϵ", "varepsilon": "ε",
    "zeta": "ζ", "eta": "η", "theta": "θ", "vartheta": "ϑ", "iota": "ι", "kappa": "κ",
    "lambda": "λ", "mu": "μ", "nu": "ν", "xi": "ξ", "pi": "π", "rho": "ρ", "sigma": "σ",
    "tau": "τ", "upsilon": "υ", "phi": "ϕ", "varphi": "φ", "chi": "χ", "psi": "ψ",
    "omega": "ω", "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ", "Xi": "Ξ",
    "Pi": "Π", "Sigma": "Σ", "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω", "prime": "′",
}
_ACCENTS = {"hat": "\u0302", "bar": "\u0304", "tilde": "\u0303"}
_SHIFT = {"": 0, "sub": 4, "sup": -6}  # px of baseline shift


def _group(text: str, i: int) -> tuple[str, int]:
    """The argument starting at text[i]: a {braced group} or one character."""
    if i < len(text) and text[i] == "{":
        depth = 0
        for j in range(i, len(text)):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            if depth == 0:
                return text[i + 1:j], j + 1
    return text[i:i + 1], i + 1


def _plain(text: str) -> str:
    """A name as plain Unicode text (sub/superscripts flattened)."""
    out, i = [], 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            match = re.match(r"\\([A-Za-z]+)", text[i:])
            command = match.group(1)
            i += len(match.group(0))
            if command in _ACCENTS:
                arg, i = _group(text, i)
                out.append(_plain(arg) + _ACCENTS[command])
            elif command == "mathrm":
                arg, i = _group(text, i)
                out.append(_plain(arg))
            else:
                out.append(_GREEK.get(command, command))
            continue
        if char not in "{}_^ ":
            out.append(char)
        i += 1
    return "".join(out)


def svg_name(name: str) -> tuple[str, int]:
    """SVG tspans for a name: ``wh_{1,1}`` → wh with 1,1 lowered and smaller."""
    pieces: list[tuple[str, str]] = []  # (position, plain text)
    i = 0
    while i < len(name):
        char = name[i]
        if char in "_^":
            arg, i = _group(name, i + 1)
            pieces.append(("sub" if char == "_" else "sup", _plain(arg)))
            continue
        if char == "\\":
            match = re.match(r"\\([A-Za-z]+)", name[i:])
            end = i + len(match.group(0))
            if match.group(1) in _ACCENTS or match.group(1) == "mathrm":
                _, end = _group(name, end)
            pieces.append(("", _plain(name[i:end])))
            i = end
            continue
        if char not in "{} ":
            pieces.append(("", char))
        i += 1
    out, shift, chars = [], 0, 0
    for position, text in pieces:
        if not text:
            continue
        target = _SHIFT[position]
        attrs = f' dy="{target - shift}"' if target != shift else ""
        if position:
            attrs += ' font-size="75%"'
        out.append(f"<tspan{attrs}>{escape(text)}</tspan>" if attrs else escape(text))
        shift = target
        chars += len(text)
    if shift:  # back to the baseline; a zero-width space, as dy needs a character to move
        out.append(f'<tspan dy="{-shift}">\u200b</tspan>')
    return "".join(out), chars


def caption_label(words: str) -> Label:
    from .document import tex_escape
    return Label(tex_escape(words), escape(words), len(words), math=False)


def name_label(name: str) -> Label:
    svg, chars = svg_name(name)
    return Label(name, svg, chars)


def number_label(value: float, numbers: NumberFormat, name: str | None = None) -> Label:
    """A given number, optionally as ``name = value``."""
    plain = numbers.plain(value).replace("-", "−")
    if name is None:
        return Label(numbers.tex(value), escape(plain), len(plain))
    svg, chars = svg_name(name)
    return Label(f"{name} = {numbers.tex(value)}", f"{svg} = {escape(plain)}",
                 chars + 3 + len(plain))


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
                x += 0.25 * max(len(_plain(b)) + 8 for b in layer.bias_names)
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
    from .document import environment
    template = {"tex": "diagram.tikz.j2", "svg": "diagram.svg.j2"}[fmt]
    width, height = diagram.svg_size()
    return environment().get_template(template).render(d=diagram, width=width, height=height)


def diagram_for(spec: NetworkSpec, fmt: str, lang: str = "en",
                decimal_comma: bool | None = None, digits: int = 4) -> str:
    """The network of ``spec`` drawn for a document in ``lang``: TikZ or SVG text."""
    from .document import phrases
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


@lru_cache(maxsize=None)
def extra_phrases(lang: str) -> dict:
    """Phrases of diagrams, sheets and Moodle questions (templates/lang/sheet.{lang}.toml)."""
    import tomllib
    from .document import templates_dir
    with open(templates_dir() / "lang" / f"sheet.{lang}.toml", "rb") as handle:
        return tomllib.load(handle)
