"""Prometheus configuration for docker-compose (deploy/prometheus.yml).

Pure data, no I/O. Scrapes the sidecar under the job name the alert rules use (JOB_NAME), loads
the generated rules, and sends alerts to the Alertmanager service.
"""

from __future__ import annotations

from typing import Any

from otel_llm_eval.bundle.alerts import RULES_FILE
from otel_llm_eval.bundle.common import JOB_NAME, dump_yaml

#: Where docker-compose mounts alerts/ inside the Prometheus container.
PROMETHEUS_ALERTS_DIR = "/etc/prometheus/alerts"


def prometheus_config(*, sidecar_targets: list[str], alertmanager_targets: list[str],
                      rule_files: list[str], scrape_interval: str = "15s",
                      evaluation_interval: str = "15s") -> dict[str, Any]:
    """A Prometheus config scraping the sidecars and alerting through the Alertmanagers given."""
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval},
        "rule_files": rule_files,
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": alertmanager_targets}]}]},
        "scrape_configs": [
            {"job_name": JOB_NAME, "metrics_path": "/metrics",
             "static_configs": [{"targets": sidecar_targets}]},
        ],
    }


def render() -> dict[str, str]:
    cfg = prometheus_config(sidecar_targets=["sidecar:9318"], alertmanager_targets=["alertmanager:9093"],
                            rule_files=[f"{PROMETHEUS_ALERTS_DIR}/{RULES_FILE}"])
    return {"deploy/prometheus.yml": dump_yaml(cfg, header=(
        "Prometheus for docker-compose: scrapes the sidecar (job " + JOB_NAME + "), loads alerts/,\n"
        "alerts through Alertmanager."))}
