"""Drift: has the traffic changed? Data drift per service and feature (the last hour vs the day
before: Kolmogorov–Smirnov on numbers, a contingency chi-square on categories; JS and PSI as
effect sizes) and concept drift (each input segment's quality, current vs reference window).

`DriftPlugin` (name "drift", config `analysis.drift` and `analysis.concept_drift`):
- ingest (ingest thread, O(1), never raises): `DriftSummarizer` puts a batch's feature values into
  per-slot reservoirs and remembers each call's input segment; `on_evaluation` adds judge scores
  (feature `judge_score:<name>`) and joins quality signals to their call's segment.
- `tick(now)` (analysis thread): tests every (service, feature) and (service, signal); the
  reference window's sorted values and KS sample are cached while its slots are unchanged.
- `GET /v1/drift`, `GET /v1/concept-drift`; gauges `llm_eval_drift_{score,detected}` and
  `llm_eval_concept_drift_{shift,p_value,detected}`.
- tables `analysis_drift` and `analysis_concept` (one row per slot), so a restart resumes.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from typing import Any, Iterable, Mapping

from .... import semconv
from .. import CallRecord, CallSummarizer, EvaluationRecord
from .._analysis import StatisticsPlugin, gauges, is_comparison, merge, prune_none, slot_entry, slot_of
from ...feedback_kinds import is_positive, number
from .concept_windows import ConceptSlot, ConceptWindows
from .windows import DriftSlot

CONFIG_DEFAULTS: dict[str, Any] = {
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
        "seed": 0,                     # of the reservoirs' and the KS samples' random draws
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
}

NUMERIC_FEATURES = {"input_tokens", "output_tokens", "latency_seconds", "input_length", "output_length", "cost_usd"}
#: the call fields drift can follow, in the order of the tuple DriftSummarizer.add builds
CALL_FEATURES = ("input_tokens", "output_tokens", "latency_seconds", "cost_usd", "input_length",
                 "output_length", "finish_reason")


def call_values(record: CallRecord) -> tuple:
    """The call's values of CALL_FEATURES, in that order (None when unknown)."""
    call = record.call
    return (call.input_tokens, call.output_tokens, call.latency_seconds, record.cost_usd,
            len(call.prompt) if call.prompt is not None else None,
            len(call.completion) if call.completion is not None else None, call.finish_reason)


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


class DriftSummarizer(CallSummarizer):
    """The per-call half of the plugin, per batch: feature values per (raw service, slot) and the
    calls' segments; the plugin merges them (the same state as call by call; the reservoirs draw
    their random numbers in another order)."""

    def __init__(self, config: Mapping[str, Any]):
        super().__init__(config)
        cfg = merge(CONFIG_DEFAULTS, config)
        # (position in call_values, feature, numeric?) in the configured order
        self._plan = tuple((CALL_FEATURES.index(f), f, f in NUMERIC_FEATURES)
                           for f in cfg["drift"]["features"] if f in CALL_FEATURES)
        self._attributes = tuple((a, f"attr:{a}") for a in cfg["drift"]["attributes"] or ())
        self._slot = cfg["drift"]["slot_seconds"]
        self._segment_attribute = cfg["concept_drift"]["segment_attribute"]
        self._reset()

    def _reset(self) -> None:
        self.drift: dict[tuple, dict] = {}     # (service, slot) -> {feature: [numeric values, {category: n}]}
        self.untimed: list[CallRecord] = []    # no end time: the plugin applies these with its clock
        self.segments: list[tuple] = []        # (trace+span hex, service, raw segment)

    def add(self, record: CallRecord) -> None:
        if not record.end_time_unix_nano:
            self.untimed.append(record)
            return
        seg = call_segment(record, self._segment_attribute)
        if seg is not None:
            self.segments.append(seg)
        slot_key = (record.service or "unknown_service", slot_of(record.end_time_unix_nano / 1e9, self._slot))
        features = self.drift.get(slot_key)
        if features is None:
            features = self.drift[slot_key] = {}
        values = call_values(record)
        for i, feature, numeric in self._plan:
            value = values[i]
            if value is not None:
                self._add(features, feature, numeric, value)
        if self._attributes:
            attrs = record.attributes or {}
            for attr, feature in self._attributes:
                value = attrs.get(attr)
                if value is not None:
                    self._add(features, feature, number(value) is not None, value)

    @staticmethod
    def _add(features: dict, feature: str, numeric: bool, value: Any) -> None:
        entry = features.get(feature)
        if entry is None:
            entry = features[feature] = [[], None]
        if numeric:
            x = number(value)
            if x is not None:
                entry[0].append(x)
        else:
            cats = entry[1]
            if cats is None:
                cats = entry[1] = {}
            c = str(value)[:100]
            cats[c] = cats.get(c, 0) + 1

    def result(self) -> Any:
        if not (self.drift or self.untimed or self.segments):
            return None
        drift = {(service, feature, slot): entry for (service, slot), features in self.drift.items()
                 for feature, entry in features.items()}
        out = (drift, self.untimed, self.segments)
        self._reset()
        return out


class DriftPlugin(StatisticsPlugin):
    name = "drift"
    CONFIG_DEFAULTS = CONFIG_DEFAULTS
    summarizer = DriftSummarizer

    def __init__(self) -> None:
        super().__init__()
        self.slots: dict[tuple[str, str], dict[int, DriftSlot]] = {}
        self.concept = self._concept_windows()
        self._rng = random.Random(0)
        self._np_rng: Any = None  # numpy Generator for the KS samples, made on first use (numpy is lazy here)
        self._dirty: set[tuple[str, str, int]] = set()
        self._pruned_before: float | None = None
        self._ref_cache: dict[tuple[str, str], tuple[tuple[int, int, int], Any]] = {}
        self.results = {"drift": [], "concept_drift": []}

    def _concept_windows(self) -> ConceptWindows:
        ccfg = self.cfg["concept_drift"]
        return ConceptWindows(pending_calls=ccfg["pending_calls"], reservoir_size=ccfg["reservoir_size"])

    def attach(self, ctx: Any) -> None:
        super().attach(ctx)
        self.concept = self._concept_windows()
        self._rng = random.Random(int(self.cfg["drift"]["seed"]))

    # --- ingest thread ---
    def on_call(self, record: CallRecord) -> None:
        self.guarded("on_call", self._on_call, record)

    def on_call_summary(self, summary: Any) -> None:
        self.guarded("on_call_summary", self._apply_summary, summary)

    def on_evaluation(self, record: EvaluationRecord) -> None:
        self.guarded("on_evaluation", self._on_evaluation, record)

    def _apply_summary(self, summary: Any) -> None:
        drift, untimed, segments = summary
        dcfg = self.cfg["drift"]
        cap, max_categories = dcfg["reservoir_size"], dcfg["max_categories"]
        service_of = self.service_binder()
        with self.lock:
            for (raw, feature, slot), (values, categories) in drift.items():
                service = service_of(raw)
                ds = self._slot(service, feature, slot)
                if values:
                    ds.add_numeric_many(values, cap, self._rng)
                for c, n in (categories or {}).items():
                    ds.add_category(c, max_categories, n)
            for key, raw_service, raw in segments:
                self.concept.remember(key, service_of(raw_service), raw)
        for record in untimed:
            self._on_call(replace(record, service=service_of(record.service or "unknown_service")))

    def _on_call(self, record: CallRecord) -> None:
        t = record.end_time_unix_nano / 1e9 if record.end_time_unix_nano else self.now()
        service = self.bound("service", record.service or "unknown_service")
        dcfg = self.cfg["drift"]
        values = dict(zip(CALL_FEATURES, call_values(record)))
        with self.lock:
            for f in dcfg["features"]:
                if values.get(f) is not None:
                    self._add(service, f, values[f], t)
            for attr in dcfg["attributes"] or ():
                v = record.attributes.get(attr) if record.attributes else None
                if v is not None:
                    self._add(service, f"attr:{attr}", v, t)
            seg = call_segment(record, self.cfg["concept_drift"]["segment_attribute"])
            if seg is not None:
                self.concept.remember(seg[0], service, seg[2])

    def _on_evaluation(self, record: EvaluationRecord) -> None:
        if is_comparison(record) or record.error or record.score is None or not math.isfinite(record.score):
            return
        t = record.time_unix_nano / 1e9 if record.time_unix_nano else self.now()
        service = self.bound("service", record.service or "unknown_service")
        name = self.bound("evaluator", record.name)
        slot = slot_of(t, self.cfg["drift"]["slot_seconds"])
        with self.lock:
            if record.source in semconv.JUDGE_SOURCES:
                self.concept.observe(record.trace_id, record.span_id, f"judge_score:{name}", float(record.score),
                                     slot, self._rng)
                if "judge_score" in self.cfg["drift"]["features"]:
                    self._add(service, f"judge_score:{name}", record.score, t)
            elif record.source in ("user", "human") and record.kind in ("binary", "outcome", "scale"):
                value = float(record.score) if record.kind == "scale" else \
                    (1.0 if is_positive(record.score, record.label) else 0.0)
                self.concept.observe(record.trace_id, record.span_id, f"feedback:{name}", value, slot, self._rng)

    def _slot(self, service: str, feature: str, slot: int) -> DriftSlot:
        """The slot's reservoir, created when missing and marked for the next flush (caller holds the lock)."""
        self._dirty.add((service, feature, slot))
        return slot_entry(self.slots, (service, feature), slot, DriftSlot)

    def _add(self, service: str, feature: str, value: Any, t: float) -> None:
        dcfg = self.cfg["drift"]
        x = number(value)
        numeric = x is not None if feature.startswith("attr:") else \
            (feature in NUMERIC_FEATURES or feature.startswith("judge_score"))
        if numeric and x is None:
            return
        ds = self._slot(service, feature, slot_of(t, dcfg["slot_seconds"]))
        if numeric:
            ds.add_numeric(x, dcfg["reservoir_size"], self._rng)
        else:
            ds.add_category(str(value)[:100], dcfg["max_categories"])

    # --- analysis thread ---
    def tick(self, now: float) -> None:
        dcfg = self.cfg["drift"]
        with self.lock:
            cut = now - dcfg["reference_seconds"] - dcfg["current_seconds"] - dcfg["slot_seconds"]
            for key, slots in list(self.slots.items()):
                for s in [s for s in slots if s < cut]:
                    del slots[s]
                if not slots:
                    del self.slots[key]
            self.concept.prune(cut)
            self._pruned_before = cut
            drift_input = self._windows(now)
            concept_input = self.concept.windows(now, dcfg["current_seconds"], dcfg["reference_seconds"],
                                                 dcfg["slot_seconds"], self.cfg["concept_drift"]["max_pairs"], self._rng)
        self.results = {"drift": self._drift(drift_input), "concept_drift": self._concept_drift(concept_input),
                        "computed_unix": now}

    def _windows(self, now: float) -> list[tuple[str, str, str, Any, list[tuple]]]:
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
        for (service, feature), slots in self.slots.items():
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

        from ....stats import drift as D

        if self._np_rng is None:
            self._np_rng = np.random.default_rng(int(self.cfg["drift"]["seed"]))
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
                self.log.exception("drift of %s/%s failed", service, feature)
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
        from ....stats import concept as C
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
                self.log.exception("concept drift of %s/%s failed", service, signal)
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

    # --- publishing ---
    def collect(self) -> Iterable[Any]:
        def put_all(put: Any) -> None:
            for service, feature, r in self.results.get("drift", []):
                lab = {"service": service, "feature": feature, "method": r.method}
                put("llm_eval_drift_score", lab, r.published)
                if r.detected is not None:
                    put("llm_eval_drift_detected", lab, r.detected)
            for c in self.results.get("concept_drift", []):
                for seg in c.get("segments", []):
                    lab = {"service": c["service"], "signal": c["signal"], "segment": seg["segment"]}
                    put("llm_eval_concept_drift_shift", lab, seg.get("shift"))
                    put("llm_eval_concept_drift_p_value", lab, seg.get("p_value"))
                    if "detected" in seg:
                        put("llm_eval_concept_drift_detected", lab, seg["detected"])
        return gauges(self.ctx, put_all)

    def drift_results(self) -> list[dict[str, Any]]:
        return [prune_none({"service": s, "feature": f, "method": r.method, "score": r.score, "p_value": r.p_value,
                            "threshold": r.threshold, "detected": r.detected}) for s, f, r in self.results.get("drift", [])]

    def status(self) -> dict[str, Any]:
        with self.lock:
            base = super().status()
            return dict(base, dropped={**base["dropped"], **self.concept.dropped}, drift_features=len(self.slots),
                        concept_pending_calls=len(self.concept.pending))

    def router(self) -> Any:
        from fastapi import APIRouter

        r = APIRouter()

        @r.get("/v1/drift")
        def drift() -> dict[str, Any]:
            """Drift scores per service, feature and method (reference vs current window)."""
            return {"drift": self.drift_results()}

        @r.get("/v1/concept-drift")
        def concept_drift() -> dict[str, Any]:
            """Quality per input segment, current vs reference window, per service and quality signal."""
            return {"concept_drift": self.results.get("concept_drift", [])}

        return r

    # --- state thread ---
    def load(self, conn: Any) -> None:
        conn.executescript("""
            CREATE TABLE IF NOT EXISTS analysis_drift (service TEXT, feature TEXT, slot INTEGER, count INTEGER,
                data TEXT, PRIMARY KEY (service, feature, slot));
            CREATE TABLE IF NOT EXISTS analysis_concept (service TEXT, signal TEXT, slot INTEGER, count INTEGER,
                pairs TEXT, PRIMARY KEY (service, signal, slot));
        """)
        with self.lock:
            for svc, feat, slot, count, data in conn.execute("SELECT service, feature, slot, count, data FROM analysis_drift"):
                d = json.loads(data)
                self.slots.setdefault((svc, feat), {})[slot] = DriftSlot(count, d.get("values", []),
                                                                         d.get("categories") or None)
            for svc, sig, slot, count, pairs in conn.execute(
                    "SELECT service, signal, slot, count, pairs FROM analysis_concept"):
                self.concept.slots.setdefault((svc, sig), {})[slot] = ConceptSlot(count, json.loads(pairs))

    def flush(self, conn: Any) -> None:
        with self.lock:
            drift = []
            for svc, feat, slot in self._dirty:
                ds = self.slots.get((svc, feat), {}).get(slot)
                if ds is not None:
                    data = {"values": ds.values.tolist()} if ds.values else {"categories": dict(ds.categories or {})}
                    drift.append((svc, feat, slot, ds.count, json.dumps(data)))
            concept = []
            for svc, sig, slot in self.concept.dirty:
                cs = self.concept.slots.get((svc, sig), {}).get(slot)
                if cs is not None:
                    concept.append((svc, sig, slot, cs.count, json.dumps(cs.pairs)))
            self.concept.dirty.clear()
            self._dirty.clear()
            cut = self._pruned_before
        conn.executemany("INSERT OR REPLACE INTO analysis_drift VALUES (?, ?, ?, ?, ?)", drift)
        conn.executemany("INSERT OR REPLACE INTO analysis_concept VALUES (?, ?, ?, ?, ?)", concept)
        if cut is not None:
            conn.execute("DELETE FROM analysis_drift WHERE slot < ?", (cut,))
            conn.execute("DELETE FROM analysis_concept WHERE slot < ?", (cut,))
