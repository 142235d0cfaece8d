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
        _deep_update(table, _read(templates_dir() / "lang" / f"{lang}.toml", lang))
    _deep_update(table, layer_phrases(lang))
    return table


def layer_phrases(lang: str) -> dict:
    """The words of the layer kinds: each kind's templates/layers/<module>.<lang>.toml,
    beside its template fragment, merged (English fills any phrase a translation lacks)."""
    table: dict = {}
    for code in dict.fromkeys(("en", lang)):
        for path in sorted((templates_dir() / "layers").glob(f"*.{code}.toml")):
            _deep_update(table, _read(path, code))
    return table


# {count|singular|plural}: the noun agreeing with a number; French puts 0 and 1 in the
# singular, English 1 only (the rule is marked in each phrase as its file is read).
_PLURAL = re.compile(r"\{(\w+)\|([^|{}]*)\|([^|{}]*)\}")
_SINGULAR_BELOW_TWO = {"fr"}


def _read(path: Path, lang: str = "en") -> dict:
    with open(path, "rb") as handle:
        table = tomllib.load(handle)
    rule = "|<2}" if lang in _SINGULAR_BELOW_TWO else "|=1}"

    def mark(value):
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        if isinstance(value, str):
            return _PLURAL.sub(lambda m: m.group(0)[:-1] + rule, value)
        return value
    return mark(table)


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
    from .notation import as_equation, equation_rows
    env.filters["fill"] = fill
    env.filters["rows"] = equation_rows
    env.filters["as_equation"] = as_equation
    env.filters["tex_escape"] = tex_escape
    env.filters["md_escape"] = md_escape
    env.filters["md_code"] = md_code
    env.filters["visible"] = visible
    env.filters["html_text"] = html_text
    env.filters["html_plain"] = html_plain
    from .keys import key_tex
    env.filters["key_tex"] = key_tex
    return env


_CHOICE = re.compile(r"\{(\w+)\|([^|{}]*)\|([^|{}]*)(?:\|(<2|=1))?\}")


def fill(phrase: str, **values) -> str:
    """Put values into a phrase's {placeholders}; other braces (LaTeX) are left alone.
    ``{count|neurone|neurones}`` gives the noun that agrees with ``count``."""
    def choose(match):
        name, singular, plural, rule = match.groups()
        if name not in values:
            return match.group(0)
        try:
            number = abs(float(values[name]))
        except ValueError:  # 2×3: several
            return plural
        return singular if (number < 2 if rule == "<2" else number == 1) else plural
    if "|" in phrase:
        phrase = _CHOICE.sub(choose, phrase)
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


_DISPLAY = re.compile(r"\n\n+(?=\\begin\{align\*\}|\\begingroup\\allowdisplaybreaks|\\\[)")
_HEADING = re.compile(r"\\(section|subsection|subsubsection)\*?\{[^\n]*\}$")


def tidy_tex(text: str) -> str:
    """A display continues the paragraph before it (a blank line before it would leave an
    empty paragraph above it), except after a heading, where it is told so."""
    def join(match):
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        return "\n\\noindent\\vspace{-\\baselineskip}\n" if _HEADING.search(before) else "\n"
    return _DISPLAY.sub(join, text)
