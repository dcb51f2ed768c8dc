"""Alert and recording rules, their promtool unit tests, runbooks and alertmanager.yml.

promtool and amtool are real (Debian's prometheus / prometheus-alertmanager packages); without
them these tests skip locally and fail under CI=true.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from bundle_helpers import ROOT, promql_metric_names
from conftest import require_binary
from otel_llm_eval import catalog
from otel_llm_eval.bundle import alerts
from otel_llm_eval.bundle.common import JOB_NAME

ALERTS_DIR = ROOT / "alerts"
RULES = ALERTS_DIR / alerts.RULES_FILE
RULES_TEST = ALERTS_DIR / alerts.RULES_TEST_FILE
ALERTMANAGER = ALERTS_DIR / "alertmanager.yml"
SEVERITIES = {"critical", "warning", "info"}


def _rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [r for g in groups for r in g["rules"]]


def _alert_rules() -> list[dict]:
    return [r for r in _rules() if "alert" in r]


def _run(*cmd: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=cwd)


def _duration_minutes(text: str) -> int:
    m = re.fullmatch(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?", text)
    assert m and text, f"unexpected duration {text!r}"
    d, h, mi = (int(x or 0) for x in m.groups())
    return d * 1440 + h * 60 + mi


def test_promtool_check_rules_is_clean_with_every_lint():
    promtool = require_binary("promtool")
    r = _run(promtool, "check", "rules", "--lint=all", "--lint-fatal", str(RULES))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in r.stdout


def test_promtool_unit_tests_pass_for_every_alert():
    promtool = require_binary("promtool")
    r = _run(promtool, "test", "rules", RULES_TEST.name, cwd=ALERTS_DIR)
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_unit_tests_fail_when_an_expectation_is_wrong(tmp_path):
    """The committed tests can fail: flip one expected severity and promtool must report it."""
    promtool = require_binary("promtool")
    shutil.copy(RULES, tmp_path / RULES.name)
    tests = yaml.safe_load(RULES_TEST.read_text())
    firing = tests["tests"][0]["alert_rule_test"][1]["exp_alerts"][0]
    firing["exp_labels"]["severity"] = "info" if firing["exp_labels"]["severity"] != "info" else "critical"
    (tmp_path / RULES_TEST.name).write_text(yaml.safe_dump(tests))
    r = _run(promtool, "test", "rules", RULES_TEST.name, cwd=tmp_path)
    assert r.returncode == 1
    assert "FAILED" in r.stdout + r.stderr


def test_every_alert_is_silent_one_step_before_its_for_and_fires_with_full_labels_and_annotations_at_it():
    tests = yaml.safe_load(RULES_TEST.read_text())
    step = _duration_minutes(tests["evaluation_interval"])
    by_key = {}
    for t in tests["tests"]:
        for case in t["alert_rule_test"]:
            by_key.setdefault(case["alertname"], []).append((t, case))
    for rule in _alert_rules():
        name, severity = rule["alert"], rule["labels"]["severity"]
        cases = [(t, c) for t, c in by_key.get(name, [])
                 if any(a["exp_labels"]["severity"] == severity for a in c["exp_alerts"])]
        assert cases, f"no promtool test shows {name} ({severity}) firing"
        test, firing = cases[0]
        fire_at = _duration_minutes(firing["eval_time"])
        silent = [c for c in test["alert_rule_test"] if c["alertname"] == name and not c["exp_alerts"]]
        assert [_duration_minutes(c["eval_time"]) for c in silent] == [fire_at - step], name
        for exp in firing["exp_alerts"]:
            assert exp["exp_labels"]["severity"] == severity
            # every label of the rule and every annotation key is asserted
            assert set(rule["labels"]) <= set(exp["exp_labels"]), name
            assert set(exp["exp_annotations"]) == set(rule["annotations"]), name
            assert "{{" not in "".join(exp["exp_annotations"].values()), name


def test_every_alert_waits_exactly_its_for_duration_in_the_test_data():
    """The firing time in the tests is the condition's start plus `for`, as in the generator."""
    for alert in alerts.ALERTS:
        rule = next(r for r in _alert_rules()
                    if r["alert"] == alert.name and r["labels"]["severity"] == alert.severity)
        assert _duration_minutes(rule.get("for", "0m") or "0m") == alert.for_minutes


@pytest.mark.parametrize("rule", _alert_rules(), ids=lambda r: f"{r['alert']}-{r['labels']['severity']}")
def test_alert_is_named_llm_pascal_case_with_severity_summary_description_and_runbook(rule):
    assert re.fullmatch(r"LLM(?:[A-Z][a-z0-9]*|[A-Z]+(?=[A-Z][a-z]|$))+", rule["alert"]), rule["alert"]
    assert rule["labels"]["severity"] in SEVERITIES
    ann = rule["annotations"]
    assert ann["summary"] and ann["description"]
    assert ann["runbook_url"].endswith("#" + rule["alert"].lower())
    if rule["alert"] != "LLMEvalSidecarDown":  # its value is always 0 (up == 0)
        assert "$value" in ann["description"], "the description states the value"


def test_every_alert_has_a_runbook_section():
    text = (ROOT / "docs" / "runbooks.md").read_text()
    headings = set(re.findall(r"^## (\S+)\s*$", text, flags=re.M))
    names = {r["alert"] for r in _alert_rules()}
    assert names <= headings, f"missing runbook sections: {sorted(names - headings)}"
    assert headings <= names, f"runbook sections without an alert: {sorted(headings - names)}"


def test_rules_name_only_catalog_metrics_recording_rules_and_the_scrape_job():
    recorded = {r["record"] for r in _rules() if "record" in r}
    allowed = catalog.series_names() | recorded | {"up"}
    for rule in _rules():
        unknown = promql_metric_names(rule["expr"]) - allowed
        assert not unknown, f"{rule.get('alert') or rule.get('record')} names unknown metrics {unknown}"
    assert f'up{{job="{JOB_NAME}"}}' in RULES.read_text()


def test_recording_rules_are_defined_before_the_alerts_that_read_them_in_one_group():
    groups = yaml.safe_load(RULES.read_text())["groups"]
    seen: set[str] = set()
    for group in groups:
        for rule in group["rules"]:
            uses = {n for n in promql_metric_names(rule["expr"]) if ":" in n}
            assert uses <= seen, f"{rule.get('alert') or rule.get('record')} reads {uses - seen} before it is recorded"
            if "record" in rule:
                seen.add(rule["record"])


def test_low_quality_reads_the_le_3_bucket_that_the_catalog_defines():
    assert 3.0 in catalog.metric("llm_quality_score").buckets
    assert 'llm_quality_score_bucket{le="3.0"}' in RULES.read_text()


def test_seed_thresholds_are_in_the_rules():
    by_name = {(r["alert"], r["labels"]["severity"]): r for r in _alert_rules()}
    assert "> 3" in by_name[("LLMHighLatencyP95", "warning")]["expr"]
    assert "> 0.1" in by_name[("LLMLowQuality", "warning")]["expr"]
    assert "< 0.001" in by_name[("LLMExperimentSampleRatioMismatch", "warning")]["expr"]
    assert by_name[("LLMSafetyViolation", "critical")].get("for") is None  # any violation, at once


def test_amtool_accepts_the_alertmanager_config():
    amtool = require_binary("amtool")
    r = _run(amtool, "check-config", str(ALERTMANAGER))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


@pytest.mark.parametrize("labels,receiver", alerts.route_cases(),
                         ids=[f"{c[0].get('alertname')}-{c[0].get('severity', 'none')}" for c in alerts.route_cases()])
def test_alert_routes_to_the_receiver_for_its_severity(labels, receiver):
    amtool = require_binary("amtool")
    args = [f"{k}={v}" for k, v in sorted(labels.items())]
    r = _run(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}",
             f"--verify.receivers={receiver}", *args)
    assert r.returncode == 0, r.stdout + r.stderr


def test_amtool_route_test_fails_for_a_wrong_receiver():
    amtool = require_binary("amtool")
    r = _run(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}",
             "--verify.receivers=info", "severity=critical", "alertname=LLMSafetyViolation")
    assert r.returncode != 0


def test_critical_inhibits_warning_of_the_same_alert_and_service():
    cfg = yaml.safe_load(ALERTMANAGER.read_text())
    rule = cfg["inhibit_rules"][0]
    assert rule["source_matchers"] == ['severity="critical"']
    assert rule["target_matchers"] == ['severity="warning"']
    assert {"alertname", "service"} <= set(rule["equal"])
    # both severities of the same alert exist, so the inhibition has something to do
    assert {("LLMHighErrorRate", "critical"), ("LLMHighErrorRate", "warning")} <= {
        (a.name, a.severity) for a in alerts.ALERTS}

