"""Moodle XML, one question per key (--moodle-style per-key): the structure Moodle's importer
reads (question/format/xml), answers equal to the symbolic engine's values, tolerances that
accept a correctly rounded hand answer, escaped HTML, one category per key, reproducible
bytes. The Cloze questions (the default) are tests/test_cloze.py's."""

from __future__ import annotations

import math
import tomllib
import xml.etree.ElementTree as ET
from decimal import Decimal

import pytest

from backprop_explain import api
from backprop_explain.moodle import category_path, tolerance
from backprop_explain.sheet import draw_variants, write_sheets
from backprop_explain.sheet_spec import load_template, template_from_dict

TEMPLATE = "examples/sheet_mlp_3_2_2.toml"
VARIANTS, SEED = 3, 4


@pytest.fixture(scope="module")
def quiz(tmp_path_factory):
    out = tmp_path_factory.mktemp("moodle")
    write_sheets(TEMPLATE, out, variants=VARIANTS, seed=SEED, fmt="moodle", lang="en",
                 moodle_style="per-key")
    return out / "questions.xml"


def test_structure_follows_moodle_xml(quiz):
    data = quiz.read_bytes()
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    root = ET.fromstring(data)
    assert root.tag == "quiz"
    questions = root.findall("question")
    assert all(q.get("type") in ("category", "numerical") for q in questions)
    assert questions[0].get("type") == "category"
    template = load_template(TEMPLATE)
    keys = [q.key for q in template.questions(template.draw_spec(__import__("random").Random(0)))]
    categories = [q for q in questions if q.get("type") == "category"]
    assert len(categories) == len(keys)
    assert len(questions) == len(keys) * (VARIANTS + 1)
    for q in questions:
        if q.get("type") == "category":
            path = q.findtext("category/text")
            assert path.startswith("$course$/top/Rétropropagation sur le réseau 3-2-2/")
            continue
        assert q.findtext("name/text")
        text = q.find("questiontext")
        assert text.get("format") == "html" and text.findtext("text").strip()
        assert q.find("generalfeedback").get("format") == "html"
        assert float(q.findtext("defaultgrade")) == 1.0
        assert 0 <= float(q.findtext("penalty")) <= 1
        assert q.findtext("hidden") == "0"
        answers = q.findall("answer")
        assert len(answers) == 1 and answers[0].get("fraction") == "100"
        float(answers[0].findtext("text"))
        assert Decimal(answers[0].findtext("tolerance")) > 0
        assert answers[0].find("feedback").get("format") == "html"
        for tag in ("unitgradingtype", "unitpenalty", "showunits", "unitsleft"):
            assert q.find(tag) is not None


def test_one_category_per_key_holds_every_variant(quiz):
    root = ET.fromstring(quiz.read_bytes())
    current, groups = None, {}
    for q in root.findall("question"):
        if q.get("type") == "category":
            current = q.findtext("category/text")
            groups[current] = []
        else:
            groups[current].append(q.findtext("name/text"))
    for path, names in groups.items():
        key = path.split("/top/Rétropropagation sur le réseau 3-2-2/", 1)[1].split(" ", 1)[1]
        assert len(names) == VARIANTS
        assert {n.rsplit(" — ", 1)[0] for n in names} == {key.replace("//", "/")}
        assert sorted(n.rsplit(" — ", 1)[1] for n in names) == [
            f"variant {k}" for k in range(1, VARIANTS + 1)]
    # a gradient key's "/" is escaped in its category path
    assert any("dE_{tot}//dwo_{1,1}" in path for path in groups)


def test_answers_are_true_values_and_rounded_answers_pass(quiz):
    root = ET.fromstring(quiz.read_bytes())
    variants = draw_variants(load_template(TEMPLATE), VARIANTS, SEED)
    truth = {}
    for v in variants:  # the symbolic engine (mpmath), independent of the fast path
        data = api.solution_data(v.spec)
        values = dict(data["forward"])
        values.update({f"dE_{{tot}}/d{n}": g for n, g in data["gradients"].items()})
        values.update({f"{n}'": x for n, x in data["updated"].items()})
        values.update({"E_{tot}": data["loss"], "E_{tot}'": data["loss_after"]})
        truth[v.number] = values
    checked = 0
    for q in root.findall("question[@type='numerical']"):
        key, label = q.findtext("name/text").rsplit(" — ", 1)
        true = truth[int(label.split()[-1])][key]
        answer = float(q.findtext("answer/text"))
        tol = float(q.findtext("answer/tolerance"))
        assert answer == pytest.approx(true, rel=1e-12, abs=1e-15)
        rounded = float(f"{true:.4g}")  # the hand answer, 4 significant digits
        assert abs(rounded - answer) <= tol
        unit = tol  # one unit in the last digit: three units off is wrong
        assert abs(rounded + 3 * unit - answer) > tol
        checked += 1
    assert checked > 3 * 20


@pytest.mark.parametrize("value, digits", [(0.8738232, 4), (-0.07473, 4), (0.99996, 4),
                                           (123.456, 3), (1e-7, 4), (0.0, 4), (-0.0999995, 4)])
def test_tolerance_accepts_every_correctly_rounded_answer(value, digits):
    tol = float(tolerance(value, digits))
    rounded = float(f"{value:.{digits}g}")
    assert abs(rounded - value) <= tol
    if value:
        assert tol <= 10 ** (math.floor(math.log10(abs(value))) - digits + 1) * (1 + 1e-12)


def test_question_html_is_escaped_and_well_formed(tmp_path):
    with open(TEMPLATE, "rb") as handle:
        data = tomllib.load(handle)
    data["title"] = "<script>alert('x')</script> & A/B"
    write_sheets(template_from_dict(data), tmp_path, variants=1, seed=0, fmt="moodle",
                 moodle_style="per-key")
    root = ET.fromstring((tmp_path / "questions.xml").read_bytes())
    html = root.find("question[@type='numerical']/questiontext/text").text
    assert "<script>" not in html and "&lt;script&gt;" in html and "&amp; A/B" in html
    fragment = ET.fromstring("<div>" + html + "</div>")  # well-formed markup
    cells = ["".join(td.itertext()) for td in fragment.iter("td")]
    assert r"\(wh_{1,1}\)" in cells and "\\(\\eta = " in html
    category = root.findtext("question[@type='category']/category/text")
    assert "A//B" in category  # "/" in a name escaped, not a sub-category


def test_moodle_output_is_reproducible(tmp_path):
    for run in ("a", "b"):
        write_sheets(TEMPLATE, tmp_path / run, variants=2, seed=8, fmt="moodle", lang="fr",
                     moodle_style="per-key")
    assert ((tmp_path / "a" / "questions.xml").read_bytes()
            == (tmp_path / "b" / "questions.xml").read_bytes())
    assert ((tmp_path / "a" / "answers.json").read_bytes()
            == (tmp_path / "b" / "answers.json").read_bytes())


def test_category_path_escapes_slashes():
    assert category_path("T", "01 dE/dw") == "$course$/top/T/01 dE//dw"
