"""Output stage: compile a LaTeX document into PDF bytes with whichever engine is installed.

Engines are tried in this order (the first found on PATH is used):

1. ``latexmk`` (driving pdflatex; runs as often as needed),
2. ``pdflatex``,
3. ``lualatex``,
4. ``tectonic`` (fetches its own packages; run in its ``--untrusted`` mode).

Safety: the document is compiled in a fresh temporary directory, non-interactively, with
shell escape explicitly off (``-no-shell-escape``, ``shell_escape=f``; tectonic
``--untrusted``), so neither ``\\write18`` nor anything the text of a spec might contain can
run a command; and with TeX Live's ``openin_any=p`` and ``openout_any=p`` (paranoid), so
``\\input``, ``\\openin`` and ``\\openout`` cannot read or write a file outside that
directory, nor a dot file (the TeX tree's own files are still found). Spec text is escaped
by the document stage anyway; this is the second wall.

Reproducibility: ``SOURCE_DATE_EPOCH=0`` and ``FORCE_SOURCE_DATE=1`` fix the dates, and
``\\pdftrailerid{}`` (pdfTeX) drops the random trailer ID, so the same LaTeX gives the same
PDF bytes.

Errors are :class:`PdfError` (a SpecError: one line, exit status 2 in the CLI): no engine
(with the command that installs one), or a failed compile (with the ``! …`` lines and the
``l.NN`` line of the LaTeX log). A failed compile leaves no PDF behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .errors import SpecError

ENGINES = ("latexmk", "pdflatex", "lualatex", "tectonic")
INSTALL_HINT = ("install one, e.g. `apt-get install texlive-latex-base lmodern "
                "texlive-lang-french texlive-pictures`, or use --format tex")
_TIMEOUT = 180  # seconds per engine run; a runaway document must not hang the command
_JOB = "document"
# Put in front of the first line (no newline: the log's line numbers stay the document's):
# a fixed /ID in the trailer (pdfTeX, LuaTeX), not one hashed from the temporary path.
_REPRODUCIBLE = ("\\ifdefined\\pdftrailerid\\pdftrailerid{}\\fi"
                 "\\ifdefined\\pdfvariable\\pdfvariable trailerid{[<00><00>]}\\fi ")


class PdfError(SpecError):
    """No LaTeX engine, or the document did not compile."""

    def __init__(self, message: str):
        super().__init__("pdf", "", message)


def find_engine(engines=ENGINES) -> str | None:
    """The name of the first installed engine, in the documented order; None if none."""
    for engine in engines:
        if shutil.which(engine):
            return engine
    return None


def require_engine(engine: str | None = None) -> str:
    """``engine``, or the first installed one; PdfError (with the install command) if none."""
    engine = engine or find_engine()
    if engine is None:
        raise PdfError("no LaTeX engine found (looked for " + ", ".join(ENGINES) + "): "
                       + INSTALL_HINT)
    return engine


def _commands(engine: str) -> list[list[str]]:
    """The command lines of one compile (a list: pdflatex/lualatex run twice if needed)."""
    tex_options = ["-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape"]
    if engine == "latexmk":
        return [["latexmk", "-norc", "-pdf", "-quiet",
                 "-pdflatex=pdflatex " + " ".join(tex_options) + " %O %S", f"{_JOB}.tex"]]
    if engine == "tectonic":
        return [["tectonic", "--untrusted", "--keep-logs", "--outdir", ".", f"{_JOB}.tex"]]
    return [[engine] + tex_options + [f"{_JOB}.tex"]]


def _environment() -> dict:
    env = dict(os.environ)
    env.update(SOURCE_DATE_EPOCH="0", FORCE_SOURCE_DATE="1", TZ="UTC",
               max_print_line="1000")  # long log lines: error messages are not cut
    # Paranoid file access: nothing outside the job's directory, no dot files; no shell.
    env.update(openin_any="p", openout_any="p", shell_escape="f")
    for variable in ("TEXINPUTS", "TEXMFOUTPUT"):  # only the standard TeX tree; no outside
        env.pop(variable, None)  # directory that openin_any=p would let TeX read
    return env


def compile_pdf(tex_source: str, engine: str | None = None) -> bytes:
    """The PDF of a complete LaTeX document, as bytes. Raises PdfError."""
    return compile_with_log(tex_source, engine)[0]


def compile_with_log(tex_source: str, engine: str | None = None) -> tuple[bytes, str]:
    """The PDF bytes and the LaTeX log of the last run (overfull boxes, warnings)."""
    engine = require_engine(engine)
    with tempfile.TemporaryDirectory(prefix="backprop-explain-") as work:
        work_dir = Path(work)
        (work_dir / f"{_JOB}.tex").write_text(_REPRODUCIBLE + tex_source, encoding="utf-8")
        for command in _commands(engine):
            for _ in range(3):  # rerun while LaTeX asks (cross-references, longtable widths)
                _run(command, work_dir, engine)
                log = _read_log(work_dir)
                if engine in ("latexmk", "tectonic") or not _asks_rerun(log):
                    break
        pdf = work_dir / f"{_JOB}.pdf"
        if not pdf.exists():
            raise PdfError(f"{engine} produced no PDF: " + log_excerpt(_read_log(work_dir)))
        return pdf.read_bytes(), _read_log(work_dir)


def _run(command, work_dir: Path, engine: str) -> None:
    try:
        done = subprocess.run(command, cwd=work_dir, env=_environment(),
                              stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise PdfError(f"{engine} did not finish within {_TIMEOUT} s") from None
    except OSError as err:
        raise PdfError(f"cannot run {engine} ({err.strerror})") from None
    if done.returncode != 0:
        log = _read_log(work_dir) or done.stdout.decode("utf-8", "replace")
        raise PdfError(f"LaTeX failed ({engine}): " + log_excerpt(log))


def _read_log(work_dir: Path) -> str:
    log = work_dir / f"{_JOB}.log"
    return log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""


def log_excerpt(log: str, limit: int = 4) -> str:
    """The relevant lines of a LaTeX log: each ``! error`` and its ``l.NN`` line, on one
    line."""
    lines = log.splitlines()
    picked = []
    for k, line in enumerate(lines):
        if not line.startswith("!"):
            continue
        context = next((lines[j].strip() for j in range(k + 1, min(k + 12, len(lines)))
                        if lines[j].startswith("l.")), "")
        picked.append(line.strip() + (f" [{context}]" if context else ""))
        if len(picked) >= limit:
            break
    if not picked:  # no recognisable error: the end of the log says what happened
        picked = [line.strip() for line in lines[-3:] if line.strip()]
    return " | ".join(picked) or "no log"


def write_pdf(path, tex_source: str, engine: str | None = None) -> None:
    """Compile and write ``path`` whole, or leave nothing (and raise PdfError)."""
    from .output import check_target, write_atomic
    from .progress import task
    check_target(path)
    engine = require_engine(engine)  # before the progress bar: a refusal is one line
    with task("PDF", 1) as advance:
        pdf = compile_pdf(tex_source, engine)
        advance(1)
    write_atomic(path, pdf)


def _asks_rerun(log: str) -> bool:
    return "Rerun to get" in log or "Rerun LaTeX" in log
