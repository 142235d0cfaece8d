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


def key_tex(key: str, inline: bool = False) -> str:
    """A key as LaTeX: ``dE_{tot}/dwo_{1,1}`` → ∂E_{tot}/∂wo_{1,1} as a fraction (``inline``:
    with a slash, for tables), η → \\eta, ``10^-1`` (a slip's factor) → 10^{-1}; names hold
    no "/" and are LaTeX already."""
    from .notation import partial
    if key.startswith("10^"):
        return "10^{" + key[3:] + "}"
    if key == "η":
        return r"\eta"
    top, slash, bottom = key.partition("/")
    if slash and top.startswith("d") and bottom.startswith("d"):
        if inline:
            return r"\partial " + top[1:] + r"/\partial " + bottom[1:]
        return partial(top[1:], bottom[1:])
    return key
