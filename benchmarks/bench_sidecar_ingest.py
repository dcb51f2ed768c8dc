"""Sidecar ingest throughput over real HTTP vs bare protobuf decode + attribute walk (same run).

    python benchmarks/bench_sidecar_ingest.py [--batches 40] [--workers N] [--no-plugins]

Without options the sidecar runs in its DEFAULT configuration, as users run it: the default plugins
(analysis, review, offline: they see every call), `ingest.workers` 0 (the ingest thread does the
work), request journal and body dedup on. `--workers N` and `--no-plugins` measure variants and say
so in the first line of the output.

Prints spans/s for: the baseline (ParseFromString + walking every attribute of the same
batches, in this process), the sidecar without text, and the sidecar with 1 KB prompt and
completion and every check on; plus the ratios. Targets: >= 0.35x the baseline without text,
>= 15,000 spans/s with text (PASS/FAIL printed; `--strict` exits 1 on FAIL). The sidecar runs as a
subprocess (`otel-llm-eval sidecar`), fed by 2 threads over real HTTP; timing starts once the
warm-up batches are applied (worker processes up) and ends when /healthz's spans_ingested has
every measured span.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _sidecar_load import SidecarProcess, make_batch, post_all  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402

SPANS_PER_BATCH = 512


def bare_decode_walk(bodies: list[bytes]) -> float:
    """spans/s of ParseFromString + reading every attribute value (the floor any receiver pays)."""
    start = time.perf_counter()
    n = 0
    for body in bodies:
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    n += 1
                    attrs = {}
                    for kv in span.attributes:
                        v = kv.value
                        attrs[kv.key] = getattr(v, v.WhichOneof("value"))
    return n / (time.perf_counter() - start)


def sidecar_rate(bodies: list[bytes], warmup: list[bytes], threads: int, workers: int | None,
                 plugins: bool = True) -> tuple[float, int]:
    # dedup stays on (the default): the warm-up batches differ from the measured ones
    sc = SidecarProcess("" if workers is None else f"ingest:\n  workers: {workers}\n", plugins=plugins, dedup=True)
    try:
        # warm-up (imports, worker processes starting, first SQLite pages): timing starts once its
        # spans are applied, so the rate is the steady state and no warm-up span counts in it
        post_all(sc.url, warmup, threads=1)
        deadline = time.perf_counter() + 60
        while sc.spans_ingested() < len(warmup) * SPANS_PER_BATCH and time.perf_counter() < deadline:
            time.sleep(0.01)
        base = sc.spans_ingested()
        expected = base + len(bodies) * SPANS_PER_BATCH
        start = time.perf_counter()
        retries = post_all(sc.url, bodies, threads=threads)
        while sc.spans_ingested() < expected:
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        return len(bodies) * SPANS_PER_BATCH / elapsed, retries
    finally:
        sc.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--workers", type=int, default=None,
                    help="variant: ingest.workers of the sidecar (default: the sidecar's default, 0 = the ingest thread)")
    ap.add_argument("--no-plugins", dest="plugins", action="store_false",
                    help="variant: no plugins (the default configuration loads analysis, review and offline)")
    ap.add_argument("--plugins", dest="plugins", action="store_true", help=argparse.SUPPRESS)  # the default now
    args = ap.parse_args()
    plain = [make_batch(i, SPANS_PER_BATCH, text_bytes=0) for i in range(args.batches)]
    texts = [make_batch(10_000 + i, SPANS_PER_BATCH, text_bytes=1024) for i in range(args.batches)]
    warm_plain = [make_batch(50_000 + i, SPANS_PER_BATCH, text_bytes=0) for i in range(2)]
    warm_texts = [make_batch(60_000 + i, SPANS_PER_BATCH, text_bytes=1024) for i in range(2)]
    base_plain = max(bare_decode_walk(plain) for _ in range(3))
    base_text = max(bare_decode_walk(texts) for _ in range(3))
    rate_plain, r1 = sidecar_rate(plain, warm_plain, args.threads, args.workers, args.plugins)
    rate_text, r2 = sidecar_rate(texts, warm_texts, args.threads, args.workers, args.plugins)
    changed = ([f"ingest.workers={args.workers}"] if args.workers is not None else []) + \
        ([] if args.plugins else ["no plugins"])
    print("configuration: " + (f"VARIANT ({', '.join(changed)})" if changed else
                               "DEFAULT (plugins analysis, review, offline; ingest.workers 0; journal and dedup on)"))
    print(f"batches: {args.batches} x {SPANS_PER_BATCH} spans, {args.threads} client threads, real HTTP, "
          f"{os.cpu_count()} CPUs")
    print(f"bare decode+walk, no text : {base_plain:10.0f} spans/s")
    print(f"bare decode+walk, 1KB text: {base_text:10.0f} spans/s")
    print(f"sidecar, no text          : {rate_plain:10.0f} spans/s  ratio {rate_plain / base_plain:.2f}x "
          f"(target >= 0.35x)  429 retries {r1}")
    print(f"sidecar, 1KB text, checks : {rate_text:10.0f} spans/s  ratio {rate_text / base_text:.2f}x "
          f"(target >= 15000 spans/s)  429 retries {r2}")
    ok = rate_plain / base_plain >= 0.35 and rate_text >= 15_000
    print("PASS" if ok else "FAIL")
    return 0 if ok or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
