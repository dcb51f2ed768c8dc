"""The bundle on a real stack: sidecar -> Prometheus (alerts/) -> Alertmanager -> webhook, and
every dashboard panel query answered by that Prometheus.

Everything binds 127.0.0.1 on free ports; Prometheus and Alertmanager are Debian's binaries (a
missing one skips locally and fails under CI=true). Traffic goes through the real OTel SDK, the
real LLMEvalSpanProcessor and the real OTLP/HTTP exporter into an in-process sidecar. Every
process is stopped by PID in a finally block.

Test-only changes to the committed configs, and why:
- Prometheus scrapes and evaluates every second (deploy/prometheus.yml: 15 s) with
  `--rules.alert.resend-delay=1s` (default 1 m: the first notification, sent before Alertmanager
  is discovered, would otherwise be retried only after a minute).
- alerts/alertmanager.yml is loaded as committed (routes, grouping, inhibition) with its webhook
  URLs pointed at the test's webhook and group_wait shortened to 1 s.
- The sidecar's analysis windows are seconds instead of hours so drift and anomaly gauges exist,
  and the app's judge is slow with a small queue so some judge work is dropped (and counted).
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from conftest import free_port, require_binary
from otel_llm_eval.bundle import alerts as bundle_alerts
from otel_llm_eval.bundle.common import JOB_NAME
from otel_llm_eval.bundle.deploy import prometheus_config

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "e2e-chat"

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

#: Panel queries (dashboard file, panel title, legend) that cannot have data in a test that lasts
#: seconds, with the reason. Every other panel query must return data from the test's Prometheus.
#: Empty today: the traffic above exercises every metric (add an entry, with its reason, for a
#: panel whose data needs hours, such as a 24 h baseline that cannot be shortened by config).
NO_DATA_IN_SHORT_TEST: dict[tuple[str, str, str], str] = {}


# --- processes ---------------------------------------------------------------------------------------

class Proc:
    """A subprocess with its output in a log file; stop() terminates it by PID."""

    def __init__(self, name: str, argv: list[str], log_dir: Path):
        self.name = name
        self.log = log_dir / f"{name}.log"
        with open(self.log, "wb") as out:
            self.popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


class Webhook:
    """Alertmanager webhook receiver on 127.0.0.1: keeps (arrival time, path, payload) of every POST."""

    def __init__(self) -> None:
        self.received: list[tuple[float, str, dict]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append((time.time(), self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _get_json(url: str, timeout: float = 5.0) -> dict | list:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def _wait(what: str, check, timeout: float, procs: list[Proc] = ()) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            assert p.popen.poll() is None, f"{p.name} exited: {p.tail()}"
        try:
            result = check()
        except (OSError, urllib.error.URLError, ValueError):
            result = None
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; " +
                         " ".join(f"[{p.name}] {p.tail()}" for p in procs))


def _alertmanager_config(webhook_url: str) -> dict:
    cfg = bundle_alerts.alertmanager_config()
    for receiver in cfg["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = f"{webhook_url}/{receiver['name']}"
    for route in [cfg["route"], *cfg["route"]["routes"]]:
        route["group_wait"] = "1s"
    committed = yaml.safe_load((ROOT / "alerts" / "alertmanager.yml").read_text())
    assert committed["route"]["routes"] == bundle_alerts.alertmanager_config()["route"]["routes"]
    return cfg


# --- traffic -----------------------------------------------------------------------------------------

def _send_traffic(sidecar_url: str, seconds: float) -> dict:
    """LLM calls in an A/B experiment and a bandit, judged, with feedback, pairwise choices,
    errors, three models (cap 2: one overflows) and a PII leak every tenth output."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import Status, StatusCode

    from otel_llm_eval import Experiment, HeuristicJudge, JudgeResult, LLMEvalSpanProcessor, record_feedback, record_outcome
    from otel_llm_eval.processor.bandit import Bandit
    from otel_llm_eval.processor.interleaving import pairwise

    heuristic = HeuristicJudge()

    def quality_judge(call):  # source llm_judge (a plain callable), with a cost and some failures
        if call.completion and "JUDGE-FAILS" in call.completion:
            raise RuntimeError("judge failed")
        time.sleep(0.02)  # a judge is slow: bursts overflow the small judge queue (counted as dropped)
        r = heuristic(call)
        return JudgeResult(r.score, r.label, r.explanation, cost_usd=0.001)

    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    processor = LLMEvalSpanProcessor(judge=quality_judge, judge_sample_rate=1.0, tracer_provider=provider,
                                     max_judge_calls_per_minute=60, stats_interval_seconds=1.0,
                                     max_queue_size=4)
    provider.add_span_processor(processor)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{sidecar_url}/v1/traces"),
                                                   schedule_delay_millis=200))
    tracer = provider.get_tracer("e2e")
    experiment = Experiment("prompt-v2", {"control": 0.5, "b": 0.5})
    bandit = Bandit("model-bandit", ["small", "large"], sidecar_url=sidecar_url, refresh_seconds=1.0, burn_in=1)
    rng = random.Random(7)
    sent = {"calls": 0, "pii": 0}

    def llm_call(i: int, text: str, error: bool) -> object:
        model = ("gpt-4o-mini", "gpt-4o", "claude-3-5-haiku")[i % 3]
        with tracer.start_as_current_span(f"chat {model}") as span:
            span.set_attributes({
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                "gen_ai.request.model": model, "gen_ai.response.finish_reasons": ["stop"],
                "gen_ai.usage.input_tokens": 20 + i % 50, "gen_ai.usage.output_tokens": 30 + (i * 7) % 90,
                "gen_ai.conversation.id": f"session-{i % 7}", "user.id": f"user-{i % 11}",
                "gen_ai.input.messages": json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": "help me " * (1 + i % 5)}]}]),
                "gen_ai.output.messages": json.dumps(
                    [{"role": "assistant", "parts": [{"type": "text", "content": text}], "finish_reason": "stop"}]),
            })
            if error:
                span.set_attribute("error.type", "timeout")
                span.set_status(Status(StatusCode.ERROR, "timeout"))
        sent["calls"] += 1
        return span

    try:
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline:
            for _ in range(12):
                if i % 10 == 0:
                    text = "Sure, write to jane.doe@example.com and they will help."
                    sent["pii"] += 1
                else:
                    text = "Here is a helpful answer. " * (1 + i % 4) + ("JUDGE-FAILS" if i % 17 == 0 else "")
                scope = experiment.activate(f"user-{i}") if i % 2 else bandit.activate()
                with scope:
                    span = llm_call(i, text, error=(i % 13 == 0))
                    record_feedback(span, "thumbs", 1.0 if i % 3 else 0.0, label="up" if i % 3 else "down")
                    record_feedback(span, "stars", 1 + i % 5, kind="scale", scale=(1, 5))
                    record_outcome(span, "task_completed", i % 5 != 0)
                    if i % 4 == 1:
                        pairwise("prompt-v2", "control", "b", rng=rng).record(span, winner="b" if i % 8 == 1 else "control")
                i += 1
            time.sleep(0.4)
        processor.force_flush(10_000)
        provider.force_flush(10_000)
    finally:
        provider.shutdown()
        bandit.close()
    return sent


def _post_json(url: str, payload: object) -> int:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def _side_traffic(sidecar_url: str) -> None:
    """What the sidecar gets besides spans: a malformed OTLP request, a benchmark record, a
    regression run, and human labels on queued review items."""
    assert _post_json(f"{sidecar_url}/v1/traces", {"resourceSpans": "not a list"}) == 400
    assert _post_json(f"{sidecar_url}/v1/benchmarks",
                      {"records": [{"benchmark": "mmlu-mini", "model": "gpt-4o-mini", "score": 0.71}]}) == 200
    assert _post_json(f"{sidecar_url}/v1/regression-runs", {"status": "pass"}) == 200
    queue = _get_json(f"{sidecar_url}/v1/review/queue?limit=20")
    assert len(queue["items"]) >= 4, "review sampling admitted too little"
    # Two batches more than a scrape apart, so rate() over the human scores sees an increase.
    for k, item in enumerate(queue["items"]):
        if k == len(queue["items"]) // 2:
            time.sleep(2.5)
        status = _post_json(f"{sidecar_url}/v1/review/{item['id']}/label",
                            {"quality": 1 + k % 5, "issues": ["hallucination"] if k % 2 else []})
        assert status == 200


# --- dashboards --------------------------------------------------------------------------------------

def _panel_query(expr: str, range_seconds: int) -> str:
    """A panel's PromQL as Grafana would send it with every variable at All, on a 1 s scrape."""
    text = expr.replace("$__rate_interval", "4s").replace("$__interval", "1s")
    text = text.replace("$__range", f"{range_seconds}s")
    return re.sub(r'=~"\$\w+"', '=~".*"', text)


def _has_data(prom_url: str, expr: str, instant: bool, start: float, end: float) -> bool:
    if instant:
        q = urllib.parse.urlencode({"query": expr, "time": end})
        result = _get_json(f"{prom_url}/api/v1/query?{q}")["data"]["result"]
        values = [r["value"][1] for r in result]
    else:
        q = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": 1})
        result = _get_json(f"{prom_url}/api/v1/query_range?{q}")["data"]["result"]
        values = [v[1] for r in result for v in r["values"]]
    return any(v not in ("NaN", "+Inf", "-Inf") for v in values)


def _panel_targets():
    for path in sorted((ROOT / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                yield (path.name, panel["title"], target.get("legendFormat") or target["refId"]), target


def _queries_without_data(prom_url: str, start: float, end: float) -> dict[tuple[str, str, str], str]:
    empty = {}
    for key, target in _panel_targets():
        expr = _panel_query(target["expr"], int(end - start) + 1)
        if not _has_data(prom_url, expr, target.get("instant", False), start, end):
            empty[key] = expr
    return empty


# --- the test ----------------------------------------------------------------------------------------

def test_safety_violation_reaches_the_webhook_and_every_panel_query_returns_data(tmp_path):
    prometheus = require_binary("prometheus")
    alertmanager = require_binary("prometheus-alertmanager", "alertmanager")
    from otel_llm_eval.sidecar.server import start_in_thread

    procs: list[Proc] = []
    webhook = Webhook()
    sidecar = None
    try:
        sidecar = start_in_thread({
            "state": {"db_path": str(tmp_path / "sidecar.db")},
            "labels": {"caps": {"model": 2}},
            "review": {"sampling": {"random_rate": 1.0, "window_seconds": 1.0}},
            "analysis": {"interval_seconds": 0.5, "min_samples": 5,
                         "drift": {"reference_seconds": 4, "current_seconds": 3, "slot_seconds": 1, "min_samples": 5},
                         "anomaly": {"slot_seconds": 1, "min_history": 3, "min_slot_samples": 1},
                         "bandits": {"burn_in": 1}},
        }, port=0)

        am_port, prom_port = free_port(), free_port()
        am_cfg = tmp_path / "alertmanager.yml"
        am_cfg.write_text(yaml.safe_dump(_alertmanager_config(webhook.url)))
        procs.append(Proc("alertmanager", [
            alertmanager, f"--config.file={am_cfg}", f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="], tmp_path))

        prom_cfg = tmp_path / "prometheus.yml"
        prom_cfg.write_text(yaml.safe_dump(prometheus_config(
            sidecar_targets=[f"127.0.0.1:{sidecar.port}"], alertmanager_targets=[f"127.0.0.1:{am_port}"],
            rule_files=[str(ROOT / "alerts" / bundle_alerts.RULES_FILE)],
            scrape_interval="1s", evaluation_interval="1s")))
        procs.append(Proc("prometheus", [
            prometheus, f"--config.file={prom_cfg}", f"--storage.tsdb.path={tmp_path / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}", "--rules.alert.resend-delay=1s"], tmp_path))
        prom_url = f"http://127.0.0.1:{prom_port}"

        def sidecar_up() -> bool:
            q = urllib.parse.urlencode({"query": f'up{{job="{JOB_NAME}"}} == 1'})
            return bool(_get_json(f"{prom_url}/api/v1/query?{q}")["data"]["result"])

        _wait("Prometheus to scrape the sidecar", sidecar_up, 30, procs)
        _wait("Alertmanager to be ready",
              lambda: urllib.request.urlopen(f"http://127.0.0.1:{am_port}/-/ready", timeout=2).status == 200, 30, procs)

        start = time.time()
        sent = _send_traffic(sidecar.url, seconds=8.0)
        _side_traffic(sidecar.url)
        assert sent["pii"] > 0

        def safety_alert():
            for arrived, path, payload in webhook.received:
                for alert in payload["alerts"]:
                    if alert["labels"].get("alertname") == "LLMSafetyViolation" and alert["status"] == "firing":
                        return arrived, path, payload, alert
            return None

        arrived, path, payload, alert = _wait("the LLMSafetyViolation notification at the webhook", safety_alert,
                                              60, procs)
        print(f"LLMSafetyViolation reached the webhook {arrived - start:.1f} s after the first (PII) span "
              f"({sent['calls']} LLM calls, {sent['pii']} with PII)")
        assert path == "/pager" and payload["receiver"] == "pager"  # critical routes to the pager
        assert alert["labels"]["severity"] == "critical"
        assert alert["labels"]["service"] == SERVICE and alert["labels"]["check"] == "pii"
        assert alert["labels"]["model"] in ("gpt-4o-mini", "gpt-4o", "other")  # model cap 2: the third folds
        assert alert["annotations"]["runbook_url"].endswith("docs/runbooks.md#llmsafetyviolation")
        assert "failed the safety check pii" in alert["annotations"]["description"]

        # Let the last scrapes land, then ask Prometheus what each dashboard panel would show.
        time.sleep(2)
        empty = _queries_without_data(prom_url, start, time.time())
        unexpected = {k: v for k, v in empty.items() if k not in NO_DATA_IN_SHORT_TEST}
        assert not unexpected, "panel queries without data:\n" + "\n".join(f"{k}: {v}" for k, v in unexpected.items())
        known = {key for key, _ in _panel_targets()}
        assert set(NO_DATA_IN_SHORT_TEST) <= known, "the exception list names a panel query that does not exist"
        assert len(known) - len(NO_DATA_IN_SHORT_TEST) >= 60  # the dashboards did not quietly shrink
    finally:
        for p in reversed(procs):
            p.stop()
        if sidecar is not None:
            sidecar.stop()
        webhook.stop()


def test_alertmanager_routes_by_severity_and_a_critical_alert_inhibits_its_warning(tmp_path):
    """The committed alertmanager.yml on the real Alertmanager: alerts posted to its API arrive at
    the receiver for their severity, and LLMHighErrorRate critical silences its warning twin for
    the same service (but not for another service)."""
    alertmanager = require_binary("prometheus-alertmanager", "alertmanager")
    webhook = Webhook()
    procs: list[Proc] = []
    try:
        port = free_port()
        cfg = tmp_path / "alertmanager.yml"
        cfg.write_text(yaml.safe_dump(_alertmanager_config(webhook.url)))
        procs.append(Proc("alertmanager", [
            alertmanager, f"--config.file={cfg}", f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="], tmp_path))
        am = f"http://127.0.0.1:{port}"
        _wait("Alertmanager to be ready", lambda: urllib.request.urlopen(f"{am}/-/ready", timeout=2).status == 200,
              30, procs)

        def alert(name: str, severity: str, service: str) -> dict:
            return {"labels": {"alertname": name, "severity": severity, "service": service},
                    "annotations": {"summary": f"{name} {severity} {service}"}}

        posted = [
            alert("LLMHighErrorRate", "critical", "chat"),
            alert("LLMHighErrorRate", "warning", "chat"),      # inhibited by the critical one
            alert("LLMHighErrorRate", "warning", "search"),    # no critical for search: notified
            alert("LLMJudgeBudgetExhausted", "info", "chat"),
        ]
        assert _post_json(f"{am}/api/v2/alerts", posted[:1]) == 200
        assert _post_json(f"{am}/api/v2/alerts", posted[1:]) == 200

        def notified() -> dict[str, set[tuple[str, str, str]]] | None:
            got: dict[str, set[tuple[str, str, str]]] = {}
            for _, path, payload in webhook.received:
                for a in payload["alerts"]:
                    got.setdefault(path, set()).add((a["labels"]["alertname"], a["labels"]["severity"],
                                                     a["labels"]["service"]))
            return got if {"/pager", "/tickets", "/info"} <= set(got) else None

        got = _wait("notifications for every severity", notified, 30, procs)
        time.sleep(2)  # give a wrongly routed or uninhibited notification time to show up
        got = notified()
        assert got == {
            "/pager": {("LLMHighErrorRate", "critical", "chat")},
            "/tickets": {("LLMHighErrorRate", "warning", "search")},
            "/info": {("LLMJudgeBudgetExhausted", "info", "chat")},
        }
        state = _get_json(f"{am}/api/v2/alerts?inhibited=true")
        inhibited = [a["labels"] for a in state if a["status"]["inhibitedBy"]]
        assert inhibited == [{"alertname": "LLMHighErrorRate", "severity": "warning", "service": "chat"}]
    finally:
        for p in procs:
            p.stop()
        webhook.stop()
