"""OTLP request decoding: encodings, size limits, validation, partial success."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_llm_eval.sidecar.ingest.otlp import JSON, PROTOBUF, OTLPError, decode_logs, decode_traces, decompress, walk_spans

LIMITS = {"max_request_bytes": 64 * 1024, "max_span_bytes": 8 * 1024}


def traces(n=2, trace_id=b"\x01" * 16, span_id=b"\x02" * 8, attrs=None):
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "shop"
    ss = rs.scope_spans.add()
    for i in range(n):
        s = ss.spans.add()
        s.trace_id, s.span_id, s.name = trace_id, span_id, f"chat {i}"
        for k, v in (attrs or {"gen_ai.operation.name": "chat"}).items():
            a = s.attributes.add()
            a.key, a.value.string_value = k, v
    return req


def test_protobuf_gzip_and_deflate_bodies_decode_to_the_same_spans():
    body = traces().SerializeToString()
    for enc, data in ((None, body), ("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
        d = decode_traces(data, PROTOBUF, enc, **LIMITS)
        assert (d.accepted, d.rejected) == (2, 0)
        views = list(walk_spans(d.message, "unknown"))
        assert [v.service for v in views] == ["shop", "shop"]
        assert views[0].trace_id == "01" * 16 and views[0].attributes == {"gen_ai.operation.name": "chat"}


def test_otlp_json_uses_hex_ids_and_accepts_string_int64():
    body = json.dumps({"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "shop"}}]}, "scopeSpans": [{"spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "chat",
            "startTimeUnixNano": "1544712660000000000", "endTimeUnixNano": "1544712661000000000",
            "attributes": [{"key": "gen_ai.usage.input_tokens", "value": {"intValue": "12"}}]}]}]}]}).encode()
    d = decode_traces(body, "application/json; charset=utf-8", None, **LIMITS)
    (v,) = walk_spans(d.message, "unknown")
    assert (v.trace_id, v.span_id, v.start, v.attributes) == (
        "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174", 1544712660000000000, {"gen_ai.usage.input_tokens": 12})


@pytest.mark.parametrize("body,ctype,enc,status", [
    (b"\xff\x00garbage" * 10, PROTOBUF, None, 400),
    (traces().SerializeToString()[:-7], PROTOBUF, None, 400),
    (b"{not json", JSON, None, 400),
    (json.dumps({"resourceSpans": {"oops": 1}}).encode(), JSON, None, 400),
    (json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": 5}]}]}]}).encode(), JSON, None, 400),
    (json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz", "spanId": "00"}]}]}]}).encode(), JSON, None, 400),
    (json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"name": 7, "traceId": "01" * 16, "spanId": "02" * 8}]}]}]}).encode(), JSON, None, 400),
    (b"x", "text/plain", None, 415),
    (b"x", None, None, 415),
    (traces().SerializeToString(), PROTOBUF, "br", 415),
    (b"not gzip at all", PROTOBUF, "gzip", 400),
    (gzip.compress(traces().SerializeToString())[:-10], PROTOBUF, "gzip", 400),
    (b"\x00" * (64 * 1024 + 1), PROTOBUF, None, 413),
    (gzip.compress(b"\x00" * (10 * 1024 * 1024)), PROTOBUF, "gzip", 413),
    (traces(trace_id=b"\x01" * 8).SerializeToString(), PROTOBUF, None, 400),
    (traces(trace_id=b"\x00" * 16).SerializeToString(), PROTOBUF, None, 400),
    (traces(span_id=b"\x02" * 4).SerializeToString(), PROTOBUF, None, 400),
    (traces(attrs={"big": "x" * 9000}).SerializeToString(), PROTOBUF, None, 400),
    (ExportLogsServiceRequest().SerializeToString() + traces().SerializeToString().replace(b"\x0a", b"\x12", 1), PROTOBUF, None, 400),
])
def test_bad_requests_raise_a_clear_error_with_the_right_status(body, ctype, enc, status):
    with pytest.raises(OTLPError) as e:
        decode_traces(body, ctype, enc, **LIMITS)
    assert e.value.status == status and e.value.message


def test_a_gzip_bomb_never_allocates_more_than_the_limit():
    bomb = gzip.compress(b"\x00" * (50 * 1024 * 1024))
    with pytest.raises(OTLPError) as e:
        decompress(bomb, "gzip", 1024 * 1024)
    assert e.value.status == 413


def test_a_trace_request_sent_to_the_logs_endpoint_and_back_is_rejected():
    logs = ExportLogsServiceRequest()
    rec = logs.resource_logs.add().scope_logs.add().log_records.add()
    rec.time_unix_nano, rec.body.string_value = 1, "hello"
    with pytest.raises(OTLPError):
        decode_traces(logs.SerializeToString(), PROTOBUF, None, **LIMITS)
    with pytest.raises(OTLPError):
        decode_logs(traces().SerializeToString(), PROTOBUF, None, **LIMITS)
    assert decode_logs(logs.SerializeToString(), PROTOBUF, None, **LIMITS).accepted == 1


def test_some_invalid_spans_are_removed_and_reported_as_partial_success():
    req = traces(n=3)
    req.resource_spans[0].scope_spans[0].spans[1].trace_id = b"\x01" * 3
    d = decode_traces(req.SerializeToString(), PROTOBUF, None, **LIMITS)
    assert (d.accepted, d.rejected) == (2, 1)
    assert "trace_id must be 16 bytes" in d.error_message
    assert [v.name for v in walk_spans(d.message, "x")] == ["chat 0", "chat 2"]


def _any(**kw):
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

    v = AnyValue()
    for k, val in kw.items():
        if k == "array":
            for item in val:
                v.array_value.values.add().string_value = item
        elif k == "kvlist":
            for key, item in val.items():
                kv = v.kvlist_value.values.add()
                kv.key, kv.value.int_value = key, item
        else:
            setattr(v, k, val)
    return v


@pytest.mark.parametrize("value, expected", [
    (_any(string_value="gpt-4o"), "gpt-4o"),
    (_any(string_value=""), ""),             # set but empty: still an attribute
    (_any(int_value=0), 0),
    (_any(int_value=-7), -7),
    (_any(double_value=0.5), 0.5),
    (_any(bool_value=False), False),
    (_any(bytes_value=b"\x01\xff"), "01ff"),
    (_any(array=["a", "b"]), ["a", "b"]),
    (_any(kvlist={"k": 3}), {"k": 3}),
], ids=["a string", "an empty string", "zero", "a negative int", "a double", "false", "bytes as hex",
        "an array", "a key-value list"])
def test_every_attribute_value_kind_walks_to_its_python_value(value, expected):
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

    from otel_llm_eval.sidecar.ingest.otlp import attributes

    kv = KeyValue(key="k", value=value)
    unset = KeyValue(key="unset")  # no value at all: left out
    assert attributes([kv, unset]) == {"k": expected}
