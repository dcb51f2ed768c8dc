"""Experiments: deterministic assignment and stamping of every span started in an activated scope.

`with exp.activate(unit_id) as variant:` puts the experiment into the OTel context (for this
process: threads and tasks that receive the context, libraries deep in the call stack) and into
W3C baggage (for downstream services that propagate `baggage`). `LLMEvalSpanProcessor.on_start`
copies the precomputed attributes onto each span.

Nesting: several experiments may be active at once. Spans then carry
- `llm_eval.experiment.id` / `llm_eval.experiment.variant`: the innermost experiment,
- `llm_eval.experiments`: every active one as "{id}={variant}", outermost first,
- `llm_eval.experiment.weights`: aligned with it, "{id}={control}:{w},{variant}:{w},..."
  (`semconv.format_weights`), so the sidecar learns weights and control from the spans.
- `llm_eval.experiment.units`: aligned with it, a pseudonymous key of the assignment unit per
  experiment (`unit_key`: first 16 hex of sha256("{id}:{unit_id}"), never the raw id; "" when
  activated without a unit id), so the sidecar can count units, not calls, for SRM. Set only when
  at least one active experiment has a unit; not propagated in baggage (downstream spans count
  as calls only).
Re-activating an experiment that is already active replaces its entry (it becomes innermost).
"""

from __future__ import annotations

import hashlib
import math
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Sequence

from opentelemetry import baggage as _baggage
from opentelemetry import context as _context

from otel_llm_eval import semconv

#: context key holding the precomputed span attributes of the active experiments
_ACTIVE_KEY = _context.create_key("otel_llm_eval.experiments")
#: W3C baggage entries (percent-encoded by the propagator). Experiments: "id=variant;id=variant".
BAGGAGE_EXPERIMENTS = "llm_eval.experiments"
#: "|"-joined `format_weights` strings, aligned with BAGGAGE_EXPERIMENTS.
BAGGAGE_WEIGHTS = "llm_eval.experiment.weights"

_FORBIDDEN = set("=,:;|") | {chr(c) for c in range(32)} | {"\x7f"}
_MAX_NAME = 128
_MAX_ACTIVE = 16  # nesting deeper than this is dropped from the outermost end (bounded header)
_WEIGHT_TOLERANCE = 1e-6


def _check_name(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{kind} must be a non-empty string, got {value!r}")
    if len(value) > _MAX_NAME:
        raise ValueError(f"{kind} {value[:20]!r}... is longer than {_MAX_NAME} characters")
    bad = sorted(set(value) & _FORBIDDEN)
    if bad:
        raise ValueError(f"{kind} {value!r} contains reserved characters {bad!r} (= , : ; | and control chars)")
    return value


class _Active:
    """Immutable state of the active experiments in one context."""

    __slots__ = ("entries", "units", "attributes", "baggage_experiments", "baggage_weights", "count", "longest")

    def __init__(self, entries: tuple[tuple[str, str, str | None], ...], units: tuple[str, ...] = ()) -> None:
        self.entries = entries  # (id, variant, weights string or None), outermost first
        #: unit keys aligned with entries ("" = none); () when no entry has one
        self.units = units if any(units) else ()
        inner_id, inner_variant, _ = entries[-1]
        attrs: dict[str, Any] = {
            semconv.EXPERIMENT_ID: inner_id,
            semconv.EXPERIMENT_VARIANT: inner_variant,
            semconv.EXPERIMENTS: tuple(f"{i}={v}" for i, v, _ in entries),
        }
        weights = tuple(w for _, _, w in entries if w)
        if len(weights) == len(entries):
            attrs[semconv.EXPERIMENT_WEIGHTS] = weights
        if self.units:
            attrs[semconv.EXPERIMENT_UNITS] = self.units
        self.attributes = attrs
        self.count = len(attrs)
        # longest string value: the processor's fast path must respect the SDK's value length limit
        self.longest = max(len(x) for v in attrs.values() for x in ((v,) if isinstance(v, str) else v))
        self.baggage_experiments = ";".join(f"{i}={v}" for i, v, _ in entries)
        self.baggage_weights = "|".join(w or "" for _, _, w in entries)


_BAGGAGE_CACHE: dict[tuple[str, str], _Active | None] = {}
_BAGGAGE_CACHE_MAX = 512


def _from_baggage(value: Any, weights_value: Any) -> _Active | None:
    """Parse our baggage entries (downstream service). Cached; bounded; never raises."""
    key = (str(value), str(weights_value or ""))
    cached = _BAGGAGE_CACHE.get(key, False)
    if cached is not False:
        return cached  # type: ignore[return-value]
    active: _Active | None = None
    try:
        weights = key[1].split("|") if key[1] else []
        entries = []
        for i, item in enumerate(key[0].split(";")[:_MAX_ACTIVE]):
            exp_id, sep, variant = item.partition("=")
            if not sep or not exp_id or not variant or set(exp_id + variant) & _FORBIDDEN:
                continue
            w = weights[i] if i < len(weights) and weights[i].startswith(exp_id + "=") else None
            entries.append((exp_id, variant, w))
        active = _Active(tuple(entries)) if entries else None
    except Exception:
        active = None
    if len(_BAGGAGE_CACHE) >= _BAGGAGE_CACHE_MAX:
        _BAGGAGE_CACHE.clear()
    _BAGGAGE_CACHE[key] = active
    return active


def active_state(ctx: _context.Context | None = None) -> _Active | None:
    """The experiments active in `ctx` (default: current): from our context key, else baggage."""
    if ctx is None:
        ctx = _context.get_current()
    active = ctx.get(_ACTIVE_KEY)
    if active is not None:
        return active
    bag = _baggage.get_all(ctx)
    value = bag.get(BAGGAGE_EXPERIMENTS) if bag else None
    if value:
        return _from_baggage(value, bag.get(BAGGAGE_WEIGHTS))
    return None


def active_attributes(ctx: _context.Context | None = None) -> Mapping[str, Any] | None:
    """The span attributes the processor stamps in `ctx`, or None outside any experiment."""
    state = active_state(ctx)
    return state.attributes if state is not None else None


class Experiment:
    """A/B/n experiment with deterministic, weighted assignment.

    `variants`: {name: weight} with weights >= 0 summing to 1 (a sequence of names means equal
    weights). `control` defaults to the first variant. Names may not contain = , : ; | or control
    characters (they are used as separators on spans and in baggage). Raises ValueError naming
    the problem. Instances are immutable and thread-safe.
    """

    def __init__(self, id: str, variants: Mapping[str, float] | Sequence[str], control: str | None = None) -> None:
        self.id = _check_name("experiment id", id)
        if isinstance(variants, str) or variants is None:
            raise ValueError(f"experiment {id!r}: variants must be a mapping of name -> weight, got {variants!r}")
        if not isinstance(variants, Mapping):
            names = list(variants)
            if not names:
                raise ValueError(f"experiment {id!r}: variants is empty")
            variants = {n: 1.0 / len(names) for n in names}
        if not variants:
            raise ValueError(f"experiment {id!r}: variants is empty")
        weights: dict[str, float] = {}
        for name, weight in variants.items():
            _check_name(f"experiment {id!r}: variant name", name)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise ValueError(f"experiment {id!r}: weight of {name!r} must be a number, got {weight!r}")
            if not math.isfinite(weight):
                raise ValueError(f"experiment {id!r}: weight of {name!r} is not finite ({weight!r})")
            if weight < 0:
                raise ValueError(f"experiment {id!r}: weight of {name!r} is negative ({weight!r})")
            weights[name] = float(weight)
        total = math.fsum(weights.values())
        if abs(total - 1.0) > _WEIGHT_TOLERANCE:
            raise ValueError(f"experiment {id!r}: weights sum to {total:g}, expected 1")
        if control is None:
            control = next(iter(weights))
        elif control not in weights:
            raise ValueError(f"experiment {id!r}: control {control!r} is not one of the variants {list(weights)}")
        self.variants: dict[str, float] = weights
        self.control = control
        self.weights_attribute = semconv.format_weights(self.id, weights, control)
        # cumulative upper bounds for assignment, in declaration order; weight-0 variants never win
        self._cumulative: list[tuple[float, str]] = []
        acc = 0.0
        for name, weight in weights.items():
            if weight > 0:
                acc += weight
                self._cumulative.append((acc, name))

    def __repr__(self) -> str:
        return f"Experiment({self.id!r}, {self.variants!r}, control={self.control!r})"

    def _digest(self, unit_id: Any) -> bytes:
        if unit_id is None:
            raise ValueError(f"experiment {self.id!r}: unit_id is None (pass a user, session or request id)")
        return hashlib.sha256(f"{self.id}:{unit_id}".encode("utf-8", "surrogatepass")).digest()

    def unit_key(self, unit_id: Any) -> str:
        """The pseudonymous key stamped for `unit_id` (`llm_eval.experiment.units`): the first 16 hex
        of sha256("{id}:{unit_id}"). One-way and per experiment (the same user has unrelated keys
        in two experiments); the sidecar counts distinct keys per variant for SRM."""
        return self._digest(unit_id)[:8].hex()

    def assign(self, unit_id: Any) -> str:
        """The variant for `unit_id`: sha256 of "{id}:{unit_id}", the same in every process and machine."""
        return self._assign_digest(self._digest(unit_id))

    def _assign_digest(self, digest: bytes) -> str:
        x = int.from_bytes(digest[:8], "big") / 18446744073709551616.0  # uniform in [0, 1)
        for bound, name in self._cumulative:
            if x < bound:
                return name
        return self._cumulative[-1][1]  # rounding: weights summing to 0.9999999

    @contextmanager
    def activate(self, unit_id: Any = None, *, variant: str | None = None) -> Iterator[str]:
        """Make every span started in this scope carry this experiment; yields the variant.

        `variant` forces an arm (e.g. chosen by a bandit) instead of hashing `unit_id`.
        Context-local: other threads see it only when they receive this context.
        """
        digest = self._digest(unit_id) if unit_id is not None else None
        if variant is None:
            if digest is None:
                raise ValueError(f"experiment {self.id!r}: unit_id is None (pass a user, session or request id)")
            chosen = self._assign_digest(digest)
        elif variant in self.variants:
            chosen = variant
        else:
            raise ValueError(f"experiment {self.id!r}: variant {variant!r} is not one of {list(self.variants)}")
        unit = digest[:8].hex() if digest is not None else ""
        ctx = _context.get_current()
        parent = active_state(ctx)
        pairs = []
        if parent is not None:
            parent_units = parent.units or ("",) * len(parent.entries)
            pairs = [(e, u) for e, u in zip(parent.entries, parent_units) if e[0] != self.id]
        pairs = (pairs + [((self.id, chosen, self.weights_attribute), unit)])[-_MAX_ACTIVE:]
        state = _Active(tuple(e for e, _ in pairs), tuple(u for _, u in pairs))
        ctx = _context.set_value(_ACTIVE_KEY, state, ctx)
        ctx = _baggage.set_baggage(BAGGAGE_EXPERIMENTS, state.baggage_experiments, ctx)
        ctx = _baggage.set_baggage(BAGGAGE_WEIGHTS, state.baggage_weights, ctx)
        token = _context.attach(ctx)
        try:
            yield chosen
        finally:
            _context.detach(token)
