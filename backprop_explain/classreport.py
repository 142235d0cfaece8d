"""Output stage: a class's hand calculations checked together (``backprop-explain class``).

``class_report(target, answers)`` reads what the students answered — one answers file per
student (a directory of them), a CSV with a student column, or Moodle's *Responses* report
downloaded as CSV (answers.py) — runs verify on each against their own exercise (TARGET is
a spec, or a directory written by ``sheet``: each student answered one of its variants),
and sums up per key the share of correct, consistent and wrong answers, the slips verify
named and how often, where each student's first wrong step lies, the students whose
answers no usual slip explains, and the files that could not be read (each reported, the
run goes on). The report is Markdown (with a bar chart as an SVG file beside it), PDF
(LaTeX, the chart in pgfplots) or JSON.

A student's variant: a ``variant = N`` entry in their file (or column in a class CSV), the
heading of a filled-in sheet ("… (variant N)"), or in Moodle's report the question's text
("… (variant N)", the *Question* column) or its right answers (the *Right answer* column);
failing those, the variant whose right answers the student's agree with most.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .answers import SUFFIXES, StudentAnswers, read_class_file
from .errors import SpecError
from .keys import key_tex
from .spec import as_spec, read_text

FORMATS = ("md", "pdf", "json")
STATUSES = ("correct", "consistent", "wrong")
# What a slip's diagnosis says of a student's own numbers: left out when slips are counted
# over a class (each student's numbers differ).
_NUMBERS = ("value", "intermediate", "keys")
_NOT_SLIPS = ("no_diagnosis", "unknown_key", "did_you_mean")
_VARIANT = re.compile(r"\bvariante?\s+(\d+)\b", re.I)


@dataclass
class Exercise:
    """What the class answered: one spec, or the variants of a sheet."""

    source: str
    title: str
    specs: dict  # variant number (None: one spec for all) → NetworkSpec
    keys: list[str] | None = None  # the keys asked, in order (a sheet)
    blanks: list[str] | None = None  # a Moodle Cloze question's parts, in order
    right: dict = field(default_factory=dict)  # variant → key → right value
    digits: int = 4

    @property
    def lang(self) -> str:
        """The language the exercise was written in (its spec's, its first variant's)."""
        return self.specs[min(self.specs, key=lambda v: v or 0)].lang


@dataclass
class StudentResult:
    student: str
    source: str
    variant: int | None = None
    verification: object | None = None  # verify.Verification
    error: str | None = None


def load_exercise(target) -> Exercise:
    """A spec (every student worked the same network) or a sheet directory."""
    path = Path(str(target))
    if not path.is_dir():
        spec = as_spec(target)
        return Exercise(str(target), spec.title or path.stem, {None: spec})
    index = path / "answers.json"
    if not index.is_file():
        raise SpecError(str(path), "", "a spec, or a directory written by `sheet` "
                                       "(answers.json and spec_NN.json)")
    try:
        data = json.loads(read_text(index, "answers.json file"))
        right = {int(v["variant"]): v["answers"] for v in data["variants"]}
        keys, digits = list(data["questions"]), int(data["digits"])
        if not right:
            raise ValueError("no variant")
    except (ValueError, KeyError, TypeError) as err:
        raise SpecError(str(index), "", f"the answers.json `sheet` writes ({err})") from None
    width = len(str(max(right)))
    specs = {}
    for number in right:
        spec_path = path / f"spec_{number:0{width}d}.json"
        if not spec_path.is_file():
            raise SpecError(str(spec_path), "", f"the spec of variant {number} (sheet writes "
                                                "spec_NN.json beside answers.json)")
        specs[number] = as_spec(spec_path)
    first = specs[min(specs)]
    return Exercise(str(path), first.title or path.name, specs, keys, data.get("blanks"),
                    right, digits)


def student_files(paths) -> list[Path]:
    """The answers files given: files as they are, a directory's answers files by name."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.iterdir()
                            if p.is_file() and p.suffix.lower() in SUFFIXES)
        else:
            files.append(path)
    return files


def class_report(target, answers, progress=None) -> "ClassReport":
    """Check every student's answers (paths: files, directories) against TARGET (a spec or
    a sheet directory). ``progress``: called as progress(done, total) after each student.
    A student whose file cannot be read, or whose variant is unknown, is reported as such;
    the others are checked."""
    from .verify import Catalog, verify_answers
    exercise = load_exercise(target)
    entries = []
    for path in student_files(answers):
        entries += read_class_file(path)
    catalogs: dict = {}
    results = []
    for entry in entries:
        result = StudentResult(entry.student, entry.source, error=entry.error)
        if entry.error is None:
            try:
                result.variant = _variant(entry, exercise)
                checked = _keyed(entry, exercise)
                spec = exercise.specs[result.variant]
                catalog = catalogs.get(result.variant) or catalogs.setdefault(
                    result.variant, Catalog(spec))
                result.verification = verify_answers(catalog, checked)
            except SpecError as err:
                result.error = str(err)
        results.append(result)
        if progress:
            progress(len(results), len(entries))
    return ClassReport(exercise, results, catalogs)


def _variant(entry: StudentAnswers, exercise: Exercise) -> int | None:
    specs = exercise.specs
    if None in specs:
        return None
    candidates = []
    if entry.variant is not None:
        candidates.append(entry.variant)
    for text in [entry.question] + [a.place or "" for a in entry.answers]:
        match = _VARIANT.search(text)
        if match:
            candidates.append(int(match.group(1)))
            break
    if not candidates and entry.right:
        candidates += [v for v in exercise.right
                       if _agreeing(entry.right, v, exercise) == len(entry.right)]
    if not candidates and len(specs) == 1:
        candidates.append(next(iter(specs)))
    if not candidates:  # the variant the student's answers agree with most
        scores = {v: _agreeing(entry.answers, v, exercise) for v in exercise.right}
        best = max(scores.values(), default=0)
        winners = [v for v, score in scores.items() if score == best]
        if best and len(winners) == 1:
            candidates.append(winners[0])
    if not candidates:
        raise SpecError(entry.source, "variant", "the variant answered: a `variant = N` entry"
                        ", or Moodle's report downloaded with its Question or Right answer "
                        "column")
    if candidates[0] not in specs:
        raise SpecError(entry.source, "variant", f"a variant of {exercise.source} "
                        f"(1 to {max(specs)}), got {candidates[0]}")
    return candidates[0]


def _agreeing(answers, variant: int, exercise: Exercise) -> int:
    """How many answers agree, at their digits, with the right values of ``variant``."""
    from .verify import Tolerance
    right, keys = exercise.right[variant], exercise.blanks or exercise.keys or []
    count = 0
    for answer in answers:
        key = answer.key
        if key.isdigit() and 1 <= int(key) <= len(keys):
            key = keys[int(key) - 1]
        if key in right and Tolerance().agrees(answer, right[key]):
            count += 1
    return count


def _keyed(entry: StudentAnswers, exercise: Exercise) -> list:
    """The answers under quantity keys (Moodle's parts are the blanks in order)."""
    if not entry.parts:
        return entry.answers
    blanks = exercise.blanks or exercise.keys
    if not blanks:
        raise SpecError(entry.source, "", "a sheet directory with the Moodle question's "
                                          "parts (answers.json's blanks)")
    out = []
    for answer in entry.answers:
        k = int(answer.key)
        if not 1 <= k <= len(blanks):
            raise SpecError(entry.source, f"part {k}", f"a part of the question (1 to "
                                                       f"{len(blanks)})")
        out.append(type(answer)(blanks[k - 1], answer.text, answer.value,
                                f"part {k}", answer.integer))
    return out


# ---------------------------------------------------------------------------
# The numbers of the report


@dataclass
class KeyStats:
    key: str
    counts: dict  # status → number of students
    unanswered: int

    @property
    def answered(self) -> int:
        return sum(self.counts.values())

    def share(self, status: str) -> float:
        return self.counts[status] / self.answered if self.answered else 0.0


@dataclass
class SlipStats:
    code: str
    values: dict  # what names the slip (keys, functions), the numbers left out
    count: int
    keys: dict  # key → how often


class ClassReport:
    """Every student's verification and what they add up to."""

    def __init__(self, exercise: Exercise, results: list[StudentResult], catalogs: dict):
        self.exercise = exercise
        self.results = results
        self.checked = [r for r in results if r.verification is not None]
        self.bad = [r for r in results if r.verification is None]
        self.keys = self._key_stats(catalogs)
        self.slips = self._slip_stats()
        self.first_wrong = self._first_wrong()
        self.needs_a_look = [r for r in self.checked if any(
            c.status == "unknown_key" or (c.status == "wrong" and c.diagnosis
                                          and c.diagnosis.code == "no_diagnosis")
            for c in r.verification.checks)]

    @staticmethod
    def _firsts(result: StudentResult):
        """A student's answers, each key once (a restated value is judged, not counted)."""
        return [c for c in result.verification.checks
                if not c.restated and c.status != "unknown_key"]

    def _key_stats(self, catalogs: dict) -> list[KeyStats]:
        answered: dict[str, dict] = {}
        for result in self.checked:
            for check in self._firsts(result):
                counts = answered.setdefault(check.key, dict.fromkeys(STATUSES, 0))
                counts[check.status] += 1
        order = list(self.exercise.blanks or self.exercise.keys or [])
        if not order and catalogs:
            order = next(iter(catalogs.values())).order()
        ranked = {key: k for k, key in enumerate(order)}
        keys = sorted(answered, key=lambda k: (ranked.get(k, len(ranked)), k))
        return [KeyStats(k, answered[k], len(self.checked) - sum(answered[k].values()))
                for k in keys]

    def _slip_stats(self) -> list[SlipStats]:
        slips: dict[tuple, SlipStats] = {}
        for result in self.checked:
            for check in self._firsts(result):
                diagnosis = check.diagnosis
                if check.status != "wrong" or diagnosis is None or diagnosis.code in _NOT_SLIPS:
                    continue
                named = {k: v for k, v in diagnosis.values.items() if k not in _NUMBERS}
                group = (diagnosis.code, tuple(sorted((k, str(v)) for k, v in named.items())))
                stats = slips.setdefault(group, SlipStats(diagnosis.code, named, 0, {}))
                stats.count += 1
                stats.keys[check.key] = stats.keys.get(check.key, 0) + 1
        return sorted(slips.values(), key=lambda s: (-s.count, s.code, str(s.values)))

    def _first_wrong(self) -> list[tuple[str | None, int]]:
        counts: dict = {}
        for result in self.checked:
            first = result.verification.first_wrong
            key = first.key if first else None
            counts[key] = counts.get(key, 0) + 1
        ranked = {s.key: k for k, s in enumerate(self.keys)}
        return sorted(counts.items(), key=lambda item: (item[0] is None,
                                                        ranked.get(item[0], len(ranked)),
                                                        str(item[0])))

    # Words ---------------------------------------------------------------
    def slip_text(self, slip: SlipStats, lang: str) -> str:
        from .verify import Diagnosis
        values = dict(slip.values)
        for name in _NUMBERS:
            values.setdefault(name, "…")
        return Diagnosis(slip.code, values).text(lang)

    def language(self, lang: str | None) -> str:
        """The language asked for, else the exercise's own."""
        return lang or self.exercise.lang

    def as_data(self, lang: str | None = None) -> dict:
        """The report for machines (--format json)."""
        lang = self.language(lang)
        def student(result):
            data = {"student": result.student, "source": result.source,
                    "variant": result.variant}
            if result.verification is None:
                return dict(data, error=result.error)
            first = result.verification.first_wrong
            return dict(data, **result.verification.counts,
                        first_wrong=first.key if first else None)

        return {
            "title": self.exercise.title,
            "exercise": self.exercise.source,
            "students": len(self.results), "checked": len(self.checked),
            "unreadable": len(self.bad),
            "keys": [{"key": s.key, "answered": s.answered, "unanswered": s.unanswered,
                      **s.counts, "shares": {st: s.share(st) for st in STATUSES}}
                     for s in self.keys],
            "slips": [{"code": s.code, "text": self.slip_text(s, lang), "count": s.count,
                       "keys": s.keys} for s in self.slips],
            "first_wrong": [{"key": key, "students": n} for key, n in self.first_wrong],
            "needs_a_look": [{
                "student": r.student, "variant": r.variant,
                "answers": [{"key": c.key, "given": c.given, "expected": c.expected,
                             "status": c.status}
                            for c in r.verification.checks
                            if c.status == "unknown_key" or (c.status == "wrong" and
                                                             c.diagnosis.code == "no_diagnosis")]}
                for r in self.needs_a_look],
            "unreadable_files": [{"student": r.student, "source": r.source, "error": r.error}
                                 for r in self.bad],
            "per_student": [student(r) for r in self.results],
        }

    def report(self, format: str = "md", lang: str | None = None, chart: str | None = None):
        """The report: Markdown text (``chart``: the SVG file it links to), LaTeX-compiled
        PDF bytes, or JSON text; in ``lang``, else the exercise's language."""
        lang = self.language(lang)
        if format == "json":
            return json.dumps(self.as_data(lang), indent=2, ensure_ascii=False) + "\n"
        if format == "pdf":
            from .pdf import compile_pdf
            return compile_pdf(self.render("tex", lang))
        return self.render("md", lang, chart)

    def render(self, fmt: str, lang: str | None = None, chart: str | None = None) -> str:
        from .templating import phrases, render_template
        lang = self.language(lang)
        t = phrases(lang)
        percent = t["class"]["percent"]
        rows = [{"key": s.key, "tex": key_tex(s.key, True), "answered": s.answered,
                 "unanswered": s.unanswered, **s.counts,
                 **{f"{st}_share": percent.replace("{p}", f"{round(100 * s.share(st))}")
                    for st in STATUSES}} for s in self.keys]
        context = {
            "t": t, "c": t["class"], "title": self.exercise.title, "rows": rows,
            "students": len(self.results), "checked": len(self.checked),
            "unreadable": self.bad, "variants": len([v for v in self.exercise.specs if v]),
            "slips": [{"text": self.slip_text(s, lang), "count": s.count,
                       "places": [(k, key_tex(k, True), n) for k, n in s.keys.items()]}
                      for s in self.slips],
            "first_wrong": [(key, key_tex(key, True) if key else None, n)
                            for key, n in self.first_wrong],
            "needs_a_look": [{"student": r.student, "variant": r.variant, "answers": [
                (c.key, key_tex(c.key, True) if c.status != "unknown_key" else None, c.given)
                for c in r.verification.checks if c.status == "unknown_key"
                or (c.status == "wrong" and c.diagnosis.code == "no_diagnosis")]}
                for r in self.needs_a_look],
            "results": [{"student": r.student, "variant": r.variant,
                         "counts": r.verification.counts if r.verification else None,
                         "first": (r.verification.first_wrong.key
                                   if r.verification and r.verification.first_wrong else None),
                         "error": r.error} for r in self.results],
            "chart": chart,
            "tikz": self.chart("tex", lang) if fmt == "tex" else "",
        }
        return render_template(f"class_report.{fmt}.j2", context)

    def chart(self, fmt: str, lang: str | None = None) -> str:
        """The shares of correct, consistent and wrong answers per key as stacked bars:
        SVG (beside a Markdown report) or a pgfplots picture (LaTeX)."""
        from .templating import phrases, render_template
        c = phrases(self.language(lang))["class"]
        bars = [(s.key, key_tex(s.key, True), [round(100 * s.counts[st] / len(self.checked), 1)
                                         if self.checked else 0 for st in STATUSES])
                for s in self.keys]
        if fmt == "tex":
            return render_template("class_chart.tikz.j2", {"bars": bars, "c": c,
                                                            "statuses": STATUSES})
        row, left, top, width = 22, 170, 40, 620
        layout = []
        for k, (key, _, shares) in enumerate(bars):
            x, segments = left, []
            for status, share in zip(STATUSES, shares):
                w = round((width - left - 20) * share / 100, 1)
                segments.append((status, x, w, share))
                x = round(x + w, 1)
            layout.append((key, top + k * row, segments))
        return render_template("class_chart.svg.j2", {
            "bars": layout, "c": c, "width": width, "left": left, "top": top, "row": row,
            "height": top + len(bars) * row + 50, "statuses": STATUSES,
            "scale": width - left - 20})


def write_class_report(report: ClassReport, output, format: str = "md",
                       lang: str | None = None) -> list[Path]:
    """Write the report (Markdown with NAME.chart.svg beside it, PDF or JSON), each file
    whole or not at all; the paths written."""
    from .output import check_target, write_atomic, write_files
    output = check_target(output)
    if format != "md":
        write_atomic(output, report.report(format, lang))
        return [output]
    chart = output.with_name(output.stem + ".chart.svg")
    svg, text = report.chart("svg", lang), report.report("md", lang, chart=chart.name)
    write_files({chart: svg, output: text})
    return [output, chart]


__all__ = ["ClassReport", "Exercise", "StudentResult", "class_report", "load_exercise",
           "write_class_report", "FORMATS"]
