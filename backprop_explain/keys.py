"""Keys: how every quantity of a solution is named (JSON, verify, answers files, sheets).

Below every stage that names a quantity: the derivation writes them, the layer kinds
read local partials by them, verify and the sheets look answers up by them.
"""


def adjoint_key(loss: str, node: str) -> str:
    return f"d{loss}/d{node}"


def local_key(child: str, parent: str) -> str:
    return f"d{child}/d{parent}"


def updated_key(name: str) -> str:
    return f"{name}'"


def state_key(letter: str, name: str) -> str:
    """A quantity an optimizer keeps for parameter ``name``: v_{w} (velocity), m_{w}, …"""
    return f"{letter}_{{{name}}}"


def example_name(name: str, k: int) -> str:
    """The copy of a per-example quantity for example k (1-based) in a graph spanning a
    mini-batch: x_1 → x_1^{[2]}, z^{(1)}_{1} → {z^{(1)}_{1}}^{[2]} (braced when the name
    has a superscript or a prime). Brackets never occur in a spec's names, so a copy
    cannot clash with one."""
    base = "{" + name + "}" if ("^" in name or "'" in name) else name
    return f"{base}^{{[{k}]}}"
