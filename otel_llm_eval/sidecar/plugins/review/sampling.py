"""Which LLM calls go to human review: sampling strategies, a windowed reservoir and a daily cap.

Strategies (combinable, each gives a candidate a `reason`):
- error:          any check failed or the call ended in an error (on by default)
- length:         output shorter than `short_output_chars` or longer than `long_output_chars`
- low_confidence: a span attribute (`confidence_attribute`) below `low_confidence`
- low_score:      an LLM-judge score at or below `low_judge_score` (offered by the caller when the
                  judge's evaluation arrives)
- validation:     a `validation_rate` share of calls the judge passed (label "pass", else a score at
                  or above the caller's pass score), decided on the trace id: layer 3 of the
                  evaluation cascade, a human check of what the judge let through
- random:         a `random_rate` share of calls, decided on the trace id (1% by default), before
                  and independently of every other reason (an erroring call can be a random item)
- stratified:     with `stratify_by` (variant | model | service | any span attribute), every window
                  admits an equal share per stratum

Every decision that can be is deterministic on the trace id (a salted sha256, never Python's
salted `hash()`): the same trace gets the same decision in every process and after a restart.
Candidates collect in bounded bottom-k reservoirs per (reason, stratum) during a window of
`window_seconds`; the k with the lowest priority survive (lowest judge score or confidence first,
otherwise the trace-id hash, which makes the reservoir a uniform sample independent of arrival
order). When the window closes they are admitted, subject to the daily cap (UTC days).

Pure logic: no I/O, no clock (callers pass `now`), not thread-safe (the plugin serializes calls).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from ...cascade import judge_passed, trace_fraction

#: Reasons in admission order: when the daily cap runs short, earlier reasons win.
REASONS = ("error", "length", "low_confidence", "low_score", "validation", "random")
OTHER_STRATUM = "other"


@dataclass(frozen=True)
class SamplingConfig:
    """The `review.sampling` config section. `from_mapping` validates it (ValueError on bad values)."""

    random_rate: float = 0.01
    error_triggered: bool = True
    short_output_chars: int = 10        # 0 disables
    long_output_chars: int = 8000       # 0 disables
    low_judge_score: float | None = 2.0  # None disables
    validation_rate: float = 0.1        # share of judge-passed calls sampled for validation (0 disables)
    confidence_attribute: str | None = None
    low_confidence: float = 0.5
    stratify_by: str | None = None
    max_strata: int = 20
    reservoir_size: int = 10            # per reason and stratum and window
    window_seconds: float = 60.0
    daily_cap: int = 500

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any] | None) -> "SamplingConfig":
        m = dict(m or {})
        unknown = set(m) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown review.sampling keys: {sorted(unknown)}")
        cfg = cls(**m)
        for key in ("random_rate", "validation_rate"):
            if not 0.0 <= float(getattr(cfg, key)) <= 1.0:
                raise ValueError(f"review.sampling.{key} must be in [0, 1], got {getattr(cfg, key)!r}")
        for key in ("reservoir_size", "max_strata"):
            if int(getattr(cfg, key)) < 1:
                raise ValueError(f"review.sampling.{key} must be >= 1")
        if int(cfg.daily_cap) < 0:
            raise ValueError("review.sampling.daily_cap must be >= 0")
        if float(cfg.window_seconds) <= 0:
            raise ValueError("review.sampling.window_seconds must be > 0")
        return cfg

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def classify(
    cfg: SamplingConfig,
    trace_id: str,
    *,
    failed_checks: tuple[str, ...] = (),
    error: bool = False,
    completion: str | None = None,
    confidence: float | None = None,
) -> tuple[str, float] | None:
    """(reason, priority) for a call, or None when no strategy picks it.

    The random sample is drawn first, on the trace id alone, so it is independent of every other
    reason: a call that failed a check can be (and then is) a random item too, and the failure
    rate computed from random items alone is unbiased. Otherwise the first matching reason wins."""
    frac = trace_fraction(trace_id)
    if frac < cfg.random_rate:
        return "random", frac
    if cfg.error_triggered and (failed_checks or error):
        return "error", frac
    if completion is not None:
        n = len(completion)
        if (cfg.short_output_chars and n < cfg.short_output_chars) or (
            cfg.long_output_chars and n > cfg.long_output_chars
        ):
            return "length", frac
    if confidence is not None and math.isfinite(confidence) and confidence < cfg.low_confidence:
        return "low_confidence", confidence
    return None


def low_score_candidate(cfg: SamplingConfig, score: float | None) -> tuple[str, float] | None:
    """(reason, priority) for a call whose judge score just arrived, or None."""
    if cfg.low_judge_score is None or score is None or not math.isfinite(score):
        return None
    if score <= cfg.low_judge_score:
        return "low_score", float(score)
    return None


def validation_candidate(cfg: SamplingConfig, trace_id: str, score: float | None, label: str | None,
                         pass_score: float) -> tuple[str, float] | None:
    """(reason "validation", priority) for a call the judge just passed and the trace id picks
    (a `validation_rate` share, salted apart from the random and the judge samples), else None."""
    if not cfg.validation_rate or not trace_id or not judge_passed(score, label, pass_score):
        return None
    frac = trace_fraction(trace_id, "validation")
    if frac < cfg.validation_rate:
        return "validation", frac
    return None


@dataclass(order=True)
class Candidate:
    """An entry in a reservoir. Ordered by (priority, key) so ties break deterministically."""

    priority: float
    key: str
    reason: str = field(compare=False)
    stratum: str = field(compare=False)
    payload: Any = field(compare=False, default=None)


@dataclass
class DrainResult:
    admitted: list[Candidate]
    dropped: dict[str, int]   # reason of the drop (reservoir | daily_cap) -> count


class ReviewSampler:
    """Windowed bottom-k reservoirs per (reason, stratum) plus a daily cap.

    Memory is bounded by len(REASONS) * (max_strata + 1) * reservoir_size candidates.
    """

    def __init__(self, cfg: SamplingConfig, now: float) -> None:
        self.cfg = cfg
        self.window_start = now
        # (reason, stratum) -> max-heap via negated keys: [(-priority, neg_key, Candidate)]
        self._heaps: dict[tuple[str, str], list[tuple[float, tuple[int, ...], Candidate]]] = {}
        self._keys: set[str] = set()
        self._strata: set[str] = set()
        self.day = self._day(now)
        self.admitted_today = 0
        self.dropped: dict[str, int] = {"reservoir": 0, "daily_cap": 0}

    @staticmethod
    def _day(now: float) -> int:
        return int(now // 86400)

    def stratum_of(self, value: str | None) -> str:
        """The stratum for a raw value, folded into `other` past `max_strata`."""
        if not self.cfg.stratify_by:
            return ""
        v = value if value else "unknown"
        if v in self._strata:
            return v
        if len(self._strata) >= self.cfg.max_strata:
            return OTHER_STRATUM
        self._strata.add(v)
        return v

    def contains(self, key: str) -> bool:
        return key in self._keys

    def offer(self, cand: Candidate) -> bool:
        """Put a candidate in its reservoir; True when it is (still) in after the offer.

        A key already waiting in any reservoir is ignored (False): one call, one review item.
        """
        if cand.key in self._keys:
            return False
        heap = self._heaps.setdefault((cand.reason, cand.stratum), [])
        entry = (-cand.priority, _neg_key(cand.key), cand)
        if len(heap) < self.cfg.reservoir_size:
            heapq.heappush(heap, entry)
            self._keys.add(cand.key)
            return True
        worst = heap[0]
        if (entry[0], entry[1]) > (worst[0], worst[1]):  # smaller (priority, key) than the worst
            heapq.heapreplace(heap, entry)
            self._keys.discard(worst[2].key)
            self._keys.add(cand.key)
            self.dropped["reservoir"] += 1
            return True
        self.dropped["reservoir"] += 1
        return False

    def due(self, now: float) -> bool:
        return now - self.window_start >= self.cfg.window_seconds

    def pending(self) -> int:
        return len(self._keys)

    def drain(self, now: float, capacity: int | None = None) -> DrainResult:
        """Close the window: admit candidates (equal share per stratum, reasons in REASONS order)
        up to `reservoir_size` per reason, the daily cap and `capacity` (free queue slots).
        Everything else in the reservoirs is dropped and counted."""
        day = self._day(now)
        if day != self.day:
            self.day, self.admitted_today = day, 0
        admitted: list[Candidate] = []
        dropped = {"reservoir": 0, "daily_cap": 0, "queue_full": 0}
        for reason in REASONS:
            per_stratum = {
                s: sorted(e[2] for e in heap)
                for (r, s), heap in self._heaps.items() if r == reason and heap
            }
            taken = 0
            order = sorted(per_stratum)
            idx = {s: 0 for s in order}
            while order:
                progressed = False
                for s in list(order):
                    if idx[s] >= len(per_stratum[s]):
                        order.remove(s)
                        continue
                    cand = per_stratum[s][idx[s]]
                    idx[s] += 1
                    progressed = True
                    if taken >= self.cfg.reservoir_size:
                        dropped["reservoir"] += 1
                    elif self.admitted_today >= self.cfg.daily_cap:
                        dropped["daily_cap"] += 1
                    elif capacity is not None and len(admitted) >= capacity:
                        dropped["queue_full"] += 1
                    else:
                        admitted.append(cand)
                        taken += 1
                        self.admitted_today += 1
                if not progressed:
                    break
        self._heaps.clear()
        self._keys.clear()
        self.window_start = now
        for k, v in dropped.items():
            self.dropped[k] = self.dropped.get(k, 0) + v
        return DrainResult(admitted, dropped)


def _neg_key(key: str) -> tuple[int, ...]:
    # Max-heap on (priority, key): negate the key's code points so larger keys sort first.
    return tuple(-ord(c) for c in key)
