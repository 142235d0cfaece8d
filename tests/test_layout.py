"""The worked solutions on paper (issue 10): compiled to PDF and read back.

Every bundled example, in both languages, compiles without an overfull line; the course's
14-parameter example fits in 8 pages in full detail and 4 in compact detail; the 6×6
convolution's filter gradient starts by page 4; a sheet's instruction is on the page of
its table; no display follows an empty paragraph. The page of a passage is read with
pdftotext, one page at a time (form feeds).
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tempfile

import pytest

from backprop_explain import api, pdf
from worked import EXAMPLES, solved

ENGINE = pdf.find_engine()
needs_engine = pytest.mark.skipif(
    ENGINE is None or shutil.which("pdftotext") is None,
    reason="no LaTeX engine or no pdftotext; CI installs texlive-latex-base and poppler-utils")

COURSE = "examples/mlp_3_2_2_cross_entropy.toml"
CONV = "examples/conv_6x6_filter_3x3.toml"


def latex(spec: str, lang: str, detail: str | None = None) -> str:
    """api.explain(spec, fmt="tex", …), each example derived once for the module."""
    from backprop_explain.diagram import document_figure
    from backprop_explain.document import render_solution
    solution = solved(spec)
    return render_solution(solution, "tex", lang, detail=detail,
                           diagram=document_figure(solution.spec, "tex", lang, None))


def test_the_helper_writes_what_the_api_writes():
    assert latex(COURSE, "fr") == api.explain(COURSE, fmt="tex")


@functools.lru_cache(maxsize=None)
def compiled(tex: str) -> tuple[list[str], str]:
    """(the text of each page, the LaTeX log); a document compiled once for the module."""
    pdf_bytes, log = pdf.compile_with_log(tex, ENGINE)
    with tempfile.NamedTemporaryFile(suffix=".pdf") as handle:
        handle.write(pdf_bytes)
        handle.flush()
        text = subprocess.run(["pdftotext", handle.name, "-"], capture_output=True,
                              text=True, check=True).stdout
    pages = text.split("\f")
    return [" ".join(page.split()) for page in pages if page.strip()], log


def page_of(pages: list[str], words: str) -> int:
    return next(k for k, page in enumerate(pages, 1) if words in page)


def overfull(log: str) -> list[str]:
    return re.findall(r"^Overfull \\hbox.*$", log, re.M)


@needs_engine
@pytest.mark.parametrize("lang", ["en", "fr"])
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_fits_the_page(example, lang):
    pages, log = compiled(latex(str(example), lang))
    assert overfull(log) == []
    assert len(pages) <= 24  # the longest: batch norm over a mini-batch, every example written


@needs_engine
@pytest.mark.parametrize("detail, most", [("full", 8), ("compact", 4)])
def test_the_course_example_in_few_pages(detail, most):
    for lang in ("en", "fr"):
        pages, log = compiled(latex(COURSE, lang, detail))
        assert len(pages) <= most, (lang, len(pages))
        backward = page_of(pages, "Backward pass" if lang == "en" else "Rétropropagation :")
        assert backward <= 3
        assert overfull(log) == []


@needs_engine
def test_the_filter_gradient_comes_early():
    """The 6×6 convolution, compact: its 16 frozen readout weights on one line, so the
    filter's gradient (what the example is for) starts by page 4."""
    pages, log = compiled(latex(CONV, "fr", "compact"))
    assert page_of(pages, "Chaque poids du filtre sert") <= 4
    assert sum(page.count("gelé") for page in pages) <= 3
    assert overfull(log) == []


@needs_engine
def test_a_sheet_keeps_its_instruction_with_its_table(tmp_path):
    api_sheet = __import__("backprop_explain.sheet", fromlist=["write_sheets"])
    api_sheet.write_sheets("examples/sheet_mlp_3_2_2.toml", tmp_path, variants=1, seed=1,
                           fmt="tex")
    pages, log = compiled((tmp_path / "exercise_1.tex").read_text(encoding="utf-8"))
    assert page_of(pages, "Calculez les valeurs suivantes") == page_of(pages, "Votre réponse")
    assert overfull(log) == []


def test_no_display_opens_an_empty_paragraph():
    """A display continues the paragraph before it: no blank line above a display
    (LaTeX would set an empty line there), except after a heading, told so."""
    tex = latex(COURSE, "en")
    lines = tex.splitlines()
    for k, line in enumerate(lines):
        if line.startswith((r"\begin{align*}", r"\[", r"\begingroup\allowdisplaybreaks")):
            assert lines[k - 1].strip(), lines[k - 2:k + 1]
    assert r"\allowdisplaybreaks" not in tex.split(r"\begin{document}")[0]  # not global
