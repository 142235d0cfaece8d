"""backprop_explain: worked, checked backpropagation solutions for small MLPs and CNNs."""

__version__ = "0.1.0"

from .errors import SpecError  # noqa: E402
from .spec import NetworkSpec, load_spec, spec_from_dict  # noqa: E402

__all__ = ["SpecError", "NetworkSpec", "load_spec", "spec_from_dict", "__version__"]
