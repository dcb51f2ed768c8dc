"""Benchmark records: one score per (date, benchmark, model), validated.

`make_record` validates (ValueError with the reason); `latest` keeps the most recent record per
(benchmark, model). Used by `otel_llm_eval.offline.bench` (history in SQLite) and by the sidecar's
offline plugin (`POST /v1/benchmarks`, `llm_benchmark_score`). Pure, standard library only.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from datetime import date as date_cls
from typing import Iterable

MAX_NAME_CHARS = 200


@dataclass(frozen=True)
class Record:
    date: str
    benchmark: str
    model: str
    score: float
    latency_seconds: float | None = None
    cost_usd: float | None = None
    recorded_unix: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def _name(kind: str, v: object) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"{kind} must be a non-empty string")
    if len(v) > MAX_NAME_CHARS:
        raise ValueError(f"{kind} is longer than {MAX_NAME_CHARS} characters")
    return v.strip()


def _number(kind: str, v: object, *, optional: bool, nonneg: bool) -> float | None:
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{kind} must be a finite number, got {v!r}")
    if nonneg and v < 0:
        raise ValueError(f"{kind} must be >= 0, got {v!r}")
    return float(v)


def _date(v: object) -> str:
    if v is None:
        return date_cls.today().isoformat()
    if not isinstance(v, str):
        raise ValueError("date must be YYYY-MM-DD")
    try:
        return date_cls.fromisoformat(v).isoformat()
    except ValueError:
        raise ValueError(f"date must be YYYY-MM-DD, got {v!r}") from None


def make_record(*, benchmark: object, model: object, score: object, latency_seconds: object = None,
                cost_usd: object = None, date: object = None, recorded_unix: float | None = None) -> Record:
    """A validated record (ValueError with the reason otherwise)."""
    return Record(_date(date), _name("benchmark", benchmark), _name("model", model),
                  _number("score", score, optional=False, nonneg=False),  # type: ignore[arg-type]
                  _number("latency", latency_seconds, optional=True, nonneg=True),
                  _number("cost", cost_usd, optional=True, nonneg=True),
                  time.time() if recorded_unix is None else recorded_unix)


def latest(records: Iterable[Record]) -> dict[tuple[str, str], Record]:
    """Most recent record per (benchmark, model): by date, then by when it was recorded."""
    out: dict[tuple[str, str], Record] = {}
    for r in records:
        key = (r.benchmark, r.model)
        cur = out.get(key)
        if cur is None or (r.date, r.recorded_unix) > (cur.date, cur.recorded_unix):
            out[key] = r
    return out
