"""In-memory state the analysis plugin keeps from ingest: drift reservoirs, anomaly slots,
engagement sessions, interleaving counts. Plain containers with O(1) updates; the plugin holds
the lock, persists them (to_rows/from_rows) and runs the statistics on snapshots of them.
"""

from __future__ import annotations

import bisect
from array import array
import math
import random
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..catalog import LATENCY_BUCKETS_SECONDS


def slot_of(t: float, slot_seconds: float) -> int:
    return int(math.floor(t / slot_seconds) * slot_seconds)


# --- drift -------------------------------------------------------------------------------------

class DriftSlot:
    """One time slot of one feature: how many values arrived and a uniform reservoir of them
    (numeric, an array of doubles), or counts per category (categorical, capped: extra categories
    fold into 'other'). Compact on purpose: 100 features x 150 slots of these live in the heap,
    and arrays are invisible to the garbage collector."""

    __slots__ = ("count", "values", "categories")

    def __init__(self, count: int = 0, values: Iterable[float] = (), categories: dict | None = None) -> None:
        self.count = count
        self.values = array("d", values)
        self.categories = categories

    def add_numeric(self, x: float, cap: int, rng: random.Random) -> None:
        self.count += 1
        if len(self.values) < cap:
            self.values.append(x)
        else:  # Algorithm R: every value seen so far stays with probability cap / count
            j = rng.randrange(self.count)
            if j < cap:
                self.values[j] = x

    def add_numeric_many(self, xs: list[float], cap: int, rng: random.Random) -> None:
        """`add_numeric` for each of xs in order: fills the reservoir with one C-level extend, then
        Algorithm R with j drawn as int(random() * count) (uniform like randrange, cheaper)."""
        values = self.values
        room = cap - len(values)
        if room > 0:
            take = xs[:room]
            values.extend(take)
            self.count += len(take)
            xs = xs[room:]
        count = self.count
        draw = rng.random
        for x in xs:
            count += 1
            j = int(draw() * count)
            if j < cap:
                values[j] = x
        self.count = count

    def add_category(self, c: str, max_categories: int, n: int = 1) -> None:
        """Count n values of category c (c folds into 'other' past max_categories)."""
        self.count += n
        if self.categories is None:
            self.categories = {}
        if c not in self.categories and len(self.categories) >= max_categories:
            c = "other"
        self.categories[c] = self.categories.get(c, 0) + n

    @property
    def weight(self) -> float:
        """How many values each kept value stands for."""
        return self.count / len(self.values) if self.values else 0.0


# --- anomaly -----------------------------------------------------------------------------------

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


# --- engagement --------------------------------------------------------------------------------

@dataclass
class Session:
    """One session within one experiment variant: its unit (user id, else the session), the LLM
    calls (messages) and first/last call times."""

    experiment: str
    variant: str
    unit: str
    messages: int
    first_unix: float
    last_unix: float


# --- interleaving ------------------------------------------------------------------------------

@dataclass
class ArmRecord:
    wins: int = 0
    losses: int = 0
    ties: int = 0


@dataclass
class Comparisons:
    """Per interleaving experiment: outcomes per arm and the position-bias counts."""

    arms: dict[str, ArmRecord] = field(default_factory=dict)
    total: int = 0
    decisive_with_position: int = 0
    first_wins: int = 0

    def record(self, winner: str, loser: str, tie: bool, first_shown: str | None, max_arms: int) -> bool:
        for arm in (winner, loser):
            if arm not in self.arms:
                if len(self.arms) >= max_arms:
                    return False
                self.arms[arm] = ArmRecord()
        self.total += 1
        if tie:
            self.arms[winner].ties += 1
            self.arms[loser].ties += 1
            return True
        self.arms[winner].wins += 1
        self.arms[loser].losses += 1
        if first_shown in (winner, loser):
            self.decisive_with_position += 1
            self.first_wins += first_shown == winner
        return True


def as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def iter_numbers(values: Iterable[Any]) -> Iterable[float]:
    for v in values:
        try:
            x = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(x):
            yield x
