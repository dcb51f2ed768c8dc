"""Background judge work: a bounded queue drained by one daemon thread, and judge calls with a timeout.

`JudgeWorker.submit` never blocks (full -> False, the caller counts the drop). `flush`/`close`
wait at most their deadline. With `wake_on_submit=False` the app thread never wakes the worker:
the worker drains the queue on its tick (and on `flush`/`close`, or early when the queue is half
full), so the thread switches that judge work costs the app do not grow with the judged traffic. The thread starts on first use and again after `fork()` in the child.
`call_with_timeout` runs a judge on a separate runner thread so a hanging judge only costs that
thread: after the timeout the runner is abandoned (it exits when the judge eventually returns)
and a new one is created; at most `max_hung` runners may be abandoned at once, after which calls
fail fast with "judge_hung" instead of creating threads without bound.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import Any, Callable

from opentelemetry import context as _context

try:  # the key instrumentations check; present in every opentelemetry-api we support
    from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
except ImportError:  # pragma: no cover
    _SUPPRESS_INSTRUMENTATION_KEY = _context.create_key("suppress_instrumentation")

_judge_threads: set[int] = set()  # idents of runner threads (their spans are never judged)


def in_judge_thread() -> bool:
    return threading.get_ident() in _judge_threads


class JudgeWorker:
    """One consumer thread calling `process(item)` for each submitted item.

    `on_tick()` runs on the worker thread after each item and at least every `tick_seconds`
    while idle (the processor emits rate-limited stats there). `process`/`on_tick` exceptions are
    passed to `on_error(kind, exc)`. `wake_on_submit=False`: items wait for the next tick (at most
    `tick_seconds`) unless `flush`/`close` is called or the queue is half full.
    """

    def __init__(self, process: Callable[[Any], None], *, max_queue_size: int = 1000,
                 on_tick: Callable[[], None] | None = None, tick_seconds: float = 1.0,
                 on_error: Callable[[str, BaseException], None] | None = None,
                 name: str = "otel-llm-eval-judge", wake_on_submit: bool = True) -> None:
        if max_queue_size < 1:
            raise ValueError(f"max_queue_size must be >= 1, got {max_queue_size}")
        self._wake_on_submit = bool(wake_on_submit)
        self._process = process
        self._on_tick = on_tick
        self._on_error = on_error or (lambda kind, exc: None)
        self._tick = tick_seconds
        self._max = max_queue_size
        self._name = name
        self._reset()

    def _reset(self) -> None:
        self._cv = threading.Condition(threading.Lock())
        self._items: deque[Any] = deque()
        self._pending = 0  # queued + in flight
        self._closed = False
        self._idle = False  # the worker waits for work (a submit may notify it)
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def after_fork_in_child(self) -> None:
        """The parent's thread does not exist in the child: start over (queued work stays with the parent)."""
        closed = self._closed
        self._reset()
        self._closed = closed

    @property
    def closed(self) -> bool:
        return self._closed

    def qsize(self) -> int:
        return len(self._items)

    def _ensure_thread(self) -> None:
        if self._thread is None or self._pid != os.getpid():
            if self._pid != os.getpid():
                self.after_fork_in_child()
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def ensure_started(self) -> None:
        with self._cv:
            if not self._closed:
                self._ensure_thread()

    def submit(self, item: Any) -> bool:
        """Queue `item`; False when the queue is full or the worker is closed. Never blocks long."""
        with self._cv:
            if self._closed or len(self._items) >= self._max:
                return False
            self._ensure_thread()
            self._items.append(item)
            self._pending += 1
            # Only a sleeping worker needs a wake-up; without wake_on_submit only when the queue is
            # half full (so a burst is not dropped while the worker waits for its tick).
            if self._idle and (self._wake_on_submit or 2 * len(self._items) >= self._max):
                self._idle = False
                self._cv.notify_all()  # flush() waiters share the condition: notify() could miss the worker
            return True

    def _run(self) -> None:
        cv = self._cv
        last_tick = time.monotonic()
        while True:
            with cv:
                while not self._items and not self._closed:
                    self._idle = True
                    cv.wait(self._tick)  # woken by submit (see above), flush, close, or the tick
                    self._idle = False
                    if time.monotonic() - last_tick >= self._tick:
                        break
                item = self._items.popleft() if self._items else None
                stop = self._closed and item is None
            if item is not None:
                try:
                    self._process(item)
                except BaseException as exc:  # noqa: BLE001 - the worker must survive anything
                    self._on_error("judge_worker", exc)
                finally:
                    with cv:
                        self._pending -= 1
                        cv.notify_all()
            if self._on_tick is not None:
                try:
                    self._on_tick()
                except BaseException as exc:  # noqa: BLE001
                    self._on_error("judge_tick", exc)
            last_tick = time.monotonic()
            if stop:
                return

    def flush(self, timeout_seconds: float) -> bool:
        """Wait until every submitted item was processed; False when the deadline passed first."""
        deadline = time.monotonic() + max(0.0, timeout_seconds)
        with self._cv:
            if self._thread is None or self._pid != os.getpid():
                return self._pending == 0
            self._cv.notify_all()  # a worker waiting for its tick drains now
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
            return True

    def close(self, timeout_seconds: float) -> int:
        """Drain within the deadline, then stop; returns how many queued items were dropped."""
        self.flush(timeout_seconds)
        with self._cv:
            self._closed = True
            dropped = len(self._items)
            self._items.clear()
            self._pending -= dropped
            self._cv.notify_all()
        return dropped


class _Runner:
    def __init__(self, registry: "JudgeCaller") -> None:
        self._registry = registry
        self._cv = threading.Condition(threading.Lock())
        self._job: tuple[Callable[[Any], Any], Any] | None = None
        self._result: tuple[bool, Any] | None = None
        self.abandoned = False
        self._thread = threading.Thread(target=self._run, name="otel-llm-eval-judge-call", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        _judge_threads.add(threading.get_ident())
        # Judges' own HTTP/LLM calls must not show up as app traffic.
        _context.attach(_context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            while True:
                with self._cv:
                    while self._job is None and not self.abandoned:
                        self._cv.wait()
                    if self._job is None:
                        return
                    fn, arg = self._job
                try:
                    result: tuple[bool, Any] = (True, fn(arg))
                except BaseException as exc:  # noqa: BLE001 - reported to the caller
                    result = (False, exc)
                with self._cv:
                    self._job = None
                    if self.abandoned:
                        self._registry._hung_done()
                        return
                    self._result = result
                    self._cv.notify_all()
        finally:
            _judge_threads.discard(threading.get_ident())

    def call(self, fn: Callable[[Any], Any], arg: Any, timeout: float) -> tuple[bool, Any] | None:
        """(ok, value-or-exception), or None on timeout (the runner is then abandoned)."""
        with self._cv:
            self._result = None
            self._job = (fn, arg)
            self._cv.notify_all()
            deadline = time.monotonic() + timeout
            while self._result is None:
                if self.abandoned:  # stopped by close(): give up now instead of at the deadline
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    self._registry._hung_add()  # under our lock: counted before the runner can finish
                    self.abandoned = True
                    return None
                self._cv.wait(left)
            return self._result

    def stop(self) -> None:
        with self._cv:
            self.abandoned = True
            self._cv.notify_all()


class JudgeCallTimeout(Exception):
    pass


class JudgeHung(Exception):
    pass


class JudgeCaller:
    """Calls judges with a timeout on a reusable runner thread. Used from one worker thread."""

    def __init__(self, max_hung: int = 4) -> None:
        self._max_hung = max_hung
        self._lock = threading.Lock()
        self._hung = 0
        self._runner: _Runner | None = None
        self._pid = os.getpid()

    def _hung_add(self) -> None:
        with self._lock:
            self._hung += 1

    def _hung_done(self) -> None:
        with self._lock:
            self._hung = max(0, self._hung - 1)

    @property
    def hung(self) -> int:
        return self._hung

    def call(self, fn: Callable[[Any], Any], arg: Any, timeout_seconds: float) -> Any:
        """fn(arg) or raise: the judge's exception, JudgeCallTimeout, or JudgeHung."""
        if self._pid != os.getpid():
            self._pid, self._runner, self._hung = os.getpid(), None, 0
        if self._runner is None:
            with self._lock:
                if self._hung >= self._max_hung:
                    raise JudgeHung(f"{self._hung} judge calls still hanging")
            self._runner = _Runner(self)
        outcome = self._runner.call(fn, arg, timeout_seconds)
        if outcome is None:
            self._runner = None
            raise JudgeCallTimeout(f"judge did not answer within {timeout_seconds:g} s")
        ok, value = outcome
        if ok:
            return value
        raise value

    def close(self) -> None:
        if self._runner is not None:
            self._runner.stop()
            self._runner = None
