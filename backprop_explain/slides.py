"""Document stage: the worked solution as slides (beamer LaTeX, and its PDF).

The steps of the worked solution (steps.py) become frames, in the order of the document:
the network and its numbers, each forward layer, the loss, each chain-rule derivation
(in compact detail, each layer's δ's and gradients), each layer's updates, the loss
after. Frames are titled as the course's ("Rétropropagation : exemple k/N"); a frame
whose step derives gradients shows a small copy of the network at the right of its title,
every arrow of those chain rules lit (steps.Lighting, from the derivation's paths). The
text of a step is the document's, set at the document's width and scaled to the frame,
so no line runs over and nothing runs off a frame. A step taller than a frame is first
cut, between its paragraphs and displays (a display between its equations), into as
many frames as it needs, so that it is read at the size of the others rather than
shrunk (``frame_pieces``). The PDF is compiled as the document's (pdf.py: a fresh
directory, shell escape off).
"""

from __future__ import annotations

import math
import re

from .derivation import Solution
from .diagram import figure_for, render_diagram
from .document import solution_context
from .limits import check_frame
from .notation import split_outside
from .steps import Lighting, Steps
from .templating import render_template

FIGURE_HEIGHT = 1.4  # cm: the small copy of the network beside a frame's title
FIGURE_WIDEST = 6.0  # cm: a wider copy is scaled to this width instead

# A step is set 17 cm wide and scaled to the frame's 14.8 cm: the height a frame holds,
# in the step's own centimetres, below a title alone or beside a copy of the network
# (slides.tex.j2's step heights 6.1 cm and 5.5 cm, over 14.8/17).
STEP_WIDTH = 17.0
FRAME_HEIGHT = {False: 6.1 * STEP_WIDTH / 14.8, True: 5.5 * STEP_WIDTH / 14.8}
# Heights in cm of what a step holds, set 17 cm wide in 11 pt (measured on the
# examples' steps with TeX: each estimate within about a third of the height set)
LINE = 0.36  # a line of text alone
NEXT_LINE = 0.45  # each further line of a paragraph
CHARACTERS = 110  # a 17 cm line of 11 pt text
DISPLAY_LINE = 0.55  # a line of a display (sub- and superscripts, \left( … \right))
MATRIX_ROW = 0.42  # a row of a matrix in a display
FRACTION = 0.28  # what a built-up fraction adds to a display's row
DISPLAY = 0.2  # the space above and below a display
TABLE_ROW = 0.55  # a row of a table (its math has sub- and superscripts)


def _environment_depth(line: str) -> int:
    return len(re.findall(r"\\begin\{", line)) - len(re.findall(r"\\end\{", line))


def blocks(text: str) -> list[str]:
    """The step's paragraphs and displays: its text cut at blank lines outside
    environments."""
    found, current, depth = [], [], 0
    for line in text.split("\n"):
        if not line.strip() and depth == 0:
            if current:
                found.append("\n".join(current))
            current = []
            continue
        current.append(line)
        depth += _environment_depth(line)
    if current:
        found.append("\n".join(current))
    return found


def _rows_height(rows: list[str]) -> float:
    """The height of a display's or a table's rows: a row as tall as its tallest
    matrix, a fraction taller than a line."""
    height = 0.0
    for row in rows:
        inner = row.count("\\\\")  # the rows of the matrices in it
        height += max(DISPLAY_LINE, MATRIX_ROW * (1 + inner)) + (
            FRACTION if "\\frac" in row else 0)
    return height


def _display(block: str):
    """(environment, its rows) when ``block`` is one display, else None."""
    match = re.fullmatch(r"\\begin\{(align\*|equation\*|gather\*)\}\n?(.*?)\n?"
                         r"\\end\{\1\}", block.strip(), re.S)
    if not match:
        return None
    return match.group(1), split_outside(match.group(2), "\\\\")


def height(block: str) -> float:
    """An estimate of ``block``'s height set 17 cm wide, in cm."""
    display = _display(block)
    if display:
        return 2 * DISPLAY + _rows_height(display[1])
    if "\\begin{tabular}" in block:
        return TABLE_ROW * (block.count("\\\\") + 1)
    if block.lstrip().startswith("\\begin{itemize}"):
        items = block.split("\\item")[1:]
        return sum(_text_height(item) + 0.1 for item in items)
    if "\\begin{tikzpicture}" in block:
        return math.inf  # a picture is scaled into its frame: a frame of its own
    return _text_height(block)


def text_height(piece: str) -> float:
    """An estimate of a frame's text set 17 cm wide, in cm, its pictures left out (they are
    scaled into their frame)."""
    return sum(h for h in map(height, blocks(piece)) if h != math.inf)


def _text_height(text: str) -> float:
    words = re.sub(r"\\[a-zA-Z]+|[{}$^_]", "", text.strip())
    return LINE + NEXT_LINE * (max(1, math.ceil(len(words) / CHARACTERS)) - 1)


def _cut_display(block: str, room: float) -> list[str]:
    """A display taller than a frame, cut between its equations (a row that does not
    go on with ``&`` starts one) into displays that fit ``room``."""
    environment, rows = _display(block)
    equations: list[list[str]] = []
    for row in rows:
        if equations and row.lstrip().startswith("&"):
            equations[-1].append(row)
        else:
            equations.append([row])
    pieces = _packed(equations, _rows_height, room - 2 * DISPLAY)
    return ["\\begin{%s}\n%s\n\\end{%s}" % (environment, " \\\\\n".join(
        r.strip() for r in piece), environment) for piece in pieces]


def _packed(groups: list[list[str]], tall, room: float) -> list[list[str]]:
    """``groups`` (each kept whole) laid one after the other into pieces of at most
    ``room`` by their height ``tall(group)``; a group taller than ``room`` alone in its
    piece."""
    pieces, current, used = [], [], 0.0
    for group in groups:
        height_of = tall(group)
        if current and used + height_of > room:
            pieces.append(current)
            current, used = [], 0.0
        current += group
        used += height_of
    if current:
        pieces.append(current)
    return pieces


def _cut_table(block: str, room: float) -> list[str]:
    """A table taller than a frame, cut between its rows into tables that fit ``room``,
    each with the header (the lines down to the second \\hline)."""
    lines = block.split("\n")
    rules = [k for k, line in enumerate(lines) if line.strip() == "\\hline"]
    if len(rules) < 3:
        return [block]
    head, rows, foot = lines[:rules[1] + 1], lines[rules[1] + 1:rules[-1]], lines[rules[-1]:]
    per_frame = max(1, int(room / TABLE_ROW) - 2)  # the header and the rules
    return ["\n".join(head + rows[k:k + per_frame] + foot)
            for k in range(0, len(rows), per_frame)]


def _leads_in(block: str) -> bool:
    """A heading, or a sentence announcing what follows (ending with a colon): kept with
    the block after it."""
    last = block.rstrip().removesuffix("\\par").rstrip()
    return last.endswith(":") or (last.startswith("\\textbf{") and last.endswith("}"))


def frame_pieces(text: str, figure: bool) -> list[str]:
    """``text`` (a step) cut into the pieces that each fill at most one frame; a block
    taller than a frame (a long table, a picture) gets a frame of its own and is scaled
    into it."""
    room = FRAME_HEIGHT[figure]
    units: list[list[str]] = []  # blocks that stay together: a lead-in and what it leads to
    for block in blocks(text):
        parts = [block]
        if height(block) > room - LINE:
            if _display(block):
                parts = _cut_display(block, room - LINE)
            elif "\\begin{tabular}" in block:
                parts = _cut_table(block, room - LINE)
        for part in parts:
            if units and _leads_in(units[-1][-1]):
                units[-1].append(part)
            else:
                units.append([part])
    pieces = _packed(units, lambda unit: sum(height(b) for b in unit), room)
    return ["\n\n".join(piece) for piece in pieces]


def render_slides(solution: Solution, lang: str = "en", digits: int = 4,
                  decimal_comma: bool | None = None, detail: str | None = None,
                  derivatives: str = "both") -> str:
    """The slides of ``solution`` as a complete beamer document."""
    steps = Steps(solution.spec.title + lang)
    diagram = figure_for(solution.spec, lang, decimal_comma, digits,
                         frame=(STEP_WIDTH, FRAME_HEIGHT[False]))
    context = solution_context(solution, "tex", lang, digits, decimal_comma, detail=detail,
                               derivatives=derivatives, syntax="beamer",
                               diagram=render_diagram(diagram, "tex"))
    context.update(steps.context())
    cut = steps.cut(render_template("solution.beamer.j2", context))
    lighting = Lighting(diagram, solution.graph)
    x0, y0, x1, y1 = diagram.bounds
    scale = min(FIGURE_HEIGHT / (y1 - y0), FIGURE_WIDEST / (x1 - x0))
    figure_height = f"{(y1 - y0) * scale:.2f}cm"
    frames = []
    for step in cut[1:]:
        lit = lighting.chain(step.chain) if step.chain else []
        # the copy with nothing lit is set once (\networkbox), the lit elements over it
        figure = (r"\resizebox{!}{" + figure_height + r"}{\rlap{\usebox{\networkbox}}"
                  + render_diagram(diagram, "tex", lit=lit, fit="", only=True).strip() + "}"
                  ) if lit else ""
        for k, piece in enumerate(frame_pieces(step.text.strip(), bool(figure))):
            check_frame(solution.spec, step.title, text_height(piece))
            frames.append({"title": step.title, "text": piece, "figure": figure,
                           "figure_width": (x1 - x0) * scale + 0.2, "continued": k > 0})
    title, _, intro = cut[0].text.strip().partition("\n")
    return render_template("slides.tex.j2", {
        "t": context["t"], "title": title.strip(), "intro": intro.strip(), "steps": frames,
        "frame_title": context["t"]["slides"]["frame_title"],
        "network": render_diagram(diagram, "tex", lit=[], fit="").strip(),
        "pgfplots": bool(context.get("history"))})
