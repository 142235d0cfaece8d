"""Command line: each command parses options and calls one library function."""

from __future__ import annotations

import contextlib
import functools
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


@contextlib.contextmanager
def _progress_bar(label: str, total: int):
    """Long work (progress.task) shown as a click progress bar on stderr."""
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


def _inputs(*paths):
    """The command's inputs: no -o may overwrite them (output.reading)."""
    from .output import reading
    return reading(*paths)


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
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["md", "tex", "pdf", "json"]), default="md",
              show_default=True,
              help="Markdown (with the network as NAME.network.svg when -o is given), LaTeX "
                   "document, PDF (needs -o and a LaTeX engine), or JSON numbers.")
@click.option("--lang", type=click.Choice(["en", "fr"]), default="en", show_default=True)
@click.option("--digits", type=click.IntRange(1, 17), default=4, show_default=True,
              help="Significant digits of displayed numbers (computation is never rounded).")
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
def explain(spec, fmt, lang, digits, decimal_comma, output, steps, epochs, batch_size):
    """Derive, evaluate and explain one SGD step on the network of SPEC (several with
    --steps/--epochs: the first in full, then the loss history as a table and a chart)."""
    from .api import explain as explain_api, write_explanation
    if steps is not None and epochs is not None:
        raise UserError("give --steps or --epochs, not both")
    schedule = dict(steps=steps, epochs=epochs, batch_size=batch_size)
    if output is not None:
        with _inputs(spec):
            write_explanation(spec, output, fmt=fmt, lang=lang, digits=digits,
                              decimal_comma=decimal_comma, **schedule)
        return
    if fmt == "pdf":
        raise UserError("--format pdf writes a file: give -o FILE.pdf")
    emit(explain_api(spec, fmt=fmt, lang=lang, digits=digits, decimal_comma=decimal_comma,
                     **schedule), output)


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.argument("answers", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "md", "json"]), default="text",
              show_default=True, help="Terminal text, a Markdown document, or JSON.")
@click.option("--lang", type=click.Choice(["en", "fr"]), default="en", show_default=True)
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
        text, ok = verify_report(spec, answers, fmt=fmt, lang=lang, rel=rel, abs=abs_,
                                 round_to=round_to)
        emit(text, output)
    sys.exit(0 if ok else 1)


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--lang", type=click.Choice(["en", "fr"]), default="en", show_default=True)
@user_errors
def keys(spec, lang):
    """List every quantity key of SPEC's worked solution: key, meaning, formula."""
    from .verify import keys_listing
    emit(keys_listing(spec, lang=lang), None)


@main.command()
@click.argument("template", type=click.Path(dir_okay=False))
@click.option("--variants", type=click.IntRange(1), default=1, show_default=True,
              help="How many variants to draw.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the draws: the same template and seed give the same files.")
@click.option("--format", "fmt", type=click.Choice(["md", "tex", "pdf", "moodle"]),
              default="md", show_default=True,
              help="Markdown (+ SVG diagrams), LaTeX, PDF (needs a LaTeX engine) or Moodle XML.")
@click.option("--lang", type=click.Choice(["en", "fr"]), default="en", show_default=True)
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Directory for the sheets, solutions and answers.json.")
@user_errors
def sheet(template, variants, seed, fmt, lang, out_dir):
    """Exercise sheets and worked solutions for VARIANTS random variants of TEMPLATE."""
    from .sheet import write_sheets
    with _inputs(template):
        write_sheets(template, out_dir, variants, seed, fmt, lang)


if __name__ == "__main__":  # pragma: no cover
    main()
