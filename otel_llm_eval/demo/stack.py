"""`otel-llm-eval demo --stack`: a real Prometheus and Alertmanager next to the demo's sidecar.

Prometheus scrapes the sidecar every second and loads the generated rules twice: as generated
(production time) and time-compressed for the demo (see demo.alerts). Alertmanager gets the
generated alertmanager.yml with its receivers pointed at a webhook inside this process and its
group waits shortened to seconds. Everything binds 127.0.0.1 on free ports; every process is
stopped by PID in `stop()`.

Without the binaries, `start` returns a stack object whose `running` is False and whose status line
says how to install them (`apt-get install -y prometheus prometheus-alertmanager`).
"""

from __future__ import annotations

import copy
import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from typing import Any
from urllib.parse import urlparse

INSTALL_HINT = "apt-get install -y prometheus prometheus-alertmanager"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Webhook(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.t0 = time.monotonic()

        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = min(int(self.headers.get("Content-Length") or 0), 10 * 1024 * 1024)
                body = self.rfile.read(length)
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = {"raw": body[:200].decode("utf-8", "replace")}
                payload["_receiver_path"] = self.path
                payload["_received_at"] = time.monotonic() - outer.t0
                outer.received.append(payload)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


class Stack:
    def __init__(self) -> None:
        self.running = False
        self.procs: list[subprocess.Popen] = []
        self.message = ""
        self.webhook: _Webhook | None = None
        self.prometheus_url = ""
        self.alertmanager_url = ""
        self.t0 = time.monotonic()

    def status_line(self) -> str:
        return self.message

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.procs.clear()
        if self.webhook is not None:
            self.webhook.shutdown()
            self.webhook.server_close()
            self.webhook = None

    def prometheus_alerts(self) -> list[dict[str, Any]]:
        try:
            with urllib.request.urlopen(self.prometheus_url + "/api/v1/alerts", timeout=5) as r:  # noqa: S310
                return json.loads(r.read())["data"]["alerts"]
        except Exception:
            return []

    def alerts_section(self, scale: int) -> dict[str, Any]:
        from .alerts import TIMESCALE_LABEL

        firing, pending = [], []
        for a in self.prometheus_alerts():
            labels = a.get("labels", {})
            row = {
                "name": labels.get("alertname", ""), "severity": labels.get("severity", ""),
                "labels": labels, "summary": a.get("annotations", {}).get("summary", ""),
                "description": a.get("annotations", {}).get("description", ""),
                "value": a.get("value"), "fired_at": None,
                "timescale": labels.get(TIMESCALE_LABEL, "production"),
                "active_at": a.get("activeAt"),
            }
            (firing if a.get("state") == "firing" else pending).append(row)
        notified = []
        for payload in (self.webhook.received if self.webhook else []):
            for alert in payload.get("alerts", []):
                notified.append({
                    "name": alert.get("labels", {}).get("alertname", ""),
                    "status": alert.get("status", ""),
                    "receiver": payload.get("receiver", ""),
                    "severity": alert.get("labels", {}).get("severity", ""),
                    "timescale": alert.get("labels", {}).get(TIMESCALE_LABEL, "production"),
                    "at": round(payload.get("_received_at", 0.0), 1),
                })
        for row in firing:
            first = [n["at"] for n in notified if n["name"] == row["name"] and n["timescale"] == row["timescale"]]
            row["fired_at"] = min(first) if first else 0.0
        notes = [f"Alertmanager delivered {len(notified)} notification(s) to the demo's webhook: "
                 + ", ".join(sorted({f"{n['name']} -> {n['receiver']}" for n in notified}))
                 if notified else "Alertmanager delivered no notification yet."]
        return {
            "mode": "prometheus",
            "mode_text": (f"Real Prometheus ({self.prometheus_url}) and Alertmanager ({self.alertmanager_url}) "
                          f"with the generated rules, as generated and time-compressed 1/{scale} "
                          f"(label {TIMESCALE_LABEL}):"),
            "firing": firing,
            "pending": pending,
            "notified": notified,
            "notes": notes,
        }


def _binary(*names: str) -> str | None:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def _demo_alertmanager_config(webhook_url: str) -> dict[str, Any]:
    from otel_llm_eval.bundle.alerts import alertmanager_config

    cfg = copy.deepcopy(alertmanager_config())
    for receiver in cfg.get("receivers", []):
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"{webhook_url}/{receiver['name']}"

    def shorten(route: dict[str, Any]) -> None:
        for key, value in (("group_wait", "1s"), ("group_interval", "2s")):
            if key in route or route is cfg["route"]:
                route[key] = value
        for sub in route.get("routes", []):
            shorten(sub)

    shorten(cfg["route"])
    return cfg


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310 - loopback
                if r.status == 200:
                    return True
        except Exception:
            pass
        time.sleep(0.2)
    return False


def start(sidecar_url: str, rules: dict[str, Any] | None, compressed: dict[str, Any] | None,
          timeline: Any, state_dir: str) -> Stack:
    """Start Prometheus + Alertmanager if installed; never raises for a missing binary."""
    import yaml

    from otel_llm_eval.bundle.common import JOB_NAME

    stack = Stack()
    prometheus = _binary("prometheus")
    alertmanager = _binary("prometheus-alertmanager", "alertmanager")
    if rules is None:
        stack.message = "--stack: the alert rules generator (otel_llm_eval.bundle) is unavailable; skipping"
        return stack
    if not prometheus or not alertmanager:
        missing = [n for n, p in (("prometheus", prometheus), ("prometheus-alertmanager", alertmanager)) if not p]
        stack.message = (f"--stack: {' and '.join(missing)} not found on PATH; alerts are evaluated by the demo "
                         f"instead. To see them fire for real: {INSTALL_HINT}")
        return stack

    base = os.path.join(state_dir, "stack")
    os.makedirs(base, exist_ok=True)
    with open(os.path.join(base, "llm-eval.rules.yml"), "w", encoding="utf-8") as f:
        yaml.safe_dump(rules, f, sort_keys=True)
    with open(os.path.join(base, "llm-eval.demo-timescale.rules.yml"), "w", encoding="utf-8") as f:
        yaml.safe_dump(compressed, f, sort_keys=True)

    stack.webhook = _Webhook()
    threading.Thread(target=stack.webhook.serve_forever, name="demo-webhook", daemon=True).start()
    webhook_url = f"http://127.0.0.1:{stack.webhook.server_address[1]}"
    am_port, prom_port = _free_port(), _free_port()
    with open(os.path.join(base, "alertmanager.yml"), "w", encoding="utf-8") as f:
        yaml.safe_dump(_demo_alertmanager_config(webhook_url), f, sort_keys=True)
    target = urlparse(sidecar_url).netloc
    from .promql import format_duration

    scrape = format_duration(timeline.scrape_interval_seconds)  # Prometheus wants "500ms", not "0.5s"
    prom_cfg = {
        "global": {"scrape_interval": scrape, "evaluation_interval": scrape},
        "rule_files": ["llm-eval.rules.yml", "llm-eval.demo-timescale.rules.yml"],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
        "scrape_configs": [{"job_name": JOB_NAME, "scrape_interval": scrape,
                            "static_configs": [{"targets": [target]}]}],
    }
    with open(os.path.join(base, "prometheus.yml"), "w", encoding="utf-8") as f:
        yaml.safe_dump(prom_cfg, f, sort_keys=True)

    log = open(os.path.join(base, "stack.log"), "ab")
    try:
        stack.procs.append(subprocess.Popen(
            [alertmanager, f"--config.file={base}/alertmanager.yml", f"--storage.path={base}/am-data",
             f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
            stdout=log, stderr=log, cwd=base))
        stack.procs.append(subprocess.Popen(
            [prometheus, f"--config.file={base}/prometheus.yml", f"--storage.tsdb.path={base}/prom-data",
             f"--web.listen-address=127.0.0.1:{prom_port}", "--rules.alert.resend-delay=1s"],
            stdout=log, stderr=log, cwd=base))
    finally:
        log.close()
    stack.alertmanager_url = f"http://127.0.0.1:{am_port}"
    stack.prometheus_url = f"http://127.0.0.1:{prom_port}"
    ok = (_wait_ready(stack.alertmanager_url + "/-/ready", stack.procs[0], 20)
          and _wait_ready(stack.prometheus_url + "/-/ready", stack.procs[1], 20))
    if not ok:
        stack.stop()
        try:
            with open(os.path.join(base, "stack.log"), encoding="utf-8", errors="replace") as f:
                tail = " | ".join(line.strip() for line in f.readlines()[-3:])
        except OSError:
            tail = ""
        stack.message = f"--stack: Prometheus or Alertmanager did not start: {tail}"
        return stack
    stack.running = True
    stack.message = (f"--stack: Prometheus {stack.prometheus_url} (scraping the sidecar every {scrape}, "
                     f"rules from alerts/ as generated and time-compressed), Alertmanager {stack.alertmanager_url}")
    return stack
