"""Optimizers, one entry each: how a parameter moves, as numbers, as formulas, as written.

An entry holds its settings in the spec's ``[training]`` table with PyTorch's defaults
(``read``), the update rule (derivation.py for the worked step, training.py for every
step of a run, sheet.py for the variants' answers), the first update as SymPy formulas of
the parameter, the learning rate and the gradient, its state included (verify.py's
catalogue), the slips a student makes in it (verify.py), how a worked solution writes an
update and the rule, and its torch.optim class (torch_import.py, torch_export.py).
``OPTIMIZERS`` maps the spec's ``training.optimizer`` to the entry; the first is the
default.

Every rule is torch.optim's, operation for operation (tests/test_optimizers.py runs both
for 20 steps): ``sgd`` (momentum, dampening, Nesterov, weight decay), ``adam`` (bias-
corrected moments, L2 weight decay added to the gradient, AMSGrad's largest second
moment) and ``adamw`` (the weight decay decoupled: θ·(1 − η·λ) before the Adam step).
"""

from __future__ import annotations

import math

from .lazy import numpy as np  # executed at first use: lazy.py
import sympy as sp

from .keys import state_key, updated_key
from .notation import Equation, partial, primed, tex
from .templating import fill
from .validate import only_defaults

OPTIMIZERS: dict[str, "Optimizer"] = {}


def register(cls):
    """Add an entry (a class, instantiated once) to OPTIMIZERS under its name."""
    OPTIMIZERS[cls.name] = cls()
    return cls


class Optimizer:
    name: str
    title: str  # how a document names it (SGD, Adam)
    defaults: dict  # its settings in [training] and PyTorch's default of each
    learning_rate: float | None = None  # PyTorch's default η; None: the spec must give it
    tabular = False  # a worked solution writes one update in full, then a table
    torch_class: str  # its torch.optim class ("SGD")

    # Spec stage ------------------------------------------------------------
    def read(self, raw: dict, place) -> dict:
        """Its settings from the [training] table (``place``), checked."""
        raise NotImplementedError

    # Numbers ---------------------------------------------------------------
    def update(self, name: str, old, gradient, learning_rate, settings: dict, state: dict):
        """(the new value, the state shown in the solution or None) of parameter ``name``;
        ``state`` carries what the rule keeps from step to step, by name. Works on floats
        and on NumPy arrays of variants alike."""
        raise NotImplementedError

    def plain(self, settings: dict) -> bool:
        """Whether the first update is θ − η·∂E/∂θ (a layer may then write its updates as
        whole grids)."""
        return False

    # Formulas (verify) -----------------------------------------------------
    def first_step(self, name: str, theta: sp.Symbol, learning_rate: sp.Symbol,
                   gradient: sp.Symbol, settings: dict) -> list[tuple[str, tuple, sp.Expr]]:
        """The first update as formulas: (key, (meaning phrase, values), formula) of each
        quantity of its state, in the symbols of θ, η, the gradient and the keys before it,
        then θ' (the key ``updated_key(name)``) last."""
        raise NotImplementedError

    def formula(self, theta: sp.Symbol, learning_rate: sp.Symbol, gradient: sp.Symbol,
                settings: dict) -> sp.Expr:
        """The first update as one formula of the parameter, the rate and the gradient."""
        steps = self.first_step("theta", theta, learning_rate, gradient, settings)
        expr = steps[-1][2]
        for key, _, value in reversed(steps[:-1]):
            expr = expr.xreplace({sp.Symbol(key): value})
        return expr

    def slips(self, name: str, old: float, gradient: float, learning_rate: float,
              settings: dict):
        """(diagnosis code, its values, the number the slip gives) for the first update."""
        return iter(())

    # Document ---------------------------------------------------------------
    def rule(self, t: dict, settings: dict, numbers, rate: str) -> list[str]:
        """The paragraphs saying how every parameter moves (``t``: the phrase table)."""
        raise NotImplementedError

    def history_rule(self, t: dict, settings: dict, numbers) -> str:
        """The rule in one sentence, in a training run's history."""
        raise NotImplementedError

    def equations(self, update, numbers, loss: str, rate: str,
                  settings: dict) -> list[Equation]:
        """One update written out: its state's equations, then θ' = … last."""
        raise NotImplementedError

    def table(self, t: dict, updates: list, numbers) -> tuple[list[str], list[list[str]]]:
        """(header, rows) of the updates of a tabular optimizer (words: ``t``)."""
        raise NotImplementedError

    # PyTorch ----------------------------------------------------------------
    def torch_settings(self, group: dict, place) -> dict:
        """The spec's [training] keys read from a torch.optim parameter group (the learning
        rate and its settings); a setting the spec cannot express fails at ``place``."""
        raise NotImplementedError

    def torch_code(self, spec, parameters: str) -> str:
        """The optimizer as PyTorch code, over ``parameters`` (code): the settings that
        differ from PyTorch's defaults."""
        given = "".join(f", {key}={_torch_value(value)}"  # the spec's names are PyTorch's
                        for key, value in spec.optimizer_settings.items()
                        if value != self.defaults[key])
        return f"optim.{self.torch_class}({parameters}, lr={spec.learning_rate!r}{given})"


def _torch_value(value) -> str:
    return repr(tuple(value)) if isinstance(value, (list, tuple)) else repr(value)


def _between(place, value, low: float, high: float, high_open: bool, what: str) -> float:
    number = place.number(value)
    if not (low <= number and (number < high if high_open else number <= high)):
        place.fail(f"{what} in [{low:g}, {high:g}{')' if high_open else ']'}, got {number}")
    return number


def _exact(number: float) -> sp.Rational:
    """A setting as the decimal it was written as (0.999 → 999/1000), for readable formulas."""
    return sp.Rational(repr(float(number)))


def _flag(place, value) -> bool:
    if not isinstance(value, bool):
        place.fail(f"true or false, got {value!r}")
    return value


@register
class SGD(Optimizer):
    """torch.optim.SGD: g ← ∂E/∂θ + λ·θ (weight decay λ); with momentum μ, v ← μ·v +
    (1 − d)·g (dampening d), v = g at the first step, and θ ← θ − η·v, or with Nesterov
    θ ← θ − η·(g + μ·v); without momentum θ ← θ − η·g."""

    name = "sgd"
    title = "SGD"
    torch_class = "SGD"
    defaults = {"momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0}

    def torch_settings(self, group, place):
        only_defaults(group, place, maximize=False)
        return {"learning_rate": float(group["lr"]), "momentum": float(group["momentum"]),
                "dampening": float(group["dampening"]), "nesterov": bool(group["nesterov"]),
                "weight_decay": float(group["weight_decay"])}

    def read(self, raw, place):
        settings = {
            "momentum": _between(place / "momentum", raw.get("momentum", 0.0), 0, 1, True,
                                 "a momentum"),
            "dampening": _between(place / "dampening", raw.get("dampening", 0.0), 0, 1, False,
                                  "a dampening"),
            "nesterov": _flag(place / "nesterov", raw.get("nesterov", False)),
            "weight_decay": _between(place / "weight_decay", raw.get("weight_decay", 0.0), 0,
                                     math.inf, True, "a weight decay"),
        }
        if settings["nesterov"] and (settings["momentum"] == 0 or settings["dampening"]):
            (place / "nesterov").fail("a momentum > 0 and no dampening with Nesterov momentum "
                                      "(as torch.optim.SGD)")
        return settings

    def update(self, name, old, gradient, learning_rate, settings, state):
        momentum = settings.get("momentum", 0.0)
        decay = settings.get("weight_decay", 0.0)
        g = gradient + decay * old if decay else gradient
        if not momentum:
            return old - learning_rate * g, ({"g": g} if decay else None)
        dampening = settings.get("dampening", 0.0)
        velocity = momentum * state[name] + (1 - dampening) * g if name in state else g
        state[name] = velocity
        if settings.get("nesterov"):
            return old - learning_rate * (g + momentum * velocity), {"g": g, "v": velocity}
        return old - learning_rate * velocity, {"g": g, "v": velocity}

    def plain(self, settings):
        return not settings.get("weight_decay") and not settings.get("nesterov")

    def first_step(self, name, theta, learning_rate, gradient, settings):
        decay = settings.get("weight_decay", 0.0)
        g = gradient + _exact(decay) * theta if decay else gradient
        momentum = settings.get("momentum", 0.0)
        if not momentum:
            return [(updated_key(name), ("update", {"name": name}), theta - learning_rate * g)]
        v = sp.Symbol(state_key("v", name))
        step = g + _exact(momentum) * v if settings.get("nesterov") else v
        return [(v.name, ("velocity", {"name": name}), g),
                (updated_key(name), ("update", {"name": name}), theta - learning_rate * step)]

    def slips(self, name, old, gradient, learning_rate, settings):
        yield "update_plus", {"param": name}, old + learning_rate * gradient
        yield "update_no_lr", {"param": name}, old - gradient
        yield "update_no_old", {"param": name}, -learning_rate * gradient
        yield "update_not_applied", {"param": name}, old
        for k in (-1, 1, -2, 2, -3, 3):
            yield ("update_decimal", {"factor": f"10^{k}"},
                   old - learning_rate * gradient * 10.0 ** k)

    def rule(self, t, settings, numbers, rate):
        lines = [fill(t["backward"]["update_intro"], rate=rate)]
        words = t["optimizers"]["sgd"]
        if settings.get("weight_decay"):
            lines.append(fill(words["weight_decay"],
                              decay=numbers.given(settings["weight_decay"])))
        if settings.get("momentum"):
            lines.append(fill(t["backward"]["update_momentum"],
                              momentum=numbers.given(settings["momentum"])))
            if settings.get("dampening"):
                lines.append(fill(words["dampening"],
                                  dampening=numbers.given(settings["dampening"])))
            if settings.get("nesterov"):
                lines.append(words["nesterov"])
        return lines

    def history_rule(self, t, settings, numbers):
        words, more = t["history"], t["optimizers"]["sgd"]
        lines = [fill(words["momentum"], momentum=numbers.given(settings["momentum"]))
                 if settings.get("momentum") else words["plain"]]
        if settings.get("weight_decay"):
            lines.append(fill(more["history_decay"],
                              decay=numbers.given(settings["weight_decay"])))
        if settings.get("nesterov"):
            lines.append(more["history_nesterov"])
        return " ".join(lines)

    def equations(self, update, numbers, loss, rate, settings):
        name = update.parameter
        state = update.state or {}
        equations = []
        if "g" in state and settings.get("weight_decay"):
            decay = numbers.given(settings["weight_decay"])
            equations.append(Equation(state_key("g", name), [
                partial(loss, name) + r" + \lambda \cdot " + name,
                f"{_signed(numbers, update.gradient)} + {decay} \\cdot "
                f"{_signed(numbers, update.old, True)}", numbers.tex(state["g"])]))
            gradient_symbol, gradient_value = state_key("g", name), state["g"]
        else:
            gradient_symbol, gradient_value = partial(loss, name), update.gradient
        if "v" not in state:
            equations.append(Equation(primed(name), [
                name + r" - \eta \cdot " + gradient_symbol,
                f"{numbers.value(update.parameter, update.old)} - {rate} \\cdot {_signed(numbers, gradient_value)}",
                numbers.tex_change(update.old, update.new)]))
            return equations
        velocity = state_key("v", name)
        if settings.get("nesterov"):
            mu = numbers.given(settings["momentum"])
            equations.append(Equation(primed(name), [
                name + r" - \eta \cdot \left(" + gradient_symbol + r" + \mu \cdot " + velocity
                + r"\right)",
                f"{numbers.value(update.parameter, update.old)} - {rate} \\cdot \\left("
                f"{_signed(numbers, gradient_value)} + {mu} \\cdot "
                f"{_signed(numbers, state['v'])}\\right)",
                numbers.tex_change(update.old, update.new)]))
            return equations
        equations.append(Equation(primed(name), [
            name + r" - \eta \cdot " + velocity,
            f"{numbers.value(update.parameter, update.old)} - {rate} \\cdot {_signed(numbers, state['v'])}",
            numbers.tex_change(update.old, update.new)]))
        return equations


def _signed(numbers, value, given: bool = False) -> str:
    """A number in parentheses when negative (``given``: as the spec gives it)."""
    return tex(numbers.placeholder(value, given))


@register
class Adam(Optimizer):
    """torch.optim.Adam: at step t, g ← ∂E/∂θ + λ·θ, m ← β₁·m + (1 − β₁)·g,
    v ← β₂·v + (1 − β₂)·g², m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ), θ ← θ − η·m̂/(√v̂ + ε);
    m = v = 0 before the first step. AMSGrad (``amsgrad = true``): v̂ is made of the
    largest v so far, v_max ← max(v_max, v) (0 before the first step, so the first step
    is Adam's)."""

    name = "adam"
    title = "Adam"
    torch_class = "Adam"
    defaults = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False}
    learning_rate = 1e-3
    tabular = True
    decoupled = False  # AdamW: the weight decay multiplies θ instead of adding to g

    def torch_settings(self, group, place):
        only_defaults(group, place, maximize=False, decoupled_weight_decay=self.decoupled)
        return {"learning_rate": float(group["lr"]),
                "betas": [float(b) for b in group["betas"]], "eps": float(group["eps"]),
                "weight_decay": float(group["weight_decay"]),
                "amsgrad": bool(group.get("amsgrad", False))}

    def read(self, raw, place):
        betas = raw.get("betas", list(self.defaults["betas"]))
        if not isinstance(betas, list) or len(betas) != 2:
            (place / "betas").fail("[β₁, β₂]: two numbers in [0, 1)")
        betas = tuple(_between(place / "betas" / k, b, 0, 1, True, "a β")
                      for k, b in enumerate(betas))
        eps = (place / "eps").number(raw.get("eps", self.defaults["eps"]))
        if eps <= 0:
            (place / "eps").fail(f"a positive ε, got {eps}")
        decay = _between(place / "weight_decay", raw.get("weight_decay",
                                                         self.defaults["weight_decay"]),
                         0, math.inf, True, "a weight decay")
        amsgrad = _flag(place / "amsgrad", raw.get("amsgrad", self.defaults["amsgrad"]))
        return {"betas": betas, "eps": eps, "weight_decay": decay, "amsgrad": amsgrad}

    def update(self, name, old, gradient, learning_rate, settings, state):
        beta1, beta2 = settings.get("betas", self.defaults["betas"])
        eps = settings.get("eps", self.defaults["eps"])
        decay = settings.get("weight_decay", self.defaults["weight_decay"])
        if decay and self.decoupled:
            start = old * (1 - learning_rate * decay)
            g = gradient
        else:
            start = old
            g = gradient + decay * old if decay else gradient
        m0, v0, step, largest = state.get(name, (0.0, 0.0, 0, 0.0))
        step += 1
        m = beta1 * m0 + (1 - beta1) * g
        v = beta2 * v0 + (1 - beta2) * g * g
        if settings.get("amsgrad"):  # v̂ from the largest v so far (torch.maximum: NaN wins)
            largest = np.maximum(largest, v)
            used = largest
        else:
            used = v
        state[name] = (m, v, step, largest)
        correction1, correction2 = 1 - beta1 ** step, 1 - beta2 ** step
        denominator = np.sqrt(used) / math.sqrt(correction2) + eps
        new = start - (learning_rate / correction1) * (m / denominator)
        shown = {"g": g, "m0": m0, "v0": v0, "m": m, "v": v, "step": step,
                 "m_hat": m / correction1, "v_hat": used / correction2}
        if settings.get("amsgrad"):
            shown["v_max"] = largest
        return new, shown

    def first_step(self, name, theta, learning_rate, gradient, settings):
        beta1, beta2 = (_exact(b) for b in settings["betas"])
        eps, decay = sp.Float(settings["eps"]), settings["weight_decay"]
        g = gradient + _exact(decay) * theta if decay and not self.decoupled else gradient
        m, v, m_hat, v_hat = (sp.Symbol(state_key(letter, name))
                              for letter in ("m", r"v", r"\hat{m}", r"\hat{v}"))
        start = theta * (1 - learning_rate * _exact(decay)) if decay and self.decoupled \
            else theta
        values = {"name": name}
        return [(m.name, ("first_moment", values), (1 - beta1) * g),
                (v.name, ("second_moment", values), (1 - beta2) * g ** 2),
                (m_hat.name, ("first_moment_corrected", values), m / (1 - beta1)),
                (v_hat.name, ("second_moment_corrected", values), v / (1 - beta2)),
                (updated_key(name), ("update", values),
                 start - learning_rate * m_hat / (sp.sqrt(v_hat) + eps))]

    def slips(self, name, old, gradient, learning_rate, settings):
        """Bias correction forgotten: m and v used for m̂ and v̂."""
        beta1, beta2 = settings["betas"]
        m, v = (1 - beta1) * gradient, (1 - beta2) * gradient ** 2
        yield ("no_bias_correction", {"param": name},
               old - learning_rate * m / (math.sqrt(v) + settings["eps"]))

    def rule(self, t, settings, numbers, rate):
        words = t["optimizers"][self.name]
        beta1, beta2 = settings["betas"]
        lines = [fill(t["optimizers"]["moments"], optimizer=self.title, rate=rate,
                      beta1=numbers.given(beta1), beta2=numbers.given(beta2),
                      eps=numbers.given(settings["eps"]))]
        if settings["weight_decay"]:
            lines.append(fill(words["weight_decay"],
                              decay=numbers.given(settings["weight_decay"])))
        if settings.get("amsgrad"):
            lines.append(t["optimizers"]["amsgrad"])
        return lines

    def history_rule(self, t, settings, numbers):
        words = t["optimizers"][self.name]
        beta1, beta2 = settings["betas"]
        line = fill(t["optimizers"]["moments_history"], optimizer=self.title,
                    beta1=numbers.given(beta1), beta2=numbers.given(beta2),
                    eps=numbers.given(settings["eps"]))
        if settings["weight_decay"]:
            line += " " + fill(words["history_decay"],
                               decay=numbers.given(settings["weight_decay"]))
        if settings.get("amsgrad"):
            line += " " + t["optimizers"]["amsgrad_history"]
        return line

    def equations(self, update, numbers, loss, rate, settings):
        name, s, n = update.parameter, update.state, numbers
        beta1, beta2 = (n.given(b) for b in settings["betas"])
        decay = settings["weight_decay"]
        keys = {"g": state_key("g", name), "m": state_key("m", name),
                "v": state_key("v", name), "m_hat": state_key(r"\hat{m}", name),
                "v_hat": state_key(r"\hat{v}", name)}
        equations = []
        gradient = partial(loss, name)
        if decay and not self.decoupled:
            equations.append(Equation(keys["g"], [
                gradient + r" + \lambda \cdot " + name,
                f"{_signed(n, update.gradient)} + {n.given(decay)} \\cdot {_signed(n, update.old, True)}",
                n.tex(s["g"])]))
            gradient = keys["g"]
        t = s["step"]
        equations += [
            Equation(keys["m"], [
                rf"\beta_1 \cdot {keys['m']} + (1 - \beta_1) \cdot {gradient}",
                f"{beta1} \\cdot {_signed(n, s['m0'])} + (1 - {beta1}) \\cdot "
                f"{_signed(n, s['g'])}", n.tex(s["m"])]),
            Equation(keys["v"], [
                rf"\beta_2 \cdot {keys['v']} + (1 - \beta_2) \cdot \left({gradient}\right)^2",
                f"{beta2} \\cdot {_signed(n, s['v0'])} + (1 - {beta2}) \\cdot "
                f"{_signed(n, s['g'])}^2", n.tex(s["v"])]),
            Equation(keys["m_hat"], [
                rf"\frac{{{keys['m']}}}{{1 - \beta_1^{{{t}}}}}",
                rf"\frac{{{n.tex(s['m'])}}}{{1 - {beta1}^{{{t}}}}}", n.tex(s["m_hat"])]),
            Equation(keys["v_hat"], [
                rf"\frac{{{keys['v']}}}{{1 - \beta_2^{{{t}}}}}",
                rf"\frac{{{n.tex(s['v'])}}}{{1 - {beta2}^{{{t}}}}}", n.tex(s["v_hat"])])]
        eps = n.given(settings["eps"])
        step = rf"\eta \cdot \frac{{{keys['m_hat']}}}{{\sqrt{{{keys['v_hat']}}} + \varepsilon}}"
        numbers_step = (rf"{rate} \cdot \frac{{{_signed(n, s['m_hat'])}}}"
                        rf"{{\sqrt{{{n.tex(s['v_hat'])}}} + {eps}}}")
        if decay and self.decoupled:
            start = rf"{name} \cdot (1 - \eta \cdot \lambda)"
            start_numbers = rf"{_signed(n, update.old, True)} \cdot (1 - {rate} \cdot {n.given(decay)})"
        else:
            start, start_numbers = name, n.value(name, update.old)
        equations.append(Equation(primed(name), [f"{start} - {step}",
                                               f"{start_numbers} - {numbers_step}",
                                               n.tex_change(update.old, update.new)]))
        return equations

    def table(self, t, updates, numbers):
        words = t["optimizers"]
        header = [words["parameter"], words["gradient"], "$m$", "$v$", r"$\hat{m}$",
                  r"$\hat{v}$", words["after"]]
        rows = []
        for u in updates:
            if u.frozen:
                rows.append([u.parameter, numbers.tex(u.gradient), "", "", "", "",
                             f"{numbers.value(u.parameter, u.old)}"])
                continue
            s = u.state
            rows.append([u.parameter, numbers.tex(u.gradient)]
                        + [numbers.tex(s[k]) for k in ("m", "v", "m_hat", "v_hat")]
                        + [numbers.tex_change(u.old, u.new)])
        return header, rows


@register
class AdamW(Adam):
    """torch.optim.AdamW: Adam with the weight decay decoupled, θ ← θ·(1 − η·λ) before the
    Adam step (λ = 0.01 by default)."""

    name = "adamw"
    title = "AdamW"
    torch_class = "AdamW"
    defaults = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2, "amsgrad": False}
    decoupled = True
