"""JSON output: every number of a solution under the spec's names, full precision."""

from __future__ import annotations

import math

from .derivation import Solution


def solution_to_data(solution: Solution) -> dict:
    spec = solution.spec
    first = solution.example
    data = {
        "title": spec.title,
        "loss_name": spec.loss.total_name,
        "forward": {s.name: s.value for s in first.forward},
        "loss": solution.loss,
        "gradients": dict(solution.gradients),
        "updated": {u.parameter: u.new for u in solution.updates},
        "frozen": sorted(spec.frozen),
        "learning_rate": spec.learning_rate,
        "loss_after": solution.loss_after,
        "forward_after": {s.name: s.value for s in solution.forward_after[0]},
        "adjoints": dict(first.adjoints),
        "local_partials": dict(first.local_partials),
    }
    run = solution.training  # several SGD steps (training.py): the loss of each
    data["history"] = ([{"step": s.step, "epoch": s.epoch, "examples": s.examples,
                         "loss": s.loss} for s in run.steps] if run else
                       [{"step": 1, "epoch": 1,
                         "examples": list(range(1, len(solution.examples) + 1)),
                         "loss": solution.loss}])
    if solution.buffers:  # running statistics: before the step and after its forward pass
        data["buffers"] = dict(solution.buffers)
        data["buffers_after"] = dict(solution.buffers_after)
    if run:
        data["final"] = {"loss": run.loss_after, "parameters": dict(run.parameters)}
        if run.buffers:
            data["final"]["buffers"] = dict(run.buffers)
    diverged_at = run.diverged_at if run else (
        None if math.isfinite(solution.loss_after) else 1)
    if diverged_at is not None:  # the loss overflowed: said here, numbers beyond are null
        data["diverged_at"] = diverged_at
    if len(solution.examples) > 1:
        data["examples"] = [
            {"inputs": e.inputs, "targets": e.targets,
             "forward": {s.name: s.value for s in e.forward}, "loss": e.loss,
             "gradients": e.gradients}
            for e in solution.examples]
    return finite_or_null(data)


def finite_or_null(value):
    """The data with every infinite or NaN number as None: JSON has no Infinity."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    return value
