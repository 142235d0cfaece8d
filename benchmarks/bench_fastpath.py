"""Benchmark of the NumPy fast path (float64), forward + backward per batch.

    python benchmarks/bench_fastpath.py [--threads N] [--repeats R]

Prints, measured in this one run:
- the fast path's time per batch and peak memory (tracemalloc) for an MLP 784-256-10
  (sigmoid, softmax + cross-entropy) and a CNN 1×28×28 → conv 8×3×3 → ReLU → max pool 2
  → dense 10 (softmax + cross-entropy), at batch sizes 1, 64, 1024;
- per-example symbolic evaluation (the naive way: NumericGraph forward, local partials and
  backward sweep, once per example) as a ratio. Building the SymPy graph of the full networks
  takes too long, so that time is MEASURED on smaller networks of the same kinds and
  EXTRAPOLATED linearly in the number of local partials (graph edges), which is what the
  per-example work grows with: two small networks give the cost of one more partial (the
  slope, fixed costs left out), applied to the full network's count; the table says which
  networks were measured;
- PyTorch CPU (float64, the same number of threads) as a ratio, when torch is installed.

Not part of the test suite: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="BLAS threads for NumPy and torch.set_num_threads (default: all CPUs)")
parser.add_argument("--repeats", type=int, default=30, help="timed runs per figure (best)")
parser.add_argument("--symbolic-examples", type=int, default=3,
                    help="examples evaluated symbolically per small network")
ARGS = parser.parse_args()
# BLAS thread pools read these when NumPy/torch load: set them first
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from backprop_explain.derivation import NumericGraph, leaf_values  # noqa: E402
from backprop_explain.fastpath import FastNetwork  # noqa: E402
from backprop_explain.graph import build_graph  # noqa: E402
from backprop_explain.spec import spec_from_dict  # noqa: E402

try:
    import torch
    torch.set_num_threads(ARGS.threads)
except ImportError:  # pragma: no cover
    torch = None

BATCHES = (1, 64, 1024)
RNG = np.random.default_rng(0)


def mlp_dict(n_in=784, hidden=256, n_out=10):
    return {
        "inputs": {"size": n_in},
        "layers": [
            {"type": "dense", "units": hidden, "activation": "sigmoid",
             "weights": (RNG.normal(0, n_in ** -0.5, (hidden, n_in))).tolist(),
             "biases": RNG.normal(0, 0.1, hidden).tolist()},
            {"type": "dense", "units": n_out, "activation": "softmax",
             "weights": (RNG.normal(0, hidden ** -0.5, (n_out, hidden))).tolist(),
             "biases": RNG.normal(0, 0.1, n_out).tolist()}],
        "loss": {"type": "cross_entropy", "targets": [1.0] + [0.0] * (n_out - 1)},
        "training": {"learning_rate": 0.1}}


def cnn_dict(side=28, filters=8, n_out=10):
    pooled = (side - 2) // 2
    return {
        "inputs": {"shape": [1, side, side]},
        "layers": [
            {"type": "conv2d", "filters": RNG.normal(0, 1 / 3, (filters, 1, 3, 3)).tolist(),
             "biases": RNG.normal(0, 0.1, filters).tolist(), "activation": "relu"},
            {"type": "maxpool2d", "kernel": 2},
            {"type": "flatten"},
            {"type": "dense", "units": n_out, "activation": "softmax",
             "weights": RNG.normal(0, (filters * pooled ** 2) ** -0.5,
                                   (n_out, filters * pooled ** 2)).tolist(),
             "biases": RNG.normal(0, 0.1, n_out).tolist()}],
        "loss": {"type": "cross_entropy", "targets": [1.0] + [0.0] * (n_out - 1)},
        "training": {"learning_rate": 0.1}}


def make_spec(data):
    data = dict(data)
    shape = data["inputs"].get("shape") or [data["inputs"]["size"]]
    data["inputs"] = dict(data["inputs"], values=RNG.uniform(0, 1, shape).tolist())
    return spec_from_dict(data)


def batch_for(network: FastNetwork, size: int):
    x = RNG.uniform(0, 1, (size,) + network.input_shape)
    labels = RNG.integers(0, network.output_size, size)
    t = np.eye(network.output_size)[labels]
    return x, t, labels


def best_times(functions, repeats):
    """Best-of-``repeats`` seconds of each function, timed in turns (a, b, a, b, ...) so that
    the load of other processes on the machine falls on all of them alike."""
    for function in functions:
        function()  # warm-up
    times = [[] for _ in functions]
    for _ in range(repeats):
        for function, spent in zip(functions, times):
            start = time.perf_counter()
            function()
            spent.append(time.perf_counter() - start)
    return [min(spent) for spent in times]


def peak_memory(function):
    tracemalloc.start()
    function()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


# ---------------------------------------------------------------------------
# PyTorch: the same networks, float64, idiomatic (cross_entropy on logits, class indices)


def torch_step(network: FastNetwork, x, labels):
    F = torch.nn.functional
    params = [{r: torch.tensor(a[0], requires_grad=True) for r, a in layer.items()}
              for layer in network.default_parameters()]
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(labels)
    kinds = [k.kind for k in network.kernels]

    def step():
        for p in params:
            for v in p.values():
                v.grad = None
        a = xt
        for kind, kernel, p in zip(kinds, network.kernels, params):
            if kind == "dense":
                a = F.linear(a, p["weights"], p["biases"])
                if kernel is not network.kernels[-1]:
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


# ---------------------------------------------------------------------------
# The naive way: the symbolic engine, one example at a time


def symbolic_per_example(data, examples):
    """Seconds per example of NumericGraph forward + partials + backward, and the edge count."""
    spec = make_spec(data)
    start = time.perf_counter()
    graph = build_graph(spec)
    numeric = NumericGraph(graph)
    build = time.perf_counter() - start
    edges = len(numeric.edges)
    start = time.perf_counter()
    for _ in range(examples):
        values = numeric.forward(leaf_values(spec, spec.parameters, spec.examples[0]))
        numeric.backward(numeric.partial_values(values))
    return (time.perf_counter() - start) / examples, edges, build


def edge_count(network: FastNetwork) -> int:
    """Local partials of the symbolic graph of a full network (what per-example work scales
    with): every (child, parent) pair that is not a target."""
    total = 0
    for k in network.kernels:
        if k.kind == "dense":
            n_in, units = k.in_shape[0], k.units
            total += units * (2 * n_in + 1)  # z_j: each input, each weight, the bias
            if k.activation == "softmax":
                total += units * units
            elif k.activation != "identity":
                total += units
        elif k.kind == "conv2d":
            o, ho, wo = k.out_shape
            c = k.in_shape[0]
            kh, kw = k.kernel
            total += o * ho * wo * (2 * c * kh * kw + ("biases" in k.names))
            total += o * ho * wo if k.activation != "identity" else 0
        elif k.kind in ("maxpool2d", "avgpool2d"):
            total += int(np.prod(k.out_shape)) * k.kernel[0] * k.kernel[1]
    n_out = network.output_size
    return total + n_out + n_out  # loss terms (one output each) and the total


def measure(network, params, size):
    """(fast path seconds, torch seconds or None, peak bytes) for one batch size."""
    x, t, labels = batch_for(network, size)
    run = lambda: network.run(x, t, params, reduction="mean")  # noqa: E731
    if not torch:
        return best_times([run], ARGS.repeats)[0], None, peak_memory(run)
    step = torch_step(network, x, labels)
    reference_loss, reference = step()
    result = run()  # the same numbers as PyTorch, or the timing means nothing
    assert abs(reference_loss - float(result.loss)) <= 1e-10 * abs(reference_loss)
    for mine, theirs in zip(result.layer_gradients, reference):
        for role in theirs:
            np.testing.assert_allclose(mine[role], theirs[role].numpy(), rtol=1e-8,
                                       atol=1e-14)
    fast, slow = best_times([run, step], ARGS.repeats)
    return fast, slow, peak_memory(run)


def main():
    print(f"NumPy {np.__version__}, float64, BLAS threads = {ARGS.threads}"
          + (f"; torch {torch.__version__}, torch.set_num_threads({ARGS.threads})"
             if torch else "; torch not installed"))
    print(f"best of {ARGS.repeats} runs (NumPy and torch in turns) of forward + backward "
          f"(loss and every parameter gradient) per batch\n")
    networks = []
    for label, data, smalls in (
            ("MLP 784-256-10 sigmoid/softmax+CE", mlp_dict(),
             [(mlp_dict(12, 6, 10), "MLP 12-6-10"), (mlp_dict(24, 12, 10), "MLP 24-12-10")]),
            ("CNN 1x28x28 conv8x3x3 relu maxpool2 dense10 softmax+CE", cnn_dict(),
             [(cnn_dict(4, 8, 10), "CNN 1x4x4 conv8x3x3 maxpool2 dense10"),
              (cnn_dict(6, 8, 10), "CNN 1x6x6 conv8x3x3 maxpool2 dense10")])):
        network = FastNetwork(make_spec(data))
        params = [{r: a[0] for r, a in layer.items()} for layer in network.default_parameters()]
        full_edges = edge_count(network)
        notes, measured = [], []
        for small, small_label in smalls:  # two sizes: the cost of one more local partial
            per_example, small_edges, build = symbolic_per_example(small, ARGS.symbolic_examples)
            assert edge_count(FastNetwork(make_spec(small))) == small_edges  # the count is right
            measured.append((small_edges, per_example))
            notes.append(f"  symbolic, measured on {small_label} ({small_edges} local partials,"
                         f" graph built once in {build:.1f} s): {per_example * 1e3:.1f} ms per "
                         f"example = {per_example / small_edges * 1e6:.1f} us per local partial")
        (e1, t1), (e2, t2) = measured
        # the marginal cost per partial (slope between the two sizes) leaves out fixed costs,
        # so it extrapolates lower, i.e. in the symbolic engine's favour, than t2/e2 would
        marginal = max((t2 - t1) / (e2 - e1), 0.0)
        symbolic_one = t2 + marginal * (full_edges - e2)
        notes.append(f"  -> {t2 * 1e3:.1f} ms + {marginal * 1e6:.1f} us x ({full_edges} - {e2}) "
                     f"more local partials = {symbolic_one:.2f} s per example of the full "
                     f"network (extrapolated)")
        networks.append((label, network, params, symbolic_one, "\n".join(notes)))
    default = {(label, size): measure(network, params, size)
               for label, network, params, *_ in networks for size in BATCHES}
    for label, network, params, symbolic_one, symbolic_note in networks:
        print(f"{label}: {sum(a.size for p in params for a in p.values())} parameters")
        print(symbolic_note)
        print(f"  {'batch':>6} {'fast path':>12} {'peak mem':>10} {'symbolic':>12} "
              f"{'speed-up':>10} {'torch':>10} {'fast/torch':>10}")
        for size in BATCHES:
            fast, slow, memory = default[label, size]
            symbolic = symbolic_one * size
            line = (f"  {size:>6} {fast * 1e3:>9.3f} ms {memory / 2**20:>7.1f} MB "
                    f"{symbolic:>10.1f} s {symbolic / fast:>9.0f}x")
            line += (f" {slow * 1e3:>7.3f} ms {fast / slow:>9.2f}x" if slow
                     else f" {'n/a':>10} {'n/a':>10}")
            print(line)
        print()
    print("peak mem = the most memory NumPy allocated during one call (tracemalloc);")
    print("speed-up = symbolic time / fast path time (how many times faster than per-example")
    print("           symbolic evaluation, extrapolated as said above);")
    print("fast/torch = fast path time divided by PyTorch's (targets: MLP <= 1.2, CNN <= 3).")
    print(f"(load average while measuring: {', '.join(f'{v:.2f}' for v in os.getloadavg())}; "
          f"other processes on the machine slow both sides alike, timed in turns)")


if __name__ == "__main__":
    main()
