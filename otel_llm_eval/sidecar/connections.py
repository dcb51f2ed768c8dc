"""Bounded HTTP connections: a cap, a deadline for each request, a rate-limited EMFILE log line.

uvicorn keeps a connection open for as long as the client likes until its first request is
complete: 1,100 idle sockets under the common `nofile=1024` limit starve `/healthz` and make the
accept loop log "Too many open files" hundreds of thousands of times. `protocol_class(...)` returns
uvicorn's HTTP protocol (httptools when installed, else h11) with three additions:

- at most `max_connections` open connections: a new one beyond it first evicts the oldest
  connection that has no request being processed (idle, or half-sent), and is closed itself
  when every connection is busy; both are counted (`stats["evicted"]`, `stats["refused"]`);
- every request must arrive whole within `request_timeout_seconds` of the connection opening
  (or of the previous response): idle and half-sent connections are closed and counted
  (`stats["timed_out"]`); a request the app is working on is never cut;
- `install_log_limits()` lets the "out of system resource" / "Too many open files" records of the
  accept loop through at most once per 10 s, with the number suppressed in between.
"""

from __future__ import annotations

import logging
import time
from typing import Any

_LOG_EVERY_SECONDS = 10.0


def _base() -> type:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        return HttpToolsProtocol
    except ImportError:  # httptools is optional
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol


def protocol_class(max_connections: int, request_timeout_seconds: float, stats: dict[str, int]) -> type:
    """A uvicorn HTTP protocol class enforcing the limits above (pass it as `uvicorn.Config(http=...)`)."""
    base = _base()

    class GuardedProtocol(base):  # type: ignore[misc, valid-type]
        _deadline: Any = None
        _opened: float = 0.0

        def connection_made(self, transport: Any) -> None:
            self._opened = time.monotonic()
            if len(self.connections) >= max_connections and not self._evict_one():
                stats["refused"] = stats.get("refused", 0) + 1
                transport.close()
                return
            super().connection_made(transport)
            self._arm()

        def _busy(self) -> bool:
            """A whole request arrived and the app has not answered yet."""
            cycle = getattr(self, "cycle", None)
            return cycle is not None and not cycle.more_body and not cycle.response_complete

        def _evict_one(self) -> bool:
            idle = [c for c in self.connections if isinstance(c, GuardedProtocol) and not c._busy()
                    and c.transport is not None and not c.transport.is_closing()]
            if not idle:
                return False
            oldest = min(idle, key=lambda c: c._opened)
            stats["evicted"] = stats.get("evicted", 0) + 1
            oldest.transport.close()
            self.connections.discard(oldest)
            return True

        def _arm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(request_timeout_seconds, self._expire)

        def _expire(self) -> None:
            self._deadline = None
            if self.transport is None or self.transport.is_closing():
                return
            if self._busy():
                self._arm()  # the app is working on it: look again later
                return
            cycle = getattr(self, "cycle", None)
            if cycle is not None and cycle.response_complete and self.timeout_keep_alive_task is not None:
                return  # between requests: uvicorn's keep-alive timeout owns this connection
            stats["timed_out"] = stats.get("timed_out", 0) + 1
            self.transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.transport is not None and not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            if self.transport is None:  # refused in connection_made: nothing was set up
                return
            super().connection_lost(exc)

    return GuardedProtocol


class _RateLimit(logging.Filter):
    """Lets a matching record through once per interval; counts what it held back."""

    MARKERS = ("Too many open files", "out of system resource", "Errno 24")

    def __init__(self) -> None:
        super().__init__()
        self.last = 0.0
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += " " + str(record.exc_info[1])
        if not any(m in text for m in self.MARKERS):
            return True
        now = time.monotonic()
        if now - self.last < _LOG_EVERY_SECONDS:
            self.suppressed += 1
            return False
        self.last = now
        if self.suppressed:
            record.msg = f"{record.msg} ({self.suppressed} more like this in the last {_LOG_EVERY_SECONDS:g}s)"
            self.suppressed = 0
        record.exc_info = None  # one line, not a traceback per accept
        record.msg = (f"{record.msg} -- the process is out of file descriptors: raise `ulimit -n` or lower "
                      "server.max_connections")
        return True


_FILTER = _RateLimit()


def install_log_limits() -> None:
    """Rate-limit the accept loop's EMFILE records on the loggers that write them (idempotent)."""
    for name in ("asyncio", "uvicorn.error", "uvicorn"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
