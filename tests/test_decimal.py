"""The spec's numbers are read as written, as on a blackboard.

0.1 + 0.2 − 0.3 is 0 when the numbers are the decimals the spec writes, and 2.8e-17 when
they are read as binary doubles. The worked solution is the blackboard's: the sum is 0,
ReLU's derivative there is 0 (PyTorch's convention at 0), LeakyReLU's its slope. Checked
against exact rational arithmetic (fractions.Fraction of the decimals written), which
shares nothing with the engine's mpmath evaluation.
"""

from __future__ import annotations

import random
from decimal import Decimal
from fractions import Fraction

import pytest

from backprop_explain import api

SPEC = """
title = "ReLU at the kink"
[inputs]
values = [{x1}, {x2}]
[[layers]]
type = "dense"
units = 1
activation = "{activation}"
weights = [[{w1}, {w2}]]
biases = [{b}]
[[layers]]
type = "dense"
units = 1
activation = "identity"
weights = [[2]]
biases = [0.5]
[loss]
type = "half_squared_error"
targets = [1]
[training]
learning_rate = 0.1
"""


def solve(tmp_path, activation="relu", **numbers):
    path = tmp_path / "spec.toml"
    path.write_text(SPEC.format(activation=activation, **numbers), encoding="utf-8")
    return api.solve(path)


def exact_sum(x1, x2, w1, w2, b) -> Fraction:
    return Fraction(x1) * Fraction(w1) + Fraction(x2) * Fraction(w2) + Fraction(b)


def test_a_sum_the_decimals_cancel_is_zero_and_relu_takes_its_convention(tmp_path):
    solution = solve(tmp_path, x1="0.1", x2="0.2", w1="1", w2="1", b="-0.3")
    assert exact_sum("0.1", "0.2", "1", "1", "-0.3") == 0
    values = solution.example.values
    assert values["z^{(1)}_{1}"] == 0.0 and values["a^{(1)}_{1}"] == 0.0
    assert values["E"] == 0.125  # ½(1 − 0.5)², exactly
    gradients = solution.example.gradients
    assert gradients["w^{(1)}_{1,1}"] == gradients["b^{(1)}_{1}"] == 0.0  # ReLU'(0) = 0
    assert gradients["b^{(2)}_{1}"] == -0.5
    text = solution.markdown(lang="en")
    assert r"0.1 \cdot 1 + 0.2 \cdot 1 + \left(-0.3\right) = 0 \\" in text
    assert r"\mathbf{1}_{0 > 0} = 0" in text
    assert "10^{-17}" not in text


def test_leaky_relu_at_the_kink_takes_its_slope(tmp_path):
    solution = solve(tmp_path, "leaky_relu", x1="0.7", x2="0.3", w1="0.3", w2="-0.7", b="0")
    assert exact_sum("0.7", "0.3", "0.3", "-0.7", "0") == 0
    assert solution.example.values["z^{(1)}_{1}"] == 0.0
    # ∂E/∂b⁽¹⁾ = ∂E/∂a · slope = (0.5 − 1)·2 · 0.01
    assert solution.example.gradients["b^{(1)}_{1}"] == pytest.approx(-0.01, rel=1e-15)


@pytest.mark.parametrize("seed", range(6))
def test_pre_activations_are_the_exact_decimal_sums(tmp_path, seed):
    """Random decimals with one or two places, the bias chosen half the time so that the
    sum cancels: the engine's pre-activation is the exact rational sum rounded to float64,
    0 when it cancels, and ReLU's gradient follows its sign."""
    rng = random.Random(seed)

    def decimal():
        return f"{rng.choice([-1, 1]) * rng.randint(1, 99) / 10 ** rng.randint(1, 2):g}"

    cancelled = 0
    for case in range(4):
        x1, x2, w1, w2 = (decimal() for _ in range(4))
        products = Decimal(x1) * Decimal(w1) + Decimal(x2) * Decimal(w2)  # exact
        b = str(-products) if case % 2 == 0 else decimal()
        exact = exact_sum(x1, x2, w1, w2, b)
        cancelled += exact == 0
        solution = solve(tmp_path, x1=x1, x2=x2, w1=w1, w2=w2, b=b)
        z = solution.example.values["z^{(1)}_{1}"]
        assert z == float(exact), (x1, x2, w1, w2, b)
        a = max(exact, Fraction(0))
        grad_a = (2 * a + Fraction("0.5") - 1) * 2  # ∂E/∂a for E = ½(2a + 0.5 − 1)²
        expected = float(grad_a * Fraction(x1)) if exact > 0 else 0.0
        assert solution.example.gradients["w^{(1)}_{1,1}"] == pytest.approx(expected,
                                                                           rel=1e-15, abs=0)
    assert cancelled == 2


def test_a_true_value_near_40_digits_noise_is_kept(tmp_path):
    """A pre-activation of 10⁻³⁵ is within the noise of 40 digits of its inputs (1 and
    10⁻³⁵·…): it is 0 at 40 digits, 10⁻³⁵ at 80, and the doubling precisions go on until
    two agree, so the value and ReLU's side are the true ones."""
    solution = solve(tmp_path, x1="1e-35", x2="0", w1="1", w2="1", b="0")
    assert solution.example.values["z^{(1)}_{1}"] == 1e-35
    assert solution.example.gradients["b^{(1)}_{1}"] != 0.0  # ReLU' = 1: z > 0
