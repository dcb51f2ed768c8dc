"""Worker processes for the per-span work: decode, walk, normalize, checks, cost (`ingest.workers`).

With `ingest.workers: N` (N >= 1) the ingest thread hands each OTLP request body to one of N
spawned processes, which returns the prepared batch (prepare.Preparer: batch sums, evaluation
operations, plugin summaries); the ingest thread applies them in request order, so state, journal
bookkeeping and plugins behave exactly as with `ingest.workers: 0` (everything on the ingest
thread). It pays off on machines with cores to spare: Python runs one thread at a time per
process, and walking, normalizing and checking spans is most of the sidecar's CPU. Plugins'
CallSummarizers run here too (built from their class and config section).

Contract: `WorkerPool.submit` never blocks for long; `Future.result()` raises when a worker died
(the caller then prepares on its own thread and calls `restart()`). User check functions
(`checks.custom`) must be importable by module path in the workers, and so must the main module
(spawned workers import it: guard scripts with `if __name__ == "__main__"`). Plugins without a
summarizer get `CallRecord.attributes` without string values over 256 characters (the prompt and
completion are in `record.call`); summarizers see every attribute.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Mapping

from .checks import CheckRunner, build_checks
from .prepare import Preparer
from .edge import EdgeLimits
from .otlp import decode_logs, decode_traces
from .prices import PriceTable

log = logging.getLogger(__name__)

_PREPARER: Preparer | None = None
_LIMITS: tuple[int, int] = (0, 0)


def _init(checks_cfg: Mapping[str, Any], prices_cfg: Mapping[str, Any], default_service: str,
          max_request_bytes: int, max_span_bytes: int, attributes: str,
          summarizers: list[tuple[str, type, Any]] = (), limits: Mapping[str, Any] | None = None) -> None:
    global _PREPARER, _LIMITS
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    _watch_parent(os.getppid())
    _PREPARER = Preparer(CheckRunner(build_checks(checks_cfg)), PriceTable.from_config(prices_cfg),
                         default_service, attributes,
                         summarizers=[(name, cls(section)) for name, cls, section in summarizers],
                         limits=EdgeLimits.from_config(limits))
    _LIMITS = (max_request_bytes, max_span_bytes)
    import gc  # fewer young-generation collections, as in the sidecar process (sidecar/cli.py tune_gc)

    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


def _watch_parent(parent: int) -> None:
    """Exit when the sidecar is gone (kill -9 leaves workers blocked on their queue otherwise)."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _ping() -> int:
    return os.getpid()


def _prepare(signal_name: str, body: bytes, content_type: str, encoding: str, clean: bool = False) -> tuple:
    assert _PREPARER is not None
    decode = decode_traces if signal_name == "traces" else decode_logs
    msg = decode(body, content_type, encoding, max_request_bytes=_LIMITS[0], max_span_bytes=_LIMITS[1],
                 validated=clean).message
    if signal_name == "traces":
        return _PREPARER.prepare_traces(msg)
    return _PREPARER.prepare_logs(msg)


class WorkerPool:
    def __init__(self, workers: int, cfg: Mapping[str, Any], *, plugins: bool = True,
                 summarizers: list[tuple[str, type, Any]] = ()):
        """plugins: whether a plugin takes CallRecords one by one (else workers send back only
        batch sums); summarizers: (plugin name, CallSummarizer class, config section) to run."""
        self.workers = workers
        self._initargs = (dict(cfg["checks"]), dict(cfg["prices"]), str(cfg["labels"]["default_service"]),
                          int(cfg["ingest"]["max_request_bytes"]), int(cfg["ingest"]["max_span_bytes"]),
                          "short" if plugins else "none", list(summarizers),
                          dict(cfg["ingest"].get("limits") or {}))
        self.restarts = 0
        self._executor = self._new()

    def _new(self) -> ProcessPoolExecutor:
        # spawn, not fork: the sidecar has threads (HTTP, state, analysis) that fork would copy mid-flight
        ex = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init, initargs=self._initargs)
        # start them now, not under the first burst of traffic; /readyz waits for their answers
        self._pings = [ex.submit(_ping) for _ in range(self.workers)]
        return ex

    def started(self) -> bool:
        """The workers answered their first ping: initialized and taking batches (any thread)."""
        return all(f.done() for f in self._pings)

    def submit(self, signal_name: str, body: bytes, content_type: str, encoding: str,
               clean: bool = False) -> Future:
        """clean: the HTTP handler's decode rejected no item (the worker skips the item checks)."""
        return self._executor.submit(_prepare, signal_name, body, content_type, encoding, clean)

    def restart(self) -> None:
        self.restarts += 1
        old, self._executor = self._executor, self._new()
        old.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
