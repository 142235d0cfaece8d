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
_SUFFIXES = {".toml": "toml", ".json": "json", ".csv": "csv", ".md": "md",
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
        fmt = _SUFFIXES.get(Path(path).suffix.lower())
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
