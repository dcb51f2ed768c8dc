"""The sidecar's per-span work in its main process: applying prepared batches to the state.

    python benchmarks/bench_sidecar_apply.py [--batches 20] [--rounds 7] [--text-bytes 0]

In-process, no HTTP: decodes the batches (same shape as bench_sidecar_ingest.py), prepares them
(`Preparer.prepare_traces`: walk, normalize, checks — what `ingest.workers` moves to worker
processes) and applies them (`Ingestor.apply`, which stays on the ingest thread), best of
`--rounds` by process CPU time. Prints microseconds per span for both and apply / prepare (the
baseline measured in the same run). No target: it shows where the main process's time goes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _sidecar_load import make_batch  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402

from otel_llm_eval.sidecar.server import build  # noqa: E402

SPANS_PER_BATCH = 512


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--text-bytes", type=int, default=0)
    args = ap.parse_args()
    reqs = []
    for i in range(args.batches):
        req = ExportTraceServiceRequest()
        req.ParseFromString(make_batch(i, SPANS_PER_BATCH, text_bytes=args.text_bytes))
        reqs.append(req)
    with tempfile.TemporaryDirectory() as d:
        sc = build({"state": {"db_path": os.path.join(d, "s.db")}, "plugins": []}, plugins=[], environ={})
        try:
            ing = sc.ingestor
            best_prepare = best_apply = float("inf")
            for _ in range(args.rounds):
                t0 = time.process_time()
                prepared = [ing.preparer.prepare_traces(r) for r in reqs]
                t1 = time.process_time()
                with sc.state.lock:
                    for p in prepared:
                        ing.apply(p)
                t2 = time.process_time()
                best_prepare, best_apply = min(best_prepare, t1 - t0), min(best_apply, t2 - t1)
        finally:
            sc.stop()
    n = args.batches * SPANS_PER_BATCH
    prep_us, apply_us = 1e6 * best_prepare / n, 1e6 * best_apply / n
    print(f"{args.batches} x {SPANS_PER_BATCH} spans, text {args.text_bytes} bytes, best of {args.rounds} rounds")
    print(f"prepare (walk, normalize, checks): {prep_us:6.2f} us/span")
    print(f"apply (state, labels, index)     : {apply_us:6.2f} us/span  ratio apply/prepare {apply_us / prep_us:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
