"""What the five statistics plugins share: bad records are counted, never raised; label values
past their caps fold into `other`; /v1/analysis/status merges them."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from otel_llm_eval import semconv
from otel_llm_eval.sidecar.plugins import EvaluationRecord
from analysis_plugins import Ctx, make, call, T0


def test_bad_records_are_dropped_and_counted_not_raised(tmp_path):
    plugin, _, ctx = make(tmp_path)
    plugin.on_evaluation(EvaluationRecord(name=semconv.INTERLEAVING_EVALUATION, source="user", trace_id=None,
                                          span_id=None, time_unix_nano=0, attributes={semconv.INTERLEAVING_ID: "x"}))
    plugin.on_call(None)  # type: ignore[arg-type]
    # each of the three plugins that read calls (experiments, drift, anomalies) counts it, none raises
    assert plugin.dropped["interleaving_malformed"] == 1 and plugin.errors == 3
    plugin.tick(ctx.t)
    app = FastAPI()
    app.include_router(plugin.router())
    status = TestClient(app).get("/v1/analysis/status").json()
    assert status["dropped"] == {"interleaving_malformed": 1} and status["errors"] == 3
    assert status["computed_unix"] == ctx.t and status["experiments"] == 0 and status["bandits"] == []


def test_service_and_evaluator_names_past_their_caps_fold_into_other(tmp_path):
    class Capped(Ctx):
        def bound(self, label, value):
            return value if value in ("shop", "quality") else "other"

    plugin, _, ctx = make(tmp_path, ctx=Capped())
    for i in range(200):
        plugin.on_call(call(i, service=f"svc{i}"))
        plugin.on_evaluation(EvaluationRecord(name=f"judge{i}", source="llm_judge", trace_id=None, span_id=None,
                                              time_unix_nano=int(T0 * 1e9), score=3.0, service="shop"))
    assert {s for s, f in plugin.drift.slots if f == "latency_seconds"} == {"other"}
    assert {m for s, m in plugin.anomalies.series if m.startswith("judge_score")} == {"judge_score:other"}
