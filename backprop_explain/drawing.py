"""The network figure's primitives, its text model and its layout.

diagram.py assembles the figure; each layer kind (layers/) draws its part on a Sketch.
Coordinates are centimetres, y upwards; text sizes are TeX points.

**Text model.** A Label is one text in both syntaxes: its LaTeX (for TikZ) and its pieces
(plain Unicode text, subscripts, superscripts: the SVG's tspans). Its box comes from a
per-character width table that bounds both fonts the figure is drawn in (Latin Modern in
LaTeX, DejaVu Serif in SVG), so one layout serves both: the TikZ and the SVG draw the same
boxes, lines, arrowheads and circles, with every text's baseline where the layout put it.

**Layout.** The Sketch places every text where nothing else is (no other text, line,
arrowhead or circle meets its box): a weight on a white box on its edge, as near its
source as it can; a bias above its unit; grid cells big enough for their text (or the
grid named once and its cells showing their indices); columns of more than MAX_UNITS
units abbreviated (the first two, ⋮, the last); many equal weights said once. When a
weight finds no free place, the weights between those two columns may also be written
along their edges; when one still finds none (or a bias), the columns move apart and
the layout starts again. A CNN figure wider than PAGE_WIDTH puts its columns under its
grids; one for a slide's frame does so only when that fills the frame better.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

from .lazy import numpy as np  # executed at first use: lazy.py

from .notation import NumberFormat
from .escaping import svg_text, tex_escape

PX_PER_CM = 48  # SVG user units per centimetre
PT = 2.54 / 72.27  # centimetres per TeX point

# Text sizes (pt)
NAME_PT = 8  # a unit's name in its circle
LABEL_PT = 7  # weights, biases, grid cells, captions
VALUE_PT = 9  # the inputs' values and the targets
OPERATOR_PT = 10  # ∗ + = → between the panels of a CNN

# Geometry (cm)
COLUMN_GAP = 3.8  # between two columns of neurons (more when their labels need it)
ROW_GAP = 1.7  # between two neurons of a column (idem)
RADIUS = 0.5
CELL = 0.8  # side of a grid cell (more when its text needs it)
MAX_CELL = 1.2  # wider names: the grid is named once, its cells show the indices
GRID_GAP = 0.8  # between two grids of a panel
PANEL_GAP = 1.2  # between two panels, an operator in the middle
ARROW_LENGTH, ARROW_HALF_WIDTH = 0.2, 0.07
MARGIN = 0.06  # cm of white kept around every label
# where a weight may sit along its edge, in order of preference: near its source
FRACTIONS = [0.22 + 0.02 * k for k in range(32)] + [0.2, 0.18, 0.16]
GRIDS_TO_COLUMN = 2.0  # from the last grid to the first column of neurons
PAGE_WIDTH = 17.0  # wider, the columns of a CNN go under its grids
GROW_GAP, GROW_ROW = 1.15, 1.07  # a crowded gap widens, the columns beside it lengthen
MAX_ATTEMPTS = 30
MAX_UNITS = 6  # more units in a column: the first two, ⋮, the last


# ---------------------------------------------------------------------------
# Text model: widths in em, bounding Latin Modern (text and math italic) and DejaVu Serif

_EM = {
    **dict.fromkeys("0123456789", 0.64),
    **dict.fromkeys(" .,;:!'′\u00a0", 0.33),
    **dict.fromkeys("()[]", 0.41), "|": 0.34, "/": 0.4,
    **dict.fromkeys("=+−<>×∗·", 0.84), "→": 1.0,
    **dict.fromkeys("ijl", 0.36), **dict.fromkeys("frt", 0.5), **dict.fromkeys("mw", 0.96),
    "M": 1.0, "W": 1.04,
}
_ZERO_WIDTH = "\u0302\u0304\u0303\u0307\u030c\u20d7\u200b"
SCRIPT = 0.7  # size of a sub/superscript
SCRIPT_WIDTH = 0.8  # its width: TeX's script fonts (5 pt for 7 pt) are drawn wider
ASCENT, DESCENT = 0.94, 0.26  # em above and below the baseline
SHIFT = {"": 0.0, "sub": -0.3, "sup": 0.42}  # em of baseline shift
CENTRE = (ASCENT - DESCENT) / 2  # em from the baseline up to the middle of a line


def _char_em(char: str) -> float:
    if char in _EM:
        return _EM[char]
    if char in _ZERO_WIDTH:
        return 0.0
    return 0.8 if char.isupper() else 0.66


def em_width(text: str) -> float:
    return sum(_char_em(c) for c in text)


@dataclass(frozen=True)
class Label:
    """One text: ``tex`` (math unless ``math`` is false) and its ``pieces``, pairs of
    (position: "" | "sub" | "sup", plain text)."""

    tex: str
    pieces: tuple[tuple[str, str], ...]
    math: bool = True
    ref: str = field(default="", compare=False)  # the spec name it shows the value of

    @property
    def text(self) -> str:
        return "".join(text for _, text in self.pieces)

    def width(self, pt: float) -> float:
        return _measure(self.pieces)[0] * pt * PT

    def extent(self, pt: float) -> tuple[float, float]:
        """(depth, height): cm below and above the baseline, sub/superscripts included."""
        _, below, above = _measure(self.pieces)
        return below * pt * PT, above * pt * PT

    def svg(self, pt: float) -> str:
        """SVG text content: sub/superscripts as smaller tspans moved by dy (in user
        units: every viewer agrees on those, unlike baseline-shift)."""
        size = pt * PT * PX_PER_CM
        out, shift = [], 0.0
        for position, text in self.pieces:
            attrs = ""
            if SHIFT[position] != shift:
                attrs = f' dy="{round((shift - SHIFT[position]) * size, 2):g}"'
                shift = SHIFT[position]
            if position:
                attrs += f' font-size="{round(SCRIPT * size, 2):g}"'
            if not attrs:
                out.append(svg_text(text))
                continue
            # spaces outside the tspan: a viewer (librsvg) drops them from a moved tspan
            core = text.strip(" ") or "\u200b"  # a zero-width space carries a lone dy
            lead = text[:len(text) - len(text.lstrip(" "))]
            trail = text[len(lead) + len(text.strip(" ")):]
            out.append(f"{lead}<tspan{attrs}>{svg_text(core)}</tspan>{trail}")
        return "".join(out)


@lru_cache(maxsize=4096)
def _measure(pieces: tuple[tuple[str, str], ...]) -> tuple[float, float, float]:
    """(width, depth, height) in em."""
    width = sum(em_width(text) * (SCRIPT_WIDTH if position else 1) for position, text in pieces)
    below, above = DESCENT, ASCENT
    for position, _ in pieces:
        if position:
            below = max(below, SCRIPT * DESCENT - SHIFT[position])
            above = max(above, SHIFT[position] + SCRIPT * ASCENT)
    return width, below, above


_SYMBOLS = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ϵ", "varepsilon": "ε",
    "zeta": "ζ", "eta": "η", "theta": "θ", "vartheta": "ϑ", "iota": "ι", "kappa": "κ",
    "lambda": "λ", "mu": "μ", "nu": "ν", "xi": "ξ", "pi": "π", "rho": "ρ", "sigma": "σ",
    "tau": "τ", "upsilon": "υ", "phi": "ϕ", "varphi": "φ", "chi": "χ", "psi": "ψ",
    "omega": "ω", "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ", "Xi": "Ξ",
    "Pi": "Π", "Sigma": "Σ", "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω", "prime": "′", "ell": "ℓ",
    "cdot": "·", "ast": "∗", "rightarrow": "→", "times": "×",
}
_ACCENTS = {"hat": "\u0302", "bar": "\u0304", "tilde": "\u0303", "dot": "\u0307",
            "check": "\u030c", "vec": "\u20d7"}
_FONTS = {"mathrm", "mathcal", "mathbf", "text"}
_COMMAND = re.compile(r"\\([A-Za-z]+|.)")


def _group(text: str, i: int) -> tuple[str, int]:
    """The argument starting at text[i] (spaces skipped): a {braced group} or one character."""
    while i < len(text) and text[i] == " ":
        i += 1
    if i < len(text) and text[i] == "{":
        depth = 0
        for j in range(i, len(text)):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            if depth == 0:
                return text[i + 1:j], j + 1
    if i < len(text) and text[i] == "\\":
        end = i + len(_COMMAND.match(text, i).group(0))
        return text[i:end], end
    return text[i:i + 1], i + 1


def tex_pieces(tex: str, math: bool = True) -> tuple[tuple[str, str], ...]:
    """The pieces of a LaTeX text (a spec name, a number, a caption with ``$…$``):
    ``w^{(1)}_{2,1}`` → w, sup (1), sub 2,1; nested scripts are flattened into their
    script. In math a hyphen is a minus sign."""
    pieces: list[list[str]] = []

    def add(position, text):
        if text:
            if pieces and pieces[-1][0] == position:
                pieces[-1][1] += text
            else:
                pieces.append([position, text])

    def walk(text, position, in_math):
        i = 0
        while i < len(text):
            char = text[i]
            if char == "$":
                in_math = not in_math
                i += 1
            elif char in "_^" and in_math:
                arg, i = _group(text, i + 1)
                walk(arg, position or ("sub" if char == "_" else "sup"), in_math)
            elif char == "\\" and i + 1 < len(text):
                command = _COMMAND.match(text, i).group(1)
                i += len(command) + 1
                if command in _ACCENTS:
                    arg, i = _group(text, i)
                    walk(arg, position, in_math)
                    add(position, _ACCENTS[command])
                elif command in _FONTS:
                    arg, i = _group(text, i)
                    walk(arg, position, in_math)
                else:
                    add(position, _SYMBOLS.get(command, "" if command in ", !;:" else command))
            elif char in "{}":
                i += 1
            elif char == " " and in_math:
                i += 1
            else:  # in math a hyphen is a minus sign, an apostrophe a prime
                add(position, {"-": "−", "'": "′"}.get(char, char) if in_math else char)
                i += 1
    walk(tex, "", math)
    return tuple((position, text) for position, text in pieces)


@lru_cache(maxsize=4096)
def name_label(name: str) -> Label:
    return Label(name, tex_pieces(name))


def caption_label(words: str) -> Label:
    return Label(tex_escape(words), (("", words),), math=False)


def number_label(value: float, numbers: NumberFormat, name: str | None = None) -> Label:
    """A given number, optionally as ``name = value`` (spaced as TeX spaces a relation)."""
    number = numbers.given(value)
    if name is None:
        return Label(number, tex_pieces(number))
    return Label(f"{name} = {number}", tex_pieces(name) + (("", " = "),) + tex_pieces(number),
                 ref=name)


def phrase_label(words: str, value: Label) -> Label:
    """A caption with a number in it: ``words`` holds ``{value}``."""
    before, _, after = words.partition("{value}")
    pieces = (("", before),) + value.pieces + ((("", after),) if after else ())
    return Label(f"{tex_escape(before)}${value.tex}${tex_escape(after)}", pieces, math=False)


def svg_name(name: str) -> str:
    """SVG text content of a name, as a figure writes it at LABEL_PT."""
    return name_label(name).svg(LABEL_PT)


# ---------------------------------------------------------------------------
# Primitives


@dataclass
class Text:
    """A label with the middle of its line at y; x is its centre, its left (west) or its
    right (east) end. ``angle`` (degrees, anticlockwise) turns it about (x, baseline):
    a weight written along a steep edge."""

    x: float
    y: float
    label: Label
    anchor: str = "center"  # center | west | east
    pt: float = LABEL_PT
    background: bool = False  # on a white box (a weight over its edge)
    angle: float = 0.0

    @property
    def baseline(self) -> float:
        return self.y - CENTRE * self.pt * PT

    def local_box(self, margin: float = 0.0) -> tuple[float, float, float, float]:
        """The box around the pivot (x, baseline), before turning."""
        width = self.label.width(self.pt)
        left = -{"west": 0.0, "east": width}.get(self.anchor, width / 2)
        below, above = self.label.extent(self.pt)
        return left - margin, -below - margin, left + width + margin, above + margin

    @property
    def box(self) -> tuple[float, float, float, float]:
        """The text's box before turning (its box when ``angle`` is 0)."""
        x0, y0, x1, y1 = self.local_box()
        return self.x + x0, self.baseline + y0, self.x + x1, self.baseline + y1

    @property
    def white_box(self) -> tuple[float, float, float, float]:
        """The box with the white margin kept around it, before turning."""
        x0, y0, x1, y1 = self.local_box(MARGIN)
        return self.x + x0, self.baseline + y0, self.x + x1, self.baseline + y1

    def corners(self, margin: float = MARGIN) -> list[tuple[float, float]]:
        """The (turned) box's corners, with the margin."""
        x0, y0, x1, y1 = self.local_box(margin)
        c, s = math.cos(math.radians(self.angle)), math.sin(math.radians(self.angle))
        return [(self.x + u * c - v * s, self.baseline + u * s + v * c)
                for u, v in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]

    @property
    def px(self) -> float:  # the SVG font size
        return round(self.pt * PT * PX_PER_CM, 2)

    @property
    def svg(self) -> str:
        return self.label.svg(self.pt)


@dataclass
class Circle:
    x: float
    y: float
    r: float
    label: Label | None
    kind: str  # input | unit | output | dot (of an ellipsis)
    pt: float = NAME_PT
    name: str = ""  # the quantity it stands for (what a page's reader clicks)

    @property
    def text(self) -> Text | None:
        return Text(self.x, self.y, self.label, pt=self.pt) if self.label else None


@dataclass
class Line:
    """A straight line, with an arrowhead at (x2, y2) when ``arrow``."""

    x1: float
    y1: float
    x2: float
    y2: float
    arrow: bool = True
    source: str = ""  # the quantities an arrow joins: the unit it leaves, the unit it feeds
    target: str = ""

    def _unit(self) -> tuple[float, float]:
        dx, dy = self.x2 - self.x1, self.y2 - self.y1
        length = math.hypot(dx, dy)
        return dx / length, dy / length

    @property
    def end(self) -> tuple[float, float]:
        """Where the stroke stops: the arrowhead's base, or (x2, y2)."""
        if not self.arrow:
            return self.x2, self.y2
        ux, uy = self._unit()
        return self.x2 - ARROW_LENGTH * ux, self.y2 - ARROW_LENGTH * uy

    @property
    def head(self) -> list[tuple[float, float]]:
        """The arrowhead's corners: tip, then both sides of its base."""
        ux, uy = self._unit()
        bx, by = self.end
        return [(self.x2, self.y2), (bx - ARROW_HALF_WIDTH * uy, by + ARROW_HALF_WIDTH * ux),
                (bx + ARROW_HALF_WIDTH * uy, by - ARROW_HALF_WIDTH * ux)]

    def segments(self) -> list[tuple[float, float, float, float]]:
        """What the line covers: its stroke and its arrowhead's sides."""
        out = [(self.x1, self.y1, self.x2, self.y2)]
        if self.arrow:
            a, b, c = self.head
            out += [(*a, *b), (*b, *c), (*c, *a)]
        return out


@dataclass
class Cell:
    x: float  # lower-left corner
    y: float
    size: float
    label: Label
    given: bool  # a given number (shaded) or the name of a computed quantity
    pt: float = LABEL_PT
    name: str = ""  # the quantity of the cell

    @property
    def text(self) -> Text:
        return Text(self.x + self.size / 2, self.y + self.size / 2, self.label, pt=self.pt)


@dataclass
class Diagram:
    circles: list[Circle] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    texts: list[Text] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)

    def all_texts(self) -> list[Text]:
        """Every text drawn: the free ones, the circles' names, the cells' contents."""
        inner = [c.text for c in self.circles if c.label] + [c.text for c in self.cells]
        return self.texts + inner

    @cached_property
    def bounds(self) -> tuple[float, float, float, float]:
        """The drawing's extent, a margin around everything drawn."""
        xs, ys = [], []
        for c in self.circles:
            xs += [c.x - c.r, c.x + c.r]
            ys += [c.y - c.r, c.y + c.r]
        for c in self.cells:
            xs += [c.x, c.x + c.size]
            ys += [c.y, c.y + c.size]
        for line in self.lines:
            for x1, y1, x2, y2 in line.segments():
                xs += [x1, x2]
                ys += [y1, y2]
        for t in self.texts:
            for x, y in t.corners():
                xs.append(x)
                ys.append(y)
        return min(xs) - 0.2, min(ys) - 0.2, max(xs) + 0.2, max(ys) + 0.2

    # SVG coordinates: pixels, y downwards, origin at the top-left of the bounds
    def svg_size(self) -> tuple[int, int]:
        x0, y0, x1, y1 = self.bounds
        return math.ceil((x1 - x0) * PX_PER_CM), math.ceil((y1 - y0) * PX_PER_CM)

    scale = PX_PER_CM

    def px(self, x: float) -> float:
        return round((x - self.bounds[0]) * PX_PER_CM, 2)

    def py(self, y: float) -> float:
        return round((self.bounds[3] - y) * PX_PER_CM, 2)


# ---------------------------------------------------------------------------
# Free space: what a new label must keep clear of


def segments_hit_box(ax, ay, bx, by, box) -> np.ndarray:
    """Whether each segment (a, b) meets the box x0, y0, x1, y1: their extents meet and
    the box's corners are not all on one side of the segment's line."""
    x0, y0, x1, y1 = box
    meet = ((np.minimum(ax, bx) < x1) & (np.maximum(ax, bx) > x0)
            & (np.minimum(ay, by) < y1) & (np.maximum(ay, by) > y0))
    dx, dy = bx - ax, by - ay
    sides = [dx * (y - ay) - dy * (x - ax) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]
    above = (sides[0] > 0) & (sides[1] > 0) & (sides[2] > 0) & (sides[3] > 0)
    below = (sides[0] < 0) & (sides[1] < 0) & (sides[2] < 0) & (sides[3] < 0)
    return meet & ~above & ~below


def quads_hit_box(xs, ys, box) -> np.ndarray:
    """Whether each convex quadrilateral (corners xs, ys: (..., 4)) meets the box
    x0, y0, x1, y1; separating axes: the box's two, each quadrilateral's two."""
    x0, y0, x1, y1 = box
    apart = (xs.max(-1) <= x0) | (xs.min(-1) >= x1) | (ys.max(-1) <= y0) | (ys.min(-1) >= y1)
    box_x, box_y = np.array([x0, x1, x1, x0]), np.array([y0, y0, y1, y1])
    for k in (0, 1):
        nx, ny = -(ys[..., k + 1] - ys[..., k]), xs[..., k + 1] - xs[..., k]  # a side's normal
        mine = xs * nx[..., None] + ys * ny[..., None]
        theirs = box_x * nx[..., None] + box_y * ny[..., None]
        apart |= (mine.max(-1) <= theirs.min(-1)) | (theirs.max(-1) <= mine.min(-1))
    return ~apart


class Places:
    """Where one label may go, in order of preference: its pivots (x, baseline) and angles
    (degrees), the same box around each pivot."""

    def __init__(self, label: Label, pivots, angles, anchor: str = "center",
                 pt: float = LABEL_PT, background: bool = False):
        self.proto = Text(0.0, 0.0, label, anchor, pt, background)
        self.pivots = np.asarray(pivots, float).reshape(-1, 2)
        self.angles = np.radians(np.broadcast_to(np.asarray(angles, float), len(self.pivots)))
        self.box = np.array(self.proto.local_box(MARGIN))

    def __len__(self) -> int:
        return len(self.pivots)

    def text(self, k: int) -> Text:
        t = self.proto
        x, baseline = self.pivots[k]
        return Text(float(x), float(baseline) + CENTRE * t.pt * PT, t.label, t.anchor, t.pt,
                    t.background, round(math.degrees(self.angles[k]), 6))

    @cached_property
    def corners(self) -> np.ndarray:
        """(K, 4, 2): each place's box corners."""
        x0, y0, x1, y1 = self.box
        local = np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
        cos, sin = np.cos(self.angles)[:, None], np.sin(self.angles)[:, None]
        xs = self.pivots[:, 0:1] + local[:, 0] * cos - local[:, 1] * sin
        ys = self.pivots[:, 1:2] + local[:, 0] * sin + local[:, 1] * cos
        return np.stack([xs, ys], -1)

    @classmethod
    def centred(cls, label: Label, points, angles, background: bool = False) -> "Places":
        """Places whose boxes have their middles at ``points``."""
        x0, y0, x1, y1 = Text(0.0, 0.0, label).local_box()
        u, v = (x0 + x1) / 2, (y0 + y1) / 2  # the box's middle, from the pivot
        points = np.asarray(points, float).reshape(-1, 2)
        radians = np.radians(np.broadcast_to(np.asarray(angles, float), len(points)))
        cos, sin = np.cos(radians), np.sin(radians)
        pivots = np.stack([points[:, 0] - (u * cos - v * sin),
                           points[:, 1] - (u * sin + v * cos)], 1)
        return cls(label, pivots, np.degrees(radians), background=background)


def _extents(points: np.ndarray) -> np.ndarray:
    """(N, k, 2) → (N, 4): each shape's x0, y0, x1, y1."""
    return np.concatenate([points.min(1), points.max(1)], 1) if len(points) else \
        np.zeros((0, 4))


class FreeSpace:
    """What a new label must keep clear of: lines (with their arrowheads), circles and the
    boxes of the texts and cells already placed. A weight's own edge may pass under it;
    a weight placed (its box owned by its edge) may be taken away again."""

    BATCH = 6  # places tried at once: the first free one is usually among the first

    def __init__(self):
        self._segments: list[tuple] = []
        self._segment_owners: list[int] = []
        self._circles: list[tuple] = []
        self._quads: list[list] = []
        self._quad_owners: list[int] = []
        self._lines_and_circles = None  # arrays, built when first needed
        self._boxes = None

    def add_line(self, line: Line, owner: int = -1) -> None:
        """The line's stroke belongs to ``owner``; its arrowhead to nobody (no label may
        hide it, not even its own)."""
        for k, segment in enumerate(line.segments()):
            self._segments.append(segment)
            self._segment_owners.append(owner if k == 0 else -1)
        self._lines_and_circles = None

    def add_circle(self, circle: Circle) -> None:
        self._circles.append((circle.x, circle.y, circle.r))
        self._lines_and_circles = None

    def add_box(self, box) -> None:
        x0, y0, x1, y1 = box
        self._quads.append([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
        self._quad_owners.append(-1)
        self._boxes = None

    def add_text(self, text: Text, owner: int = -1) -> None:
        self._quads.append(text.corners())
        self._quad_owners.append(owner)
        self._boxes = None

    def remove(self, owner: int) -> None:
        """Take away the box of the weight of edge ``owner``."""
        k = self._quad_owners.index(owner)
        del self._quads[k], self._quad_owners[k]
        self._boxes = None

    def _arrays(self):
        if self._lines_and_circles is None:
            segments = np.array(self._segments, float).reshape(-1, 2, 2)
            circles = np.array(self._circles, float).reshape(-1, 3)
            self._lines_and_circles = (
                segments, np.array(self._segment_owners, int), _extents(segments), circles,
                np.concatenate([circles[:, :2] - circles[:, 2:], circles[:, :2] + circles[:, 2:]],
                               1))
        if self._boxes is None:
            quads = np.array(self._quads, float).reshape(-1, 4, 2)
            upright = (quads[:, 0, 1] == quads[:, 1, 1]) & (quads[:, 1, 0] == quads[:, 2, 0])
            self._boxes = (quads, np.array(self._quad_owners, int), _extents(quads), upright)
        return self._lines_and_circles + self._boxes

    def first_clear(self, places: Places, own: int = -2) -> int | None:
        """The first place where the label's box (with its margin) meets nothing but line
        ``own``, or None."""
        for start in range(0, len(places), self.BATCH):
            batch = range(start, min(start + self.BATCH, len(places)))
            hits = self._hits(places, batch, own, True)[0]
            if not hits.all():
                return start + int(np.argmin(hits))
        return None

    def clear(self, places: Places, own: int = -2, weights: bool = True) -> np.ndarray:
        """For each place, whether the label's box meets nothing there (but line ``own``;
        and but the weights placed, unless ``weights``)."""
        return ~self._hits(places, range(len(places)), own, weights)[0]

    def blockers(self, places: Places, own: int) -> list[int]:
        """The edges whose weights are in the way of the first place (nothing else is)."""
        return self._hits(places, range(1), own, True, blockers=True)[1]

    def _hits(self, places: Places, which: range, own: int, weights: bool,
              blockers: bool = False):
        (segments, segment_owners, segment_extents, circles, circle_extents, quads,
         quad_owners, quad_extents, upright) = self._arrays()
        pivots = places.pivots[which.start:which.stop]
        angles = places.angles[which.start:which.stop]
        count = len(pivots)
        # only what lies near the places: their extent against each obstacle's
        corners = places.corners[which.start:which.stop].reshape(-1, 2)
        low, high = corners.min(0), corners.max(0)

        def near(extents):
            return ((extents[:, :2] <= high) & (extents[:, 2:] >= low)).all(1)

        box = places.box
        level = not angles.any()
        cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]

        def local(xs, ys):  # (N,) → (K, N) each, in each place's frame (pivot at 0)
            xs, ys = xs[None, :] - pivots[:, 0:1], ys[None, :] - pivots[:, 1:2]
            return (xs, ys) if level else (xs * cos + ys * sin, -xs * sin + ys * cos)

        hit = np.zeros(count, bool)
        blocking: list[int] = []
        chosen = near(quad_extents) & ((quad_owners < 0) | weights)
        if level and not blockers:  # upright boxes against level places: their extents
            boxes = quad_extents[chosen & upright]
            x0, y0 = pivots[:, 0:1] + box[0], pivots[:, 1:2] + box[1]
            x1, y1 = pivots[:, 0:1] + box[2], pivots[:, 1:2] + box[3]
            hit |= ((boxes[:, 0] < x1) & (boxes[:, 2] > x0) & (boxes[:, 1] < y1)
                    & (boxes[:, 3] > y0)).any(1)
            chosen &= ~upright
        if chosen.any():
            mine = quads[chosen]
            qx, qy = local(mine[:, :, 0].ravel(), mine[:, :, 1].ravel())
            meets = quads_hit_box(qx.reshape(count, -1, 4), qy.reshape(count, -1, 4), box)
            hit |= meets.any(1)
            if blockers:
                blocking = sorted(set(quad_owners[chosen][meets[0]].tolist()))
        chosen = near(circle_extents)
        if chosen.any():
            cx, cy = local(circles[chosen, 0], circles[chosen, 1])
            dx, dy = cx - np.clip(cx, box[0], box[2]), cy - np.clip(cy, box[1], box[3])
            hit |= (np.hypot(dx, dy) < circles[chosen, 2][None, :]).any(1)
        chosen = near(segment_extents) & (segment_owners != own)
        if chosen.any():
            ends = segments[chosen]
            ax, ay = local(ends[:, 0, 0], ends[:, 0, 1])
            bx, by = local(ends[:, 1, 0], ends[:, 1, 1])
            hit |= segments_hit_box(ax, ay, bx, by, box).any(1)
        return hit, blocking


# ---------------------------------------------------------------------------
# The sketch: what the layer kinds draw


def column_ys(count: int, gap: float = ROW_GAP) -> list[float]:
    """Heights of ``count`` items one under the other, centred on y = 0."""
    top = (count - 1) * gap / 2
    return [top - k * gap for k in range(count)]


@dataclass
class Column:
    """A column of neurons: its units' names, the arrows from the column before
    (``connect``) and the labels above its units (``above``)."""

    names: list[str]
    kind: str  # input | unit | output
    values: list[Label | None] = field(default_factory=list)  # written on the left
    edges: list[tuple[int, int, Label | None]] = field(default_factory=list)
    notes: dict[int, Label] = field(default_factory=dict)
    targets: list[Label] = field(default_factory=list)  # written on the right

    def connect(self, i: int, j: int, label: Label | None = None) -> None:
        """An arrow from unit ``i`` of the column before to unit ``j`` of this one,
        ``label`` (a weight) written on it."""
        self.edges.append((i, j, label))

    def above(self, j: int, label: Label) -> None:
        """A label above unit ``j`` (its bias)."""
        self.notes[j] = label

    @property
    def slots(self) -> list[int | None]:
        """The units drawn, top to bottom; None is the ⋮ of an abbreviated column."""
        count = len(self.names)
        return list(range(count)) if count <= MAX_UNITS else [0, 1, None, count - 1]

    def radius_and_size(self) -> tuple[float, float]:
        """The circles' radius and the names' size: NAME_PT, smaller, then bigger circles."""
        labels = [name_label(self.names[k]) for k in self.slots if k is not None]
        for pt in (NAME_PT, NAME_PT - 1):
            if all(_half_diagonal(label, pt) <= RADIUS - 0.05 for label in labels):
                return RADIUS, pt
        return max(_half_diagonal(label, NAME_PT - 1) + 0.05 for label in labels), NAME_PT - 1


def _half_diagonal(label: Label, pt: float) -> float:
    box = Text(0.0, 0.0, label, pt=pt).box
    return max(math.hypot(x, y) for x in (box[0], box[2]) for y in (box[1], box[3]))


def _fit(diagram: Diagram, frame: tuple[float, float]) -> float:
    """The scale at which ``diagram`` fills a frame of (width, height) cm."""
    x0, y0, x1, y1 = diagram.bounds
    return min(frame[0] / (x1 - x0), frame[1] / (y1 - y0))


class Sketch:
    """The figure being drawn, left to right: grids first (an image, filters, feature
    maps), then columns of neurons. A layer kind's ``draw(sketch)`` calls:

    - ``panel(grids, caption, given)``: grids one above the other, each a list of rows of
      names; ``given`` shows the names' values (an image, a filter), else the names
      (computed maps); ``maps(names, shape, caption)`` does it for a (channels, rows,
      columns) block of names and makes them what the next layer reads;
    - ``operator(tex, svg)``: ∗, +, =, → between two panels; ``listing(labels)``: texts
      one under the other (a conv layer's biases);
    - ``neurons(names, output)`` → a Column: ``column.connect(i, j, label)`` draws an
      arrow from unit i of the column before (the input's, drawn first when needed) with
      its weight, ``column.above(j, label)`` a bias;
    - ``number(name, named)`` → the Label of a given value (``name = value`` if named),
      ``words`` the [diagram] phrases, ``is_last(layer)``.

    Where things go is decided in ``finish()``; the kinds never handle coordinates of
    neurons or labels."""

    def __init__(self, spec, values: dict, numbers: NumberFormat, words: dict):
        self.spec = spec
        self.values = values  # the given numbers: parameters, the example's inputs
        self.numbers = numbers
        self.words = words  # the [diagram] phrases: captions, "all weights = …"
        self.names = list(spec.input_names)  # what the next layer reads
        self._panels = Diagram()  # the grids, operators and their captions
        self._x = 0.0  # where the next panel goes
        self._columns: list[Column] = []
        self._started = False

    def is_last(self, layer) -> bool:
        return layer.index == len(self.spec.layers)

    def number(self, name: str, named: bool = False) -> Label:
        label = number_label(self.values[name], self.numbers, name if named else None)
        return label if named else Label(label.tex, label.pieces, label.math, ref=name)

    # -- grids ---------------------------------------------------------------

    def grids(self) -> None:
        """Before a part drawn as grids: the input image, one grid per channel."""
        if self._started:
            return
        self._started = True
        channels, rows, cols = self.spec.input_shape
        self.panel(_reshape(self.spec.input_names, (channels, rows, cols)), self.words["input"],
                   given=True)

    def panel(self, grids: list[list[list[str]]], caption: str = "", given: bool = False) -> None:
        """Grids one above the other, centred on y = 0, the caption above the first."""
        self.grids()
        if self._columns:
            raise ValueError("grids come before the columns of neurons")
        labels = [[[self.number(n) if given else name_label(n) for n in row] for row in grid]
                  for grid in grids]
        caption_words = caption_label(caption) if caption else None
        size, pt, labels, caption_words = _fit_cells(grids, labels, caption_words, given)
        heights = [len(grid) * size for grid in labels]
        widths = [len(grid[0]) * size for grid in labels]
        width = max(widths + [caption_words.width(LABEL_PT) if caption_words else 0.0])
        top = (sum(heights) + GRID_GAP * (len(labels) - 1)) / 2
        if caption_words:
            self._panels.texts.append(Text(self._x + width / 2, top + 0.35, caption_words))
        y = top
        for grid, names, height, grid_width in zip(labels, grids, heights, widths):
            left = self._x + (width - grid_width) / 2
            for r, row in enumerate(grid):
                for s, label in enumerate(row):
                    self._panels.cells.append(Cell(left + s * size, y - (r + 1) * size, size,
                                                   label, given, pt, names[r][s]))
            y -= height + GRID_GAP
        self._x += width

    def maps(self, names: list[str], shape, caption: str) -> None:
        """Computed maps (channels, rows, columns) by name; the next layer reads them."""
        self.names = list(names)
        self.panel(_reshape(names, shape), caption)

    def operator(self, symbol_tex: str, symbol_svg: str) -> None:
        """∗, +, =, → between two panels."""
        self.grids()
        self._panels.texts.append(Text(self._x + PANEL_GAP / 2, 0.0,
                                       Label(symbol_tex, (("", symbol_svg),)), pt=OPERATOR_PT))
        self._x += PANEL_GAP

    def listing(self, labels: list[Label]) -> None:
        """Texts one under the other, centred on y = 0 (a conv layer's biases)."""
        for label, y in zip(labels, column_ys(len(labels), 0.6)):
            self._panels.texts.append(Text(self._x, y, label, "west", pt=VALUE_PT))
        self._x += max(label.width(VALUE_PT) for label in labels)

    # -- neurons -------------------------------------------------------------

    def neurons(self, names: list[str], output: bool = False) -> Column:
        """A new column of units, after the column of what they read (drawn first when
        it is the network's input: with its values; after grids: the cells by name)."""
        if not self._columns:
            values = ([] if self._started else
                      [self.number(name) for name in self.names])
            self._columns.append(Column(list(self.names), "input", values))
            self._started = True
        column = Column(list(names), "output" if output else "unit")
        self._columns.append(column)
        self.names = list(names)
        return column

    def targets(self, names: list[str], values: list[float]) -> None:
        """The targets on the right of the outputs."""
        self._columns[-1].targets = [number_label(v, self.numbers, n)
                                     for n, v in zip(names, values)]

    def finish(self, frame: tuple[float, float] | None = None) -> Diagram:
        """The figure: the panels as drawn, then the columns laid out until every label
        is free: the weights of a gap where one finds no place are written along their
        edges; if one still finds none, its columns move apart (and biases likewise).
        A CNN's columns go under its grids when the figure is wider than a page, or, for
        a ``frame`` (width, height in cm: a slide), when that shows it larger there."""
        if not self._columns:
            return self._panels
        count = len(self._columns)
        gaps = [COLUMN_GAP] * count
        gaps[0] = GRIDS_TO_COLUMN if self._panels.cells else 0.0
        rows = [ROW_GAP] * count
        along = [False] * count  # per gap: the weights written along their edges
        for _ in range(MAX_ATTEMPTS):
            diagram, crowded = self._lay_out(gaps, rows, along)
            if not crowded:
                break
            grow = {k for k in crowded if along[k] or k not in self._weight_gaps}
            for k in crowded - grow:
                along[k] = True
            for k in grow:
                gaps[k] *= GROW_GAP
            for k in {c for k in grow for c in (k - 1, k) if c >= 0}:
                rows[k] *= GROW_ROW
        if not self._panels.cells:
            return diagram
        if frame is None:
            x0, _, x1, _ = diagram.bounds
            return self._wrapped(diagram) if x1 - x0 > PAGE_WIDTH else diagram
        scale = _fit(diagram, frame)  # before _wrapped, which moves the columns
        wrapped = self._wrapped(diagram)
        return wrapped if _fit(wrapped, frame) > scale else self._lay_out(gaps, rows, along)[0]

    def _wrapped(self, diagram: Diagram) -> Diagram:
        """The columns moved under the panels: the figure was wider than a page."""
        panels = self._panels
        columns = Diagram(diagram.circles[len(panels.circles):],
                          diagram.lines[len(panels.lines):], diagram.texts[len(panels.texts):])
        left, bottom, _, _ = panels.bounds
        column_left, _, _, column_top = columns.bounds
        dx, dy = left - column_left, bottom - column_top - 0.4
        for item in columns.circles + columns.texts:
            item.x, item.y = item.x + dx, item.y + dy
        for line in columns.lines:
            line.x1, line.y1, line.x2, line.y2 = line.x1 + dx, line.y1 + dy, line.x2 + dx, \
                line.y2 + dy
        return Diagram(panels.circles + columns.circles, panels.lines + columns.lines,
                       panels.texts + columns.texts, list(panels.cells))

    @property
    def _weight_gaps(self) -> set[int]:
        return {k for k, column in enumerate(self._columns)
                if any(label is not None for _, _, label in column.edges)}

    def _lay_out(self, gaps, rows, along) -> tuple[Diagram, set[int]]:
        """One layout with these gaps between columns, gaps between units and ways of
        writing weights; also the gaps (by the index of the column after them) where a
        label found no free place."""
        diagram = Diagram(list(self._panels.circles), list(self._panels.lines),
                          list(self._panels.texts), list(self._panels.cells))
        free = FreeSpace()
        for text in diagram.all_texts():
            free.add_text(text)
        for cell in diagram.cells:
            free.add_box((cell.x, cell.y, cell.x + cell.size, cell.y + cell.size))
        x = self._x
        placed: list[dict[int, Circle]] = []
        for k, column in enumerate(self._columns):
            x += gaps[k]
            placed.append(self._units(diagram, free, column, x, rows[k]))
        edges = []  # (gap, line, label) of every arrow drawn
        for k, column in enumerate(self._columns[1:], 1):
            sources, targets = placed[k - 1], placed[k]
            shown = [(i, j, label) for i, j, label in column.edges
                     if i in sources and j in targets]
            same = _same_label(column.edges)
            for (i, j, label), line in zip(shown, _arrows(shown, sources, targets)):
                line.source, line.target = self._columns[k - 1].names[i], column.names[j]
                diagram.lines.append(line)
                free.add_line(line, owner=len(edges))
                edges.append((k, line, None if same else label))
            if same:  # said once, under the gap
                units = list(sources.values()) + list(targets.values())
                bottom = min(c.y - c.r for c in units)
                centre = (units[0].x + units[-1].x) / 2
                note = phrase_label(self.words["same_weights"], same)
                _fixed(diagram, free, Text(centre, bottom - 0.45, note))
        crowded: set[int] = set()
        for k, column in enumerate(self._columns):  # biases, above their units
            for j, label in column.notes.items():
                if j in placed[k] and not _place_note(diagram, free, placed[k][j], label):
                    crowded |= {k, min(k + 1, len(self._columns) - 1)}
        # weights, near their source; one that finds no place may push another away
        options = {owner: _places_on_line(line, label, along[k])
                   for owner, (k, line, label) in enumerate(edges) if label is not None}
        placed_at: dict[int, Text] = {}
        for owner in sorted(options):
            first = free.first_clear(options[owner], owner)
            if first is not None:
                placed_at[owner] = options[owner].text(first)
                free.add_text(placed_at[owner], owner)
            elif not _push(free, options, placed_at, owner):
                crowded.add(edges[owner][0])
        for text in placed_at.values():
            diagram.texts.append(text)
        return diagram, crowded

    @staticmethod
    def _units(diagram: Diagram, free: FreeSpace, column: Column, x: float,
               row_gap: float) -> dict[int, Circle]:
        """A column's circles (⋮ for the units left out), its inputs' values on the left,
        its targets on the right."""
        radius, pt = column.radius_and_size()
        circles = {}
        for slot, y in zip(column.slots, column_ys(len(column.slots), row_gap)):
            if slot is None:  # ⋮, as three dots
                for dy in (-0.22, 0.0, 0.22):
                    dot = Circle(x, y + dy, 0.04, None, "dot")
                    diagram.circles.append(dot)
                    free.add_circle(dot)
                continue
            circle = Circle(x, y, radius, name_label(column.names[slot]), column.kind, pt,
                            column.names[slot])
            circles[slot] = circle
            diagram.circles.append(circle)
            free.add_circle(circle)
            if column.values:
                _fixed(diagram, free, Text(x - radius - 0.15, y, column.values[slot], "east",
                                           VALUE_PT))
            if slot < len(column.targets):
                line = Line(x + radius, y, x + radius + 0.9, y, source=column.names[slot],
                            target=column.targets[slot].ref)
                diagram.lines.append(line)
                free.add_line(line)
                _fixed(diagram, free, Text(x + radius + 1.0, y, column.targets[slot], "west",
                                           VALUE_PT))
        return circles


def _push(free: FreeSpace, options: dict[int, Places], placed_at: dict[int, Text],
          owner: int) -> bool:
    """Place weight ``owner`` where only one other weight is in the way, and that one
    elsewhere; whether it worked (if not, nothing changed)."""
    places = options[owner]
    for k in np.flatnonzero(free.clear(places, owner, weights=False)):
        text = places.text(int(k))
        blockers = free.blockers(Places(text.label, [(text.x, text.baseline)], [text.angle]),
                                 owner)
        if len(blockers) != 1:
            continue
        other = blockers[0]
        free.remove(other)
        free.add_text(text, owner)
        first = free.first_clear(options[other], other)
        if first is not None:
            placed_at[owner] = text
            placed_at[other] = options[other].text(first)
            free.add_text(placed_at[other], other)
            return True
        free.remove(owner)
        free.add_text(placed_at[other], other)
    return False


def _same_label(edges) -> Label | None:
    """The one label of many edges that all carry the same one (sixteen 0.0625s)."""
    labels = [label for _, _, label in edges]
    if len(labels) > 3 and None not in labels and len({label.tex for label in labels}) == 1:
        return labels[0]
    return None


def _fixed(diagram: Diagram, free: FreeSpace, text: Text) -> None:
    diagram.texts.append(text)
    free.add_text(text)


def _port_angles(count: int) -> list[float]:
    """Where arrows meet a circle, top to bottom (radians from the horizontal): spread
    over its side so that arrowheads stay apart and the top stays free for the bias."""
    step = min(math.radians(12), math.radians(60) / max(count - 1, 1))
    return [((count - 1) / 2 - rank) * step for rank in range(count)]


def _arrows(edges, sources: dict[int, Circle], targets: dict[int, Circle]) -> list[Line]:
    """The arrows of ``edges`` (i, j, label), each from a port on the right of its source
    to a port on the left of its target, ports in the order of the other ends."""
    out_port, in_port = {}, {}
    for i, circle in sources.items():
        mine = sorted((e for e in edges if e[0] == i), key=lambda e: -targets[e[1]].y)
        for edge, angle in zip(mine, _port_angles(len(mine))):
            out_port[edge[:2]] = (circle.x + circle.r * math.cos(angle),
                                  circle.y + circle.r * math.sin(angle))
    for j, circle in targets.items():
        mine = sorted((e for e in edges if e[1] == j), key=lambda e: -sources[e[0]].y)
        for edge, angle in zip(mine, _port_angles(len(mine))):
            in_port[edge[:2]] = (circle.x - circle.r * math.cos(angle),
                                 circle.y + circle.r * math.sin(angle))
    return [Line(*out_port[e[:2]], *in_port[e[:2]]) for e in edges]


def _place_note(diagram: Diagram, free: FreeSpace, circle: Circle, label: Label) -> bool:
    """A label above a unit: just above it, or a little higher, or a little aside."""
    half = sum(label.extent(LABEL_PT)) / 2 + MARGIN
    places = Places.centred(label, [(circle.x + shift, circle.y + circle.r + lift + half)
                                    for lift in (0.1, 0.18, 0.26, 0.34)
                                    for shift in (0.0, 0.15, -0.15, 0.3, -0.3)], 0.0)
    first = free.first_clear(places)
    if first is not None:
        _fixed(diagram, free, places.text(first))
        return True
    return False


def _places_on_line(line: Line, label: Label, along: bool) -> Places:
    """Where a weight may go on its edge, on a white box, in order: from near its source
    on, level; when ``along``, also written along the edge."""
    dx, dy = line.x2 - line.x1, line.y2 - line.y1
    angles = [0.0, math.degrees(math.atan2(dy, dx))] if along else [0.0]
    points = [(line.x1 + f * dx, line.y1 + f * dy) for f in FRACTIONS for _ in angles]
    return Places.centred(label, points, angles * len(FRACTIONS), background=True)


def _reshape(names: list[str], shape) -> list[list[list[str]]]:
    channels, rows, cols = shape
    return [[names[(c * rows + r) * cols:(c * rows + r + 1) * cols] for r in range(rows)]
            for c in range(channels)]


def _index_part(name: str) -> tuple[str, str] | None:
    """``p^{(2)}_{1,1,1}`` → (``p^{(2)}``, ``1,1,1``): the name's stem and its last subscript."""
    depth, cut = 0, None
    for k, char in enumerate(name):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if char == "_" and depth == 0:
            cut = k
    if cut is None:
        return None
    index, end = _group(name, cut + 1)
    if end != len(name):
        return None
    return name[:cut], index


def _fit_cells(grids, labels, caption: Label | None, given: bool):
    """The cells' side and text size for these labels: CELL, or more up to MAX_CELL; a
    smaller text; or, for names sharing a stem, the stem in the caption and the indices
    in the cells; or bigger cells."""
    def side(label_grids, pt):
        widest = max(label.width(pt) for grid in label_grids for row in grid for label in row)
        tallest = max(sum(label.extent(pt)) for grid in label_grids for row in grid
                      for label in row)
        return max(CELL, widest + 2 * MARGIN + 0.1, tallest + 2 * MARGIN + 0.1)

    for pt in (LABEL_PT, LABEL_PT - 1):
        if side(labels, pt) <= MAX_CELL:
            return side(labels, pt), pt, labels, caption
    parts = [_index_part(n) for grid in grids for row in grid for n in row]
    if not given and all(parts) and len({stem for stem, _ in parts}) == 1:
        stem = parts[0][0]
        indices = [[[Label(_index_part(n)[1], tex_pieces(_index_part(n)[1])) for n in row]
                    for row in grid] for grid in grids]
        words = caption.tex + " " if caption else ""
        caption = Label(f"{words}${stem}$", ((("", caption.text + " "),) if caption else ())
                        + tex_pieces(stem), math=False)
        return side(indices, LABEL_PT), LABEL_PT, indices, caption
    return side(labels, LABEL_PT), LABEL_PT, labels, caption
