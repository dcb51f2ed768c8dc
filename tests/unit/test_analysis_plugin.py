"""The statistics plugins (experiments, bandits, interleaving, drift, anomalies) on their own, driven
together as the core drives them: snapshots and ingest records in, catalog gauges and JSON out."""

from __future__ import annotations

import json
import math
import sqlite3

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from otel_llm_eval import semconv
from otel_llm_eval.catalog import BY_NAME
from otel_llm_eval.semconv import ExperimentAssignment, LLMCall
from otel_llm_eval.sidecar.plugins import (CallRecord, EvaluationRecord, ExperimentSnapshot, MetricStats)
from otel_llm_eval.stats import ab, srm
from analysis_plugins import AnalysisPlugins

T0 = 1_800_000_000.0


class Ctx:
    """The slice of the core's SidecarContext the plugin uses: config, clock, snapshot, families."""

    def __init__(self, config=None):
        self.config = {"analysis": config or {}}
        self.t = T0
        self.snapshot: dict[str, ExperimentSnapshot] = {}

    def now(self):
        return self.t

    def experiment_snapshot(self):
        return dict(self.snapshot)

    def family(self, name, values):
        m = BY_NAME[name]
        assert m.type == "gauge", name
        fam = GaugeMetricFamily(m.name, m.help, labels=list(m.labels))
        for labels, value in values:
            assert set(labels) == set(m.labels), (name, labels)
            assert math.isfinite(value), (name, labels, value)
            fam.add_metric([labels[k] for k in m.labels], value)
        return fam


def make(tmp_path, config=None, ctx=None):
    ctx = ctx or Ctx(config)
    plugin = AnalysisPlugins()
    plugin.attach(ctx)
    conn = sqlite3.connect(str(tmp_path / "state.db"))
    plugin.load(conn)
    return plugin, conn, ctx


def samples(plugin) -> dict[tuple[str, tuple], float]:
    class C:
        def collect(self):
            return plugin.collect()
    reg = CollectorRegistry()
    reg.register(C())
    text = generate_latest(reg).decode()
    assert "NaN" not in text and "Inf" not in text
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def get(samples_, name, **labels):
    return samples_.get((name, tuple(sorted(labels.items()))))


def ms(values, binary=None):
    a = np.asarray(values, float)
    if binary is None:
        binary = bool(np.all((a == 0) | (a == 1)))
    return MetricStats(int(a.size), float(a.sum()), float((a * a).sum()), binary)


def bern(n, k):
    return MetricStats(n, float(k), float(k), True)


def snap(exp_id="exp", weights=None, metrics=None, first=T0 - 3600, last=T0):
    weights = weights or {"control": 0.5, "treatment": 0.5}
    return ExperimentSnapshot(exp_id, next(iter(weights)), weights, metrics or {}, first, last)


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


def call(i, *, variant="control", session=None, user=None, t=T0, latency=1.0, service="shop", exp="exp",
         prompt="hello", finish="stop", error=False):
    c = LLMCall(model="m", prompt=prompt, completion="answer", trace_id=f"{i + 1:032x}", span_id=f"{i + 1:016x}",
                session_id=session, user_id=user, latency_seconds=latency, input_tokens=len(prompt),
                output_tokens=5, finish_reason=finish, experiment=exp, variant=variant)
    return CallRecord(call=c, service=service, error=error, end_time_unix_nano=int(t * 1e9),
                      experiments=(ExperimentAssignment(exp, variant),))


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


def comparison(winner, loser, first, tie=False, cid="pair"):
    return EvaluationRecord(name=semconv.INTERLEAVING_EVALUATION, source="user", trace_id=None, span_id=None,
                            time_unix_nano=int(T0 * 1e9), label="tie" if tie else winner, attributes={
                                semconv.INTERLEAVING_ID: cid, semconv.INTERLEAVING_WINNER: winner,
                                semconv.INTERLEAVING_LOSER: loser, semconv.INTERLEAVING_FIRST_SHOWN: first,
                                semconv.INTERLEAVING_TIE: tie})


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


def test_sessions_beyond_the_cap_drop_the_oldest_and_count_it(tmp_path):
    plugin, _, ctx = make(tmp_path, {"engagement": {"max_sessions": 10}})
    for i in range(25):
        plugin.on_call(call(i, session=f"s{i}"))
    assert len(plugin.experiments.sessions) == 10 and plugin.dropped["sessions"] == 15
    assert ("exp", "s24") in plugin.experiments.sessions and ("exp", "s0") not in plugin.experiments.sessions


def test_unknown_bandit_algorithm_is_a_clear_config_error():
    with pytest.raises(ValueError, match="bandits.algorithm"):
        AnalysisPlugins().attach(Ctx({"bandits": {"algorithm": "softmax"}}))


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
