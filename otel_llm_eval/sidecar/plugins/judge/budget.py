"""The sidecar judge's budgets: USD per hour and judge calls per minute, in clock-aligned windows.

A judgement reserves its estimated cost before it is queued and settles to its real cost when
the judge answers, so work in flight counts against the budget and the hour's spend never passes
the budget as long as no judgement costs more than the estimate: `reserve_usd_per_call` when set,
else the largest cost seen so far (and while no cost is known yet, one judgement at a time).
Windows are aligned to the clock (UTC minute and hour); a restart restores the hour's spend
(`state()` / `restore()`).

Thread-safe (one lock, no I/O, never blocks beyond it); `acquire` runs on the ingest thread,
`settle` on judge worker threads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

BUDGET_USD = "budget_usd"
BUDGET_CALLS = "budget_calls"


@dataclass
class Ticket:
    """A reservation: which hour it belongs to, how many judge calls and how many USD it holds."""

    hour: int
    calls: int
    reserved_usd: float


class Budget:
    def __init__(self, usd_per_hour: float = 0.0, calls_per_minute: int = 0,
                 reserve_usd_per_call: float = 0.0) -> None:
        """usd_per_hour / calls_per_minute: 0 means no limit."""
        self.usd_per_hour = float(usd_per_hour)
        self.calls_per_minute = int(calls_per_minute)
        self.reserve_usd_per_call = float(reserve_usd_per_call)
        self._lock = threading.Lock()
        self._hour = -1
        self._spent = 0.0          # settled USD in the current hour
        self._reserved = 0.0       # USD held by judgements in flight (current hour)
        self._in_flight = 0
        self._minute = -1
        self._calls = 0            # judge calls started in the current minute
        self._max_cost = 0.0
        self._refused_hour = -1    # last hour a judgement was refused for USD
        self._refused_minute = -1  # last minute a judgement was refused for calls

    def _roll(self, now: float) -> None:
        hour, minute = int(now // 3600), int(now // 60)
        if hour != self._hour:
            self._hour, self._spent, self._reserved = hour, 0.0, 0.0
        if minute != self._minute:
            self._minute, self._calls = minute, 0

    def estimate(self) -> float:
        """USD reserved per judge call."""
        return self.reserve_usd_per_call or self._max_cost

    def acquire(self, now: float, calls: int = 1) -> tuple[str | None, Ticket | None]:
        """Reserve `calls` judge calls: (None, ticket) when the budgets allow, else
        (BUDGET_USD | BUDGET_CALLS, None)."""
        with self._lock:
            self._roll(now)
            if self.calls_per_minute and self._calls + calls > self.calls_per_minute:
                self._refused_minute = self._minute
                return BUDGET_CALLS, None
            est = self.estimate() * calls
            if self.usd_per_hour:
                unknown = est <= 0 and self._in_flight > 0   # no cost seen yet: one at a time
                if unknown or self._spent + self._reserved + est > self.usd_per_hour \
                        or self._spent >= self.usd_per_hour:
                    self._refused_hour = self._hour
                    return BUDGET_USD, None
            self._calls += calls
            self._reserved += est
            self._in_flight += 1
            return None, Ticket(self._hour, calls, est)

    def settle(self, ticket: Ticket, cost_usd: float, calls_made: int | None = None) -> None:
        """The judgement is done: replace its reservation by what it cost (per call costs update
        the estimate). `calls_made` < ticket.calls gives unused calls back to the minute."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            if calls_made and cost_usd > 0:
                self._max_cost = max(self._max_cost, cost_usd / calls_made)
            if ticket.hour == self._hour:
                self._reserved = max(0.0, self._reserved - ticket.reserved_usd)
                self._spent += max(0.0, cost_usd)

    def release(self, ticket: Ticket, now: float) -> None:
        """Give a reservation back unused (the judgement was never queued)."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            if ticket.hour == self._hour:
                self._reserved = max(0.0, self._reserved - ticket.reserved_usd)
            if int(now // 60) == self._minute:
                self._calls = max(0, self._calls - ticket.calls)

    def snapshot(self, now: float) -> dict[str, float]:
        """spent_usd (this hour, settled), reserved_usd, calls (this minute), exhausted (0/1:
        a budget refused a judgement in the current window)."""
        with self._lock:
            self._roll(now)
            exhausted = (self._refused_hour == self._hour) or (self._refused_minute == self._minute)
            return {"spent_usd": self._spent, "reserved_usd": self._reserved, "calls": float(self._calls),
                    "exhausted": 1.0 if exhausted else 0.0}

    def state(self) -> dict[str, float]:
        with self._lock:
            return {"hour": self._hour, "spent": self._spent, "max_cost": self._max_cost,
                    "refused_hour": self._refused_hour}

    def restore(self, state: dict[str, float]) -> None:
        with self._lock:
            self._hour = int(state.get("hour", -1))
            self._spent = float(state.get("spent", 0.0))
            self._max_cost = float(state.get("max_cost", 0.0))
            self._refused_hour = int(state.get("refused_hour", -1))
