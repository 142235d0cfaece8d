"""backprop_explain: worked, checked backpropagation solutions for small MLPs and CNNs.

The names below are the API's (api.py has them all: verify, sheet, keys, the fast path):
``explain``, ``solve``, ``load_spec``, ``spec_from_dict``, ``from_torch``, ``to_toml``,
``export_torch``.
"""

__version__ = "0.1.0"

__all__ = ["SpecError", "NetworkSpec", "load_spec", "spec_from_dict", "explain", "solve",
           "from_torch", "to_toml", "export_torch", "__version__"]

# Loaded when first used, so that `--version` and `--help` import neither the spec reader
# nor SymPy, NumPy or Jinja2.
_LAZY = {"SpecError": "errors", "NetworkSpec": "spec", "load_spec": "api",
         "spec_from_dict": "api", "explain": "api", "solve": "api", "from_torch": "api",
         "to_toml": "api", "export_torch": "api"}


def __getattr__(name):
    if name in _LAZY:
        from importlib import import_module
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
