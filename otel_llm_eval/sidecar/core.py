"""The sidecar core: wires config, state, store, ingest worker, flush and analysis threads, plugins.

`Sidecar(cfg)` loads plugins and state; `start()` replays the journal and starts the threads;
`submit(...)` is what HTTP handlers call (bounded queue + journal); `stop()` drains and flushes.
Threads: ingest worker (decoding results -> state, plugins' on_call/on_evaluation), state thread
(flush every `state.flush_interval_seconds`), analysis thread (plugins' tick every
`analysis.interval_seconds`). HTTP handlers never touch the state except through `submit`.
"""

from __future__ import annotations

import collections
import importlib
import json
import logging
import queue
import threading
import time
from typing import Any, Callable, Iterable, Mapping

from ..catalog import BY_NAME
from .ingest.checks import CheckRunner, build_checks
from .config import ANALYSIS_SPLIT, expand_plugin_spec, merge_plugin_defaults, validate
from .ingest.edge import EdgeLimits
from .ingest.apply import Ingestor, summarizer_specs
from .labels import LabelBounder
from .ingest.otlp import OTLPError, decode_logs, decode_traces
from .plugins import EvaluationRecord, ExperimentSnapshot, SidecarPlugin, section_of
from .store import evaluation_from_json
from .ingest.prices import PriceTable
from .state import State
from .store import Store

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The ingest queue is full: answer 429/503 with Retry-After so exporters retry."""


def load_plugins(specs: Iterable[str]) -> list[SidecarPlugin]:
    """Instantiate `module:Class` plugins; a module that does not exist yet is skipped with a warning.
    A spec of a plugin that was split (config.ANALYSIS_SPLIT) loads what it became, with a warning."""
    plugins = []
    expanded = []
    for spec in specs:
        if str(spec) in ANALYSIS_SPLIT:
            log.warning("plugin %s was split into %s; listing those instead keeps working after the old "
                        "name is removed", spec, ", ".join(ANALYSIS_SPLIT[str(spec)]))
        expanded += expand_plugin_spec(spec)
    for spec in dict.fromkeys(expanded):
        module_name, sep, cls_name = str(spec).partition(":")
        if not sep:
            raise ValueError(f"plugin {spec!r} must look like 'module:Class'")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
                log.warning("plugin %s not loaded: module %s does not exist (continuing without it)",
                            spec, module_name)
                continue
            raise
        cls = getattr(module, cls_name, None)
        if cls is None:
            raise ValueError(f"plugin {spec!r}: {module_name} has no attribute {cls_name}")
        plugins.append(cls())
    return plugins


class SidecarContext:
    """What plugins get in `attach` (see plugins/__init__.py for the contract)."""

    def __init__(self, sidecar: "Sidecar"):
        self._sidecar = sidecar
        self.config: dict[str, Any] = sidecar.config
        self.db_path: str = sidecar.config["state"]["db_path"]

    def now(self) -> float:
        return self._sidecar.clock()

    def bound(self, label: str, value: Any, n: int = 1) -> str:
        return self._sidecar.labels.bound(label, value, n)

    def experiment_snapshot(self) -> dict[str, ExperimentSnapshot]:
        return self._sidecar.state.snapshot()

    def family(self, metric_name: str, values: Iterable[Any]) -> Any:
        """Values past a label's cap fold into ONE `other` series; a scrape counts a fold once."""
        labels = self._sidecar.labels
        return build_family(metric_name, values, lambda label, value: labels.bound(label, value, None))

    def flush_now(self) -> bool:
        """Write the whole state (every plugin's included) in one transaction now; True when it
        committed. For changes a client must not lose once answered (a human label): call it
        before answering, like the journal for spans."""
        return self._sidecar.flush()

    def plugin(self, name: str) -> SidecarPlugin | None:
        """The loaded plugin called `name`, or None (for plugins that read another's results)."""
        for p in self._sidecar.plugins:
            if p.name == name:
                return p
        return None

    def submit_evaluation(self, record: EvaluationRecord) -> None:
        """Hand an evaluation made by a plugin (e.g. a human label) to the core: it is journaled in
        the next flush transaction (with the caller's own state when called from `flush`) and
        then counted exactly once like one from OTLP. Never blocks, never raises on load."""
        self._sidecar.submit_evaluation(record)


def build_family(metric_name: str, values: Iterable[Any], bound: Callable[[str, Any], str]) -> Any:
    """A prometheus_client family for catalog metric `metric_name`.

    values: (label dict, value) for counters and gauges; (label dict, per-bucket counts, sum)
    for histograms, with non-cumulative counts aligned to the catalog buckets (len(buckets) + 1,
    the last one for +Inf; len(buckets) is accepted and means nothing above the last bound).
    Missing labels are "", values pass through the label caps. Non-finite values are omitted.
    Items whose bounded labels coincide (several values folded into `other`) become ONE series:
    counters, histograms and `*_samples` gauges add up, other gauges keep the largest value.
    """
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
    from prometheus_client.utils import floatToGoString

    m = BY_NAME[metric_name]
    labels = list(m.labels)
    if m.type == "counter":
        fam = CounterMetricFamily(m.family_name, m.help, labels=labels)
    elif m.type == "gauge":
        fam = GaugeMetricFamily(m.name, m.help, labels=labels)
    else:
        fam = HistogramMetricFamily(m.name, m.help, labels=labels)
    merged: dict[tuple[str, ...], Any] = {}  # bounded label values -> value (or [counts, sum])
    buckets = m.buckets or ()
    for item in values:
        label_dict = item[0]
        lv = tuple(bound(k, label_dict.get(k, "")) for k in labels)
        if m.type == "histogram":
            counts, total = list(item[1]), float(item[2])
            if len(counts) == len(buckets):
                counts.append(0)
            if len(counts) != len(buckets) + 1:
                raise ValueError(f"{metric_name}: expected {len(buckets) + 1} bucket counts, got {len(counts)}")
            prev = merged.get(lv)
            merged[lv] = [counts, total] if prev is None else [[a + b for a, b in zip(prev[0], counts)],
                                                               prev[1] + total]
        else:
            v = float(item[1])
            if v != v or v in (float("inf"), float("-inf")):
                continue
            prev = merged.get(lv)
            if prev is None:
                merged[lv] = v
            else:
                # counts add up (counters, *_samples gauges); other gauges (p-values, scores) keep the max
                summed = m.type == "counter" or metric_name.endswith("_samples")
                merged[lv] = prev + v if summed else max(prev, v)
    for lv, value in merged.items():
        if m.type == "histogram":
            cum, acc = [], 0
            for bound_value, c in zip(list(buckets) + [float("inf")], value[0]):
                acc += c
                cum.append((floatToGoString(bound_value), acc))
            fam.add_metric(list(lv), cum, value[1])
        else:
            fam.add_metric(list(lv), value)
    return fam


def restore_report(db_path: str, existed: bool, applied_seq: int, file_seqs: list[int]) -> str | None:
    """One line saying what a start restored when the state file was missing/empty or the journal
    has a gap after the applied seq; None for an ordinary start (nothing was lost)."""
    if not file_seqs:
        return None
    first, last, n = min(file_seqs), max(file_seqs), len(file_seqs)
    lost = first - applied_seq - 1
    if not existed:
        if lost <= 0:
            return (f"state file {db_path} was missing or empty: rebuilt from the journal, all {n} journaled "
                    f"requests (seq {first}..{last}) restored")
        return (f"state file {db_path} was missing or empty: rebuilt from the journal: restored {n} requests "
                f"(seq {first}..{last}); requests 1..{first - 1} were already applied to the lost state and "
                "pruned from the journal, so they are NOT restored (counters and statistics restart lower; "
                "restore the state file from a backup to get them back)")
    if lost > 0:
        return (f"journal of {db_path} has a gap: the state applied up to seq {applied_seq} but the journal "
                f"starts at {first}; requests {applied_seq + 1}..{first - 1} are lost, {n} later ones restored")
    return None


class Sidecar:
    def __init__(self, cfg: Mapping[str, Any], *, clock: Callable[[], float] = time.time,
                 plugins: list[SidecarPlugin] | None = None):
        cfg = dict(cfg)
        self.plugins = load_plugins(cfg.get("plugins") or []) if plugins is None else list(plugins)
        for p in self.plugins:
            cfg = merge_plugin_defaults(cfg, section_of(p), getattr(p, "CONFIG_DEFAULTS", {}) or {})
        validate(cfg, self.plugins)
        self.config = cfg
        self.clock = clock
        st, ing = cfg["state"], cfg["ingest"]
        self.labels = LabelBounder(cfg["labels"].get("caps") or {})
        self.state = State(max_ids_per_service=cfg["usage"]["max_ids_per_service"],
                           span_index_max_entries=st["span_index_max_entries"],
                           max_experiments=st["max_experiments"],
                           max_stats_per_experiment=st["max_stats_per_experiment"],
                           max_units_per_experiment=st["max_units_per_experiment"],
                           max_units=st["max_units"], unit_buckets=st["unit_buckets"])
        self.checks = CheckRunner(build_checks(cfg["checks"]))
        self.prices = PriceTable.from_config(cfg["prices"])
        self.store = Store(st["db_path"], dedup_retention_seconds=st["dedup_retention_seconds"], now=clock(),
                           journal_max_age_seconds=st["journal_max_age_seconds"])
        self.ingestor = Ingestor(self.state, self.labels, self.checks, self.prices, self.plugins, cfg, clock)
        self.queue: queue.Queue = queue.Queue(maxsize=ing["queue_max_batches"])
        self.max_request_bytes = ing["max_request_bytes"]
        self.max_span_bytes = ing["max_span_bytes"]
        self.retry_after_seconds = ing["retry_after_seconds"]
        self.edge = EdgeLimits.from_config(ing.get("limits"))
        self.journal_enabled = bool(st["journal"])
        self.dedup = self.journal_enabled and st["dedup_retention_seconds"] > 0
        self.ctx = SidecarContext(self)
        self.ready = False
        self.analysis_duration_seconds: float | None = None
        self.flush_errors = 0
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._replay: list[tuple[int, str, Any, Any]] = []
        self.workers = int(ing["workers"])
        self.pool: Any = None  # workers.WorkerPool when ingest.workers >= 1 (created in start)
        self._pool_failures = 0
        self._plugin_evaluations: list[Any] = []
        self._plugin_evaluations_lock = threading.Lock()
        self._lock = threading.Lock()  # rejected counters from HTTP threads
        self._rejected: dict[str, int] = {}
        #: HTTP connections refused / evicted / timed out (connections.py; written on the event loop)
        self.connection_stats: dict[str, int] = {}
        if self.store.file_journal.damaged:
            self.count_rejected("journal_damaged", self.store.file_journal.damaged)
        #: what a start with a missing/empty state or a gap in the journal restored (None: nothing to say)
        self.restore_report: str | None = None
        for p in self.plugins:
            p.attach(self.ctx)
        self.store.load(self.state)
        # label values restored from state count against the caps again
        for (metric, values) in list(self.state.counters) + list(self.state.hists):
            for label, value in zip(BY_NAME[metric].labels if metric in BY_NAME else (), values):
                self.labels.remember(label, value)
        for p in self.plugins:
            p.load(self.store.conn)
        self._prepare_replay()

    # --- lifecycle ---
    def _prepare_replay(self) -> None:
        """Decode journal rows that the last run acknowledged but did not flush."""
        rows = self.store.pending_journal()
        self.restore_report = restore_report(self.store.path, self.store.existed, self.store.journal_applied_seq,
                                             [r[0] for r in rows if r[1] != "evaluation"])
        if self.restore_report:
            log.warning("%s", self.restore_report)
        for seq, signal, content_type, encoding, body in rows:
            try:
                payload = self._decode(signal, body, content_type, encoding)
            except OTLPError as e:  # cannot happen for rows we validated; keep going regardless
                log.warning("journal row %s no longer decodes (%s); skipped", seq, e.message)
                payload = None
            self._replay.append((seq, signal, payload, (body, content_type, encoding)))
        if self._replay:
            log.info("replaying %d journaled requests from the previous run", len(self._replay))

    def start(self) -> None:
        if self.workers > 0 and self.pool is None:
            from .ingest.workers import WorkerPool

            self.pool = WorkerPool(self.workers, self.config, plugins=bool(self.ingestor._call_plugins()),
                                   summarizers=summarizer_specs(self.plugins, self.config))
        self._threads = [
            threading.Thread(target=self._ingest_loop, name="sidecar-ingest", daemon=True),
            threading.Thread(target=self._flush_loop, name="sidecar-state", daemon=True),
            threading.Thread(target=self._analysis_loop, name="sidecar-analysis", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Drain the queue, flush state, close plugins and the database. Idempotent."""
        if self._stopping.is_set():
            return
        deadline = time.monotonic() + timeout
        while not self.queue.empty() and time.monotonic() < deadline:
            time.sleep(0.01)
        self._stopping.set()
        self.queue.put(None) if not self.queue.full() else None
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        self.flush()
        if self.pool is not None:
            self.pool.shutdown()
        for p in self.plugins:
            try:
                p.close()
            except Exception:
                log.exception("plugin %s failed to close", p.name)
        self.store.close()

    # --- HTTP side ---
    def _decode(self, signal: str, body: bytes, content_type: str, encoding: str) -> Any:
        if signal == "traces":
            return decode_traces(body, content_type, encoding, max_request_bytes=self.max_request_bytes,
                                 max_span_bytes=self.max_span_bytes).message
        if signal == "logs":
            return decode_logs(body, content_type, encoding, max_request_bytes=self.max_request_bytes,
                               max_span_bytes=self.max_span_bytes).message
        if signal == "evaluation":
            return evaluation_from_json(body)
        return json.loads(body)

    def edge_check(self, signal: str) -> Callable[[Any], tuple[str, str] | None]:
        """The value check for one request's items (edge.py), judged against the current time."""
        now = self.clock()
        if signal == "traces":
            return self.edge.span_checker(now)
        return lambda rec: self.edge.log_problem(rec, now)

    def submit_evaluation(self, record: EvaluationRecord) -> None:
        """Count an evaluation made inside the sidecar (a plugin's, e.g. a human label) exactly once.

        Never blocks and never raises for a full queue: the record is journaled in the next
        flush transaction (together with the calling plugin's own state when called from its
        `flush`) and applied right after that commit. Thread-safe.
        """
        with self._plugin_evaluations_lock:
            self._plugin_evaluations.append(record)

    def take_plugin_evaluations(self) -> list[Any]:
        with self._plugin_evaluations_lock:
            out, self._plugin_evaluations = self._plugin_evaluations, []
        return out

    def count_rejected(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self._rejected[reason] = self._rejected.get(reason, 0) + n

    def submit(self, signal: str, payload: Any, body: bytes, content_type: str, encoding: str,
               clean: bool = False) -> bool:
        """Journal and enqueue one decoded request. False when it was a duplicate (already counted).

        clean: decoding `body` rejected no item (an ingest worker then skips the per-item checks).
        Raises QueueFull when the queue is full (nothing journaled). Called from HTTP handlers;
        blocks only for the journal insert.
        """
        with self.store.journal_lock:
            if self._stopping.is_set():
                raise QueueFull("sidecar is stopping")
            if self.queue.full():
                raise QueueFull("ingest queue is full")
            seq = 0
            if self.journal_enabled:
                got = self.store.journal_append(signal, content_type, encoding, body, self.dedup, self.clock())
                if got is None:
                    return False
                seq = got
            self.queue.put_nowait((seq, signal, payload, (body, content_type, encoding, clean)))
        return True

    # --- worker threads ---
    def _apply(self, seq: int, signal: str, payload: Any) -> None:
        with self.state.lock:
            if payload is not None:
                if signal == "traces":
                    self.ingestor.apply_traces(payload)
                elif signal == "logs":
                    self.ingestor.apply_logs(payload)
                elif signal == "feedback":
                    self.ingestor.apply_feedback(payload)
                elif signal == "evaluation":
                    self.ingestor.apply_evaluation(payload)
            self._mark_applied(seq, signal)

    def _mark_applied(self, seq: int, signal: str) -> None:
        """Caller holds state.lock."""
        if not seq:
            return
        if signal == "evaluation":  # SQLite journal rows (plugin evaluations)
            self.state.applied_seqs.append(seq)
        elif seq > self.state.applied_file_seq:
            self.state.applied_file_seq = seq

    def _ingest_loop(self) -> None:
        """Apply queued requests in order. With worker processes, up to 2 x workers requests are
        being prepared at once; their results are still applied strictly in queue order."""
        pending: collections.deque = collections.deque()  # (future, item)
        max_inflight = max(1, 2 * self.workers)

        def finish_oldest() -> None:
            fut, item = pending.popleft()
            self._finish(fut, item)

        for item in self._replay:
            self._dispatch(item, pending, finish_oldest)
            while len(pending) >= max_inflight:
                finish_oldest()
        self._replay = []
        while pending:
            finish_oldest()
        self.ready = True
        while True:
            while pending and pending[0][0].done():
                finish_oldest()
            if len(pending) >= max_inflight:
                finish_oldest()
                continue
            try:
                item = self.queue.get(timeout=0.002 if pending else 0.05)
            except queue.Empty:
                if pending:
                    finish_oldest()
                elif self._stopping.is_set():
                    break
                continue
            if item is None:
                continue
            self._dispatch(item, pending, finish_oldest)

    def _dispatch(self, item: tuple, pending: collections.deque, finish_oldest: Callable[[], None]) -> None:
        seq, signal, payload, raw = item
        if self.pool is not None and signal in ("traces", "logs") and raw is not None and payload is not None:
            try:
                pending.append((self.pool.submit(signal, *raw), item))
                return
            except Exception:  # a broken pool: prepare here, and get a new pool
                log.exception("worker pool unavailable; preparing on the ingest thread")
                self._restart_pool()
        while pending:  # everything before this item is applied first
            finish_oldest()
        self._safe_apply(seq, signal, payload)

    def _finish(self, fut: Any, item: tuple) -> None:
        seq, signal, payload, _ = item
        try:
            prepared = fut.result()
        except Exception:
            log.exception("a worker failed on batch %s; preparing it on the ingest thread", seq)
            self._restart_pool()
            self._safe_apply(seq, signal, payload)
            return
        self._pool_failures = 0
        if self.ingestor.links.needs_local(prepared):  # an outer span of an earlier batch's call
            self._safe_apply(seq, signal, payload)
            return
        try:
            with self.state.lock:
                self.ingestor.apply(prepared)
                self._mark_applied(seq, signal)
        except Exception:
            log.exception("batch %s (%s) failed to apply", seq, signal)
            with self.state.lock:
                self._mark_applied(seq, signal)

    def _restart_pool(self) -> None:
        """A new pool after a failure; after 3 failures in a row, stay on the ingest thread."""
        if self.pool is None:
            return
        self._pool_failures += 1
        if self._pool_failures >= 3:
            log.error("ingest worker processes failed %d times in a row; preparing spans on the ingest "
                      "thread from now on (is the main module importable by spawned processes?)",
                      self._pool_failures)
            pool, self.pool = self.pool, None
            threading.Thread(target=pool.shutdown, daemon=True).start()
            return
        try:
            self.pool.restart()
        except Exception:
            log.exception("could not restart the worker pool; continuing on the ingest thread")
            self.pool = None

    def _safe_apply(self, seq: int, signal: str, payload: Any) -> None:
        try:
            self._apply(seq, signal, payload)
        except Exception:
            log.exception("batch %s (%s) failed to apply", seq, signal)
            with self.state.lock:
                self._mark_applied(seq, signal)

    def flush(self) -> bool:
        now = self.clock()
        st = self.config["state"]
        try:
            self.state.prune(now, st["span_index_retention_seconds"])
            with self.state.lock:
                self.state.inc("llm_eval_state_flush_total", ("ok",))
            if not self.plugins:
                # store.flush copies under state.lock and writes without it (ingest goes on)
                journaled = self.store.flush(self.state, (), now=now,
                                             dedup_retention=st["dedup_retention_seconds"],
                                             take_evaluations=self.take_plugin_evaluations)
                for seq, record in journaled:
                    self._safe_apply(seq, "evaluation", record)
                return True
            with self.state.lock:  # RLock: store.flush takes it too
                journaled = self.store.flush(self.state, self.plugins, now=now,
                                             dedup_retention=st["dedup_retention_seconds"],
                                             take_evaluations=self.take_plugin_evaluations)
                # committed: count them now, before anyone can read the plugin's new state
                for seq, record in journaled:
                    self._safe_apply(seq, "evaluation", record)
            return True
        except Exception:
            self.flush_errors += 1
            with self.state.lock:
                self.state.inc("llm_eval_state_flush_total", ("error",))
            if self.flush_errors <= 5:
                log.exception("state flush failed (will retry)")
            return False

    def _flush_loop(self) -> None:
        interval = float(self.config["state"]["flush_interval_seconds"])
        while not self._stopping.wait(interval):
            self.flush()

    def _analysis_loop(self) -> None:
        interval = float(self.config["analysis"]["interval_seconds"])
        while not self._stopping.wait(interval):
            self.tick()

    def tick(self) -> None:
        """Run every plugin's tick once (the analysis thread calls this periodically)."""
        start = time.perf_counter()
        now = self.clock()
        with self.state.lock:  # calls whose text never arrived as a log record
            self.ingestor.settle_text()
        for p in self.plugins:
            try:
                p.tick(now)
            except Exception:
                log.exception("plugin %s failed in tick", p.name)
        self.analysis_duration_seconds = time.perf_counter() - start

    # --- reading ---
    def spans_ingested(self) -> int:
        """llm_eval_ingest_spans_total{signal="traces"} (a dict read: no lock needed)."""
        return int(self.state.counters.get(("llm_eval_ingest_spans_total", ("traces",)), 0))

    def queue_depth(self) -> int:
        return self.queue.qsize()

    def rejected_snapshot(self) -> dict[str, int]:
        with self._lock:
            out = dict(self._rejected)
        for kind, n in list(self.connection_stats.items()):
            out[f"connection_{kind}"] = n
        return out

