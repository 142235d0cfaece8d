"""Exercise sheets: many variants of one exercise, each with its own numbers and solution.

``write_sheets(template, out_dir, variants=N, seed=S, fmt=..., lang=...)`` draws N
variants of a template (sheet_spec.py), rejects degenerate draws, and writes for each
variant an exercise sheet (the network drawn with its numbers, what to compute, a blank
per answer) and its full worked solution, plus one combined document of all exercises and
one of all solutions, and ``answers.json`` (every requested value, full precision).

Numbers come from the batched NumPy fast path (fastpath.py): candidates are evaluated
together, a whole batch in one call, and a draw is rejected when it would make a dull
or misleading exercise (see :func:`degenerate_reasons`). The worked solutions come from
the symbolic engine (derivation.py), its compiled graph built once and reused.

Reproducible: the draws use ``random.Random(seed)`` in document order, variant i is the
same whatever N ≥ i, and no output holds a date; the same template and seed give
byte-identical files in every format (PDFs too, see pdf.py).

Files in ``out_dir`` (NN = variant number, zero-padded):

- md:  exercise_NN.md, solution_NN.md, network_NN.svg, exercises.md, solutions.md
- tex: exercise_NN.tex, solution_NN.tex, exercises.tex, solutions.tex
- pdf: exercise_NN.pdf, solution_NN.pdf, exercises.pdf, solutions.pdf
- moodle: questions.xml (moodle.py)
- every format but moodle: spec_NN.json, the variant's drawn spec, so that
  ``backprop-explain verify spec_NN.json exercise_NN.md`` checks a filled-in sheet
- every format: answers.json
"""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sympy as sp

from .activations import ACTIVATIONS
from .derivation import NumericGraph, Solution, derive
from .errors import SpecError
from .graph import build_graph, local_partials
from .limits import check_quiz, check_sheet, check_symbolic, check_variants
from .optimizers import OPTIMIZERS
from .sheet_spec import Question, SheetTemplate, load_template
from .spec import NetworkSpec, spec_from_dict

FORMATS = ("md", "tex", "pdf", "moodle")
MAX_DRAWS_PER_VARIANT = 50  # give up when a template is (almost) always degenerate

# Thresholds of a degenerate draw
GRADIENT_FLOOR = 1e-4  # every |∂E/∂θ| below: nothing to learn
SATURATION = 0.01  # σ outside [0.01, 0.99], |tanh| > 0.99: a saturated unit
LOSS_FLOOR = 1e-3  # the loss already ≈ 0


@dataclass
class Variant:
    number: int
    spec: NetworkSpec
    answers: dict[str, float]  # key → value (fast path, float64)
    data: dict  # the drawn spec as a document: written as spec_NN.json for `verify`


# ---------------------------------------------------------------------------
# Drawing and checking variants


def draw_variants(template: SheetTemplate, count: int, seed: int) -> list[Variant]:
    """``count`` non-degenerate variants, drawn in order from ``random.Random(seed)``."""
    from .fastpath import compile_network
    rng = random.Random(seed)
    first = template.draw_spec(random.Random(seed))
    network = compile_network(first)
    questions = template.questions(first)
    accepted: list[Variant] = []
    drawn = 0
    while len(accepted) < count:
        if drawn > MAX_DRAWS_PER_VARIANT * count:
            raise SpecError(template.source, "", f"draws that are not degenerate: after "
                            f"{drawn} draws only {len(accepted)} of {count} variants were "
                            f"usable (saturated units, dead ReLUs, zero gradients or zero "
                            f"loss); widen or shift the ranges")
        documents = [template.draw(rng) for _ in range(max(8, 2 * (count - len(accepted))))]
        batch = [spec_from_dict(d, source=template.source) for d in documents]
        drawn += len(batch)
        numbers = evaluate_batch(network, batch)
        reasons = degenerate_reasons(network, numbers)
        for k, spec in enumerate(batch):
            if reasons[k] or len(accepted) >= count:
                continue
            accepted.append(Variant(len(accepted) + 1, spec,
                                    answers_of(spec, questions, numbers, k), documents[k]))
    return accepted


def evaluate_batch(network, specs: list[NetworkSpec]) -> dict:
    """Forward, gradients, SGD step and forward again for many variants in two fast-path
    calls. Arrays have a leading variant axis."""
    shape = network.input_shape
    inputs = np.array([[np.reshape(e.inputs, shape) for e in s.examples] for s in specs])
    targets = np.array([[e.targets for e in s.examples] for s in specs])
    names = network.parameter_names
    params = {n: np.array([s.parameters[n] for s in specs]) for n in names}
    rates = np.array([s.learning_rate for s in specs])  # one rate per variant
    optimizer = OPTIMIZERS[specs[0].optimizer]
    before = network.run(inputs, targets, params)
    gradients = before.gradients
    frozen = specs[0].frozen
    after_params = {n: params[n] if n in frozen else
                    optimizer.update(n, params[n], gradients[n], rates,
                                     specs[0].optimizer_settings, {})[0] for n in names}
    after = network.run(inputs, targets, after_params, gradients=False)
    return {"before": before, "gradients": gradients, "after_params": after_params,
            "after": after}


def degenerate_reasons(network, numbers: dict) -> list[str]:
    """Why each variant would make a poor exercise ("" when it is fine): every gradient
    ≈ 0, a saturated sigmoid/tanh, a ReLU dead on every example, or a loss already ≈ 0."""
    before = numbers["before"]
    count = before.loss.shape[0]
    reasons = [[] for _ in range(count)]

    def flag(mask, why):
        for k in np.flatnonzero(mask):
            reasons[k].append(why)

    grads = np.stack(list(numbers["gradients"].values()), axis=-1)
    flag(np.abs(grads).max(axis=-1) < GRADIENT_FLOOR, "every gradient ≈ 0")
    flag(before.loss < LOSS_FLOOR, "loss ≈ 0")
    for layer, arrays in zip(network.spec.layers, before.layers):
        activation = ACTIVATIONS.get(getattr(layer, "activation", None))
        degenerate = activation.degenerate(arrays["pre_activation"], arrays["activation"],
                                           SATURATION) if activation else None
        if degenerate is not None:
            flag(degenerate, activation.degenerate_reason)
    return ["; ".join(r) for r in reasons]


def answers_of(spec: NetworkSpec, questions: list[Question], numbers: dict,
               k: int) -> dict[str, float]:
    """The value of every question of variant k (first example for per-example values;
    the loss combined over the batch as the spec's reduction)."""
    before, after = numbers["before"], numbers["after"]
    loss = spec.loss.total_name
    out = {}
    for q in questions:
        if q.group == "gradients":
            value = numbers["gradients"][q.name][k]
        elif q.group == "update":
            value = numbers["after_params"][q.name][k]
        elif q.group in ("forward", "loss"):
            value = before.loss[k] if q.name == loss else before.values[q.name][k, 0]
        else:  # forward_after, loss_after
            value = after.loss[k] if q.name == loss else after.values[q.name][k, 0]
        out[q.key] = float(value)
    return out


# ---------------------------------------------------------------------------
# Documents


def _title(base: str, kind: str, number: int, words: dict) -> str:
    label = words["variant"].replace("{n}", str(number))
    return f"{base} — {kind} ({label})" if base else f"{kind} ({label})"


def render_variant(variant: Variant, solution: Solution, questions: list[Question],
                   fmt: str, lang: str, digits: int, figure: str | None,
                   blanks: list[str] | None = None) -> tuple[str, str]:
    """(exercise, solution) documents of one variant, Markdown, LaTeX or HTML (a Moodle
    question, ``blanks`` standing in its answer cells; its solution without the figure)."""
    from .diagram import document_figure
    from .document import FORMATS as TEMPLATES, solution_context
    from .templating import extra_phrases, render_template, tidy_tex
    words = extra_phrases(lang)
    sheet = words["sheet"]
    context = solution_context(solution, fmt, lang, digits,
                               diagram=document_figure(variant.spec, fmt, lang, figure))
    base = variant.spec.title
    exercise = render_template("exercise.j2", dict(
        context, s=words, answer_digits=digits, questions=[q.tex for q in questions],
        conventions=conventions(solution, lang), blanks=blanks,
        title=_title(base, sheet["exercise_title"], variant.number, sheet)))
    worked = render_template(TEMPLATES[fmt], dict(
        context, title=_title(base, sheet["solution_title"], variant.number, sheet),
        diagram=None if fmt == "html" else context["diagram"]))
    if fmt == "tex":
        exercise, worked = tidy_tex(exercise), tidy_tex(worked)
    return exercise, worked


def conventions(solution: Solution, lang: str) -> list[str]:
    """What an exercise relies on beyond its numbers: what each weight's indices mean, the
    loss written out with its logarithm, the optimizer's rule (phrases with $…$ math)."""
    from .nodes import LOSS_TERM
    from .notation import NumberFormat, tex
    from .templating import extra_phrases, fill
    spec, graph = solution.spec, solution.graph
    from .document import document_phrases
    t, words = document_phrases(solution, lang), extra_phrases(lang)["sheet"]
    lines, names = [], list(spec.input_names)
    for layer in spec.layers:
        line = layer.index_convention(names, t)
        if line:
            lines.append(line)
        names = layer.outputs(names)
    loss = graph.loss
    term = graph.of_kind(LOSS_TERM)[0]
    lines.append(fill(words["loss_formula"], total=loss.name, sum=tex(loss.expr),
                      term=term.name, formula=tex(term.expr)))
    if any(node.expr.has(sp.log) for node in graph.of_kind(LOSS_TERM)):
        lines.append(words["natural_log"])
    numbers = NumberFormat(12, t["meta"]["decimal_comma"])  # the rule as the solution says it
    lines += OPTIMIZERS[spec.optimizer].rule(t, spec.optimizer_settings, numbers,
                                             numbers.given(spec.learning_rate))
    return lines


def combine_documents(documents: list[str], fmt: str) -> str:
    """All variants in one document for printing, each starting on a new page."""
    if fmt == "md":
        return "\n---\n\n".join(doc.rstrip("\n") + "\n" for doc in documents)
    begin, end = "\\begin{document}\n", "\\end{document}"
    preamble = documents[0].split(begin, 1)[0] + begin
    bodies = [doc.split(begin, 1)[1].rsplit(end, 1)[0].strip("\n") for doc in documents]
    return preamble + "\n\\clearpage\n".join(bodies) + "\n" + end + "\n"


def write_sheets(template, out_dir, variants: int = 1, seed: int = 0, fmt: str = "md",
                 lang: str | None = None, progress=None, moodle_style: str = "cloze") -> list[Path]:
    """Draw, solve and write every variant (see the module docstring); returns the paths.
    ``lang``: the documents' language (default: the template's ``lang``, else English).

    Every file is written into a temporary directory beside ``out_dir`` and moved into it
    at the end: ``out_dir`` gets all the files or none (a failure, Ctrl-C or SIGTERM leaves
    nothing, see output.directory_beside).

    ``progress``: called with the number of variants done since the last call (a click
    progress bar's ``update``; the command line shows its own bar, progress.py).
    ``moodle_style``: "cloze" (one question per variant) or "per-key" (one question per key
    per variant)."""
    from .moodle import STYLES
    from .output import directory_beside, write_atomic
    if fmt not in FORMATS:
        raise ValueError(f"fmt: one of {', '.join(FORMATS)}, got {fmt!r}")
    if moodle_style not in STYLES:
        raise ValueError(f"moodle_style: one of {', '.join(STYLES)}, got {moodle_style!r}")
    if not isinstance(template, SheetTemplate):
        template = load_template(template)
    check_sheet_size(template, variants, fmt, moodle_style)
    with directory_beside(out_dir) as work:  # refuses "" (Path("") would be ".")
        out_dir = Path(out_dir)
        names = _write_sheets(template, work, variants, seed, fmt, lang, progress, write_atomic,
                              moodle_style)
    return [out_dir / name for name in names]


def check_sheet_size(template: SheetTemplate, variants: int, fmt: str,
                     moodle_style: str = "cloze") -> None:
    """Refuse, with one line, a sheet that cannot finish (limits.py), judged on the
    template's first draw, before drawing the rest."""
    check_variants(template.source, variants)
    first = template.draw_spec(random.Random(0))
    partials = local_partials(first)
    if fmt == "moodle" and moodle_style == "per-key":  # numbers only, one graph compiled
        check_symbolic(first, partials, 1)
        check_quiz(template.source, first, variants)
    else:  # a worked solution per variant (Moodle's Cloze: its feedback)
        check_sheet(template.source, first, variants, partials, fmt == "pdf")


def _write_sheets(template, work: Path, variants, seed, fmt, lang, progress, write_atomic,
                  moodle_style):
    from .progress import task
    drawn = draw_variants(template, variants, seed)
    lang = lang or drawn[0].spec.lang
    questions = template.questions(drawn[0].spec)
    width = len(str(variants))
    written: list[str] = []

    def write(name: str, content) -> None:
        write_atomic(work / name, content)
        written.append(name)

    answers = {"digits": template.digits, "questions": [q.key for q in questions],
               "variants": [{"variant": v.number, "answers": v.answers} for v in drawn]}
    numeric = NumericGraph(build_graph(drawn[0].spec))
    if fmt == "moodle":
        if moodle_style == "per-key":
            from .moodle import moodle_quiz
            write("questions.xml", moodle_quiz(drawn, questions, template, lang))
            if progress:
                progress(len(drawn))
        else:
            blanks = cloze_order(questions, drawn[0].spec)
            with task("variants", len(drawn), long=len(drawn) >= 20) as advance:
                def done(count):
                    advance(count)
                    if progress:
                        progress(count)
                write("questions.xml", cloze_questions(drawn, blanks, template, lang, numeric,
                                                       width, done))
            answers["blanks"] = [q.key for q in blanks]  # the Cloze parts, in order
        write_specs(drawn, width, write)
        write("answers.json", json.dumps(answers, indent=2, ensure_ascii=False) + "\n")
        return written

    text_fmt = "md" if fmt == "md" else "tex"
    exercises, solutions = [], []
    with task("variants", len(drawn), long=len(drawn) >= 20) as advance:
        for variant in drawn:
            tag = f"{variant.number:0{width}d}"
            solution = derive(variant.spec, numeric)
            figure = f"network_{tag}.svg" if fmt == "md" else None
            exercise, worked = render_variant(variant, solution, questions, text_fmt, lang,
                                              template.digits, figure)
            if fmt == "md":
                from .diagram import diagram_for
                write(figure, diagram_for(variant.spec, "svg", lang))
            exercises.append((f"exercise_{tag}", exercise))
            solutions.append((f"solution_{tag}", worked))
            advance(1)
            if progress:
                progress(1)
    documents = exercises + solutions + [
        ("exercises", combine_documents([d for _, d in exercises], text_fmt)),
        ("solutions", combine_documents([d for _, d in solutions], text_fmt))]
    if fmt == "pdf":
        for (name, _), pdf in zip(documents, _compile_all([d for _, d in documents])):
            write(f"{name}.pdf", pdf)
    else:
        for name, text in documents:
            write(f"{name}.{text_fmt}", text)
    write_specs(drawn, width, write)
    write("answers.json", json.dumps(answers, indent=2, ensure_ascii=False) + "\n")
    return written


def _compile_all(documents: list[str]) -> list[bytes]:
    """The PDFs of LaTeX documents, four engines at a time (they run as subprocesses); on a
    failure or a signal, the compiles not yet started are cancelled."""
    from .pdf import compile_pdf, require_engine
    from .progress import task
    engine = require_engine()
    pool = ThreadPoolExecutor(max_workers=4)
    try:
        with task("PDF", len(documents)) as advance:
            futures = [pool.submit(compile_pdf, doc, engine) for doc in documents]
            pdfs = []
            for future in futures:
                pdfs.append(future.result())
                advance(1)
            return pdfs
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def write_specs(drawn: list[Variant], width: int, write) -> None:
    """Each variant's own spec, to `verify` a filled-in sheet (or a Moodle attempt) against."""
    for variant in drawn:
        write(f"spec_{variant.number:0{width}d}.json",
              json.dumps(variant.data, indent=2, ensure_ascii=False) + "\n")


def cloze_order(questions: list[Question], spec: NetworkSpec) -> list[Question]:
    """The questions in the order of the worked solution (a Cloze question's blanks)."""
    from .verify import Catalog
    order = {key: k for k, key in enumerate(Catalog(spec).order())}
    return sorted(questions, key=lambda q: order.get(q.key, len(order)))


def cloze_questions(drawn: list[Variant], blanks: list[Question], template: SheetTemplate,
                    lang: str, numeric, width: int, progress=None) -> bytes:
    """One Moodle Cloze question per variant (moodle.py): the exercise in HTML with the
    network drawn, its worked solution as feedback, each blank's slips from verify."""
    from .diagram import diagram_for
    from .moodle import BLANK, ClozeVariant, cloze_quiz, cloze_text
    from .templating import extra_phrases
    from .verify import Catalog, each_usual_slip
    words = extra_phrases(lang)["sheet"]
    title = drawn[0].spec.title or words["exercises_title"]
    variants, keys = [], [q.key for q in blanks]
    for variant in drawn:
        tag = f"{variant.number:0{width}d}"
        solution = derive(variant.spec, numeric)
        figure = f"network_{tag}.svg"
        exercise, worked = render_variant(
            variant, solution, blanks, "html", lang, template.digits,
            f"@@PLUGINFILE@@/{figure}", blanks=[BLANK.format(k) for k in range(len(blanks))])
        slips = each_usual_slip(Catalog(variant.spec, solution), keys)
        variants.append(ClozeVariant(
            variant.number, _title(variant.spec.title, words["exercise_title"],
                                   variant.number, words),
            cloze_text(exercise, keys, variant.answers, slips, template.digits, lang), worked,
            figure, diagram_for(variant.spec, "svg", lang)))
        if progress:
            progress(1)
    return cloze_quiz(variants, title)


__all__ = ["Variant", "draw_variants", "evaluate_batch", "degenerate_reasons", "answers_of",
           "render_variant", "combine_documents", "write_sheets"]
