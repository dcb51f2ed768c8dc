"""Soak: the sidecar's RSS under constant load for N minutes (target: flat within 10%).

    python benchmarks/soak_sidecar.py --minutes 10 --spans-per-second 2000

Runs `otel-llm-eval sidecar` as a subprocess (defaults: journal and dedup on, plugins off) and
feeds it fresh batches of 512 LLM spans with 1 KB prompt and completion (new trace ids every
batch, so the span index, usage sets and dedup table see realistic churn) at a constant rate.
Samples RSS every 10 s; compares the mean RSS of the last minute with the first minute after
warm-up, and prints the spread of every sample after warm-up. Warm-up (default 4 minutes) must
cover the span index filling up to its cap (200,000 entries: 100 s at 2,000 spans/s) and being
replaced once: the allocator's high-water mark settles only after that first full turnover.
Exits 1 when growth exceeds 10%.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _sidecar_load import SidecarProcess, make_batch  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--spans-per-second", type=int, default=2000)
    ap.add_argument("--warmup-minutes", type=float, default=4.0)
    ap.add_argument("--plugins", action="store_true", help="load the default plugins too")
    args = ap.parse_args()
    sc = SidecarProcess(dedup=True, plugins=args.plugins)
    conn = http.client.HTTPConnection("127.0.0.1", sc.port, timeout=60)
    batch_interval = 512 / args.spans_per_second
    samples: list[tuple[float, int]] = []
    start = time.monotonic()
    next_send = start
    next_sample = start
    seed = 0
    sent = rejected = 0
    try:
        while time.monotonic() - start < args.minutes * 60:
            now = time.monotonic()
            if now >= next_sample:
                samples.append((now - start, sc.rss_bytes()))
                print(f"t={now - start:6.0f}s rss={samples[-1][1] / 2**20:7.1f} MiB sent={sent} 429s={rejected}",
                      flush=True)
                next_sample += 10
            if now < next_send:
                time.sleep(min(next_send - now, 0.05))
                continue
            seed += 1
            body = make_batch(1_000_000 + seed, 512, text_bytes=1024)
            conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                sent += 512
            else:
                rejected += 1
            next_send += batch_interval
        processed = sc.metric("llm_eval_ingest_spans_total")
    finally:
        sc.stop()
    warm = [r for t, r in samples if args.warmup_minutes * 60 <= t < args.warmup_minutes * 60 + 60]
    last = [r for t, r in samples if t >= samples[-1][0] - 60]
    if not warm or not last:
        print("run too short for a warm-up and a last minute")
        return 1
    w, la = sum(warm) / len(warm), sum(last) / len(last)
    growth = (la - w) / w
    after = [r for t, r in samples if t >= args.warmup_minutes * 60]
    print("RSS samples (MiB):", " ".join(f"{r / 2**20:.0f}" for _, r in samples))
    print(f"after warm-up: min {min(after) / 2**20:.1f} MiB, max {max(after) / 2**20:.1f} MiB "
          f"(spread {(max(after) - min(after)) / min(after) * 100:.1f}%)")
    print(f"spans sent: {sent} at {args.spans_per_second}/s target; processed {processed:.0f}; 429 answers: {rejected}")
    print(f"RSS after warm-up (minute {args.warmup_minutes:g}-{args.warmup_minutes + 1:g}): {w / 2**20:.1f} MiB; "
          f"last minute: {la / 2**20:.1f} MiB; growth {growth * 100:+.1f}% (target within 10%); "
          f"max {max(r for _, r in samples) / 2**20:.1f} MiB")
    ok = abs(growth) <= 0.10
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
