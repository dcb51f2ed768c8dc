"""What the anomalies plugin keeps per series and time slot: n, sum and latency bucket counts, from
which a slot's mean or p95 (as PromQL's histogram_quantile) is read. O(1) updates."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from ....catalog import LATENCY_BUCKETS_SECONDS


@dataclass
class AnomalySlot:
    """Aggregates of one series in one slot: n, sum, and latency bucket counts (for p95)."""

    n: int = 0
    total: float = 0.0
    buckets: list[int] | None = None

    def add(self, x: float, histogram: bool = False) -> None:
        self.n += 1
        self.total += x
        if histogram:
            if self.buckets is None:
                self.buckets = [0] * (len(LATENCY_BUCKETS_SECONDS) + 1)
            self.buckets[bisect.bisect_left(LATENCY_BUCKETS_SECONDS, x)] += 1

    def value(self, kind: str) -> float | None:
        if self.n == 0:
            return None
        if kind == "p95":
            return quantile_from_buckets(self.buckets or [], 0.95)
        return self.total / self.n


def quantile_from_buckets(counts: list[int], q: float) -> float | None:
    """Quantile by linear interpolation inside the bucket, as PromQL's histogram_quantile."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    cum = 0
    bounds = list(LATENCY_BUCKETS_SECONDS)
    for i, c in enumerate(counts):
        if cum + c >= rank and c > 0:
            if i >= len(bounds):
                return bounds[-1]  # +Inf bucket: the highest finite bound, as Prometheus does
            lo = bounds[i - 1] if i > 0 else 0.0
            return lo + (bounds[i] - lo) * (rank - cum) / c
        cum += c
    return bounds[-1]
