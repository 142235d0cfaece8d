"""Diagrams stay legible: over every example (both languages), random MLPs up to 5-6-4 and
the CNN examples, no two texts overlap, no line or arrowhead crosses a text, every text
stays inside the drawing, its circle or its cell — measured on the SVG and on the TikZ the
renderers emit (tests/legibility.py). The text model those measures rest on is checked
against real renderings: pdfTeX's and librsvg's glyph boxes (pdftotext -bbox) lie inside
the boxes the layout gave their texts; librsvg draws sub/superscripts lowered/raised."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from backprop_explain import api
from backprop_explain.diagram import diagram_for, figure_for, network_diagram, render_diagram
from backprop_explain.drawing import (PAGE_WIDTH, PX_PER_CM, Circle, Diagram, Line, Sketch, Text,
                                      caption_label, name_label, number_label)
from backprop_explain.errors import SpecError
from backprop_explain.notation import NumberFormat
from backprop_explain.templating import extra_phrases
from legibility import from_svg, from_tikz, problems, random_mlp, random_sizes

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def network_examples() -> list[str]:
    out = []
    for path in sorted(EXAMPLES.glob("*.toml")):
        try:
            api.as_spec(str(path))
        except SpecError:  # answers, sheet templates
            continue
        out.append(path.name)
    return out


def random_specs(count: int = 6) -> list[dict]:
    """The 5-6-4 itself, then random sizes up to it; seeded."""
    rng = np.random.default_rng(11)
    return [random_mlp(rng, (5, 6, 4) if k == 0 else random_sizes(rng)) for k in range(count)]


def assert_legible(spec, lang: str = "en") -> None:
    figure = figure_for(spec, lang)
    for fmt, read in (("svg", from_svg), ("tex", from_tikz)):
        found = problems(read(render_diagram(figure, fmt)))
        assert found == {"overlaps": [], "crossings": [], "outside": []}, (fmt, found)


def test_the_examples_include_cnns_and_wide_columns():
    names = network_examples()
    assert {"cnn_2ch_stride2_maxpool.toml", "conv_6x6_filter_3x3.toml",
            "mlp_3_2_2_cross_entropy.toml"} <= set(names)


@pytest.mark.parametrize("lang", ["en", "fr"])
@pytest.mark.parametrize("name", network_examples())
def test_every_example_is_legible(name, lang):
    assert_legible(api.as_spec(str(EXAMPLES / name)), lang)


@pytest.mark.parametrize("index", range(6))
def test_random_networks_up_to_5_6_4_are_legible(index):
    assert_legible(api.as_spec(random_specs()[index]))


def test_the_measure_finds_overlaps_crossings_and_texts_outside():
    """A figure with every fault, drawn by the real templates: each is counted."""
    numbers = NumberFormat(3)
    long_name = name_label("p^{(2)}_{1,1,1}")
    diagram = Diagram(
        circles=[Circle(0, 0, 0.3, long_name, "unit")],  # the name sticks out
        lines=[Line(-2, 1, 2, 1)],
        texts=[Text(0, 1, number_label(0.25, numbers)),  # on the line, not its own
               Text(0.1, 1.05, number_label(-1.5, numbers)),  # on the text before
               Text(1.5, -1, caption_label("far"), background=True),
               Text(1.5, -1, caption_label("too"))])  # on "far"
    drawing_bounds = diagram.bounds
    assert drawing_bounds  # the canvas covers them all: put one text out of it
    diagram.texts.append(Text(drawing_bounds[2] + 0.5, 0, caption_label("out")))
    for read, fmt in ((from_svg, "svg"), (from_tikz, "tex")):
        found = problems(read(render_diagram(diagram, fmt)))
        assert any("'0.25' and '−1.5'" in p for p in found["overlaps"]), (fmt, found)
        assert any("'far' and 'too'" in p for p in found["overlaps"]), (fmt, found)
        assert any(p.startswith("'0.25' crossed") for p in found["crossings"]), (fmt, found)
        assert any("sticks out of its circle" in p for p in found["outside"]), (fmt, found)
        assert any("'out' outside the drawing" in p for p in found["outside"]), (fmt, found)


def test_wide_columns_are_abbreviated_and_equal_weights_said_once():
    spec = api.as_spec(str(EXAMPLES / "conv_6x6_filter_3x3.toml"))  # 16 cells → y, all 1/16
    diagram = network_diagram(spec)
    names = [c.label.text for c in diagram.circles if c.label]
    assert names[:4] == ["z1,1", "z1,2", "z4,4", "y"]  # the first two, the last
    assert sum(c.kind == "dot" for c in diagram.circles) == 3  # ⋮
    weights = [t for t in diagram.texts if t.background]
    assert not weights  # no sixteen 0.0625s on the edges…
    assert [t.label.text for t in diagram.texts if "0.0625" in t.label.text] == [
        "all weights = 0.0625"]  # …but once
    assert "tous les poids = $0{,}0625$" in diagram_for(spec, "tex", "fr")


def test_crowded_weights_turn_along_their_edges_or_the_columns_move_apart():
    spec = api.as_spec(random_specs()[0])  # 5-6-4: 54 weights
    diagram = network_diagram(spec)
    weights = [t for t in diagram.texts if t.background]
    assert len(weights) == 5 * 6 + 6 * 4
    columns = sorted({round(c.x, 6) for c in diagram.circles})
    assert columns[1] - columns[0] > 3.8  # wider than the 3-2-2 of the course
    course = network_diagram(api.as_spec(str(EXAMPLES / "mlp_3_2_2_cross_entropy.toml")))
    assert sorted({round(c.x, 6) for c in course.circles})[1] == pytest.approx(3.8)
    assert all(t.angle == 0 for t in course.texts)  # the course's figure: level weights


def test_a_new_kind_draws_through_the_sketch_alone():
    """What a kind such as batch norm would draw: a column joined one to one, without
    weights, a label above each unit; laid out and legible like the rest."""
    spec = api.as_spec(str(EXAMPLES / "mlp_3_2_2_cross_entropy.toml"))
    values = dict(spec.parameters)
    values.update(zip(spec.input_names, spec.examples[0].inputs))
    sketch = Sketch(spec, values, NumberFormat(3), extra_phrases("en")["diagram"])
    spec.layers[0].draw(sketch)
    column = sketch.neurons([r"\hat{h}_1", r"\hat{h}_2"])
    for j in range(2):
        column.connect(j, j)
        column.above(j, caption_label("γ = 1, β = 0"))
    sketch.targets(["v_1", "v_2"], [1.0, 0.0])
    diagram = sketch.finish()
    assert [c.label.text for c in diagram.circles][-2:] == ["h\u03021", "h\u03022"]
    for fmt, read in (("svg", from_svg), ("tex", from_tikz)):
        found = problems(read(render_diagram(diagram, fmt)))
        assert found == {"overlaps": [], "crossings": [], "outside": []}, (fmt, found)


def test_a_cnn_wider_than_the_page_puts_its_neurons_under_its_grids():
    for name in ("conv_6x6_filter_3x3.toml", "cnn_2ch_stride2_maxpool.toml",
                 "cnn_3x3_filter_2x2.toml"):
        diagram = network_diagram(api.as_spec(str(EXAMPLES / name)))
        x0, _, x1, _ = diagram.bounds
        units = [c for c in diagram.circles if c.label]
        assert max(c.y + c.r for c in units) < min(c.y for c in diagram.cells), name
        assert x1 - x0 < PAGE_WIDTH + 2, name  # the grids alone, at most


# ---------------------------------------------------------------------------
# Against real renderings

def needs(*tools):
    return pytest.mark.skipif(not all(shutil.which(tool) for tool in tools),
                              reason=f"draws with {', '.join(tools)}")

BP_PER_CM = 72 / 2.54


def pdf_words(pdf: Path) -> list[list[tuple[str, float, float, float, float]]]:
    """Per page, each word pdftotext finds: text, x0, top, x1, bottom (bp, downwards)."""
    out = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], check=True,
                         capture_output=True, text=True).stdout
    pages = []
    for page in out.split("<page ")[1:]:
        pages.append([(html.unescape(m[4]), float(m[0]), float(m[1]), float(m[2]), float(m[3]))
                      for m in re.findall(r'xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" '
                                          r'yMax="([\d.]+)">([^<]*)<', page)])
    return pages


def strays(diagram: Diagram, words, bp_per_cm: float) -> list:
    """The words (page coordinates, top-left = the drawing's) not inside any text's box,
    within 0.5 bp; 2.5 bp for a turned text, whose glyphs pdftotext boxes roughly."""
    x0, _, _, y1 = diagram.bounds
    boxes = []
    for text in diagram.all_texts():
        corners = text.corners(0.0)
        slack = (2.5 if text.angle else 0.5) / bp_per_cm
        boxes.append((min(x for x, _ in corners) - slack, min(y for _, y in corners) - slack,
                      max(x for x, _ in corners) + slack, max(y for _, y in corners) + slack))
    out = []
    for word, left, top, right, bottom in words:
        a, b = x0 + left / bp_per_cm, y1 - bottom / bp_per_cm
        c, d = x0 + right / bp_per_cm, y1 - top / bp_per_cm
        if not any(a >= u and b >= v and c <= w and d <= z for u, v, w, z in boxes):
            out.append(word)
    return out


def figures() -> list[Diagram]:
    specs = [str(EXAMPLES / "mlp_3_2_2_cross_entropy.toml"),
             str(EXAMPLES / "cnn_2ch_stride2_maxpool.toml"), random_specs()[0]]
    return [network_diagram(api.as_spec(spec)) for spec in specs]


@needs("pdflatex", "pdftotext")
def test_pdftex_draws_every_text_inside_its_box(tmp_path):
    """Each figure on a page of its own size (top-left = the drawing's), as the document
    prints it: every glyph pdftotext finds lies in the box the layout gave its text."""
    diagrams = figures()
    pages = []
    for diagram in diagrams:
        tikz = render_diagram(diagram, "tex")
        picture = tikz[tikz.index(r"\begin{tikzpicture}"):tikz.index(r"\end{tikzpicture}")]
        pages.append(r"\setbox0\hbox{" + picture + r"\end{tikzpicture}}"
                     r"\pdfpagewidth=\wd0 \pdfpageheight=\ht0 \shipout\box0")
    (tmp_path / "figures.tex").write_text(
        r"\documentclass{article}\usepackage[T1]{fontenc}\usepackage{lmodern}"
        r"\usepackage{amsmath,tikz}\begin{document}\hoffset=-1in \voffset=-1in "
        + "\n".join(pages) + r"\end{document}", encoding="utf-8")
    subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "figures.tex"],
                   cwd=tmp_path, check=True, capture_output=True)
    words = pdf_words(tmp_path / "figures.pdf")
    assert len(words) == len(diagrams)
    for diagram, page in zip(diagrams, words):
        assert len(page) >= len(diagram.all_texts())
        assert strays(diagram, page, BP_PER_CM) == []


@needs("rsvg-convert", "pdftotext")  # Debian: librsvg2-bin, poppler-utils
def test_librsvg_draws_every_text_inside_its_box(tmp_path):
    for k, diagram in enumerate(figures()):
        (tmp_path / f"{k}.svg").write_text(render_diagram(diagram, "svg"), encoding="utf-8")
        subprocess.run(["rsvg-convert", "-f", "pdf", f"{k}.svg", "-o", f"{k}.pdf"],
                       cwd=tmp_path, check=True)
        page = pdf_words(tmp_path / f"{k}.pdf")[0]
        assert len(page) >= len(diagram.all_texts())
        assert strays(diagram, page, PX_PER_CM * 72 / 96) == []  # librsvg: 96 px an inch


@needs("rsvg-convert", "pdftotext")
def test_librsvg_draws_sub_and_superscripts_lowered_and_raised_and_smaller(tmp_path):
    bias = number_label(0.2, NumberFormat(3), "bh_1")  # the spaces around = stay
    diagram = Diagram(texts=[Text(0, 0, name_label("w^{(1)}v_{2,3}y"), pt=20),
                             Text(0, -2, bias, pt=20)])
    (tmp_path / "name.svg").write_text(render_diagram(diagram, "svg"), encoding="utf-8")
    subprocess.run(["rsvg-convert", "-f", "pdf", "name.svg", "-o", "name.pdf"], cwd=tmp_path,
                   check=True)
    words = {word: (top, bottom) for word, _, top, _, bottom in
             pdf_words(tmp_path / "name.pdf")[0]}
    assert set(words) == {"w", "(1)", "v", "2,3", "y", "bh", "1", "=", "0.2"}
    (w_top, w_bottom), (up_top, up_bottom) = words["w"], words["(1)"]
    (down_top, down_bottom) = words["2,3"]
    assert up_top < w_top and down_bottom > w_bottom  # raised, lowered (bp, downwards)
    assert up_bottom - up_top < w_bottom - w_top  # smaller
    for back in ("v", "y"):  # back on the line
        assert words[back] == pytest.approx((w_top, w_bottom), abs=0.01)
