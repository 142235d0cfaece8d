"""The README is executable, and what it shows is what the project does.

Keyed off the README's own content (no line numbers), so it follows edits:

- ```python blocks run statement by statement; every ``print(...)`` is followed by the
  output it gives, as a comment at the end of its line or on the line after it. ``…``
  stands for any text (the rest of a number, of a message).
- ```console blocks are sessions: each ``$ backprop-explain …`` line is run (``# exit N``:
  its exit status) and the lines after it, up to the next ``$``, are its output: all of it,
  or its first lines when the last one shown is ``…``. No line shown: no output.
- The "Bad input" block's error lines are each produced, exactly, by a bad spec below.
- A ```toml block introduced by the name of an example file holds some of that file's
  settings, as the file has them.
- ```sh blocks are commands to type (installation, benchmarks, illustrations); the
  Quickstart's are checked against .ci/run, every ``backprop-explain`` command in them
  runs (those writing PDF when a LaTeX engine is installed) and writes what it names.
- Figures the README gives of the classroom formats are the project's (frame counts).
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
import shlex
import shutil
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from backprop_explain import api
from backprop_explain.cli import main
from backprop_explain.slides import render_slides

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.S | re.M)


def blocks(language: str) -> list[str]:
    return [m.group(2) for m in FENCE.finditer(README) if m.group(1) == language]


def introduced_blocks(language: str) -> list[tuple[str, str]]:
    """(the paragraph before the block, the block) for each block of ``language``."""
    out = []
    for m in FENCE.finditer(README):
        if m.group(1) == language:
            before = README[:m.start()].rstrip().rsplit("\n\n", 1)[-1]
            out.append((before, m.group(2)))
    return out


def normal(text: str) -> str:
    return " ".join(text.split())


def shows(shown: str, actual: str) -> bool:
    """``actual`` is ``shown``, where ``…`` stands for any text (whitespace runs equal)."""
    pattern = ".*?".join(re.escape(part) for part in normal(shown).split("…"))
    return re.fullmatch(pattern, normal(actual), flags=re.S) is not None


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---------------------------------------------------------------------------
# Quickstart


def test_quickstart_has_exactly_two_commands():
    quickstart = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)```", quickstart, flags=re.S)
    assert len(commands) == 2
    assert "backprop-explain explain examples/mlp_3_2_2_cross_entropy.toml" in commands[0]
    assert "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1].strip().replace("pip install", "python -m pip install -q").replace(
        "python -m pytest -q", "") in ci
    assert "python -m pytest -q" in ci


# ---------------------------------------------------------------------------
# Python blocks: every print shows its output


def printed_outputs(code: str) -> dict[int, str]:
    """The output each top-level print shows: {its last line number: the shown text}."""
    lines = code.splitlines()
    shown = {}
    for node in ast.parse(code).body:
        call = node.value if isinstance(node, ast.Expr) else None
        if not (isinstance(call, ast.Call) and getattr(call.func, "id", "") == "print"):
            continue
        end = node.end_lineno
        comment = lines[end - 1][node.end_col_offset:].strip()
        if not comment and end < len(lines) and lines[end].lstrip().startswith("#"):
            comment = lines[end].strip()
        assert comment.startswith("# "), f"README: show what line {end} prints:\n{code}"
        shown[end] = comment[2:]
    return shown


PYTHON_BLOCKS = blocks("python")


def test_the_readme_has_python_examples():
    assert len(PYTHON_BLOCKS) >= 3 and all(printed_outputs(code) for code in PYTHON_BLOCKS)


@pytest.mark.parametrize("code", PYTHON_BLOCKS, ids=lambda c: c.split("\n", 1)[0][:40])
def test_readme_python_prints_what_it_shows(workdir, code):
    if "import torch" in code:  # PyTorch is optional
        pytest.importorskip("torch")
    shown = printed_outputs(code)
    namespace: dict = {}
    for node in ast.parse(code).body:
        program = compile(ast.Module([node], type_ignores=[]), "README.md", "exec")
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            exec(program, namespace)
        if node.end_lineno in shown:
            assert shows(shown[node.end_lineno], output.getvalue()), (
                f"README shows {shown[node.end_lineno]!r}, the code prints "
                f"{output.getvalue()!r}")
        else:
            assert output.getvalue() == ""


# ---------------------------------------------------------------------------
# Console sessions: every command prints what the README shows


def sessions() -> list[tuple[str, list[str]]]:
    """(command line, the output lines shown after it) of every console block."""
    out = []
    for block in blocks("console"):
        for chunk in re.split(r"^(?=\$ )", block, flags=re.M):
            if chunk.startswith("$ backprop-explain "):
                command, *shown = chunk.rstrip("\n").split("\n")
                out.append((command[2:], shown))
    return out


SESSIONS = sessions()


@pytest.mark.parametrize("command,shown", SESSIONS, ids=[c for c, _ in SESSIONS])
def test_readme_command_prints_what_it_shows(workdir, command, shown):
    words = shlex.split(command.split(" #")[0])[1:]
    if words[0] == "import-torch":  # PyTorch is optional
        pytest.importorskip("torch")
    expected = int(m.group(1)) if (m := re.search(r"# exit (\d)", command)) else 0
    result = CliRunner().invoke(main, words)
    assert result.exit_code == expected, result.output
    lines = result.output.splitlines()
    if shown and shown[-1] == "…":  # the first lines only
        shown = shown[:-1]
        lines = lines[:len(shown)]
    assert len(lines) == len(shown), f"README shows {shown}, the command prints {lines[:8]}"
    for line, text in zip(lines, shown):
        assert shows(text, line), f"README shows {text!r}, the command prints {line!r}"


# ---------------------------------------------------------------------------
# Bad input: each error line the README shows is the project's, word for word

_NET = {"inputs": {"values": [1.0, 2.0]},
        "layers": [{"type": "dense", "activation": "sigmoid", "weights": [[1, 2], [3, 4]]}],
        "loss": {"type": "half_squared_error", "targets": [1, 0]},
        "training": {"learning_rate": 0.1}}

BAD_SPECS = {  # the place each error names → a spec that is wrong there
    "layers[0].weights[1]": lambda s: s["layers"][0].update(weights=[[1, 2], [3]]),
    "loss.type": lambda s: s["loss"].update(type="hinge"),
    "values": [lambda s: s.update(
        inputs={"values": [1.0]}, loss={"type": "cross_entropy", "targets": [1, 0]},
        layers=[{"type": "dense", "activation": "relu", "weights": [[-1], [1]]}]),
        lambda s: s.update(  # a softmax output of e^-1000: ∂E/∂a = −1/a is no float64
        inputs={"values": [1.0]}, loss={"type": "cross_entropy", "targets": [0, 1]},
        layers=[{"type": "dense", "activation": "softmax", "weights": [[1000], [0]],
                 "biases": [0, 0]}])],
    "layers[1].weights[0][0]": lambda s: s["layers"].append(
        {"type": "dense", "activation": "sigmoid", "weights": [[0.3, 0.5], [0.5, 0.2]],
         "names": {"weights": [["w", "v"], ["v", "u"]]}}) or s["layers"][0].update(
        names={"weights": [["w", "a"], ["b", "c"]]}),
}


def bad_input_lines() -> list[str]:
    section = README.split("### Bad input", 1)[1].split("\n## ", 1)[0]
    return [line for block in re.findall(r"^```\n(.*?)^```", section, flags=re.S | re.M)
            for line in block.splitlines()]


def test_readme_bad_input_lines_are_the_projects(tmp_path):
    import json
    lines = bad_input_lines()
    assert len(lines) >= 3
    for line in lines:
        place = line.split(": ")[2]
        assert place in BAD_SPECS, f"no bad spec here gives the README's error {line!r}"
        makers = BAD_SPECS[place] if isinstance(BAD_SPECS[place], list) else [BAD_SPECS[place]]
        printed_lines = []  # a place may have several errors: one of its specs gives this
        for make in makers:
            spec = json.loads(json.dumps(_NET))
            make(spec)
            path = tmp_path / "net.json"
            path.write_text(json.dumps(spec))
            result = CliRunner().invoke(main, ["explain", str(path), "-o",
                                               str(tmp_path / "o.md")])
            assert result.exit_code == 2 and not (tmp_path / "o.md").exists()
            printed = result.output.strip().replace(str(path), "net.toml")
            assert len(printed.splitlines()) == 1, printed
            printed_lines.append(printed)
        assert any(shows(line, printed) for printed in printed_lines), (line, printed_lines)


# ---------------------------------------------------------------------------
# Specs shown in the README are the example files'


def contained(shown, actual) -> bool:
    """Every setting shown is the file's; a list of tables shown is some of the file's
    tables, in the file's order (a block may show one layer of several)."""
    if isinstance(shown, dict):
        return isinstance(actual, dict) and all(
            k in actual and contained(v, actual[k]) for k, v in shown.items())
    if isinstance(shown, list) and shown and isinstance(shown[0], dict):
        if not isinstance(actual, list):
            return False
        rest = iter(actual)
        return all(any(contained(table, a) for a in rest) for table in shown)
    return shown == actual


def test_readme_specs_are_the_example_files():
    checked = 0
    for before, block in introduced_blocks("toml"):
        files = re.findall(r"`(examples/[\w.]+\.toml)`", before)
        if not files:
            continue
        with open(ROOT / files[-1], "rb") as handle:
            actual = tomllib.load(handle)
        shown = tomllib.loads(block)
        assert contained(shown, actual), files[-1]
        checked += 1
    assert checked >= 3


# ---------------------------------------------------------------------------
# Commands to type: each one runs


def typed_commands() -> list[str]:
    """Every ``backprop-explain`` command of the ```sh blocks (the Quickstart's after its
    ``pip install . &&``)."""
    return [line.split("&&")[-1].strip() for block in blocks("sh")
            for line in block.splitlines() if "backprop-explain " in line]


# Commands whose input another step makes: a filled-in sheet (the Python API example shows
# how), the output of the exported PyTorch script (tests/test_torch.py runs those).
MADE_ELSEWHERE = {"backprop-explain verify sheets/spec_2.json exercise_2_filled.md",
                  "backprop-explain verify examples/mlp_3_2_2_cross_entropy.toml check.txt "
                  "--rel 1e-9"}
TYPED = [c for c in typed_commands() if c not in MADE_ELSEWHERE]


def test_commands_made_elsewhere_are_in_the_readme():
    assert MADE_ELSEWHERE <= set(typed_commands()) and len(TYPED) >= 4


@pytest.mark.parametrize("command", TYPED)
def test_readme_typed_command_runs(workdir, command):
    words = shlex.split(command)[1:]
    if any(w in ("pdf", "slides-pdf") for w in words) and shutil.which("pdflatex") is None:
        pytest.skip("needs a LaTeX engine")
    result = CliRunner().invoke(main, words)
    assert result.exit_code == 0, result.output
    if "-o" in words:  # the file it names, and nothing printed (a PDF build's progress
        written = workdir / words[words.index("-o") + 1]  # goes to stderr)
        assert result.stdout == "" and written.stat().st_size > 0
        if written.suffix == ".pdf":
            assert written.read_bytes().startswith(b"%PDF")
        if written.suffix == ".html":
            assert written.read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")
    else:
        assert result.output.startswith("# ")  # a worked solution on stdout


# ---------------------------------------------------------------------------
# The classroom formats' figures


def test_readme_frame_counts_are_the_slides():
    found = re.search(r"course's example gives (\d+) frames in full detail and (\d+) in "
                      r"compact detail", normal(README))
    assert found, "the README no longer says how many frames the course's example gives"
    solution = api.solve(ROOT / "examples" / "mlp_3_2_2_cross_entropy.toml")
    for detail, count in zip(("full", "compact"), found.groups()):
        slides = render_slides(solution, "fr", detail=detail)
        assert slides.count(r"\frametitle") == int(count), detail
