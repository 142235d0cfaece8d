"""Document stage, mini-batches and training runs: how the examples' gradients combine, and
the loss history of several SGD steps as a table and a chart (pgfplots in LaTeX, an SVG
file beside the Markdown, since GitHub shows a relative ``![](file.svg)`` image but strips
inline SVG). Formatting only: every number comes from the Solution and its TrainingRun.
"""

from __future__ import annotations

import math

from .notation import Equation, NumberFormat, partial
from .optimizers import OPTIMIZERS
from .templating import fill, phrases, render_template

MAX_ROWS = 40  # longer histories are shown every k-th step (the chart shows every step)


class TrainingView:
    """The ``batch`` and ``history`` parts of a solution's template context."""

    def __init__(self, view):
        self.view = view  # document.SolutionView
        self.solution = view.solution
        self.t = view.t
        self.n = view.n

    def batch(self) -> dict | None:
        """Each example's gradients, how they combine (mean or sum), then the update."""
        solution = self.solution
        examples = solution.examples
        if len(examples) < 2:
            return None
        t = self.t["batch"]
        m = len(examples)
        mean = solution.spec.reduction == "mean"
        loss = self.view.loss_name
        k, theta = self.view.symbols["example"], self.view.symbols["parameter"]
        k_loss = f"{loss}^{{({k})}}"
        factor = rf"\frac{{1}}{{{m}}}" if mean else ""
        formula = Equation(partial(loss, theta), [factor + rf"\sum_{{{k}=1}}^{{{m}}} "
                                                  + partial(k_loss, theta)])
        loss_formula = Equation(loss, [factor + rf"\sum_{{{k}=1}}^{{{m}}} {k_loss}",
                                       self.n.tex(solution.loss)])
        first = next(iter(solution.gradients))
        parts = _signed_terms([e.gradients[first] for e in examples], self.n)
        sample = Equation(partial(loss, first), [
            factor + r"\left(" + parts + r"\right)" if mean else parts,
            self.n.tex(solution.gradients[first])])
        header = [t["parameter"]] + [t["example"].replace("{k}", str(k + 1)) for k in range(m)]
        header.append(t["mean"] if mean else t["sum"])
        rows = [[name] + [self.n.tex(e.gradients[name]) for e in examples]
                + [self.n.tex(g)] for name, g in solution.gradients.items()]
        return {
            "intro": fill(t["intro"], count=m),
            "rule": t["mean_rule" if mean else "sum_rule"],
            "formula": formula,
            "loss_formula": loss_formula,
            "losses_header": [t["example_column"], t["loss_column"].replace("{loss}", loss)],
            "losses": [[str(k + 1), self.n.tex(e.loss)] for k, e in enumerate(examples)],
            "sample": sample,
            "header": header,
            "rows": rows,
            "columns": tuple(range(0, m + 2)),
        }

    def history(self, fmt: str, loss_figure: str | None) -> dict | None:
        run = self.solution.training
        if run is None:
            return None
        t = self.t["history"]
        n = self.n
        every = math.ceil(len(run.steps) / MAX_ROWS)
        shown = [s for s in run.steps if (s.step - 1) % every == 0 or s is run.steps[-1]]
        optimizer = OPTIMIZERS[run.optimizer]
        intro = fill(" ".join([t["settings"], optimizer.history_rule(
            self.t, run.optimizer_settings, n), t["first_step"]]),
            steps=len(run.steps), batch=run.batch_size, examples=run.n_examples,
            optimizer=optimizer.title, rate=n.given(self.solution.spec.learning_rate))
        if fmt == "tex":
            figure = pgfplots_chart(run, self.t, n)
        elif loss_figure:
            figure = f"![{fill(t['chart_alt'], optimizer=optimizer.title)}]({loss_figure})"
        else:
            figure = ""
        return {
            "title": t["title"],
            "intro": intro,
            "header": [t["step"], t["epoch"], t["examples"], t["loss"]],
            "rows": [[str(s.step), str(s.epoch), ", ".join(map(str, s.examples)), n.tex(s.loss)]
                     for s in shown],
            "every": fill(t["every"], k=every) if every > 1 else "",
            "final": (fill(t["diverged"], step=run.diverged_at) if run.diverged_at
                      else fill(t["final"], steps=len(run.steps))),
            "final_loss": ("" if run.diverged_at else
                           self.view.loss_name + " = " + n.tex(run.loss_after)),
            "figure": figure,
        }


def _signed_terms(values, n: NumberFormat) -> str:
    out = []
    for k, value in enumerate(values):
        if k and value < 0:
            out.append("- " + n.tex(-value))
        elif k:
            out.append("+ " + n.tex(value))
        else:
            out.append(n.tex(value))
    return " ".join(out)


def _coordinates(run) -> str:
    return " ".join(f"({s.step},{s.loss:.12g})" for s in run.steps)


def pgfplots_chart(run, t: dict, n: NumberFormat) -> str:
    """The loss history as a pgfplots line chart (needs \\usepackage{pgfplots})."""
    return render_template("loss_history.tikz.j2", {
        "xlabel": t["history"]["step"], "ylabel": t["history"]["loss"],
        "coordinates": _coordinates(run), "comma": n.decimal_comma,
        "mark": len(run.steps) <= 60})


# SVG chart layout, in pixels
WIDTH, HEIGHT = 560, 320
LEFT, RIGHT, TOP, BOTTOM = 72, 20, 28, 48


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if high == low:
        return [low]
    raw = (high - low) / count
    step = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 2.5, 5, 10):
        if raw <= multiple * step:
            step *= multiple
            break
    first = math.ceil(low / step - 1e-9)
    return [k * step for k in range(first, math.floor(high / step + 1e-9) + 1)]


def loss_history_svg(run, lang: str = "en", digits: int = 4,
                     decimal_comma: bool | None = None) -> str:
    """The loss history as a standalone SVG image (Markdown links to it)."""
    t = phrases(lang)
    if decimal_comma is None:
        decimal_comma = t["meta"]["decimal_comma"]
    n = NumberFormat(min(digits, 4), decimal_comma)
    losses = [s.loss for s in run.steps]
    low, high = min(losses), max(losses)
    if high == low:
        low, high = low - 0.5 * (abs(low) or 1), high + 0.5 * (abs(high) or 1)
    pad = 0.05 * (high - low)
    low, high = low - pad, high + pad
    last = max(len(losses), 2)

    def px(step):
        return round(LEFT + (step - 1) / (last - 1) * (WIDTH - LEFT - RIGHT), 1)

    def py(loss):
        return round(HEIGHT - BOTTOM - (loss - low) / (high - low) * (HEIGHT - TOP - BOTTOM), 1)

    x_ticks = sorted({int(round(v)) for v in _ticks(1, last, 6) if 1 <= round(v) <= last}
                     | {1})
    y_ticks = [v for v in _ticks(low, high) if low <= v <= high]
    return render_template("loss_history.svg.j2", {
        "width": WIDTH, "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT,
        "top": TOP, "bottom": HEIGHT - BOTTOM,
        "points": " ".join(f"{px(s.step)},{py(s.loss)}" for s in run.steps),
        "marks": [(px(s.step), py(s.loss)) for s in run.steps] if len(losses) <= 60 else [],
        "x_ticks": [(px(v), str(v)) for v in x_ticks],
        "y_ticks": [(py(v), n.plain(v)) for v in y_ticks],
        "xlabel": t["history"]["step"], "ylabel": t["history"]["loss"],
        "title": fill(t["history"]["chart_alt"], optimizer=OPTIMIZERS[run.optimizer].title),
    })
