"""Every command and Python example in the README runs."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from backprop_explain.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


COMMANDS = [line[2:] for block in blocks("console") for line in block.splitlines()
            if line.startswith("$ backprop-explain ")]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    return tmp_path


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


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_runs(workdir, command):
    words = shlex.split(command.split(" #")[0])[1:]
    if words[0] == "import-torch":  # PyTorch is optional
        pytest.importorskip("torch")
    expected = int(m.group(1)) if (m := re.search(r"# exit (\d)", command)) else 0
    result = CliRunner().invoke(main, words)
    assert result.exit_code == expected, result.output


@pytest.mark.parametrize("code", blocks("python"))
def test_readme_python_runs(workdir, code):
    if "import torch" in code:  # PyTorch is optional
        pytest.importorskip("torch")
    exec(compile(code, "README.md", "exec"), {})
