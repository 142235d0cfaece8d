"""Checks a layer kind's tests share: a solution against the plain-NumPy reference
(tests/reference.py: its loss and central finite differences of it), and the fast path
against the symbolic engine on the same spec."""

from __future__ import annotations

import numpy as np
import pytest

from backprop_explain.fastpath import compile_network


def assert_matches_finite_differences(spec, solution, net) -> None:
    """The loss to 1e-12 and every parameter's gradient to central finite differences of
    the reference's loss (rel 1e-5, abs 1e-8)."""
    assert solution.loss == pytest.approx(net.batch_loss(net.parameters), rel=1e-12)
    expected = net.numeric_gradients(net.parameters)
    assert expected.keys() == spec.parameters.keys()
    for parameter, value in expected.items():
        assert solution.gradients[parameter] == pytest.approx(value, rel=1e-5, abs=1e-8), \
            parameter


def fast_path_agreeing(spec, solution):
    """The fast path's result on the spec's examples, once its loss and every gradient
    agree with the symbolic solution to 1e-10."""
    result = compile_network(spec).run(
        [np.reshape(e.inputs, spec.input_shape) for e in spec.examples],
        [e.targets for e in spec.examples])
    assert float(result.loss) == pytest.approx(solution.loss, rel=1e-10, abs=1e-12)
    for parameter in spec.parameters:
        assert float(result.gradients[parameter]) == pytest.approx(
            solution.gradients[parameter], rel=1e-10, abs=1e-12), parameter
    return result
