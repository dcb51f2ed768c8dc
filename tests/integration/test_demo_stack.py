"""`otel-llm-eval demo --stack`: alerts fire in a real Prometheus and reach a real Alertmanager.

Runs the demo for 15 s with Debian's prometheus and prometheus-alertmanager (required under CI=true,
skipped locally when missing) and checks the report's alert section came from that Prometheus, that
an alert of the time-compressed rules fired there, and that Alertmanager routed it by severity to
the demo's webhook.
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
        [sys.executable, "-m", "otel_llm_eval.cli", "demo", "--duration", "15", "--seed", "5", "--stack",
         "--quiet", "--report-json", str(report_path)],
        capture_output=True, text=True, timeout=140)
    assert res.returncode == 0, res.stdout + res.stderr
    alerts = json.loads(report_path.read_text())["alerts"]
    assert alerts["mode"] == "prometheus", alerts
    assert "Real Prometheus" in res.stdout
    compressed = [a for a in alerts["firing"] if a["timescale"] != "production"]
    assert compressed, alerts
    assert {"LLMLowQuality", "LLMSafetyViolation"} & {a["name"] for a in alerts["firing"]}
    routed = {(n["name"], n["severity"], n["receiver"]) for n in alerts["notified"] if n["status"] == "firing"}
    assert routed, alerts
    receivers = {"critical": "pager", "warning": "tickets", "info": "info"}
    for name, severity, receiver in routed:
        assert receiver == receivers[severity], (name, severity, receiver)
