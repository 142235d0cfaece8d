"""Exercise sheets: the template syntax, the draws, answers checked against the course's
figures and the symbolic engine, degenerate draws rejected, reproducible files."""

from __future__ import annotations

import copy
import json
import random
import shutil
import subprocess
import tomllib
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from click.testing import CliRunner

from backprop_explain import api
from backprop_explain.cli import main
from backprop_explain.errors import SpecError
from backprop_explain.fastpath import compile_network
from backprop_explain.pdf import find_engine
from backprop_explain.sheet import (degenerate_reasons, draw_variants, evaluate_batch,
                                    write_sheets)
from backprop_explain.sheet_spec import load_template, template_from_dict

from reference import Network

TEMPLATE = "examples/sheet_mlp_3_2_2.toml"
COURSE = "examples/mlp_3_2_2_cross_entropy.toml"


def template_data() -> dict:
    with open(TEMPLATE, "rb") as handle:
        return tomllib.load(handle)


def course_template(ask) -> dict:
    """The course's network with its fixed numbers, as a template without draws."""
    with open(COURSE, "rb") as handle:
        data = tomllib.load(handle)
    data["exercise"] = {"ask": ask}
    return data


def files_of(directory) -> dict:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


# ---------------------------------------------------------------------------
# Template syntax


@pytest.mark.parametrize("place, value, expected", [
    ("weights", {"uniform": [1, -1]}, "layers[0].weights.uniform: low < high"),
    ("weights", {"uniform": [-1, 1], "decimals": 11}, "at most 10 decimals"),
    ("weights", {"uniform": [-1, 1], "decimals": -1}, "decimals: a whole number >= 0"),
    ("weights", {"uniform": [-1]}, "[low, high]: a list of two numbers"),
    ("weights", {"choice": []}, "a non-empty list of numbers"),
    ("weights", {"choice": [0.1, "a"]}, "choice[1]: a number"),
    ("weights", {"uniform": [0, 1], "choice": [1]}, "one kind of draw"),
    ("weights", {"uniform": [0, 1], "step": 0.1}, "only decimals and uniform"),
    ("weights", {"one_hot": True}, "one_hot only where a list of targets is expected"),
    ("weights", {"integers": [0.5, 2]}, "a whole number"),
])
def test_bad_draw_tables_are_one_line_errors(place, value, expected):
    data = template_data()
    data["layers"][0][place] = value
    with pytest.raises(SpecError) as err:
        template_from_dict(data, source="t.toml")
    message = str(err.value)
    assert expected in message and message.startswith("t.toml: layers[0].")
    assert "\n" not in message


@pytest.mark.parametrize("exercise, expected", [
    (None, "an [exercise] section"),
    ({"ask": []}, "a non-empty list of groups or keys"),
    ({"ask": ["gradient"]}, "exercise.ask[0]: a group (forward, loss"),
    ({"ask": ["gradients:7"]}, "a layer selector :output, :hidden or :1…:2, got :7"),
    ({"ask": ["loss:output"]}, "loss without a layer selector"),
    ({"ask": ["forward"], "digits": 0}, "exercise.digits: a whole number >= 1"),
    ({"ask": ["forward"], "answers": 3}, "exercise.answers: one of the keys ask, digits"),
])
def test_bad_exercise_sections_are_one_line_errors(exercise, expected):
    data = template_data()
    data.pop("exercise")
    if exercise is not None:
        data["exercise"] = exercise
    with pytest.raises(SpecError) as err:
        template_from_dict(data, source="t.toml")
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_draws_follow_the_template():
    template = load_template(TEMPLATE)
    rng = random.Random(7)
    hots = set()
    for _ in range(40):
        spec = template.draw_spec(rng)
        for name, value in spec.parameters.items():
            assert -1 <= value <= 1 and round(value, 1) == value, name
        for value in spec.examples[0].inputs:
            assert -1 <= value <= 1 and round(value, 2) == value
        targets = spec.examples[0].targets
        assert sorted(targets) == [0.0, 1.0]
        hots.add(targets.index(1.0))
        assert spec.learning_rate in (0.1, 0.5, 1)
    assert hots == {0, 1}  # both one-hot positions occur


def test_scalar_and_integer_draws_inside_lists():
    data = course_template(["forward"])
    data["layers"][0]["weights"][0][1] = {"integers": [-3, 3]}
    data["layers"][1]["biases"] = [{"choice": [0.25, 0.75]}, -1]
    template = template_from_dict(data)
    seen = set()
    for seed in range(30):
        spec = template.draw_spec(random.Random(seed))
        assert spec.parameters["wh_{1,2}"] in {-3, -2, -1, 0, 1, 2, 3}
        assert spec.parameters["bo_1"] in (0.25, 0.75) and spec.parameters["bo_2"] == -1
        seen.add(spec.parameters["bo_1"])
    assert seen == {0.25, 0.75}


def test_explicit_keys_and_groups():
    data = course_template(["out_{o1}", "dE_{tot}/dwh_{1,1}", "wo_{2,2}'", "E_{tot}'",
                            "forward:1", "loss"])
    template = template_from_dict(data)
    keys = [q.key for q in template.questions(template.draw_spec(random.Random(0)))]
    assert keys == ["out_{o1}", "dE_{tot}/dwh_{1,1}", "wo_{2,2}'", "E_{tot}'", "y_{h1}",
                    "y_{h2}", "out_{h1}", "out_{h2}", "E_{o1}", "E_{o2}", "E_{tot}"]


# ---------------------------------------------------------------------------
# Numbers


def test_answers_are_the_course_figures():
    template = template_from_dict(course_template(
        ["forward:output", "loss", "gradients:output", "update:output", "forward_after:output",
         "loss_after"]))
    [variant] = draw_variants(template, 1, seed=0)
    a = variant.answers
    # Published figures of the course's 3-2-2 network (one SGD step, η = 0.001).
    assert a["out_{o1}"] == pytest.approx(0.8738232, abs=5e-8)
    assert a["out_{o2}"] == pytest.approx(0.2177180, abs=5e-8)
    assert a["E_{tot}"] == pytest.approx(0.134877, abs=5e-7)
    assert a["out_{o1}'"] == pytest.approx(0.8738467, abs=5e-8)
    assert a["out_{o2}'"] == pytest.approx(0.2177176, abs=5e-8)
    # The course's updates where it prints them right (slides 6-7): wo_{1,2}' = 1,000060;
    # the second output's gradients are 0, so its parameters keep their values.
    assert a["wo_{1,2}'"] == pytest.approx(1.000060, abs=5e-7)
    assert a["dE_{tot}/dwo_{2,1}"] == a["dE_{tot}/dbo_2"] == 0
    assert (a["wo_{2,1}'"], a["wo_{2,2}'"], a["bo_2'"]) == (-0.3, -0.2, -1)
    # Every update and the loss after it, against the reference's SGD step (reference.py).
    net = Network(COURSE)
    run = net.train()
    for name, value in run["parameters"][0].items():
        if f"{name}'" in a:
            assert a[f"{name}'"] == pytest.approx(value, rel=1e-13), name
    assert a["E_{tot}'"] == pytest.approx(run["loss_after"], rel=1e-12)
    assert a["E_{tot}'"] < a["E_{tot}"]


def test_answers_agree_with_the_symbolic_engine():
    template = load_template(TEMPLATE)
    template.asks = ["forward", "loss", "gradients", "update", "forward_after", "loss_after"]
    for variant in draw_variants(template, 4, seed=11):
        data = api.solution_data(variant.spec)  # mpmath, 40 digits: independent of NumPy
        expected = dict(data["forward"])
        expected.update({f"dE_{{tot}}/d{n}": g for n, g in data["gradients"].items()})
        expected.update({f"{n}'": v for n, v in data["updated"].items()})
        expected.update({f"{n}'": v for n, v in data["forward_after"].items()})
        expected["E_{tot}"] = data["loss"]
        expected["E_{tot}'"] = data["loss_after"]
        assert set(variant.answers) <= set(expected)
        for key, value in variant.answers.items():
            assert value == pytest.approx(expected[key], rel=1e-10, abs=1e-13), key


def test_degenerate_draws_are_detected():
    specs = [api.as_spec(COURSE)]
    with open(COURSE, "rb") as handle:
        base = tomllib.load(handle)
    saturated = copy.deepcopy(base)
    saturated["layers"][1]["biases"] = [9, -1]  # out_o1 = σ(≈ 9.9) > 0.99
    dead = copy.deepcopy(base)
    for layer in dead["layers"]:
        layer["activation"] = "relu"
    dead["layers"][0]["biases"] = [-5, 0.3]  # h1 never fires
    network = compile_network(specs[0])
    relu_network = compile_network(dead)
    assert degenerate_reasons(network, evaluate_batch(network, specs)) == [""]
    assert "saturated sigmoid" in degenerate_reasons(
        network, evaluate_batch(network, [api.as_spec(saturated)]))[0]
    assert "dead ReLU" in degenerate_reasons(
        relu_network, evaluate_batch(relu_network, [api.as_spec(dead)]))[0]
    zero_loss = copy.deepcopy(base)
    zero_loss["layers"][1]["weights"] = [[0, 0], [0, 0]]
    zero_loss["layers"][1]["biases"] = [0, 0]
    zero_loss["layers"][1]["activation"] = "identity"
    zero_loss["loss"]["type"] = "half_squared_error"
    zero_loss["loss"]["targets"] = [0, 0]
    identity_network = compile_network(zero_loss)
    reasons = degenerate_reasons(identity_network,
                                 evaluate_batch(identity_network, [api.as_spec(zero_loss)]))
    assert "loss ≈ 0" in reasons[0] and "every gradient ≈ 0" in reasons[0]


def test_degenerate_draws_are_redrawn():
    data = template_data()
    # Hidden biases from a set where 9 saturates σ: |w·x| <= 3, σ(9 - 3) > 0.99.
    data["layers"][0]["biases"] = {"choice": [9, 0.5]}
    data["inputs"]["values"] = {"uniform": [0, 1], "decimals": 1}
    template = template_from_dict(data)
    variants = draw_variants(template, 6, seed=3)
    assert len(variants) == 6
    for variant in variants:
        assert 9 not in (variant.spec.parameters["bh_1"], variant.spec.parameters["bh_2"])
        values = api.solution_data(variant.spec)["forward"]  # symbolic engine's values
        for name in ("out_{h1}", "out_{h2}", "out_{o1}", "out_{o2}"):
            assert 0.01 <= values[name] <= 0.99


def test_always_degenerate_template_is_a_one_line_error():
    data = template_data()
    data["layers"][0]["biases"] = {"choice": [8, 9]}
    data["inputs"]["values"] = {"uniform": [0, 1]}
    with pytest.raises(SpecError) as err:
        draw_variants(template_from_dict(data, source="t.toml"), 2, seed=0)
    assert "not degenerate" in str(err.value) and "\n" not in str(err.value)


def test_variant_i_does_not_depend_on_how_many_are_drawn():
    template = load_template(TEMPLATE)
    few = draw_variants(template, 2, seed=5)
    many = draw_variants(template, 5, seed=5)
    assert [v.answers for v in few] == [v.answers for v in many[:2]]
    assert few[0].answers != draw_variants(template, 1, seed=6)[0].answers


# ---------------------------------------------------------------------------
# Files


def test_markdown_sheets_are_complete_and_reproducible(tmp_path):
    write_sheets(TEMPLATE, tmp_path / "a", variants=3, seed=2, fmt="md", lang="fr")
    write_sheets(TEMPLATE, tmp_path / "b", variants=3, seed=2, fmt="md", lang="fr")
    a, b = files_of(tmp_path / "a"), files_of(tmp_path / "b")
    assert a == b
    assert set(a) == {f"{kind}_{n}.md" for kind in ("exercise", "solution") for n in (1, 2, 3)} | {
        f"network_{n}.svg" for n in (1, 2, 3)} | {"exercises.md", "solutions.md", "answers.json"} | {
        f"spec_{n}.json" for n in (1, 2, 3)}
    answers = json.loads(a["answers.json"])
    first = answers["variants"][0]["answers"]
    exercise = a["exercise_1.md"].decode()
    solution = a["solution_1.md"].decode()
    assert "![" in exercise and "](network_1.svg)" in exercise
    assert "| $\\frac{\\partial E_{tot}}{\\partial wo_{1,1}}$ |" in exercise
    loss = f"{first['E_{tot}']:.4g}".replace(".", "{,}")  # decimal comma in LaTeX math
    assert loss in solution and loss not in exercise
    assert "Corrigé (variante 1)" in solution and "Exercice (variante 1)" in exercise
    combined = a["exercises.md"].decode()
    assert all(f"(variante {n})" in combined for n in (1, 2, 3))
    svg = ET.fromstring(a["network_1.svg"])
    assert svg.tag.endswith("svg")
    assert len(svg.findall("{http://www.w3.org/2000/svg}circle")) == 7  # 3 + 2 + 2 neurons


def test_a_filled_in_sheet_is_verified_against_its_variant_spec(tmp_path):
    """A student fills exercise_2.md; `verify spec_2.json` finds the one slip in it."""
    write_sheets(TEMPLATE, tmp_path, variants=2, seed=5, fmt="md")
    truth = json.loads((tmp_path / "answers.json").read_text())["variants"][1]["answers"]
    lines, keys = [], iter(truth)
    for line in (tmp_path / "exercise_2.md").read_text().splitlines():
        if line.startswith("| $") and line.endswith("|   |"):
            key = next(keys)
            value = -truth[key] if key == "out_{o1}" else truth[key]  # one sign slip
            line = line[:-4] + f" {value:.4g} |"
        lines.append(line)
    filled = tmp_path / "filled.md"
    filled.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(main, ["verify", str(tmp_path / "spec_2.json"), str(filled),
                                       "--format", "json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    wrong = [r for r in report if r["status"] == "wrong"]
    assert [r["key"] for r in wrong] == ["out_{o1}"]
    assert "sign" in wrong[0]["diagnosis"]
    assert sum(r["status"] == "correct" for r in report) >= len(truth) - 1


def test_latex_sheets_combine_into_one_document(tmp_path):
    write_sheets(TEMPLATE, tmp_path, variants=2, seed=4, fmt="tex")
    combined = (tmp_path / "solutions.tex").read_text()
    assert combined.count("\\documentclass") == 1 and combined.count("\\end{document}") == 1
    assert combined.count("\\clearpage") == 1 and combined.count("\\begin{tikzpicture}") == 2
    exercise = (tmp_path / "exercise_1.tex").read_text()
    assert "\\rule{6cm}{0.4pt}" in exercise and "\\usepackage{graphicx,tikz}" in exercise


def test_hostile_template_title_is_escaped(tmp_path):
    data = template_data()
    data["title"] = r"\input{/etc/passwd} <b>x</b> $\write18{id}$"
    template = template_from_dict(data)
    write_sheets(template, tmp_path, variants=1, seed=0, fmt="tex")
    text = (tmp_path / "exercise_1.tex").read_text()
    assert r"\textbackslash{}input\{/etc/passwd\}" in text
    assert r"\input{/etc/passwd}" not in text and r"\write18" not in text


@pytest.mark.skipif(find_engine() is None or shutil.which("pdftotext") is None,
                    reason="no LaTeX engine or no pdftotext; CI installs texlive and poppler")
def test_pdf_sheets_compile_read_back_and_are_reproducible(tmp_path):
    for run in ("a", "b"):
        write_sheets(TEMPLATE, tmp_path / run, variants=1, seed=9, fmt="pdf", lang="fr")
    a, b = files_of(tmp_path / "a"), files_of(tmp_path / "b")
    assert a == b
    assert set(a) == {"exercise_1.pdf", "solution_1.pdf", "exercises.pdf", "solutions.pdf",
                      "answers.json", "spec_1.json"}
    answers = json.loads(a["answers.json"])["variants"][0]["answers"]
    solution = subprocess.run(["pdftotext", str(tmp_path / "a" / "solution_1.pdf"), "-"],
                              capture_output=True, text=True, check=True).stdout
    exercise = subprocess.run(["pdftotext", str(tmp_path / "a" / "exercise_1.pdf"), "-"],
                              capture_output=True, text=True, check=True).stdout
    loss = f"{answers['E_{tot}']:.4g}".replace(".", ",")
    assert loss in solution and "Corrigé" in solution
    assert "Calculez" in exercise and "Votre réponse" in exercise


def test_cli_sheet_and_its_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["sheet", TEMPLATE, "--variants", "2", "--seed", "1",
                                  "--format", "moodle", "-o", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m" / "questions.xml").exists()
    bad = tmp_path / "bad.toml"
    bad.write_text(open(TEMPLATE).read().replace("uniform = [-1, 1], decimals = 2",
                                                 "uniform = [1, -1]"))
    result = runner.invoke(main, ["sheet", str(bad), "-o", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert "inputs.values.uniform: low < high" in result.output
    assert not (tmp_path / "x").exists()


def test_many_variants_show_a_progress_bar(tmp_path, monkeypatch):
    from backprop_explain import cli
    monkeypatch.setattr(cli, "_stderr_is_terminal", lambda: True)
    result = CliRunner().invoke(
        main, ["sheet", TEMPLATE, "--variants", "20", "-o", str(tmp_path)])
    assert result.exit_code == 0
    assert "variants" in result.stderr.splitlines() and result.stdout == ""
    assert len(json.loads((tmp_path / "answers.json").read_text())["variants"]) == 20
    assert np.isfinite([v for item in json.loads((tmp_path / "answers.json").read_text())[
        "variants"] for v in item["answers"].values()]).all()


def test_a_failure_during_a_long_task_is_one_line(tmp_path, monkeypatch):
    """On a stderr that is not a terminal no progress is shown, so a failure half-way
    leaves its one-line error alone, and nothing written."""
    from backprop_explain import sheet
    from backprop_explain.errors import SpecError
    real, calls = sheet.render_variant, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 10:
            raise SpecError("t.toml", "variant 10", "something went wrong")
        return real(*args, **kwargs)
    monkeypatch.setattr(sheet, "render_variant", failing)
    result = CliRunner().invoke(main, ["sheet", TEMPLATE, "--variants", "20",
                                       "-o", str(tmp_path / "x")])
    assert result.exit_code == 2 and len(calls) == 10
    assert result.stderr.strip().splitlines() == ["Error: t.toml: variant 10: something went wrong"]
    assert not (tmp_path / "x").exists()


def test_pdf_sheets_without_an_engine_fail_cleanly(tmp_path, monkeypatch):
    from backprop_explain import pdf
    monkeypatch.setattr(pdf.shutil, "which", lambda name: None)
    out = tmp_path / "pdf"
    result = CliRunner().invoke(main, ["sheet", TEMPLATE, "--format", "pdf", "-o", str(out)])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert "no LaTeX engine" in result.output and "apt-get install" in result.output
    assert not out.exists() or not any(out.iterdir())
