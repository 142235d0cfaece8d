"""Layer kinds: one module each (dense, conv2d, pool2d, flatten), registered by spec ``type``.

``LAYER_KINDS`` maps a spec's ``type`` to its kind (base.py describes the interface the
stages use). Every module of this package is imported here, so a new kind's module
registers itself without any other file naming it.
"""

import importlib
import pkgutil

from .base import LAYER_KINDS, Layer, Part

for _module in sorted(info.name for info in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")

LAYER_TYPES = tuple(sorted(LAYER_KINDS))

__all__ = ["LAYER_KINDS", "LAYER_TYPES", "Layer", "Part"]
