"""One real LLM call is counted once, whatever the stack of instrumentations describing it.

Spans are built in the shapes the real libraries emit (attribute names and nesting taken from
openai-v2 2.4b0, OpenInference openai 0.1.66, OpenLLMetry 0.62.4, the Anthropic SDK and Logfire
5.4.0; tests/genai_spans.py) and go through the sidecar's real ingest path (`Sidecar._apply`), then
the exposition is read.
"""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from otel_llm_eval.sidecar.collector import SidecarCollector
from otel_llm_eval.sidecar.ingest.one_call import Links
from otel_llm_eval.sidecar.ingest.prepare import Preparer
from otel_llm_eval.sidecar.ingest.checks import CheckRunner
from otel_llm_eval.sidecar.ingest.prices import PriceTable
from otel_llm_eval.sidecar.server import build
from otel_llm_eval.sidecar.ingest.text_join import SETTLE_SECONDS
from genai_spans import (ANSWER, T0, TRACE, _set, anthropic_sdk, logfire_request, logfire_stream_log, openai_v2,
                         openinference, openllmetry_anthropic, out_messages, request, span)
from sidecar_fixtures import metric_value

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


EXPERIMENT = {"llm_eval.experiment.id": "e1", "llm_eval.experiment.variant": "a", "llm_eval.experiments": "e1=a",
              "llm_eval.experiment.weights": "e1=a:0.5,b:0.5"}


@pytest.mark.parametrize("case,batches", [
    ("in one batch", [[span("02" * 8, "01" * 8, {**openinference(), **EXPERIMENT}, 100, 900),
                       span("01" * 8, "aa" * 8, {**openai_v2(), **EXPERIMENT}, 50, 1000)]]),
    ("across two batches", [[span("02" * 8, "01" * 8, {**openinference(), **EXPERIMENT}, 100, 900)],
                            [span("01" * 8, "aa" * 8, {**openai_v2(), **EXPERIMENT}, 50, 1000)]]),
])
def test_a_stacked_call_is_one_exposure_of_its_experiment(tmp_path, case, batches):
    sc = build({"state": {"db_path": str(tmp_path / "s.db")}, "plugins": []}, plugins=[],
               clock=lambda: T0 / 1e9 + 10, environ={})
    try:
        for spans in batches:
            sc._apply(0, "traces", request(*spans))
        text = exposition(sc)
        assert metric_value(text, "llm_eval_ab_samples", experiment="e1", metric="exposures", variant="a") == 1
        assert metric_value(text, "llm_eval_ab_samples", experiment="e1", metric="input_tokens", variant="a") == 1
    finally:
        sc.stop()
