"""The anomalies plugin: the newest complete slot against its history."""

from __future__ import annotations

import numpy as np

from otel_llm_eval.sidecar.plugins import EvaluationRecord
from analysis_plugins import make, samples, get, T0


def test_anomaly_flags_a_quality_drop_after_enough_history_and_not_before(tmp_path):
    plugin, _, ctx = make(tmp_path, {"anomaly": {"slot_seconds": 60, "min_history": 12}})
    rng = np.random.default_rng(4)

    def judge(score, t):
        return EvaluationRecord(name="quality", source="llm_judge", trace_id=None, span_id=None,
                                time_unix_nano=int(t * 1e9), score=score, service="shop")

    start = T0 - 30 * 60
    for slot in range(30):
        for k in range(20):
            plugin.on_evaluation(judge(float(rng.normal(4.0, 0.5)), start + slot * 60 + k))
    plugin.tick(start + 5 * 60 + 1)  # only 5 complete slots: no verdict yet
    assert samples(plugin).get(("llm_eval_anomaly_detected", (("method", "zscore"), ("metric", "judge_score:quality"),
                                                              ("service", "shop")))) is None
    for k in range(20):
        plugin.on_evaluation(judge(float(rng.normal(2.0, 0.5)), T0 + k))
    ctx.t = T0 + 61
    plugin.tick(ctx.t)
    s = samples(plugin)
    for method in ("zscore", "mad"):
        assert get(s, "llm_eval_anomaly_detected", service="shop", metric="judge_score:quality", method=method) == 1.0
    assert get(s, "llm_eval_anomaly_score", service="shop", metric="judge_score:quality", method="zscore") < -3
