"""Reference cases from public docs (scipy docstrings, NIST, GrowthBook) against our stats."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from otel_llm_eval.stats import ab, anomaly, drift, interleaving, srm


def test_proportions_chi_square_matches_the_scipy_contingency_example():
    # chi2_contingency([[10,10,20],[20,20,20]]) -> 2.777778, p 0.249352, dof 2
    r = ab.chi_square_proportions([10, 10, 20], [30, 30, 40])
    assert r.statistic == pytest.approx(2.777778, abs=1e-6)
    assert r.p_value == pytest.approx(0.249352, abs=1e-6)
    assert r.dof == 2


def test_two_arm_chi_square_has_no_continuity_correction_and_equals_the_pooled_z_test():
    s, n = [30, 45], [1000, 1000]
    r = ab.chi_square_proportions(s, n)
    p1, p2 = s[0] / n[0], s[1] / n[1]
    pool = sum(s) / sum(n)
    z = (p2 - p1) / math.sqrt(pool * (1 - pool) * (1 / n[0] + 1 / n[1]))
    assert r.statistic == pytest.approx(z * z, rel=1e-9)
    assert r.p_value == pytest.approx(2 * st.norm.sf(abs(z)), rel=1e-9)
    yates = st.chi2_contingency([[30, 970], [45, 955]], correction=True)
    assert r.p_value < yates.pvalue  # the corrected test is more conservative: we are not it


@pytest.mark.parametrize("counts,weights,stat,p", [
    ({"a": 16, "b": 18, "c": 16, "d": 14, "e": 12, "f": 12}, dict.fromkeys("abcdef", 1.0), 2.0, 0.849145),
    ({"a": 16, "b": 18, "c": 16, "d": 14, "e": 12, "f": 12},
     {"a": 16, "b": 16, "c": 16, "d": 16, "e": 16, "f": 8}, 3.5, 0.623388),
    ({"control": 10000, "treatment": 10050}, {"control": 0.5, "treatment": 0.5}, 0.12469, 0.72400),
    ({"a": 3300, "b": 3350, "c": 3500}, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, 6.4039, 0.040682),
], ids=["scipy chisquare equal expected", "scipy chisquare unequal expected",
        "srm 10000 vs 10050 at 50/50", "srm three arms 3300 3350 3500"])
def test_srm_goodness_of_fit_reproduces_the_reference_values(counts, weights, stat, p):
    r = srm.srm(counts, weights)
    assert r.score == pytest.approx(stat, rel=1e-4)
    assert r.p_value == pytest.approx(p, abs=1e-5)
    assert r.detected is False


def test_srm_flags_a_variant_that_has_traffic_but_no_weight():
    r = srm.srm({"a": 10, "b": 10, "ghost": 3}, {"a": 0.5, "b": 0.5})
    assert r.detected is True and r.p_value == 0.0


def test_srm_is_undefined_without_traffic_or_with_one_arm():
    assert srm.srm({}, {"a": 0.5, "b": 0.5}).p_value is None
    assert srm.srm({"a": 5}, {"a": 1.0}).p_value is None


@pytest.mark.parametrize("alpha,fdr", [(0.05, 0.4872), (0.001, 0.01865)])
def test_srm_false_discovery_rate_matches_growthbooks_rationale_for_alpha_0_001(alpha, fdr):
    assert srm.false_discovery_rate(alpha, 0.05, 1.0) == pytest.approx(fdr, abs=1e-4)


def test_sign_test_matches_binom_test_3_of_13():
    assert interleaving.sign_test(3, 13) == pytest.approx(0.09229, abs=1e-5)
    r = interleaving.preference(wins=3, losses=10, ties=0)
    assert r.p_value == pytest.approx(0.092285, abs=1e-5)
    assert r.preference == pytest.approx(3 / 13 - 0.5)


def test_preference_counts_ties_as_half_and_excludes_them_from_the_sign_test():
    r = interleaving.preference(wins=6, losses=2, ties=2)
    assert r.preference == pytest.approx((6 + 1) / 10 - 0.5)
    assert r.p_value == pytest.approx(st.binomtest(6, 8, 0.5).pvalue)
    assert interleaving.preference(0, 0, 4).p_value is None


def test_ks_matches_the_exact_two_sample_reference():
    r = drift.ks_test([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert r.score == pytest.approx(1.0)
    assert r.p_value == pytest.approx(2 / math.comb(10, 5), rel=1e-6)
    assert r.detected is True


def test_jensen_shannon_distance_is_base_2_as_the_scipy_examples():
    assert drift.js_distance([1, 0, 0], [0, 1, 0]) == pytest.approx(1.0)
    # scipy's natural-log example 0.464501 is the same distance scaled by sqrt(ln 2)
    assert drift.js_distance([1, 0], [0.5, 0.5]) == pytest.approx(0.464501 / math.sqrt(math.log(2)), rel=1e-5)
    from scipy.spatial.distance import jensenshannon
    p, q = [0.1, 0.4, 0.5], [0.3, 0.3, 0.4]
    assert drift.js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2), rel=1e-9)


@pytest.mark.parametrize("mu,sigma,lam,L,upper,lower", [
    (50, 2.0539, 0.3, 3, 52.5884, 47.4116),
    (10, 0.8, 0.1, 3, 10.5506, 9.4494),
], ids=["NIST example", "R qcc example"])
def test_ewma_steady_state_limits_match_the_published_charts(mu, sigma, lam, L, upper, lower):
    u, lo = anomaly.ewma_limits(mu, sigma, lam, L)
    assert u == pytest.approx(upper, abs=1e-4)
    assert lo == pytest.approx(lower, abs=1e-4)


def test_welch_from_sufficient_statistics_equals_scipy_on_raw_values():
    rng = np.random.default_rng(1)
    a, b = rng.normal(3, 1, 40), rng.normal(3.4, 2, 25)
    r = ab.welch(ab.Summary.of(a), ab.Summary.of(b))
    ref = st.ttest_ind(b, a, equal_var=False)
    assert r.statistic == pytest.approx(ref.statistic, rel=1e-9)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-9)


def test_holm_and_bh_adjust_as_the_textbook_step_procedures():
    p = [0.01, 0.04, 0.03, 0.005]
    assert ab.holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert ab.benjamini_hochberg(p) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert ab.holm([None, 0.02]) == [None, 0.02]
