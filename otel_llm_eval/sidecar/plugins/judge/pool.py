"""A bounded pool of judge worker threads, off the ingest path.

`submit(job)` never blocks: it puts the job on a bounded queue and answers False when the queue
is full (the caller drops and counts). Each of `workers` daemon threads takes jobs and calls
`run(job)`; an exception in `run` is logged and counted, never kills the worker. `close()` stops
the threads: jobs still queued are handed to `on_discard` (the caller counts them), a judgement in
progress finishes or is abandoned after `timeout` (threads are daemons).
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable

log = logging.getLogger(__name__)


class JudgePool:
    def __init__(self, workers: int, queue_max: int, run: Callable[[Any], None],
                 on_discard: Callable[[Any], None] | None = None, name: str = "sidecar-judge") -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(queue_max)))
        self._run = run
        self._on_discard = on_discard
        self._stop = threading.Event()
        self._busy = 0
        self._lock = threading.Lock()
        self.errors = 0
        self._threads = [threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True)
                         for i in range(max(1, int(workers)))]
        for t in self._threads:
            t.start()

    @property
    def stop_event(self) -> threading.Event:
        """Set when the pool closes (judges wait on it for their backoff, so close is prompt)."""
        return self._stop

    def submit(self, job: Any) -> bool:
        """Queue a job; False when the queue is full or the pool is closed. Never blocks."""
        if self._stop.is_set():
            return False
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            return False
        return True

    def depth(self) -> int:
        return self._queue.qsize()

    def idle(self) -> bool:
        """No job queued and none running."""
        with self._lock:
            return self._busy == 0 and self._queue.empty()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                job = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            with self._lock:
                self._busy += 1
            try:
                if self._stop.is_set():
                    self._discard(job)
                else:
                    self._run(job)
            except Exception:
                self.errors += 1
                if self.errors <= 5:
                    log.exception("judge job failed (counted; the worker goes on)")
            finally:
                with self._lock:
                    self._busy -= 1

    def _discard(self, job: Any) -> None:
        if self._on_discard is not None:
            try:
                self._on_discard(job)
            except Exception:
                log.debug("on_discard failed", exc_info=True)

    def close(self, timeout: float = 2.0) -> None:
        """Stop the workers; queued jobs go to `on_discard`. Idempotent."""
        self._stop.set()
        while True:
            try:
                self._discard(self._queue.get_nowait())
            except queue.Empty:
                break
        for t in self._threads:
            t.join(timeout / max(1, len(self._threads)))
