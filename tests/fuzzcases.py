"""Hostile and careless inputs for every entry point, and how to run one through the CLI.

Shared by tests/test_fuzz.py (hypothesis drives ``rng``) and benchmarks/fuzz_campaign.py
(a few thousand seeded cases, counted). A case is a command line and the files it reads;
:func:`run_case` runs it through the real CLI in a fresh directory and says what happened:
``ok`` (exit 0, or verify's 1), ``refused`` (exit 2, one line, no output file), or a fault:
``traceback``, ``hang``, ``messy`` (exit 2 with several lines or a file left behind),
``clobbered`` (an input or a non-regular file replaced), ``exit N`` (another status).
"""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import tomllib
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SPECS = sorted(p.name for p in EXAMPLES.glob("*.toml")
               if not p.name.startswith("sheet_") and "answers" not in p.name)
SHEET = "sheet_mlp_3_2_2.toml"
ANSWERS = "course_3_2_2_answers.toml"


class Raw(str):
    """Text written into the file as it is (a number JSON or TOML cannot hold, …)."""


# ---------------------------------------------------------------------------
# The hostile corpus: what an attacker or a careless user writes

TEX_HOSTILE = [
    "x^^5cinput{^^2fetc^^2fpasswd}", "^^5cinput{/etc/passwd}", "x^^5c", "a^^2f", "^^M",
    "\\input{/etc/passwd}", "\\write18{touch /tmp/pwned}", "\\catcode`\\@=0", "a%b", "#1",
    "a~b", "a&b", "a$b", "x\\", "\\alpha\\input", "{\\csname input\\endcsname}", "x_{1}}",
    "\\mathrm{\\input{x}}", "x^^^^005c", "\\immediate\\openout1=x", "\\read16to\\x",
]
HTML_HOSTILE = [
    "<script>alert(1)</script>", "x`<img src=x onerror=alert(1)>", "a & b &amp; &#60;",
    "``<b>bold</b>``", "[link](javascript:alert(1))", "<!-- comment", "]]><x>",
    "</text><script>alert(1)</script>", "<svg onload=alert(1)>", "*emph* _x_ | pipe |",
]
CONTROL = ["a\x01b", "a\x08b", "a\x0bb", "a\ufffeb", "a\x00b", "a\x1bb", "a\u202eb",
           "\u0445_1", "x\u200b", "\r\n", "a\tb", "\ud800" if False else "a\uffffb"]
NAMES = TEX_HOSTILE + HTML_HOSTILE + CONTROL + ["", " ", "x" * 5000, "x_{1,1}", "é", "ℓ"]
NUMBERS = [0, -1, 1, 0.0, -0.0, 1e308, -1e308, 1e-320, 5e-324, 1e200, 1e300, 1000,
           10 ** 400, -(10 ** 400), Raw("9" * 5000), Raw("1e400"), Raw("-1e400"),
           Raw("1e-400"), 2 ** 63, 2 ** 64 + 1, 10 ** 18, 10 ** 8, 1e6, 123456789.123456789,
           True, False, "1", "nan", None, [], {}, [1, 2], {"uniform": [0, 10 ** 400]}]
COUNTS = [0, 1, 2, 3, -1, 10 ** 8, 10 ** 18, 10 ** 400, 200, 100000, True, 1.5, "3"]
ANSWER_TEXTS = ["1e400", "1e999999999999", "-1e999999999999", "1e-400", "1e-999999999",
                "0." + "1" * 40, "1" * 5000, "0,5", "−0.5", "1 000", "nan", "inf", "", "0x10",
                "1e", ".", "+.5e-3", "12345678901234567890.12345678901234567890"]
OUTPUTS = ["", "sub/dir/out.x", "dir/", "file/out.x", "/proc/x/out", "/proc/version",
           ".", "..", "spec", "answers", "template", "fifo", "link", "outdir/x"]


def hostile_string(rng) -> str:
    pick = rng.choice(NAMES)
    if rng.random() < 0.3:
        pick = rng.choice(["x_{", "w"]) + pick + rng.choice(["}", ""])
    return pick


def hostile_number(rng):
    return copy.deepcopy(rng.choice(NUMBERS))


# ---------------------------------------------------------------------------
# Writing documents: JSON or TOML text of a value that may hold Raw numbers


def dump(value, fmt: str) -> str:
    if fmt == "json":
        return _json(value)
    lines = []
    for key, item in value.items():
        lines.append(f"{_key(key)} = {_toml(item)}")
    return "\n".join(lines) + "\n"


def _json(value) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_json(v) for v in value) + "]"
    if isinstance(value, int) and not isinstance(value, bool):
        return _int_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "1e999" if value > 0 else "-1e999"
    return json.dumps(value)


def _toml(value) -> str:
    if isinstance(value, Raw):
        return str(value)
    if value is None:
        return '"null"'  # TOML has no null: a careless user writes a text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return _int_text(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    return "[" + ", ".join(_toml(v) for v in value) + "]"


def _key(key) -> str:
    return json.dumps(str(key))


def _int_text(value: int) -> str:
    sign = "-" if value < 0 else ""
    value = abs(value)
    digits = []
    while True:  # no str(): it refuses more than 4300 digits
        value, d = divmod(value, 10 ** 1000)
        digits.append(d)
        if not value:
            break
    return sign + str(digits[-1]) + "".join(f"{d:01000d}" for d in reversed(digits[:-1]))


def nested(depth: int, fmt: str) -> Raw:
    return Raw("[" * depth + "1" + "]" * depth)


# ---------------------------------------------------------------------------
# Mutating a document


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list) and len(value) <= 100:  # not into 100,000 shared examples:
        for k, v in enumerate(value):  # one change there would be 100,000 changes
            yield from _paths(v, prefix + (k,))


def _set(document, path, new):
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new


def _name_paths(document):
    return [p for p in _paths(document) if p and (("names" in p) or p[-1] == "title")]


def mutate(document: dict, rng, kind: str) -> dict:
    """One to three changes: a hostile number, name or shape somewhere in the document."""
    document = copy.deepcopy(document)
    for _ in range(rng.randint(1, 3)):
        paths = [p for p in _paths(document) if p]
        roll = rng.random()
        if roll < 0.3:
            path = rng.choice(paths)
            _set(document, path, hostile_number(rng))
        elif roll < 0.55:
            names = _name_paths(document) or [("title",)]
            path = rng.choice(names)
            value = hostile_string(rng)
            if path == ("title",) or rng.random() < 0.5:
                _set(document, path, value)
            else:
                _set(document, path, [value, hostile_string(rng), "x_3", "x_4"][:rng.randint(1, 4)])
            if rng.random() < 0.5 and "inputs" in document and isinstance(document["inputs"], dict):
                document["inputs"]["names"] = [hostile_string(rng) + f"_{k}" for k in range(3)]
        elif roll < 0.7:
            _resources(document, rng, kind)
        elif roll < 0.8:
            path = rng.choice(paths)
            _set(document, path, rng.choice([[], {}, "", "dense", None, [[]], {"x": 1},
                                             nested(rng.choice([50, 5000, 100000]), "json")]))
        elif roll < 0.9:
            path = rng.choice(paths)
            parent = document
            for key in path[:-1]:
                parent = parent[key]
            if isinstance(parent, dict):
                del parent[path[-1]]
            elif isinstance(parent, list) and parent:
                parent.pop(path[-1])
        else:
            layer = rng.choice([{"type": "conv2d", "kernel": rng.choice(COUNTS),
                                 "stride": rng.choice([0, 1, 2, -1]), "filters": [[1]]},
                                {"type": rng.choice(["maxpool2d", "avgpool2d"]),
                                 "kernel": rng.choice([1, 2, 3, 0]),
                                 "stride": rng.choice([0, 1, 2])},
                                {"type": "flatten"}, {"type": "dense", "units": 0}])
            if isinstance(document.get("layers"), list):
                document["layers"].insert(rng.randint(0, len(document["layers"])), layer)
    return document


def _resources(document, rng, kind):
    """Sizes that cannot finish: huge steps, shapes, units, examples."""
    choice = rng.randrange(6)
    training = document.setdefault("training", {}) if isinstance(document, dict) else {}
    if not isinstance(training, dict):
        return
    if choice == 0:
        training["steps"] = rng.choice([10 ** 18, 10 ** 6, 10 ** 400])
    elif choice == 1:
        training["learning_rate"] = rng.choice([1e6, 1e300, 1e200, 1e-300])
        training["steps"] = rng.choice([1, 50])
    elif choice == 2 and isinstance(document.get("inputs"), dict):
        document["inputs"]["shape"] = rng.choice([[10 ** 8, 3, 3], [10 ** 8], [3, 10 ** 4, 10 ** 4]])
        document["inputs"].pop("values", None)
    elif choice == 3 and isinstance(document.get("layers"), list) and document["layers"]:
        layer = document["layers"][0]
        if isinstance(layer, dict):
            layer["units"] = rng.choice([10 ** 8, 200, 10 ** 5])
            if kind == "template":
                layer["weights"] = {"uniform": [-1, 1]}
                layer["biases"] = {"uniform": [-1, 1]}
    elif choice == 4:
        inputs = document.get("inputs")
        loss = document.get("loss")
        small = len(json.dumps([inputs.get("values"), loss.get("targets")], default=str)) < 3000 \
            if isinstance(inputs, dict) and isinstance(loss, dict) else False
        if small and "values" in inputs:  # a 5,000-digit number × 100,000 is the harness's OOM
            n = rng.choice([1000, 100000])
            document["examples"] = [{"inputs": inputs["values"], "targets": loss.get("targets")}] * n
    else:
        if isinstance(document.get("inputs"), dict):
            document["inputs"]["values"] = []


# ---------------------------------------------------------------------------
# Cases


@dataclass
class Case:
    args: list  # the command line, files named by their key in ``files``
    files: dict = field(default_factory=dict)  # name -> text
    output: str | None = None  # the -o given (relative to the case directory)
    stdin: str | None = None  # what standard input holds (SPEC given as -)

    def describe(self) -> str:
        return " ".join(map(str, self.args))


def _load(name):
    return tomllib.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def spec_case(rng) -> Case:
    fmt = rng.choice(["json", "toml"])
    document = mutate(_load(rng.choice(SPECS)), rng, "spec")
    name = f"spec.{fmt}"
    files = {name: dump(document, fmt)}
    command = rng.choice(["explain"] * 6 + ["keys"] * 2 + ["verify"] * 2 + ["export-torch"])
    if command == "export-torch":
        output = rng.choice([None, "out.py", "spec", "fifo", "dir"])
        return Case(["export-torch", name] + (["-o", output] if output else []), files, output)
    if rng.random() < 0.1:  # the spec on standard input
        return Case([command, "-"] + (["answers.toml"] if command == "verify" else []),
                    {"answers.toml": (EXAMPLES / ANSWERS).read_text(encoding="utf-8")},
                    stdin=files[name])
    if command == "keys":
        return Case(["keys", name, "--lang", rng.choice(["en", "fr"])], files)
    if command == "verify":
        files["answers.toml"] = (EXAMPLES / ANSWERS).read_text(encoding="utf-8")
        return Case(["verify", name, "answers.toml", "--format", rng.choice(["text", "md", "json"])],
                    files)
    out_fmt = rng.choice(["md", "json", "tex", "md", "json", "html", "beamer"]
                         + (["pdf", "slides-pdf"] if rng.random() < 0.1 else []))
    args = ["explain", name, "--format", out_fmt]
    if rng.random() < 0.15:
        args += ["--steps", str(rng.choice([2, 50, 1000000]))]
    output = None
    if out_fmt in ("pdf", "slides-pdf") or rng.random() < 0.3:
        output = rng.choice(["out." + out_fmt] * 4 + OUTPUTS)
        args += ["-o", output]
    return Case(args, files, output)


def template_case(rng) -> Case:
    fmt = rng.choice(["json", "toml"])
    document = mutate(_load(SHEET), rng, "template")
    if rng.random() < 0.3:
        layer = document.get("layers", [None])[0] if isinstance(document.get("layers"), list) else None
        if isinstance(layer, dict):
            layer[rng.choice(["weights", "biases"])] = rng.choice([
                {"integers": [0, 10 ** 400]}, {"uniform": [1, 0]}, {"choice": []},
                {"uniform": [-1e308, 1e308]}, {"integers": [5, 5]}, {"one_hot": True},
                {"uniform": [0, 1], "decimals": 400}])
    name = f"template.{fmt}"
    variants = rng.choice(["1", "2", "3", "100000"])
    out_fmt = rng.choice(["md", "md", "tex", "moodle"] + (["pdf"] if rng.random() < 0.05 else []))
    output = rng.choice(["out"] * 6 + OUTPUTS)
    return Case(["sheet", name, "--variants", variants, "--format", out_fmt, "-o", output],
                {name: dump(document, fmt)}, output)


def answers_case(rng) -> Case:
    spec = "mlp_3_2_2_cross_entropy.toml"
    answers = tomllib.loads((EXAMPLES / ANSWERS).read_text(encoding="utf-8"))
    answers = copy.deepcopy(answers)
    flat = [(table, key) for table, inner in answers.items() if isinstance(inner, dict)
            for key in inner]
    for _ in range(rng.randint(1, 3)):
        table, key = rng.choice(flat)
        roll = rng.random()
        if roll < 0.45:
            answers[table][key] = Raw(json.dumps(rng.choice(ANSWER_TEXTS)))
        elif roll < 0.6:
            answers[table][key] = Raw(rng.choice(["1e400", "1e-400", "1" * 5000, "0.1" + "3" * 40]))
        elif roll < 0.8:
            answers[table][hostile_string(rng)] = Raw(json.dumps(rng.choice(["0.5", "1", "-2"])))
        elif roll < 0.9:
            answers[table][key] = nested(rng.choice([10, 5000, 100000]), "json")
        else:
            answers = {f"k{k}": Raw("1") for k in range(rng.choice([10, 100000]))}
            break
    fmt = rng.choice(["toml", "json"])
    files = {"spec.toml": (EXAMPLES / spec).read_text(encoding="utf-8"),
             f"answers.{fmt}": dump(answers, fmt)}
    args = ["verify", "spec.toml", f"answers.{fmt}", "--format", rng.choice(["text", "md", "json"])]
    if rng.random() < 0.3:
        args += ["--round", str(rng.choice([0, 2, 15]))]
    output = None
    if rng.random() < 0.3:
        output = rng.choice(["out.txt"] * 3 + OUTPUTS)
        args += ["-o", output]
    return Case(args, files, output)


def any_case(rng) -> Case:
    roll = rng.random()
    if roll < 0.55:
        return spec_case(rng)
    if roll < 0.8:
        return answers_case(rng)
    return template_case(rng)


# ---------------------------------------------------------------------------
# Running a case


class Hang(BaseException):
    pass


def _alarm(signum, frame):
    raise Hang()


def _prepare(case: Case, work: Path) -> list[str]:
    for name, text in case.files.items():
        (work / name).write_text(text, encoding="utf-8")
    (work / "file").write_text("a regular file\n")
    (work / "dir").mkdir(exist_ok=True)
    if not (work / "fifo").exists():
        os.mkfifo(work / "fifo")
    if not (work / "link").exists():
        os.symlink(next(iter(case.files)), work / "link")
    aliases = {"spec": next((n for n in case.files if n.startswith("spec")), "x"),
               "answers": next((n for n in case.files if n.startswith("answers")), "x"),
               "template": next((n for n in case.files if n.startswith("template")), "x")}
    args = list(case.args)
    if "-o" in args:
        k = args.index("-o") + 1
        args[k] = aliases.get(args[k], args[k])
    return args


def _snapshot(work: Path) -> dict:
    return {str(p.relative_to(work)): (p.stat().st_mtime_ns if not p.is_symlink() else 0)
            for p in work.rglob("*")}


def run_case(case: Case, work: Path, timeout: float = 60) -> tuple[str, str]:
    """(outcome, detail) of one case run through the real CLI in the directory ``work``."""
    from backprop_explain.cli import main
    work.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        args = _prepare(case, work)
        before = _snapshot(work)
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            result = CliRunner().invoke(main, args, input=case.stdin, catch_exceptions=False)
        except Hang:
            return "hang", case.describe()[:200]
        except SystemExit as err:  # pragma: no cover - CliRunner catches these
            return f"exit {err.code}", ""
        except BaseException as err:  # noqa: BLE001 - every escape is a fault to count
            frames = traceback.extract_tb(err.__traceback__)
            where = f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].name}" if frames else ""
            return "traceback", f"{type(err).__name__} at {where}: {str(err)[:120]}"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        code = result.exit_code
        clobbered = [n for n, text in case.files.items()
                     if (work / n).read_text(encoding="utf-8", errors="replace") != text]
        if not (work / "fifo").is_fifo():
            clobbered.append("fifo")
        if clobbered:
            return "clobbered", f"{clobbered}: {case.describe()[:150]}"
        if "Traceback (most recent call last)" in result.output + result.stderr:
            return "traceback", result.stderr[-300:]
        if code in (0, 1) and not (code == 1 and case.args[0] != "verify"):
            return "ok", ""
        if code == 2:
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            after = _snapshot(work)
            new = sorted(set(after) - set(before) - {"fifo", "link"})
            changed = sorted(p for p in before if p in after and after[p] != before[p]
                             and p not in ("fifo", "dir"))
            if "Usage:" in result.stderr:
                return "refused", "usage"
            if len(lines) != 1 or new or changed:
                return "messy", f"{lines[:3]} new={new[:3]} changed={changed[:3]}"
            return "refused", lines[0][:200]
        return f"exit {code}", result.stderr[-300:]
    finally:
        os.chdir(cwd)


def run_isolated(case: Case, work: Path, timeout: float = 60) -> tuple[str, str]:
    """:func:`run_case` in a forked child, killed after ``timeout`` seconds: a hang in C code
    (a huge Decimal, a huge allocation) that no alarm can interrupt is counted, not waited."""
    import pickle
    import select
    import time
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_end)
        try:
            result = run_case(case, work, timeout + 5)
        except BaseException as err:  # noqa: BLE001
            result = ("traceback", f"in the harness: {err!r}"[:200])
        os.write(write_end, pickle.dumps(result))
        os._exit(0)
    os.close(write_end)
    deadline = time.monotonic() + timeout
    data = b""
    with os.fdopen(read_end, "rb") as pipe:
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([pipe], [], [], max(left, 0))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return "hang", case.describe()[:200]
            chunk = os.read(pipe.fileno(), 65536)
            if not chunk:
                break
            data += chunk
    _, status = os.waitpid(pid, 0)
    if not data:
        return "traceback", f"the process died (status {status}): {case.describe()[:150]}"
    return pickle.loads(data)
