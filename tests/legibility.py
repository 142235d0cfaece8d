"""How legible a drawn network is, measured on what the renderers emit: the SVG document and
the TikZ code are read back (texts, lines, arrowheads, circles, cells) and every text's box
is measured with the figure's text model (drawing.Label: widths bounding both fonts);
then, with plain geometry of its own (cross products, not the layout's clipping):

- overlaps: two text boxes that meet, or a text box meeting a circle or a grid cell that
  is not its own;
- crossings: a line or an arrowhead meeting a text box (a label on a white box sits on one
  edge, the line through its middle: that one is its own);
- outside: a text not inside the drawing (the SVG canvas, TikZ's bounding box), a name
  sticking out of its circle, a cell's text out of its cell.

Reads the figures of this branch and those drawn before it (SVG markers and
``dominant-baseline``, TikZ ``\\scriptsize`` nodes), so that benchmarks/diagram_metrics.py
counts both the same way. Also makes random MLP specs.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import numpy as np

from backprop_explain.drawing import CENTRE, PT, PX_PER_CM, Label, tex_pieces

SVG = "{http://www.w3.org/2000/svg}"
TOLERANCE = 2e-3  # cm: the rounding of the coordinates written

Point = tuple[float, float]


@dataclass
class Shape:
    """A convex quadrilateral (corners anticlockwise): a text's box, maybe turned; a cell;
    a white background; the drawing's bounds."""

    corners: list[Point]
    text: str = ""
    background: bool = False

    @property
    def centre(self) -> Point:
        return (sum(x for x, _ in self.corners) / 4, sum(y for _, y in self.corners) / 4)


def rectangle(x0, y0, x1, y1) -> Shape:
    x0, x1, y0, y1 = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
    return Shape([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])


def turned(shape: Shape, angle: float, pivot: Point) -> Shape:
    """The shape turned by ``angle`` degrees anticlockwise about ``pivot``."""
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    px, py = pivot
    shape.corners = [(px + (x - px) * c - (y - py) * s, py + (x - px) * s + (y - py) * c)
                     for x, y in shape.corners]
    return shape


@dataclass
class Drawing:
    texts: list[Shape] = field(default_factory=list)
    segments: list[tuple[float, float, float, float]] = field(default_factory=list)
    circles: list[tuple[float, float, float]] = field(default_factory=list)  # x, y, r
    cells: list[Shape] = field(default_factory=list)
    backgrounds: list[Shape] = field(default_factory=list)
    canvas: Shape | None = None


def text_shape(x, y, pieces, pt, anchor="center", vertical="baseline", inner_sep=0.0,
               angle=0.0) -> Shape:
    """The box of a text by the figure's text model; ``vertical`` says what y is: the
    baseline, or the middle of the box (TikZ anchor=center, SVG dominant-baseline=central);
    ``angle`` turns it about (x, y)."""
    label = Label("", tuple(pieces))
    width = label.width(pt)
    below, above = label.extent(pt)
    left = {"west": x + inner_sep, "east": x - inner_sep - width}.get(anchor, x - width / 2)
    if vertical == "baseline":
        baseline = y
    elif vertical == "central":  # the middle of the em box sits at y
        baseline = y - CENTRE * pt * PT
    else:  # the box's middle sits at y
        baseline = y - (above - below) / 2
    shape = rectangle(left, baseline - below, left + width, baseline + above)
    shape.text = label.text
    return turned(shape, angle, (x, y))


def _with_backgrounds(drawing: Drawing) -> Drawing:
    for text in drawing.texts:
        text.background = text.background or any(_inside(text.centre, b)
                                                 for b in drawing.backgrounds)
    return drawing


# ---------------------------------------------------------------------------
# SVG


def _rotation(element) -> tuple[float, Point] | None:
    match = re.search(r"rotate\(\s*(-?[\d.]+)[\s,]+(-?[\d.]+)[\s,]+(-?[\d.]+)\s*\)",
                      element.get("transform") or "")
    if not match:
        return None
    angle, x, y = (float(v) for v in match.groups())
    return -angle, (x / PX_PER_CM, -y / PX_PER_CM)  # y downwards in SVG: the angle flips


def from_svg(svg: str) -> Drawing:
    root = ET.fromstring(svg)
    scale = 1 / PX_PER_CM
    drawing = Drawing()
    drawing.canvas = rectangle(0, -float(root.get("height")) * scale,
                               float(root.get("width")) * scale, 0)

    def point(x, y) -> Point:  # px, downwards → cm, upwards
        return float(x) * scale, -float(y) * scale

    for element in root.iter():
        tag = element.tag.replace(SVG, "")
        if tag == "line":
            start = point(element.get("x1"), element.get("y1"))
            end = point(element.get("x2"), element.get("y2"))
            drawing.segments.append((*start, *end))
            if element.get("marker-end"):  # the old arrowhead: 8×6 px, tip at the end
                drawing.segments += _triangle_sides(start, end, 8 * scale, 3 * scale)
        elif tag == "polygon":
            numbers = [float(v) for v in re.findall(r"-?[\d.]+", element.get("points"))]
            corners = [point(numbers[k], numbers[k + 1]) for k in range(0, len(numbers), 2)]
            drawing.segments += [(*a, *b) for a, b in zip(corners, corners[1:] + corners[:1])]
        elif tag == "circle":
            x, y = point(element.get("cx"), element.get("cy"))
            drawing.circles.append((x, y, float(element.get("r")) * scale))
        elif tag == "rect" and element.get("x") is not None:
            x, y = point(element.get("x"), element.get("y"))
            shape = rectangle(x, y - float(element.get("height")) * scale,
                              x + float(element.get("width")) * scale, y)
            rotation = _rotation(element)
            if rotation:
                turned(shape, *rotation)
            if element.get("stroke"):
                drawing.cells.append(shape)
            elif element.get("fill") == "white":
                drawing.backgrounds.append(shape)
        elif tag == "text":
            drawing.texts.append(_svg_text(element, float(element.get("font-size")), point))
    return _with_backgrounds(drawing)


def _svg_text(element, size: float, point) -> Shape:
    """A <text>: its pieces by the tspans' shifts (dy stays in force after a tspan)."""
    pieces: list[tuple[str, str]] = []
    shift = 0.0

    def add(text):
        text = (text or "").replace("\u200b", "")
        if text:
            position = "" if abs(shift) < 1e-9 else ("sub" if shift > 0 else "sup")
            pieces.append((position, text))

    add(element.text)
    for tspan in element:
        shift += float(tspan.get("dy") or 0)
        add(tspan.text)
        add(tspan.tail)
    x, y = point(element.get("x"), element.get("y"))
    anchor = {"start": "west", "end": "east"}.get(element.get("text-anchor"), "center")
    vertical = "central" if element.get("dominant-baseline") == "central" else "baseline"
    shape = text_shape(x, y, pieces, size / PX_PER_CM / PT, anchor, vertical)
    rotation = _rotation(element)
    return turned(shape, *rotation) if rotation else shape


# ---------------------------------------------------------------------------
# TikZ

_NUMBER = r"-?\d+(?:\.\d+)?(?:e-?\d+)?"
_POINT = rf"\(\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\)"
_SIZES = {"tiny": 6, "scriptsize": 8, "footnotesize": 9, "small": 10, "normalsize": 10.95}  # 11pt


def _braced(text: str, start: int) -> tuple[str, int]:
    """The {group} opening at text[start]: its contents and the index after it."""
    depth = 0
    for k in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[k], 0)
        if depth == 0:
            return text[start + 1:k], k + 1
    raise ValueError("unbalanced braces")


def _options(text: str) -> str:
    """The [options] at the start of ``text`` (braces may hold brackets' neighbours)."""
    if not text.startswith("["):
        return ""
    depth = 0
    for k, char in enumerate(text):
        depth += {"[": 1, "]": -1, "{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            return text[1:k]
    raise ValueError("unbalanced options")


def from_tikz(tikz: str) -> Drawing:
    drawing = Drawing()
    body = tikz[tikz.index(r"\begin{tikzpicture}"):tikz.index(r"\end{tikzpicture}")]
    body = body[body.index("\n"):]
    for statement in re.finditer(r"\\(useasboundingbox|draw|fill|node)\b", body):
        command, rest = statement.group(1), body[statement.end():]
        options = _options(rest)
        rest = rest[len(options) + 2:] if rest.startswith("[") else rest
        if command == "node":
            match = re.match(r"\s*at\s*" + _POINT + r"\s*", rest)
            content, _ = _braced(rest, match.end())
            drawing.texts.append(_node_shape(float(match.group(1)), float(match.group(2)),
                                             options, content.strip()))
            continue
        path = rest[:rest.index(";")]
        points = [(float(a), float(b)) for a, b in re.findall(_POINT, path)]
        if command == "useasboundingbox":
            drawing.canvas = rectangle(*points[0], *points[1])
        elif "circle" in path:
            radius = float(re.search(r"circle\s*\(\s*(" + _NUMBER + r")", path).group(1))
            drawing.circles.append((*points[0], radius))
        elif "rectangle" in path:
            (x, y), (u, v) = points
            shape = rectangle(x, y, x + u, y + v) if "++" in path else rectangle(x, y, u, v)
            (drawing.backgrounds if command == "fill" else drawing.cells).append(shape)
        elif "cycle" in path and "white" in options:  # a label's white box
            drawing.backgrounds.append(Shape(points))
        elif "cycle" in path:
            drawing.segments += [(*a, *b) for a, b in zip(points, points[1:] + points[:1])]
        else:
            drawing.segments.append((*points[0], *points[1]))
            if "->" in options:  # the old stealth arrowhead, at the end
                drawing.segments += _triangle_sides(points[0], points[1], 0.15, 0.06)
    return _with_backgrounds(drawing)


def _node_shape(x, y, options: str, content: str) -> Shape:
    font = re.search(r"\\fontsize\{(" + _NUMBER + r")\}", options)
    if font:
        pt = float(font.group(1))
    else:
        named = re.search(r"\\(" + "|".join(_SIZES) + ")", options)
        pt = _SIZES[named.group(1) if named else "normalsize"]
    inner = 0.3333 * pt * PT  # TikZ's default inner sep, .3333em
    sep = re.search(r"inner sep=(" + _NUMBER + r")(pt|em)?", options)
    if sep:
        inner = float(sep.group(1)) * (pt * PT if sep.group(2) == "em" else PT)
    anchor_option = re.search(r"anchor=([a-z ]+)", options)
    anchor = anchor_option.group(1).split() if anchor_option else ["center"]
    rotate = re.search(r"rotate=(" + _NUMBER + ")", options)
    is_math = content.startswith("$") and content.endswith("$") and content.count("$") == 2
    pieces = tex_pieces(content[1:-1] if is_math else content, math=is_math)
    horizontal = anchor[-1] if anchor[-1] in ("west", "east") else "center"
    vertical = "baseline" if anchor[0] == "base" else "middle"
    shape = text_shape(x, y, pieces, pt, horizontal, vertical, inner,
                       float(rotate.group(1)) if rotate else 0.0)
    shape.background = "fill=white" in options
    return shape


# ---------------------------------------------------------------------------
# Geometry (its own: cross products)


def _triangle_sides(start: Point, tip: Point, length: float, half_width: float):
    (x1, y1), (x2, y2) = start, tip
    d = math.hypot(x2 - x1, y2 - y1)
    ux, uy = (x2 - x1) / d, (y2 - y1) / d
    bx, by = x2 - length * ux, y2 - length * uy
    a, b, c = (x2, y2), (bx - half_width * uy, by + half_width * ux), (bx + half_width * uy,
                                                                       by - half_width * ux)
    return [(*a, *b), (*b, *c), (*c, *a)]


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _inside(point: Point, shape: Shape, slack: float = 0.0) -> bool:
    """Whether the point lies in the convex shape, or within ``slack`` of it (negative:
    deeper in than that)."""
    corners = shape.corners
    for a, b in zip(corners, corners[1:] + corners[:1]):
        if _cross(a, b, point) / math.dist(a, b) < -slack:
            return False
    return True


def _segments_cross(p: Point, q: Point, r: Point, s: Point) -> bool:
    d1, d2, d3, d4 = _cross(r, s, p), _cross(r, s, q), _cross(p, q, r), _cross(p, q, s)
    return d1 * d2 < 0 and d3 * d4 < 0


def _edges(shape: Shape):
    corners = shape.corners
    return list(zip(corners, corners[1:] + corners[:1]))


def _shrunk(shape: Shape) -> Shape:
    """The shape moved TOLERANCE in from each side: touching does not count."""
    cx, cy = shape.centre
    out = []
    for x, y in shape.corners:
        d = math.hypot(x - cx, y - cy) or 1.0
        out.append((x - (x - cx) / d * TOLERANCE * 1.5, y - (y - cy) / d * TOLERANCE * 1.5))
    return Shape(out, shape.text)


def _apart(one: list[Point], other: list[Point]) -> bool:
    """Their extents do not meet: nothing more to look at."""
    return (max(x for x, _ in one) < min(x for x, _ in other)
            or max(x for x, _ in other) < min(x for x, _ in one)
            or max(y for _, y in one) < min(y for _, y in other)
            or max(y for _, y in other) < min(y for _, y in one))


def segment_meets(segment, shape: Shape) -> bool:
    if _apart([segment[:2], segment[2:]], shape.corners):
        return False
    inner = _shrunk(shape)
    p, q = segment[:2], segment[2:]
    if _inside(p, inner) or _inside(q, inner):
        return True
    return any(_segments_cross(p, q, a, b) for a, b in _edges(inner))


def shapes_meet(one: Shape, other: Shape) -> bool:
    if _apart(one.corners, other.corners):
        return False
    a, b = _shrunk(one), _shrunk(other)
    if any(_inside(p, b) for p in a.corners) or any(_inside(p, a) for p in b.corners):
        return True
    return any(_segments_cross(p, q, r, s) for p, q in _edges(a) for r, s in _edges(b))


def _distance_to_segment(point: Point, segment) -> float:
    (px, py), (x1, y1, x2, y2) = point, segment
    dx, dy = x2 - x1, y2 - y1
    t = max(0.0, min(1.0, ((px - x1) * dx + (py - y1) * dy) / (dx * dx + dy * dy or 1.0)))
    return math.hypot(px - x1 - t * dx, py - y1 - t * dy)


def circle_meets(circle, shape: Shape) -> bool:
    x, y, r = circle
    if _apart([(x - r, y - r), (x + r, y + r)], shape.corners):
        return False
    if _inside((x, y), shape):
        return True
    return any(_distance_to_segment((x, y), (*a, *b)) < r - TOLERANCE for a, b in _edges(shape))


def _in_circle(shape: Shape, circle) -> bool:
    x, y, r = circle
    return all(math.hypot(cx - x, cy - y) <= r + TOLERANCE for cx, cy in shape.corners)


def _within(shape: Shape, outer: Shape) -> bool:
    return all(_inside(p, outer, TOLERANCE) for p in shape.corners)


def problems(drawing: Drawing) -> dict[str, list[str]]:
    """Every problem found, by kind: overlaps, crossings, outside."""
    found: dict[str, list[str]] = {"overlaps": [], "crossings": [], "outside": []}
    shapes = [c for c in drawing.circles if c[2] > 0.1]  # not the dots of ⋮
    homes: dict[int, object] = {}  # a text's circle or cell
    for k, text in enumerate(drawing.texts):
        cx, cy = text.centre
        for circle in shapes:
            if math.hypot(cx - circle[0], cy - circle[1]) < circle[2] / 2:
                homes[k] = circle
                if not _in_circle(text, circle):
                    found["outside"].append(f"{text.text!r} sticks out of its circle")
        for cell in drawing.cells:
            if math.dist(text.centre, cell.centre) < 0.05:
                homes[k] = cell
                if not _within(text, cell):
                    found["outside"].append(f"{text.text!r} spills out of its cell")
        if drawing.canvas and not _within(text, drawing.canvas):
            found["outside"].append(f"{text.text!r} outside the drawing")
    for k, text in enumerate(drawing.texts):
        for other in drawing.texts[k + 1:]:
            if shapes_meet(text, other):
                found["overlaps"].append(f"{text.text!r} and {other.text!r}")
        for circle in shapes:
            if homes.get(k) is not circle and circle_meets(circle, text):
                found["overlaps"].append(f"{text.text!r} on a circle")
        for cell in drawing.cells:
            if homes.get(k) is not cell and shapes_meet(cell, text):
                found["overlaps"].append(f"{text.text!r} on a grid cell")
        own = None
        if text.background:  # its edge: the line through its middle
            distances = [_distance_to_segment(text.centre, s) for s in drawing.segments]
            if distances and min(distances) < 0.03:
                own = int(np.argmin(distances))
        for index, segment in enumerate(drawing.segments):
            if index != own and segment_meets(segment, text):
                found["crossings"].append(f"{text.text!r} crossed by a line")
    return found


def counts(drawing: Drawing) -> dict[str, int]:
    return {kind: len(items) for kind, items in problems(drawing).items()}


# ---------------------------------------------------------------------------
# Random networks


def random_mlp(rng: np.random.Generator, sizes: tuple[int, ...]) -> dict:
    """A spec of dense sigmoid layers of these sizes (inputs first), numbers with one to
    three decimals, some negative; squared error."""
    def number():
        return round(float(rng.uniform(-2, 2)), int(rng.integers(1, 4)))

    layers = [{"type": "dense", "activation": "sigmoid",
               "weights": [[number() for _ in range(n_in)] for _ in range(n_out)],
               "biases": [number() for _ in range(n_out)]}
              for n_in, n_out in zip(sizes, sizes[1:])]
    return {"title": "random " + "-".join(map(str, sizes)),
            "inputs": {"values": [number() for _ in range(sizes[0])]},
            "layers": layers,
            "loss": {"type": "half_squared_error",
                     "targets": [round(float(rng.uniform(0, 1)), 2) for _ in range(sizes[-1])]},
            "training": {"learning_rate": 0.1}}


def random_sizes(rng: np.random.Generator, largest=(5, 6, 4)) -> tuple[int, ...]:
    return tuple(int(rng.integers(1, n + 1)) for n in largest)
