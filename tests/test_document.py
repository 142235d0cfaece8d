"""The worked solution as a reader gets it (issue 10): forms of the derivatives, detail,
order of the backward pass, numbers, notation, language.

The figures themselves are checked elsewhere (finite differences, the course's slides,
PyTorch); here the text that carries them: which forms are written, in which order,
with which digits, in whose letters.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from backprop_explain import api
from worked import EXAMPLES, solved
from backprop_explain.cli import main
from backprop_explain.document import COMPACT_ABOVE, default_detail, render_solution
from backprop_explain.notation import DocumentSymbols, NumberFormat, name_base, significant

COURSE = "examples/mlp_3_2_2_cross_entropy.toml"


def explain(spec=COURSE, **options):
    """The Markdown worked solution (each example derived once for the whole module), a
    long equation's rows joined back (a = b \\ &= c as a = b = c) so that the text can be
    searched whatever the line breaks."""
    options.setdefault("lang", "en")
    solution = solved(spec) if isinstance(spec, str) else api.solve(spec)
    return re.sub(r" \\\\\n &= ", " = ", render_solution(solution, "md", **options))


# ---------------------------------------------------------------------------
# Derivatives: SymPy's form, the textbook's, or both

SIGMA_SYMPY = r"\frac{e^{- y_{o1}}}{\left(1 + e^{- y_{o1}}\right)^{2}}"
SIGMA_TEXTBOOK = r"out_{o1} \cdot \left(1 - out_{o1}\right) = 0.8738 \cdot \left(1 - 0.8738\right)"


def test_both_forms_by_default_the_course_form_first():
    text = explain()
    assert SIGMA_SYMPY in text and SIGMA_TEXTBOOK in text
    assert text.index(SIGMA_SYMPY) < text.index(SIGMA_TEXTBOOK)
    assert r"\sigma\left(y_{o1}\right) \cdot \left(1 - \sigma\left(y_{o1}\right)\right)" in text


def test_course_or_textbook_form_alone():
    course = explain(derivatives="course")
    assert SIGMA_SYMPY in course and SIGMA_TEXTBOOK not in course
    assert r"\frac{e^{- 1.935}}{\left(1 + e^{- 1.935}\right)^{2}} = 0.1103" in course
    textbook = explain(derivatives="textbook")
    assert SIGMA_TEXTBOOK in textbook and SIGMA_SYMPY not in textbook


def test_tanh_relu_softmax_and_the_shortcut_as_a_course_writes_them():
    tanh = explain("examples/mlp_tanh_softmax.toml", detail="full")
    assert r"1 - \tanh^{2}{\left(z^{(1)}_{1} \right)}" in tanh
    assert r"1 - \left(a^{(1)}_{1}\right)^{2}" in tanh or r"1 - a^{(1)}_{1}^{2}" in tanh
    assert r"\tanh{\left(-0.7000\right)}" in tanh and r"\tanh{\left(\left(" not in tanh
    # softmax + cross-entropy: ∂E/∂z_k = softmax_k(z) − t_k, as one step
    assert (r"\frac{\partial E}{\partial z^{(2)}_{1}} &= \operatorname{softmax}_{1}\left("
            r"z^{(2)}_{1}, z^{(2)}_{2}, z^{(2)}_{3}\right) - t_{1}") in tanh
    relu = explain("examples/mlp_relu_softmax_shared.toml", detail="full")
    assert r"\mathbf{1}_{z^{(1)}_{1} > 0}" in relu  # the ReLU indicator
    assert r"a^{(2)}_{1} \cdot \left(1 - a^{(2)}_{1}\right)" in relu  # softmax Jacobian, j = k
    assert r"- a^{(2)}_{1} \cdot a^{(2)}_{2}" in relu  # j ≠ k
    assert r"a^{(2)}_{1} - t_{1}" in relu  # softmax + cross-entropy: out − t


# ---------------------------------------------------------------------------
# Detail: full or compact

def test_default_detail_follows_the_number_of_parameters():
    assert default_detail(api.as_spec(COURSE)) == "full"  # 14 parameters
    conv = api.as_spec("examples/conv_6x6_filter_3x3.toml")
    assert len(conv.parameters) > COMPACT_ABOVE and default_detail(conv) == "compact"
    assert explain() == explain(detail="full")


def test_compact_puts_a_layer_in_one_table():
    full, compact = explain(detail="full"), explain(detail="compact")
    assert "#### Gradient of $wh_{1,1}$" in full and "Gradient of" not in compact
    assert "| parameter | chain rule | numbers | gradient |" in compact
    assert r"| $wh_{1,1}$ | $\partial E_{tot}/\partial y_{h1} \cdot x_1$ | " \
           r"$\left(-0.002990\right) \cdot 0.15$ | $-0.000\,448\,5$ |" in compact
    # the δ of the hidden unit, once, in one line
    assert compact.count(r"\frac{\partial E_{tot}}{\partial y_{h1}} &=") == 1
    assert len(compact) < 0.6 * len(full)


def test_a_zero_gradient_is_said_in_one_line_with_its_reason():
    """v_2 = 0: ∂E/∂out_{o2} = 0, so the three gradients of o2 are 0 without a derivation."""
    for detail in ("full", "compact"):
        text = explain(detail=detail)
        assert "$\\partial E_{tot}/\\partial out_{o2} = 0$, so every derivative through it " \
               "is 0:" in text
        assert (r"\frac{\partial E_{tot}}{\partial wo_{2,1}} &= \frac{\partial E_{tot}}"
                r"{\partial wo_{2,2}} = \frac{\partial E_{tot}}{\partial bo_2}") in text
        assert "Gradient of $wo_{2,1}$" not in text
        assert "Gradient 0, so unchanged: $wo_{2,1}' = wo_{2,1}$" in text


def test_frozen_parameters_on_one_line_in_compact_detail():
    text = explain("examples/conv_6x6_filter_3x3.toml")  # compact by default
    assert "$v_{1}$, $v_{2}$, $v_{3}$, $\\dots$, $c$: frozen, not updated" in text
    assert "Gradient of $v_{1}$" not in text
    assert text.count("frozen") <= 3  # not once per weight
    assert "Frozen, not updated: $v_{1}$, $v_{2}$, $v_{3}$, $\\dots$, $c$." in text


# ---------------------------------------------------------------------------
# Order: each layer's δ's in its own section, every gradient before any update

def test_the_backward_pass_in_the_course_order():
    text = explain()
    output = text.index("\n### Output layer (layer 2)")
    hidden = text.index("\n### Hidden layer 1")
    updates = text.index("## 4. Update of the parameters")
    delta = text.index(r"\frac{\partial E_{tot}}{\partial y_{o1}} &=")
    assert output < delta < hidden < updates  # ∂E/∂y_{o1} belongs to the output layer
    assert text.index("Gradient of $bh_2$") < updates < text.index("wo_{1,1}' &=")
    assert "with their values before the update" in text[hidden:updates]


# ---------------------------------------------------------------------------
# Numbers: exactly N significant digits, given values as given, long runs grouped

@pytest.mark.parametrize("value, digits, shown", [
    (0.237, 4, "0.2370"), (0.25, 4, "0.2500"), (-0.00299, 4, "-0.002990"),
    (-0.105, 2, "-0.11"), (0.105, 2, "0.11"), (9.99996, 4, "10.00"), (4.48e-5, 3, "4.48e-5"),
    (0.0, 4, "0"), (1234.5, 4, "1235"), (12345.6, 4, "1.235e4")])
def test_significant_digits_rounded_half_up_with_trailing_zeros(value, digits, shown):
    assert significant(value, digits) == shown


def test_grouping_given_values_and_the_decimal_comma():
    n, comma = NumberFormat(4), NumberFormat(4, decimal_comma=True)
    assert n.given(0.1000004485) == r"0.100\,000\,448\,5"
    assert comma.given(0.1000004485) == r"0{,}100\,000\,448\,5"
    assert n.given(0.1) == "0.1" and n.given(2.0) == "2" and n.given(1e-6) == "10^{-6}"
    assert n.tex(-0.002990) == "-0.002990" and n.tex(12345.6, 6) == r"12\,345.6"
    two = explain(digits=2)
    assert r"\left(-0.3\right) = -0.11 \\" in two  # y_{h2} = −0.105 to 2 digits
    text = explain()
    assert r"0.15 \cdot 0.1 + 0.25 \cdot 2 + \left(-0.5\right) \cdot 0.5 + 0.2 = 0.4650" in text
    assert "Computed numbers are shown with 4 significant digits, the given ones as given" in text


# ---------------------------------------------------------------------------
# One notation: the spec's names, and the document's own letters never among them


def test_the_loss_in_the_spec_names():
    text = explain()
    assert r"E_{tot} = -\sum_k v_k \ln out_{ok}" in text
    assert r"\hat{y}" not in text and "y_k" not in text
    conv = explain("examples/conv_6x6_filter_3x3.toml")
    assert r"X &= \begin{bmatrix}" in conv  # the cells are x_{r,s}


def test_a_grid_is_named_after_its_cells():
    two = explain("examples/cnn_2ch_stride2_maxpool.toml")
    assert r"X^{(2)}_{\mathrm{pad}} &= " in two  # cells x^{(2)}_{r,s}
    spec = api.as_spec("examples/conv_6x6_filter_3x3.toml")
    data = {"inputs": {"values": [[1, 2, 3], [4, 5, 6], [7, 8, 9]], "names": "i_{#r#s}"},
            "layers": [{"type": "conv2d", "filters": [[0.1, 0.2], [0.3, 0.4]]},
                       {"type": "flatten"},
                       {"type": "dense", "weights": [[0.1, 0.2, 0.3, 0.4]]}],
            "loss": {"type": "half_squared_error", "targets": [1.0]},
            "training": {"learning_rate": 0.1}}
    text = explain(data)
    assert r"Z &= I \star F" in text and r"X \star" not in text  # the cells are i_{rs}
    assert spec.input_names[0] == "x_{1,1}"


# Letters a document has written for itself in the past, or may: each must move away
# when a spec takes it.
HOSTILE = ["y", "v", "k", "j", "s", "g", "m", "f", "u", "c", "r", "n", r"\theta", r"\eta",
           r"\mu", "X", "F", "Z", "t"]


def _math(markdown: str) -> str:
    segments = re.findall(r"\$\$(.*?)\$\$|\$([^$]+)\$", markdown, re.S)
    return "\n".join(a or b for a, b in segments)


_TOKEN = re.compile(r"(\\(?:hat|bar|tilde|vec|dot|check|mathbf|mathcal)\{[^{}]*\}|\\[A-Za-z]+|"
                    r"[A-Za-z]+)((?:\s*[_^]\s*(?:\{(?:[^{}]|\{[^{}]*\})*\}|\w))*)")
_NOT_LETTERS = {r"\frac", r"\partial", r"\cdot", r"\left", r"\right", r"\ln", r"\sum",
                r"\star", r"\odot", r"\quad", r"\qquad", r"\begin", r"\end", r"\text",
                r"\operatorname", r"\mathrm", r"\mathbf", r"\dots", r"\cdots", r"\tanh",
                r"\leftarrow", r"\longrightarrow", r"\sigma", r"\leq", r"\infty", "aligned",
                "bmatrix", "cases", "e", r"\mathrm", r"\sqrt", r"\mathbf{1}"}


def collisions(markdown: str, spec) -> list[str]:
    """Letters of the document's own whose base is the base of a spec name, which are
    neither a spec name nor a spec name with its index written as a letter (v_k)."""
    names = set(spec.input_names) | set(spec.parameters) | set(spec.loss.target_names)
    names |= set(spec.loss.term_names) | {spec.loss.total_name}
    for layer in spec.layers:
        names |= set(layer.quantity_names()) | set(layer.buffers()) | set(layer.constants())
        names |= {n for k in range(len(spec.examples)) for n in layer.example_constants(k)}
    bases = {name_base(n) for n in names}
    generic = [re.compile(re.escape(re.sub(r"\d+", "\x00", n)).replace("\x00", "[a-z0-9]+")
                          .replace(r"\{", r"\{?").replace(r"\}", r"\}?")) for n in names]
    math = re.sub(r"\\(text|operatorname|begin|end)\{[^{}]*\}", " ", _math(markdown))
    found = []
    for match in _TOKEN.finditer(math):
        base, indices = match.group(1), match.group(2)
        token = (base + indices).replace(" ", "")
        # a power (out^{2}), the example of a mini-batch (E^{(k)}) or an example's copy in
        # a graph spanning it (x_1^{[2]}) is not part of a name
        token = re.sub(r"\^\{?\d+\}?$|\^\{\([a-z]\)\}$|\^\{\[\w+\]\}$", "", token)
        token = re.sub(r"^\{(.*)\}$", r"\1", token)
        if base in _NOT_LETTERS or base not in bases:
            continue
        if token.rstrip("'") in names or token.replace("{", "").replace("}", "") in {
                n.replace("{", "").replace("}", "") for n in names}:
            continue
        if any(g.fullmatch(token) for g in generic):
            continue
        found.append(token)
    return sorted(set(found))


def test_the_collision_check_finds_a_clash():
    spec = api.as_spec(COURSE)
    assert "y_k" in collisions(r"$-\sum_k y_k \ln \hat{y}_k$", spec)
    assert collisions(r"$-\sum_{k} v_k \ln out_{ok}$", spec) == []


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_no_letter_of_the_document_is_a_spec_name(example):
    spec = api.as_spec(str(example))
    for detail in ("full", "compact"):
        assert collisions(explain(str(example), detail=detail), spec) == []


def _hostile_spec(seed: int) -> dict:
    """A 2-2-2 network whose names take the document's usual letters."""
    rng = random.Random(seed)
    letters = rng.sample(HOSTILE, 7)
    return {
        "inputs": {"values": [0.3, -0.6], "names": f"{letters[0]}_{{#i}}"},
        "layers": [
            {"type": "dense", "activation": rng.choice(["sigmoid", "tanh", "relu"]),
             "weights": [[0.2, -0.4], [0.5, 0.1]], "biases": [0.1, -0.2],
             "names": {"weights": f"{letters[1]}_{{#j,#i}}", "biases": f"{letters[2]}_{{#j}}",
                       "pre_activations": f"{letters[3]}_{{#j}}"}},
            {"type": "dense", "activation": "softmax", "weights": [[0.3, -0.2], [-0.1, 0.4]],
             "names": {"activations": f"{letters[4]}_{{#j}}"}}],
        "loss": {"type": "cross_entropy", "targets": [1, 0],
                 "names": {"targets": f"{letters[5]}_{{#j}}", "total": letters[6]}},
        "training": {"learning_rate": 0.5, "momentum": 0.9},
    }


@pytest.mark.parametrize("seed", range(6))
def test_random_specs_taking_the_document_letters(seed):
    data = _hostile_spec(seed)
    spec = api.as_spec(data)
    symbols = DocumentSymbols([*spec.input_names, *spec.parameters, spec.loss.total_name,
                               *spec.loss.target_names, *spec.layers[0].quantity_names(),
                               *spec.layers[1].quantity_names()])
    bases = {name_base(n) for n in symbols.taken}
    assert not {name_base(s) for s in symbols.roles.values()} & bases
    assert collisions(explain(data, detail="full"), spec) == []


# ---------------------------------------------------------------------------
# Language: the spec says it, the command line overrides it; plurals; French colons

def test_a_spec_says_its_language_and_the_command_line_overrides_it(tmp_path):
    runner = CliRunner()
    french = runner.invoke(main, ["explain", COURSE]).output
    assert "## 1. Passe avant" in french
    english = runner.invoke(main, ["explain", COURSE, "--lang", "en"]).output
    assert "## 1. Forward pass" in english
    bad = tmp_path / "bad.toml"
    bad.write_text(Path(COURSE).read_text(encoding="utf-8").replace('lang = "fr"', 'lang = "de"'),
                   encoding="utf-8")
    result = runner.invoke(main, ["explain", str(bad)])
    assert result.exit_code == 2 and 'lang: one of en, fr, got the text "de"' in result.output


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_plurals_agree_with_their_numbers(lang):
    for example in EXAMPLES:
        text = _prose(explain(str(example), lang=lang))
        assert "(s)" not in text and "(aux)" not in text and "(x)" not in text, example
    one = explain("examples/mlp_1_1_1_squared_error.toml", lang=lang)
    assert ("1 unit," if lang == "en" else "1 neurone,") in one
    assert ("2 units," if lang == "en" else "2 neurones,") in explain(lang=lang)


def _prose(markdown: str) -> str:
    """Markdown without its math, code and tables' rules."""
    text = re.sub(r"\$\$.*?\$\$|\$[^$]+\$|`[^`]*`", " ", markdown, flags=re.S)
    return re.sub(r"^\|[- |]+\|$", "", text, flags=re.M)


def test_french_typography_in_every_output():
    """A space before : ; ? ! in French prose: the worked solutions, the verify reports
    (text and Markdown), the keys."""
    runner = CliRunner()
    documents = [explain(str(e), lang="fr") for e in EXAMPLES]
    answers = "examples/course_3_2_2_answers.toml"
    documents += [runner.invoke(main, ["verify", COURSE, answers, "--lang", "fr"]).output,
                  runner.invoke(main, ["verify", COURSE, answers, "--lang", "fr",
                                       "--format", "md"]).output]
    for text in documents:
        prose = _prose(text)
        tight = re.findall(r"\S+[^\s\d(\[/]([:;?!])(?=\s|$)", prose)
        assert not tight, re.findall(r".{30}[^\s\d(\[/][:;?!](?=\s|$)", prose)[:3]


def test_options_reach_the_python_api():
    compact = api.explain(COURSE, fmt="tex", detail="compact", derivatives="textbook")
    assert "Passe avant" in compact  # the spec's language
    assert r"\begin{longtable}" in compact and SIGMA_SYMPY not in compact
    result = CliRunner().invoke(main, ["explain", COURSE, "--detail", "compact",
                                       "--derivatives", "textbook", "--format", "tex"])
    assert result.output.strip() == compact.strip()
