"""CPU the sidecar spends per span (its process and its worker processes), under load over HTTP.

    python benchmarks/sidecar_cpu_per_span.py [--batches 200] [--workers N] [--no-plugins]

Same load as bench_sidecar_ingest.py (512 openai-v2 spans per batch without text, 2 client threads,
default configuration unless told otherwise). Timing and CPU accounting start once 2 warm-up
batches are applied; CPU is read from /proc (Linux) for the sidecar and its children. On a shared
machine spans/s moves with other jobs' load; CPU per span moves much less, so it is the figure to
compare between commits there. No target.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _sidecar_load import SidecarProcess, make_batch, post_all  # noqa: E402

SPANS_PER_BATCH = 512


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and its direct children (worker processes), from /proc."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    total = 0.0
    for p in [pid] + [int(c) for c in children]:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--workers", type=int, default=None, help="variant: ingest.workers")
    ap.add_argument("--no-plugins", dest="plugins", action="store_false", help="variant: no plugins")
    args = ap.parse_args()
    bodies = [make_batch(i, SPANS_PER_BATCH, text_bytes=0) for i in range(args.batches)]
    warmup = [make_batch(50_000 + i, SPANS_PER_BATCH, text_bytes=0) for i in range(2)]
    sc = SidecarProcess("" if args.workers is None else f"ingest:\n  workers: {args.workers}\n",
                        plugins=args.plugins, dedup=True)
    try:
        post_all(sc.url, warmup, threads=1)
        while sc.spans_ingested() < len(warmup) * SPANS_PER_BATCH:
            time.sleep(0.01)
        base, cpu0, start = sc.spans_ingested(), tree_cpu_seconds(sc.proc.pid), time.perf_counter()
        post_all(sc.url, bodies, threads=2)
        n = len(bodies) * SPANS_PER_BATCH
        while sc.spans_ingested() < base + n:
            time.sleep(0.01)
        elapsed, cpu = time.perf_counter() - start, tree_cpu_seconds(sc.proc.pid) - cpu0
    finally:
        sc.stop()
    variant = ([f"ingest.workers={args.workers}"] if args.workers is not None else []) + \
        ([] if args.plugins else ["no plugins"])
    print(f"configuration: {'VARIANT (' + ', '.join(variant) + ')' if variant else 'DEFAULT'}; "
          f"{args.batches} x {SPANS_PER_BATCH} spans without text, {os.cpu_count()} CPUs")
    print(f"{n / elapsed:8.0f} spans/s, sidecar CPU {1e6 * cpu / n:5.1f} us per span "
          f"({n / cpu:.0f} spans per CPU-second)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
