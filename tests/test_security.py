"""Nothing from a spec, a template or an answers file may read or write a file through TeX:
the name grammar refuses TeX's ^^ character codes, and every compile runs with TeX Live's
openin_any=p / openout_any=p, so even a document that bypasses our escaping reads nothing
outside its job directory (a planted secret proves it)."""

from __future__ import annotations

import shutil
import subprocess
import tomllib

import pytest
from click.testing import CliRunner

from backprop_explain import api, pdf
from backprop_explain.cli import main
from backprop_explain.errors import SpecError

EXAMPLE = "examples/mlp_3_2_2_cross_entropy.toml"
SHEET = "examples/sheet_mlp_3_2_2.toml"
needs_engine = pytest.mark.skipif(
    pdf.find_engine() is None or shutil.which("pdftotext") is None,
    reason="no LaTeX engine or pdftotext; CI installs both")
SECRET = "PLANTED-SECRET-7f3a9c"


def example():
    with open(EXAMPLE, "rb") as handle:
        return tomllib.load(handle)


@pytest.mark.parametrize("name", [
    "x^^5cinput{^^2fetc^^2fpasswd}", "^^5cinput{/etc/passwd}", "x^^M", "x^ ^5c", "x^",
    "x_", "x^^^^005c", "a#b", "x\\", "\\csname", "\\alpha\\input", "x\u02c6\u02c65c",
    "x\uff3e\uff3e5c", "x\x00", "x\n\\input{y}"])
def test_a_name_cannot_spell_a_tex_command(name):
    data = example()
    data["inputs"]["names"] = [name, "x_2", "x_3"]
    with pytest.raises(SpecError) as err:
        api.explain(data, fmt="tex")
    assert "\n" not in str(err.value) and "inputs.names[0]" in str(err.value)


def test_a_pattern_is_checked_as_filled_in():
    data = example()
    data["layers"][0]["names"]["weights"] = "wh_{#j#q}"  # #q is no placeholder: a stray #
    with pytest.raises(SpecError, match="layers\\[0\\].names.weights"):
        api.explain(data, fmt="tex")
    data["layers"][0]["names"]["weights"] = "wh^#^5c"
    with pytest.raises(SpecError, match="layers\\[0\\].names.weights"):
        api.explain(data, fmt="tex")


def test_a_sheet_template_name_is_checked_too(tmp_path):
    with open(SHEET, "rb") as handle:
        text = handle.read().decode()
    template = tmp_path / "t.toml"
    template.write_text(text.replace('names = ["x_1", "x_2", "x_3"]',
                                     'names = ["x^^5cinput{^^2fetc^^2fpasswd}", "x_2", "x_3"]'))
    result = CliRunner().invoke(main, ["sheet", str(template), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "^^" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.fixture
def planted(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET + "\n")
    return secret


def _reads_and_writes(secret, outside):
    r"""A document that tries every way TeX has to read ``secret`` and to write ``outside``
    (as if a future name or template slipped an escape past the grammar)."""
    return rf"""\documentclass{{article}}
\begin{{document}}
A: \InputIfFileExists{{{secret}}}{{}}{{no-A}}
B: \IfFileExists{{{secret}}}{{\input{{{secret}}}}}{{no-B}}
\newread\secretfile \openin\secretfile={secret} \ifeof\secretfile no-C\else
\read\secretfile to\line C: \line\fi
D: \InputIfFileExists{{../{secret.name}}}{{}}{{no-D}}
\newwrite\outside \immediate\openout\outside={outside}
\immediate\write\outside{{written}}\immediate\closeout\outside
\newwrite\dotfile \immediate\openout\dotfile=.dotfile
\immediate\write\dotfile{{written}}\immediate\closeout\dotfile
done
\end{{document}}
"""


@needs_engine
def test_tex_cannot_read_a_planted_secret_even_without_our_escaping(tmp_path, planted):
    # Without the paranoid settings this very document prints the secret (A, B, C).
    outside = tmp_path / "outside.txt"
    try:
        data = pdf.compile_pdf(_reads_and_writes(planted, outside))
    except pdf.PdfError as err:  # a refused \openout may stop the compile: also fine
        assert SECRET not in str(err)
        assert "I can't write on file" in str(err)
    else:
        pdf_file = tmp_path / "out.pdf"
        pdf_file.write_bytes(data)
        text = subprocess.run(["pdftotext", str(pdf_file), "-"], capture_output=True,
                              text=True, check=True).stdout
        assert SECRET not in text and "no-A" in text and "no-C" in text
    assert not outside.exists()


@needs_engine
def test_reading_alone_is_refused_and_the_document_still_builds(tmp_path, planted):
    reading = _reads_and_writes(planted, tmp_path / "x").split(r"\newwrite")[0] + "\\end{document}\n"
    pdf_file = tmp_path / "out.pdf"
    pdf_file.write_bytes(pdf.compile_pdf(reading))
    text = subprocess.run(["pdftotext", str(pdf_file), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert SECRET not in text
    assert "no-A" in text and "no-B" in text and "no-C" in text and "no-D" in text


def test_every_engine_runs_paranoid():
    env = pdf._environment()
    assert env["openin_any"] == "p" and env["openout_any"] == "p"
    assert env["shell_escape"] == "f"
    assert "TEXINPUTS" not in env and "TEXMFOUTPUT" not in env


@needs_engine
def test_slides_compile_as_paranoid_as_the_document(tmp_path, planted, monkeypatch):
    # As if a future name or template slipped an escape into a frame: the slides are
    # compiled by pdf.py too, so the frame shows that nothing could be read.
    from backprop_explain import slides
    render = slides.render_slides
    reading = _reads_and_writes(planted, tmp_path / "x").split(r"\begin{document}")[1]
    reading = reading.split(r"\newwrite")[0]

    def slipped(*args, **kwargs):
        return render(*args, **kwargs).replace(
            r"\end{document}", "\\begin{frame}\n" + reading + "\\end{frame}\n\\end{document}")

    monkeypatch.setattr(slides, "render_slides", slipped)
    out = tmp_path / "slides.pdf"
    result = CliRunner().invoke(main, ["explain", EXAMPLE, "--format", "slides-pdf", "-o",
                                       str(out)])
    assert result.exit_code == 0, result.output
    text = subprocess.run(["pdftotext", str(out), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert "no-A" in text and "no-C" in text  # the frame ran, and read nothing
    assert SECRET not in text
