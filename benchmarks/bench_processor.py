"""Per-span cost of LLMEvalSpanProcessor vs the bare SDK + BatchSpanProcessor, measured in one run.

Method (built for a noisy shared machine):
- Both sides are the same `TracerProvider` + `BatchSpanProcessor` (SDK defaults) exporting to a
  no-op exporter, so export cost does not dominate; the only difference is `LLMEvalSpanProcessor`
  registered in front.
- Bare (A) and with-processor (B) run in alternating short blocks, ABAB... with the order of each
  pair alternating (AB, BA, ...), many blocks per case. Between blocks, outside the timer, both
  pipelines are drained (`force_flush`) and garbage is collected; GC is disabled inside a block.
- Each measured span is a child of its own trace (a pool of parent contexts, the same pool on both
  sides), so trace-id sampling judges exactly 1 % of the spans of every block.
- Reported: median bare and with-processor cost per span, the median per-pair extra cost B-A, the
  median of the per-pair ratios B/A, their interquartile range and a bootstrap 95 % CI of that median.
- A reference row registers an empty `SpanProcessor` instead of ours: what the SDK charges for any
  second processor (its per-span dispatch), the floor under every other row.
- Judged cases come twice: "judge work excluded" holds the judge on the worker thread until the
  block's timer stopped (the block pays the app-thread hand-off only); "judge work included" drains
  the judge worker inside the timer (normalisation, the judge, the evaluation span: all of it
  competes for the GIL with the app, so it is charged to the app).

`--callgrind` also runs the cases once under `valgrind --tool=callgrind` and prints instructions per
span (deterministic: no timing noise), for the app thread alone and for all threads.

    .venv/bin/python benchmarks/bench_processor.py [--blocks 100] [--block-spans 1000] [--callgrind]

Targets: LLM span <= 1.10x, non-LLM span <= 1.02x (ratios: machines differ).
"""

from __future__ import annotations

import argparse
import gc
import glob
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from otel_llm_eval.processor import Experiment, HeuristicJudge, LLMEvalSpanProcessor

LLM_ATTRS = {
    "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18", "gen_ai.usage.input_tokens": 120,
    "gen_ai.usage.output_tokens": 42, "gen_ai.response.finish_reasons": ("stop",),
    "server.address": "api.openai.com",
    "gen_ai.output.messages": '[{"role": "assistant", "parts": [{"type": "text", "content": "Paris."}]}]',
}
PLAIN_ATTRS = {"http.request.method": "GET", "url.path": "/api/items", "http.response.status_code": 200,
               "server.address": "db.internal"}
JUDGE_RATE = 0.01


class NoopExporter(SpanExporter):
    def export(self, spans: Sequence) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class GatedJudge:
    """HeuristicJudge that waits for `gate` first: holds judge work until the block's timer stopped."""

    runs_inline = True
    name = "heuristic"
    source = "code"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self._inner = HeuristicJudge()

    def __call__(self, call: Any) -> Any:
        self.gate.wait()
        return self._inner(call)


@dataclass
class Case:
    name: str
    attrs: dict
    in_experiment: bool
    judge: str  # "off" | "excluded" | "included" | "empty" (an empty SpanProcessor instead of ours)
    target: float | None


CASES = [
    Case("reference: an empty SpanProcessor", PLAIN_ATTRS, False, "empty", None),
    Case("non-LLM span", PLAIN_ATTRS, False, "off", 1.02),
    Case("non-LLM span in an experiment", PLAIN_ATTRS, True, "off", None),
    Case("LLM span in an experiment, judging off", LLM_ATTRS, True, "off", 1.10),
    Case("LLM span, 1% judged, judge work excluded", LLM_ATTRS, True, "excluded", 1.10),
    Case("LLM span, 1% judged, judge work included", LLM_ATTRS, True, "included", 1.10),
]


class Side:
    """One pipeline: provider + BSP(no-op), optionally with the processor in front."""

    def __init__(self, case: Case | None) -> None:
        self.provider = TracerProvider(shutdown_on_exit=False)
        self.processor: LLMEvalSpanProcessor | None = None
        self.gate: threading.Event | None = None
        if case is not None and case.judge == "empty":
            self.provider.add_span_processor(SpanProcessor())  # what the SDK charges for any processor
        elif case is not None:
            judge: Any = None
            rate = 0.0
            if case.judge == "excluded":
                judge = GatedJudge()
                self.gate = judge.gate
                rate = JUDGE_RATE
            elif case.judge == "included":
                judge, rate = HeuristicJudge(), JUDGE_RATE
            self.processor = LLMEvalSpanProcessor(judge=judge, judge_sample_rate=rate,
                                                  tracer_provider=self.provider)
            self.provider.add_span_processor(self.processor)
        self.provider.add_span_processor(BatchSpanProcessor(NoopExporter()))  # SDK defaults
        self.tracer = self.provider.get_tracer("bench")

    def drain(self) -> None:
        if self.gate is not None:
            self.gate.set()
        self.provider.force_flush()


def parent_contexts(n: int, in_experiment: bool, seed: int = 7) -> list[otel_context.Context]:
    """n parent contexts, each in its own trace; every 100th trace id falls under the 1 % threshold."""
    rng = random.Random(seed)
    base = otel_context.Context()
    if in_experiment:
        exp = Experiment("bench", {"a": 0.5, "b": 0.5})
        token = otel_context.attach(base)
        try:
            with exp.activate("user-1"):
                base = otel_context.get_current()
        finally:
            otel_context.detach(token)
    limit = int(JUDGE_RATE * 2**64)
    out = []
    for i in range(n):
        low = rng.randrange(1, limit) if i % 100 == 0 else rng.randrange(limit, 2**64)
        trace_id = (rng.getrandbits(64) << 64) | low
        sc = SpanContext(trace_id, rng.getrandbits(64) or 1, is_remote=False,
                         trace_flags=TraceFlags(TraceFlags.SAMPLED))
        out.append(trace.set_span_in_context(NonRecordingSpan(sc), base))
    return out


def run_block(side: Side, contexts: list, attrs: dict, include_judge: bool,
              mark: Callable[[], Any] | None = None) -> float:
    """Seconds per span for one span per context; drains the pipeline afterwards (outside the timer)."""
    start_span = side.tracer.start_as_current_span  # how instrumentations (openai-v2, HTTP, DB) open spans
    gc.collect()
    if side.gate is not None:
        side.gate.clear()
    if mark is not None:
        mark()
    gc.disable()  # a collector pause would land on whichever side happens to run
    try:
        t0 = time.perf_counter()
        for ctx in contexts:
            with start_span("work", context=ctx, attributes=attrs):
                pass
        if include_judge and side.processor is not None:
            side.processor.force_flush()  # the judge's own work, charged to this block
        elapsed = time.perf_counter() - t0
    finally:
        gc.enable()
    if mark is not None:
        mark()
    side.drain()
    return elapsed / len(contexts)


def quartiles(xs: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]


def bootstrap_median_ci(xs: list[float], resamples: int = 2000, seed: int = 1) -> tuple[float, float]:
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(xs, k=len(xs))) for _ in range(resamples))
    return meds[int(0.025 * resamples)], meds[int(0.975 * resamples) - 1]


def measure(case: Case, blocks: int, block_spans: int, warmup_blocks: int = 6) -> dict[str, Any]:
    bare, proc = Side(None), Side(case)
    contexts = parent_contexts(block_spans, case.in_experiment)
    include = case.judge == "included"
    for _ in range(warmup_blocks):
        run_block(bare, contexts, case.attrs, include)
        run_block(proc, contexts, case.attrs, include)
    a_t, b_t, ratios, diffs = [], [], [], []
    for i in range(blocks):
        if i % 2 == 0:
            a = run_block(bare, contexts, case.attrs, include)
            b = run_block(proc, contexts, case.attrs, include)
        else:
            b = run_block(proc, contexts, case.attrs, include)
            a = run_block(bare, contexts, case.attrs, include)
        a_t.append(a)
        b_t.append(b)
        ratios.append(b / a)
        diffs.append(b - a)
    counters = dict(proc.processor.counters) if proc.processor is not None else {}
    for side in (bare, proc):
        side.provider.shutdown()
    return {"bare": statistics.median(a_t), "proc": statistics.median(b_t), "ratio": statistics.median(ratios),
            "extra": statistics.median(diffs),
            "iqr": quartiles(ratios), "ci": bootstrap_median_ci(ratios), "counters": counters}


# --- instruction counts under callgrind ------------------------------------------------------------

def callgrind_child(block_spans: int) -> int:
    """Runs inside valgrind: each os.getppid() makes callgrind dump (--dump-before=getppid)."""
    random.seed(1)  # the SDK's id generator uses `random`: same trace ids, same sampling every run
    for case in CASES:
        bare, proc = Side(None), Side(case)
        contexts = parent_contexts(block_spans, case.in_experiment)
        include = case.judge == "included"
        for side in (bare, proc):
            run_block(side, contexts, case.attrs, include)  # warm-up (discarded parts)
        for label, side in (("bare", bare), ("proc", proc)):
            run_block(side, contexts, case.attrs, include, mark=os.getppid)
            print(f"PART {case.name}|{label}", flush=True)
        for side in (bare, proc):
            side.provider.shutdown()
    return 0


def _part_totals(out_dir: str, pid: int, app_thread_only: bool) -> dict[int, int]:
    totals: dict[int, int] = {}
    pattern = f"callgrind.out.{pid}.*-01" if app_thread_only else f"callgrind.out.{pid}.*"
    for path in glob.glob(os.path.join(out_dir, pattern)):
        part = int(os.path.basename(path).split(".")[3].split("-")[0])
        with open(path) as fh:
            for line in fh:
                if line.startswith("totals:"):
                    totals[part] = totals.get(part, 0) + int(line.split()[1])
    return totals


def run_callgrind(block_spans: int) -> int:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("valgrind not found (apt-get install -y valgrind)", file=sys.stderr)
        return 2
    print(f"\ncallgrind: {block_spans} spans per case and side (instructions per span, deterministic)")
    print(f"{'case':44} {'bare app':>9} {'proc app':>9} {'ratio':>6} {'bare all':>9} {'proc all':>9} {'ratio':>6}")
    results: dict[bool, dict[str, int]] = {}
    for app_only in (True, False):
        with tempfile.TemporaryDirectory() as out_dir:
            cmd = [valgrind, "--tool=callgrind", "--dump-before=getppid",
                   f"--separate-threads={'yes' if app_only else 'no'}",
                   f"--callgrind-out-file={out_dir}/callgrind.out.%p",
                   sys.executable, os.path.abspath(__file__), "--callgrind-child", "--block-spans", str(block_spans)]
            env = dict(os.environ, PYTHONHASHSEED="0")
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                print(proc.stderr[-2000:], file=sys.stderr)
                return proc.returncode
            pid = int(proc.stderr.split("==", 2)[1])
            labels = [line[5:] for line in proc.stdout.splitlines() if line.startswith("PART ")]
            totals = _part_totals(out_dir, pid, app_only)
            # Each measured block sits between two getppid() dumps; per case: warm-ups, then
            # [mark] bare [mark] drain [mark] proc [mark]. Part k ends at the k-th getppid call.
            per: dict[str, int] = {}
            for i, label in enumerate(labels):
                per[label] = totals.get(2 * i + 2, 0)
            results[app_only] = per
    for case in CASES:
        row = [results[flag][f"{case.name}|{side}"] / block_spans for flag in (True, False)
               for side in ("bare", "proc")]
        print(f"{case.name:44} {row[0]:9.0f} {row[1]:9.0f} {row[1] / row[0]:6.3f} "
              f"{row[2]:9.0f} {row[3]:9.0f} {row[3] / row[2]:6.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=100, help="measured blocks per side and case (default 100)")
    ap.add_argument("--block-spans", type=int, default=1000, help="spans per block (default 1000)")
    ap.add_argument("--callgrind", action="store_true", help="also count instructions under valgrind")
    ap.add_argument("--callgrind-only", action="store_true", help="only the callgrind figures")
    ap.add_argument("--callgrind-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.callgrind_child:
        return callgrind_child(args.block_spans)
    if not args.callgrind_only:
        print(f"python {sys.version.split()[0]}, {args.blocks} blocks x {args.block_spans} spans per side and case, "
              "alternating AB/BA; medians, ratio = median of per-pair ratios")
        print(f"{'case':44} {'bare':>9} {'with proc':>10} {'extra':>8} {'ratio':>6} {'IQR':>13} {'95% CI':>13} "
              f"{'target':>8}")
        for case in CASES:
            r = measure(case, args.blocks, args.block_spans)
            mark = "" if case.target is None else f"<={case.target:.2f}" + ("" if r["ratio"] <= case.target else "!")
            print(f"{case.name:44} {r['bare'] * 1e6:6.2f} us {r['proc'] * 1e6:7.2f} us {r['extra'] * 1e6:5.2f} us "
                  f"{r['ratio']:6.3f} "
                  f"{r['iqr'][0]:6.3f}-{r['iqr'][1]:6.3f} {r['ci'][0]:6.3f}-{r['ci'][1]:6.3f} {mark:>8}")
            if case.judge in ("excluded", "included"):
                c = r["counters"]
                print(f"{'':44} judged {c.get('judged', 0)}, dropped {c.get('dropped', 0)}")
    if args.callgrind or args.callgrind_only:
        return run_callgrind(min(args.block_spans, 500))
    return 0  # a benchmark reports; it does not gate (timings vary with machine load)


if __name__ == "__main__":
    raise SystemExit(main())
