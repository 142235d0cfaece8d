"""Document stage: a worked solution cut into its steps, as slides and the page show it.

The structure of a worked solution is one template (``solution.base.j2``); it marks
where each step begins (``step(kind, title)``: the network, each forward layer, the loss,
each chain-rule derivation — or, in compact detail, each layer's — each layer's updates,
the loss after) and which chain-rule steps each piece derives (``shows(steps)``). A
document writes nothing for those marks; slides.py and page.py render the same template
with a Steps recorder, which puts a mark in the text and remembers the step, then cut the
text at the marks: a frame per step, a section of the page per step.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from .derivation import ChainStep


@dataclass
class Step:
    """One step of a worked solution: its kind, the title of the part it belongs to, the
    chain-rule steps it derives (their paths are what it lights in the network) and its
    text (in the syntax of the format rendered)."""

    kind: str  # network | diagram | forward | loss | backward | gradient | batch | update | after | history
    title: str
    chain: list[ChainStep] = field(default_factory=list)
    text: str = ""

    @property
    def targets(self) -> list[str]:
        """The quantities whose ∂E/∂ it derives."""
        return list(dict.fromkeys(step.target for step in self.chain))

    @property
    def paths(self) -> list[tuple[str, ...]]:
        """Every path of the graph its chain rules sum over, target first, loss last."""
        return list(dict.fromkeys(path for step in self.chain for path in step.paths))


class Steps:
    """The ``step`` and ``shows`` of a template's context: each writes a mark no text
    holds (a control character around a digest of the solution's own text is not in any
    spec's text: names cannot hold one, and free text never comes out raw), remembered
    here; ``cut`` gives the steps with their text."""

    def __init__(self, salt: str = ""):
        digest = hashlib.sha256(salt.encode("utf-8")).hexdigest()[:12]
        self.mark = f"\x1e{digest}:"
        self.steps: list[Step] = [Step("title", "")]

    def step(self, kind: str, title: str) -> str:
        self.steps.append(Step(kind, title))
        return f"{self.mark}{len(self.steps) - 1}\x1e"

    def shows(self, chain) -> str:
        chain = list(chain or [])
        if chain:
            self.steps[-1].chain += chain
        return ""

    def context(self) -> dict:
        return {"step": self.step, "shows": self.shows}

    def cut(self, text: str) -> list[Step]:
        """The steps with their text (the text before the first mark: the title's step);
        a step left empty (nothing between two marks) is dropped."""
        pieces = text.split(self.mark)
        self.steps[0].text = pieces[0]
        for piece in pieces[1:]:
            index, _, rest = piece.partition("\x1e")
            self.steps[int(index)].text = rest
        return [self.steps[0]] + [s for s in self.steps[1:] if s.text.strip()]


# ---------------------------------------------------------------------------
# What a step lights in the network drawn (drawing.Diagram)


class Lighting:
    """The elements of a drawn network (drawing.Diagram) a path of the graph goes
    through, by the ids the SVG and TikZ templates give them: ``e``/``h`` k the line k
    and its arrowhead, ``n`` k circle k, ``c`` k cell k, ``t`` k text k (a given value)."""

    def __init__(self, diagram, graph):
        self.diagram = diagram
        self.graph = graph
        self.drawn: dict[str, list[str]] = {}
        for k, circle in enumerate(diagram.circles):
            if circle.name:
                self.drawn.setdefault(circle.name, []).append(f"n{k}")
        for k, cell in enumerate(diagram.cells):
            if cell.name:
                self.drawn.setdefault(cell.name, []).append(f"c{k}")
        self.lines: dict[tuple[str, str], list[str]] = {}
        for k, line in enumerate(diagram.lines):
            if line.source and line.target:
                self.lines.setdefault((line.source, line.target), []).append(k)
        self.values: dict[str, list[str]] = {}
        for k, text in enumerate(diagram.texts):
            if text.label.ref:
                self.values.setdefault(text.label.ref, []).append(f"t{k}")

    def path(self, nodes, start=()) -> list[str]:
        """The ids along one path of the graph: its nodes drawn (circles, cells), the
        arrows from each to the next one drawn, the given value of its first node (a
        weight on its arrow, a bias); ``start``: names drawn before its first node (the
        input a weight multiplies), each joined to the path by its arrow."""
        seen = [n for n in nodes if n in self.drawn]
        ids = [i for n in seen for i in self.drawn[n]] + self.values.get(nodes[0], [])
        for first in list(start) or [None]:
            chain = ([first] if first else []) + seen
            if first:
                ids += self.drawn[first]
            for a, b in zip(chain, chain[1:]):
                for k in self.lines.get((a, b), []):
                    ids += [f"e{k}", f"h{k}"]
        return ids

    def chain(self, steps) -> list[str]:
        """The ids lit by chain-rule steps: every path each sums over, each starting
        from what its first factor ∂child/∂target multiplies (the input of a weight, the
        input cells of a filter weight)."""
        ids: list[str] = []
        for step in steps:
            partners = {}
            for term in step.terms:
                last = term.factors[-1]
                derivative = last.derivative if last.kind == "local" else None
                names = sorted(s.name for s in getattr(derivative, "free_symbols", ()))
                partners[last.numerator] = [n for n in names if n in self.drawn]
            for path in step.paths:
                ids += self.path(path, partners.get(path[1], []) if len(path) > 1 else [])
        return list(dict.fromkeys(ids))

    def from_node(self, name: str) -> list[str]:
        """The ids lit from a quantity: every path from it to the loss."""
        ids: list[str] = []
        for path in self.graph.paths_to_loss(name):
            ids += self.path(path)
        return list(dict.fromkeys(ids))
