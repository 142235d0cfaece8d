"""Dropout, as nn.Dropout(p): in train mode each unit (each cell of an image) is dropped
where its example's mask is 0 and the others are scaled by 1/(1 − p) (inverted dropout),
y_i = x_i · m_i / (1 − p); in eval mode the layer is the identity.

PyTorch draws a new mask at every forward pass; a worked solution needs one that can be
redone by hand, so each example has a fixed mask, given (0/1 per unit or cell) or drawn
from a seed (numpy.random.default_rng(seed): a unit is dropped when its uniform draw in
[0, 1) is below p), and written into the solution. The masks are given numbers of each
example (example_constant leaves); SymPy's chain rule then gives the dropped units'
inputs a gradient of 0, which the worked solution shows.

In PyTorch, eval mode is nn.Dropout(p).eval(); train mode is the exported script's
FixedDropout(p, masks) (templates/layers/dropout.torch.py.j2), nn.Dropout with the spec's
masks, which import-torch reads back; a plain nn.Dropout in train mode cannot be read.

Everything particular to dropout is here: the spec table, the masks, the nodes, the NumPy
kernel, the worked solution's parts (templates/layers/dropout.j2), the figure and the
PyTorch module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..lazy import numpy as np  # executed at first use: lazy.py
import sympy as sp

from ..drawing import number_label
from ..nodes import CONSTANT, EXAMPLE_CONSTANT
from ..templating import fill
from ..validate import expand_names, flatten_names, infer_shape, only, only_defaults
from .base import Layer, Part, register

OUTPUT = "dropout_output"  # the graph's node kind of a unit after dropout
MODES = ("train", "eval")
FIXED = "FixedDropout"  # the exported script's module of a train-mode layer
MODULE_INDENT = 12  # where a module starts in MyNet's nn.Sequential (torch_script.py.j2)
LINE = 88  # longer, the script's masks are written one example's per line


def drawn_masks(seed: int, p: float, count: int, size: int) -> list[list[int]]:
    """The masks of ``count`` examples the seed draws: a unit is dropped (0) when its
    uniform draw in [0, 1) is below p."""
    draws = np.random.default_rng(seed).random((count, size))
    return (draws >= p).astype(int).tolist()


@register("dropout")
@dataclass
class DropoutLayer(Layer):
    index: int
    in_shape: tuple  # (units,) or (channels, rows, columns)
    p: float
    mode: str
    seed: int | None
    # the spec's mask(s) as read, resolved into ``masks`` once the examples are known: one
    # mask for all or the same one per example is the same layer
    given_masks: object = field(compare=False)
    output_names: list[str]
    mask_names: list[str]
    p_name: str
    masks: list[list[int]] = field(default_factory=list)  # one 0/1 list per example
    kind: str = "dropout"
    fragment = "layers/dropout.j2"

    @property
    def out_shape(self):
        return tuple(self.in_shape)

    @property
    def size(self) -> int:
        return math.prod(self.in_shape)

    @property
    def train(self) -> bool:
        return self.mode == "train"

    # Spec stage --------------------------------------------------------------
    @classmethod
    def read(cls, raw, place, index, in_shape, params):
        only(raw, {"type", "p", "mode", "mask", "seed", "names"}, place)
        p = (place / "p").number(raw.get("p", 0.5))
        if not 0 <= p < 1:
            (place / "p").fail(f"a drop probability in [0, 1), got {p}")
        mode = (place / "mode").choice(raw.get("mode", "train"), MODES)
        if "mask" in raw and "seed" in raw:
            (place / "seed").fail("a mask or a seed that draws one, not both")
        seed = (place / "seed").integer(raw["seed"], 0) if "seed" in raw else None
        if mode == "train" and "mask" not in raw and seed is None:
            (place / "mask").fail("a mask per example (0 drops a unit, 1 keeps it) or a seed "
                                  "that draws them, in train mode")
        image = len(in_shape) == 3
        names = (place / "names").table(raw.get("names", {}))
        only(names, {"outputs", "masks", "p"}, place / "names")
        cell = ("#c,#r,#s" if in_shape[0] > 1 else "#r,#s") if image else "#j"
        letters = "crs" if image else "j"

        def named(key, default):
            return flatten_names(expand_names(names.get(key), place / "names" / key,
                                              tuple(in_shape), letters, default, index))

        return cls(index=index, in_shape=tuple(in_shape), p=p, mode=mode, seed=seed,
                   given_masks=raw.get("mask"),
                   output_names=named("outputs", f"d^{{(#l)}}_{{{cell}}}"),
                   mask_names=named("masks", f"m^{{(#l)}}_{{{cell}}}"),
                   p_name=expand_names(names.get("p"), place / "names" / "p", (), "",
                                       "p^{(#l)}", index))

    def check_examples(self, count, place):
        """The masks of the ``count`` examples: one given for all, one per example, or
        drawn from the seed."""
        if not self.train:
            return
        if self.given_masks is None:
            self.masks = drawn_masks(self.seed, self.p, count, self.size)
            return
        shape = infer_shape(self.given_masks)
        per_example = shape[:1] == (count,) and len(shape) == len(self.in_shape) + 1
        if not per_example and shape != tuple(self.in_shape):
            (place / "mask").fail(
                f"one mask of shape {'×'.join(map(str, self.in_shape))} for every example, or "
                f"{count} of them (one per example), got {'×'.join(map(str, shape)) or 'none'}")
        masks = self.given_masks if per_example else [self.given_masks] * count
        self.masks = []
        for k, mask in enumerate(masks):
            where = place / "mask" / k if per_example else place / "mask"
            flat = flatten_names((where).array(mask, tuple(self.in_shape)))
            for j, value in enumerate(flat):
                if value not in (0, 1):
                    where.fail(f"0 (dropped) or 1 (kept) for every unit, got {value:g} "
                               f"at position {j + 1}")
            self.masks.append([int(value) for value in flat])

    def quantity_names(self):
        return list(self.output_names) if self.train else []

    def outputs(self, inputs):
        return list(self.output_names) if self.train else list(inputs)

    def constants(self):
        return {self.p_name: self.p} if self.train else {}

    def example_constants(self, k):
        if not self.train:
            return {}
        return dict(zip(self.mask_names, self.masks[k] if self.masks else [1] * self.size))

    @classmethod
    def sheet_blocks(cls, raw, in_shape, place):
        return {}, tuple(in_shape)

    # Graph stage -------------------------------------------------------------
    def build(self, graph, inputs):
        """y_i = x_i · m_i / (1 − p) in train mode; nothing in eval mode."""
        if not self.train:
            return list(inputs)
        p = graph.leaf(self.p_name, CONSTANT).symbol
        for x, mask, name in zip(inputs, self.mask_names, self.output_names):
            m = graph.leaf(mask, EXAMPLE_CONSTANT).symbol
            y = sp.Mul(sp.Mul(graph.symbol(x), m, evaluate=False),
                       sp.Pow(sp.Add(1, -p, evaluate=False), -1, evaluate=False),
                       evaluate=False)
            graph.computed(name, OUTPUT, y, layer=self.index)
        return list(self.output_names)

    # Fast path ---------------------------------------------------------------
    def fast_kernel(self, in_shape):
        return DropoutKernel(self, in_shape)

    # Derivation --------------------------------------------------------------
    def explains_inputs(self):
        return self.train  # the dropped units' gradients are 0: shown in its own section

    # Document ----------------------------------------------------------------
    def dropped(self, k: int, inputs: list[str]) -> list[str]:
        """The inputs example k (0-based) drops."""
        return [x for x, keep in zip(inputs, self.masks[k]) if not keep]

    def summary(self, doc):
        w = self.words(doc)
        mode = fill(w[self.mode + "_mode"], scale=doc.n.tex(1 / (1 - self.p)), pname=self.p_name)
        return fill(w["summary"], label=doc.layer_label(self.index), p=doc.n.given(self.p),
                    mode=mode, pname=self.p_name)

    def short_summary(self, network_words):
        return f"{self.kind} p = {self.p:g} ({self.mode})"

    def network_part(self, doc):
        if not self.train:
            return Part(self.fragment, "network", train=False, label=doc.layer_label(self.index),
                        p=doc.n.given(self.p), seed="", masks=[], pname=self.p_name)
        inputs = doc.inputs_of(self)
        masks = [[str(k + 1), r"\left(" + ", ".join(map(str, mask)) + r"\right)",
                  ", ".join(f"${x}$" for x in self.dropped(k, inputs)) or "—"]
                 for k, mask in enumerate(self.masks)]
        return Part(self.fragment, "network", train=True, label=doc.layer_label(self.index),
                    p=doc.n.given(self.p), seed=self.seed if self.seed is not None else "",
                    masks=masks, names=r"\left(" + ", ".join(self.mask_names) + r"\right)",
                    pname=self.p_name)

    def forward_part(self, doc, steps, values):
        part = super().forward_part(doc, steps, values)
        if part is None:
            return None
        part.fragment, part.macro = self.fragment, "forward"
        part.scale = doc.n.tex(1 / (1 - self.p))
        part.p = f"{self.p_name} = {doc.n.given(self.p)}"
        part.pname = self.p_name
        return part

    def section(self, doc, section, example):
        out = super().section(doc, section, example)
        dropped = self.dropped(0, doc.inputs_of(self))
        out["parts"] = [Part(self.fragment, "backward",
                             dropped=", ".join(f"${x}$" for x in dropped),
                             several=len(doc.spec.examples) > 1, pname=self.p_name)]
        return out

    # PyTorch -----------------------------------------------------------------
    torch_classes = ("Dropout", FIXED)
    torch_block = "drop"

    @classmethod
    def torch_table(cls, module, place):
        if type(module).__name__ == FIXED:
            return cls._fixed_table(module, place)
        only_defaults(module, place, inplace=False)
        if module.training:
            place.fail("nn.Dropout in eval mode (model.eval()): in train mode it draws a new "
                       "mask at every forward pass, where the spec needs a fixed mask per "
                       "example (give it in the spec: mask or seed)")
        return {"type": "dropout", "p": float(module.p), "mode": "eval"}

    @classmethod
    def _fixed_table(cls, module, place):
        """The exported script's FixedDropout: its masks, or the seed that draws them."""
        masks = getattr(module, "masks", None)
        if not isinstance(getattr(module, "p", None), (int, float)) or not hasattr(
                masks, "tolist") or masks.dim() < 2:
            place.fail(f"a {FIXED}(p, masks) as export-torch writes it (p a number, masks a "
                       f"buffer with one mask per example)")
        if not module.training:
            return {"type": "dropout", "p": float(module.p), "mode": "eval"}
        values = masks.detach().cpu().numpy()
        if np.isin(values, (0, 1)).all():  # 0/1 as integers; other values fail in the spec
            values = values.astype(int)
        table = {"type": "dropout", "p": float(module.p)}
        seed = getattr(module, "seed", None)
        flat = values.reshape(len(values), -1).tolist()
        if isinstance(seed, int) and flat == drawn_masks(seed, float(module.p), len(values),
                                                         values[0].size):
            return dict(table, seed=seed)
        same = all(np.array_equal(mask, values[0]) for mask in values)
        return dict(table, mask=(values[0] if same else values).tolist())

    def torch_modules(self):
        if not self.train:
            return [f"nn.Dropout({self.p!r}).eval()"]
        head = f"{FIXED}({self.p!r}, "
        masks = np.reshape(self.masks, (len(self.masks),) + self.in_shape).tolist()
        seed = f", seed={self.seed!r}" if self.seed is not None else ""
        literal = str(masks)
        if MODULE_INDENT + len(head) + len(literal) + len(seed) + 2 > LINE:
            literal = "[" + (",\n" + " " * (MODULE_INDENT + len(head) + 1)).join(
                map(str, masks)) + "]"
        return [head + literal + seed + ")"]

    def torch_definitions(self):
        return ["layers/dropout.torch.py.j2"] if self.train else []

    @property
    def torch_per_example(self):
        return self.train

    # Diagram -----------------------------------------------------------------
    def draw(self, sketch):
        """In train mode example 1's units: maps after a conv layer; after a dense layer a
        column, each unit joined to its input, its mask above (0: dropped); nothing in
        eval mode (the identity)."""
        if not self.train:
            return
        if len(self.in_shape) == 3:
            sketch.operator(r"\rightarrow", "→")
            sketch.maps(self.output_names, self.out_shape, sketch.words["dropout"])
            return
        column = sketch.neurons(self.output_names, output=sketch.is_last(self))
        for j, (mask, keep) in enumerate(zip(self.mask_names, self.masks[0])):
            column.connect(j, j)
            column.above(j, number_label(keep, sketch.numbers, mask))


class DropoutKernel:
    """Arrays (V, B, …); the batch's masks come in ``p`` (FastNetwork, example_arrays)."""

    activation = "identity"
    slope = 0.01

    def __init__(self, layer: DropoutLayer, in_shape):
        self.layer = layer
        self.in_shape = tuple(in_shape)
        self.out_shape = tuple(in_shape)
        self.names = {}
        self.scale = 1.0 / (1.0 - layer.p)
        if layer.train:
            self.example_arrays = {"mask": np.array(layer.masks, dtype=float).reshape(
                (len(layer.masks),) + self.in_shape)}
            self.value_names = {"activation": layer.output_names}
        else:
            self.value_names = {"activation": None}

    def forward(self, x, p):
        if not self.layer.train:
            return x, x, None
        y = x * p["mask"] * self.scale
        return y, y, None

    def backward(self, x, p, delta, need_input_grad, cache=None):
        if not need_input_grad:
            return {}, None
        return {}, (delta * p["mask"] * self.scale if self.layer.train else delta)
