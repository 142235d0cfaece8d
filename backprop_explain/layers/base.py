"""The interface every layer kind provides, and the registry from the spec's ``type`` to it.

A layer kind is one module in this package (dense.py, conv2d.py, …) holding everything
particular to it, as Keras holds a layer in one class: the kind is a dataclass, one
instance per layer of a spec, whose methods serve each stage in turn. The stages
(spec, graph, derivation, fastpath, document, diagram, sheet_spec, moodle) call these
methods and never ask which kind a layer is.

- spec stage: ``read`` (a classmethod) checks the layer's table with one-line located
  errors and returns the layer, with its ``out_shape``; ``parameter_names``,
  ``quantity_names``, ``outputs`` (what the next layer reads); ``sheet_blocks`` (a
  classmethod) the shapes of the blocks a sheet template may draw whole.
- graph stage: ``build`` adds the layer's nodes (SymPy expressions of their parents).
- fast path: ``fast_kernel`` the NumPy forward and backward over a batch.
- derivation: ``forms`` what the layer shows beyond the chain rule (conv: the gradients
  as convolutions; pool: the routing), or None.
- document: ``fragment`` the Jinja2 template of its parts (templates/layers/), its words
  in ``templates/layers/<module>.<lang>.toml`` (merged into the phrase table);
  ``summary``, ``network_part``, ``forward_part``, ``section``, ``update_part``,
  ``after_part`` give the parts, ``routed_gradient``/``gradient_source`` how the gradient
  reaching the layer before is explained, ``short_summary`` one plain line (Moodle),
  ``index_convention`` what its weights' indices mean (exercise sheets, Moodle).
- diagram: ``draw`` its part of the network figure (drawing.Sketch).
- PyTorch (torch_import.py, torch_export.py): ``torch_classes`` the torch.nn modules it is
  read from and ``torch_table`` (a classmethod) its spec table from one of them;
  ``torch_parameters`` which tensor of the module holds which parameter block and
  ``parameter_blocks`` their names; ``torch_modules`` the module (and its activation) as
  code, ``torch_block`` the attribute the course names its block with (``fc`` → fc1), or
  ``torch_view`` the forward statement that writes it without a module (flatten);
  ``torch_definitions`` the code of a module class of its own the script defines, and
  ``torch_per_example`` whether that module applies data of each example.

A new kind: a module here with a registered dataclass, its template fragment and phrase
files in templates/layers/; nothing else changes (see the README).
"""

from __future__ import annotations

import sympy as sp

from ..activations import ACTIVATIONS
from ..nodes import ACTIVATION
from ..validate import describe, flatten_names

LAYER_KINDS: dict[str, type["Layer"]] = {}
NODES_FRAGMENT = "layers/nodes.j2"  # quantities written one equation each


def register(*types: str):
    """Class decorator: the kind reads the layers of these spec ``type`` values."""
    def add(cls):
        for name in types:
            LAYER_KINDS[name] = cls
        return cls
    return add


class Part:
    """One piece of a worked solution that a kind's template fragment prints: the
    fragment, its macro, and the macro's data as attributes (LaTeX, numbers as text)."""

    def __init__(self, fragment: str, macro: str, **data):
        self.fragment = fragment
        self.macro = macro
        self.__dict__.update(data)


class Layer:
    """Defaults shared by the kinds; each kind overrides what concerns it."""

    index: int  # 1-based position among the spec's layers
    kind: str  # the spec's type
    out_shape: tuple  # the shape of what it computes: (units,) or (channels, rows, columns)
    frozen: bool = False
    without_bias = False  # its weighted sums have no bias (WeightedLayer: biases = false)
    fragment: str  # templates/layers/<module>.j2
    shows_grids = False  # the document shows it as grids, from its forms (conv, pool)

    @property
    def couples_examples(self) -> bool:
        """Whether its forward pass mixes the examples of a mini-batch (batch statistics):
        the graph of a step then spans the whole mini-batch (graph.py)."""
        return False

    @property
    def smallest_batch(self) -> int:
        """The fewest examples a mini-batch may have (a batch variance needs two)."""
        return 1

    # Spec stage --------------------------------------------------------------
    @classmethod
    def read(cls, raw: dict, place, index: int, in_shape, params) -> "Layer":
        """The layer from its spec table (``raw`` at ``place``), checked; its parameters
        are added to ``params`` (validate.ParameterTable)."""
        raise NotImplementedError

    def parameter_names(self) -> list[str]:
        """Every parameter name, in the order the course derives them."""
        return []

    def quantity_names(self) -> list[str]:
        """Every quantity it computes (a name may repeat)."""
        return []

    def batch_quantity_names(self) -> list[str]:
        """Those of its quantities computed once for a whole mini-batch (batch statistics),
        which a graph spanning the mini-batch does not copy per example."""
        return []

    def outputs(self, inputs: list[str]) -> list[str]:
        """The names the next layer reads, given the names this one reads."""
        raise NotImplementedError

    def check_examples(self, count: int, place) -> None:
        """What depends on the number of examples, checked once they are read (``place``:
        the layer's table): per-example data such as dropout masks."""

    def constants(self) -> dict[str, float]:
        """Given numbers its nodes read that are not learned (ε, the drop probability,
        running statistics used in eval mode): leaves of kind CONSTANT, by name."""
        return {}

    def example_constants(self, k: int) -> dict[str, float]:
        """Given numbers of example ``k`` (0-based) its nodes read (a dropout mask): leaves
        of kind EXAMPLE_CONSTANT, by name."""
        return {}

    def buffers(self) -> dict[str, float]:
        """Numbers it keeps from step to step, updated by a training step's forward pass
        rather than by the optimizer (running statistics), by name, before the step."""
        return {}

    def buffer_updates(self, graph) -> dict:
        """Each buffer after a training step, a SymPy expression of the graph's nodes and
        of the buffers (derivation.py evaluates them; verify.py checks them)."""
        return {}

    @classmethod
    def sheet_blocks(cls, raw: dict, in_shape: tuple, place):
        """({key: shape} of the blocks a sheet template may draw whole, the output shape),
        or None when the sizes are not known from the table (sheet_spec.py)."""
        return {}, in_shape

    # Graph stage -------------------------------------------------------------
    def build(self, graph, inputs: list[str]) -> list[str]:
        """Add the layer's nodes to ``graph``; returns the names the next layer reads."""
        raise NotImplementedError

    def build_batch(self, graph, inputs: list[str], examples: list) -> list[str]:
        """Its nodes in a graph spanning a mini-batch: ``examples`` are the per-example
        views of ``graph`` (graph.ExampleView), which name each quantity after its example.
        By default the layer builds each example's nodes on its own; a layer that couples
        the examples adds nodes shared by them to ``graph`` itself."""
        outputs = list(inputs)
        for view in examples:
            outputs = self.build(view, inputs)
        return outputs

    # Fast path ---------------------------------------------------------------
    def fast_kernel(self, in_shape: tuple):
        """An object with ``forward(x, p)`` → (z, a, cache), ``backward(x, p, delta,
        need_input_grad, cache)`` → (gradients by role, ∂L/∂x), ``names`` (role → array of
        parameter names), ``value_names``, ``out_shape``, ``activation``, ``slope``; and,
        when it has them, ``more_values(cache)`` (role → array (V, B, …) of quantities
        beyond z and a, named in ``value_names``), ``buffer_names`` (role → array of buffer
        names, read in ``p``) with ``updated_buffers(p, cache)`` (role → array after this
        forward pass), ``example_arrays`` (role → array (examples, …), read in ``p`` for
        the batch's examples), ``activation_kept(cache)`` (what its activation's
        ``forward_kept`` kept, handed to the activation's backward or a fused loss)."""
        raise NotImplementedError

    # Derivation --------------------------------------------------------------
    def forms(self, spec, graph, example, inputs: list[str]):
        """What the worked solution shows of this layer beyond the chain rule, or None."""
        return None

    def explains_inputs(self) -> bool:
        """Whether its backward section derives ∂E/∂(its inputs) itself, node by node (a
        layer whose gradient to its input is the point of its explanation)."""
        return False

    # Document ----------------------------------------------------------------
    def words(self, doc) -> dict:
        """This kind's phrases in the document's language."""
        return doc.t["layers"][self.kind]

    def summary(self, doc) -> str | None:
        """Its line in the network's summary."""
        return None

    def short_summary(self, network_words: dict) -> str:
        """Its plain-text line in a Moodle question."""
        return self.kind

    def index_convention(self, inputs: list[str], t: dict) -> str | None:
        """How its parameters' names say what they connect, with an example from the layer
        (exercise sheets, Moodle questions); ``inputs`` the names it reads, ``t`` the
        document's phrases. None: nothing to say."""
        return None

    def network_part(self, doc) -> Part | None:
        """What "The network" shows of it beyond the parameters table."""
        return None

    def forward_part(self, doc, steps: list, values: dict) -> Part | None:
        """Its forward pass; ``steps`` its derivation.ForwardSteps (a kind with none joins
        the group of the layer before). By default, equation by equation."""
        if not steps:
            return None
        return Part(NODES_FRAGMENT, "forward",
                    equations=[doc.forward_equation(step, values) for step in steps])

    def section(self, doc, section, example) -> dict:
        """Its backward section: the chain-rule steps as items (document.Item: a
        derivation each, or compactly δ's and a table), then parts of its own."""
        return {"items": doc.backward_items(section.steps, example.values), "parts": []}

    def update_part(self, doc, updates: list) -> Part | None:
        """How its parameters' updates are shown (after every gradient), when not one
        by one; None: an equation per parameter (a table in compact detail)."""
        return None

    def after_part(self, doc, before: dict, after: dict) -> Part | None:
        """What "After the update" shows of it beyond the table of values."""
        return None

    def routed_gradient(self, doc, previous, section) -> list[Part] | None:
        """How the gradient this layer sends back to ``previous``'s output is shown, when
        this kind explains it itself (pooling: its routing); None: shown as grids."""
        return None

    def gradient_source(self, doc) -> Part | None:
        """A part saying where the gradient of its input was computed, if this kind
        computes it as a whole (conv: a full convolution) rather than cell by cell."""
        return None

    # Diagram -----------------------------------------------------------------
    def draw(self, sketch) -> None:
        """Its part of the network figure (drawing.Sketch)."""
        raise NotImplementedError

    # PyTorch -----------------------------------------------------------------
    torch_classes: tuple[str, ...] = ()  # the torch.nn modules it is read from ("Linear")
    torch_parameters: dict[str, str] = {}  # spec key of a parameter block → module tensor
    torch_block = "layer"  # the course's attribute of its block in MyNet: layer1, fc1, …
    torch_view: str | None = None  # a forward statement writing it without a module
    # naming schemes (from_torch's names=): scheme → its names table, "@" the layer's role
    # among the layers the scheme names ("h" hidden, "h1", "h2" when several, "o" output)
    naming_schemes: dict[str, dict[str, str]] = {}

    @classmethod
    def torch_table(cls, module, place) -> dict:
        """Its spec table read from a torch module of one of ``torch_classes`` (None for
        ``torch_view``): type and settings, without parameter values or names (torch_import
        adds those from ``torch_parameters``); a setting the spec cannot express fails at
        ``place`` (validate.Place), naming the module."""
        raise NotImplementedError

    def parameter_blocks(self) -> dict[str, list]:
        """{spec key of ``torch_parameters``: the names, nested in the tensor's shape}; an
        empty list when the layer has no such tensor (a conv without bias)."""
        return {}

    def torch_modules(self) -> list[str]:
        """Its block of an nn.Sequential as code: the module holding ``torch_parameters``
        first, then its activation's ("nn.Linear(3, 2)", "nn.Sigmoid()")."""
        raise NotImplementedError

    # what the module keeps besides its parameters (running statistics): spec key → buffer
    torch_buffers: dict[str, str] = {}

    def buffer_blocks(self) -> dict[str, list[str]]:
        """{spec key of ``torch_buffers``: the names of the layer's buffers in it}."""
        return {}

    def torch_definitions(self) -> list[str]:
        """Templates (templates/…) of the code the script defines before MyNet for its
        module (a class of the kind's own), included once however many layers use them."""
        return []

    @property
    def torch_per_example(self) -> bool:
        """Whether its module applies data of each example (dropout's masks): it then has an
        ``examples`` attribute, which the script sets to the examples of each mini-batch."""
        return False

    def torch_unsupported(self) -> str | None:
        """Why the layer, as the spec sets it, cannot be written in PyTorch (what is
        expected instead), or None."""
        return None


class ActivatedLayer(Layer):
    """A layer of pre-activations followed by an activation of them (dense, conv2d); with
    the identity (and no names of its own) the activations are the pre-activations."""

    activation: str
    negative_slope: float
    pre_activation_names: list[str]
    activation_names: list[str]

    def quantity_names(self):
        return self.pre_activation_names + self.activation_names

    def outputs(self, inputs):
        return list(self.activation_names)

    def activate(self, graph) -> list[str]:
        """The activation nodes, after the pre-activation nodes; the names the next layer
        reads."""
        if self.activation_names == self.pre_activation_names:  # identity: the output is z
            return list(self.pre_activation_names)
        activation = ACTIVATIONS[self.activation]
        ys = [graph.symbol(name) for name in self.pre_activation_names]
        for j, name in enumerate(self.activation_names):
            graph.computed(name, ACTIVATION, activation.expression(ys, j, self.negative_slope),
                           layer=self.index, activation=self.activation)
        return list(self.activation_names)

    def torch_modules(self):
        activation = ACTIVATIONS[self.activation].torch_code(self.negative_slope)
        return [self.torch_module()] + ([activation] if activation else [])

    def torch_module(self) -> str:
        """The module computing the pre-activations, as code ("nn.Linear(3, 2)")."""
        raise NotImplementedError


class WeightedLayer(ActivatedLayer):
    """Pre-activations that are weighted sums of the input plus one bias per unit or output
    channel, or without bias (``biases = false``, PyTorch's bias=False): dense, conv2d."""

    bias_names: list[str]  # empty without bias

    @property
    def without_bias(self) -> bool:
        return not self.bias_names

    @staticmethod
    def torch_bias(module) -> dict:
        """The spec's ``biases = false`` for a module without bias (nothing otherwise)."""
        return {"biases": False} if module.bias is None else {}

    def torch_bias_argument(self) -> str:
        """The module's bias argument as code: none by default, ``, bias=False``."""
        return ", bias=False" if self.without_bias else ""


def units_then_bias(rows, biases) -> list[str]:
    """Parameter names unit by unit (its weights, then its bias), as the course derives
    them; a name shared by several units is listed once, after the last unit that uses it
    (its gradient sums over all of them)."""
    names = []
    for k, row in enumerate(rows):
        names += flatten_names(row) + ([biases[k]] if k < len(biases) else [])
    return list(reversed(dict.fromkeys(reversed(names))))


def read_biases(raw: dict, place, count: int) -> list[float] | None:
    """A layer's ``biases`` (dense, conv2d): ``count`` numbers (default 0), one number for
    all, or ``false`` for none (PyTorch's bias=False), then None; no bias names with
    false."""
    biases = raw.get("biases", 0.0)
    if biases is False:
        names = raw.get("names")
        if isinstance(names, dict) and "biases" in names:
            (place / "names" / "biases").fail("no bias names in a layer with biases = false "
                                              "(it has no bias)")
        return None
    if isinstance(biases, bool) or not isinstance(biases, (int, float, list)):
        (place / "biases").fail(f"a list of {count} numbers, one number for all, or false "
                                f"for no bias, got {describe(biases)}")
    if not isinstance(biases, list):
        biases = [biases] * count
    return (place / "biases").vector(biases, count)


def weighted_sum(products: list[tuple[sp.Symbol, sp.Symbol]], bias: sp.Symbol | None) -> sp.Expr:
    """Σ x·w (+ b) over (input, weight) pairs: a unit's or a feature-map cell's
    pre-activation, without bias when ``bias`` is None."""
    # evaluate=False keeps the terms in the order a lecturer writes them
    terms = [sp.Mul(x, w, evaluate=False) for x, w in products]
    if bias is not None:
        terms.append(bias)
    return sp.Add(*terms, evaluate=False) if terms else sp.Integer(0)
