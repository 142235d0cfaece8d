"""NumPy, imported when first used rather than when a module naming it is imported.

Each layer kind, activation, loss and optimizer keeps its NumPy forward and backward beside
its symbolic form (STYLE.md), so those modules name NumPy at their top. Commands that never
compute with arrays (``keys``, reading and checking a spec) would still pay NumPy's import
(about 60 ms, a fifth of ``keys``) for nothing. ``from .lazy import numpy as np`` gives them
the module as importlib's documented lazy import: the real ``numpy`` is executed at the first
attribute access (``np.zeros``), after which the module is the ordinary one. If NumPy is
already imported (a notebook, PyTorch), that module is used as it is.
"""

from __future__ import annotations

import importlib.util
import sys


def lazy_module(name: str):
    """The module ``name``, executed only when one of its attributes is first read."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


numpy = lazy_module("numpy")
