"""OTLP/HTTP request decoding: bounded decompression, protobuf/JSON parsing, validation, walking.

`decode_traces` / `decode_logs` turn one request body into a validated protobuf message or raise
`OTLPError(status, reason, message)` (400 malformed, 413 too large, 415 unsupported). Items that
are individually invalid (wrong id lengths, a span over `max_span_bytes`) are removed and counted
for the OTLP partial_success answer; a request whose every item is invalid is a 400, so a bad
request changes nothing. `walk_spans` / `walk_logs` turn a validated message into plain Python
views (dict attributes, hex ids) on the ingest thread. Pure functions, no I/O; never raise
anything but OTLPError on bad input.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

STATUS_CODE_ERROR = 2


class OTLPError(Exception):
    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status = status
        self.reason = reason  # label value for llm_eval_ingest_rejected_total
        self.message = message
        #: items rejected per reason when every item of a request was invalid (see _drop_invalid)
        self.reasons: dict[str, int] = {}


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def check_content_type(content_type: str | None) -> str:
    mt = media_type(content_type)
    if mt not in (PROTOBUF, JSON):
        raise OTLPError(415, "unsupported",
                        f"unsupported Content-Type {content_type!r}: use {PROTOBUF} or {JSON}")
    return mt


def decompress(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The decoded body; never allocates more than `limit` + 1 bytes of output (gzip bombs)."""
    enc = (content_encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        if len(body) > limit:
            raise OTLPError(413, "too_large", f"request body of {len(body)} bytes exceeds the limit of {limit}")
        return body
    if enc == "gzip":
        d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    elif enc == "deflate":
        d = zlib.decompressobj()
    else:
        raise OTLPError(415, "unsupported", f"unsupported Content-Encoding {content_encoding!r}: use gzip or identity")
    # gzip allows several members one after the other (RFC 1952; `cat a.gz b.gz`): the body is
    # their concatenation, so each member is decompressed in turn, under one size limit
    parts: list[bytes] = []
    size = 0
    data = body
    try:
        while True:
            out = d.decompress(data, limit + 1 - size)
            size += len(out)
            if size > limit or d.unconsumed_tail:
                raise OTLPError(413, "too_large", f"decompressed body exceeds the limit of {limit} bytes")
            out += d.flush()
            size = sum(map(len, parts)) + len(out)
            parts.append(out)
            if size > limit:
                raise OTLPError(413, "too_large", f"decompressed body exceeds the limit of {limit} bytes")
            if not d.eof:
                raise OTLPError(400, "malformed", f"{enc} body is truncated")
            data = d.unused_data
            if enc != "gzip" or not data:
                break
            if not data.strip(b"\0"):
                break  # trailing zero padding (some writers pad to a block size)
            d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    except zlib.error as e:
        raise OTLPError(400, "malformed", f"body is not valid {enc}: {e}") from None
    return b"".join(parts)


def _hex_to_b64(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise OTLPError(400, "malformed", f"{what} must be a hex string, got {type(value).__name__}")
    try:
        return base64.b64encode(binascii.unhexlify(value)).decode("ascii")
    except (binascii.Error, ValueError):
        raise OTLPError(400, "malformed", f"{what} is not valid hex: {value[:40]!r}") from None


def _fix_ids(obj: dict[str, Any], keys: tuple[str, ...], what: str) -> None:
    for key in keys:
        for k in (key, _snake(key)):
            if k in obj and obj[k] not in ("", None):
                obj[k] = _hex_to_b64(obj[k], f"{what}.{key}")


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def _list(obj: Any, key: str, what: str) -> list[Any]:
    if not isinstance(obj, dict):
        raise OTLPError(400, "malformed", f"{what} must be an object")
    value = obj.get(key, obj.get(_snake(key)))
    if value is None:
        return []
    if not isinstance(value, list):
        raise OTLPError(400, "malformed", f"{what}.{key} must be an array")
    return value


def _json_to_message(body: bytes, message: Any, signal: str) -> None:
    """OTLP JSON differs from proto3 JSON in one way: trace/span ids are hex, not base64."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise OTLPError(400, "malformed", f"body is not JSON: {e}") from None
    except RecursionError:
        raise OTLPError(400, "too_deep", "JSON body is nested too deeply") from None
    if not isinstance(data, dict):
        raise OTLPError(400, "malformed", "OTLP JSON body must be an object")
    if signal == "traces":
        for rs in _list(data, "resourceSpans", "request"):
            for ss in _list(rs, "scopeSpans", "resourceSpans[]"):
                for span in _list(ss, "spans", "scopeSpans[]"):
                    if not isinstance(span, dict):
                        raise OTLPError(400, "malformed", "spans[] must be objects")
                    _fix_ids(span, ("traceId", "spanId", "parentSpanId"), "span")
                    for link in _list(span, "links", "span"):
                        if isinstance(link, dict):
                            _fix_ids(link, ("traceId", "spanId"), "link")
    else:
        for rl in _list(data, "resourceLogs", "request"):
            for sl in _list(rl, "scopeLogs", "resourceLogs[]"):
                for rec in _list(sl, "logRecords", "scopeLogs[]"):
                    if not isinstance(rec, dict):
                        raise OTLPError(400, "malformed", "logRecords[] must be objects")
                    _fix_ids(rec, ("traceId", "spanId"), "logRecord")
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as e:
        raise OTLPError(400, "malformed", f"OTLP JSON does not match the {signal} schema: {e}") from None


def _parse(body: bytes, mt: str, message: Any, signal: str) -> None:
    if mt == PROTOBUF:
        try:
            message.ParseFromString(body)
        except (DecodeError, RecursionError, ValueError) as e:
            raise OTLPError(400, "malformed", f"body is not a valid OTLP {signal} protobuf: {e}") from None
        if body and not message.ListFields() and len(UnknownFieldSet(message)):
            # parsed, but into nothing we know: another message type
            raise OTLPError(400, "malformed", f"body is protobuf but not an OTLP {signal} export request")
    else:
        _json_to_message(body, message, signal)


@dataclass
class Decoded:
    message: Any
    accepted: int
    rejected: int
    error_message: str = ""
    #: rejected items per reason (llm_eval_ingest_rejected_total{reason}); sums to `rejected`
    reasons: dict[str, int] | None = None


_ZERO_TRACE_ID, _ZERO_SPAN_ID = bytes(16), bytes(8)


def _span_problem(span: Any, max_bytes: int) -> str | None:
    """Why a span is invalid, or None. max_bytes 0: the request is smaller than the span limit,
    so no span can exceed it (ByteSize walks the whole span: skipped when it cannot matter)."""
    trace_id, span_id = span.trace_id, span.span_id
    if len(trace_id) != 16 or trace_id == _ZERO_TRACE_ID:
        return f"trace_id must be 16 bytes and not all zero (got {len(trace_id)} bytes)"
    if len(span_id) != 8 or span_id == _ZERO_SPAN_ID:
        return f"span_id must be 8 bytes and not all zero (got {len(span_id)} bytes)"
    if len(span.parent_span_id) not in (0, 8):
        return f"parent_span_id must be empty or 8 bytes (got {len(span.parent_span_id)})"
    if max_bytes and span.ByteSize() > max_bytes:
        return f"span larger than ingest.max_span_bytes={max_bytes}"
    return None


def _log_problem(rec: Any, max_bytes: int) -> str | None:
    if len(rec.trace_id) not in (0, 16):
        return f"trace_id must be empty or 16 bytes (got {len(rec.trace_id)})"
    if len(rec.span_id) not in (0, 8):
        return f"span_id must be empty or 8 bytes (got {len(rec.span_id)})"
    if max_bytes and rec.ByteSize() > max_bytes:
        return f"log record larger than ingest.max_span_bytes={max_bytes}"
    if not (rec.attributes or rec.HasField("body") or rec.event_name or rec.time_unix_nano
            or rec.observed_time_unix_nano):
        # what a span or another message parses into: nothing a log record carries
        return "log record carries no time, body, attributes or event name"
    return None


def _spans_valid(item_lists: list[Any], bounds: tuple[int, int, int]) -> bool:
    """Whether every span passes `_span_problem` (with max_bytes 0) and the edge time check whose
    `bounds` (lo, hi, longest: ns) it is: one loop without a call per span. False sends the
    request through the per-span path, which finds and reports what fails (a test compares them)."""
    lo, hi, longest = bounds
    zero_trace, zero_span = _ZERO_TRACE_ID, _ZERO_SPAN_ID
    for items in item_lists:
        for span in items:
            trace_id, span_id = span.trace_id, span.span_id
            if len(trace_id) != 16 or trace_id == zero_trace or len(span_id) != 8 or span_id == zero_span:
                return False
            if len(span.parent_span_id) not in (0, 8):
                return False
            start = span.start_time_unix_nano
            end = span.end_time_unix_nano or start
            if end and not lo <= end <= hi:
                return False
            if start and end - start > longest:
                return False
    return True


def _drop_invalid(item_lists: Iterable[Any], problem: Callable[[Any, int], str | None], max_bytes: int,
                  what: str, edge: Callable[[Any], tuple[str, str] | None] | None = None,
                  reasons: dict[str, int] | None = None) -> tuple[int, int, str]:
    """Delete invalid items in place (the rest are still ingested); (accepted, rejected, message).

    edge: a value check returning (reason, message) for an item to reject (see edge.py);
    `reasons` collects the count per reason ("invalid_item" for structural problems)."""
    accepted = rejected = 0
    problems: list[str] = []
    reasons = {} if reasons is None else reasons
    bounds = getattr(edge, "bounds", None) if edge is not None else None
    if problem is _span_problem and not max_bytes and bounds is not None:
        item_lists = list(item_lists)
        if _spans_valid(item_lists, bounds):  # the common case: nothing to delete, nothing to count
            return sum(map(len, item_lists)), 0, ""
    for items in item_lists:
        bad = []
        for i, item in enumerate(items):
            why = problem(item, max_bytes)
            reason = "invalid_item"
            if not why and edge is not None:
                got = edge(item)
                if got:
                    reason, why = got
            if why:
                bad.append(i)
                reasons[reason] = reasons.get(reason, 0) + 1
                if len(problems) < 3:
                    problems.append(why)
        if bad:
            rejected += len(bad)
            for i in reversed(bad):
                del items[i]
        accepted += len(items)
    msg = "; ".join(problems)
    if rejected and not accepted:
        err = OTLPError(400, "malformed", f"every {what} was invalid ({rejected}): {msg}")
        err.reasons = dict(reasons)
        raise err
    return accepted, rejected, msg


def _decode(body: bytes, content_type: str | None, content_encoding: str | None, message: Any,
            signal: str, items: Callable[[Any], Iterable[Any]], problem: Callable[[Any, int], str | None],
            what: str, max_request_bytes: int, max_span_bytes: int, validated: bool,
            edge: Callable[[Any], tuple[str, str] | None] | None = None) -> Decoded:
    mt = check_content_type(content_type)
    raw = decompress(body, content_encoding, max_request_bytes)
    _parse(raw, mt, message, signal)
    if validated:
        return Decoded(message, -1, 0)
    # protobuf: no item is larger than the request; JSON is larger than its protobuf encoding
    limit = max_span_bytes if len(raw) > max_span_bytes else 0
    reasons: dict[str, int] = {}
    return Decoded(message, *_drop_invalid(items(message), problem, limit, what, edge, reasons), reasons=reasons)


def decode_traces(body: bytes, content_type: str | None, content_encoding: str | None, *,
                  max_request_bytes: int, max_span_bytes: int, validated: bool = False,
                  edge: Callable[[Any], tuple[str, str] | None] | None = None) -> Decoded:
    """validated: this body decoded before with no invalid span (an ingest worker re-decoding
    what the HTTP handler accepted): skip the per-span checks (accepted is then -1: not counted).
    edge: the value check of the HTTP edge (edge.EdgeLimits.span_problem bound to a time)."""
    return _decode(body, content_type, content_encoding, ExportTraceServiceRequest(), "traces",
                   lambda req: (ss.spans for rs in req.resource_spans for ss in rs.scope_spans),
                   _span_problem, "span", max_request_bytes, max_span_bytes, validated, edge)


def decode_logs(body: bytes, content_type: str | None, content_encoding: str | None, *,
                max_request_bytes: int, max_span_bytes: int, validated: bool = False,
                edge: Callable[[Any], tuple[str, str] | None] | None = None) -> Decoded:
    return _decode(body, content_type, content_encoding, ExportLogsServiceRequest(), "logs",
                   lambda req: (sl.log_records for rl in req.resource_logs for sl in rl.scope_logs),
                   _log_problem, "log record", max_request_bytes, max_span_bytes, validated, edge)


def traces_response(rejected: int, message: str) -> bytes:
    resp = ExportTraceServiceResponse()
    if rejected:
        resp.partial_success.rejected_spans = rejected
        resp.partial_success.error_message = message
    return resp.SerializeToString()


def logs_response(rejected: int, message: str) -> bytes:
    resp = ExportLogsServiceResponse()
    if rejected:
        resp.partial_success.rejected_log_records = rejected
        resp.partial_success.error_message = message
    return resp.SerializeToString()


def response_json(signal: str, rejected: int, message: str) -> bytes:
    if not rejected:
        return b"{}"
    key = "rejectedSpans" if signal == "traces" else "rejectedLogRecords"
    return json.dumps({"partialSuccess": {key: rejected, "errorMessage": message}}).encode()


# --- walking validated messages (ingest thread) ---

def any_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind)


_SCALARS = frozenset(("string_value", "int_value", "double_value", "bool_value"))


def attributes(kvs: Any) -> dict[str, Any]:
    """KeyValues as a dict. Strings (most GenAI attributes) are read without WhichOneof: a
    non-empty string_value can only be a string, and the rest take the general path (about a
    fifth of the walk saved; the empty string still comes out as "")."""
    out = {}
    for kv in kvs:
        v = kv.value
        text = v.string_value
        if text:
            out[kv.key] = text
            continue
        kind = v.WhichOneof("value")
        if kind is None:
            continue
        out[kv.key] = getattr(v, kind) if kind in _SCALARS else any_value(v)
    return out


class SpanView:
    """A decoded span: dict attributes, events as (name, attributes, time); hex ids on access
    (LLM calls get theirs from `semconv.normalize`, so most spans never format them here)."""

    __slots__ = ("raw_parent_span_id", "name", "start", "end", "error", "attributes", "events", "service",
                 "raw_trace_id", "raw_span_id")

    def __init__(self, span: Any, service: str):
        self.raw_trace_id = span.trace_id
        self.raw_span_id = span.span_id
        self.raw_parent_span_id = span.parent_span_id
        self.name = span.name
        self.start = span.start_time_unix_nano
        self.end = span.end_time_unix_nano
        self.attributes = attributes(span.attributes)
        self.error = span.status.code == STATUS_CODE_ERROR or "error.type" in self.attributes
        self.events = [(e.name, e.attributes, e.time_unix_nano) for e in span.events] if span.events else ()
        self.service = service

    @property
    def trace_id(self) -> str:
        return self.raw_trace_id.hex()

    @property
    def span_id(self) -> str:
        return self.raw_span_id.hex()

    @property
    def parent_span_id(self) -> str | None:
        return self.raw_parent_span_id.hex() or None


class LogView:
    __slots__ = ("trace_id", "span_id", "time", "event_name", "attributes", "body", "service")

    def __init__(self, rec: Any, service: str):
        self.trace_id = rec.trace_id.hex() or None
        self.span_id = rec.span_id.hex() or None
        self.time = rec.time_unix_nano or rec.observed_time_unix_nano
        self.event_name = rec.event_name
        self.attributes = attributes(rec.attributes)
        self.body = any_value(rec.body) if rec.HasField("body") else None
        self.service = service


def resource_service(resource: Any, default: str) -> str:
    for kv in resource.attributes:
        if kv.key == "service.name":
            return kv.value.string_value or default
    return default


def walk_spans(req: Any, default_service: str) -> Iterator[SpanView]:
    for rs in req.resource_spans:
        service = resource_service(rs.resource, default_service)
        for ss in rs.scope_spans:
            for span in ss.spans:
                yield SpanView(span, service)


def walk_logs(req: Any, default_service: str) -> Iterator[LogView]:
    for rl in req.resource_logs:
        service = resource_service(rl.resource, default_service)
        for sl in rl.scope_logs:
            for rec in sl.log_records:
                yield LogView(rec, service)
