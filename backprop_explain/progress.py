"""Progress of long work (many SGD steps, many variants, PDF builds), shown by whoever asks.

Library code announces work with :func:`task` and reports each unit done; nothing is shown
unless a caller installed a reporter with :func:`showing` (the command line does: a click
progress bar on stderr, for work large enough to take more than a few seconds).
"""

from __future__ import annotations

import contextlib
import contextvars

_REPORTER = contextvars.ContextVar("reporter", default=None)


@contextlib.contextmanager
def task(label: str, total: int, long: bool = True):
    """``with task("variants", n) as advance: ... advance(1)``; a no-op without a reporter,
    or when the caller knows the work is short (``long=False``)."""
    reporter = _REPORTER.get()
    if reporter is None or not long:
        yield lambda done=1: None
        return
    with reporter(label, total) as advance:
        yield advance


@contextlib.contextmanager
def showing(reporter):
    """Within this block, tasks report to ``reporter(label, total)``, a context manager
    yielding ``advance(done)``."""
    token = _REPORTER.set(reporter)
    try:
        yield
    finally:
        _REPORTER.reset(token)
