"""Engagement per experiment variant: messages per session and session length, as ratio metrics per
unit (a user's sessions together), from the sessions the experiments plugin keeps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ....stats.ratio import RatioSummary
from .. import CallRecord, CallSummarizer
from .analyze import ENGAGEMENT_METRICS


@dataclass
class Session:
    """One session within one experiment variant: its unit (user id, else the session), the LLM
    calls (messages) and first/last call times."""

    experiment: str
    variant: str
    unit: str
    messages: int
    first_unix: float
    last_unix: float


def session_of(record: CallRecord) -> tuple[str, str] | None:
    """(session id, unit) of a call in a session: the unit is the user, else the session itself."""
    call = record.call
    if not call.session_id:
        return None
    return str(call.session_id), call.user_id or f"session:{call.session_id}"


class SessionSummarizer(CallSummarizer):
    """The per-call half of the experiments plugin, per batch: (experiment, session) -> [variant,
    unit, messages, first, last] for calls in a session; calls without an end time passed on whole."""

    def __init__(self, config: Mapping[str, Any]):
        super().__init__(config)
        self._reset()

    def _reset(self) -> None:
        self.sessions: dict[tuple, list] = {}
        self.untimed: list[CallRecord] = []

    def add(self, record: CallRecord) -> None:
        if not record.experiments or not record.call.session_id:
            return
        if not record.end_time_unix_nano:
            self.untimed.append(record)
            return
        session, unit = session_of(record)  # type: ignore[misc]
        t = record.end_time_unix_nano / 1e9
        for exp in record.experiments:
            key = (exp.id, session)
            got = self.sessions.get(key)
            if got is None:
                self.sessions[key] = [exp.variant, unit, 1, t, t]
            else:
                got[2] += 1
                if t < got[3]:
                    got[3] = t
                if t > got[4]:
                    got[4] = t

    def result(self) -> Any:
        if not (self.sessions or self.untimed):
            return None
        out = (self.sessions, self.untimed)
        self._reset()
        return out


def engagement_summaries(sessions: Iterable[Session]) -> dict[str, dict[str, dict[str, RatioSummary]]]:
    """{experiment: {metric: {variant: RatioSummary}}} over units: each unit's messages (or session
    seconds) over its sessions, so a user with many sessions is one observation."""
    units: dict[tuple[str, str, str], list[float]] = {}
    for s in sessions:
        u = units.get((s.experiment, s.variant, s.unit))
        if u is None:
            u = units[(s.experiment, s.variant, s.unit)] = [0.0, 0.0, 0.0]
        u[0] += s.messages
        u[1] += s.last_unix - s.first_unix
        u[2] += 1
    acc: dict[tuple[str, str], list[float]] = {}
    for (exp, variant, _), (msgs, length, n_sessions) in units.items():
        a = acc.get((exp, variant))
        if a is None:
            a = acc[(exp, variant)] = [0] * 9
        a[0] += 1
        a[1] += msgs
        a[2] += length
        a[3] += n_sessions
        a[4] += msgs * msgs
        a[5] += length * length
        a[6] += n_sessions * n_sessions
        a[7] += msgs * n_sessions
        a[8] += length * n_sessions
    out: dict[str, dict[str, dict[str, RatioSummary]]] = {}
    for (exp, variant), a in acc.items():
        e = out.setdefault(exp, {m: {} for m in ENGAGEMENT_METRICS})
        e["messages_per_session"][variant] = RatioSummary(int(a[0]), a[1], a[3], a[4], a[6], a[7])
        e["session_length_seconds"][variant] = RatioSummary(int(a[0]), a[2], a[3], a[5], a[6], a[8])
    return out
