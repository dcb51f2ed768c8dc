"""The official openai-v2 instrumentation on the real openai client, against a local OpenAI-compatible
server: the processor recognizes the spans, stamps the experiment and judges them."""

from __future__ import annotations

import pytest

from conftest import IN_CI

try:
    import openai
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
except ImportError as exc:  # never skipped silently in CI: `make test` installs the test extra
    if IN_CI:
        raise
    pytest.skip(f"openai / openai-v2 instrumentation not importable: {exc}", allow_module_level=True)

from fake_openai import ANSWER, FakeOpenAI  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from otel_llm_eval import semconv  # noqa: E402
from otel_llm_eval.processor import Experiment, LLMEvalSpanProcessor, OpenAIJudge  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
def stack(monkeypatch):
    # Latest GenAI conventions with content on the span, so a judge sees prompt and completion.
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "span_only")
    server = FakeOpenAI()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    judge = OpenAIJudge(model="judge-mini", base_url=server.base_url, api_key="sk-test",
                        input_usd_per_million_tokens=0.15, output_usd_per_million_tokens=0.6)
    processor = LLMEvalSpanProcessor(judge=judge, judge_sample_rate=1.0, tracer_provider=provider)
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield server, exporter, processor, provider
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
        server.close()


def test_openai_v2_spans_are_recognized_stamped_and_judged(stack):
    server, exporter, processor, provider = stack
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    exp = Experiment("prompt-style", {"terse": 0.5, "friendly": 0.5})
    with exp.activate("user-1") as variant:
        reply = client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "What is OpenTelemetry?"}])
    assert reply.choices[0].message.content == ANSWER
    assert processor.force_flush(10_000)

    spans = exporter.get_finished_spans()
    llm_spans = [s for s in spans if semconv.normalize_span(s) is not None]
    assert len(llm_spans) == 1, [(s.name, dict(s.attributes)) for s in spans]
    chat = llm_spans[0]
    assert chat.instrumentation_scope.name.startswith(("opentelemetry.instrumentation", "opentelemetry.util.genai"))
    call = semconv.normalize_span(chat)
    assert call.operation == "chat" and call.provider == "openai"
    assert call.model == "gpt-test-2024"  # the response model wins over the request model
    assert (call.input_tokens, call.output_tokens) == (12, 9)
    assert call.prompt and "What is OpenTelemetry?" in call.prompt
    assert call.completion == ANSWER
    assert (call.experiment, call.variant) == ("prompt-style", variant)

    evaluations = [s for s in spans if semconv.EVALUATION_NAME in (s.attributes or {})]
    assert len(evaluations) == 1
    ev = evaluations[0]
    assert ev.parent.span_id == chat.context.span_id
    assert ev.attributes[semconv.EVALUATION_SCORE_VALUE] == 4.0
    assert ev.attributes[semconv.EVALUATION_EXPLANATION] == "accurate"
    assert ev.attributes[semconv.EXPERIMENT_VARIANT] == variant
    assert ev.attributes[semconv.JUDGE_COST_USD] == pytest.approx((12 * 0.15 + 9 * 0.6) / 1e6)
    # The judge's own request went to the server but produced no LLM span (instrumentation suppressed).
    assert [r["body"]["model"] for r in server.requests] == ["gpt-test", "judge-mini"]
