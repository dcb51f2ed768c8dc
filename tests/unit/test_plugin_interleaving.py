"""The interleaving plugin: preference, always-valid p-value and position bias per comparison."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from analysis_plugins import make, samples, get, comparison


def test_interleaving_preference_sign_test_and_position_bias(tmp_path):
    plugin, conn, ctx = make(tmp_path)
    for k in range(10):
        plugin.on_evaluation(comparison("b", "a", first="b" if k < 8 else "a"))
    for k in range(3):
        plugin.on_evaluation(comparison("a", "b", first="b"))
    plugin.on_evaluation(comparison("a", "b", first="a", tie=True))
    plugin.tick(ctx.t)
    s = samples(plugin)
    assert get(s, "llm_eval_interleaving_preference", experiment="pair", variant="a") == pytest.approx(3.5 / 14 - 0.5)
    from otel_llm_eval.stats.sequential import beta_binomial_p_value
    # the published p is always-valid (Beta-binomial mixture); the sign test stays in the JSON
    assert get(s, "llm_eval_interleaving_p_value", experiment="pair", variant="a") == pytest.approx(
        beta_binomial_p_value(3, 10))
    assert plugin.results["interleaving"]["pair"]["arms"]["a"]["p_value_fixed_horizon"] == pytest.approx(0.092285, abs=1e-5)
    assert get(s, "llm_eval_interleaving_comparisons", experiment="pair") == 14
    assert get(s, "llm_eval_interleaving_first_position_win_rate", experiment="pair") == pytest.approx(8 / 13)
    app = FastAPI()
    app.include_router(plugin.router())
    body = TestClient(app).get("/v1/interleaving").json()["interleaving"]["pair"]
    assert body["arms"]["b"]["wins"] == 10 and body["position_bias"]["first_wins"] == 8
    plugin.flush(conn)
    conn.commit()
    again, _, _ = make(tmp_path, ctx=ctx)
    again.tick(ctx.t)
    assert again.results["interleaving"] == plugin.results["interleaving"]
