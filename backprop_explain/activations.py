"""Activation functions, one entry each: everything particular to one function in one place.

An entry holds its forward expression in SymPy (SymPy derives every partial of the
graph from it), the same function and its backward product in NumPy (the fast path),
how a worked solution writes it and its derivative (the textbook forms σ(y)(1 − σ(y)),
1 − tanh², the ReLU indicator, the softmax Jacobian, each proved equal to SymPy's
derivative in tests/test_textbook.py), and what is particular to it elsewhere: the slips a
student makes in its derivative (verify.py) and when a drawn exercise makes it useless
(a saturated or dead unit, sheet.py), and its torch.nn module (torch_import.py,
torch_export.py). ``ACTIVATIONS`` maps the spec's name to the entry.

tests/test_architecture.py checks every entry's NumPy backward against SymPy's
derivative of its expression.
"""

from __future__ import annotations

from .lazy import numpy as np  # executed at first use: lazy.py
import sympy as sp

ACTIVATIONS: dict[str, "Activation"] = {}


# Functions a textbook form is written with: printed as a course writes them, rewritten
# into SymPy's own functions to be compared with SymPy's derivative (rewrite(sp.exp)).

class SigmoidOf(sp.Function):
    """σ(y), printed σ(y); ``rewrite(sp.exp)`` gives 1/(1 + e^{−y})."""

    nargs = 1
    text_name = "σ"

    def _latex(self, printer, exp=None):
        shown = r"\sigma\left(" + printer._print(self.args[0]) + r"\right)"
        return shown if exp is None else r"\left(" + shown + r"\right)^{" + exp + "}"

    def _eval_rewrite_as_exp(self, arg, **kwargs):
        return 1 / (1 + sp.exp(-arg))


class Indicator(sp.Function):
    """𝟏[condition]: 1 where the condition holds, else 0 (the ReLU's derivative)."""

    nargs = 1
    text_name = "𝟏"

    def _latex(self, printer, exp=None):
        return r"\mathbf{1}_{" + printer._print(self.args[0]) + "}"

    def _eval_rewrite_as_Piecewise(self, condition, **kwargs):
        return sp.Piecewise((1, condition), (0, True))


class SoftmaxOf(sp.Function):
    """softmax_k(z_1, …, z_n): the first argument is k (from 1), the others the z's."""

    text_name = "softmax"

    def _latex(self, printer, exp=None):
        k, *zs = self.args
        shown = (r"\operatorname{softmax}_{" + printer._print(k) + r"}\left("
                 + ", ".join(printer._print(z) for z in zs) + r"\right)")
        return shown if exp is None else r"\left(" + shown + r"\right)^{" + exp + "}"

    def _sympystr(self, printer):
        k, *zs = self.args
        return f"softmax_{k}({', '.join(printer._print(z) for z in zs)})"

    def _eval_rewrite_as_exp(self, k, *zs, **kwargs):
        return sp.exp(zs[int(k) - 1]) / sp.Add(*[sp.exp(z) for z in zs])


def product(*factors) -> sp.Expr:
    """A product kept in the order written: σ(y)·(1 − σ(y)), not (1 − σ(y))·σ(y)."""
    return sp.Mul(*factors, evaluate=False)


def register(cls):
    """Add an entry (a class, instantiated once) to ACTIVATIONS under its name."""
    ACTIVATIONS[cls.name] = cls()
    return cls


class Activation:
    """out_j = f(y)_j for the pre-activations y of one layer.

    ``display`` is how the course writes f applied to its argument (LaTeX, ``{arg}``
    the argument, ``{index}`` the unit), None when nothing is applied."""

    name: str
    display: str | None
    elementwise = True  # out_j depends on y_j alone (a diagonal Jacobian)
    degenerate_reason = ""  # why a unit makes a poor exercise, when degenerate() says so
    torch_class: str  # its torch.nn module ("Sigmoid")

    def expression(self, ys: list[sp.Symbol], j: int, negative_slope: float = 0.01) -> sp.Expr:
        """out_j in the symbols ys of the layer's pre-activations."""
        return self.unit(ys[j], negative_slope)

    def unit(self, y: sp.Symbol, negative_slope: float) -> sp.Expr:
        raise NotImplementedError

    def forward(self, z, negative_slope: float = 0.01):
        """f(z) over the last axis of a NumPy array (units)."""
        raise NotImplementedError

    def forward_kept(self, z, negative_slope: float = 0.01):
        """(f(z), what the forward pass computed that ``backward`` (or a fused loss) would
        compute again, or None): the fast path hands it back from forward to backward."""
        return self.forward(z, negative_slope), None

    def backward(self, z, a, grad_a, negative_slope: float = 0.01, kept=None):
        """∂L/∂z from ∂L/∂a, with a = f(z) (``kept``: from ``forward_kept``, or None)."""
        raise NotImplementedError

    def textbook(self, ys: list[sp.Symbol], outs: list[sp.Symbol], j: int, k: int,
                 negative_slope: float = 0.01) -> list[sp.Expr]:
        """∂outs[j]/∂ys[k] as a course writes it, after SymPy's form: first in the
        function, last in the outputs (the numbers go into the last one); [] when SymPy's
        form is already the course's. Each equals SymPy's derivative once outs = f(ys)
        (tests/test_textbook.py). An element-wise activation is given its unit alone."""
        return []

    def wrong_derivatives(self, y: sp.Symbol) -> list[tuple[str, str, sp.Expr]]:
        """(the slip as written, the right derivative as written, the slip as an expression
        of y): what a student writes for f'(y) by mistake (verify.py replays them)."""
        return []

    def inverse(self, out: sp.Symbol) -> sp.Expr | None:
        """y such that f(y) = out, for an element-wise f that has one (σ: ln(out/(1 − out))),
        else None. verify.py: a student who computes f'(y) from the rounded output (σ′ as
        out(1 − out)) in effect uses this y, which it then accepts."""
        return None

    def degenerate(self, z, a, saturation: float):
        """Per variant (axis 0 of z and a: variant, example, units…), whether a drawn
        exercise has a useless unit here (saturated, dead); None when it cannot."""
        return None

    def torch_settings(self, module, place) -> dict:
        """The layer's spec keys read from its torch module (leaky ReLU: negative_slope);
        a setting the spec cannot express fails at ``place``."""
        return {}

    def torch_code(self, negative_slope: float) -> str | None:
        """Its module as PyTorch code, None when nothing is applied."""
        return f"nn.{self.torch_class}()"


def sigmoid(z):
    """σ(z) without overflow: 1/(1 + e) for z ≥ 0 and e/(1 + e) below, e = e^{−|z|} ≤ 1
    (correct to 2 units in the last place). Seven passes over three new arrays, none
    masked (np.where and masked ufuncs take longer than all of these together)."""
    return _sigmoid_kept(z)[0]


def _sigmoid_kept(z):
    """(σ(z), (e, 1 + e)) with e = e^{−|z|}: the derivative's ingredients, left intact."""
    e = _exp_minus_abs(z)
    d = e + 1.0
    numerator = np.greater_equal(z, 0.0, out=np.empty_like(e))  # 1 for z ≥ 0, else 0 …
    np.maximum(numerator, e, out=numerator)  # … then e where it was 0 (e ≤ 1)
    return np.divide(numerator, d, out=numerator), (e, d)


def _exp_minus_abs(z):
    """e^{−|z|} in one new array: |z|, its negative and its exponential, each in place
    (np.abs and np.negative are vectorised: both together take half the time of one
    np.copysign(z, −1), the same numbers)."""
    e = np.abs(z)
    np.negative(e, out=e)
    return np.exp(e, out=e)


def softplus(z):
    """ln(1 + e^z), stable for large |z|."""
    return np.logaddexp(0.0, z)


def log_sum_exp(z, kept=None):
    """ln Σ e^z over the last axis, from the max and the sum the softmax's forward pass kept
    when given (the same numbers)."""
    top, total = kept if kept is not None else (z.max(axis=-1, keepdims=True), None)
    if total is None:
        total = np.exp(z - top).sum(axis=-1, keepdims=True)
    return top[..., 0] + np.log(total[..., 0])


def _over_units(mask):
    """Any unit of any example, per variant."""
    return mask.any(axis=tuple(range(1, mask.ndim)))


@register
class Identity(Activation):
    name = "identity"
    display = None
    torch_class = "Identity"

    def unit(self, y, negative_slope):
        return y

    def forward(self, z, negative_slope=0.01):
        return z

    def backward(self, z, a, grad_a, negative_slope=0.01, kept=None):
        return grad_a

    def torch_code(self, negative_slope):
        return None


@register
class Sigmoid(Activation):
    name = "sigmoid"
    display = r"\sigma\left({arg}\right)"
    torch_class = "Sigmoid"
    degenerate_reason = "saturated sigmoid"

    def unit(self, y, negative_slope):
        return 1 / (1 + sp.exp(-y))

    def forward(self, z, negative_slope=0.01):
        return sigmoid(z)

    def forward_kept(self, z, negative_slope=0.01):
        return _sigmoid_kept(z)

    def backward(self, z, a, grad_a, negative_slope=0.01, kept=None):
        # σ'(z) = e/(1 + e)² with e = e^{−|z|}: correct to 2 units in the last place in both
        # tails, where a·(1 − a) loses every digit (1 − a is 0 beyond z ≈ 37); e and 1 + e
        # as the forward pass left them (kept, 4 passes fewer), the forward's d overwritten
        if kept is None:
            e = _exp_minus_abs(z)
            d = e + 1.0
        else:
            e, d = kept
        np.multiply(d, d, out=d)
        np.divide(e, d, out=d)
        return np.multiply(grad_a, d, out=d)

    def textbook(self, ys, outs, j, k, negative_slope=0.01):
        y, out = ys[k], outs[j]
        return [product(SigmoidOf(y), 1 - SigmoidOf(y)), product(out, 1 - out)]

    def inverse(self, out):
        return sp.log(out / (1 - out))

    def wrong_derivatives(self, y):
        s = self.unit(y, 0.0)
        right = "σ(y)(1−σ(y))"
        return [("σ(y)", right, s), ("y(1−y)", right, y * (1 - y)),
                ("σ(y)(1+σ(y))", right, s * (1 + s)), ("1−σ(y)", right, 1 - s)]

    def degenerate(self, z, a, saturation):
        return _over_units((a < saturation) | (a > 1 - saturation))


@register
class Tanh(Activation):
    name = "tanh"
    display = r"\tanh\left({arg}\right)"
    torch_class = "Tanh"
    degenerate_reason = "saturated tanh"

    def unit(self, y, negative_slope):
        return sp.tanh(y)

    def forward(self, z, negative_slope=0.01):
        return np.tanh(z)

    def backward(self, z, a, grad_a, negative_slope=0.01, kept=None):
        s = a * a  # grad_a · (1 − a²), in one array
        np.subtract(1.0, s, out=s)
        s *= grad_a
        return s

    def textbook(self, ys, outs, j, k, negative_slope=0.01):
        return [1 - sp.tanh(ys[k]) ** 2, 1 - outs[j] ** 2]

    def inverse(self, out):
        return sp.atanh(out)

    def wrong_derivatives(self, y):
        right = "1−tanh²(y)"
        return [("tanh(y)", right, sp.tanh(y)), ("1−y²", right, 1 - y ** 2),
                ("1−tanh(y)", right, 1 - sp.tanh(y)), ("1+tanh²(y)", right, 1 + sp.tanh(y) ** 2)]

    def degenerate(self, z, a, saturation):
        return _over_units(np.abs(a) > 1 - saturation)


def _relu_slips(y):
    """ReLU(y) written for its derivative (the step function)."""
    return [("ReLU(y)", "1 if y > 0 else 0", sp.Piecewise((y, y > 0), (0, True)))]


@register
class ReLU(Activation):
    """The symbolic Piecewise has derivative 0 at 0, as PyTorch."""

    name = "relu"
    display = r"\operatorname{{ReLU}}\left({arg}\right)"
    torch_class = "ReLU"
    degenerate_reason = "dead ReLU"

    def unit(self, y, negative_slope):
        return sp.Piecewise((y, y > 0), (0, True))

    def forward(self, z, negative_slope=0.01):
        return np.maximum(z, 0.0)  # the same values as np.where(z > 0, z, 0), 8x faster

    def backward(self, z, a, grad_a, negative_slope=0.01, kept=None):
        return grad_a * (z > 0)

    def textbook(self, ys, outs, j, k, negative_slope=0.01):
        return [Indicator(ys[k] > 0)]

    def wrong_derivatives(self, y):
        return _relu_slips(y)

    def degenerate(self, z, a, saturation):
        dead = (z <= 0).all(axis=1)  # over the batch: (V, units or channels, …)
        return dead.reshape(dead.shape[0], -1).any(axis=-1)


@register
class LeakyReLU(Activation):
    name = "leaky_relu"
    display = r"\operatorname{{LeakyReLU}}\left({arg}\right)"
    torch_class = "LeakyReLU"

    def unit(self, y, negative_slope):
        return sp.Piecewise((y, y > 0), (sp.Float(negative_slope) * y, True))

    def forward(self, z, negative_slope=0.01):
        if 0 <= negative_slope <= 1:  # max(z, αz) is z for z > 0 and αz otherwise
            return np.maximum(z, negative_slope * z)
        return np.where(z > 0, z, negative_slope * z)

    def backward(self, z, a, grad_a, negative_slope=0.01, kept=None):
        return np.where(z > 0, grad_a, negative_slope * grad_a)

    def textbook(self, ys, outs, j, k, negative_slope=0.01):
        y = ys[k]
        return [sp.Add(Indicator(y > 0), product(sp.Float(negative_slope), Indicator(y <= 0)),
                       evaluate=False)]

    def wrong_derivatives(self, y):
        return _relu_slips(y)

    def torch_settings(self, module, place):
        return {"negative_slope": float(module.negative_slope)}

    def torch_code(self, negative_slope):
        return f"nn.LeakyReLU(negative_slope={negative_slope!r})"


@register
class Softmax(Activation):
    """out_j = e^{y_j} / Σ_k e^{y_k}: depends on the whole layer (non-diagonal Jacobian)."""

    name = "softmax"
    display = r"\operatorname{{softmax}}_{{{index}}}\left({arg}\right)"
    elementwise = False
    torch_class = "Softmax"

    def expression(self, ys, j, negative_slope=0.01):
        return sp.exp(ys[j]) / sp.Add(*[sp.exp(y) for y in ys])

    def forward(self, z, negative_slope=0.01):
        return self.forward_kept(z)[0]

    def forward_kept(self, z, negative_slope=0.01):
        """(softmax, (max, Σ e^{z − max}) per example): the log-sum-exp's ingredients, which
        a fused cross-entropy would compute again (losses.py)."""
        top = z.max(axis=-1, keepdims=True)
        e = z - top
        np.exp(e, out=e)
        total = e.sum(axis=-1, keepdims=True)
        e /= total
        return e, (top, total)

    def backward(self, z, a, grad_a, negative_slope=0.01, kept=None):
        # Jacobian-vector product of the layer-wide softmax
        return a * (grad_a - (grad_a * a).sum(axis=-1, keepdims=True))

    def textbook(self, ys, outs, j, k, negative_slope=0.01):
        """∂out_j/∂y_k = out_j(δ_jk − out_k)."""
        if j == k:
            return [product(outs[j], 1 - outs[j])]
        return [-product(outs[j], outs[k])]

    def torch_settings(self, module, place):
        over_units(module, place)
        return {}

    def torch_code(self, negative_slope):
        return "nn.Softmax(dim=1)"


def over_units(module, place) -> None:
    """A softmax module (Softmax, LogSoftmax) over the units of each example."""
    if module.dim not in (None, 1, -1):
        place.fail(f"dim=1 (over the units of each example), got dim={module.dim}")
