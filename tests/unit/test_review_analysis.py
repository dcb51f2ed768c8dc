"""Feedback analysis: reference values from public examples (Wikipedia, scipy docs)."""

from __future__ import annotations

import pytest

from otel_llm_eval.sidecar.plugins.review.analysis import (LabelFacts, agreement, average_ranks, cohen_kappa,
                                                   failure_rate, rates_by, spearman, summarize,
                                                   top_issues, wilson_interval)


def facts(i, quality, issues=(), judge=None, variant="a", model="m", reason="random"):
    return LabelFacts(item_id=str(i), service="svc", model=model, variant=variant, reason=reason,
                      quality=quality, issues=tuple(issues), judge_score=judge, labeled_unix=float(i))


def test_kappa_matches_the_wikipedia_two_rater_example():
    # 50 proposals: both yes 20, A yes/B no 5, A no/B yes 10, both no 15 -> kappa = 0.4
    a = [1] * 20 + [1] * 5 + [0] * 10 + [0] * 15
    b = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)


@pytest.mark.parametrize("a, b, expected", [
    ([True, False, True, False], [True, False, True, False], 1.0),      # perfect agreement
    ([True, False, True, False], [False, True, False, True], -1.0),     # perfect disagreement
    ([True, True, True], [True, True, True], None),                    # one category: undefined
    ([True], [True], None),                                             # too few pairs
    ([True, False], [True], None),                                      # length mismatch
])
def test_kappa_edge_cases_are_exact_or_undefined(a, b, expected):
    got = cohen_kappa(a, b)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_spearman_matches_the_wikipedia_iq_versus_tv_hours_example():
    iq = [106, 100, 86, 101, 99, 103, 97, 113, 112, 110]
    tv = [7, 27, 2, 50, 28, 29, 20, 12, 6, 17]
    assert spearman(iq, tv) == pytest.approx(-29 / 165)


def test_spearman_with_ties_matches_the_scipy_docs_example():
    assert spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(0.8207826816681233)


@pytest.mark.parametrize("x, y", [([1, 1, 1], [1, 2, 3]), ([1], [2]), ([], [])])
def test_spearman_is_undefined_for_constant_or_tiny_input(x, y):
    assert spearman(x, y) is None


def test_average_ranks_give_ties_the_mean_rank():
    assert average_ranks([10, 20, 20, 30]) == [1.0, 2.5, 2.5, 4.0]


@pytest.mark.parametrize("k, n, lo, hi", [
    (81, 263, 0.2552885198782742, 0.36620957698280004),  # scipy binomtest(81, 263) wilson CI
    (0, 10, 0.0, 0.2775327998628892),
    (5, 10, 0.236593090512564, 0.7634069094874361),
])
def test_wilson_interval_matches_scipy(k, n, lo, hi):
    got = wilson_interval(k, n)
    assert got[0] == pytest.approx(lo, abs=1e-12) and got[1] == pytest.approx(hi, abs=1e-12)


def test_wilson_interval_of_no_data_is_undefined():
    assert wilson_interval(0, 0) is None


def test_failure_rate_counts_quality_below_the_pass_threshold():
    labels = [facts(i, q) for i, q in enumerate([1, 2, 3, 4, 5, 2])]
    fr = failure_rate(labels, pass_quality=3)
    assert (fr["n"], fr["failures"]) == (6, 3)
    assert fr["rate"] == pytest.approx(0.5)
    assert fr["ci_lower"] < 0.5 < fr["ci_upper"]


def test_top_issues_rank_by_count_then_name_and_count_each_item_once():
    labels = [facts(1, 2, ["hallucination", "hallucination"]), facts(2, 2, ["unsafe"]),
              facts(3, 2, ["hallucination", "unsafe"]), facts(4, 5, []), facts(5, 2, ["irrelevant"])]
    got = top_issues(labels, k=2)
    assert got == [{"issue": "hallucination", "count": 2, "share": 0.4},
                   {"issue": "unsafe", "count": 2, "share": 0.4}]


def test_issue_rates_are_computed_per_variant_and_model():
    labels = [facts(1, 2, ["hallucination"], variant="a", model="m1"),
              facts(2, 5, [], variant="a", model="m2"),
              facts(3, 1, ["unsafe"], variant="b", model="m2")]
    by_variant = rates_by(labels, "variant", pass_quality=3)
    assert by_variant["a"]["n"] == 2 and by_variant["a"]["issue_rates"] == {"hallucination": 0.5}
    assert by_variant["a"]["failure_rate"]["rate"] == 0.5
    assert by_variant["b"]["issue_rates"] == {"unsafe": 1.0}
    by_model = rates_by(labels, "model", pass_quality=3)
    assert by_model["m2"]["mean_quality"] == 3.0


def test_agreement_uses_only_labels_with_a_judge_score():
    labels = [facts(1, 5, judge=4.5), facts(2, 1, judge=1.0), facts(3, 4, judge=3.5),
              facts(4, 2, judge=2.5), facts(5, 3, judge=None)]
    got = agreement(labels, pass_quality=3, judge_pass_score=3.0)
    assert got["n"] == 4
    assert got["kappa"] == pytest.approx(1.0)
    assert got["spearman"] == pytest.approx(1.0)


def test_summary_failure_rate_uses_random_samples_only():
    labels = [facts(1, 1, reason="error"), facts(2, 1, reason="error"), facts(3, 5, reason="random"),
              facts(4, 4, reason="random")]
    s = summarize(labels, pass_quality=3, judge_pass_score=3.0)
    assert s["failure_rate"]["rate"] == 0.0 and s["failure_rate"]["n"] == 2
    assert s["failure_rate_all_labeled"]["rate"] == 0.5
    assert s["by_reason"] == {"error": 2, "random": 2}
    assert s["agreement"] == {"n": 0, "kappa": None, "spearman": None}
