"""The worked solution as beamer slides: compiled and read back.

Every example in French, full detail (the course's slides), and a subset in English and
in compact detail: the frames are the steps of the worked solution in its order, titled
"Rétropropagation : exemple k/N"; the log has no overfull box; pdftotext -bbox finds no
word outside its page; each gradient frame lights, on its small copy of the network, the
arrows of the chain rules it derives (compared with the derivation's own paths).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from backprop_explain import api
from backprop_explain.document import render_solution
from backprop_explain.pdf import compile_with_log
from backprop_explain.slides import render_slides
from backprop_explain.steps import Steps

EXAMPLES = sorted(p for p in Path("examples").glob("*.toml")
                  if not p.name.startswith("sheet_") and "answers" not in p.name)
SUBSET = ["mlp_3_2_2_cross_entropy", "cnn_2ch_stride2_maxpool", "mlp_batchnorm"]
needs_tex = pytest.mark.skipif(shutil.which("pdflatex") is None or shutil.which("pdftotext") is None,
                               reason="needs pdflatex and pdftotext")

CASES = [(p, "fr", "full") for p in EXAMPLES]
CASES += [(p, "en", "compact") for p in EXAMPLES if p.stem in SUBSET]
CASES += [(p, "en", "full") for p in EXAMPLES if p.stem == "mlp_3_2_2_cross_entropy"]
CASES += [(p, "fr", "compact") for p in EXAMPLES if p.stem == "conv_6x6_filter_3x3"]
TITLES = {"fr": "Rétropropagation : exemple {k}/{n}", "en": "Backpropagation: example {k}/{n}"}


def words_outside(pdf: bytes) -> tuple[int, list[str]]:
    """(pages, the words whose box leaves their page), from pdftotext -bbox."""
    out = subprocess.run(["pdftotext", "-bbox", "-", "-"], input=pdf, capture_output=True,
                         check=True).stdout.decode("utf-8")
    pages, outside = 0, []
    for page in re.finditer(r'<page width="([\d.]+)" height="([\d.]+)">(.*?)</page>', out, re.S):
        pages += 1
        width, height = float(page.group(1)), float(page.group(2))
        for word in re.finditer(r'xMin="([-\d.]+)" yMin="([-\d.]+)" xMax="([-\d.]+)" '
                                r'yMax="([-\d.]+)">([^<]*)<', page.group(3)):
            x0, y0, x1, y1 = map(float, word.groups()[:4])
            if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
                outside.append(f"page {pages}: {word.group(5)}")
    return pages, outside


def word_heights(pdf: bytes, page: int) -> list[float]:
    """The height in pt of each word of a page (pdftotext -bbox)."""
    out = subprocess.run(["pdftotext", "-bbox", "-f", str(page), "-l", str(page), "-", "-"],
                         input=pdf, capture_output=True, check=True).stdout.decode("utf-8")
    return [float(y1) - float(y0) for y0, y1 in re.findall(
        r'yMin="([-\d.]+)" xMax="[-\d.]+" yMax="([-\d.]+)"', out)]


def page_texts(pdf: bytes) -> list[str]:
    out = subprocess.run(["pdftotext", "-layout", "-", "-"], input=pdf, capture_output=True,
                         check=True).stdout.decode("utf-8")
    return out.split("\f")[:-1]


def frames(tex: str) -> list[str]:
    return re.findall(r"\\begin\{frame\}\[t\]\n\\frametitle.*?\\end\{frame\}", tex, re.S)


@needs_tex
@pytest.mark.parametrize("path, lang, detail", CASES,
                         ids=[f"{p.stem}-{lang}-{d}" for p, lang, d in CASES])
def test_slides_compile_fit_and_count_their_steps(path, lang, detail):
    solution = api.solve(path)
    tex = render_slides(solution, lang, detail=detail)
    pdf, log = compile_with_log(tex)
    assert "Overfull" not in log
    # a step taller than its frame was cut into frames: what is still scaled down (a
    # picture, a row of wide matrices) keeps at least 0.35 of the text's size, the
    # course's own network 0.8
    scales = [float(a) / (float(b) * 14.8 / 17) for a, b in re.findall(
        r"step scaled to height: ([\d.]+)pt of ([\d.]+)pt", log)]
    assert min(scales, default=1) >= (0.8 if path.stem == "mlp_3_2_2_cross_entropy" else 0.35)
    pages, outside = words_outside(pdf)
    assert outside == []
    count = len(frames(tex))
    assert pages == count + 1  # the title, then a frame per step
    # the network's frame: a CNN's columns go under its grids only when that shows it
    # larger on the slide (Sketch.finish's frame); its smallest label is at least 2 pt
    # high (the 2-channel CNN's was 1.3 pt with the page's layout)
    network = next(k for k, f in enumerate(frames(tex)) if "\\begin{tikzpicture}" in f)
    assert min(word_heights(pdf, network + 2)) >= 2.0
    texts = page_texts(pdf)
    for k, text in enumerate(texts[1:], 1):  # pdftotext keeps the title on one line
        assert TITLES[lang].format(k=k, n=count) in " ".join(text.split())
    # every gradient the document derives by name is derived in a frame, in its order
    document = render_solution(solution, "tex", lang, detail=detail)
    body = "".join(frames(tex))

    def first(text, name):  # ∂E/∂θ in a derivation, or θ's row of a compact table
        found = [k for k in (text.find(r"{\partial " + name + "}"), text.find(f"${name}$ & "))
                 if k >= 0]
        return min(found, default=-1)
    named = [s.target for section in solution.example.sections for s in section.steps
             if s.kind == "gradient" and first(document, s.target) >= 0]
    assert named and all(first(body, name) >= 0 for name in named)
    assert sorted(named, key=lambda n: first(body, n)) == \
        sorted(named, key=lambda n: first(document, n))


def test_full_detail_has_a_frame_per_derivation_and_compact_one_per_layer():
    solution = api.solve("examples/mlp_3_2_2_cross_entropy.toml")
    full = frames(render_slides(solution, "fr", detail="full"))
    compact = frames(render_slides(solution, "fr", detail="compact"))
    gradient_frames = [f for f in full if r"\textbf{Gradient de $" in f]
    # the 14 parameters: one frame each, but the 3 of o2, said to be 0 in one frame (as
    # the course's slide 6/24)
    assert len(gradient_frames) == 11
    assert all(f.count(r"\textbf{Gradient de $") == 1 for f in gradient_frames)
    assert sum(r"{\partial wo_{2,1}} &= " in f and r"{\partial bo_2} = " in f
               and re.search(r"= 0\n\\end\{align\*\}", f) is not None for f in full) == 1
    assert len(compact) < len(full)
    # compact: each layer's gradients in one frame (its table)
    assert sum("tabular" in f and "wo_{1,1}" in f and "wo_{1,2}" in f for f in compact) >= 1


def test_a_long_step_is_cut_between_blocks_rows_and_equations():
    """frame_pieces: a table's rows over several frames, each with the header; a display
    cut between its equations, never inside one (its `&=` lines); a sentence ending with
    a colon kept with what it announces; every line of the step kept, in its order."""
    from backprop_explain.slides import frame_pieces
    rows = "\n".join(f"$w_{{{k}}}$ & ${k}$ \\\\" for k in range(1, 41))
    table = ("\\par\\smallskip\n\\begin{tabular}{ll}\n\\hline\nname & value \\\\\n\\hline\n"
             + rows + "\n\\hline\n\\end{tabular}\\par\\smallskip")
    equations = " \\\\\n".join(f"a_{{{k}}} &= \\frac{{1}}{{{k}}} \\\\\n &= {1 / k:.4f}"
                                 for k in range(1, 13))
    display = "\\begin{align*}\n" + equations + "\n\\end{align*}"
    step = "The values:\\par\n\n" + table + "\n\nThen:\\par\n\n" + display
    pieces = frame_pieces(step, figure=False)
    assert len(pieces) > 3
    tables = [p for p in pieces if "tabular" in p]
    assert len(tables) > 1 and all("name & value" in p for p in tables)
    assert pieces[0].startswith("The values:")  # the lead-in with the table's first rows

    def lines(text):
        return [line.strip().removesuffix("\\\\").strip() for line in text.split("\n")
                if line.lstrip().startswith(("$w_", "a_", "&="))]
    assert [line for p in pieces for line in lines(p)] == lines(step)
    for p in pieces:
        if "align*" in p:
            body = p.split("\\begin{align*}\n")[1]
            assert body.startswith("a_") and p.rstrip().endswith("\\end{align*}")
            assert not p.rstrip().removesuffix("\\end{align*}").rstrip().endswith("\\\\")
    assert "Then:" in next(p for p in pieces if "align*" in p)
    assert frame_pieces("Short.\\par", figure=True) == ["Short.\\par"]


def lit_edges(frame: str) -> int:
    return len(re.findall(r"\\draw\[draw=red!75!black, line width=1\.8pt\] \([^)]*\) --", frame))


def test_each_gradient_frame_lights_the_arrows_of_its_chain_rule():
    """The course's network: ∂E/∂wo_{1,1} goes through one arrow besides its own
    (out_{o1} → its target is not an arrow of the network), ∂E/∂wh_{1,1} through its own,
    then out_{h1} → out_{o1} and out_{h1} → out_{o2}: counted from the derivation's paths."""
    solution = api.solve("examples/mlp_3_2_2_cross_entropy.toml")
    tex = render_slides(solution, "en", detail="full")
    by_title = {}
    for frame in re.findall(r"\\renewcommand\{\\stepfigure\}\{(.*?)\}\n\\begin\{frame\}(.*?)"
                            r"\\end\{frame\}", tex, re.S):
        figure, body = frame
        title = re.search(r"\\textbf\{Gradient of \$(.*?)\$\}", body)
        if title:
            by_title[title.group(1)] = figure
    steps = {s.target: s for section in solution.example.sections for s in section.steps}
    for name in ("wo_{1,1}", "wh_{1,1}", "bh_1", "wh_{2,3}"):
        step = steps[name]
        hidden = len(step.paths[0]) > 5  # through a hidden unit: one arrow per path more
        expected = (1 if "b" not in name else 0) + (len(step.paths) if hidden else 0)
        assert lit_edges(by_title[name]) == expected, name
    assert all(by_title.values())


def test_frame_titles_follow_the_language_and_the_text_is_escaped():
    spec = api.load_spec("examples/mlp_1_1_1_squared_error.toml")
    hostile = api.spec_from_dict({**_raw("examples/mlp_1_1_1_squared_error.toml"),
                                  "title": r"\input{/etc/passwd} $x$ & #1 % ~^_"})
    tex = render_slides(api.solve(hostile), "en")
    assert r"\input{/etc/passwd}" not in tex
    assert r"\textbackslash{}input\{/etc/passwd\}" in tex
    assert "Backpropagation: example 1/" in render_slides(api.solve(spec), "en")
    assert "Rétropropagation : exemple 1/" in render_slides(api.solve(spec), "fr")


def _raw(path):
    import tomllib
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def test_the_steps_marks_cut_the_text_and_drop_empty_steps():
    steps = Steps("salt")
    text = "title" + steps.step("a", "A") + "one" + steps.step("b", "B") + steps.step("c", "C") + "three"
    cut = steps.cut(text)
    assert [(s.kind, s.text) for s in cut] == [("title", "title"), ("a", "one"), ("c", "three")]


@needs_tex
def test_cli_writes_slides_pdf_and_beamer(tmp_path):
    from click.testing import CliRunner
    from backprop_explain.cli import main
    runner = CliRunner()
    out = tmp_path / "slides.pdf"
    result = runner.invoke(main, ["explain", "examples/mlp_1_1_1_squared_error.toml",
                                  "--format", "slides-pdf", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"%PDF")
    result = runner.invoke(main, ["explain", "examples/mlp_1_1_1_squared_error.toml",
                                  "--format", "slides-pdf"])
    assert result.exit_code == 2 and "give -o FILE.pdf" in result.output
    result = runner.invoke(main, ["explain", "examples/mlp_1_1_1_squared_error.toml",
                                  "--format", "beamer"])
    assert result.exit_code == 0 and result.output.startswith(r"\documentclass")
