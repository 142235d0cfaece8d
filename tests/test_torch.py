"""PyTorch both ways: models read into specs (from_torch), specs written as PyTorch scripts
(export-torch), checked against PyTorch's own numbers and against the worked solution.

- every example's exported script, run with PyTorch, prints the JSON output's numbers
  (loss, outputs, gradients, updated parameters, loss after, every step of a run);
- spec → PyTorch → spec gives the same spec, for every example;
- PyTorch → spec → explain gives PyTorch's own loss, gradients and SGD update, on random
  MLPs and CNNs (every supported module, loss and reduction, momentum, ties, frozen), and
  each of them, exported, prints the solution's numbers and reads back to the same spec;
- the course's MyNet with the course's weights reads as examples/mlp_3_2_2_cross_entropy.toml;
- what the spec or PyTorch cannot say is one line naming the module or the place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import random
import re
import runpy
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from backprop_explain import api
from backprop_explain.cli import main
from backprop_explain.errors import SpecError
from backprop_explain.keys import example_name
from backprop_explain.layers.dropout import drawn_masks
from backprop_explain.spec import as_spec, load_spec, spec_from_dict
from backprop_explain.spec_toml import to_toml
from backprop_explain.training import train

torch = pytest.importorskip("torch")
nn = torch.nn

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted(p for p in (ROOT / "examples").glob("*.toml")
               if "answers" not in p.name and "sheet" not in p.name)
EXAMPLES = SPECS  # every one can be written in PyTorch (dropout in train mode as FixedDropout)
COURSE = ROOT / "examples" / "mlp_3_2_2_cross_entropy.toml"
LINE = re.compile(r"^(?P<key>.+?) = (?P<value>\S+)$", re.M)


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-10 * max(1.0, abs(b))


@pytest.fixture(autouse=True)
def default_dtype():
    """The scripts set float64 as torch's default; other tests keep theirs."""
    dtype = torch.get_default_dtype()
    yield
    torch.set_default_dtype(dtype)


def run_script(text: str, tmp_path: Path, name: str = "check.py") -> str:
    """Run an exported script as `python check.py` would (in this process: torch is loaded)."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        runpy.run_path(str(path), run_name="__main__")
    return out.getvalue()


def printed_numbers(output: str) -> dict[str, float]:
    return {m["key"]: float(m["value"]) for m in LINE.finditer(output)}


def expected_numbers(data: dict, outputs: list[str]) -> dict[str, float]:
    """What the script prints as `key = value`, from the JSON output."""
    loss = data["loss_name"]
    expected = {loss: data["loss"], f"{loss}'": data["loss_after"]}
    # the first example's outputs (in a graph spanning the mini-batch, its copies)
    expected.update({k: data["forward"].get(k, data["forward"].get(example_name(k, 1)))
                     for k in outputs})
    expected.update({f"d{loss}/d{k}": v for k, v in data["gradients"].items()
                     if k not in data["frozen"]})
    expected.update({f"{k}'": v for k, v in data["updated"].items()})
    return expected


def check_script(spec, tmp_path) -> str:
    """The spec's exported script, run with PyTorch, prints the worked solution's numbers
    (and, over several steps, its loss history and final parameters); returns its output."""
    spec = as_spec(spec)
    data = api.solution_data(spec)
    output = run_script(api.export_torch(spec), tmp_path)
    printed = printed_numbers(output)
    expected = expected_numbers(data, spec.output_names)
    assert set(printed) == set(expected)
    wrong = {k: (printed[k], v) for k, v in expected.items() if not close(printed[k], v)}
    assert not wrong
    gradients = [k for k in printed if k.startswith(f"d{data['loss_name']}/d")]
    assert len(gradients) == len(data["gradients"]) - len(data["frozen"])
    for name in data["frozen"]:  # frozen: no gradient in PyTorch, the value unchanged
        assert f"{name}: frozen" in output and printed[f"{name}'"] == data["updated"][name]
    if len(data["history"]) > 1:  # a training run: the loss before each step, the end
        losses = [float(v) for v in re.findall(r"loss before the step (\S+)", output)]
        assert len(losses) == len(data["history"])
        assert all(close(a, step["loss"]) for a, step in zip(losses, data["history"]))
        final = dict(re.findall(r"^final (.+?): (\S+)$", output, re.M))
        assert close(float(final.pop("loss on all examples")), data["final"]["loss"])
        assert {k: close(float(final[k]), v) for k, v in data["final"]["parameters"].items()} \
            == dict.fromkeys(data["final"]["parameters"], True)
    return output


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_every_exported_script_prints_the_worked_solution(example, tmp_path):
    check_script(example, tmp_path)


def test_dropout_in_train_mode_is_written_with_the_spec_masks():
    """nn.Dropout draws its masks at random: the script's FixedDropout applies the spec's,
    defined once, with a comment saying why."""
    text = api.export_torch(ROOT / "examples" / "cnn_batchnorm_dropout.toml")
    assert "FixedDropout(0.5, [[1, 0, 0, 0, 1, 1, 1, 0]], seed=6))" in text
    assert text.count("class FixedDropout(nn.Module):") == 1
    assert "nn.Dropout would draw new masks at every forward pass" in text
    assert "use_examples" not in text  # one step on every example: all the masks at once
    compile(text, "check.py", "exec")


def test_the_course_script_reads_like_the_course(tmp_path):
    text = api.export_torch(COURSE)
    for line in ("class MyNet(nn.Module):", "self.fc1 = nn.Sequential(", "nn.Linear(3, 2),",
                 "nn.Sigmoid())", "x = self.fc2(x)",
                 "optimizer = optim.SGD(model.parameters(), lr=0.001)",
                 "model.fc1[0].weight.copy_(torch.tensor([[0.1, 2.0, 0.5], [0.3, -0.4, -0.5]]))",
                 "return (-(t * out.log()).sum(dim=1)).mean()",
                 "nn.CrossEntropyLoss would apply a softmax"):
        assert line in text, line
    compile(text, "check.py", "exec")


def test_exported_script_runs_alone_and_verify_accepts_its_numbers(tmp_path):
    """`python check.py` in a fresh process; its output, read by verify, is all correct."""
    script = tmp_path / "out" / "check.py"
    result = CliRunner().invoke(main, ["export-torch", str(COURSE), "-o", str(script)])
    assert result.exit_code == 0, result.output
    output = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            check=True).stdout
    (tmp_path / "check.txt").write_text(output)
    check = api.verify(COURSE, tmp_path / "check.txt", rel=1e-9)
    assert check.ok and check.counts["correct"] == 32


def test_criteria_and_targets_the_script_uses():
    """A loss PyTorch has as a module is that module; one-hot targets are class indices."""
    tanh = api.export_torch(ROOT / "examples" / "mlp_tanh_softmax.toml")
    assert "criterion = nn.CrossEntropyLoss()" in tanh and "targets = torch.tensor([1])" in tanh
    spec = load_spec(ROOT / "examples" / "mlp_1_1_1_squared_error.toml")
    for loss, reduction, code in (("mean_squared_error", "mean", "nn.MSELoss()"),
                                  ("squared_error", "sum", 'nn.MSELoss(reduction="sum")'),
                                  ("binary_cross_entropy", "mean", "nn.BCELoss()")):
        document = dict(spec.document, loss=dict(spec.document["loss"], type=loss),
                        training={"learning_rate": 0.5, "reduction": reduction})
        assert f"criterion = {code}" in api.export_torch(document)
    conv = api.export_torch(ROOT / "examples" / "cnn_2ch_stride2_maxpool.toml")
    for line in ("nn.Conv2d(2, 2, kernel_size=3, stride=2, padding=1),",
                 "nn.MaxPool2d(kernel_size=2, stride=1))", "x = x.view(x.size(0), -1)"):
        assert line in conv


def test_nothing_from_a_spec_runs_in_the_script(tmp_path):
    """The title goes into a comment on one line, names into string literals."""
    document = load_spec(COURSE).document
    document = dict(document, title='x\nimport os; os.system("echo pwned")\r\n"""\\')
    text = api.export_torch(document)
    assert not [line for line in text.splitlines() if line.startswith("import os")]
    assert text.splitlines()[0] == '# x import os; os.system("echo pwned") """\\'
    assert "'wo_{1,1}': (model.fc2[0].weight, (0, 0))," in text
    assert printed_numbers(run_script(text, tmp_path))["E_{tot}"] == pytest.approx(0.1348772)


def test_inputs_and_targets_as_given():
    """Lists are read in float64, float32 arrays as the decimals they hold; integer targets
    of CrossEntropyLoss are class indices, one per example."""
    model = nn.Sequential(nn.Linear(2, 2))
    one = api.from_torch(model, np.array([[0.1, 0.2]], dtype=np.float32), [1, 0],
                         loss="CrossEntropyLoss", learning_rate=0.1)
    assert one.examples[0].inputs == [0.1, 0.2] and one.examples[0].targets == [1.0, 0.0]
    two = api.from_torch(model, [[0.1, 0.2], [0.3, 0.4]], [1, 0], loss="CrossEntropyLoss",
                         learning_rate=0.1)
    assert [e.targets for e in two.examples] == [[0.0, 1.0], [1.0, 0.0]]
    image = api.from_torch(nn.Sequential(nn.Flatten(), nn.Linear(4, 1)), [[[1, 2], [3, 4]]],
                           [0.5], loss="MSELoss", learning_rate=0.1)
    assert image.input_shape == (1, 2, 2) and image.examples[0].inputs == [1.0, 2.0, 3.0, 4.0]


# ---------------------------------------------------------------------------
# spec → PyTorch → spec


def names_of(spec) -> dict:
    document = spec.document
    return {"inputs": document["inputs"].get("names"),
            "layers": [layer.get("names") for layer in document["layers"]],
            "loss": document["loss"].get("names")}


def read_back(spec, script_namespace: dict):
    criterion = script_namespace["criterion"]
    return api.from_torch(
        script_namespace["model"], script_namespace["inputs"], script_namespace["targets"],
        loss=criterion if isinstance(criterion, nn.Module) else spec.loss.kind,
        optimizer=script_namespace["optimizer"], reduction=spec.reduction,
        names=names_of(spec), title=spec.title, steps=None if spec.steps == 1 else spec.steps,
        epochs=spec.epochs, batch_size=spec.batch_size)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_spec_to_pytorch_to_spec_is_the_same_spec(example, tmp_path):
    spec = load_spec(example)
    path = tmp_path / "check.py"
    path.write_text(api.export_torch(spec))
    back = read_back(spec, runpy.run_path(str(path), run_name="check"))
    assert dataclasses.replace(back, source=spec.source) == spec
    again = spec_from_dict(tomllib.loads(to_toml(back)), spec.source)  # as an editable file
    assert again == spec


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_to_toml_reads_back_to_the_same_spec(example):
    spec = load_spec(example)
    assert spec_from_dict(tomllib.loads(to_toml(spec)), spec.source) == spec


def test_to_toml_keeps_any_text_inert():
    spec = load_spec(COURSE)
    document = dict(spec.document, title='a "quoted"\ttitle\nwith \\ and é\x7f')
    document["loss"] = dict(document["loss"], names={"terms": "\\hat{E}_{#j}", "total": "L"})
    assert tomllib.loads(to_toml(document)) == document
    scheduled = api.solve(COURSE, steps=3).spec
    assert tomllib.loads(api.to_toml(scheduled))["training"]["steps"] == 3


# ---------------------------------------------------------------------------
# Dropout in train mode both ways: the script's FixedDropout applies the spec's masks


# (examples, training settings): one example; several in one step; one at a time;
# mini-batches of two over two epochs
DROPOUT_RUNS = [(1, {}), (3, {}), (3, {"batch_size": 1, "steps": 4}),
                (4, {"batch_size": 2, "epochs": 2})]


def dropout_mlp(rng: random.Random, examples: int, training: dict, masks: str) -> dict:
    """A random MLP spec with a dropout layer in train mode after its hidden layer, its
    masks ``"seed"``-drawn, ``"given"`` one per example (not all alike), or ``"one"`` for all."""
    n_in, hidden, outputs = rng.randint(1, 3), rng.randint(2, 4), rng.randint(1, 3)

    def numbers(*shape):
        return np.round(np.array([rng.uniform(-1, 1) for _ in range(int(np.prod(shape)))])
                        .reshape(shape), 2).tolist()

    p = rng.choice([0.25, 0.5, 0.6])
    dropout = {"type": "dropout", "p": p}
    if masks == "seed":  # a seed that gives the examples different masks
        dropout["seed"] = next(s for s in range(rng.randrange(100), 1000) if examples == 1
                               or len({tuple(m) for m in drawn_masks(s, p, examples, hidden)}) > 1)
    elif masks == "one":
        dropout["mask"] = [rng.randint(0, 1) for _ in range(hidden)]
    else:
        while True:
            dropout["mask"] = [[rng.randint(0, 1) for _ in range(hidden)] for _ in range(examples)]
            if examples == 1 or len({tuple(m) for m in dropout["mask"]}) > 1:
                break
    activation, loss = rng.choice([("sigmoid", "half_squared_error"),
                                   ("softmax", "cross_entropy"), ("identity", "squared_error")])
    if activation == "softmax" and outputs == 1:
        outputs = 2
    targets = [[1.0 if j == rng.randrange(outputs) else 0.0 for j in range(outputs)]
               for _ in range(examples)] if activation == "softmax" else [
        [round(rng.uniform(0, 1), 2) for _ in range(outputs)] for _ in range(examples)]
    return {
        "title": "random dropout MLP", "inputs": {"size": n_in},
        "examples": [{"inputs": x, "targets": t} for x, t in zip(numbers(examples, n_in), targets)],
        "layers": [{"type": "dense", "units": hidden, "activation": rng.choice(["tanh", "relu",
                                                                                 "sigmoid"]),
                    "weights": numbers(hidden, n_in), "biases": numbers(hidden)},
                   dropout,
                   {"type": "dense", "units": outputs, "activation": activation,
                    "weights": numbers(outputs, hidden), "biases": numbers(outputs)}],
        "loss": {"type": loss},
        "training": {"learning_rate": 0.5, "momentum": rng.choice([0.0, 0.9]), **training}}


@pytest.mark.parametrize("masks", ["seed", "given", "one"])
@pytest.mark.parametrize("run", range(len(DROPOUT_RUNS)),
                         ids=["one-example", "batch", "one-at-a-time", "mini-batch"])
def test_dropout_mlps_exported_print_the_solution_and_read_back(run, masks, tmp_path):
    """PyTorch's autograd on the script's FixedDropout gives the worked solution's numbers,
    each example with its own mask whichever way the script feeds them; the script's model
    reads back to the same spec."""
    examples, training = DROPOUT_RUNS[run]
    rng = random.Random(f"{run} {masks}")
    spec = spec_from_dict(dropout_mlp(rng, examples, training, masks), "random")
    layer = spec.layers[1]
    if masks != "one" and examples > 1:  # pairing masks with examples matters here
        assert len({tuple(m) for m in layer.masks}) > 1
    output = check_script(spec, tmp_path)
    assert ("use_examples(batch)" in api.export_torch(spec)) == bool(training)
    assert "frozen" not in output
    namespace = runpy.run_path(str(tmp_path / "check.py"), run_name="check")
    back = read_back(spec, namespace)
    assert dataclasses.replace(back, source=spec.source) == spec
    assert back.layers[1].seed == layer.seed and back.layers[1].masks == layer.masks
    assert spec_from_dict(tomllib.loads(to_toml(back)), spec.source) == spec


def test_dropout_masks_edited_in_the_script_read_as_given_masks(tmp_path):
    """A seed is read back only when it draws the module's masks: edited, they are given."""
    spec = spec_from_dict(dropout_mlp(random.Random(1), 2, {}, "seed"), "random")
    namespace = runpy.run_path(str(tmp_path / "check.py"), run_name="check") if (
        tmp_path / "check.py").write_text(api.export_torch(spec)) else None
    module = namespace["model"].drop1[0]
    with torch.no_grad():
        module.masks[1] = 1 - module.masks[1]
    back = read_back(spec, namespace)
    assert back.layers[1].seed is None
    assert back.layers[1].masks == [spec.layers[1].masks[0],
                                    [1 - m for m in spec.layers[1].masks[1]]]
    namespace["model"].eval()  # FixedDropout in eval mode is the identity, as nn.Dropout
    assert read_back(spec, namespace).layers[1].mode == "eval"


def fixed_dropout_class(tmp_path):
    """The FixedDropout class of an exported script, as a lecturer copies it."""
    spec = load_spec(ROOT / "examples" / "cnn_batchnorm_dropout.toml")
    (tmp_path / "net.py").write_text(api.export_torch(spec))
    return runpy.run_path(str(tmp_path / "net.py"), run_name="net")["FixedDropout"]


def test_a_model_with_fixed_dropout_gives_pytorchs_gradients(tmp_path):
    """PyTorch → spec → explain: a model written with FixedDropout reads with its masks,
    and the worked solution has PyTorch's loss, gradients and update."""
    fixed = fixed_dropout_class(tmp_path)
    torch.manual_seed(5)
    masks = [[1, 0, 1, 1], [0, 1, 1, 0], [1, 1, 0, 1]]
    model = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), fixed(0.25, masks),
                          nn.Linear(4, 2)).double()
    x = torch.rand(3, 2, dtype=torch.float64)
    t = torch.tensor([0, 1, 1])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
    spec = api.from_torch(model, x, t, loss=nn.CrossEntropyLoss(), optimizer=optimizer)
    assert spec.document["layers"][1] == {"type": "dropout", "p": 0.25, "mask": masks}
    data = compare_with_solution(spec, model, *torch_step(model, nn.CrossEntropyLoss(), x, t,
                                                           optimizer))
    check_export(spec, data, tmp_path)


@pytest.mark.parametrize("build, expected", [
    (lambda fixed: fixed(0.5, [[1, 0], [0, 1], [1, 1]]),  # three masks, two examples
     "a model that runs on inputs of shape (2, 2) (RuntimeError: The size of tensor a (2)"),
    (lambda fixed: fixed(0.5, [1, 0]),  # one mask, not one per example
     "1 (FixedDropout): a FixedDropout(p, masks) as export-torch writes it"),
    (lambda fixed: fixed(0.5, [[1, 0.5], [1, 1]]),
     "1 (FixedDropout) read as layers[1].mask[0]: 0 (dropped) or 1 (kept) for every unit, "
     "got 0.5 at position 2"),
    (lambda fixed: fixed(-0.1, [[1, 0], [0, 1]]),
     "1 (FixedDropout) read as layers[1].p: a drop probability in [0, 1), got -0.1"),
    (lambda fixed: type("FixedDropout", (nn.Identity,), {})(),
     "1 (FixedDropout): a FixedDropout(p, masks) as export-torch writes it"),
])
def test_a_fixed_dropout_that_cannot_be_read_is_one_line(build, expected, tmp_path):
    fixed = fixed_dropout_class(tmp_path)  # (the script sets float64 as torch's default)
    model = nn.Sequential(nn.Linear(2, 2), build(fixed), nn.Linear(2, 2))
    with pytest.raises(SpecError) as error:
        api.from_torch(model, torch.rand(2, 2), torch.rand(2, 2), loss=nn.MSELoss(),
                       learning_rate=0.1)
    assert expected in str(error.value) and "\n" not in str(error.value), str(error.value)


# ---------------------------------------------------------------------------
# PyTorch → spec → explain: PyTorch's own numbers


def random_mlp(rng: random.Random):
    """(model, loss, inputs, targets) of a random float64 MLP with a loss that suits it."""
    sizes = [rng.randint(1, 3) for _ in range(rng.randint(1, 3))] + [rng.randint(2, 3)]
    hidden = [nn.Sigmoid(), nn.Tanh(), nn.ReLU(), nn.LeakyReLU(0.2), nn.Identity()]
    ending, loss = rng.choice([
        (nn.Softmax(dim=1), "cross_entropy"), (None, nn.CrossEntropyLoss()),
        (None, nn.CrossEntropyLoss(reduction="sum")), (nn.Sigmoid(), nn.BCELoss(reduction="sum")),
        (nn.Tanh(), nn.MSELoss()), (None, nn.MSELoss(reduction="sum")),
        (nn.LogSoftmax(dim=1), nn.NLLLoss()), (nn.Sigmoid(), "half_squared_error")])
    modules, width = [], rng.randint(1, 4)
    n_in = width
    for k, size in enumerate(sizes):
        modules.append(nn.Linear(width, size))
        if k < len(sizes) - 1:
            modules.append(rng.choice(hidden))
        elif ending is not None:
            modules.append(ending)
        width = size
    examples = rng.randint(1, 3)
    extra = random.Random(str(rng.getstate()))  # the draws above and after stay as they were
    if len(sizes) > 1 and extra.random() < 0.5:  # dropout in eval mode (the identity)
        modules.insert(2, nn.Dropout(0.3).eval())
    if len(sizes) > 1 and extra.random() < 0.6:  # batch normalization before the activation
        modules.insert(1, batch_norm(extra, nn.BatchNorm1d(sizes[0]), train=examples > 1))
    return nn.Sequential(*modules).double(), loss, n_in, examples


def batch_norm(rng: random.Random, module, train: bool):
    """A BatchNorm module in train mode or, with running statistics of its own, in eval."""
    if train and rng.random() < 0.6:
        return module
    values = [[rng.uniform(low, low + 1) for _ in range(module.num_features)]
              for low in (-0.5, 0.5, 0.5, -0.5)]
    with torch.no_grad():
        for tensor, drawn in zip((module.running_mean, module.running_var, module.weight,
                                  module.bias), values):
            tensor.copy_(torch.tensor(drawn))
    return module.eval()


def random_targets(rng, loss, examples, outputs):
    if isinstance(loss, (nn.CrossEntropyLoss, nn.NLLLoss)) and rng.random() < 0.5:
        return torch.tensor([rng.randrange(outputs) for _ in range(examples)])
    if loss == "cross_entropy" or isinstance(loss, (nn.CrossEntropyLoss, nn.NLLLoss)):
        t = torch.rand(examples, outputs, dtype=torch.float64)
        return t / t.sum(dim=1, keepdim=True)
    return torch.rand(examples, outputs, dtype=torch.float64)


def random_cnn(rng: random.Random):
    """A random float64 CNN small enough to derive symbolically in a second or two."""
    while True:
        channels, size, filters = rng.randint(1, 2), rng.randint(3, 5), rng.randint(1, 2)
        kernel, stride, padding = rng.randint(2, 3), rng.randint(1, 2), rng.randint(0, 1)
        span = size - kernel + 2 * padding
        pool = rng.choice([nn.MaxPool2d(2, stride=1), nn.AvgPool2d(2, stride=1), None])
        out = span // stride + 1 - (pool is not None)
        if (span >= 0 and span % stride == 0 and 1 <= out and filters * out * out <= 12
                and channels * size * size <= 20):
            break
    modules = [nn.Conv2d(channels, filters, kernel, stride=stride, padding=padding,
                         bias=rng.random() < 0.7), rng.choice([nn.ReLU(), nn.Tanh()])]
    modules += ([pool] if pool is not None else []) + [nn.Flatten(),
                                                      nn.Linear(filters * out * out, 2)]
    extra = random.Random(str(rng.getstate()))  # the draws above and after stay as they were
    if extra.random() < 0.5:  # BatchNorm2d after the conv layer (one value per channel: eval)
        mapped = span // stride + 1
        modules.insert(1, batch_norm(extra, nn.BatchNorm2d(filters), train=mapped > 1))
    return nn.Sequential(*modules).double(), channels, size


def torch_step(model, loss, x, t, optimizer):
    """PyTorch's loss, gradients (per parameter tensor) and parameters after one step."""
    criterion = loss if isinstance(loss, nn.Module) else {
        "cross_entropy": lambda o, t: -(t * o.log()).sum(dim=1).mean(),
        "half_squared_error": lambda o, t: 0.5 * ((o - t) ** 2).sum(dim=1).mean()}[loss]
    value = criterion(model(x), t)
    optimizer.zero_grad()
    value.backward()
    gradients = {id(p): p.grad.clone() for p in model.parameters() if p.grad is not None}
    optimizer.step()
    return value.item(), gradients, {id(p): p.detach().clone() for p in model.parameters()}


def compare_with_solution(spec, model, loss_value, gradients, after):
    """Each spec gradient and update against PyTorch's, tensor by tensor; returns the
    solution's numbers (the JSON output)."""
    data = api.solution_data(spec)
    assert close(data["loss"], loss_value)
    layers = [layer for layer in spec.layers if layer.torch_parameters]
    modules = [m for m in model.modules()
               if isinstance(m, (nn.Linear, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d))]
    assert len(layers) == len(modules)
    checked = 0
    for layer, module in zip(layers, modules):
        for key, attribute in layer.torch_parameters.items():
            names = layer.parameter_blocks()[key]
            tensor = getattr(module, attribute)
            if not names:
                assert tensor is None
                continue
            for index in np.ndindex(tensor.shape):
                name = np.array(names, dtype=object)[index]
                if id(tensor) in gradients:
                    assert close(data["gradients"][name], gradients[id(tensor)][index].item())
                else:
                    assert name in spec.frozen
                assert close(data["updated"][name], after[id(tensor)][index].item())
                checked += 1
    assert checked == sum(np.size(np.array(b, dtype=object)) for layer in layers
                          for b in layer.parameter_blocks().values() if b)
    return data


def check_export(spec, data: dict, tmp_path):
    """The spec's PyTorch script prints the solution's numbers; its model reads back to
    the same spec."""
    printed = printed_numbers(run_script(api.export_torch(spec), tmp_path))
    expected = expected_numbers(data, spec.output_names)
    assert set(printed) == set(expected)
    assert all(close(printed[k], v) for k, v in expected.items())
    back = read_back(spec, runpy.run_path(str(tmp_path / "check.py"), run_name="check"))
    assert back == dataclasses.replace(spec, source=back.source)


CNN_SEEDS = 150  # the six drawn from here cover every module, padding, stride, bias or not


def test_the_random_networks_cover_every_module_read():
    from backprop_explain.torch_import import supported_modules
    seen = set()
    for seed in range(8):
        seen |= {type(m).__name__ for m in random_mlp(random.Random(seed))[0]}
    for seed in range(6):
        model = random_cnn(random.Random(CNN_SEEDS + seed))[0]
        seen |= {type(m).__name__ for m in model} | {
            f"Conv2d stride {model[0].stride[0]} padding {model[0].padding[0]} channels "
            f"{model[0].in_channels} bias {model[0].bias is not None}"}
    # FixedDropout, the exported script's own module, is read in the dropout tests above
    assert set(supported_modules()) - {"FixedDropout"} | {"LogSoftmax"} <= seen
    assert {"Conv2d stride 2 padding 1", "channels 2", "bias False"} <= {
        part for name in seen for part in re.findall(r"Conv2d stride \d padding \d|channels \d|"
                                                      r"bias \w+", name)}


@pytest.mark.parametrize("seed", range(8))
def test_pytorch_mlps_read_into_specs_give_pytorchs_gradients(seed, tmp_path):
    rng = random.Random(seed)
    torch.manual_seed(seed)
    model, loss, n_in, examples = random_mlp(rng)
    outputs = [m for m in model if isinstance(m, nn.Linear)][-1].out_features
    x = torch.rand(examples, n_in, dtype=torch.float64) * 2 - 1
    t = random_targets(rng, loss, examples, outputs)
    optimizer = torch.optim.SGD(model.parameters(), lr=rng.choice([0.1, 0.5]),
                                momentum=rng.choice([0.0, 0.9]))
    spec = api.from_torch(model, x, t, loss=loss, optimizer=optimizer)
    data = compare_with_solution(spec, model, *torch_step(model, loss, x, t, optimizer))
    check_export(spec, data, tmp_path)


@pytest.mark.parametrize("seed", range(6))
def test_pytorch_cnns_read_into_specs_give_pytorchs_gradients(seed, tmp_path):
    rng = random.Random(CNN_SEEDS + seed)
    torch.manual_seed(seed)
    model, channels, size = random_cnn(rng)
    x = torch.rand(rng.randint(1, 2), channels, size, size, dtype=torch.float64) - 0.3
    t = torch.tensor([rng.randrange(2) for _ in range(len(x))])
    loss = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3)
    spec = api.from_torch(model, x, t, loss=loss, optimizer=optimizer)
    data = compare_with_solution(spec, model, *torch_step(model, loss, x, t, optimizer))
    check_export(spec, data, tmp_path)


def test_linear_without_bias_gives_pytorchs_numbers_and_round_trips(tmp_path):
    """nn.Linear(bias=False) reads as biases = false: no bias parameter, PyTorch's loss,
    gradients and SGD update; the export writes bias=False and reads back the same spec."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Tanh(), nn.Linear(4, 3),
                          nn.LeakyReLU(0.2), nn.Linear(3, 2, bias=False)).double()
    x = torch.rand(2, 3, dtype=torch.float64) * 2 - 1
    t = torch.tensor([1, 0])
    loss = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
    spec = api.from_torch(model, x, t, loss=loss, optimizer=optimizer)
    assert [layer.get("biases") is False for layer in spec.document["layers"]] == [
        True, False, True]
    assert [len(layer.bias_names) for layer in spec.layers] == [0, 3, 0]
    assert "biases = false" in to_toml(spec)
    script = api.export_torch(spec)
    assert "nn.Linear(3, 4, bias=False)" in script and "nn.Linear(4, 3)," in script
    data = compare_with_solution(spec, model, *torch_step(model, loss, x, t, optimizer))
    check_export(spec, data, tmp_path)


def one_example_steps(model, x, t, loss, optimizer, steps: int) -> list[float]:
    """PyTorch's losses over ``steps`` steps on mini-batches of one example, in order and
    cycling (what ``batch_size=1`` without shuffling trains on); the model is trained."""
    history = []
    for step in range(steps):
        rows = [step % len(x)]
        optimizer.zero_grad()
        value = loss(model(x[rows]), t[rows])
        value.backward()
        optimizer.step()
        history.append(value.item())
    return history


def test_adam_on_layers_without_bias_follows_torch_optim():
    """Four Adam steps on mini-batches of one, bias-free layers included: the loss history
    and the final weights of torch.optim.Adam."""
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(2, 3, bias=False), nn.Sigmoid(),
                          nn.Linear(3, 2, bias=False)).double()
    x = torch.rand(2, 2, dtype=torch.float64)
    t = torch.rand(2, 2, dtype=torch.float64)
    loss = nn.MSELoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    spec = api.from_torch(model, x, t, loss=loss, optimizer=optimizer, steps=4, batch_size=1)
    run = train(spec)
    np.testing.assert_allclose(run.history, one_example_steps(model, x, t, loss, optimizer, 4),
                               rtol=1e-11)
    for layer, module in zip(spec.layers[::2], model[::2]):
        assert module.bias is None and not layer.bias_names
        np.testing.assert_allclose(
            [[run.parameters[n] for n in row] for row in layer.weight_names],
            module.weight.detach().numpy(), rtol=1e-11)


def test_amsgrad_is_read_from_torch_optim_and_written_back():
    """Adam(amsgrad=True) becomes amsgrad = true: six steps follow torch.optim's, and the
    exported script builds the same optimizer."""
    torch.manual_seed(11)
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2)).double()
    x = torch.rand(3, 2, dtype=torch.float64)
    t = torch.rand(3, 2, dtype=torch.float64)
    loss = nn.MSELoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1, betas=(0.9, 0.95), amsgrad=True)
    spec = api.from_torch(model, x, t, loss=loss, optimizer=optimizer, steps=6, batch_size=1)
    assert spec.optimizer_settings["amsgrad"] is True
    run = train(spec)
    np.testing.assert_allclose(run.history, one_example_steps(model, x, t, loss, optimizer, 6),
                               rtol=1e-11)
    assert "amsgrad=True" in api.export_torch(spec)


class Tied(nn.Module):
    """Two layers with one weight (tied), a frozen head, a forward with view and calls."""

    def __init__(self):
        super().__init__()
        self.first = nn.Linear(3, 3)
        self.second = nn.Linear(3, 3)
        self.second.weight = self.first.weight
        self.act = nn.Tanh()
        self.head = nn.Sequential(nn.Linear(3, 2), nn.Sigmoid())

    def forward(self, x):
        return self.head(self.act(self.second(self.act(self.first(x)))))


def test_tied_and_frozen_parameters_read_as_shared_and_frozen(tmp_path):
    torch.manual_seed(3)
    model = Tied().double()
    model.head[0].bias.requires_grad_(False)
    x, t = torch.rand(2, 3, dtype=torch.float64), torch.rand(2, 2, dtype=torch.float64)
    optimizer = torch.optim.SGD([model.first.weight, model.first.bias, model.second.bias],
                                lr=0.5)  # the head's weight is left out: frozen too
    spec = api.from_torch(model, x, t, loss=nn.MSELoss(), optimizer=optimizer)
    first, second, head = spec.layers
    assert first.weight_names == second.weight_names and len(spec.parameters) == 3 * 3 + 3 + 3 + 8
    assert head.frozen and spec.frozen == set(head.parameter_names())
    assert first.activation == second.activation == "tanh" and head.activation == "sigmoid"
    value, gradients, after = torch_step(model, nn.MSELoss(), x, t, optimizer)
    data = compare_with_solution(spec, model, value, gradients, after)
    assert "model.fc2[0].weight = model.fc1[0].weight" in api.export_torch(spec)
    assert "model.fc3.requires_grad_(False)" in api.export_torch(spec)
    check_export(spec, data, tmp_path)


def test_a_tensor_partly_frozen_reads_with_its_names_listed():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(2, 2), nn.Sigmoid(), nn.Linear(2, 1)).double()
    model[2].bias.requires_grad_(False)
    x, t = torch.rand(1, 2, dtype=torch.float64), torch.rand(1, 1, dtype=torch.float64)
    spec = api.from_torch(model, x, t, loss="half_squared_error", learning_rate=0.1)
    assert spec.frozen == {"b^{(2)}_{1}"} and not spec.layers[1].frozen
    assert tomllib.loads(api.to_toml(spec))["training"]["frozen"] == ["b^{(2)}_{1}"]


# ---------------------------------------------------------------------------
# The course's network, typed into the course's MyNet (float32, as PyTorch makes it)


COURSE_FILE = ROOT / "examples" / "course_mynet.py"  # the course's MyNet, the slides' weights


def course_model():
    return runpy.run_path(str(COURSE_FILE))["course"]()[0]


def test_the_course_mynet_reads_as_the_course_example():
    model = course_model()
    spec = api.from_torch(model, torch.tensor([[0.15, 0.25, -0.5]]), torch.tensor([[1.0, 0.0]]),
                          loss="cross_entropy",
                          optimizer=torch.optim.SGD(model.parameters(), lr=0.001),
                          names="course", title="Rétropropagation sur le réseau 3-2-2 du cours")
    example = load_spec(COURSE)
    assert dataclasses.replace(spec, source=example.source) == example
    assert api.solution_data(spec) == api.solution_data(example)  # every figure
    assert api.solution_data(spec)["gradients"]["wo_{1,1}"] == pytest.approx(-0.0774977, abs=1e-7)


def test_import_torch_command_writes_the_course_example(tmp_path):
    (tmp_path / "course.py").write_text(  # a factory returning the model alone, options
        f"import runpy\n\n\ndef make():\n    model = runpy.run_path({str(COURSE_FILE)!r})"
        f"['course']()[0]\n    return model, [[0.15, 0.25, -0.5]], [[1, 0]]\n")
    out = tmp_path / "new" / "net.toml"
    result = CliRunner().invoke(main, [
        "import-torch", f"{tmp_path / 'course.py'}:make", "--loss", "cross_entropy",
        "--lr", "0.001", "--names", "course", "--title",
        "Rétropropagation sur le réseau 3-2-2 du cours", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert load_spec(out) == dataclasses.replace(load_spec(COURSE), source=str(out))
    # the example file's factory returns the loss and the optimizer too
    result = CliRunner().invoke(main, [
        "import-torch", f"{COURSE_FILE}:course", "--names", "course",
        "--title", "Rétropropagation sur le réseau 3-2-2 du cours"])
    assert result.exit_code == 0, result.output
    assert spec_from_dict(tomllib.loads(result.output), str(COURSE)) == load_spec(COURSE)


# ---------------------------------------------------------------------------
# What cannot be read or written: one line naming the module or the place


class WithFunction(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(2, 2), nn.Linear(2, 2)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


@pytest.mark.parametrize("build, expected", [
    (lambda: (nn.Sequential(nn.Linear(2, 2), nn.GELU()), nn.MSELoss(), {}),
     "1 (nn.GELU): a module of a supported type (BatchNorm1d, BatchNorm2d, Conv2d, Linear"),
    (lambda: (WithFunction(), nn.MSELoss(), {}),
     "fc2 (nn.Linear): the output of fc1 (nn.Linear) as its input"),
    (lambda: (nn.Sequential(nn.Linear(2, 2), nn.Softmax(dim=0)), "cross_entropy", {}),
     "1 (nn.Softmax): dim=1 (over the units of each example), got dim=0"),
    (lambda: (nn.Sequential(nn.Linear(2, 2), nn.Sigmoid()), nn.BCELoss(), {}),
     "loss: a loss the spec computes: "),
    (lambda: (nn.Sequential(nn.Linear(2, 2), nn.Softmax(dim=1)), nn.CrossEntropyLoss(), {}),
     "loss (nn.CrossEntropyLoss) read as loss.type: softmax_cross_entropy after a layer with "
     'activation = "identity" (it applies the softmax itself), got softmax'),
    (lambda: (nn.Sequential(nn.Linear(2, 2), nn.LogSoftmax(dim=1)), nn.CrossEntropyLoss(), {}),
     "1 (nn.LogSoftmax): a module of a supported type"),
    (lambda: (nn.Sequential(nn.Linear(2, 2)), nn.NLLLoss(), {}),
     "loss: a model ending with nn.LogSoftmax for nn.NLLLoss"),
    (lambda: (nn.Sequential(nn.Conv2d(1, 1, 2, dilation=2), nn.Flatten(), nn.Linear(1, 2)),
              nn.MSELoss(), {"x": torch.rand(1, 1, 3, 3)}),
     "0 (nn.Conv2d): dilation=(1, 1) (the spec has no other), got (2, 2)"),
    (lambda: (nn.Sequential(nn.Linear(2, 2)), nn.MSELoss(), {"rms": True}),
     "optimizer: an optimizer of a supported type (SGD, Adam, AdamW), got RMSprop"),
    (lambda: (nn.Sequential(nn.Linear(2, 2)), nn.MSELoss(), {"maximize": True}),
     "optimizer: maximize=False (the spec has no other), got True"),
    (lambda: (nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)), nn.MSELoss(), {}),
     "1 (nn.Dropout): nn.Dropout in eval mode (model.eval())"),
    (lambda: (nn.Sequential(nn.Linear(2, 2)), nn.MSELoss(), {"stepped": True}),
     "optimizer: a fresh optimizer"),
    (lambda: (nn.Sequential(nn.Linear(2, 2)), nn.MSELoss(), {"t": torch.rand(3, 2)}),
     "targets: targets of shape (1, 2) (examples × outputs), got (3, 2)"),
])
def test_what_cannot_be_read_is_one_line_naming_the_module(build, expected):
    model, loss, options = build()
    x = options.get("x", torch.rand(1, 2))
    parameters = list(model.parameters())
    if options.get("rms"):
        optimizer = torch.optim.RMSprop(parameters)
    elif options.get("maximize"):
        optimizer = torch.optim.SGD(parameters, lr=0.1, momentum=0.9, maximize=True)
    else:
        optimizer = torch.optim.SGD(parameters, lr=0.1, momentum=0.9)
    if options.get("stepped"):
        model(x).sum().backward()
        optimizer.step()
    with pytest.raises(SpecError) as error:
        api.from_torch(model, x, options.get("t", torch.rand(1, 2)), loss=loss,
                       optimizer=optimizer)
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_what_pytorch_cannot_say_plainly_is_one_line():
    spec = load_spec(COURSE).document
    part = dict(spec, layers=[dict(spec["layers"][0]), dict(spec["layers"][1])])
    part["layers"][1]["names"] = dict(part["layers"][1]["names"], biases=["bo_1", "bh_1"])
    part["layers"][1]["biases"] = [1.4, 0.2]
    for document, expected in (
            (part, "layers[0].biases: no parameter shared with another tensor unless all of "
                   "it is (PyTorch ties whole tensors), got bh_1 also in layers[1].biases"),
            (dict(spec, training={"learning_rate": 0.1, "frozen": ["wo_{1,1}"]}),
             "layers[1].weights: all of the tensor frozen or none of it"),
            (dict(spec, layers=[dict(spec["layers"][0], frozen=True),
                                dict(spec["layers"][1], frozen=True)]),
             "training.frozen: at least one parameter that is not frozen")):
        with pytest.raises(SpecError) as error:
            api.export_torch(document)
        assert expected in str(error.value), str(error.value)
    result = CliRunner().invoke(main, ["export-torch", "-"], input=json.dumps(part))
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert result.output.startswith("Error: <stdin>: layers[0].biases")


def test_import_torch_bad_file_or_factory_is_one_line(tmp_path):
    (tmp_path / "net.py").write_text("import torch\n\ndef broken():\n    raise KeyError('x')\n\n"
                                     "def not_a_model():\n    return 3\n")
    runner = CliRunner()
    for reference, expected in (
            ("nothing.py:make", "nothing.py: a Python file that exists"),
            (f"{tmp_path / 'net.py'}", "FILE.py:FACTORY"),
            (f"{tmp_path / 'net.py'}:make", "make: a function named make (the file defines "
                                            "broken, not_a_model)"),
            (f"{tmp_path / 'net.py'}:broken", "a file and a broken that run (KeyError: 'x')"),
            (f"{tmp_path / 'net.py'}:not_a_model", "not_a_model: a function returning a "
                                                   "torch.nn.Module")):
        result = runner.invoke(main, ["import-torch", reference, "--inputs", "[[1, 2]]",
                                      "--targets", "[[1]]", "--loss", "MSELoss", "--lr", "0.1"])
        assert result.exit_code == 2, result.output
        assert expected in result.output and result.output.count("\n") == 1, result.output
