"""backprop_explain: worked, checked backpropagation solutions for small MLPs and CNNs."""

__version__ = "0.1.0"

__all__ = ["SpecError", "NetworkSpec", "load_spec", "spec_from_dict", "__version__"]

# Loaded when first used, so that `--version` and `--help` import neither the spec reader
# nor SymPy, NumPy or Jinja2.
_LAZY = {"SpecError": "errors", "NetworkSpec": "spec", "load_spec": "spec",
         "spec_from_dict": "spec"}


def __getattr__(name):
    if name in _LAZY:
        from importlib import import_module
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
