"""Test settings: hypothesis profiles, and running the suite as if PyTorch were absent.

- ``default`` (every run): 40 random networks per property, derandomized so that
  CI and every machine draw the same ones; ``--hypothesis-profile=thorough`` draws 400
  per property, 6,000 networks (.ci/run runs it after the README's test command),
  derandomized too so that CI passes or fails on the same networks every time
  (``--hypothesis-seed=N`` with ``--hypothesis-profile=explore`` draws new ones).
- ``BPE_NO_TORCH=1``: ``import torch`` fails inside the test run, so the PyTorch
  cross-checks skip and only the independent oracles (reference.py, finite differences,
  published figures) remain: what a fresh ``pip install '.[test]'`` runs.
"""

from __future__ import annotations

import os
import sys

from hypothesis import HealthCheck, settings

if os.environ.get("BPE_NO_TORCH"):
    sys.modules["torch"] = None  # makes `import torch` raise ImportError

_COMMON = dict(deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("default", max_examples=40, derandomize=True, **_COMMON)
settings.register_profile("thorough", max_examples=400, derandomize=True,
                          **_COMMON)  # 15 properties
settings.register_profile("explore", max_examples=400, **_COMMON)  # new networks each run
settings.load_profile("default")


def pytest_terminal_summary(terminalreporter):
    properties = sys.modules.get("test_properties")
    if properties is not None and properties.NETWORKS_CHECKED[0]:
        terminalreporter.write_line(
            f"property tests: {properties.NETWORKS_CHECKED[0]} random networks checked "
            f"against the reference (hypothesis profile {settings.get_current_profile_name()})")
