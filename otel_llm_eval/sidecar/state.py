"""The sidecar's in-memory state: catalog series, experiment sufficient statistics, usage, span index.

Mutated by the ingest thread, read by /metrics, the HTTP API and the state (flush) thread. Every
public method takes `self.lock` or documents that the caller holds it. Everything that must
survive a restart is tracked in `dirty_*` sets and written by `store.Store.flush`.

Bounded: series by label caps, usage ids by `usage.max_ids_per_service` per service and kind,
the span index by `state.span_index_max_entries` (oldest evicted), experiment unit keys by
`state.max_units_per_experiment` and `state.max_units` (further units counted, not kept). Per-slot drift and anomaly
series belong to the drift and anomalies plugins (their own tables), not to the core.
"""

from __future__ import annotations

import hashlib
from array import array
import threading
import time
from bisect import bisect_left
from collections import deque
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


_M64 = (1 << 64) - 1


def unit_mix(key: int) -> int:
    """splitmix64's finalizer: a unit key's bits scrambled. Unit keys are the very sha256 bytes
    the assignment was drawn from, so their own bits correlate with the variant; buckets and the
    SRM unit sample use these mixed bits instead, which are independent of it."""
    z = (key + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def unit_key_int(unit: str) -> int:
    """The 63-bit int of a unit key: our 16-hex keys (and trace ids) directly, others hashed."""
    try:
        return int(unit[:16], 16) >> 1 if len(unit) >= 16 else id_hash(unit)
    except ValueError:
        return id_hash(unit)  # not our hex key (another emitter): hash it the same way


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
    #: past the unit caps the sets keep a uniform hash sample of the units: those whose
    #: `unit_mix(key)` has `unit_sample_level` low zero bits (1 in 2**level); SRM stays valid on it
    unit_sample_level: int = 0
    #: (metric, variant) -> [Σ value, Σ count] per cluster: units hashed into `unit_buckets` buckets
    #: (calls with a unit key only), two arrays of doubles. Per-unit analysis (delta method over
    #: clusters) reads these; bounded whatever the number of units.
    clusters: dict[tuple[str, str], tuple[array, array]] = field(default_factory=dict)


class IndexEntry(NamedTuple):
    """What an evaluation needs from the call it evaluates. One entry is shared by every call of a
    batch with the same service, model and experiments (the index maps span ids to it)."""

    service: str
    model: str | None
    experiments: tuple[ExperimentAssignment, ...]


class IndexChunk:
    """The span index entries one batch added: evicted and persisted as a unit (one SQLite row).

    keys: trace id hex + span id hex (48 characters) per call; entry_of[i] indexes `entries` for keys[i];
    `evicted` keys at the front are gone already (the size cap trims inside a chunk)."""

    __slots__ = ("seq", "t_max", "keys", "entries", "entry_of", "evicted")

    def __init__(self, seq: int, t_max: float, keys: list[str], entries: list, entry_of: array):
        self.seq, self.t_max, self.keys, self.entries, self.entry_of = seq, t_max, keys, entries, entry_of
        self.evicted = 0


class State:
    def __init__(self, *, max_ids_per_service: int = 100_000, span_index_max_entries: int = 200_000,
                 max_experiments: int = 200, max_stats_per_experiment: int = 1000,
                 max_units_per_experiment: int = 200_000, max_units: int = 1_000_000, unit_buckets: int = 256):
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
        self.unit_buckets = int(unit_buckets)
        self.dirty_clusters: set[tuple[str, str, str]] = set()
        #: (service, kind) -> {id hash: last seen unix}, kind in user|session
        self.usage: dict[tuple[str, str], dict[int, float]] = {}
        #: (service, kind) -> id hashes to persist: new ones, and known ones seen in a later minute
        #: (the stored last-seen time has minute resolution, so a busy user is written once a minute)
        self.dirty_usage: dict[tuple[str, str], set[int]] = {}
        self.usage_dropped = 0
        self._hash_cache: dict[str, int] = {}
        self.max_ids = max_ids_per_service
        #: service -> {minute slot start: calls}
        self.request_slots: dict[str, dict[int, int]] = {}
        self.dirty_request_slots: set[tuple[str, int]] = set()
        #: trace id hex + span id hex -> chunk seq << 32 | position in the chunk: ints, so the
        #: garbage collector never scans the index (200k tuples would be in every full collection)
        self.span_index: dict[str, int] = {}
        self.index_chunks: deque[IndexChunk] = deque()  # oldest first
        self._chunk_by_seq: dict[int, IndexChunk] = {}
        self.index_size = 0                     # live entries in the chunks (duplicates included)
        self.trace_last: dict[str, str] = {}   # trace id hex -> index key of its last LLM call
        self.index_new: list[IndexChunk] = []   # chunks the next flush persists
        self.index_max = span_index_max_entries
        self.index_evicted = 0                  # entries dropped by the size cap (before retention)
        self.index_seq = 0                      # last chunk seq handed out
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

    def observe_counts(self, metric: str, labels: tuple[str, ...], counts: list[int], total: float) -> None:
        """Add a batch's per-bucket counts (non-cumulative, catalog buckets + Inf) and sum."""
        key = (metric, labels)
        h = self.hists.get(key)
        if h is None:
            self.hists[key] = [list(counts), total]
        else:
            h[0] = [x + y for x, y in zip(h[0], counts)]
            h[1] += total
        self.dirty_series.add(key)

    # --- experiments (caller holds the lock) ---
    def experiment(self, a: ExperimentAssignment, t: float, n: int = 1,
                   t_last: float | None = None) -> Experiment | None:
        """The experiment's state, or None past `state.max_experiments` (counted, not tracked).

        n: the calls this stands for (counted when dropped); t..t_last: their first/last time."""
        e = self.experiments.get(a.id)
        if e is None:
            if len(self.experiments) >= self.max_experiments:
                self.experiments_dropped += n
                return None
            e = self.experiments[a.id] = Experiment(a.id, first_seen=t, last_seen=t)
            self.dirty_experiments.add(a.id)
        if a.weights and (e.weights != a.weights or e.control != a.control):
            e.weights, e.control = dict(a.weights), a.control
            self.dirty_experiments.add(a.id)
        last = t if t_last is None or t_last < t else t_last
        if last > e.last_seen:
            e.last_seen = last
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

    def see_unit(self, e: Experiment | None, variant: str, unit: str, calls: int = 1) -> None:
        """Count assignment unit `unit` (a unit key) in `variant`. Exact until a cap
        (`state.max_units_per_experiment`, `state.max_units`) is reached; then the experiment keeps a
        uniform hash sample of its units, halved as often as needed (`unit_sample_level`), so the
        sets stay bounded and the SRM test on them stays valid. Units outside the sample count
        nothing; sampled-out calls are counted in `units_dropped`."""
        if e is None:
            return
        key = self._unit_cache.get(unit)
        if key is None:
            key = unit_key_int(unit)
            if len(self._unit_cache) >= 50_000:
                self._unit_cache.clear()
            self._unit_cache[unit] = key
        s = e.units.get(variant)
        if s is None:
            s = e.units[variant] = set()
        if key in s:
            return
        mask = (1 << e.unit_sample_level) - 1
        if unit_mix(key) & mask:
            self.units_dropped += calls
            return
        while e.unit_count >= self.max_units_per_experiment or self.units_total >= self.max_units:
            if e.unit_sample_level >= 62 or e.unit_count == 0:
                self.units_dropped += calls
                return
            self._halve_units(e)
            mask = (1 << e.unit_sample_level) - 1
            if unit_mix(key) & mask:
                self.units_dropped += calls
                return
        s.add(key)
        e.unit_count += 1
        self.units_total += 1
        self.dirty_units.append((e.id, variant, key))

    def _halve_units(self, e: Experiment) -> None:
        """Keep the half of `e`'s sampled units whose next mixed bit is 0 (the next flush rewrites
        the experiment's stored units)."""
        e.unit_sample_level += 1
        mask = (1 << e.unit_sample_level) - 1
        for variant, units in e.units.items():
            kept = {u for u in units if not unit_mix(u) & mask}
            self.units_total -= len(units) - len(kept)
            e.unit_count -= len(units) - len(kept)
            e.units[variant] = kept
        if not e.units_capped:
            e.units_capped = True
        self.dirty_units_capped.add(e.id)

    # --- per-unit clusters (caller holds the lock) ---
    def cluster_add(self, e: Experiment | None, metric: str, variant: str, bucket: int, value: float,
                    count: float = 1.0) -> None:
        """Add `value` (and `count` samples) to cluster `bucket` of (metric, variant)."""
        if e is None:
            return
        c = self._cluster(e, metric, variant)
        if c is not None:
            c[0][bucket] += value
            c[1][bucket] += count

    def cluster_merge(self, e: Experiment | None, variant: str, sums: dict[int, list[float]]) -> None:
        """Add a batch's per-cluster call sums for one (experiment, variant): mixed unit key ->
        [Σ x, Σ n] per CALL_METRICS column, flat (`prepare` builds them)."""
        if e is None:
            return
        buckets = self.unit_buckets
        for i, metric in enumerate(CALL_METRICS):
            c = None
            for mixed, vals in sums.items():
                n = vals[2 * i + 1]
                if n:
                    if c is None:
                        c = self._cluster(e, metric, variant)
                        if c is None:
                            break
                    c[0][mixed % buckets] += vals[2 * i]
                    c[1][mixed % buckets] += n

    def _cluster(self, e: Experiment, metric: str, variant: str) -> tuple[array, array] | None:
        key = (metric, variant)
        c = e.clusters.get(key)
        if c is None:
            if len(e.clusters) >= self.max_stats_per_experiment:
                return None  # the same cap as the per-call stats (odd metric names), counted there
            zeros = array("d", bytes(8 * self.unit_buckets))
            c = e.clusters[key] = (zeros, array("d", zeros))
        self.dirty_clusters.add((e.id, metric, variant))
        return c

    def bucket_of(self, unit_or_trace: str | None) -> int:
        """The cluster of a unit key (or, for calls without one, their trace id)."""
        if not unit_or_trace:
            return 0
        return unit_mix(unit_key_int(unit_or_trace)) % self.unit_buckets

    def exp_merge(self, e: Experiment | None, variant: str, summary: list[tuple]) -> None:
        """Add a batch's `summarize_rows` output for one (experiment, variant); same caps and drop
        counts as `exp_add` per sample."""
        if e is None:
            return
        for metric, n, total, total_sq, binary, first, last in summary:
            key = (metric, variant)
            s = e.stats.get(key)
            if s is None:
                if len(e.stats) >= self.max_stats_per_experiment:
                    self.experiments_dropped += n
                    continue
                s = e.stats[key] = Stat()
                s.first_seen = first
            s.n += n
            s.sum += total
            s.sum_sq += total_sq
            if s.binary and not binary:
                s.binary = False
            if last > s.last_seen:
                s.last_seen = last
            self.dirty_stats.add((e.id, metric, variant))

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
                clusters: dict[str, dict[str, tuple[array, array]]] = {}
                if e.units:  # unit keys seen: analyse per unit (copies; summed outside the lock)
                    for (metric, variant), (xs, ns) in e.clusters.items():
                        clusters.setdefault(metric, {})[variant] = (array("d", xs), array("d", ns))
                out[e.id] = ExperimentSnapshot(e.id, e.control, dict(e.weights) if e.weights else None,
                                               metrics, e.first_seen, e.last_seen, e.units_capped,
                                               e.unit_sample_level, clusters)
            return out

    # --- usage (caller holds the lock) ---
    def see_id(self, service: str, kind: str, raw_id: str, t: float) -> None:
        h = self._hash_cache.get(raw_id)
        if h is None:
            if len(self._hash_cache) >= 50_000:
                self._hash_cache.clear()  # bounded; recomputing is cheap
            h = self._hash_cache[raw_id] = id_hash(raw_id)
        self.see_ids(service, kind, {h: t})

    def see_ids(self, service: str, kind: str, seen: dict[int, float]) -> None:
        """Record id hashes (`id_hash`, e.g. from an ingest worker) seen at the given unix times.

        New ids are dirty (persisted by the next flush); a known id's newer time is persisted by
        the flush's once-a-minute refresh (`Store`), so a busy user costs no write per call."""
        key = (service, kind)
        ids = self.usage.get(key)
        if ids is None:
            ids = self.usage[key] = {}
        dirty = self.dirty_usage.get(key)
        if dirty is None:
            dirty = self.dirty_usage[key] = set()
        fresh = set(seen).difference(ids)  # O(len(seen)): set - dict checks membership (not keys - keys)
        if len(ids) + len(fresh) <= self.max_ids:  # C-level set and dict operations
            ids.update(seen)
            dirty |= fresh
            return
        for h, t in seen.items():  # near the cap: one by one, pruning expired ids first
            if h in ids:
                ids[h] = t
                continue
            if len(ids) >= self.max_ids:
                self._prune_usage(ids, t)
                if len(ids) >= self.max_ids:
                    self.usage_dropped += 1
                    continue
            ids[h] = t
            dirty.add(h)

    def _prune_usage(self, ids: dict[int, float], now: float) -> None:
        for h in [h for h, seen in ids.items() if seen < now - DAY]:
            del ids[h]

    def count_request(self, service: str, t: float, n: int = 1) -> None:
        slot = int(t // REQUEST_SLOT_SECONDS) * REQUEST_SLOT_SECONDS
        slots = self.request_slots.setdefault(service, {})
        slots[slot] = slots.get(slot, 0) + n
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

    def prune(self, now: float, index_retention: float) -> None:
        """Drop expired usage ids, request slots and span index chunks (whole batches: a chunk goes
        when its newest call is older than the retention)."""
        with self.lock:
            for service, slots in self.request_slots.items():
                for slot in [s for s in slots if s < now - DAY - REQUEST_SLOT_SECONDS]:
                    del slots[slot]
            for ids in self.usage.values():
                self._prune_usage(ids, now)
            chunks = self.index_chunks
            while chunks and chunks[0].t_max < now - index_retention:
                self._drop_index_keys(chunks[0], len(chunks[0].keys) - chunks[0].evicted)
                self._chunk_by_seq.pop(chunks.popleft().seq, None)

    # --- span index (caller holds the lock) ---
    def index_add(self, keys: list[str], entries: list[IndexEntry], entry_of: array,
                  t_max: float, *, seq: int = 0) -> None:
        """Remember a batch of calls for evaluation joins: keys[i] (trace id hex + span id hex) ->
        entries[entry_of[i]], entry_of an array("I").

        `seq` 0 assigns the next chunk seq and has the next flush persist the chunk (one row); a
        given seq is a chunk restored from SQLite. Past `state.span_index_max_entries` the oldest
        entries are evicted (counted)."""
        if not keys:
            return
        persist = not seq
        if persist:
            self.index_seq += 1
            seq = self.index_seq
        elif seq > self.index_seq:
            self.index_seq = seq
        chunk = IndexChunk(seq, t_max, keys, entries, entry_of)
        self.index_chunks.append(chunk)
        self._chunk_by_seq[seq] = chunk
        self.span_index.update(zip(keys, range(seq << 32, (seq << 32) + len(keys))))
        self.trace_last.update({k[:32]: k for k in keys})
        self.index_size += len(keys)
        if persist:
            self.index_new.append(chunk)
        over = self.index_size - self.index_max
        while over > 0:
            oldest = self.index_chunks[0]
            k = min(over, len(oldest.keys) - oldest.evicted)
            self._drop_index_keys(oldest, k)
            self.index_evicted += k
            over -= k
            if oldest.evicted == len(oldest.keys):
                self.index_chunks.popleft()
                self._chunk_by_seq.pop(oldest.seq, None)

    def _drop_index_keys(self, chunk: IndexChunk, k: int) -> None:
        """Forget the next k live keys of `chunk` (the oldest chunk)."""
        index, last, seq = self.span_index, self.trace_last, chunk.seq
        start = chunk.evicted
        for key in chunk.keys[start:start + k]:
            hit = index.get(key)
            if hit is not None and hit >> 32 == seq:  # not re-added by a later chunk
                del index[key]
                if last.get(key[:32]) == key:
                    del last[key[:32]]
        chunk.evicted = start + k
        self.index_size -= k

    def index_oldest_seq(self) -> int:
        """Seq of the oldest chunk still indexed (persisted chunks below it are gone from memory)."""
        return self.index_chunks[0].seq if self.index_chunks else self.index_seq + 1

    def index_get(self, trace_id: str | None, span_id: str | None) -> IndexEntry | None:
        if not trace_id:
            return None
        index = self.span_index
        hit = index.get(trace_id + span_id) if span_id else None
        if hit is None:
            # the evaluated span may be a wrapper of the LLM call: fall back to the trace's last call
            last = self.trace_last.get(trace_id)
            if last is not None:
                hit = index.get(last)
        if hit is None:
            return None
        chunk = self._chunk_by_seq.get(hit >> 32)
        return chunk.entries[chunk.entry_of[hit & 0xFFFFFFFF]] if chunk is not None else None


def summarize_rows(rows: list[tuple]) -> list[tuple]:
    """Sufficient statistics of a batch's calls for one (experiment, variant): rows are (t, latency,
    input tokens, output tokens, cost, error) with None = not measured, and each row is one
    exposure. Returns (metric, n, sum, sum of squares, all 0/1, first seen, last seen) per metric
    with at least one measured value. Pure; C-level sums (runs in ingest workers)."""
    columns = list(zip(*rows))
    times = columns[0]
    first, last = times[0], max(times)
    out = []
    for metric, col in zip(CALL_METRICS_WITH_EXPOSURES, ((1.0,) * len(rows),) + tuple(columns[1:])):
        first_c, last_c = first, last
        if None in col:  # unmeasured in some calls: first/last seen of the measured ones
            idx = [i for i, v in enumerate(col) if v is not None]
            if not idx:
                continue
            col = [col[i] for i in idx]
            first_c, last_c = times[idx[0]], max(times[i] for i in idx)
        out.append((metric, len(col), float(sum(col)), float(sum(map(_mul, col, col))),
                    _BINARY.issuperset(col), first_c, last_c))
    return out


def now() -> float:
    return time.time()
