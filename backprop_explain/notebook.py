"""What the API's results show in a Jupyter notebook, and a short repr for the rest.

The API (api.py) returns these subclasses of the plain data: each is the same data, with
IPython's display methods and a one-line repr instead of a dump of every field.

- ``WorkedSolution`` (a derivation.Solution): its worked solution as Markdown
  (``_repr_markdown_``) and as the LaTeX of the document's body (``_repr_latex_``);
  ``markdown()``/``latex()`` take the language (default: the spec's), the digits, the
  detail and the forms of the derivatives;
- ``LossHistory`` (a training.TrainingRun, ``solution.training``): its loss chart (SVG);
- ``Network`` (a spec.NetworkSpec): the network drawn (SVG);
- ``Markdown`` (a str): ``api.explain``'s Markdown, rendered.

(A verify.Verification shows its report itself: verify.py renders it.)
"""

from __future__ import annotations

import dataclasses

from .activations import ACTIVATIONS
from .derivation import Solution
from .spec import NetworkSpec
from .training import TrainingRun


def _as(cls, data):
    """The same data as an instance of ``cls``, a subclass of the data's class."""
    if isinstance(data, cls) or data is None:
        return data
    return cls(**{f.name: getattr(data, f.name) for f in dataclasses.fields(data)})


class Shown:
    """Equal to the plain data it shows (a dataclass compares its own class only)."""

    def __eq__(self, other):
        base = type(self).__mro__[2]  # the data class: Network(Shown, NetworkSpec)
        if not isinstance(other, base):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name)
                   for f in dataclasses.fields(base) if f.compare)

    __hash__ = None


class Markdown(str):
    """Markdown text that Jupyter renders."""

    def _repr_markdown_(self) -> str:
        return str(self)


class Network(Shown, NetworkSpec):
    """A spec that shows its network (the diagram of the worked solution)."""

    @classmethod
    def of(cls, spec: NetworkSpec) -> "Network":
        return _as(cls, spec)

    def __repr__(self) -> str:
        return f"<NetworkSpec {self.title or self.source!r}: {describe(self)}>"

    def _repr_svg_(self) -> str:
        from .diagram import diagram_for
        return diagram_for(self, "svg")


def describe(spec: NetworkSpec) -> str:
    """One line: inputs → each layer → loss; parameters, examples."""
    parts = [f"{'×'.join(map(str, spec.input_shape))} inputs"]
    for layer in spec.layers:
        activation = getattr(layer, "activation", None)
        shown = activation and ACTIVATIONS[activation].display is not None
        parts.append(f"{layer.kind} {'×'.join(map(str, layer.out_shape))}"
                     + (f" ({activation})" if shown else ""))
    return (" → ".join(parts) + f"; {spec.loss.kind}; {len(spec.parameters)} parameters, "
            f"{len(spec.examples)} example{'s' if len(spec.examples) > 1 else ''}")


class LossHistory(Shown, TrainingRun):
    """A training run that shows its loss chart."""

    def __repr__(self) -> str:
        return (f"<TrainingRun: {len(self.steps)} steps, loss {self.history[0]:.6g} before the "
                f"first, {self.loss_after:.6g} after the last>")

    def _repr_svg_(self) -> str:
        from .document_training import loss_history_svg
        return loss_history_svg(self)


class WorkedSolution(Shown, Solution):
    """A solution that shows its worked solution."""

    @classmethod
    def of(cls, solution: Solution) -> "WorkedSolution":
        worked = _as(cls, solution)
        worked.training = _as(LossHistory, worked.training)
        return worked

    def __repr__(self) -> str:
        run = self.training
        after = (f"{len(run.steps)} SGD steps: loss {run.history[0]:.6g} → {run.loss_after:.6g}"
                 if run else f"one SGD step: loss {self.loss:.6g} → {self.loss_after:.6g}")
        return (f"<Solution of {self.spec.title or self.spec.source!r}: "
                f"{len(self.gradients)} gradients, {after}>")

    def markdown(self, lang: str | None = None, digits: int = 4, detail: str | None = None,
                 derivatives: str = "both") -> str:
        """The Markdown worked solution (``lang``: default the spec's; ``detail`` and
        ``derivatives`` as api.explain's)."""
        from .document import render_solution
        return render_solution(self, "md", lang or self.spec.lang, digits, detail=detail,
                               derivatives=derivatives)

    def latex(self, lang: str | None = None, digits: int = 4, detail: str | None = None,
              derivatives: str = "both") -> str:
        """The LaTeX document (its network drawn in TikZ)."""
        from .diagram import document_figure
        from .document import render_solution
        lang = lang or self.spec.lang
        return render_solution(self, "tex", lang, digits,
                               diagram=document_figure(self.spec, "tex", lang), detail=detail,
                               derivatives=derivatives)

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def _repr_latex_(self) -> str:
        """The document's body, without its preamble or the TikZ figure (a notebook's
        LaTeX has neither)."""
        from .document import render_solution
        text = render_solution(self, "tex", self.spec.lang)
        return text.split("\\begin{document}", 1)[-1].rsplit("\\end{document}", 1)[0].strip()
