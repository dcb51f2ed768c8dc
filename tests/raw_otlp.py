"""OTLP/HTTP JSON built by hand, as a Node (or Java, Go) app's exporter sends it: no Python SDK.

`llm_span(...)` is one GenAI client span with OpenLLMetry-style attributes (what
@traceloop/instrumentation-openai writes); `export_request(spans, service)` wraps spans in
resourceSpans/scopeSpans with a Node resource. Ids are lowercase hex, int64s are strings, as the
OTLP JSON encoding requires.
"""

from __future__ import annotations

import json
import time
from typing import Any


def _value(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    return {"stringValue": str(v)}


def attributes(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _value(v)} for k, v in d.items() if v is not None]


def llm_span(trace_id: str, span_id: str, *, prompt: str | None = "What is the capital of France?",
             completion: str | None = "Paris is the capital of France.", model: str = "gpt-4o-mini",
             error: bool = False, extra: dict[str, Any] | None = None, start_ns: int | None = None) -> dict[str, Any]:
    start = start_ns or time.time_ns() - 400_000_000
    attrs: dict[str, Any] = {
        "gen_ai.system": "openai", "gen_ai.operation.name": "chat", "gen_ai.request.model": model,
        "gen_ai.response.model": model, "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 9,
        "llm.request.type": "chat",
    }
    if prompt is not None:
        attrs.update({"gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": prompt})
    if completion is not None:
        attrs.update({"gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": completion,
                      "gen_ai.completion.0.finish_reason": "stop"})
    attrs.update(extra or {})
    return {"traceId": trace_id, "spanId": span_id, "name": f"openai.chat {model}", "kind": 3,
            "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + 400_000_000),
            "attributes": attributes(attrs), "status": {"code": 2 if error else 1}}


def export_request(spans: list[dict[str, Any]], service: str = "checkout-node") -> bytes:
    resource = attributes({"service.name": service, "telemetry.sdk.language": "nodejs",
                           "telemetry.sdk.name": "opentelemetry", "telemetry.sdk.version": "1.26.0"})
    return json.dumps({"resourceSpans": [{"resource": {"attributes": resource}, "scopeSpans": [
        {"scope": {"name": "@traceloop/instrumentation-openai", "version": "0.11.0"}, "spans": spans}]}]}).encode()


JSON_HEADERS = {"Content-Type": "application/json"}
