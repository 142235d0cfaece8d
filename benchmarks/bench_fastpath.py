"""Benchmark of the NumPy fast path (float64): forward + backward per batch, compiling, memory.

    python benchmarks/bench_fastpath.py [--threads 1,2] [--rounds R] [--baseline DIR]
                                        [--no-symbolic]

For an MLP 784-256-10 (sigmoid, softmax + cross-entropy) and a CNN 1×28×28 → conv 8×3×3 →
ReLU → max pool 2 → dense 10 (softmax + cross-entropy), measured in this one run:

- the time of one forward + backward pass (loss and every parameter gradient) at batch
  sizes 1, 64 and 1024, against PyTorch on the CPU (float64, the same number of threads:
  each thread count runs in its own process, its BLAS pools sized before NumPy and torch
  load) as a ratio; the contenders (this checkout, ``--baseline DIR``'s, PyTorch) run in
  turns, R rounds of each, best and median printed; the numbers are first checked
  against PyTorch's (loss to 1e-10, gradients to 1e-8);
- ``compile_network`` of each network from the dict a TOML file would give (reading and
  checking the spec, then compiling), best and median of the rounds;
- the peak memory of one pass (tracemalloc: what NumPy allocates; the same for the
  baseline; the input batch itself is allocated before and not counted);
- the MLP's two products with its weights alone (x·Wᵀ and δᵀ·x), NumPy's BLAS against
  PyTorch's: the floor under the MLP's ratio, whatever the fast path does around them;
- per-example symbolic evaluation (the naive way: NumericGraph forward, local partials
  and backward sweep, once per example) as a ratio, unless ``--no-symbolic``. Building the
  SymPy graph of the full networks takes too long, so that time is MEASURED on smaller
  networks of the same kinds and EXTRAPOLATED linearly in the number of local partials
  (graph edges), which is what the per-example work grows with: two small networks give
  the cost of one more partial (the slope, fixed costs left out), applied to the full
  network's count; the output says which networks were measured.

``--baseline DIR``: another checkout (say, main before a change) measured the same way in
the same processes, its package loaded under another name.

Not part of the test suite: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BATCHES = (1, 64, 1024)
NETWORKS = ("MLP 784-256-10", "CNN 1x28x28")


def load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


# ---------------------------------------------------------------------------
# The networks (the same numbers for every contender: a fixed seed)


def mlp_dict(rng, n_in=784, hidden=256, n_out=10):
    return {
        "inputs": {"size": n_in},
        "layers": [
            {"type": "dense", "units": hidden, "activation": "sigmoid",
             "weights": (rng.normal(0, n_in ** -0.5, (hidden, n_in))).tolist(),
             "biases": rng.normal(0, 0.1, hidden).tolist()},
            {"type": "dense", "units": n_out, "activation": "softmax",
             "weights": (rng.normal(0, hidden ** -0.5, (n_out, hidden))).tolist(),
             "biases": rng.normal(0, 0.1, n_out).tolist()}],
        "loss": {"type": "cross_entropy", "targets": [1.0] + [0.0] * (n_out - 1)},
        "training": {"learning_rate": 0.1}}


def cnn_dict(rng, side=28, filters=8, n_out=10):
    pooled = (side - 2) // 2
    return {
        "inputs": {"shape": [1, side, side]},
        "layers": [
            {"type": "conv2d", "filters": rng.normal(0, 1 / 3, (filters, 1, 3, 3)).tolist(),
             "biases": rng.normal(0, 0.1, filters).tolist(), "activation": "relu"},
            {"type": "maxpool2d", "kernel": 2},
            {"type": "flatten"},
            {"type": "dense", "units": n_out, "activation": "softmax",
             "weights": rng.normal(0, (filters * pooled ** 2) ** -0.5,
                                   (n_out, filters * pooled ** 2)).tolist(),
             "biases": rng.normal(0, 0.1, n_out).tolist()}],
        "loss": {"type": "cross_entropy", "targets": [1.0] + [0.0] * (n_out - 1)},
        "training": {"learning_rate": 0.1}}


def with_inputs(data, rng):
    data = dict(data)
    shape = data["inputs"].get("shape") or [data["inputs"]["size"]]
    data["inputs"] = dict(data["inputs"], values=rng.uniform(0, 1, shape).tolist())
    return data


def network_dict(label, rng):
    return with_inputs(mlp_dict(rng) if label.startswith("MLP") else cnn_dict(rng), rng)


# ---------------------------------------------------------------------------
# Contenders


def load_package(directory: Path, name: str):
    """The backprop_explain package of a checkout, imported as ``name`` (its modules import
    each other relatively, so two checkouts live side by side in one process)."""
    init = directory / "backprop_explain" / "__init__.py"
    spec = importlib.util.spec_from_file_location(name, init,
                                                  submodule_search_locations=[str(init.parent)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return importlib.import_module(f"{name}.fastpath")


def torch_step(torch, network, x, labels):
    """The same network in PyTorch, float64, idiomatic (cross_entropy on logits)."""
    F = torch.nn.functional
    params = [{r: torch.tensor(a[0], requires_grad=True) for r, a in layer.items()}
              for layer in network.default_parameters()]
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(labels)
    kinds = [k.layer.kind for k in network.kernels]

    def step():
        for p in params:
            for v in p.values():
                v.grad = None
        a = xt
        for k, (kind, p) in enumerate(zip(kinds, params)):
            if kind == "dense":
                a = F.linear(a, p["weights"], p["biases"])
                if k < len(kinds) - 1:
                    a = torch.sigmoid(a)
            elif kind == "conv2d":
                a = torch.relu(F.conv2d(a, p["weights"], p["biases"]))
            elif kind == "maxpool2d":
                a = F.max_pool2d(a, 2)
            elif kind == "flatten":
                a = a.reshape(a.shape[0], -1)
        loss = F.cross_entropy(a, yt)  # softmax + cross-entropy, mean over the batch
        loss.backward()
        return loss.item(), [{r: v.grad for r, v in p.items()} for p in params]
    return step


def timed_in_turns(functions: dict, rounds: int) -> dict:
    """{name: [seconds of each timed call]}: each round runs every function in turn, the
    order rotating from round to round, so that the load of other processes falls on all
    of them alike. A function's first call in its turn is not timed (it would pay for the
    caches the function before it left, ~40 us after a PyTorch step), then it is called
    about 20 ms' worth (at least once), each call timed."""
    names = list(functions)
    calls = {}
    for name, function in functions.items():
        start = time.perf_counter()
        function()  # warm-up
        calls[name] = max(1, min(50, int(0.02 / max(time.perf_counter() - start, 1e-6))))
    times = {name: [] for name in names}
    for turn in range(rounds):
        for name in names[turn % len(names):] + names[:turn % len(names)]:
            function = functions[name]
            if calls[name] > 1:  # a fast function: its first call in the turn is not timed
                function()
            for _ in range(calls[name]):
                start = time.perf_counter()
                function()
                times[name].append(time.perf_counter() - start)
    return times


def peak_memory(function) -> int:
    function()  # what a first call allocates once (imports, caches) is not the pass's
    tracemalloc.start()
    function()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def best_median(times) -> str:
    return f"{min(times) * 1e3:9.3f} {statistics.median(times) * 1e3:9.3f}"


# ---------------------------------------------------------------------------
# One process: one thread count


def worker(args):
    import numpy as np
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:  # pragma: no cover
        torch = None
    contenders = {"this": load_package(ROOT, "bench_this")}
    if args.baseline:
        contenders["base"] = load_package(args.baseline.resolve(), "bench_base")
    names = list(contenders)
    core = os.environ.get("OPENBLAS_CORETYPE")  # OpenBLAS's kernels, when not detected
    print(f"--- {args.threads} thread(s): BLAS threads and torch.set_num_threads({args.threads});"
          f" NumPy {np.__version__}" + (f" (OPENBLAS_CORETYPE={core})" if core else "")
          + (f", torch {torch.__version__}" if torch else ", torch not installed")
          + f"; load average {load()}")

    # compile_network from the dict, every contender in turns
    datas = {label: network_dict(label, np.random.default_rng(0)) for label in NETWORKS}
    print(f"\ncompile_network(dict): reading and checking the spec, then compiling; ms, best "
          f"and median of {args.compile_rounds} rounds")
    print(f"  {'network':<16}" + "".join(f"{n + ' best':>12}{'median':>10}" for n in names)
          + ("   base/this" if args.baseline else ""))
    networks = {}
    for label, data in datas.items():
        times = timed_in_turns({n: (lambda m=m: m.compile_network(data))
                                for n, m in contenders.items()}, args.compile_rounds)
        networks[label] = {n: m.compile_network(data) for n, m in contenders.items()}
        line = f"  {label:<16}" + "".join(f"{best_median(times[n])} " for n in names)
        if args.baseline:
            line += f" {min(times['base']) / min(times['this']):9.1f}x"
        print(line)

    rng = np.random.default_rng(1)
    for label in NETWORKS:
        this = networks[label]["this"]
        params = [{r: a[0] for r, a in layer.items()} for layer in this.default_parameters()]
        print(f"\n{label}: {sum(a.size for p in params for a in p.values())} parameters; "
              f"forward + backward per batch, ms, best and median of {args.rounds} rounds; "
              f"peak memory of one pass (tracemalloc)")
        print(f"  {'batch':>5} " + "".join(f"{n + ' best':>12}{'median':>10}" for n in names)
              + (f"{'torch best':>12}{'median':>10}" if torch else "")
              + "".join(f"{n + '/torch':>11}{'(median)':>10}" for n in names if torch)
              + "".join(f"{n + ' peak':>11}" for n in names))
        for size in BATCHES:
            x = rng.uniform(0, 1, (size,) + this.input_shape)
            labels = rng.integers(0, this.output_size, size)
            t = np.eye(this.output_size)[labels]
            runs = {n: (lambda net=networks[label][n]: net.run(x, t, params, reduction="mean"))
                    for n in names}
            if torch:
                step = torch_step(torch, this, x, labels)
                reference_loss, reference = step()
                for n in names:  # the same numbers as PyTorch, or the timing means nothing
                    result = runs[n]()
                    assert abs(reference_loss - float(result.loss)) <= 1e-10 * reference_loss
                    for mine, theirs in zip(result.layer_gradients, reference):
                        for role in theirs:
                            np.testing.assert_allclose(mine[role], theirs[role].numpy(),
                                                       rtol=1e-8, atol=1e-14)
                runs["torch"] = step
            times = timed_in_turns(runs, args.rounds)
            peaks = {n: peak_memory(runs[n]) for n in names}
            line = f"  {size:>5} " + "".join(f"{best_median(times[n])} " for n in names)
            if torch:
                line += f"{best_median(times['torch'])} "
                for n in names:
                    line += (f"{min(times[n]) / min(times['torch']):9.2f}x "
                             f"{statistics.median(times[n]) / statistics.median(times['torch']):8.2f}x ")
            line += "".join(f"{peaks[n] / 2 ** 20:8.1f} MB" for n in names)
            print(line)
        print(f"  (input batch of 1024: {1024 * 8 * int(np.prod(this.input_shape)) / 2 ** 20:.1f}"
              f" MB; load average now {load()})")
    if torch:
        blas_products(np, torch, args.rounds, rng)
    if args.symbolic:
        symbolic_comparison(np, contenders["this"], networks, rng)


def blas_products(np, torch, rounds, rng):
    """The MLP's two products with its 256×784 weights alone (forward x·Wᵀ, weight
    gradient δᵀ·x), NumPy's BLAS against PyTorch's: the floor of the MLP's ratio, whatever
    the fast path does around them."""
    print("\nthe MLP's products alone, x @ W.T then d.T @ x (float64), ms, best and median "
          f"of {rounds} rounds")
    print(f"  {'batch':>5} {'numpy best':>12}{'median':>10}{'torch best':>12}{'median':>10}"
          f"{'numpy/torch':>12}")
    w = rng.normal(0, 1, (256, 784))
    for size in BATCHES[1:]:
        x, d = rng.normal(0, 1, (size, 784)), rng.normal(0, 1, (size, 256))
        tx, tw, td = (torch.from_numpy(a) for a in (x, w, d))
        times = timed_in_turns({"numpy": lambda: (x @ w.T, d.T @ x),
                                "torch": lambda: (tx @ tw.T, td.T @ tx)}, rounds)
        print(f"  {size:>5} {best_median(times['numpy'])} {best_median(times['torch'])} "
              f"{min(times['numpy']) / min(times['torch']):10.2f}x")


# ---------------------------------------------------------------------------
# The naive way: the symbolic engine, one example at a time (extrapolated)


def edge_count(network) -> int:
    """Local partials of the symbolic graph of a full network (what per-example work scales
    with): every (child, parent) pair that is not a target."""
    import numpy as np
    total = 0
    for k in network.kernels:
        kind = k.layer.kind
        if kind == "dense":
            n_in, units = k.in_shape[0], k.units
            total += units * (2 * n_in + 1)  # z_j: each input, each weight, the bias
            if k.activation == "softmax":
                total += units * units
            elif k.activation != "identity":
                total += units
        elif kind == "conv2d":
            o, ho, wo = k.out_shape
            c = k.in_shape[0]
            kh, kw = k.kernel
            total += o * ho * wo * (2 * c * kh * kw + ("biases" in k.names))
            total += o * ho * wo if k.activation != "identity" else 0
        elif kind in ("maxpool2d", "avgpool2d"):
            total += int(np.prod(k.out_shape)) * k.kernel[0] * k.kernel[1]
    n_out = network.output_size
    return total + n_out + n_out  # loss terms (one output each) and the total


def symbolic_comparison(np, fastpath, networks, rng):
    package = fastpath.__name__.rsplit(".", 1)[0]
    derivation = importlib.import_module(f"{package}.derivation")
    graph_module = importlib.import_module(f"{package}.graph")
    examples = 3
    print("\nagainst per-example symbolic evaluation (extrapolated; fast path at batch 1024, "
          "best time above):")
    for label, smalls in (
            ("MLP 784-256-10", [(mlp_dict(rng, 12, 6, 10), "MLP 12-6-10"),
                                (mlp_dict(rng, 24, 12, 10), "MLP 24-12-10")]),
            ("CNN 1x28x28", [(cnn_dict(rng, 4, 8, 10), "CNN 1x4x4 conv8x3x3 maxpool2 dense10"),
                             (cnn_dict(rng, 6, 8, 10), "CNN 1x6x6 conv8x3x3 maxpool2 dense10")])):
        measured = []
        for small, small_label in smalls:
            spec = fastpath.compile_network(with_inputs(small, rng)).spec
            start = time.perf_counter()
            numeric = derivation.NumericGraph(graph_module.build_graph(spec))
            build = time.perf_counter() - start
            edges = len(numeric.edges)
            assert edge_count(fastpath.compile_network(spec)) == edges  # the count is right
            start = time.perf_counter()
            for _ in range(examples):
                values = numeric.forward(derivation.leaf_values(spec, spec.parameters,
                                                                spec.examples[0]))
                numeric.backward(numeric.partial_values(values))
            per_example = (time.perf_counter() - start) / examples
            measured.append((edges, per_example))
            print(f"  symbolic, measured on {small_label} ({edges} local partials, graph built "
                  f"once in {build:.1f} s): {per_example * 1e3:.1f} ms per example = "
                  f"{per_example / edges * 1e6:.1f} us per local partial")
        (e1, t1), (e2, t2) = measured
        # the marginal cost per partial (slope between the two sizes) leaves out fixed costs,
        # so it extrapolates lower, i.e. in the symbolic engine's favour, than t2/e2 would
        marginal = max((t2 - t1) / (e2 - e1), 0.0)
        full_edges = edge_count(networks[label]["this"])
        one = t2 + marginal * (full_edges - e2)
        network = networks[label]["this"]
        x = rng.uniform(0, 1, (1024,) + network.input_shape)
        t = np.eye(network.output_size)[rng.integers(0, network.output_size, 1024)]
        fast = min(timed_in_turns({"fast": lambda: network.run(x, t)}, 5)["fast"])
        print(f"  {label}: {t2 * 1e3:.1f} ms + {marginal * 1e6:.1f} us x ({full_edges} - {e2}) "
              f"more local partials = {one:.2f} s per example, {one * 1024:.0f} s for 1024 "
              f"examples; the fast path {fast * 1e3:.1f} ms: {one * 1024 / fast:,.0f}x faster")


# ---------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2",
                        help="thread counts, each in its own process (default 1,2)")
    parser.add_argument("--rounds", type=int, default=10, help="rounds (turns) per batch size")
    parser.add_argument("--compile-rounds", type=int, default=5)
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    parser.add_argument("--no-symbolic", dest="symbolic", action="store_false",
                        help="leave out the extrapolated symbolic comparison")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.threads = int(args.threads)
        worker(args)
        return
    print(f"load average before: {load()} (2-core machine shared with other jobs: contenders "
          f"timed in turns)")
    for k, threads in enumerate(int(n) for n in args.threads.split(",")):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
                   MKL_NUM_THREADS=str(threads))
        command = [sys.executable, str(Path(__file__).resolve()), "--worker",
                   "--threads", str(threads), "--rounds", str(args.rounds),
                   "--compile-rounds", str(args.compile_rounds)]
        if args.baseline:
            command += ["--baseline", str(args.baseline)]
        if k or not args.symbolic:  # the symbolic comparison once, with the first count
            command.append("--no-symbolic")
        sys.stdout.flush()
        if subprocess.run(command, env=env).returncode:
            raise SystemExit(f"the {threads}-thread run failed")
        print()
    print("x/torch: this checkout's (or the baseline's) time over PyTorch's; below 1: faster.")
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
