"""A small app using otel-llm-eval: processor + experiment + judge + user feedback, exported over OTLP/HTTP.

The "LLM" is a local fake (no network): it creates the span an instrumentation such as openai-v2
would, with the current GenAI attributes. Spans go to OTEL_EXPORTER_OTLP_ENDPOINT (default the
sidecar on http://127.0.0.1:9318).

    python examples/app.py --requests 50          # 50 requests, then exit
    python examples/app.py --requests 0           # forever (docker compose)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_llm_eval import Experiment, HeuristicJudge, LLMEvalSpanProcessor, record_feedback

PROMPT_STYLE = Experiment("prompt-style", {"terse": 0.5, "friendly": 0.5})
ANSWERS = {
    "terse": ["Paris.", "42.", "Use a context manager.", ""],
    "friendly": ["Great question! The capital of France is Paris.", "Happy to help: the answer is 42.",
                 "I'm sorry, I can't help with that.", "You can use a context manager, which closes the file."],
}


def fake_llm_call(tracer: trace.Tracer, question: str, style: str, rng: random.Random) -> str:
    """What an instrumented client call looks like: one `chat {model}` span with GenAI attributes."""
    answer = rng.choice(ANSWERS[style])
    model = "gpt-4o-mini"
    with tracer.start_as_current_span(f"chat {model}", kind=trace.SpanKind.CLIENT) as span:
        time.sleep(rng.uniform(0.005, 0.03))
        span.set_attributes({
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": model, "gen_ai.response.model": model + "-2024-07-18",
            "gen_ai.usage.input_tokens": 20 + len(question) // 4,
            "gen_ai.usage.output_tokens": max(1, len(answer) // 4),
            "gen_ai.response.finish_reasons": ("stop",),
            "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": question}]}]),
            "gen_ai.output.messages": json.dumps([{"role": "assistant", "finish_reason": "stop",
                                                    "parts": [{"type": "text", "content": answer}]}]),
        })
    return answer


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=20, help="requests to send; 0 = forever (default 20)")
    ap.add_argument("--interval", type=float, default=0.05, help="seconds between requests (default 0.05)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)

    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9318").rstrip("/")
    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME",
                                                                                        "example-app")}))
    # Register the evaluation processor BEFORE the batch exporter (its shutdown drains judge work first).
    provider.add_span_processor(LLMEvalSpanProcessor(judge=HeuristicJudge(), judge_sample_rate=0.5,
                                                     tracer_provider=provider))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
    trace.set_tracer_provider(provider)
    tracer = trace.get_tracer("example-app")
    rng = random.Random(args.seed)

    sent = 0
    try:
        while args.requests == 0 or sent < args.requests:
            user = f"user-{rng.randrange(200)}"
            with PROMPT_STYLE.activate(user) as style:
                with tracer.start_as_current_span("POST /ask") as request_span:
                    answer = fake_llm_call(tracer, "What is the capital of France?", style, rng)
            # Later, the user clicks thumbs up/down in the UI: feedback joins the same trace.
            if rng.random() < 0.4:
                liked = bool(answer) and "sorry" not in answer
                record_feedback(request_span, "thumbs", 1.0 if liked else 0.0, label="up" if liked else "down")
            sent += 1
            time.sleep(args.interval)
    except KeyboardInterrupt:
        pass
    finally:
        provider.shutdown()
    print(f"sent {sent} requests to {endpoint}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
