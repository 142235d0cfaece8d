"""A fuzz campaign: thousands of hostile and careless cases through the real CLI, counted.

    python benchmarks/fuzz_campaign.py --cases 3000 --seed 1 [--timeout 20] [--show 30]
    python benchmarks/fuzz_campaign.py --seed 1 --case 123    # one case, its files and output

Prints how many cases ended ok (exit 0, or verify's 1), refused (exit 2, one line, nothing
written) and how many were faults: tracebacks, hangs (past --timeout seconds), messy
refusals (several lines, or a file left behind), clobbered inputs, other exit statuses;
then the most frequent faults, each with the number of a case that shows it. Case K of
seed S is always the same (``random.Random(f"{S}-{K}")``). The cases are those of
tests/fuzzcases.py (test_fuzz.py runs a small deterministic share of them on every test run).
"""

from __future__ import annotations

import argparse
import collections
import random
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fuzzcases import any_case, run_isolated  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--show", type=int, default=30)
    parser.add_argument("--case", type=int, help="run only this case, and show it")
    args = parser.parse_args()
    if args.case is not None:
        show_case(args.seed, args.case, args.timeout)
        return
    # A runaway allocation is a MemoryError (a fault counted), not the machine swapping.
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    warnings.simplefilter("default")
    # Every case runs in a child forked from here: import the package once, not per case.
    import backprop_explain.api  # noqa: F401
    import backprop_explain.cli  # noqa: F401
    import backprop_explain.sheet  # noqa: F401
    import backprop_explain.verify  # noqa: F401
    outcomes = collections.Counter()
    faults = collections.Counter()
    examples = {}
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        for k in range(args.cases):
            case = any_case(random.Random(f"{args.seed}-{k}"))
            outcome, detail = run_isolated(case, Path(tmp) / str(k), args.timeout)
            outcomes[outcome] += 1
            if outcome not in ("ok", "refused"):
                key = f"{outcome}: {detail[:110]}"
                faults[key] += 1
                examples.setdefault(key, f"case {k}: {case.describe()[:150]}")
            if (k + 1) % 100 == 0:
                print(f"{k + 1} cases, {dict(outcomes)}, {time.time() - start:.0f} s",
                      file=sys.stderr, flush=True)
    total = sum(outcomes.values())
    bad = total - outcomes["ok"] - outcomes["refused"]
    print(f"cases {total}: ok {outcomes['ok']}, refused {outcomes['refused']}, "
          f"tracebacks {outcomes['traceback']}, hangs {outcomes['hang']}, "
          f"messy {outcomes['messy']}, clobbered {outcomes['clobbered']}, "
          f"other {bad - outcomes['traceback'] - outcomes['hang'] - outcomes['messy'] - outcomes['clobbered']}"
          f" ({time.time() - start:.0f} s)")
    for key, count in faults.most_common(args.show):
        print(f"{count:5d}  {key}\n       e.g. {examples[key]}")


def show_case(seed: int, k: int, timeout: float) -> None:
    """One case: its command line, the head of each file, and what happened."""
    case = any_case(random.Random(f"{seed}-{k}"))
    print(case.describe())
    for name, text in case.files.items():
        print(f"--- {name} ({len(text):,} characters)\n{text[:1500]}")
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        start = time.time()
        outcome, detail = run_isolated(case, Path(tmp) / "case", timeout)
    print(f"=== {outcome} ({time.time() - start:.1f} s): {detail}")


if __name__ == "__main__":
    main()
