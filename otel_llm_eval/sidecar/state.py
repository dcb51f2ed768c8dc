"""The sidecar's in-memory state: catalog series, experiment sufficient statistics, usage, span index.

Mutated by the ingest thread, read by /metrics, the HTTP API and the state (flush) thread. Every
public method takes `self.lock` or documents that the caller holds it. Everything that must
survive a restart is tracked in `dirty_*` sets and written by `store.Store.flush`.

Bounded: series by label caps, usage ids by `usage.max_ids_per_service` per service and kind,
the span index by `state.span_index_max_entries` (oldest evicted), experiment unit keys by
`state.max_units_per_experiment` and `state.max_units` (further units counted, not kept). Per-slot drift and anomaly
series belong to the analysis plugin (its own tables), not to the core.
"""

from __future__ import annotations

import hashlib
import threading
import time
from bisect import bisect_left
from collections import OrderedDict
from dataclasses import dataclass, field
from operator import mul as _mul
from typing import Any, NamedTuple

from ..catalog import BY_NAME
from ..semconv import ExperimentAssignment
from .plugins import CALL_METRICS, EXPOSURES, UNITS, ExperimentSnapshot, MetricStats

HOUR = 3600.0
#: the experiment metrics of one LLM call, in `exp_add_many` column order
CALL_METRICS_WITH_EXPOSURES = (EXPOSURES,) + CALL_METRICS
_BINARY = frozenset((0, 1))
_BUCKETS: dict[str, tuple[float, ...]] = {}  # metric -> catalog bucket bounds
DAY = 86400.0
WINDOWS = (("1h", HOUR), ("1d", DAY))
REQUEST_SLOT_SECONDS = 60


def id_hash(value: str) -> int:
    """Stable 63-bit hash of a user/session id (never Python's salted hash(); never the raw id)."""
    return int.from_bytes(hashlib.blake2b(value.encode("utf-8", "replace"), digest_size=8).digest(), "big") >> 1


@dataclass
class Stat:
    n: int = 0
    sum: float = 0.0
    sum_sq: float = 0.0
    binary: bool = True
    first_seen: float = 0.0
    last_seen: float = 0.0

    def add(self, value: float, t: float) -> None:
        if self.n == 0:
            self.first_seen = t
        self.n += 1
        self.sum += value
        self.sum_sq += value * value
        if value != 0.0 and value != 1.0:
            self.binary = False
        if t > self.last_seen:
            self.last_seen = t


@dataclass
class Experiment:
    id: str
    control: str | None = None
    weights: dict[str, float] | None = None
    first_seen: float = 0.0
    last_seen: float = 0.0
    stats: dict[tuple[str, str], Stat] = field(default_factory=dict)  # (metric, variant) -> Stat
    #: variant -> distinct unit keys (63-bit ints) seen with it: exact, for SRM on units
    units: dict[str, set[int]] = field(default_factory=dict)
    unit_count: int = 0
    units_capped: bool = False      # a unit was not kept (cap): the counts are incomplete


class IndexEntry(NamedTuple):
    """What an evaluation needs from the call it evaluates (a NamedTuple: 200k of them are cheap)."""

    service: str
    model: str | None
    experiments: tuple[ExperimentAssignment, ...]
    time: float
    seq: int = 0  # insertion order (the persisted index is trimmed by it)


class State:
    def __init__(self, *, max_ids_per_service: int = 100_000, span_index_max_entries: int = 200_000,
                 max_experiments: int = 200, max_stats_per_experiment: int = 1000,
                 max_units_per_experiment: int = 200_000, max_units: int = 1_000_000):
        self.lock = threading.RLock()
        self.counters: dict[tuple[str, tuple[str, ...]], float] = {}
        #: histogram series -> [per-bucket counts (len(buckets)+1, last is +Inf), sum]
        self.hists: dict[tuple[str, tuple[str, ...]], list[Any]] = {}
        self.dirty_series: set[tuple[str, tuple[str, ...]]] = set()
        self.experiments: dict[str, Experiment] = {}
        self.max_experiments = max_experiments
        self.max_stats_per_experiment = max_stats_per_experiment
        self.experiments_dropped = 0            # samples not tracked because a cap was reached
        self.dirty_stats: set[tuple[str, str, str]] = set()
        self.dirty_experiments: set[str] = set()
        self.max_units_per_experiment = max_units_per_experiment
        self.max_units = max_units
        self.units_total = 0
        self.units_dropped = 0                  # unit keys not kept because a cap was reached
        self.dirty_units: list[tuple[str, str, int]] = []
        self.dirty_units_capped: set[str] = set()
        self._unit_cache: dict[str, int] = {}
        #: (service, kind) -> {id hash: last seen unix}, kind in user|session
        self.usage: dict[tuple[str, str], dict[int, float]] = {}
        self.dirty_usage: set[tuple[str, str, int]] = set()
        self.usage_dropped = 0
        self._hash_cache: dict[str, int] = {}
        self.max_ids = max_ids_per_service
        #: service -> {minute slot start: calls}
        self.request_slots: dict[str, dict[int, int]] = {}
        self.dirty_request_slots: set[tuple[str, int]] = set()
        self.span_index: OrderedDict[tuple[str, str], IndexEntry] = OrderedDict()
        self.trace_last: dict[str, str] = {}   # trace id -> span id of its last LLM call
        self.index_new: list[tuple[str, str]] = []
        self.index_max = span_index_max_entries
        self.index_evicted = 0                  # entries dropped by the size cap (before retention)
        self.index_seq = 0                      # last insertion seq handed out
        #: journal rows applied to this state since the last flush (deleted by the flush)
        self.applied_seqs: list[int] = []
        #: last file-journal seq applied to this state (records are applied in seq order)
        self.applied_file_seq = 0

    # --- catalog series (caller holds the lock) ---
    def inc(self, metric: str, labels: tuple[str, ...], value: float = 1.0) -> None:
        key = (metric, labels)
        self.counters[key] = self.counters.get(key, 0.0) + value
        self.dirty_series.add(key)

    def inc_many(self, increments: dict[tuple[str, tuple[str, ...]], float]) -> None:
        """`inc` for many (metric, labels) keys at once (a batch's summed increments)."""
        counters = self.counters
        get = counters.get
        for key, value in increments.items():
            counters[key] = get(key, 0.0) + value
        self.dirty_series.update(increments)

    def observe(self, metric: str, labels: tuple[str, ...], value: float) -> None:
        key = (metric, labels)
        h = self.hists.get(key)
        buckets = _BUCKETS.get(metric)
        if buckets is None:
            buckets = _BUCKETS[metric] = tuple(BY_NAME[metric].buckets or ())
        if h is None:
            h = self.hists[key] = [[0] * (len(buckets) + 1), 0.0]
        # first bucket with value <= bound (Prometheus `le`); NaN goes to +Inf
        i = bisect_left(buckets, value) if value == value else len(buckets)
        h[0][i] += 1
        h[1] += value
        self.dirty_series.add(key)

    # --- experiments (caller holds the lock) ---
    def experiment(self, a: ExperimentAssignment, t: float) -> Experiment | None:
        """The experiment's state, or None past `state.max_experiments` (counted, not tracked)."""
        e = self.experiments.get(a.id)
        if e is None:
            if len(self.experiments) >= self.max_experiments:
                self.experiments_dropped += 1
                return None
            e = self.experiments[a.id] = Experiment(a.id, first_seen=t, last_seen=t)
            self.dirty_experiments.add(a.id)
        if a.weights and (e.weights != a.weights or e.control != a.control):
            e.weights, e.control = dict(a.weights), a.control
            self.dirty_experiments.add(a.id)
        if t > e.last_seen:
            e.last_seen = t
            self.dirty_experiments.add(a.id)
        return e

    def exp_add(self, e: Experiment | None, metric: str, variant: str, value: float, t: float) -> None:
        if e is None:
            return
        key = (metric, variant)
        s = e.stats.get(key)
        if s is None:
            if len(e.stats) >= self.max_stats_per_experiment:  # odd metric names or variants
                self.experiments_dropped += 1
                return
            s = e.stats[key] = Stat()
            s.first_seen = t
        s.n += 1
        s.sum += value
        s.sum_sq += value * value
        if s.binary and value != 0.0 and value != 1.0:
            s.binary = False
        if t > s.last_seen:
            s.last_seen = t
        self.dirty_stats.add((e.id, metric, variant))

    def see_unit(self, e: Experiment | None, variant: str, unit: str) -> None:
        """Count assignment unit `unit` (a unit key) in `variant`; exact until a cap is reached."""
        if e is None:
            return
        key = self._unit_cache.get(unit)
        if key is None:
            try:
                key = int(unit[:16], 16) >> 1 if len(unit) >= 16 else id_hash(unit)
            except ValueError:
                key = id_hash(unit)  # not our hex key (another emitter): hash it the same way
            if len(self._unit_cache) >= 50_000:
                self._unit_cache.clear()
            self._unit_cache[unit] = key
        s = e.units.get(variant)
        if s is None:
            s = e.units[variant] = set()
        if key in s:
            return
        if e.unit_count >= self.max_units_per_experiment or self.units_total >= self.max_units:
            self.units_dropped += 1
            if not e.units_capped:
                e.units_capped = True
                self.dirty_units_capped.add(e.id)
            return
        s.add(key)
        e.unit_count += 1
        self.units_total += 1
        self.dirty_units.append((e.id, variant, key))

    def exp_add_many(self, samples: dict[tuple[str, str], list]) -> None:
        """`exp_add` for a batch of calls: (experiment id, variant) -> [experiment, row, row, ...],
        each row (t, latency, input tokens, output tokens, cost, error) with None = not measured,
        plus one exposure per row. Sums each column once (C-level sum/map) instead of one update
        per sample; same caps and drop counts as `exp_add`."""
        for (eid, variant), (e, *rows) in samples.items():
            columns = list(zip(*rows))
            times = columns[0]
            first, last = times[0], max(times)
            n_rows = len(rows)
            for metric, col in zip(CALL_METRICS_WITH_EXPOSURES, ((1.0,) * n_rows,) + tuple(columns[1:])):
                first_c, last_c = first, last
                if None in col:  # unmeasured in some calls: first/last seen of the measured ones
                    idx = [i for i, v in enumerate(col) if v is not None]
                    if not idx:
                        continue
                    col = [col[i] for i in idx]
                    first_c, last_c = times[idx[0]], max(times[i] for i in idx)
                key = (metric, variant)
                s = e.stats.get(key)
                if s is None:
                    if len(e.stats) >= self.max_stats_per_experiment:
                        self.experiments_dropped += len(col)
                        continue
                    s = e.stats[key] = Stat()
                    s.first_seen = first_c
                s.n += len(col)
                s.sum += float(sum(col))
                s.sum_sq += float(sum(map(_mul, col, col)))
                if s.binary and not _BINARY.issuperset(col):
                    s.binary = False
                if last_c > s.last_seen:
                    s.last_seen = last_c
                self.dirty_stats.add((eid, metric, variant))

    def snapshot(self) -> dict[str, ExperimentSnapshot]:
        with self.lock:
            out = {}
            for e in self.experiments.values():
                metrics: dict[str, dict[str, MetricStats]] = {}
                for (metric, variant), s in e.stats.items():
                    metrics.setdefault(metric, {})[variant] = MetricStats(s.n, s.sum, s.sum_sq, s.binary)
                if e.units:
                    metrics[UNITS] = {v: MetricStats(len(u), float(len(u)), float(len(u)), True)
                                      for v, u in e.units.items()}
                out[e.id] = ExperimentSnapshot(e.id, e.control, dict(e.weights) if e.weights else None,
                                               metrics, e.first_seen, e.last_seen, e.units_capped)
            return out

    # --- usage (caller holds the lock) ---
    def see_id(self, service: str, kind: str, raw_id: str, t: float) -> None:
        h = self._hash_cache.get(raw_id)
        if h is None:
            if len(self._hash_cache) >= 50_000:
                self._hash_cache.clear()  # bounded; recomputing is cheap
            h = self._hash_cache[raw_id] = id_hash(raw_id)
        self.see_id_hash(service, kind, h, t)

    def see_id_hash(self, service: str, kind: str, h: int, t: float) -> None:
        """`see_id` with the id already hashed (`id_hash`, e.g. in an ingest worker process)."""
        ids = self.usage.get((service, kind))
        if ids is None:
            ids = self.usage[(service, kind)] = {}
        if h not in ids and len(ids) >= self.max_ids:
            self._prune_usage(ids, t)
            if len(ids) >= self.max_ids:
                self.usage_dropped += 1
                return
        ids[h] = t
        self.dirty_usage.add((service, kind, h))

    def _prune_usage(self, ids: dict[int, float], now: float) -> None:
        for h in [h for h, seen in ids.items() if seen < now - DAY]:
            del ids[h]

    def count_request(self, service: str, t: float) -> None:
        slot = int(t // REQUEST_SLOT_SECONDS) * REQUEST_SLOT_SECONDS
        slots = self.request_slots.setdefault(service, {})
        slots[slot] = slots.get(slot, 0) + 1
        self.dirty_request_slots.add((service, slot))

    def usage_gauges(self, now: float) -> list[tuple[str, str, str, float]]:
        """(metric, service, window, value) for active users, sessions and requests per user."""
        out = []
        with self.lock:
            services = {s for s, _ in self.usage} | set(self.request_slots)
            for service in sorted(services):
                users = self.usage.get((service, "user"), {})
                sessions = self.usage.get((service, "session"), {})
                slots = self.request_slots.get(service, {})
                for window, seconds in WINDOWS:
                    since = now - seconds
                    n_users = sum(1 for seen in users.values() if seen >= since)
                    n_sessions = sum(1 for seen in sessions.values() if seen >= since)
                    requests = sum(n for slot, n in slots.items() if slot + REQUEST_SLOT_SECONDS > since)
                    out.append(("llm_active_users", service, window, float(n_users)))
                    out.append(("llm_active_sessions", service, window, float(n_sessions)))
                    if n_users:
                        out.append(("llm_requests_per_user", service, window, requests / n_users))
        return out

    def prune(self, now: float, index_retention: float) -> list:
        """Drop expired usage ids, request slots and index entries; returns the expired index keys."""
        with self.lock:
            for service, slots in self.request_slots.items():
                for slot in [s for s in slots if s < now - DAY - REQUEST_SLOT_SECONDS]:
                    del slots[slot]
            for ids in self.usage.values():
                self._prune_usage(ids, now)
            old_index = []
            while self.span_index:
                key, entry = next(iter(self.span_index.items()))
                if entry.time >= now - index_retention:
                    break
                self.span_index.popitem(last=False)
                if self.trace_last.get(key[0]) == key[1]:
                    del self.trace_last[key[0]]
                old_index.append(key)
            return old_index

    # --- span index (caller holds the lock) ---
    def index_put(self, trace_id: str, span_id: str, service: str, model: str | None,
                  experiments: tuple[ExperimentAssignment, ...], t: float, seq: int = 0,
                  persist: bool = True) -> None:
        """Remember a call for evaluation joins; `seq` 0 assigns the next insertion seq."""
        key = (trace_id, span_id)
        if not seq:
            self.index_seq += 1
            seq = self.index_seq
        elif seq > self.index_seq:
            self.index_seq = seq
        if key in self.span_index:
            self.span_index.move_to_end(key)  # keep dict order == seq order (trimming relies on it)
        self.span_index[key] = IndexEntry(service, model, experiments, t, seq)
        self.trace_last[trace_id] = span_id
        if persist:
            self.index_new.append(key)
        while len(self.span_index) > self.index_max:
            self.index_evicted += 1
            old, _ = self.span_index.popitem(last=False)
            if self.trace_last.get(old[0]) == old[1]:
                del self.trace_last[old[0]]

    def index_oldest_seq(self) -> int:
        """Seq of the oldest entry still indexed (persisted rows below it are gone from memory)."""
        for entry in self.span_index.values():
            return entry.seq
        return self.index_seq + 1

    def index_get(self, trace_id: str | None, span_id: str | None) -> IndexEntry | None:
        if not trace_id:
            return None
        if span_id:
            hit = self.span_index.get((trace_id, span_id))
            if hit is not None:
                return hit
        # the evaluated span may be a wrapper of the LLM call: fall back to the trace's last call
        last = self.trace_last.get(trace_id)
        if last is not None:
            return self.span_index.get((trace_id, last))
        return None


def now() -> float:
    return time.time()
