"""Spec stage: read a network description (TOML, JSON or a Python dict) and validate it.

This is the only module that knows file formats. Every error names the file,
the place in it (``layers[2].weights[0][1]``) and what was expected.

Each ``[[layers]]`` table is read by its kind (``type``: layers/), the loss by its entry
(losses.py); names of quantities are LaTeX-like strings (``wh_{1,1}``, ``out_{h1}``)
checked against a small safe grammar (validate.py): a name can never run a TeX command.
"""

from __future__ import annotations

import copy
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .activations import ACTIVATIONS as ACTIVATION_ENTRIES
from .errors import SpecError
from .layers import LAYER_KINDS, LAYER_TYPES
from .limits import MAX_DEPTH, MAX_FILE_BYTES, check_block, check_depth
from .losses import LOSSES as LOSS_ENTRIES
from .optimizers import OPTIMIZERS
from .validate import (ParameterTable, Place, describe, expand_names, flatten_names, infer_shape,
                       only)

ACTIVATIONS = tuple(ACTIVATION_ENTRIES)
LOSSES = tuple(LOSS_ENTRIES)
DEFAULT_OPTIMIZER = next(iter(OPTIMIZERS))

# Default names (documented in the README; each layer kind has its own). Placeholders:
# #i input, #j output; #c channel, #r row, #s column of an image.
DEFAULT_INPUT_NAMES = "x_{#i}"
DEFAULT_LOSS_NAMES = {"terms": "E_{#j}", "total": "E", "targets": "t_{#j}"}


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
    steps: int = 1
    batch_size: int | None = None
    epochs: int | None = None
    optimizer: str = DEFAULT_OPTIMIZER  # how the parameters move (optimizers.py)
    optimizer_settings: dict = field(default_factory=dict)  # its settings (read by its entry)
    # the language of its documents (the command line overrides it): not the network
    lang: str = field(default="en", compare=False)
    extra: dict = field(default_factory=dict)
    # the document it was read from (a copy): spec_toml.py writes it back as a spec file
    document: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def output_names(self) -> list[str]:
        return self.layers[-1].activation_names

    @property
    def couples_examples(self) -> bool:
        """Whether a layer's forward pass mixes the examples of a mini-batch (graph.py then
        builds one graph for the whole mini-batch)."""
        return any(layer.couples_examples for layer in self.layers)

    @property
    def buffers(self) -> dict[str, float]:
        """What the layers keep from step to step besides the parameters (running
        statistics), by name, before the first step."""
        return {name: value for layer in self.layers for name, value in layer.buffers().items()}

    @property
    def momentum(self) -> float:
        """The optimizer's momentum μ, 0 when it has none."""
        return self.optimizer_settings.get("momentum", 0.0)


# ---------------------------------------------------------------------------
# Reading files


def load_spec(path) -> NetworkSpec:
    """Read a spec from a ``.toml`` or ``.json`` file."""
    return spec_from_dict(read_file(path), source=str(path))


def as_spec(spec) -> NetworkSpec:
    """A NetworkSpec from a path, a dict (the TOML/JSON structure) or a NetworkSpec."""
    if isinstance(spec, NetworkSpec):
        return spec
    if isinstance(spec, dict):
        return spec_from_dict(spec)
    return load_spec(spec)


def read_file(path) -> dict:
    """The parsed contents of a ``.toml`` or ``.json`` file, with one-line errors."""
    path = Path(path)
    return read_document(read_text(path), str(path), path.suffix.lstrip(".").lower())


def read_text(path, what: str = "file") -> str:
    """The UTF-8 text of an input file (spec, template, answers: ``what``), read only up to
    limits.MAX_FILE_BYTES: a bigger file, or a device that never ends, is refused at once."""
    try:
        with open(path, "rb") as handle:
            return read_stream(handle, path, what)
    except OSError as err:
        raise SpecError(path, "", f"cannot read the {what} ({err.strerror or err})") from None


def read_stream(stream, source, what: str = "file") -> str:
    """The UTF-8 text of a binary stream (a file, standard input), at most
    limits.MAX_FILE_BYTES of it."""
    data = stream.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise SpecError(source, "", f"at most {MAX_FILE_BYTES // 1_000_000} MB in the {what} "
                                    f"(the limit: a smaller file; TOML is read at about 1 MB/s)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SpecError(source, f"byte {err.start + 1}", f"UTF-8 text in the {what}") from None


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


def _parse_limit(err: Exception) -> str:
    if isinstance(err, RecursionError):
        return f"lists or tables nested at most {MAX_DEPTH} deep"
    return "numbers of at most 4,300 digits" if "digits" in str(err) else str(err)


# ---------------------------------------------------------------------------
# The spec proper


LANGUAGES = ("en", "fr")  # a language of the documents: templates/lang/<lang>.toml


def spec_from_dict(data: dict, source: str = "<spec>") -> NetworkSpec:
    """Validate a spec given as a dict (the parsed TOML/JSON, or built in Python)."""
    top = Place(source)
    top.table(data)
    known = {"title", "lang", "inputs", "layers", "loss", "training", "examples"}
    for key in data:
        if key not in known:
            (top / key).fail(f"one of the sections {', '.join(sorted(known))}")
    title = data.get("title", "")
    if not isinstance(title, str):
        (top / "title").fail(f"a text, got {describe(title)}")
    lang = (top / "lang").choice(data.get("lang", "en"), LANGUAGES)

    inputs_place = top / "inputs"
    inputs = inputs_place.table(data.get("inputs", {}))
    input_shape, input_names = _read_input_shape(inputs, inputs_place)

    params = ParameterTable()
    layers = []
    raw_layers = data.get("layers")
    if not isinstance(raw_layers, list) or not raw_layers:
        (top / "layers").fail("a non-empty list of layers ([[layers]] tables)")
    shape = input_shape
    for k, raw in enumerate(raw_layers):
        place = top / "layers" / k
        place.table(raw)
        kind = (place / "type").choice(raw.get("type"), LAYER_TYPES)
        layer = LAYER_KINDS[kind].read(raw, place, k + 1, shape, params)
        shape = layer.out_shape
        layers.append(layer)
    if not hasattr(layers[-1], "activation_names") or len(shape) != 1:
        (top / "layers" / (len(layers) - 1)).fail("a dense layer last (the network's outputs)")

    loss = _read_loss(data.get("loss"), top / "loss", layers[-1])
    examples = _read_examples(data, top, inputs, input_shape, loss)
    for k, layer in enumerate(layers):
        layer.check_examples(len(examples), top / "layers" / k)
    training = (top / "training").table(data.get("training", {}))
    settings = _read_training(training, top / "training", params, layers, len(examples))

    _check_unique_names(input_names, layers, loss, params, top)
    _check_constants(layers, top)
    smallest = max(layer.smallest_batch for layer in layers)
    if len(examples) < smallest:
        (top / "examples").fail(f"at least {smallest} examples: "
                                + _needs_examples(layers, smallest))
    return NetworkSpec(
        source=source, title=title, input_names=input_names, input_shape=input_shape,
        layers=layers, loss=loss, parameters=params.values, examples=examples, lang=lang,
        **settings, document=copy_document(data))


def copy_document(value):
    """A copy of a spec document (tables, lists, numbers, texts), as copy.deepcopy makes
    it; a list of numbers or texts is copied whole (200,000 weights: milliseconds, where
    deepcopy takes a third of a second)."""
    if type(value) is dict:
        return {key: copy_document(item) for key, item in value.items()}
    if type(value) is list:
        if set(map(type, value)) <= _ATOMS:
            return value[:]
        return [copy_document(item) for item in value]
    return copy.deepcopy(value)


_ATOMS = {int, float, str, bool, type(None)}  # immutable: shared by the copy


def _read_input_shape(inputs: dict, place: Place):
    values = inputs.get("values")
    shape = inputs.get("shape")
    if shape is not None:
        sp = place / "shape"
        if not isinstance(shape, list) or len(shape) not in (1, 3):
            sp.fail("[n] for a vector or [channels, height, width] for an image")
        shape = tuple((sp / k).integer(v) for k, v in enumerate(shape))
    elif isinstance(values, list):
        shape = infer_shape(values)
        if 0 in shape:  # [] or [[]]: no input at all
            (place / "values").fail("a non-empty list of input numbers (rows of numbers for an "
                                    "image), got an empty list")
        if len(shape) == 2:  # a single-channel image given as rows
            shape = (1,) + shape
    elif "size" in inputs:
        shape = ((place / "size").integer(inputs["size"]),)
    else:
        place.fail("inputs.values (a list of numbers) or inputs.shape")
    if len(shape) not in (1, 3):
        place.fail("a vector of inputs or an image [channels][rows][columns]")
    check_block(place / ("shape" if "shape" in inputs else "values"), shape)
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


def read_input_values(values, place: Place, shape) -> list[float]:
    """Input values in row-major order (channels, rows, columns for images)."""
    if len(shape) == 3 and shape[0] == 1 and infer_shape(values)[:1] != (1,):
        values = [values]  # a single channel may be given without its channel axis
    return flatten_names(place.array(values, shape))


def _read_loss(raw, place: Place, last) -> LossSpec:
    if raw is None:
        place.fail("a [loss] table with type and targets")
    place.table(raw)
    only(raw, {"type", "targets", "names", "log_base"}, place)
    kind = (place / "type").choice(raw.get("type"), LOSSES)
    n = len(last.activation_names)
    names = (place / "names").table(raw.get("names", {}))
    only(names, set(DEFAULT_LOSS_NAMES), place / "names")
    LOSS_ENTRIES[kind].check_output(last.activation, place / "type")
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
            only(raw, {"inputs", "targets"}, place)
            if "inputs" not in raw:
                (place / "inputs").fail("the example's input values")
            if "targets" not in raw:
                (place / "targets").fail(f"{n_out} target values")
            x = read_input_values(raw["inputs"], place / "inputs", shape)
            t = (place / "targets").vector(raw["targets"], n_out)
            LOSS_ENTRIES[loss.kind].check_targets(t, place / "targets")
            examples.append(Example(x, t))
        return examples
    if "values" not in inputs:
        (top / "inputs" / "values").fail("the input values (or an [[examples]] list)")
    x = read_input_values(inputs["values"], top / "inputs" / "values", shape)
    raw = data["loss"]
    if "targets" not in raw:
        (top / "loss" / "targets").fail(f"{n_out} target values, one per output")
    t = (top / "loss" / "targets").vector(raw["targets"], n_out)
    LOSS_ENTRIES[loss.kind].check_targets(t, top / "loss" / "targets")
    return [Example(x, t)]


def _read_training(raw: dict, place: Place, params: ParameterTable, layers, n_examples):
    optimizer = (place / "optimizer").choice(raw.get("optimizer", DEFAULT_OPTIMIZER),
                                             tuple(OPTIMIZERS))
    entry = OPTIMIZERS[optimizer]
    only(raw, {"learning_rate", "frozen", "reduction", "steps", "batch_size", "epochs",
               "optimizer"} | set(entry.defaults), place)
    if "learning_rate" not in raw and entry.learning_rate is None:
        (place / "learning_rate").fail("the learning rate η (a positive number)")
    lr = (place / "learning_rate").number(raw.get("learning_rate", entry.learning_rate))
    if lr <= 0:
        (place / "learning_rate").fail(f"a positive learning rate, got {lr}")
    frozen = set()
    for layer in layers:
        if getattr(layer, "frozen", False):
            frozen.update(layer.parameter_names())
    listed = raw.get("frozen", [])
    if not isinstance(listed, list):
        (place / "frozen").fail("a list of parameter names")
    for k, name in enumerate(listed):
        if name not in params.values:
            (place / "frozen" / k).fail(f"the name of a parameter, got {describe(name)}")
        frozen.add(name)
    reduction = (place / "reduction").choice(raw.get("reduction", "mean"), ("mean", "sum"))
    steps = (place / "steps").integer(raw.get("steps", 1))
    batch = raw.get("batch_size")
    if batch is not None:
        batch = (place / "batch_size").integer(batch)
    epochs = raw.get("epochs")
    if epochs is not None:
        epochs = (place / "epochs").integer(epochs)
    return dict(frozen=frozen, learning_rate=lr, reduction=reduction, steps=steps,
                batch_size=batch, epochs=epochs, optimizer=optimizer,
                optimizer_settings=entry.read(raw, place))


def _needs_examples(layers, count: int) -> str:
    """Which layer needs ``count`` examples per mini-batch, said for an error message."""
    layer = next(layer for layer in layers if layer.smallest_batch == count)
    return (f"layer {layer.index} ({layer.kind}) computes statistics over the examples of "
            f"a mini-batch")


def smallest_batch_error(layers, size: int) -> str | None:
    """What is wrong with a mini-batch of ``size`` examples for these layers, or None."""
    smallest = max(layer.smallest_batch for layer in layers)
    if size >= smallest:
        return None
    return (f"mini-batches of at least {smallest} examples ({_needs_examples(layers, smallest)}"
            f"), got one of {size}")


def _check_constants(layers, top: Place):
    """A constant named in several layers (ε) is one constant: it needs one value."""
    seen: dict[str, tuple[float, int]] = {}
    for k, layer in enumerate(layers):
        for name, value in layer.constants().items():
            if name in seen and seen[name][0] != value:
                (top / "layers" / k).fail(
                    f"the value {seen[name][0]} of the constant {name} (layers[{seen[name][1]}])"
                    f" or another name for this layer's, got {value}")
            seen.setdefault(name, (value, k))


def _check_unique_names(input_names, layers, loss: LossSpec, params, top: Place):
    """Parameters may repeat (sharing); every other quantity needs a name of its own."""
    groups = [input_names, params.values] + [layer.quantity_names() for layer in layers]
    groups += [loss.term_names + [loss.total_name], loss.target_names]
    named: set[str] = set()
    for group in groups:  # no name in two groups (the common case): nothing to locate
        if not named.isdisjoint(group):
            break
        named.update(group)
    else:
        return
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
        for name in list(layer.constants()) + list(layer.example_constants(0)):
            claim(name, "a constant")
        for name in dict.fromkeys(layer.quantity_names()):
            claim(name, f"a quantity of layer {layer.index}")
    for name in loss.term_names + [loss.total_name]:
        claim(name, "a loss term")
    for name in loss.target_names:
        claim(name, "a target")
