"""The Python API: everything the command line does, as functions, with the same words.

``format=`` ("md", "tex", "pdf", "json"), ``lang=`` ("en", "fr") and ``digits=`` mean
what the options of the command line mean; a value outside them is a ValueError naming
the allowed values. The results show themselves in a Jupyter notebook (notebook.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from .spec import NetworkSpec, read_document  # noqa: F401 (the API)
from .spec import as_spec as _as_spec
from .spec import load_spec as _load_spec
from .spec import spec_from_dict as _spec_from_dict
from .templating import LANGUAGES
from .validate import allowed as choice

if TYPE_CHECKING:
    from .derivation import Solution
    from .notebook import Network

FORMATS = ("md", "tex", "pdf", "json", "html", "beamer", "slides-pdf")
DETAILS = ("full", "compact")  # document.DETAILS: every factor, or each layer in a table
DERIVATIVES = ("course", "textbook", "both")  # document.DERIVATIVE_FORMS
_FAST_PATH = ("FastNetwork", "FastResult", "compile_network", "evaluate")  # numbers only, batched


def __getattr__(name):
    """The fast path's API (fastpath.py), imported when first used: NumPy loads only then."""
    if name in _FAST_PATH:
        from . import fastpath
        return getattr(fastpath, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _network(spec) -> "Network":
    """The spec as a notebook.Network (it shows its diagram)."""
    from .notebook import Network
    return Network.of(spec)


def _digits(digits) -> int:
    if isinstance(digits, bool) or not isinstance(digits, int) or not 1 <= digits <= 17:
        raise ValueError(f"digits: a whole number from 1 to 17, got {digits!r}")
    return digits


def _format(format, fmt, allowed=FORMATS) -> str:
    """``format=``, or the older ``fmt=``."""
    return choice("format", fmt if fmt is not None else format, allowed)


def _lang(lang, spec) -> str:
    """``lang=``, or the spec's own ``lang`` when None."""
    return choice("lang", lang, LANGUAGES) if lang is not None else as_spec(spec).lang


def _detail(detail, derivatives) -> dict:
    if detail is not None:
        choice("detail", detail, DETAILS)
    return {"detail": detail, "derivatives": choice("derivatives", derivatives, DERIVATIVES)}


# ---------------------------------------------------------------------------
# Specs


def load_spec(path) -> "Network":
    """Read a spec from a ``.toml`` or ``.json`` file."""
    return _network(_load_spec(path))


def spec_from_dict(data: dict, source: str = "<spec>") -> "Network":
    """Validate a spec given as a dict (the TOML/JSON structure)."""
    return _network(_spec_from_dict(data, source))


def spec_from_text(text: str, source: str = "<stdin>") -> "Network":
    """A spec from TOML or JSON text (JSON when it starts with ``{``), e.g. standard input."""
    fmt = "json" if text.lstrip().startswith("{") else "toml"
    return spec_from_dict(read_document(text, source, fmt), source)


def as_spec(spec) -> "Network":
    """A spec from a path, a dict or a NetworkSpec."""
    return _network(_as_spec(spec))


def to_toml(spec, output=None) -> str:
    """The spec as a TOML spec file that reads back to the same spec; with ``output``,
    also written to that file."""
    from .spec_toml import to_toml as write
    text = write(as_spec(spec))
    if output is not None:
        from .output import write_atomic
        write_atomic(output, text)
    return text


# ---------------------------------------------------------------------------
# Worked solutions


def solve(spec, steps: int | None = None, epochs: int | None = None,
          batch_size: int | None = None) -> Solution:
    """Derive and evaluate one SGD step; the result is plain data (see derivation.py).

    ``steps``/``epochs``/``batch_size`` override the spec's training settings; with more
    than one step the first is derived on the first mini-batch and the whole run, computed
    by the fast path, is in ``solution.training`` (training.py)."""
    from .graph import check_worked_solution
    from .notebook import WorkedSolution
    from .training import derive_training, with_schedule
    network = with_schedule(as_spec(spec), steps, epochs, batch_size)
    check_worked_solution(network)  # before any work
    return WorkedSolution.of(derive_training(network))


def solution_data(spec) -> dict:
    """The machine-readable solution (what ``--format json`` prints), full precision."""
    from .jsonout import solution_to_data
    return solution_to_data(solve(spec))


def explain(spec, format: str = "md", lang: str | None = None, digits: int = 4,
            decimal_comma: bool | None = None, figure: str | None = None,
            steps: int | None = None, epochs: int | None = None,
            batch_size: int | None = None, loss_figure: str | None = None,
            output=None, fmt: str | None = None, detail: str | None = None,
            derivatives: str = "both"):
    """The worked solution as Markdown (``md``), LaTeX (``tex``), JSON (``json``), an
    interactive page (``html``: one HTML file that works offline, page.py) or beamer slides
    (``beamer``, slides.py) as text, or PDF (``pdf``, the slides' ``slides-pdf``) bytes;
    with ``output``, written to that file (see write_explanation) and the paths written
    returned.

    LaTeX includes the network drawn in TikZ; Markdown links to the SVG file ``figure``
    (a path relative to the Markdown file) when one is given (see write_explanation), and
    to the loss-history SVG ``loss_figure`` after several steps (LaTeX draws it in
    pgfplots). Markdown text shows itself rendered in a notebook. ``lang``: default the
    spec's ``lang``; ``detail``: ``full`` (every factor) or ``compact`` (each layer's δ's,
    its gradients in one table; default: full up to 20 parameters); ``derivatives``:
    ``course`` (as differentiated), ``textbook`` (σ(y)(1 − σ(y)), …) or ``both``."""
    format = _format(format, fmt)
    lang = _lang(lang, spec)
    _digits(digits)
    schedule = dict(steps=steps, epochs=epochs, batch_size=batch_size)
    shown = _detail(detail, derivatives)
    if output is not None:
        return write_explanation(spec, output, format, lang, digits, decimal_comma,
                                 **schedule, **shown)
    if format in ("pdf", "slides-pdf"):
        from .pdf import compile_pdf
        return compile_pdf(explain(spec, "tex" if format == "pdf" else "beamer", lang,
                                   digits, decimal_comma, **schedule, **shown))
    solution = solve(spec, **schedule)
    if format == "beamer":
        from .slides import render_slides
        return render_slides(solution, lang, digits, decimal_comma, **shown)
    if format == "html":
        from .page import render_page
        return render_page(solution, lang, digits, decimal_comma, **shown)
    if format == "json":
        from .jsonout import solution_to_data
        return json.dumps(solution_to_data(solution), indent=2, ensure_ascii=False) + "\n"
    from .diagram import document_figure
    from .document import render_solution
    text = render_solution(solution, fmt=format, lang=lang, digits=digits,
                           decimal_comma=decimal_comma,
                           diagram=document_figure(solution.spec, format, lang, figure),
                           loss_figure=loss_figure, **shown)
    if format == "md":
        from .notebook import Markdown
        return Markdown(text)
    return text


def write_explanation(spec, output, format: str = "md", lang: str | None = None,
                      digits: int = 4, decimal_comma: bool | None = None,
                      steps: int | None = None, epochs: int | None = None,
                      batch_size: int | None = None, fmt: str | None = None,
                      detail: str | None = None, derivatives: str = "both") -> list[Path]:
    """Write the worked solution to ``output`` (md, tex, pdf or json), each file whole or
    not at all (its directory is created). Markdown gets the network as an SVG beside it
    (``NAME.network.svg``) and, after several SGD steps, the loss history
    (``NAME.loss.svg``). Returns the paths written."""
    format = _format(format, fmt)
    lang = _lang(lang, spec)
    _digits(digits)
    schedule = dict(steps=steps, epochs=epochs, batch_size=batch_size)
    shown = _detail(detail, derivatives)
    from .output import check_target, write_atomic, write_files
    output = check_target(output)  # before any work: a refused -o costs nothing
    if format in ("pdf", "slides-pdf"):
        from .pdf import write_pdf
        write_pdf(output, explain(spec, "tex" if format == "pdf" else "beamer", lang, digits,
                                  decimal_comma, **schedule, **shown))
        return [output]
    if format != "md":
        write_atomic(output, explain(spec, format, lang, digits, decimal_comma, **schedule,
                                     **shown))
        return [output]
    from .diagram import diagram_for
    network = as_spec(spec)
    svg = output.with_name(output.stem + ".network.svg")
    from .training import is_training, train, with_schedule
    scheduled = with_schedule(network, steps, epochs, batch_size)
    loss_svg = output.with_name(output.stem + ".loss.svg") if is_training(scheduled) else None
    text = explain(network, format, lang, digits, decimal_comma, figure=svg.name, **schedule,
                   loss_figure=loss_svg.name if loss_svg else None, **shown)
    files = {svg: diagram_for(network, "svg", lang, decimal_comma)}
    if loss_svg:  # the fast path again (milliseconds): the SVG needs only the loss history
        from .document_training import loss_history_svg
        files[loss_svg] = loss_history_svg(train(scheduled), lang, digits, decimal_comma)
    files[output] = text
    write_files(files)
    return [output, svg] + ([loss_svg] if loss_svg else [])


# ---------------------------------------------------------------------------
# Checking hand calculations, exercise sheets


def verify(spec, answers, rel: float | None = None, abs: float | None = None,
           round_to: int | None = None):
    """Check hand-calculated answers (a TOML/JSON/CSV/Markdown file, or a list of
    answers.Answer) against the worked solution: a verify.Verification whose ``checks``
    say correct, wrong, consistent (error carried forward) or unknown_key, with a diagnosis;
    ``report(format, lang)`` is the command's report (a notebook shows it in Markdown)."""
    from .verify import verify_answers
    return verify_answers(spec, answers, rel=rel, abs=abs, round_to=round_to)


def keys(spec, lang: str | None = None) -> str:
    """Every key of the spec's worked solution, one per line: key, meaning, formula (as
    readable mathematics); ``lang`` default the spec's."""
    from .verify import keys_listing
    return keys_listing(as_spec(spec), lang=_lang(lang, spec))


def sheet(template, output, variants: int = 1, seed: int = 0, format: str = "md",
          lang: str | None = None, progress=None, moodle_style: str = "cloze") -> list[Path]:
    """Exercise sheets, worked solutions and answers for ``variants`` random variants of
    a sheet template, written in the directory ``output`` (created); the paths written.
    ``lang``: default the template's; ``moodle_style`` ("cloze" or "per-key"): the Moodle
    questions' shape."""
    from .moodle import STYLES
    from .sheet import FORMATS as SHEET_FORMATS, write_sheets
    return write_sheets(template, output, variants, seed, choice("format", format, SHEET_FORMATS),
                        choice("lang", lang, LANGUAGES) if lang is not None else None,
                        progress=progress,
                        moodle_style=choice("moodle_style", moodle_style, STYLES))


def class_report(target, answers, progress=None):
    """A class's hand calculations checked and summed up (classreport.py): ``target`` a
    spec or a directory written by sheet, ``answers`` paths (students' files, directories,
    a class CSV, Moodle's Responses report). ``.report(format, lang)`` gives Markdown, PDF
    bytes or JSON; ``.as_data()`` the numbers."""
    from .classreport import class_report as check
    return check(target, answers if isinstance(answers, (list, tuple)) else [answers],
                 progress=progress)


# ---------------------------------------------------------------------------
# PyTorch


def from_torch(model, inputs, targets, loss, optimizer=None, learning_rate=None,
               momentum: float = 0.0, reduction: str = "mean", names=None,
               title: str | None = None, steps: int | None = None, epochs: int | None = None,
               batch_size: int | None = None, source: str | None = None) -> "Network":
    """The spec of a PyTorch model with its current weights (torch_import.py)."""
    from .torch_import import from_torch as read
    return _network(read(model, inputs, targets, loss, optimizer, learning_rate, momentum,
                         reduction, names, title, steps, epochs, batch_size, source))


def export_torch(spec, output=None) -> str:
    """The PyTorch script checking the worked solution of ``spec`` (torch_export.py);
    with ``output``, also written to that file."""
    from .torch_export import torch_script
    network = as_spec(spec)
    text = torch_script(network, source=str(spec) if isinstance(spec, (str, Path)) else None)
    if output is not None:
        from .output import write_atomic
        write_atomic(output, text)
    return text
