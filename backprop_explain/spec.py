"""Spec stage: read a network description (TOML, JSON or a Python dict) and validate it.

This is the only module that knows file formats. Every error names the file,
the place in it (``layers[2].weights[0][1]``) and what was expected.

Names of quantities are LaTeX-like strings (``wh_{1,1}``, ``out_{h1}``). They are
written into LaTeX documents, so they are checked against a small safe grammar
here: ASCII letters, digits and a few punctuation marks, whitelisted commands, and
no ``^^`` (TeX reads ``^^5c`` as a backslash), so a name can never run a TeX command.
PDF builds also forbid TeX to open any file outside its job (pdf.py), a second wall.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SpecError

ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "softmax")
LOSSES = (
    "half_squared_error",
    "squared_error",
    "mean_squared_error",
    "cross_entropy",
    "softmax_cross_entropy",
    "binary_cross_entropy",
)
LAYER_TYPES = ("dense", "conv2d", "maxpool2d", "avgpool2d", "flatten")

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

# Default naming scheme (documented in the README). Placeholders: #l layer, #j unit,
# #i input of the unit; for convolutions #o output channel, #c input channel,
# #r row, #s column.
DEFAULT_INPUT_NAMES = "x_{#i}"
DEFAULT_DENSE_NAMES = {
    "weights": "w^{(#l)}_{#j,#i}",
    "biases": "b^{(#l)}_{#j}",
    "pre_activations": "z^{(#l)}_{#j}",
    "activations": "a^{(#l)}_{#j}",
}
DEFAULT_LOSS_NAMES = {"terms": "E_{#j}", "total": "E", "targets": "t_{#j}"}


@dataclass
class DenseLayer:
    index: int  # 1-based position among the spec's layers
    units: int
    activation: str
    negative_slope: float  # leaky ReLU only
    weight_names: list[list[str]]  # [unit][input]
    bias_names: list[str]
    pre_activation_names: list[str]
    activation_names: list[str]
    kind: str = "dense"


@dataclass
class LossSpec:
    kind: str
    term_names: list[str]
    total_name: str
    target_names: list[str]
    log_base: str = "e"


@dataclass
class Example:
    inputs: list[float]
    targets: list[float]


@dataclass
class NetworkSpec:
    """A validated network: architecture, parameter values, examples and training settings."""

    source: str
    title: str
    input_names: list[str]
    input_shape: tuple[int, ...]  # (n,) for vectors, (channels, height, width) for images
    layers: list[Any]
    loss: LossSpec
    parameters: dict[str, float]  # name -> value, in order of first appearance
    frozen: set[str]
    learning_rate: float
    examples: list[Example]
    reduction: str = "mean"  # how gradients of several examples combine
    momentum: float = 0.0
    steps: int = 1
    batch_size: int | None = None
    epochs: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def output_names(self) -> list[str]:
        return self.layers[-1].activation_names


# ---------------------------------------------------------------------------
# Reading files


def load_spec(path) -> NetworkSpec:
    """Read a spec from a ``.toml`` or ``.json`` file."""
    return spec_from_dict(read_file(path), source=str(path))


def read_file(path) -> dict:
    """The parsed contents of a ``.toml`` or ``.json`` file, with one-line errors."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SpecError(path, "", f"cannot read the file ({err.strerror})") from None
    return read_document(text, str(path), path.suffix.lstrip(".").lower())


def read_document(text: str, source: str, fmt: str, **options) -> dict:
    """Parse TOML or JSON text into a dict, with errors that point at the line.

    ``options`` go to the parser (answers keep numbers as text: ``parse_float=str``)."""
    if fmt == "json":
        try:
            data = json.loads(text, **options)
        except json.JSONDecodeError as err:
            raise SpecError(source, f"line {err.lineno}, column {err.colno}",
                            f"valid JSON ({err.msg})") from None
        except (ValueError, RecursionError) as err:  # 5,000-digit integers, deep nesting
            raise SpecError(source, "", f"valid JSON of reasonable size ({_parse_limit(err)})") \
                from None
    elif fmt in ("toml", ""):
        try:
            data = tomllib.loads(text, **options)
        except tomllib.TOMLDecodeError as err:
            raise SpecError(source, "", f"valid TOML ({err})") from None
        except (ValueError, RecursionError) as err:
            raise SpecError(source, "", f"valid TOML of reasonable size ({_parse_limit(err)})") \
                from None
    else:
        raise SpecError(source, "", "a file ending in .toml or .json")
    if not isinstance(data, dict):
        raise SpecError(source, "top level", "a table (object) of settings")
    check_depth(data, source)
    return data


MAX_DEPTH = 32  # nested lists/tables; a spec needs 5 (filters [out][in][row][column])


def _parse_limit(err: Exception) -> str:
    if isinstance(err, RecursionError):
        return f"lists or tables nested at most {MAX_DEPTH} deep"
    return "numbers of at most 4,300 digits" if "digits" in str(err) else str(err)


def check_depth(data, source: str) -> None:
    """Refuse lists or tables nested deeper than MAX_DEPTH (checked without recursion:
    every later stage walks the document recursively)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise SpecError(source, "", f"lists or tables nested at most {MAX_DEPTH} deep")
        children = value.values() if isinstance(value, dict) else value
        if not isinstance(value, (dict, list)):
            continue
        stack.extend((v, depth + 1) for v in children if isinstance(v, (dict, list)))


# ---------------------------------------------------------------------------
# Validation helpers: each knows where it is in the document


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
            self.fail(f"a number, got {_describe(value)}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            self.fail(f"a finite number (at most about 1.8e308), got {_describe(value)}")
        return number

    def integer(self, value, minimum: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"a whole number, got {_describe(value)}")
        if value < minimum:
            self.fail(f"a whole number >= {minimum}, got {_describe(value)}")
        return value

    def choice(self, value, options) -> str:
        if value not in options:
            self.fail(f"one of {', '.join(options)}, got {_describe(value)}")
        return value

    def table(self, value) -> dict:
        if not isinstance(value, dict):
            self.fail(f"a table, got {_describe(value)}")
        return value

    def vector(self, value, length: int | None = None) -> list[float]:
        if not isinstance(value, list):
            self.fail(f"a list of numbers, got {_describe(value)}")
        if length is not None and len(value) != length:
            self.fail(f"a list of {length} numbers, got {len(value)}")
        return [(self / k).number(v) for k, v in enumerate(value)]

    def array(self, value, shape: tuple[int, ...]):
        """A nested list of numbers with exactly ``shape``; returns nested lists of floats."""
        if not shape:
            return self.number(value)
        if not isinstance(value, list) or len(value) != shape[0]:
            got = f"{len(value)} entries" if isinstance(value, list) else _describe(value)
            self.fail(f"{_shape_words(shape)}, got {got}")
        return [(self / k).array(v, shape[1:]) for k, v in enumerate(value)]

    def name(self, value) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(f"a name (text), got {_describe(value)}")
        check_name(value, self)
        return value


def _describe(value) -> str:
    if isinstance(value, str):
        from .escaping import visible
        return f'the text "{visible(value[:80])}"' + ("…" if len(value) > 80 else "")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** 15:
        return f"a whole number of {len(str(abs(value))) if value.bit_length() < 14000 else 'thousands of'} digits"
    if isinstance(value, float) and math.isinf(value):
        return "infinity" if value > 0 else "minus infinity"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return repr(value)


def _shape_words(shape) -> str:
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


def expand_names(given, place: Place, shape: tuple[int, ...], letters: str,
                 default: str, layer: int | None = None):
    """Names of a block of quantities: a pattern with placeholders, or a nested list.

    ``letters`` names the placeholder of each axis (e.g. "ji" for weights[unit][input]);
    indices in patterns start at 1.
    """
    if given is None:
        given = default
    from .limits import check_block
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
                sub_place.fail(f"{_shape_words(sub_shape)} of names")
            return [walk(v, sub_place / k, sub_shape[1:]) for k, v in enumerate(value)]
        return walk(given, place, shape)
    place.fail("a name pattern such as \"w_{#j,#i}\" or a nested list of names")


def _fill_pattern(pattern: str, shape, letters: str, layer):
    def fill(prefix_indices, depth):
        if depth == len(shape):
            name = pattern
            if layer is not None:
                name = name.replace("#l", str(layer))
            for letter, index in zip(letters, prefix_indices):
                name = name.replace("#" + letter, str(index + 1))
            return name
        return [fill(prefix_indices + (k,), depth + 1) for k in range(shape[depth])]
    return fill((), 0)


def flatten_names(nested) -> list[str]:
    if isinstance(nested, list):
        return [name for item in nested for name in flatten_names(item)]
    return [nested]


# ---------------------------------------------------------------------------
# The spec proper


class _ParameterTable:
    """Collects parameters; one name used in several places is one shared parameter."""

    def __init__(self):
        self.values: dict[str, float] = {}
        self.places: dict[str, Place] = {}

    def add(self, names, values, place: Place):
        if isinstance(names, list):
            for k, (n, v) in enumerate(zip(names, values)):
                self.add(n, v, place / k)
            return
        if names in self.values and self.values[names] != values:
            place.fail(f"the value {self.values[names]} given for the shared parameter "
                       f"{names} at {self.places[names].path}, got {values}")
        self.values.setdefault(names, values)
        self.places.setdefault(names, place)


def spec_from_dict(data: dict, source: str = "<spec>") -> NetworkSpec:
    """Validate a spec given as a dict (the parsed TOML/JSON, or built in Python)."""
    top = Place(source)
    top.table(data)
    known = {"title", "inputs", "layers", "loss", "training", "examples"}
    for key in data:
        if key not in known:
            (top / key).fail(f"one of the sections {', '.join(sorted(known))}")
    title = data.get("title", "")
    if not isinstance(title, str):
        (top / "title").fail(f"a text, got {_describe(title)}")

    inputs_place = top / "inputs"
    inputs = inputs_place.table(data.get("inputs", {}))
    input_shape, input_names = _read_input_shape(inputs, inputs_place)

    params = _ParameterTable()
    layers = []
    raw_layers = data.get("layers")
    if not isinstance(raw_layers, list) or not raw_layers:
        (top / "layers").fail("a non-empty list of layers ([[layers]] tables)")
    shape = input_shape
    for k, raw in enumerate(raw_layers):
        place = top / "layers" / k
        place.table(raw)
        kind = (place / "type").choice(raw.get("type"), LAYER_TYPES)
        reader = _LAYER_READERS.get(kind)
        if reader is None:
            (place / "type").fail(f"a supported layer type (not yet: {kind})")
        layer, shape = reader(raw, place, k + 1, shape, params)
        layers.append(layer)
    if not hasattr(layers[-1], "activation_names") or len(shape) != 1:
        (top / "layers" / (len(layers) - 1)).fail("a dense layer last (the network's outputs)")

    loss = _read_loss(data.get("loss"), top / "loss", layers[-1])
    examples = _read_examples(data, top, inputs, input_shape, loss)
    training = (top / "training").table(data.get("training", {}))
    settings = _read_training(training, top / "training", params, layers, len(examples))

    _check_unique_names(input_names, layers, loss, params, top)
    return NetworkSpec(
        source=source, title=title, input_names=input_names, input_shape=input_shape,
        layers=layers, loss=loss, parameters=params.values, examples=examples, **settings)


def _read_input_shape(inputs: dict, place: Place):
    values = inputs.get("values")
    shape = inputs.get("shape")
    if shape is not None:
        sp = place / "shape"
        if not isinstance(shape, list) or len(shape) not in (1, 3):
            sp.fail("[n] for a vector or [channels, height, width] for an image")
        shape = tuple((sp / k).integer(v) for k, v in enumerate(shape))
    elif isinstance(values, list):
        shape = _infer_shape(values)
        if len(shape) == 2:  # a single-channel image given as rows
            shape = (1,) + shape
    elif "size" in inputs:
        shape = ((place / "size").integer(inputs["size"]),)
    else:
        place.fail("inputs.values (a list of numbers) or inputs.shape")
    if len(shape) not in (1, 3):
        place.fail("a vector of inputs or an image [channels][rows][columns]")
    count = math.prod(shape)
    names = inputs.get("names")
    if len(shape) == 1:
        input_names = expand_names(names, place / "names", shape, "i", DEFAULT_INPUT_NAMES)
    else:
        input_names = expand_names(names, place / "names", shape, "crs",
                                   "x_{#r,#s}" if shape[0] == 1 else "x^{(#c)}_{#r,#s}")
    flat = flatten_names(input_names)
    if len(flat) != count:
        (place / "names").fail(f"{count} names, got {len(flat)}")
    return shape, flat


def _infer_shape(values) -> tuple[int, ...]:
    shape = []
    while isinstance(values, list):
        shape.append(len(values))
        values = values[0] if values else None
    return tuple(shape)


def read_input_values(values, place: Place, shape) -> list[float]:
    """Input values in row-major order (channels, rows, columns for images)."""
    if len(shape) == 3 and shape[0] == 1 and _infer_shape(values)[:1] != (1,):
        values = [values]  # a single channel may be given without its channel axis
    return flatten_names(place.array(values, shape))


def _read_dense(raw: dict, place: Place, index: int, in_shape, params: _ParameterTable):
    allowed = {"type", "units", "activation", "negative_slope", "weights", "biases",
               "names", "frozen"}
    _only(raw, allowed, place)
    if len(in_shape) != 1:
        place.fail(f"a flatten layer before this dense layer (its input has shape "
                   f"{'×'.join(map(str, in_shape))})")
    n_in = in_shape[0]
    weights_raw = raw.get("weights")
    units = raw.get("units")
    if units is None and isinstance(weights_raw, list):
        units = len(weights_raw)
    units = (place / "units").integer(units)
    activation = (place / "activation").choice(raw.get("activation", "identity"), ACTIVATIONS)
    slope = (place / "negative_slope").number(raw.get("negative_slope", 0.01))
    if "weights" not in raw:
        (place / "weights").fail(f"a {units}×{n_in} list of weights (one row per unit)")
    flat_note = getattr(in_shape, "note", "")
    if (flat_note and isinstance(weights_raw, list) and weights_raw
            and isinstance(weights_raw[0], list) and len(weights_raw[0]) != n_in):
        (place / "weights" / 0).fail(f"{n_in} weights per unit, one per input{flat_note}, "
                                     f"got {len(weights_raw[0])}")
    weights = (place / "weights").array(weights_raw, (units, n_in))
    biases = raw.get("biases", [0.0] * units)
    if isinstance(biases, (int, float)) and not isinstance(biases, bool):
        biases = [biases] * units
    biases = (place / "biases").vector(biases, units)
    names = (place / "names").table(raw.get("names", {}))
    _only(names, set(DEFAULT_DENSE_NAMES), place / "names")
    layer = DenseLayer(
        index=index, units=units, activation=activation, negative_slope=slope,
        weight_names=expand_names(names.get("weights"), place / "names" / "weights",
                                  (units, n_in), "ji", DEFAULT_DENSE_NAMES["weights"], index),
        bias_names=expand_names(names.get("biases"), place / "names" / "biases", (units,),
                                "j", DEFAULT_DENSE_NAMES["biases"], index),
        pre_activation_names=expand_names(
            names.get("pre_activations"), place / "names" / "pre_activations", (units,), "j",
            DEFAULT_DENSE_NAMES["pre_activations"], index),
        activation_names=expand_names(
            names.get("activations"), place / "names" / "activations", (units,), "j",
            DEFAULT_DENSE_NAMES["activations"], index),
    )
    if activation == "identity" and "activations" not in names:
        layer.activation_names = list(layer.pre_activation_names)
    params.add(layer.weight_names, weights, place / "weights")
    params.add(layer.bias_names, biases, place / "biases")
    layer.frozen = bool(raw.get("frozen", False))
    return layer, (units,)


def _only(table: dict, allowed: set, place: Place):
    for key in table:
        if key not in allowed:
            (place / key).fail(f"one of the keys {', '.join(sorted(allowed))}")


# Layer readers by type; conv/pool/flatten readers register themselves here.
_LAYER_READERS = {"dense": _read_dense}


def register_layer_reader(kind: str, reader) -> None:
    _LAYER_READERS[kind] = reader


# ---------------------------------------------------------------------------
# Small CNNs: conv2d, maxpool2d, avgpool2d, flatten
#
# Conventions (PyTorch's; the NumPy fast path follows the same):
# - images are (channels, rows, columns); conv filters are nested lists [out][in][row][column],
#   the order of nn.Conv2d.weight; one bias per output channel.
# - conv2d is a cross-correlation (no kernel flip), as PyTorch and the course write it:
#   z[o,r,s] = Σ_c Σ_u Σ_v x_pad[c, r·stride + u, s·stride + v] · f[o,c,u,v] + b[o].
# - padding p adds p rows/columns of constant zeros around each channel (conv2d, avgpool2d);
#   max pooling never picks a padded cell (PyTorch pads it with −∞).
# - avgpool2d divides by kernel height × width, padded zeros included
#   (PyTorch's count_include_pad=True).
# - max pooling sends the gradient to the maximum of its window; on a tie, to the first
#   maximum in row-major order (as PyTorch).
# - flatten is row-major, channels first, as x.view(x.size(0), -1): index c·H·W + r·W + s.
#   It creates no new quantity: the next dense layer reads the cells by their own names.
# - output size H_out = (H_in − k + 2p)/s + 1 must be a whole number ≥ 1.
#
# Default names (placeholders #l layer, #o output channel, #c input channel, #r row,
# #s column; all from 1): filters f_{#r,#s}, bias b, feature map z_{#r,#s} before and
# a_{#r,#s} after the activation, pooled cells p_{#r,#s}. A channel index is added when
# there are several channels (f_{#o,#c,#r,#s}, b_{#o}, z_{#o,#r,#s}, p_{#c,#r,#s}) and a
# layer superscript ^{(#l)} for every layer but the first (f^{(2)}_{#r,#s}, …).
POOL_KINDS = ("maxpool2d", "avgpool2d")


@dataclass
class Conv2dLayer:
    index: int
    in_shape: tuple[int, int, int]  # (channels, rows, columns) of its input
    out_shape: tuple[int, int, int]  # (out channels, rows, columns) of its feature map
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    activation: str
    negative_slope: float
    filter_names: list  # [out][in][row][column]
    bias_names: list[str]  # one per output channel; empty without bias
    pre_activation_names: list[str]  # row-major (out channel, row, column)
    activation_names: list[str]
    kind: str = "conv2d"
    frozen: bool = False

    @property
    def in_channels(self) -> int:
        return self.in_shape[0]

    @property
    def out_channels(self) -> int:
        return self.out_shape[0]


@dataclass
class Pool2dLayer:
    index: int
    kind: str  # "maxpool2d" or "avgpool2d"
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    output_names: list[str]  # row-major (channel, row, column)


@dataclass
class FlattenLayer:
    index: int
    in_shape: tuple[int, int, int]
    size: int
    kind: str = "flatten"


class _FlatShape(tuple):
    """(n,) after a flatten layer; remembers where it came from, for the next layer's errors."""

    note = ""


def _default_cnn_names(index: int, out_channels: int, in_channels: int = 1) -> dict:
    sup = "" if index == 1 else "^{(#l)}"
    o = "#o," if out_channels > 1 else ""
    c = "#c," if in_channels > 1 else ""
    return {
        "filters": f"f{sup}_{{{o}{c}#r,#s}}",
        "biases": f"b{sup}_{{#o}}" if out_channels > 1 else f"b{sup}",
        "pre_activations": f"z{sup}_{{{o}#r,#s}}",
        "activations": f"a{sup}_{{{o}#r,#s}}",
        "outputs": f"p{sup}_{{{c}#r,#s}}",
    }


def _pair(value, place: Place, default, minimum: int) -> tuple[int, int]:
    """A size given as one whole number or as [rows, columns]."""
    if value is None:
        return default
    if isinstance(value, list):
        if len(value) != 2:
            place.fail(f"a whole number or [rows, columns], got a list of {len(value)}")
        return tuple((place / k).integer(v, minimum) for k, v in enumerate(value))
    n = place.integer(value, minimum)
    return (n, n)


def _output_size(place: Place, kind: str, axis: str, n_in: int, k: int, p: int, s: int) -> int:
    span = n_in - k + 2 * p
    if span < 0 or span % s:
        place.fail(f"sizes giving a whole number of {kind} output {axis}, got "
                   f"(H_in − k + 2p)/s + 1 = ({n_in} − {k} + 2·{p})/{s} + 1 = {span / s + 1:g}"
                   f" (change the kernel, stride or padding)")
    return span // s + 1


def _image_input(place: Place, kind: str, in_shape) -> tuple[int, int, int]:
    if len(in_shape) != 3:
        place.fail(f"an image input [channels][rows][columns] for {kind}, got a vector of "
                   f"{in_shape[0]} values ({kind} cannot follow a flatten or dense layer)")
    return tuple(in_shape)


def _cnn_names(names: dict, key: str, place: Place, shape, letters: str, default: str,
               index: int):
    """Names of a block; a nested list may leave out a leading channel axis of size 1."""
    given = names.get(key)
    if isinstance(given, list) and len(_infer_shape(given)) < len(shape):
        missing = len(shape) - len(_infer_shape(given))
        if all(n == 1 for n in shape[:missing]):
            for _ in range(missing):
                given = [given]
    return expand_names(given, place / "names" / key, shape, letters, default, index)


def _read_conv2d(raw: dict, place: Place, index: int, in_shape, params: _ParameterTable):
    _only(raw, {"type", "in_channels", "out_channels", "kernel", "stride", "padding",
                "activation", "negative_slope", "filters", "biases", "names", "frozen"}, place)
    c_in, h_in, w_in = _image_input(place, "conv2d", in_shape)
    if "in_channels" in raw and (place / "in_channels").integer(raw["in_channels"]) != c_in:
        (place / "in_channels").fail(f"{c_in} (the channels of this layer's input), "
                                     f"got {raw['in_channels']}")
    if "filters" not in raw:
        (place / "filters").fail("the filters, nested lists [out][in][row][column] (the order "
                                 "of PyTorch's Conv2d.weight); a plain grid for one filter on "
                                 "one channel")
    given = raw["filters"]
    depth = _infer_shape(given)
    one_grid = len(depth) == 2  # one filter on one channel, given as rows
    if one_grid and c_in != 1:
        (place / "filters").fail(f"filters [out][in][row][column] for an input of {c_in} "
                                 f"channels, got a plain grid")
    if len(depth) not in (2, 4):
        (place / "filters").fail("nested lists [out][in][row][column] of numbers "
                                 "(or a plain grid for one filter on one channel)")
    out_ch = (place / "out_channels").integer(raw.get("out_channels", 1 if one_grid else depth[0]))
    kernel = _pair(raw.get("kernel"), place / "kernel", tuple(depth[-2:]), 1)
    stride = _pair(raw.get("stride"), place / "stride", (1, 1), 1)
    padding = _pair(raw.get("padding"), place / "padding", (0, 0), 0)
    if one_grid:
        if out_ch != 1:
            (place / "filters").fail(f"{out_ch} filters [out][in][row][column], got one grid")
        filters = [[(place / "filters").array(given, kernel)]]
    else:
        filters = (place / "filters").array(given, (out_ch, c_in) + kernel)
    h_out = _output_size(place, "conv2d", "rows", h_in, kernel[0], padding[0], stride[0])
    w_out = _output_size(place, "conv2d", "columns", w_in, kernel[1], padding[1], stride[1])
    activation = (place / "activation").choice(raw.get("activation", "identity"), ACTIVATIONS)
    if activation == "softmax":
        (place / "activation").fail("an element-wise activation for conv2d, got softmax")
    slope = (place / "negative_slope").number(raw.get("negative_slope", 0.01))
    biases = raw.get("biases", [0.0] * out_ch)
    if isinstance(biases, (int, float)) and not isinstance(biases, bool):
        biases = [biases] * out_ch
    has_bias = biases is not False  # biases = false: no bias (PyTorch's bias=False)
    if has_bias:
        biases = (place / "biases").vector(biases, out_ch)
    names = (place / "names").table(raw.get("names", {}))
    _only(names, {"filters", "biases", "pre_activations", "activations"}, place / "names")
    default = _default_cnn_names(index, out_ch, c_in)
    feature_map = (out_ch, h_out, w_out)
    layer = Conv2dLayer(
        index=index, in_shape=(c_in, h_in, w_in), out_shape=feature_map, kernel=kernel,
        stride=stride, padding=padding, activation=activation, negative_slope=slope,
        filter_names=_cnn_names(names, "filters", place, (out_ch, c_in) + kernel, "ocrs",
                                default["filters"], index),
        bias_names=(expand_names(names.get("biases"), place / "names" / "biases", (out_ch,),
                                 "o", default["biases"], index) if has_bias else []),
        pre_activation_names=flatten_names(_cnn_names(
            names, "pre_activations", place, feature_map, "ors", default["pre_activations"],
            index)),
        activation_names=flatten_names(_cnn_names(
            names, "activations", place, feature_map, "ors", default["activations"], index)),
    )
    if activation == "identity" and "activations" not in names:
        layer.activation_names = list(layer.pre_activation_names)
    params.add(layer.filter_names, filters, place / "filters")
    if has_bias:
        params.add(layer.bias_names, biases, place / "biases")
    layer.frozen = bool(raw.get("frozen", False))
    return layer, feature_map


def _read_pool2d(raw: dict, place: Place, index: int, in_shape, params: _ParameterTable):
    kind = raw["type"]
    _only(raw, {"type", "kernel", "stride", "padding", "names"}, place)
    channels, h_in, w_in = _image_input(place, kind, in_shape)
    if "kernel" not in raw:
        (place / "kernel").fail(f"the {kind} window size (a whole number or [rows, columns])")
    kernel = _pair(raw["kernel"], place / "kernel", None, 1)
    stride = _pair(raw.get("stride"), place / "stride", kernel, 1)  # PyTorch: stride = kernel
    padding = _pair(raw.get("padding"), place / "padding", (0, 0), 0)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        (place / "padding").fail(f"a padding of at most half the window {kernel[0]}×"
                                 f"{kernel[1]} (as PyTorch), got {padding[0]}×{padding[1]}")
    h_out = _output_size(place, kind, "rows", h_in, kernel[0], padding[0], stride[0])
    w_out = _output_size(place, kind, "columns", w_in, kernel[1], padding[1], stride[1])
    names = (place / "names").table(raw.get("names", {}))
    _only(names, {"outputs"}, place / "names")
    out_shape = (channels, h_out, w_out)
    outputs = _cnn_names(names, "outputs", place, out_shape, "crs",
                         _default_cnn_names(index, 1, channels)["outputs"], index)
    layer = Pool2dLayer(index=index, kind=kind, in_shape=(channels, h_in, w_in),
                        out_shape=out_shape, kernel=kernel, stride=stride, padding=padding,
                        output_names=flatten_names(outputs))
    return layer, out_shape


def _read_flatten(raw: dict, place: Place, index: int, in_shape, params: _ParameterTable):
    _only(raw, {"type"}, place)
    shape = _image_input(place, "flatten", in_shape)
    size = math.prod(shape)
    out = _FlatShape((size,))
    out.note = (f" (flatten layer {index} turns {'×'.join(map(str, shape))} values "
                f"into {size})")
    return FlattenLayer(index=index, in_shape=shape, size=size), out


register_layer_reader("conv2d", _read_conv2d)
register_layer_reader("maxpool2d", _read_pool2d)
register_layer_reader("avgpool2d", _read_pool2d)
register_layer_reader("flatten", _read_flatten)


def _read_loss(raw, place: Place, last) -> LossSpec:
    if raw is None:
        place.fail("a [loss] table with type and targets")
    place.table(raw)
    _only(raw, {"type", "targets", "names", "log_base"}, place)
    kind = (place / "type").choice(raw.get("type"), LOSSES)
    n = len(last.activation_names)
    names = (place / "names").table(raw.get("names", {}))
    _only(names, set(DEFAULT_LOSS_NAMES), place / "names")
    if kind == "softmax_cross_entropy" and last.activation != "identity":
        (place / "type").fail("softmax_cross_entropy after a layer with activation = "
                              f"\"identity\" (it applies the softmax itself), got "
                              f"{last.activation}")
    term_names = expand_names(names.get("terms"), place / "names" / "terms", (n,), "j",
                              DEFAULT_LOSS_NAMES["terms"])
    total = expand_names(names.get("total"), place / "names" / "total", (), "",
                         DEFAULT_LOSS_NAMES["total"])
    targets = expand_names(names.get("targets"), place / "names" / "targets", (n,), "j",
                           DEFAULT_LOSS_NAMES["targets"])
    base = raw.get("log_base", "e")
    if base not in ("e",):
        (place / "log_base").fail('"e" (the natural log; cross-entropy uses ln)')
    return LossSpec(kind=kind, term_names=term_names, total_name=total, target_names=targets)


def check_targets(targets: list[float], kind: str, place: Place) -> None:
    """Targets a loss can take: probabilities for the cross-entropies."""
    if kind in ("cross_entropy", "softmax_cross_entropy", "binary_cross_entropy"):
        for k, t in enumerate(targets):
            if t < 0 or (kind == "binary_cross_entropy" and t > 1):
                bounds = "between 0 and 1" if kind == "binary_cross_entropy" else ">= 0"
                (place / k).fail(f"a target {bounds} for {kind}, got {t}")
    if kind == "softmax_cross_entropy" and abs(sum(targets) - 1) > 1e-9:
        place.fail(f"targets summing to 1 (a probability distribution) for {kind}, "
                   f"got a sum of {sum(targets)}")


def _read_examples(data, top: Place, inputs: dict, shape, loss: LossSpec) -> list[Example]:
    n_out = len(loss.target_names)
    examples = []
    if "examples" in data:
        raw_examples = data["examples"]
        if not isinstance(raw_examples, list) or not raw_examples:
            (top / "examples").fail("a non-empty list of [[examples]] with inputs and targets")
        for k, raw in enumerate(raw_examples):
            place = top / "examples" / k
            place.table(raw)
            _only(raw, {"inputs", "targets"}, place)
            if "inputs" not in raw:
                (place / "inputs").fail("the example's input values")
            if "targets" not in raw:
                (place / "targets").fail(f"{n_out} target values")
            x = read_input_values(raw["inputs"], place / "inputs", shape)
            t = (place / "targets").vector(raw["targets"], n_out)
            check_targets(t, loss.kind, place / "targets")
            examples.append(Example(x, t))
        return examples
    if "values" not in inputs:
        (top / "inputs" / "values").fail("the input values (or an [[examples]] list)")
    x = read_input_values(inputs["values"], top / "inputs" / "values", shape)
    raw = data["loss"]
    if "targets" not in raw:
        (top / "loss" / "targets").fail(f"{n_out} target values, one per output")
    t = (top / "loss" / "targets").vector(raw["targets"], n_out)
    check_targets(t, loss.kind, top / "loss" / "targets")
    return [Example(x, t)]


def _read_training(raw: dict, place: Place, params: _ParameterTable, layers, n_examples):
    _only(raw, {"learning_rate", "frozen", "momentum", "reduction", "steps", "batch_size",
                "epochs"}, place)
    if "learning_rate" not in raw:
        (place / "learning_rate").fail("the learning rate η (a positive number)")
    lr = (place / "learning_rate").number(raw["learning_rate"])
    if lr <= 0:
        (place / "learning_rate").fail(f"a positive learning rate, got {lr}")
    frozen = set()
    for layer in layers:
        if getattr(layer, "frozen", False):
            frozen.update(parameter_names_of(layer))
    listed = raw.get("frozen", [])
    if not isinstance(listed, list):
        (place / "frozen").fail("a list of parameter names")
    for k, name in enumerate(listed):
        if name not in params.values:
            (place / "frozen" / k).fail(f"the name of a parameter, got {_describe(name)}")
        frozen.add(name)
    momentum = (place / "momentum").number(raw.get("momentum", 0.0))
    if not 0 <= momentum < 1:
        (place / "momentum").fail(f"a momentum in [0, 1), got {momentum}")
    reduction = (place / "reduction").choice(raw.get("reduction", "mean"), ("mean", "sum"))
    steps = (place / "steps").integer(raw.get("steps", 1))
    batch = raw.get("batch_size")
    if batch is not None:
        batch = (place / "batch_size").integer(batch)
    epochs = raw.get("epochs")
    if epochs is not None:
        epochs = (place / "epochs").integer(epochs)
    return dict(frozen=frozen, learning_rate=lr, momentum=momentum, reduction=reduction,
                steps=steps, batch_size=batch, epochs=epochs)


def parameter_names_of(layer) -> list[str]:
    """Every parameter name of a layer, unit by unit (its weights, then its bias), as the
    course derives them; a name shared by several units is listed once, after the last
    unit that uses it (its gradient sums over all of them)."""
    rows = getattr(layer, "weight_names", None) or getattr(layer, "filter_names", None) or []
    biases = getattr(layer, "bias_names", [])
    names = []
    for k, row in enumerate(rows):
        names += flatten_names(row) + ([biases[k]] if k < len(biases) else [])
    return list(reversed(dict.fromkeys(reversed(names))))


def quantity_names_of(layer) -> list[str]:
    names = []
    for attr in ("pre_activation_names", "activation_names", "output_names"):
        names += flatten_names(getattr(layer, attr, []))
    return names


def _check_unique_names(input_names, layers, loss: LossSpec, params, top: Place):
    """Parameters may repeat (sharing); every other quantity needs a name of its own."""
    seen: dict[str, str] = {}

    def claim(name, what):
        if name in seen and seen[name] != what:
            top.fail(f"distinct names, but {name!r} names both {seen[name]} and {what}")
        seen[name] = what

    for name in input_names:
        claim(name, f"input {name}")
    for name in params.values:
        claim(name, "a parameter")
    for layer in layers:
        for name in dict.fromkeys(quantity_names_of(layer)):
            claim(name, f"a quantity of layer {layer.index}")
    for name in loss.term_names + [loss.total_name]:
        claim(name, "a loss term")
    for name in loss.target_names:
        claim(name, "a target")
