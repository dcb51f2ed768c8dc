"""Sidecar ingest throughput with the judge plugin on vs off (the cascade must not slow ingest).

    python benchmarks/bench_judge_ingest.py [--batches 20] [--rate 0.1] [--judge-latency 0.2]

Two `otel-llm-eval sidecar` subprocesses with the default plugins (analysis, review, offline,
judge) take the same batches of LLM spans with 1 KB prompt and completion over real HTTP: one with
`judge.enabled: false`, one judging a `--rate` share of the calls that passed the checks through
an OpenAI-compatible judge server in this process that answers after `--judge-latency` seconds.
Runs alternate off/on `--rounds` times; the best of each is kept. Prints spans/s, the ratio on/off
(target >= 0.85: PASS/FAIL; `--strict` exits 1 on FAIL), and what the judge did meanwhile
(judged, dropped for a full queue).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

from _sidecar_load import SidecarProcess, make_batch, post_all  # noqa: E402
from fake_judge import FakeJudge  # noqa: E402

SPANS_PER_BATCH = 512
TARGET_RATIO = 0.85


def judge_config(enabled: bool, base_url: str, rate: float) -> str:
    return ("ingest:\n  workers: 0\n"
            "analysis:\n  interval_seconds: 3600\n"
            "judge:\n"
            f"  enabled: {'true' if enabled else 'false'}\n"
            f"  default_rate: {rate}\n  max_rate: {rate}\n  use_planner: false\n"
            "  workers: 4\n  queue_max: 1000\n"
            "  evaluators:\n"
            f"    - {{name: quality, kind: openai, model: judge-mini, base_url: '{base_url}', timeout_seconds: 5,"
            " retries: 0, api_key_env: BENCH_JUDGE_KEY}\n")


def run_once(bodies: list[bytes], enabled: bool, base_url: str, rate: float, threads: int) -> tuple[float, dict]:
    sc = SidecarProcess(judge_config(enabled, base_url, rate), plugins=True)
    try:
        post_all(sc.url, bodies[:1], threads=1)  # warm-up
        base = sc.spans_ingested()
        expected = base + len(bodies) * SPANS_PER_BATCH
        start = time.perf_counter()
        post_all(sc.url, bodies, threads=threads)
        while sc.spans_ingested() < expected:
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        stats = {"queue_full": sc.metric("llm_eval_judge_sidecar_skipped_total", 'reason="queue_full"'),
                 "judged": sc.metric("llm_eval_judge_sampled_total")}
        return len(bodies) * SPANS_PER_BATCH / elapsed, stats
    finally:
        sc.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--rate", type=float, default=0.1, help="share of passing calls judged (default 0.1)")
    ap.add_argument("--judge-latency", type=float, default=0.2, help="seconds the judge server takes per answer")
    ap.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    args = ap.parse_args()
    bodies = [make_batch(20_000 + i, SPANS_PER_BATCH, text_bytes=1024) for i in range(args.batches)]
    off, on, on_stats = 0.0, 0.0, {}
    with FakeJudge(delay_seconds=args.judge_latency) as judge:
        for _ in range(args.rounds):
            off = max(off, run_once(bodies, False, judge.base_url, args.rate, args.threads)[0])
            rate, stats = run_once(bodies, True, judge.base_url, args.rate, args.threads)
            if rate > on:
                on, on_stats = rate, stats
        requests = judge.total_requests()
    ratio = on / off
    print(f"batches: {args.batches} x {SPANS_PER_BATCH} spans with 1 KB text, {args.threads} client threads, real HTTP, "
          f"default plugins, best of {args.rounds}, {os.cpu_count()} CPUs")
    print(f"judge off                : {off:10.0f} spans/s")
    print(f"judge on (rate {args.rate:g}, {args.judge_latency:g} s judge): {on:10.0f} spans/s  ratio {ratio:.2f}x "
          f"(target >= {TARGET_RATIO})")
    print(f"judge on, during its best run: judged {on_stats.get('judged', 0):.0f} calls by the time ingest ended, "
          f"dropped {on_stats.get('queue_full', 0):.0f} for a full queue; {requests} judge requests in all runs")
    ok = ratio >= TARGET_RATIO
    print("PASS" if ok else "FAIL")
    return 0 if ok or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
