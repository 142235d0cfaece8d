"""Resource limits: what each command can honestly serve, checked before any work.

A spec, a template or an answers file beyond these is refused at once, with one line that
names the limit and the way out, instead of running for minutes or running out of memory.
Symbolic work (a worked solution, verify, keys, sheet solutions) is bounded by the size of
its graph, counted as local partials (one per edge parent → child); the NumPy fast path
(training runs, sheet draws) by array sizes and steps; sheets by variants × size.
"""

from __future__ import annotations

import math

from .errors import SpecError

# Names in one block (a layer's weights, an image): beyond, the names alone take gigabytes.
MAX_BLOCK = 1_000_000
# Named values in a spec (inputs, parameters, quantities): the fast path's honest size.
MAX_VALUES = 1_000_000
# Local partials of a worked solution: about 10–20 s and a 1 MB document already.
MAX_LOCAL_PARTIALS = 1_500
# Examples derived in full (the first step's batch) × local partials: each example is one
# more forward and backward pass written out.
MAX_DERIVED = 20_000
# SGD steps of one run: the loss of each is kept and shown (table, chart).
MAX_STEPS = 100_000
# Steps × examples per step × named values: multiply-adds of a run (a few seconds).
MAX_TRAINING_WORK = 1_000_000_000
# Steps × parameters: every step's parameters are kept in the run's history (memory).
MAX_HISTORY = 5_000_000
# Variants × local partials of a sheet's worked solutions (md, tex, pdf): a few minutes.
MAX_SHEET_WORK = 300_000
# Variants of a PDF sheet: two LaTeX compiles each (about a second apiece).
MAX_PDF_VARIANTS = 200
# Variants × named values of a Moodle quiz (numbers only, the fast path).
MAX_QUIZ_WORK = 50_000_000
# Answers in one file: a hand calculation has tens, a whole course a few hundred.
MAX_ANSWERS = 10_000


def _refuse(source, place, expected: str, got: int, way_out: str):
    raise SpecError(source, place, f"{expected}, got {got:,} (the limit: {way_out})")


def check_block(place, shape) -> None:
    """A block of names or numbers (``place`` a spec.Place) small enough to expand."""
    size = math.prod(shape)
    if size > MAX_BLOCK:
        place.fail(f"a block of at most {MAX_BLOCK:,} values, got "
                   f"{'×'.join(map(str, shape))} = {size:,} (a smaller layer or image)")


def value_count(spec) -> int:
    """Inputs, parameters and computed quantities of a spec (names, not edges)."""
    from .spec import quantity_names_of
    return (len(spec.input_names) + len(spec.parameters)
            + sum(len(quantity_names_of(layer)) for layer in spec.layers)
            + len(spec.loss.term_names) + 1)


def check_values(spec) -> None:
    count = value_count(spec)
    if count > MAX_VALUES:
        _refuse(spec.source, "layers", f"a network of at most {MAX_VALUES:,} named values",
                count, "fewer units or a smaller image")


def local_partials(spec) -> int:
    """How many local partials (graph edges) a worked solution of ``spec`` writes: counted
    on the graph, built only when the quantities alone do not already exceed the limit."""
    quantities = value_count(spec) - len(spec.input_names) - len(spec.parameters)
    if quantities > MAX_LOCAL_PARTIALS:  # every quantity has at least one parent
        return quantities
    from .graph import build_graph
    return sum(len(node.parents) for node in build_graph(spec).nodes.values())


def check_symbolic(spec, examples: int | None = None) -> None:
    """A worked solution (symbolic graph, chain rule written out) that can finish: the
    graph's size, and the examples derived in full (``examples``: of the first step)."""
    check_values(spec)
    edges = local_partials(spec)
    if edges > MAX_LOCAL_PARTIALS:
        _refuse(spec.source, "layers", f"a worked solution of at most {MAX_LOCAL_PARTIALS:,} "
                f"local partials (graph edges)", edges, "fewer units or a smaller image; for "
                "numbers only, the fast path backprop_explain.api.evaluate")
    examples = len(spec.examples) if examples is None else examples
    if examples * edges > MAX_DERIVED:
        _refuse(spec.source, "examples", f"at most {MAX_DERIVED:,} examples derived in full "
                f"× local partials ({edges:,})", examples * edges,
                "fewer examples, or training.batch_size for a smaller first step")


def check_training(spec, total_steps: int, batch: int) -> None:
    """A run of ``total_steps`` steps of ``batch`` examples the fast path can finish."""
    check_values(spec)
    if total_steps > MAX_STEPS:
        _refuse(spec.source, "training.steps", f"a run of at most {MAX_STEPS:,} SGD steps",
                total_steps, "fewer steps or epochs, or a larger batch_size")
    work = total_steps * batch * value_count(spec)
    if work > MAX_TRAINING_WORK:
        _refuse(spec.source, "training", f"at most {MAX_TRAINING_WORK:,} for steps × "
                f"examples per step × named values", work, "fewer steps or examples")
    history = total_steps * len(spec.parameters)
    if history > MAX_HISTORY:
        _refuse(spec.source, "training.steps", f"at most {MAX_HISTORY:,} for steps × "
                f"parameters (kept in the history)", history, "fewer steps or a smaller network")


def check_sheet(template, variants: int, fmt: str) -> None:
    """A sheet of ``variants`` variants in ``fmt`` that can finish (checked on the first
    draw, before drawing the rest)."""
    import random
    spec = template.draw_spec(random.Random(0))
    check_values(spec)
    source = template.source
    if fmt == "moodle":  # numbers only: the fast path
        work = variants * value_count(spec)
        if work > MAX_QUIZ_WORK:
            _refuse(source, "", f"at most {MAX_QUIZ_WORK:,} for variants × named values",
                    work, "fewer variants")
        return
    check_symbolic(spec)
    work = variants * local_partials(spec)
    if work > MAX_SHEET_WORK:
        _refuse(source, "", f"at most {MAX_SHEET_WORK:,} for variants × local partials of "
                f"the worked solutions", work, f"fewer variants, at most "
                f"{MAX_SHEET_WORK // max(1, work // variants):,} for this network, or "
                f"--format moodle (numbers only)")
    if fmt == "pdf" and variants > MAX_PDF_VARIANTS:
        _refuse(source, "", f"at most {MAX_PDF_VARIANTS:,} variants as PDF", variants,
                "fewer variants, or --format tex")


def check_answers(answers, source) -> None:
    if len(answers) > MAX_ANSWERS:
        _refuse(source, "", f"at most {MAX_ANSWERS:,} answers in one file", len(answers),
                "split the file")
