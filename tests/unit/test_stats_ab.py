"""A/B statistics: lift intervals, power, ratio metrics, verdicts, and seeded simulations
(A/A false-positive rate, peeking with the always-valid p-value, power)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from otel_llm_eval.stats import ab, decision, power, ratio, sequential


def _bern(n, k):
    return ab.Summary(n, float(k), float(k))


def test_relative_lift_interval_uses_the_delta_method_formula():
    c, v = _bern(1000, 100), _bern(1000, 130)
    r = ab.compare(c, v, binary=True)
    assert r.rel_lift == pytest.approx(0.3)
    var = 0.13 * 0.87 / (0.1 ** 2 * 1000) + 0.1 * 0.9 * 0.13 ** 2 / (0.1 ** 4 * 1000)
    half = 1.959964 * math.sqrt(var)
    assert r.rel_ci_lower == pytest.approx(0.3 - half, rel=1e-5)
    assert r.rel_ci_upper == pytest.approx(0.3 + half, rel=1e-5)
    assert r.abs_lift == pytest.approx(0.03)
    assert r.test == "chi2"


def test_undefined_values_are_none_never_nan():
    one = ab.Summary(1, 2.0, 4.0)
    r = ab.compare(one, one, binary=False)
    assert r.p_value is None and r.abs_ci_lower is None and r.rel_ci_lower is None
    flat = ab.Summary(10, 30.0, 90.0)  # zero variance
    r = ab.compare(flat, flat, binary=False)
    assert r.p_value is None and r.rel_lift == 0.0
    zero_control = ab.compare(ab.Summary(10, 0.0, 0.0), ab.Summary(10, 3.0, 3.0), binary=True)
    assert zero_control.rel_lift is None and zero_control.p_value is not None
    for value in vars(zero_control).values():
        assert not (isinstance(value, float) and not math.isfinite(value))


def test_sample_size_per_arm_matches_the_closed_form_and_the_mde_inverts_it():
    n = power.required_per_arm(0.10, None, 0.20, binary=True)
    # (1.959964 + 0.841621)^2 (0.09 + 0.1056) / 0.02^2
    assert n == math.ceil(2.801585 ** 2 * (0.09 + 0.12 * 0.88) / 0.0004)
    n_cont = power.required_per_arm(4.0, 1.0, 0.05)
    mde_abs, mde_rel = power.minimum_detectable_effect(4.0, 1.0, n_cont)
    assert mde_rel == pytest.approx(0.05, rel=1e-2)
    assert power.required_per_arm(0.0, 1.0, 0.05) is None


def test_ratio_metric_delta_method_variance_matches_a_bootstrap():
    rng = np.random.default_rng(7)
    sessions = rng.poisson(3, 4000) + 1
    messages = rng.poisson(4 * sessions)
    s = ratio.RatioSummary.of(messages, sessions)
    boot = []
    for _ in range(400):
        i = rng.integers(0, 4000, 4000)
        boot.append(messages[i].sum() / sessions[i].sum())
    assert math.sqrt(s.variance_of_ratio()) == pytest.approx(np.std(boot), rel=0.15)


def test_ratio_comparison_detects_more_messages_per_session():
    rng = np.random.default_rng(3)
    def arm(rate):
        y = rng.poisson(2, 3000) + 1
        return ratio.RatioSummary.of(rng.poisson(rate * y), y)
    r = ratio.compare_ratio(arm(4.0), arm(4.4))
    assert r.p_value < 0.001 and r.rel_lift == pytest.approx(0.1, abs=0.03)
    assert r.rel_ci_lower < r.rel_lift < r.rel_ci_upper


@pytest.mark.parametrize("kw,expected", [
    (dict(srm=True, side=1), "srm"),
    (dict(side=1), "better"),
    (dict(side=1, higher_is_better=False), "worse"),
    (dict(side=-1), "worse"),
    (dict(side=0, enough=True), "no_difference"),
    (dict(side=0), "collecting"),
    (dict(side=1, started=False), "collecting"),
], ids=["srm overrides everything", "an interval above zero on a higher-is-better metric is better",
        "an interval above zero on a lower-is-better metric is worse", "an interval below zero is worse",
        "the planned samples without an excluded zero is no difference",
        "before the planned samples an interval around zero is still collecting",
        "nothing is decided before the minimum samples"])
def test_verdict_follows_the_always_valid_interval(kw, expected):
    args = dict(side=0, srm=False, started=True, enough=False, higher_is_better=True)
    args.update(kw)
    assert decision.verdict(**args) == expected


def _ev(metric, lo, hi, **kw):
    return decision.MetricEvidence(metric, lo, hi, **kw)


@pytest.mark.parametrize("primary,guards,srm,expected", [
    (_ev("judge", 0.02, 0.10, target=0.05), [_ev("latency", -0.05, 0.05, margin=0.1)], False, ("ship", "primary_better")),
    (_ev("judge", 0.02, 0.10), [_ev("latency", -0.30, 0.05, margin=0.1)], False, ("keep_running", "guardrail_unproven")),
    (_ev("judge", 0.02, 0.10), [_ev("latency", -0.40, -0.15, margin=0.1)], False, ("dont_ship", "guardrail_worse")),
    (_ev("judge", -0.10, -0.01), [], False, ("dont_ship", "primary_worse")),
    (_ev("judge", -0.02, 0.03, target=0.05), [], False, ("dont_ship", "below_target")),
    (_ev("judge", -0.02, 0.08, target=0.05), [], False, ("keep_running", "collecting")),
    (_ev("judge", -0.02, 0.08, target=0.05, enough=True), [], False, ("dont_ship", "no_difference")),
    (_ev("judge", 0.02, 0.10), [_ev("error", None, None, margin=None, empty=True)], False, ("ship", "primary_better")),
    (_ev("judge", 0.02, 0.10), [], True, ("dont_ship", "srm")),
    (None, [], False, ("keep_running", "no_primary")),
], ids=["a better primary with guardrails within margin ships",
        "a better primary waits until every guardrail is shown within its margin",
        "a guardrail surely worse than its margin blocks the ship",
        "a worse primary is not shipped",
        "a primary that cannot reach its target is not shipped",
        "an undecided primary keeps running",
        "the planned samples without an effect is not shipped",
        "a guardrail with no value in either arm guards nothing",
        "a sample ratio mismatch stops everything",
        "without a primary metric the experiment keeps running"])
def test_experiment_decision(primary, guards, srm, expected):
    d = decision.decide(primary, guards, srm=srm)
    assert (d.decision, d.reason) == expected
    assert d.reason in decision.REASONS and d.decision in decision.DECISIONS and d.text


def test_mixture_p_value_and_interval_agree_at_every_look():
    for est, var in [(0.02, 1e-4), (0.05, 1e-4), (-0.08, 4e-4), (0.0, 1e-3), (0.3, 1e-2)]:
        look = sequential.mixture(est, var, tau2=0.01 * var, alpha=0.05)
        excludes = look.ci_lower > 0 or look.ci_upper < 0
        assert excludes == (look.p_value <= 0.05), (est, var, look)


def test_running_sequence_restarts_when_the_level_changes_and_never_widens_otherwise():
    a = sequential.RunningSequence.start(sequential.SequentialResult(0.2, -0.1, 0.3), 0.025)
    b = a.update(sequential.SequentialResult(0.5, -0.2, 0.2), 0.025)
    assert (b.p_value, b.lower, b.upper) == (0.2, -0.1, 0.2)
    c = b.update(sequential.SequentialResult(0.6, -0.3, 0.4), 0.0125)
    assert (c.p_value, c.lower, c.upper, c.level) == (0.6, -0.3, 0.4, 0.0125)


def test_an_empty_intersection_says_the_effect_changed_and_restarts_from_that_look():
    a = sequential.RunningSequence.start(sequential.SequentialResult(1e-6, 0.5, 0.7), 0.05)
    b = a.update(sequential.SequentialResult(1e-4, 0.2, 0.4), 0.05)  # no overlap with [0.5, 0.7]
    assert (b.p_value, b.lower, b.upper, b.restarts) == (1e-4, 0.2, 0.4, 1)


def test_required_samples_are_where_the_always_valid_test_reaches_its_power():
    var_now, n_now = 1e-3, 2000  # the relative lift's variance with 2000 samples
    n = sequential.gavi_required_n(0.05, var_now, n_now, alpha=0.05, power=0.8, tuning_n=5000)
    assert sequential.gavi_mde(var_now * n_now / n, n, alpha=0.05, power=0.8, tuning_n=5000) == \
        pytest.approx(0.05, rel=1e-6)
    # an always-valid test needs more data than a fixed-horizon one for the same effect and power
    fixed_n = n_now * var_now / (0.05 / (1.959964 + 0.841621)) ** 2
    assert fixed_n < n < 3 * fixed_n


def test_gavi_as_a_mixture_reproduces_the_gavi_p_value():
    diff, se, n = 0.03, 0.012, 4000
    g = sequential.gavi(diff, se, n, alpha=0.05, tuning_n=5000)
    m = sequential.mixture(diff, se * se, tau2=sequential.gavi_tau2(se * se, n, alpha=0.05, tuning_n=5000))
    assert m.p_value == pytest.approx(g.p_value, rel=1e-9)
    assert (m.ci_lower, m.ci_upper) == pytest.approx((g.ci_lower, g.ci_upper), rel=1e-9)


def test_beta_binomial_p_value_is_exact_under_the_null_and_small_for_a_real_preference():
    rng = np.random.default_rng(8)
    ever = 0
    for _ in range(400):
        wins = losses = 0
        best = 1.0
        for x in rng.random(500) < 0.5:
            wins, losses = wins + x, losses + (not x)
            if (wins + losses) % 10 == 0:
                best = min(best, sequential.beta_binomial_p_value(int(wins), int(losses)))
        ever += best < 0.05
    assert ever / 400 <= 0.05
    assert sequential.beta_binomial_p_value(330, 170) < 1e-6


# --- seeded simulations ------------------------------------------------------------------------

def test_aa_fixed_horizon_false_positive_rate_is_alpha():
    rng = np.random.default_rng(2024)
    sims, n = 4000, 2000
    kc, kv = rng.binomial(n, 0.1, sims), rng.binomial(n, 0.1, sims)
    p = [ab.compare(_bern(n, a), _bern(n, b), binary=True).p_value for a, b in zip(kc, kv)]
    fpr = float(np.mean(np.array(p) < 0.05))
    assert 0.04 <= fpr <= 0.06, fpr


def test_aa_continuous_welch_false_positive_rate_is_alpha():
    rng = np.random.default_rng(11)
    sims, n = 2000, 200
    hits = 0
    for _ in range(sims):
        a, b = rng.lognormal(0, 0.5, n), rng.lognormal(0, 0.5, n)
        hits += ab.compare(ab.Summary.of(a), ab.Summary.of(b), binary=False).p_value < 0.05
    assert 0.04 <= hits / sims <= 0.06, hits / sims


def _peeking(rng, sims, looks, batch, p_c, p_v):
    ever_avp = ever_fixed = 0
    for _ in range(sims):
        c = np.cumsum(rng.binomial(batch, p_c, looks))
        v = np.cumsum(rng.binomial(batch, p_v, looks))
        avp, fixed_hit = None, False
        for i in range(looks):
            n = batch * (i + 1)
            r = ab.compare(_bern(n, c[i]), _bern(n, v[i]), binary=True)
            fixed_hit |= r.p_value is not None and r.p_value < 0.05
            mc, mv = c[i] / n, v[i] / n
            rel_var = (mv * (1 - mv) / n) / mc ** 2 + (mc * (1 - mc) / n) * mv ** 2 / mc ** 4
            s = sequential.mixture(r.rel_lift, rel_var, tau2=sequential.gavi_tau2(rel_var, 2 * n, alpha=0.05,
                                                                                   tuning_n=5000))
            avp = sequential.running_min(avp, s.p_value)
        ever_avp += avp is not None and avp < 0.05
        ever_fixed += fixed_hit
    return ever_avp / sims, ever_fixed / sims


def test_peeking_after_every_batch_keeps_the_always_valid_p_under_alpha_while_fixed_p_overshoots():
    rng = np.random.default_rng(5)
    avp_rate, fixed_rate = _peeking(rng, sims=400, looks=40, batch=250, p_c=0.1, p_v=0.1)
    print(f"A/A with 40 looks: always-valid p ever < 0.05 in {avp_rate:.3f}; fixed-horizon p in {fixed_rate:.3f}")
    assert avp_rate <= 0.05
    assert fixed_rate > 0.15  # the reason the always-valid p exists


def test_always_valid_p_still_detects_a_real_lift():
    rng = np.random.default_rng(6)
    avp_rate, _ = _peeking(rng, sims=100, looks=40, batch=250, p_c=0.10, p_v=0.12)
    assert avp_rate >= 0.8


def test_twenty_percent_lift_on_ten_percent_baseline_with_10k_per_arm_is_detected():
    rng = np.random.default_rng(8)
    sims, n = 1000, 10000
    kc, kv = rng.binomial(n, 0.10, sims), rng.binomial(n, 0.12, sims)
    hits = sum(ab.compare(_bern(n, a), _bern(n, b), binary=True).p_value < 0.05 for a, b in zip(kc, kv))
    assert hits / sims >= 0.8


def test_power_analysis_sample_size_gives_eighty_percent_power_in_simulation():
    n = power.required_per_arm(0.10, None, 0.10, binary=True)
    rng = np.random.default_rng(9)
    sims = 1000
    kc, kv = rng.binomial(n, 0.10, sims), rng.binomial(n, 0.11, sims)
    hits = sum(ab.compare(_bern(n, a), _bern(n, b), binary=True).p_value < 0.05 for a, b in zip(kc, kv))
    assert 0.76 <= hits / sims <= 0.85, hits / sims


def test_msprt_always_valid_p_is_monotone_in_evidence():
    weak = sequential.msprt_p_value(0.001, 0.18, 1000, tau2=1e-4)
    strong = sequential.msprt_p_value(0.03, 0.18, 1000, tau2=1e-4)
    assert strong < weak <= 1.0
    assert sequential.msprt_p_value(0.01, 0.0, 1000, tau2=1e-4) is None
