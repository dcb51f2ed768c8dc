"""Self-metrics of the in-app processor behind a small protocol, plus error bookkeeping.

The default sink is a no-op: the in-app path never imports prometheus_client. Apps that want the
numbers in their own metrics system pass an object implementing `ProcessorMetrics` (every method
is called on the thread that observed the event and must not block or raise; exceptions from a
sink are swallowed and counted as `processor_error("metrics_sink")`).
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol, runtime_checkable

_log = logging.getLogger("otel_llm_eval.processor")


@runtime_checkable
class ProcessorMetrics(Protocol):
    """Where the processor reports what it did. All methods: non-blocking, must not raise."""

    def judge_sampled(self, evaluator: str) -> None: ...
    def judge_error(self, evaluator: str, error_type: str) -> None: ...
    def judge_dropped(self, evaluator: str, reason: str) -> None: ...  # queue_full | shutdown
    def judge_skipped(self, evaluator: str, reason: str) -> None: ...  # rate | cost | no_text
    def judge_cost(self, evaluator: str, usd: float) -> None: ...
    def processor_error(self, kind: str) -> None: ...


class NoopMetrics:
    """The default sink: records nothing."""

    def judge_sampled(self, evaluator: str) -> None:
        pass

    def judge_error(self, evaluator: str, error_type: str) -> None:
        pass

    def judge_dropped(self, evaluator: str, reason: str) -> None:
        pass

    def judge_skipped(self, evaluator: str, reason: str) -> None:
        pass

    def judge_cost(self, evaluator: str, usd: float) -> None:
        pass

    def processor_error(self, kind: str) -> None:
        pass


class CountingMetrics:
    """A thread-safe in-memory sink: `counts[(event, label)]` and `cost_usd` (tests, debugging)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[tuple[str, str], int] = {}
        self.cost_usd = 0.0

    def _inc(self, event: str, label: str) -> None:
        with self._lock:
            self.counts[(event, label)] = self.counts.get((event, label), 0) + 1

    def judge_sampled(self, evaluator: str) -> None:
        self._inc("sampled", evaluator)

    def judge_error(self, evaluator: str, error_type: str) -> None:
        self._inc("error", error_type)

    def judge_dropped(self, evaluator: str, reason: str) -> None:
        self._inc("dropped", reason)

    def judge_skipped(self, evaluator: str, reason: str) -> None:
        self._inc("skipped", reason)

    def judge_cost(self, evaluator: str, usd: float) -> None:
        with self._lock:
            self.cost_usd += usd

    def processor_error(self, kind: str) -> None:
        self._inc("processor_error", kind)

    def get(self, event: str, label: str) -> int:
        with self._lock:
            return self.counts.get((event, label), 0)


class ErrorLog:
    """Counts internal errors per kind and logs each kind once (a hot hook must not flood logs)."""

    def __init__(self, metrics: ProcessorMetrics) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def record(self, kind: str, exc: BaseException | None = None) -> None:
        try:
            with self._lock:
                first = kind not in self.counts
                self.counts[kind] = self.counts.get(kind, 0) + 1
            if first:
                _log.warning("otel-llm-eval processor error (%s), further ones are only counted: %r", kind, exc)
            self._metrics.processor_error(kind)
        except Exception:  # the error path itself must never raise into the app
            pass
