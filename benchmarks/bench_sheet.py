"""Benchmark of exercise sheets: 200 Markdown variants of examples/sheet_mlp_3_2_2.toml.

    python benchmarks/bench_sheet.py [--variants N] [--seed S]

Prints, measured in this one run (wall clock and CPU time of this process):
- the whole ``write_sheets`` call (draws, fast-path numbers, degenerate-draw rejection, one
  symbolic derivation and two documents + one SVG per variant, combined documents, files);
- its stages: drawing and checking the variants with the batched fast path alone, and
  deriving + rendering one variant the naive way (``api.explain``: graph built and
  compiled again, nothing cached), as a ratio to the per-variant cost inside write_sheets.

The target is well under 10 s for 200 variants. Not part of the test suite: it asserts
nothing about time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backprop_explain import api  # noqa: E402
from backprop_explain.sheet import draw_variants, write_sheets  # noqa: E402
from backprop_explain.sheet_spec import load_template  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--variants", type=int, default=200)
parser.add_argument("--seed", type=int, default=1)
args = parser.parse_args()
template_path = ROOT / "examples" / "sheet_mlp_3_2_2.toml"


def timed(function):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - wall, time.process_time() - cpu


template = load_template(template_path)
variants, draw_wall, draw_cpu = timed(lambda: draw_variants(template, args.variants, args.seed))
with tempfile.TemporaryDirectory() as out:
    files, wall, cpu = timed(lambda: write_sheets(template_path, out, args.variants,
                                                  args.seed, "md", "en"))
naive_count = 5
_, naive_wall, naive_cpu = timed(lambda: [api.explain(v.spec) for v in variants[:naive_count]])

per_variant = wall / args.variants
naive_per_variant = naive_wall / naive_count
print(f"sheet of {args.variants} Markdown variants ({template_path.name}, seed {args.seed}):")
print(f"  write_sheets total      {wall:7.2f} s wall, {cpu:6.2f} s CPU, {len(files)} files, "
      f"{per_variant * 1000:.1f} ms per variant")
print(f"  draws + fast path only  {draw_wall:7.2f} s wall, {draw_cpu:6.2f} s CPU "
      f"({draw_wall / wall:.1%} of the total)")
print(f"  naive api.explain       {naive_per_variant * 1000:7.1f} ms per variant "
      f"(measured on {naive_count}); write_sheets is {naive_per_variant / per_variant:.1f}× "
      f"faster per variant while writing an exercise, a solution and an SVG")
