"""Templates and phrases: the Jinja2 environment, the phrase files, and text filters.

Below every stage that writes words (document*, diagram, sheet, moodle, verify) and
every layer kind's view (layers/): the templates in ``templates/`` hold the layout,
the phrase files (``templates/lang/*.toml``, ``templates/layers/*.toml``) the words.
"""

from __future__ import annotations

import re
import tomllib
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .escaping import html_plain, html_text, md_code, md_escape, tex_escape, visible

LANGUAGES = ("en", "fr")  # a phrase file each: templates/lang/<lang>.toml


def templates_dir() -> Path:
    """The installed ``backprop_explain.templates`` package, or ``templates/`` in a checkout."""
    try:
        return Path(str(resources.files("backprop_explain.templates")))
    except ModuleNotFoundError:  # pragma: no cover - running from a bare checkout
        return Path(__file__).resolve().parent.parent / "templates"


@lru_cache(maxsize=None)
def phrases(lang: str) -> dict:
    """The phrase file of a language (templates/lang/{lang}.toml) with the words of every
    layer kind; English fills any phrase a translation lacks."""
    table = _read(templates_dir() / "lang" / "en.toml")
    if lang != "en":
        _deep_update(table, _read(templates_dir() / "lang" / f"{lang}.toml"))
    _deep_update(table, layer_phrases(lang))
    return table


def layer_phrases(lang: str) -> dict:
    """The words of the layer kinds: each kind's templates/layers/<module>.<lang>.toml,
    beside its template fragment, merged (English fills any phrase a translation lacks)."""
    table: dict = {}
    for code in dict.fromkeys(("en", lang)):
        for path in sorted((templates_dir() / "layers").glob(f"*.{code}.toml")):
            _deep_update(table, _read(path))
    return table


def _read(path: Path) -> dict:
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def _deep_update(base: dict, extra: dict) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value


@lru_cache(maxsize=None)
def environment():
    """The Jinja2 environment of the templates (Jinja2 loads here: `keys` needs only the
    phrases)."""
    import jinja2
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["fill"] = fill
    env.filters["tex_escape"] = tex_escape
    env.filters["md_escape"] = md_escape
    env.filters["md_code"] = md_code
    env.filters["visible"] = visible
    env.filters["html_text"] = html_text
    env.filters["html_plain"] = html_plain
    from .keys import key_tex
    env.filters["key_tex"] = key_tex
    return env


def fill(phrase: str, **values) -> str:
    """Put values into a phrase's {placeholders}; other braces (LaTeX) are left alone."""
    for key, value in values.items():
        phrase = phrase.replace("{" + key + "}", str(value))
    return phrase


def render_template(name: str, context: dict) -> str:
    text = environment().get_template(name).render(**context)
    return re.sub(r"\n{3,}", "\n\n", text).lstrip("\n")


@lru_cache(maxsize=None)
def extra_phrases(lang: str) -> dict:
    """Phrases of diagrams, sheets and Moodle questions (templates/lang/sheet.{lang}.toml),
    with the words of every layer kind (their [diagram] captions)."""
    table = _read(templates_dir() / "lang" / f"sheet.{lang}.toml")
    _deep_update(table, layer_phrases(lang))
    return table
