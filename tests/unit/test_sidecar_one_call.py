"""One real LLM call is counted once, whatever the stack of instrumentations describing it.

Spans are built in the shapes the real libraries emit (attribute names and nesting taken from
openai-v2 2.4b0, OpenInference openai 0.1.66 and Logfire 5.4.0) and go through the sidecar's real
ingest path (`Sidecar._apply`), then the exposition is read.
"""

from __future__ import annotations

import json

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client import CollectorRegistry, generate_latest

from otel_llm_eval.sidecar.collector import SidecarCollector
from otel_llm_eval.sidecar.one_call import Links
from otel_llm_eval.sidecar.prepare import Preparer
from otel_llm_eval.sidecar.checks import CheckRunner
from otel_llm_eval.sidecar.prices import PriceTable
from otel_llm_eval.sidecar.server import build
from otel_llm_eval.sidecar.text_join import SETTLE_SECONDS
from sidecar_fixtures import metric_value

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


APP = span("aa" * 8, "", {"http.route": "/ask"}, 0, 10_000_000)

# (case, batches of spans, requests, input tokens, output tokens, calls without text, failed checks)
CASES = [
    ("openai-v2 over OpenInference in one batch is one call",
     [[span("02" * 8, "01" * 8, openinference(), 100, 900), span("01" * 8, "aa" * 8, openai_v2(), 50, 1000), APP]],
     1, 12, 9, 0, {}),
    ("the inner span in one batch and the outer in the next is still one call",
     [[span("02" * 8, "01" * 8, openinference(), 100, 900)], [span("01" * 8, "aa" * 8, openai_v2(), 50, 1000), APP]],
     1, 12, 9, 0, {}),
    ("text and tokens only the outer span has are merged into the inner call",
     [[span("02" * 8, "01" * 8, openai_v2(text=None, tokens=None), 100, 900),
       span("01" * 8, "aa" * 8, openinference(), 50, 1000)]],
     1, 12, 9, 0, {}),
    ("tokens only the outer span has are added once when it arrives in a later batch",
     [[span("02" * 8, "01" * 8, openai_v2(tokens=None), 100, 900)], [span("01" * 8, "aa" * 8, openinference(), 50, 1000)]],
     1, 12, 9, 0, {}),
    ("two sibling spans with the same response id are one call, the inner one's tokens counted",
     [[span("01" * 8, "aa" * 8, openllmetry_anthropic(), 0, 1000), span("02" * 8, "aa" * 8, anthropic_sdk(), 100, 900)]],
     1, 12, 9, 0, {}),
    ("two sibling spans with the same response id in two batches are one call (text is not merged across batches)",
     [[span("02" * 8, "aa" * 8, anthropic_sdk(), 100, 900)], [span("01" * 8, "aa" * 8, openllmetry_anthropic(), 0, 1000)]],
     1, 12, 9, 1, {}),
    ("two calls of one trace with the same response id one after the other are two calls",
     [[span("01" * 8, "aa" * 8, openllmetry_anthropic(9), 0, 1000), span("02" * 8, "aa" * 8, anthropic_sdk(), 2000, 3000)]],
     2, 24, 18, 1, {}),
    ("a wrapper of a wrapper of the call is still one call",
     [[span("03" * 8, "02" * 8, openinference(), 200, 800), span("02" * 8, "01" * 8, openai_v2(), 100, 900),
       span("01" * 8, "aa" * 8, openinference(), 50, 1000)]],
     1, 12, 9, 0, {}),
    ("a framework LLM span around two provider calls counts the two calls, not itself",
     [[span("02" * 8, "01" * 8, openai_v2(), 100, 400), span("03" * 8, "01" * 8, openai_v2(), 500, 900),
       span("01" * 8, "aa" * 8, openinference(tokens=(99, 99)), 50, 1000)]],
     2, 24, 18, 0, {}),
    ("a child LLM span that starts after its parent ended is a call of its own",
     [[span("01" * 8, "aa" * 8, openai_v2(), 0, 100), span("02" * 8, "01" * 8, openai_v2(), 200, 300)]],
     2, 24, 18, 0, {}),
    ("Logfire's streamed request span and its response log are one call",
     [[span("01" * 8, "aa" * 8, logfire_request(), 0, 1000), span("02" * 8, "aa" * 8, logfire_stream_log(), 5000, 5000)]],
     1, 12, 9, 0, {}),
    ("a Logfire request span that failed is an error call",
     [[span("01" * 8, "aa" * 8, logfire_request(), 0, 1000, error=True)]],
     1, 0, 0, 1, {"error_status": 1}),
    ("a finish reason sent as a JSON string fires the length check",
     [[span("02" * 8, "aa" * 8, logfire_stream_log(finish="length"), 5000, 5000)]],
     1, 12, 9, 0, {"finish_reason_length": 1}),
    ("a call without text is counted as such and its text checks do not run",
     [[span("01" * 8, "aa" * 8, openai_v2(text=None), 0, 1000)]],
     1, 12, 9, 1, {}),
    ("text in a span event is found",
     [[span("01" * 8, "aa" * 8, openai_v2(text=None), 0, 1000,
            events=[("gen_ai.content.completion", {"gen_ai.completion": "call me at jane@example.com"})])]],
     1, 12, 9, 0, {"pii": 1}),
    ("a finish reason only in Langfuse metadata fires the length check",
     [[span("01" * 8, "aa" * 8, {"langfuse.observation.type": "generation", "langfuse.observation.model.name": "gpt-4o-mini",
                                  "langfuse.observation.output": ANSWER,
                                  "langfuse.observation.metadata": json.dumps({"finish_reason": "length"})}, 0, 1000)]],
     1, 0, 0, 0, {"finish_reason_length": 1}),
]


def exposition(sc) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SidecarCollector(sc))
    return generate_latest(registry).decode()


@pytest.mark.parametrize("case,batches,requests,tin,tout,notext,failed", CASES, ids=[c[0] for c in CASES])
def test_each_real_call_is_counted_once(tmp_path, case, batches, requests, tin, tout, notext, failed):
    now = [T0 / 1e9 + 10]
    sc = build({"state": {"db_path": str(tmp_path / "s.db")}, "plugins": []}, plugins=[],
               clock=lambda: now[0], environ={})
    try:
        for spans in batches:
            sc._apply(0, "traces", request(*spans))
        now[0] += SETTLE_SECONDS + 1  # no log record brought text within the window
        sc.tick()
        text = exposition(sc)
        assert metric_value(text, "llm_requests_total") == requests
        assert metric_value(text, "llm_tokens_total", direction="input") == tin
        assert metric_value(text, "llm_tokens_total", direction="output") == tout
        assert metric_value(text, "llm_calls_without_text_total", service="shop") == notext
        got = {line.split('check="')[1].split('"')[0]: float(line.rpartition(" ")[2])
               for line in text.splitlines() if line.startswith("llm_check_failures_total{")}
        assert got == failed
    finally:
        sc.stop()


def test_a_worker_batch_holding_the_outer_span_of_an_earlier_call_is_prepared_again_locally():
    first = Preparer(CheckRunner([]), PriceTable({}), "shop")
    links = Links()
    prepared = first.prepare_traces(request(span("02" * 8, "01" * 8, openinference(), 100, 900)))
    for op in prepared[3]:
        if op[0] == "links":
            links.add(op[1])
    worker = Preparer(CheckRunner([]), PriceTable({}), "shop")  # no links: a worker process
    later = worker.prepare_traces(request(span("01" * 8, "aa" * 8, openai_v2(), 50, 1000)))
    unrelated = worker.prepare_traces(request(span("05" * 8, "aa" * 8, openai_v2(), 50, 1000)))
    assert links.needs_local(later) is True
    assert links.needs_local(unrelated) is False


def test_the_provider_label_is_on_requests_tokens_and_cost(tmp_path):
    sc = build({"state": {"db_path": str(tmp_path / "s.db")}, "plugins": []}, plugins=[],
               clock=lambda: T0 / 1e9 + 10, environ={})
    try:
        sc._apply(0, "traces", request(span("01" * 8, "aa" * 8, openai_v2(), 0, 1000)))
        text = exposition(sc)
        for name in ("llm_requests_total", "llm_tokens_total", "llm_cost_usd_total"):
            assert metric_value(text, name, provider="openai") > 0, name
    finally:
        sc.stop()


def log_request(event_name, attrs, body=None, sid="01" * 8, service="shop"):
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    kv = rl.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    rec = rl.scope_logs.add().log_records.add()
    rec.trace_id, rec.span_id, rec.event_name = bytes.fromhex(TRACE), bytes.fromhex(sid), event_name
    rec.time_unix_nano = T0
    for k, v in attrs.items():
        _set(rec, k, v)
    if body is not None:
        rec.body.string_value = body
    return req


DETAILS = ("gen_ai.client.inference.operation.details",
           {"gen_ai.output.messages": out_messages("mail jane@example.com", "stop")})


@pytest.mark.parametrize("case,order,settle,notext,pii", [
    ("text in a log record after its span runs the text checks", ("span", "log"), True, 0, 1),
    ("text in a log record before its span runs the text checks", ("log", "span"), True, 0, 1),
    ("a span whose text never comes counts as without text once the window passed", ("span",), True, 1, 0),
    ("a span without text is not counted before the window passed", ("span",), False, 0, 0),
])
def test_text_sent_as_genai_log_records_is_joined_to_its_span(tmp_path, case, order, settle, notext, pii):
    now = [T0 / 1e9 + 10]
    sc = build({"state": {"db_path": str(tmp_path / "s.db")}, "plugins": []}, plugins=[],
               clock=lambda: now[0], environ={})
    try:
        for what in order:
            if what == "span":
                sc._apply(0, "traces", request(span("01" * 8, "aa" * 8, openai_v2(text=None), 0, 1000)))
            else:
                sc._apply(0, "logs", log_request(*DETAILS))
        if settle:
            now[0] += SETTLE_SECONDS + 1
        sc.tick()
        text = exposition(sc)
        assert metric_value(text, "llm_calls_without_text_total", service="shop") == notext
        assert metric_value(text, "llm_safety_violations_total", check="pii") == pii
        assert metric_value(text, "llm_check_failures_total", check="pii") == pii
        assert metric_value(text, "llm_requests_total") == 1
    finally:
        sc.stop()
