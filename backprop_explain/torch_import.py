"""From a PyTorch model to a spec: its layers, its current weights, its loss and optimizer.

``from_torch(model, inputs, targets, loss=…, optimizer=… or learning_rate=…)`` runs the
model once on the inputs with a hook on every module and reads the modules it calls, in
the order it calls them. Each is of a type a layer kind reads (its ``torch_classes``:
Linear, Conv2d, …) or an activation's (Sigmoid, …), which joins the layer before it. The
forward may do nothing else between two modules: each module must receive what the one
before returned, or that flattened (``x.view(x.size(0), -1)``, read as the kind with a
``torch_view``). The loss is a torch.nn criterion that a loss entry declares (its
``torch_criteria``: CrossEntropyLoss, MSELoss, …) or the name of a loss; the optimizer
a torch.optim class that an optimizer entry declares (SGD).

Parameters keep their PyTorch identity: one nn.Parameter in two places (tied modules) is
one shared parameter, and a tensor parametrized as one value for all its entries is one
shared name; a parameter that does not require grad, or that the optimizer leaves out,
is frozen. Values are read as the shortest decimals that give the same number in the
tensor's precision (0.1 in float32, not 0.10000000149011612).

torch is imported here, when a model is read, and nowhere else in the package: it stays
optional.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from .activations import ACTIVATIONS
from .errors import SpecError
from .layers import LAYER_KINDS
from .layers.base import ActivatedLayer
from .losses import LOSSES
from .optimizers import OPTIMIZERS
from .spec import NetworkSpec, spec_from_dict
from .validate import Place, flatten_names, only_defaults

NAMING_SCHEMES = ("default", "course")
# The course's names beside its layers' (each kind's naming_schemes): x_1, E_{o1}, E_{tot}, v_1
COURSE_NAMES = {"inputs": "x_#i",
                "loss": {"terms": "E_{o#j}", "total": "E_{tot}", "targets": "v_#j"}}


def torch_module():
    """The torch package, or a one-line error saying how to install it."""
    try:
        import torch
    except ImportError:
        raise SpecError("PyTorch", "", "the torch package to read a PyTorch model "
                                       "(pip install torch)") from None
    return torch


@dataclass
class Call:
    """One module called by the model's forward: what it received and returned."""

    name: str  # its qualified name in the model ("fc1.0")
    module: object
    received: object = None
    returned: object = None

    @property
    def type_name(self) -> str:
        """Its torch.nn class (a parametrized Linear is a ParametrizedLinear subclass)."""
        kind = type(self.module)
        return (kind.__mro__[1] if hasattr(self.module, "parametrizations") else kind).__name__

    @property
    def label(self) -> str:
        """``fc1 (nn.Linear)``; a class of the script's own (FixedDropout) without ``nn.``."""
        own = not type(self.module).__module__.startswith("torch.")
        return f"{self.name or 'the model'} ({'' if own else 'nn.'}{self.type_name})"


@dataclass
class Read:
    """One layer read from the model: its spec table and where its parameters come from."""

    kind: type
    table: dict
    call: Call
    blocks: list = field(default_factory=list)  # Block


@dataclass
class Block:
    """One parameter tensor of a layer (a spec key of its kind's torch_parameters)."""

    key: str
    parameter: object  # the nn.Parameter (for a parametrized tensor, its original)
    one_value: bool  # parametrized as one value for every entry
    trainable: bool


def from_torch(model, inputs, targets, loss, optimizer=None, learning_rate=None,
               momentum: float = 0.0, reduction: str = "mean", names=None,
               title: str | None = None, steps: int | None = None, epochs: int | None = None,
               batch_size: int | None = None, source: str | None = None) -> NetworkSpec:
    """The spec of ``model`` (an nn.Module whose forward is a chain of supported modules)
    with its current weights, on ``inputs`` (examples × inputs, or examples × channels ×
    rows × columns; one example may leave out the first axis) and ``targets`` (examples ×
    outputs, or class indices for CrossEntropyLoss and NLLLoss).

    ``loss``: a torch.nn criterion or its class name ("CrossEntropyLoss"), or a loss name
    ("cross_entropy", with ``reduction``); ``optimizer``: a fresh torch.optim optimizer
    over the model's parameters, or ``learning_rate`` (and ``momentum``) for SGD.
    ``names``: "default" (layer-indexed), "course" (wh/wo, bh/bo, y, out, E_{tot}) or a
    dict {"inputs": …, "layers": [names table or None, …], "loss": names table}."""
    torch = torch_module()
    source = source or type(model).__name__
    top = Place(source)
    x = _tensor(torch, inputs, top / "inputs")
    if x.dim() in (1, 3):  # one example
        x = x[None]
    if x.dim() not in (2, 4):
        (top / "inputs").fail("inputs of shape (examples, inputs) or (examples, channels, "
                              f"rows, columns), got {tuple(x.shape)}")
    calls, output = _trace(torch, model, x, top)
    entry, spec_reduction, criterion = _loss(torch, loss, reduction, output.shape[-1], top)
    if criterion is not None and criterion.after:
        if not calls or calls[-1].type_name != criterion.after:
            (top / "loss").fail(f"a model ending with nn.{criterion.after} for "
                                f"nn.{criterion.torch_class}, got one ending with "
                                f"{calls[-1].label if calls else 'no module'}")
        if getattr(calls[-1].module, "dim", 1) not in (None, 1, -1):
            (top / calls[-1].label).fail(f"dim=1 (over the units of each example), "
                                         f"got dim={calls[-1].module.dim}")
        calls = calls[:-1]
    reads = _layers(calls, top)
    trainable = _optimizer_parameters(optimizer)
    for read in reads:
        _read_parameters(read, trainable)

    data: dict = {"title": title if title is not None else type(model).__name__}
    t = _targets(torch, targets, x.shape[0], output.shape[-1], criterion, top / "targets")
    _examples(data, x, t)
    data["layers"] = [read.table for read in reads]
    data["loss"] = {"type": entry.name}
    if x.shape[0] == 1:
        data["loss"]["targets"] = t[0]
    data["training"] = _training(optimizer, learning_rate, momentum, spec_reduction, top,
                                 steps=steps, epochs=epochs, batch_size=batch_size)
    _name(data, reads, names, x.dim() == 2, top)
    loss_label = f"loss (nn.{type(loss).__name__})" if criterion else "loss"
    spec = _spec(data, reads, source, loss_label)
    if _share_and_freeze(data, reads, spec):
        spec = _spec(data, reads, source, loss_label)
    return spec


# ---------------------------------------------------------------------------
# A model from the user's file (the command import-torch)

FACTORY_KEYS = ("model", "inputs", "targets", "loss", "optimizer")


def run_factory(reference: str) -> dict:
    """Run FILE.py (the one file named, as ``python FILE.py`` would, but as a module) and
    call its FACTORY: {"model": …} and what else it returns (inputs, targets, loss,
    optimizer), from a model, a tuple in that order, or a dict with those keys."""
    import importlib.util
    import sys
    from pathlib import Path
    file, _, factory = reference.rpartition(":")
    if not file or not factory.isidentifier():
        raise SpecError(reference, "", "FILE.py:FACTORY (a Python file and the name of the "
                                       "function in it that builds the model)")
    path = Path(file)
    if not path.is_file():
        raise SpecError(file, "", "a Python file that exists")
    torch = torch_module()
    spec = importlib.util.spec_from_file_location(f"_backprop_explain_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))  # its own imports, as python FILE.py
    try:
        spec.loader.exec_module(module)
        if not callable(getattr(module, factory, None)):
            defined = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                       and getattr(v, "__module__", None) == module.__name__]
            raise SpecError(file, factory, f"a function named {factory} (the file defines "
                                           f"{', '.join(defined) or 'none'})")
        built = getattr(module, factory)()
    except SpecError:
        raise
    except BaseException as err:  # the user's code: its error on one line, no traceback
        if isinstance(err, KeyboardInterrupt):
            raise
        raise SpecError(file, "", f"a file and a {factory} that run ({type(err).__name__}: "
                                  f"{(str(err).splitlines() or [''])[0]})") from None
    finally:
        sys.path.remove(str(path.resolve().parent))
    if isinstance(built, torch.nn.Module):
        return {"model": built}
    if isinstance(built, (tuple, list)) and built and len(built) <= len(FACTORY_KEYS):
        built = dict(zip(FACTORY_KEYS, built))
    if not isinstance(built, dict) or not isinstance(built.get("model"), torch.nn.Module) \
            or set(built) - set(FACTORY_KEYS):
        raise SpecError(file, factory, "a function returning a torch.nn.Module, a tuple "
                                       "(model, inputs, targets[, loss[, optimizer]]) or a "
                                       "dict with those keys")
    return {k: v for k, v in built.items() if v is not None}


# ---------------------------------------------------------------------------
# Running the model once


def _tensor(torch, values, place: Place):
    """A tensor of numbers as given: a tensor or a NumPy array keeps its precision (and
    an integer dtype: class indices), anything else is float64."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu()
    try:
        array = np.asarray(values)
        if not (isinstance(values, np.ndarray) and array.dtype.kind in "fiu"):
            array = np.asarray(values, dtype=np.int64 if array.dtype.kind in "iu"
                               else np.float64)
        return torch.from_numpy(np.ascontiguousarray(array))
    except (TypeError, ValueError) as err:
        place.fail(f"a nested list, array or tensor of numbers ({err})")


def plain_values(tensor) -> list:
    """Nested lists of floats: the shortest decimals giving the tensor's values in its
    own precision (0.1 from float32, not 0.10000000149011612)."""
    import torch
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.float64:
        return tensor.tolist()
    shortest = np.vectorize(lambda v: float(str(np.float32(v))), otypes=[np.float64])
    return shortest(tensor.to(torch.float32).numpy()).tolist()


def _is_container(module) -> bool:
    return any(name != "parametrizations" for name, _ in module.named_children())


def _trace(torch, model, x, top: Place):
    """The modules the forward calls, in order, with what each received and returned."""
    if not isinstance(model, torch.nn.Module):
        top.fail(f"a torch.nn.Module, got {type(model).__name__}")
    calls: list[Call] = []
    hooks = []

    def snapshot(value):
        return value.detach().clone() if isinstance(value, torch.Tensor) else value

    buffers = {name: buffer.clone() for name, buffer in model.named_buffers()}
    for name, module in model.named_modules():
        if "parametrizations" in name.split(".") or _is_container(module):
            continue

        def before(module, args, name=name):
            calls.append(Call(name, module, snapshot(args[0]) if args else None))

        def after(module, args, returned):
            calls[-1].returned = snapshot(returned)

        hooks += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()),
                 torch.get_default_dtype())
    try:
        with torch.no_grad():
            output = model(x.to(dtype))
    except Exception as err:  # the user's model: any failure is theirs to see, on one line
        top.fail(f"a model that runs on inputs of shape {tuple(x.shape)} ("
                 f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})")
    finally:
        for hook in hooks:
            hook.remove()
        with torch.no_grad():  # running statistics as they were: read, not trained
            for name, buffer in model.named_buffers():
                buffer.copy_(buffers[name])
    if not isinstance(output, torch.Tensor) or output.dim() != 2:
        top.fail("a model returning one tensor (examples × outputs), got "
                 f"{tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__}")
    if not calls:
        top.fail("a model whose forward calls modules (Linear, Conv2d, …)")
    _check_chain(torch, x.to(dtype), calls, output, top)
    return calls, output


def _follows(torch, previous, received) -> str | None:
    """How a module's input follows the previous output: "same", "view" (flattened), or
    None when the forward did something else in between."""
    if not isinstance(received, torch.Tensor) or not isinstance(previous, torch.Tensor):
        return None
    if received.shape == previous.shape and torch.equal(received, previous):
        return "same"
    if (received.dim() == 2 and previous.dim() > 2 and received.shape[0] == previous.shape[0]
            and torch.equal(received, previous.reshape(previous.shape[0], -1))):
        return "view"
    return None


def _check_chain(torch, x, calls: list[Call], output, top: Place) -> None:
    previous, before = x, "the inputs"
    for call in calls:
        call.follows = _follows(torch, previous, call.received)
        if call.follows is None:
            (top / call.label).fail(f"the output of {before} as its input (a forward that "
                                    f"chains modules; a function such as F.relu or torch.cat "
                                    f"between them cannot be read)")
        previous, before = call.returned, call.label
    if _follows(torch, previous, output) != "same":
        top.fail(f"a model returning the output of its last module {before} (its forward "
                 f"computes something after it)")


# ---------------------------------------------------------------------------
# Layers


def _kinds_by_class() -> dict:
    return {name: kind for kind in dict.fromkeys(LAYER_KINDS.values())
            for name in kind.torch_classes}


def supported_modules() -> list[str]:
    """The torch.nn modules a model may call: the layer kinds' and the activations'."""
    return list(_kinds_by_class()) + [a.torch_class for a in ACTIVATIONS.values()]


def _layers(calls: list[Call], top: Place) -> list[Read]:
    kinds = _kinds_by_class()
    activations = {entry.torch_class: entry for entry in ACTIVATIONS.values()}
    view = next((k for k in dict.fromkeys(LAYER_KINDS.values()) if k.torch_view), None)
    reads: list[Read] = []
    for call in calls:
        place = top / call.label
        if call.follows == "view":  # x.view(x.size(0), -1) in forward
            if view is None:
                place.fail("an input of the shape the module before returned")
            reads.append(Read(view, view.torch_table(None, place), call))
        name = call.type_name
        if name in kinds:
            reads.append(Read(kinds[name], kinds[name].torch_table(call.module, place), call))
        elif name in activations:
            entry = activations[name]
            if entry.torch_code(0.01) is None:  # nothing applied (nn.Identity)
                continue
            last = reads[-1] if reads else None
            if (last is None or not issubclass(last.kind, ActivatedLayer)
                    or "activation" in last.table or last.call is call):
                place.fail(f"an activation right after a layer with weights "
                           f"({', '.join(n for n, k in kinds.items() if issubclass(k, ActivatedLayer))}), "
                           f"got it after {last.call.label if last else 'the inputs'}")
            last.table["activation"] = entry.name
            last.table.update(entry.torch_settings(call.module, place))
        else:
            place.fail(f"a module of a supported type ({', '.join(supported_modules())}), "
                       f"got {name}")
    return reads


def _read_parameters(read: Read, trainable: set | None) -> None:
    """The values of the layer's parameter tensors (and buffers: running statistics) into
    its table; where they come from."""
    module = read.call.module
    for key, attribute in read.kind.torch_buffers.items():
        read.table[key] = plain_values(getattr(module, attribute))
    parametrized = getattr(module, "parametrizations", {})
    for key, attribute in read.kind.torch_parameters.items():
        tensor = getattr(module, attribute, None)
        if tensor is None:
            continue
        one_value = False
        parameter = tensor
        if attribute in parametrized:
            parameter = parametrized[attribute].original
            if parameter.numel() != 1:
                (Place(read.call.label) / attribute).fail(
                    "a tensor parametrized as one value for all its entries (the only "
                    "parametrization the spec has: one shared name)")
            one_value = True
        read.table[key] = plain_values(tensor)
        is_parameter = getattr(parameter, "requires_grad", False)
        read.blocks.append(Block(key, parameter, one_value,
                                 is_parameter and (trainable is None
                                                   or id(parameter) in trainable)))


def _spec(data: dict, reads: list[Read], source: str, loss_label: str) -> NetworkSpec:
    """The spec of the document; an error also names the module it was read from."""
    try:
        return spec_from_dict(copy.deepcopy(data), source)
    except SpecError as err:
        labels = [(f"layers[{k}]", read.call.label) for k, read in enumerate(reads)]
        for place, label in labels + [("loss", loss_label)]:
            if err.place == place or str(err.place).startswith((place + ".", place + "[")):
                raise SpecError(source, f"{label} read as {err.place}", err.expected) from None
        raise


def _share_and_freeze(data: dict, reads: list[Read], spec: NetworkSpec) -> bool:
    """Shared names for tied tensors and one-value tensors, frozen layers and names; True
    when the document changed (it is read again)."""
    names_of: dict[int, object] = {}  # id(parameter) → its names, where first met
    frozen: list[str] = []
    changed = False
    for read, layer in zip(reads, spec.layers):
        blocks = layer.parameter_blocks()
        for block in read.blocks:
            own = blocks[block.key]
            first = names_of.setdefault(id(block.parameter),
                                        flatten_names(own)[0] if block.one_value else own)
            if block.one_value or first is not own:
                read.table.setdefault("names", {})[block.key] = first
                changed = True
            if not block.trainable:
                frozen += flatten_names(first)
        if read.blocks and not any(b.trainable for b in read.blocks):
            read.table["frozen"] = True
            changed = True
    whole = {n for read in reads if read.table.get("frozen")
             for n in flatten_names([names_of[id(b.parameter)] for b in read.blocks])}
    listed = [n for n in dict.fromkeys(frozen) if n not in whole]
    if listed:
        data["training"]["frozen"] = listed
        changed = True
    return changed


# ---------------------------------------------------------------------------
# Examples, loss, optimizer, names


def _examples(data: dict, x, t: list) -> None:
    values = plain_values(x)
    shape = list(x.shape[1:])
    data["inputs"] = {}
    if x.shape[0] == 1:
        data["inputs"]["values"] = values[0]
        return
    data["inputs"]["size" if len(shape) == 1 else "shape"] = shape[0] if len(shape) == 1 else shape
    data["examples"] = [{"inputs": v, "targets": target} for v, target in zip(values, t)]


def _targets(torch, targets, examples: int, outputs: int, criterion, place: Place) -> list:
    t = _tensor(torch, targets, place)
    if (criterion is not None and criterion.class_targets and not t.is_floating_point()
            and t.dim() == 1 and len(t) == examples):  # class indices, one per example
        if not 0 <= int(t.min()) <= int(t.max()) < outputs:
            place.fail(f"class indices from 0 to {outputs - 1}, got {t.tolist()}")
        return torch.nn.functional.one_hot(t.long(), outputs).double().tolist()
    if t.dim() == 1 and examples == 1:
        t = t[None]
    if tuple(t.shape) != (examples, outputs):
        place.fail(f"targets of shape ({examples}, {outputs}) (examples × outputs), "
                   f"got {tuple(t.shape)}")
    return plain_values(t)


def _criteria():
    """(loss entry, criterion) for every torch.nn criterion the loss entries declare."""
    return [(entry, c) for entry in LOSSES.values() for c in entry.torch_criteria]


def _loss(torch, loss, reduction: str, outputs: int, top: Place):
    """(loss entry, the spec's reduction, the criterion or None)."""
    place = top / "loss"
    declared = _criteria()
    if isinstance(loss, str) and loss.removeprefix("nn.") in {c.torch_class for _, c in declared}:
        place.choice(reduction, ("mean", "sum"))
        loss = getattr(torch.nn, loss.removeprefix("nn."))(reduction=reduction)
    if isinstance(loss, str):
        place.choice(loss, tuple(LOSSES))
        return LOSSES[loss], place.choice(reduction, ("mean", "sum")), None
    name = type(loss).__name__
    forms = [(e, c) for e, c in declared if c.torch_class == name]
    fits = [(e, c) for e, c in forms if c.reduction == getattr(loss, "reduction", None)
            and c.outputs in (None, outputs)]
    if not fits:
        known = ", ".join(dict.fromkeys(
            f"{c.torch_class}(reduction={c.reduction!r})"
            + (f" with {c.outputs} output" if c.outputs else "") for _, c in declared))
        got = (f"{name}(reduction={getattr(loss, 'reduction', None)!r}) with {outputs} outputs"
               if forms else name)
        place.fail(f"a loss the spec computes: {known}, or a loss name ({', '.join(LOSSES)}); "
                   f"got {got}")
    entry, criterion = fits[0]
    only_defaults(loss, place, **dict(criterion.defaults))
    return entry, criterion.spec_reduction, criterion


def _differs(value, default) -> bool:
    if isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)):
        return list(value) != list(default)
    return value != default


def _optimizer_parameters(optimizer) -> set | None:
    """The ids of the parameters the optimizer moves (None without an optimizer)."""
    if optimizer is None:
        return None
    return {id(p) for group in optimizer.param_groups for p in group["params"]}


def _training(optimizer, learning_rate, momentum, reduction: str, top: Place,
              **schedule) -> dict:
    place = top / "optimizer"
    if optimizer is None:
        if learning_rate is None:
            place.fail("an optimizer (torch.optim.SGD) or a learning_rate")
        training = {"learning_rate": float(learning_rate)}
        if momentum:
            training["momentum"] = float(momentum)
    else:
        if learning_rate is not None:
            place.fail("an optimizer or a learning_rate, not both")
        name = type(optimizer).__name__
        entries = {entry.torch_class: entry for entry in OPTIMIZERS.values()}
        if name not in entries:
            place.fail(f"an optimizer of a supported type ({', '.join(entries)}), got {name}")
        if any(hasattr(v, "shape") for state in optimizer.state.values() for v in state.values()):
            place.fail("a fresh optimizer (this one has taken steps: its state would carry over)")
        settings = [entries[name].torch_settings(group, place) for group in optimizer.param_groups]
        if any(s != settings[0] for s in settings):
            place.fail("the same settings (learning rate, momentum, …) for every parameter "
                       "group")
        entry = entries[name]
        defaults = dict(entry.defaults)  # a setting at PyTorch's default is left out
        training = {k: v for k, v in settings[0].items()
                    if k == "learning_rate" or _differs(v, defaults.get(k))}
        if entry is not next(iter(OPTIMIZERS.values())):
            training["optimizer"] = entry.name
    if reduction != "mean":
        training["reduction"] = reduction
    training.update({k: v for k, v in schedule.items() if v is not None})
    return training


def _name(data: dict, reads: list[Read], names, vector_inputs: bool, top: Place) -> None:
    """Names tables from a naming scheme, or as given."""
    if names is None or names == "default":
        return
    if names == "course":
        named = [r for r in reads if "course" in r.kind.naming_schemes]
        hidden = len(named) - 1
        for k, read in enumerate(named):
            role = "o" if k == hidden else ("h" if hidden == 1 else f"h{k + 1}")
            read.table["names"] = {key: pattern.replace("@", role) for key, pattern
                                   in read.kind.naming_schemes["course"].items()}
        if vector_inputs:
            data["inputs"] = {"names": COURSE_NAMES["inputs"], **data["inputs"]}
        data["loss"]["names"] = dict(COURSE_NAMES["loss"])
        return
    if not isinstance(names, dict):
        (top / "names").fail(f"one of {', '.join(NAMING_SCHEMES)}, or a dict of names "
                             f"tables (inputs, layers, loss)")
    if names.get("inputs") is not None:
        data["inputs"] = {"names": copy.deepcopy(names["inputs"]), **data["inputs"]}
    layers = names.get("layers") or []
    if len(layers) not in (0, len(reads)):
        (top / "names" / "layers").fail(f"{len(reads)} names tables (None for the default), "
                                        f"one per layer read, got {len(layers)}")
    for read, table in zip(reads, layers):
        if table:
            read.table["names"] = copy.deepcopy(table)
    if names.get("loss"):
        data["loss"]["names"] = copy.deepcopy(names["loss"])


__all__ = ["from_torch", "plain_values", "run_factory", "supported_modules", "torch_module",
           "NAMING_SCHEMES"]
