"""OTLP spans in the shapes the real LLM instrumentations emit (attribute names and nesting taken
from openai-v2 2.4b0, OpenInference openai 0.1.66, OpenLLMetry 0.62.4, the Anthropic SDK 2.x and
Logfire 5.4.0), for tests of the sidecar's one-call rule."""

from __future__ import annotations

import json

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

T0 = 1_800_000_000 * 10**9
TRACE = "0c" * 16
ANSWER = "OpenTelemetry is a vendor-neutral observability framework."


def _set(span, key, value):
    kv = span.attributes.add()
    kv.key = key
    if isinstance(value, bool):
        kv.value.bool_value = value
    elif isinstance(value, str):
        kv.value.string_value = value
    elif isinstance(value, float):
        kv.value.double_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    else:
        for v in value:
            kv.value.array_value.values.add().string_value = v


def span(sid, parent, attrs, start=0, end=2_000_000, error=False, events=()):
    """(span id hex, parent hex or "", attributes, start/end offsets in ns, error, events)."""
    return (sid, parent, attrs, start, end, error, events)


def request(*spans, service="shop"):
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    ss = rs.scope_spans.add()
    for sid, parent, attrs, start, end, error, events in spans:
        s = ss.spans.add()
        s.trace_id, s.span_id = bytes.fromhex(TRACE), bytes.fromhex(sid)
        if parent:
            s.parent_span_id = bytes.fromhex(parent)
        s.name = "span " + sid
        s.start_time_unix_nano, s.end_time_unix_nano = T0 + start, T0 + end
        if error:
            s.status.code = 2
        for k, v in attrs.items():
            _set(s, k, v)
        for name, ev_attrs in events:
            e = s.events.add()
            e.name, e.time_unix_nano = name, T0 + end
            for k, v in ev_attrs.items():
                _set(e, k, v)
    return req


def out_messages(text, finish="stop"):
    return json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": text}], "finish_reason": finish}])


def openai_v2(text=ANSWER, tokens=(12, 9), finish="stop"):
    """openai-v2 (util-genai) chat span; text only with content capture on."""
    a = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
         "gen_ai.response.model": "gpt-4o-mini", "gen_ai.response.id": "chatcmpl-1",
         "gen_ai.response.finish_reasons": [finish]}
    if tokens:
        a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"] = tokens
    if text is not None:
        a["gen_ai.input.messages"] = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}])
        a["gen_ai.output.messages"] = out_messages(text, finish)
    return a


def openinference(text=ANSWER, tokens=(12, 9)):
    a = {"openinference.span.kind": "LLM", "llm.system": "openai", "llm.model_name": "gpt-4o-mini",
         "llm.finish_reason": "stop"}
    if tokens:
        a["llm.token_count.prompt"], a["llm.token_count.completion"] = tokens
    if text is not None:
        a["llm.input_messages.0.message.content"] = "hi"
        a["llm.output_messages.0.message.content"] = text
    return a


def logfire_request(stream=True):
    a = {"request_data": json.dumps({"model": "gpt-4o-mini"}), "gen_ai.operation.name": "chat",
         "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini", "logfire.tags": ["LLM"],
         "logfire.span_type": "span"}
    if not stream:
        a.update({"gen_ai.response.id": "chatcmpl-1", "gen_ai.usage.input_tokens": 12,
                  "gen_ai.usage.output_tokens": 9, "gen_ai.output.messages": out_messages(ANSWER),
                  "gen_ai.response.finish_reasons": '["stop"]'})
    return a


def logfire_stream_log(finish="stop"):
    return {"request_data": json.dumps({"model": "gpt-4o-mini"}), "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini", "logfire.tags": ["LLM"],
            "logfire.span_type": "log", "duration": 0.25, "gen_ai.response.id": "chatcmpl-2",
            "gen_ai.response.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 12,
            "gen_ai.usage.output_tokens": 9, "gen_ai.output.messages": out_messages(ANSWER, finish),
            "gen_ai.response.finish_reasons": json.dumps([finish])}


def anthropic_sdk():
    """The Anthropic SDK's own span (scope com.anthropic.sdk.python): no text."""
    return {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-3-5-haiku-latest", "gen_ai.response.id": "msg_1",
            "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 9,
            "anthropic.message.stop_reason": "end_turn"}


def openllmetry_anthropic(output_tokens=10):
    """OpenLLMetry's anthropic.chat span beside it (0.62.4 counts one output token too many on streams)."""
    return {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-3-5-haiku-latest", "gen_ai.response.id": "msg_1",
            "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": output_tokens,
            "gen_ai.output.messages": out_messages(ANSWER), "gen_ai.response.finish_reasons": ["stop"]}
