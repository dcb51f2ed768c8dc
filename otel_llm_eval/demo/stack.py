"""The demo's alerts section: a real Prometheus and Alertmanager next to the demo's sidecar.

Prometheus scrapes the sidecar every second (every half second in short runs) and loads the
generated rules, time-compressed for the demo (see demo.alerts). Alertmanager gets the generated
alertmanager.yml with its receivers pointed at a webhook inside this process and its group waits
shortened to seconds. Everything binds 127.0.0.1 on free ports; every process is stopped by PID
in `stop()`. Which alerts fired, their descriptions and values, and the notifications are what
Prometheus' `/api/v1/alerts` and the webhook received: the demo evaluates nothing itself.

Without the binaries, `start` returns a stack whose `running` is False and whose status line says
how to install them; the report then skips the section.
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

INSTALL_HINT = ("apt-get install -y prometheus prometheus-alertmanager (Debian/Ubuntu; "
                "`make demo` does it when run as root)")


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

    @classmethod
    def skipped(cls, message: str) -> "Stack":
        stack = cls()
        stack.message = message
        return stack

    def status_line(self) -> str:
        return self.message

    def _get_json(self, path: str) -> Any:
        with urllib.request.urlopen(self.prometheus_url + path, timeout=5) as r:  # noqa: S310 - loopback
            return json.loads(r.read())["data"]

    def wait_caught_up(self, after_unix: float, timeout: float = 20.0) -> bool:
        """Wait (bounded) until Prometheus scraped the sidecar and evaluated its rules after
        `after_unix`, so its alerts describe the same final state as the rest of the report."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                targets = self._get_json("/api/v1/targets")["activeTargets"]
                scraped = min(_unix(t.get("lastScrape")) for t in targets) if targets else 0.0
                groups = self._get_json("/api/v1/rules")["groups"]
                evaluated = min(_unix(g.get("lastEvaluation")) for g in groups) if groups else 0.0
                if scraped > after_unix and evaluated > scraped:
                    return True
            except Exception:
                pass
            time.sleep(0.2)
        return False

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

        if not self.running:
            return {"mode": "skipped", "mode_text": self.message, "fired": [], "pending": [],
                    "notified": [], "notes": []}
        active = self.prometheus_alerts()
        notified = []
        for payload in (self.webhook.received if self.webhook else []):
            for alert in payload.get("alerts", []):
                notified.append({
                    "name": alert.get("labels", {}).get("alertname", ""),
                    "status": alert.get("status", ""),
                    "receiver": payload.get("receiver", ""),
                    "severity": alert.get("labels", {}).get("severity", ""),
                    "labels": alert.get("labels", {}),
                    "description": alert.get("annotations", {}).get("description", ""),
                    "at": round(payload.get("_received_at", 0.0), 1),
                })
        fired = alert_rows(active, notified)
        pending = [{"name": a.get("labels", {}).get("alertname", ""), "severity": a.get("labels", {}).get("severity", ""),
                    "labels": a.get("labels", {})} for a in active if a.get("state") == "pending"]
        receivers: dict[str, set[str]] = {}
        for n in notified:
            receivers.setdefault(n["receiver"], set()).add(n["name"])
        notes = ([f"Alertmanager notified the demo's webhook {len(notified)} time(s): "
                  + "; ".join(f"{r} <- {', '.join(sorted(names))}" for r, names in sorted(receivers.items()))]
                 if notified else ["Alertmanager delivered no notification yet."])
        hour = 3600 / scale
        return {
            "mode": "prometheus",
            "mode_text": (f"Real Prometheus ({self.prometheus_url}) with the generated rules of alerts/, "
                          f"TIME-COMPRESSED 1/{scale:g}: every window and 'for:' is divided by {scale:g} "
                          f"(\"the last hour\" = the last {hour:g} s of the demo), thresholds unchanged; "
                          f"notifications through a real Alertmanager ({self.alertmanager_url}) to a webhook in "
                          f"the demo. Descriptions are Prometheus' own, at its last evaluation."),
            "timescale": scale,
            "fired": fired,
            "pending": pending,
            "notified": notified,
            "notes": notes,
        }


def alert_rows(active: list[dict[str, Any]], notified: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per alert label set that fired during the run: Prometheus' alerts that are firing now
    (their description and value as of its last evaluation) and those Alertmanager notified that
    have resolved since (their description as notified). `fired_at` is the first notification."""
    from .alerts import TIMESCALE_LABEL

    def key(labels: dict[str, str]) -> tuple:
        return tuple(sorted(labels.items()))

    first: dict[tuple, dict[str, Any]] = {}
    for n in notified:
        if n["status"] == "firing":
            k = key(n["labels"])
            if k not in first or n["at"] < first[k]["at"]:
                first[k] = n
    rows: dict[tuple, dict[str, Any]] = {}
    for a in active:
        if a.get("state") != "firing":
            continue
        labels = a.get("labels", {})
        k = key(labels)
        rows[k] = {"name": labels.get("alertname", ""), "severity": labels.get("severity", ""),
                   "labels": labels, "state": "firing", "summary": a.get("annotations", {}).get("summary", ""),
                   "description": a.get("annotations", {}).get("description", ""), "value": _float(a.get("value")),
                   "timescale": labels.get(TIMESCALE_LABEL, "production"), "active_at": a.get("activeAt"),
                   "fired_at": first[k]["at"] if k in first else None,
                   "receiver": first[k]["receiver"] if k in first else None}
    for k, n in first.items():
        if k not in rows:
            rows[k] = {"name": n["name"], "severity": n["severity"], "labels": n["labels"], "state": "resolved",
                       "summary": "", "description": n["description"], "value": None,
                       "timescale": n["labels"].get(TIMESCALE_LABEL, "production"), "active_at": None,
                       "fired_at": n["at"], "receiver": n["receiver"]}
    return sorted(rows.values(), key=lambda r: (r["fired_at"] is None, r["fired_at"] or 0.0, r["name"]))


def _unix(text: str | None) -> float:
    """Seconds since the epoch of Prometheus' RFC 3339 timestamps (nanosecond fractions allowed)."""
    import re
    from datetime import datetime

    if not text:
        return 0.0
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
    if not m:
        return 0.0
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    base = datetime.fromisoformat(m.group(1) + zone).timestamp()
    return base + (float("0" + m.group(2)) if m.group(2) else 0.0)


def _float(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


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


def start(sidecar_url: str, compressed: dict[str, Any] | None, timeline: Any, state_dir: str) -> Stack:
    """Start Prometheus + Alertmanager if installed; never raises for a missing binary."""
    import yaml

    from otel_llm_eval.bundle.common import JOB_NAME

    from .alerts import format_duration

    prometheus = _binary("prometheus")
    alertmanager = _binary("prometheus-alertmanager", "alertmanager")
    if compressed is None:
        return Stack.skipped("skipped: the alert rules generator (otel_llm_eval.bundle) is unavailable "
                             "(pip install 'otel-llm-eval[bundle]')")
    if not prometheus or not alertmanager:
        missing = [n for n, p in (("prometheus", prometheus), ("prometheus-alertmanager", alertmanager)) if not p]
        return Stack.skipped(f"{' and '.join(missing)} not found on PATH, so the alerts section is skipped. "
                             f"To see the generated alerts fire in a real Prometheus: {INSTALL_HINT}")

    stack = Stack()
    base = os.path.join(state_dir, "stack")
    os.makedirs(base, exist_ok=True)
    with open(os.path.join(base, "llm-eval.demo-timescale.rules.yml"), "w", encoding="utf-8") as f:
        yaml.safe_dump(compressed, f, sort_keys=True)

    stack.webhook = _Webhook()
    threading.Thread(target=stack.webhook.serve_forever, name="demo-webhook", daemon=True).start()
    webhook_url = f"http://127.0.0.1:{stack.webhook.server_address[1]}"
    am_port, prom_port = _free_port(), _free_port()
    with open(os.path.join(base, "alertmanager.yml"), "w", encoding="utf-8") as f:
        yaml.safe_dump(_demo_alertmanager_config(webhook_url), f, sort_keys=True)
    target = urlparse(sidecar_url).netloc
    scrape = format_duration(timeline.scrape_interval_seconds)  # Prometheus wants "500ms", not "0.5s"
    prom_cfg = {
        "global": {"scrape_interval": scrape, "evaluation_interval": scrape},
        "rule_files": ["llm-eval.demo-timescale.rules.yml"],
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
        stack.message = f"skipped: Prometheus or Alertmanager did not start: {tail}"
        return stack
    stack.running = True
    stack.message = (f"Prometheus {stack.prometheus_url} (scraping the sidecar every {scrape}, the generated "
                     f"rules time-compressed 1/{timeline.alert_timescale:g}), Alertmanager {stack.alertmanager_url}")
    return stack
