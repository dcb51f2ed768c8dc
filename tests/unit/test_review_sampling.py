"""Review sampling: deterministic on the trace id, bounded reservoirs, daily cap, strata."""

from __future__ import annotations

import random

import pytest

from otel_llm_eval.sidecar.plugins.review.sampling import (Candidate, ReviewSampler, SamplingConfig, classify,
                                                   low_score_candidate)
from otel_llm_eval.sidecar.cascade import trace_fraction

DAY = 86400.0


def tid(i: int) -> str:
    return f"{i:032x}"


def test_the_same_trace_gets_the_same_decision_from_independent_samplers():
    cfg = SamplingConfig(random_rate=0.3)
    first = [classify(cfg, tid(i), completion="a fine answer") for i in range(2000)]
    second = [classify(SamplingConfig(random_rate=0.3), tid(i).upper(), completion="a fine answer")
              for i in range(2000)]
    assert first == second
    picked = sum(1 for d in first if d is not None)
    assert 500 <= picked <= 700  # 30% of 2000 = 600


def test_trace_fraction_is_salted_so_review_and_judge_sampling_are_independent():
    assert trace_fraction(tid(7)) != trace_fraction(tid(7), salt="judge")
    assert 0.0 <= trace_fraction(tid(7)) < 1.0


@pytest.mark.parametrize("kwargs, expected_reason", [
    ({"failed_checks": ("pii",)}, "error"),
    ({"error": True}, "error"),
    ({"completion": "ok"}, "length"),                  # shorter than 10 chars
    ({"completion": "x" * 9000}, "length"),            # longer than 8000 chars
    ({"completion": "a fine answer", "confidence": 0.2}, "low_confidence"),
    ({"completion": "a fine answer", "confidence": 0.9}, None),
    ({"completion": "a fine answer"}, None),
])
def test_each_strategy_names_its_reason(kwargs, expected_reason):
    cfg = SamplingConfig(random_rate=0.0)
    got = classify(cfg, tid(1), **kwargs)
    assert (got[0] if got else None) == expected_reason


def test_error_triggered_can_be_turned_off():
    cfg = SamplingConfig(random_rate=0.0, error_triggered=False)
    assert classify(cfg, tid(1), failed_checks=("pii",), completion="a fine answer") is None


@pytest.mark.parametrize("score, expected", [(1.0, ("low_score", 1.0)), (2.0, ("low_score", 2.0)),
                                             (4.0, None), (None, None), (float("nan"), None)])
def test_low_judge_scores_become_candidates(score, expected):
    assert low_score_candidate(SamplingConfig(low_judge_score=2.0), score) == expected


def cand(i: int, reason: str = "error", stratum: str = "", priority: float | None = None) -> Candidate:
    key = f"{i:016x}"
    return Candidate(trace_fraction(tid(i)) if priority is None else priority, key, reason, stratum)


def test_a_burst_cannot_flood_the_queue_and_the_reservoir_is_independent_of_arrival_order():
    cfg = SamplingConfig(reservoir_size=10, window_seconds=60, daily_cap=1000)
    burst = [cand(i) for i in range(5000)]
    a = ReviewSampler(cfg, now=0.0)
    for c in burst:
        a.offer(c)
    b = ReviewSampler(cfg, now=0.0)
    shuffled = burst[:]
    random.Random(3).shuffle(shuffled)
    for c in shuffled:
        b.offer(c)
    assert a.pending() == 10
    got_a = a.drain(60.0)
    got_b = b.drain(60.0)
    assert len(got_a.admitted) == 10
    assert [c.key for c in got_a.admitted] == [c.key for c in got_b.admitted]
    # bottom-k on the trace hash: exactly the 10 smallest fractions survive
    assert [c.key for c in got_a.admitted] == [c.key for c in sorted(burst)[:10]]
    assert a.dropped["reservoir"] == 4990


def test_low_scores_are_kept_lowest_first():
    cfg = SamplingConfig(reservoir_size=3)
    s = ReviewSampler(cfg, now=0.0)
    for i, score in enumerate([4.0, 1.0, 2.0, 1.5, 2.0, 0.5]):
        s.offer(cand(i, reason="low_score", priority=score))
    assert [c.priority for c in s.drain(60.0).admitted] == [0.5, 1.0, 1.5]


def test_the_same_call_is_offered_once():
    s = ReviewSampler(SamplingConfig(), now=0.0)
    assert s.offer(cand(1)) is True
    assert s.offer(cand(1, reason="random")) is False
    assert s.pending() == 1


def test_the_daily_cap_holds_across_windows_and_resets_the_next_utc_day():
    cfg = SamplingConfig(reservoir_size=10, window_seconds=60, daily_cap=25)
    s = ReviewSampler(cfg, now=0.0)
    admitted = 0
    n = 0
    for window in range(5):
        for _ in range(10):
            s.offer(cand(n))
            n += 1
        admitted += len(s.drain(60.0 * (window + 1)).admitted)
    assert admitted == 25
    assert s.dropped["daily_cap"] == 25
    for _ in range(10):
        s.offer(cand(n))
        n += 1
    assert len(s.drain(DAY + 1).admitted) == 10  # a new UTC day


def test_the_window_only_closes_when_due():
    s = ReviewSampler(SamplingConfig(window_seconds=60), now=100.0)
    assert not s.due(159.0)
    assert s.due(160.0)


def test_stratified_sampling_gives_each_stratum_an_equal_share():
    cfg = SamplingConfig(reservoir_size=10, stratify_by="variant", daily_cap=1000)
    s = ReviewSampler(cfg, now=0.0)
    for i in range(1000):   # variant a floods
        s.offer(cand(i, reason="random", stratum=s.stratum_of("a")))
    for i in range(1000, 1010):
        s.offer(cand(i, reason="random", stratum=s.stratum_of("b")))
    for i in range(2000, 2002):  # a small stratum gives up its unused share
        s.offer(cand(i, reason="random", stratum=s.stratum_of("c")))
    got = s.drain(60.0).admitted
    by = {st: sum(1 for c in got if c.stratum == st) for st in "abc"}
    assert by == {"a": 4, "b": 4, "c": 2}


def test_strata_beyond_the_cap_fold_into_other():
    s = ReviewSampler(SamplingConfig(stratify_by="model", max_strata=2), now=0.0)
    assert [s.stratum_of(m) for m in ("m1", "m2", "m3", "m1")] == ["m1", "m2", "other", "m1"]
    assert ReviewSampler(SamplingConfig(), now=0.0).stratum_of("m1") == ""


def test_queue_capacity_limits_admission_and_counts_the_rest():
    s = ReviewSampler(SamplingConfig(reservoir_size=10), now=0.0)
    for i in range(10):
        s.offer(cand(i))
    res = s.drain(60.0, capacity=4)
    assert len(res.admitted) == 4 and res.dropped["queue_full"] == 6


@pytest.mark.parametrize("bad", [{"random_rate": 1.5}, {"reservoir_size": 0}, {"window_seconds": 0},
                                 {"daily_cap": -1}, {"no_such_key": 1}])
def test_bad_sampling_config_is_refused_with_the_key_named(bad):
    with pytest.raises((ValueError, TypeError)) as e:
        SamplingConfig.from_mapping(bad)
    assert next(iter(bad)) in str(e.value)


def test_the_random_sample_ignores_every_other_reason_so_its_failure_rate_is_unbiased():
    # 20% of calls fail a check; the random sample must hold failing calls at the same 20%
    cfg = SamplingConfig(random_rate=0.1)
    rng = random.Random(3)
    failing_in_sample = in_sample = 0
    for i in range(20000):
        trace = f"{rng.getrandbits(128):032x}"
        failed = ("pii",) if rng.random() < 0.2 else ()
        reason, _ = classify(cfg, trace, failed_checks=failed, completion="fine answer") or (None, None)
        if trace_fraction(trace) < cfg.random_rate:
            assert reason == "random"  # a failing call in the random sample is a random item
            in_sample += 1
            failing_in_sample += bool(failed)
        else:
            assert reason == ("error" if failed else None)
    assert in_sample > 1500
    assert abs(failing_in_sample / in_sample - 0.2) < 0.03
