"""The demo's simulated LLM application: real OpenTelemetry SDK, real processor, real OTLP exporter.

`SimulatedApp(sidecar_url, story, ...)` sets up its own TracerProvider (not the global one) with
`LLMEvalSpanProcessor` (heuristic judge on a sample) registered before a `BatchSpanProcessor`
whose `OTLPSpanExporter` posts to the sidecar's `/v1/traces`. `handle(request)` plays one user
request: experiment assignment, the bandit's model choice, the "LLM call" (a span with GenAI
attributes, its timing taken from the simulated latency), thumbs feedback through
`record_feedback`, and for pairwise requests two calls and the user's choice through the
interleaving helper. Nothing bypasses the wire: every number the report shows came to the
sidecar as OTLP.

Runs on the caller's thread; `shutdown()` flushes the judge queue and the exporter.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator

from . import simulation as sim


class SeededIdGenerator(IdGenerator):
    """Trace ids from a seeded rng, so judge sampling (deterministic on the trace id) repeats.

    Trace ids are drawn only for root spans, which the simulation thread alone creates; span ids
    come from a separate rng behind a lock (the judge worker creates spans too).
    """

    def __init__(self, seed: int) -> None:
        self._trace_rng = random.Random(f"trace:{seed}")
        self._span_rng = random.Random(f"span:{seed}")
        self._lock = threading.Lock()

    def generate_trace_id(self) -> int:
        with self._lock:
            return self._trace_rng.getrandbits(128) or 1

    def generate_span_id(self) -> int:
        with self._lock:
            return self._span_rng.getrandbits(64) or 1

    def is_trace_id_random(self) -> bool:
        return True


@dataclass
class Counters:
    requests: int = 0
    llm_calls: int = 0
    feedback: int = 0
    thumbs_up: int = 0
    pairwise: int = 0
    errors: int = 0
    by_variant: dict[str, int] = field(default_factory=dict)
    by_model: dict[str, int] = field(default_factory=dict)


def _heuristic_judge() -> Any:
    """The processor's built-in heuristic judge (no network): refusals score 2, answers shorter
    than 80 characters 3, the rest 5, so the simulated prompts' quality difference is visible.

    Its evaluations carry source `code`, which the sidecar counts as the judge
    (`semconv.JUDGE_SOURCES`: judge counters, judge-score drift and anomaly series), exactly as an
    OpenAIJudge's would.
    """
    from otel_llm_eval import HeuristicJudge

    return HeuristicJudge(name="quality", min_chars=80)


class SimulatedApp:
    """One simulated support bot, instrumented like a real app."""

    def __init__(self, sidecar_url: str, story: sim.Story, *, judge_sample_rate: float,
                 bandit_refresh_seconds: float, export_delay_millis: int = 250) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        from otel_llm_eval import Experiment, LLMEvalSpanProcessor

        self.story = story
        self.counters = Counters()
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": sim.SERVICE, "service.version": "demo"}),
            id_generator=SeededIdGenerator(story.seed),
        )
        self.processor = LLMEvalSpanProcessor(judge=_heuristic_judge(), judge_sample_rate=judge_sample_rate,
                                              tracer_provider=self.provider, stats_interval_seconds=1.0)
        self.provider.add_span_processor(self.processor)
        self.exporter = OTLPSpanExporter(endpoint=sidecar_url.rstrip("/") + "/v1/traces", timeout=10)
        self.provider.add_span_processor(BatchSpanProcessor(
            self.exporter, schedule_delay_millis=export_delay_millis, max_export_batch_size=256,
            max_queue_size=20_000))
        self.tracer = self.provider.get_tracer("otel_llm_eval.demo")
        self.experiment = Experiment(sim.EXPERIMENT_ID, {sim.CONTROL: 0.5, sim.TREATMENT: 0.5})
        self.bandit = self._make_bandit(sidecar_url, bandit_refresh_seconds)

    # -- integration points with the processor's bandit and interleaving helpers ---------------

    def _make_bandit(self, sidecar_url: str, refresh_seconds: float) -> Any:
        from otel_llm_eval.processor.bandit import Bandit

        return Bandit(sim.BANDIT_ID, list(sim.MODELS), sidecar_url=sidecar_url,
                      refresh_seconds=refresh_seconds, seed=self.story.seed)

    # -- one request ---------------------------------------------------------------------------

    def handle(self, req: sim.Request) -> None:
        """Play one request now. Never raises (a demo app must not die on one bad request)."""
        try:
            if req.pairwise:
                self._pairwise(req)
            else:
                self._chat(req)
        except Exception:  # pragma: no cover - counted, shown in the progress line
            self.counters.errors += 1
            raise

    def _llm_call(self, req: sim.Request, variant: str, model: str, *, second: bool = False
                  ) -> tuple[sim.Answer, trace.Span]:
        ans = sim.answer(req, variant, model, second=second)
        end_ns = time.time_ns()
        start_ns = end_ns - int(ans.latency_seconds * 1e9)
        system = "You are a support assistant." if variant == sim.CONTROL else (
            "You are a support assistant. Answer in three sentences with the concrete steps; "
            "never refuse a question about orders, returns, accounts, shipping or billing.")
        attrs = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai" if model.startswith("gpt") else (
                "anthropic" if model.startswith("claude") else "mistral_ai"),
            "gen_ai.request.model": model,
            "gen_ai.response.model": model,
            "gen_ai.usage.input_tokens": sim.input_tokens(req, variant),
            "gen_ai.usage.output_tokens": ans.output_tokens,
            "gen_ai.response.finish_reasons": [ans.finish_reason],
            "gen_ai.conversation.id": req.session_id,
            "user.id": req.user_id,
            "app.topic": req.topic,
            "gen_ai.input.messages": json.dumps([
                {"role": "system", "parts": [{"type": "text", "content": system}]},
                {"role": "user", "parts": [{"type": "text", "content": req.question}]},
            ]),
            "gen_ai.output.messages": json.dumps([
                {"role": "assistant", "parts": [{"type": "text", "content": ans.text}],
                 "finish_reason": ans.finish_reason},
            ]),
        }
        span = self.tracer.start_span(f"chat {model}", kind=trace.SpanKind.CLIENT,
                                      attributes=attrs, start_time=start_ns)
        span.end(end_time=end_ns)
        self.counters.llm_calls += 1
        self.counters.by_model[model] = self.counters.by_model.get(model, 0) + 1
        return ans, span

    def _chat(self, req: sim.Request) -> None:
        from otel_llm_eval import record_feedback

        with self.tracer.start_as_current_span("POST /chat", kind=trace.SpanKind.SERVER,
                                               attributes={"user.id": req.user_id}):
            with self.experiment.activate(req.user_id) as variant:
                with self.bandit.activate() as model:
                    ans, span = self._llm_call(req, variant, model)
        self.counters.requests += 1
        self.counters.by_variant[variant] = self.counters.by_variant.get(variant, 0) + 1
        up = sim.thumbs_up(req, ans)
        if up is not None:
            record_feedback(span, "thumbs_up", 1.0 if up else 0.0, label="positive" if up else "negative")
            self.counters.feedback += 1
            self.counters.thumbs_up += int(up)

    def _pairwise(self, req: sim.Request) -> None:
        from otel_llm_eval.processor import interleaving

        variant = sim.TREATMENT  # both sides get the same (new) prompt; only the model differs
        with self.tracer.start_as_current_span("POST /compare", kind=trace.SpanKind.SERVER,
                                               attributes={"user.id": req.user_id}) as root:
            pair = interleaving.pairwise(sim.PAIRWISE_ID, *sim.PAIRWISE_MODELS,
                                         rng=random.Random(req.position_draw))
            answers = {}
            for i, model in enumerate(pair.shown):
                answers[model] = self._llm_call(req, variant, model, second=i == 1)[0]
            first, second = (answers[m] for m in pair.shown)
            choice = sim.pairwise_choice(req, first, second)
            if choice is None:
                pair.record(root, tie=True)
            else:
                pair.record(root, winner=pair.shown[choice])
        self.counters.requests += 1
        self.counters.pairwise += 1

    def shutdown(self, timeout_seconds: float = 15.0) -> None:
        """Drain the judge queue and the exporter (bounded by `timeout_seconds`)."""
        try:
            self.provider.force_flush(timeout_millis=int(timeout_seconds * 1000))
        finally:
            self.provider.shutdown()
            close = getattr(self.bandit, "close", None)
            if close:
                close()
