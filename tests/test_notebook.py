"""examples/course_3_2_2.ipynb, executed as Jupyter runs it (nbclient and an IPython kernel,
the test extra): the course's MyNet read from PyTorch, its step worked out and checked
against PyTorch, the slides' numbers verified, twenty steps trained with a loss chart."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from backprop_explain import api

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "course_3_2_2.ipynb"


def test_the_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)


def test_the_notebook_runs_and_shows_the_worked_solution(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    results = [o.data for o in outputs if o.output_type == "execute_result"]
    text = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")
    spec, solution, check, chart = results[:4]

    assert spec["image/svg+xml"].startswith("<svg")  # the network, drawn
    assert "14 parameters" in spec["text/plain"]
    course = api.solution_data(ROOT / "examples" / "mlp_3_2_2_cross_entropy.toml")
    markdown = solution["text/markdown"]
    assert "text/latex" in solution and "wo_{1,1}" in solution["text/latex"]
    for value in (course["loss"], course["gradients"]["wo_{1,1}"], course["loss_after"]):
        assert f"{value:.4g}".replace("-", "−") in markdown or f"{value:.4g}" in markdown
    # PyTorch's own gradients (float32) against the worked solution's
    pairs = re.findall(r"dE_tot/d(\S+): PyTorch (\S+), worked solution (\S+)", text)
    assert len(pairs) == 5
    for name, torch_value, worked in pairs:
        assert float(worked) == pytest.approx(course["gradients"][name], abs=1e-7)
        assert float(torch_value) == pytest.approx(float(worked), abs=1e-6)
    assert check["text/markdown"].startswith("# Check of 141 answers")
    assert "123 correct, 6 consistent with earlier answers, 12 wrong" in check["text/markdown"]
    assert chart["image/svg+xml"].startswith("<svg") and "20 steps" in text
    assert 'title = "Le réseau 3-2-2 du cours, lu depuis PyTorch"' in text
