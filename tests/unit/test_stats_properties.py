"""Property tests: whatever the inputs, the statistics return finite numbers or None, never NaN/Inf,
p-values stay in [0, 1], and the always-valid p never rises."""

from __future__ import annotations

import dataclasses
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from otel_llm_eval.stats import ab, anomaly, drift, interleaving, sequential, srm

finite_floats = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


def _all_finite_or_none(result) -> None:
    values = dataclasses.asdict(result).values() if dataclasses.is_dataclass(result) else result
    for v in values:
        if isinstance(v, float):
            assert math.isfinite(v), result


@st.composite
def summaries(draw, binary):
    n = draw(st.integers(0, 10_000))
    if binary:
        k = draw(st.integers(0, n))
        return ab.Summary(n, float(k), float(k))
    values = draw(st.lists(finite_floats, min_size=0, max_size=30))
    return ab.Summary.of(values) if values else ab.Summary(0, 0.0, 0.0)


@settings(max_examples=150, deadline=None)
@given(st.booleans().flatmap(lambda b: st.tuples(st.just(b), summaries(b), summaries(b))))
def test_comparisons_are_finite_or_none_for_any_sufficient_statistics(args):
    binary, c, v = args
    r = ab.compare(c, v, binary=binary)
    _all_finite_or_none(r)
    assert r.p_value is None or 0.0 <= r.p_value <= 1.0
    s = sequential.gavi(r.abs_lift, r.std_error, c.n + v.n)
    _all_finite_or_none(s)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from("abcd"), st.integers(0, 10**6), min_size=0, max_size=4),
       st.dictionaries(st.sampled_from("abcd"), st.floats(0, 1), min_size=0, max_size=4))
def test_srm_never_produces_nan_for_any_counts_and_weights(counts, weights):
    r = srm.srm(counts, weights)
    _all_finite_or_none(r)
    assert r.p_value is None or 0.0 <= r.p_value <= 1.0


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=3), st.integers(0, 1000), max_size=6),
       st.dictionaries(st.text(min_size=1, max_size=3), st.integers(0, 1000), max_size=6))
def test_categorical_drift_is_finite_with_unseen_and_missing_categories(ref, cur):
    for r in drift.categorical_drift(ref, cur):
        _all_finite_or_none(r)


@settings(max_examples=100, deadline=None)
@given(st.lists(finite_floats, min_size=1, max_size=200), st.lists(finite_floats, min_size=1, max_size=200))
def test_numeric_drift_is_finite_for_any_samples(ref, cur):
    for r in drift.numeric_drift(ref, cur):
        _all_finite_or_none(r)


@settings(max_examples=100, deadline=None)
@given(st.lists(finite_floats, min_size=0, max_size=60), finite_floats)
def test_anomaly_scores_are_finite_for_any_history(history, value):
    for r in anomaly.detect_all(history, value, min_history=3):
        _all_finite_or_none(r)


@given(st.lists(st.one_of(st.none(), st.floats(0, 1)), max_size=30))
def test_running_min_never_rises(ps):
    current = None
    for p in ps:
        nxt = sequential.running_min(current, p)
        if current is not None:
            assert nxt <= current
        current = nxt


@given(st.integers(0, 500), st.integers(0, 500), st.integers(0, 500))
def test_preference_is_within_half_and_p_in_unit_interval(w, l, t):
    r = interleaving.preference(w, l, t)
    assert r.preference is None or -0.5 <= r.preference <= 0.5
    assert r.p_value is None or 0.0 <= r.p_value <= 1.0
