"""The textbook forms of the derivatives, proved equal to SymPy's derivatives.

Every activation's and loss's textbook forms (σ(y)(1 − σ(y)) = out(1 − out), 1 − tanh²,
the ReLU indicator, the softmax Jacobian out_j(δ_jk − out_k), (out − t)/(out(1 − out)),
t_j(softmax_k(z) − δ_jk)) and the shortcuts through the output activation (softmax +
cross-entropy, sigmoid + binary cross-entropy: out_k − t_k) are compared with SymPy's
derivative of the entry's own expression symbolically: the difference simplifies to 0
once the outputs are replaced by the activation of the pre-activations and the functions
the forms are written with by SymPy's (no sampling).
"""

from __future__ import annotations

import pytest
import sympy as sp

from backprop_explain.activations import ACTIVATIONS, Indicator, SigmoidOf, SoftmaxOf
from backprop_explain.losses import LOSSES

UNITS = 3
SLOPE = sp.Rational(1, 20)


def _plain(expr: sp.Expr) -> sp.Expr:
    """The functions of the textbook forms as SymPy's own."""
    return (expr.rewrite(sp.exp).replace(SigmoidOf, lambda y: 1 / (1 + sp.exp(-y)))
            .replace(Indicator, lambda c: sp.Piecewise((1, c), (0, True)))
            .replace(SoftmaxOf, lambda k, *zs: sp.exp(zs[int(k) - 1])
                     / sp.Add(*[sp.exp(z) for z in zs])))


def _equal(a: sp.Expr, b: sp.Expr) -> bool:
    difference = sp.simplify(_plain(a) - _plain(b))
    if difference != 0:
        difference = sp.simplify(sp.piecewise_fold(difference).rewrite(sp.exp))
    return difference == 0


def test_a_wrong_form_is_told_apart():
    y = sp.Symbol("y", real=True)
    right = sp.diff(1 / (1 + sp.exp(-y)), y)
    assert _equal(SigmoidOf(y) * (1 - SigmoidOf(y)), right)
    assert not _equal(SigmoidOf(y) * (1 + SigmoidOf(y)), right)
    assert not _equal(Indicator(y >= -1), sp.Piecewise((1, y > 0), (0, True)))


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_textbook_forms_equal_sympy(name):
    entry = ACTIVATIONS[name]
    ys = list(sp.symbols(f"y1:{UNITS + 1}", real=True))
    outs = list(sp.symbols(f"o1:{UNITS + 1}", real=True))
    expressions = [entry.expression(ys, j, SLOPE) for j in range(UNITS)]
    forms = 0
    for j in range(UNITS):
        for k in range(UNITS):
            if entry.elementwise and j != k:
                continue
            derivative = sp.diff(expressions[j], ys[k])
            for form in entry.textbook(ys, outs, j, k, SLOPE):
                in_ys = form.subs(dict(zip(outs, expressions)))
                assert _equal(in_ys, derivative), (name, j, k, form)
                forms += 1
    assert forms or name == "identity"


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_textbook_forms_equal_sympy(name):
    entry = LOSSES[name]
    outs = list(sp.symbols(f"o1:{UNITS + 1}", positive=True))
    targets = list(sp.symbols(f"t1:{UNITS + 1}", real=True))
    terms = entry.terms(outs, targets)
    for j, term in enumerate(terms):
        definition = entry.term_textbook(outs, targets, j)
        if definition is not None:
            assert _equal(sp.expand_log(_plain(definition), force=True), term)
        for k in range(UNITS):
            for form in entry.textbook(outs, targets, j, k):
                assert _equal(form, sp.diff(term, outs[k])), (name, j, k, form)


SHORTCUTS = [(loss, activation) for loss in sorted(LOSSES) for activation in sorted(ACTIVATIONS)
             if LOSSES[loss].delta_textbook(activation, list(sp.symbols("o1:3")),
                                            list(sp.symbols("t1:3")), 0, True) is not None]


def test_the_course_shortcuts_are_there():
    assert {("cross_entropy", "softmax"), ("binary_cross_entropy", "sigmoid"),
            ("softmax_cross_entropy", "identity")} <= set(SHORTCUTS)


@pytest.mark.parametrize("loss, activation", SHORTCUTS)
@pytest.mark.parametrize("sum_to_one", [True, False])
def test_shortcuts_through_the_output_activation_equal_sympy(loss, activation, sum_to_one):
    """∂(Σ_j E_j)/∂y_k with out = f(y), against the shortcut (with Σ t = 1 put in by
    writing the last target as 1 − the others, when the shortcut assumes it)."""
    entry, act = LOSSES[loss], ACTIVATIONS[activation]
    ys = list(sp.symbols(f"y1:{UNITS + 1}", real=True))
    outs = list(sp.symbols(f"o1:{UNITS + 1}", real=True))
    targets = list(sp.symbols(f"t1:{UNITS + 1}", real=True))
    expressions = [act.expression(ys, j, SLOPE) for j in range(UNITS)]
    total = sp.Add(*entry.terms(expressions, targets))
    last = {targets[-1]: 1 - sp.Add(*targets[:-1])} if sum_to_one else {}
    for k in range(UNITS):
        shortcut = entry.delta_textbook(activation, outs, targets, k, sum_to_one)
        assert shortcut is not None
        in_ys = shortcut.subs(dict(zip(outs, expressions)))
        assert _equal(in_ys.subs(last), sp.diff(total, ys[k]).subs(last)), (loss, k)
