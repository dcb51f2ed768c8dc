"""Value checks: one span (or log record) with an absurd value is rejected alone, and counted.

Two places, so the HTTP event loop stays cheap (a Python pass over every attribute there would
cost about 20 us per span, three times the main process's whole budget per span):

- at the HTTP edge, on the protobuf, before journaling: `EdgeLimits.span_problem(span, now)` /
  `log_problem(record, now)` check the timestamps and the duration (no attribute is touched). A
  failing item is removed from the request, reported in the OTLP `partial_success` and counted;
  the journal holds only what was accepted, so a replay never judges it again.
- where the spans are prepared (worker process or ingest thread), on the attribute dicts that
  preparation builds anyway: `EdgeLimits.attrs_problem(attributes)` checks every value that
  enters a sum. A failing span (or evaluation event, or log record) is skipped whole, before it
  reaches any counter, statistic or plugin, and counted. The OTLP answer went out already, so
  these are not in `partial_success`; the counter is the signal.

Both count in `llm_eval_ingest_rejected_total{reason=...}`. Reasons and ranges (config
`ingest.limits`, documented in docs/reliability.md):
- `invalid_number`: token counts (`*.usage.*tokens*`, `llm.token_count.*`, judge counters) must be
  finite, >= 0 and <= `max_tokens`; costs (`gen_ai.usage.cost`, `*cost_usd*`, ...) finite, >= 0 and
  <= `max_cost_usd`; evaluation scores finite and within [`score_min`, `score_max`]; a span lasting
  longer than `max_duration_seconds`.
- `invalid_weights`: experiment weights (`llm_eval.experiment.weights`) that are not finite, are
  negative or sum to zero (the analysis would raise on every tick otherwise).
- `timestamp_out_of_window`: an end (or start) time more than `max_age_seconds` before `now` or
  more than `max_future_seconds` after it (such spans would create state slots no pruning reaches).
  A zero timestamp means "unknown" and passes.

Strings that do not parse as numbers are left to the normalizer (which ignores them), so only
values that would enter a sum are judged. Pure: no I/O, never raises.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from ... import semconv
from .prices import COST_ATTRIBUTES

#: defaults of config `ingest.limits`
LIMIT_DEFAULTS: dict[str, float] = {
    "max_tokens": 100_000_000,         # per call; the largest context windows are ~10M tokens
    "max_cost_usd": 10_000.0,          # per call (or per judge call)
    "score_min": -100.0,               # evaluation scores: covers -1..1, 0..1, 1..5 and percent scales
    "score_max": 100.0,
    "max_duration_seconds": 86_400.0,  # end - start of one span
    "max_age_seconds": 7 * 86_400.0,   # how far in the past a span may end
    "max_future_seconds": 600.0,       # clock skew tolerated into the future
}

_COST_KEYS = frozenset(COST_ATTRIBUTES) | {semconv.JUDGE_COST_USD}
_COUNT_KEYS = frozenset({semconv.JUDGE_DROPPED, semconv.JUDGE_SKIPPED_RATE, semconv.JUDGE_SKIPPED_COST})
_TOKEN_PREFIXES = ("gen_ai.usage.", "llm.usage.", "llm.token_count.")
_SCORE_KEY = semconv.EVALUATION_SCORE_VALUE
_WEIGHTS_KEY = semconv.EXPERIMENT_WEIGHTS


def _kind(key: str) -> str | None:
    """'cost' | 'tokens' | 'score' | 'weights' for attributes whose value enters a sum, else None."""
    if key in _COUNT_KEYS:  # before costs: llm_eval.judge.skipped.cost is a count
        return "tokens"
    if key in _COST_KEYS or key.endswith((".cost", "cost_usd")):
        return "cost"
    if key == _SCORE_KEY:
        return "score"
    if key == _WEIGHTS_KEY:
        return "weights"
    if key.startswith(_TOKEN_PREFIXES) and "token" in key:
        return "tokens"
    return None


#: Attribute keys classified so far, and those among them that carry a checked value (-> kind).
_SEEN: set[str] = set()
_CHECKED: dict[str, str] = {}
_MAX_SEEN = 4096  # bounded: attribute keys come from clients (past it, new keys are classified per call)

#: The keys of a span, in order -> the (key, kind) pairs to check, in that order. Spans of one
#: instrumentation repeat the same key list, so a span costs one tuple and one dict lookup here.
_PLANS: dict[tuple, tuple] = {}
_MAX_PLANS = 1024  # bounded like _SEEN (cleared when full)


def _plan(keys: Any) -> tuple[tuple[str, str], ...]:
    """The (key, kind) pairs of `keys` whose value enters a sum (`_kind`), in key order."""
    out = []
    for key in keys:
        kind = _CHECKED.get(key)
        if kind is None:
            if key in _SEEN:
                continue
            kind = _kind(key)
            if len(_SEEN) < _MAX_SEEN:
                _SEEN.add(key)
                if kind is not None:
                    _CHECKED[key] = kind
            if kind is None:
                continue
        out.append((key, kind))
    return tuple(out)


def _number(value: Any) -> float | None:
    """A numeric attribute value (int, float or numeric string) as a float; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:  # an int beyond the float range
            return math.inf
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def weights_problem(entries: Any) -> str | None:
    """Why `llm_eval.experiment.weights` entries ("id=a:0.5,b:0.5") are unusable, or None."""
    values = entries if isinstance(entries, (list, tuple)) else [entries]
    for entry in values:
        if not isinstance(entry, str):
            continue
        exp_id, _, rest = entry.partition("=")
        weights = []
        for part in rest.split(","):
            _, sep, w = part.rpartition(":")
            if not sep:
                continue
            try:
                weights.append(float(w))
            except ValueError:
                continue
        if any(not math.isfinite(w) or w < 0 for w in weights):
            return f"experiment {exp_id!r} has a weight that is negative or not finite: {entry[:80]!r}"
        if weights and sum(weights) <= 0:
            return f"experiment {exp_id!r} has weights summing to 0: {entry[:80]!r}"
    return None


@dataclass(frozen=True)
class EdgeLimits:
    max_tokens: float = LIMIT_DEFAULTS["max_tokens"]
    max_cost_usd: float = LIMIT_DEFAULTS["max_cost_usd"]
    score_min: float = LIMIT_DEFAULTS["score_min"]
    score_max: float = LIMIT_DEFAULTS["score_max"]
    max_duration_seconds: float = LIMIT_DEFAULTS["max_duration_seconds"]
    max_age_seconds: float = LIMIT_DEFAULTS["max_age_seconds"]
    max_future_seconds: float = LIMIT_DEFAULTS["max_future_seconds"]

    def __post_init__(self) -> None:
        # (low, high) per kind for attrs_problem's in-range shortcut (derived, not a field)
        object.__setattr__(self, "_bounds", {"tokens": (0, self.max_tokens), "cost": (0, self.max_cost_usd),
                                             "score": (self.score_min, self.score_max)})

    @classmethod
    def from_config(cls, limits: Mapping[str, Any] | None) -> "EdgeLimits":
        merged = {**LIMIT_DEFAULTS, **dict(limits or {})}
        return cls(**{k: float(merged[k]) for k in LIMIT_DEFAULTS})

    def attrs_problem(self, attrs: Mapping[str, Any]) -> tuple[str, str] | None:
        """(reason, message) when a value in these attributes is outside its range, else None.

        Values are checked in attribute order. An int or float within its range passes without
        the general conversion (the common case: integer token counts); anything else, and
        every value outside its range, takes `_problem`, the general path, which decides."""
        sig = tuple(attrs)
        plan = _PLANS.get(sig)
        if plan is None:
            plan = _plan(sig)
            if len(_PLANS) >= _MAX_PLANS:
                _PLANS.clear()
            _PLANS[sig] = plan
        if not plan:
            return None
        bounds = self._bounds
        for key, kind in plan:
            value = attrs[key]
            kv = type(value)
            if kv is int or kv is float:
                lo_hi = bounds.get(kind)  # None for weights
                if lo_hi is not None and lo_hi[0] <= value <= lo_hi[1]:
                    continue  # exact comparison; float(value) then passes too (rounding is monotonic)
            why = self._problem(key, kind, value)
            if why is not None:
                return why
        return None

    def attrs_problem_slow(self, attrs: Mapping[str, Any]) -> tuple[str, str] | None:
        """`attrs_problem` without the plan cache and the in-range shortcut (tests compare them)."""
        for key in attrs:
            kind = _kind(key)
            if kind is not None:
                why = self._problem(key, kind, attrs[key])
                if why is not None:
                    return why
        return None

    def _problem(self, key: str, kind: str, value: Any) -> tuple[str, str] | None:
        """(reason, message) when `value` of attribute `key` (of `kind`) is out of range, else None."""
        if kind == "weights":
            why = weights_problem(value)
            if why:
                return "invalid_weights", why
            return None
        v = _number(value)
        if v is None:
            return None
        # NaN fails every comparison below; infinities fail the bounds
        if kind == "score":
            if not self.score_min <= v <= self.score_max:
                return "invalid_number", (f"{key}={v:g} is outside [{self.score_min:g}, {self.score_max:g}] "
                                          "(ingest.limits.score_min/score_max)")
        elif kind == "cost":
            if not 0 <= v <= self.max_cost_usd:
                return "invalid_number", (f"{key}={v:g} is outside [0, {self.max_cost_usd:g}] "
                                          "(ingest.limits.max_cost_usd)")
        elif not 0 <= v <= self.max_tokens:
            return "invalid_number", f"{key}={v:g} is outside [0, {self.max_tokens:g}] (ingest.limits.max_tokens)"
        return None

    def _time_problem(self, t_ns: int, now: float) -> tuple[str, str] | None:
        if not t_ns:
            return None
        t = t_ns / 1e9
        if t < now - self.max_age_seconds or t > now + self.max_future_seconds:
            return ("timestamp_out_of_window",
                    f"timestamp {t:.0f} is outside [now - {self.max_age_seconds:g}s, now + "
                    f"{self.max_future_seconds:g}s] (ingest.limits.max_age_seconds/max_future_seconds)")
        return None

    def span_problem(self, span: Any, now: float) -> tuple[str, str] | None:
        """(reason, message) when this protobuf span's times are unusable, else None."""
        return self.span_checker(now)(span)

    def span_checker(self, now: float) -> Any:
        """`span_problem` bound to `now`, with the bounds precomputed in nanoseconds: the HTTP
        handler runs it on every span of a request (no attribute is read: about 0.5 us a span)."""
        lo = int((now - self.max_age_seconds) * 1e9)
        hi = int((now + self.max_future_seconds) * 1e9)
        longest = int(self.max_duration_seconds * 1e9)

        def check(span: Any) -> tuple[str, str] | None:
            start = span.start_time_unix_nano
            end = span.end_time_unix_nano or start
            if end and not lo <= end <= hi:
                return self._time_problem(end, now)
            if start and end - start > longest:
                return ("invalid_number", f"span lasts {(end - start) / 1e9:g}s, more than "
                                          f"{self.max_duration_seconds:g}s (ingest.limits.max_duration_seconds)")
            return None

        check.bounds = (lo, hi, longest)  # type: ignore[attr-defined]  # for otlp._spans_valid
        return check

    def log_problem(self, rec: Any, now: float) -> tuple[str, str] | None:
        return self._time_problem(rec.time_unix_nano or rec.observed_time_unix_nano, now)
