"""The shape of the package: imports run one way, each kind and entry lives in one place.

- the import graph of backprop_explain (module-level and function-level imports) has no
  cycle;
- no stage module names a layer type, an activation, a loss or an optimizer: they go
  through the registries (a name in a stage is a kind that leaked out of its module);
- every layer kind provides the whole interface, its template fragment and its words in
  every language; every activation and loss entry its SymPy, NumPy and display forms;
- every activation's and loss's NumPy backward (fused forms included) agrees with SymPy's
  derivative of its expression at random points: each entry checked on its own.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from backprop_explain.activations import ACTIVATIONS, Activation
from backprop_explain.layers import LAYER_KINDS
from backprop_explain.layers.base import Layer
from backprop_explain.losses import LOSSES, Loss
from backprop_explain.optimizers import OPTIMIZERS, Optimizer
from backprop_explain.templating import environment, templates_dir

PACKAGE = Path(__file__).resolve().parent.parent / "backprop_explain"

# The stages (and the package's front door) and the helpers below every stage: none may
# name a kind or an entry.
STAGE_MODULES = {
    "__init__", "api", "answers", "classreport", "cli", "derivation", "diagram", "document",
    "document_training", "fastpath", "graph", "jsonout", "moodle", "notebook", "numeric",
    "output", "page", "pdf", "sheet", "sheet_spec", "slides", "spec", "spec_toml", "steps",
    "torch_export", "torch_import", "training", "verify",
}
LOW_MODULES = {"drawing", "errors", "escaping", "intervals", "keys", "lazy", "limits", "mathml",
               "nodes", "notation", "partials", "progress", "templating", "validate"}
REGISTRIES = {"activations", "losses", "optimizers"}  # one entry per name: names allowed


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Module → the package's modules it imports, at module level or inside functions."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            imported |= {c for c in candidates if c in modules and c != name}
        graph[name] = imported
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (a list of modules, first = last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module):
        state[module] = 1
        path.append(module)
        for child in sorted(graph[module]):
            if state.get(child) == 1:
                return path[path.index(child):] + [child]
            if child not in state:
                found = visit(child)
                if found:
                    return found
        state[module] = 2
        path.pop()
        return None

    for module in sorted(graph):
        if module not in state:
            found = visit(module)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_imports_have_no_cycle():
    graph = import_graph()
    assert "backprop_explain.layers.conv2d" in graph  # the walk sees the subpackage
    assert "backprop_explain.keys" in graph["backprop_explain.derivation"]
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph))


def test_every_module_is_classified():
    """A new module is a stage, a low-level helper, a registry or a layer kind (layers/)."""
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top == STAGE_MODULES | LOW_MODULES | REGISTRIES


def test_low_level_modules_import_no_stage():
    """The helpers, the registries and the layer kinds sit below every stage."""
    graph = import_graph()
    stages = {f"backprop_explain.{m}" for m in STAGE_MODULES - {"__init__"}}
    below = [f"backprop_explain.{m}" for m in sorted(LOW_MODULES | REGISTRIES)]
    below += [m for m in graph if m.startswith("backprop_explain.layers")]
    assert "backprop_explain.layers.dense" in below
    for module in below:
        assert not graph[module] & stages, f"{module} imports {sorted(graph[module] & stages)}"


def test_torch_is_imported_by_torch_import_alone_and_lazily():
    """PyTorch stays optional: one module reads models, and only when it is asked to."""
    importers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "torch" or n.startswith("torch.") for n in names):
                importers.append(path.name)
                assert node not in tree.body, f"{path.name} imports torch at module level"
    assert set(importers) == {"torch_import.py"}


def test_numpy_is_imported_at_first_use_only():
    """`keys` of an MLP (and checking a spec) compute with no array: NumPy is not executed.
    A module that imported it at its top (or ``from numpy… import``) would undo this."""
    code = ("import sys; from backprop_explain.verify import keys_listing; "
            "keys_listing(sys.argv[1]); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'numpy'))")
    spec = str(PACKAGE.parent / "examples" / "mlp_3_2_2_cross_entropy.toml")
    run = subprocess.run([sys.executable, "-c", code, spec], capture_output=True, text=True,
                         check=True)
    assert run.stdout.strip() == "[]"
    from backprop_explain.lazy import numpy as lazy_numpy
    assert lazy_numpy.zeros(2).tolist() == [0.0, 0.0]  # the real module once used


def test_a_deferred_module_is_the_real_one_from_its_first_read_in_any_thread():
    """Threads reading a stand-in's first attribute at once all get the real thing; it is
    then a plain module (reads at full speed) and on-demand submodules still come."""
    import threading
    import types

    from backprop_explain.lazy import Deferred
    stand_in = Deferred("numpy")
    start, results = threading.Barrier(8), []

    def read():
        start.wait()
        results.append(stand_in.arange(4).sum())
    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [6] * 8
    assert type(stand_in) is types.ModuleType
    assert stand_in.ndarray is np.ndarray and stand_in.linalg.norm([3.0, 4.0]) == 5.0
    with pytest.raises(AttributeError):
        stand_in.no_such_name


def kind_and_entry_names() -> set[str]:
    return set(LAYER_KINDS) | set(ACTIVATIONS) | set(LOSSES) | set(OPTIMIZERS)


def test_no_stage_names_a_kind_or_an_entry():
    names = kind_and_entry_names()
    assert {"conv2d", "maxpool2d", "sigmoid", "cross_entropy", "sgd"} <= names
    leaks = []
    for module in sorted(STAGE_MODULES | LOW_MODULES):
        path = PACKAGE / f"{module}.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in names:
                leaks.append(f"{module}.py:{node.lineno}: {node.value!r}")
    assert not leaks, "kinds named outside their module:\n" + "\n".join(leaks)


# ---------------------------------------------------------------------------
# The interface of every layer kind

KIND_METHODS = ("read", "outputs", "build", "fast_kernel", "draw")


@pytest.mark.parametrize("kind", sorted(LAYER_KINDS))
def test_every_layer_kind_provides_the_interface(kind):
    cls = LAYER_KINDS[kind]
    assert issubclass(cls, Layer)
    for method in KIND_METHODS:  # what the base leaves to each kind
        assert getattr(cls, method) is not getattr(Layer, method), f"{kind} lacks {method}"
    for method in ("parameter_names", "quantity_names", "sheet_blocks", "forms", "summary",
                   "network_part", "forward_part", "section", "after_part", "short_summary",
                   "routed_gradient", "gradient_source"):
        assert callable(getattr(cls, method))
    fragment = templates_dir() / cls.fragment
    assert fragment.is_file(), f"{kind}: no template fragment {cls.fragment}"
    assert environment().get_template(cls.fragment)  # it parses


@pytest.mark.parametrize("kind", sorted(LAYER_KINDS))
def test_every_layer_kind_declares_its_pytorch_form(kind):
    """How torch_import reads it and torch_export writes it (layers/base.py)."""
    cls = LAYER_KINDS[kind]
    assert cls.torch_classes or cls.torch_view
    assert cls.torch_table.__func__ is not Layer.torch_table.__func__
    assert cls.torch_modules is not Layer.torch_modules or cls.torch_view
    assert cls.torch_block.isidentifier()
    if cls.torch_parameters:
        assert cls.parameter_blocks is not Layer.parameter_blocks


@pytest.mark.parametrize("kind", sorted(LAYER_KINDS))
def test_every_layer_kind_has_its_words_in_every_language(kind):
    """templates/layers/<module>.<lang>.toml: a [layers.<type>] table, the same keys in
    every language."""
    module = LAYER_KINDS[kind].__module__.rpartition(".")[2]
    tables = {}
    for lang in ("en", "fr"):
        path = templates_dir() / "layers" / f"{module}.{lang}.toml"
        with open(path, "rb") as handle:
            tables[lang] = tomllib.load(handle)["layers"][kind]
    assert tables["en"] and set(tables["en"]) == set(tables["fr"])


def test_phrase_files_of_the_kinds_match_across_languages():
    for path in sorted((templates_dir() / "layers").glob("*.en.toml")):
        french = path.with_name(path.name.replace(".en.", ".fr."))
        with open(path, "rb") as en, open(french, "rb") as fr:
            assert _keys(tomllib.load(en)) == _keys(tomllib.load(fr)), path.name


def _keys(table: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in table.items():
        keys |= _keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
    return keys


# ---------------------------------------------------------------------------
# Activations and losses: every entry complete, its NumPy forms equal to SymPy's

@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation_entry_is_complete(name):
    entry = ACTIVATIONS[name]
    assert entry.name == name
    for method in ("forward", "backward"):
        assert getattr(type(entry), method) is not getattr(Activation, method)
    assert (type(entry).expression is not Activation.expression
            or type(entry).unit is not Activation.unit)
    assert entry.display is None or "{arg}" in entry.display
    assert entry.torch_class  # its torch.nn module


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_entry_is_complete(name):
    entry = LOSSES[name]
    assert entry.name == name
    for method in ("terms", "forward", "gradient"):
        assert getattr(type(entry), method) is not getattr(Loss, method)
    assert entry.display.strip()
    for activation, method in entry.fused.items():
        assert activation in ACTIVATIONS and callable(getattr(entry, method))
    assert entry.torch_terms  # the exported script writes it out when no criterion fits
    for criterion in entry.torch_criteria:
        assert {criterion.reduction, criterion.spec_reduction} <= {"mean", "sum"}


UNITS = 3
SLOPE = 0.07


def _lambdified(expr, symbols):
    return sp.lambdify(symbols, expr, modules="math")


def _points(seed, shape=(2, 4, UNITS)):
    """Random values away from 0 (ReLU's kink), with variant and batch axes."""
    rng = np.random.default_rng(seed)
    values = rng.uniform(-2.5, 2.5, shape)
    return np.where(np.abs(values) < 0.05, 0.3, values)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_numpy_matches_sympy(name):
    entry = ACTIVATIONS[name]
    ys = sp.symbols(f"y:{UNITS}", real=True)
    outputs = [entry.expression(list(ys), j, SLOPE) for j in range(UNITS)]
    forward = [_lambdified(e, ys) for e in outputs]
    jacobian = [[_lambdified(sp.diff(e, y), ys) for y in ys] for e in outputs]
    z = _points(1)
    grad_a = _points(2)
    a = entry.forward(z, SLOPE)
    back = entry.backward(z, a, grad_a, SLOPE)
    for index in np.ndindex(z.shape[:-1]):
        point = [float(v) for v in z[index]]
        expected_a = [f(*point) for f in forward]
        np.testing.assert_allclose(a[index], expected_a, rtol=1e-12, atol=1e-15)
        # ∂L/∂z_k = Σ_j ∂L/∂a_j · ∂a_j/∂z_k
        expected = [sum(grad_a[index][j] * jacobian[j][k](*point) for j in range(UNITS))
                    for k in range(UNITS)]
        np.testing.assert_allclose(back[index], expected, rtol=1e-10, atol=1e-13)
        if entry.elementwise:  # a diagonal Jacobian
            for j in range(UNITS):
                for k in range(UNITS):
                    assert j == k or jacobian[j][k](*point) == 0


def _targets(name, shape, seed):
    """Targets the loss accepts: probabilities, summing to 1 for the softmax one."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.0, 1.0, shape)
    if name == "softmax_cross_entropy":
        t = t / t.sum(axis=-1, keepdims=True)
    return t


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_numpy_matches_sympy(name):
    entry = LOSSES[name]
    outs = sp.symbols(f"o:{UNITS}", real=True)
    targets = sp.symbols(f"t:{UNITS}", real=True)
    terms = entry.terms(list(outs), list(targets))
    total = sp.Add(*terms)
    term_functions = [_lambdified(e, outs + targets) for e in terms]
    gradient = [_lambdified(sp.diff(total, o), outs + targets) for o in outs]
    rng = np.random.default_rng(3)
    out = rng.uniform(0.05, 0.95, (2, 4, UNITS))  # inside every log's domain
    t = _targets(name, out.shape, 4)
    with np.errstate(divide="ignore", invalid="ignore"):
        numpy_terms, numpy_gradient = entry.forward(out, t), entry.gradient(out, t)
    for index in np.ndindex(out.shape[:-1]):
        point = [float(v) for v in out[index]] + [float(v) for v in t[index]]
        np.testing.assert_allclose(numpy_terms[index], [f(*point) for f in term_functions],
                                   rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(numpy_gradient[index], [g(*point) for g in gradient],
                                   rtol=1e-10, atol=1e-13)


FUSED = [(name, activation) for name in sorted(LOSSES) for activation in LOSSES[name].fused]


def test_the_fused_forms_are_checked():
    assert ("cross_entropy", "softmax") in FUSED and ("binary_cross_entropy", "sigmoid") in FUSED


@pytest.mark.parametrize("name, activation", FUSED)
def test_fused_loss_forms_match_sympy(name, activation):
    """The terms and ∂/∂z the fast path takes from the logits z, against SymPy's
    derivative of the loss of the activation of z."""
    entry, act = LOSSES[name], ACTIVATIONS[activation]
    zs = sp.symbols(f"z:{UNITS}", real=True)
    targets = sp.symbols(f"t:{UNITS}", real=True)
    outputs = [act.expression(list(zs), j, SLOPE) for j in range(UNITS)]
    terms = [e.subs(dict(zip(sp.symbols(f"o:{UNITS}", real=True), outputs)))
             for e in entry.terms(list(sp.symbols(f"o:{UNITS}", real=True)), list(targets))]
    total = sp.Add(*terms)
    term_functions = [_lambdified(e, zs + targets) for e in terms]
    delta = [_lambdified(sp.diff(total, z), zs + targets) for z in zs]
    z = _points(5)
    t = _targets(name, z.shape, 6)
    numpy_terms, numpy_delta, fused = entry.terms_and_delta(activation, z,
                                                            act.forward(z, SLOPE), t)
    assert fused
    for index in np.ndindex(z.shape[:-1]):
        point = [float(v) for v in z[index]] + [float(v) for v in t[index]]
        np.testing.assert_allclose(numpy_terms[index], [f(*point) for f in term_functions],
                                   rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(numpy_delta[index], [d(*point) for d in delta],
                                   rtol=1e-10, atol=1e-13)


SETTINGS = {"sgd": [{}, {"momentum": 0.9}, {"momentum": 0.9, "nesterov": True,
                                            "weight_decay": 0.1}],
            "adam": [{}, {"weight_decay": 0.2, "betas": [0.8, 0.99]}],
            "adamw": [{}, {"weight_decay": 0.3}]}


def test_every_optimizer_is_checked():
    assert set(SETTINGS) == set(OPTIMIZERS)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_entry_declares_its_pytorch_form(name):
    entry = OPTIMIZERS[name]
    assert entry.torch_class and type(entry).torch_settings is not Optimizer.torch_settings


@pytest.mark.parametrize("name, raw", [(n, r) for n in sorted(SETTINGS) for r in SETTINGS[n]])
def test_optimizer_pytorch_code_reads_back_to_its_settings(name, raw):
    """torch_code builds the torch.optim optimizer whose parameter group torch_settings
    reads back to the spec's settings."""
    torch = pytest.importorskip("torch")
    from types import SimpleNamespace

    from backprop_explain.validate import Place
    entry = OPTIMIZERS[name]
    settings = entry.read(raw, Place("<test>", "training"))
    spec = SimpleNamespace(learning_rate=0.05, optimizer_settings=settings)
    optimizer = eval(entry.torch_code(spec, "parameters"),  # noqa: S307 (our own code)
                     {"optim": torch.optim, "parameters": [torch.zeros(1, requires_grad=True)]})
    assert type(optimizer).__name__ == entry.torch_class
    read = entry.torch_settings(optimizer.param_groups[0], Place("<test>", "optimizer"))
    assert read.pop("learning_rate") == 0.05
    assert entry.read(read, Place("<test>", "training")) == settings


@pytest.mark.parametrize("name, raw", [(n, r) for n in sorted(SETTINGS) for r in SETTINGS[n]])
def test_optimizer_update_matches_its_formula(name, raw):
    """The first update as numbers equals the update formula verify.py evaluates, and the
    entry's settings default to PyTorch's."""
    from backprop_explain.validate import Place
    entry = OPTIMIZERS[name]
    settings = entry.read(raw, Place("<test>", "training"))
    assert set(settings) == set(entry.defaults)
    for key, default in entry.defaults.items():
        if key not in raw:
            assert settings[key] == default
    theta, rate, gradient = sp.symbols("theta eta g")
    formula = _lambdified(entry.formula(theta, rate, gradient, settings),
                          (theta, rate, gradient))
    new, _ = entry.update("w", 0.5, -1.25, 0.3, settings, {})
    assert new == pytest.approx(formula(0.5, 0.3, -1.25), rel=1e-14)
