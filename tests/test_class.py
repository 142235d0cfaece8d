"""The class report, end to end: 30 variants of the course's exercise drawn for Moodle, 60
simulated students (tests/students.py: right at calculator precision, rounding as they go,
each usual slip, errors carried forward, a value no slip explains) answering their own
variant, their attempts written in the layout of Moodle's Responses report, then
`backprop-explain class`; every count of the report is checked against what was planted.

What each student must get is decided here, from the simulation alone: a value the slip
did not touch is right (calculator) or right/consistent as its digits say (rounding as they
go); the slip's own value is wrong, and named; a value computed from it is consistent.
"""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from backprop_explain.cli import main
from backprop_explain.sheet import draw_variants, write_sheets
from backprop_explain.sheet_spec import load_template

from students import Student

TEMPLATE = "examples/sheet_mlp_3_2_2.toml"
VARIANTS, SEED, STUDENTS = 30, 11, 60
HEADER = ["Surname", "First name", "Email address", "State", "Started on", "Completed",
          "Time taken", "Grade/24.00", "Response 1", "Right answer 1"]

# (kind, slip, where, the diagnosis expected): one per student, in turn
PLANS = [
    ("right", None, None, None),
    ("rounding", None, None, None),
    ("slip", "opposite_sign", "y_{o1}", {"opposite_sign"}),
    ("slip", "update_plus", "wo_{h,1}'", {"update_plus"}),
    ("slip", "update_no_lr", "wo_{h,2}'", {"update_no_lr"}),
    ("slip", "update_not_applied", "bo_h'", {"update_not_applied"}),
    ("slip", "index_swap", "dE_{tot}/dwo_{1,2}", {"index_swap"}),
    ("habit", "sigma_for_derivative", None, {"wrong_derivative", "wrong_derivative_everywhere"}),
    ("habit", "log10", None, {"log10"}),
    ("carried", "opposite_sign", "y_{h1}", {"opposite_sign"}),
    ("unknown", None, "out_{o2}", {"no_diagnosis"}),
    ("rounding-slip", "update_plus", "wo_{h,1}'", {"update_plus"}),
]


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """The sheet, the students, their Moodle CSV, and the class report (JSON and Markdown)."""
    root = tmp_path_factory.mktemp("class")
    sheet = root / "sheet"
    write_sheets(TEMPLATE, sheet, variants=VARIANTS, seed=SEED, fmt="moodle")
    index = json.loads((sheet / "answers.json").read_text())
    blanks = index["blanks"]
    variants = draw_variants(load_template(TEMPLATE), VARIANTS, SEED)
    students = [simulate(k, variants[k % VARIANTS], blanks) for k in range(STUDENTS)]
    responses = root / "responses.csv"
    with open(responses, "w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(HEADER)
        for s in students:
            right = index["variants"][s["variant"] - 1]["answers"]
            out.writerow([f"Student{s['n']:02d}", "Ada", f"s{s['n']:02d}@example.org",
                          "Finished", "1 December 2026  10:00 AM", "1 December 2026  10:40 AM",
                          "40 mins", "20.00", summary(s["written"], blanks, s["comma"]),
                          summary({k: f"{right[k]:.8g}" for k in blanks}, blanks, False)])
        out.writerow(["", "", "", "", "", "", "", "", "Overall average", ""])  # ignored
        out.writerow(["Broken", "Bob", "bob@example.org", "Finished", "", "", "", "",
                      "part 1: 0.5; part 2: zero point five", ""])
    runner = CliRunner()
    result = runner.invoke(main, ["class", str(sheet), str(responses), "--format", "json",
                                  "--lang", "en"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    md = root / "report.md"
    assert runner.invoke(main, ["class", str(sheet), str(responses), "-o", str(md),
                                "--lang", "en"]).exit_code == 0
    return {"students": students, "report": report, "blanks": blanks, "root": root,
            "markdown": md.read_text(encoding="utf-8"), "cli": result}


def summary(values: dict, blanks: list[str], comma: bool) -> str:
    """A Cloze response as Moodle's report writes it: "part 1: …; part 2: …"."""
    return "; ".join(f"part {k}: " + (values[key].replace(".", ",") if comma else values[key])
                     for k, key in enumerate(blanks, start=1) if key in values)


def simulate(n: int, variant, blanks: list[str]) -> dict:
    """Student n's attempt at their variant, and what the report must find in it."""
    kind, slip, where, codes = PLANS[n % len(PLANS)]
    spec = variant.spec
    hot = spec.examples[0].targets.index(1) + 1  # the output whose target is 1: g ≠ 0
    if where:
        where = where.replace("{h,", f"{{{hot},").replace("_h'", f"_{hot}'")
    mode = "rounded" if kind.startswith("rounding") else "calculator"
    student = Student(spec, blanks, 4, mode, slip, where)
    clean = Student(spec, blanks, 4, "calculator")
    written = dict(student.written)
    if kind == "unknown":  # a value no usual slip gives
        written[where] = f"{float(written[where]) * 1.37 + 0.0123:.4g}"
    affected = {k for k in blanks if written[k] != clean.written[k]}
    status = {}
    for key in blanks:
        if key not in affected:
            status[key] = "correct"
        elif kind == "rounding" or (mode == "rounded" and key not in student.affected):
            status[key] = "consistent"  # rounding drift
        elif kind == "habit":
            status[key] = habit_status(slip, key)
        else:
            status[key] = "wrong" if key == where else "consistent"
    wrong = [k for k in blanks if status[k] == "wrong"]
    return {"n": n, "variant": variant.number, "written": written, "status": status,
            "codes": codes, "first": wrong[0] if wrong else None, "kind": kind,
            "comma": n % 3 == 0}


def habit_status(slip: str, key: str) -> str:
    """A habit changes every value it enters; those computed from written ones only follow."""
    if slip == "sigma_for_derivative":
        # each gradient from the unwritten δ, and the loss after the step, from the hidden
        # layer's unwritten updates: wrong; the written updates follow from the gradients
        return "consistent" if key.endswith("'") and key != "E_{tot}'" else "wrong"
    # log10 in every loss term: the terms and the loss after (from the outputs) are wrong,
    # the loss E_tot = E_o1 + E_o2 follows from the written terms
    return "consistent" if key == "E_{tot}" else "wrong"


def test_every_student_is_read_and_each_unreadable_attempt_reported(course):
    report = course["report"]
    assert (report["students"], report["checked"], report["unreadable"]) == (STUDENTS + 1,
                                                                              STUDENTS, 1)
    (bad,) = report["unreadable_files"]
    assert bad["student"] == "Bob Broken <bob@example.org>"
    assert "part 2" in bad["error"] and "zero point five" in bad["error"]
    assert "warning: Bob Broken <bob@example.org>:" in course["cli"].stderr
    variants = {s["student"]: s["variant"] for s in report["per_student"]}
    for s in course["students"]:  # the variant read from the right answers
        assert variants[f"Ada Student{s['n']:02d} <s{s['n']:02d}@example.org>"] == s["variant"]


def test_per_key_counts(course):
    students, blanks = course["students"], course["blanks"]
    rows = {r["key"]: r for r in course["report"]["keys"]}
    assert list(rows) == blanks  # the worked solution's order
    for key in blanks:
        expected = {st: sum(s["status"][key] == st for s in students)
                    for st in ("correct", "consistent", "wrong")}
        got = {st: rows[key][st] for st in expected}
        assert got == expected, (key, got, expected)
        assert rows[key]["answered"] == STUDENTS and rows[key]["unanswered"] == 0
        assert rows[key]["shares"]["correct"] == pytest.approx(expected["correct"] / STUDENTS)


def test_per_student_counts_and_first_wrong_steps(course):
    per_student = {s["student"]: s for s in course["report"]["per_student"]}
    firsts = {}
    for s in course["students"]:
        got = per_student[f"Ada Student{s['n']:02d} <s{s['n']:02d}@example.org>"]
        for status in ("correct", "consistent", "wrong"):
            assert got[status] == sum(v == status for v in s["status"].values()), (s, status)
        assert got["first_wrong"] == s["first"], s
        firsts[s["first"]] = firsts.get(s["first"], 0) + 1
    assert {row["key"]: row["students"] for row in course["report"]["first_wrong"]} == firsts
    assert firsts[None] >= STUDENTS // len(PLANS) * 2  # the right and the rounding ones


def test_slips_named_and_counted(course):
    planted: dict[str, int] = {}
    for s in course["students"]:
        if s["kind"] == "unknown" or s["codes"] is None:
            continue
        wrong = [k for k, v in s["status"].items() if v == "wrong"]
        family = "wrong_derivative" if "wrong_derivative" in s["codes"] else next(iter(s["codes"]))
        planted[family] = planted.get(family, 0) + len(wrong)
    found: dict[str, int] = {}
    for slip in course["report"]["slips"]:
        family = "wrong_derivative" if slip["code"].startswith("wrong_derivative") else slip["code"]
        found[family] = found.get(family, 0) + slip["count"]
        assert sum(slip["keys"].values()) == slip["count"]
    assert found == planted
    texts = " | ".join(s["text"] for s in course["report"]["slips"])
    for phrase in ("opposite sign", "update applied with +", "learning rate forgotten",
                   "old value kept", "indices swapped", "log base 10", "σ(y) instead of"):
        assert phrase in texts, phrase


def test_answers_that_need_a_look(course):
    unknown = sorted(f"Ada Student{s['n']:02d} <s{s['n']:02d}@example.org>"
                     for s in course["students"] if s["kind"] == "unknown")
    looks = course["report"]["needs_a_look"]
    assert sorted(r["student"] for r in looks) == unknown
    assert all([a["key"] for a in r["answers"]] == ["out_{o2}"] for r in looks)


def test_markdown_report_and_chart(course):
    md, root = course["markdown"], course["root"]
    assert md.startswith("# Class report: Rétropropagation sur le réseau 3-2-2")
    assert "61 students: 60 checked, 1 whose answers could not be read." in md
    assert "![Share of correct, consistent and wrong answers per quantity](report.chart.svg)" in md
    svg = ET.parse(root / "report.chart.svg").getroot()
    labels = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert set(course["blanks"]) <= set(labels)
    rows = re.findall(r"^\| `(.+?)` \| (\d+) \| (\d+) \(", md, re.M)
    assert [k for k, *_ in rows[:len(course["blanks"])]] == course["blanks"]


def test_same_input_same_report(course):
    root = course["root"]
    first = CliRunner().invoke(main, ["class", str(root / "sheet"), str(root / "responses.csv"),
                                      "--format", "json", "--lang", "en"]).stdout
    assert first == json.dumps(course["report"], indent=2, ensure_ascii=False) + "\n"


def test_report_speaks_the_sheets_language_unless_told(course):
    """The sheet's template says lang = "fr": the report is French unless --lang says."""
    root = course["root"]
    args = ["class", str(root / "sheet"), str(root / "responses.csv")]
    french = CliRunner().invoke(main, args).stdout
    assert french.startswith("# Bilan de la classe : Rétropropagation sur le réseau 3-2-2")
    assert "## Erreurs diagnostiquées" in french and "signe opposé" in french
    data = json.loads(CliRunner().invoke(main, [*args, "--format", "json"]).stdout)
    assert "signe opposé" in [s["text"] for s in data["slips"]]
    english = CliRunner().invoke(main, [*args, "--lang", "en"]).stdout
    assert english.startswith("# Class report: ") and "opposite sign" in english


# ---------------------------------------------------------------------------
# The other ways answers arrive, and bad input


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    write_sheets(TEMPLATE, root / "sheet", variants=3, seed=2, fmt="md")
    index = json.loads((root / "sheet" / "answers.json").read_text())
    return root, index


def right_answers(index, variant, slip=None):
    answers = {k: f"{v:.4g}" for k, v in index["variants"][variant - 1]["answers"].items()}
    if slip:  # the opposite sign
        value = answers[slip]
        answers[slip] = value[1:] if value.startswith("-") else "-" + value
    return answers


def run_class(*args):
    return CliRunner().invoke(main, ["class", *map(str, args)])


def test_a_directory_of_files_a_filled_sheet_and_a_class_csv(small):
    root, index = small
    students = root / "students"
    students.mkdir()
    answers = right_answers(index, 2, slip="out_{o1}")
    (students / "alice.toml").write_text("variant = 2\n" + "\n".join(
        f'"{k}" = "{v}"' for k, v in answers.items()) + "\n")
    # a filled-in Markdown sheet: its heading says the variant
    lines, right = [], iter(right_answers(index, 3).values())
    for line in (root / "sheet" / "exercise_3.md").read_text().splitlines():
        if line.startswith("| $") and line.endswith("|   |"):
            line = line[:-4] + f" {next(right)} |"
        lines.append(line)
    (students / "bruno.md").write_text("\n".join(lines) + "\n")
    (students / "chloe.json").write_text("{not json")
    (students / "notes.pdf").write_bytes(b"%PDF")  # not an answers file: not read
    table = root / "class.csv"
    with open(table, "w", newline="") as handle:
        out = csv.writer(handle)
        keys = list(right_answers(index, 1))
        out.writerow(["student", "variant"] + keys)
        out.writerow(["dora", 1] + list(right_answers(index, 1).values()))
        out.writerow(["emil", 3] + list(right_answers(index, 3, slip="y_{h1}").values()))
        out.writerow(["fay", 7] + list(right_answers(index, 1).values()))
    long = root / "long.csv"
    long.write_text("student,key,value\ngus,variant,1\n" + "".join(
        f'gus,"{k}",{v}\n' for k, v in right_answers(index, 1).items()))
    result = run_class(root / "sheet", students, table, long, "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = {r["student"]: r for r in report["per_student"]}
    assert set(rows) == {"alice", "bruno", "chloe", "dora", "emil", "fay", "gus"}
    assert (rows["alice"]["variant"], rows["alice"]["wrong"], rows["alice"]["first_wrong"]) \
        == (2, 1, "out_{o1}")
    assert (rows["bruno"]["variant"], rows["bruno"]["wrong"]) == (3, 0)
    assert rows["bruno"]["correct"] >= len(index["questions"])  # every blank filled right
    assert (rows["dora"]["wrong"], rows["emil"]["first_wrong"], rows["gus"]["wrong"]) \
        == (0, "y_{h1}", 0)
    assert "valid JSON" in rows["chloe"]["error"]
    assert "a variant of" in rows["fay"]["error"] and "got 7" in rows["fay"]["error"]
    assert report["unreadable"] == 2 and report["checked"] == 5
    assert result.stderr.count("warning: ") == 2


def test_moodle_report_in_french_with_the_question_column_or_responses_alone(small, tmp_path):
    root, index = small
    blanks = index["questions"]
    rows = []
    for n, variant in ((1, 1), (2, 2), (3, 3)):
        answers = right_answers(index, variant, slip="y_{o2}" if n == 2 else None)
        response = "; ".join(f"partie {k} : {answers[key].replace('.', ',')}"
                             for k, key in enumerate(blanks, start=1))
        question = (f"Rétropropagation sur le réseau 3-2-2 — Exercice (variante {variant}) "
                    "Faites à la main … {#1} …")
        rows.append((f"Nom{n}", f"Prénom{n}", f"e{n}@exemple.fr", question, response))
    with_question = tmp_path / "reponses.csv"
    alone = tmp_path / "responses_only.csv"
    header = ["Nom", "Prénom", "Adresse de courriel", "Question 1", "Réponse 1"]
    for path, columns in ((with_question, [0, 1, 2, 3, 4]), (alone, [0, 1, 2, 4])):
        with open(path, "w", newline="", encoding="utf-8-sig") as handle:
            out = csv.writer(handle, delimiter=";")
            for row in [header] + rows:
                out.writerow([row[k] for k in columns])
    for path in (with_question, alone):  # alone: the variant the answers agree with most
        result = run_class(root / "sheet", path, "--format", "json", "--lang", "fr")
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        got = {r["student"]: (r["variant"], r["wrong"]) for r in report["per_student"]}
        assert got == {"Prénom1 Nom1 <e1@exemple.fr>": (1, 0),
                       "Prénom2 Nom2 <e2@exemple.fr>": (2, 1),
                       "Prénom3 Nom3 <e3@exemple.fr>": (3, 0)}
        assert report["slips"][0]["text"] == "signe opposé"


def test_a_spec_for_the_whole_class_and_the_pdf_report(tmp_path):
    spec = "examples/mlp_3_2_2_cross_entropy.toml"
    for name, value in (("ana", "0.874"), ("ben", "0.875"), ("cy", "-0.874")):
        (tmp_path / f"{name}.toml").write_text(f'"out_{{o1}}" = {value}\n"E_{{tot}}" = 0.1349\n')
    result = run_class(spec, tmp_path, "--format", "json")
    report = json.loads(result.stdout)
    assert [(r["key"], r["correct"], r["wrong"]) for r in report["keys"]] == [
        ("out_{o1}", 1, 2), ("E_{tot}", 3, 0)]
    assert {r["student"] for r in report["needs_a_look"]} == {"ben"}  # 0.875: no slip gives it
    from backprop_explain.pdf import find_engine
    if find_engine() is None:
        pytest.skip("no LaTeX engine; CI installs one")
    out = tmp_path / "out" / "report.pdf"
    result = run_class(spec, tmp_path, "--format", "pdf", "--lang", "fr", "-o", out)
    assert result.exit_code == 0, result.output
    import subprocess
    text = subprocess.run(["pdftotext", str(out), "-"], capture_output=True, text=True).stdout
    assert "Bilan de la classe" in text and "signe opposé" in text and "ben" in text


def test_bad_target_and_nothing_readable_end_in_one_line(small, tmp_path):
    root, _ = small
    (tmp_path / "x.toml").write_text("nothing = [")
    for args in [(tmp_path / "nope", tmp_path / "x.toml"),  # no such spec or sheet
                 (tmp_path, tmp_path / "x.toml"),  # a directory without answers.json
                 (root / "sheet", tmp_path / "x.toml"),  # no student readable
                 (root / "sheet", tmp_path / "x.toml", "--format", "pdf")]:
        result = run_class(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
        assert len([line for line in result.output.splitlines()
                    if line.startswith("Error")]) == 1


def test_many_students_show_a_progress_bar(small, tmp_path, monkeypatch):
    from backprop_explain import cli
    monkeypatch.setattr(cli, "_stderr_is_terminal", lambda: True)
    root, index = small
    for n in range(21):
        (tmp_path / f"s{n:02d}.toml").write_text("variant = 1\n" + "\n".join(
            f'"{k}" = "{v}"' for k, v in right_answers(index, 1).items()))
    result = run_class(root / "sheet", tmp_path, "--format", "json")
    assert result.exit_code == 0 and "students" in result.stderr.splitlines()
    assert json.loads(result.stdout)["checked"] == 21


def test_the_examples_are_what_the_commands_write(tmp_path):
    """examples/quiz_3_2_2/ and examples/quiz_3_2_2_report.md (shown in the README) are
    the files the documented commands write today."""
    from pathlib import Path
    examples = Path("examples")
    write_sheets(TEMPLATE, tmp_path / "quiz", variants=3, seed=1, fmt="moodle")
    for path in sorted((examples / "quiz_3_2_2").iterdir()):
        assert (tmp_path / "quiz" / path.name).read_bytes() == path.read_bytes(), path.name
    report = tmp_path / "quiz_3_2_2_report.md"
    result = run_class(examples / "quiz_3_2_2", examples / "quiz_3_2_2_responses.csv",
                       "-o", report)
    assert result.exit_code == 0, result.output
    for name in ("quiz_3_2_2_report.md", "quiz_3_2_2_report.chart.svg"):
        assert (tmp_path / name).read_bytes() == (examples / name).read_bytes(), name
    readme = Path("README.md").read_text(encoding="utf-8")
    assert (examples / "quiz_3_2_2_report.md").read_text(encoding="utf-8").rstrip() in readme
