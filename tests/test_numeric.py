"""The fast symbolic engine against the plain one it replaces.

numeric.py evaluates each canonical *shape* of expression compiled once, partials.py
differentiates each name-ordered shape once. Here, on random MLPs and CNNs (max-pool ties
and ReLU at exactly 0 included) and on every example:
- every node's value and every local partial agree to 1e-30 (relative, 40 digits) with
  ``sympy.lambdify(..., modules="mpmath")`` of the node's own expression and of
  ``sympy.diff`` of it;
- every symbolic local partial is the very expression ``sympy.diff`` gives.
"""

from __future__ import annotations

import random
from pathlib import Path

import mpmath
import pytest
import sympy as sp

from backprop_explain.derivation import leaf_sets, leaf_values
from backprop_explain.graph import build_graph
from backprop_explain.nodes import GIVEN_KINDS
from backprop_explain.numeric import PRECISION, NumericGraph, canonical_shape
from backprop_explain.spec import load_spec, spec_from_dict

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
HIDDEN = ["sigmoid", "tanh", "relu", "leaky_relu", "identity", "softmax"]
OUTPUT_LOSSES = [("sigmoid", "binary_cross_entropy"), ("softmax", "cross_entropy"),
                 ("identity", "softmax_cross_entropy"), ("tanh", "half_squared_error"),
                 ("relu", "squared_error"), ("leaky_relu", "mean_squared_error")]


def _targets(rng, loss, n):
    if loss == "softmax_cross_entropy":
        t = [rng.uniform(0.1, 1) for _ in range(n)]
        return [v / sum(t) for v in t]
    if loss in ("cross_entropy", "binary_cross_entropy"):
        return [round(rng.uniform(0, 1), 3) for _ in range(n)]
    return [round(rng.uniform(-1, 1), 3) for _ in range(n)]


def random_mlp(seed: int) -> dict:
    """1 to 3 dense layers of 1 to 4 units; some units' pre-activation exactly 0."""
    rng = random.Random(seed)
    sizes = [rng.randint(1, 4) for _ in range(rng.randint(2, 4))]
    output, loss = OUTPUT_LOSSES[seed % len(OUTPUT_LOSSES)]
    zero_inputs = seed % 2 == 0  # x = 0 and b = 0: every first-layer y is exactly 0
    layers = []
    for k, (n_in, units) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = k == len(sizes) - 2
        layers.append({
            "type": "dense", "units": units, "negative_slope": 0.1,
            "activation": output if last else rng.choice(HIDDEN),
            "weights": [[round(rng.uniform(-1, 1), 3) for _ in range(n_in)]
                        for _ in range(units)],
            "biases": [0.0 if zero_inputs and k == 0 else round(rng.uniform(-1, 1), 3)
                       for _ in range(units)]})
    return {"inputs": {"values": [0.0 if zero_inputs else round(rng.uniform(-2, 2), 3)
                                  for _ in range(sizes[0])]},
            "layers": layers, "loss": {"type": loss, "targets": _targets(rng, loss, sizes[-1])},
            "training": {"learning_rate": 0.1}}


def random_cnn(seed: int) -> dict:
    """conv (ReLU and friends) → max or average pool → flatten → dense; the image takes two
    values only, so pooling windows tie and some pre-activations are exactly 0."""
    rng = random.Random(seed)
    channels, size, filters = rng.randint(1, 2), rng.randint(3, 4), rng.randint(1, 2)
    kernel, padding = rng.randint(1, 2), rng.randint(0, 1)
    activation = ["relu", "leaky_relu", "sigmoid", "tanh", "identity"][seed % 5]
    conv = {"type": "conv2d", "activation": activation, "padding": padding,
            "filters": [[[[rng.choice([0.0, 0.5, -0.5]) for _ in range(kernel)]
                          for _ in range(kernel)] for _ in range(channels)]
                        for _ in range(filters)],
            "biases": [rng.choice([0.0, 0.25]) for _ in range(filters)]}
    side = size - kernel + 2 * padding + 1
    pool_kernel = min(2, side)
    layers = [conv, {"type": "maxpool2d" if seed % 3 else "avgpool2d", "kernel": pool_kernel,
                     "stride": 1}, {"type": "flatten"}]
    flat = filters * (side - pool_kernel + 1) ** 2
    units = rng.randint(1, 3)
    layers.append({"type": "dense", "activation": "identity",
                   "weights": [[round(rng.uniform(-1, 1), 3) for _ in range(flat)]
                               for _ in range(units)],
                   "biases": [round(rng.uniform(-1, 1), 3) for _ in range(units)]})
    image = [[[rng.choice([0.0, 1.0]) for _ in range(size)] for _ in range(size)]
             for _ in range(channels)]
    return {"inputs": {"values": image}, "layers": layers,
            "loss": {"type": "softmax_cross_entropy" if units > 1 else "half_squared_error",
                     "targets": [1.0] + [0.0] * (units - 1)},
            "training": {"learning_rate": 0.1}}


def edges(graph):
    return [(node.name, parent) for node in graph.nodes.values() for parent in node.parents
            if graph.nodes[parent].kind not in GIVEN_KINDS]


def plain_values(graph, leaves):
    """Every node's value and local partial from sympy.lambdify of its own expression and of
    sympy.diff of it. The arguments are renamed v0, v1, … first, as lambdify does itself
    with names that are not identifiers (x_{1,1}), only once per node instead of once per
    argument and expression."""
    nodes = [node for node in graph.nodes.values() if node.expr is not None]
    wanted = {node.name: [p for p in node.parents if graph.nodes[p].kind not in GIVEN_KINDS]
              for node in nodes}
    formulas = {node.name: [node.expr] + [sp.diff(node.expr, graph.symbol(p))
                                          for p in wanted[node.name]] for node in nodes}
    plain = [sp.Symbol(f"v{k}") for k in range(max(len(n.parents) for n in nodes))]
    with sp.evaluate(False):  # renaming only: every expression keeps its arrangement
        for node in nodes:
            names = {graph.symbol(p): v for p, v in zip(node.parents, plain)}
            formulas[node.name] = [f.xreplace(names) for f in formulas[node.name]]
    with mpmath.workdps(PRECISION):
        # the spec's numbers as written: a float as its shortest decimal (0.1 is 1/10)
        exact = {k: mpmath.mpf(repr(float(v))) if isinstance(v, float) else mpmath.mpf(v)
                 for k, v in leaves.items()}
        partials = {}
        for node in nodes:
            function = sp.lambdify(plain[:len(node.parents)], formulas[node.name],
                                   modules="mpmath")
            value, *derivatives = function(*[exact[p] for p in node.parents])
            exact[node.name] = value
            partials.update(((node.name, p), d) for p, d in zip(wanted[node.name], derivatives))
    return exact, {edge: partials[edge] for edge in edges(graph)}


def assert_close(fast, plain, what):
    # abs_eps: a partial that is 0 by cancellation (∂σ²_B/∂μ_B = −(2/m)·Σ(x − μ_B)) keeps
    # the 40-digit noise of its terms, which the two evaluations round differently
    assert mpmath.almosteq(mpmath.mpf(fast), mpmath.mpf(plain), rel_eps=1e-30,
                           abs_eps=1e-38), (what, fast, plain)


def check_against_lambdify(spec):
    graph = build_graph(spec)
    numeric = NumericGraph(graph)
    leaves = leaf_sets(spec, graph, spec.parameters)[0]  # example 1's, or the batch's
    exact = numeric.exact_forward(leaves)
    partials = numeric.exact_partials(exact)
    plain, plain_partials = plain_values(graph, leaves)
    assert list(partials) == numeric.edges == edges(graph)  # graph order: the JSON's order
    with mpmath.workdps(PRECISION):
        for name in graph.nodes:
            assert_close(exact[name], plain[name], name)
        for edge, value in plain_partials.items():
            assert_close(partials[edge], value, edge)
    # and the float64 numbers a solution shows are the same
    values = numeric.forward(leaves)
    assert values == {name: float(v) for name, v in plain.items()}
    shown = numeric.partial_values(values)
    expected = {e: float(v) for e, v in plain_partials.items()}
    assert shown.keys() == expected.keys()
    # equal, but for partials that are 0 by cancellation (40-digit noise either way)
    assert all(shown[e] == v or abs(shown[e]) + abs(v) < 1e-30 for e, v in expected.items())


@pytest.mark.parametrize("seed", range(12))
def test_mlp_values_and_partials_match_lambdify(seed):
    check_against_lambdify(spec_from_dict(random_mlp(seed)))


@pytest.mark.parametrize("seed", range(10))
def test_cnn_values_and_partials_match_lambdify(seed):
    check_against_lambdify(spec_from_dict(random_cnn(seed)))


def test_random_cnns_have_max_pool_ties_and_relu_at_zero():
    """The random CNNs above do meet the corner cases they are there for."""
    ties = zeros = 0
    for seed in range(10):
        spec = spec_from_dict(random_cnn(seed))
        graph = build_graph(spec)
        values = NumericGraph(graph).forward(leaf_values(spec, spec.parameters,
                                                         spec.examples[0]))
        for node in graph.nodes.values():
            if node.kind == "pool" and "maxpool2d" in {layer.kind for layer in spec.layers}:
                cells = [values[p] for p in node.parents]
                ties += cells.count(max(cells)) > 1
            if node.activation in ("relu", "leaky_relu"):
                zeros += values[node.parents[0]] == 0.0
    assert ties and zeros


def test_examples_match_lambdify():
    for path in sorted(EXAMPLES.glob("*.toml")):
        if path.name.startswith("sheet_") or path.stem.endswith("_answers"):
            continue
        check_against_lambdify(load_spec(path))


SYMBOLIC = ([("example", p.stem) for p in sorted(EXAMPLES.glob("*.toml"))
             if not p.name.startswith("sheet_") and not p.stem.endswith("_answers")]
            + [("mlp", seed) for seed in range(6)] + [("cnn", seed) for seed in range(6)])


@pytest.mark.parametrize("source,which", SYMBOLIC, ids=[f"{s}-{w}" for s, w in SYMBOLIC])
def test_symbolic_partials_are_sympy_diff_itself(source, which):
    """Graph.local_partial (derived once per shape, names put back) is structurally the
    expression sympy.diff gives: same tree, so the same LaTeX in every document."""
    spec = (load_spec(EXAMPLES / f"{which}.toml") if source == "example" else
            spec_from_dict(random_mlp(which) if source == "mlp" else random_cnn(which)))
    graph = build_graph(spec)
    for child, parent in edges(graph):
        fast = graph.local_partial(child, parent)
        plain = sp.diff(graph.nodes[child].expr, graph.symbol(parent))
        assert sp.srepr(fast) == sp.srepr(plain), (child, parent)


def test_nodes_of_one_kind_share_one_shape():
    """What makes the engine fast: every softmax output, every unit of a dense layer, every
    sigmoid, every 2×2 pooling window is one compiled shape."""
    spec = spec_from_dict(random_mlp(1) | {"layers": [
        {"type": "dense", "units": 4, "activation": "sigmoid",
         "weights": [[0.1, 0.2]] * 4, "biases": [0.0] * 4},
        {"type": "dense", "units": 4, "activation": "softmax",
         "weights": [[0.1, 0.2, 0.3, 0.4]] * 4, "biases": [0.0] * 4}],
        "inputs": {"values": [1.0, 2.0]},
        "loss": {"type": "cross_entropy", "targets": [1, 0, 0, 0]}})
    graph = build_graph(spec)
    shapes = {}
    for node in graph.nodes.values():
        if node.expr is not None:
            key = (node.kind, node.layer, node.activation)
            shapes.setdefault(key, set()).add(canonical_shape(node.expr)[0])
    assert all(len(found) == 1 for found in shapes.values()), shapes
    pooled = build_graph(spec_from_dict(random_cnn(1)))
    windows = {canonical_shape(n.expr)[0] for n in pooled.nodes.values() if n.kind == "pool"
               and len(n.parents) == 4}
    assert len(windows) == 1
