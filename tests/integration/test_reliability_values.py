"""One bad value must not poison anything: the span carrying it is rejected alone, counted by reason,
and the rest of the request is ingested (real HTTP, real OTLP). Times are judged at the HTTP edge
(reported in partial_success); attribute values where spans are prepared (see edge.py)."""

from __future__ import annotations

import os
import time

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from sidecar_fixtures import metric_value, sidecar_thread  # noqa: F401 (fixture)
from genai_spans import _set  # one OTLP attribute setter for the tests

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

NOW = int(time.time())
DAY = 86400


def request_with(bad: dict, *, start: int = NOW, end: int = NOW + 1, event: dict | None = None):
    """Three LLM spans; the middle one carries `bad` attributes (and optionally a span event)."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    _set(rs.resource, "service.name", "shop")
    ss = rs.scope_spans.add()
    for i in range(3):
        s = ss.spans.add()
        s.trace_id, s.span_id, s.name = os.urandom(16), os.urandom(8), "chat"
        s.start_time_unix_nano, s.end_time_unix_nano = NOW * 10**9, (NOW + 1) * 10**9
        for k, v in (("gen_ai.operation.name", "chat"), ("gen_ai.request.model", "gpt-4o"),
                     ("gen_ai.usage.input_tokens", 10), ("gen_ai.usage.output_tokens", 5),
                     ("llm_eval.experiment.id", "e1"), ("llm_eval.experiment.variant", "a")):
            _set(s, k, v)
        if i == 1:
            s.start_time_unix_nano, s.end_time_unix_nano = start * 10**9, end * 10**9
            for k, v in bad.items():
                _set(s, k, v)
            if event:
                ev = s.events.add()
                ev.name, ev.time_unix_nano = "gen_ai.evaluation.result", NOW * 10**9
                for k, v in event.items():
                    _set(ev, k, v)
    return req


EDGE = ("invalid_number/duration", "timestamp_out_of_window")  # judged on the protobuf, before the answer

CASES = [
    ("input tokens of 1e308 (a double)", {"gen_ai.usage.input_tokens": 1e308}, {}, "invalid_number"),
    ("output tokens of 2**63-1", {"gen_ai.usage.output_tokens": 2**63 - 1}, {}, "invalid_number"),
    ("tokens given as the string 1e308", {"llm.token_count.prompt": "1e308"}, {}, "invalid_number"),
    ("negative tokens", {"gen_ai.usage.input_tokens": -5}, {}, "invalid_number"),
    ("a cost of 1e308 USD", {"gen_ai.usage.cost": 1e308}, {}, "invalid_number"),
    ("a cost of NaN", {"llm_eval.cost_usd": float("nan")}, {}, "invalid_number"),
    ("a judge score of 1e9 on the span", {"gen_ai.evaluation.name": "judge", "gen_ai.evaluation.score.value": 1e9},
     {}, "invalid_number"),
    ("a judge score of -1e9 in a span event", {}, {"event": {"gen_ai.evaluation.name": "judge",
                                                             "gen_ai.evaluation.score.value": -1e9}},
     "invalid_number"),
    ("a span lasting ten days", {}, {"start": NOW - 10 * DAY, "end": NOW}, "invalid_number/duration"),
    ("experiment weights of inf", {"llm_eval.experiment.weights": "e1=a:inf,b:0.5"}, {}, "invalid_weights"),
    ("a negative experiment weight", {"llm_eval.experiment.weights": "e1=a:-1,b:2"}, {}, "invalid_weights"),
    ("experiment weights summing to zero", {"llm_eval.experiment.weights": "e1=a:0,b:0"}, {}, "invalid_weights"),
    ("an end time a year in the future", {}, {"start": NOW + 365 * DAY, "end": NOW + 365 * DAY + 1},
     "timestamp_out_of_window"),
    ("an end time a year in the past", {}, {"start": NOW - 365 * DAY, "end": NOW - 365 * DAY + 1},
     "timestamp_out_of_window"),
]


@pytest.mark.parametrize("case,bad,extra,reason", CASES, ids=[c[0] for c in CASES])
def test_a_span_with_an_out_of_range_value_is_rejected_alone_counted_and_the_rest_is_kept(sidecar_thread, case,
                                                                                        bad, extra, reason):
    url = sidecar_thread.url
    r = httpx.post(url + "/v1/traces", content=request_with(bad, **extra).SerializeToString(),
                   headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 200, r.text
    resp = ExportTraceServiceResponse.FromString(r.content)
    at_edge = reason in EDGE
    assert resp.partial_success.rejected_spans == (1 if at_edge else 0)
    deadline = time.monotonic() + 20
    while sidecar_thread.sidecar.spans_ingested() < (2 if at_edge else 3) and time.monotonic() < deadline:
        time.sleep(0.02)
    sidecar_thread.sidecar.flush()
    text = httpx.get(url + "/metrics").text
    assert metric_value(text, "llm_eval_ingest_rejected_total", reason=reason.partition("/")[0]) == 1
    calls = 3 if "event" in extra else 2  # a bad evaluation event is dropped alone: its call counts
    assert metric_value(text, "llm_requests_total") == calls
    assert metric_value(text, "llm_tokens_total") == 15 * calls  # the good spans: 10 + 5 tokens each
    assert metric_value(text, "llm_quality_score_count") == 0
    assert not [line for line in text.splitlines() if line.endswith(("Inf", "NaN")) or "e+30" in line]


@pytest.mark.parametrize("case,bad,extra", [
    ("a cost of 1e308 (judged where spans are prepared)", {"gen_ai.usage.cost": 1e308}, {}),
    ("an end time a year ahead (judged at the edge)", {}, {"start": NOW + 365 * DAY, "end": NOW + 365 * DAY + 1}),
])
def test_json_requests_are_judged_alike_and_a_replay_keeps_only_what_was_accepted(tmp_path, case, bad, extra):
    from google.protobuf import json_format

    from otel_llm_eval.sidecar.server import start_in_thread

    db = str(tmp_path / "s.db")
    body = json_format.MessageToJson(request_with(bad, **extra))
    # OTLP JSON ids are hex; MessageToJson writes base64: convert
    import base64
    import json
    data = json.loads(body)
    for rs in data["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for sp in ss["spans"]:
                for k in ("traceId", "spanId"):
                    sp[k] = base64.b64decode(sp[k]).hex()
    sc = start_in_thread({"state": {"db_path": db, "flush_interval_seconds": 3600}, "plugins": []}, environ={})
    try:
        r = httpx.post(sc.url + "/v1/traces", json=data)
        assert r.status_code == 200, r.text
        if extra:
            assert r.json()["partialSuccess"]["rejectedSpans"] == 1, r.text
    finally:
        sc._server.should_exit = True  # stop serving; the state is never flushed: replay decides
        sc._thread.join(10)
        sc.sidecar._stopping.set()
        sc.sidecar.store.close()
    again = start_in_thread({"state": {"db_path": db}, "plugins": []}, environ={})
    try:
        deadline = time.monotonic() + 20
        while again.sidecar.spans_ingested() < (2 if extra else 3) and time.monotonic() < deadline:
            time.sleep(0.02)
        text = httpx.get(again.url + "/metrics").text
        assert metric_value(text, "llm_requests_total") == 2
        assert metric_value(text, "llm_cost_usd_total") < 1  # never the 1e308
    finally:
        again.stop()


def test_worker_processes_reject_and_count_out_of_range_values_too(tmp_path):
    from otel_llm_eval.sidecar.server import start_in_thread

    sc = start_in_thread({"state": {"db_path": str(tmp_path / "s.db")}, "plugins": [],
                          "ingest": {"workers": 1}}, environ={})
    try:
        r = httpx.post(sc.url + "/v1/traces", content=request_with({"gen_ai.usage.input_tokens": 2**63 - 1})
                       .SerializeToString(), headers={"Content-Type": "application/x-protobuf"})
        assert r.status_code == 200
        deadline = time.monotonic() + 60
        while sc.sidecar.spans_ingested() < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        text = httpx.get(sc.url + "/metrics").text
        assert metric_value(text, "llm_eval_ingest_rejected_total", reason="invalid_number") == 1
        assert metric_value(text, "llm_tokens_total") == 30
    finally:
        sc.stop()


@pytest.mark.parametrize("value", [1e9, -1e9, 101])
def test_feedback_outside_the_score_range_is_a_422_and_counted(sidecar_thread, value):
    r = httpx.post(sidecar_thread.url + "/v1/feedback", json={"trace_id": "cd" * 16, "name": "thumbs", "value": value})
    assert r.status_code == 422 and "value" in r.text and "100" in r.text
    text = httpx.get(sidecar_thread.url + "/metrics").text
    assert metric_value(text, "llm_eval_ingest_rejected_total", reason="invalid_number") == 1


def test_a_series_poisoned_before_the_upgrade_publishes_again_after_a_restart(tmp_path):
    import sqlite3

    from otel_llm_eval.sidecar.server import start_in_thread

    db = str(tmp_path / "s.db")
    sc = start_in_thread({"state": {"db_path": db}, "plugins": []}, environ={})
    sc.stop()
    with sqlite3.connect(db) as conn:  # what an older version wrote after a cost of 1e308 twice
        conn.execute("INSERT INTO series VALUES (?, ?, ?, NULL)",
                     ("llm_cost_usd_total", '["shop", "gpt-4o", "e1", "a"]', float("inf")))
    again = start_in_thread({"state": {"db_path": db}, "plugins": []}, environ={})
    try:
        r = httpx.post(again.url + "/v1/traces", content=request_with({"gen_ai.usage.cost": 0.5}).SerializeToString(),
                       headers={"Content-Type": "application/x-protobuf"})
        assert r.status_code == 200
        deadline = time.monotonic() + 20
        while again.sidecar.spans_ingested() < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        text = httpx.get(again.url + "/metrics").text
        assert metric_value(text, "llm_cost_usd_total", service="shop", model="gpt-4o") > 0
    finally:
        again.stop()
