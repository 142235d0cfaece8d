"""Output stage: files (and directories of files) appear whole or not at all.

A target is refused, with a one-line error, when it exists and is not a regular file (a
device such as /dev/full, a directory, a FIFO: an atomic rename would replace it), or when
it is one of the inputs of the same command (``-o SPEC`` would overwrite the spec): the
command line declares its inputs with :func:`reading`. A write that fails (no such
directory, permission, full disk) is an :class:`OutputError` and leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import shutil
import stat
import tempfile
from pathlib import Path

from .errors import SpecError

_INPUTS: contextvars.ContextVar[tuple[Path, ...]] = contextvars.ContextVar("inputs", default=())


class OutputError(SpecError):
    """An output path that cannot or must not be written."""

    def __init__(self, path, expected: str):
        super().__init__(str(path) or '""', "", expected)


@contextlib.contextmanager
def reading(*paths):
    """Within this block, no output may replace one of ``paths`` (the command's inputs)."""
    token = _INPUTS.set(tuple(Path(p) for p in paths if p is not None))
    try:
        yield
    finally:
        _INPUTS.reset(token)


def check_target(path) -> Path:
    """``path`` as a Path, if writing a file there is allowed (see the module docstring)."""
    if str(path).strip() == "":
        raise OutputError(path, "an output file name, got an empty one")
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        info = None
    except OSError as err:
        raise OutputError(path, f"a path that can be written ({_reason(err)})") from None
    if info is not None and not stat.S_ISREG(info.st_mode):
        what = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise OutputError(path, f"a regular file or a new name to write to, but it is {what} "
                                f"(give another -o)")
    for source in _INPUTS.get():
        if info is not None and _same_file(path, source):
            raise OutputError(path, f"an output that is not an input of this command, but it "
                                    f"is {source} (give another -o)")
    return path


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _reason(err: OSError) -> str:
    return err.strerror or err.__class__.__name__


def write_atomic(path, content: str | bytes) -> None:
    """Write to a temporary file beside ``path``, then rename it into place."""
    write_files({path: content})


def write_files(files: dict) -> None:
    """Write several files whole or not at all: every target is checked, every content
    written beside its target, and only then is each renamed into place."""
    targets = [check_target(path) for path in files]
    made = list(dict.fromkeys(parent for target in targets
                              for parent in reversed(target.parents) if not parent.exists()))
    temporary = []
    current = None
    try:
        for current, content in zip(targets, files.values()):
            temporary.append((_write_beside(current, content), current))
        for tmp, current in temporary:
            os.replace(tmp, current)
    except BaseException as err:
        for tmp, _ in temporary:
            if os.path.lexists(tmp):
                os.unlink(tmp)  # before the directories made for them
        _remove_empty(made)
        if isinstance(err, OSError):
            raise OutputError(current, f"a path that can be written ({_reason(err)})") from None
        raise
    finally:
        for tmp, _ in temporary:
            if os.path.lexists(tmp):
                os.unlink(tmp)


def _write_beside(path: Path, content: str | bytes) -> str:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(path, f"a path whose directory can be made ({_reason(err)})") from None
    data = content.encode("utf-8") if isinstance(content, str) else content
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


@contextlib.contextmanager
def directory_beside(out_dir):
    """A temporary directory beside ``out_dir`` to write a set of files into; on success its
    files are moved into ``out_dir`` (made if needed), on any failure or signal it is
    removed: ``out_dir`` gets every file or none."""
    if str(out_dir).strip() == "":
        raise OutputError(out_dir, "an output directory name, got an empty one")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(out_dir, "a directory (or a new name) for the files, but it is a "
                                   "file (give another -o)")
    made = [parent for parent in reversed(out_dir.parents) if not parent.exists()]
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.",
                                     suffix=".part"))
    except OSError as err:
        _remove_empty(made)
        raise OutputError(out_dir, f"a directory that can be written ({_reason(err)})") from None
    try:
        yield work
        _move_into(work, out_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        _remove_empty(made)  # the parents made for it too: a refusal leaves nothing
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _remove_empty(directories) -> None:
    """Remove the directories made (parents first in ``directories``), deepest first."""
    for directory in reversed(directories):
        try:
            directory.rmdir()
        except OSError:
            break  # not empty (another process wrote there) or gone: leave the rest


def _move_into(work: Path, out_dir: Path) -> None:
    names = sorted(p.name for p in work.iterdir())
    if not out_dir.exists():
        try:
            os.rename(work, out_dir)  # one step: the directory appears whole
            return
        except OSError:
            pass  # made meanwhile, or another file system: file by file below
    for name in names:
        check_target(out_dir / name)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            os.replace(work / name, out_dir / name)
    except OSError as err:
        raise OutputError(out_dir, f"a directory that can be written ({_reason(err)})") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
