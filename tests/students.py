"""Simulated students: a dense network's SGD step worked by hand in plain NumPy, the way a
student does it, with an optional slip planted on the way.

Independent of the verifier: the forward pass, the loss, the backward pass (δ of each
unit, the activation's derivative from its output as a(1 − a) or 1 − a², as the course
writes it), the update and the forward pass again are written here from the textbook
formulas, under the spec's names.

Two ways of carrying numbers:

- ``"calculator"``: every value kept at full precision, each written rounded to ``digits``
  significant digits;
- ``"rounded"``: each value written rounded, and the rounded value used from then on.

A slip replaces one step's value by what the slip gives *in the student's own world* (from
their own, possibly rounded, values), and everything after it carries the slip forward.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from decimal import Decimal

# The slips a student can be given, and the diagnosis code verify must find for each.
SLIPS = {
    "opposite_sign": "opposite_sign",          # a forward value written with the wrong sign
    "log10": "log10",                          # cross-entropy with log base 10
    "half_dropped": "squared_scale_loss",      # ½Σ(ŷ − y)² written without the ½
    "sigma_for_derivative": "wrong_derivative",  # σ(y) where σ′(y) was due (output layer)
    "index_swap": "index_swap",                # ∂E/∂w_{1,2} given the value of ∂E/∂w_{2,1}
    "update_plus": "update_plus",              # θ + η·g
    "update_no_lr": "update_no_lr",            # θ − g
    "update_not_applied": "update_not_applied",  # θ' = θ, the old value for the updated one
    "before_update": "before_update",          # a value after the step written as before it
}


def significant(value: float, digits: int) -> str:
    """``value`` rounded to ``digits`` significant digits, as a person writes it."""
    if value == 0:
        return "0." + "0" * (digits - 1)
    text = f"{value:.{digits - 1}e}"
    mantissa, exponent = text.split("e")
    exponent = int(exponent)
    if -5 <= exponent < digits + 2:
        decimals = max(digits - 1 - exponent, 0)
        return f"{float(text):.{decimals}f}"
    return text


def _act(kind, z):
    return 1 / (1 + math.exp(-z)) if kind == "sigmoid" else math.tanh(z)


def _dact(kind, a):  # from the unit's output, as the course writes it
    return a * (1 - a) if kind == "sigmoid" else 1 - a * a


@dataclass
class Student:
    """One student's hand calculation of the SGD step on ``spec`` (dense layers, sigmoid or
    tanh, cross_entropy or half_squared_error, one example)."""

    spec: object
    keys: list[str]  # the keys the student writes, in the order of the work
    digits: int = 4
    mode: str = "calculator"
    slip: str | None = None
    slip_key: str | None = None  # where the slip is planted
    written: dict[str, str] = field(default_factory=dict)
    held: dict[str, float] = field(default_factory=dict)
    affected: set[str] = field(default_factory=set)  # keys whose value the slip changed

    def __post_init__(self):
        self.clean = None
        self.work()
        if self.slip:
            clean = Student(self.spec, self.keys, self.digits, self.mode)
            self.clean = clean
            self.affected = {k for k in self.written if self.written[k] != clean.written[k]}

    @property
    def distinct(self) -> bool:
        """Does the slip move its value by more than rounding could (20 units in the last
        digit written)? A slip that does not cannot be told from a rounded right value."""
        if not self.affected:
            return False
        if self.slip_key is None:
            return True
        mine, right = self.written[self.slip_key], self.clean.written[self.slip_key]
        unit = 10.0 ** Decimal(mine).as_tuple().exponent
        return abs(float(mine) - float(right)) > 20 * unit

    # The work, step by step ---------------------------------------------------
    def put(self, key: str, value: float, slipped: float | None = None) -> float:
        """Write ``key`` (if asked) and hold the value the student goes on with."""
        if slipped is not None and key == self.slip_key:
            value = slipped
        if key in self.keys:
            text = significant(value, self.digits)
            self.written[key] = text
            if self.mode == "rounded":
                value = float(text)
        self.held[key] = value
        return value

    def work(self):
        spec = self.spec
        E = spec.loss.total_name
        p = dict(spec.parameters)
        x = list(spec.examples[0].inputs)
        t = list(spec.examples[0].targets)
        lr = spec.learning_rate
        outs, zs = self.forward(p, x, "")
        loss = self.loss(outs, t, "")
        grads = self.backward(p, x, zs, outs, t, E)
        new = {}
        for name in p:
            g = grads[name]
            key = f"{name}'"
            if name in spec.frozen:
                new[name] = p[name]
                continue
            value = p[name] - lr * g
            slipped = {"update_plus": p[name] + lr * g, "update_no_lr": p[name] - g,
                       "update_not_applied": p[name]}.get(self.slip)
            new[name] = self.put(key, value, slipped)
        outs_after, _ = self.forward(new, x, "'")
        self.loss(outs_after, t, "'", before=loss)

    def forward(self, p, x, mark):
        values, zs = list(x), []
        for layer in self.spec.layers:
            activations, pre = [], []
            for j, (z_name, a_name) in enumerate(zip(layer.pre_activation_names,
                                                     layer.activation_names)):
                z = sum(p[w] * v for w, v in zip(layer.weight_names[j], values))
                z += p[layer.bias_names[j]]
                slipped = -z if self.slip == "opposite_sign" else None
                z = self.put(z_name + mark, z, slipped)
                a = _act(layer.activation, z)
                before = self.held.get(a_name) if mark else None
                slipped = before if self.slip == "before_update" else None
                a = self.put(a_name + mark, a, slipped)
                pre.append(z)
                activations.append(a)
            zs.append(pre)
            values = activations
        return values, zs

    def loss(self, outs, t, mark, before=None):
        spec = self.spec
        terms = []
        for name, a, target in zip(spec.loss.term_names, outs, t):
            if spec.loss.kind == "cross_entropy":
                value = -target * math.log(a) if target else 0.0
                slipped = -target * math.log10(a) if target else 0.0
                slip = "log10"
            else:
                value = 0.5 * (a - target) ** 2
                slipped = (a - target) ** 2
                slip = "half_dropped"
            if self.slip == slip:  # the student's habit: every term, before and after
                value = slipped
            terms.append(self.put(name + mark, value))
        return self.put(spec.loss.total_name + mark, sum(terms))

    def derivative(self, layer, a):
        """f'(y) from the unit's output; σ(y) itself with the slip (in every unit)."""
        if self.slip == "sigma_for_derivative" and layer.activation == "sigmoid":
            return a
        return _dact(layer.activation, a)

    def backward(self, p, x, zs, outs, t, E):
        spec = self.spec
        layers = spec.layers
        grads = {}
        # δ of the output units: dE/da · da/dz
        if spec.loss.kind == "cross_entropy":
            dE_da = [-target / a for a, target in zip(outs, t)]
        else:
            dE_da = [a - target for a, target in zip(outs, t)]
        deltas = [d * self.derivative(layers[-1], a) for d, a in zip(dE_da, outs)]
        inputs = [x] + [[self.held[n] for n in layer.activation_names] for layer in layers[:-1]]
        for index in range(len(layers) - 1, -1, -1):
            layer = layers[index]
            below = inputs[index]
            for j, delta in enumerate(deltas):  # a shared parameter: the sum over places
                for i, v in enumerate(below):
                    name = layer.weight_names[j][i]
                    grads[name] = grads.get(name, 0.0) + delta * v
                grads[layer.bias_names[j]] = grads.get(layer.bias_names[j], 0.0) + delta
            if index:
                lower = layers[index - 1]
                deltas = [sum(p[layer.weight_names[k][i]] * deltas[k]
                              for k in range(len(deltas)))
                          * self.derivative(lower, self.held[lower.activation_names[i]])
                          for i in range(len(below))]
        held = {}
        order = [n for layer in reversed(layers) for row in layer.weight_names for n in row]
        order += [n for layer in reversed(layers) for n in layer.bias_names]
        for name in dict.fromkeys(order):
            key = f"d{E}/d{name}"
            slipped = None
            if self.slip == "index_swap" and key == self.slip_key:
                slipped = grads[_swapped(name)]
            held[name] = self.put(key, grads[name], slipped)
        return held


def _swapped(name: str) -> str:
    """w^{(1)}_{1,2} → w^{(1)}_{2,1}: the last two indices exchanged."""
    head, _, tail = name.rpartition("_{")
    a, b = tail.rstrip("}").split(",")
    return f"{head}_{{{b},{a}}}"


def random_spec(*args, **kwargs):
    """random_data's network as a NetworkSpec."""
    from backprop_explain.api import as_spec
    return as_spec(random_data(*args, **kwargs))


def random_data(seed: int, activation: str = "sigmoid", loss: str = "cross_entropy",
                sizes=(3, 2, 2), lr: float | None = None, weights: float = 1.0,
                hot: int | None = None) -> dict:
    """A random dense network (default names) as a spec dict, numbers with two decimals as
    a sheet draws them: weights in ±``weights``, the cross-entropy's one-hot target at
    ``hot`` (drawn when None), the learning rate ``lr`` (drawn among 0.1, 0.5, 1 when
    None)."""
    rng = random.Random(seed)
    layers, n_in = [], sizes[0]
    for units in sizes[1:]:
        layers.append({"type": "dense", "units": units, "activation": activation,
                       "weights": [[round(rng.uniform(-weights, weights), 2)
                                    for _ in range(n_in)] for _ in range(units)],
                       "biases": [round(rng.uniform(-0.5, 0.5), 2) for _ in range(units)]})
        n_in = units
    if loss == "cross_entropy":
        hot = rng.randrange(n_in) if hot is None else hot
        targets = [1.0 if k == hot else 0.0 for k in range(n_in)]
    else:
        targets = [round(rng.uniform(0, 1), 2) for _ in range(n_in)]
    data = {"inputs": {"values": [round(rng.uniform(-1, 1), 2) for _ in range(sizes[0])]},
            "layers": layers, "loss": {"type": loss, "targets": targets},
            "training": {"learning_rate": lr or rng.choice([0.1, 0.5, 1.0])}}
    return data


def sheet_keys(spec) -> list[str]:
    """Every key a full sheet asks, in the order of the work: forward values, loss terms
    and total, gradients, updated parameters, forward values and loss after."""
    E = spec.loss.total_name
    keys = []
    for layer in spec.layers:
        for z, a in zip(layer.pre_activation_names, layer.activation_names):
            keys += [z, a]
    keys += list(spec.loss.term_names) + [E]
    names = [n for layer in reversed(spec.layers) for row in layer.weight_names for n in row]
    names += [n for layer in reversed(spec.layers) for n in layer.bias_names]
    keys += [f"d{E}/d{n}" for n in dict.fromkeys(names)]
    keys += [f"{n}'" for n in spec.parameters if n not in spec.frozen]
    keys += [f"{k}'" for k in keys[:keys.index(E) + 1]]
    return keys


def plant_sites(spec, keys, slip: str) -> list[str]:
    """Where a slip of that kind can be planted among ``keys``."""
    E = spec.loss.total_name
    hidden, out = spec.layers[0], spec.layers[-1]
    if slip == "opposite_sign":
        return [hidden.pre_activation_names[0], out.pre_activation_names[-1],
                hidden.activation_names[-1], f"d{E}/d{out.bias_names[0]}"]
    if slip in ("log10", "half_dropped", "sigma_for_derivative"):
        return [None]  # a habit: everywhere it applies
    if slip == "index_swap":
        return [f"d{E}/d{layer.weight_names[0][1]}" for layer in spec.layers]
    if slip in ("update_plus", "update_no_lr", "update_not_applied"):
        return [f"{row[0]}'" for layer in spec.layers for row in layer.weight_names]
    if slip == "before_update":
        return [f"{a}'" for a in out.activation_names + hidden.activation_names]
    raise ValueError(slip)


def answers_text(written: dict[str, str]) -> str:
    """The written values as an answers file (TOML)."""
    return "\n".join(f'"{k}" = "{v}"' for k, v in written.items()) + "\n"


__all__ = ["SLIPS", "Student", "answers_text", "plant_sites", "random_data", "random_spec",
           "sheet_keys",
           "significant"]
