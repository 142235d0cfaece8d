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
from .templating import tex_escape

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
