"""Loss functions, one entry each: the terms in SymPy and NumPy, and what is particular to one.

An entry holds its terms E_k as SymPy expressions of the outputs and targets (the total
loss is Σ_k E_k; SymPy derives every partial), the same terms and ∂(Σ_k E_k)/∂out in
NumPy (the fast path), the fused forms with an output activation that the fast path
computes from the logits (log-softmax, log-sigmoid: no overflow, no ln 0), its formula as
a worked solution writes it (in the spec's own names) with the textbook forms of its
derivatives and the course's shortcuts through the output activation (softmax + cross-
entropy: ∂E/∂y_k = out_k − t_k; each proved equal to SymPy's derivative in
tests/test_textbook.py), the targets and output activation it accepts (spec.py), the
scale slips a student makes with it (verify.py), and how PyTorch computes it: the
torch.nn criteria equal to it and its terms as a torch expression (torch_import.py,
torch_export.py). ``LOSSES`` maps the spec's name to the entry.

tests/test_architecture.py checks every entry's NumPy gradient, fused forms included,
against SymPy's derivative of its terms.
"""

from __future__ import annotations

from dataclasses import dataclass

from .lazy import numpy as np  # executed at first use: lazy.py
import sympy as sp

from .activations import SoftmaxOf, log_sum_exp, product, sigmoid, softplus


def difference(a, b) -> sp.Expr:
    """a − b kept in that order (out_k − t_k, not −t_k + out_k)."""
    return sp.Add(a, -b, evaluate=False)

LOSSES: dict[str, "Loss"] = {}


def register(cls):
    """Add an entry (a class, instantiated once) to LOSSES under its name."""
    LOSSES[cls.name] = cls()
    return cls


@dataclass(frozen=True)
class TorchCriterion:
    """A torch.nn loss module computing a loss entry exactly, with one of its reductions."""

    torch_class: str  # "MSELoss"
    reduction: str  # the module's reduction= ("mean" or "sum")
    spec_reduction: str  # the spec's training.reduction it amounts to (over the examples)
    outputs: int | None = None  # only for this many outputs (BCELoss's mean averages them too)
    class_targets: bool = False  # takes class indices as targets (one-hot in the spec)
    after: str | None = None  # the module the model ends with, which it includes (LogSoftmax)
    defaults: tuple = ()  # (attribute, value): settings the spec knows only at that value


class Loss:
    name: str
    # LaTeX of the loss, in the spec's names: {out} and {target} an output and its target
    # written with the index {index}, {outs} every output, {n} how many (phrases' {formula})
    display: str
    # Targets it accepts: (lowest, highest or None, as the error message says), or None
    target_bounds: tuple[float, float | None, str] | None = None
    torch_criteria: tuple[TorchCriterion, ...] = ()  # the first that fits is exported
    torch_terms: str  # the loss of each example in torch, of out and t (examples × outputs)
    torch_note = ""  # why no criterion computes it, said in the exported script

    def terms(self, outputs: list[sp.Symbol], targets: list[sp.Symbol]) -> list[sp.Expr]:
        """E_k for each output k, so that the total loss is Σ_k E_k."""
        raise NotImplementedError

    def forward(self, out, t):
        """The terms E_k in NumPy, over the last axis (outputs)."""
        raise NotImplementedError

    def gradient(self, out, t):
        """∂(Σ_k E_k)/∂out in NumPy."""
        raise NotImplementedError

    # Fused forms: {output activation: method(z, out, t, kept) -> (terms, ∂(Σ_k E_k)/∂z)}
    fused: dict[str, str] = {}

    def terms_and_delta(self, activation: str, z, out, t, kept=None):
        """(terms E_k, the gradient, whether it is with respect to z rather than out) for
        the last layer's pre-activations z and outputs out = activation(z) (``kept``: what
        the activation's forward_kept kept, or None)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            if activation in self.fused:
                terms, delta = getattr(self, self.fused[activation])(z, out, t, kept)
                return terms, delta, True
            return self.forward(out, t), self.gradient(out, t), False

    def check_output(self, activation: str, place) -> None:
        """The output layer's activation suits this loss (place: the loss's type)."""

    def check_targets(self, targets: list[float], place) -> None:
        """Targets this loss can take (place: the list of targets)."""
        if self.target_bounds is None:
            return
        low, high, words = self.target_bounds
        for k, t in enumerate(targets):
            if t < low or (high is not None and t > high):
                (place / k).fail(f"a target {words} for {self.name}, got {t}")

    def slip_scales(self, outputs: int) -> list:
        """Factors a student puts in or leaves out of this loss by mistake (verify.py)."""
        return []

    # How a course writes it ------------------------------------------------------
    def term_textbook(self, outputs, targets, j: int) -> sp.Expr | None:
        """E_j as a course defines it, when SymPy's term is written otherwise."""
        return None

    def textbook(self, outputs, targets, j: int, k: int) -> list[sp.Expr]:
        """∂E_j/∂outputs[k] as a course writes it, when SymPy's form is not that already."""
        return []

    def delta_textbook(self, activation: str, outputs, targets, k: int,
                       targets_sum_to_one: bool) -> sp.Expr | None:
        """∂(Σ_j E_j)/∂y_k for the pre-activations y of an output layer with this
        ``activation``, when the two make a course's shortcut (out_k − t_k), in the
        outputs and targets; None when there is none."""
        return None


@register
class HalfSquaredError(Loss):
    name = "half_squared_error"
    display = r"\frac{1}{2}\sum_{index} \left({out} - {target}\right)^2"
    torch_terms = "0.5 * ((out - t) ** 2).sum(dim=1)"
    torch_note = "nn.MSELoss has no factor 1/2"

    def terms(self, outputs, targets):
        return [sp.Rational(1, 2) * (o - t) ** 2 for o, t in zip(outputs, targets)]

    def forward(self, out, t):
        return 0.5 * (out - t) ** 2

    def gradient(self, out, t):
        return out - t

    def slip_scales(self, outputs):
        return [2, sp.Rational(1, 2)]


@register
class SquaredError(Loss):
    name = "squared_error"
    display = r"\sum_{index} \left({out} - {target}\right)^2"
    torch_criteria = (TorchCriterion("MSELoss", "sum", "sum"),)
    torch_terms = "((out - t) ** 2).sum(dim=1)"
    torch_note = "nn.MSELoss() also divides by the number of outputs"

    def terms(self, outputs, targets):
        return [(o - t) ** 2 for o, t in zip(outputs, targets)]

    def forward(self, out, t):
        return (out - t) ** 2

    def gradient(self, out, t):
        return 2.0 * (out - t)

    def textbook(self, outputs, targets, j, k):
        return [product(2, outputs[k] - targets[k])] if j == k else []

    def slip_scales(self, outputs):
        return [2, sp.Rational(1, 2)]


@register
class MeanSquaredError(Loss):
    name = "mean_squared_error"
    display = r"\frac{1}{{n}}\sum_{index} \left({out} - {target}\right)^2"
    torch_criteria = (TorchCriterion("MSELoss", "mean", "mean"),)
    torch_terms = "((out - t) ** 2).mean(dim=1)"
    torch_note = "nn.MSELoss(reduction=\"sum\") does not divide by the number of outputs"

    def terms(self, outputs, targets):
        n = len(outputs)
        return [(o - t) ** 2 / n for o, t in zip(outputs, targets)]

    def forward(self, out, t):
        return (out - t) ** 2 / out.shape[-1]

    def gradient(self, out, t):
        return 2.0 * (out - t) / out.shape[-1]

    def textbook(self, outputs, targets, j, k):
        return [product(sp.Rational(2, len(outputs)), outputs[k] - targets[k])] if j == k else []

    def slip_scales(self, outputs):
        return [2, sp.Rational(1, 2), outputs]


@register
class CrossEntropy(Loss):
    name = "cross_entropy"
    display = r"-\sum_{index} {target} \ln {out}"
    target_bounds = (0, None, ">= 0")
    fused = {"softmax": "after_softmax", "sigmoid": "after_sigmoid"}
    torch_terms = "-(t * out.log()).sum(dim=1)"
    torch_note = "nn.CrossEntropyLoss would apply a softmax to the outputs first"

    def terms(self, outputs, targets):
        return [-t * sp.log(o) for o, t in zip(outputs, targets)]

    def forward(self, out, t):
        return -t * np.log(out)

    def gradient(self, out, t):
        return -t / out

    def after_softmax(self, z, out, t, kept=None):
        log_softmax = z - log_sum_exp(z, kept)[..., None]
        return -t * log_softmax, out * t.sum(axis=-1, keepdims=True) - t

    def after_sigmoid(self, z, out, t, kept=None):
        # -t ln σ(z) = t·softplus(-z); ∂/∂z = -t·σ(-z)
        return t * softplus(-z), -t * sigmoid(-z)

    def delta_textbook(self, activation, outputs, targets, k, targets_sum_to_one):
        out, t = outputs[k], targets[k]
        if activation == "softmax":  # Σ_j −t_j (δ_jk − out_k) = out_k Σ_j t_j − t_k
            if targets_sum_to_one:
                return difference(out, t)
            return difference(product(out, sp.Add(*targets)), t)
        if activation == "sigmoid":
            return -product(t, 1 - out)
        return None


@register
class SoftmaxCrossEntropy(Loss):
    """-t_k ln softmax_k(z), on the logits z of an identity output layer."""

    name = "softmax_cross_entropy"
    display = r"-\sum_{index} {target} \ln \operatorname{softmax}_{index}\left({outs}\right)"
    target_bounds = (0, None, ">= 0")
    fused = {"identity": "on_logits"}
    torch_criteria = tuple(
        TorchCriterion(module, reduction, reduction, class_targets=True, after=after,
                       defaults=(("weight", None), ("label_smoothing", 0.0)))
        for module, after in (("CrossEntropyLoss", None), ("NLLLoss", "LogSoftmax"))
        for reduction in ("mean", "sum"))
    torch_terms = "-(t * out.log_softmax(dim=1)).sum(dim=1)"

    def terms(self, outputs, targets):
        # -t_k ln softmax_k(z), written with the log-sum-exp of the logits z
        log_sum_exp_z = sp.log(sp.Add(*[sp.exp(o) for o in outputs]))
        return [-t * (o - log_sum_exp_z) for o, t in zip(outputs, targets)]

    def forward(self, out, t):
        return self.on_logits(out, out, t)[0]

    def gradient(self, out, t):
        return self.on_logits(out, out, t)[1]

    def term_textbook(self, outputs, targets, j):
        return -product(targets[j], sp.log(SoftmaxOf(j + 1, *outputs)))

    def textbook(self, outputs, targets, j, k):
        """∂E_j/∂z_k = t_j (softmax_k(z) − δ_jk)."""
        softmax = SoftmaxOf(k + 1, *outputs)
        if j == k:
            return [product(targets[j], sp.Add(softmax, -1, evaluate=False))]
        return [product(targets[j], softmax)]

    def delta_textbook(self, activation, outputs, targets, k, targets_sum_to_one):
        if activation != "identity":
            return None
        softmax = SoftmaxOf(k + 1, *outputs)
        if targets_sum_to_one:
            return difference(softmax, targets[k])
        return difference(product(softmax, sp.Add(*targets)), targets[k])

    def on_logits(self, z, out, t, kept=None):
        log_softmax = z - log_sum_exp(z)[..., None]
        return -t * log_softmax, np.exp(log_softmax) * t.sum(axis=-1, keepdims=True) - t

    def check_output(self, activation, place):
        if activation != "identity":
            place.fail("softmax_cross_entropy after a layer with activation = "
                       f"\"identity\" (it applies the softmax itself), got {activation}")

    def check_targets(self, targets, place):
        super().check_targets(targets, place)
        if abs(sum(targets) - 1) > 1e-9:
            place.fail(f"targets summing to 1 (a probability distribution) for {self.name}, "
                       f"got a sum of {sum(targets)}")


@register
class BinaryCrossEntropy(Loss):
    name = "binary_cross_entropy"
    display = (r"-\sum_{index} \left({target} \ln {out} + \left(1 - {target}\right)"
               r"\ln\left(1 - {out}\right)\right)")
    target_bounds = (0, 1, "between 0 and 1")
    fused = {"sigmoid": "after_sigmoid"}
    torch_criteria = (TorchCriterion("BCELoss", "sum", "sum", defaults=(("weight", None),)),
                      TorchCriterion("BCELoss", "mean", "mean", outputs=1,
                                     defaults=(("weight", None),)))
    torch_terms = "-(t * out.log() + (1 - t) * (1 - out).log()).sum(dim=1)"
    torch_note = "nn.BCELoss() also averages over the outputs"

    def terms(self, outputs, targets):
        return [-(t * sp.log(o) + (1 - t) * sp.log(1 - o)) for o, t in zip(outputs, targets)]

    def forward(self, out, t):
        return -(t * np.log(out) + (1.0 - t) * np.log(1.0 - out))

    def gradient(self, out, t):
        return (1.0 - t) / (1.0 - out) - t / out

    def after_sigmoid(self, z, out, t, kept=None):
        return t * softplus(-z) + (1.0 - t) * softplus(z), out - t

    def textbook(self, outputs, targets, j, k):
        out, t = outputs[k], targets[k]
        return [difference(out, t) / product(out, 1 - out)] if j == k else []

    def delta_textbook(self, activation, outputs, targets, k, targets_sum_to_one):
        return difference(outputs[k], targets[k]) if activation == "sigmoid" else None
