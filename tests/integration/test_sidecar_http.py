"""The sidecar over real HTTP on 127.0.0.1: bad input changes nothing, bounded series, auth, 429, API."""

from __future__ import annotations

import gzip
import json
import os
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from sidecar_fixtures import metric_value, sidecar_thread  # noqa: F401  (fixture)

from otel_llm_eval.sidecar.server import start_in_thread

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PB = {"Content-Type": "application/x-protobuf"}


def llm_batch(n=3, model="gpt-4o", trace_id=None, span_len=8, big_attr=0, seed=0):
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "shop"
    ss = rs.scope_spans.add()
    for i in range(n):
        s = ss.spans.add()
        s.trace_id = trace_id if trace_id is not None else os.urandom(16)
        s.span_id = os.urandom(span_len)
        s.name = "chat"
        now = int(time.time())  # inside the accepted timestamp window (ingest.limits)
        s.start_time_unix_nano, s.end_time_unix_nano = now * 10**9, (now + 1) * 10**9
        for k, v in (("gen_ai.operation.name", "chat"), ("gen_ai.request.model", model if isinstance(model, str) else model(i)),
                     ("llm_eval.experiment.id", "e1"), ("llm_eval.experiment.variant", "b" if i % 2 else "a")):
            a = s.attributes.add()
            a.key, a.value.string_value = k, v
        if big_attr:
            a = s.attributes.add()
            a.key, a.value.string_value = "gen_ai.prompt", "x" * big_attr
    return req


def counts(url: str) -> tuple[float, float, float]:
    text = httpx.get(url + "/metrics").text
    return (metric_value(text, "llm_requests_total"), metric_value(text, "llm_eval_ingest_spans_total"),
            metric_value(text, "llm_eval_ab_samples"))


def wait_for(url: str, name: str, value: float, timeout: float = 30.0, **labels: str) -> float:
    deadline = time.monotonic() + timeout
    while True:
        got = metric_value(httpx.get(url + "/metrics").text, name, **labels)
        if got >= value or time.monotonic() > deadline:
            return got
        time.sleep(0.02)


def _json_wrong_types() -> bytes:
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "01" * 16, "spanId": "02" * 8, "name": ["not", "a", "string"]}]}]}]}).encode()


BAD_INPUTS = [
    ("random bytes are malformed", os.urandom(2048), PB, 400),
    ("a truncated protobuf is malformed", llm_batch().SerializeToString()[:-9], PB, 400),
    ("a metrics export sent to the traces endpoint is malformed", ExportMetricsServiceRequest(
        resource_metrics=[{"scope_metrics": [{"metrics": [{"name": "requests_total"}]}]}]).SerializeToString(), PB, 400),
    ("a logs export sent to the traces endpoint is malformed", ExportLogsServiceRequest(
        resource_logs=[{"scope_logs": [{"log_records": [{"time_unix_nano": 5, "body": {"string_value": "x"}}]}]}]
    ).SerializeToString(), PB, 400),
    ("JSON with wrong types is malformed", _json_wrong_types(), {"Content-Type": "application/json"}, 400),
    ("a body that is not JSON is malformed", b"{'resourceSpans': [", {"Content-Type": "application/json"}, 400),
    ("a wrong content type is unsupported", llm_batch().SerializeToString(), {"Content-Type": "text/plain"}, 415),
    ("an unknown content encoding is unsupported", llm_batch().SerializeToString(),
     {**PB, "Content-Encoding": "zstd"}, 415),
    ("a gzip bomb is too large", gzip.compress(b"\0" * (64 * 1024 * 1024)), {**PB, "Content-Encoding": "gzip"}, 413),
    ("a body over the limit is too large", b"\0" * (16 * 1024 * 1024 + 1), PB, 413),
    ("trace ids of the wrong length are malformed", llm_batch(trace_id=b"\x01" * 15).SerializeToString(), PB, 400),
    ("span ids of the wrong length are malformed", llm_batch(span_len=9).SerializeToString(), PB, 400),
    ("attribute values of megabytes are rejected", llm_batch(n=1, big_attr=3 * 1024 * 1024).SerializeToString(), PB, 400),
]


@pytest.mark.parametrize("case,body,headers,status", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_gets_a_clear_4xx_and_changes_nothing(sidecar_thread, case, body, headers, status):  # noqa: F811
    url = sidecar_thread.url
    httpx.post(url + "/v1/traces", content=llm_batch().SerializeToString(), headers=PB).raise_for_status()
    wait_for(url, "llm_requests_total", 3)
    before = counts(url)
    r = httpx.post(url + "/v1/traces", content=body, headers=headers, timeout=60)
    assert r.status_code == status, r.text
    assert r.content  # the error says what was wrong
    # a good request after the bad one is counted: the bad one was not queued behind it
    httpx.post(url + "/v1/traces", content=llm_batch(n=1).SerializeToString(), headers=PB).raise_for_status()
    wait_for(url, "llm_requests_total", before[0] + 1)
    after = counts(url)
    per_call = before[2] / before[0]  # samples one call adds (exposures, latency, error, ...)
    assert after == (before[0] + 1, before[1] + 1, before[2] + per_call)


def test_a_batch_with_some_invalid_spans_answers_200_with_partial_success(sidecar_thread):  # noqa: F811
    req = llm_batch(n=4)
    req.resource_spans[0].scope_spans[0].spans[2].trace_id = b"\x01" * 4
    r = httpx.post(sidecar_thread.url + "/v1/traces", content=req.SerializeToString(), headers=PB)
    assert r.status_code == 200
    resp = ExportTraceServiceResponse.FromString(r.content)
    assert resp.partial_success.rejected_spans == 1 and "trace_id" in resp.partial_success.error_message
    assert wait_for(sidecar_thread.url, "llm_requests_total", 3) == 3


def test_json_and_gzip_requests_count_like_protobuf(sidecar_thread):  # noqa: F811
    url = sidecar_thread.url
    body = {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "j"}}]},
            "scopeSpans": [{"spans": [{"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "chat",
                                       "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                                                      {"key": "gen_ai.request.model", "value": {"stringValue": "m"}}]}]}]}]}
    r = httpx.post(url + "/v1/traces", content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert (r.status_code, r.json()) == (200, {})
    r = httpx.post(url + "/v1/traces", content=gzip.compress(llm_batch(n=2).SerializeToString()),
                   headers={**PB, "Content-Encoding": "gzip"})
    assert r.status_code == 200
    assert wait_for(url, "llm_requests_total", 3) == 3
    assert metric_value(httpx.get(url + "/metrics").text, "llm_requests_total", service="j") == 1


def test_a_hundred_thousand_model_names_keep_the_series_bounded(tmp_path):
    sc = start_in_thread({"state": {"db_path": str(tmp_path / "s.db")}, "plugins": [],
                          "labels": {"caps": {"model": 20}}}, environ={})
    try:
        for b in range(20):
            req = llm_batch(n=5000, model=lambda i, b=b: f"model-{b}-{i}")
            r = httpx.post(sc.url + "/v1/traces", content=req.SerializeToString(), headers=PB, timeout=60)
            assert r.status_code == 200
        assert wait_for(sc.url, "llm_requests_total", 100_000, timeout=90) == 100_000
        text = httpx.get(sc.url + "/metrics").text
    finally:
        sc.stop()
    models = {ln.split('model="')[1].split('"')[0] for ln in text.splitlines() if ln.startswith("llm_requests_total{")}
    assert len(models) == 21 and "other" in models
    assert metric_value(text, "llm_eval_label_overflow_total", reason="model") == 100_000 - 20
    assert metric_value(text, "llm_requests_total", model="other") == 100_000 - 20


def test_a_full_queue_answers_429_with_retry_after_and_the_retry_is_counted(tmp_path):
    sc = start_in_thread({"state": {"db_path": str(tmp_path / "s.db")}, "plugins": [],
                          "ingest": {"queue_max_batches": 1, "retry_after_seconds": 2}}, environ={})
    try:
        url = sc.url
        with sc.sidecar.state.lock:  # stall the ingest worker
            assert httpx.post(url + "/v1/traces", content=llm_batch().SerializeToString(), headers=PB).status_code == 200
            deadline = time.monotonic() + 10
            while sc.sidecar.queue_depth() and time.monotonic() < deadline:
                time.sleep(0.01)  # the worker took it and now waits for the lock
            assert httpx.post(url + "/v1/traces", content=llm_batch().SerializeToString(), headers=PB).status_code == 200
            third = llm_batch().SerializeToString()
            r = httpx.post(url + "/v1/traces", content=third, headers=PB)
            assert r.status_code == 429 and r.headers["retry-after"] == "2"
            assert httpx.get(url + "/readyz").status_code == 503
        assert httpx.post(url + "/v1/traces", content=third, headers=PB).status_code in (200, 429)
        deadline = time.monotonic() + 10
        while httpx.post(url + "/v1/traces", content=third, headers=PB).status_code == 429:
            assert time.monotonic() < deadline
        assert wait_for(url, "llm_requests_total", 9) == 9  # the duplicate retry counted once
        text = httpx.get(url + "/metrics").text
        assert metric_value(text, "llm_eval_ingest_rejected_total", reason="queue_full") >= 1
    finally:
        sc.stop()


def test_with_a_token_every_route_but_healthz_requires_it(tmp_path):
    sc = start_in_thread({"state": {"db_path": str(tmp_path / "s.db")}, "plugins": [],
                          "server": {"auth_token": "tok"}}, environ={})
    try:
        url, good = sc.url, {"Authorization": "Bearer tok"}
        assert httpx.get(url + "/healthz").status_code == 200
        for method, path, kw in (("GET", "/metrics", {}), ("GET", "/readyz", {}), ("GET", "/v1/experiments", {}),
                                 ("POST", "/v1/traces", {"content": llm_batch().SerializeToString(), "headers": PB}),
                                 ("POST", "/v1/feedback", {"json": {"trace_id": "ab" * 16, "name": "x", "value": 1}})):
            assert httpx.request(method, url + path, **kw).status_code == 401, path
            headers = {**kw.pop("headers", {}), **good}
            assert httpx.request(method, url + path, headers=headers, **kw).status_code in (200, 202), path
            wrong = {**headers, "Authorization": "Bearer nope"}
            assert httpx.request(method, url + path, headers=wrong, **kw).status_code == 401, path
    finally:
        sc.stop()
    sc = start_in_thread({"state": {"db_path": str(tmp_path / "s2.db")}, "plugins": [],
                          "server": {"auth_token": "tok", "auth_metrics": False, "auth_otlp": False}}, environ={})
    try:
        assert httpx.get(sc.url + "/metrics").status_code == 200
        assert httpx.post(sc.url + "/v1/traces", content=llm_batch().SerializeToString(), headers=PB).status_code == 200
        assert httpx.get(sc.url + "/v1/experiments").status_code == 401
    finally:
        sc.stop()


def test_feedback_joins_the_call_through_the_span_index_and_counts_for_its_variant(sidecar_thread):  # noqa: F811
    url = sidecar_thread.url
    req = llm_batch(n=2)
    trace_b = req.resource_spans[0].scope_spans[0].spans[1].trace_id.hex()  # variant b
    httpx.post(url + "/v1/traces", content=req.SerializeToString(), headers=PB).raise_for_status()
    wait_for(url, "llm_requests_total", 2)
    fb = {"trace_id": trace_b, "name": "thumbs", "value": 1, "comment": "great"}
    assert httpx.post(url + "/v1/feedback", json=fb).status_code == 202
    assert httpx.post(url + "/v1/feedback", json=fb).json() == {"status": "duplicate"}
    assert wait_for(url, "llm_user_feedback_total", 1) == 1
    text = httpx.get(url + "/metrics").text
    assert metric_value(text, "llm_user_feedback_total", experiment="e1", variant="b", feedback_type="positive") == 1
    detail = httpx.get(url + "/v1/experiments/e1").json()
    assert detail["exposures"] == {"a": 1, "b": 1}
    assert detail["metrics"]["thumbs"]["b"] == {"n": 1, "sum": 1.0, "sum_sq": 1.0, "mean": 1.0, "binary": True}
    assert httpx.get(url + "/v1/experiments").json()["experiments"][0]["id"] == "e1"
    assert httpx.get(url + "/v1/experiments/nope").status_code == 404


@pytest.mark.parametrize("body", [
    {"trace_id": "xyz", "name": "n", "value": 1},
    {"trace_id": "ab" * 16, "span_id": "12", "name": "n", "value": 1},
    {"trace_id": "ab" * 16, "name": "", "value": 1},
    {"trace_id": "ab" * 16, "name": "n", "value": "high"},
    {"trace_id": "00" * 16, "name": "n", "value": 1},
    {"trace_id": "ab" * 16, "name": "n", "value": 1, "unknown": True},
    {"trace_id": "ab" * 16, "name": "n"},
])
def test_invalid_feedback_is_a_422_and_records_nothing(sidecar_thread, body):  # noqa: F811
    r = httpx.post(sidecar_thread.url + "/v1/feedback", json=body)
    assert r.status_code == 422 and r.json()["detail"]
    assert metric_value(httpx.get(sidecar_thread.url + "/metrics").text, "llm_eval_ab_samples") == 0


def test_evaluation_log_records_and_span_events_of_the_same_evaluation_count_once(sidecar_thread):  # noqa: F811
    url = sidecar_thread.url
    req = llm_batch(n=1)
    span = req.resource_spans[0].scope_spans[0].spans[0]
    ev = span.events.add()
    ev.name = "gen_ai.evaluation.result"
    for k, v in (("gen_ai.evaluation.name", "relevance"), ("gen_ai.evaluation.score.label", "pass")):
        a = ev.attributes.add()
        a.key, a.value.string_value = k, v
    a = ev.attributes.add()
    a.key, a.value.double_value = "gen_ai.evaluation.score.value", 0.75
    httpx.post(url + "/v1/traces", content=req.SerializeToString(), headers=PB).raise_for_status()
    logs = ExportLogsServiceRequest()
    rec = logs.resource_logs.add().scope_logs.add().log_records.add()
    rec.trace_id, rec.span_id, rec.time_unix_nano = span.trace_id, span.span_id, time.time_ns()
    rec.event_name = "gen_ai.evaluation.result"
    for k, v in (("gen_ai.evaluation.name", "relevance"), ("gen_ai.evaluation.score.label", "pass")):
        a = rec.attributes.add()
        a.key, a.value.string_value = k, v
    a = rec.attributes.add()
    a.key, a.value.double_value = "gen_ai.evaluation.score.value", 0.75
    other = logs.resource_logs[0].scope_logs[0].log_records.add()
    other.CopyFrom(rec)
    other.attributes[0].value.string_value = "faithfulness"
    assert httpx.post(url + "/v1/logs", content=logs.SerializeToString(), headers=PB).status_code == 200
    assert wait_for(url, "llm_eval_ingest_spans_total", 2, signal="logs") == 2
    text = httpx.get(url + "/metrics").text
    assert metric_value(text, "llm_quality_score_count", evaluator="relevance", experiment="e1", variant="a") == 1
    assert metric_value(text, "llm_quality_score_count", evaluator="faithfulness", model="gpt-4o") == 1


# --- fuzzing the OTLP endpoint: never a 5xx, never a change unless 200 ---

def _mutate(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    b = bytearray(data)
    for pos, val in flips:
        if b:
            b[pos % len(b)] = val
    return bytes(b)


VALID = llm_batch(n=2).SerializeToString()


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.one_of(
        st.binary(max_size=512),
        st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8).map(lambda f: _mutate(VALID, f)),
        st.integers(0, len(VALID)).map(lambda n: VALID[:n]),
        st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                     lambda c: st.lists(c, max_size=4) | st.dictionaries(
                         st.sampled_from(["resourceSpans", "scopeSpans", "spans", "traceId", "spanId", "attributes",
                                          "key", "value", "stringValue", "name"]), c, max_size=4),
                     max_leaves=20).map(lambda v: json.dumps(v).encode()),
    ),
    ctype=st.sampled_from(["application/x-protobuf", "application/json", "text/plain"]),
    gz=st.booleans(),
)
def test_fuzzed_otlp_requests_never_cause_a_server_error(fuzz_sidecar, body, ctype, gz):
    headers = {"Content-Type": ctype}
    if gz:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    r = fuzz_sidecar.post("/v1/traces", content=body, headers=headers)
    assert r.status_code in (200, 400, 413, 415), r.text
    r = fuzz_sidecar.post("/v1/logs", content=body, headers=headers)
    assert r.status_code in (200, 400, 413, 415), r.text


@pytest.fixture(scope="module")
def fuzz_sidecar(tmp_path_factory):
    sc = start_in_thread({"state": {"db_path": str(tmp_path_factory.mktemp("fuzz") / "s.db")}, "plugins": []},
                         environ={})
    client = httpx.Client(base_url=sc.url, timeout=30)
    try:
        yield client
        assert sc.sidecar.ingestor.span_errors == 0  # nothing that got through broke ingest
        assert httpx.get(sc.url + "/healthz").status_code == 200
    finally:
        client.close()
        sc.stop()
