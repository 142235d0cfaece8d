"""The Python API in the command line's words, results that show themselves in Jupyter,
specs from standard input, and output directories created alike by every command."""

from __future__ import annotations

import json
import shutil
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

import backprop_explain
from backprop_explain import api
from backprop_explain.cli import main
from backprop_explain.derivation import Solution
from backprop_explain.pdf import find_engine
from backprop_explain.spec import NetworkSpec, load_spec
from backprop_explain.verify import Verification

ROOT = Path(__file__).resolve().parent.parent
COURSE = str(ROOT / "examples" / "mlp_3_2_2_cross_entropy.toml")
MINIBATCH = str(ROOT / "examples" / "mlp_minibatch.toml")
ANSWERS = str(ROOT / "examples" / "course_3_2_2_answers.toml")
SHEET = str(ROOT / "examples" / "sheet_mlp_3_2_2.toml")


def test_a_solution_shows_its_worked_solution_and_a_short_repr():
    solution = api.solve(COURSE)
    assert isinstance(solution, Solution)
    assert repr(solution) == ("<Solution of 'Rétropropagation sur le réseau 3-2-2 du cours': "
                              "14 gradients, one SGD step: loss 0.134877 → 0.13485>")
    assert solution._repr_markdown_() == api.explain(COURSE)
    latex = solution._repr_latex_()
    assert "\\documentclass" not in latex and "\\begin{document}" not in latex
    assert "E_{tot}" in latex and "\\frac{\\partial E_{tot}}{\\partial wo_{1,1}}" in latex
    assert solution.markdown(lang="fr", digits=6) == api.explain(COURSE, lang="fr", digits=6)
    assert solution.latex() == api.explain(COURSE, format="tex")


def test_a_training_run_shows_its_loss_chart_and_a_spec_its_network():
    solution = api.solve(MINIBATCH)
    run = solution.training
    assert repr(run).startswith("<TrainingRun: 10 steps, loss 0.762488 before the first")
    assert run._repr_svg_().startswith("<svg") and "</svg>" in run._repr_svg_()
    spec = api.load_spec(MINIBATCH)
    assert isinstance(spec, NetworkSpec) and spec == load_spec(MINIBATCH)
    assert repr(spec) == ("<NetworkSpec 'Mini-batch SGD with momentum on a 2-3-2 network': "
                          "2 inputs → dense 3 (tanh) → dense 2 (softmax); cross_entropy; "
                          "17 parameters, 4 examples>")
    assert spec._repr_svg_() == backprop_explain.load_spec(MINIBATCH)._repr_svg_()
    assert spec._repr_svg_().startswith("<svg") and spec._repr_svg_().endswith("</svg>\n")
    assert len(repr(solution)) < 200 and len(repr(spec)) < 200


def test_a_verification_shows_its_report():
    check = api.verify(COURSE, ANSWERS)
    assert isinstance(check, Verification)
    assert repr(check) == ("<Verification of 141 answers: 123 correct, 12 wrong, "
                           "6 consistent, 0 unknown key>")
    markdown = check._repr_markdown_()
    # in the spec's language (lang = "fr"), the nouns agreeing with their numbers
    assert markdown.startswith("# Vérification de 141 réponses")
    assert "**Première étape fausse**" in markdown
    assert check.report("md", "en").startswith("# Check of 141 answers")
    assert json.loads(check.report("json"))[0]["key"] == "wo_{1,1}"


def test_explain_markdown_renders_in_a_notebook():
    text = api.explain(COURSE)
    assert isinstance(text, str) and text._repr_markdown_() == text
    assert not hasattr(api.explain(COURSE, format="json"), "_repr_markdown_")


@pytest.mark.parametrize("call, message", [
    (lambda: api.explain(COURSE, format="docx"),
     "format: one of md, tex, pdf, json, html, beamer, slides-pdf, got 'docx'"),
    (lambda: api.explain(COURSE, fmt="odt"),
     "format: one of md, tex, pdf, json, html, beamer, slides-pdf, got 'odt'"),
    (lambda: api.explain(COURSE, lang="de"), "lang: one of en, fr, got 'de'"),
    (lambda: api.explain(COURSE, digits=0), "digits: a whole number from 1 to 17, got 0"),
    (lambda: api.explain(COURSE, digits="4"), "digits: a whole number from 1 to 17, got '4'"),
    (lambda: api.write_explanation(COURSE, "x.md", format="txt"), "format: one of md, tex"),
    (lambda: api.keys(COURSE, lang="es"), "lang: one of en, fr, got 'es'"),
    (lambda: api.sheet(SHEET, "out", format="docx"), "format: one of md, tex, pdf, moodle"),
    (lambda: api.verify(COURSE, ANSWERS).report("html"), "format: one of text, md, json"),
])
def test_a_wrong_word_is_a_value_error_naming_the_allowed_ones(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)
    assert not isinstance(error.value, KeyError)


def test_format_pdf_returns_bytes_or_writes_output(tmp_path):
    if find_engine() is None or shutil.which("pdftotext") is None:
        pytest.skip("no LaTeX engine")
    pdf = api.explain(ROOT / "examples" / "mlp_1_1_1_squared_error.toml", format="pdf")
    assert isinstance(pdf, bytes) and pdf.startswith(b"%PDF")
    written = api.explain(ROOT / "examples" / "mlp_1_1_1_squared_error.toml", format="pdf",
                          output=tmp_path / "new" / "one.pdf")
    assert written == [tmp_path / "new" / "one.pdf"] and written[0].read_bytes() == pdf


def test_explain_output_writes_the_files(tmp_path):
    written = api.explain(MINIBATCH, output=tmp_path / "run.md")
    assert [p.name for p in written] == ["run.md", "run.network.svg", "run.loss.svg"]


def test_the_package_names_the_api():
    assert backprop_explain.explain is api.explain and backprop_explain.from_torch is api.from_torch
    assert backprop_explain.to_toml(COURSE) == api.to_toml(COURSE)
    assert tomllib.loads(backprop_explain.to_toml(COURSE))["training"] == {"learning_rate": 0.001}


# ---------------------------------------------------------------------------
# Standard input, output directories


def test_explain_reads_the_spec_from_standard_input():
    runner = CliRunner()
    toml = Path(COURSE).read_text(encoding="utf-8")
    from_file = runner.invoke(main, ["explain", COURSE, "--format", "json"])
    from_toml = runner.invoke(main, ["explain", "-", "--format", "json"], input=toml)
    as_json = json.dumps(tomllib.loads(toml))
    from_json = runner.invoke(main, ["explain", "-", "--format", "json"], input=as_json)
    assert from_file.exit_code == from_toml.exit_code == from_json.exit_code == 0
    assert from_toml.output == from_json.output == from_file.output
    keys = runner.invoke(main, ["keys", "-"], input=toml)
    assert keys.exit_code == 0 and "wo_{1,1}" in keys.output
    bad = runner.invoke(main, ["explain", "-"], input='{"layers": ')
    assert bad.exit_code == 2 and bad.output.startswith("Error: <stdin>: line 1")
    assert bad.output.count("\n") == 1


def test_every_command_creates_its_output_directory(tmp_path, monkeypatch):
    """-o in a directory that does not exist: created, by every command alike."""
    runner = CliRunner()
    for k, (args, written) in enumerate((
            (["explain", COURSE, "-o", "a/b/net.md"], "a/b/net.network.svg"),
            (["explain", COURSE, "--format", "json", "-o", "c/net.json"], "c/net.json"),
            (["verify", COURSE, ANSWERS, "-o", "d/report.txt"], "d/report.txt"),
            (["sheet", SHEET, "-o", "e/f"], "e/f/answers.json"),
            (["export-torch", COURSE, "-o", "g/check.py"], "g/check.py"))):
        (tmp_path / str(k)).mkdir()
        monkeypatch.chdir(tmp_path / str(k))  # -o relative to a fresh directory
        result = runner.invoke(main, args)
        assert result.exit_code in (0, 1), result.output
        assert Path(written).is_file(), args


def test_sheet_ends_with_a_summary_of_what_it_wrote(tmp_path):
    result = CliRunner().invoke(main, ["sheet", SHEET, "--variants", "3", "-o",
                                       str(tmp_path / "s")])
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr == (f"Wrote 15 files for 3 variants in {tmp_path / 's'}: "
                             "network_1…3.svg, exercise_1…3.md, solution_1…3.md, exercises.md, "
                             "solutions.md, spec_1…3.json, answers.json\n")
    assert len(list((tmp_path / "s").iterdir())) == 15


def test_import_torch_without_torch_is_one_line(tmp_path, monkeypatch):
    """PyTorch is optional: reading a model without it says how to install it."""
    (tmp_path / "net.py").write_text("def make():\n    return None\n")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    result = CliRunner().invoke(main, ["import-torch", f"{tmp_path / 'net.py'}:make",
                                       "--inputs", "[[1]]", "--targets", "[[1]]"])
    assert result.exit_code == 2
    assert result.output == ("Error: PyTorch: the torch package to read a PyTorch model "
                             "(pip install torch)\n")
    assert "torch" in api.export_torch(COURSE)  # writing a script needs no torch
