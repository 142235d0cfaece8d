"""Fuzzing the real command line with hostile and careless inputs (tests/fuzzcases.py):
specs, sheet templates, answers files and output paths. Every case ends in exit 0 (or
verify's 1) or in exit 2 with one line on stderr and no file written; never a traceback,
never a replaced input. A small deterministic share runs here; benchmarks/fuzz_campaign.py
runs thousands and counts them."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzzcases import CONTROL, HTML_HOSTILE, TEX_HOSTILE, answers_case, run_case, spec_case, \
    template_case

FUZZ = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
HANG = 120  # seconds: a case past this is a hang (a bound, not a timing assertion)


def check(case, tmp_path_factory):
    outcome, detail = run_case(case, tmp_path_factory.mktemp("case"), HANG)
    assert outcome in ("ok", "refused"), f"{outcome}: {detail} — {case.describe()[:300]}"


@FUZZ
@given(st.randoms(use_true_random=False))
def test_specs_through_explain_keys_and_verify(tmp_path_factory, rng):
    case = spec_case(rng)
    for compiled, source in (("pdf", "tex"), ("slides-pdf", "beamer")):
        if compiled in case.args:  # LaTeX runs are slow: the hostile-corpus tests compile some
            case.args[case.args.index(compiled)] = source
    check(case, tmp_path_factory)


@FUZZ
@given(st.randoms(use_true_random=False))
def test_answers_files_through_verify(tmp_path_factory, rng):
    check(answers_case(rng), tmp_path_factory)


@settings(FUZZ, max_examples=12)
@given(st.randoms(use_true_random=False))
def test_sheet_templates_through_sheet(tmp_path_factory, rng):
    case = template_case(rng)
    if "pdf" in case.args:
        case.args[case.args.index("pdf")] = "tex"
    check(case, tmp_path_factory)


@pytest.mark.parametrize("seed", range(6))
def test_seeded_cases_of_the_campaign(tmp_path_factory, seed):
    from fuzzcases import any_case
    check(any_case(random.Random(f"1-{seed}")), tmp_path_factory)


def test_the_corpus_holds_each_kind_of_attack():
    assert any("^^5c" in s for s in TEX_HOSTILE) and any("onerror" in s for s in HTML_HOSTILE)
    assert any("\x01" in s for s in CONTROL) and any("\ufffe" in s for s in CONTROL)
