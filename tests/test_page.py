"""The worked solution as an interactive page, checked in a real browser.

Headless Chromium (Debian's) driven by Playwright, the network off: for every example
the page loads from a file URL with no request but its own and no console error; every
formula is MathML laid out with a size; clicking each parameter drawn lights exactly the
arrows of its chain rule (computed here from the derivation's own paths), and a filter
weight the input and feature-map cells of its convolution; step mode shows one step more
per key press and one less back; printing shows everything and no button. Without a
browser: the page is one self-contained file, its CSP allows its own style and script
by their hashes only, hostile text stays text, the math converter handles every formula.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
from xml.etree import ElementTree
from pathlib import Path

import pytest

from backprop_explain import api
from backprop_explain.mathml import html_math, to_mathml
from backprop_explain.page import render_page

EXAMPLES = sorted(p for p in Path("examples").glob("*.toml")
                  if not p.name.startswith("sheet_") and "answers" not in p.name)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


# ---------------------------------------------------------------------------
# Without a browser


def test_page_is_self_contained_and_its_csp_allows_only_its_own_style_and_script():
    html = render_page(api.solve("examples/mlp_3_2_2_cross_entropy.toml"), "fr")
    assert not re.search(r"\b(src|href)=", html)  # nothing loaded, nothing linked
    assert "http://" not in html.replace('xmlns="http://www.w3.org', "")
    assert "https://" not in html
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', html).group(1)
    style = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
    script = re.search(r"<script>(.*?)</script>", html, re.S).group(1)

    def digest(text):
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"
    assert csp.startswith("default-src 'none';")
    assert f"style-src {digest(style)};" in csp and f"script-src {digest(script)};" in csp
    assert "unsafe" not in csp
    assert not re.search(r"\sstyle=", html) and not re.search(r"\son\w+=", html)


def test_page_is_the_same_bytes_every_time():
    solution = api.solve("examples/cnn_3x3_filter_2x2.toml")
    assert render_page(solution, "en") == render_page(api.solve("examples/cnn_3x3_filter_2x2.toml"), "en")


def hostile_spec():
    import tomllib
    with open("examples/mlp_1_1_1_squared_error.toml", "rb") as handle:
        raw = tomllib.load(handle)
    raw["title"] = ('</title><script>alert(1)</script><img src=x onerror=alert(2)> '
                    '\\(x\\) $y$ {{ }} & "quoted" \u001e0\u001e')
    return api.spec_from_dict(raw)


def test_hostile_title_stays_text():
    html = render_page(api.solve(hostile_spec()), "en")
    assert html.count("<script") == 2  # the data block and the page's script
    assert "<img" not in html and "onerror=" not in html.replace("onerror=alert", "")
    assert "&lt;/title&gt;&lt;script&gt;" in html


def every_formula() -> list[str]:
    from backprop_explain.document import render_solution
    formulas = []
    for path in EXAMPLES:
        solution = api.solve(path)
        for detail in ("full", "compact"):
            html = render_solution(solution, "html", "fr", detail=detail)
            formulas += re.findall(r"\\\((.+?)\\\)|\\\[(.+?)\\\]", html, re.S)
    return [a or b for a, b in formulas]


def test_every_formula_of_every_example_becomes_mathml():
    """No command left as text (a backslash), no & shown, every aligned row a table row."""
    formulas = every_formula()
    assert len(formulas) > 1000
    for latex in set(formulas):
        latex = latex.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
        mathml = to_mathml(latex, display=latex.startswith(r"\begin{aligned}"))
        assert "\\" not in mathml and "<mi>&amp;</mi>" not in mathml, latex
        if latex.startswith(r"\begin{aligned}"):  # a table row per line of the display
            flat = re.sub(r"\\begin\{(bmatrix|cases)\}.*?\\end\{\1\}", "", latex, flags=re.S)
            table = ElementTree.fromstring(mathml.replace("&#x", "&amp;#x"))[0]
            assert len(table) == flat.count("\\\\") + 1, latex


def test_without_latex2mathml_the_page_says_what_to_install(tmp_path, monkeypatch):
    """The html extra is optional: without it, --format html is one line naming the
    package to install (not "check the spec's names"), exit 2, and no file."""
    import sys
    from click.testing import CliRunner
    from backprop_explain.cli import main
    monkeypatch.setitem(sys.modules, "latex2mathml", None)
    monkeypatch.setitem(sys.modules, "latex2mathml.converter", None)
    out = tmp_path / "page.html"
    result = CliRunner().invoke(main, ["explain", "examples/mlp_3_2_2_cross_entropy.toml",
                                       "--format", "html", "-o", str(out)])
    assert result.exit_code == 2 and not out.exists()
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "pip install 'backprop_explain[html]'" in lines[0]
    assert "spec's names" not in lines[0]


def test_mathml_numbers_functions_and_known_factors():
    assert "<mn>0,1349</mn>" in to_mathml("E = 0{,}1349")
    assert "<mn>0.1349</mn>" in to_mathml("E = 0.1349")
    table = to_mathml(r"\begin{aligned}a &= b \\ &= \begin{bmatrix} 1 & 2 \\ 3 & 4\end{bmatrix}\end{aligned}", True)
    assert table.count("<mtr>") == 2 + 2  # two rows, and the matrix's two
    known = to_mathml(r"\known{3}{\frac{\partial E}{\partial y}} = 1")
    assert re.search(r'<mrow class="known" data-known="3">(<mrow>)?<mfrac>', known)
    assert html_math(r"<p>\(x &lt; y\)</p>") == f"<p>{to_mathml('x < y')}</p>"


# ---------------------------------------------------------------------------
# In the browser

playwright = pytest.importorskip("playwright.sync_api") if CHROMIUM else None
needs_browser = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return tmp_path_factory.mktemp("screenshots")


def open_page(browser, path: Path):
    context = browser.new_context(viewport={"width": 1200, "height": 900}, offline=True)
    page = context.new_page()
    seen = {"console": [], "requests": []}
    page.on("console", lambda m: seen["console"].append(f"{m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: seen["console"].append(f"pageerror: {e}"))
    page.on("request", lambda r: seen["requests"].append(r.url))
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    return context, page, seen


def expected_arrows(solution, step, svg_lines, drawn) -> set[tuple[str, str]]:
    """The arrows of ∂E/∂θ's chain rule: consecutive quantities drawn along each of its
    paths (the derivation's list), from the input θ multiplies (∂child/∂θ's symbol)."""
    out = set()
    for term in step.terms:
        last = term.factors[-1]
        starts = [s.name for s in last.derivative.free_symbols if s.name in drawn] or [None]
        for path in step.paths:
            if path[1] != last.numerator:
                continue
            shown = [n for n in path if n in drawn]
            for start in starts:
                chain = ([start] if start else []) + shown
                out |= {(a, b) for a, b in zip(chain, chain[1:]) if (a, b) in svg_lines}
    return out


@needs_browser
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_page_in_the_browser(browser, shots, tmp_path, path):
    solution = api.solve(path)
    lang = "fr" if EXAMPLES.index(path) % 2 else "en"
    file = tmp_path / f"{path.stem}.html"
    file.write_text(render_page(solution, lang), encoding="utf-8")
    context, page, seen = open_page(browser, file)
    try:
        # MathML laid out, each formula with a size
        sizes = page.eval_on_selector_all("math", "ms => ms.map(m => { const r = m.getBoundingClientRect(); return [r.width, r.height]; })")
        assert sizes and all(w > 0 and h > 0 for w, h in sizes)
        page.screenshot(path=str(shots / f"{path.stem}.png"))

        # clicking each parameter drawn lights exactly the arrows of its chain rule
        lines = page.eval_on_selector_all("line.edge", "ls => ls.map(l => [l.id, l.dataset.from || '', l.dataset.to || ''])")
        svg_lines = {(a, b) for _, a, b in lines if a and b}
        by_id = {i: (a, b) for i, a, b in lines}
        drawn = set(page.eval_on_selector_all("[data-name]", "es => es.map(e => e.dataset.name)"))
        steps = {s.target: s for section in solution.example.sections for s in section.steps
                 if s.kind == "gradient"}
        clicked = 0
        for name, step in steps.items():
            selector = f'text.value[data-ref="{name}"], rect.cell[data-name="{name}"]'
            element = page.query_selector(selector)
            if element is None:  # not drawn (a column abbreviated, equal weights said once)
                continue
            element.dispatch_event("click")
            on = page.eval_on_selector_all("line.edge.on", "ls => ls.map(l => l.id)")
            assert {by_id[i] for i in on} == expected_arrows(solution, step, svg_lines, drawn), name
            focused = page.eval_on_selector_all("section.step.focus", "ss => ss.map(s => s.innerText)")
            assert len(focused) == 1
            clicked += 1
        assert clicked >= min(len(steps), 4)
        assert not seen["console"], seen["console"]
        assert seen["requests"] == [file.resolve().as_uri()]
    finally:
        context.close()


@needs_browser
def test_a_filter_weight_lights_the_cells_of_its_convolution(browser, tmp_path):
    solution = api.solve("examples/conv_6x6_filter_3x3.toml")
    file = tmp_path / "conv.html"
    file.write_text(render_page(solution, "en"), encoding="utf-8")
    context, page, seen = open_page(browser, file)
    try:
        steps = {s.target: s for section in solution.example.sections for s in section.steps
                 if s.kind == "gradient"}
        name = next(n for n in steps if page.query_selector(f'rect.cell[data-name="{n}"]'))
        page.click(f'rect.cell[data-name="{name}"]')
        lit = set(page.eval_on_selector_all("rect.cell.on", "cs => cs.map(c => c.dataset.name)"))
        step = steps[name]
        inputs = {s.name for term in step.terms for s in term.factors[-1].derivative.free_symbols}
        maps = {term.factors[-1].numerator for term in step.terms}  # the cells it feeds
        graph = solution.graph
        maps |= {kid for cell in maps for kid in graph.children[cell]}  # after the activation
        drawn = set(page.eval_on_selector_all("rect.cell", "cs => cs.map(c => c.dataset.name)"))
        assert inputs & drawn and maps & drawn
        assert (inputs | maps | {name}) & drawn <= lit
        assert len(inputs & drawn) == len([t for t in step.terms])  # one input cell per window
        assert not seen["console"]
    finally:
        context.close()


@needs_browser
def test_step_mode_keys_hover_and_print(browser, shots, tmp_path):
    solution = api.solve("examples/mlp_3_2_2_cross_entropy.toml")
    file = tmp_path / "course.html"
    file.write_text(render_page(solution, "fr"), encoding="utf-8")
    context, page, seen = open_page(browser, file)
    visible = "ss => ss.filter(s => getComputedStyle(s).display !== 'none').length"
    try:
        total = page.eval_on_selector_all("section.step", "ss => ss.length")
        assert page.eval_on_selector_all("section.step", visible) == total
        page.click("#mode")
        assert page.eval_on_selector_all("section.step", visible) == 1
        for k in range(2, 7):
            page.keyboard.press("ArrowRight")
            assert page.eval_on_selector_all("section.step", visible) == k
        for k in range(5, 2, -1):
            page.keyboard.press("ArrowLeft")
            assert page.eval_on_selector_all("section.step", visible) == k
        page.click("#next")
        assert page.eval_on_selector_all("section.step", visible) == 4
        # printed: every step, no button
        page.emulate_media(media="print")
        assert page.eval_on_selector_all("section.step", visible) == total
        assert page.eval_on_selector(".toolbar", "t => getComputedStyle(t).display") == "none"
        page.emulate_media(media="screen")
        page.click("#mode")  # everything again
        # a factor "already computed" outlines the step that computed it, which comes before
        known = page.query_selector_all("mrow.known")
        assert known
        known[0].hover()
        source = page.eval_on_selector_all("section.step", "ss => ss.map((s, i) => s.classList.contains('source') ? i : -1).filter(i => i >= 0)")
        here = known[0].evaluate("k => [...document.querySelectorAll('section.step')].indexOf(k.closest('section'))")
        assert len(source) == 1 and source[0] < here
        page.mouse.move(0, 0)
        page.click('text.value[data-ref="wh_{1,1}"]')
        page.screenshot(path=str(shots / "course_clicked.png"))
        assert not seen["console"]
    finally:
        context.close()


@needs_browser
def test_hostile_title_runs_nothing_in_the_browser(browser, tmp_path):
    file = tmp_path / "hostile.html"
    file.write_text(render_page(api.solve(hostile_spec()), "en"), encoding="utf-8")
    context, page, seen = open_page(browser, file)
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        page.reload()
        assert dialogs == []
        assert "<script>alert(1)</script>" in page.title()
        assert page.eval_on_selector_all("script", "ss => ss.length") == 2
        assert not [m for m in seen["console"] if "Content Security Policy" in m]
    finally:
        context.close()
