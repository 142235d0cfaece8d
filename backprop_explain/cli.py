"""Command line: each command parses options and calls one library function.

SPEC may be ``-``: the spec is read from standard input (TOML, or JSON when it starts
with ``{``). Every command writing a file (``-o``) creates its directory when needed.
"""

from __future__ import annotations

import contextlib
import functools
import re
import signal
import sys
import threading
import warnings

import click

from . import __version__
from .errors import SpecError
from .progress import showing


class UserError(click.ClickException):
    """A one-line message, exit status 2, no traceback."""

    exit_code = 2


def user_errors(command):
    """Turn bad-input exceptions into one-line errors with exit status 2; a SIGTERM unwinds
    like Ctrl-C, so temporary files and directories are removed on the way out."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        previous = _terminate_as_exit()
        try:
            with showing(_progress_bar), warnings.catch_warnings():
                # NumPy's overflow warnings: a divergence is said in the document instead
                warnings.simplefilter("ignore", RuntimeWarning)
                return command(*args, **kwargs)
        except SpecError as err:
            raise UserError(str(err)) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    return wrapper


def _terminate_as_exit():
    """Make SIGTERM raise SystemExit(143) in the main thread; the previous handler, or None
    when handlers cannot be set here (not the main thread)."""
    def terminate(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends at once
        raise SystemExit(128 + signum)
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, terminate)


def _stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


@contextlib.contextmanager
def _progress_bar(label: str, total: int):
    """Long work (progress.task) shown as a click progress bar on stderr, when stderr is a
    terminal: in a log or a pipe nobody watches it, and a bar's label printed ahead of
    the work would stand above a failure's one-line error."""
    if not _stderr_is_terminal():
        yield lambda steps=1: None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


def _inputs(*paths):
    """The command's input files: no -o may overwrite them (output.reading)."""
    from .output import reading
    return reading(*[p for p in paths if p != "-"])


def read_spec(spec: str):
    """SPEC as given: a path, or the spec read from standard input for ``-`` (at most
    limits.MAX_FILE_BYTES, as a file)."""
    if spec != "-":
        return spec
    from .api import spec_from_text
    from .spec import read_stream
    return spec_from_text(read_stream(sys.stdin.buffer, "<stdin>"))


SPEC = click.argument("spec", type=click.Path(dir_okay=False, allow_dash=True))


def emit(text: str | bytes, output: str | None) -> None:
    """Write to stdout, or to OUTPUT whole or not at all."""
    from .output import write_atomic
    if output is None:
        if isinstance(text, bytes):
            sys.stdout.buffer.write(text)
        else:
            click.echo(text, nl=not text.endswith("\n"))
    else:
        write_atomic(output, text)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="backprop-explain")
def main():
    """Worked, checked backpropagation solutions for small MLPs and CNNs."""


@main.command()
@SPEC
@click.option("--format", "fmt",
              type=click.Choice(["md", "tex", "pdf", "json", "html", "beamer", "slides-pdf"]),
              default="md", show_default=True,
              help="Markdown (with the network as NAME.network.svg when -o is given), LaTeX "
                   "document, PDF (needs -o and a LaTeX engine), JSON numbers, an interactive "
                   "page (one HTML file that works offline), slides (beamer LaTeX), or the "
                   "slides' PDF (needs -o and a LaTeX engine).")
@click.option("--lang", type=click.Choice(["en", "fr"]),
              help="Language (default: the spec's lang, else en).")
@click.option("--digits", type=click.IntRange(1, 17), default=4, show_default=True,
              help="Significant digits of computed numbers, trailing zeros kept (given numbers "
                   "are shown as given; computation is never rounded).")
@click.option("--detail", type=click.Choice(["full", "compact"]),
              help="full: every factor of every chain rule; compact: each layer's δ's, its "
                   "gradients in one table, zero and frozen gradients on one line (default: "
                   "full up to 20 parameters).")
@click.option("--derivatives", type=click.Choice(["course", "textbook", "both"]),
              default="both", show_default=True,
              help="How a local derivative is written: as differentiated (the course's slides: "
                   "e^{-y}/(1+e^{-y})^2), in its textbook form (σ(y)(1−σ(y)) = out(1−out)), or "
                   "both, the course's first.")
@click.option("--decimal-comma/--decimal-point", default=None,
              help="Decimal separator (default: comma in French, point in English).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE, not stdout.")
@click.option("--steps", type=click.IntRange(1),
              help="SGD steps to run (default: training.steps of SPEC, 1); the first is "
                   "derived in full, the loss history ends the document.")
@click.option("--epochs", type=click.IntRange(1),
              help="Passes over SPEC's examples instead of --steps (training.epochs).")
@click.option("--batch-size", type=click.IntRange(1),
              help="Examples per step, taken in order (default: training.batch_size, or all).")
@user_errors
def explain(spec, fmt, lang, digits, detail, derivatives, decimal_comma, output, steps, epochs,
            batch_size):
    """Derive, evaluate and explain one SGD step on the network of SPEC (several with
    --steps/--epochs: the first in full, then the loss history as a table and a chart).
    SPEC may be - (standard input)."""
    from .api import explain as explain_api, write_explanation
    if steps is not None and epochs is not None:
        raise UserError("give --steps or --epochs, not both")
    path, spec = spec, read_spec(spec)
    schedule = dict(steps=steps, epochs=epochs, batch_size=batch_size, detail=detail,
                    derivatives=derivatives)
    if output is not None:
        with _inputs(path):
            write_explanation(spec, output, fmt=fmt, lang=lang, digits=digits,
                              decimal_comma=decimal_comma, **schedule)
        return
    if fmt in ("pdf", "slides-pdf"):
        raise UserError(f"--format {fmt} writes a file: give -o FILE.pdf")
    emit(explain_api(spec, fmt=fmt, lang=lang, digits=digits, decimal_comma=decimal_comma,
                     **schedule), output)


@main.command()
@SPEC
@click.argument("answers", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "md", "json"]), default="text",
              show_default=True, help="Terminal text, a Markdown document, or JSON.")
@click.option("--lang", type=click.Choice(["en", "fr"]),
              help="Language (default: the spec's lang, else en).")
@click.option("--rel", type=float, help="Relative tolerance instead of the digits written.")
@click.option("--abs", "abs_", type=float, help="Absolute tolerance instead of the digits written.")
@click.option("--round", "round_to", type=click.IntRange(0, 15),
              help="Hand-calculation mode: round every intermediate to N decimals, so "
                   "rounding drift is told from slips.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE, not stdout.")
@user_errors
def verify(spec, answers, fmt, lang, rel, abs_, round_to, output):
    """Check the hand-calculated values of ANSWERS (TOML, JSON, CSV key,value, or a filled-in
    Markdown sheet) against the worked solution of SPEC. Exit status 0: every value correct or
    consistent; 1: a value wrong or a key unknown; 2: bad input."""
    if rel is not None and abs_ is not None:
        raise UserError("give --rel or --abs, not both")
    from .verify import verify_report
    with _inputs(spec, answers):
        if output is not None:
            from .output import check_target
            check_target(output)  # before any work
        text, ok = verify_report(read_spec(spec), answers, fmt=fmt, lang=lang, rel=rel,
                                 abs=abs_, round_to=round_to)
        emit(text, output)
    sys.exit(0 if ok else 1)


@main.command()
@SPEC
@click.option("--lang", type=click.Choice(["en", "fr"]),
              help="Language (default: the spec's lang, else en).")
@user_errors
def keys(spec, lang):
    """List every quantity key of SPEC's worked solution: key, meaning, formula."""
    from .verify import keys_listing
    emit(keys_listing(read_spec(spec), lang=lang), None)


@main.command()
@click.argument("template", type=click.Path(dir_okay=False))
@click.option("--variants", type=click.IntRange(1), default=1, show_default=True,
              help="How many variants to draw.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the draws: the same template and seed give the same files.")
@click.option("--format", "fmt", type=click.Choice(["md", "tex", "pdf", "moodle"]),
              default="md", show_default=True,
              help="Markdown (+ SVG diagrams), LaTeX, PDF (needs a LaTeX engine) or Moodle XML.")
@click.option("--lang", type=click.Choice(["en", "fr"]),
              help="Language (default: the template's lang, else en).")
@click.option("--moodle-style", type=click.Choice(["cloze", "per-key"]), default="cloze",
              show_default=True,
              help="Moodle: one Cloze question per variant (the whole exercise, each blank's "
                   "slips named), or one numerical question per key per variant.")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Directory for the sheets, solutions and answers.json.")
@user_errors
def sheet(template, variants, seed, fmt, lang, moodle_style, out_dir):
    """Exercise sheets and worked solutions for VARIANTS random variants of TEMPLATE."""
    from .sheet import write_sheets
    with _inputs(template):  # progress: sheet.py announces its variants (progress.py)
        written = write_sheets(template, out_dir, variants, seed, fmt, lang,
                               moodle_style=moodle_style)
    click.echo(f"Wrote {len(written)} files for {variants} variant{'s' * (variants > 1)} in "
               f"{out_dir}: {files_summary(written)}", err=True)


def files_summary(paths) -> str:
    """The files' names, numbered ones as a range: exercise_1…3.md, answers.json."""
    groups: dict[tuple, list] = {}
    for path in paths:
        match = re.fullmatch(r"(.*_)(\d+)(\..*)", path.name)
        key = (match.group(1), match.group(3)) if match else (path.name, "")
        groups.setdefault(key, []).append(match.group(2) if match else "")
    return ", ".join(f"{start}{numbers[0]}…{numbers[-1]}{end}" if len(numbers) > 1
                     else f"{start}{numbers[0]}{end}" for (start, end), numbers in groups.items())


@main.command("class")
@click.argument("target", metavar="SPEC_OR_SHEET_DIR", type=click.Path())
@click.argument("answers", nargs=-1, required=True, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["md", "pdf", "json"]), default="md",
              show_default=True,
              help="Markdown (with NAME.chart.svg beside it when -o is given), PDF (needs -o "
                   "and a LaTeX engine) or JSON.")
@click.option("--lang", type=click.Choice(["en", "fr"]),
              help="Language (default: the spec's or the sheet's lang, else en).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE, not stdout.")
@user_errors
def class_(target, answers, fmt, lang, output):
    """Check a class's hand calculations and sum them up: per quantity the share correct,
    consistent and wrong, the slips and how often, the first wrong steps, the answers that
    need a look. ANSWERS: students' answers files or directories of them, a CSV with a
    student column, or Moodle's Responses report (CSV). SPEC_OR_SHEET_DIR: the spec they
    all worked, or the directory `sheet` wrote (each student answered one variant)."""
    if fmt == "pdf" and output is None:
        raise UserError("--format pdf writes a file: give -o FILE.pdf")
    with _inputs(target, *answers):  # -o is none of them, and may be written (checked first)
        if output is not None:
            from .output import check_target
            check_target(output)
        _class_report(target, answers, fmt, lang, output)


def _class_report(target, answers, fmt, lang, output):
    """The class command's work, its inputs declared (class_)."""
    from .classreport import class_report, write_class_report
    with contextlib.ExitStack() as stack:
        bars = []

        def progress(done, total):
            if total < 20:
                return
            if not bars:
                bars.append(stack.enter_context(_progress_bar("students", total)))
            bars[0](1)

        report = class_report(target, answers, progress=progress)
    for result in report.bad:
        click.echo(f"warning: {result.student}: {result.error}", err=True)
    if not report.checked:
        raise UserError(f"no student's answers could be checked ({len(report.bad)} "
                        f"unreadable): see the warnings above")
    if output is None:
        emit(report.report(fmt, lang), None)
    else:
        write_class_report(report, output, fmt, lang)


@main.command("import-torch")
@click.argument("factory", metavar="FILE.py:FACTORY")
@click.option("--inputs", help="The inputs as JSON, one example per row: [[0.15, 0.25, -0.5]] "
                               "(images: examples × channels × rows × columns), unless "
                               "FACTORY returns them.")
@click.option("--targets", help="The targets as JSON, one row per example (or class indices "
                                "for CrossEntropyLoss, NLLLoss), unless FACTORY returns them.")
@click.option("--loss", help="A torch.nn loss (CrossEntropyLoss, MSELoss, BCELoss, NLLLoss) or "
                             "a spec loss (cross_entropy, half_squared_error, …), unless "
                             "FACTORY returns one.")
@click.option("--reduction", type=click.Choice(["mean", "sum"]), default="mean",
              show_default=True, help="How the examples' losses combine.")
@click.option("--lr", "learning_rate", type=float,
              help="SGD's learning rate, unless FACTORY returns an optimizer.")
@click.option("--momentum", type=float, default=0.0, show_default=True)
@click.option("--names", type=click.Choice(["default", "course"]), default="default",
              show_default=True,
              help="Layer-indexed names (w^{(1)}_{1,1}) or the course's (wh, wo, bh, y, out).")
@click.option("--title", help="The spec's title (default: the model's class).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE, not stdout.")
@user_errors
def import_torch(factory, inputs, targets, loss, reduction, learning_rate, momentum, names,
                 title, output):
    """Read the PyTorch model that FACTORY, a function of FILE.py, returns (FILE.py runs:
    nothing else does) and write its spec, with the model's current weights, as TOML.
    FACTORY returns the model, or (model, inputs, targets[, loss[, optimizer]]), or a dict
    with those keys."""
    from .api import from_torch, to_toml
    from .torch_import import run_factory
    built = run_factory(factory)
    for key, text in (("inputs", inputs), ("targets", targets)):
        if text is not None:
            built[key] = json_option(key, text)
        elif key not in built:
            raise UserError(f"{factory}: give --{key} (FACTORY returns no {key})")
    if loss is not None:
        built["loss"] = loss
    elif "loss" not in built:
        raise UserError(f"{factory}: give --loss (FACTORY returns no loss)")
    if "optimizer" not in built and learning_rate is None:
        raise UserError(f"{factory}: give --lr (FACTORY returns no optimizer)")
    spec = from_torch(built["model"], built["inputs"], built["targets"], built["loss"],
                      optimizer=built.get("optimizer"), learning_rate=learning_rate,
                      momentum=momentum, reduction=reduction, names=names, title=title,
                      source=factory)
    with _inputs(factory.rpartition(":")[0]):
        emit(to_toml(spec), output)


def json_option(name: str, text: str):
    import json
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"--{name}: JSON numbers such as [[0.15, 0.25, -0.5]] ({err.msg}, "
                        f"column {err.colno})") from None


@main.command("export-torch")
@SPEC
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE, not stdout.")
@user_errors
def export_torch(spec, output):
    """Write a PyTorch script (the course's style: class MyNet, nn.Sequential, optim.SGD)
    with SPEC's weights, which runs the worked solution's step(s) and prints the loss, every
    gradient and every updated parameter under SPEC's names."""
    from .api import export_torch as export
    with _inputs(spec):
        emit(export(read_spec(spec)), output)


if __name__ == "__main__":  # pragma: no cover
    main()
