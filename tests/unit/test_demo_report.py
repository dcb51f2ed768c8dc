"""The demo report's pure helpers: the experiment decision, alert rows, the cost section."""

from __future__ import annotations

import pytest

from otel_llm_eval.demo.report import cost_section, decision_text
from otel_llm_eval.demo.stack import Stack, _unix, alert_rows


@pytest.mark.parametrize("analysis, shown", [
    ({}, None),
    ({"decision": None}, None),
    ({"decision": "ship"}, "ship"),
    ({"decision": {"decision": "keep_running", "reason": "primary_collecting"}},
     "KEEP RUNNING - primary_collecting"),
    ({"decision": {"decision": "dont_ship", "primary": "quality", "guardrails": ["cost_usd", "error"],
                   "text": "concise-v2: guardrail cost_usd is worse by more than its 10% margin"}},
     "DON'T SHIP - concise-v2: guardrail cost_usd is worse by more than its 10% margin "
     "(primary quality; guardrails cost_usd, error)"),
    ({"decision": {"verdict": "don't ship"}}, "don't ship"),
], ids=["no decision: nothing is shown", "a null decision: nothing is shown", "a plain decision is shown",
        "a decision with its reason is shown with it",
        "the sidecar's decision is shown with its text, primary metric and guardrails", "another key for the decision is understood"])
def test_the_ab_section_shows_the_sidecars_decision_only_when_there_is_one(analysis, shown):
    assert decision_text({"analysis": analysis}) == shown
    assert decision_text(None) is None


def _notified(name, at, status="firing", **labels):
    return {"name": name, "status": status, "receiver": "tickets", "severity": "warning",
            "labels": {"alertname": name, "severity": "warning", **labels}, "description": f"{name} as notified",
            "at": at}


def test_alerts_that_resolved_during_the_run_are_still_reported_with_their_notified_text():
    active = [{"state": "firing", "labels": {"alertname": "LLMLowQuality", "severity": "warning"},
               "annotations": {"description": "now"}, "value": "0.75", "activeAt": "x"},
              {"state": "pending", "labels": {"alertname": "LLMThumbsUpDrop", "severity": "warning"}}]
    notified = [_notified("LLMLowQuality", 12.0), _notified("LLMLowQuality", 14.0),
                _notified("LLMInputDrift", 20.0, feature="input_length"),
                _notified("LLMInputDrift", 25.0, status="resolved", feature="input_length")]
    rows = alert_rows(active, notified)
    assert [(r["name"], r["state"], r["fired_at"]) for r in rows] == [
        ("LLMLowQuality", "firing", 12.0), ("LLMInputDrift", "resolved", 20.0)]
    assert rows[0]["description"] == "now" and rows[0]["value"] == 0.75
    assert rows[1]["description"] == "LLMInputDrift as notified"


def test_prometheus_timestamps_with_nanoseconds_are_read():
    assert _unix("1970-01-01T00:00:01.5Z") == 1.5
    assert _unix("1970-01-01T01:00:00.000000001+01:00") == pytest.approx(1e-9)
    assert _unix(None) == 0.0 and _unix("garbage") == 0.0


def test_the_cost_section_projects_the_runs_outputs_and_prices_what_was_spent():
    report = {"traffic": {"llm_calls": 1000.0, "judge_calls": 700.0, "app_judge_calls": 590.0,
                          "sidecar_judge_calls": 110.0, "judge_cost_usd": 0.0},
              "review": {"labels_posted": 80}, "demo": {"traffic_seconds": 30.0}}
    cost = cost_section(report, judge_sample_rate=0.6, review_random_rate=0.05)
    assert cost["projected"]["judge_evaluations"] == pytest.approx(600)
    assert cost["projected"]["human_labels"] == pytest.approx(50)
    assert cost["projected"]["total_usd"] == pytest.approx(600 * 0.05 + 50 * 5)
    assert cost["spent"] == {"judge_evaluations": 590, "sidecar_judge_evaluations": 110, "human_labels": 80,
                             "judge_usd": pytest.approx(29.5),
                             "human_usd": 400.0, "total_usd": pytest.approx(429.5),
                             "judge_usd_counted_by_sidecar": 0.0}
    assert cost["example_command"] == ("otel-llm-eval cost --daily-outputs 10000 --llm-sample-rate 0.59 "
                                       "--human-sample-rate 0.08")
    assert cost["example_month"]["total_cost_usd"] == pytest.approx(10000 * 30 * (0.59 * 0.05 + 0.08 * 5))


def test_a_skipped_stack_gives_an_alerts_section_that_says_why_and_lists_nothing():
    section = Stack.skipped("prometheus not found on PATH, so the alerts section is skipped").alerts_section(120)
    assert section["mode"] == "skipped" and section["fired"] == [] and section["pending"] == []
    assert "not found" in section["mode_text"]
