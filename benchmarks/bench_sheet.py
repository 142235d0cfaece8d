"""Benchmark of exercise sheets: 200 variants of examples/sheet_mlp_3_2_2.toml, Markdown and Moodle.

    python benchmarks/bench_sheet.py [--variants N] [--seed S] [--rounds R] [--baseline DIR]

Prints, measured in this one run (wall clock and CPU time of this process; on a loaded
machine the CPU times are the steadier):
- the whole ``write_sheets`` call in Markdown (draws, fast-path numbers, degenerate-draw
  rejection, one symbolic derivation and two documents + one SVG per variant, combined
  documents, files), in Moodle XML as Cloze questions (one per variant: the exercise and
  its worked solution in HTML, the SVG, verify's catalogue and every blank's slips) and
  per key (one numerical question per key per variant), timed in turns for R rounds, best
  and median, and each Moodle's time as a ratio to Markdown's;
- its stages: drawing and checking the variants with the batched fast path alone, and
  deriving + rendering one variant the naive way (``api.explain``: graph built again; the
  compiled expression shapes are cached in the process), as a ratio to the per-variant
  cost inside write_sheets.

``--baseline DIR``: the same exports by another checkout (e.g. main), in a process of its
own kept for every round, timed in turns with this tree's, and the ratio baseline / this
tree of each.

The target is well under 10 s for 200 variants in Markdown and per-key Moodle, the Cloze
questions (which replay verify's slips for each blank) within 1.2× of Markdown (issue 11).
Not part of the test suite: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--variants", type=int, default=200)
parser.add_argument("--seed", type=int, default=1)
parser.add_argument("--rounds", type=int, default=3, help="rounds of Markdown and Moodle, in turns")
parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # the baseline's process
args = parser.parse_args()
ROOT = (args.worker or Path(__file__).resolve().parent.parent).resolve()
sys.path.insert(0, str(ROOT))

from backprop_explain import api  # noqa: E402
from backprop_explain.sheet import draw_variants, write_sheets  # noqa: E402
from backprop_explain.sheet_spec import load_template  # noqa: E402

template_path = ROOT / "examples" / "sheet_mlp_3_2_2.toml"


def timed(function):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def export(run: str):
    fmt, _, style = run.partition(":")
    with tempfile.TemporaryDirectory() as out:
        return write_sheets(template_path, out, args.variants, args.seed, fmt, "en",
                            moodle_style=style or "cloze")


if args.worker:  # one export per line read ("md", "moodle", "moodle:per-key"): its times
    for line in sys.stdin:
        files, wall, cpu = timed(lambda: export(line.strip()))
        print(wall, cpu, len(files), flush=True)
    sys.exit()
baseline = subprocess.Popen(
    [sys.executable, __file__, "--worker", str(args.baseline), "--variants", str(args.variants),
     "--seed", str(args.seed)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    cwd=args.baseline) if args.baseline else None


def export_baseline(fmt: str) -> tuple[float, float]:
    baseline.stdin.write(fmt + "\n")
    baseline.stdin.flush()
    wall, cpu, _ = baseline.stdout.readline().split()
    return float(wall), float(cpu)


load = lambda: ", ".join(f"{v:.2f}" for v in os.getloadavg())  # noqa: E731
print(f"load average before: {load()}")
template = load_template(template_path)
variants, draw_wall, draw_cpu = timed(lambda: draw_variants(template, args.variants, args.seed))
runs = {"md": [], "moodle": [], "moodle:per-key": []}
base_runs = {fmt: [] for fmt in runs}
files = {}
for _ in range(args.rounds):
    for fmt in runs:
        files[fmt], wall, cpu = timed(lambda: export(fmt))
        runs[fmt].append((wall, cpu))
        if baseline:
            base_runs[fmt].append(export_baseline(fmt))
naive_count = 5
_, naive_wall, naive_cpu = timed(lambda: [api.explain(v.spec) for v in variants[:naive_count]])

best = {fmt: min(runs[fmt]) for fmt in runs}
median = {fmt: statistics.median(w for w, _ in runs[fmt]) for fmt in runs}
wall = best["md"][0]
per_variant = wall / args.variants
naive_per_variant = naive_wall / naive_count
print(f"sheet of {args.variants} variants ({template_path.name}, seed {args.seed}), "
      f"best and median of {args.rounds} rounds, Markdown and Moodle in turns:")
for fmt, label in (("md", "Markdown"), ("moodle", "Moodle Cloze"),
                   ("moodle:per-key", "Moodle per key")):
    print(f"  write_sheets {label:<14} {best[fmt][0]:7.2f} s wall (median {median[fmt]:.2f} s), "
          f"{best[fmt][1]:6.2f} s CPU, {len(files[fmt])} files, "
          f"{best[fmt][0] / args.variants * 1000:.1f} ms per variant")
for fmt, label in (("moodle", "Cloze"), ("moodle:per-key", "per key")):
    print(f"  Moodle {label} / Markdown {best[fmt][0] / wall:7.2f}× (best), "
          f"{median[fmt] / median['md']:.2f}× (median), "
          f"{best[fmt][1] / best['md'][1]:.2f}× (CPU, best)")
print(f"  draws + fast path only  {draw_wall:7.2f} s wall, {draw_cpu:6.2f} s CPU "
      f"({draw_wall / wall:.1%} of the Markdown total)")
print(f"  naive api.explain       {naive_per_variant * 1000:7.1f} ms per variant "
      f"(measured on {naive_count}, graph rebuilt, compiled shapes cached in the process) = "
      f"{naive_per_variant / per_variant:.1f}× write_sheets' Markdown per variant, which "
      f"also writes an exercise and an SVG")
if baseline:
    baseline.stdin.close()
    baseline.wait()
    print(f"baseline {args.baseline} (its own process, in turns with this tree), best of "
          f"{args.rounds}:")
    base_best = {fmt: min(base_runs[fmt]) for fmt in runs}
    for fmt, label in (("md", "Markdown"), ("moodle", "Moodle Cloze"),
                       ("moodle:per-key", "Moodle per key")):
        print(f"  {label:<15} {base_best[fmt][0]:7.2f} s wall, {base_best[fmt][1]:6.2f} s CPU "
              f"→ this tree {best[fmt][0]:7.2f} s wall, {best[fmt][1]:6.2f} s CPU: "
              f"{base_best[fmt][0] / best[fmt][0]:.2f}× faster (wall), "
              f"{base_best[fmt][1] / best[fmt][1]:.2f}× (CPU)")
    for fmt, label in (("moodle", "Cloze"), ("moodle:per-key", "per key")):
        print(f"  baseline Moodle {label} / Markdown {base_best[fmt][0] / base_best['md'][0]:.2f}×"
              f" (best, wall), {base_best[fmt][1] / base_best['md'][1]:.2f}× (CPU)")
print(f"load average after: {load()}")
