"""The experiments plugin: A/B statistics, SRM, always-valid verdicts, the decision, engagement and
the judge sample-rate plan, from snapshots and ingest records to catalog gauges and JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from otel_llm_eval.stats import ab, srm
from analysis_plugins import make, samples, get, ms, bern, snap, call, T0


def test_ab_gauges_and_json_carry_the_chi_square_p_value_lift_srm_and_verdict(tmp_path):
    plugin, _, ctx = make(tmp_path)
    ctx.snapshot = {"exp": snap(metrics={
        "exposures": {"control": bern(10000, 10000), "treatment": bern(10050, 10050)},
        "units": {"control": bern(10000, 10000), "treatment": bern(10050, 10050)},
        "thumbs": {"control": bern(5000, 500), "treatment": bern(5000, 650)},
    })}
    plugin.tick(ctx.t)
    s = samples(plugin)
    expected = ab.compare(ab.Summary(5000, 500, 500), ab.Summary(5000, 650, 650), binary=True)
    lab = dict(experiment="exp", metric="thumbs", variant="treatment")
    assert get(s, "llm_eval_ab_p_value", **lab) == pytest.approx(expected.p_value, rel=1e-9)
    assert get(s, "llm_eval_ab_lift", **lab) == pytest.approx(0.3)
    # the published interval is the always-valid one: wider than the fixed-horizon interval, and on
    # the side of zero the verdict says
    lo, hi = get(s, "llm_eval_ab_lift_ci_lower", **lab), get(s, "llm_eval_ab_lift_ci_upper", **lab)
    assert 0 < lo < expected.rel_ci_lower and hi > expected.rel_ci_upper
    assert get(s, "llm_eval_ab_p_value_adjusted", **lab) == get(s, "llm_eval_ab_always_valid_p_value", **lab)
    assert get(s, "llm_eval_ab_basis", experiment="exp", basis="call") == 1.0
    assert get(s, "llm_eval_ab_srm_p_value", experiment="exp") == pytest.approx(0.72400, abs=1e-5)
    assert get(s, "llm_eval_ab_mean", experiment="exp", metric="thumbs", variant="control") == pytest.approx(0.1)
    assert get(s, "llm_eval_ab_verdict", verdict="better", **lab) == 1.0
    assert get(s, "llm_eval_ab_always_valid_p_value", **lab) < 0.05
    assert get(s, "llm_eval_ab_required_samples", **lab) > 0
    details = plugin.experiment_details("exp")
    text = json.dumps(details, allow_nan=False)  # never NaN/Inf in JSON
    v = details["analysis"]["metrics"]["thumbs"]["variants"]["treatment"]
    assert v["verdict_text"] == "better than control" and v["test"] == "chi2"
    assert "null" not in text  # undefined values are omitted, not null


def test_sample_ratio_mismatch_overrides_the_verdict(tmp_path):
    plugin, _, ctx = make(tmp_path)
    ctx.snapshot = {"exp": snap(metrics={
        "exposures": {"control": bern(1000, 1000), "treatment": bern(1200, 1200)},
        "units": {"control": bern(1000, 1000), "treatment": bern(1200, 1200)},
        "thumbs": {"control": bern(1000, 100), "treatment": bern(1200, 200)},
    })}
    plugin.tick(ctx.t)
    s = samples(plugin)
    p = srm.srm({"control": 1000, "treatment": 1200}, {"control": 0.5, "treatment": 0.5}).p_value
    assert get(s, "llm_eval_ab_srm_p_value", experiment="exp") == pytest.approx(p) and p < 0.001
    assert get(s, "llm_eval_ab_verdict", experiment="exp", metric="thumbs", variant="treatment", verdict="srm") == 1.0


def test_welch_is_used_for_continuous_metrics_and_lower_latency_is_better(tmp_path):
    plugin, _, ctx = make(tmp_path)
    rng = np.random.default_rng(0)
    c, t = rng.normal(2.0, 0.5, 3000), rng.normal(1.8, 0.5, 3000)
    ctx.snapshot = {"exp": snap(metrics={"latency_seconds": {"control": ms(c), "treatment": ms(t)}})}
    plugin.tick(ctx.t)
    v = plugin.experiment_details("exp")["analysis"]["metrics"]["latency_seconds"]["variants"]["treatment"]
    from scipy import stats as st
    assert v["test"] == "welch"
    assert v["p_value"] == pytest.approx(st.ttest_ind(t, c, equal_var=False).pvalue, rel=1e-6)
    assert v["verdict"] == "better"


def test_zero_variance_and_single_samples_publish_means_but_no_p_values(tmp_path):
    plugin, _, ctx = make(tmp_path)
    ctx.snapshot = {"exp": snap(metrics={"score": {"control": ms([3.0, 3.0, 3.0]), "treatment": ms([4.0])}})}
    plugin.tick(ctx.t)
    s = samples(plugin)
    lab = dict(experiment="exp", metric="score", variant="treatment")
    assert get(s, "llm_eval_ab_mean", **lab) == 4.0
    assert get(s, "llm_eval_ab_p_value", **lab) is None
    assert get(s, "llm_eval_ab_verdict", verdict="collecting", **lab) == 1.0


def test_always_valid_p_value_never_rises_between_ticks_and_survives_a_restart(tmp_path):
    plugin, conn, ctx = make(tmp_path)
    ctx.snapshot = {"exp": snap(metrics={"thumbs": {"control": bern(3000, 300), "treatment": bern(3000, 390)}})}
    plugin.tick(ctx.t)
    first = plugin.experiment_details("exp")["analysis"]["metrics"]["thumbs"]["variants"]["treatment"]
    ctx.snapshot = {"exp": snap(metrics={"thumbs": {"control": bern(6000, 600), "treatment": bern(6000, 610)}})}
    plugin.tick(ctx.t)
    second = plugin.experiment_details("exp")["analysis"]["metrics"]["thumbs"]["variants"]["treatment"]
    assert second["always_valid_p_value"] == first["always_valid_p_value"]
    assert second["p_value"] > first["p_value"]
    plugin.flush(conn)
    conn.commit()
    again, _, _ = make(tmp_path, ctx=ctx)
    again.tick(ctx.t)
    third = again.experiment_details("exp")["analysis"]["metrics"]["thumbs"]["variants"]["treatment"]
    assert third["always_valid_p_value"] == first["always_valid_p_value"]


def test_the_primary_metric_gets_half_of_alpha_and_the_other_comparisons_share_the_rest(tmp_path):
    plugin, _, ctx = make(tmp_path)
    plugin.learn_feedback("thumbs")
    ctx.snapshot = {"exp": snap(metrics={
        "thumbs": {"control": bern(2000, 200), "treatment": bern(2000, 260)},
        "done": {"control": bern(2000, 1000), "treatment": bern(2000, 1050)},
        "latency_seconds": {"control": ms([1.0, 2.0] * 500), "treatment": ms([1.1, 2.0] * 500)},
    })}
    plugin.tick(ctx.t)
    d = plugin.experiment_details("exp")["analysis"]
    m = d["metrics"]
    assert d["primary"] == "thumbs" and d["comparisons"] == 3
    assert m["thumbs"]["variants"]["treatment"]["alpha_level"] == pytest.approx(0.025)
    assert m["done"]["variants"]["treatment"]["alpha_level"] == pytest.approx(0.0125)
    assert m["latency_seconds"]["variants"]["treatment"]["alpha_level"] == pytest.approx(0.0125)


def test_the_decision_level_is_split_over_every_metric_and_variant_of_the_experiment(tmp_path):
    plugin, _, ctx = make(tmp_path)
    ctx.snapshot = {"exp": snap(weights={"control": 1 / 3, "a": 1 / 3, "b": 1 / 3}, metrics={
        "thumbs": {"control": bern(2000, 200), "a": bern(2000, 260), "b": bern(2000, 205)},
        "done": {"control": bern(2000, 1000), "a": bern(2000, 1050), "b": bern(2000, 990)},
    })}
    plugin.tick(ctx.t)
    d = plugin.experiment_details("exp")["analysis"]
    assert d["comparisons"] == 4 and "primary" not in d  # no judge or feedback metric: alpha split evenly
    for x in ("done", "thumbs"):
        for v in ("a", "b"):
            r = d["metrics"][x]["variants"][v]
            assert r["alpha_level"] == pytest.approx(0.05 / 4)
            assert r["p_value_adjusted"] == pytest.approx(min(1.0, 4 * r["always_valid_p_value"]))
            # a verdict never contradicts its interval
            excludes = r["rel_ci_lower"] > 0 or r["rel_ci_upper"] < 0
            assert (r["verdict"] in ("better", "worse")) == excludes == (r["p_value_adjusted"] <= 0.05)


def test_engagement_messages_per_session_is_a_ratio_metric_per_user_and_survives_a_restart(tmp_path):
    plugin, conn, ctx = make(tmp_path)
    rng = np.random.default_rng(1)
    i = 0
    for user in range(600):
        variant = "control" if user % 2 == 0 else "treatment"
        for s in range(1 + user % 3):
            for _ in range(rng.poisson(3 if variant == "control" else 5) + 1):
                plugin.on_call(call(i, variant=variant, session=f"s{user}-{s}", user=f"u{user}", t=T0 + i))
                i += 1
    ctx.snapshot = {"exp": snap(metrics={"exposures": {"control": bern(1, 1), "treatment": bern(1, 1)}})}
    plugin.tick(ctx.t)
    m = plugin.experiment_details("exp")["analysis"]["metrics"]
    v = m["messages_per_session"]["variants"]["treatment"]
    assert m["messages_per_session"]["kind"] == "ratio"
    assert m["messages_per_session"]["variants"]["control"]["mean"] == pytest.approx(4, rel=0.1)
    assert v["mean"] == pytest.approx(6, rel=0.1) and v["p_value"] < 1e-6 and v["verdict"] == "better"
    assert "session_length_seconds" in m
    assert v["n"] == 300  # units are users, not sessions
    plugin.flush(conn)
    conn.commit()
    again, _, _ = make(tmp_path, ctx=ctx)
    again.tick(ctx.t)
    assert again.experiment_details("exp")["analysis"]["metrics"]["messages_per_session"] == m["messages_per_session"]


def test_judge_rate_route_recommends_more_judging_for_the_smaller_arm(tmp_path):
    plugin, _, ctx = make(tmp_path, {"mde": 0.05, "judge": {"min_rate": 0.0}})
    rng = np.random.default_rng(2)
    ctx.snapshot = {"exp": snap(weights={"control": 0.8, "treatment": 0.2}, first=T0 - 86400, last=T0, metrics={
        "exposures": {"control": bern(80000, 80000), "treatment": bern(20000, 20000)},
        "quality": {"control": ms(rng.normal(3.5, 1, 400)), "treatment": ms(rng.normal(3.5, 1, 100))},
    })}
    plugin.experiments.names.judge.add("quality")
    plugin.tick(ctx.t)
    app = FastAPI()
    app.include_router(plugin.router())
    client = TestClient(app)
    body = client.get("/v1/experiments/exp/judge-rate").json()
    assert body["metric"] == "quality" and body["target_per_arm"] > 400
    assert body["rates"]["treatment"] > 3 * body["rates"]["control"]
    assert client.get("/v1/judge-rates").json()["experiments"]["exp"] == body["rates"]
    s = samples(plugin)
    assert get(s, "llm_eval_judge_sample_rate", experiment="exp", variant="treatment") == pytest.approx(
        body["rates"]["treatment"])
    assert client.get("/v1/experiments/unknown/judge-rate").status_code == 404


def test_sessions_beyond_the_cap_drop_the_oldest_and_count_it(tmp_path):
    plugin, _, ctx = make(tmp_path, {"engagement": {"max_sessions": 10}})
    for i in range(25):
        plugin.on_call(call(i, session=f"s{i}"))
    assert len(plugin.experiments.sessions) == 10 and plugin.dropped["sessions"] == 15
    assert ("exp", "s24") in plugin.experiments.sessions and ("exp", "s0") not in plugin.experiments.sessions
