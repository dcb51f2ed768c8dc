"""A sidecar with human review on a free loopback port, fed through the real OTLP exporter.

Used by test_review_api.py and test_review_browser.py. Items reach the review queue the way they
do in production: an LLM span whose output fails a check (PII) is exported with the OTel SDK's
OTLPSpanExporter to POST /v1/traces, the core runs its checks and hands the call to ReviewPlugin,
whose sampling window admits it.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REVIEW_CONFIG = {"sampling": {"window_seconds": 0.2, "random_rate": 0.0, "reservoir_size": 50}}


@dataclass
class Sidecar:
    url: str
    db_path: str
    token: str | None
    handle: Any

    def stop(self) -> None:
        self.handle.stop()

    def request(self, method: str, path: str, body: Any = None, token: str | None = "default",
                raw: bytes | None = None) -> tuple[int, Any]:
        """(status, parsed JSON or text). token="default" sends the configured token."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        tok = self.token if token == "default" else token
        if tok:
            req.add_header("Authorization", f"Bearer {tok}")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, text = r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode()
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def metrics(self) -> str:
        status, text = self.request("GET", "/metrics")
        assert status == 200, text
        return text

    def send_llm_spans(self, calls: list[dict[str, str]]) -> list[tuple[str, str]]:
        """Export one chat span per call ({prompt, completion, variant}); returns (trace, span) ids."""
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        exporter = OTLPSpanExporter(endpoint=self.url + "/v1/traces", headers=headers, timeout=10)
        provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("review-test")
        ids = []
        try:
            for c in calls:
                with tracer.start_as_current_span("chat gpt-4o-mini") as span:
                    span.set_attributes({
                        "gen_ai.operation.name": "chat",
                        "gen_ai.provider.name": "openai",
                        "gen_ai.request.model": "gpt-4o-mini",
                        "gen_ai.prompt.0.role": "user",
                        "gen_ai.prompt.0.content": c["prompt"],
                        "gen_ai.completion.0.role": "assistant",
                        "gen_ai.completion.0.content": c["completion"],
                        "llm_eval.experiment.id": "checkout-prompt",
                        "llm_eval.experiment.variant": c.get("variant", "control"),
                    })
                    ctx = span.get_span_context()
                    ids.append((f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"))
        finally:
            provider.shutdown()
        return ids

    def send_judge_scores(self, scores: list[tuple[str, str, float]]) -> None:
        """Export an LLM-judge evaluation span (child of the judged call) per (trace, span, score)."""
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
        provider.add_span_processor(SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=self.url + "/v1/traces", headers=headers, timeout=10)))
        tracer = provider.get_tracer("review-test-judge")
        try:
            for trace_id, span_id, score in scores:
                parent = trace.SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True,
                                           trace_flags=trace.TraceFlags(1))
                ctx = trace.set_span_in_context(trace.NonRecordingSpan(parent))
                with tracer.start_as_current_span("evaluation quality", context=ctx) as span:
                    span.set_attributes({"gen_ai.evaluation.name": "quality",
                                         "gen_ai.evaluation.score.value": score,
                                         "llm_eval.evaluation.source": "llm_judge"})
        finally:
            provider.shutdown()

    def wait_for_queue(self, n: int, timeout_seconds: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_seconds
        while True:
            status, body = self.request("GET", "/v1/review/queue?limit=100")
            assert status == 200, body
            if len(body["items"]) >= n or time.monotonic() > deadline:
                return body["items"]
            time.sleep(0.1)


def start_sidecar(tmp_path: Path, *, token: str | None = None, review: dict | None = None) -> Sidecar:
    from otel_llm_eval.sidecar.server import start_in_thread

    db_path = str(tmp_path / "sidecar.db")
    config = {
        "server": {"auth_token": token},
        "state": {"db_path": db_path, "flush_interval_seconds": 0.2},
        "review": review or REVIEW_CONFIG,
    }
    handle = start_in_thread(config, host="127.0.0.1", port=0, environ={})
    return Sidecar(url=handle.url.rstrip("/"), db_path=db_path, token=token, handle=handle)


def wait_until(predicate, timeout_seconds: float = 10.0, interval: float = 0.1):
    """Poll until predicate() is truthy (returns it) or the timeout passes (returns the last value)."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


PII_CALLS = [
    {"prompt": "Where is my order? I am ann@example.com", "variant": "control",
     "completion": "It ships today. We emailed ann@example.com with tracking."},
    {"prompt": "Can you call me back?", "variant": "concise",
     "completion": "Sure, we will call +1 415-555-0134 within the hour."},
    {"prompt": "Which card did I use?", "variant": "control",
     "completion": "You paid with card 4111 1111 1111 1111."},
]
