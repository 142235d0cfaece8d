"""Spec stage, the other way: a spec written back as a TOML spec file.

``to_toml(spec)`` writes the document a spec was read from (spec.py keeps a copy), with
the training schedule the spec has now (``--steps`` and the like may have changed it),
as TOML that reads back to the same spec: a model read from PyTorch (torch_import.py)
becomes an example to edit. Tables come after the keys of their parent, as TOML wants;
a list of tables is written ``[[layers]]``; numbers keep every digit (``repr``).
"""

from __future__ import annotations

import copy
import math
import re

LINE = 88  # a list longer than this is written one item per line
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
            "\r": "\\r"}


def to_toml(spec) -> str:
    """The TOML text of a spec (a NetworkSpec read by spec.py, or a spec dict)."""
    return toml_text(spec if isinstance(spec, dict) else spec_document(spec))


def spec_document(spec) -> dict:
    """The spec's document, its [training] schedule as the spec has it."""
    document = copy.deepcopy(spec.document)
    training = document.setdefault("training", {})
    for key, value, default in (("steps", spec.steps, 1), ("epochs", spec.epochs, None),
                                ("batch_size", spec.batch_size, None)):
        if value == default:
            training.pop(key, None)
        else:
            training[key] = value
    return document


def toml_text(document: dict) -> str:
    lines: list[str] = []
    _table(document, [], lines)
    return "\n".join(lines).strip("\n") + "\n"


def _is_table_list(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _table(table: dict, path: list[str], lines: list[str]) -> None:
    """Keys first, then sub-tables and lists of tables, in the document's order."""
    for key, value in table.items():
        if not isinstance(value, dict) and not _is_table_list(value):
            lines.append(f"{_key(key)} = {_value(value, len(_key(key)) + 3)}")
    for key, value in table.items():
        header = ".".join(_key(k) for k in path + [key])
        if isinstance(value, dict):
            lines += ([] if path else [""]) + [f"[{header}]"]  # a layer's [layers.names]: no gap
            _table(value, path + [key], lines)
        elif _is_table_list(value):
            for item in value:
                lines += ["", f"[[{header}]]"]
                _table(item, path + [key], lines)


def _key(key) -> str:
    key = str(key)
    return key if _BARE_KEY.match(key) else _string(key)


def _string(text: str) -> str:
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_value(value, indent: int = 0) -> str:
    """A value as TOML writes it; a list of finite numbers is also a Python literal (the
    exported PyTorch script's tensors, torch_export.py). ``indent``: where it starts."""
    return _value(value, indent)


def _value(value, indent: int = 0) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return _list(list(value), indent)
    raise TypeError(f"no TOML for {type(value).__name__}")


def _list(items: list, indent: int) -> str:
    """On one line when it fits; otherwise one item per line, nested lists alike."""
    flat = "[" + ", ".join(_value(v) for v in items) + "]"
    if indent + len(flat) <= LINE or not any(isinstance(v, list) for v in items):
        return flat
    inner = indent + 1
    return "[" + (",\n" + " " * inner).join(_value(v, inner) for v in items) + "]"
