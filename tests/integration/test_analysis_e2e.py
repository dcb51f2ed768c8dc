"""End to end: an app with LLMEvalSpanProcessor exports through the real OTLP exporter into a running
sidecar; the analysis plugin's p-values, SRM, interleaving, bandit allocation and judge rates show
up on /metrics and the JSON API, and the app-side Bandit / RemoteJudgeRates clients read them back.
"""

from __future__ import annotations

import json
import random
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from otel_llm_eval.stats import ab, interleaving, srm

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

LLM_ATTRS = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini",
    "gen_ai.usage.input_tokens": 12,
    "gen_ai.usage.output_tokens": 30,
}

PLAN = {"control": (400, 40), "treatment": (470, 80)}  # variant -> (LLM calls, thumbs up among them)


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        body = r.read().decode()
    return json.loads(body) if body.startswith("{") else body


def _samples(url: str) -> dict:
    out = {}
    for fam in text_string_to_metric_families(_get(url + "/metrics")):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples: dict, name: str, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def _wait(predicate, timeout_seconds=30.0):
    deadline = time.monotonic() + timeout_seconds
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """A running sidecar plus an instrumented 'app' (processor + batch OTLP exporter)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from otel_llm_eval import LLMEvalSpanProcessor
    from otel_llm_eval.sidecar.server import start_in_thread

    db = tmp_path_factory.mktemp("analysis") / "sidecar.db"
    handle = start_in_thread({"state": {"db_path": str(db), "flush_interval_seconds": 0.2},
                              "analysis": {"interval_seconds": 0.3, "bandits": {"burn_in": 20}}},
                             host="127.0.0.1", port=0, environ={})
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    try:
        provider.add_span_processor(LLMEvalSpanProcessor(tracer_provider=provider))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=handle.url + "/v1/traces",
                                                                        timeout=10)))
        yield handle.url, provider, provider.get_tracer("e2e")
    finally:
        provider.shutdown()
        handle.stop()


def _llm_call(tracer, session: str):
    with tracer.start_as_current_span("chat gpt-4o-mini") as span:
        span.set_attributes({**LLM_ATTRS, "gen_ai.conversation.id": session})
    return span


def test_ab_p_value_lift_and_srm_on_metrics_match_the_statistics_of_the_traffic_sent(app):
    from otel_llm_eval import Experiment, record_feedback

    url, provider, tracer = app
    exp = Experiment("checkout", {"control": 0.5, "treatment": 0.5})
    for variant, (n, ups) in PLAN.items():
        for i in range(n):
            with exp.activate(variant=variant):
                span = _llm_call(tracer, f"{variant}-{i // 4}")
            record_feedback(span, "thumbs", 1 if i < ups else 0)
    assert provider.force_flush(30_000)

    c, t = PLAN["control"], PLAN["treatment"]
    expected = ab.compare(ab.Summary(c[0], c[1], c[1]), ab.Summary(t[0], t[1], t[1]), binary=True)
    expected_srm = srm.srm({"control": c[0], "treatment": t[0]}, {"control": 0.5, "treatment": 0.5})
    lab = dict(experiment="checkout", metric="thumbs", variant="treatment")

    def ready():
        s = _samples(url)
        n = _value(s, "llm_eval_ab_samples", **lab)
        return s if n == t[0] and _value(s, "llm_eval_ab_p_value", **lab) is not None and \
            _value(s, "llm_eval_ab_samples", experiment="checkout", metric="thumbs", variant="control") == c[0] \
            else None

    s = _wait(ready)
    assert s, "the sidecar never showed the experiment's p-value"
    s = _wait(lambda: (lambda x: x if _value(x, "llm_eval_ab_p_value", **lab) == pytest.approx(
        expected.p_value, rel=1e-9) else None)(_samples(url)), 10) or s
    assert _value(s, "llm_eval_ab_p_value", **lab) == pytest.approx(expected.p_value, rel=1e-9)
    assert _value(s, "llm_eval_ab_lift", **lab) == pytest.approx(expected.rel_lift, rel=1e-9)
    # the published interval is the always-valid one (running intersection over the looks)
    lo, hi = _value(s, "llm_eval_ab_lift_ci_lower", **lab), _value(s, "llm_eval_ab_lift_ci_upper", **lab)
    assert lo is not None and hi is not None and lo < hi
    assert _value(s, "llm_eval_ab_always_valid_p_value", **lab) is not None
    # activated without a unit id: analysed per call, and no SRM verdict on calls
    assert _value(s, "llm_eval_ab_basis", experiment="checkout", basis="call") == 1.0
    assert _value(s, "llm_eval_ab_srm_p_value", experiment="checkout") is None
    details = _get(url + "/v1/experiments/checkout")
    v = details["analysis"]["metrics"]["thumbs"]["variants"]["treatment"]
    assert v["p_value"] == pytest.approx(expected.p_value, rel=1e-9)
    assert v["fixed_horizon"]["rel_ci_lower"] == pytest.approx(expected.rel_ci_lower, rel=1e-9)
    assert v["verdict"] in ("better", "collecting")
    assert details["analysis"]["srm"]["status"] == "unknown" and expected_srm.p_value is not None
    # engagement from gen_ai.conversation.id: 4 calls per session in both arms
    eng = details["analysis"]["metrics"]["messages_per_session"]["variants"]
    assert eng["control"]["mean"] == pytest.approx(4.0) and eng["treatment"]["mean"] == pytest.approx(470 / 118)


def test_remote_judge_rates_follow_the_sidecar_and_fall_back_for_unknown_experiments(app):
    from otel_llm_eval import RemoteJudgeRates

    url, _, _ = app
    assert _wait(lambda: "checkout" in _get(url + "/v1/judge-rates")["experiments"])
    rates = RemoteJudgeRates(url, start=False)
    assert rates.refresh()
    assert rates("checkout", "control") == pytest.approx(0.1)  # bootstrap rate: no judge metric yet
    assert rates("unknown", "control") is None
    body = _get(url + "/v1/experiments/checkout/judge-rate")
    assert body["rates"]["treatment"] == rates("checkout", "treatment")


def test_pairwise_choices_recorded_in_the_app_become_preference_and_sign_test_gauges(app):
    from otel_llm_eval import pairwise

    url, provider, tracer = app
    rng = random.Random(7)
    for i in range(20):
        span = _llm_call(tracer, f"pair-{i}")
        cmp = pairwise("answer-style", "terse", "friendly", rng=rng)
        cmp.record(span, winner="friendly" if i < 15 else "terse")
    assert provider.force_flush(30_000)
    lab = dict(experiment="answer-style", variant="friendly")
    s = _wait(lambda: (lambda x: x if _value(x, "llm_eval_interleaving_comparisons", experiment="answer-style") == 20
                       else None)(_samples(url)))
    assert s, "interleaving comparisons never reached /metrics"
    s = _wait(lambda: (lambda x: x if _value(x, "llm_eval_interleaving_preference", **lab) == pytest.approx(0.25)
                       else None)(_samples(url)), 10) or s
    assert _value(s, "llm_eval_interleaving_preference", **lab) == pytest.approx(15 / 20 - 0.5)
    # always-valid: the running minimum over ticks, somewhere between the final look's p and the
    # smallest any prefix of the outcomes could give
    from otel_llm_eval.stats.sequential import beta_binomial_p_value
    p = _value(s, "llm_eval_interleaving_p_value", **lab)
    assert beta_binomial_p_value(15, 0) <= p <= beta_binomial_p_value(15, 5) + 1e-12
    assert interleaving.sign_test(15, 20) < beta_binomial_p_value(15, 5)
    assert _value(s, "llm_eval_interleaving_first_position_win_rate", experiment="answer-style") is not None


def test_bandit_client_reads_the_sidecar_allocation_which_moves_to_the_rewarded_arm(app):
    from otel_llm_eval import Bandit, record_feedback

    url, provider, tracer = app
    bandit = Bandit("models", ["small", "large"], sidecar_url=url, start=False, seed=3)
    assert bandit.refresh()
    assert bandit.allocation() == pytest.approx({"small": 0.5, "large": 0.5})  # burn-in
    rng = random.Random(11)
    for i in range(120):
        arm = "small" if i % 2 == 0 else "large"
        with bandit.activate(arm) as chosen:
            span = _llm_call(tracer, f"bandit-{i}")
        record_feedback(span, "thumbs", 1 if rng.random() < (0.9 if chosen == "large" else 0.1) else 0)
    assert provider.force_flush(30_000)

    def moved():
        bandit.refresh()
        return bandit.allocation()["large"] > 0.9
    assert _wait(moved), bandit.allocation()
    # the route answers at once; /metrics follows at the next analysis tick
    s = _wait(lambda: (lambda x: x if (_value(x, "llm_eval_bandit_allocation", bandit="models", arm="large") or 0)
                       > 0.9 else None)(_samples(url)))
    assert s, "the bandit allocation never reached /metrics"
    assert _value(s, "llm_eval_bandit_pulls", bandit="models", arm="small") == 60
    assert sum(bandit.choose() == "large" for _ in range(1000)) > 850
