"""Reading a student's answers: quantity keys mapped to numbers, as they were written.

An answers file is TOML, JSON, CSV (two columns ``key,value``) or a filled-in
exercise sheet in Markdown (lines ``key = value`` or table rows ``| key | value |``).
TOML and JSON may group answers in tables (one per slide or exercise, say): the
table's name becomes the answer's *place*, and the same key may then be answered
in several places (a value restated later). Numbers are kept as the text the
student wrote, since the digits written decide how precisely an answer is judged.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from .errors import SpecError
from .limits import MAX_DEPTH, check_answers, check_depth
from .spec import read_document, read_text

FORMATS = ("toml", "json", "csv", "md")
SUFFIXES = {".toml": "toml", ".json": "json", ".csv": "csv", ".md": "md",
            ".markdown": "md", ".txt": "md"}


@dataclass
class Answer:
    key: str  # as the student wrote it (matched to a quantity by verify)
    text: str  # the number as written, e.g. "-0.060"
    value: Decimal  # exact decimal of the text: its exponent tells the last written digit
    place: str | None = None  # the table (slide, exercise) or line it came from
    integer: bool = False  # written without a decimal point or exponent: an exact value

    @property
    def number(self) -> float:
        return float(self.value)


# ---------------------------------------------------------------------------
# Numbers as written

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def parse_number(text: str) -> tuple[Decimal, bool] | None:
    """``(value, written_as_integer)`` of a number as a person writes it, or None.

    Accepts a decimal comma (``0,874``), the minus sign ``−``, spaces between digit
    groups and a leading ``+``; ``1,000`` is read as one (the comma is decimal).
    """
    cleaned = str(text).strip().replace("\u2212", "-").replace("\u2013", "-")
    cleaned = re.sub(r"[\s\u00a0\u202f_]", "", cleaned)
    if "," in cleaned:
        if "." in cleaned or cleaned.count(",") > 1:
            return None
        cleaned = cleaned.replace(",", ".")
    if not _NUMBER.match(cleaned):
        return None
    try:
        value = Decimal(cleaned)
    except InvalidOperation:  # pragma: no cover - the pattern already filters
        return None
    integer = "." not in cleaned and "e" not in cleaned.lower()
    return value, integer


# ---------------------------------------------------------------------------
# Files


def read_answers(path, fmt: str | None = None) -> list[Answer]:
    """Every answer of a file, in the order written. Bad input raises SpecError."""
    source = str(path)
    text = read_text(path, "answers file")
    if fmt is None:
        fmt = SUFFIXES.get(Path(path).suffix.lower())
        if fmt is None:
            raise SpecError(source, "", "an answers file ending in .toml, .json, .csv or .md")
    return parse_answers(text, source, fmt)


def parse_answers(text: str, source: str = "<answers>", fmt: str = "toml") -> list[Answer]:
    if fmt not in FORMATS:
        raise SpecError(source, "", f"an answers format among {', '.join(FORMATS)}, got {fmt!r}")
    answers = {"toml": _from_toml, "json": _from_json, "csv": _from_csv, "md": _from_sheet}[fmt](
        text, source)
    if not answers:
        raise SpecError(source, "", "at least one answer (a quantity key and a number)")
    check_answers(answers, source)
    return answers


def _answer(key, raw, source: str, place: str | None, where: str) -> Answer:
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise SpecError(source, where, f"a number for {key!r}, got {_describe(raw)}")
    parsed = parse_number(str(raw))
    if parsed is None:
        raise SpecError(source, where, f"a number for {key!r}, got {str(raw)!r}")
    if parsed[0] and parsed[0].adjusted() > 307:  # beyond float's range: no such value
        raise SpecError(source, where, f"a number for {key!r} below 1e308 in size, got "
                                       f"{str(raw)[:40]!r}")
    key = str(key).strip()
    if not key:
        raise SpecError(source, where, "a quantity key before the number")
    return Answer(key, str(raw).strip(), parsed[0], place, parsed[1])


def _describe(value) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def _walk_tables(data: dict, source: str) -> list[Answer]:
    """Top-level keys are answers; a table groups answers under its name (one level)."""
    answers = []
    for key, raw in data.items():
        if isinstance(raw, dict):
            for inner, value in raw.items():
                if isinstance(value, dict):
                    raise SpecError(source, f"{key}.{inner}",
                                    "a number (tables group answers one level deep)")
                answers.append(_answer(inner, value, source, key, f"{key}.{inner}"))
        else:
            answers.append(_answer(key, raw, source, None, key))
    return answers


def _from_toml(text: str, source: str) -> list[Answer]:
    data = read_document(text, source, "toml", parse_float=str)  # keep "0.060" as written
    return _walk_tables(data, source)


def _from_json(text: str, source: str) -> list[Answer]:
    try:
        data = json.loads(text, parse_float=str, parse_int=str)
    except json.JSONDecodeError as err:
        raise SpecError(source, f"line {err.lineno}", f"valid JSON ({err.msg})") from None
    except RecursionError:
        raise SpecError(source, "", f"lists or tables nested at most {MAX_DEPTH} deep") from None
    check_depth(data, source)
    if isinstance(data, list):  # [{"key": ..., "value": ...}, ...] (the report's own shape)
        answers = []
        for k, row in enumerate(data):
            if not isinstance(row, dict) or "key" not in row or ("value" not in row
                                                                and "given" not in row):
                raise SpecError(source, f"[{k}]", 'an object {"key": ..., "value": ...}')
            raw = row.get("value", row.get("given"))
            answers.append(_answer(row["key"], raw, source, row.get("place"), f"[{k}]"))
        return answers
    if not isinstance(data, dict):
        raise SpecError(source, "", "a JSON object mapping quantity keys to numbers")
    return _walk_tables(data, source)


def _from_csv(text: str, source: str) -> list[Answer]:
    """Rows ``key,value``; a key's own commas (``wo_{1,1}``) may be left unquoted."""
    answers = []
    for line, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if len(cells) < 2:
            raise SpecError(source, f"line {line}", "two columns: key,value")
        key, value = ",".join(cells[:-1]), cells[-1]
        if line == 1 and parse_number(value) is None and key.lower() in ("key", "quantity"):
            continue  # a header row
        answers.append(_answer(key, value, source, f"line {line}", f"line {line}"))
    return answers


_SHEET_LINE = re.compile(r"^\s*(?:[-*]\s+)?`?(?P<key>[^=`|]+?)`?\s*=\s*(?P<value>[^=]*?)\s*$")
_HEADING = re.compile(r"^\s*#+\s*(?P<title>.+?)\s*$")


def _from_sheet(text: str, source: str) -> list[Answer]:
    """A filled-in Markdown sheet: ``key = value`` lines or ``| key | … | value |`` rows.

    The key may be LaTeX as sheets print it (``$\\frac{\\partial E}{\\partial w}$``);
    the answer is a table row's last cell. Blanks left empty (``key = ``, ``____``, ``?``),
    header rows and lines whose right-hand side is not a number (prose, formulas) are
    skipped; a heading names the place of the answers below it. Rows of the sheet's own
    data tables (inputs, targets) are read too and simply judged correct.
    """
    answers = []
    place = None
    for line_no, line in enumerate(text.splitlines(), start=1):
        heading = _HEADING.match(line)
        if heading:
            place = heading.group("title")
            continue
        cells = None
        if line.strip().startswith("|"):
            # | quantity | … | answer |: the key first, the student's answer in the last cell
            cells = [c.strip().strip("`").strip("$").strip()
                     for c in line.strip().strip("|").split("|")]
            if len(cells) < 2 or not cells[0] or set(cells[0]) <= set("-: "):
                continue
            key, value = cells[0], cells[-1]
        else:
            match = _SHEET_LINE.match(line)
            if not match:
                continue
            key = match.group("key").split(":")[-1]  # "Learning rate: $\\eta = 0.5$"
            key, value = key.strip().strip("$").strip(), match.group("value")
        value = value.strip().strip("`").strip("$").strip().strip("*").strip()
        if parse_number(value) is None:
            continue  # an unfilled blank, a header row, or prose with a formula
        answers.append(_answer(key, value, source, place or f"line {line_no}", f"line {line_no}"))
    return answers


# ---------------------------------------------------------------------------
# A class's answers: one file per student, a CSV with a student column, or Moodle's
# responses report


@dataclass
class StudentAnswers:
    """One student's attempt as read, or why it could not be read."""

    student: str
    source: str  # the file (and row) it came from
    answers: list[Answer] | None = None
    error: str | None = None
    variant: int | None = None  # the exercise variant, when the file says which
    question: str = ""  # Moodle: the question's text as the report shows it
    parts: bool = False  # Moodle: answers keyed by the part number ("1", "2", …)
    right: list[Answer] | None = None  # Moodle: the right answers the report shows


_STUDENT_COLUMNS = ("student", "étudiant", "etudiant", "name", "nom")
_VARIANT_COLUMNS = ("variant", "variante")
# Moodle's responses report, in English and French (its column headers follow the
# language of the person who downloads it)
_MOODLE_IDENTITY = (("first name", "prénom"), ("surname", "last name", "nom"),
                    ("email address", "adresse de courriel", "courriel", "adresse email"),
                    ("id number", "numéro d'identification"), ("username", "nom d'utilisateur"))
_MOODLE_COLUMN = re.compile(r"^(response|réponse|question|right answer|bonne réponse)\s+(\d+)$",
                            re.I)
_MOODLE_PART = re.compile(r"^\s*[^\d:;]*?(\d+)\s*:\s*(.*?)\s*$", re.S)


def is_variant_key(key: str) -> bool:
    return str(key).strip().lower() in _VARIANT_COLUMNS


def read_class_file(path) -> list[StudentAnswers]:
    """The students of one file: a class CSV (a student column), Moodle's responses report
    (CSV), or one student's answers file (the student named after the file). Bad input of a
    student is that student's error; a file that cannot be read at all is one error."""
    source = str(path)
    name = Path(path).stem
    if Path(path).suffix.lower() != ".csv":
        return [_one_student(name, source, lambda: read_answers(path))]
    try:
        text = read_text(path, "class file").removeprefix("\ufeff")  # Excel's BOM
    except SpecError as err:
        return [StudentAnswers(name, source, error=str(err))]
    rows = list(csv.reader(io.StringIO(text), _dialect(text)))
    header = [c.strip() for c in rows[0]] if rows else []
    lowered = [c.lower() for c in header]
    if any(_MOODLE_COLUMN.match(c) for c in lowered):
        return _moodle_responses(header, rows[1:], source)
    if lowered and lowered[0] in _STUDENT_COLUMNS:
        return _class_table(header, rows[1:], source)
    return [_one_student(name, source, lambda: parse_answers(text, source, "csv"))]


def _one_student(name: str, source: str, read) -> StudentAnswers:
    try:
        answers = read()
    except SpecError as err:
        return StudentAnswers(name, source, error=str(err))
    variant = [a for a in answers if is_variant_key(a.key)]
    answers = [a for a in answers if not is_variant_key(a.key)]
    if not answers:
        return StudentAnswers(name, source, error=str(SpecError(
            source, "", "at least one answer (a quantity key and a number)")))
    return StudentAnswers(name, source, answers,
                          variant=int(variant[0].value) if variant else None)


def _dialect(text: str):
    """Comma-separated, or the first of ; and tab that splits the header line (a cell may
    hold ; itself: Moodle's "part 1: …; part 2: …")."""
    first = text.splitlines()[0] if text else ""
    for delimiter in (",", ";", "\t"):
        if len(next(csv.reader([first], delimiter=delimiter), [])) > 1:
            return _Delimited(delimiter)
    return _Delimited(",")


class _Delimited(csv.excel):
    def __init__(self, delimiter: str):
        super().__init__()
        self.delimiter = delimiter


def _class_table(header: list[str], rows: list[list[str]], source: str) -> list[StudentAnswers]:
    """``student[,variant],key,value`` rows (long), or ``student[,variant],key1,key2,…``
    (wide, one row per student)."""
    lowered = [c.lower() for c in header]
    variant_at = next((k for k, c in enumerate(lowered) if c in _VARIANT_COLUMNS), None)
    long = lowered[-2:] in (["key", "value"], ["clé", "valeur"], ["quantity", "value"])
    students: dict[str, StudentAnswers] = {}
    for line, row in enumerate(rows, start=2):
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        student = cells[0] or f"line {line}"
        entry = students.setdefault(student, StudentAnswers(student, source, []))
        where = f"line {line}"
        try:
            if variant_at is not None and variant_at < len(cells) and cells[variant_at]:
                variant = parse_number(cells[variant_at])
                if variant is None or not variant[1]:
                    raise SpecError(source, f"{where}.{header[variant_at]}",
                                    f"a variant number, got {cells[variant_at]!r}")
                entry.variant = int(variant[0])
            if long:
                entry.answers.append(_answer(cells[-2], cells[-1], source, where, where))
                continue
            for column, (key, value) in enumerate(zip(header, cells)):
                if column == 0 or column == variant_at or not value:
                    continue
                entry.answers.append(_answer(key, value, source, where, f"{where}.{key}"))
        except SpecError as err:
            entry.error = entry.error or str(err)
    for entry in students.values():
        if entry.error:
            entry.answers = None
        elif not entry.answers:
            entry.error = str(SpecError(source, entry.student, "at least one answer"))
            entry.answers = None
    return list(students.values())


def _moodle_responses(header: list[str], rows: list[list[str]],
                      source: str) -> list[StudentAnswers]:
    """Moodle's quiz *Responses* report downloaded as CSV: one row per attempt, identity
    columns, then per question slot N "Response N" (a Cloze: "part 1: 0.8738; part 2: …"),
    and, when ticked in the report's options, "Question N" and "Right answer N"."""
    lowered = [c.lower() for c in header]
    identity = [next((k for k, c in enumerate(lowered) if c in names), None)
                for names in _MOODLE_IDENTITY]
    slots: dict[int, dict[str, int]] = {}
    for k, column in enumerate(lowered):
        match = _MOODLE_COLUMN.match(column)
        if match:
            kind = {"réponse": "response", "bonne réponse": "right answer"}.get(
                match.group(1).lower(), match.group(1).lower())
            slots.setdefault(int(match.group(2)), {})[kind] = k
    out, seen = [], {}
    for line, row in enumerate(rows, start=2):
        cells = [c.strip() for c in row] + [""] * len(header)
        person = " ".join(cells[k] for k in identity[:2] if k is not None and cells[k])
        contact = next((cells[k] for k in identity[2:] if k is not None and cells[k]), "")
        if not person and not contact:
            continue  # a summary row ("Overall average")
        student = f"{person} <{contact}>" if person and contact else person or contact
        seen[student] = seen.get(student, 0) + 1
        label = student if seen[student] == 1 else f"{student} (attempt {seen[student]})"
        for slot, columns in sorted(slots.items()):
            if "response" not in columns:
                continue
            name = label if len(slots) == 1 else f"{label} (question {slot})"
            where = f"{source}: line {line}"
            response = cells[columns["response"]]
            if not response or response == "-":
                out.append(StudentAnswers(name, where, error=str(SpecError(
                    source, f"line {line}", f"an answer in {header[columns['response']]}"))))
                continue
            right_at = columns.get("right answer")
            try:
                answers = moodle_parts(response, source, f"line {line}")
                right = (moodle_parts(cells[right_at], source, f"line {line}")
                         if right_at is not None and cells[right_at] else None)
            except SpecError as err:
                out.append(StudentAnswers(name, where, error=str(err)))
                continue
            question = cells[columns["question"]] if "question" in columns else ""
            out.append(StudentAnswers(name, where, answers, question=question, parts=True,
                                      right=right))
    return out


def moodle_parts(summary: str, source: str, where: str) -> list[Answer]:
    """The parts of a Cloze question's response as Moodle summarises it ("part 1: 0.8738;
    part 2: 0,1349"; any language), each an answer keyed by its part number; a part left
    empty is no answer."""
    answers = []
    for chunk in summary.split(";"):
        if not chunk.strip():
            continue
        match = _MOODLE_PART.match(chunk)
        if match is None:
            raise SpecError(source, where, f"Cloze parts as 'part 1: value; …', got {chunk!r}")
        value = match.group(2)
        if value in ("", "-"):
            continue
        answers.append(_answer(match.group(1), value, source, f"{where}, part {match.group(1)}",
                               f"{where}, part {match.group(1)}"))
    return answers
