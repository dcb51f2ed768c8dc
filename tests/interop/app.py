"""The app of the interop matrix, run with a stack's venv python (see test_interop.py).

    python app.py --stack NAME --llm-url http://127.0.0.1:P/v1 --sidecar http://127.0.0.1:Q --out judged.jsonl

Sets up the real OTel SDK with `LLMEvalSpanProcessor` (a judge that records its input, every call
sampled) before a BatchSpanProcessor with the OTLP/HTTP exporter to the sidecar, instruments the
client the stack's way, makes a plain, a streaming and a cut (max_tokens=3 -> finish reason length)
call, flushes, writes every judge input as a JSON line to --out and prints {"exported": spans}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stacks import STACKS  # noqa: E402

QUESTION = [{"role": "user", "content": "What is OpenTelemetry?"}]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stack", required=True)
    ap.add_argument("--llm-url", required=True)
    ap.add_argument("--sidecar", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    stack = STACKS[args.stack]
    os.environ.update(stack.env)
    if stack.zero_code:  # `opentelemetry-instrument` built the provider and attached the processor
        import openai

        calls(stack, openai.OpenAI(base_url=args.llm_url, api_key="sk-test", max_retries=0))
        print(json.dumps({"exported": None}), flush=True)  # the SDK's atexit shutdown exports
        return

    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult

    from otel_llm_eval import LLMEvalSpanProcessor

    judged: list[dict] = []
    lock = threading.Lock()

    def judge(call):
        with lock:
            judged.append({"completion": call.completion, "finish_reason": call.finish_reason, "model": call.model,
                           "input_tokens": call.input_tokens, "output_tokens": call.output_tokens})
        return 4.0

    exported = [0]

    class CountingExporter(OTLPSpanExporter):
        def export(self, spans):
            result = super().export(spans)
            if result is SpanExportResult.SUCCESS:
                exported[0] += len(spans)
            return result

    logger_provider = None
    if stack.logs:  # GenAI log records (event_only content capture) to the sidecar's /v1/logs
        from opentelemetry._logs import set_logger_provider
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

        logger_provider = LoggerProvider(resource=Resource.create({"service.name": stack.name}))
        logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(
            endpoint=args.sidecar + "/v1/logs")))
        set_logger_provider(logger_provider)
    processor = LLMEvalSpanProcessor(judge=judge, judge_sample_rate=1.0)
    batch = BatchSpanProcessor(CountingExporter(endpoint=args.sidecar + "/v1/traces"))
    name = stack.name
    if name == "logfire":
        import logfire

        logfire.configure(send_to_logfire=False, console=False, service_name=name,
                          additional_span_processors=[processor, batch])
        provider = trace.get_tracer_provider()
    else:
        provider = TracerProvider(resource=Resource.create({"service.name": name}))
        provider.add_span_processor(processor)
        provider.add_span_processor(batch)
        trace.set_tracer_provider(provider)
    client = instrument(name, stack, args.llm_url, provider)
    calls(stack, client)
    processor.force_flush(30_000)  # judge work first: it emits evaluation spans
    provider.force_flush(30_000)
    if logger_provider is not None:
        logger_provider.force_flush(30_000)
    Path(args.out).write_text("".join(json.dumps(j) + "\n" for j in judged))
    print(json.dumps({"exported": exported[0]}), flush=True)
    provider.shutdown()


def instrument(name: str, stack, llm_url: str, provider):
    """The client, instrumented as the library's documentation says."""
    if stack.client == "anthropic":
        import anthropic
        from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor

        AnthropicInstrumentor().instrument(tracer_provider=provider)
        return anthropic.Anthropic(base_url=llm_url.removesuffix("/v1"), api_key="sk-test", max_retries=0)
    import openai

    if name in ("openinference", "openai-v2+openinference"):
        from openinference.instrumentation.openai import OpenAIInstrumentor as OpenInference

        OpenInference().instrument(tracer_provider=provider)
    if name in ("openai-v2", "openai-v2+openinference", "openai-v2-event-only"):
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor as OpenAIV2

        OpenAIV2().instrument(tracer_provider=provider)
    if name == "openllmetry":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor as OpenLLMetry

        OpenLLMetry().instrument(tracer_provider=provider)
    if name == "openlit":
        import openlit

        # uses the global TracerProvider set above (OpenLIT detects existing providers)
        openlit.init(disable_metrics=True, application_name=name, service_name=name)
    if name.startswith("langfuse"):
        from langfuse import Langfuse

        Langfuse(public_key="pk-lf-test", secret_key="sk-lf-test", host="http://127.0.0.1:9",
                 tracer_provider=provider)
        from langfuse.openai import openai as lf_openai

        return lf_openai.OpenAI(base_url=llm_url, api_key="sk-test", max_retries=0)
    client = openai.OpenAI(base_url=llm_url, api_key="sk-test", max_retries=0)
    if name == "logfire":
        import logfire

        logfire.instrument_openai(client)
    return client


def calls(stack, client) -> None:
    """A plain call, a streaming call and a call cut by max_tokens, inside the app's request span."""
    from opentelemetry import trace

    with trace.get_tracer("interop-app").start_as_current_span("handle request"):
        _calls(stack, client)


def _calls(stack, client) -> None:
    if stack.client == "anthropic":
        client.messages.create(model=stack.model, max_tokens=100, messages=QUESTION)
        for _ in client.messages.create(model=stack.model, max_tokens=100, messages=QUESTION, stream=True):
            pass
        client.messages.create(model=stack.model, max_tokens=3, messages=QUESTION)
        return
    client.chat.completions.create(model=stack.model, messages=QUESTION)
    for _ in client.chat.completions.create(model=stack.model, messages=QUESTION, stream=True,
                                            stream_options={"include_usage": True}):
        pass
    if stack.length_streamed:  # Langfuse records a finish reason only for streams
        for _ in client.chat.completions.create(model=stack.model, messages=QUESTION, max_tokens=3, stream=True,
                                                stream_options={"include_usage": True}):
            pass
    else:
        client.chat.completions.create(model=stack.model, messages=QUESTION, max_tokens=3)


if __name__ == "__main__":
    main()
