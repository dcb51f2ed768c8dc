"""Judge cost control: max judge calls per minute and max USD per hour (sliding windows).

Thread-safe; every method is O(1) amortized and never blocks on I/O. Over budget means skip (the
caller counts it), never wait.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

RATE = "rate"
COST = "cost"


class JudgeBudget:
    """`try_acquire()` -> None when a judge call may run now, else the reason ("rate" or "cost").

    max_calls_per_minute: at most this many acquisitions in any 60 s window (None = unlimited).
    max_usd_per_hour: once recorded costs in the last 3600 s reach it, acquisitions fail with
    "cost" until old costs leave the window (None = unlimited). Costs are kept in one-minute
    buckets, so memory is bounded (at most 61 buckets).
    """

    def __init__(self, max_calls_per_minute: int | None = None, max_usd_per_hour: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_calls_per_minute is not None and max_calls_per_minute < 0:
            raise ValueError(f"max_calls_per_minute must be >= 0, got {max_calls_per_minute}")
        if max_usd_per_hour is not None and not max_usd_per_hour >= 0:
            raise ValueError(f"max_usd_per_hour must be >= 0, got {max_usd_per_hour}")
        self.max_calls_per_minute = max_calls_per_minute
        self.max_usd_per_hour = max_usd_per_hour
        self._clock = clock
        self._lock = threading.Lock()
        self._calls: deque[float] = deque()
        self._cost_buckets: deque[list[float]] = deque()  # [minute_start, usd]
        self._cost_sum = 0.0

    def _prune_costs(self, now: float) -> None:
        while self._cost_buckets and now - self._cost_buckets[0][0] >= 3600.0:
            self._cost_sum -= self._cost_buckets.popleft()[1]

    def spent_usd_last_hour(self) -> float:
        with self._lock:
            self._prune_costs(self._clock())
            return max(self._cost_sum, 0.0)

    def try_acquire(self) -> str | None:
        with self._lock:
            now = self._clock()
            if self.max_usd_per_hour is not None:
                self._prune_costs(now)
                if self._cost_sum >= self.max_usd_per_hour:
                    return COST
            if self.max_calls_per_minute is not None:
                calls = self._calls
                while calls and now - calls[0] >= 60.0:
                    calls.popleft()
                if len(calls) >= self.max_calls_per_minute:
                    return RATE
                calls.append(now)
            return None

    def record_cost(self, usd: float) -> None:
        if not usd or usd < 0 or usd != usd:
            return
        with self._lock:
            now = self._clock()
            minute = now - (now % 60.0)
            if self._cost_buckets and self._cost_buckets[-1][0] == minute:
                self._cost_buckets[-1][1] += usd
            else:
                self._cost_buckets.append([minute, usd])
            self._cost_sum += usd
            self._prune_costs(now)
