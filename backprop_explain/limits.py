"""Resource limits: what each command can honestly serve, checked before any work.

A spec, a template or an answers file beyond these is refused at once, with one line that
names the limit and the way out, instead of running for minutes or running out of memory.
Symbolic work (a worked solution, verify, keys, sheet solutions) is bounded by the size of
its graph, counted as local partials (one per edge parent → child, graph.local_partials);
the NumPy fast path (training runs, Moodle quizzes) by array sizes and steps; sheets by
variants × size. The README's table of limits lists them.

A helper below the stages: the checks take the spec (any object with ``source``,
``input_names``, ``parameters``, ``layers``, ``loss``) and counts the callers computed.
"""

from __future__ import annotations

import math

from .errors import SpecError

# Bytes of an input file (spec, template, answers): TOML is read at about 1 MB/s.
MAX_FILE_BYTES = 8_000_000
# Lists or tables nested in a spec, template or answers file (a spec needs 5: filters
# [out][in][row][column]); every stage walks documents recursively.
MAX_DEPTH = 32
# Names in one block (a layer's weights, an image): beyond, the names alone take gigabytes.
MAX_BLOCK = 1_000_000
# Named values in a spec (inputs, parameters, quantities): the fast path's honest size.
MAX_VALUES = 1_000_000
# Local partials of a worked solution: an MLP 3-64-64-2 has 9,098 (Markdown about 5 s, the
# interactive page about 12 s and 17 MB); 3-100-100-2's 10,702 parameters alone are beyond.
# It was 1,500 before the symbolic engine compiled each expression shape once (numeric.py).
MAX_LOCAL_PARTIALS = 10_000
# Examples derived in full (the first step's batch) × local partials: each example is one
# more forward and backward pass written out (1,500 examples of a 3-2-2 MLP: about 5 s).
MAX_DERIVED = 100_000
# Examples of the step verify checks (the first mini-batch): every answer is judged against
# every example's quantities too (50: about 3 s; 100: 20 s; 200: over 2 minutes).
MAX_VERIFY_EXAMPLES = 50
# SGD steps of one run: the loss of each is kept and shown (table, chart).
MAX_STEPS = 100_000
# Steps × examples per step × named values: multiply-adds of a run (a few seconds).
MAX_TRAINING_WORK = 1_000_000_000
# Steps × parameters: every step's parameters are kept in the run's history (memory).
MAX_HISTORY = 5_000_000
# Variants of one sheet: each is drawn, numbered and written.
MAX_VARIANTS = 10_000
# Variants × local partials of a sheet's worked solutions (md, tex, pdf, Moodle's Cloze
# feedback): a few minutes.
MAX_SHEET_WORK = 300_000
# Variants of a PDF sheet: two LaTeX compiles each (about a second apiece).
MAX_PDF_VARIANTS = 200
# Variants × named values of a per-key Moodle quiz (numbers only, the fast path).
MAX_QUIZ_WORK = 50_000_000
# Height of one slide's text set 17 cm wide, before it is scaled to the frame (slides.py's
# estimate, within about a third): a frame is one TeX box, at most 16,384 pt (575 cm) tall.
# Steps are cut between paragraphs, equations and table rows; what cannot be cut (one
# equation of a unit with 1,600 inputs: about 830 lines) is refused beyond this.
MAX_FRAME_CM = 400
# Answers in one file: a hand calculation has tens, a whole course a few hundred.
MAX_ANSWERS = 10_000


def refuse(source, place, expected: str, got: int, way_out: str):
    """The one-line error of a limit: what is allowed, what was asked, the way out."""
    raise SpecError(source, place, f"{expected}, got {amount(got)} (the limit: {way_out})")


def amount(count: int) -> str:
    """A count for an error message: 1,234,567, or its size when it has 16 digits or more."""
    if count < 10 ** 15:
        return f"{count:,}"
    return f"a number of about {int(count.bit_length() * math.log10(2)) + 1:,} digits"


def check_block(place, shape) -> None:
    """A block of names or numbers (``place`` a validate.Place) small enough to expand."""
    size = math.prod(shape)
    if size > MAX_BLOCK:
        place.fail(f"a block of at most {MAX_BLOCK:,} values, got "
                   f"{'×'.join(map(str, shape))} = {size:,} (a smaller layer or image)")


def check_depth(data, source: str) -> None:
    """Refuse lists or tables nested deeper than MAX_DEPTH (checked without recursion)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise SpecError(source, "", f"lists or tables nested at most {MAX_DEPTH} deep")
        children = value.values() if isinstance(value, dict) else value
        stack.extend((v, depth + 1) for v in children if isinstance(v, (dict, list)))


def quantity_count(spec) -> int:
    """The computed quantities of a spec: the layers' and the loss's."""
    return (sum(len(layer.quantity_names()) for layer in spec.layers)
            + len(spec.loss.term_names) + 1)


def value_count(spec) -> int:
    """Inputs, parameters and computed quantities of a spec (names, not edges)."""
    return len(spec.input_names) + len(spec.parameters) + quantity_count(spec)


def check_values(spec) -> None:
    count = value_count(spec)
    if count > MAX_VALUES:
        refuse(spec.source, "layers", f"a network of at most {MAX_VALUES:,} named values",
               count, "fewer units or a smaller image")


def check_symbolic(spec, partials: int, examples: int | None = None) -> None:
    """A worked solution (symbolic graph, chain rule written out) that can finish:
    ``partials`` its local partials (graph.local_partials), ``examples`` derived in full
    (those of the first step; all the spec's by default)."""
    check_values(spec)
    if partials > MAX_LOCAL_PARTIALS:
        refuse(spec.source, "layers", f"a worked solution of at most {MAX_LOCAL_PARTIALS:,} "
               f"local partials (graph edges)", partials, "fewer units or a smaller image; "
               "for numbers only, the fast path backprop_explain.api.evaluate")
    examples = len(spec.examples) if examples is None else examples
    if examples * partials > MAX_DERIVED:
        refuse(spec.source, "examples", f"at most {MAX_DERIVED:,} for examples derived in "
               f"full × local partials ({partials:,})", examples * partials,
               "fewer examples, or training.batch_size for a smaller first step")


def check_training(spec, total_steps: int, batch: int) -> None:
    """A run of ``total_steps`` steps of ``batch`` examples the fast path can finish."""
    check_values(spec)
    if total_steps > MAX_STEPS:
        refuse(spec.source, "training.steps", f"a run of at most {MAX_STEPS:,} SGD steps",
               total_steps, "fewer steps or epochs, or a larger batch_size")
    work = total_steps * batch * value_count(spec)
    if work > MAX_TRAINING_WORK:
        refuse(spec.source, "training", f"at most {MAX_TRAINING_WORK:,} for steps × "
               f"examples per step × named values", work, "fewer steps or examples")
    history = total_steps * len(spec.parameters)
    if history > MAX_HISTORY:
        refuse(spec.source, "training.steps", f"at most {MAX_HISTORY:,} for steps × "
               f"parameters (kept in the history)", history, "fewer steps or a smaller network")


def check_variants(source, variants: int) -> None:
    """A count of variants a sheet can number and write (before anything is drawn)."""
    if variants > MAX_VARIANTS:
        refuse(source, "--variants", f"at most {MAX_VARIANTS:,} variants", variants,
               "fewer variants, in several sheets")


def check_quiz(source, spec, variants: int) -> None:
    """A Moodle quiz of ``variants`` variants of ``spec`` (numbers only, the fast path)."""
    check_values(spec)
    work = variants * value_count(spec)
    if work > MAX_QUIZ_WORK:
        refuse(source, "", f"at most {MAX_QUIZ_WORK:,} for variants × named values", work,
               "fewer variants")


def check_sheet(source, spec, variants: int, partials: int, pdf: bool) -> None:
    """A sheet of ``variants`` worked solutions of networks like ``spec`` (``partials``
    local partials each); ``pdf``: compiled too."""
    check_symbolic(spec, partials)
    work = variants * partials
    if work > MAX_SHEET_WORK:
        refuse(source, "", f"at most {MAX_SHEET_WORK:,} for variants × local partials of "
               f"the worked solutions", work, f"fewer variants, at most "
               f"{MAX_SHEET_WORK // max(1, partials):,} for this network, or "
               f"--format moodle --moodle-style per-key (numbers only)")
    if pdf and variants > MAX_PDF_VARIANTS:
        refuse(source, "", f"at most {MAX_PDF_VARIANTS:,} variants as PDF", variants,
               "fewer variants, or --format tex")


def check_frame(spec, title: str, centimetres: float) -> None:
    """A frame of the slides (of the step ``title``) that TeX can hold in one box."""
    if centimetres > MAX_FRAME_CM:
        raise SpecError(spec.source, "layers", f"slides whose frames each hold at most "
                        f"{MAX_FRAME_CM} cm of text set 17 cm wide (TeX's largest box: 575 cm), "
                        f"got {centimetres:,.0f} cm in one frame of \"{title}\" (the limit: "
                        f"fewer units, or the document, --format pdf or tex, whose steps run "
                        f"over pages)")


def check_verify(spec) -> None:
    """A hand calculation verify can judge: the examples of its step."""
    examples = spec.batch_size or len(spec.examples)
    if examples > MAX_VERIFY_EXAMPLES:
        refuse(spec.source, "examples", f"at most {MAX_VERIFY_EXAMPLES} examples in the step "
               f"verify checks", examples, "training.batch_size: verify checks the first "
               "mini-batch")


def check_answers(answers, source) -> None:
    if len(answers) > MAX_ANSWERS:
        refuse(source, "", f"at most {MAX_ANSWERS:,} answers in one file", len(answers),
               "split the file")
