"""The sidecar's analysis loop: A/B statistics, SRM, always-valid p-values, engagement, interleaving,
bandit allocations, drift, anomalies and judge sample rates, as catalog gauges and JSON.

`AnalysisPlugin` (name "analysis", config section `analysis`, defaults in CONFIG_DEFAULTS):
- `on_call` / `on_evaluation` (ingest thread, O(1), never raise): feed drift reservoirs per
  (service, feature, slot), anomaly slot aggregates per (service, series, slot), engagement
  sessions per (experiment, session), interleaving outcomes, the set of judge/feedback names.
- `tick(now)` (analysis thread): reads `ctx.experiment_snapshot()`, runs `otel_llm_eval.stats` and
  swaps in an immutable result; `collect()` and the HTTP routes only read that result.
- `load` / `flush` (state thread): tables `analysis_*` (always-valid p running minimum, bandit
  registry, interleaving counts, sessions, drift slots, anomaly slots), so a restart resumes.
- Routes: `GET /v1/bandits/{id}[?arms=a,b]` (allocation; the call also registers the bandit),
  `GET /v1/experiments/{id}/judge-rate`, `GET /v1/judge-rates` (all experiments, for apps),
  `GET /v1/interleaving`, `GET /v1/drift`, `GET /v1/anomalies`, `GET /v1/analysis/status`
  (last pass, sizes, what was dropped at its bounds, errors).
  `GET /v1/experiments/{id}` gets an `analysis` key (experiment_details).

Every statistic is published as soon as it is computable; undefined values are omitted.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
from bisect import bisect_left
from dataclasses import replace
from typing import Any, Iterable, Mapping

from .. import semconv
from .plugins import CallRecord, CallSummarizer, EvaluationRecord, ExperimentSnapshot, SidecarPlugin
from ..stats.sequential import RunningSequence
from .stats_experiments import ENGAGEMENT_METRICS, analyze_experiment, prune_none
from ..catalog import LATENCY_BUCKETS_SECONDS
from .concept_windows import ConceptSlot, ConceptWindows
from .feedback_kinds import is_positive, number as _num
from .stats_windows import AnomalySlot, ArmRecord, Comparisons, DriftSlot, Session, as_bool, slot_of

log = logging.getLogger(__name__)

CONFIG_DEFAULTS: dict[str, Any] = {
    "interval_seconds": 10.0,
    "alpha": 0.05,
    "power": 0.8,
    "mde": 0.05,                       # relative minimum detectable effect for sample sizes
    "srm_threshold": 0.001,
    "sequential_tuning_n": 5000,       # GAVI: samples (both arms) where the always-valid interval is tightest
    "min_samples": 30,                 # units (else calls) per arm before any verdict but "collecting"
    "lower_is_better": ["latency_seconds", "input_tokens", "output_tokens", "cost_usd", "error"],
    "binary_metrics": [],              # force 0/1 analysis (default: detected, every value 0 or 1)
    "continuous_metrics": [],          # force Welch
    "planned_duration_days": 14,       # planned end = first seen + this, unless experiments.<id>.planned_end_unix
    "experiments": {},                 # per-experiment overrides: {id: {mde, planned_end_unix, alpha, decision, ...}}
    "decision": {
        "primary": None,               # metric that decides (default: first judge metric, else first feedback)
        "primary_alpha_share": 0.5,    # share of alpha for the primary's comparisons; the rest split over the others
        "targets": {},                 # metric -> {relative: x} | {absolute: x}; default by kind (stats_experiments.DEFAULT_TARGETS)
        "guardrails": {                # metric -> largest degradation accepted (non-inferiority margin)
            "latency_seconds": {"relative": 0.10},
            "cost_usd": {"relative": 0.10},
            "error": {"absolute": 0.01},
        },
    },
    "judge": {
        "metric": None,                # evaluation used for the rate plan (default: first judge one, semconv.JUDGE_SOURCES)
        "budget_calls_per_hour": None,
        "min_rate": 0.01,
        "max_rate": 1.0,
        "bootstrap_rate": 0.1,         # until the judge metric has a variance estimate
        "margin": 1.1,
    },
    "engagement": {"max_sessions": 100_000},
    "interleaving": {"max_arms": 20, "prior_strength": 12.0},  # Beta(a, a) mixture of the always-valid test
    "bandits": {
        "ids": [],                     # experiments served as bandits (GET /v1/bandits/{id} adds more)
        "max_bandits": 20,
        "algorithm": "thompson",       # thompson | ucb1 | epsilon_greedy
        "floor": 0.01,
        "burn_in": 20,                 # rewards per arm before leaving the uniform allocation
        "epsilon": 0.1,
        "draws": 10_000,
        "reward": None,                # metric name (default: first user feedback, else judge metric)
        "reward_min": None,            # rewards map to [0, 1]; default 0..1 for 0/1 metrics, else 1..5
        "reward_max": None,
        "seed": 0,
    },
    "drift": {
        "reference_seconds": 86_400,   # the previous 24 h ...
        "current_seconds": 3_600,      # ... vs the last hour
        "slot_seconds": 600,
        "reservoir_size": 200,         # values kept per feature and slot (uniform sample)
        "min_samples": 10,             # per window before a test (the tests are exact down to a few values)
        "js_threshold": 0.1,           # JS/PSI are effect sizes: thresholds only label them, never decide
        "psi_threshold": 0.2,
        "p_threshold": 0.05,           # KS / chi-square level: the false-alarm rate at any traffic
        "psi_epsilon": 1e-4,
        "ks_max_samples": 2000,        # current window's KS sample (drawn in proportion to slot counts)
        "ks_reference_samples": 5000,  # reference window's KS sample
        "max_categories": 50,
        "features": ["input_tokens", "output_tokens", "latency_seconds", "input_length", "output_length",
                     "cost_usd", "finish_reason", "judge_score"],
        "attributes": [],              # extra span attributes (numbers → numeric, else categorical)
    },
    "concept_drift": {                 # quality per input segment, current vs reference drift window
        "segment_attribute": None,     # span attribute naming the segment (e.g. app.topic); default: input-length bins
        "quantile_bins": 4,            # input-length bins from the reference window's quantiles
        "max_segments": 20,            # attribute values past this fold into "other"
        "reservoir_size": 500,         # (segment, quality) pairs kept per service, signal and slot
        "min_samples": 20,             # per segment and window before a test
        "p_threshold": 0.05,           # family-wise over a service's segments (Bonferroni)
        "max_pairs": 5000,             # pairs per window sampled for the test
        "pending_calls": 100_000,      # calls remembered until their evaluation arrives
    },
    "anomaly": {
        "slot_seconds": 300,
        "history_slots": 48,
        "min_history": 12,
        "min_slot_samples": 5,
        "z_threshold": 3.0,
        "mad_threshold": 3.5,
        "ewma_lambda": 0.3,
        "ewma_L": 3.0,
        "sigma_floor_relative": 0.01,
    },
}

#: the `metric` under which interleaving comparisons keep their running always-valid p-value
INTERLEAVING_METRIC = "__interleaving__"
NUMERIC_FEATURES = {"input_tokens", "output_tokens", "latency_seconds", "input_length", "output_length", "cost_usd"}
SERIES_KIND = {"latency_p95_seconds": "p95"}  # others are slot means


def _merge(defaults: Mapping[str, Any], over: Mapping[str, Any] | None) -> dict[str, Any]:
    out = dict(defaults)
    for k, v in (over or {}).items():
        out[k] = _merge(defaults[k], v) if isinstance(v, Mapping) and isinstance(defaults.get(k), Mapping) else v
    return out


def _call_features(record: CallRecord, wanted: Iterable[str], attributes: Iterable[str]) -> Iterable[tuple[str, Any]]:
    call = record.call
    values = {
        "input_tokens": call.input_tokens, "output_tokens": call.output_tokens,
        "latency_seconds": call.latency_seconds, "cost_usd": record.cost_usd,
        "input_length": len(call.prompt) if call.prompt is not None else None,
        "output_length": len(call.completion) if call.completion is not None else None,
        "finish_reason": call.finish_reason,
    }
    for f in wanted:
        if f in values and values[f] is not None:
            yield f, values[f]
    for attr in attributes:
        v = record.attributes.get(attr) if record.attributes else None
        if v is not None:
            yield f"attr:{attr}", v


def call_segment(record: CallRecord, attribute: str | None) -> tuple[str, str, Any] | None:
    """(trace+span hex, raw service, segment) of a call for concept drift: the segment attribute's
    value (a short string), else the input length (binned later); None when neither is known."""
    call = record.call
    if not call.trace_id or not call.span_id:
        return None
    if attribute:
        v = (record.attributes or {}).get(attribute)
        raw: Any = None if v is None else str(v)[:100]
    else:
        raw = len(call.prompt) if call.prompt is not None else None
    if raw is None:
        return None
    return call.trace_id + call.span_id, record.service or "unknown_service", raw


#: the call fields drift can follow, in the order of the tuple AnalysisCallSummarizer.add builds
_CALL_FEATURES = ("input_tokens", "output_tokens", "latency_seconds", "cost_usd", "input_length",
                  "output_length", "finish_reason")


class AnalysisCallSummarizer(CallSummarizer):
    """`AnalysisPlugin.on_call` per batch, where the spans are decoded: drift values, anomaly slot
    aggregates and engagement sessions keyed by the raw service; `on_call_summary` merges them
    (same state as call by call; drift reservoirs draw their random numbers in another order)."""

    def __init__(self, config: Mapping[str, Any]):
        super().__init__(config)
        cfg = _merge(CONFIG_DEFAULTS, config)
        wanted = list(cfg["drift"]["features"])
        # (position in the call's value tuple, feature, numeric?) in the configured order
        self._plan = tuple((_CALL_FEATURES.index(f), f, f in NUMERIC_FEATURES or f.startswith("judge_score"))
                           for f in wanted if f in _CALL_FEATURES)
        self._attributes = tuple((a, f"attr:{a}") for a in cfg["drift"]["attributes"] or ())
        self._drift_slot = cfg["drift"]["slot_seconds"]
        self._anomaly_slot = cfg["anomaly"]["slot_seconds"]
        self._segment_attribute = cfg["concept_drift"]["segment_attribute"]
        self._reset()

    def _reset(self) -> None:
        self.drift: dict[tuple, dict] = {}     # (service, slot) -> {feature: [numeric values, {category: n}]}
        self.anomaly: dict[tuple, list] = {}   # (service, slot) -> [latency n, sum, buckets, errors n, sum, cost n, sum]
        self.sessions: dict[tuple, list] = {}  # (experiment, session) -> [variant, unit, messages, first, last]
        self.untimed: list[CallRecord] = []    # no end time: the plugin applies these with its clock
        self.segments: list[tuple] = []        # (trace+span hex, service, raw segment) for concept drift

    def add(self, record: CallRecord) -> None:
        if not record.end_time_unix_nano:
            self.untimed.append(record)
            return
        seg = call_segment(record, self._segment_attribute)
        if seg is not None:
            self.segments.append(seg)
        t = record.end_time_unix_nano / 1e9
        service = record.service or "unknown_service"
        call = record.call
        values = (call.input_tokens, call.output_tokens, call.latency_seconds, record.cost_usd,
                  len(call.prompt) if call.prompt is not None else None,
                  len(call.completion) if call.completion is not None else None, call.finish_reason)
        slot_key = (service, slot_of(t, self._drift_slot))
        features = self.drift.get(slot_key)
        if features is None:
            features = self.drift[slot_key] = {}
        for i, feature, numeric in self._plan:
            value = values[i]
            if value is not None:
                self._drift(features, feature, numeric, value)
        if self._attributes:
            attrs = record.attributes or {}
            for attr, feature in self._attributes:
                value = attrs.get(attr)
                if value is not None:
                    self._drift(features, feature, _num(value) is not None, value)
        akey = (service, slot_of(t, self._anomaly_slot))
        a = self.anomaly.get(akey)
        if a is None:
            a = self.anomaly[akey] = [0, 0.0, None, 0, 0.0, 0, 0.0]
        latency = call.latency_seconds
        if latency is not None:
            latency = float(latency)
            a[0] += 1
            a[1] += latency
            if a[2] is None:
                a[2] = [0] * (len(LATENCY_BUCKETS_SECONDS) + 1)
            a[2][bisect_left(LATENCY_BUCKETS_SECONDS, latency)] += 1
        a[3] += 1
        if record.error:
            a[4] += 1.0
        cost = record.cost_usd
        if cost is not None and math.isfinite(cost):
            a[5] += 1
            a[6] += float(cost)
        if call.session_id:
            unit = call.user_id or f"session:{call.session_id}"
            for exp in record.experiments:
                key = (exp.id, str(call.session_id))
                got = self.sessions.get(key)
                if got is None:
                    self.sessions[key] = [exp.variant, unit, 1, t, t]
                else:
                    got[2] += 1
                    if t < got[3]:
                        got[3] = t
                    if t > got[4]:
                        got[4] = t

    @staticmethod
    def _drift(features: dict, feature: str, numeric: bool, value: Any) -> None:
        entry = features.get(feature)
        if entry is None:
            entry = features[feature] = [[], None]
        if numeric:
            x = _num(value)
            if x is not None:
                entry[0].append(x)
        else:
            cats = entry[1]
            if cats is None:
                cats = entry[1] = {}
            c = str(value)[:100]
            cats[c] = cats.get(c, 0) + 1

    def result(self) -> Any:
        if not (self.drift or self.anomaly or self.sessions or self.untimed or self.segments):
            return None
        drift = {(service, feature, slot): entry for (service, slot), features in self.drift.items()
                 for feature, entry in features.items()}
        anomaly = {}
        for (service, slot), (lat_n, lat_sum, buckets, n, errors, cost_n, cost_sum) in self.anomaly.items():
            if lat_n:
                anomaly[(service, "latency_p95_seconds", slot)] = [lat_n, lat_sum, buckets]
            anomaly[(service, "error_rate", slot)] = [n, errors, None]
            if cost_n:
                anomaly[(service, "cost_per_request_usd", slot)] = [cost_n, cost_sum, None]
        out = (drift, anomaly, self.sessions, self.untimed, self.segments)
        self._reset()
        return out


class AnalysisPlugin(SidecarPlugin):
    name = "analysis"
    CONFIG_DEFAULTS = CONFIG_DEFAULTS
    summarizer = AnalysisCallSummarizer

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cfg = _merge(CONFIG_DEFAULTS, None)
        self.drift: dict[tuple[str, str], dict[int, DriftSlot]] = {}
        self.anomaly: dict[tuple[str, str], dict[int, AnomalySlot]] = {}
        self.sessions: dict[tuple[str, str], Session] = {}
        self.comparisons: dict[str, Comparisons] = {}
        self.concept = ConceptWindows(pending_calls=CONFIG_DEFAULTS["concept_drift"]["pending_calls"],
                                      reservoir_size=CONFIG_DEFAULTS["concept_drift"]["reservoir_size"])
        self.judge_names: set[str] = set()
        self.feedback_names: set[str] = set()
        self.bandits: dict[str, dict[str, Any]] = {}   # id -> {"arms": [...], "last_requested": t}
        #: (experiment, metric, variant) -> the always-valid test's running p and interval
        self.running: dict[tuple[str, str, str], RunningSequence] = {}
        self.dropped: dict[str, int] = {}
        self.errors = 0
        self._rng = random.Random(0)
        self._np_rng: Any = None  # numpy Generator for drift samples, made on first use (numpy is lazy here)
        # dirty keys for flush
        self._dirty_drift: set[tuple[str, str, int]] = set()
        self._dirty_anomaly: set[tuple[str, str, int]] = set()
        self._dirty_sessions: set[tuple[str, str]] = set()
        self._deleted_sessions: set[tuple[str, str]] = set()
        self._dirty_comparisons: set[str] = set()
        self._dirty_bandits: set[str] = set()
        self._pruned_before: dict[str, float] = {}
        self._ref_cache: dict[tuple[str, str], tuple[tuple[int, int, int], Any]] = {}
        self.results: dict[str, Any] = {"experiments": {}, "bandits": {}, "drift": [], "anomaly": [],
                                        "interleaving": {}}

    # --- wiring ---
    def attach(self, ctx: Any) -> None:
        self.ctx = ctx
        self.cfg = _merge(CONFIG_DEFAULTS, (getattr(ctx, "config", None) or {}).get(self.name))
        ccfg = self.cfg["concept_drift"]
        self.concept = ConceptWindows(pending_calls=ccfg["pending_calls"], reservoir_size=ccfg["reservoir_size"])
        alg = self.cfg["bandits"]["algorithm"]
        if alg not in ("thompson", "ucb1", "epsilon_greedy"):
            raise ValueError(f"analysis.bandits.algorithm must be thompson, ucb1 or epsilon_greedy, got {alg!r}")
        for bid in self.cfg["bandits"]["ids"] or []:
            self.bandits.setdefault(str(bid), {"arms": [], "last_requested": 0.0})

    def _now(self) -> float:
        return float(self.ctx.now()) if hasattr(self, "ctx") else 0.0

    def _bound(self, label: str, value: str) -> str:
        """Fold a label value past its cap into "other" (the core's caps), so every dict keyed by
        service or evaluator stays bounded whatever the spans carry."""
        bound = getattr(getattr(self, "ctx", None), "bound", None)
        return bound(label, value) if bound is not None else value

    def _drop(self, what: str) -> None:
        self.dropped[what] = self.dropped.get(what, 0) + 1

    # --- ingest hooks (ingest thread) ---
    def on_call(self, record: CallRecord) -> None:
        try:
            self._on_call(record)
        except Exception:  # never into the core
            self.errors += 1
            if self.errors <= 5:
                log.exception("analysis on_call failed")

    def _features(self, record: CallRecord) -> Iterable[tuple[str, Any]]:
        return _call_features(record, self.cfg["drift"]["features"], self.cfg["drift"]["attributes"] or ())

    def on_call_summary(self, summary: Any) -> None:
        """Merge an AnalysisCallSummarizer result (ingest thread): the state `on_call` per call
        would have left (service names bounded here; the core counted their overflow)."""
        try:
            self._apply_summary(summary)
        except Exception:  # never into the core
            self.errors += 1
            if self.errors <= 5:
                log.exception("analysis on_call_summary failed")

    def _apply_summary(self, summary: Any) -> None:
        drift, anomaly, sessions, untimed, segments = summary
        dcfg = self.cfg["drift"]
        cap, max_categories = dcfg["reservoir_size"], dcfg["max_categories"]
        bound = getattr(getattr(self, "ctx", None), "bound", None)
        names: dict[str, str] = {}

        def service_of(raw: str) -> str:
            got = names.get(raw)
            if got is None:
                got = names[raw] = bound("service", raw, 0) if bound is not None else raw
            return got

        with self.lock:
            for (raw, feature, slot), (values, categories) in drift.items():
                service = service_of(raw)
                ds = self._slot(self.drift, (service, feature), slot, DriftSlot)
                if values:
                    ds.add_numeric_many(values, cap, self._rng)
                for c, n in (categories or {}).items():
                    ds.add_category(c, max_categories, n)
                if values or categories:
                    self._dirty_drift.add((service, feature, slot))
            for (raw, series, slot), (n, total, buckets) in anomaly.items():
                service = service_of(raw)
                a = self._slot(self.anomaly, (service, series), slot, AnomalySlot)
                a.n += n
                a.total += total
                if buckets is not None:
                    a.buckets = buckets if a.buckets is None else [x + y for x, y in zip(a.buckets, buckets)]
                self._dirty_anomaly.add((service, series, slot))
            for key, (variant, unit, messages, first, last) in sessions.items():
                self._add_session(key, variant, unit, messages, first, last)
            for key, raw_service, raw in segments:
                self.concept.remember(key, service_of(raw_service), raw)
        for record in untimed:
            self._on_call(replace(record, service=service_of(record.service or "unknown_service")))

    def _on_call(self, record: CallRecord) -> None:
        t = record.end_time_unix_nano / 1e9 if record.end_time_unix_nano else self._now()
        acfg = self.cfg["anomaly"]
        service = self._bound("service", record.service or "unknown_service")
        call = record.call
        with self.lock:
            for feature, value in self._features(record):
                self._add_drift(service, feature, value, t)
            aslot = slot_of(t, acfg["slot_seconds"])
            if call.latency_seconds is not None:
                self._add_anomaly(service, "latency_p95_seconds", aslot, float(call.latency_seconds), True)
            self._add_anomaly(service, "error_rate", aslot, 1.0 if record.error else 0.0)
            if record.cost_usd is not None and math.isfinite(record.cost_usd):
                self._add_anomaly(service, "cost_per_request_usd", aslot, float(record.cost_usd))
            if call.session_id:
                unit = call.user_id or f"session:{call.session_id}"
                for exp in record.experiments:
                    self._add_session((exp.id, str(call.session_id)), exp.variant, unit, 1, t, t)
            seg = call_segment(record, self.cfg["concept_drift"]["segment_attribute"])
            if seg is not None:
                self.concept.remember(seg[0], service, seg[2])

    def _add_session(self, key: tuple[str, str], variant: str, unit: str, messages: int,
                     first: float, last: float) -> None:
        """Count `messages` calls of a session (a new one takes the variant and unit given; the
        oldest session goes past engagement.max_sessions, counted). Caller holds self.lock."""
        s = self.sessions.get(key)
        if s is None:
            if len(self.sessions) >= self.cfg["engagement"]["max_sessions"]:
                old = next(iter(self.sessions))
                del self.sessions[old]
                self._deleted_sessions.add(old)
                self._drop("sessions")
            s = self.sessions[key] = Session(key[0], variant, unit, 0, first, last)
        s.messages += messages
        s.first_unix = min(s.first_unix, first)
        s.last_unix = max(s.last_unix, last)
        self._dirty_sessions.add(key)

    @staticmethod
    def _slot(table: dict, key: tuple[str, str], slot: int, factory: Any) -> Any:
        """table[key][slot], created (by factory()) when missing."""
        slots = table.get(key)
        if slots is None:
            slots = table[key] = {}
        got = slots.get(slot)
        if got is None:
            got = slots[slot] = factory()
        return got

    def _add_drift(self, service: str, feature: str, value: Any, t: float) -> None:
        dcfg = self.cfg["drift"]
        numeric = feature in NUMERIC_FEATURES or feature.startswith("judge_score")
        x = _num(value)
        if feature.startswith("attr:"):
            numeric = x is not None
        slot = slot_of(t, dcfg["slot_seconds"])
        ds = self._slot(self.drift, (service, feature), slot, DriftSlot)
        if numeric:
            if x is None:
                return
            ds.add_numeric(x, dcfg["reservoir_size"], self._rng)
        else:
            ds.add_category(str(value)[:100], dcfg["max_categories"])
        self._dirty_drift.add((service, feature, slot))

    def _add_anomaly(self, service: str, series: str, slot: int, x: float, histogram: bool = False) -> None:
        self._slot(self.anomaly, (service, series), slot, AnomalySlot).add(x, histogram)
        self._dirty_anomaly.add((service, series, slot))

    def on_evaluation(self, record: EvaluationRecord) -> None:
        try:
            self._on_evaluation(record)
        except Exception:
            self.errors += 1
            if self.errors <= 5:
                log.exception("analysis on_evaluation failed")

    def _on_evaluation(self, record: EvaluationRecord) -> None:
        attrs = record.attributes or {}
        t = record.time_unix_nano / 1e9 if record.time_unix_nano else self._now()
        if record.name == semconv.INTERLEAVING_EVALUATION or semconv.INTERLEAVING_ID in attrs:
            self._on_comparison(attrs)
            return
        if record.error or record.score is None or not math.isfinite(record.score):
            return
        service = self._bound("service", record.service or "unknown_service")
        name = self._bound("evaluator", record.name)
        cslot = slot_of(t, self.cfg["drift"]["slot_seconds"])
        with self.lock:
            if record.source in semconv.JUDGE_SOURCES:
                self.concept.observe(record.trace_id, record.span_id, f"judge_score:{name}", float(record.score),
                                     cslot, self._rng)
                if len(self.judge_names) < 1000 or record.name in self.judge_names:
                    self.judge_names.add(record.name)
                if "judge_score" in self.cfg["drift"]["features"]:
                    self._add_drift(service, f"judge_score:{name}", record.score, t)
                self._add_anomaly(service, f"judge_score:{name}",
                                  slot_of(t, self.cfg["anomaly"]["slot_seconds"]), float(record.score))
            elif record.source in ("user", "human"):
                if len(self.feedback_names) < 1000 or record.name in self.feedback_names:
                    self.feedback_names.add(record.name)
                if record.kind in ("binary", "outcome", "scale"):
                    value = float(record.score) if record.kind == "scale" else \
                        (1.0 if is_positive(record.score, record.label) else 0.0)
                    self.concept.observe(record.trace_id, record.span_id, f"feedback:{name}", value, cslot, self._rng)
                self._add_anomaly(service, f"feedback_positive_rate:{name}",
                                  slot_of(t, self.cfg["anomaly"]["slot_seconds"]),
                                  1.0 if record.score > 0 else 0.0)

    def _on_comparison(self, attrs: Mapping[str, Any]) -> None:
        cid = attrs.get(semconv.INTERLEAVING_ID)
        winner, loser = attrs.get(semconv.INTERLEAVING_WINNER), attrs.get(semconv.INTERLEAVING_LOSER)
        if not cid or not winner or not loser or winner == loser:
            with self.lock:
                self._drop("interleaving_malformed")
            return
        first = attrs.get(semconv.INTERLEAVING_FIRST_SHOWN)
        with self.lock:
            c = self.comparisons.get(str(cid))
            if c is None:
                if len(self.comparisons) >= 50:
                    self._drop("interleaving_experiments")
                    return
                c = self.comparisons[str(cid)] = Comparisons()
            ok = c.record(str(winner), str(loser), as_bool(attrs.get(semconv.INTERLEAVING_TIE, False)),
                          str(first) if first is not None else None, self.cfg["interleaving"]["max_arms"])
            if ok:
                self._dirty_comparisons.add(str(cid))
            else:
                self._drop("interleaving_arms")

    # --- analysis (analysis thread) ---
    def tick(self, now: float) -> None:
        snapshot = self.ctx.experiment_snapshot()  # before our lock: the core calls on_call under its own
        with self.lock:
            self._prune(now)
            engagement = self._engagement_summaries()
            comparisons = {k: (dict((a, ArmRecord(r.wins, r.losses, r.ties)) for a, r in c.arms.items()),
                               c.total, c.decisive_with_position, c.first_wins) for k, c in self.comparisons.items()}
            drift_input = self._drift_input(now)
            dcfg = self.cfg["drift"]
            concept_input = self.concept.windows(now, dcfg["current_seconds"], dcfg["reference_seconds"],
                                                 dcfg["slot_seconds"], self.cfg["concept_drift"]["max_pairs"], self._rng)
            anomaly_input = self._anomaly_input(now)
            judge_names = frozenset(self.judge_names)
            feedback_names = frozenset(self.feedback_names)
            bandits = {k: list(v["arms"]) for k, v in self.bandits.items()}
            running = dict(self.running)
        results: dict[str, Any] = {"experiments": {}, "bandits": {}, "drift": [], "anomaly": [],
                                   "interleaving": {}, "concept_drift": [], "computed_unix": now}
        new_running: dict[tuple[str, str, str], RunningSequence] = {}
        by_exp: dict[str, dict[tuple[str, str], RunningSequence]] = {}
        for (e, m, v), r in running.items():
            by_exp.setdefault(e, {})[(m, v)] = r
        for exp_id, snap in snapshot.items():
            try:
                details, exp_running = analyze_experiment(
                    snap, self.cfg, running=by_exp.get(exp_id, {}), is_bandit=exp_id in bandits,
                    judge_metrics=judge_names, feedback_metrics=feedback_names,
                    engagement=engagement.get(exp_id), now=now)
            except Exception:
                log.exception("analysis of experiment %s failed", exp_id)
                continue
            results["experiments"][exp_id] = prune_none(details)
            new_running.update({(exp_id, m, v): r for (m, v), r in exp_running.items()})
        for bid, arms in bandits.items():
            results["bandits"][bid] = self._bandit(bid, arms, snapshot.get(bid), judge_names, feedback_names)
        results["interleaving"], inter_running = self._interleaving(comparisons, running)
        new_running.update(inter_running)
        results["drift"] = self._drift(drift_input)
        results["concept_drift"] = self._concept_drift(concept_input)
        results["anomaly"] = self._anomalies(anomaly_input, now)
        with self.lock:
            self.running.update(new_running)
        self.results = results  # atomic swap: readers see the old or the new result, never half

    def _prune(self, now: float) -> None:
        dcfg, acfg = self.cfg["drift"], self.cfg["anomaly"]
        d_cut = now - dcfg["reference_seconds"] - dcfg["current_seconds"] - dcfg["slot_seconds"]
        a_cut = now - (acfg["history_slots"] + 3) * acfg["slot_seconds"]
        for key, slots in list(self.drift.items()):
            for s in [s for s in slots if s < d_cut]:
                del slots[s]
            if not slots:
                del self.drift[key]
        for key, slots in list(self.anomaly.items()):
            for s in [s for s in slots if s < a_cut]:
                del slots[s]
            if not slots:
                del self.anomaly[key]
        self.concept.prune(d_cut)
        self._pruned_before = {"drift": d_cut, "anomaly": a_cut}

    def _engagement_summaries(self) -> dict[str, dict[str, dict[str, Any]]]:
        from ..stats.ratio import RatioSummary
        units: dict[tuple[str, str, str], list[float]] = {}
        for s in self.sessions.values():
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
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for (exp, variant), a in acc.items():
            e = out.setdefault(exp, {m: {} for m in ENGAGEMENT_METRICS})
            e["messages_per_session"][variant] = RatioSummary(int(a[0]), a[1], a[3], a[4], a[6], a[7])
            e["session_length_seconds"][variant] = RatioSummary(int(a[0]), a[2], a[3], a[5], a[6], a[8])
        return out

    def _reward_metric(self, snap: ExperimentSnapshot | None, judge_names: frozenset[str],
                       feedback_names: frozenset[str]) -> str | None:
        configured = self.cfg["bandits"]["reward"]
        if configured:
            return configured
        if snap is None:
            return None
        for pool in (feedback_names, judge_names):
            for m in sorted(snap.metrics):
                if m in pool:
                    return m
        return None

    def _bandit(self, bid: str, arms: list[str], snap: ExperimentSnapshot | None, judge_names: frozenset[str],
                feedback_names: frozenset[str]) -> dict[str, Any]:
        import numpy as np

        from ..stats import bandits as B

        bcfg = self.cfg["bandits"]
        all_arms = list(dict.fromkeys(list(arms) + (sorted(snap.metrics.get("exposures", {})) if snap else [])))
        metric = self._reward_metric(snap, judge_names, feedback_names)
        stats_by_arm = (snap.metrics.get(metric, {}) if snap and metric else {})
        lo, hi = bcfg["reward_min"], bcfg["reward_max"]
        binary = all(s.binary for s in stats_by_arm.values()) if stats_by_arm else True
        if lo is None or hi is None:
            lo, hi = (0.0, 1.0) if binary else (1.0, 5.0)
        span = (hi - lo) or 1.0
        arm_stats = {}
        for arm in all_arms:
            s = stats_by_arm.get(arm)
            if s is None or s.n == 0:
                arm_stats[arm] = B.ArmStats(0.0, 0.0)
            else:
                reward_sum = min(float(s.n), max(0.0, (s.sum - s.n * lo) / span))
                arm_stats[arm] = B.ArmStats(float(s.n), reward_sum)
        floor = min(float(bcfg["floor"]), 1.0 / len(all_arms)) if all_arms else 0.0
        alloc = B.allocate(arm_stats, algorithm=bcfg["algorithm"], floor=floor, burn_in=int(bcfg["burn_in"]),
                           epsilon=float(bcfg["epsilon"]), draws=int(bcfg["draws"]),
                           rng=np.random.default_rng(int(bcfg["seed"])))
        return prune_none({
            "bandit": bid, "algorithm": alloc.algorithm, "allocation": alloc.shares, "burn_in": alloc.burn_in,
            "reward_metric": metric, "probability_best": alloc.probability_best,
            "pulls": {a: s.n for a, s in arm_stats.items()},
            "mean_reward": {a: s.mean for a, s in arm_stats.items() if s.mean is not None},
            "expected_regret_per_pull": B.expected_regret(arm_stats, alloc.shares),
            "updated_unix": self._now(),
        })

    def _interleaving(self, comparisons: Mapping[str, Any],
                      running: Mapping[tuple[str, str, str], RunningSequence]) -> tuple[dict[str, Any], dict]:
        """Preference per arm with an always-valid p-value (Beta-binomial mixture on decisive
        outcomes, running minimum over ticks) and its verdict at alpha / (arms - 1). The running
        state keeps, in lower/upper, the preference at the look that set the minimum: the verdict's
        direction is that of the evidence, not of the latest look."""
        from ..stats import interleaving as I
        from ..stats.sequential import SequentialResult, beta_binomial_p_value
        alpha = float(self.cfg["alpha"])
        strength = float(self.cfg["interleaving"]["prior_strength"])
        out, new_running = {}, {}
        for cid, (arms, total, decisive, first_wins) in comparisons.items():
            family = max(1, len(arms) - 1)
            level = alpha / family
            per_arm = {}
            for arm, r in arms.items():
                p = I.preference(r.wins, r.losses, r.ties)
                look_p = beta_binomial_p_value(r.wins, r.losses, prior_strength=strength) if r.wins + r.losses else None
                key = (cid, INTERLEAVING_METRIC, arm)
                prev = running.get(key)
                pref = p.preference
                look = SequentialResult(look_p, pref, pref)
                if prev is None or abs(prev.level - level) > 1e-12:
                    run = RunningSequence.start(look, level)
                elif look_p is not None and (prev.p_value is None or look_p < prev.p_value):
                    run = RunningSequence(look_p, pref, pref, level)
                else:
                    run = prev
                if run.p_value is not None:
                    new_running[key] = run
                significant = run.p_value is not None and run.p_value <= level and run.lower
                verdict = ("better" if run.lower > 0 else "worse") if significant else \
                    ("collecting" if r.wins + r.losses else None)
                per_arm[arm] = prune_none({"wins": r.wins, "losses": r.losses, "ties": r.ties, "n": p.n,
                                           "preference": pref, "p_value": run.p_value,
                                           "p_value_fixed_horizon": p.p_value, "verdict": verdict})
            bias = I.position_bias(first_wins, decisive)
            out[cid] = prune_none({"comparisons": total, "arms": per_arm, "alpha": alpha, "family": family,
                                   "test": "always-valid Beta-binomial mixture on decisive outcomes",
                                   "position_bias": prune_none({
                "decisive": bias.decisive, "first_wins": bias.first_wins,
                "first_win_rate": bias.first_win_rate, "p_value": bias.p_value})})
        return out, new_running

    def _drift_input(self, now: float) -> list[tuple[str, str, str, Any, list[tuple]]]:
        """Under the lock: per (service, feature) the reference and current windows.

        Current slots are copied (still being written). For numeric features the reference is
        (ref_id, slots or None): None when the cached sorted reference for that ref_id is still
        valid; reference slots are closed, so their arrays are passed without copying (a late
        record changes the count and so the ref_id)."""
        dcfg = self.cfg["drift"]
        width = dcfg["slot_seconds"]
        cur_start = now - dcfg["current_seconds"]
        ref_start = cur_start - dcfg["reference_seconds"] - width
        out = []
        for (service, feature), slots in self.drift.items():
            cur, ref = [], []
            numeric = False
            lo = hi = None
            n_ref = 0
            for s, ds in slots.items():
                numeric = numeric or len(ds.values) > 0
                if s + width > cur_start:
                    cur.append((s, ds.count, ds.values[:], dict(ds.categories) if ds.categories else None))
                elif s >= ref_start:
                    ref.append((s, ds))
                    n_ref += ds.count
                    lo = s if lo is None or s < lo else lo
                    hi = s if hi is None or s > hi else hi
            if numeric:
                ref_id = (lo, hi, n_ref)
                cached = self._ref_cache.get((service, feature))
                slots_out = None if cached is not None and cached[0] == ref_id else \
                    [(s, ds.count, ds.values, None) for s, ds in ref]
                out.append((service, feature, "numeric", (ref_id, n_ref, slots_out), cur))
            else:
                out.append((service, feature, "categorical",
                            [(s, ds.count, None, dict(ds.categories) if ds.categories else None) for s, ds in ref], cur))
        return out

    def _drift(self, items: list[Any]) -> list[tuple[str, str, Any]]:
        import numpy as np

        if self._np_rng is None:
            self._np_rng = np.random.default_rng(int(self.cfg["bandits"]["seed"]))

        from ..stats import drift as D
        dcfg = self.cfg["drift"]
        out = []
        for service, feature, kind, ref, cur in items:
            n_ref = ref[1] if kind == "numeric" else sum(x[1] for x in ref)
            n_cur = sum(x[1] for x in cur)
            if n_ref < dcfg["min_samples"] or n_cur < dcfg["min_samples"]:
                continue
            try:
                if kind == "categorical":
                    rc: dict[str, float] = {}
                    cc: dict[str, float] = {}
                    for acc, slots in ((rc, ref), (cc, cur)):
                        for _, _, _, cats in slots:
                            for k, v in (cats or {}).items():
                                acc[k] = acc.get(k, 0) + v
                    results = D.categorical_drift(rc, cc, alpha=dcfg["p_threshold"], js_threshold=dcfg["js_threshold"],
                                                  rng=self._np_rng)
                else:
                    results = self._numeric_drift(service, feature, ref, cur, np, D)
            except Exception:
                log.exception("drift of %s/%s failed", service, feature)
                continue
            out.extend((service, feature, r) for r in results)
        live = {(s, f) for s, f, _, _, _ in items}
        for key in [k for k in self._ref_cache if k not in live]:
            del self._ref_cache[key]
        return out

    def _numeric_drift(self, service: str, feature: str, ref: tuple, cur: list[tuple], np: Any, D: Any) -> list[Any]:
        """KS on unweighted samples of both windows (deciding) and JS/PSI on shared bins of the
        weighted windows (effect sizes). The reference's sorted values and its KS sample are cached
        while the reference slots are unchanged, so the reference is fixed between ticks."""
        dcfg = self.cfg["drift"]
        key = (service, feature)
        ref_id, _, ref = ref
        cached = self._ref_cache.get(key)
        if ref is not None or cached is None:
            ref = ref or []
            parts = [(np.asarray(v, float), c / len(v)) for _, c, v, _ in ref if v]
            vals = np.concatenate([a for a, _ in parts]) if parts else np.empty(0)
            wts = np.concatenate([np.full(a.size, w) for a, w in parts]) if parts else np.empty(0)
            sv, cw = D.sorted_with_weights(vals, wts)
            sample = D.proportional_sample([(c, v) for _, c, v, _ in ref], int(dcfg["ks_reference_samples"]),
                                           self._np_rng)
            cached = (ref_id, (sv, cw, sample))
            self._ref_cache[key] = cached
        sv, cw, ref_sample = cached[1]
        parts = [(np.asarray(v, float), c / len(v)) for _, c, v, _ in cur if v]
        if sv.size == 0 or not parts:
            return []
        cur_vals = np.concatenate([a for a, _ in parts])
        cur_w = np.concatenate([np.full(a.size, w) for a, w in parts])
        lo, hi = min(sv[0], cur_vals.min()), max(sv[-1], cur_vals.max())
        if lo == hi:
            edges = np.array([lo - 0.5, hi + 0.5])
        else:  # Sturges on both windows together, as np.histogram_bin_edges(concat, "sturges")
            bins = int(np.ceil(np.log2(sv.size + cur_vals.size)) + 1)
            edges = np.linspace(lo, hi, bins + 1)
        hr = D.histogram_sorted(sv, cw, edges)
        hc, _ = np.histogram(cur_vals, bins=edges, weights=cur_w)
        results = D.drift_from_histograms(hr, hc, js_threshold=dcfg["js_threshold"],
                                          psi_threshold=dcfg["psi_threshold"], epsilon=dcfg["psi_epsilon"])
        cur_sample = D.proportional_sample([(c, v) for _, c, v, _ in cur], int(dcfg["ks_max_samples"]), self._np_rng)
        if ref_sample.size and cur_sample.size:
            results.append(D.ks_test(ref_sample, cur_sample, alpha=dcfg["p_threshold"]))
        return results

    def _concept_drift(self, items: list[tuple[str, str, list, list]]) -> list[dict[str, Any]]:
        """Per service and quality signal: each input segment's quality, current vs reference."""
        from ..stats import concept as C
        ccfg = self.cfg["concept_drift"]
        out = []
        for service, signal, ref, cur in items:
            if not ref or not cur:
                continue
            if ccfg["segment_attribute"]:
                known: dict[str, None] = {}
                for raw, _ in ref:
                    if raw not in known and len(known) < ccfg["max_segments"]:
                        known[raw] = None
                label = (lambda raw: raw if raw in known else "other")
                basis = f"attribute {ccfg['segment_attribute']}"
            else:
                edges = C.quantile_edges([float(raw) for raw, _ in ref], int(ccfg["quantile_bins"]))
                label = (lambda raw, e=edges: "input_length_" + C.bin_label(float(raw), e))
                basis = "input length quantiles " + ", ".join(f"{e:g}" for e in edges)
            try:
                segments, mix = C.concept_drift([(label(r), v) for r, v in ref], [(label(r), v) for r, v in cur],
                                                alpha=float(ccfg["p_threshold"]), min_samples=int(ccfg["min_samples"]))
            except Exception:
                log.exception("concept drift of %s/%s failed", service, signal)
                continue
            out.append(prune_none({
                "service": service, "signal": signal, "segments_by": basis,
                "mean_reference": mix.mean_reference, "mean_current": mix.mean_current,
                "explained_by_mix": mix.explained_by_mix, "unexplained": mix.unexplained,
                "segments": [prune_none({"segment": r.segment, "n_reference": r.n_reference, "n_current": r.n_current,
                                         "mean_reference": r.mean_reference, "mean_current": r.mean_current,
                                         "shift": r.score, "p_value": r.p_value, "threshold": r.threshold,
                                         "detected": r.detected}) for r in segments],
            }))
        return out

    def _anomaly_input(self, now: float) -> list[tuple[str, str, list[tuple[int, float, int]]]]:
        acfg = self.cfg["anomaly"]
        width = acfg["slot_seconds"]
        current = slot_of(now, width)
        out = []
        for (service, series), slots in self.anomaly.items():
            kind = "p95" if series == "latency_p95_seconds" else "mean"
            points = sorted((s, a.value(kind), a.n) for s, a in slots.items() if s < current)
            out.append((service, series, points))
        return out

    def _anomalies(self, items: list[Any], now: float) -> list[tuple[str, str, Any]]:
        from ..stats import anomaly as A
        acfg = self.cfg["anomaly"]
        width = acfg["slot_seconds"]
        out = []
        for service, series, points in items:
            points = [(s, v, n) for s, v, n in points if v is not None and n >= acfg["min_slot_samples"]]
            if not points:
                continue
            newest_slot, value, _ = points[-1]
            if newest_slot + 3 * width < now:
                continue  # no recent complete slot: nothing current to judge
            history = [v for _, v, _ in points[:-1]][-acfg["history_slots"]:]
            for r in A.detect_all(history, value, min_history=acfg["min_history"],
                                  z_threshold=acfg["z_threshold"], mad_threshold=acfg["mad_threshold"],
                                  ewma_lambda=acfg["ewma_lambda"], ewma_L=acfg["ewma_L"],
                                  floor_relative=acfg["sigma_floor_relative"]):
                if r.score is not None:
                    out.append((service, series, r))
        return out

    # --- publishing ---
    def collect(self) -> Iterable[Any]:
        res = self.results
        f = self.ctx.family
        g: dict[str, list[tuple[dict[str, str], float]]] = {}

        def put(name: str, labels: dict[str, str], value: Any) -> None:
            v = _num(value) if not isinstance(value, bool) else float(value)
            if v is not None:
                g.setdefault(name, []).append((labels, v))

        for exp_id, d in res.get("experiments", {}).items():
            if "srm" in d and "p_value" in d["srm"]:
                put("llm_eval_ab_srm_p_value", {"experiment": exp_id}, d["srm"]["p_value"])
            if "basis" in d:
                put("llm_eval_ab_basis", {"experiment": exp_id, "basis": d["basis"]}, 1.0)
            for variant, dv in d.get("decision", {}).get("variants", {}).items():
                put("llm_eval_ab_decision", {"experiment": exp_id, "variant": variant, "decision": dv["decision"],
                                             "reason": dv["reason"], "metric": dv.get("metric", "")}, 1.0)
            for metric, m in d.get("metrics", {}).items():
                for variant, v in m.get("variants", {}).items():
                    lab = {"experiment": exp_id, "metric": metric, "variant": variant}
                    put("llm_eval_ab_mean", lab, v.get("mean"))
                    put("llm_eval_ab_lift", lab, v.get("rel_lift"))
                    put("llm_eval_ab_lift_ci_lower", lab, v.get("rel_ci_lower"))
                    put("llm_eval_ab_lift_ci_upper", lab, v.get("rel_ci_upper"))
                    put("llm_eval_ab_p_value", lab, v.get("p_value"))
                    put("llm_eval_ab_p_value_adjusted", lab, v.get("p_value_adjusted"))
                    put("llm_eval_ab_always_valid_p_value", lab, v.get("always_valid_p_value"))
                    put("llm_eval_ab_required_samples", lab, v.get("required_samples"))
                    if "verdict" in v:
                        put("llm_eval_ab_verdict", dict(lab, verdict=v["verdict"]), 1.0)
            for variant, rate in d.get("judge_sample_rate", {}).get("rates", {}).items():
                put("llm_eval_judge_sample_rate", {"experiment": exp_id, "variant": variant}, rate)
        for cid, c in res.get("interleaving", {}).items():
            put("llm_eval_interleaving_comparisons", {"experiment": cid}, c.get("comparisons"))
            put("llm_eval_interleaving_first_position_win_rate", {"experiment": cid},
                c.get("position_bias", {}).get("first_win_rate"))
            for arm, a in c.get("arms", {}).items():
                put("llm_eval_interleaving_preference", {"experiment": cid, "variant": arm}, a.get("preference"))
                put("llm_eval_interleaving_p_value", {"experiment": cid, "variant": arm}, a.get("p_value"))
        for bid, b in res.get("bandits", {}).items():
            for arm, share in b.get("allocation", {}).items():
                put("llm_eval_bandit_allocation", {"bandit": bid, "arm": arm}, share)
            for arm, n in b.get("pulls", {}).items():
                put("llm_eval_bandit_pulls", {"bandit": bid, "arm": arm}, n)
            for arm, m in b.get("mean_reward", {}).items():
                put("llm_eval_bandit_mean_reward", {"bandit": bid, "arm": arm}, m)
            for arm, pb in (b.get("probability_best") or {}).items():
                put("llm_eval_bandit_probability_best", {"bandit": bid, "arm": arm}, pb)
            put("llm_eval_bandit_expected_regret", {"bandit": bid}, b.get("expected_regret_per_pull"))
        for service, feature, r in res.get("drift", []):
            lab = {"service": service, "feature": feature, "method": r.method}
            put("llm_eval_drift_score", lab, r.published)
            if r.detected is not None:
                put("llm_eval_drift_detected", lab, 1.0 if r.detected else 0.0)
        for c in res.get("concept_drift", []):
            for seg in c.get("segments", []):
                lab = {"service": c["service"], "signal": c["signal"], "segment": seg["segment"]}
                put("llm_eval_concept_drift_shift", lab, seg.get("shift"))
                put("llm_eval_concept_drift_p_value", lab, seg.get("p_value"))
                if "detected" in seg:
                    put("llm_eval_concept_drift_detected", lab, 1.0 if seg["detected"] else 0.0)
        for service, series, r in res.get("anomaly", []):
            lab = {"service": service, "metric": series, "method": r.method}
            put("llm_eval_anomaly_score", lab, r.score)
            if r.detected is not None:
                put("llm_eval_anomaly_detected", lab, 1.0 if r.detected else 0.0)
        for name in sorted(g):
            yield f(name, g[name])

    def experiment_details(self, experiment_id: str) -> Mapping[str, Any] | None:
        res = self.results
        out: dict[str, Any] = {}
        if experiment_id in res.get("experiments", {}):
            out["analysis"] = res["experiments"][experiment_id]
        if experiment_id in res.get("interleaving", {}):
            out["interleaving"] = res["interleaving"][experiment_id]
        if experiment_id in res.get("bandits", {}):
            out["bandit"] = res["bandits"][experiment_id]
        return out or None

    def drift_results(self) -> list[dict[str, Any]]:
        return [prune_none({"service": s, "feature": f, "method": r.method, "score": r.score, "p_value": r.p_value,
                            "threshold": r.threshold, "detected": r.detected}) for s, f, r in self.results.get("drift", [])]

    def anomaly_results(self) -> list[dict[str, Any]]:
        return [prune_none({"service": s, "metric": m, "method": r.method, "score": r.score, "p_value": r.p_value,
                            "threshold": r.threshold, "detected": r.detected})
                for s, m, r in self.results.get("anomaly", [])]

    def status(self) -> dict[str, Any]:
        with self.lock:
            return prune_none({
                "computed_unix": self.results.get("computed_unix"),
                "experiments": len(self.results.get("experiments", {})),
                "bandits": sorted(self.bandits),
                "sessions": len(self.sessions),
                "drift_features": len(self.drift),
                "anomaly_series": len(self.anomaly),
                "interleaving_comparisons": len(self.comparisons),
                "dropped": {**self.dropped, **self.concept.dropped},
                "concept_pending_calls": len(self.concept.pending),
                "errors": self.errors,
            })

    def bandit_allocation(self, bandit_id: str, arms: list[str] | None = None) -> dict[str, Any] | None:
        """Current allocation; registers the bandit (bounded) so later ticks publish it."""
        now = self._now()
        with self.lock:
            entry = self.bandits.get(bandit_id)
            if entry is None:
                if len(self.bandits) >= self.cfg["bandits"]["max_bandits"]:
                    self._drop("bandits")
                    registered = False
                else:
                    entry = self.bandits[bandit_id] = {"arms": [], "last_requested": now}
                    registered = True
            else:
                registered = True
            if entry is not None:
                if arms:
                    merged = list(dict.fromkeys(list(entry["arms"]) + [a for a in arms if a][:20]))[:20]
                    if merged != entry["arms"]:
                        entry["arms"] = merged
                entry["last_requested"] = now
                self._dirty_bandits.add(bandit_id)
            known = list(entry["arms"]) if entry else list(arms or [])
            judge_names, feedback_names = frozenset(self.judge_names), frozenset(self.feedback_names)
        cached = self.results.get("bandits", {}).get(bandit_id)
        if cached and set(known) <= set(cached.get("allocation", {})):
            return dict(cached, registered=registered)
        snap = self.ctx.experiment_snapshot().get(bandit_id)
        if snap is None and not known:
            return None
        return dict(self._bandit(bandit_id, known, snap, judge_names, feedback_names), registered=registered)

    def router(self) -> Any:
        from fastapi import APIRouter, HTTPException, Query

        r = APIRouter()

        @r.get("/v1/bandits/{bandit_id}")
        def bandit(bandit_id: str, arms: str | None = Query(None, max_length=2000)) -> dict[str, Any]:
            """Arm allocation of a bandit (traffic shares summing to 1). `arms` (comma-separated)
            names arms that may have no traffic yet. Registers the bandit for /metrics."""
            arm_list = [a.strip() for a in arms.split(",")] if arms else None
            out = self.bandit_allocation(bandit_id, arm_list)
            if out is None:
                raise HTTPException(404, f"unknown bandit {bandit_id!r}: no traffic yet; pass ?arms=a,b,c")
            return out

        @r.get("/v1/experiments/{experiment_id}/judge-rate")
        def judge_rate(experiment_id: str) -> dict[str, Any]:
            """Judge sample rate per variant that reaches the experiment's target sample size by its
            planned end at the least judge cost."""
            d = self.results.get("experiments", {}).get(experiment_id)
            if d is None or "judge_sample_rate" not in d:
                raise HTTPException(404, f"no judge sample rate for experiment {experiment_id!r} (yet)")
            return dict(d["judge_sample_rate"], experiment=experiment_id)

        @r.get("/v1/judge-rates")
        def judge_rates() -> dict[str, Any]:
            """Recommended judge sample rates for every experiment: {experiment: {variant: rate}}."""
            return {"experiments": {e: d["judge_sample_rate"].get("rates", {})
                                    for e, d in self.results.get("experiments", {}).items()
                                    if "judge_sample_rate" in d},
                    "computed_unix": self.results.get("computed_unix")}

        @r.get("/v1/interleaving")
        def interleaving() -> dict[str, Any]:
            """Preference, sign-test p-value and position bias per interleaving/pairwise comparison."""
            return {"interleaving": self.results.get("interleaving", {})}

        @r.get("/v1/analysis/status")
        def status() -> dict[str, Any]:
            """Health of the analysis loop: last pass, what was dropped at its bounds, errors."""
            return self.status()

        @r.get("/v1/drift")
        def drift() -> dict[str, Any]:
            """Drift scores per service, feature and method (reference vs current window)."""
            return {"drift": self.drift_results()}

        @r.get("/v1/concept-drift")
        def concept_drift() -> dict[str, Any]:
            """Quality per input segment, current vs reference window, per service and quality signal."""
            return {"concept_drift": self.results.get("concept_drift", [])}

        @r.get("/v1/anomalies")
        def anomalies() -> dict[str, Any]:
            """Anomaly scores of the newest complete slot per service, series and method."""
            return {"anomalies": self.anomaly_results()}

        return r

    # --- persistence (state thread) ---
    def load(self, conn: Any) -> None:
        conn.executescript("""
            CREATE TABLE IF NOT EXISTS analysis_sequential (experiment TEXT, metric TEXT, variant TEXT, p REAL,
                lower REAL, upper REAL, level REAL, restarts INTEGER DEFAULT 0,
                PRIMARY KEY (experiment, metric, variant));
            CREATE TABLE IF NOT EXISTS analysis_bandits (id TEXT PRIMARY KEY, arms TEXT, last_requested REAL);
            CREATE TABLE IF NOT EXISTS analysis_interleaving (id TEXT PRIMARY KEY, data TEXT);
            CREATE TABLE IF NOT EXISTS analysis_sessions (experiment TEXT, session TEXT, variant TEXT, unit TEXT,
                messages INTEGER, first_unix REAL, last_unix REAL, PRIMARY KEY (experiment, session));
            CREATE TABLE IF NOT EXISTS analysis_drift (service TEXT, feature TEXT, slot INTEGER, count INTEGER,
                data TEXT, PRIMARY KEY (service, feature, slot));
            CREATE TABLE IF NOT EXISTS analysis_anomaly (service TEXT, metric TEXT, slot INTEGER, n INTEGER,
                total REAL, buckets TEXT, PRIMARY KEY (service, metric, slot));
            CREATE TABLE IF NOT EXISTS analysis_names (kind TEXT, name TEXT, PRIMARY KEY (kind, name));
            CREATE TABLE IF NOT EXISTS analysis_concept (service TEXT, signal TEXT, slot INTEGER, count INTEGER,
                pairs TEXT, PRIMARY KEY (service, signal, slot));
        """)
        with self.lock:
            for e, m, v, p, lo, hi, fam, rs in conn.execute(
                    "SELECT experiment, metric, variant, p, lower, upper, level, restarts FROM analysis_sequential"):
                self.running[(e, m, v)] = RunningSequence(p, lo, hi, float(fam), int(rs or 0))
            for bid, arms, last in conn.execute("SELECT id, arms, last_requested FROM analysis_bandits"):
                self.bandits[bid] = {"arms": json.loads(arms or "[]"), "last_requested": last or 0.0}
            for cid, data in conn.execute("SELECT id, data FROM analysis_interleaving"):
                d = json.loads(data)
                self.comparisons[cid] = Comparisons({a: ArmRecord(*r) for a, r in d["arms"].items()}, d["total"],
                                                    d["decisive"], d["first_wins"])
            for e, s, v, u, m, f, l in conn.execute("SELECT experiment, session, variant, unit, messages, first_unix,"
                                                     " last_unix FROM analysis_sessions"):
                self.sessions[(e, s)] = Session(e, v, u, m, f, l)
            for svc, feat, slot, count, data in conn.execute("SELECT service, feature, slot, count, data FROM analysis_drift"):
                d = json.loads(data)
                self.drift.setdefault((svc, feat), {})[slot] = DriftSlot(count, d.get("values", []),
                                                                         d.get("categories") or None)
            for svc, met, slot, n, total, buckets in conn.execute(
                    "SELECT service, metric, slot, n, total, buckets FROM analysis_anomaly"):
                self.anomaly.setdefault((svc, met), {})[slot] = AnomalySlot(n, total, json.loads(buckets) if buckets else None)
            for svc, sig, slot, count, pairs in conn.execute(
                    "SELECT service, signal, slot, count, pairs FROM analysis_concept"):
                self.concept.slots.setdefault((svc, sig), {})[slot] = ConceptSlot(count, json.loads(pairs))
            for kind, name in conn.execute("SELECT kind, name FROM analysis_names"):
                (self.judge_names if kind == "judge" else self.feedback_names).add(name)

    def flush(self, conn: Any) -> None:
        with self.lock:
            running = [(*k, r.p_value, r.lower, r.upper, r.level, r.restarts) for k, r in self.running.items()]
            bandits = [(b, json.dumps(self.bandits[b]["arms"]), self.bandits[b]["last_requested"])
                       for b in self._dirty_bandits if b in self.bandits]
            comps = [(c, json.dumps({"arms": {a: [r.wins, r.losses, r.ties] for a, r in self.comparisons[c].arms.items()},
                                     "total": self.comparisons[c].total,
                                     "decisive": self.comparisons[c].decisive_with_position,
                                     "first_wins": self.comparisons[c].first_wins}))
                     for c in self._dirty_comparisons if c in self.comparisons]
            sessions = [(k[0], k[1], s.variant, s.unit, s.messages, s.first_unix, s.last_unix)
                        for k in self._dirty_sessions if (s := self.sessions.get(k)) is not None]
            deleted = list(self._deleted_sessions)
            drift = []
            for svc, feat, slot in self._dirty_drift:
                ds = self.drift.get((svc, feat), {}).get(slot)
                if ds is not None:
                    data = {"values": ds.values.tolist()} if ds.values else {"categories": dict(ds.categories or {})}
                    drift.append((svc, feat, slot, ds.count, json.dumps(data)))
            anomaly = []
            for svc, met, slot in self._dirty_anomaly:
                a = self.anomaly.get((svc, met), {}).get(slot)
                if a is not None:
                    anomaly.append((svc, met, slot, a.n, a.total, json.dumps(a.buckets) if a.buckets else None))
            names = [("judge", n) for n in self.judge_names] + [("feedback", n) for n in self.feedback_names]
            pruned = dict(self._pruned_before)
            concept = []
            for svc, sig, slot in self.concept.dirty:
                cs = self.concept.slots.get((svc, sig), {}).get(slot)
                if cs is not None:
                    concept.append((svc, sig, slot, cs.count, json.dumps(cs.pairs)))
            self.concept.dirty.clear()
            self._dirty_bandits.clear()
            self._dirty_comparisons.clear()
            self._dirty_sessions.clear()
            self._deleted_sessions.clear()
            self._dirty_drift.clear()
            self._dirty_anomaly.clear()
        conn.executemany("INSERT OR REPLACE INTO analysis_sequential VALUES (?, ?, ?, ?, ?, ?, ?, ?)", running)
        conn.executemany("INSERT OR REPLACE INTO analysis_bandits VALUES (?, ?, ?)", bandits)
        conn.executemany("INSERT OR REPLACE INTO analysis_interleaving VALUES (?, ?)", comps)
        conn.executemany("INSERT OR REPLACE INTO analysis_sessions VALUES (?, ?, ?, ?, ?, ?, ?)", sessions)
        conn.executemany("DELETE FROM analysis_sessions WHERE experiment = ? AND session = ?", deleted)
        conn.executemany("INSERT OR REPLACE INTO analysis_drift VALUES (?, ?, ?, ?, ?)", drift)
        conn.executemany("INSERT OR REPLACE INTO analysis_anomaly VALUES (?, ?, ?, ?, ?, ?)", anomaly)
        conn.executemany("INSERT OR IGNORE INTO analysis_names VALUES (?, ?)", names)
        conn.executemany("INSERT OR REPLACE INTO analysis_concept VALUES (?, ?, ?, ?, ?)", concept)
        if "drift" in pruned:
            conn.execute("DELETE FROM analysis_drift WHERE slot < ?", (pruned["drift"],))
            conn.execute("DELETE FROM analysis_concept WHERE slot < ?", (pruned["drift"],))
            conn.execute("DELETE FROM analysis_anomaly WHERE slot < ?", (pruned["anomaly"],))
