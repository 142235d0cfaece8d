"""The Python API: everything the command line does, as functions."""

from __future__ import annotations

import json
from pathlib import Path

from .derivation import Solution
from .fastpath import FastNetwork, FastResult, compile_network, evaluate  # numbers only, batched
from .spec import NetworkSpec, as_spec, load_spec, spec_from_dict  # noqa: F401 (the API)


def solve(spec, steps: int | None = None, epochs: int | None = None,
          batch_size: int | None = None) -> Solution:
    """Derive and evaluate one SGD step; the result is plain data (see derivation.py).

    ``steps``/``epochs``/``batch_size`` override the spec's training settings; with more
    than one step the first is derived on the first mini-batch and the whole run, computed
    by the fast path, is in ``solution.training`` (training.py)."""
    from .graph import check_worked_solution
    from .training import derive_training, with_schedule
    network = with_schedule(as_spec(spec), steps, epochs, batch_size)
    check_worked_solution(network, network.batch_size or len(network.examples))  # first
    return derive_training(network)


def solution_data(spec) -> dict:
    """The machine-readable solution (what ``--format json`` prints), full precision."""
    from .jsonout import solution_to_data
    return solution_to_data(solve(spec))


def explain(spec, fmt: str = "md", lang: str = "en", digits: int = 4,
            decimal_comma: bool | None = None, figure: str | None = None,
            steps: int | None = None, epochs: int | None = None,
            batch_size: int | None = None, loss_figure: str | None = None) -> str:
    """The worked solution as Markdown (``md``), LaTeX (``tex``) or JSON (``json``) text.

    LaTeX includes the network drawn in TikZ; Markdown links to the SVG file ``figure``
    (a path relative to the Markdown file) when one is given (see write_explanation), and
    to the loss-history SVG ``loss_figure`` after several steps (LaTeX draws it in pgfplots)."""
    solution = solve(spec, steps, epochs, batch_size)
    if fmt == "json":
        from .jsonout import solution_to_data
        return json.dumps(solution_to_data(solution), indent=2, ensure_ascii=False) + "\n"
    from .diagram import document_figure
    from .document import render_solution
    return render_solution(solution, fmt=fmt, lang=lang, digits=digits,
                           decimal_comma=decimal_comma,
                           diagram=document_figure(solution.spec, fmt, lang, figure),
                           loss_figure=loss_figure)


def write_explanation(spec, output, fmt: str = "md", lang: str = "en", digits: int = 4,
                      decimal_comma: bool | None = None, steps: int | None = None,
                      epochs: int | None = None, batch_size: int | None = None) -> list[Path]:
    """Write the worked solution to ``output`` (md, tex, pdf or json), each file whole or
    not at all. Markdown gets the network as an SVG beside it (``NAME.network.svg``) and,
    after several SGD steps, the loss history (``NAME.loss.svg``). Returns the paths written."""
    schedule = dict(steps=steps, epochs=epochs, batch_size=batch_size)
    from .output import check_target, write_atomic, write_files
    output = check_target(output)  # before any work: a refused -o costs nothing
    if fmt == "pdf":
        from .pdf import write_pdf
        write_pdf(output, explain(spec, "tex", lang, digits, decimal_comma, **schedule))
        return [output]
    if fmt != "md":
        write_atomic(output, explain(spec, fmt, lang, digits, decimal_comma, **schedule))
        return [output]
    from .diagram import diagram_for
    network = as_spec(spec)
    svg = output.with_name(output.stem + ".network.svg")
    from .training import is_training, train, with_schedule
    scheduled = with_schedule(network, steps, epochs, batch_size)
    loss_svg = output.with_name(output.stem + ".loss.svg") if is_training(scheduled) else None
    text = explain(network, fmt, lang, digits, decimal_comma, figure=svg.name, **schedule,
                   loss_figure=loss_svg.name if loss_svg else None)
    files = {svg: diagram_for(network, "svg", lang, decimal_comma)}
    if loss_svg:  # the fast path again (milliseconds): the SVG needs only the loss history
        from .document_training import loss_history_svg
        files[loss_svg] = loss_history_svg(train(scheduled), lang, digits, decimal_comma)
    files[output] = text
    write_files(files)
    return [output, svg] + ([loss_svg] if loss_svg else [])


def verify(spec, answers, rel: float | None = None, abs: float | None = None,
           round_to: int | None = None):
    """Check hand-calculated answers (a TOML/JSON/CSV/Markdown file, or a list of
    answers.Answer) against the worked solution: a verify.Verification whose ``checks``
    say correct, wrong, consistent (error carried forward) or unknown_key, with a diagnosis."""
    from .verify import verify_answers
    return verify_answers(spec, answers, rel=rel, abs=abs, round_to=round_to)
