"""Per-span cost of LLMEvalSpanProcessor vs the bare SDK + BatchSpanProcessor, measured in one run.

Both pipelines export to a no-op exporter through a BatchSpanProcessor, so export cost does not
dominate. Rounds are paired (bare and with-processor back to back, alternating which goes first) and the
median of the paired ratios is reported, which cancels most of the drift of a shared machine.
Targets: LLM span <= 1.10x, non-LLM span <= 1.02x (ratios, not absolute times: machines differ).

    .venv/bin/python benchmarks/bench_processor.py [--spans 5000] [--rounds 41]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import timeit
from typing import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from otel_llm_eval.processor import Experiment, HeuristicJudge, LLMEvalSpanProcessor

LLM_ATTRS = {
    "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18", "gen_ai.usage.input_tokens": 120,
    "gen_ai.usage.output_tokens": 42, "gen_ai.response.finish_reasons": ("stop",),
    "server.address": "api.openai.com",
}
PLAIN_ATTRS = {"http.request.method": "GET", "url.path": "/api/items", "http.response.status_code": 200,
               "server.address": "db.internal"}
LLM_HOT = "LLM span in an experiment, judge rate 0"
LLM_JUDGED = "LLM span in an experiment, 1% judged"
TARGETS = {"non-LLM span": 1.02, "non-LLM span in an experiment": None, LLM_HOT: 1.10, LLM_JUDGED: None}


class NoopExporter(SpanExporter):
    def export(self, spans: Sequence) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def make_provider(with_processor: bool, judge_sample_rate: float = 0.0) -> tuple[TracerProvider, trace.Tracer]:
    provider = TracerProvider(shutdown_on_exit=False)
    if with_processor:
        provider.add_span_processor(LLMEvalSpanProcessor(judge=HeuristicJudge(), judge_sample_rate=judge_sample_rate,
                                                         tracer_provider=provider))
    provider.add_span_processor(BatchSpanProcessor(NoopExporter(), max_queue_size=100_000,
                                                   max_export_batch_size=2048, schedule_delay_millis=200))
    return provider, provider.get_tracer("bench")


def run_round(tracer: trace.Tracer, n: int, attrs: dict, experiment: Experiment | None) -> float:
    """Seconds per span for n spans started and ended under one long-lived parent."""
    gc.collect()
    start_span = tracer.start_span
    with tracer.start_as_current_span("parent"):
        if experiment is not None:
            scope = experiment.activate("user-1")
            scope.__enter__()
        gc.disable()  # collector pauses would land on whichever pipeline happens to be running
        try:
            t0 = time.perf_counter()
            for _ in range(n):
                start_span("work", attributes=attrs).end()
            elapsed = time.perf_counter() - t0
        finally:
            gc.enable()
        if experiment is not None:
            scope.__exit__(None, None, None)
    return elapsed / n


def _sample_span(tracer: trace.Tracer, attrs: dict, experiment: Experiment | None):
    """A live span (for on_start), an ended one (for on_end) and the context they were started in."""
    from opentelemetry import context as otel_context

    with tracer.start_as_current_span("parent"):
        if experiment is not None:
            with experiment.activate("user-1"):
                ctx = otel_context.get_current()
        else:
            ctx = otel_context.get_current()
        live = tracer.start_span("work", attributes=attrs, context=ctx)  # on_start needs a live span
        ended = tracer.start_span("work", attributes=attrs, context=ctx)
        ended.end()
    return live, ended, ctx


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spans", type=int, default=5_000, help="spans per round (default 5000)")
    ap.add_argument("--rounds", type=int, default=41, help="paired rounds per case (default 41)")
    args = ap.parse_args(argv)
    exp = Experiment("bench", {"a": 0.5, "b": 0.5})
    bare_provider, bare = make_provider(False)
    eval_provider, evaluated = make_provider(True, judge_sample_rate=0.0)
    judged_provider, judged = make_provider(True, judge_sample_rate=0.01)
    # (name, attributes, experiment, pipeline with the processor)
    cases = [("non-LLM span", PLAIN_ATTRS, None, evaluated),
             ("non-LLM span in an experiment", PLAIN_ATTRS, exp, evaluated),
             (LLM_HOT, LLM_ATTRS, exp, evaluated),
             (LLM_JUDGED, LLM_ATTRS, exp, judged)]
    print(f"python {sys.version.split()[0]}, {args.rounds} paired rounds x {args.spans} spans per case "
          "(ABBA order); per-span medians and the median of paired ratios")
    print(f"{'case':40} {'bare SDK+BSP':>14} {'with processor':>15} {'ratio':>7} {'target':>7}")
    bare_medians: dict[str, float] = {}
    for _, attrs, experiment, evaluated in cases:  # global warmup: the first case must not pay for it
        for tracer in (bare, evaluated):
            run_round(tracer, args.spans, attrs, experiment)
    for name, attrs, experiment, evaluated in cases:
        for tracer in (bare, evaluated):  # warmup
            run_round(tracer, args.spans, attrs, experiment)
        bare_t, eval_t, ratios = [], [], []
        for i in range(args.rounds):
            if i % 2 == 0:
                b = run_round(bare, args.spans, attrs, experiment)
                e = run_round(evaluated, args.spans, attrs, experiment)
            else:
                e = run_round(evaluated, args.spans, attrs, experiment)
                b = run_round(bare, args.spans, attrs, experiment)
            bare_t.append(b)
            eval_t.append(e)
            ratios.append(e / b)
        ratio = statistics.median(ratios)
        bare_medians[name] = statistics.median(bare_t)
        target = TARGETS[name]
        mark = "" if target is None else (f"<={target:.2f}" + ("" if ratio <= target else " MISSED"))
        print(f"{name:40} {statistics.median(bare_t) * 1e6:11.2f} us {statistics.median(eval_t) * 1e6:12.2f} us "
              f"{ratio:7.3f} {mark:>7}")
    # Noise-robust view: the processor's own hook cost (best of 7 timings, on_start + on_end on a
    # real span of each case) against the bare per-span median measured above.
    print()
    print(f"{'case':40} {'hooks (best)':>14} {'bare span':>15} {'ratio':>7}")
    for name, attrs, experiment, evaluated in cases:
        provider = judged_provider if evaluated is judged else eval_provider
        processor = next(p for p in provider._active_span_processor._span_processors
                         if isinstance(p, LLMEvalSpanProcessor))
        live, ended, ctx = _sample_span(evaluated, attrs, experiment)
        n = 20_000
        best = min(timeit.repeat(lambda: (processor.on_start(live, ctx), processor.on_end(ended)),
                                 number=n, repeat=7)) / n
        base = bare_medians[name]
        print(f"{name:40} {best * 1e6:11.3f} us {base * 1e6:12.2f} us {(base + best) / base:7.3f}")
    for provider in (bare_provider, eval_provider, judged_provider):
        provider.shutdown()
    return 0  # a benchmark reports; it does not gate (timings vary with machine load)


if __name__ == "__main__":
    raise SystemExit(main())
