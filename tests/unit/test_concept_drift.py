"""Concept drift: quality per input segment, current vs reference, the mix of segments controlled."""

from __future__ import annotations

import random

import pytest

from otel_llm_eval.stats import concept


def _pairs(rng, counts, means, sd=0.5):
    return [(seg, rng.gauss(means[seg], sd)) for seg, n in counts.items() for _ in range(n)]


def test_a_mix_shift_moves_the_average_but_no_segment_and_is_fully_explained_by_the_mix():
    rng = random.Random(1)
    means = {"a": 4.0, "b": 2.0}
    ref = _pairs(rng, {"a": 800, "b": 200}, means)
    cur = _pairs(rng, {"a": 200, "b": 800}, means)
    segments, mix = concept.concept_drift(ref, cur)
    assert not any(s.detected for s in segments)
    assert mix.mean_current - mix.mean_reference == pytest.approx(-1.2, abs=0.1)
    assert mix.explained_by_mix == pytest.approx(-1.2, abs=0.1) and abs(mix.unexplained) < 0.1


def test_one_segment_that_degrades_is_flagged_with_its_shift_and_the_rest_are_not():
    rng = random.Random(2)
    ref = _pairs(rng, {"a": 500, "b": 500}, {"a": 4.0, "b": 4.0})
    cur = _pairs(rng, {"a": 300, "b": 300}, {"a": 4.0, "b": 3.5})
    by = {s.segment: s for s, in zip(concept.concept_drift(ref, cur)[0])}
    assert by["b"].detected and by["b"].score == pytest.approx(-0.5, abs=0.1)
    assert not by["a"].detected


def test_segments_with_too_few_values_are_reported_but_not_tested():
    segments, _ = concept.concept_drift([("a", 1.0)] * 5 + [("a", 2.0)] * 5, [("a", 5.0)] * 10, min_samples=20)
    assert segments[0].p_value is None and segments[0].detected is None


@pytest.mark.parametrize("values,bins,x,label", [
    (list(range(100)), 4, 10, "q1"), (list(range(100)), 4, 60, "q3"), (list(range(100)), 4, 99, "q4"),
    ([5] * 50, 4, 5, "q2"),
], ids=["a low value is in the first quartile", "a value above the median is in the third",
        "the maximum is in the last", "constant lengths give one edge"])
def test_input_length_quantile_bins(values, bins, x, label):
    assert concept.bin_label(x, concept.quantile_edges(values, bins)) == label
