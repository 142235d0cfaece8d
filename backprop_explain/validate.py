"""Reading a spec document: positions for error messages, names, shared parameters.

The helpers every part of the spec stage uses (spec.py, sheet_spec.py and each layer
kind's reader in layers/): a Place knows where it is in the document, so every error
names the file, the place in it (``layers[2].weights[0][1]``) and what was expected.

Names of quantities are LaTeX-like strings (``wh_{1,1}``, ``out_{h1}``). They are
written into LaTeX documents, so they are checked against a small safe grammar
here: ASCII letters, digits and a few punctuation marks, whitelisted commands, and
no ``^^`` (TeX reads ``^^5c`` as a backslash), so a name can never run a TeX command.
PDF builds also forbid TeX to open any file outside its job (pdf.py), a second wall.
"""

from __future__ import annotations

import math
import re

from .errors import SpecError
from .escaping import visible
from .limits import check_block

# Greek letters and a few accents may appear in names; nothing else that starts with "\".
_SAFE_COMMANDS = {
    "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta",
    "vartheta", "iota", "kappa", "lambda", "mu", "nu", "xi", "pi", "rho", "sigma", "tau",
    "upsilon", "phi", "varphi", "chi", "psi", "omega", "Gamma", "Delta", "Theta", "Lambda",
    "Xi", "Pi", "Sigma", "Phi", "Psi", "Omega", "hat", "bar", "tilde", "mathrm", "prime",
    "mathcal", "mathbf", "ell", "vec", "dot", "check",
}
_NAME_CHARS = re.compile(r"^[A-Za-z0-9_^{}(),.'+\-| ]*$")
_COMMAND = re.compile(r"\\([A-Za-z]+)")
# ^^ (TeX's character-code notation), or a ^/_ ending the name, which a "^" written after
# the name in a document would turn into ^^.
_TEX_CHAR_CODE = re.compile(r"\^\s*\^|[\^_]\s*$")

class Place:
    """A position in the spec document, for error messages."""

    def __init__(self, source: str, path: str = ""):
        self.source = source
        self.path = path

    def __truediv__(self, key) -> "Place":
        if isinstance(key, int):
            return Place(self.source, f"{self.path}[{key}]")
        return Place(self.source, f"{self.path}.{key}" if self.path else str(key))

    def fail(self, expected: str):
        raise SpecError(self.source, self.path or "top level", expected)

    def number(self, value) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(f"a number, got {describe(value)}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float's range
            number = math.inf
        if not math.isfinite(number):
            self.fail(f"a finite number (at most about 1.8e308), got {describe(value)}")
        return number

    def integer(self, value, minimum: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"a whole number, got {describe(value)}")
        if value < minimum:
            self.fail(f"a whole number >= {minimum}, got {describe(value)}")
        return value

    def choice(self, value, options) -> str:
        if value not in options:
            self.fail(f"one of {', '.join(options)}, got {describe(value)}")
        return value

    def table(self, value) -> dict:
        if not isinstance(value, dict):
            self.fail(f"a table, got {describe(value)}")
        return value

    def vector(self, value, length: int | None = None) -> list[float]:
        if not isinstance(value, list):
            self.fail(f"a list of numbers, got {describe(value)}")
        if length is not None and len(value) != length:
            self.fail(f"a list of {length} numbers, got {len(value)}")
        return [(self / k).number(v) for k, v in enumerate(value)]

    def array(self, value, shape: tuple[int, ...]):
        """A nested list of numbers with exactly ``shape``; returns nested lists of floats."""
        plain = plain_numbers(value, shape)
        if plain is not None:  # the common case, checked in bulk
            return plain
        if not shape:
            return self.number(value)
        if not isinstance(value, list) or len(value) != shape[0]:
            got = f"{len(value)} entries" if isinstance(value, list) else describe(value)
            self.fail(f"{shape_words(shape)}, got {got}")
        return [(self / k).array(v, shape[1:]) for k, v in enumerate(value)]

    def name(self, value) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(f"a name (text), got {describe(value)}")
        check_name(value, self)
        return value


def plain_numbers(value, shape: tuple[int, ...]):
    """``value`` as nested lists of floats when it is a plain one (lists of exactly
    ``shape``, finite ints and floats), checked level by level in bulk; None otherwise, and
    Place.array walks it entry by entry to name the faulty one. 200,000 weights take
    milliseconds instead of a second."""
    if not shape:
        return None
    level = [value]
    for size in shape:
        if not all(type(v) is list and len(v) == size for v in level):
            return None
        level = [x for v in level for x in v]
    kinds = set(map(type, level))
    if not kinds <= {float, int}:  # bool is a type of its own: refused, as number() does
        return None
    if int in kinds:
        try:
            level = [float(x) for x in level]
        except OverflowError:
            return None
    if not all(map(math.isfinite, level)):
        return None
    for size in reversed(shape[1:]):
        level = [level[k:k + size] for k in range(0, len(level), size)]
    return level


def describe(value) -> str:
    """The value in an error message, on one line and short (texts cut at 80 characters,
    huge whole numbers by their digit count)."""
    if isinstance(value, str):
        return f'the text "{visible(value[:80])}"' + ("…" if len(value) > 80 else "")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** 15:
        digits = len(str(abs(value))) if value.bit_length() < 14000 else "thousands of"
        return f"a whole number of {digits} digits"
    if isinstance(value, float) and math.isinf(value):
        return "infinity" if value > 0 else "minus infinity"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return repr(value)


def shape_words(shape) -> str:
    return "a nested list of shape " + "×".join(str(s) for s in shape)


def check_name(name: str, place: Place) -> None:
    """Names go into LaTeX math: allow a safe alphabet, balanced braces, whitelisted commands."""
    stripped = _COMMAND.sub("", name)
    for command in _COMMAND.findall(name):
        if command not in _SAFE_COMMANDS:
            place.fail(f"a name without the TeX command \\{command} (only Greek letters "
                       f"and accents such as \\hat, \\mathrm, \\mathcal are allowed), got {name!r}")
    if not _NAME_CHARS.match(stripped):
        place.fail("a name of letters, digits, _ ^ { } ( ) , . ' + - | and Greek letters, "
                   f"got {name!r}")
    if _TEX_CHAR_CODE.search(name):
        # TeX's input reads ^^5c as "\\" and ^^M as a return: a command in disguise.
        place.fail(f"a name without ^^ or a ^ or _ at its end, got {name!r}")
    depth = 0
    for char in name:
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            break
    if depth != 0:
        place.fail(f"a name with balanced braces, got {name!r}")
    problem = _cannot_set(name)
    if problem:  # TeX stops on it ("Double subscript", "Missing { inserted"), MathML too
        place.fail(f"a name TeX can set ({problem}), got {name!r}")


_ACCENTS = {"hat", "bar", "tilde", "vec", "dot", "check", "mathrm", "mathcal", "mathbf"}


def _cannot_set(name: str) -> str | None:
    """Why TeX could not set ``name`` (its braces balanced, its commands safe), or None:
    two subscripts or superscripts on one symbol, a script or an accent without its
    argument, an accent as a script's argument (x^\\hat{a} needs braces)."""
    def skip_group(k):  # the index after the group opening at name[k]
        depth = 0
        for end in range(k, len(name)):
            depth += {"{": 1, "}": -1}.get(name[end], 0)
            if depth == 0:
                return end + 1
        return len(name)

    def argument(k):  # the argument starting at or after name[k]: (its start, its end)
        while k < len(name) and name[k] == " ":
            k += 1
        if k == len(name) or name[k] in "_^}'":
            return k, None
        if name[k] == "{":
            return k, skip_group(k)
        command = _COMMAND.match(name, k)
        return k, command.end() if command else k + 1

    def within(start, end):  # what a braced group cannot set, or None
        return _cannot_set(name[start + 1:end - 1]) if name[start] == "{" else None

    scripts, k = set(), 0
    while k < len(name):
        char = name[k]
        command = _COMMAND.match(name, k)
        if char in "_^'":
            # x_1_2, x^1^2 and x^2' (a prime is a superscript) are double; x'^2 and x'' not
            if (char if char != "'" else "^") in scripts:
                return "x_{1,2}, not x_1_2: one subscript and one superscript per symbol"
            scripts.add(char)
            if char == "'":
                k += 1
                continue
            start, k = argument(k + 1)
            if k is None:
                return "a _ or ^ followed by what it sets"
            accent = _COMMAND.match(name, start)
            if accent and accent.group(1) in _ACCENTS:
                return "an accent in a script inside braces: x^{\\hat{a}}"
            if within(start, k):
                return within(start, k)
            continue
        if char != " ":
            scripts = set()  # a new symbol
        if command and command.group(1) in _ACCENTS:
            start, k = argument(command.end())
            if k is None:
                return f"\\{command.group(1)} followed by what it sets"
            if within(start, k):
                return within(start, k)
        elif command:
            k = command.end()
        elif char == "{":
            start, k = k, skip_group(k)
            if within(start, k):
                return within(start, k)
        else:
            k += 1
    return None


def expand_names(given, place: Place, shape: tuple[int, ...], letters: str,
                 default: str, layer: int | None = None):
    """Names of a block of quantities: a pattern with placeholders, or a nested list.

    ``letters`` names the placeholder of each axis (e.g. "ji" for weights[unit][input]);
    indices in patterns start at 1.
    """
    if given is None:
        given = default
    check_block(place, shape)
    if isinstance(given, str):
        # Checked as filled in (placeholders become digits): a stray # is refused too.
        placeholders = letters + ("l" if layer is not None else "")
        place.name(re.sub(f"#[{placeholders}]", "1", given) if placeholders else given)
        return _fill_pattern(given, shape, letters, layer)
    if isinstance(given, list):
        def walk(value, sub_place, sub_shape):
            if not sub_shape:
                return sub_place.name(value)
            if not isinstance(value, list) or len(value) != sub_shape[0]:
                sub_place.fail(f"{shape_words(sub_shape)} of names")
            return [walk(v, sub_place / k, sub_shape[1:]) for k, v in enumerate(value)]
        return walk(given, place, shape)
    place.fail("a name pattern such as \"w_{#j,#i}\" or a nested list of names")


def _fill_pattern(pattern: str, shape, letters: str, layer):
    """Every name of the block: #l the layer, #<letter> the index (from 1) on that axis."""
    if layer is not None:
        pattern = pattern.replace("#l", str(layer))
    template = pattern.replace("{", "{{").replace("}", "}}")  # a str.format template
    for axis, letter in enumerate(letters[:len(shape)]):
        template = template.replace("#" + letter, f"{{{axis}}}")
    if not shape:
        return template.format()
    last = [str(k) for k in range(1, shape[-1] + 1)]

    def fill(prefix: tuple, depth: int):
        if depth < len(shape) - 1:
            return [fill(prefix + (k,), depth + 1) for k in range(1, shape[depth] + 1)]
        # one row: the text around the last index, then one concatenation per name
        pieces = template.format(*prefix, "\0").split("\0")
        if len(pieces) == 2:
            head, tail = pieces
            return [head + k + tail for k in last]
        return [k.join(pieces) for k in last]
    return fill((), 0)


def flatten_names(nested) -> list[str]:
    if isinstance(nested, list):
        return [name for item in nested for name in flatten_names(item)]
    return [nested]


class ParameterTable:
    """Collects parameters; one name used in several places is one shared parameter."""

    def __init__(self):
        self.values: dict[str, float] = {}
        self._blocks: list[tuple[list, Place]] = []  # (flat names, place) as added

    def add(self, names, values, place: Place):
        """Names (nested lists, or one name) and their values, of the same shape."""
        flat_names, flat_values = _flat(names), _flat(values)
        self._blocks.append((flat_names, names, place))
        known = self.values
        if known.keys().isdisjoint(flat_names) and len(set(flat_names)) == len(flat_names):
            known.update(zip(flat_names, flat_values))  # no name seen before: no conflict
            return
        for k, (name, value) in enumerate(zip(flat_names, flat_values)):
            first = known.setdefault(name, value)
            if first != value:
                _entry(names, place, k).fail(
                    f"the value {first} given for the shared parameter {name} at "
                    f"{self._first_place(name).path}, got {value}")

    def _first_place(self, name: str) -> Place:
        for flat_names, names, place in self._blocks:
            if name in flat_names:
                return _entry(names, place, flat_names.index(name))
        raise KeyError(name)


def _flat(nested) -> list:
    """The entries of nested lists in row-major order (one entry: itself)."""
    level = nested if type(nested) is list else [nested]
    while list in set(map(type, level)):  # one comprehension per depth
        level = [y for x in level for y in (x if type(x) is list else (x,))]
    return level


def _entry(nested, place: Place, k: int) -> Place:
    """The place of entry k (row-major) of nested lists at ``place``."""
    while isinstance(nested, list):
        size = len(_flat(nested[0])) if nested else 1
        place, nested, k = place / (k // size), nested[k // size], k % size
    return place


def only(table: dict, allowed: set, place: Place):
    """Every key of ``table`` is one of ``allowed``."""
    for key in table:
        if key not in allowed:
            (place / key).fail(f"one of the keys {', '.join(sorted(allowed))}")


def allowed(name: str, value, options):
    """An argument of the Python API among ``options``, or a ValueError naming them."""
    if value not in options:
        raise ValueError(f"{name}: one of {', '.join(map(str, options))}, got {value!r}")
    return value


def only_defaults(settings, place: Place, **defaults) -> None:
    """Settings (of a torch module, or a dict: an optimizer's parameter group) that the spec
    knows only at their default value; a size given as one number stands for (n, n)."""
    for key, default in defaults.items():
        value = (settings.get(key, default) if isinstance(settings, dict)
                 else getattr(settings, key, default))
        if isinstance(default, tuple) and isinstance(value, int):
            value = (value, value)
        value = tuple(value) if isinstance(value, (list, tuple)) else value
        if value is not default if default is None else value != default:
            place.fail(f"{key}={default!r} (the spec has no other), got {value!r}")


def infer_shape(values) -> tuple[int, ...]:
    """The shape of nested lists, read along the first entries."""
    shape = []
    while isinstance(values, list):
        shape.append(len(values))
        values = values[0] if values else None
    return tuple(shape)


# Sheet templates (sheet_spec.py): a draw table stands where numbers are expected
DRAW_KINDS = ("uniform", "integers", "choice", "one_hot")


def is_draw(value) -> bool:
    return isinstance(value, dict) and any(kind in value for kind in DRAW_KINDS)
