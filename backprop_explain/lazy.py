"""NumPy, imported when first used rather than when a module naming it is imported.

Each layer kind, activation, loss and optimizer keeps its NumPy forward and backward beside
its symbolic form (STYLE.md), so those modules name NumPy at their top. Commands that never
compute with arrays (``keys``, reading and checking a spec) would still pay NumPy's import
(about 60 ms, a fifth of ``keys``) for nothing. ``from .lazy import numpy as np`` gives them
a stand-in: the first attribute read (``np.zeros``) imports the real ``numpy``, copies its
names into the stand-in and makes it a plain module, so that every later read is an
ordinary module lookup. This is what importlib's ``LazyLoader`` does, without putting a
stand-in in ``sys.modules`` (whoever imports ``numpy`` gets the real module) and without
its race between threads on Python 3.11: the import is made once, under the import
system's lock, by ``importlib.import_module``.
"""

from __future__ import annotations

import importlib
import types


class Deferred(types.ModuleType):
    """A module imported at the first read of one of its attributes."""

    def __getattr__(self, attribute: str):
        # the first read: import, copy the names (the module's own __getattr__ too, which
        # makes NumPy's submodules on demand), then become a plain module, whose reads are
        # as fast as the real one's (this hook would slow every read fourfold)
        module = importlib.import_module(self.__name__)
        self.__dict__.update(module.__dict__)
        self.__class__ = types.ModuleType
        return getattr(module, attribute)


numpy = Deferred("numpy")
