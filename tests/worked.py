"""The bundled examples' worked solutions, each derived once for the whole test run
(test_document.py, test_layout.py read them in every language and detail)."""

from __future__ import annotations

import functools
from pathlib import Path

from backprop_explain import api

# every example spec (not the course's answers, not the sheet template)
EXAMPLES = sorted(p for p in Path("examples").glob("*.toml")
                  if p.name not in ("course_3_2_2_answers.toml", "sheet_mlp_3_2_2.toml"))


@functools.lru_cache(maxsize=None)
def solved(spec: str):
    """api.solve(spec) of a spec file, once."""
    return api.solve(spec)
