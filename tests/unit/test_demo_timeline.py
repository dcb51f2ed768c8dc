"""The demo's story and its time compression: pure parts, no processes."""

from __future__ import annotations

import pytest

from otel_llm_eval.bundle import alerts as bundle_alerts
from otel_llm_eval.demo import Timeline, alerts
from otel_llm_eval.demo import simulation as sim


@pytest.mark.parametrize("text, seconds", [("5m", 300), ("1h30m", 5400), ("500ms", 0.5), ("1d", 86400)])
def test_prometheus_durations_are_read_and_written_back_exactly(text, seconds):
    assert alerts.parse_duration(text) == seconds
    assert alerts.parse_duration(alerts.format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "5", "m5", "5 m", "1hh"])
def test_a_malformed_duration_is_refused(text):
    with pytest.raises(ValueError):
        alerts.parse_duration(text)


def test_ranges_subqueries_and_offsets_are_divided_and_never_below_one_second():
    expr = 'rate(x[1h]) > 3 * avg_over_time(y[1d:5m] offset 1h) and increase(z[30s]) > 0'
    assert alerts.scale_durations(expr, 120) == (
        'rate(x[30s]) > 3 * avg_over_time(y[12m:2500ms] offset 30s) and increase(z[1s]) > 0')


def test_compressed_rules_divide_every_duration_and_keep_thresholds():
    groups = bundle_alerts.rule_groups()
    compressed = alerts.compressed_rule_groups(groups, 120, 1.0)
    for group, original_group in zip(compressed["groups"], groups["groups"]):
        assert group["interval"] == "1s"
        for rule, original in zip(group["rules"], original_group["rules"]):
            assert "[1h]" not in rule["expr"] and "[5m]" not in rule["expr"]
            if "for" in rule:
                assert alerts.parse_duration(rule["for"]) == pytest.approx(
                    max(1.0, alerts.parse_duration(original["for"]) / 120))
            if "alert" in rule:
                assert rule["labels"][alerts.TIMESCALE_LABEL] == "1/120"
                assert rule["annotations"] == original["annotations"]


def test_the_same_seed_gives_the_same_story_and_another_seed_another():
    first = list(sim.Story(3, 20, 30).requests())
    again = list(sim.Story(3, 20, 30).requests())
    other = list(sim.Story(4, 20, 30).requests())
    assert first == again
    assert [r.question for r in first] != [r.question for r in other]
    phases = [r.phase for r in first]
    assert phases.index("drift") < phases.index("incident")  # the story keeps its order


@pytest.mark.parametrize("duration", [15, 20, 60, 300], ids=lambda d: f"a {d} s run keeps its windows inside the run")
def test_the_timeline_scales_with_the_duration(duration):
    t = Timeline(duration)
    slots_before_drop = sim.INCIDENT_AT * duration / t.slot_seconds
    assert t.anomaly_min_history < slots_before_drop  # an anomaly verdict is possible before the end
    assert t.drift_current_seconds < (1 - sim.DRIFT_AT) * duration  # the current window can fill with drift
    assert t.analysis_interval_seconds <= t.slot_seconds
    assert 1.0 <= 3600 / t.alert_timescale <= duration  # a compressed hour fits in the run
