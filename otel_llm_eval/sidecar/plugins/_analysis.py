"""What the statistics plugins (experiments, bandits, interleaving, drift, anomalies) share: the
`analysis` config section, the guards every ingest hook needs and the names of judge and feedback
evaluations. Not a plugin; no plugin imports another.

They share one config section, `analysis`, because that is where users' configs already keep
these keys (`analysis.alpha`, `analysis.drift.*`, `analysis.bandits.*` ...): each plugin owns its
sub-keys (its CONFIG_DEFAULTS), the core owns `interval_seconds` and `alpha` (config.DEFAULTS).
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Any, Callable, Iterable, Mapping

from ... import semconv
from ..config import DEFAULTS as CORE_DEFAULTS
from ..feedback_kinds import number
from . import EvaluationRecord, SidecarPlugin

SECTION = "analysis"

#: The always-valid tests' running state (running minimum p, interval, level, restarts), one row per
#: (experiment, metric, variant): the experiments plugin's rows, and the interleaving plugin's with
#: metric INTERLEAVING_METRIC. Each plugin loads and writes only its own rows.
SEQUENTIAL_TABLE = """CREATE TABLE IF NOT EXISTS analysis_sequential (experiment TEXT, metric TEXT, variant TEXT,
    p REAL, lower REAL, upper REAL, level REAL, restarts INTEGER DEFAULT 0, PRIMARY KEY (experiment, metric, variant))"""
INTERLEAVING_METRIC = "__interleaving__"


def merge(defaults: Mapping[str, Any], over: Mapping[str, Any] | None) -> dict[str, Any]:
    """`defaults` with `over` merged in (nested mappings merge, anything else replaces)."""
    out = dict(defaults)
    for k, v in (over or {}).items():
        out[k] = merge(defaults[k], v) if isinstance(v, Mapping) and isinstance(defaults.get(k), Mapping) else v
    return out


def section_config(defaults: Mapping[str, Any], ctx: Any = None) -> dict[str, Any]:
    """The plugin's view of the `analysis` section: the core's keys, the plugin's defaults, then
    what the config sets (a test's fake context may carry only a partial section)."""
    base = merge(CORE_DEFAULTS[SECTION], defaults)
    return merge(base, ((getattr(ctx, "config", None) or {}).get(SECTION)))


def slot_of(t: float, slot_seconds: float) -> int:
    """The start (unix seconds) of the slot of width `slot_seconds` holding time t."""
    return int(math.floor(t / slot_seconds) * slot_seconds)


def slot_entry(table: dict, key: tuple[str, str], slot: int, factory: Callable[[], Any]) -> Any:
    """table[key][slot] (per-series time slots), created by factory() when missing."""
    slots = table.get(key)
    if slots is None:
        slots = table[key] = {}
    got = slots.get(slot)
    if got is None:
        got = slots[slot] = factory()
    return got


def prune_none(value: Any) -> Any:
    """Drop None values from dicts, recursively (undefined numbers are omitted, never null/NaN)."""
    if isinstance(value, dict):
        return {k: prune_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [prune_none(v) for v in value]
    return value


def is_comparison(record: EvaluationRecord) -> bool:
    """An interleaving / pairwise comparison outcome (the interleaving plugin's input only)."""
    return record.name == semconv.INTERLEAVING_EVALUATION or semconv.INTERLEAVING_ID in (record.attributes or {})


def gauges(ctx: Any, put_all: Callable[[Callable[[str, dict[str, str], Any], None]], None]) -> Iterable[Any]:
    """Catalog gauge families from `put_all(put)`, where put(name, labels, value) skips values
    that are not finite numbers (bools count as 0/1); families come out sorted by name."""
    g: dict[str, list[tuple[dict[str, str], float]]] = {}

    def put(name: str, labels: dict[str, str], value: Any) -> None:
        v = float(value) if isinstance(value, bool) else number(value)
        if v is not None:
            g.setdefault(name, []).append((labels, v))

    put_all(put)
    return [ctx.family(name, g[name]) for name in sorted(g)]


def is_score(record: EvaluationRecord) -> bool:
    """A successful evaluation with a finite score (not a comparison outcome)."""
    score = record.score
    return not record.error and score is not None and math.isfinite(score) and not is_comparison(record)


class StatisticsPlugin(SidecarPlugin):
    """Base of the statistics plugins: config section `analysis`, one lock, counters of what was
    dropped at a bound and of hooks that raised (never into the core), a clock and label bounds
    that work before `attach` too (unit tests build plugins bare)."""

    config_section = SECTION
    CONFIG_DEFAULTS: dict[str, Any] = {}

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cfg = section_config(self.CONFIG_DEFAULTS)
        self.dropped: dict[str, int] = {}
        self.errors = 0
        self.results: dict[str, Any] = {}
        self.log = logging.getLogger(type(self).__module__)

    def attach(self, ctx: Any) -> None:
        self.ctx = ctx
        self.cfg = section_config(self.CONFIG_DEFAULTS, ctx)

    def now(self) -> float:
        return float(self.ctx.now()) if hasattr(self, "ctx") else 0.0

    def bound(self, label: str, value: str) -> str:
        """Fold a label value past its cap into "other" (the core's caps), so every dict keyed by
        service or evaluator stays bounded whatever the spans carry."""
        bound = getattr(getattr(self, "ctx", None), "bound", None)
        return bound(label, value) if bound is not None else value

    def service_binder(self) -> Callable[[str], str]:
        """raw service -> bounded service for one batch summary (the core already counted the
        overflow of these calls: n=0), memoized per batch."""
        bound = getattr(getattr(self, "ctx", None), "bound", None)
        names: dict[str, str] = {}

        def service_of(raw: str) -> str:
            got = names.get(raw)
            if got is None:
                got = names[raw] = bound("service", raw, 0) if bound is not None else raw
            return got
        return service_of

    def drop(self, what: str, n: int = 1) -> None:
        self.dropped[what] = self.dropped.get(what, 0) + n

    def guarded(self, hook: str, fn: Callable[..., None], *args: Any) -> None:
        """Run an ingest hook; an exception is counted and logged (the first 5), never raised."""
        try:
            fn(*args)
        except Exception:  # never into the core
            self.errors += 1
            if self.errors <= 5:
                self.log.exception("%s %s failed", self.name, hook)

    def status(self) -> dict[str, Any]:
        """Health facts for GET /v1/analysis/status (the core merges every plugin's)."""
        return {"dropped": dict(self.dropped), "errors": self.errors}


class EvaluationNames:
    """Names of the judge and of the user/human feedback evaluations seen (each bounded at 1000),
    persisted in the shared `analysis_names` table (rows are idempotent: several plugins may keep
    the same names). The caller holds its lock."""

    MAX = 1000

    def __init__(self) -> None:
        self.judge: set[str] = set()
        self.feedback: set[str] = set()

    def observe(self, record: EvaluationRecord) -> None:
        if record.source in semconv.JUDGE_SOURCES:
            names = self.judge
        elif record.source in ("user", "human"):
            names = self.feedback
        else:
            return
        if len(names) < self.MAX or record.name in names:
            names.add(record.name)

    def frozen(self) -> tuple[frozenset[str], frozenset[str]]:
        return frozenset(self.judge), frozenset(self.feedback)

    @staticmethod
    def create_table(conn: Any) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS analysis_names (kind TEXT, name TEXT, PRIMARY KEY (kind, name))")

    def load(self, conn: Any) -> None:
        for kind, name in conn.execute("SELECT kind, name FROM analysis_names"):
            (self.judge if kind == "judge" else self.feedback).add(name)

    def rows(self) -> list[tuple[str, str]]:
        return [("judge", n) for n in self.judge] + [("feedback", n) for n in self.feedback]

    @staticmethod
    def write(conn: Any, rows: list[tuple[str, str]]) -> None:
        conn.executemany("INSERT OR IGNORE INTO analysis_names VALUES (?, ?)", rows)
