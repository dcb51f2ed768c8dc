"""Bandits, drift, anomaly and judge-rate planning: properties and seeded simulations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from otel_llm_eval.stats import anomaly, ab, bandits, drift, judge_rate, power


# --- bandits -----------------------------------------------------------------------------------

TRUE = {"a": 0.05, "b": 0.10, "c": 0.15}


def _simulate(algorithm, rng, periods=40, per_period=250):
    """Batched bandit as the sidecar runs it: allocation recomputed after each period."""
    arms = list(TRUE)
    n = dict.fromkeys(arms, 0.0)
    s = dict.fromkeys(arms, 0.0)
    regret = 0.0
    alloc = None
    for _ in range(periods):
        stats = {a: bandits.ArmStats(n[a], s[a]) for a in arms}
        if algorithm == "uniform":
            shares = dict.fromkeys(arms, 1 / 3)
        else:
            alloc = bandits.allocate(stats, algorithm=algorithm, floor=0.01, burn_in=50, draws=4000, rng=rng)
            shares = alloc.shares
        pulls = rng.multinomial(per_period, [shares[a] for a in arms])
        for a, k in zip(arms, pulls):
            n[a] += k
            s[a] += rng.binomial(k, TRUE[a])
        regret += bandits.pseudo_regret(list(TRUE.values()), pulls)
    return regret, alloc


@pytest.mark.parametrize("algorithm", ["thompson", "ucb1", "epsilon_greedy"])
def test_bandit_regret_is_below_uniform_allocation(algorithm):
    rng = np.random.default_rng(42)
    uniform, _ = _simulate("uniform", rng)
    regret, _ = _simulate(algorithm, rng)
    assert regret < 0.7 * uniform, (regret, uniform)


def test_thompson_allocation_converges_to_the_best_arm_and_keeps_the_floor():
    rng = np.random.default_rng(1)
    _, alloc = _simulate("thompson", rng, periods=60)
    assert max(alloc.shares, key=alloc.shares.get) == "c"
    assert alloc.shares["c"] >= 0.9
    assert min(alloc.shares.values()) >= 0.01 - 1e-12
    assert sum(alloc.shares.values()) == pytest.approx(1.0)


def test_burn_in_gives_a_uniform_allocation_until_every_arm_has_enough_rewards():
    stats = {"a": bandits.ArmStats(100, 90), "b": bandits.ArmStats(5, 0)}
    alloc = bandits.allocate(stats, burn_in=10)
    assert alloc.burn_in and alloc.shares == {"a": 0.5, "b": 0.5}


def test_unknown_algorithm_and_impossible_floor_are_clear_errors():
    with pytest.raises(ValueError, match="unknown bandit algorithm"):
        bandits.allocate({"a": bandits.ArmStats(1, 1)}, algorithm="softmax")
    with pytest.raises(ValueError, match="floor"):
        bandits.apply_floor({"a": 1, "b": 0}, 0.6)


def test_ucb1_plays_unplayed_arms_first():
    stats = {"a": bandits.ArmStats(10, 9), "b": bandits.ArmStats(0, 0)}
    assert bandits.allocate(stats, algorithm="ucb1", floor=0).shares == {"a": 0.0, "b": 1.0}


# --- drift -------------------------------------------------------------------------------------

def test_no_drift_raises_few_false_alarms():
    rng = np.random.default_rng(3)
    trials = 200
    alarms = {"js": 0, "psi": 0, "ks": 0}
    for _ in range(trials):
        big = drift.numeric_drift(rng.normal(0, 1, 3000), rng.normal(0, 1, 2000))
        small = drift.numeric_drift(rng.normal(0, 1, 300), rng.normal(0, 1, 200))
        for r in big + small:
            alarms[r.method] += bool(r.detected)
    assert alarms["js"] == 0 and alarms["psi"] == 0  # effect sizes never decide
    # KS at alpha 0.05 alarms on ~5% of no-drift windows by construction; allow 2 standard errors
    assert alarms["ks"] / (2 * trials) <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / (2 * trials))


def test_half_sigma_mean_shift_is_detected_by_ks_and_shows_in_both_effect_sizes():
    rng = np.random.default_rng(4)
    big = {r.method: r for r in drift.numeric_drift(rng.normal(0, 1, 3000), rng.normal(0.5, 1, 2000))}
    assert big["ks"].detected and big["js"].score >= 0.1 and big["psi"].score >= 0.2
    assert big["js"].detected is None and big["psi"].detected is None
    small = {r.method: r for r in drift.numeric_drift(rng.normal(0, 1, 300), rng.normal(0.5, 1, 200))}
    assert small["ks"].detected and small["ks"].published == small["ks"].p_value


def test_bins_are_shared_so_disjoint_windows_are_maximally_distant():
    r = {x.method: x for x in drift.numeric_drift(np.arange(100.0), np.arange(1000.0, 1100.0))}
    assert r["js"].score == pytest.approx(1.0)
    assert math.isfinite(r["psi"].score)


def test_identical_constant_windows_show_no_drift():
    r = {x.method: x for x in drift.numeric_drift([3.0] * 50, [3.0] * 40)}
    assert r["js"].score == 0.0 and not r["psi"].detected


def test_a_new_category_is_drift_with_a_finite_statistic():
    ref = {"stop": 900, "length": 100}
    same = {"stop": 88, "length": 12}
    new = {"stop": 60, "length": 10, "content_filter": 30}
    same_r = {x.method: x for x in drift.categorical_drift(ref, same)}
    new_r = {x.method: x for x in drift.categorical_drift(ref, new)}
    assert not same_r["chi2"].detected
    assert new_r["chi2"].detected and math.isfinite(new_r["chi2"].score)
    assert new_r["js"].detected is None and new_r["js"].score > 0.1  # an effect size, not a decision


def test_weighted_reservoirs_give_the_same_histogram_drift_as_the_full_data():
    rng = np.random.default_rng(12)
    full = rng.normal(0, 1, 20000)
    sample = full[:2000]
    cur = rng.normal(0.3, 1, 2000)
    a = {r.method: r for r in drift.numeric_drift(full, cur)}
    b = {r.method: r for r in drift.numeric_drift(sample, cur, reference_weights=np.full(2000, 10.0),
                                                  current_weights=np.ones(2000))}
    assert "ks" not in b
    assert b["js"].score == pytest.approx(a["js"].score, abs=0.03)


# --- anomaly -----------------------------------------------------------------------------------

def test_flat_history_does_not_divide_by_zero_and_flags_a_jump():
    flat = [2.0] * 30
    for r in anomaly.detect_all(flat, 2.0):
        assert r.score == pytest.approx(0.0, abs=1e-9) and r.detected is False
    for r in anomaly.detect_all(flat, 2.5):
        assert math.isfinite(r.score) and r.detected is True


def test_five_sigma_spike_is_flagged_by_z_and_mad_and_normal_points_are_not():
    rng = np.random.default_rng(21)
    history = rng.normal(10, 1, 60)
    spike = {r.method: r for r in anomaly.detect_all(history, float(history.mean() + 5 * history.std(ddof=1)))}
    # z and MAD judge single points; EWMA smooths a lone spike by design (next test: shifts)
    assert spike["zscore"].detected and spike["mad"].detected
    quiet = [anomaly.detect_all(history, float(x)) for x in rng.normal(10, 1, 200)]
    false_alarms = sum(r.detected for rs in quiet for r in rs if r.method == "zscore")
    assert false_alarms <= 4


def test_ewma_flags_a_sustained_two_sigma_shift_that_the_z_score_misses_point_by_point():
    rng = np.random.default_rng(22)
    history = np.append(rng.normal(10, 1, 60), rng.normal(12, 0.1, 6))
    ewma = anomaly.ewma(history, 12.0)
    z = anomaly.zscore(history, 12.0)
    assert ewma.detected and not z.detected


def test_no_verdict_before_the_minimum_history():
    for r in anomaly.detect_all([1.0, 2.0, 3.0], 100.0, min_history=12):
        assert r.score is None and r.detected is None


def test_mad_uses_0_6745_and_the_3_5_threshold():
    history = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    r = anomaly.mad_score(history, 30.0)
    med, mad = 7.0, 3.0
    assert r.score == pytest.approx(0.6745 * (30 - med) / mad)
    assert r.threshold == 3.5 and r.detected


# --- judge-rate planning -----------------------------------------------------------------------

def test_judge_rates_sample_each_arm_just_enough_by_the_planned_end():
    plan = judge_rate.plan_rates(
        {"control": judge_rate.VariantLoad(judged=100, traffic_per_second=0.8),
         "treatment": judge_rate.VariantLoad(judged=20, traffic_per_second=0.2)},
        target_per_arm=1000, remaining_seconds=10000, margin=1.1)
    assert plan.rates["control"] == pytest.approx(1000 / 8000)
    assert plan.rates["treatment"] == pytest.approx(1080 / 2000)
    assert plan.feasible


def test_judge_rates_are_capped_by_the_budget_and_say_so():
    plan = judge_rate.plan_rates({"a": judge_rate.VariantLoad(0, 1.0), "b": judge_rate.VariantLoad(0, 1.0)},
                                 target_per_arm=3600, remaining_seconds=3600, budget_calls_per_hour=3600)
    assert sum(plan.rates.values()) == pytest.approx(1.0)
    assert not plan.feasible and "budget" in plan.reason


def _judge_sim(rng, rates_fn, days=14, calls_per_day=4000, weights=(0.8, 0.2), effect=0.25):
    """Judge scores ~ N(3.5, 1) in control and +effect in treatment; returns (detected, judge calls)."""
    arms = ("control", "treatment")
    judged = {a: [] for a in arms}
    calls = 0
    for day in range(days):
        rates = rates_fn(judged, day)
        for a, w in zip(arms, weights):
            traffic = rng.binomial(calls_per_day, w)
            k = rng.binomial(traffic, rates[a])
            calls += k
            judged[a].extend(rng.normal(3.5 + (effect if a == "treatment" else 0), 1, k))
    r = ab.compare(ab.Summary.of(judged["control"]), ab.Summary.of(judged["treatment"]), binary=False)
    return r.p_value < 0.05, calls


def test_judge_rate_optimizer_reaches_the_same_power_with_fewer_judge_calls_than_a_fixed_rate():
    days, per_day, weights = 14, 4000, (0.8, 0.2)
    target = power.required_per_arm(3.5, 1.0, 0.25 / 3.5)
    # the smallest fixed rate with the same power: n_i = r N w_i and Var = 2 sigma^2 / target
    fixed = min(1.0, target * (1 / weights[0] + 1 / weights[1]) / 2 / (per_day * days))

    def optimized(judged, day):
        loads = {a: judge_rate.VariantLoad(len(judged[a]), per_day * w / 86400.0)
                 for a, w in zip(("control", "treatment"), weights)}
        return judge_rate.plan_rates(loads, target_per_arm=target, remaining_seconds=(days - day) * 86400.0,
                                     min_rate=0.0).rates

    rng = np.random.default_rng(99)
    sims = 300
    f = [_judge_sim(rng, lambda j, d: {"control": fixed, "treatment": fixed}) for _ in range(sims)]
    o = [_judge_sim(rng, optimized) for _ in range(sims)]
    power_fixed, power_opt = np.mean([x[0] for x in f]), np.mean([x[0] for x in o])
    calls_fixed, calls_opt = np.mean([x[1] for x in f]), np.mean([x[1] for x in o])
    print(f"fixed rate {fixed:.3f}: power {power_fixed:.2f}, judge calls {calls_fixed:.0f}; "
          f"optimized: power {power_opt:.2f}, judge calls {calls_opt:.0f}")
    assert power_opt >= 0.75 and abs(power_opt - power_fixed) <= 0.06
    assert calls_opt < 0.75 * calls_fixed


def test_histograms_from_presorted_values_equal_numpy_histograms():
    rng = np.random.default_rng(13)
    v, w = rng.normal(0, 1, 500), rng.uniform(0.5, 2, 500)
    edges = drift.shared_edges(v, rng.normal(0, 1, 100))
    sv, cw = drift.sorted_with_weights(v, w)
    np.testing.assert_allclose(drift.histogram_sorted(sv, cw, edges), np.histogram(v, edges, weights=w)[0])
