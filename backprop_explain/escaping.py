"""Escaping: free text from a spec, a template or an answers file, made inert in each format.

The escapers of LaTeX and Markdown text (``tex_escape``, ``md_escape``, ``md_code``; Jinja2
filters of the same names, templating.py) live here; Moodle's HTML is escaped by Jinja2's
autoescape, SVG text by ``svg_text`` (drawing.py) and XML by ElementTree
(moodle.py). What they share is here too: control characters (a newline that would end a
Markdown table row, ESC sequences on a terminal, the code points XML 1.0 forbids:
U+0000–U+001F but tab and newline, U+FFFE, U+FFFF, lone surrogates) are replaced by
U+FFFD before any of them runs. The README's table says which strings reach which format.
"""

from __future__ import annotations

import html
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


def svg_text(text) -> str:
    """``text`` as the character data of an SVG (XML) element: ``&``, ``<``, ``>`` escaped.
    (What ``xml.sax.saxutils.escape`` does, without importing ``urllib`` and ``http``.)"""
    return html.escape(text, quote=False)


def md_code(text) -> str:
    """``text`` as a Markdown code span that no backtick in it can close, on one line, its
    pipes escaped (GFM table cells end at a bare ``|``, even inside a code span)."""
    text = visible(text).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or text.startswith(" ") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


_TEX_SPECIALS = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
    "^": r"\textasciicircum{}", "_": r"\_", "~": r"\textasciitilde{}", "%": r"\%",
    "`": r"\textasciigrave{}",  # else TeX prints an opening quote
}


def _math_characters() -> dict[str, str]:
    """The characters a course's free text is likely to hold (a title "η = 0,1 et σ′") that
    pdflatex's utf8 input with T1 and textcomp cannot set, as math: Greek letters, the
    usual operators and relations, sub- and superscript digits, ℝ. Characters of other
    scripts still stop the build with LaTeX's own line naming the character."""
    greek = ("alpha beta gamma delta varepsilon zeta eta theta iota kappa lambda mu nu xi o "
             "pi rho varsigma sigma tau upsilon varphi chi psi omega").split()
    table = {chr(0x3B1 + i): ("\\" + name if name != "o" else "o")
             for i, name in enumerate(greek)}
    capitals = "A B Gamma Delta E Z H Theta I K Lambda M N Xi O Pi P - Sigma T Upsilon Phi X " \
               "Psi Omega".split()
    table.update({chr(0x391 + i): ("\\" + name if len(name) > 1 else r"\mathrm{" + name + "}")
                  for i, name in enumerate(capitals) if name != "-"})
    table.update(dict(zip("ϑϕϵϱϖ", r"\vartheta \phi \epsilon \varrho \varpi".split())))
    table.update(dict(zip(
        "∂∇≤≥≠≈≡∼∝≪≫↔↦⇐⇒⇔∀∃∅∈∉∑∏∫√∞∘⊙⊗⊕∗⋅−∓∣∩∪⊂⊆⌈⌉⌊⌋",
        (r"\partial \nabla \leq \geq \neq \approx \equiv \sim \propto \ll \gg "
         r"\leftrightarrow \mapsto \Leftarrow \Rightarrow \Leftrightarrow \forall \exists "
         r"\emptyset \in \notin \sum \prod \int \surd \infty \circ \odot \otimes \oplus "
         r"\ast \cdot - \mp \mid \cap \cup \subset \subseteq \lceil \rceil \lfloor "
         r"\rfloor").split())))
    table.update({c: r"\mathbb{" + c2 + "}" for c, c2 in zip("ℝℕℤℚℂ", "RNZQC")})
    table.update({chr(0x2080 + d): f"_{{{d}}}" for d in range(10)})
    table.update({c: f"^{{{d}}}" for c, d in zip("⁰⁴⁵⁶⁷⁸⁹⁺⁻ⁿ", "0456789+-n")})
    table.update({"ᵢ": "_{i}", "′": r"^{\prime}", "″": r"^{\prime\prime}"})
    table.update({"✓": r"\checkmark", "✗": r"\times"})
    return {c: r"\ensuremath{" + tex + "}" for c, tex in table.items()}


_TEX_CHARACTERS = {**_math_characters(), **_TEX_SPECIALS}


def tex_escape(text) -> str:
    """Free text made inert in LaTeX: it prints, it never runs (control characters become
    "?": TeX would stop on them); Greek letters and mathematical signs it cannot set in
    text are set as math (_math_characters)."""
    return "".join(_TEX_CHARACTERS.get(char, char) for char in visible(text, "?"))


def md_escape(text) -> str:
    """Free text shown literally in Markdown (no markup, no HTML, no entity, no math), on
    one line."""
    return re.sub(r"([\\`*_\[\]#|<>$~&!])", r"\\\1", visible(text))


def html_text(text: str, math: bool = False) -> str:
    """Our own text (phrases, LaTeX from our printers) as HTML for MathJax: &, <, > escaped
    (entities already written by ``html_plain`` kept), $$…$$ → \\[…\\], $…$ → \\(…\\);
    ``math``: the text is math already (no $ to convert)."""
    text = str(text)
    if "&" in text:
        text = _AMPERSAND.sub("&amp;", text)
    text = text.replace("<", "&lt;").replace(">", "&gt;")
    if not math and "$" in text:
        text = _DISPLAY_MATH.sub(lambda m: "\\[" + m.group(1) + "\\]", text)
        text = _INLINE_MATH.sub(lambda m: "\\(" + m.group(1) + "\\)", text)
    return text


_AMPERSAND = re.compile(r"&(?!#?\w+;)")  # not one of an entity already written
_DISPLAY_MATH = re.compile(r"\$\$(.+?)\$\$", re.S)
_INLINE_MATH = re.compile(r"\$(.+?)\$", re.S)


_HTML_INERT = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
               "$": "&#36;", "\\": "&#92;", "{": "&#123;", "}": "&#125;", "#": "&#35;",
               "~": "&#126;"}


def html_plain(text: str) -> str:
    """Free text from a spec shown literally in HTML: every markup, math and Cloze character
    written as a character reference, inside a span that Moodle's MathJax (2: tex2jax_ignore,
    3: mathjax_ignore) and link filters (nolink) leave alone."""
    inert = "".join(_HTML_INERT.get(char, char) for char in visible(text))
    return f'<span class="nolink tex2jax_ignore mathjax_ignore">{inert}</span>'
