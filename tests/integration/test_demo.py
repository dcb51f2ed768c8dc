"""`otel-llm-eval demo` end to end: the report's numbers are the sidecar's numbers.

Runs the real demo in a subprocess for a short duration with `--report-json` and `--hold`, so its
sidecar stays up after the report; then reads the sidecar's own endpoints and checks that every
number the report shows for the experiment, SRM, the bandit, the interleaving, human review, the
offline loop and the cost of evaluation equals what the sidecar serves, that nothing was lost on the
wire (calls and feedback the simulated app sent == what the sidecar counted), and that the story's
injected effects were found. The demo runs with a PATH without Prometheus, so this run also shows
that the alerts section is skipped with instructions (tests/integration/test_demo_stack.py runs it
with the real Prometheus and Alertmanager).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

DURATION_SECONDS = 35


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:  # loopback sidecar started by the demo
        return r.read()


def _scrape(url: str) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(_get(url + "/metrics").decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    report_path = tmp / "report.json"
    log_path = tmp / "stdout.txt"
    empty_path = tmp / "no-binaries"
    empty_path.mkdir()
    # a PATH without prometheus: every command the demo runs goes through sys.executable
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PATH": str(empty_path)}
    env.pop("OTEL_LLM_EVAL_AUTOATTACH", None)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "otel_llm_eval.cli", "demo", "--duration", str(DURATION_SECONDS),
             "--seed", "11", "--report-json", str(report_path), "--hold", "120", "--quiet",
             "--state-dir", str(tmp / "state")],
            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + DURATION_SECONDS + 60
        while not report_path.exists() or "stays up" not in log_path.read_text(errors="replace"):
            assert proc.poll() is None, "demo exited early:\n" + log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, "no report in time:\n" + log_path.read_text(errors="replace")
            time.sleep(0.5)
        report = json.loads(report_path.read_text())
        url = report["sidecar"]["url"]
        live = {
            "metrics": _scrape(url),
            "experiment": json.loads(_get(f"{url}/v1/experiments/{report['experiment']['id']}")),
            "bandit": json.loads(_get(f"{url}/v1/bandits/{report['bandit']['id']}")),
            "review": json.loads(_get(f"{url}/v1/review/summary")),
            "labels": json.loads(_get(f"{url}/v1/review/labels?limit=10000")),
            "datasets": sorted((tmp / "state" / "offline" / "datasets").glob("review-failures-*.json")),
        }
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        yield report, live, rc, log_path.read_text(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_the_demo_exits_zero_and_says_the_traffic_is_simulated(demo_run):
    report, _, rc, out = demo_run
    assert rc == 0, out
    assert report["simulated"] is True
    assert "SIMULATED traffic" in out and "This was simulated traffic" in out


def test_every_call_and_feedback_the_app_sent_reached_the_sidecar(demo_run):
    report, live, _, _ = demo_run
    calls = sum(v for (name, labels), v in live["metrics"].items() if name == "llm_requests_total")
    feedback = sum(v for (name, labels), v in live["metrics"].items()
                   if name == "llm_user_feedback_total" and dict(labels).get("feedback_type") in ("positive", "negative"))
    assert calls == report["demo"]["llm_calls_sent"] == report["traffic"]["llm_calls"]
    assert feedback == report["demo"]["feedback_sent"]


GAUGES = {"n": "llm_eval_ab_samples", "mean": "llm_eval_ab_mean", "lift": "llm_eval_ab_lift",
          "ci_lower": "llm_eval_ab_lift_ci_lower", "ci_upper": "llm_eval_ab_lift_ci_upper",
          "p_value": "llm_eval_ab_p_value", "always_valid_p_value": "llm_eval_ab_always_valid_p_value"}
JSON_KEYS = {"mean": "mean", "lift": "rel_lift", "ci_lower": "rel_ci_lower", "ci_upper": "rel_ci_upper",
             "p_value": "p_value", "always_valid_p_value": "always_valid_p_value", "verdict": "verdict"}


def test_the_reported_ab_numbers_are_the_sidecars_metrics_and_json(demo_run):
    report, live, _, _ = demo_run
    exp = report["experiment"]
    analysis = live["experiment"]["analysis"]["metrics"]
    checked = 0
    for metric in ("quality", "thumbs_up", "cost_usd", "latency_seconds"):
        for variant, numbers in exp["metrics"][metric].items():
            for key, gauge in GAUGES.items():
                labels = (("experiment", exp["id"]), ("metric", metric), ("variant", variant))
                assert _close(numbers.get(key), live["metrics"].get((gauge, labels))), (metric, variant, key)
                checked += 1
            for key, json_key in JSON_KEYS.items():
                if key in numbers and key != "verdict":
                    assert _close(numbers[key], analysis[metric]["variants"][variant][json_key]), (metric, variant, key)
                elif key == "verdict" and variant != exp["control"]:
                    assert numbers["verdict"] == analysis[metric]["variants"][variant]["verdict"]
    assert checked >= 4 * 2 * len(GAUGES)
    assert _close(exp["srm_p_value"], live["metrics"][("llm_eval_ab_srm_p_value", (("experiment", exp["id"]),))])


def test_the_reported_bandit_and_interleaving_numbers_are_the_sidecars(demo_run):
    report, live, _, _ = demo_run
    for arm, numbers in report["bandit"]["arms"].items():
        assert _close(numbers["pulls"], live["bandit"]["pulls"][arm])
        assert _close(numbers["mean_reward"], live["bandit"]["mean_reward"][arm])
        assert 0.0 <= numbers["allocation"] <= 1.0
    il = report["interleaving"]
    key = ("llm_eval_interleaving_comparisons", (("experiment", il["id"]),))
    assert _close(il["comparisons"], live["metrics"][key])
    for variant, numbers in il["variants"].items():
        labels = (("experiment", il["id"]), ("variant", variant))
        assert _close(numbers["preference"], live["metrics"][("llm_eval_interleaving_preference", labels)])


def test_the_injected_effects_are_found(demo_run):
    report, _, _, out = demo_run
    exp = report["experiment"]
    quality = exp["metrics"]["quality"][exp["treatment"]]
    assert quality["verdict"] == "better" and quality["ci_lower"] > 0, quality
    assert exp["srm_p_value"] > 0.001  # assignment is by a stable hash: no mismatch
    assert exp["json"]["analysis"]["srm"]["basis"] == "units"  # on users, not calls (several per user)
    arms = report["bandit"]["arms"]
    assert min(arms, key=lambda a: arms[a]["mean_reward"]) == "mistral-small"
    assert report["interleaving"]["variants"]["gpt-4o-mini"]["preference"] > 0
    drift = {(r["feature"], r["method"]): r for r in report["drift"]["detected"]}
    assert any(f == "input_length" and r["first_detected_at"] is not None for (f, _), r in drift.items()), drift
    anomalies = [r for r in report["anomaly"]["detected"]
                 if r["metric"].startswith("judge_score") and r["first_detected_at"] is not None]
    assert anomalies and min(r["first_detected_at"] for r in anomalies) >= report["anomaly"]["injected_at_seconds"]
    # concept drift: the degraded topic is flagged after its injection and before the quality drop
    # (which later hits every topic); no topic is flagged before the injection
    concept = report["concept_drift"]
    degraded = [r for r in concept["detected"] if r["segment"] == concept["topic"] and r["first_detected_at"] is not None]
    assert degraded, concept
    first = min(r["first_detected_at"] for r in degraded)
    assert concept["injected_at_seconds"] <= first < report["anomaly"]["injected_at_seconds"], concept
    assert all(r["detections_before_injection"] == 0 for r in concept["detected"]), concept
    assert "Concept drift (injected at" in out


def _metric_total(live, name, **labels):
    return sum(v for (n, ls), v in live["metrics"].items()
               if n == name and all(dict(ls).get(k) == want for k, want in labels.items()))


def test_without_prometheus_the_alerts_section_says_how_to_get_it_and_is_skipped(demo_run):
    report, _, _, out = demo_run
    assert report["alerts"]["mode"] == "skipped" and report["alerts"]["fired"] == []
    assert "apt-get install -y prometheus prometheus-alertmanager" in out
    assert "FIRED" not in out


def test_the_review_section_is_what_the_sidecar_made_of_the_reviewers_labels(demo_run):
    report, live, _, out = demo_run
    review, summary = report["review"], live["review"]
    assert review["labels_posted"] > 0 and review["labels_posted"] == summary["labeled"]
    assert len(live["labels"]["items"]) == review["labels_posted"]
    # one count per item and issue, issue="none" for a clean item
    assert _metric_total(live, "llm_human_labels_total") == sum(
        max(1, len(lab["issues"])) for lab in live["labels"]["items"])
    assert review["failure_rate"] == summary["failure_rate"] and review["failure_rate"]["n"] > 0
    assert review["top_issues"] == summary["top_issues"]
    assert review["top_issues"][0]["issue"] == "refusal"  # most failures in the story are refusals
    kappa = review["agreement"]["kappa"]
    assert kappa == summary["agreement"]["kappa"] and 0.3 < kappa < 1.0  # reviewers disagree a little
    assert _close(kappa, live["metrics"][("llm_eval_judge_human_agreement",
                                          (("method", "kappa"), ("service", "support-bot")))])
    assert f"failure rate (quality < 3) on the unbiased random sample: {review['failure_rate']['rate'] * 100:.1f}%" in out


def test_the_offline_loop_exports_the_failures_gates_and_records_benchmarks_on_the_sidecar(demo_run):
    report, live, _, out = demo_run
    off = report["offline"]
    assert [s["exit_code"] for s in off["steps"] if s["command"].startswith("otel-llm-eval dataset")] == [0]
    assert len(live["datasets"]) == 1
    samples = json.loads(live["datasets"][0].read_text())["samples"]
    failures = [lab for lab in live["labels"]["items"] if lab["quality"] <= 2 or lab["issues"]]
    assert len(samples) == off["dataset"]["samples"] == len(failures) > 0
    # the new prompt answers the failures better and costs more: the gate says so, exit code 1
    gate = off["gate"]
    steps = json.dumps(off["steps"], indent=1)  # every command's exit code and output, when one fails
    assert gate["current"]["f1"] > gate["baseline"]["f1"] and gate["current"]["cost"] > gate["baseline"]["cost"], steps
    assert gate["exit_code"] == 1 and gate["verdict"].startswith("REGRESSION") and "cost" in gate["verdict"], steps
    assert _metric_total(live, "llm_eval_regression_runs_total", status="fail") == 1, steps
    assert set(off["benchmark_scores"]) == {"gpt-4o-mini+control", "gpt-4o-mini+concise-v2"}, steps
    for model, score in off["benchmark_scores"].items():
        assert _close(score, live["metrics"][("llm_benchmark_score", (("benchmark", "review-failures-f1"),
                                                                       ("model", model)))])
    assert off["benchmark_scores"]["gpt-4o-mini+concise-v2"] == pytest.approx(gate["current"]["f1"], abs=1e-4)


def test_the_cost_section_counts_what_the_sidecar_counted_and_projects_with_the_cost_model(demo_run):
    report, live, _, out = demo_run
    cost = report["cost"]
    assert cost["outputs"] == report["traffic"]["llm_calls"]
    assert cost["spent"]["judge_evaluations"] == _metric_total(live, "llm_eval_judge_sampled_total", evaluator="quality")
    # the sidecar's judge (layer 2 on what the app did not judge) is counted beside it
    assert cost["spent"]["sidecar_judge_evaluations"] == _metric_total(live, "llm_eval_judge_sampled_total",
                                                                       evaluator="sidecar_heuristic") > 0
    assert cost["spent"]["human_labels"] == report["review"]["labels_posted"]
    assert cost["projected"]["judge_evaluations"] == pytest.approx(cost["outputs"] * 0.6)
    # the judge samples 60% by trace id: what was spent is close to what was projected
    assert abs(cost["spent"]["judge_evaluations"] / cost["projected"]["judge_evaluations"] - 1) < 0.1
    assert cost["example_command"] in out


def test_counts_in_the_report_are_integers(demo_run):
    _, _, _, out = demo_run
    for word in ("LLM calls", "user feedback", "judge evaluations", "rewards", "comparisons", "labeled"):
        for m in re.finditer(re.escape(word) + r" (\d[\d.]*)", out):
            assert "." not in m.group(1), m.group(0)


def test_the_ab_section_shows_the_sidecars_decision_exactly_when_it_gives_one(demo_run):
    report, live, _, out = demo_run
    from otel_llm_eval.demo.report import decision_text

    shown = decision_text(live["experiment"])
    assert ("DECISION" in out) == (shown is not None)
    if shown is not None:
        assert shown in out
