"""Benchmark of the symbolic engine: time per stage and per graph edge on growing networks.

    python benchmarks/bench_derivation.py [--quick] [--rounds R] [--baseline DIR]

For MLPs 2-2-2 … 64-64-10 (sigmoid hidden layer, softmax outputs, cross-entropy) and CNNs
4×4 … 16×16 (two input channels, two 3×3 filters, ReLU, 2×2 max pool, flatten, two
outputs, softmax cross-entropy) it prints the graph's edge count (local partials) and the
time of each stage of one complete worked solution:

- graph:    build_graph (one SymPy node per quantity)
- compile:  NumericGraph (what evaluating every expression and local partial needs)
- evaluate: derive (forward, every local partial, backward sweep, chain-rule steps,
            update, loss after)
- render:   the Markdown document (with the symbolic partials it shows) and the JSON
- forms:    every other symbolic partial ∂child/∂parent (Graph.local_partial), which
            `keys` and `verify` list; a checkout that derives them all while compiling
            (main before this benchmark existed) shows "-"

"derivation" = graph + compile + evaluate: all the numbers of `explain --format json`.
Each (network, round) runs in a fresh Python process, so every round pays what a command
pays but its imports (bench_cli.py counts those); rounds go over all networks in turn
(interleaved), best and median are printed. The fitted slope is that of log(time) against
log(edges), least squares over the MLPs and over the CNNs.

``--baseline DIR``: the same measurement, interleaved, on another checkout (e.g. main)
for networks up to ``--baseline-max-edges`` edges, and the ratio baseline / this tree.

Not part of the test suite: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("graph", "compile", "evaluate", "render", "forms")
DERIVATION = STAGES[:3]

MLPS = [(2, 2, 2), (4, 4, 4), (8, 8, 8), (16, 16, 16), (32, 32, 32), (64, 64, 10)]
CNNS = [4, 6, 8, 12, 16]
QUICK_MLPS = [(2, 2, 2), (8, 8, 8), (16, 16, 16), (32, 32, 32)]
QUICK_CNNS = [4, 8, 12]


def mlp_data(n_in: int, hidden: int, n_out: int) -> dict:
    rng = random.Random(n_in * 10000 + hidden * 100 + n_out)
    normal = lambda scale: round(rng.gauss(0, scale), 6)  # noqa: E731
    return {
        "title": f"MLP {n_in}-{hidden}-{n_out}",
        "inputs": {"values": [round(rng.uniform(-1, 1), 6) for _ in range(n_in)]},
        "layers": [
            {"type": "dense", "units": hidden, "activation": "sigmoid",
             "weights": [[normal(n_in ** -0.5) for _ in range(n_in)] for _ in range(hidden)],
             "biases": [normal(0.1) for _ in range(hidden)]},
            {"type": "dense", "units": n_out, "activation": "softmax",
             "weights": [[normal(hidden ** -0.5) for _ in range(hidden)] for _ in range(n_out)],
             "biases": [normal(0.1) for _ in range(n_out)]}],
        "loss": {"type": "cross_entropy", "targets": [1] + [0] * (n_out - 1)},
        "training": {"learning_rate": 0.1}}


def cnn_data(side: int, channels: int = 2, filters: int = 2, n_out: int = 2) -> dict:
    rng = random.Random(side)
    normal = lambda scale: round(rng.gauss(0, scale), 6)  # noqa: E731
    pooled = (side - 2) // 2
    flat = filters * pooled * pooled
    return {
        "title": f"CNN {side}x{side}",
        "inputs": {"values": [[[round(rng.uniform(0, 1), 2) for _ in range(side)]
                               for _ in range(side)] for _ in range(channels)]},
        "layers": [
            {"type": "conv2d", "activation": "relu",
             "filters": [[[[normal(1 / 3) for _ in range(3)] for _ in range(3)]
                          for _ in range(channels)] for _ in range(filters)],
             "biases": [normal(0.1) for _ in range(filters)]},
            {"type": "maxpool2d", "kernel": 2},
            {"type": "flatten"},
            {"type": "dense", "weights": [[normal(flat ** -0.5) for _ in range(flat)]
                                          for _ in range(n_out)],
             "biases": [normal(0.1) for _ in range(n_out)]}],
        "loss": {"type": "softmax_cross_entropy", "targets": [1] + [0] * (n_out - 1)},
        "training": {"learning_rate": 0.1}}


def network(label: str) -> dict:
    kind, size = label.split(" ")
    if kind == "MLP":
        return mlp_data(*map(int, size.split("-")))
    return cnn_data(int(size.split("x")[0]))


# ---------------------------------------------------------------------------
# One measurement, in a child process (imports from --root)


def measure_one(label: str) -> dict:
    importlib.import_module("numpy")  # CNNs load it while deriving: an import is no stage
    from backprop_explain.derivation import NumericGraph, derive
    from backprop_explain.document import render_solution
    from backprop_explain.graph import TARGET, build_graph
    from backprop_explain.jsonout import solution_to_data
    from backprop_explain.spec import spec_from_dict
    # symbolic partials derived apart from the numbers (and only when read)?
    lazy_forms = importlib.util.find_spec("backprop_explain.partials") is not None

    spec = spec_from_dict(network(label))
    times = {}

    def timed(stage, function):
        start = time.perf_counter()
        result = function()
        times[stage] = time.perf_counter() - start
        return result

    graph = timed("graph", lambda: build_graph(spec))
    numeric = timed("compile", lambda: NumericGraph(graph))
    solution = timed("evaluate", lambda: derive(spec, numeric))
    timed("render", lambda: (render_solution(solution, "md"),
                             json.dumps(solution_to_data(solution))))
    edges = [(n.name, p) for n in graph.nodes.values() for p in n.parents
             if graph.nodes[p].kind != TARGET]
    if lazy_forms:
        timed("forms", lambda: [graph.local_partial(c, p) for c, p in edges])
    else:
        times["forms"] = None
    return {"edges": len(edges), "times": times}


# ---------------------------------------------------------------------------
# The runner


def run_child(root: Path, label: str) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", label,
               "--root", str(root)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=root)
    if done.returncode:
        raise SystemExit(f"{label} failed in {root}:\n{done.stderr}")
    return json.loads(done.stdout)


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of log(time) against log(edges)."""
    xs = [math.log(e) for e, _ in points]
    ys = [math.log(t) for _, t in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return (sum((x - mx) * (y - my) for x, y in zip(xs, ys))
            / sum((x - mx) ** 2 for x in xs))


def load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer networks, 2 rounds (~30 s)")
    parser.add_argument("--rounds", type=int, help="rounds per network (default 3, quick 2)")
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    parser.add_argument("--baseline-max-edges", type=int, default=1500)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, str(args.root))
        print(json.dumps(measure_one(args.child)))
        return

    rounds = args.rounds or (2 if args.quick else 3)
    labels = ([f"MLP {a}-{b}-{c}" for a, b, c in (QUICK_MLPS if args.quick else MLPS)]
              + [f"CNN {s}x{s}" for s in (QUICK_CNNS if args.quick else CNNS)])
    print(f"load average before: {load()}; {rounds} rounds, each network in a fresh process, "
          f"networks (and contenders) interleaved")
    runs: dict[tuple[str, str], list[dict]] = {}
    edges: dict[str, int] = {}
    for _ in range(rounds):
        for label in labels:
            result = run_child(ROOT, label)
            edges[label] = result["edges"]
            runs.setdefault(("this", label), []).append(result["times"])
            if args.baseline and edges[label] <= args.baseline_max_edges:
                runs.setdefault(("base", label), []).append(
                    run_child(args.baseline.resolve(), label)["times"])

    def summed(times, stages):
        return sum(times[s] or 0.0 for s in stages)

    def best(who, label, stages):
        return min(summed(t, stages) for t in runs[who, label])

    def median(who, label, stages):
        return statistics.median(summed(t, stages) for t in runs[who, label])

    print(f"\n{'network':<15}{'edges':>7}" + "".join(f"{s:>10}" for s in STAGES)
          + f"{'derivation':>12}{'median':>9}{'per edge':>10}")
    print(f"{'':<15}{'':>7}" + "".join(f"{'s':>10}" for _ in STAGES)
          + f"{'s (best)':>12}{'s':>9}{'us':>10}")
    for label in labels:
        fastest = min(runs["this", label], key=lambda t: summed(t, DERIVATION))
        total = best("this", label, DERIVATION)
        print(f"{label:<15}{edges[label]:>7}"
              + "".join(f"{fastest[s]:>10.3f}" if fastest[s] is not None else f"{'-':>10}"
                        for s in STAGES)
              + f"{total:>12.3f}{median('this', label, DERIVATION):>9.3f}"
              + f"{total / edges[label] * 1e6:>10.1f}")
    for kind in ("MLP", "CNN"):
        chosen = [label for label in labels if label.startswith(kind)]
        if len(chosen) > 1:
            derivation = slope([(edges[c], best("this", c, DERIVATION)) for c in chosen])
            everything = slope([(edges[c], best("this", c, STAGES)) for c in chosen])
            print(f"fitted slope of time against edges, {kind}s {chosen[0][4:]} … "
                  f"{chosen[-1][4:]}: {derivation:.2f} (derivation), {everything:.2f} "
                  f"(every stage)")
    if args.baseline:
        print(f"\nagainst {args.baseline} (best of {rounds}, seconds; derivation = graph + "
              f"compile + evaluate, all = every stage):")
        print(f"{'network':<15}{'edges':>7}{'baseline':>10}{'this':>10}{'ratio':>9}"
              f"{'all':>10}{'this':>10}{'ratio':>9}")
        for label in labels:
            if ("base", label) not in runs:
                continue
            b, t = best("base", label, DERIVATION), best("this", label, DERIVATION)
            br, tr = best("base", label, STAGES), best("this", label, STAGES)
            print(f"{label:<15}{edges[label]:>7}{b:>10.3f}{t:>10.3f}{b / t:>8.1f}x"
                  f"{br:>10.3f}{tr:>10.3f}{br / tr:>8.1f}x")
    print(f"\nload average after: {load()} (2-core machine: other processes slow every "
          f"contender alike, rounds interleaved)")


if __name__ == "__main__":
    main()
