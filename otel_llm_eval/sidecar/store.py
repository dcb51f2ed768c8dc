"""SQLite (WAL) persistence for the sidecar's state, plus the ingest journals.

HTTP handlers append accepted requests to the file journal (journal.py) before answering 200.
The state thread (`conn`: `load` at start, `flush` every `state.flush_interval_seconds`) writes
every dirty piece of state, lets plugins write theirs, and records the last applied journal seq,
all in ONE transaction: after a kill -9, state + the journal after that seq = exactly what was
acknowledged, so a restart replays the rest and nothing is counted twice or lost. Evaluations
that plugins submit are journaled in the SQLite `journal` table inside that same transaction.

Request bodies are deduplicated by SHA-256 within `state.dedup_retention_seconds`: an exporter
that retries a request whose 200 it never saw (the sidecar died in between) does not double count.
The digests live in memory, in each journal record, and (after a flush) in `request_hashes`.
"""

from __future__ import annotations

import hashlib
from array import array
import json
import logging
import math
import os
import sqlite3
import threading
import time
from typing import Any, Callable, Iterable

from ..semconv import ExperimentAssignment
from .ingest.journal import FileJournal
from .startup import check_state_path, describe_db_error, lock_state, unlock_state
from .plugins import EvaluationRecord
from .state import Experiment, IndexEntry, Stat, State

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS series (metric TEXT, labels TEXT, value REAL, buckets TEXT,
    PRIMARY KEY (metric, labels));
CREATE TABLE IF NOT EXISTS experiments (id TEXT PRIMARY KEY, control TEXT, weights TEXT,
    first_seen REAL, last_seen REAL);
CREATE TABLE IF NOT EXISTS exp_stats (experiment TEXT, metric TEXT, variant TEXT, n INTEGER,
    sum REAL, sum_sq REAL, binary INTEGER, first_seen REAL, last_seen REAL,
    PRIMARY KEY (experiment, metric, variant));
CREATE TABLE IF NOT EXISTS span_index_chunks (seq INTEGER PRIMARY KEY, t_max REAL, entries TEXT,
    ids BLOB, entry_of BLOB);
CREATE TABLE IF NOT EXISTS usage_ids (service TEXT, kind TEXT, id INTEGER, last_seen REAL,
    PRIMARY KEY (service, kind, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS request_slots (service TEXT, slot INTEGER, n INTEGER,
    PRIMARY KEY (service, slot));
CREATE TABLE IF NOT EXISTS journal (seq INTEGER PRIMARY KEY AUTOINCREMENT, signal TEXT,
    content_type TEXT, encoding TEXT, body BLOB, t REAL);
CREATE TABLE IF NOT EXISTS request_hashes (hash BLOB PRIMARY KEY, t REAL);
CREATE TABLE IF NOT EXISTS experiment_units (experiment TEXT, variant TEXT, unit INTEGER,
    PRIMARY KEY (experiment, variant, unit)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS experiment_units_capped (experiment TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS experiment_unit_sample (experiment TEXT PRIMARY KEY, level INTEGER);
CREATE TABLE IF NOT EXISTS exp_clusters (experiment TEXT, metric TEXT, variant TEXT, sums BLOB, counts BLOB,
    PRIMARY KEY (experiment, metric, variant));
"""


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a committed transaction survives a process kill (not a power cut).
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _exps_to_json(exps: Iterable[ExperimentAssignment]) -> str:
    return json.dumps([[a.id, a.variant, a.weights, a.control, a.unit] for a in exps])


def _exps_from_json(text: str | None) -> tuple[ExperimentAssignment, ...]:
    if not text:
        return ()
    return tuple(ExperimentAssignment(*e) for e in json.loads(text))


def evaluation_to_json(r: EvaluationRecord) -> bytes:
    attrs = {k: v for k, v in r.attributes.items() if isinstance(v, (str, int, float, bool))}
    return json.dumps({"name": r.name, "source": r.source, "trace_id": r.trace_id, "span_id": r.span_id,
                       "time_unix_nano": r.time_unix_nano, "score": r.score, "label": r.label,
                       "explanation": r.explanation, "error": r.error, "service": r.service, "model": r.model,
                       "experiments": [[a.id, a.variant, a.weights, a.control, a.unit] for a in r.experiments],
                       "attributes": attrs}).encode()


def evaluation_from_json(body: bytes) -> EvaluationRecord:
    d = json.loads(body)
    d["experiments"] = tuple(ExperimentAssignment(*e) for e in d.get("experiments") or ())
    return EvaluationRecord(**d)


_NO_DIGEST = b"\0" * 32


class Store:
    def __init__(self, path: str, *, dedup_retention_seconds: float = 600.0, now: float | None = None,
                 journal_max_age_seconds: float = 900.0):
        self.path = path
        check_state_path(path)
        # one process per state: a second sidecar on the same db would overwrite acknowledged data
        self._lock_fd: int | None = lock_state(path)
        existed = os.path.exists(path) and os.path.getsize(path) > 0
        try:
            self.conn = connect(path)
            # the span index used to be one row per call; it is one row per batch now (a join cache:
            # an index in the older layout is dropped, evaluations of those calls join by trace only)
            self.conn.execute("DROP TABLE IF EXISTS span_index")
            self.conn.executescript(SCHEMA)
            row = self.conn.execute("SELECT value FROM meta WHERE key = 'journal_applied_seq'").fetchone()
        except sqlite3.Error as e:
            unlock_state(self._lock_fd)
            raise describe_db_error(path, e) from None
        except BaseException:
            unlock_state(self._lock_fd)
            raise
        #: False when the state file was missing or empty (rebuilt from the journal at start)
        self.existed = existed
        self.journal_lock = threading.Lock()
        self.flush_lock = threading.Lock()  # one flush at a time (state.lock is released during writes)
        self.journal_applied_seq = int(row[0]) if row else 0
        self.file_journal = FileJournal(path + ".journal", min_seq=self.journal_applied_seq,
                                        max_age_seconds=journal_max_age_seconds)
        now = time.time() if now is None else now
        #: digest -> first seen (unix); new ones are written to request_hashes by the next flush
        self.hashes: dict[bytes, float] = dict(self.conn.execute(
            "SELECT hash, t FROM request_hashes WHERE t >= ?", (now - dedup_retention_seconds,)).fetchall())
        self.new_hashes: list[tuple[bytes, float]] = []
        #: usage ids' last-seen times are rewritten once a minute (State.see_ids)
        self.usage_refresh_minute = now // 60.0
        self.usage_refreshed_at = now

    def close(self) -> None:
        self.file_journal.close()
        try:
            self.conn.close()
        except sqlite3.Error:
            pass
        unlock_state(self._lock_fd)
        self._lock_fd = None

    # --- journal (HTTP threads) ---
    def journal_append(self, signal: str, content_type: str, encoding: str, body: bytes,
                       dedup: bool, now: float) -> int | None:
        """Append one accepted request; its seq, or None when an identical body was seen recently.

        Caller holds `journal_lock` (so seq order equals ingest queue order).
        """
        digest = _NO_DIGEST
        if dedup:
            digest = hashlib.sha256(signal.encode() + b"\0" + body).digest()
            if digest in self.hashes:
                return None
        seq = self.file_journal.append(digest, signal, content_type, encoding, body)
        if dedup:
            self.hashes[digest] = now
            self.new_hashes.append((digest, now))
        return seq

    def pending_journal(self) -> list[tuple[int, str, str, str, bytes]]:
        """What to replay at start: file journal records after the applied seq, then plugin
        evaluations (their own seqs) that were journaled but not applied."""
        out = []
        for seq, digest, signal, ctype, enc, body in self.file_journal.records_after(self.journal_applied_seq):
            if digest != _NO_DIGEST:
                self.hashes.setdefault(digest, time.time())
            out.append((seq, signal, ctype, enc, body))
        out += self.conn.execute(
            "SELECT seq, signal, content_type, encoding, body FROM journal ORDER BY seq").fetchall()
        return out

    # --- load (state thread, at start) ---
    def load(self, state: State) -> None:
        c = self.conn
        with state.lock:
            poisoned = 0
            for metric, labels, value, buckets in c.execute("SELECT metric, labels, value, buckets FROM series"):
                if value is None or not math.isfinite(value):
                    # written before values were checked at the edge: a +Inf/NaN series would never
                    # publish again; it restarts from zero instead
                    poisoned += 1
                    continue
                key = (metric, tuple(json.loads(labels)))
                if buckets is None:
                    state.counters[key] = value
                else:
                    state.hists[key] = [json.loads(buckets), value]
            if poisoned:
                log.warning("state %s: %d series held a non-finite value (from before values were checked "
                            "at the edge); they restart from zero", self.path, poisoned)
            for i, control, weights, first, last in c.execute(
                    "SELECT id, control, weights, first_seen, last_seen FROM experiments"):
                state.experiments[i] = Experiment(i, control, json.loads(weights) if weights else None, first, last)
            for exp, metric, variant, n, s, ss, binary, first, last in c.execute(
                    "SELECT experiment, metric, variant, n, sum, sum_sq, binary, first_seen, last_seen FROM exp_stats"):
                e = state.experiments.setdefault(exp, Experiment(exp, first_seen=first, last_seen=last))
                e.stats[(metric, variant)] = Stat(n, s, ss, bool(binary), first, last)
            for exp, variant, unit in c.execute("SELECT experiment, variant, unit FROM experiment_units"):
                e = state.experiments.get(exp)
                if e is not None:
                    e.units.setdefault(variant, set()).add(unit)
                    e.unit_count += 1
                    state.units_total += 1
            for (exp,) in c.execute("SELECT experiment FROM experiment_units_capped"):
                if exp in state.experiments:
                    state.experiments[exp].units_capped = True
            for exp, level in c.execute("SELECT experiment, level FROM experiment_unit_sample"):
                if exp in state.experiments:
                    state.experiments[exp].unit_sample_level = int(level)
            size = 8 * state.unit_buckets
            for exp, metric, variant, sums, counts in c.execute(
                    "SELECT experiment, metric, variant, sums, counts FROM exp_clusters"):
                e = state.experiments.get(exp)
                if e is None:
                    continue
                if len(sums) != size or len(counts) != size:  # state.unit_buckets changed: cannot re-bucket
                    log.warning("per-unit sums of %s/%s/%s were kept in %d buckets, not %d: dropped",
                                exp, metric, variant, len(sums) // 8, state.unit_buckets)
                    continue
                xs, ns = array("d"), array("d")
                xs.frombytes(sums)
                ns.frombytes(counts)
                e.clusters[(metric, variant)] = (xs, ns)
            for service, kind, h, seen in c.execute("SELECT service, kind, id, last_seen FROM usage_ids"):
                state.usage.setdefault((service, kind), {})[h] = seen
            for service, slot, n in c.execute("SELECT service, slot, n FROM request_slots"):
                state.request_slots.setdefault(service, {})[slot] = n
            exps_cache: dict[str, tuple] = {}
            evicted = state.index_evicted  # trimming a partly evicted chunk again is not an overflow
            for seq, t_max, entries_json, ids, entry_of in c.execute(
                    "SELECT seq, t_max, entries, ids, entry_of FROM span_index_chunks ORDER BY seq"):
                entries = []
                for service, model, exps in json.loads(entries_json):
                    e = exps_cache.get(exps)
                    if e is None:
                        e = exps_cache[exps] = _exps_from_json(exps)
                    entries.append(IndexEntry(service, model, e))
                of = array("I")
                of.frombytes(entry_of)
                hexed = ids.hex()
                keys = [hexed[i:i + 48] for i in range(0, len(hexed), 48)]
                if len(keys) != len(of) or any(i >= len(entries) for i in of):
                    log.warning("span index chunk %s is inconsistent; skipped", seq)
                    continue
                state.index_add(keys, entries, of, t_max, seq=seq)
            state.index_evicted = evicted

    # --- flush (state thread) ---
    def flush(self, state: State, plugins: Iterable[Any], *, now: float, dedup_retention: float,
              take_evaluations: Callable[[], list[Any]] = list) -> list[tuple[int, Any]]:
        """Write dirty state + plugin state + journal consumption in one transaction.

        Copies the dirty state and the journal position under `state.lock` (taking the dirty sets:
        what changes afterwards is dirty for the next flush), so what is written is exactly the
        state that contains the journal rows in `state.applied_seqs` (deleted here). With plugins
        the lock is held until the commit (their `flush` writes their state as of the same
        journal position); without plugins it is released before the SQLite writes, so ingest
        goes on meanwhile. On failure the taken dirty sets are put back (the next flush writes
        them). Evaluations plugins submitted (`take_evaluations()`, called after their flush) are
        journaled in the same transaction; returns their (seq, record) for the ingest worker.
        """
        plugins = list(plugins)
        with self.flush_lock:
            state.lock.acquire()
            try:
                return self._flush(state, plugins, now, dedup_retention, take_evaluations)
            finally:
                state.lock.release()

    def _flush(self, state: State, plugins: list[Any], now: float, dedup_retention: float,
               take_evaluations: Callable[[], list[Any]]) -> list[tuple[int, Any]]:
        """Caller holds flush_lock and state.lock (once); releases state.lock early without plugins
        and re-acquires it before returning."""
        c = self.conn
        series = []
        for key in state.dirty_series:
            metric, labels = key
            if key in state.counters:
                series.append((metric, json.dumps(labels), state.counters[key], None))
            elif key in state.hists:
                counts, total = state.hists[key]
                series.append((metric, json.dumps(labels), total, json.dumps(counts)))
        experiments = [(e.id, e.control, json.dumps(e.weights) if e.weights else None, e.first_seen,
                        e.last_seen) for e in (state.experiments[i] for i in state.dirty_experiments)]
        stats = []
        for exp, metric, variant in state.dirty_stats:
            s = state.experiments[exp].stats[(metric, variant)]
            stats.append((exp, metric, variant, s.n, s.sum, s.sum_sq, int(s.binary), s.first_seen, s.last_seen))
        usage = []
        for (service, kind), hashes in state.dirty_usage.items():
            ids = state.usage.get((service, kind), {})
            usage += [(service, kind, h, ids[h]) for h in hashes if h in ids]
        refresh_minute = now // 60.0
        if refresh_minute != self.usage_refresh_minute:
            # once a minute: the newer last-seen times of known ids (see State.see_ids); span
            # times lag the wall clock, so look back a little further than the last refresh
            since = self.usage_refreshed_at - 120.0
            for (service, kind), ids in state.usage.items():
                usage += [(service, kind, h, t) for h, t in ids.items() if t >= since]
        # an experiment whose unit sample was halved: its stored units are rewritten whole
        rewrite = {i for i in state.dirty_units_capped if i in state.experiments}
        units = [u for u in state.dirty_units if u[0] not in rewrite]
        for i in rewrite:
            units += [(i, v, u) for v, us in state.experiments[i].units.items() for u in us]
        units_capped = [(i,) for i in state.dirty_units_capped]
        unit_levels = [(i, state.experiments[i].unit_sample_level) for i in rewrite]
        clusters = []
        for exp, metric, variant in state.dirty_clusters:
            got = state.experiments.get(exp)
            sums = got.clusters.get((metric, variant)) if got is not None else None
            if sums is not None:
                clusters.append((exp, metric, variant, sums[0].tobytes(), sums[1].tobytes()))
        req_slots = [(s, slot, state.request_slots.get(s, {}).get(slot, 0))
                     for s, slot in state.dirty_request_slots]
        index = []
        exps_json: dict[int, str] = {}  # experiment tuples are shared between calls: encode each once
        for chunk in state.index_new:
            entries = []
            for e in chunk.entries:
                j = exps_json.get(id(e.experiments))
                if j is None:
                    j = exps_json[id(e.experiments)] = _exps_to_json(e.experiments)
                entries.append((e.service, e.model, j))
            index.append((chunk.seq, chunk.t_max, json.dumps(entries), bytes.fromhex("".join(chunk.keys)),
                          chunk.entry_of.tobytes()))
        oldest_seq = state.index_oldest_seq()
        applied = [(seq,) for seq in state.applied_seqs]
        file_applied = max(state.applied_file_seq, self.journal_applied_seq)
        # take the dirty sets: what is dirtied from here on is written by the next flush
        taken = (state.dirty_series, state.dirty_experiments, state.dirty_stats, state.dirty_usage,
                 state.dirty_units, state.dirty_units_capped, state.dirty_request_slots, state.index_new,
                 state.dirty_clusters)
        state.dirty_series, state.dirty_experiments, state.dirty_stats, state.dirty_usage = set(), set(), set(), {}
        state.dirty_units, state.dirty_units_capped, state.dirty_request_slots, state.index_new = [], set(), set(), []
        state.dirty_clusters = set()
        with self.journal_lock:
            hashes, self.new_hashes = self.new_hashes, []
            cutoff = now - dedup_retention
            if self.hashes and min(self.hashes.values()) < cutoff:
                self.hashes = {h: t for h, t in self.hashes.items() if t >= cutoff}
        unlocked = not plugins
        if unlocked:
            state.lock.release()  # everything below reads only the copies (and plugins, if any)
        try:
            c.execute("BEGIN IMMEDIATE")
            try:
                c.executemany("INSERT OR REPLACE INTO series VALUES (?, ?, ?, ?)", series)
                c.executemany("INSERT OR REPLACE INTO experiments VALUES (?, ?, ?, ?, ?)", experiments)
                c.executemany("INSERT OR REPLACE INTO exp_stats VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", stats)
                c.executemany("INSERT OR REPLACE INTO usage_ids VALUES (?, ?, ?, ?)", usage)
                c.executemany("DELETE FROM experiment_units WHERE experiment = ?", [(i,) for i in rewrite])
                c.executemany("INSERT OR IGNORE INTO experiment_units VALUES (?, ?, ?)", units)
                c.executemany("INSERT OR IGNORE INTO experiment_units_capped VALUES (?)", units_capped)
                c.executemany("INSERT OR REPLACE INTO experiment_unit_sample VALUES (?, ?)", unit_levels)
                c.executemany("INSERT OR REPLACE INTO exp_clusters VALUES (?, ?, ?, ?, ?)", clusters)
                c.executemany("INSERT OR REPLACE INTO request_slots VALUES (?, ?, ?)", req_slots)
                c.executemany("INSERT OR REPLACE INTO span_index_chunks VALUES (?, ?, ?, ?, ?)", index)
                # chunks that retention or the size cap removed from memory: the file stays bounded too
                c.execute("DELETE FROM span_index_chunks WHERE seq < ?", (oldest_seq,))
                c.execute("DELETE FROM usage_ids WHERE last_seen < ?", (now - 86400.0,))
                c.execute("DELETE FROM request_slots WHERE slot < ?", (now - 86400.0 - 120,))
                c.executemany("DELETE FROM journal WHERE seq = ?", applied)
                c.executemany("INSERT OR IGNORE INTO request_hashes VALUES (?, ?)", hashes)
                c.execute("DELETE FROM request_hashes WHERE t < ?", (now - dedup_retention,))
                c.execute("INSERT OR REPLACE INTO meta VALUES ('journal_applied_seq', ?)", (str(file_applied),))
                for plugin in plugins:
                    # one plugin's failure must not stop the core's state from being saved
                    c.execute("SAVEPOINT plugin_flush")
                    try:
                        plugin.flush(c)
                        c.execute("RELEASE plugin_flush")
                    except Exception:
                        c.execute("ROLLBACK TO plugin_flush")
                        c.execute("RELEASE plugin_flush")
                        log.exception("plugin %s failed to flush; its changes were rolled back",
                                      getattr(plugin, "name", plugin))
                journaled = []
                for record in take_evaluations():
                    cur = c.execute("INSERT INTO journal (signal, content_type, encoding, body, t) VALUES (?, ?, ?, ?, ?)",
                                    ("evaluation", "application/json", "", evaluation_to_json(record), now))
                    journaled.append((int(cur.lastrowid), record))
                c.execute("COMMIT")
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                with self.journal_lock:
                    self.new_hashes[:0] = hashes  # written by the next flush
                if unlocked:
                    state.lock.acquire()
                    unlocked = False
                # not written: dirty again (merged with what was dirtied meanwhile)
                state.dirty_series |= taken[0]
                state.dirty_experiments |= taken[1]
                state.dirty_stats |= taken[2]
                for key, hashes in taken[3].items():
                    state.dirty_usage.setdefault(key, set()).update(hashes)
                state.dirty_units[:0] = taken[4]
                state.dirty_units_capped |= taken[5]
                state.dirty_request_slots |= taken[6]
                state.index_new[:0] = taken[7]
                state.dirty_clusters |= taken[8]
                raise
        finally:
            if unlocked:
                state.lock.acquire()
        self.journal_applied_seq = file_applied
        if refresh_minute != self.usage_refresh_minute:
            self.usage_refresh_minute, self.usage_refreshed_at = refresh_minute, now
        self.file_journal.prune(file_applied)
        with self.journal_lock:
            self.file_journal.retire_old_segment(file_applied)
        del state.applied_seqs[:len(applied)]
        return journaled


def wall_now() -> float:
    return time.time()
