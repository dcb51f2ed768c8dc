"""What `otel-llm-eval demo` hands to Prometheus and Alertmanager passes their own checks.

The demo loads the generated rules time-compressed and a copy of the
generated alertmanager.yml with its receivers pointed at the demo's webhook; promtool and amtool
must accept both, or the real stack would silently not start.
"""

from __future__ import annotations

import subprocess

import pytest
import yaml

from otel_llm_eval.demo import Timeline, alerts, stack
from conftest import require_binary

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("duration", [20, 60], ids=["a 20 s demo", "a 60 s demo"])
def test_promtool_accepts_the_time_compressed_rules(tmp_path, duration):
    promtool = require_binary("promtool")
    timeline = Timeline(duration)
    rules = alerts.generated_rule_groups()
    assert rules is not None
    compressed = alerts.compressed_rule_groups(rules, timeline.alert_timescale, timeline.scrape_interval_seconds)
    path = tmp_path / "demo.rules.yml"
    path.write_text(yaml.safe_dump(compressed))
    res = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    n_rules = sum(len(g["rules"]) for g in rules["groups"])
    assert f"{n_rules} rules found" in res.stdout


def test_amtool_accepts_the_demo_alertmanager_config_and_routes_by_severity(tmp_path):
    amtool = require_binary("amtool")
    cfg = stack._demo_alertmanager_config("http://127.0.0.1:9")
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(cfg))
    res = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    for hook in (h for r in cfg["receivers"] for h in r.get("webhook_configs", [])):
        assert hook["url"].startswith("http://127.0.0.1:9/")
    assert cfg["route"]["group_wait"] == "1s"
    res = subprocess.run([amtool, "config", "routes", "test", f"--config.file={path}",
                          "--verify.receivers=pager", "severity=critical", "alertname=LLMSafetyViolation"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
