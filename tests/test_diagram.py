"""Network diagrams: the given numbers of the course's figures in SVG and TikZ, CNN grids,
and the SVG written beside a Markdown explanation."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from click.testing import CliRunner

from backprop_explain import api
from backprop_explain.cli import main
from backprop_explain.diagram import diagram_for, network_diagram, svg_name

COURSE = "examples/mlp_3_2_2_cross_entropy.toml"
CNN = "examples/cnn_3x3_filter_2x2.toml"
SVG = "{http://www.w3.org/2000/svg}"


def svg_words(svg: str) -> str:
    root = ET.fromstring(svg)
    return " ".join("".join(t.itertext()) for t in root.iter(f"{SVG}text")).replace("\u200b", "")


def test_course_diagram_shows_the_given_numbers():
    svg = diagram_for(api.as_spec(COURSE), "svg")
    text = svg_words(svg)
    for number in ("0.15", "0.25", "−0.5", "0.1", "−0.4", "1.4", "−1"):  # inputs, weights, biases
        assert number in text.split() or f"= {number}" in text
    assert "bh1 = 0.2" in text and "v1 = 1" in text and "outh1" in text
    tikz = diagram_for(api.as_spec(COURSE), "tex", "fr")
    assert "{$bh_1 = 0{,}2$}" in tikz and "\\begin{tikzpicture}" in tikz


def test_cnn_diagram_draws_the_grids_then_the_neurons():
    spec = api.as_spec(CNN)
    diagram = network_diagram(spec)
    given = [c for c in diagram.cells if c.given]
    computed = [c for c in diagram.cells if not c.given]
    assert len(given) == 9 + 4  # the 3×3 image and the 2×2 filter, with their numbers
    assert len(computed) == 4  # the 2×2 feature map, by name
    assert len(diagram.circles) == 4 + 2 + 2  # flattened cells, hidden units, outputs
    words = svg_words(diagram_for(spec, "svg"))
    assert "x11" in words and "∗" in words and "feature map" in words  # ∗ as in the course
    tikz = diagram_for(spec, "tex", "fr")
    assert "carte de caractéristiques" in tikz and r"$\ast$" in tikz


def test_names_become_svg_subscripts():
    """Raised, then lowered, in a smaller size; the next text back on the baseline."""
    text = svg_name("w^{(1)}_{2,1}")
    root = ET.fromstring(f'<text xmlns="http://www.w3.org/2000/svg">{text}</text>')
    w, up, down = root.text, *root
    assert (w, up.text, down.text) == ("w", "(1)", "2,1")
    assert float(up.get("dy")) < 0 < float(down.get("dy"))  # y downwards in SVG
    assert float(up.get("font-size")) == float(down.get("font-size")) < 11.81 * 0.8
    after = ET.fromstring(f'<text xmlns="http://www.w3.org/2000/svg">{svg_name("a_1 b")}</text>')
    assert sum(float(t.get("dy") or 0) for t in after) == 0  # "b" back on the baseline
    assert svg_name(r"\hat{y}_k").startswith("y\u0302")  # y with a combining hat
    assert svg_name("a<b") == "a&lt;b"  # never markup


def test_markdown_explanation_links_an_svg_beside_it(tmp_path):
    out = tmp_path / "course.md"
    result = CliRunner().invoke(main, ["explain", COURSE, "--lang", "en", "-o", str(out)])
    assert result.exit_code == 0, result.output
    svg = tmp_path / "course.network.svg"
    assert "](course.network.svg)" in out.read_text()
    assert "0.15" in svg_words(svg.read_text())
    stdout = CliRunner().invoke(main, ["explain", COURSE]).output
    assert ".svg)" not in stdout  # no file to link to when printing
