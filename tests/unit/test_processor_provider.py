"""Evaluation and feedback spans reach the pipeline of the provider the processor is attached to,
even when the app never set a global provider; when that provider cannot be found, one loud warning."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_llm_eval import record_feedback, semconv
from otel_llm_eval.processor import LLMEvalSpanProcessor


def evaluation_spans(exporter):
    return [s for s in exporter.get_finished_spans() if semconv.EVALUATION_NAME in (s.attributes or {})]


@pytest.mark.parametrize("how", ["a judge's evaluation", "record_feedback"])
def test_evaluation_spans_reach_the_private_provider_the_processor_is_attached_to(how):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()  # never made global: only this pipeline exports
    processor = LLMEvalSpanProcessor(judge=lambda call: 0.8, judge_sample_rate=1.0) if how != "record_feedback" \
        else LLMEvalSpanProcessor()
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        tracer = provider.get_tracer("app")
        text = {"gen_ai.input.messages": '[{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]',
                "gen_ai.output.messages": '[{"role": "assistant", "parts": [{"type": "text", "content": "hello"}]}]'}
        with tracer.start_as_current_span("chat m", attributes={"gen_ai.operation.name": "chat",
                                                               "gen_ai.request.model": "m", **text}) as span:
            pass
        if how == "record_feedback":
            record_feedback(span, "thumbs", 1.0)
        assert provider.force_flush(10_000)
        got = evaluation_spans(exporter)
        assert len(got) == 1 and got[0].context.trace_id == span.get_span_context().trace_id
    finally:
        provider.shutdown()


def test_a_processor_whose_provider_cannot_be_found_warns_once_loudly(caplog):
    LLMEvalSpanProcessor()  # never added to any provider
    target = "ab" * 16
    with caplog.at_level(logging.WARNING, logger="otel_llm_eval.processor.feedback"):
        record_feedback(target, "thumbs", 1.0)
        record_feedback(target, "thumbs", 0.0)
    warnings = [r for r in caplog.records if "could not be found" in r.getMessage()]
    assert len(warnings) == 1 and "tracer_provider=" in warnings[0].getMessage()
