"""Characters no output format can carry, and Markdown code spans that cannot be closed.

The escapers proper live where their format is written: ``document.tex_escape`` and
``document.md_escape`` (free text in LaTeX and Markdown), Jinja2's autoescape (Moodle's
HTML), ``xml.sax.saxutils.escape`` (SVG) and ElementTree (Moodle's XML). What they share is
here: control characters (a newline that would end a Markdown table row, ESC sequences on a
terminal, the code points XML 1.0 forbids: U+0000–U+001F but tab and newline, U+FFFE,
U+FFFF, lone surrogates) are replaced by U+FFFD before any of them runs.
"""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"
# Not in XML 1.0's Char production, or a control character a reader would not see.
_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def visible(text, replacement: str = REPLACEMENT) -> str:
    """``text`` on one line, with every control character (tab, newline too) replaced."""
    return _INVISIBLE.sub(replacement, str(text))


def xml_chars(text) -> str:
    """``text`` with the characters XML 1.0 cannot carry replaced (tab and newline kept)."""
    return _XML_FORBIDDEN.sub(REPLACEMENT, str(text))


def md_code(text) -> str:
    """``text`` as a Markdown code span that no backtick in it can close, on one line, its
    pipes escaped (GFM table cells end at a bare ``|``, even inside a code span)."""
    text = visible(text).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or text.startswith(" ") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
