"""Drawing primitives of the network figure: circles, lines, texts, grid cells and labels.

diagram.py assembles the figure; each layer kind (layers/) draws its part with these.
Coordinates are centimetres, y upwards; a Label carries each text in both syntaxes,
LaTeX math for TikZ and SVG text (tspans) for the standalone SVG.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from xml.sax.saxutils import escape

from .notation import NumberFormat
from .escaping import tex_escape

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


def plain_text(text: str) -> str:
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
                out.append(plain_text(arg) + _ACCENTS[command])
            elif command == "mathrm":
                arg, i = _group(text, i)
                out.append(plain_text(arg))
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
            pieces.append(("sub" if char == "_" else "sup", plain_text(arg)))
            continue
        if char == "\\":
            match = re.match(r"\\([A-Za-z]+)", name[i:])
            end = i + len(match.group(0))
            if match.group(1) in _ACCENTS or match.group(1) == "mathrm":
                _, end = _group(name, end)
            pieces.append(("", plain_text(name[i:end])))
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
# Layout: a sketch of the figure, drawn left to right, each layer kind adding its part


def column_ys(count: int, gap: float = ROW_GAP) -> list[float]:
    """Heights of ``count`` items one under the other, centred on y = 0."""
    top = (count - 1) * gap / 2
    return [top - k * gap for k in range(count)]


def edge(diagram, start, end, i, fan_in, label):
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


class Sketch:
    """The figure being drawn, left to right: where the next part goes and what it reads.

    Grids (an image, filters, feature maps) come first, then columns of neurons; a kind
    calls ``grids()`` or ``columns()`` before drawing, which draws the network's input the
    first time (as grids or as a column with its values) and, at the passage from grids
    to neurons, the column of the cells the first neurons read."""

    def __init__(self, spec, values: dict, numbers: NumberFormat, words: dict):
        self.diagram = Diagram()
        self.spec = spec
        self.values = values  # the given numbers: parameters, the example's inputs
        self.numbers = numbers
        self.words = words  # captions of the grids ([diagram] phrases)
        self.x = 0.0
        self.names = list(spec.input_names)  # what the next layer reads
        self.column: list[tuple[float, float]] | None = None  # the last neurons drawn
        self._started = False

    def is_last(self, layer) -> bool:
        return layer.index == len(self.spec.layers)

    def grids(self) -> None:
        """Before a part drawn as grids: the input image, one grid per channel."""
        if self._started:
            return
        self._started = True
        channels, rows, cols = self.spec.input_shape
        per_channel = rows * cols
        names = self.spec.input_names
        blocks = [([self.values[n] for n in names[c * per_channel:(c + 1) * per_channel]],
                   rows, cols, True, self.words["input"] if c == 0 else "")
                  for c in range(channels)]
        self.x = self.stack(self.x, blocks)

    def columns(self) -> None:
        """Before a column of neurons: the column of what it reads (with the values when
        that is the network's input)."""
        if self.column is not None:
            return
        if self._started:  # after grids: the cells, by name, in flatten order
            self.x += COLUMN_GAP * 0.6
            first = [(name, None) for name in self.names]
        else:
            first = [(name, self.values[name]) for name in self.names]
        self._started = True
        self.column = []
        for (name, value), y in zip(first, column_ys(len(first))):
            self.diagram.circles.append(Circle(self.x, y, RADIUS, name_label(name), "input"))
            if value is not None:
                self.diagram.texts.append(Text(self.x - RADIUS - 0.15, y,
                                               number_label(value, self.numbers), "east"))
            self.column.append((self.x, y))

    def targets(self, names: list[str], values: list[float]) -> None:
        """The targets on the right of the outputs."""
        for (px, py), name, value in zip(self.column, names, values):
            self.diagram.lines.append(Line(px + RADIUS, py, px + RADIUS + 0.9, py))
            self.diagram.texts.append(Text(px + RADIUS + 1.0, py,
                                           number_label(value, self.numbers, name), "west"))

    def stack(self, x, blocks) -> float:
        """Grids (items, rows, cols, given, caption) one above the other, centred on y = 0;
        returns the width used."""
        heights = [rows * CELL for _, rows, _, _, _ in blocks]
        total = sum(heights) + 0.8 * (len(blocks) - 1)
        y = total / 2
        width = 0.0
        for (items, rows, cols, given, caption), height in zip(blocks, heights):
            width = max(width, _grid(self.diagram, x, y, items, rows, cols, self.numbers, given,
                                     caption))
            y -= height + 0.8
        return width

    def operator(self, symbol_tex: str, symbol_svg: str) -> None:
        """⋆, +, =, → between two panels."""
        self.diagram.texts.append(Text(self.x + PANEL_GAP / 2, 0.0,
                                       Label(symbol_tex, symbol_svg, 1)))
        self.x += PANEL_GAP

    def maps(self, names: list[str], shape, caption: str) -> None:
        """Computed maps (channels, rows, columns) by name, one grid per channel."""
        channels, rows, cols = shape
        per = rows * cols
        blocks = [(names[c * per:(c + 1) * per], rows, cols, False, caption if c == 0 else "")
                  for c in range(channels)]
        self.x += self.stack(self.x, blocks)
