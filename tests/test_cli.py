"""The explain command: documents in both languages, LaTeX that compiles, one-line errors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from backprop_explain import __version__
from backprop_explain.cli import main

EXAMPLE = "examples/mlp_3_2_2_cross_entropy.toml"


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_version_and_help():
    assert __version__ in run("--version").output
    for command in ([], ["explain"]):
        result = run(*command, "--help")
        assert result.exit_code == 0 and "Usage" in result.output


def test_markdown_in_english_reads_like_the_course():
    out = run("explain", EXAMPLE, "--lang", "en").output  # the spec says lang = "fr"
    assert "## 1. Forward pass" in out
    assert r"\frac{1}{1 + e^{- 0.4650}}" in out  # numbers substituted in the formula
    assert "0.8738" in out and "0.2177" in out
    # Chain rule for wo_{1,1}: three factors, then the product with numbers.
    assert (r"\frac{\partial E_{tot}}{\partial wo_{1,1}} &= \frac{\partial E_{tot}}"
            r"{\partial out_{o1}} \cdot \frac{\partial out_{o1}}{\partial y_{o1}} \cdot "
            r"\frac{\partial y_{o1}}{\partial wo_{1,1}}") in out
    assert r"\left(-1.144\right) \cdot 0.1103 \cdot 0.6142 = -0.07750" in out
    assert "(already computed)" in out
    # The hidden unit feeds both outputs: two paths summed.
    assert (r"\frac{\partial E_{tot}}{\partial y_{o1}} \cdot \frac{\partial y_{o1}}"
            r"{\partial out_{h1}} + \frac{\partial E_{tot}}{\partial y_{o2}}") in out
    assert "wo_{1,1}' &= wo_{1,1} - \\eta" in out
    assert r"0.100\,077\,50" in out  # enough digits to see the update, grouped by three
    assert "The loss decreased" in out


def test_french_uses_the_course_vocabulary_and_decimal_comma():
    out = run("explain", EXAMPLE, "--lang", "fr").output
    for words in ("Passe avant", "couche cachée", "dérivées partielles", "déjà calculé",
                  "taux d'apprentissage", "Vérité terrain"):
        assert words in out
    assert "0{,}8738" in out and "0.8738" not in out
    point = run("explain", EXAMPLE, "--lang", "fr", "--decimal-point").output
    assert "0.8738" in point


def test_decimal_comma_in_english_and_decimal_point_in_french():
    """--decimal-comma / --decimal-point override the language's separator, in every
    format that shows numbers (JSON keeps numbers as numbers)."""
    comma = run("explain", EXAMPLE, "--lang", "en", "--decimal-comma").output
    assert "The loss decreased" in comma  # still English
    assert "0{,}8738" in comma and "0.8738" not in comma
    tex = run("explain", EXAMPLE, "--lang", "en", "--format", "tex", "--decimal-comma").output
    assert "0{,}8738" in tex and "0.8738" not in tex
    point = run("explain", EXAMPLE, "--lang", "fr", "--decimal-point", "--format", "tex").output
    assert "0.8738" in point and "0{,}8738" not in point
    data = json.loads(run("explain", EXAMPLE, "--format", "json", "--decimal-comma").output)
    assert data["forward"]["out_{o1}"] == pytest.approx(0.8738232094895043, rel=1e-15)


def test_digits_round_the_display_only():
    out6 = run("explain", EXAMPLE, "--digits", "6", "--lang", "en").output
    assert "0.873823" in out6
    data = json.loads(run("explain", EXAMPLE, "--format", "json", "--digits", "2").output)
    assert data["forward"]["out_{o1}"] == pytest.approx(0.8738232094895043, rel=1e-15)


def test_same_input_same_bytes(tmp_path):
    for fmt in ("md", "tex", "json"):
        a, b = tmp_path / "a" / f"out.{fmt}", tmp_path / "b" / f"out.{fmt}"
        assert run("explain", EXAMPLE, "--format", fmt, "-o", str(a)).exit_code == 0
        assert run("explain", EXAMPLE, "--format", fmt, "-o", str(b)).exit_code == 0
        assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("lang", ["en", "fr"])
@pytest.mark.parametrize("example", [EXAMPLE, "examples/mlp_tanh_softmax.toml",
                                     "examples/mlp_relu_softmax_shared.toml",
                                     "examples/mlp_1_1_1_squared_error.toml"])
def test_latex_compiles(tmp_path, lang, example):
    if not shutil.which("pdflatex"):
        pytest.skip("pdflatex is not installed (.ci/run installs it)")
    tex = tmp_path / "solution.tex"
    assert run("explain", example, "--format", "tex", "--lang", lang, "-o", str(tex)).exit_code == 0
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error",
                             "-no-shell-escape", tex.name], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:]
    if shutil.which("pdftotext") and example == EXAMPLE:
        text = subprocess.run(["pdftotext", "solution.pdf", "-"], cwd=tmp_path,
                              capture_output=True, text=True).stdout
        assert ("0,8738" if lang == "fr" else "0.8738") in text


BAD_SPECS = {
    "wrong shape": ("layers[0].weights[1]", """
[inputs]
values = [1, 2]
[[layers]]
type = "dense"
activation = "sigmoid"
weights = [[1, 2], [3]]
[loss]
type = "half_squared_error"
targets = [1, 0]
[training]
learning_rate = 0.1
"""),
    "unknown activation": ("layers[0].activation", """
[inputs]
values = [1]
[[layers]]
type = "dense"
activation = "swish"
weights = [[1]]
[loss]
type = "half_squared_error"
targets = [1]
[training]
learning_rate = 0.1
"""),
    "unknown loss": ("loss.type", """
[inputs]
values = [1]
[[layers]]
type = "dense"
weights = [[1]]
[loss]
type = "hinge"
targets = [1]
[training]
learning_rate = 0.1
"""),
    "missing target": ("loss.targets", """
[inputs]
values = [1]
[[layers]]
type = "dense"
weights = [[1]]
[loss]
type = "half_squared_error"
[training]
learning_rate = 0.1
"""),
    "non-numeric": ("layers[0].weights[0][0]", """
[inputs]
values = [1]
[[layers]]
type = "dense"
weights = [["one"]]
[loss]
type = "half_squared_error"
targets = [1]
[training]
learning_rate = 0.1
"""),
    "target the loss cannot take": ("loss.targets[0]", """
[inputs]
values = [1]
[[layers]]
type = "dense"
activation = "sigmoid"
weights = [[1]]
[loss]
type = "binary_cross_entropy"
targets = [1.5]
[training]
learning_rate = 0.1
"""),
    "ln of 0": ("ln", """
[inputs]
values = [1]
[[layers]]
type = "dense"
activation = "relu"
weights = [[-1], [1]]
[loss]
type = "cross_entropy"
targets = [1, 0]
[training]
learning_rate = 0.1
"""),
    "unsafe name": ("layers[0].names.weights", """
[inputs]
values = [1]
[[layers]]
type = "dense"
weights = [[1]]
names = { weights = "\\\\input{/etc/passwd}" }
[loss]
type = "half_squared_error"
targets = [1]
[training]
learning_rate = 0.1
"""),
    "bad toml": ("valid TOML", "[inputs\nvalues = 1"),
    "shared parameter given two values": ("layers[1].biases[0]: the value 0.5 given for the "
                                          "shared parameter b at layers[0].biases[0], got 0.25", """
[inputs]
values = [1]
[[layers]]
type = "dense"
weights = [[1]]
biases = [0.5]
names = { biases = "b" }
[[layers]]
type = "dense"
weights = [[1]]
biases = [0.25]
names = { biases = "b" }
[loss]
type = "half_squared_error"
targets = [1]
[training]
learning_rate = 0.1
"""),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_input_is_one_line_exit_2_and_no_file(tmp_path, case):
    needle, text = BAD_SPECS[case]
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    out = tmp_path / "out.md"
    result = CliRunner().invoke(main, ["explain", str(spec), "-o", str(out)])
    assert result.exit_code == 2, result.output
    message = result.output.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    assert str(spec) in message and needle in message, message
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [spec]


def test_missing_file_and_json_spec(tmp_path):
    result = CliRunner().invoke(main, ["explain", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2 and "cannot read" in result.output
    spec = tmp_path / "net.json"
    spec.write_text(json.dumps({
        "inputs": {"values": [0.5]},
        "layers": [{"type": "dense", "activation": "sigmoid", "weights": [[0.2]]}],
        "loss": {"type": "half_squared_error", "targets": [1]},
        "training": {"learning_rate": 0.1}}))
    result = CliRunner().invoke(main, ["explain", str(spec), "--format", "json"])
    assert result.exit_code == 0
    assert json.loads(result.output)["gradients"]["w^{(1)}_{1,1}"] < 0


def test_long_sums_are_broken_across_lines(tmp_path):
    """A unit reading 16 flattened cells: its sum is split, and the LaTeX has no overfull line."""
    out = run("explain", "examples/conv_6x6_filter_3x3.toml").output
    long_line = [line for line in out.splitlines() if line.startswith("y &= ")][0]
    assert long_line.count(r"\\ &\quad") == 4  # 17 terms, 4 per line
    if shutil.which("pdflatex"):
        tex = tmp_path / "s.tex"
        run("explain", "examples/conv_6x6_filter_3x3.toml", "--format", "tex", "-o", str(tex))
        subprocess.run(["pdflatex", "-interaction=nonstopmode", "-no-shell-escape", tex.name],
                       cwd=tmp_path, capture_output=True, timeout=120)
        log = (tmp_path / "s.log").read_text(errors="replace")
        assert "Overfull \\hbox" not in log or all(
            float(m) < 20 for m in re.findall(r"Overfull \\hbox \((\d+\.\d+)pt", log))
