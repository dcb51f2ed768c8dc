"""Conservation: spans sent through the real OTLPSpanExporter are counted exactly once each,
also when the sidecar is killed with SIGKILL and restarted while the exporter keeps retrying."""

from __future__ import annotations

import threading
import time

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from sidecar_fixtures import SidecarSubprocess, metric_value

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

BATCHES = 30
CALLS_PER_BATCH = 40


def make_batches():
    """Batches of finished SDK spans: LLM calls with known variants, every 4th with user feedback."""
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    tracer = provider.get_tracer("conservation")
    batches, expected = [], {"a": 0, "b": 0, "feedback_b": 0, "feedback_a": 0}
    for b in range(BATCHES):
        spans = []
        for i in range(CALLS_PER_BATCH):
            variant = "a" if (b + i) % 3 else "b"
            expected[variant] += 1
            call = tracer.start_span("chat gpt-4o-mini", attributes={
                "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5,
                "llm_eval.experiment.id": "checkout-prompt", "llm_eval.experiment.variant": variant})
            call.end()
            spans.append(call)
            if i % 4 == 0:
                ctx = trace.set_span_in_context(trace.NonRecordingSpan(call.get_span_context()))
                fb = tracer.start_span("feedback", context=ctx, attributes={
                    "gen_ai.evaluation.name": "thumbs", "gen_ai.evaluation.score.value": 1.0,
                    "llm_eval.evaluation.source": "user"})
                fb.end()
                spans.append(fb)
                expected["feedback_" + variant] += 1
        batches.append(spans)
    return batches, expected


@pytest.mark.parametrize("workers", [0, 2], ids=["on the ingest thread", "with worker processes"])
def test_every_span_counts_exactly_once_across_sigkill_and_restart(tmp_path, workers):
    batches, expected = make_batches()
    sc = SidecarSubprocess(tmp_path, {"plugins": [], "state": {"flush_interval_seconds": 0.2},
                                      "ingest": {"workers": workers}})
    exporter = None
    try:
        sc.start()
        exporter = OTLPSpanExporter(endpoint=sc.url + "/v1/traces", timeout=60)
        results: list[SpanExportResult] = []

        def send() -> None:
            for spans in batches:
                results.append(exporter.export(spans))
                time.sleep(0.01)

        sender = threading.Thread(target=send)
        sender.start()
        for kill_after in (BATCHES // 4, BATCHES // 2):
            while len(results) < kill_after:
                time.sleep(0.005)
            sc.kill9()          # mid-stream: no drain, no final flush
            time.sleep(0.3)     # the exporter sees connection errors and backs off
            sc.start()          # same port, same database
        sender.join(120)
        assert not sender.is_alive()
        assert results == [SpanExportResult.SUCCESS] * BATCHES

        total = expected["a"] + expected["b"]
        deadline = time.monotonic() + 30
        while metric_value(sc.metrics(), "llm_requests_total") < total and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # anything extra (a double count) would land by now

        def check(text: str) -> None:
            assert metric_value(text, "llm_requests_total") == total
            for v in ("a", "b"):
                assert metric_value(text, "llm_requests_total", variant=v) == expected[v]
                assert metric_value(text, "llm_eval_ab_samples", experiment="checkout-prompt",
                                    metric="exposures", variant=v) == expected[v]
                assert metric_value(text, "llm_user_feedback_total", variant=v) == expected["feedback_" + v]
                assert metric_value(text, "llm_eval_ab_samples", metric="thumbs", variant=v) == expected["feedback_" + v]
            assert metric_value(text, "llm_tokens_total", direction="input") == 10 * total

        check(sc.metrics())
        before = sc.metrics()
        sc.stop()
        sc.start()  # a clean restart resumes the same statistics
        after = sc.metrics()
        check(after)
        strip = lambda t: sorted(ln for ln in t.splitlines()  # noqa: E731
                                 if ln.startswith(("llm_eval_ab_samples", "llm_requests_total", "llm_user_feedback")))
        assert strip(after) == strip(before)
    finally:
        if exporter is not None:
            exporter.shutdown()
        sc.stop()
