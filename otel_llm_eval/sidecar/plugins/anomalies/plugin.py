"""Anomalies: per service, latency p95, error rate, cost per request, each judge's score and each
feedback's positive rate per time slot; the newest complete slot is scored against the slots
before it (z-score, MAD, EWMA: otel_llm_eval.stats.anomaly).

`AnomaliesPlugin` (name "anomalies", config `analysis.anomaly`):
- ingest (ingest thread, O(1), never raises): `AnomalySummarizer` folds a batch's calls into slot
  aggregates where the spans are decoded; `on_evaluation` adds judge scores and feedback.
- `tick(now)` (analysis thread): scores every series, swaps in an immutable result.
- `GET /v1/anomalies`; gauges `llm_eval_anomaly_score` and `llm_eval_anomaly_detected`.
- table `analysis_anomaly` (one row per series and slot), so a restart resumes its history.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left
from dataclasses import replace
from typing import Any, Iterable, Mapping

from .... import semconv
from ....catalog import LATENCY_BUCKETS_SECONDS
from .. import CallRecord, CallSummarizer, EvaluationRecord
from .._analysis import StatisticsPlugin, gauges, is_comparison, merge, prune_none, slot_entry, slot_of
from .windows import AnomalySlot

CONFIG_DEFAULTS: dict[str, Any] = {
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


class AnomalySummarizer(CallSummarizer):
    """The per-call half of the plugin, per batch: (service, series, slot) -> [n, sum, latency
    buckets] with the raw service; calls without an end time are passed on whole."""

    def __init__(self, config: Mapping[str, Any]):
        super().__init__(config)
        self._slot = merge(CONFIG_DEFAULTS, config)["anomaly"]["slot_seconds"]
        self._reset()

    def _reset(self) -> None:
        self.slots: dict[tuple, list] = {}   # (service, slot) -> [latency n, sum, buckets, n, errors, cost n, sum]
        self.untimed: list[CallRecord] = []

    def add(self, record: CallRecord) -> None:
        if not record.end_time_unix_nano:
            self.untimed.append(record)
            return
        key = (record.service or "unknown_service", slot_of(record.end_time_unix_nano / 1e9, self._slot))
        a = self.slots.get(key)
        if a is None:
            a = self.slots[key] = [0, 0.0, None, 0, 0.0, 0, 0.0]
        latency = record.call.latency_seconds
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

    def result(self) -> Any:
        if not (self.slots or self.untimed):
            return None
        series = {}
        for (service, slot), (lat_n, lat_sum, buckets, n, errors, cost_n, cost_sum) in self.slots.items():
            if lat_n:
                series[(service, "latency_p95_seconds", slot)] = [lat_n, lat_sum, buckets]
            series[(service, "error_rate", slot)] = [n, errors, None]
            if cost_n:
                series[(service, "cost_per_request_usd", slot)] = [cost_n, cost_sum, None]
        out = (series, self.untimed)
        self._reset()
        return out


class AnomaliesPlugin(StatisticsPlugin):
    name = "anomalies"
    CONFIG_DEFAULTS = CONFIG_DEFAULTS
    summarizer = AnomalySummarizer

    def __init__(self) -> None:
        super().__init__()
        self.series: dict[tuple[str, str], dict[int, AnomalySlot]] = {}
        self._dirty: set[tuple[str, str, int]] = set()
        self._pruned_before: float | None = None
        self.results = {"anomaly": []}

    # --- ingest thread ---
    def on_call(self, record: CallRecord) -> None:
        self.guarded("on_call", self._on_call, record)

    def on_call_summary(self, summary: Any) -> None:
        self.guarded("on_call_summary", self._apply_summary, summary)

    def on_evaluation(self, record: EvaluationRecord) -> None:
        self.guarded("on_evaluation", self._on_evaluation, record)

    def _apply_summary(self, summary: Any) -> None:
        series, untimed = summary
        service_of = self.service_binder()
        with self.lock:
            for (raw, name, slot), (n, total, buckets) in series.items():
                service = service_of(raw)
                a = self._slot(service, name, slot)
                a.n += n
                a.total += total
                if buckets is not None:
                    a.buckets = buckets if a.buckets is None else [x + y for x, y in zip(a.buckets, buckets)]
        for record in untimed:
            self._on_call(replace(record, service=service_of(record.service or "unknown_service")))

    def _on_call(self, record: CallRecord) -> None:
        t = record.end_time_unix_nano / 1e9 if record.end_time_unix_nano else self.now()
        service = self.bound("service", record.service or "unknown_service")
        slot = slot_of(t, self.cfg["anomaly"]["slot_seconds"])
        call = record.call
        with self.lock:
            if call.latency_seconds is not None:
                self._slot(service, "latency_p95_seconds", slot).add(float(call.latency_seconds), True)
            self._slot(service, "error_rate", slot).add(1.0 if record.error else 0.0)
            if record.cost_usd is not None and math.isfinite(record.cost_usd):
                self._slot(service, "cost_per_request_usd", slot).add(float(record.cost_usd))

    def _on_evaluation(self, record: EvaluationRecord) -> None:
        if is_comparison(record) or record.error or record.score is None or not math.isfinite(record.score):
            return
        if record.source in semconv.JUDGE_SOURCES:
            series, value = "judge_score:", float(record.score)
        elif record.source in ("user", "human"):
            series, value = "feedback_positive_rate:", 1.0 if record.score > 0 else 0.0
        else:
            return
        t = record.time_unix_nano / 1e9 if record.time_unix_nano else self.now()
        service = self.bound("service", record.service or "unknown_service")
        name = self.bound("evaluator", record.name)
        with self.lock:
            self._slot(service, series + name, slot_of(t, self.cfg["anomaly"]["slot_seconds"])).add(value)

    def _slot(self, service: str, series: str, slot: int) -> AnomalySlot:
        """The slot's aggregate, created when missing and marked for the next flush (caller holds the lock)."""
        self._dirty.add((service, series, slot))
        return slot_entry(self.series, (service, series), slot, AnomalySlot)

    # --- analysis thread ---
    def tick(self, now: float) -> None:
        acfg = self.cfg["anomaly"]
        width = acfg["slot_seconds"]
        current = slot_of(now, width)
        with self.lock:
            cut = now - (acfg["history_slots"] + 3) * width
            for key, slots in list(self.series.items()):
                for s in [s for s in slots if s < cut]:
                    del slots[s]
                if not slots:
                    del self.series[key]
            self._pruned_before = cut
            items = [(service, series, sorted((s, a.value("p95" if series == "latency_p95_seconds" else "mean"), a.n)
                                              for s, a in slots.items() if s < current))
                     for (service, series), slots in self.series.items()]
        self.results = {"anomaly": self._score(items, now), "computed_unix": now}

    def _score(self, items: list[Any], now: float) -> list[tuple[str, str, Any]]:
        from ....stats import anomaly as A
        acfg = self.cfg["anomaly"]
        out = []
        for service, series, points in items:
            points = [(s, v, n) for s, v, n in points if v is not None and n >= acfg["min_slot_samples"]]
            if not points:
                continue
            newest_slot, value, _ = points[-1]
            if newest_slot + 3 * acfg["slot_seconds"] < now:
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
        def put_all(put: Any) -> None:
            for service, series, r in self.results.get("anomaly", []):
                lab = {"service": service, "metric": series, "method": r.method}
                put("llm_eval_anomaly_score", lab, r.score)
                if r.detected is not None:
                    put("llm_eval_anomaly_detected", lab, r.detected)
        return gauges(self.ctx, put_all)

    def anomaly_results(self) -> list[dict[str, Any]]:
        return [prune_none({"service": s, "metric": m, "method": r.method, "score": r.score, "p_value": r.p_value,
                            "threshold": r.threshold, "detected": r.detected})
                for s, m, r in self.results.get("anomaly", [])]

    def status(self) -> dict[str, Any]:
        with self.lock:
            return dict(super().status(), anomaly_series=len(self.series))

    def router(self) -> Any:
        from fastapi import APIRouter

        r = APIRouter()

        @r.get("/v1/anomalies")
        def anomalies() -> dict[str, Any]:
            """Anomaly scores of the newest complete slot per service, series and method."""
            return {"anomalies": self.anomaly_results()}

        return r

    # --- state thread ---
    def load(self, conn: Any) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS analysis_anomaly (service TEXT, metric TEXT, slot INTEGER, "
                     "n INTEGER, total REAL, buckets TEXT, PRIMARY KEY (service, metric, slot))")
        with self.lock:
            for svc, met, slot, n, total, buckets in conn.execute(
                    "SELECT service, metric, slot, n, total, buckets FROM analysis_anomaly"):
                self.series.setdefault((svc, met), {})[slot] = AnomalySlot(n, total,
                                                                           json.loads(buckets) if buckets else None)

    def flush(self, conn: Any) -> None:
        with self.lock:
            rows = []
            for svc, met, slot in self._dirty:
                a = self.series.get((svc, met), {}).get(slot)
                if a is not None:
                    rows.append((svc, met, slot, a.n, a.total, json.dumps(a.buckets) if a.buckets else None))
            self._dirty.clear()
            cut = self._pruned_before
        conn.executemany("INSERT OR REPLACE INTO analysis_anomaly VALUES (?, ?, ?, ?, ?, ?)", rows)
        if cut is not None:
            conn.execute("DELETE FROM analysis_anomaly WHERE slot < ?", (cut,))
