"""Calibration of every published decision, by seeded simulation through the sidecar's real path.

A/B experiments go as OTLP spans (users with 1-20 correlated calls each, ICC 0.1-0.3) through the
sidecar's ingest into its state, and the analysis plugin ticks after every batch, the way a dashboard
is watched continuously; seven metrics are tested per experiment. Interleaving and drift go through
the analysis plugin's own ingest hooks. False positives must stay at the nominal 5% within
Monte-Carlo error, and real effects must be found. `benchmarks/calibration_table.py` prints the
same table with more replicates.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import _calibration as cal  # noqa: E402

pytestmark = pytest.mark.timeout(600)


def test_aa_experiments_watched_every_tick_get_a_better_or_worse_verdict_at_most_five_percent_of_the_time():
    r = cal.run_ab(experiments=80, users_per_experiment=120, looks=10, seed=2)
    print(r)
    assert r.basis == "unit"
    assert r.any_verdict <= 0.05 + 2 * cal.mc_se(0.05, r.experiments)
    assert r.ship <= 0.05 + 2 * cal.mc_se(0.05, r.experiments)
    # SRM is checked at 0.001 on units; a correct split almost never trips it
    assert r.srm <= 0.03


def test_a_ten_percent_lift_on_the_primary_metric_is_found_and_nothing_else_is_flagged():
    r = cal.run_ab(experiments=20, users_per_experiment=500, looks=10, seed=3, effect=0.10)
    print(r)
    assert r.primary_better >= 0.8
    assert set(r.per_metric) <= {"quality"}


@pytest.mark.parametrize("values_per_window", [10, 100, 1000],
                         ids=["ten values per window", "a hundred values per window", "a thousand values per window"])
def test_drift_without_drift_alarms_at_most_five_percent_at_every_traffic_level(values_per_window):
    replicates = 120 if values_per_window < 1000 else 60
    rates = cal.run_drift(replicates=replicates, values_per_window=values_per_window, seed=values_per_window)
    for method, rate in rates.items():
        assert rate <= 0.05 + 2 * cal.mc_se(0.05, replicates), (method, rate)


def test_a_fifth_of_a_standard_deviation_and_a_new_ten_percent_category_are_found_at_a_thousand_values():
    rates = cal.run_drift(replicates=40, values_per_window=1000, shift_sd=0.2, new_category_share=0.1, seed=7)
    assert rates["ks"] >= 0.8
    assert rates["chi2"] == 1.0


def test_aa_interleaving_watched_every_tick_rarely_declares_a_winner_and_a_real_preference_is_found():
    assert cal.run_interleaving(comparisons=100, outcomes=400, looks=20, seed=1) <= 0.05 + 2 * cal.mc_se(0.05, 100)
    assert cal.run_interleaving(comparisons=40, outcomes=400, looks=20, preference=0.6, seed=2) >= 0.7


@pytest.mark.parametrize("kwargs", [
    dict(values_per_window=400, seed=1),
    dict(values_per_window=60, seed=5),
    dict(values_per_window=400, seed=2, by_length=True, mix_shift=False),
], ids=["a topic mix that shifts while every topic's quality holds", "the same at sixty values per window",
        "input-length quartiles while quality holds"])
def test_concept_drift_without_a_quality_change_alarms_at_most_five_percent(kwargs):
    rate = cal.run_concept_drift(replicates=80, **kwargs)
    assert rate <= 0.05 + 2 * cal.mc_se(0.05, 80), rate


def test_one_topic_losing_half_a_point_is_found_while_the_mix_stays_the_same():
    assert cal.run_concept_drift(replicates=30, degrade=0.5, mix_shift=False, seed=3) >= 0.9
    # length quartiles dilute the topic (its bin also holds other requests): less power, still found
    assert cal.run_concept_drift(replicates=30, degrade=0.5, mix_shift=False, by_length=True, seed=4) >= 0.8
