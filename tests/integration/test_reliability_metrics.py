"""Bounded and honest metrics: past a label cap one `other` series per scrape, overflow counted once,
stored benchmark pairs bounded (real HTTP, real OTLP, real scrapes)."""

from __future__ import annotations

import collections
import os
import time

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from sidecar_fixtures import metric_value

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def spans_for_experiments(n: int) -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "shop"
    ss = rs.scope_spans.add()
    now = time.time_ns()
    for i in range(n):
        s = ss.spans.add()
        s.trace_id, s.span_id, s.name = os.urandom(16), os.urandom(8), "chat"
        s.start_time_unix_nano, s.end_time_unix_nano = now - 10**9, now
        for k, v in (("gen_ai.operation.name", "chat"), ("gen_ai.request.model", "m"),
                     ("llm_eval.experiment.id", f"exp-{i}"), ("llm_eval.experiment.variant", "a")):
            a = s.attributes.add()
            a.key, a.value.string_value = k, v
    return req.SerializeToString()


def series_lines(text: str) -> list[str]:
    return [line.rpartition(" ")[0] for line in text.splitlines() if line and not line.startswith("#")]


@pytest.fixture
def sidecar(tmp_path):
    from otel_llm_eval.sidecar.server import start_in_thread

    sc = start_in_thread({"state": {"db_path": str(tmp_path / "s.db")},
                          "labels": {"caps": {"experiment": 2, "benchmark": 2}},
                          "offline": {"max_pairs": 3},
                          "plugins": ["otel_llm_eval.sidecar.plugins.offline:OfflinePlugin"]}, environ={})
    try:
        yield sc
    finally:
        sc.stop()


def test_past_a_label_cap_each_series_appears_once_and_scrapes_do_not_grow_the_overflow_count(sidecar):
    r = httpx.post(sidecar.url + "/v1/traces", content=spans_for_experiments(12),
                   headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 200
    deadline = time.monotonic() + 20
    while sidecar.sidecar.spans_ingested() < 12 and time.monotonic() < deadline:
        time.sleep(0.02)
    first = httpx.get(sidecar.url + "/metrics").text
    second = httpx.get(sidecar.url + "/metrics").text
    for text in (first, second):
        dupes = [k for k, n in collections.Counter(series_lines(text)).items() if n > 1]
        assert dupes == []
    assert metric_value(first, "llm_eval_ab_samples", experiment="other", metric="exposures") == 10
    assert metric_value(first, "llm_eval_label_overflow_total") == metric_value(second, "llm_eval_label_overflow_total")


def test_stored_benchmark_pairs_are_bounded_and_what_is_refused_is_counted_once(sidecar):
    records = [{"benchmark": f"b{i}", "model": "m", "score": 0.5, "date": "2026-01-01"} for i in range(5)]
    r = httpx.post(sidecar.url + "/v1/benchmarks", json={"records": records})
    assert r.status_code == 200 and r.json()["accepted"] == 3 and len(r.json()["rejected"]) == 2, r.text
    again = httpx.post(sidecar.url + "/v1/benchmarks", json={"records": records[3:]})
    assert again.status_code == 409, again.text
    assert httpx.post(sidecar.url + "/v1/benchmarks", json={"records": records[:1]}).status_code == 200  # known pair
    texts = [httpx.get(sidecar.url + "/metrics").text for _ in range(2)]
    for text in texts:
        assert [k for k, n in collections.Counter(series_lines(text)).items() if n > 1] == []
        assert metric_value(text, "llm_eval_label_overflow_total", reason="benchmark_pairs") == 4
    assert len(httpx.get(sidecar.url + "/v1/benchmarks").json()["latest"]) == 3
