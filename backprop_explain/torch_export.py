"""From a spec to a PyTorch script that checks its worked solution.

``torch_script(spec)`` writes a short script in the course's PyTorch style
(templates/torch_script.py.j2): ``class MyNet(nn.Module)`` with one ``nn.Sequential``
block per layer (each kind's ``torch_modules``, named as the course names them: fc1,
layer1; a flatten is the course's ``x.view(x.size(0), -1)`` in forward), the spec's
weights copied into the layers, the loss (a torch.nn criterion the loss entry declares
for the spec's reduction and outputs, or its terms written out when none computes it),
the optimizer (its entry's ``torch_code``) and one SGD step, or the spec's schedule of
steps over mini-batches (a DataLoader without shuffling).

It prints, one ``key = value`` line each under the spec's names and with every digit
(``repr``): the loss, the first example's outputs, the gradient of every parameter, every
parameter after the step and the loss after it, the keys of ``verify`` and of the JSON
output (``dE/dw``, ``w'``); after several steps, the loss before each step and the
parameters at the end (``final …`` lines).

Shared parameters: a tensor whose names are another tensor's is tied to it (one
nn.Parameter, ``model.fc2[0].weight = model.fc1[0].weight``); a tensor of one name
repeated is one value over the tensor (torch.nn.utils.parametrize). Frozen parameters:
``requires_grad_(False)`` on the layer or the tensor. What PyTorch cannot say plainly
(one entry of a tensor shared with another place, a tensor partly frozen) is a one-line
error. No torch is needed to write the script, only to run it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import SpecError
from .escaping import visible
from .losses import LOSSES
from .optimizers import OPTIMIZERS
from .spec import NetworkSpec, as_spec
from .spec_toml import toml_value
from .templating import environment
from .training import batches, is_training
from .validate import flatten_names


@dataclass
class Tensor:
    """One parameter tensor of the model: where it is, the names of its entries."""

    layer: int  # 0-based position in spec.layers
    key: str  # the spec key of its block (weights, filters, biases; running_mean, …)
    block: str  # "model.fc1"
    attribute: str  # "weight"
    names: list  # nested in the tensor's shape

    @property
    def path(self) -> str:
        return f"{self.block}[0].{self.attribute}"

    @property
    def flat(self) -> list[str]:
        return flatten_names(self.names)

    @property
    def shape(self) -> tuple:
        return np.shape(np.array(self.names, dtype=object))


def torch_script(spec, source: str | None = None) -> str:
    """The PyTorch script checking the worked solution of ``spec`` (see the module)."""
    spec = as_spec(spec)
    blocks, forward, tensors, buffers = _model(spec)
    setup, loads, where = _parameters(spec, tensors)
    loads += [{"path": b.path, "literal": toml_value([spec.buffers[n] for n in b.flat],
                                                     len(f"    {b.path}.copy_(torch.tensor("))}
              for b in buffers]
    criterion, targets = _criterion(spec)
    optimizer = OPTIMIZERS[spec.optimizer].torch_code(spec, "model.parameters()")
    schedule = batches(spec)
    per_epoch = math.ceil(len(spec.examples) / (spec.batch_size or len(spec.examples)))
    inputs = [np.reshape(e.inputs, spec.input_shape).tolist() for e in spec.examples]
    return environment().get_template("torch_script.py.j2").render({
        # one comment line each, whatever they hold (no control character either)
        "title": visible(" ".join(str(spec.title or spec.source).split())),
        "source": visible(" ".join(str(source or spec.source).split())).replace("<spec>", "SPEC")
                  .replace("<stdin>", "SPEC"),
        "blocks": blocks, "forward": forward, "setup": setup, "loads": loads,
        "parametrized": any(line.startswith("parametrize.") for line in setup),
        # classes of the kinds' own modules (dropout's FixedDropout), each once
        "definitions": list(dict.fromkeys(d for layer in spec.layers
                                          for d in layer.torch_definitions())),
        # modules applying each example's data are told which examples a mini-batch holds
        "per_example": is_training(spec) and any(layer.torch_per_example
                                                 for layer in spec.layers),
        "freeze": _frozen(spec, tensors),
        "inputs": toml_value(inputs, len("inputs = torch.tensor(")),
        "targets": toml_value(targets, len("targets = torch.tensor(")),
        "criterion": criterion, "optimizer": optimizer,
        "parameters": [(repr(name), path, repr(index)) for name, (path, index) in where.items()],
        "loss": repr(spec.loss.total_name), "outputs": repr(list(spec.output_names)),
        "training": is_training(spec), "steps": len(schedule),
        "verifiable": not is_training(spec),  # verify checks one step's numbers
        "epochs": schedule[-1][0], "batch_size": spec.batch_size or len(spec.examples),
        "stops_early": len(schedule) != schedule[-1][0] * per_epoch,
    }).rstrip("\n") + "\n"


def _model(spec: NetworkSpec):
    """MyNet's blocks (attribute, module code), its forward lines, parameter tensors and
    buffers (running statistics)."""
    blocks, forward, tensors, buffers = [], [], [], []
    counts: dict[str, int] = {}
    for k, layer in enumerate(spec.layers):
        unsupported = layer.torch_unsupported()
        if unsupported:
            raise SpecError(spec.source, f"layers[{k}]", unsupported)
        if layer.torch_view:
            forward.append(layer.torch_view)
            continue
        counts[layer.torch_block] = counts.get(layer.torch_block, 0) + 1
        attribute = f"{layer.torch_block}{counts[layer.torch_block]}"
        blocks.append({"attribute": attribute, "modules": layer.torch_modules()})
        forward.append(f"self.{attribute}(x)")
        named = layer.parameter_blocks()
        for key, tensor in layer.torch_parameters.items():
            if named[key]:
                tensors.append(Tensor(k, key, f"model.{attribute}", tensor, named[key]))
        for key, names in layer.buffer_blocks().items():  # running statistics
            buffers.append(Tensor(k, key, f"model.{attribute}", layer.torch_buffers[key],
                                  names))
    return blocks, forward, tensors, buffers


def _fail(spec: NetworkSpec, tensor: Tensor, expected: str):
    raise SpecError(spec.source, f"layers[{tensor.layer}].{tensor.key}", expected)


def _parameters(spec: NetworkSpec, tensors: list[Tensor]):
    """Ties and parametrizations, the values to load, and where each name is in the model
    (name → (tensor path, index))."""
    holders: dict[str, list[int]] = {}
    for i, tensor in enumerate(tensors):
        for name in dict.fromkeys(tensor.flat):
            holders.setdefault(name, []).append(i)
    setup, loads, where = [], [], {}
    for i, tensor in enumerate(tensors):
        flat = tensor.flat
        sharing = sorted({j for name in flat for j in holders[name]})
        one_value = len(flat) > 1 and len(set(flat)) == 1
        if len(set(flat)) not in (1, len(flat)):
            repeated = next(n for n in flat if flat.count(n) > 1)
            _fail(spec, tensor, f"distinct names within a tensor, or one name for all of it "
                                f"(PyTorch shares whole tensors), got {repeated} repeated")
        alike = all(tensors[j].names == tensor.names for j in sharing)
        if not alike:
            other = tensors[next(j for j in sharing if tensors[j].names != tensor.names)]
            shared = next(n for n in flat if n in other.flat)
            _fail(spec, tensor, f"no parameter shared with another tensor unless all of it is "
                                f"(PyTorch ties whole tensors), got {shared} also in "
                                f"layers[{other.layer}].{other.key}")
        first = tensors[sharing[0]]
        if first is not tensor:  # tied: the same nn.Parameter in both modules
            setup.append(f"{tensor.block}[0].{tensor.attribute} = {first.path}")
            continue
        values = np.vectorize(spec.parameters.__getitem__, otypes=[float])(
            np.array(tensor.names, dtype=object))
        if one_value:
            setup.append(f"parametrize.register_parametrization({tensor.block}[0], "
                         f"{tensor.attribute!r}, OneValue({tensor.shape!r}))")
            original = f"{tensor.block}[0].parametrizations.{tensor.attribute}.original"
            loads.append({"path": original, "literal": toml_value([float(values.flat[0])])})
            where[flat[0]] = (original, (0,))
            continue
        column = len(f"    {tensor.path}.copy_(torch.tensor(")
        loads.append({"path": tensor.path, "literal": toml_value(values.tolist(), column)})
        for index in np.ndindex(values.shape):
            where.setdefault(np.array(tensor.names, dtype=object)[index],
                             (tensor.path, tuple(int(i) for i in index)))
    # the spec's order of parameters
    return setup, loads, {name: where[name] for name in spec.parameters}


def _frozen(spec: NetworkSpec, tensors: list[Tensor]) -> list[str]:
    """requires_grad_(False) lines: a whole layer, or a whole tensor."""
    if spec.frozen >= set(spec.parameters):
        raise SpecError(spec.source, "training.frozen", "at least one parameter that is not "
                                                        "frozen (PyTorch has nothing to train)")
    lines, layers = [], {}
    for tensor in tensors:
        frozen = [n for n in tensor.flat if n in spec.frozen]
        if frozen and len(frozen) != len(tensor.flat):
            _fail(spec, tensor, f"all of the tensor frozen or none of it (PyTorch freezes "
                                f"whole tensors), got {frozen[0]} frozen and "
                                f"{next(n for n in tensor.flat if n not in spec.frozen)} not")
        layers.setdefault(tensor.block, []).append(bool(frozen))
    for tensor in tensors:
        if all(layers[tensor.block]):
            line = f"{tensor.block}.requires_grad_(False)"
        elif tensor.flat[0] in spec.frozen:
            line = f"{tensor.path}.requires_grad_(False)"
        else:
            continue
        if line not in lines:
            lines.append(line)
    return lines


def _criterion(spec: NetworkSpec):
    """The loss as code ({"code": …} or the terms written out) and the targets literal."""
    entry = LOSSES[spec.loss.kind]
    outputs = len(spec.output_names)
    criterion = next((c for c in entry.torch_criteria if c.after is None
                      and c.spec_reduction == spec.reduction and c.outputs in (None, outputs)),
                     None)
    targets = [e.targets for e in spec.examples]
    if criterion is None:
        return {"terms": entry.torch_terms, "reduction": spec.reduction, "name": entry.name,
                "note": entry.torch_note}, targets
    reduction = "" if criterion.reduction == "mean" else f'reduction="{criterion.reduction}"'
    one_hot = all(sorted(t) == [0.0] * (outputs - 1) + [1.0] for t in targets)
    if criterion.class_targets and one_hot:
        targets = [t.index(1.0) for t in targets]  # class indices, as the course writes them
    return {"code": f"nn.{criterion.torch_class}({reduction})"}, targets


__all__ = ["torch_script"]
