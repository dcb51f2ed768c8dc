"""The drift plugin: the last hour against the day before, per service and feature."""

from __future__ import annotations

import numpy as np

from analysis_plugins import make, samples, get, call, T0


def test_drift_compares_the_last_hour_with_the_previous_day_per_feature(tmp_path):
    plugin, conn, ctx = make(tmp_path)
    rng = np.random.default_rng(3)
    i = 0
    for k in range(3000):  # reference: previous 24 h
        t = T0 - 3600 - 80000 * rng.random()
        plugin.on_call(call(i, t=t, latency=float(rng.lognormal(0, 0.3)), prompt="x" * int(rng.integers(10, 50))))
        i += 1
    for k in range(400):  # current hour: latency shifted, prompts unchanged, a new finish reason
        t = T0 - 3500 * rng.random()
        plugin.on_call(call(i, t=t, latency=float(rng.lognormal(0.4, 0.3)), prompt="x" * int(rng.integers(10, 50)),
                            finish="content_filter" if k % 5 == 0 else "stop"))
        i += 1
    plugin.tick(ctx.t)
    s = samples(plugin)
    assert get(s, "llm_eval_drift_detected", service="shop", feature="latency_seconds", method="ks") == 1.0
    assert get(s, "llm_eval_drift_score", service="shop", feature="latency_seconds", method="js") > 0.1
    assert get(s, "llm_eval_drift_detected", service="shop", feature="latency_seconds", method="js") is None
    assert get(s, "llm_eval_drift_detected", service="shop", feature="input_length", method="ks") == 0.0
    assert get(s, "llm_eval_drift_detected", service="shop", feature="finish_reason", method="chi2") == 1.0
    assert get(s, "llm_eval_drift_score", service="shop", feature="finish_reason", method="chi2") < 0.05
    before = plugin.drift.drift_results()
    plugin.flush(conn)
    conn.commit()
    again, _, _ = make(tmp_path, ctx=ctx)
    again.tick(ctx.t)
    after = {(d["feature"], d["method"]): d.get("detected") for d in again.drift.drift_results()}
    assert after == {(d["feature"], d["method"]): d.get("detected") for d in before}
