"""Optimizers, one entry each: how a parameter moves, as numbers, as a formula, as written.

An entry holds the update rule (derivation.py for the worked step, training.py for every
step of a run, sheet.py for the variants' answers), the update as a SymPy formula of
the parameter, the learning rate and the gradient (verify.py's catalogue), the slips a
student makes in it (verify.py), how a worked solution writes one update, and its
torch.optim class (torch_import.py, torch_export.py).
``OPTIMIZERS`` maps the spec's ``training.optimizer`` to the entry; the first is the
default.
"""

from __future__ import annotations

import sympy as sp

from .notation import partial, tex
from .validate import only_defaults

OPTIMIZERS: dict[str, "Optimizer"] = {}


def register(cls):
    """Add an entry (a class, instantiated once) to OPTIMIZERS under its name."""
    OPTIMIZERS[cls.name] = cls()
    return cls


class Optimizer:
    name: str
    torch_class: str  # its torch.optim class ("SGD")

    def update(self, name: str, old, gradient, spec, state: dict):
        """(the new value, the velocity shown in the solution or None) of parameter
        ``name``; ``state`` carries what the rule keeps from step to step, by name.
        Works on floats and on NumPy arrays of variants alike."""
        raise NotImplementedError

    def formula(self, theta: sp.Symbol, learning_rate: sp.Symbol, gradient: sp.Symbol) -> sp.Expr:
        """The first update as a formula of the parameter, the rate and the gradient."""
        raise NotImplementedError

    def slips(self, name: str, old: float, gradient: float, learning_rate: float):
        """(diagnosis code, its values, the number the slip gives) for the first update."""
        return iter(())

    def equation(self, update, numbers, loss: str, rate: str) -> list[str]:
        """The right-hand sides of θ' = … for one update (LaTeX)."""
        raise NotImplementedError

    def torch_settings(self, group: dict, place) -> dict:
        """The spec's [training] keys read from a torch.optim parameter group; a setting
        the spec cannot express fails at ``place``."""
        raise NotImplementedError

    def torch_code(self, spec, parameters: str) -> str:
        """The optimizer as PyTorch code, over ``parameters`` (code)."""
        raise NotImplementedError


@register
class SGD(Optimizer):
    """θ ← θ − η·g; with momentum μ, v ← μ·v + g and θ ← θ − η·v, v = g at the first step
    (torch.optim.SGD, dampening 0, no Nesterov)."""

    name = "sgd"
    torch_class = "SGD"

    def update(self, name, old, gradient, spec, state):
        if spec.momentum:
            velocity = spec.momentum * state[name] + gradient if name in state else gradient
            state[name] = velocity
            return old - spec.learning_rate * velocity, velocity
        return old - spec.learning_rate * gradient, None

    def formula(self, theta, learning_rate, gradient):
        return theta - learning_rate * gradient

    def slips(self, name, old, gradient, learning_rate):
        yield "update_plus", {"param": name}, old + learning_rate * gradient
        yield "update_no_lr", {"param": name}, old - gradient
        yield "update_no_old", {"param": name}, -learning_rate * gradient
        yield "update_not_applied", {"param": name}, old
        for k in (-1, 1, -2, 2, -3, 3):
            yield ("update_decimal", {"factor": f"10^{k}"},
                   old - learning_rate * gradient * 10.0 ** k)

    def equation(self, update, numbers, loss, rate):
        name = update.parameter
        if update.velocity is not None:
            return [name + r" - \eta \cdot v_{" + name + "}",
                    f"{numbers.tex(update.old)} - {rate} \\cdot "
                    f"{tex(numbers.placeholder(update.velocity))}",
                    numbers.tex_change(update.old, update.new)]
        return [name + r" - \eta \cdot " + partial(loss, name),
                f"{numbers.tex(update.old)} - {rate} \\cdot "
                f"{tex(numbers.placeholder(update.gradient))}",
                numbers.tex_change(update.old, update.new)]

    def torch_settings(self, group, place):
        only_defaults(group, place, dampening=0, nesterov=False, weight_decay=0,
                       maximize=False)
        return {"learning_rate": float(group["lr"]), "momentum": float(group["momentum"])}

    def torch_code(self, spec, parameters):
        momentum = f", momentum={spec.momentum!r}" if spec.momentum else ""
        return f"optim.SGD({parameters}, lr={spec.learning_rate!r}{momentum})"
