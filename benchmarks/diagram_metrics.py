"""How legible the network figures are: label collisions counted on the drawn SVG and TikZ.

    python benchmarks/diagram_metrics.py [--before REV] [--random N]

Draws every example spec (English and French), N random MLPs up to 5-6-4 (seeded, the
5-6-4 itself among them) and counts, in each format, with tests/legibility.py:
overlaps (two texts, or a text on a circle or a grid cell not its own), crossings (a line
or an arrowhead through a text) and texts outside (the drawing, their circle, their cell).
With ``--before REV`` (e.g. ``main``) the same figures drawn by that revision's code are
counted the same way, side by side. Not part of the test suite: tests/test_legibility.py
asserts zero for this branch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402

from backprop_explain.errors import SpecError  # noqa: E402
from backprop_explain.spec import as_spec  # noqa: E402
from legibility import counts, from_svg, from_tikz, random_mlp, random_sizes  # noqa: E402

# Draws each case with the package in the current directory: JSON in, JSON out.
RENDER = """
import json, sys
sys.path.insert(0, ".")
from backprop_explain import api
from backprop_explain.diagram import diagram_for
out = []
for spec, lang in json.load(sys.stdin):
    spec = api.as_spec(spec)
    out.append([diagram_for(spec, "svg", lang), diagram_for(spec, "tex", lang)])
json.dump(out, sys.stdout)
"""


def cases(random_count: int) -> list[tuple[str, str, object, str]]:
    """(group, name, spec: a path or a dict, language)."""
    out = []
    for path in sorted((ROOT / "examples").glob("*.toml")):
        try:
            spec = as_spec(str(path))
        except SpecError:  # answers, sheet templates
            continue
        group = "CNN examples" if len(spec.input_shape) == 3 else "MLP examples"
        for lang in ("en", "fr"):
            out.append((group, path.stem, str(path), lang))
    rng = np.random.default_rng(2024)
    for k in range(random_count):
        sizes = (5, 6, 4) if k == 0 else random_sizes(rng)
        out.append(("random MLPs ≤ 5-6-4", "-".join(map(str, sizes)),
                    random_mlp(rng, sizes), "en"))
    return out


def render(code_dir: Path, todo) -> list[tuple[str, str]]:
    """SVG and TikZ of each case, drawn by the package in ``code_dir`` (the examples are
    read from this checkout either way: the same specs on both sides)."""
    result = subprocess.run([sys.executable, "-c", RENDER], cwd=code_dir, check=True,
                            input=json.dumps([[spec, lang] for _, _, spec, lang in todo]),
                            capture_output=True, text=True)
    return json.loads(result.stdout)


def tally(todo, drawings) -> dict:
    table: dict = {}
    for (group, *_), (svg, tikz) in zip(todo, drawings):
        for fmt, drawing in (("SVG", from_svg(svg)), ("TikZ", from_tikz(tikz))):
            row = table.setdefault((group, fmt), {"figures": 0, "overlaps": 0, "crossings": 0,
                                                  "outside": 0})
            row["figures"] += 1
            for kind, count in counts(drawing).items():
                row[kind] += count
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", help="a git revision whose figures to count as well")
    parser.add_argument("--random", type=int, default=40, help="random MLPs (default 40)")
    args = parser.parse_args()
    todo = cases(args.random)
    after = tally(todo, render(ROOT, todo))
    before = None
    if args.before:
        with tempfile.TemporaryDirectory() as tmp:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before],
                                     check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
            before = tally(todo, render(Path(tmp), todo))
    print(f"{'figures':<24}{'format':<7}{'n':>4}  {'overlaps':>14}  {'crossings':>14}  "
          f"{'outside':>14}")
    totals = {}
    for (group, fmt), row in after.items():
        cells = []
        for kind in ("overlaps", "crossings", "outside"):
            now = row[kind]
            totals.setdefault(kind, [0, 0])[1] += now
            if before:
                then = before[(group, fmt)][kind]
                totals[kind][0] += then
                cells.append(f"{then:>6} → {now:<5}")
            else:
                cells.append(f"{now:>14}")
        print(f"{group:<24}{fmt:<7}{row['figures']:>4}  " + "  ".join(cells))
    if before:
        print("total: " + ", ".join(f"{kind} {a} → {b}" for kind, (a, b) in totals.items()))
    else:
        print("total: " + ", ".join(f"{kind} {b}" for kind, (_, b) in totals.items()))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
