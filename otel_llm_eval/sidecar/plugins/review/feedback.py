"""Labels fed back as `human` evaluations of the reviewed call (A/B sees human_quality per variant).

`label_evaluation` builds the record (pure). `EvaluationFeedback` hands records to the sidecar
core: one the core refuses (ingest queue full) waits in a bounded buffer and is retried on the
plugin's next tick; past `MAX_UNSENT_EVALUATIONS` the oldest is dropped and counted.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable, Mapping

from ....semconv import ExperimentAssignment
from .. import EvaluationRecord

log = logging.getLogger(__name__)

MAX_UNSENT_EVALUATIONS = 10_000


def label_evaluation(item: Mapping[str, Any], quality: int, comment: str | None, now: float, *,
                     name: str, pass_quality: int) -> EvaluationRecord:
    """The `human` evaluation record of a labeled review item."""
    experiments = tuple(ExperimentAssignment(id=str(e[0]), variant=str(e[1]))
                        for e in item.get("experiments") or [] if len(e) == 2)
    return EvaluationRecord(
        name=name, source="human", trace_id=item.get("trace_id"), span_id=item.get("span_id"),
        time_unix_nano=int(now * 1e9), score=float(quality),
        label="pass" if quality >= pass_quality else "fail",
        explanation=comment, service=item.get("service"), model=item.get("model"),
        experiments=experiments,
        attributes={"llm_eval.review.issues": list(item.get("issues") or []),
                    "llm_eval.review.item_id": item.get("id")},
    )


class EvaluationFeedback:
    """The unsent buffer and the hand-over to the core.

    `lock` and `dropped` are the plugin's: the buffer is guarded by the plugin's lock, and a
    dropped record is counted in the plugin's `dropped["evaluations"]` (persisted and shown on
    GET /v1/review/summary with the other drop counters). `ctx` returns the plugin's context at
    call time (None before attach). Never call `send` under `lock` or from inside the core's
    flush transaction: handing a record to the core's journal there could deadlock.
    """

    def __init__(self, ctx: Callable[[], Any], lock: threading.Lock, dropped: dict[str, int],
                 max_unsent: int = MAX_UNSENT_EVALUATIONS) -> None:
        self._ctx = ctx
        self._lock = lock
        self._dropped = dropped
        self.max_unsent = max_unsent
        self.unsent: list[EvaluationRecord] = []  # human evaluations not yet accepted

    def emit(self, rec: EvaluationRecord) -> None:
        """Buffer `rec` (dropping the oldest past the bound), then try to send the buffer."""
        with self._lock:
            self.unsent.append(rec)
            while len(self.unsent) > self.max_unsent:
                self.unsent.pop(0)
                self._dropped["evaluations"] = self._dropped.get("evaluations", 0) + 1
        self.send()

    def send(self) -> None:
        """Hand the buffered records to the core in order; stop at the first one it refuses."""
        with self._lock:
            pending, self.unsent = self.unsent, []
        for i, rec in enumerate(pending):
            try:
                sent = self.submit(rec)
            except Exception:
                log.debug("review: evaluation record not accepted yet; retried at next flush",
                          exc_info=True)
                sent = False
            if not sent:
                with self._lock:
                    self.unsent[:0] = pending[i:]
                return

    def submit(self, rec: EvaluationRecord) -> bool:
        """Hand one record to the core. True when accepted (or when there is no core to take it).

        Prefers a public `ctx.submit_evaluation(record)`; otherwise uses the core's journaled
        feedback path (what POST /v1/feedback does), so a label is counted exactly once.
        """
        ctx = self._ctx()
        if ctx is None:
            return True
        hook = getattr(ctx, "submit_evaluation", None)
        if callable(hook):
            hook(rec)
            return True
        core = getattr(ctx, "_sidecar", None)
        submit = getattr(core, "submit", None)
        if not callable(submit):
            return True  # no evaluation path in this host: labels still land in the store
        payload: dict[str, Any] = {"trace_id": rec.trace_id, "name": rec.name, "source": rec.source,
                                   "value": rec.score, "label": rec.label}
        if rec.span_id:
            payload["span_id"] = rec.span_id
        if rec.explanation:
            payload["comment"] = rec.explanation
        body = json.dumps({**payload, "review_item": rec.attributes.get("llm_eval.review.item_id")},
                          sort_keys=True).encode()
        payload["time_unix_nano"] = rec.time_unix_nano
        submit("feedback", payload, body, "application/json", "")
        return True


__all__ = ["EvaluationFeedback", "MAX_UNSENT_EVALUATIONS", "label_evaluation"]
