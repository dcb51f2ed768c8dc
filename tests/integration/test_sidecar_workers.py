"""`ingest.workers`: preparing spans in worker processes gives exactly the in-thread result."""

from __future__ import annotations

import httpx
import pytest
from sidecar_fixtures import metric_value
from test_sidecar_http import llm_batch, wait_for

from otel_llm_eval.sidecar.plugins import CallSummarizer, SidecarPlugin
from otel_llm_eval.sidecar.server import start_in_thread

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PB = {"Content-Type": "application/x-protobuf"}


def _series(text: str) -> list[str]:
    keep = ("llm_requests_total", "llm_eval_ab_samples", "llm_tokens_total", "llm_quality_score_count",
            "llm_check_failures_total", "llm_eval_ingest_spans_total")
    return sorted(ln for ln in text.splitlines() if ln.startswith(keep))


def test_two_worker_processes_produce_the_same_metrics_as_the_ingest_thread(tmp_path):
    bodies = []
    for i in range(12):
        req = llm_batch(n=50, model=lambda k, i=i: f"m{(i + k) % 3}")
        s = req.resource_spans[0].scope_spans[0].spans[0]
        ev = s.events.add()
        ev.name = "gen_ai.evaluation.result"
        a = ev.attributes.add()
        a.key, a.value.string_value = "gen_ai.evaluation.name", "relevance"
        a = ev.attributes.add()
        a.key, a.value.double_value = "gen_ai.evaluation.score.value", 0.5
        if i == 5:  # one invalid span: this body is re-checked in the worker (the rest skip the checks)
            req.resource_spans[0].scope_spans[0].spans[7].span_id = b"\x01" * 3
        bodies.append(req.SerializeToString())
    texts = []
    for workers in (0, 2):
        sc = start_in_thread({"state": {"db_path": str(tmp_path / f"w{workers}.db")}, "plugins": [],
                              "ingest": {"workers": workers}}, environ={})
        try:
            for body in bodies:
                assert httpx.post(sc.url + "/v1/traces", content=body, headers=PB, timeout=60).status_code == 200
            assert wait_for(sc.url, "llm_eval_ingest_spans_total", 599, timeout=60) == 599
            assert httpx.get(sc.url + "/healthz").json()["spans_ingested"] == 599
            texts.append(httpx.get(sc.url + "/metrics").text)
            if workers:
                assert sc.sidecar.pool is not None and sc.sidecar.pool.restarts == 0
        finally:
            sc.stop()
    assert _series(texts[0]) == _series(texts[1])
    assert metric_value(texts[1], "llm_quality_score_count", evaluator="relevance") == 12


def test_plugin_summaries_made_in_worker_processes_equal_the_ingest_thread_ones(tmp_path):
    """The analysis and review summarizers run in the spawned workers (their classes and config
    travel there); what the plugins hold afterwards is what the ingest thread computes."""
    bodies = [llm_batch(n=50, model=lambda k, i=i: f"m{(i + k) % 3}").SerializeToString() for i in range(6)]
    states = []
    for workers in (0, 2):
        sc = start_in_thread({"state": {"db_path": str(tmp_path / f"p{workers}.db")},
                              "review": {"sampling": {"random_rate": 0.3}},
                              "ingest": {"workers": workers}}, environ={})
        try:
            plugins = {p.name: p for p in sc.sidecar.plugins}
            assert {"experiments", "drift", "anomalies", "review"} <= set(plugins)
            for body in bodies:
                assert httpx.post(sc.url + "/v1/traces", content=body, headers=PB, timeout=60).status_code == 200
            assert wait_for(sc.url, "llm_eval_ingest_spans_total", 300, timeout=60) == 300
            drift_plugin, anomalies, review = plugins["drift"], plugins["anomalies"], plugins["review"]
            with drift_plugin.lock:
                drift = {k: {s: (d.count, sorted(d.values), d.categories) for s, d in slots.items()}
                         for k, slots in drift_plugin.slots.items()}
            with anomalies.lock:
                anomaly = {k: {s: (a.n, a.buckets) for s, a in slots.items()} for k, slots in anomalies.series.items()}
            with review._lock:
                waiting = sorted(review._waiting)
                sampled = sorted(c.key for heap in review.sampler._heaps.values() for *_, c in heap)
            errors = sum(getattr(p, "errors", 0) for p in plugins.values() if p.name != "review")
            states.append((drift, anomaly, waiting, sampled, errors, review._dropped["errors"]))
            if workers:
                assert sc.sidecar.pool is not None and sc.sidecar.pool.restarts == 0
        finally:
            sc.stop()
    assert states[0] == states[1]
    drift, anomaly, waiting, sampled, errors, review_errors = states[1]
    assert drift and anomaly and len(waiting) == 300 and sampled and errors == review_errors == 0


def raising_check(call, attributes):
    raise RuntimeError("a user check with a bug")


class RaisingSummarizer(CallSummarizer):
    def add(self, record):
        raise RuntimeError("a summarizer with a bug")


class BuggySummaryPlugin(SidecarPlugin):
    name = "buggy"
    summarizer = RaisingSummarizer


@pytest.mark.parametrize("workers", [0, 2], ids=["on the ingest thread", "in worker processes"])
def test_checks_and_summarizers_that_raise_are_counted_wherever_they_run(tmp_path, workers):
    sc = start_in_thread({"state": {"db_path": str(tmp_path / "s.db")}, "ingest": {"workers": workers},
                          "plugins": ["test_sidecar_workers:BuggySummaryPlugin"],
                          "checks": {"custom": [{"name": "buggy", "function": "test_sidecar_workers:raising_check",
                                                 "category": "quality", "needs_text": False}]}}, environ={})
    try:
        for _ in range(3):
            body = llm_batch(n=20).SerializeToString()
            assert httpx.post(sc.url + "/v1/traces", content=body, headers=PB, timeout=60).status_code == 200
        assert wait_for(sc.url, "llm_requests_total", 60, timeout=60) == 60  # the calls still count
        text = httpx.get(sc.url + "/metrics").text
        assert metric_value(text, "llm_eval_ingest_rejected_total", reason="check_error") == 60
        assert metric_value(text, "llm_eval_ingest_rejected_total", reason="summarizer_error") == 60
        assert metric_value(text, "llm_check_failures_total") == 0  # a raising check counts as passed
    finally:
        sc.stop()


@pytest.mark.parametrize("workers", [0, 1])
def test_an_outer_span_arriving_after_its_inner_call_is_not_counted_again_with_or_without_workers(tmp_path, workers):
    """The inner span (OpenInference) arrives in one request, the outer one (openai-v2) in the
    next: a worker, which cannot see the ingest thread's links, counts the outer span; the ingest
    thread sees that and prepares the batch again on its own thread."""
    from genai_spans import T0, openai_v2, openinference, request, span

    inner = request(span("02" * 8, "01" * 8, openinference(), 100, 900)).SerializeToString()
    outer = request(span("01" * 8, "aa" * 8, openai_v2(tokens=None), 50, 1000)).SerializeToString()
    other = request(span("05" * 8, "aa" * 8, openai_v2(), 2000, 3000)).SerializeToString()
    # the sidecar's clock at the spans' time (far from it they would be rejected at the edge)
    sc = start_in_thread({"state": {"db_path": str(tmp_path / "s.db")}, "plugins": [],
                          "ingest": {"workers": workers}}, environ={}, clock=lambda: T0 / 1e9 + 1.0)
    try:
        for body in (inner, outer, other):
            assert httpx.post(sc.url + "/v1/traces", content=body, headers=PB, timeout=60).status_code == 200
        assert wait_for(sc.url, "llm_eval_ingest_spans_total", 3, timeout=60) == 3
        text = httpx.get(sc.url + "/metrics").text
        assert metric_value(text, "llm_requests_total") == 2
        assert metric_value(text, "llm_tokens_total", direction="input") == 24
    finally:
        sc.stop()


def test_readyz_waits_until_the_worker_processes_answer(tmp_path):
    """Ready means able to take traffic at speed: with ingest.workers, not before the spawned
    processes have initialized (a second or more after start on a busy machine)."""
    import time

    sc = start_in_thread({"state": {"db_path": str(tmp_path / "r.db")}, "ingest": {"workers": 2}}, environ={})
    try:
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = httpx.get(sc.url + "/readyz", timeout=10).status_code
            seen.append((status, sc.sidecar.pool.started()))
            if status == 200:
                break
            time.sleep(0.02)
        assert seen[-1] == (200, True)
        assert all(started for status, started in seen if status == 200)
    finally:
        sc.stop()
