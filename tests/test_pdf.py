"""PDF output: real compiles read back with pdftotext (the course's published figures),
reproducible bytes, inert hostile text, and one-line errors without an engine or on a
failed compile."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from backprop_explain import api, pdf
from backprop_explain.cli import main
from backprop_explain.errors import SpecError

EXAMPLE = "examples/mlp_3_2_2_cross_entropy.toml"
ENGINE = pdf.find_engine()
needs_engine = pytest.mark.skipif(
    ENGINE is None or shutil.which("pdftotext") is None,
    reason="no LaTeX engine (latexmk/pdflatex/lualatex/tectonic) or no pdftotext installed; "
           "CI installs texlive-latex-base and poppler-utils")


def pdf_text(path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True,
                          text=True, check=True).stdout


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@needs_engine
@pytest.mark.parametrize("lang, output_value, loss", [("en", "0.8738", "0.1349"),
                                                      ("fr", "0,8738", "0,1349")])
def test_explain_pdf_shows_the_course_figures(tmp_path, lang, output_value, loss):
    out = tmp_path / f"course_{lang}.pdf"
    result = run("explain", EXAMPLE, "--format", "pdf", "--lang", lang, "-o", str(out))
    assert result.exit_code == 0, result.output
    text = pdf_text(out)
    # The course's published figures: out_o1 = 0.8738, out_o2 = 0.2177, E = 0.1349 (ln).
    assert output_value in text and output_value.replace("8738", "2177")[:6] in text
    assert loss in text
    assert ("Forward pass" if lang == "en" else "Passe avant") in text
    # The diagram is drawn: the bias labels of the figure are in the text layer.
    assert ("bh1 = 0.2" if lang == "en" else "bh1 = 0,2") in text.replace(" ", " ")
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left beside it


@needs_engine
def test_same_latex_gives_the_same_pdf_bytes():
    tex = api.explain(EXAMPLE, fmt="tex", lang="fr")
    assert pdf.compile_pdf(tex) == pdf.compile_pdf(tex)


HOSTILE = r"\input{/etc/passwd} \write18{touch PWNED} ^^5cinput{/etc/hostname} $x$ & % # ~"


@needs_engine
def test_hostile_title_prints_literally_and_runs_nothing(tmp_path):
    with open(EXAMPLE, "rb") as handle:
        data = tomllib.load(handle)
    pwned = tmp_path / "pwned"
    data["title"] = HOSTILE.replace("PWNED", str(pwned))
    out = tmp_path / "hostile.pdf"
    api.write_explanation(data, out, fmt="pdf")
    text = pdf_text(out)
    assert r"\input{/etc/passwd}" in text and r"\write18{touch" in text
    assert "^^5cinput" in text
    assert "root:" not in text  # /etc/passwd was not read
    assert not pwned.exists()
    hostname = Path("/etc/hostname")
    if hostname.exists() and hostname.read_text().strip():
        assert hostname.read_text().strip() not in text.replace(HOSTILE, "")


def test_a_name_cannot_carry_a_tex_command():
    with open(EXAMPLE, "rb") as handle:
        data = tomllib.load(handle)
    data["inputs"]["names"] = [r"\input{/etc/passwd}", "x_2", "x_3"]
    with pytest.raises(SpecError) as err:
        api.explain(data, fmt="tex")
    assert "\\input" in str(err.value) and "\n" not in str(err.value)


def test_no_engine_is_a_one_line_error_with_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setattr(pdf.shutil, "which", lambda name: None)
    out = tmp_path / "x.pdf"
    result = CliRunner().invoke(main, ["explain", EXAMPLE, "--format", "pdf", "-o", str(out)])
    assert result.exit_code == 2
    message = result.output.strip()
    assert len(message.splitlines()) == 1
    assert "no LaTeX engine" in message and "apt-get install texlive-latex-base" in message
    assert "--format tex" in message
    assert not out.exists()
    # --format tex still works without an engine
    assert run("explain", EXAMPLE, "--format", "tex").exit_code == 0


def test_pdf_needs_an_output_file():
    result = CliRunner().invoke(main, ["explain", EXAMPLE, "--format", "pdf"])
    assert result.exit_code == 2 and "-o" in result.output


@needs_engine
def test_failed_compile_shows_the_log_lines_and_leaves_no_pdf(tmp_path):
    broken = "\\documentclass{article}\n\\begin{document}\nfine\n\\undefinedmacro\n\\end{document}\n"
    out = tmp_path / "broken.pdf"
    with pytest.raises(pdf.PdfError) as err:
        pdf.write_pdf(out, broken)
    message = str(err.value)
    assert "! Undefined control sequence." in message and "l.4 \\undefinedmacro" in message
    assert "\n" not in message
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_engines_run_without_shell_escape():
    for engine in pdf.ENGINES:
        command = " ".join(" ".join(c) for c in pdf._commands(engine))
        if engine == "tectonic":
            assert "--untrusted" in command
        else:
            assert "-no-shell-escape" in command and "-interaction=nonstopmode" in command
            assert "-shell-escape " not in command.replace("-no-shell-escape", "")


def test_log_excerpt_picks_errors_and_line_numbers():
    log = ("This is pdfTeX\n(./document.tex\n! Missing $ inserted.\n<inserted text>\n$\n"
           "l.12 a_b\n\n! Emergency stop.\nl.12 a_b\n")
    assert pdf.log_excerpt(log) == "! Missing $ inserted. [l.12 a_b] | ! Emergency stop. [l.12 a_b]"


GREEK_TITLE = "Descente de gradient : η = 0,1, σ′(y) ≤ ¼, ∂E/∂w ∈ ℝ, Σ x₁ ⋅ 10⁻³ ✓"


@needs_engine
@pytest.mark.parametrize("fmt", ["pdf", "slides-pdf"])
def test_a_title_with_greek_letters_and_signs_is_set(tmp_path, fmt):
    """pdflatex's text fonts have no σ, ∂ or ≤: the title sets them as math instead of
    stopping the build (escaping._math_characters)."""
    with open(EXAMPLE, "rb") as handle:
        data = tomllib.load(handle)
    data["title"] = GREEK_TITLE
    out = tmp_path / f"greek.{fmt}.pdf"
    api.write_explanation(data, out, fmt=fmt)
    text = pdf_text(out)
    for sign in "ησ∂≤∈Σ✓":  # (ℝ reads back as R: a blackboard font)
        assert sign in text, sign


@needs_engine
def test_a_title_in_a_script_latex_cannot_set_is_one_line(tmp_path):
    with open(EXAMPLE, "rb") as handle:
        data = tomllib.load(handle)
    data["title"] = "Обратное распространение"
    out = tmp_path / "x.pdf"
    with pytest.raises(SpecError) as err:
        api.write_explanation(data, out, fmt="pdf")
    assert "U+041E" in str(err.value) and "\n" not in str(err.value)
    assert not out.exists()
