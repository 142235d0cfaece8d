"""Benchmark of whole commands: wall time of one `backprop-explain …` process, start to exit.

    python benchmarks/bench_cli.py [--rounds R] [--quick] [--baseline DIR] [--from-source]

Runs each command as a fresh ``python -m backprop_explain.cli …`` process (imports
included, as a user pays them), all commands in turn and round after round (interleaved),
and prints the best and the median wall time of each. The modules run from their compiled
bytecode, as in an installed package (pip compiles it at install): a warm-up run of each
command writes it to a temporary ``PYTHONPYCACHEPREFIX``, whatever
``PYTHONDONTWRITEBYTECODE`` says. ``--from-source``: compile every module at every run
instead (a checkout under ``PYTHONDONTWRITEBYTECODE=1``; about 70 ms more per command).
Three reference lines: a Python process that imports nothing of ours, one that imports
SymPy, and one that also imports click and makes SymPy's first sum of products (which
imports sympy.tensor and sympy.combinatorics): the floor of every command that derives. The commands: --help, --version,
keys and explain of the bundled course example, explain of the CNN examples, and
explain --format json of generated MLPs 16-16-16 and 32-32-32 (benchmarks/bench_derivation.py
makes them).

``--baseline DIR``: the same commands on another checkout (e.g. main), interleaved with
this tree's, and the ratio baseline / this tree. A baseline command slower than
``--baseline-timeout`` seconds is run once and stopped there (shown as "> T").

Not part of the test suite: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_derivation import mlp_data  # noqa: E402


def commands(specs: Path, quick: bool) -> list[tuple[str, list[str]]]:
    listed = [
        ("--help", ["--help"]),
        ("--version", ["--version"]),
        ("keys course example", ["keys", "examples/mlp_3_2_2_cross_entropy.toml"]),
        ("explain course example", ["explain", "examples/mlp_3_2_2_cross_entropy.toml"]),
        ("explain conv_6x6_filter_3x3", ["explain", "examples/conv_6x6_filter_3x3.toml"]),
        ("explain cnn_2ch_stride2_maxpool", ["explain",
                                             "examples/cnn_2ch_stride2_maxpool.toml"]),
        ("explain MLP 16-16-16 json", ["explain", str(specs / "mlp16.json"), "--format", "json"]),
    ]
    if not quick:
        listed.append(("explain MLP 32-32-32 json",
                       ["explain", str(specs / "mlp32.json"), "--format", "json"]))
    return listed


REFERENCES = [("(python, nothing imported)", ["-c", "pass"]),
              ("(python -c 'import sympy')", ["-c", "import sympy"]),
              # what any derivation pays before our code: the CLI's click, and the modules
              # SymPy imports at its first sum of products (sympy.tensor, combinatorics)
              ("(+ click, SymPy's first sum)",
               ["-c", "import click, sympy; x, y = sympy.symbols('x y'); x + x * y"])]


def run(root: Path, argv: list[str], timeout: float | None, env: dict | None = None,
        python: bool = False) -> float | None:
    """Wall seconds of one process, or None when it ran past ``timeout``. ``python``:
    ``argv`` are the interpreter's own arguments (a reference line)."""
    command = [sys.executable, *argv] if python else [
        sys.executable, "-m", "backprop_explain.cli", *argv]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=root, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode:
        raise SystemExit(f"{' '.join(argv)} failed in {root}:\n{done.stderr.decode()}")
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="3 rounds, no 32-32-32")
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    parser.add_argument("--baseline-timeout", type=float, default=30.0)
    parser.add_argument("--from-source", action="store_true",
                        help="no bytecode: compile every module at every run")
    args = parser.parse_args()
    rounds = 3 if args.quick else args.rounds
    load = lambda: ", ".join(f"{v:.2f}" for v in os.getloadavg())  # noqa: E731
    print(f"load average before: {load()}; {rounds} rounds, commands"
          f"{' and contenders' if args.baseline else ''} interleaved")
    with tempfile.TemporaryDirectory() as tmp:
        specs = Path(tmp)
        for name, size in (("mlp16.json", 16), ("mlp32.json", 32)):
            (specs / name).write_text(json.dumps(mlp_data(size, size, size)))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(specs / "bytecode")
        if args.from_source:
            env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        listed = commands(specs, args.quick)
        mine: dict[str, list[float]] = {label: [] for label, _ in listed + REFERENCES}
        base: dict[str, list[float | None]] = {label: [] for label, _ in listed}
        if not args.from_source:  # warm-up: the bytecode, as an install writes it
            for _, argv in listed:
                run(ROOT, argv, None, env)
                if args.baseline:
                    run(args.baseline.resolve(), argv, args.baseline_timeout, env)
        for _ in range(rounds):
            for label, argv in REFERENCES:
                mine[label].append(run(ROOT, argv, None, env, python=True))
            for label, argv in listed:
                mine[label].append(run(ROOT, argv, None, env))
                if args.baseline and None not in base[label]:
                    base[label].append(run(args.baseline.resolve(), argv,
                                           args.baseline_timeout, env))
    print(f"\n{'command':<34}{'best s':>9}{'median s':>10}", end="")
    print(f"{'baseline best':>15}{'median':>9}{'ratio':>8}" if args.baseline else "")
    for label, _ in REFERENCES + listed:
        line = f"{label:<34}{min(mine[label]):>9.3f}{statistics.median(mine[label]):>10.3f}"
        if args.baseline and label in base:
            times = base[label]
            if None in times:
                line += f"{'> ' + format(args.baseline_timeout, 'g'):>15}{'':>9}"
                line += f"{'> ' + format(args.baseline_timeout / min(mine[label]), '.0f'):>7}x"
            else:
                line += (f"{min(times):>15.3f}{statistics.median(times):>9.3f}"
                         f"{min(times) / min(mine[label]):>7.1f}x")
        print(line)
    print(f"\nload average after: {load()} (2-core machine: other processes slow every "
          f"command alike, rounds interleaved)")


if __name__ == "__main__":
    main()
