"""Moodle Cloze questions (sheet --format moodle): one question per variant, read back with
Moodle's own Cloze grammar (tests/cloze.py): every blank's right value (against the symbolic
engine), its tolerance, each slip answer (values recomputed here in plain Python) and its
feedback; the embedded diagram; the worked solution as general feedback; the escaping of
{ } # ~ \\ in feedback and LaTeX; well-formed XML and HTML; reproducible bytes."""

from __future__ import annotations

import base64
import json
import math
import tomllib
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from backprop_explain import api
from backprop_explain.cli import main
from backprop_explain.moodle import cloze_feedback, numerical_blank, tolerance
from backprop_explain.sheet import draw_variants, write_sheets
from backprop_explain.sheet_spec import load_template, template_from_dict
from backprop_explain.escaping import html_text
from backprop_explain.verify import Catalog, Diagnosis, usual_slips

from cloze import parse

TEMPLATE = "examples/sheet_mlp_3_2_2.toml"
VARIANTS, SEED = 3, 4
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    out = tmp_path_factory.mktemp("cloze")
    write_sheets(TEMPLATE, out, variants=VARIANTS, seed=SEED, fmt="moodle", lang="en")
    root = ET.fromstring((out / "questions.xml").read_bytes())
    answers = json.loads((out / "answers.json").read_text())
    return out, root, answers


def questions_of(root):
    return root.findall("question[@type='cloze']")


def test_one_category_one_cloze_question_per_variant(bank):
    out, root, answers = bank
    questions = root.findall("question")
    assert [q.get("type") for q in questions] == ["category"] + ["cloze"] * VARIANTS
    assert questions[0].findtext("category/text") == \
        "$course$/top/Rétropropagation sur le réseau 3-2-2"
    names = [q.findtext("name/text") for q in questions_of(root)]
    assert names == [f"Rétropropagation sur le réseau 3-2-2 — Exercise (variant {k})"
                     for k in range(1, VARIANTS + 1)]
    for q in questions_of(root):
        assert q.find("questiontext").get("format") == "html"
        assert q.find("generalfeedback").get("format") == "html"
        assert q.findtext("penalty") == "0.3333333" and q.findtext("hidden") == "0"
    assert {p.name for p in out.iterdir()} == {"questions.xml", "answers.json"} | {
        f"spec_{k}.json" for k in range(1, VARIANTS + 1)}


def test_the_diagram_is_embedded_and_shown(bank):
    _, root, _ = bank
    for k, q in enumerate(questions_of(root), start=1):
        files = q.findall("questiontext/file")
        assert len(files) == 1
        assert files[0].attrib == {"name": f"network_{k}.svg", "path": "/",
                                   "encoding": "base64"}
        svg = ET.fromstring(base64.b64decode(files[0].text))
        assert svg.tag == f"{SVG}svg" and len(svg.findall(f".//{SVG}circle")) == 7
        text = q.findtext("questiontext/text")
        assert text.count(f'src="@@PLUGINFILE@@/network_{k}.svg"') == 1


def test_the_question_says_what_every_name_means(bank):
    _, root, _ = bank
    html = questions_of(root)[0].findtext("questiontext/text")
    fragment = ET.fromstring("<div>" + html + "</div>")  # well-formed markup
    text = "".join(fragment.itertext())
    for phrase in (r"\(wh_{j,i}\) connects input \(i\) to unit \(j\): \(wh_{1,2}\) carries "
                   r"\(x_2\) into \(y_{h1}\)",
                   r"\(E_{tot} = E_{o1} + E_{o2}\)", r"\(\ln\) is the natural logarithm",
                   # the document's letters, none a spec name's (y is: y_{h1}; E_{tot} is the loss)
                   r"\(\theta' = \theta - \eta \cdot \partial E_{tot}/\partial \theta\)",
                   r"\sigma(s) = \frac{1}{1 + e^{-s}}", r"\(\eta = "):
        assert phrase in text, phrase
    assert "$" not in text  # every formula for MathJax as \( … \)


def test_every_blank_reads_back_right_value_tolerance_and_slips(bank):
    """Moodle's grammar finds one NUMERICAL blank per asked key, in the worked solution's
    order; its right answer is the symbolic engine's value with the digits' tolerance, and
    its 0 % answers are verify's slips for this variant, each with its feedback."""
    _, root, answers = bank
    keys = answers["blanks"]
    assert sorted(keys) == sorted(answers["questions"])
    variants = draw_variants(load_template(TEMPLATE), VARIANTS, SEED)
    digits = answers["digits"]
    checked = 0
    for q, variant in zip(questions_of(root), variants):
        data = api.solution_data(variant.spec)  # the symbolic engine, not the fast path
        truth = dict(data["forward"], **{f"dE_{{tot}}/d{n}": g
                                         for n, g in data["gradients"].items()},
                     **{f"{n}'": x for n, x in data["updated"].items()},
                     **{"E_{tot}": data["loss"], "E_{tot}'": data["loss_after"]})
        blanks, rest = parse(q.findtext("questiontext/text"))
        assert len(blanks) == len(keys) and "NUMERICAL" not in rest
        catalog = Catalog(variant.spec)
        slips = usual_slips(catalog, keys)
        for key, blank in zip(keys, blanks):
            assert blank.type == "NUMERICAL" and blank.weight == 1
            right, *wrong = blank.alternatives
            assert right.fraction == 1 and right.feedback == ""
            assert right.value == pytest.approx(truth[key], rel=1e-6, abs=1e-12)
            assert right.tolerance == float(tolerance(truth[key], digits))
            rounded = float(f"{truth[key]:.{digits}g}")  # a correct hand answer is accepted
            assert abs(rounded - right.value) <= right.tolerance
            # The wrong answers: the slips in verify's order, none within an earlier answer.
            expected, kept = [], [(right.value, right.tolerance)]
            for diagnosis, value in slips[key]:
                if all(abs(value - v) > t for v, t in kept):
                    kept.append((value, float(tolerance(value, digits))))
                    expected.append((value, html_text(cloze_feedback_text(diagnosis))))
            assert [(w.fraction, w.tolerance) for w in wrong] == [
                (0.0, float(tolerance(v, digits))) for v, _ in expected]
            for w, (value, feedback) in zip(wrong, expected):
                assert w.value == pytest.approx(value, rel=1e-7, abs=1e-12)
                assert w.feedback == feedback
                assert abs(w.value - right.value) > right.tolerance  # never the right one
            checked += 1
    assert checked == VARIANTS * len(keys)


def cloze_feedback_text(diagnosis):
    """The diagnosis in English with its quantities as $…$ math (what the blank must read
    back as, once html_text turns $…$ into \\( … \\))."""
    from backprop_explain.keys import key_tex
    values = {}
    for name, value in diagnosis.values.items():
        if name in ("key", "other", "used", "param", "parent", "factor"):
            value = f"${key_tex(value)}$"
        elif name == "keys":
            value = [f"${key_tex(v)}$" for v in value]
        values[name] = value
    return Diagnosis(diagnosis.code, values).text("en")


def test_slip_answers_are_the_slips_computed_by_hand(bank):
    """Some slips recomputed here from the variant's own numbers in plain Python."""
    _, root, answers = bank
    keys = answers["blanks"]
    variant = draw_variants(load_template(TEMPLATE), 1, SEED)[0]
    spec = variant.spec
    blanks = dict(zip(keys, parse(questions_of(root)[0].findtext("questiontext/text"))[0]))
    p = dict(spec.parameters)
    x, t, lr = spec.examples[0].inputs, spec.examples[0].targets, spec.learning_rate

    def sigma(y):
        return 1 / (1 + math.exp(-y))
    h = [sigma(sum(p[f"wh_{{{j},{i}}}"] * x[i - 1] for i in (1, 2, 3)) + p[f"bh_{j}"])
         for j in (1, 2)]
    y = [sum(p[f"wo_{{{j},{i}}}"] * h[i - 1] for i in (1, 2)) + p[f"bo_{j}"] for j in (1, 2)]
    out = [sigma(v) for v in y]
    hot = t.index(1)
    # dE/dwo_{j,i} = dE/dout_j · σ′(y_j) · out_{hi} = −t_j/out_j · out_j(1 − out_j) · out_{hi}
    g = {f"wo_{{{j},{i}}}": -t[j - 1] * (1 - out[j - 1]) * h[i - 1]
         for j in (1, 2) for i in (1, 2)}
    w = f"wo_{{{hot + 1},1}}"  # a weight of the output whose target is 1: g ≠ 0
    found = []
    for key, value, phrase in [
            ("E_{tot}", -math.log10(out[hot]), "log base 10 instead of the natural log"),
            ("out_{o1}", -out[0], "opposite sign"),
            (f"{w}'", p[w] + lr * g[w], "update applied with +"),
            (f"{w}'", p[w] - g[w], "learning rate forgotten"),
            (f"{w}'", p[w], "old value kept"),
            # σ(y) for σ′(y): dE/dout · σ(y) · out_h1, dE/dout = −t/out
            (f"dE_{{tot}}/d{w}", -1 / out[hot] * out[hot] * h[0], "σ(y) instead of"),
            ("E_{tot}'", None, "before the update")]:
        if value is None:
            value = -math.log(out[hot])  # the loss before the step for the one after
        matches = [w for w in blanks[key].alternatives[1:]
                   if abs(w.value - value) <= w.tolerance]
        if abs(value - blanks[key].alternatives[0].value) <= blanks[key].alternatives[0].tolerance:
            assert not matches  # coincides with the right value: left out
            continue
        assert matches and phrase in matches[0].feedback, (key, value, phrase)
        found.append(phrase)
    assert len(found) >= 6


def test_feedback_escapes_braces_hashes_tildes_and_backslashes():
    diagnosis = Diagnosis("wrong_derivative", {"key": "dout_{o1}/dy_{o1}", "wrong": "#~}\\",
                                               "right": "σ(y)(1−σ(y))"})
    feedback = cloze_feedback(diagnosis, "en")
    assert not set("{}#~\\") & set(feedback.replace("&#123;", "").replace("&#125;", "")
                                   .replace("&#35;", "").replace("&#126;", "")
                                   .replace("&#92;", "").replace("&amp;", ""))
    blank = numerical_blank(0.5, 4, [(diagnosis, 0.7), (Diagnosis("opposite_sign"), -0.5)],
                            "en")
    (read,), rest = parse("a " + blank + " b")
    assert rest == "a {#1} b"
    wrong = read.alternatives[1]
    assert wrong.feedback == (r"derivative of the wrong function in "
                              r"\(\frac{\partial out_{o1}}{\partial y_{o1}}\): #~}\ instead of "
                              r"σ(y)(1−σ(y))")
    assert [a.value for a in read.alternatives] == [0.5, 0.7, -0.5]
    assert [a.tolerance for a in read.alternatives] == [0.0001, 0.0001, 0.0001]


def test_a_slip_within_the_tolerance_of_the_right_value_is_left_out():
    slips = [(Diagnosis("opposite_sign"), 0.00004), (Diagnosis("power_of_ten", {"factor":
                                                                                "10^1"}), 0.5),
             (Diagnosis("neighbour", {"other": "w_2"}), 0.50005), (Diagnosis("log10"), 0.9)]
    (read,), _ = parse(numerical_blank(0.5, 4, slips, "en"))
    assert [a.value for a in read.alternatives] == [0.5, 0.00004, 0.9]
    assert "log base 10" in read.alternatives[2].feedback


@given(st.lists(st.text(alphabet="&<>;#a1 \\$", max_size=10), min_size=1, max_size=4))
def test_a_display_escaped_whole_is_each_row_escaped(rows):
    """macros.html.j2 joins a display's rows, then escapes them in one html_text call: the
    same text as each row escaped, even where a row ends with & or an entity's start."""
    separator = " \\\\ "
    assert html_text(separator.join(rows), math=True) == separator.join(
        html_text(row, math=True) for row in rows)


def test_replayed_slips_are_yielded_once_when_nothing_is_written():
    """Nothing written, the student's world is the truth: each replayed slip comes once,
    not again as the same value (a blank's slips are no fewer for it)."""
    catalog = Catalog(api.load_spec("examples/mlp_3_2_2_cross_entropy.toml"))
    for key in ("E_{tot}", "dE_{tot}/dwo_{1,1}", "E_{tot}'"):
        replayed = [d.code for d, _ in usual_slips(catalog, [key])[key]
                    if d.code in ("log10", "wrong_derivative", "wrong_derivative_everywhere")]
        reaching = catalog.variants_reaching(key)
        assert reaching and len(replayed) == len(reaching), key


def test_general_feedback_is_the_worked_solution(bank):
    _, root, answers = bank
    html = questions_of(root)[1].findtext("generalfeedback/text")
    fragment = ET.fromstring("<div>" + html + "</div>")
    text = "".join(fragment.itertext())
    loss = f"{answers['variants'][1]['answers']['E_{tot}']:.4g}"
    assert "Backward pass" in text and "chain rule" in text and loss in text
    assert r"\frac{\partial E_{tot}}{\partial wo_{1,1}}" in text and "$" not in text
    assert "@@PLUGINFILE@@" not in html  # the figure is the question's, not repeated


def test_a_hostile_title_stays_text(tmp_path):
    with open(TEMPLATE, "rb") as handle:
        data = tomllib.load(handle)
    # … and no title can spell the placeholder of an answer cell
    data["title"] = ("<script>x</script> {1:NUMERICAL:=1} #~}\\ $\\input{a}$ A/B "
                     "@@BLANK0@@ \x00BLANK0\x00")
    write_sheets(template_from_dict(data), tmp_path, variants=1, seed=0, fmt="moodle")
    root = ET.fromstring((tmp_path / "questions.xml").read_bytes())
    html = root.findtext("question[@type='cloze']/questiontext/text")
    assert "<script>" not in html and "&lt;script&gt;" in html
    blanks, _ = parse(html)
    assert len(blanks) == len(json.loads((tmp_path / "answers.json").read_text())["blanks"])
    fragment = ET.fromstring("<div>" + html + "</div>")
    title = "".join(fragment.find("h3").itertext())
    assert title.startswith("<script>x</script> {1:NUMERICAL:=1} #~}\\ $\\input{a}$ A/B "
                            "@@BLANK0@@ \ufffdBLANK0\ufffd")
    assert "A//B" in root.findtext("question[@type='category']/category/text")


def test_cloze_bytes_are_reproducible_and_french(tmp_path):
    for run in ("a", "b"):
        write_sheets(TEMPLATE, tmp_path / run, variants=2, seed=8, fmt="moodle", lang="fr")
    first = (tmp_path / "a" / "questions.xml").read_bytes()
    assert first == (tmp_path / "b" / "questions.xml").read_bytes()
    root = ET.fromstring(first)
    text = root.findtext("question[@type='cloze']/questiontext/text")
    assert "relie l'entrée" in text and "logarithme népérien" in text
    blanks, _ = parse(text)
    feedback = " ".join(a.feedback for b in blanks for a in b.alternatives[1:])
    assert "signe opposé" in feedback and "logarithme décimal" in feedback


def test_cli_writes_cloze_by_default_and_per_key_on_request(tmp_path):
    runner = CliRunner()
    for style, kind in (("cloze", "cloze"), ("per-key", "numerical")):
        out = tmp_path / style
        args = ["sheet", TEMPLATE, "--variants", "2", "--format", "moodle", "-o", str(out)]
        if style != "cloze":
            args += ["--moodle-style", style]
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
        root = ET.fromstring((out / "questions.xml").read_bytes())
        assert {q.get("type") for q in root.findall("question")} == {"category", kind}
    result = runner.invoke(main, ["sheet", TEMPLATE, "--format", "moodle", "--moodle-style",
                                  "both", "-o", str(tmp_path / "x")])
    assert result.exit_code == 2
    with pytest.raises(ValueError, match="moodle_style: one of cloze, per-key"):
        api.sheet(TEMPLATE, tmp_path / "y", format="moodle", moodle_style="both")


@pytest.mark.parametrize("example", ["mlp_3_2_2_cross_entropy", "mlp_tanh_softmax",
                                     "mlp_minibatch", "mlp_adam", "cnn_3x3_filter_2x2"])
def test_each_slip_replayed_from_the_plain_evaluation_is_the_full_evaluation(example):
    """A slip's world is computed again only where its altered formulas reach, the rest
    taken from the plain evaluation: the same numbers as evaluating every quantity with
    the altered formulas, on networks with each optimizer, loss and several examples."""
    catalog = Catalog(api.load_spec(f"examples/{example}.toml"))
    plain = catalog.evaluate({})
    assert catalog.variants
    for _, formulas in catalog.variants:
        altered = catalog.evaluate_altered(plain, formulas)
        assert altered == catalog.evaluate({}, formulas=formulas)
        assert any(altered[k] != plain[k] for k in formulas)  # the slip changes something


@pytest.mark.parametrize("given", [{"out_{o1}": -0.5}, {"out_{o1}": 0.0}, {"y_{h1}": 1e200},
                                   {"y_{o2}": -800.0}])
def test_a_slip_world_leaving_its_domain_is_the_full_evaluation(given):
    """A slip's world is computed in one pass of plain floats, and again one step at a time
    when a step leaves its domain (log of a negative number or of 0, a division by 0, an
    overflow, an infinite value): the same values, None where the full evaluation with the
    altered formulas has None."""
    catalog = Catalog(api.load_spec("examples/mlp_3_2_2_cross_entropy.toml"))
    plain = catalog.evaluate(given)
    changed = 0
    for _, formulas in catalog.variants:
        altered = catalog.evaluate_altered(plain, formulas)
        assert altered == catalog.evaluate(given, formulas=formulas)
        changed += sum(altered[k] is None and plain[k] is not None for k in altered)
    assert None in plain.values() or changed  # a step outside its domain was replayed


@pytest.mark.parametrize("example", ["mlp_3_2_2_cross_entropy", "mlp_adam",
                                     "cnn_3x3_filter_2x2"])
@pytest.mark.parametrize("leaf", [None, float("nan"), float("inf")])
def test_the_plain_evaluation_in_one_pass_is_each_formula_in_turn(example, leaf):
    """evaluate({}) runs every formula in one straight-line pass: the same values as each
    quantity recomputed in turn from those before it, also when a leaf makes a step
    leave its domain or is not finite (None from there on, as one at a time)."""
    catalog = Catalog(api.load_spec(f"examples/{example}.toml"))
    first = next(q for q in catalog.quantities.values() if q.kind == "input")
    if leaf is not None:
        first.value = leaf
    in_turn = {}
    for key, quantity in catalog.quantities.items():
        in_turn[key] = (quantity.value if quantity.formula is None
                        else catalog.recompute(key, in_turn))
    assert catalog.evaluate({}) == in_turn
    assert (None in in_turn.values()) == (leaf is not None)


def test_variants_of_one_graph_give_the_slips_of_a_catalogue_made_alone():
    """A sheet's catalogues share one graph and what depends only on its keys and
    formulas; each variant's slips are those of its own catalogue built from scratch
    (a graph of its own, nothing shared), and read one at a time or as lists alike."""
    from backprop_explain.derivation import NumericGraph, derive
    from backprop_explain.graph import build_graph
    from backprop_explain.verify import each_usual_slip
    template = load_template(TEMPLATE)
    variants = draw_variants(template, 3, SEED)
    keys = [q.key for q in template.questions(variants[0].spec)]
    numeric = NumericGraph(build_graph(variants[0].spec))
    shared = [Catalog(v.spec, derive(v.spec, numeric)) for v in variants]
    slips = [{k: list(s) for k, s in each_usual_slip(c, keys).items()} for c in shared]
    for variant, catalog, found in zip(variants, shared, slips):
        alone = Catalog(variant.spec)
        assert alone.graph is not catalog.graph is numeric.graph
        assert found == usual_slips(alone, keys)
        assert sum(map(len, found.values())) > 20 * len(keys)
