"""Checking hand calculations: the course's own slips, injected slips in random networks,
errors carried forward, the significant-digit rule, answer formats, exit statuses.

Truth comes from outside the verifier: the course's printed figures, NumPy forward passes
and central finite differences of tests/reference.py, PyTorch when installed; each slip's
number is computed here by plain arithmetic on those values.
"""

from __future__ import annotations

import decimal
import json
import math
import tomllib
from functools import cached_property

import numpy as np
import pytest
from click.testing import CliRunner

from backprop_explain.answers import Answer, parse_answers, parse_number
from backprop_explain.api import as_spec
from backprop_explain.cli import main
from backprop_explain.errors import SpecError
from backprop_explain.verify import Catalog, Tolerance, keys_listing, verify_answers

from reference import Network
from students import random_data

SPEC = "examples/mlp_3_2_2_cross_entropy.toml"
COURSE = "examples/course_3_2_2_answers.toml"


def answer(text: str, key: str = "q") -> Answer:
    value, integer = parse_number(text)
    return Answer(key, text, value, None, integer)


def verdicts(result):
    return {(c.place, c.key): (c.status, c.diagnosis.code if c.diagnosis else None)
            for c in result.checks if c.status != "correct"}


# ---------------------------------------------------------------------------
# The course's worked example (seed 002, "Backpropagation : exemple 1/24" to "24/24")


# Every number of the course that is not right at the digits printed, and why.
COURSE_SLIPS = {
    ("slide 1", "E_{tot}"): ("wrong", "log10"),  # 0.05858 = -log10(0.874), ln gives 0.1349
    ("slide 2", "E_{tot}"): ("consistent", "restated"),
    ("slide 3", "y_{o1}"): ("wrong", "truncated"),  # e^{-1.93}: y_o1 = 1.9352
    # -1.14 * 0.1103 * 0.614 = -0.0772, but the digits written allow -0.0776: a student who
    # kept the calculator's y_o1 (1.9347, written 1.93) gets -0.078 (interval arithmetic)
    ("slide 3", "dE_{tot}/dwo_{1,1}"): ("consistent", "rounded_inputs"),
    ("slide 4", "dy_{o1}/dwo_{1,2}"): ("wrong", "no_diagnosis"),  # out_h2 = 0.438, not 0.474
    ("slide 7", "dE_{tot}/dwo_{1,1}"): ("consistent", "rounded_inputs"),
    ("slide 7", "wo_{1,1}'"): ("consistent", "carried_forward"),  # 0,100078 from -0.078
    ("slide 7", "bo_1'"): ("wrong", "update_decimal"),  # 1,400013: the step 10x too small
    ("slide 7", "wo_{2,1}"): ("wrong", "neighbour"),  # 0.1 is wo_{1,1}; wo_{2,1} = -0.3
    ("slide 7", "wo_{2,1}'"): ("consistent", "carried_forward"),
    ("slide 13", "dE_{tot}/dout_{h1}"): ("wrong", "opposite_sign"),  # restated as +0.01262
    ("slide 15", "wh_{1,1}'"): ("wrong", "update_no_old"),  # 0.000000448 = -η·g only
    ("slide 20", "dE_{tot}/dwh_{2,3}"): ("wrong", "neighbour"),  # the wh_{2,2} gradient
    ("slide 22", "dE_{tot}/dwh_{2,2}"): ("wrong", "step_for_gradient"),  # -0,00000786
    ("slide 22", "wh_{2,3}"): ("wrong", "neighbour"),  # -0.4 is wh_{2,2}
    ("slide 22", "dE_{tot}/dwh_{2,3}"): ("wrong", "step_for_gradient"),
    ("slide 24", "E_{tot}'"): ("wrong", "log10"),  # 0,05856 = -log10(0,873846655)
    ("slide 24", "E_{tot}"): ("consistent", "restated"),
}


@pytest.fixture(scope="module")
def course():
    return verify_answers(SPEC, COURSE)


def test_course_answers_give_exactly_the_known_slips(course):
    assert verdicts(course) == COURSE_SLIPS
    assert len(course.checks) == 141 and course.counts["unknown_key"] == 0
    assert not course.ok
    first = course.first_wrong
    assert (first.place, first.key) == ("slide 1", "E_{tot}")


def course_truth() -> dict:
    """The course network's true values, from the reference (tests/reference.py): every
    forward value, ∂E/∂quantity and ∂E/∂θ, the update and the loss after it."""
    net = Network(SPEC)
    p = net.parameters
    truth = dict(net.values(p)[0])
    truth.update({f"dE_{{tot}}/d{n}": g for n, g in net.adjoints(p)[0].items()})
    truth.update({f"dE_{{tot}}/d{n}": g for n, g in net.gradients(p).items()})
    after = net.train()["parameters"][0]
    truth.update({f"{n}'": v for n, v in after.items()})
    truth.update({f"{n}'": v for n, v in net.values(after)[0].items() if n not in p})
    truth.update(p)
    for layer, record in zip(net.layers, net.forward(p)["layers"]):  # ∂z_j/∂w_{j,i} = x_i
        z, w = layer.value_names["pre_activation"], layer.names["weights"]
        for j, i in np.ndindex(*w.shape):
            truth[f"d{z[j]}/d{w[j, i]}"] = record["input"][0][i]
    return truth


def half_up(value: float, significant: int) -> float:
    """value rounded to significant digits as a person does (a 5 rounds away from 0)."""
    exact = decimal.Decimal(repr(float(value)))
    exponent = exact.adjusted() - significant + 1
    return float(exact.quantize(decimal.Decimal(f"1e{exponent}"),
                                                       rounding=decimal.ROUND_HALF_UP))


def at_written_digits(value: float, written: str) -> bool:
    """value rounds to the number as written (its decimals decide the precision)."""
    text = written.replace(",", ".")
    decimals = len(text.split(".")[1]) if "." in text else 0
    return abs(value - float(text)) <= 0.5 * 10 ** -decimals * (1 + 1e-9)


def course_numbers_before(place: str) -> dict:
    """The numbers the course wrote before ``place`` (its answers file, read here with
    tomllib): a slip may be made on the course's own earlier, already wrong, number."""
    with open(COURSE, "rb") as handle:
        slides = tomllib.load(handle)
    seen = {}
    for name, table in slides.items():
        if name == place:
            break
        seen.update({k: float(str(v).replace(",", ".")) for k, v in table.items()})
    return seen


def test_course_slips_are_what_the_diagnosis_says(course):
    """Each diagnosis the project states is reproduced here by plain arithmetic: the slip
    it names, applied to the reference's true values (or to the course's own earlier number
    for that quantity), gives the course's number at the digits it is written with."""
    truth = course_truth()
    eta, targets = 0.001, (1, 0)  # the course's η and target

    def log10_loss(values, key):  # E_{tot} or E_{tot}' with log10 in place of ln
        after = "'" if key.endswith("'") else ""
        return -sum(t * math.log10(values[f"out_{{o{k + 1}}}{after}"]) if t else 0
                    for k, t in enumerate(targets))

    slip = {  # what each named slip makes of the values
        "log10": log10_loss,
        "opposite_sign": lambda v, key: -v[key],
        "update_no_old": lambda v, key: -eta * v[f"dE_{{tot}}/d{key[:-1]}"],
        "update_decimal": lambda v, key: v[key[:-1]] - eta / 10 * v[f"dE_{{tot}}/d{key[:-1]}"],
        "step_for_gradient": lambda v, key: eta * v[key],
        "truncated": lambda v, key: math.floor(v[key] * 100) / 100,
    }
    checked = set()
    for check in course.checks:
        if check.status == "consistent" and check.diagnosis.code == "rounded_inputs":
            # not the true value at its digits, but what the course's own rounded numbers
            # give: the slide's -0.078 for ∂E/∂wo_{1,1} (rounded twice, -0.0775 → -0.078)
            assert not at_written_digits(truth[check.key], check.given), check.key
            assert at_written_digits(half_up(half_up(truth[check.key], 3), 2), check.given)
            checked.add("rounded_inputs")
        if check.status != "wrong" or check.diagnosis is None:
            continue
        code = check.diagnosis.code
        assert check.expected == pytest.approx(truth[check.key], rel=1e-12), check.key
        if code == "neighbour":
            other = check.diagnosis.values["other"]
            assert at_written_digits(truth[other], check.given), (check.key, other)
        elif code in slip:
            earlier = {**truth, **course_numbers_before(check.place)}
            assert any(at_written_digits(slip[code](values, check.key), check.given)
                       for values in (truth, earlier)), (check.place, check.key, code)
        else:
            assert code == "no_diagnosis"
            assert not at_written_digits(truth[check.key], check.given)
        checked.add(code)
    assert checked == {"log10", "opposite_sign", "update_no_old", "update_decimal",
                       "step_for_gradient", "truncated", "rounded_inputs", "neighbour",
                       "no_diagnosis"}


def test_course_true_values_match_the_reference():
    """The twin of the PyTorch check below: the catalogue's values against the reference."""
    truth = course_truth()
    catalog = Catalog(as_spec(SPEC))
    q = {k: v.value for k, v in catalog.quantities.items()}
    for key in ("E_{tot}", "dE_{tot}/dout_{h1}", "dE_{tot}/dwh_{2,3}", "wo_{1,1}'",
                "out_{o2}'", "E_{tot}'", "dE_{tot}/dy_{o1}", "bh_2'"):
        assert q[key] == pytest.approx(truth[key], rel=1e-12), key
    key = catalog.resolve("∂E_{o1}/∂out_{h1}")
    assert catalog.quantities[key].value == pytest.approx(truth["dE_{tot}/dout_{h1}"],
                                                          rel=1e-12)  # E_{o2} has t = 0


def test_course_true_values_match_pytorch():
    torch = pytest.importorskip("torch")
    x = torch.tensor([0.15, 0.25, -0.5], dtype=torch.float64)
    wh = torch.tensor([[0.1, 2, 0.5], [0.3, -0.4, -0.5]], dtype=torch.float64, requires_grad=True)
    bh = torch.tensor([0.2, -0.3], dtype=torch.float64, requires_grad=True)
    wo = torch.tensor([[0.1, 1], [-0.3, -0.2]], dtype=torch.float64, requires_grad=True)
    bo = torch.tensor([1.4, -1], dtype=torch.float64, requires_grad=True)
    h = torch.sigmoid(wh @ x + bh)
    h.retain_grad()
    out = torch.sigmoid(wo @ h + bo)
    loss = -torch.log(out[0])
    loss.backward()
    catalog = Catalog(as_spec(SPEC))
    q = {k: v.value for k, v in catalog.quantities.items()}
    assert q["E_{tot}"] == pytest.approx(loss.item(), rel=1e-12)
    assert q["dE_{tot}/dout_{h1}"] == pytest.approx(h.grad[0].item(), rel=1e-12)
    assert q["dE_{tot}/dwh_{2,3}"] == pytest.approx(wh.grad[1, 2].item(), rel=1e-12)
    assert q["wo_{1,1}'"] == pytest.approx(0.1 - 0.001 * wo.grad[0, 0].item(), rel=1e-14)
    with torch.no_grad():
        wh -= 0.001 * wh.grad
        bh -= 0.001 * bh.grad
        wo -= 0.001 * wo.grad
        bo -= 0.001 * bo.grad
        after = torch.sigmoid(wo @ torch.sigmoid(wh @ x + bh) + bo)
    assert q["out_{o2}'"] == pytest.approx(after[1].item(), rel=1e-12)
    assert q["E_{tot}'"] == pytest.approx(-math.log(after[0].item()), rel=1e-12)
    # A derivative through one loss term only (the course's ∂E_{o1}/∂out_{h1}), lazily named.
    key = catalog.resolve("∂E_{o1}/∂out_{h1}")
    assert key == "dE_{o1}/dout_{h1}"
    assert catalog.quantities[key].value == pytest.approx(h.grad[0].item(), rel=1e-12)


def test_rounding_mode_keeps_slips_slips():
    result = verify_answers(SPEC, COURSE, round_to=4)
    status = verdicts(result)
    assert status[("slide 3", "dE_{tot}/dwo_{1,1}")][0] == "consistent"
    assert status[("slide 1", "E_{tot}")] == ("wrong", "log10")  # a slip stays a slip
    assert status[("slide 3", "y_{o1}")] == ("wrong", "truncated")


# ---------------------------------------------------------------------------
# Random networks, computed independently with NumPy and finite differences

ACT = {"sigmoid": lambda z: 1 / (1 + np.exp(-z)), "tanh": np.tanh}
DACT = {"sigmoid": lambda z: ACT["sigmoid"](z) * (1 - ACT["sigmoid"](z)),
        "tanh": lambda z: 1 - np.tanh(z) ** 2}


def random_network(seed: int, activation: str, loss: str, sizes=(3, 2, 2), lr=0.1):
    return random_data(seed, activation, loss, sizes, lr, weights=1.5, hot=0)


class Student:
    """A student's full, correct answers (7 decimals), from the independent computation."""

    def __init__(self, data):
        self.spec = spec = as_spec(data)
        net = Network(data)  # tests/reference.py: NumPy, no code of the package
        params = dict(net.parameters)
        self.values = net.values(params)[0]
        self.grad = net.numeric_gradients(params)
        self.lr = spec.learning_rate
        self.new = {n: params[n] - self.lr * g for n, g in self.grad.items()}
        self.after = net.values(self.new)[0]
        self.E = spec.loss.total_name
        out_layer = spec.layers[-1]
        self.answers = {}
        for name, value in self.values.items():
            self.answers[name] = value
        self.answers.update(params)
        for layer in spec.layers:
            for z, a in zip(layer.pre_activation_names, layer.activation_names):
                self.answers[f"d{a}/d{z}"] = DACT[layer.activation](self.values[z])
        for a, t, e in zip(out_layer.activation_names, spec.examples[0].targets,
                           spec.loss.term_names):
            out = self.values[a]
            self.answers[f"d{e}/d{a}"] = -t / out if spec.loss.kind == "cross_entropy" \
                else out - t
        for name, g in self.grad.items():
            self.answers[f"d{self.E}/d{name}"] = g
            self.answers[f"{name}'"] = self.new[name]
        for name in out_layer.activation_names + [self.E]:
            self.answers[f"{name}'"] = self.after[name]

    def text(self, **changed) -> str:
        rows = dict(self.answers)
        rows.update(changed)
        return "\n".join(f'"{k}" = "{v:.7f}"' for k, v in rows.items())

    @cached_property
    def catalog(self):
        return Catalog(self.spec)

    def verify(self, **kw):
        changed = kw.pop("changed", {})
        return verify_answers(self.catalog, parse_answers(self.text(**changed)), **kw)


NETWORKS = [(1, "sigmoid", "cross_entropy"), (2, "sigmoid", "half_squared_error"),
            (3, "tanh", "half_squared_error"), (4, "sigmoid", "cross_entropy", (2, 3, 2)),
            (5, "tanh", "half_squared_error", (2, 2, 1))]


@pytest.fixture(scope="module", params=NETWORKS, ids=lambda p: f"{p[1]}-{p[2]}")
def student(request):
    return Student(random_network(*request.param))


def test_independent_answers_are_all_correct(student):
    result = student.verify()
    assert result.counts["correct"] == len(result.checks), [
        (c.key, c.given, c.expected) for c in result.checks if c.status != "correct"]
    assert result.ok and result.first_wrong is None


def names(spec):
    hidden, out = spec.layers[0], spec.layers[-1]
    return hidden, out


def injected_slips(s: Student):
    """(key, slipped value, the diagnosis expected), one slip of each kind."""
    spec, E, lr = s.spec, s.E, s.lr
    hidden, out = names(spec)
    w12, w21 = hidden.weight_names[0][1], hidden.weight_names[1][0]
    w11 = out.weight_names[0][0]
    a1, z1 = out.activation_names[0], out.pre_activation_names[0]
    ha, hz = hidden.activation_names[0], hidden.pre_activation_names[0]
    p = dict(spec.parameters)
    g = s.grad
    slips = [
        (f"d{E}/d{w11}", -g[w11], "opposite_sign"),
        (f"d{E}/d{w12}", g[w21], "index_swap"),
        (f"{w11}'", p[w11] + lr * g[w11], "update_plus"),
        (f"{w11}'", p[w11] - g[w11], "update_no_lr"),
        (f"{w12}'", -lr * g[w12], "update_no_old"),
        (f"{w12}'", p[w12], "update_not_applied"),
        (f"{a1}'", s.values[a1], "before_update"),
        (a1, s.after[a1], "after_update"),
        (hidden.activation_names[1], s.values[ha], "neighbour"),
    ]
    if out.activation == "sigmoid":
        slips.append((f"d{ha}/d{hz}", s.values[ha], "wrong_derivative"))  # σ(y), not σ'
        slips.append((f"d{a1}/d{z1}", s.values[z1] * (1 - s.values[z1]), "wrong_derivative"))
    else:
        slips.append((f"d{ha}/d{hz}", math.tanh(s.values[hz]), "wrong_derivative"))
        slips.append((f"d{a1}/d{z1}", 1 - s.values[z1] ** 2, "wrong_derivative"))
    targets = spec.examples[0].targets
    outs = [s.values[a] for a in out.activation_names]
    if spec.loss.kind == "cross_entropy":
        slips.append((E, -sum(t * math.log10(o) for t, o in zip(targets, outs)), "log10"))
        slips.append((f"{E}'", -sum(t * math.log10(s.after[a]) for t, a in
                                    zip(targets, out.activation_names)), "log10"))
    else:
        slips.append((E, sum((o - t) ** 2 for t, o in zip(targets, outs)),
                      "squared_scale_loss"))  # the ½ forgotten
        e1 = spec.loss.term_names[0]
        slips.append((f"d{e1}/d{a1}", 2 * (outs[0] - targets[0]),
                      "squared_scale_derivative"))  # the ½ of ½(o−t)² not cancelled
    return slips


def test_each_injected_slip_is_diagnosed(student):
    for key, value, code in injected_slips(student):
        result = student.verify(changed={key: value})
        bad = [c for c in result.checks if c.status != "correct"]
        assert [(c.key, c.status) for c in bad] == [(key, "wrong")], (key, code)
        assert bad[0].diagnosis.code == code, (key, value, bad[0].diagnosis)
        assert bad[0].first_wrong


def test_errors_carried_forward_are_consistent(student):
    spec, E = student.spec, student.E
    hidden, out = names(spec)
    a1, z1, e1 = out.activation_names[0], out.pre_activation_names[0], spec.loss.term_names[0]
    t1 = spec.examples[0].targets[0]
    def rd(value):  # the student computes from the numbers as written (7 decimals)
        return float(f"{value:.7f}")
    wrong_a1 = rd(student.values[a1] + 0.05)
    changed = {a1: wrong_a1}
    # The student's own loss and its derivative, from the wrong output.
    if spec.loss.kind == "cross_entropy":
        term, slope = -t1 * math.log(wrong_a1), -t1 / wrong_a1
    else:
        term, slope = 0.5 * (wrong_a1 - t1) ** 2, wrong_a1 - t1
    changed[e1] = term = rd(term)
    changed[E] = term + sum(rd(student.values[e]) for e in spec.loss.term_names[1:])
    changed[f"d{e1}/d{a1}"] = slope = rd(slope)
    # A gradient and its update from that derivative (the rest of the chain is right).
    w = out.weight_names[0][0]
    g = rd(slope * rd(student.answers[f"d{a1}/d{z1}"])
           * rd(student.values[hidden.activation_names[0]]))
    changed[f"d{E}/d{w}"] = g
    changed[f"{w}'"] = spec.parameters[w] - spec.learning_rate * g
    result = student.verify(changed=changed)
    status = {c.key: (c.status, c.diagnosis.code if c.diagnosis else None,
                      c.diagnosis.values.get("keys") if c.diagnosis else None)
              for c in result.checks if c.status != "correct"}
    assert status.pop(a1)[0] == "wrong"
    assert set(status) == {e1, E, f"d{e1}/d{a1}", f"d{E}/d{w}", f"{w}'"}
    for key, (verdict, code, keys) in status.items():
        assert (verdict, code) == ("consistent", "carried_forward"), key
    assert status[e1][2] == [a1] and status[f"{w}'"][2] == [f"d{E}/d{w}"]
    assert result.counts["wrong"] == 1 and not result.ok


def test_rounding_every_step_is_told_from_slips():
    """A 1-1-1 network worked by hand rounding every step to 2 decimals (computed here)."""
    data = {"inputs": {"names": ["x"], "values": [1.5]},
            "layers": [{"type": "dense", "units": 1, "activation": "sigmoid",
                        "weights": [[0.3]], "biases": [0.1],
                        "names": {"weights": "w", "biases": "b", "pre_activations": "y",
                                  "activations": "o"}}],
            "loss": {"type": "half_squared_error", "targets": [1.0],
                     "names": {"terms": "E_1", "total": "E", "targets": "t"}},
            "training": {"learning_rate": 0.5}}

    def r(v):
        return round(v, 2)
    y = r(0.3 * 1.5 + 0.1)
    o = r(1 / (1 + math.exp(-y)))
    de_dy = r(r(o - 1) * r(o * (1 - o)))
    g = r(de_dy * 1.5)  # -0.14 by hand; -0.127 exactly, -0.129 from y and o as written
    written = [("y", y), ("o", o), ("dE/dw", g), ("b'", 0.1 + 0.5 * de_dy)]  # + for −: a slip
    answers = parse_answers("\n".join(f'"{k}" = "{v:.2f}"' for k, v in written))
    exact = {c.key: (c.status, c.diagnosis and c.diagnosis.code)
             for c in verify_answers(data, answers).checks}
    by_hand = {c.key: (c.status, c.diagnosis and c.diagnosis.code)
               for c in verify_answers(data, answers, round_to=2).checks}
    assert exact["dE/dw"][0] == "wrong"
    assert by_hand["dE/dw"] == ("consistent", "rounding_mode")
    assert exact["b'"] == by_hand["b'"] == ("wrong", "update_plus")
    assert exact["o"] == by_hand["o"] == ("correct", None)


# ---------------------------------------------------------------------------
# The significant-digit rule


@pytest.mark.parametrize("text,true,ok", [
    ("0.874", 0.8738232, True), ("0.87", 0.8738232, True), ("0.875", 0.8738232, False),
    ("0.8738", 0.8738232, True), ("0.8739", 0.8738232, False), ("0,874", 0.8738232, True),
    ("−0.874", -0.8738232, True), ("-0.060", -0.0597793, True), ("-0.0600", -0.0597793, False),
    ("-0.06", -0.0597793, True), ("1", 1.0, True), ("1", 1.4, False), ("1", 1.00005, False),
    ("1.0", 1.04, True), ("0", 0.0, True), ("0", 1e-14, True), ("0", 0.003, False),
    ("0.0", 0.03, True), ("0.00", 0.03, False), ("0.47", 0.465, True), ("0.46", 0.465, True),
    ("4.48e-4", 0.00044848, True), ("4.48e-4", 0.0004486, False), ("2", 2.0, True),
    ("0.000000448", 0.000000448479, True), ("120", 120.4, False), ("120.", 120.4, True),
])
def test_significant_digit_rule(text, true, ok):
    assert Tolerance().agrees(answer(text), true) is ok


def test_explicit_tolerances():
    assert Tolerance(rel=0.01).agrees(answer("0.87"), 0.8738)
    assert not Tolerance(rel=0.001).agrees(answer("0.87"), 0.8738)
    assert Tolerance(abs=0.01).agrees(answer("1"), 1.005)
    assert not Tolerance(abs=0.001).agrees(answer("1"), 1.005)


def test_keys_forgive_obvious_variations():
    catalog = Catalog(as_spec(SPEC))
    for written, key in [("∂E_{tot}/∂wo_{1,1}", "dE_{tot}/dwo_{1,1}"),
                         ("dE_tot / dw_{o1,1}", "dE_{tot}/dwo_{1,1}"),
                         ("wh'_{1,1}", "wh_{1,1}'"), ("out_{o_1}", "out_{o1}"),
                         ("dEtot/dwh11", "dE_{tot}/dwh_{1,1}"), ("b_{h2}", "bh_2"),
                         ("eta", "η"), ("dE/dbo_1", "dE_{tot}/dbo_1"),
                         ("E_{tot}'", "E_{tot}'"), ("dout_{h2}/dy_{h2}", "dout_{h2}/dy_{h2}")]:
        assert catalog.resolve(written) == key, written
    assert catalog.resolve("dout_{o3}/dy_{o3}") is None
    assert catalog.resolve("dx_1/dE_{tot}") is None  # upside down: no such derivative


def test_keys_listing_has_every_key_meaning_and_formula():
    text = keys_listing(SPEC)
    lines = {line.split("\t")[0]: line.split("\t") for line in text.splitlines()}
    assert len(lines) == len(Catalog(as_spec(SPEC)).quantities)
    # mathematics, not code: ln, ·, −, fractions, ∂; the textbook form of σ′ too
    assert lines["wo_{1,1}'"][2] == "wo_{1,1}' = wo_{1,1} − η·(∂E_{tot}/∂wo_{1,1})"
    assert lines["E_{o1}"][2] == "E_{o1} = −v₁·ln(out_{o1})"
    assert lines["dout_{o1}/dy_{o1}"][2] == ("dout_{o1}/dy_{o1} = e^(−y_{o1})/(1 + e^(−y_{o1}))² "
                                            "= out_{o1}·(1 − out_{o1})")
    assert "log" not in text and "*" not in text and "exp(" not in text
    assert "gradient" in lines["dE_{tot}/dwh_{1,1}"][1]
    assert "0.874" not in text  # the listing gives no answers away


# ---------------------------------------------------------------------------
# Answer formats, unknown keys, the command line

SMALL = {"out_{o1}": "0.874", "E_{tot}": "0.05858", "dE_{tot}/dwo_{1,1}": "-0.0775",
         "wo_{1,1}'": "0.1000775"}


def test_formats_give_the_same_verdicts(tmp_path):
    toml = "\n".join(f'"{k}" = {v}' for k, v in SMALL.items())
    as_json = "{" + ", ".join(f'"{k}": {v}' for k, v in SMALL.items()) + "}"
    csv = "key,value\n" + "\n".join(f'"{k}",{v}' if "," in k else f"{k},{v}"
                                     for k, v in list(SMALL.items())[:3])
    csv += "\nwo_{1,1}',0.1000775\n"  # a key's comma unquoted: forgiven
    # A filled-in sheet as sheet.py prints it: data tables, LaTeX quantities, blanks.
    sheet = "\n".join([
        "# Exercise 1", "", "| Parameters | value |  |", "| --- | --- | --- |",
        "| $wo_{1,1}$ | $0.1$ |  |", "", "Learning rate: $\\eta = 0.001$", "",
        "Compute the output. $E = -\\sum t \\ln o$ = a formula, not an answer", "",
        "| Quantity | Your answer |", "| --- | --- |",
        "| $out_{o1}$ | 0.874 |", "| $E_{tot}$ | 0,05858 |",
        "| $\\frac{\\partial E_{tot}}{\\partial wo_{1,1}}$ | -0.0775 |",
        "| $y_{o1}$ |   |", "", "- `wo_{1,1}'` = 0.1000775", "- `y_{o2}` = ____", ""])
    seen = []
    for name, text in [("a.toml", toml), ("a.json", as_json), ("a.csv", csv), ("a.md", sheet)]:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        result = verify_answers(SPEC, str(path))
        seen.append([(c.key, c.given.replace(",", "."), c.status) for c in result.checks
                     if c.key not in ("η", "wo_{1,1}")])
        if name == "a.md":
            assert [c.status for c in result.checks[:2]] == ["correct", "correct"]
    assert all(s == seen[0] for s in seen), seen
    assert [s for _, _, s in seen[0]] == ["correct", "wrong", "correct", "correct"]
    assert seen[0][2][1] == "-0.0775"  # digits kept as written


def test_bad_answers_are_spec_errors(tmp_path):
    for name, text, where in [("a.toml", '"E_{tot}" = "abc"', "E_{tot}"),
                              ("b.toml", 'x = [1, 2]', "x"), ("c.toml", "= 3", ""),
                              ("d.csv", "only_one_column\n", "line 1"),
                              ("e.json", "[1, 2]", "[0]"), ("f.txt", "", ""),
                              ("g.yaml", "a: 1", "")]:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        with pytest.raises(SpecError) as err:
            verify_answers(SPEC, str(path))
        assert str(path) in str(err.value) and where in str(err.value)


def test_unknown_keys_are_reported_and_the_check_goes_on():
    result = verify_answers(SPEC, parse_answers('"out_{o3}" = 0.5\n"out_{o1}" = 0.874\n'
                                                '"wo_{1,1}\'" = 0.1000775\n"zzz" = 1'))
    status = [(c.key, c.status) for c in result.checks]
    assert status == [("out_{o3}", "unknown_key"), ("out_{o1}", "correct"),
                      ("wo_{1,1}'", "correct"), ("zzz", "unknown_key")]
    assert result.checks[0].diagnosis.values["key"] in ("out_{o1}", "out_{o2}")
    assert not result.ok


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_cli_exit_statuses_and_formats(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('"out_{o1}" = 0.874\n"E_{tot}" = 0.1349\n', encoding="utf-8")
    assert run("verify", SPEC, str(good)).exit_code == 0
    result = run("verify", SPEC, COURSE, "--format", "json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert {tuple(sorted(d)) for d in data} >= {tuple(sorted(
        ["key", "given", "expected", "status", "diagnosis", "diagnosis_code", "place",
         "written_key", "given_text", "formula", "from_your_values"]))}
    assert {d["status"] for d in data} == {"correct", "wrong", "consistent"}
    text = run("verify", SPEC, COURSE, "--lang", "en").output  # the spec says lang = "fr"
    assert "First wrong step: [slide 1] E_{tot} = 0.05858" in text
    assert "log base 10 instead of the natural log" in text
    assert "formula: out_{h1}·wo_{1,1} + out_{h2}·wo_{1,2} + bo₁" in text  # mathematics
    french = run("verify", SPEC, COURSE).output  # the spec's language
    assert "Première étape fausse : [slide 1] E_{tot} = 0.05858" in french
    md = tmp_path / "report.md"
    assert run("verify", SPEC, COURSE, "--format", "md", "--lang", "fr",
               "-o", str(md)).exit_code == 1
    assert "Première étape fausse" in md.read_text(encoding="utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text('"out_{o1}" = "zero point eight"', encoding="utf-8")
    for args in [("verify", SPEC, str(bad)), ("verify", SPEC, str(tmp_path / "none.toml")),
                 ("verify", SPEC, str(good), "--rel", "0.1", "--abs", "0.1"),
                 ("verify", "nope.toml", str(good))]:
        result = run(*args)
        assert result.exit_code == 2, args
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert run("verify", SPEC, str(good), "--rel", "0.5").exit_code == 0
    listing = run("keys", SPEC)
    assert listing.exit_code == 0 and "dE_{tot}/dwh_{2,3}\t" in listing.output


def test_same_input_same_report():
    first = run("verify", SPEC, COURSE, "--format", "md").output
    assert first == run("verify", SPEC, COURSE, "--format", "md").output


# ---------------------------------------------------------------------------
# Several examples in the step (a mini-batch), sheets with several examples

MINIBATCH = "examples/mlp_minibatch.toml"


def test_several_examples_keys_are_the_step_and_each_example():
    """E and dE/dθ are the step's (the mean over the first mini-batch, as the worked
    solution and --format json), E^{(k)} and dE^{(k)}/dθ each example's; checked against
    finite differences of an independent NumPy loss."""
    spec = as_spec(MINIBATCH)
    net = Network(MINIBATCH)
    first = [0, 1]  # batch_size = 2
    catalog = Catalog(spec)
    q = {k: v.value for k, v in catalog.quantities.items()}
    params = dict(spec.parameters)
    assert q["E"] == pytest.approx(net.batch_loss(params, first), rel=1e-12)
    for k in first:
        alone = [k]
        assert q[f"E^{{({k + 1})}}"] == pytest.approx(net.batch_loss(params, alone), rel=1e-12)
        for name, g in net.numeric_gradients(params, alone).items():
            assert q[f"dE^{{({k + 1})}}/d{name}"] == pytest.approx(g, rel=1e-6, abs=1e-9)
    for name, g in net.numeric_gradients(params, first).items():
        assert q[f"dE/d{name}"] == pytest.approx(g, rel=1e-6, abs=1e-9)
        assert q[f"{name}'"] == pytest.approx(params[name] - 0.5 * g, rel=1e-6, abs=1e-9)
    assert "E^{(3)}" not in q  # the first step uses the first mini-batch only
    assert catalog.resolve("dE^{(2)}_/dw_{1,1}") == "dE^{(2)}/dw_{1,1}"


def test_several_examples_carry_an_example_slip_into_the_step():
    spec = as_spec(MINIBATCH)
    q = {k: v.value for k, v in Catalog(spec).quantities.items()}
    slipped = -q["dE^{(2)}/dw_{1,1}"]  # example 2's gradient with the wrong sign
    step = (q["dE^{(1)}/dw_{1,1}"] + slipped) / 2
    answers = {"E^{(1)}": q["E^{(1)}"], "E^{(2)}": q["E^{(2)}"], "E": q["E"],
               "dE^{(1)}/dw_{1,1}": q["dE^{(1)}/dw_{1,1}"], "dE^{(2)}/dw_{1,1}": slipped,
               "dE/dw_{1,1}": step, "w_{1,1}'": spec.parameters["w_{1,1}"] - 0.5 * step}
    text = "\n".join(f'"{k}" = "{v:.5g}"' for k, v in answers.items())
    result = verify_answers(spec, parse_answers(text))
    verdicts = {c.key: (c.status, c.diagnosis.code if c.diagnosis else None)
                for c in result.checks}
    assert verdicts["dE^{(2)}/dw_{1,1}"] == ("wrong", "opposite_sign")
    assert verdicts["dE/dw_{1,1}"] == ("consistent", "carried_forward")
    assert verdicts["w_{1,1}'"] == ("consistent", "carried_forward")
    assert [v for k, v in verdicts.items() if k.startswith("E")] == [("correct", None)] * 3


def test_a_filled_sheet_with_several_examples_is_verified_against_its_spec(tmp_path):
    """A sheet whose variants draw two examples: the student's filled-in sheet checked
    against spec_NN.json, every answer right but one."""
    from backprop_explain.sheet import write_sheets
    from backprop_explain.sheet_spec import template_from_dict
    template = {
        "inputs": {"names": ["x_1", "x_2"], "size": 2},
        "examples": [{"inputs": {"uniform": [-1, 1]}, "targets": [1, 0]},
                     {"inputs": {"uniform": [-1, 1]}, "targets": [0, 1]}],
        "layers": [{"type": "dense", "units": 2, "activation": "sigmoid",
                    "weights": {"uniform": [-1, 1], "decimals": 1},
                    "biases": {"uniform": [-1, 1], "decimals": 1}}],
        "loss": {"type": "half_squared_error"},
        "training": {"learning_rate": 0.5},
        "exercise": {"ask": ["forward", "loss", "gradients", "update", "loss_after"]}}
    write_sheets(template_from_dict(template), tmp_path, variants=2, seed=3, fmt="md")
    truth = json.loads((tmp_path / "answers.json").read_text())["variants"][1]["answers"]
    wrong_key = "dE/dw^{(1)}_{1,2}"
    answers = {k: (v * 10 if k == wrong_key else v) for k, v in truth.items()}
    filled = tmp_path / "filled.md"
    filled.write_text("\n".join(f"- `{k}` = {v:.4g}" for k, v in answers.items()) + "\n")
    result = verify_answers(str(tmp_path / "spec_2.json"), str(filled))
    verdicts = {c.key: (c.status, c.diagnosis.code if c.diagnosis else None)
                for c in result.checks}
    assert verdicts.pop(wrong_key) == ("wrong", "power_of_ten")
    assert {v for v in verdicts.values()} == {("correct", None)}
    assert len(verdicts) == len(truth) - 1
    assert "E" in verdicts and "E'" in verdicts  # the step's loss before and after


@pytest.mark.parametrize("name, text", [
    (r"\varepsilon_{12}", "ε₁₂"), (r"\epsilon_1", "ε₁"), (r"\eta", "η"), (r"\Theta_3", "Θ₃"),
    (r"\beta \gamma", "βγ"), (r"\etaX", r"\etaX"), ("out_{o1}", "out_{o1}"),
    ("w_{1,2}", "w_{1,2}"), ("x_7", "x₇"), (r"\phi_{10}'", "φ₁₀'"),
])
def test_text_name_writes_greek_commands_and_digit_indices_as_characters(name, text):
    from backprop_explain.notation import text_name
    assert text_name(name) == text
