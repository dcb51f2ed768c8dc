"""`otel-llm-eval demo`: alerts fire in a real Prometheus and reach a real Alertmanager.

Runs the demo for 15 s at 100 requests/s (enough traffic for the experiment to be decided) with Debian's prometheus and prometheus-alertmanager on the PATH (the
default; required under CI=true, skipped locally when missing) and checks that the report's alert
section came from that Prometheus, that alerts of the time-compressed rules fired there, that
Alertmanager routed them by severity to the demo's webhook, and that an alert's numbers are the
numbers of the report's other sections.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import require_binary

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


def test_the_demo_shows_alerts_that_really_fired_and_were_routed(tmp_path):
    require_binary("prometheus")
    require_binary("prometheus-alertmanager", "alertmanager")
    report_path = tmp_path / "report.json"
    res = subprocess.run(
        [sys.executable, "-m", "otel_llm_eval.cli", "demo", "--duration", "15", "--seed", "5", "--rate", "100",
         "--quiet", "--report-json", str(report_path)],
        capture_output=True, text=True, timeout=140)
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(report_path.read_text())
    alerts = report["alerts"]
    assert alerts["mode"] == "prometheus", alerts
    assert "Real Prometheus" in res.stdout and "TIME-COMPRESSED 1/480" in res.stdout
    assert alerts["fired"] and all(a["timescale"] == "1/480" for a in alerts["fired"]), alerts
    assert {"LLMLowQuality", "LLMSafetyViolation"} & {a["name"] for a in alerts["fired"]}
    for a in alerts["fired"]:
        assert f"FIRED  {a['name']} [{a['severity']}]" in res.stdout
    routed = {(n["name"], n["severity"], n["receiver"]) for n in alerts["notified"] if n["status"] == "firing"}
    assert routed, alerts
    receivers = {"critical": "pager", "warning": "tickets", "info": "info"}
    for name, severity, receiver in routed:
        assert receiver == receivers[severity], (name, severity, receiver)

    # The experiment's decision alert says what the report's A/B section says, with the table's lift.
    exp = report["experiment"]
    decision = exp["json"]["analysis"]["decision"]["variants"][exp["treatment"]]
    alert_for = {"dont_ship": "LLMExperimentDontShip", "ship": "LLMExperimentReadyToShip"}
    assert decision["decision"] in alert_for, decision  # the story decides within 15 s
    decided = [a for a in alerts["fired"] if a["name"] == alert_for[decision["decision"]]
               and a["state"] == "firing" and a["labels"].get("experiment") == exp["id"]]
    assert decided, alerts["fired"]
    for a in decided:
        assert a["labels"]["variant"] == exp["treatment"]
        table = exp["metrics"][a["labels"]["metric"]][a["labels"]["variant"]]
        assert a["value"] == pytest.approx(table["lift"], rel=1e-9), (a, table)
