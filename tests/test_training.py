"""Several SGD steps and mini-batches: against the reference's SGD with momentum
(tests/reference.py, written from torch.optim.SGD's definition), PyTorch's SGD itself when
installed, central finite differences of the mean loss, and the documents they produce."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from backprop_explain.api import explain, solve
from backprop_explain.cli import main
from backprop_explain.errors import SpecError
from backprop_explain.fastpath import compile_network
from backprop_explain.spec import load_spec, spec_from_dict
from backprop_explain.training import batches, train, with_schedule

from reference import Network

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "mlp_minibatch.toml"


def small_spec(*args, **kwargs):
    return spec_from_dict(small_data(*args, **kwargs))


def small_data(reduction="mean", momentum=0.0, batch_size=None, steps=1, epochs=None,
               n_examples=5, frozen=(), loss="cross_entropy", out_act="softmax", seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n_examples, 3))
    t = np.eye(2)[rng.integers(0, 2, n_examples)]
    training = {"learning_rate": 0.3, "reduction": reduction, "momentum": momentum,
                "steps": steps, "frozen": list(frozen)}
    if batch_size:
        training["batch_size"] = batch_size
    if epochs:
        training["epochs"] = epochs
    return {
        "inputs": {"size": 3},
        "layers": [
            {"type": "dense", "units": 4, "activation": "tanh",
             "weights": rng.uniform(-1, 1, (4, 3)).tolist(), "biases": [0.1, -0.1, 0.2, 0.0]},
            {"type": "dense", "units": 2, "activation": out_act,
             "weights": rng.uniform(-1, 1, (2, 4)).tolist(), "biases": [0.0, 0.1]}],
        "loss": {"type": loss},
        "examples": [{"inputs": a.tolist(), "targets": b.tolist()} for a, b in zip(x, t)],
        "training": training}


def torch_training(spec, torch):
    """The same schedule with torch.optim.SGD; returns the loss history and the parameters."""
    net = compile_network(spec)
    params = [{r: torch.tensor(a[0], requires_grad=True) for r, a in layer.items()}
              for layer in net.default_parameters()]
    optimizer = torch.optim.SGD([p for layer in params for p in layer.values()],
                                lr=spec.learning_rate, momentum=spec.momentum)
    x_all = torch.tensor([e.inputs for e in spec.examples], dtype=torch.float64)
    t_all = torch.tensor([e.targets for e in spec.examples], dtype=torch.float64)
    history = []
    for _, indices in batches(spec):
        optimizer.zero_grad()
        a, t = x_all[indices], t_all[indices]
        for layer, p in zip(spec.layers, params):
            z = a @ p["weights"].T + p["biases"]
            a = {"tanh": torch.tanh, "softmax": lambda z: torch.softmax(z, -1),
                 "sigmoid": torch.sigmoid}[layer.activation](z)
        if spec.loss.kind == "cross_entropy":
            per_example = -(t * torch.log(a)).sum(-1)
        else:
            per_example = 0.5 * ((a - t) ** 2).sum(-1)
        loss = per_example.mean() if spec.reduction == "mean" else per_example.sum()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    return history, [{r: v.detach().numpy() for r, v in p.items()} for p in params]


SCHEDULES = [
    dict(momentum=0.9, batch_size=2, epochs=3),  # 5 examples: batches of 2, 2 and 1
    dict(momentum=0.5, steps=6, reduction="sum", loss="half_squared_error",
         out_act="sigmoid"),
    dict(momentum=0.0, batch_size=3, steps=7),
    dict(momentum=0.9, steps=4, frozen=["w^{(1)}_{2,3}", "b^{(2)}_{1}"]),
]


@pytest.mark.parametrize("settings", SCHEDULES)
def test_every_step_matches_the_reference_sgd(settings):
    """Loss history, batches, and the parameters after every step, against the reference's
    SGD (v ← μ·v + g, v = g at the first step; θ ← θ − η·v; frozen kept): runs without
    PyTorch."""
    data = small_data(**settings)
    run = train(spec_from_dict(data))
    expected = Network(data).train()
    assert len(run.steps) == len(expected["history"]) > 1
    assert [(s.epoch, s.examples) for s in run.steps] == expected["batches"]
    np.testing.assert_allclose(run.history, expected["history"], rtol=1e-12)
    for step, parameters in zip(run.steps, expected["parameters"]):
        for name, value in parameters.items():
            assert step.parameters[name] == pytest.approx(value, rel=1e-12, abs=1e-14), name
    assert run.loss_after == pytest.approx(expected["loss_after"], rel=1e-12)


@pytest.mark.parametrize("settings", SCHEDULES[:3])
def test_history_and_final_parameters_match_torch_sgd(settings):
    torch = pytest.importorskip("torch")
    spec = small_spec(**settings)
    run = train(spec)
    history, final = torch_training(spec, torch)
    assert len(run.steps) == len(history) > 1
    np.testing.assert_allclose(run.history, history, rtol=1e-12)
    mine = compile_network(spec).layer_parameters(run.parameters)
    for layer_mine, layer_torch in zip(mine, final):
        for role in layer_torch:
            np.testing.assert_allclose(layer_mine[role][0], layer_torch[role], rtol=1e-11,
                                       atol=1e-14)


def test_schedule_in_order_last_batch_smaller():
    spec = small_spec(batch_size=2, epochs=2)
    assert batches(spec) == [(1, [0, 1]), (1, [2, 3]), (1, [4]),
                             (2, [0, 1]), (2, [2, 3]), (2, [4])]
    assert batches(small_spec(steps=3)) == [(1, [0, 1, 2, 3, 4])] + [
        (k, [0, 1, 2, 3, 4]) for k in (2, 3)]
    with pytest.raises(SpecError, match="batch_size"):
        batches(with_schedule(spec, batch_size=6))


def test_frozen_parameters_keep_their_values():
    spec = small_spec(steps=4, momentum=0.9, frozen=["w^{(1)}_{2,3}", "b^{(2)}_{1}"])
    run = train(spec)
    for name in spec.frozen:
        assert run.parameters[name] == spec.parameters[name]
    assert run.parameters["w^{(1)}_{1,1}"] != spec.parameters["w^{(1)}_{1,1}"]


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_combined_gradients_match_finite_differences_of_the_batch_loss(reduction):
    """The worked solution's combination of the examples' symbolic gradients is the
    gradient of the mean (or summed) loss, differentiated numerically."""
    spec = small_spec(reduction=reduction, n_examples=3)
    solution = solve(spec)
    assert len(solution.examples) == 3
    combine = np.mean if reduction == "mean" else np.sum
    net = compile_network(spec)
    x = [e.inputs for e in spec.examples]
    t = [e.targets for e in spec.examples]
    h = 1e-6
    for name in spec.parameters:
        per_example = [e.gradients[name] for e in solution.examples]
        assert solution.gradients[name] == pytest.approx(combine(per_example), rel=1e-12,
                                                         abs=1e-15)
        base = spec.parameters[name]
        loss = net.run(x, t, {name: np.array([base + h, base - h])}, reduction,
                       gradients=False).loss
        numeric = (loss[0] - loss[1]) / (2 * h)
        assert solution.gradients[name] == pytest.approx(numeric, rel=1e-6, abs=1e-9)
    # the update uses the combined gradient
    update = {u.parameter: u for u in solution.updates}
    name = next(iter(spec.parameters))
    assert update[name].new == pytest.approx(
        spec.parameters[name] - spec.learning_rate * solution.gradients[name], rel=1e-14)


def test_first_step_derived_on_the_first_batch_agrees_with_the_reference():
    """The example's first step (symbolic, on its first mini-batch) and its whole run
    (fast path, momentum), each against the reference's SGD on the same schedule."""
    solution = solve(EXAMPLE)
    expected = Network(EXAMPLE).train()
    run = solution.training
    assert [(s.epoch, s.examples) for s in run.steps] == expected["batches"]
    assert expected["batches"][:3] == [(1, [1, 2]), (1, [3, 4]), (2, [1, 2])]
    assert [list(e.inputs.values()) for e in solution.examples] == [[0.5, -1.0], [-0.3, 0.8]]
    assert solution.loss == pytest.approx(expected["history"][0], rel=1e-12)
    first = {u.parameter: u for u in solution.updates}
    for name, value in expected["parameters"][0].items():
        assert first[name].new == pytest.approx(value, rel=1e-12, abs=1e-15)
        assert first[name].state["v"] == pytest.approx(first[name].gradient, rel=1e-15)  # v₀ = g
    np.testing.assert_allclose(solution.history, expected["history"], rtol=1e-12)
    np.testing.assert_allclose(run.history, expected["history"], rtol=1e-12)
    for name, value in expected["parameters"][-1].items():
        assert run.parameters[name] == pytest.approx(value, rel=1e-12, abs=1e-15)
    assert run.loss_after == pytest.approx(expected["loss_after"], rel=1e-12)
    assert run.loss_after < run.steps[0].loss


def test_documents_end_with_the_history(tmp_path):
    md = explain(EXAMPLE, "md", steps=3, batch_size=4)
    assert "## 6. Training: the loss step by step" in md
    assert "| 3 | 3 | 1, 2, 3, 4 |" in md
    assert "Combining the examples" in md and "| parameter | example 1 |" in md
    tex = explain(EXAMPLE, "tex", lang="fr")
    assert r"\usepackage{pgfplots}" in tex and r"\addplot" in tex
    assert "\\begin{axis}" in tex and "use comma" in tex
    one_step = explain(EXAMPLE.parent / "mlp_3_2_2_cross_entropy.toml", "md")
    assert "Training: the loss" not in one_step and "pgfplots" not in one_step


def test_cli_options_write_the_loss_chart_beside_the_markdown(tmp_path):
    out = tmp_path / "run.md"
    runner = CliRunner()
    result = runner.invoke(main, ["explain", str(EXAMPLE), "-o", str(out), "--steps", "4"])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "![Loss at each SGD step](run.loss.svg)" in text
    svg = (tmp_path / "run.loss.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<circle") == 4
    result = runner.invoke(main, ["explain", str(EXAMPLE), "--format", "json", "--epochs", "2"])
    data = json.loads(result.output)
    assert [h["examples"] for h in data["history"]] == [[1, 2], [3, 4]] * 2
    assert set(data["final"]["parameters"]) == set(load_spec(EXAMPLE).parameters)
    result = runner.invoke(main, ["explain", str(EXAMPLE), "--steps", "2", "--epochs", "2"])
    assert result.exit_code == 2 and "not both" in result.output
    # same inputs, same bytes
    again = tmp_path / "again.md"
    runner.invoke(main, ["explain", str(EXAMPLE), "-o", str(again), "--steps", "4"])
    assert (tmp_path / "again.loss.svg").read_bytes() == (tmp_path / "run.loss.svg").read_bytes()


@pytest.mark.parametrize("steps,every", [(40, 1), (50, 2), (81, 3)])
def test_long_runs_list_every_kth_step_and_chart_them_all(tmp_path, steps, every):
    """More than 40 steps: the table lists every k-th step (k = ⌈steps/40⌉) and the last;
    the chart still has a point per step (README, "Several steps")."""
    course = EXAMPLE.parent / "mlp_3_2_2_cross_entropy.toml"
    out = tmp_path / "run.md"
    result = CliRunner().invoke(main, ["explain", str(course), "-o", str(out), "--lang", "en",
                                       "--steps", str(steps)])  # the spec says lang = "fr"
    assert result.exit_code == 0, result.output
    table = out.read_text().split("| step | epoch | examples |", 1)[1].split("\n\n", 1)[0]
    rows = [int(line.split("|")[1]) for line in table.splitlines()[2:]]
    expected = sorted(set(range(1, steps + 1, every)) | {steps})
    assert rows == expected
    phrase = f"(one step in {every} shown in the table; the chart shows them all)"
    assert (phrase in out.read_text()) == (every > 1)
    svg = (tmp_path / "run.loss.svg").read_text()
    points = svg.split('<polyline points="', 1)[1].split('"', 1)[0].split()
    assert len(points) == steps  # (markers on the points up to 60 steps)
