"""Flatten: the cells of an image (channels, rows, columns) in one vector.

Row-major, channels first, as PyTorch's x.view(x.size(0), -1): cell (c, r, s) of a
C×H×W image goes to position c·H·W + r·W + s. It computes nothing: the next layer
reads each cell under its own name, so flatten adds no quantity to the graph
(images are already kept as lists in this order). The worked solution says which
cells the next layer reads (templates/layers/flatten.j2); the figure draws nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..templating import fill
from ..validate import only
from . import grid
from .base import Layer, Part, register

NAMES_SHOWN = 16  # a flattened vector longer than this is shown as first … last


class FlatShape(tuple):
    """(n,) after a flatten layer; remembers where it came from, for the next layer's errors."""

    note = ""


@register("flatten")
@dataclass
class FlattenLayer(Layer):
    index: int
    in_shape: tuple[int, int, int]
    size: int
    kind: str = "flatten"
    fragment = "layers/flatten.j2"
    torch_classes = ("Flatten",)
    torch_view = "x.view(x.size(0), -1)"  # the course's way, in MyNet.forward

    # Spec stage --------------------------------------------------------------
    @classmethod
    def read(cls, raw, place, index, in_shape, params):
        only(raw, {"type"}, place)
        shape = grid.image_input(place, "flatten", in_shape)
        return cls(index=index, in_shape=shape, size=math.prod(shape))

    @property
    def out_shape(self):
        out = FlatShape((self.size,))
        out.note = (f" (flatten layer {self.index} turns {'×'.join(map(str, self.in_shape))} "
                    f"values into {self.size})")
        return out

    def outputs(self, inputs):
        return list(inputs)

    @classmethod
    def sheet_blocks(cls, raw, in_shape, place):
        return {}, (math.prod(in_shape),)

    # Graph stage -------------------------------------------------------------
    def build(self, graph, inputs):
        """Nothing to compute: images are kept in flatten order."""
        return list(inputs)

    # Fast path ---------------------------------------------------------------
    def fast_kernel(self, in_shape):
        return FlattenKernel(self, in_shape)

    # Document ----------------------------------------------------------------
    def summary(self, doc):
        if not doc.forms:  # no grids: its input was shown as a vector already
            return None
        return fill(self.words(doc)["summary"], size=self.size,
                    shape="×".join(map(str, self.in_shape)))

    def forward_part(self, doc, steps, values):
        """The cells the next layer reads (after the grids of the layer before)."""
        if not doc.forms:
            return None
        names = doc.inputs_of(self)
        shown = names if len(names) <= NAMES_SHOWN else names[:3] + [r"\dots"] + names[-1:]
        return Part(self.fragment, "forward", size=self.size,
                    next=doc.layer_label(self.index + 1),
                    vector=r"\left(" + ", ".join(shown) + r"\right)")

    # PyTorch -----------------------------------------------------------------
    @classmethod
    def torch_table(cls, module, place):
        if module is not None and (module.start_dim, module.end_dim) != (1, -1):
            place.fail(f"Flatten() over every axis but the batch (start_dim=1, end_dim=-1), "
                       f"got start_dim={module.start_dim}, end_dim={module.end_dim}")
        return {"type": "flatten"}

    def torch_modules(self):
        return ["nn.Flatten()"]

    # Diagram -----------------------------------------------------------------
    def draw(self, sketch):
        """Nothing: the next column lists the cells in flatten order."""
        sketch.grids()


class FlattenKernel:
    activation = "identity"
    slope = 0.01

    def __init__(self, layer: FlattenLayer, in_shape):
        self.layer = layer
        self.in_shape = in_shape
        self.out_shape = (layer.size,)
        self.names = {}
        self.value_names = {"activation": None}

    def forward(self, x, p):
        out = x.reshape(x.shape[:2] + self.out_shape)  # row-major, channels first: view(N, -1)
        return out, out, None

    def backward(self, x, p, delta, need_input_grad, cache=None):
        return {}, (delta.reshape(x.shape) if need_input_grad else None)
