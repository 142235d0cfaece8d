"""Hand calculations at calculator precision: a written number stands for every value that
rounds to it, and verify carries those intervals through the same formulas.

Independent of the verifier: the students of tests/students.py work each step in plain
Python from the textbook formulas; Mazur's 2-2-2 network is checked against his published
figures; the interval arithmetic against points drawn inside the intervals.
"""

from __future__ import annotations

import math
import random

import pytest
import sympy as sp

from backprop_explain.activations import ACTIVATIONS
from backprop_explain.answers import parse_answers
from backprop_explain.api import as_spec
from backprop_explain.intervals import Interval, compile_interval
from backprop_explain.verify import Catalog, verify_answers

from students import SLIPS, Student, answers_text, plant_sites, random_spec, sheet_keys

# Matt Mazur, "A Step by Step Backpropagation Example" (2015): w1…w8, one bias per layer,
# biases not updated, ½Σ(target − out)², η = 0.5.
MAZUR = {
    "title": "Mazur's 2-2-2",
    "inputs": {"names": ["i_1", "i_2"], "values": [0.05, 0.10]},
    "layers": [
        {"type": "dense", "activation": "sigmoid", "weights": [[0.15, 0.20], [0.25, 0.30]],
         "biases": [0.35, 0.35],
         "names": {"weights": [["w_1", "w_2"], ["w_3", "w_4"]], "biases": "b_1",
                   "pre_activations": "net_{h#j}", "activations": "out_{h#j}"}},
        {"type": "dense", "activation": "sigmoid", "weights": [[0.40, 0.45], [0.50, 0.55]],
         "biases": [0.60, 0.60],
         "names": {"weights": [["w_5", "w_6"], ["w_7", "w_8"]], "biases": "b_2",
                   "pre_activations": "net_{o#j}", "activations": "out_{o#j}"}}],
    "loss": {"type": "half_squared_error", "targets": [0.01, 0.99],
             "names": {"terms": "E_{o#j}", "total": "E_{total}", "targets": "target_{o#j}"}},
    "training": {"learning_rate": 0.5, "frozen": ["b_1", "b_2"]},
}


def sigma(y):
    return 1 / (1 + math.exp(-y))


def statuses(result):
    return {c.key: (c.status, c.diagnosis.code if c.diagnosis else None) for c in result.checks}


def test_mazur_published_figures():
    q = {k: v.value for k, v in Catalog(as_spec(MAZUR)).quantities.items()}
    for key, published in [("out_{h1}", 0.593269992), ("out_{o1}", 0.75136507),
                           ("out_{o2}", 0.772928465), ("E_{total}", 0.298371109),
                           ("dE_{total}/dw_5", 0.082167041), ("w_5'", 0.35891648),
                           ("w_6'", 0.408666186), ("w_7'", 0.511301270), ("w_8'", 0.561370121),
                           ("w_1'", 0.149780716), ("w_2'", 0.19956143), ("w_3'", 0.24975114),
                           ("w_4'", 0.29950229)]:
        assert q[key] == pytest.approx(published, abs=5e-9), key


def test_a_value_carried_forward_at_calculator_precision_is_consistent():
    """The issue's case: w_5' = 0.4411 (+ instead of −); the student keeps the calculator's
    net_{o1}' = 1.10560 and writes out_{o1}' = σ(1.10560) = 0.75131 as 0.7513, while σ of
    the written 1.106 is 0.75138: the digits written allow both."""
    spec = as_spec(MAZUR)
    student = Student(spec, sheet_keys(spec), 4, "calculator", "update_plus", "w_5'")
    written = student.written
    assert (written["w_5'"], written["net_{o1}'"], written["out_{o1}'"]) == (
        "0.4411", "1.106", "0.7513")
    assert f"{sigma(1.106):.4f}" == "0.7514"  # the number as written gives another digit
    kept = student.held["net_{o1}'"]  # what the calculator holds
    assert f"{kept:.5f}" == "1.10560" and f"{sigma(kept):.5f}" == "0.75131"
    result = verify_answers(spec, parse_answers(answers_text(written)))
    verdicts = statuses(result)
    assert verdicts["w_5'"] == ("wrong", "update_plus")
    for key in ("net_{o1}'", "out_{o1}'", "E_{o1}'", "E_{total}'"):
        assert verdicts[key] == ("consistent", "carried_forward"), key
    assert [c.key for c in result.checks if c.status == "wrong"] == ["w_5'"]


NETWORKS = [(seed, activation, loss) for seed, (activation, loss) in enumerate(
    [("sigmoid", "cross_entropy"), ("tanh", "half_squared_error"),
     ("sigmoid", "half_squared_error"), ("sigmoid", "cross_entropy"),
     ("tanh", "half_squared_error"), ("sigmoid", "half_squared_error")])]


def applicable(slip, activation, loss):
    return not ((slip == "log10" and loss != "cross_entropy")
                or (slip == "half_dropped" and loss == "cross_entropy")
                or (slip == "sigma_for_derivative" and activation != "sigmoid"))


@pytest.mark.parametrize("seed, activation, loss", NETWORKS)
@pytest.mark.parametrize("mode", ["calculator", "rounded"])
def test_simulated_students_no_false_wrong_and_every_slip_found(seed, activation, loss, mode):
    spec = random_spec(seed, activation, loss, sizes=(3, 2, 2))
    keys = sheet_keys(spec)
    catalog = Catalog(spec)
    honest = Student(spec, keys, 4, mode)
    result = verify_answers(catalog, parse_answers(answers_text(honest.written)))
    assert result.ok, [(c.key, c.given, c.expected) for c in result.checks
                       if c.status == "wrong"]
    if mode == "calculator":  # every value is the truth rounded: all correct
        assert result.counts["correct"] == len(keys)
    found = 0
    for slip, code in SLIPS.items():
        if not applicable(slip, activation, loss):
            continue
        for site in plant_sites(spec, keys, slip):
            student = Student(spec, keys, 4, mode, slip, site)
            if not student.distinct:  # the slip changes (almost) nothing here
                continue
            result = verify_answers(catalog, parse_answers(answers_text(student.written)))
            wrong = [c for c in result.checks if c.status == "wrong"]
            # No value the slip did not touch is wrong; the slip is found and named.
            assert {c.key for c in wrong} <= student.affected, (slip, site)
            assert wrong, (slip, site)
            expected = {code, "wrong_derivative_everywhere"} if code == "wrong_derivative" \
                else {code}
            assert {c.diagnosis.code for c in wrong} <= expected, (
                slip, site, [(c.key, c.given, c.diagnosis.code) for c in wrong])
            if site is not None:
                assert wrong[0].key == site
            found += 1
    assert found >= 10


def test_rounding_every_written_value_is_consistent_not_wrong():
    """A student who goes on from each rounded number: drift, never a wrong value, also
    with 3 significant digits and a wider network."""
    for seed in range(3):
        spec = random_spec(100 + seed, "sigmoid", "cross_entropy", sizes=(4, 3, 2))
        keys = sheet_keys(spec)
        student = Student(spec, keys, 3, "rounded")
        result = verify_answers(spec, parse_answers(answers_text(student.written)))
        assert result.ok, [(c.key, c.given, c.expected) for c in result.checks
                           if c.status == "wrong"]
        assert result.counts["consistent"] > 0  # drift happened and was recognised


# ---------------------------------------------------------------------------
# The interval arithmetic itself

def _points(interval: Interval, rng, count=6):
    return [interval.lo, interval.hi] + [rng.uniform(interval.lo, interval.hi)
                                         for _ in range(count)]


@pytest.mark.parametrize("spec", ["examples/mlp_tanh_softmax.toml",
                                  "examples/mlp_relu_softmax_shared.toml",
                                  "examples/cnn_2ch_stride2_maxpool.toml",
                                  "examples/mlp_3_2_2_cross_entropy.toml"])
def test_every_formula_holds_its_values_inside_the_interval(spec):
    """Each quantity's formula over intervals around its inputs' values contains the
    formula's value at points drawn inside them (the bounds included)."""
    catalog = Catalog(as_spec(spec))
    rng = random.Random(0)
    checked = 0
    for quantity in list(catalog.quantities.values())[:400]:
        if quantity.formula is None or not quantity.deps:
            continue
        values = [catalog.quantities[d].value for d in quantity.deps]
        boxes = [Interval(v - 1e-3 * max(1, abs(v)), v + 1e-3 * max(1, abs(v))) for v in values]
        bound = catalog._interval_function(quantity.formula, quantity.deps)
        point = catalog._function(quantity.formula, quantity.deps)
        result = bound(*boxes)
        if result is None:
            continue
        for _ in range(4):
            sample = [rng.choice(_points(b, rng)) for b in boxes]
            try:
                value = float(point(*sample))
            except (ValueError, ZeroDivisionError, OverflowError):
                continue
            assert result.lo <= value <= result.hi, (quantity.key, sample, result, value)
        checked += 1
    assert checked > 20


def test_interval_operations():
    x = sp.Symbol("x")
    relu = compile_interval(sp.Piecewise((x, x > 0), (0, True)), [x])
    assert relu(Interval(1.0, 2.0)) == Interval(1.0, 2.0)
    assert relu(Interval(-2.0, -1.0)) == Interval(0.0, 0.0)
    undecided = relu(Interval(-1.0, 2.0))
    assert undecided.lo <= 0 and undecided.hi >= 2  # both branches may apply
    log = compile_interval(sp.log(x), [x])
    assert log(Interval(-2.0, -1.0)) is None  # no value at all
    assert log(Interval(0.0, 1.0)).lo == -math.inf
    inverse = compile_interval(1 / x, [x])
    assert inverse(Interval(-1.0, 1.0)) == Interval(-math.inf, math.inf)
    square = compile_interval(x ** 2, [x])
    assert square(Interval(-1.0, 2.0)).lo == 0.0 and square(Interval(-1.0, 2.0)).hi >= 4.0
    third = compile_interval(sp.Rational(1, 3) * x, [x])(3.0)
    assert third.lo < 1.0 < third.hi  # 1/3 is no float: widened, never wrong
    written = Interval.around(0.4411, 0.00005)
    assert written.contains(0.44105) and written.contains(0.44115)


@pytest.mark.parametrize("name", sorted(n for n in ACTIVATIONS
                                         if ACTIVATIONS[n].inverse(sp.Symbol("o")) is not None))
def test_an_activations_inverse_gives_back_its_input(name):
    entry = ACTIVATIONS[name]
    y, out = sp.Symbol("y", real=True), sp.Symbol("o")
    back = sp.lambdify(out, entry.inverse(out), modules="math")
    forward = sp.lambdify(y, entry.unit(y, 0.01), modules="math")
    for value in (-2.5, -0.3, 0.0, 0.7, 3.0):
        assert back(forward(value)) == pytest.approx(value, abs=1e-12)
    assert name in ("sigmoid", "tanh")


def test_adam_slips_are_replayed_from_the_students_numbers():
    """An optimizer whose slips are written for floats (Adam's square root) still gets
    the student's own numbers; a wrong update is diagnosed, not a crash."""
    spec = as_spec({"inputs": {"values": [0.5, -0.2]},
                    "layers": [{"type": "dense", "units": 2, "activation": "sigmoid",
                                "weights": [[0.1, 0.2], [0.3, -0.4]], "biases": [0.1, 0.1]}],
                    "loss": {"type": "half_squared_error", "targets": [1, 0]},
                    "training": {"learning_rate": 0.1, "optimizer": "adam"}})
    w = "w^{(1)}_{1,1}"
    catalog = Catalog(spec)
    g = catalog.quantities[f"dE/d{w}"].value
    # bias correction forgotten, by hand: m = 0.1·g, v = 0.001·g², θ − η·m/(√v + ε)
    forgot = 0.1 - 0.1 * (0.1 * g) / (math.sqrt(0.001 * g * g) + 1e-8)
    text = f'"dE/d{w}" = "{g:.4g}"\n"{w}\'" = "{forgot:.5g}"\n'
    verdicts = statuses(verify_answers(catalog, parse_answers(text)))
    assert verdicts[f"dE/d{w}"] == ("correct", None)
    assert verdicts[f"{w}'"] == ("wrong", "no_bias_correction")
