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
