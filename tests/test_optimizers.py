"""The optimizers (training.optimizer = sgd | adam | adamw): trajectories against
torch.optim over 20 steps and against the plain-NumPy reference (tests/reference.py),
PyTorch's defaults, the worked solution's state and update, verify's keys, bad input."""

from __future__ import annotations

import re

from pathlib import Path

import numpy as np
import pytest

from backprop_explain.api import explain, solve, verify
from backprop_explain.answers import Answer, parse_number
from backprop_explain.errors import SpecError
from backprop_explain.fastpath import compile_network
from backprop_explain.spec import load_spec, spec_from_dict
from backprop_explain.training import batches, train

import reference

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# (optimizer, its settings in [training]) checked over 20 steps
SETTINGS = [
    ("sgd", {"momentum": 0.9}),
    ("sgd", {"momentum": 0.8, "dampening": 0.3, "weight_decay": 0.05}),
    ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("sgd", {"weight_decay": 0.1}),
    ("adam", {}),
    ("adam", {"betas": [0.8, 0.95], "eps": 1e-6, "weight_decay": 0.05}),
    ("adamw", {}),
    ("adamw", {"betas": [0.85, 0.99], "weight_decay": 0.2}),
    ("adam", {"amsgrad": True, "betas": [0.9, 0.99]}),
    ("adamw", {"amsgrad": True, "betas": [0.8, 0.9], "weight_decay": 0.1}),
]


def network(optimizer="sgd", settings=None, steps=20, batch_size=2, lr=0.05, seed=0,
            frozen=()):
    return spec_from_dict(document(optimizer, settings, steps, batch_size, lr, seed, frozen))


def document(optimizer="sgd", settings=None, steps=20, batch_size=2, lr=0.05, seed=0,
             frozen=()) -> dict:
    """A 3-4-2 tanh/softmax network on 5 examples, mini-batches of two (the last of one)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (5, 3))
    t = np.eye(2)[rng.integers(0, 2, 5)]
    training = {"optimizer": optimizer, "learning_rate": lr, "steps": steps,
                "batch_size": batch_size, "frozen": list(frozen), **(settings or {})}
    return {
        "inputs": {"size": 3},
        "layers": [
            {"type": "dense", "units": 4, "activation": "tanh",
             "weights": rng.uniform(-1, 1, (4, 3)).tolist(),
             "biases": rng.uniform(-0.5, 0.5, 4).tolist()},
            {"type": "dense", "units": 2, "activation": "softmax",
             "weights": rng.uniform(-1, 1, (2, 4)).tolist(), "biases": [0.0, 0.1]}],
        "loss": {"type": "cross_entropy"},
        "examples": [{"inputs": a.tolist(), "targets": b.tolist()} for a, b in zip(x, t)],
        "training": training}


def torch_optimizer(torch, spec, params):
    s = spec.optimizer_settings
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=spec.learning_rate, momentum=s["momentum"],
                               dampening=s["dampening"], nesterov=s["nesterov"],
                               weight_decay=s["weight_decay"])
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[spec.optimizer]
    return cls(params, lr=spec.learning_rate, betas=tuple(s["betas"]), eps=s["eps"],
               weight_decay=s["weight_decay"], amsgrad=s["amsgrad"])


def torch_run(torch, spec):
    """The spec's schedule in PyTorch: the loss before each step, the final parameters."""
    net = compile_network(spec)
    layers = [{r: torch.tensor(a[0], requires_grad=True) for r, a in layer.items()}
              for layer in net.default_parameters()]
    optimizer = torch_optimizer(torch, spec, [p for layer in layers for p in layer.values()])
    x_all = torch.tensor([e.inputs for e in spec.examples], dtype=torch.float64)
    t_all = torch.tensor([e.targets for e in spec.examples], dtype=torch.float64)
    history = []
    for _, indices in batches(spec):
        optimizer.zero_grad()
        hidden = torch.tanh(x_all[indices] @ layers[0]["weights"].T + layers[0]["biases"])
        out = torch.softmax(hidden @ layers[1]["weights"].T + layers[1]["biases"], -1)
        loss = -(t_all[indices] * torch.log(out)).sum(-1).mean()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    return history, [{r: p.detach().numpy() for r, p in layer.items()} for layer in layers]


@pytest.mark.parametrize("optimizer, settings", SETTINGS)
def test_twenty_steps_match_torch_optim(optimizer, settings):
    torch = pytest.importorskip("torch")
    spec = network(optimizer, settings)
    run = train(spec)
    history, final = torch_run(torch, spec)
    assert len(run.steps) == len(history) == 20
    np.testing.assert_allclose(run.history, history, rtol=1e-11)
    mine = compile_network(spec).layer_parameters(run.parameters)
    for layer_mine, layer_torch in zip(mine, final):
        for role in layer_torch:
            np.testing.assert_allclose(layer_mine[role][0], layer_torch[role], rtol=1e-11,
                                       atol=1e-13)


@pytest.mark.parametrize("optimizer, settings", SETTINGS)
def test_twenty_steps_match_the_numpy_reference(optimizer, settings):
    """The reference's schedule and rule (tests/reference.py), each step on the fast path's
    gradients at the reference's parameters (Adam divides a gradient's last-digit rounding
    by √v̂ + ε: the gradients themselves are checked elsewhere); frozen parameters stay put."""
    data = document(optimizer, settings, frozen=["b^{(2)}_{1}"])
    spec = spec_from_dict(data)
    net = compile_network(spec)
    x = np.array([e.inputs for e in spec.examples])
    t = np.array([e.targets for e in spec.examples])
    expected = reference.Network(data).train(
        gradients=lambda params, indices, _: net.run(x[indices], t[indices], params).gradients)
    run = train(spec)
    assert [batch for _, batch in batches(spec)] == [
        [k - 1 for k in batch] for _, batch in expected["batches"]]
    names = net.parameter_names
    np.testing.assert_allclose([run.parameters[n] for n in names],
                               [expected["parameters"][-1][n] for n in names], rtol=1e-12,
                               atol=1e-15)
    assert run.parameters["b^{(2)}_{1}"] == spec.parameters["b^{(2)}_{1}"]


def test_pytorch_defaults():
    adam = network("adam", steps=1).optimizer_settings
    assert adam == {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False}
    assert network("adamw", steps=1).optimizer_settings["weight_decay"] == 0.01
    sgd = network("sgd", steps=1).optimizer_settings
    assert sgd == {"momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0}
    data = network("adam", steps=1)
    document = {"inputs": {"size": 1}, "examples": [{"inputs": [1.0], "targets": [0.5]}],
                "layers": [{"type": "dense", "weights": [[0.3]]}],
                "loss": {"type": "half_squared_error"}, "training": {"optimizer": "adam"}}
    assert spec_from_dict(document).learning_rate == 1e-3  # torch.optim.Adam's lr
    assert data.learning_rate == 0.05


@pytest.mark.parametrize("training, expected", [
    ({"optimizer": "sgd", "learning_rate": 0.1, "nesterov": True},
     "training.nesterov: a momentum > 0 and no dampening with Nesterov momentum"),
    ({"optimizer": "sgd", "learning_rate": 0.1, "momentum": 0.9, "dampening": 0.1,
      "nesterov": True}, "training.nesterov: a momentum > 0 and no dampening"),
    ({"optimizer": "adam", "betas": [0.9]}, "training.betas: [β₁, β₂]"),
    ({"optimizer": "adam", "betas": [0.9, 1.0]}, "training.betas[1]: a β in [0, 1), got 1.0"),
    ({"optimizer": "adamw", "eps": 0}, "training.eps: a positive ε, got 0"),
    ({"optimizer": "sgd", "learning_rate": 0.1, "betas": [0.9, 0.99]},
     "training.betas: one of the keys"),
    ({"optimizer": "adam", "momentum": 0.9}, "training.momentum: one of the keys"),
    ({"optimizer": "sgd"}, "training.learning_rate: the learning rate η"),
    ({"optimizer": "sgd", "learning_rate": 0.1, "weight_decay": -1},
     "training.weight_decay: a weight decay in [0, inf), got -1.0"),
])
def test_bad_settings_are_one_line_errors(training, expected):
    document = {"inputs": {"values": [1.0]}, "layers": [{"type": "dense", "weights": [[0.3]]}],
                "loss": {"type": "half_squared_error", "targets": [0.5]},
                "training": training}
    with pytest.raises(SpecError) as error:
        spec_from_dict(document, source="net.toml")
    assert str(error.value).startswith("net.toml: " + expected), str(error.value)


def test_adam_worked_solution_writes_one_update_in_full_then_a_table():
    spec = network("adam", {"weight_decay": 0.1}, steps=1, batch_size=None)
    solution = solve(spec)
    first = solution.updates[0]
    name, g, old = first.parameter, first.gradient, first.old
    # the state written out: from the reference rule, on one parameter
    optimizer = reference.Optimizer({"optimizer": "adam", "learning_rate": spec.learning_rate,
                                     "weight_decay": 0.1})
    new, state = optimizer.adam(old, g, {}, name)
    assert first.new == pytest.approx(new, rel=1e-14)
    assert first.state["m"] == pytest.approx(state["m"], rel=1e-14)
    assert first.state["v_hat"] == pytest.approx(state["v"] / (1 - 0.999), rel=1e-12)
    text = explain(spec)
    # one parameter in full, once (the first of the backward pass: the output layer's)
    assert len(re.findall(r"\\hat\{m\}_\{.*\} &=", text)) == 1
    assert len(re.findall(r"^g_\{.*\} &=", text, re.M)) == 1  # the gradient with its decay
    assert "The state and the update of every parameter" in text
    for update in solution.updates:  # every other one in a table row
        assert f"| ${update.parameter}$ |" in text
    french = explain(spec, lang="fr")
    assert "Comme torch.optim.Adam" in french and "Mise à jour des paramètres (Adam)" in french


def test_adamw_writes_the_decoupled_decay():
    spec = network("adamw", steps=1, batch_size=None)
    text = explain(spec, fmt="tex")
    assert r"\cdot (1 - \eta \cdot \lambda) - \eta \cdot \frac{\hat{m}" in text
    assert "decoupled from the gradient" in text


@pytest.mark.parametrize("settings, written", [
    ({"weight_decay": 0.1}, r"\frac{\partial E}{\partial w^{(1)}_{1,1}} + \lambda \cdot"),
    ({"momentum": 0.9, "nesterov": True}, r"\eta \cdot \left(\frac{\partial E}"),
])
def test_sgd_variants_write_their_rule(settings, written):
    data = document("sgd", settings, steps=1, batch_size=None)
    spec = spec_from_dict(data)
    solution = solve(spec)
    names = list(spec.parameters)
    expected, _ = reference.Optimizer(data["training"]).step(
        dict(spec.parameters), solution.gradients, {}, frozen=set())
    np.testing.assert_allclose([solution.parameters_after[n] for n in names],
                               [expected[n] for n in names], rtol=1e-14)
    assert written in explain(spec)


def test_the_example_trains_with_adam():
    spec = load_spec(EXAMPLES / "mlp_adam.toml")
    assert spec.optimizer == "adam"
    run = train(spec)
    assert run.history[-1] < run.history[0]
    assert "10 Adam steps" not in explain(spec)  # epochs: 10 × 2 batches
    assert "20 Adam steps" in explain(spec)


def answer(key: str, text: str) -> Answer:
    value, integer = parse_number(text)
    return Answer(key, text, value, integer=integer)


def test_verify_checks_the_adam_state_and_names_a_forgotten_bias_correction():
    spec = spec_from_dict({
        "inputs": {"values": [0.5, -1.0]},
        "layers": [{"type": "dense", "units": 1, "activation": "sigmoid",
                    "weights": [[0.4, 0.3]], "biases": [0.1],
                    "names": {"weights": "w_#i", "biases": "b", "pre_activations": "z",
                              "activations": "a"}}],
        "loss": {"type": "half_squared_error", "targets": [1.0],
                 "names": {"terms": "E_1", "total": "E", "targets": "t"}},
        "training": {"optimizer": "adam", "learning_rate": 0.1}})
    solution = solve(spec)
    update = next(u for u in solution.updates if u.parameter == "w_1")
    s = update.state
    right = [answer("m_{w_1}", f"{s['m']:.6g}"), answer("v_{w_1}", f"{s['v']:.6g}"),
             answer(r"\hat{m}_{w_1}", f"{s['m_hat']:.6g}"),
             answer(r"\hat{v}_{w_1}", f"{s['v_hat']:.6g}"), answer("w_1'", f"{update.new:.8g}")]
    result = verify(spec, right)
    assert [c.status for c in result.checks] == ["correct"] * 5
    g, lr = update.gradient, 0.1
    forgot = 0.4 - lr * (0.1 * g) / (np.sqrt(0.001 * g * g) + 1e-8)
    check = verify(spec, [answer("w_1'", f"{forgot:.8g}")]).checks[0]
    assert check.status == "wrong" and check.diagnosis.code == "no_bias_correction"
    # a wrong m̂ carried into θ': consistent with the student's own m̂
    wrong_hat = 2 * s["m_hat"]
    carried = 0.4 - lr * wrong_hat / (np.sqrt(s["v_hat"]) + 1e-8)
    checks = verify(spec, [answer(r"\hat{m}_{w_1}", f"{wrong_hat:.8g}"),
                           answer("w_1'", f"{carried:.8g}")]).checks
    assert [c.status for c in checks] == ["wrong", "consistent"]


@pytest.mark.parametrize("optimizer, settings", [("adamw", {}), ("sgd", {"momentum": 0.9,
                                                                      "nesterov": True})])
def test_twenty_steps_with_batchnorm_and_dropout_match_torch(optimizer, settings):
    """The optimizers with the new layers: Linear → BatchNorm1d → ReLU → dropout (each
    example's fixed mask) → Linear → softmax, γ frozen, mini-batches of two."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    masks = rng.integers(0, 2, (4, 3)).tolist()
    spec = spec_from_dict({
        "inputs": {"size": 2},
        "layers": [{"type": "dense", "weights": rng.uniform(-1, 1, (3, 2)).tolist(),
                    "biases": [0.1, -0.1, 0.0]},
                   {"type": "batchnorm", "activation": "relu", "gamma": [1.0, 0.7, 1.3],
                    "names": {"gamma": "g_#j"}},
                   {"type": "dropout", "p": 0.3, "mask": masks},
                   {"type": "dense", "activation": "softmax",
                    "weights": rng.uniform(-1, 1, (2, 3)).tolist(), "biases": [0.0, 0.2]}],
        "loss": {"type": "cross_entropy"},
        "examples": [{"inputs": rng.uniform(-1, 1, 2).tolist(), "targets": t}
                     for t in ([1, 0], [0, 1], [0, 1], [1, 0])],
        "training": {"optimizer": optimizer, "learning_rate": 0.05, "steps": 20,
                     "batch_size": 2, "frozen": ["g_2"], **settings}})
    run = train(spec)
    # one tensor per named parameter, γ_2 left out of the optimizer (frozen)
    tensors = {n: torch.tensor(v, dtype=torch.float64, requires_grad=True)
               for n, v in spec.parameters.items()}
    optimizer_ = torch_optimizer(torch, spec, [v for n, v in tensors.items()
                                               if n not in spec.frozen])

    def stacked(names):
        return torch.stack([stacked(n) if isinstance(n, list) else tensors[n] for n in names])

    first, norm, _, last = spec.layers
    x = torch.tensor([e.inputs for e in spec.examples], dtype=torch.float64)
    t = torch.tensor([e.targets for e in spec.examples], dtype=torch.float64)
    m = torch.tensor(masks, dtype=torch.float64)
    running_mean, running_var = torch.zeros(3, dtype=torch.float64), torch.ones(
        3, dtype=torch.float64)
    history = []
    for _, rows in batches(spec):
        optimizer_.zero_grad()
        z = x[rows] @ stacked(first.weight_names).T + stacked(first.bias_names)
        y = torch.nn.functional.batch_norm(z, running_mean, running_var,
                                           stacked(norm.gamma_names), stacked(norm.beta_names),
                                           training=True, momentum=0.1, eps=1e-5)
        hidden = torch.relu(y) * m[rows] / (1 - 0.3)
        out = torch.softmax(hidden @ stacked(last.weight_names).T + stacked(last.bias_names),
                            -1)
        loss = -(t[rows] * torch.log(out)).sum(-1).mean()
        loss.backward()
        optimizer_.step()
        history.append(loss.item())
    np.testing.assert_allclose(run.history, history, rtol=1e-11)
    # the biases before batch normalization have a gradient of exactly 0 (the batch mean
    # cancels them): rounding noise of 1e-17, which Adam divides by √v̂ + ε ≈ 1e-8
    noise = 1e-9 if spec.optimizer != "sgd" else 1e-13
    for name, tensor in tensors.items():
        tolerance = noise if name in first.bias_names else 1e-13
        assert run.parameters[name] == pytest.approx(tensor.item(), rel=1e-11,
                                                     abs=tolerance), name
    assert run.parameters["g_2"] == 0.7
    np.testing.assert_allclose([run.buffers[n] for n in norm.running_var_names],
                               running_var.numpy(), rtol=1e-11)


def test_amsgrad_moves_otherwise_than_adam_and_says_so():
    """AMSGrad's largest second moment changes these trajectories (so the comparisons with
    torch.optim above check it); the first step is Adam's; the rule is written."""
    settings = {"betas": [0.9, 0.99]}
    plain = train(network("adam", settings))
    largest = train(network("adam", dict(settings, amsgrad=True)))
    assert largest.history[0] == plain.history[0]
    assert max(abs(a - b) for a, b in zip(largest.history, plain.history)) > 1e-6
    one_step = network("adam", dict(settings, amsgrad=True), steps=1, batch_size=None)
    assert solve(one_step).parameters_after == solve(
        network("adam", settings, steps=1, batch_size=None)).parameters_after
    assert r"v^{\max}" in explain(one_step) and "With AMSGrad" in explain(one_step)
    assert "Avec AMSGrad" in explain(one_step, lang="fr")
    assert "AMSGrad: " in explain(network("adam", dict(settings, amsgrad=True)))
