"""What the drift plugin keeps for concept drift: each LLM call's input segment until its quality
signal (judge score, feedback) arrives, then (segment, value) pairs per service, signal and time slot.

- `remember(key, service, raw)`: ingest thread, O(1); `raw` is the segment attribute's value (a
  string) or the input length (a number, binned later by the reference window's quantiles). Bounded
  by `pending_calls` (oldest forgotten, counted); not persisted (an evaluation arriving after a
  restart for a call from before it is not joined, counted as `concept_unjoined`).
- `observe(trace_id, span_id, service, signal, value, t)`: the evaluated call's segment joined by
  span (else the trace's last call) into a uniform reservoir per slot.
- `windows(...)`: per (service, signal) the reference and current pairs, each window sampled in
  proportion to its slots' counts. Caller holds the plugin's lock for all of these.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from typing import Any, Iterable


class ConceptSlot:
    __slots__ = ("count", "pairs")

    def __init__(self, count: int = 0, pairs: list | None = None) -> None:
        self.count = count
        self.pairs: list[list[Any]] = pairs or []

    def add(self, raw: Any, value: float, cap: int, rng: random.Random) -> None:
        self.count += 1
        if len(self.pairs) < cap:
            self.pairs.append([raw, value])
        else:  # Algorithm R
            j = int(rng.random() * self.count)
            if j < cap:
                self.pairs[j] = [raw, value]


class ConceptWindows:
    def __init__(self, *, pending_calls: int, reservoir_size: int) -> None:
        self.pending: OrderedDict[str, tuple[str, Any]] = OrderedDict()   # trace+span hex -> (service, raw)
        self.last_of_trace: dict[str, str] = {}
        self.slots: dict[tuple[str, str], dict[int, ConceptSlot]] = {}
        self.pending_max = int(pending_calls)
        self.cap = int(reservoir_size)
        self.dropped: dict[str, int] = {}
        self.dirty: set[tuple[str, str, int]] = set()

    def _drop(self, what: str, n: int = 1) -> None:
        self.dropped[what] = self.dropped.get(what, 0) + n

    def remember(self, key: str, service: str, raw: Any) -> None:
        pending = self.pending
        pending[key] = (service, raw)
        self.last_of_trace[key[:32]] = key
        if len(pending) > self.pending_max:
            old, _ = pending.popitem(last=False)
            if self.last_of_trace.get(old[:32]) == old:
                del self.last_of_trace[old[:32]]
            self._drop("concept_pending")

    def observe(self, trace_id: str | None, span_id: str | None, signal: str, value: float, slot: int,
                rng: random.Random) -> bool:
        if not trace_id:
            return False
        hit = self.pending.get(trace_id + span_id) if span_id else None
        if hit is None:
            last = self.last_of_trace.get(trace_id)
            hit = self.pending.get(last) if last else None
        if hit is None:
            self._drop("concept_unjoined")
            return False
        service, raw = hit
        slots = self.slots.setdefault((service, signal), {})
        s = slots.get(slot)
        if s is None:
            s = slots[slot] = ConceptSlot()
        s.add(raw, value, self.cap, rng)
        self.dirty.add((service, signal, slot))
        return True

    def prune(self, cut: float) -> None:
        for key, slots in list(self.slots.items()):
            for s in [s for s in slots if s < cut]:
                del slots[s]
            if not slots:
                del self.slots[key]

    def windows(self, now: float, current_seconds: float, reference_seconds: float, slot_seconds: float,
                max_pairs: int, rng: random.Random) -> list[tuple[str, str, list, list]]:
        cur_start = now - current_seconds
        ref_start = cur_start - reference_seconds - slot_seconds
        out = []
        for (service, signal), slots in self.slots.items():
            cur = [s for t, s in slots.items() if t + slot_seconds > cur_start]
            ref = [s for t, s in slots.items() if ref_start <= t and t + slot_seconds <= cur_start]
            out.append((service, signal, _sample(ref, max_pairs, rng), _sample(cur, max_pairs, rng)))
        return out


def _sample(slots: Iterable[ConceptSlot], max_n: int, rng: random.Random) -> list:
    """Pairs of the window, each slot contributing in proportion to its count (as drift's
    proportional_sample): every call of the window has the same chance to be in the sample."""
    parts = [s for s in slots if s.count > 0 and s.pairs]
    if not parts:
        return []
    total = sum(s.count for s in parts)
    n = min(float(max_n), min(len(s.pairs) * total / s.count for s in parts))
    out = []
    for s in parts:
        k = n * s.count / total
        k = min(len(s.pairs), int(k) + (1 if rng.random() < k - int(k) else 0))
        out.extend(s.pairs if k == len(s.pairs) else rng.sample(s.pairs, k))
    return out
