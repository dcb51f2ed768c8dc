"""The bandits plugin: registration, allocation and its config errors."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from analysis_plugins import Ctx, make, samples, get, bern, snap, AnalysisPlugins


def test_bandit_route_registers_the_bandit_and_allocates_to_the_best_arm(tmp_path):
    plugin, conn, ctx = make(tmp_path, {"bandits": {"burn_in": 10, "floor": 0.02}})
    app = FastAPI()
    app.include_router(plugin.router())
    client = TestClient(app)
    r = client.get("/v1/bandits/models", params={"arms": "small,medium,large"})
    assert r.status_code == 200
    assert r.json()["allocation"] == pytest.approx({"small": 1 / 3, "medium": 1 / 3, "large": 1 / 3})
    assert r.json()["burn_in"] is True
    assert client.get("/v1/bandits/nothing").status_code == 404
    ctx.snapshot = {"models": snap("models", weights={"small": 1 / 3, "medium": 1 / 3, "large": 1 / 3}, metrics={
        "exposures": {"small": bern(300, 300), "medium": bern(300, 300), "large": bern(300, 300)},
        "thumbs": {"small": bern(300, 60), "medium": bern(300, 120), "large": bern(300, 180)},
    })}
    plugin.learn_feedback("thumbs")
    plugin.tick(ctx.t)
    s = samples(plugin)
    assert get(s, "llm_eval_bandit_allocation", bandit="models", arm="large") > 0.9
    assert get(s, "llm_eval_bandit_allocation", bandit="models", arm="small") == pytest.approx(0.02, abs=1e-3)
    assert get(s, "llm_eval_bandit_mean_reward", bandit="models", arm="medium") == pytest.approx(0.4)
    assert get(s, "llm_eval_bandit_pulls", bandit="models", arm="large") == 300
    body = client.get("/v1/bandits/models").json()
    assert body["reward_metric"] == "thumbs" and sum(body["allocation"].values()) == pytest.approx(1.0)
    # a bandit's weights move by design: no SRM verdict for it
    assert get(s, "llm_eval_ab_srm_p_value", experiment="models") is None
    plugin.flush(conn)
    conn.commit()
    again, _, _ = make(tmp_path, ctx=ctx)
    assert again.bandits.bandits["models"]["arms"] == ["small", "medium", "large"]


def test_unknown_bandit_algorithm_is_a_clear_config_error():
    with pytest.raises(ValueError, match="bandits.algorithm"):
        AnalysisPlugins().attach(Ctx({"bandits": {"algorithm": "softmax"}}))
