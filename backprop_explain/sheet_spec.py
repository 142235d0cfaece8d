"""Spec stage for exercise sheets: read a *template* (a spec with random numbers).

A template is an ordinary spec (TOML/JSON, see spec.py) in which any number, or a whole
block of numbers, may be replaced by a **draw table**, plus an ``[exercise]`` section that
says what the student must compute.

Draw tables (each variant draws its own numbers, in document order)::

    { uniform = [-1, 1], decimals = 1 }   # uniform in [-1, 1], rounded to 1 decimal
                                          # (decimals: 0…10, default 2)
    { integers = [-3, 3] }                # a whole number from -3 to 3 inclusive
    { choice = [0.1, 0.01, 0.001] }       # one of the listed numbers
    { one_hot = true }                    # targets only: a random one-hot vector

A draw table stands for one number where a number is expected (``weights = [[{ uniform =
[-1, 1] }, 2, 0.5], …]``, ``learning_rate = { choice = [0.1, 0.01] }``), or for a whole
block where a list is expected: ``weights`` and ``biases`` of a dense layer (give ``units``),
``filters`` and ``biases`` of a conv2d layer (give ``kernel`` and ``out_channels``),
``inputs.values`` (give ``inputs.size``, ``inputs.shape`` or ``inputs.names`` as a list),
``loss.targets`` and the ``inputs``/``targets`` of ``[[examples]]``; every entry of the
block is drawn independently.

The ``[exercise]`` section::

    [exercise]
    ask = ["forward", "loss", "gradients:output", "update:output", "loss_after"]
    digits = 4          # significant digits asked of the answers (default 4)

``ask`` lists groups or explicit keys, in the order the sheet asks them. Groups:
``forward`` (pre-activations and activations), ``loss`` (each loss term and the total),
``gradients`` (∂E/∂θ of each parameter), ``update`` (each parameter after the SGD step,
frozen ones left out), ``forward_after`` (every forward quantity after the step) and
``loss_after``. A group may be restricted to layers with ``:output``, ``:hidden`` or
``:N`` (layer N, from 1): ``gradients:output``. Explicit keys are those of derivation.py
and ``--format json``: a quantity's name (``out_{o1}``), ``d{loss}/d{parameter}``
(``dE_{tot}/dwo_{1,1}``), ``{name}'`` for a value after the update (``wo_{1,1}'``,
``E_{tot}'``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .keys import adjoint_key, example_name, updated_key
from .layers import LAYER_KINDS
from .spec import NetworkSpec, read_file, spec_from_dict
from .limits import check_block
from .validate import DRAW_KINDS, Place, describe, infer_shape, is_draw

GROUPS = ("forward", "loss", "gradients", "update", "forward_after", "loss_after")
MAX_DECIMALS = 10


@dataclass
class Question:
    """One value the student computes: its key (derivation.py) and how it is written."""

    key: str
    tex: str  # LaTeX of the quantity: out_{o1}, \frac{∂E}{∂w}, w'
    group: str  # forward | loss | gradients | update | forward_after | loss_after
    name: str  # the quantity or parameter the key is about


@dataclass
class SheetTemplate:
    """A template: its document (draw tables left in), the questions and the rounding."""

    source: str
    document: dict
    asks: list
    digits: int

    def draw(self, rng: random.Random) -> dict:
        """One variant's spec document: every draw table replaced by drawn numbers."""
        return _Drawer(self.source, rng, _block_shapes(self.document, self.source)).resolve(
            self.document, Place(self.source))

    def draw_spec(self, rng: random.Random) -> NetworkSpec:
        return spec_from_dict(self.draw(rng), source=self.source)

    def questions(self, spec: NetworkSpec) -> list[Question]:
        return expand_asks(self.asks, spec, Place(self.source) / "exercise" / "ask")


def load_template(path) -> SheetTemplate:
    """Read and check a template file (.toml or .json); errors are one-line SpecErrors."""
    return template_from_dict(read_file(path), source=str(path))


def template_from_dict(data: dict, source: str = "<template>") -> SheetTemplate:
    top = Place(source)
    data = dict(top.table(data))
    exercise = (top / "exercise").table(data.pop("exercise", None) or top_missing(top))
    for key in exercise:
        if key not in ("ask", "digits"):
            (top / "exercise" / key).fail("one of the keys ask, digits")
    asks = exercise.get("ask")
    if not isinstance(asks, list) or not asks or not all(isinstance(a, str) for a in asks):
        (top / "exercise" / "ask").fail('a non-empty list of groups or keys, e.g. ["forward", '
                                        '"loss", "gradients:output"]')
    digits = (top / "exercise" / "digits").integer(exercise.get("digits", 4))
    if digits > 15:
        (top / "exercise" / "digits").fail(f"at most 15 significant digits, got {digits}")
    template = SheetTemplate(source, data, asks, digits)
    template.questions(template.draw_spec(random.Random(0)))  # checks draws, spec and asks
    return template


def top_missing(top: Place):
    (top / "exercise").fail('an [exercise] section with ask = [...] (what to compute)')


# ---------------------------------------------------------------------------
# Draws


class _Drawer:
    def __init__(self, source: str, rng: random.Random, shapes: dict):
        self.source = source
        self.rng = rng
        self.shapes = shapes

    def resolve(self, value, place: Place):
        if is_draw(value):
            return self.draw(value, place, self.shapes.get(place.path))
        if isinstance(value, dict):
            return {k: self.resolve(v, place / k) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, place / k) for k, v in enumerate(value)]
        return value

    def draw(self, table: dict, place: Place, shape):
        kinds = [kind for kind in DRAW_KINDS if kind in table]
        if len(kinds) != 1:
            place.fail(f"one kind of draw ({', '.join(DRAW_KINDS)}), got {', '.join(kinds)}")
        kind = kinds[0]
        allowed = {kind, "decimals"} if kind == "uniform" else {kind}
        for key in table:
            if key not in allowed:
                (place / key).fail(f"only {' and '.join(sorted(allowed))} in a {kind} draw")
        if kind == "one_hot":
            if table["one_hot"] is not True:
                (place / "one_hot").fail("true")
            if not shape or len(shape) != 1 or not isinstance(shape[0], int) or shape[0] < 1:
                place.fail("one_hot only where a list of targets is expected")
            hot = self.rng.randrange(shape[0])
            return [1.0 if k == hot else 0.0 for k in range(shape[0])]
        sample = self._sampler(kind, table, place)
        if shape is None:
            return sample()
        check_block(place, shape)  # before drawing: units = 10**8 is refused, not drawn
        return _fill(shape, sample)

    def _sampler(self, kind: str, table: dict, place: Place):
        rng = self.rng
        if kind == "uniform":
            low, high = _bounds(table["uniform"], place / "uniform", float)
            decimals = (place / "decimals").integer(table.get("decimals", 2), 0)
            if decimals > MAX_DECIMALS:
                (place / "decimals").fail(f"at most {MAX_DECIMALS} decimals, got {decimals}")
            return lambda: _clean(round(rng.uniform(low, high), decimals))
        if kind == "integers":
            low, high = _bounds(table["integers"], place / "integers", int)
            return lambda: float(rng.randint(low, high))
        options = table["choice"]
        if not isinstance(options, list) or not options:
            (place / "choice").fail("a non-empty list of numbers to choose from")
        values = [(place / "choice" / k).number(v) for k, v in enumerate(options)]
        return lambda: values[rng.randrange(len(values))]


def _bounds(value, place: Place, kind):
    if not isinstance(value, list) or len(value) != 2:
        place.fail("[low, high]: a list of two numbers")
    if kind is int:
        low, high = ((place / k).integer(v, -(10 ** 9)) for k, v in enumerate(value))
        if high > 10 ** 9:  # drawn integers become floats: stay far inside their range
            (place / 1).fail(f"a whole number from -10^9 to 10^9, got {describe(high)}")
    else:
        low, high = ((place / k).number(v) for k, v in enumerate(value))
    if not low < high:
        place.fail(f"low < high, got [{value[0]}, {value[1]}]")
    return low, high


def _clean(x: float) -> float:
    return 0.0 if x == 0 else x  # no "-0" in a document


def _fill(shape, sample):
    if not shape:
        return sample()
    return [_fill(shape[1:], sample) for _ in range(shape[0])]


def _block_shapes(data: dict, source: str) -> dict:
    """Where a whole block may be drawn, the block's shape: {place path: shape}.

    Follows the layers as the spec stage does (the sizes only, each kind its own:
    ``sheet_blocks``), so that ``weights = { uniform = [-1, 1] }`` knows it stands for
    units × inputs numbers."""
    shapes = {}
    inputs = data.get("inputs") if isinstance(data.get("inputs"), dict) else {}
    shape = _input_shape(inputs)
    if shape:
        shapes["inputs.values"] = shape
    for k, layer in enumerate(_list(data.get("layers"))):
        if not isinstance(layer, dict) or shape is None:
            break
        where = f"layers[{k}]"
        kind = layer.get("type")
        kind = LAYER_KINDS.get(kind) if isinstance(kind, str) else None
        sized = kind.sheet_blocks(layer, shape, Place(source, where)) if kind else None
        if sized is None:
            break
        blocks, shape = sized
        shapes.update({f"{where}.{key}": block for key, block in blocks.items()})
    else:
        if shape is not None and len(shape) == 1:
            shapes["loss.targets"] = shape
    in_shape = _input_shape(inputs)
    for k, _ in enumerate(_list(data.get("examples"))):
        if in_shape:
            shapes[f"examples[{k}].inputs"] = in_shape
        if "loss.targets" in shapes:
            shapes[f"examples[{k}].targets"] = shapes["loss.targets"]
    return shapes


def _list(value) -> list:
    """``value`` if it is a list, else nothing to follow (the spec stage says what is wrong)."""
    return value if isinstance(value, list) else []


def _input_shape(inputs: dict):
    shape = inputs.get("shape")
    if isinstance(shape, list) and all(isinstance(n, int) for n in shape):
        return tuple(shape) if len(shape) != 2 else (1,) + tuple(shape)
    if isinstance(inputs.get("size"), int):
        return (inputs["size"],)
    if isinstance(inputs.get("names"), list):
        return (len(inputs["names"]),)
    values = inputs.get("values")
    if isinstance(values, list):
        shape = infer_shape(values)
        return (1,) + shape if len(shape) == 2 else shape
    return None


# ---------------------------------------------------------------------------
# What to compute


def _selected_layers(selector: str, spec: NetworkSpec, place: Place):
    layers = spec.layers
    if selector in ("", "all"):
        return layers
    if selector == "output":
        return layers[-1:]
    if selector == "hidden":
        return layers[:-1]
    if selector.isdigit() and 1 <= int(selector) <= len(layers):
        return [layers[int(selector) - 1]]
    place.fail(f"a layer selector :output, :hidden or :1…:{len(layers)}, got :{selector}")


def expand_asks(asks: list[str], spec: NetworkSpec, place: Place) -> list[Question]:
    """The questions of a sheet, in order, each key once (in a graph spanning the
    mini-batch, a per-example quantity is asked of example 1)."""
    from .notation import partial, primed
    loss = spec.loss.total_name
    forward_names = list(dict.fromkeys(
        name for layer in spec.layers for name in layer.quantity_names()))
    forward_names += spec.loss.term_names + [loss]
    parameters = list(spec.parameters)
    out: dict[str, Question] = {}

    batch = spec.couples_examples and len(spec.examples) > 1  # one graph for the batch
    shared = {loss} | set(spec.parameters) | {
        n for layer in spec.layers for n in layer.batch_quantity_names()}

    def add(key, tex, group, name):
        if batch and name not in shared:  # a per-example quantity: example 1's copy
            copy = example_name(name, 1)
            key = key.replace(name, copy, 1)
            tex = primed(copy) if tex == name + "'" else tex.replace(name, copy, 1)
        out.setdefault(key, Question(key, tex, group, name))

    for k, ask in enumerate(asks):
        group, _, selector = ask.partition(":")
        if group in GROUPS:
            layers = _selected_layers(selector, spec, place / k)
            if group in ("loss", "loss_after") and selector:
                (place / k).fail(f"{group} without a layer selector, got {ask!r}")
            if group in ("forward", "forward_after"):
                for layer in layers:
                    for name in dict.fromkeys(layer.quantity_names()):
                        if group == "forward":
                            add(name, name, group, name)
                        else:
                            add(updated_key(name), name + "'", group, name)
            elif group == "loss":
                for name in spec.loss.term_names + [loss]:
                    add(name, name, group, name)
            elif group == "loss_after":
                add(updated_key(loss), loss + "'", group, loss)
            else:
                for layer in layers:
                    for name in layer.parameter_names():
                        if group == "gradients":
                            add(adjoint_key(loss, name), partial(loss, name), group, name)
                        elif name not in spec.frozen:
                            add(updated_key(name), name + "'", group, name)
            continue
        known = _explicit_key(ask, spec, forward_names, parameters)
        if known is None:
            (place / k).fail("a group (" + ", ".join(GROUPS) + ", optionally with :output, "
                             ":hidden or :N) or a key such as "
                             f"{adjoint_key(loss, parameters[0])} or {loss}', got {ask!r}")
        add(ask, *known)
    return list(out.values())


def _explicit_key(key: str, spec: NetworkSpec, forward_names, parameters):
    """(tex, group, name) of an explicit key, or None if the network has no such key."""
    from .notation import partial
    loss = spec.loss.total_name
    loss_names = spec.loss.term_names + [loss]
    if key in forward_names:
        return key, "loss" if key in loss_names else "forward", key
    for name in parameters:
        if key == adjoint_key(loss, name):
            return partial(loss, name), "gradients", name
        if key == updated_key(name):
            return name + "'", "update", name
    for name in forward_names:
        if key == updated_key(name):
            return name + "'", "loss_after" if name == loss else "forward_after", name
    return None
