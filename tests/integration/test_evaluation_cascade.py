"""The evaluation cascade end to end, for an app that is not Python.

A raw OTLP/JSON client (what a Node app's exporter sends; no Python SDK, no processor) posts LLM
spans to a real sidecar on a loopback port; the sidecar's judge plugin calls an OpenAI-compatible
judge server running in the test, which answers well, badly, slowly, with a 429, with garbage and
not at all. Counts are exact: layer 2 judges only calls that passed layer 1 (and carry text, and
were not judged in the app), at the rate the planner gives each experiment variant; layer 3's
validation sample holds only calls the judge passed; budgets hold.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fake_judge import FakeJudge  # noqa: E402
from raw_otlp import JSON_HEADERS, export_request, llm_span  # noqa: E402
from sidecar_fixtures import metric_value  # noqa: E402

from otel_llm_eval.sidecar.server import start_in_thread  # noqa: E402

SERVICE = "checkout-node"


def frac(trace_id: str, salt: str) -> float:
    """The cascade's trace-id draw, recomputed here from its definition (salted sha256)."""
    return int.from_bytes(hashlib.sha256(f"{salt}:{trace_id}".encode()).digest()[:8], "big") / 2.0**64


def tid(i: int) -> str:
    return hashlib.sha256(f"trace-{i}".encode()).hexdigest()[:32]


def sid(i: int) -> str:
    return f"{i + 1:016x}"


def evaluator(base_url: str, **over: Any) -> dict[str, Any]:
    return {"name": "quality", "kind": "openai", "model": "judge-mini", "base_url": base_url,
            "api_key_env": "CASCADE_TEST_JUDGE_KEY", "timeout_seconds": 0.5, "retries": 1, "backoff_seconds": 0.01,
            "input_usd_per_million_tokens": 100.0, "output_usd_per_million_tokens": 0.0, **over}


def sidecar_config(tmp_path: Path, judge: dict[str, Any], **sections: Any) -> dict[str, Any]:
    cfg = {"state": {"db_path": str(tmp_path / "sidecar.db"), "flush_interval_seconds": 0.1},
           "analysis": {"interval_seconds": 3600.0},  # rate plans change only when the test ticks
           "judge": {"enabled": True, "default_rate": 1.0, **judge},
           "review": {"sampling": {"random_rate": 0.0, "validation_rate": 1.0, "window_seconds": 0.01,
                                   "reservoir_size": 1000, "daily_cap": 100_000, "short_output_chars": 0,
                                   "long_output_chars": 0}}}
    cfg.update(sections)
    return cfg


def plugin(sc: Any, name: str) -> Any:
    return next(p for p in sc.sidecar.plugins if p.name == name)


def post(sc: Any, spans: list[dict[str, Any]]) -> None:
    r = httpx.post(sc.url + "/v1/traces", content=export_request(spans, SERVICE), headers=JSON_HEADERS, timeout=30)
    assert r.status_code == 200, r.text


def settle(sc: Any, outputs: int, deadline_s: float = 60.0) -> dict[str, Any]:
    """Wait until the sidecar has applied `outputs` calls, every judgement is counted and the
    review sampler has admitted its candidates (judged results are journaled and applied by a
    flush; the review window closes on a later one)."""
    judge, review = plugin(sc, "judge"), plugin(sc, "review")
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        s = judge.summary()
        if s["funnel"]["outputs"] >= outputs and judge.idle():
            sc.sidecar.flush()
            s = judge.summary()
            submitted = judge.judged_calls * len(judge.judges)
            if s["layers"]["judge"]["evaluations"] >= submitted and review.sampler.pending() == 0:
                return s
        time.sleep(0.05)
    raise AssertionError(f"the sidecar did not settle: {judge.summary()}")


def review_items(sc: Any) -> list[dict[str, Any]]:
    return httpx.get(sc.url + "/v1/review/queue", params={"limit": 100}).json()["items"]


# (kind of call, span kwargs, passes layer 1, judge outcome when judged: pass | fail | error | None)
CALLS = [
    ("a good answer", {"completion": "Paris is the capital. [good] call-{i}"}, True, "pass"),
    ("a bad answer", {"completion": "Lyon, probably. [bad] call-{i}"}, True, "fail"),
    ("a slow judge", {"completion": "Paris, France. [slow] call-{i}"}, True, "pass"),
    ("a 429 then an answer", {"completion": "It is Paris. [429] call-{i}"}, True, "pass"),
    ("a garbage reply", {"completion": "Paris! [garbage] call-{i}"}, True, "error"),
    ("a judge that never answers", {"completion": "Paris? [hang] call-{i}"}, True, "error"),
    ("a refusal fails the checks", {"completion": "I'm sorry, I can't help with that. [good] call-{i}"}, False, None),
    ("an error status fails the checks", {"completion": "Paris. [good] call-{i}", "error": True}, False, None),
    ("a call without text", {"completion": None}, True, None),
    ("a call the app already judged", {"completion": "Paris. [good] call-{i}",
                                       "extra": {"llm_eval.judge.sampled": True}}, True, None),
]


def build_calls(start: int, repeat: int, extra: dict[str, Any] | None = None) -> tuple[list[dict], dict[int, tuple]]:
    spans, meta = [], {}
    i = start
    for _ in range(repeat):
        for kind, kwargs, passes, outcome in CALLS:
            kw = dict(kwargs)
            if kw.get("completion"):
                kw["completion"] = kw["completion"].format(i=i)
            kw["extra"] = {**(kw.get("extra") or {}), **(extra or {})}
            spans.append(llm_span(tid(i), sid(i), **kw))
            meta[i] = (kind, passes, outcome)
            i += 1
    return spans, meta


@pytest.fixture
def judge_server():
    with FakeJudge(slow_seconds=0.2) as server:
        yield server


@pytest.mark.parametrize("where,workers", [("on the ingest thread", 0), ("in an ingest worker process", 1)],
                         ids=["spans prepared on the ingest thread", "spans prepared in a worker process"])
def test_a_node_app_gets_judge_scores_experiment_statistics_and_a_validation_sample(tmp_path, judge_server, where,
                                                                                   workers):
    cfg = sidecar_config(tmp_path, {"evaluators": [evaluator(judge_server.base_url)]})
    cfg["analysis"] = {"interval_seconds": 3600.0, "judge": {"bootstrap_rate": 0.5}}
    cfg["ingest"] = {"workers": workers}
    sc = start_in_thread(cfg, environ={})
    try:
        # 1. no experiment: every eligible call is judged (default_rate 1.0)
        spans, meta = build_calls(0, repeat=2)
        post(sc, spans)
        s = settle(sc, len(meta))
        passed = {i for i, m in meta.items() if m[1]}
        eligible = {i for i, m in meta.items() if m[2] is not None}
        judged = set(judge_server.seen)  # a 429 and a hang are asked twice (one retry): a set
        assert judged == eligible
        assert judged <= passed
        assert s["funnel"] == {"outputs": 20, "passed_checks": 16, "judged": 12, "passed_judge": 6, "reviewed": 0}
        assert s["layers"]["judge"]["outcomes"] == {"pass": 6, "fail": 2, "error": 4}
        assert s["skipped"] == {"failed_checks": 4, "no_text": 2, "app_judged": 2}
        # layer 3: validation (rate 1.0) holds exactly the judge-passed calls; nothing else but
        # error-triggered and low-score items is in the queue
        items = review_items(sc)
        by_reason: dict[str, set[int]] = {}
        for item in items:
            i = next(k for k in meta if tid(k) == item["trace_id"])
            by_reason.setdefault(item["reason"], set()).add(i)
        passed_judge = {i for i in eligible if meta[i][2] == "pass"}
        assert by_reason["validation"] == passed_judge
        assert by_reason["error"] == passed ^ set(meta)
        assert by_reason["low_score"] == {i for i in eligible if meta[i][2] == "fail"}
        text = httpx.get(sc.url + "/metrics").text
        assert metric_value(text, "llm_eval_layer_evaluations_total", layer="judge", outcome="pass") == 6
        assert metric_value(text, "llm_eval_judge_sidecar_skipped_total", reason="no_text") == 2
        assert metric_value(text, "llm_eval_layer_cost_usd_total", layer="judge") == pytest.approx(10 * 100 * 100 / 1e6)

        # 2. an experiment: after one analysis pass, calls are judged at the planner's rate per variant
        exp = lambda v: {"llm_eval.experiment.id": "prompt-v2", "llm_eval.experiment.variant": v,  # noqa: E731
                         "llm_eval.experiment.weights": "control=0.5,treatment=0.5"}
        first = [llm_span(tid(100 + k), sid(100 + k), completion=f"Paris. [good] call-{100 + k}",
                          extra=exp("control" if k % 2 else "treatment")) for k in range(20)]
        post(sc, first)
        settle(sc, 40)
        sc.sidecar.tick()  # analysis then judge: the judge copies the new plan
        rates = httpx.get(sc.url + "/v1/judge-rates").json()["experiments"]["prompt-v2"]
        assert set(rates) == {"control", "treatment"} and all(0 < r <= 1 for r in rates.values()), rates
        before = set(judge_server.seen)
        second = {200 + k: "control" if k % 2 else "treatment" for k in range(80)}
        post(sc, [llm_span(tid(i), sid(i), completion=f"Paris. [{'good' if i % 3 else 'bad'}] call-{i}",
                           extra=exp(v)) for i, v in second.items()])
        settle(sc, 120)
        expected = {i for i, v in second.items() if frac(tid(i), "judge") < rates[v]}
        assert set(judge_server.seen) - before == expected
        # the judge scores are experiment statistics: n per variant = calls judged in the variant
        sc.sidecar.tick()
        detail = httpx.get(sc.url + "/v1/experiments/prompt-v2").json()
        n = {v: 10 + sum(1 for i in expected if second[i] == v) for v in ("control", "treatment")}
        assert {v: detail["metrics"]["quality"][v]["n"] for v in n} == n
    finally:
        sc.stop()


FIXED_NOW = 1_700_001_800.0  # mid-hour, mid-minute: the budget windows never roll during a test

BUDGETS = [
    ("a calls-per-minute budget judges exactly that many calls",
     {"budget_calls_per_minute": 3}, 1, 3, "budget_calls"),
    ("a USD-per-hour budget stops before the hour's spend passes it",
     {"budget_usd_per_hour": 0.055, "reserve_usd_per_call": 0.01}, 1, 5, "budget_usd"),
    ("two evaluators spend two judge calls of the per-minute budget per call",
     {"budget_calls_per_minute": 4}, 2, 2, "budget_calls"),
]


@pytest.mark.parametrize("case,budget,evaluators,judged,reason", BUDGETS, ids=[b[0] for b in BUDGETS])
def test_budgets_hold(tmp_path, judge_server, case, budget, evaluators, judged, reason):
    evs = [evaluator(judge_server.base_url, name=f"quality{k}") for k in range(evaluators)]
    # review off: with a clock that stands still its sampling window would never close
    sc = start_in_thread(sidecar_config(tmp_path, {"evaluators": evs, **budget}, review={"enabled": False}),
                         environ={}, clock=lambda: FIXED_NOW)
    try:
        # the spans happen at the sidecar's (fixed) time: far from it they would be rejected at the edge
        post(sc, [llm_span(tid(i), sid(i), completion=f"Paris. [good] call-{i}", start_ns=int((FIXED_NOW - 1) * 1e9))
                  for i in range(10)])
        s = settle(sc, 10)
        assert len(set(judge_server.seen)) == judged
        assert s["funnel"]["judged"] == judged * evaluators
        assert s["skipped"] == {reason: 10 - judged}
        spent = s["budgets"]["judge"]["spent_usd_this_hour"]
        assert spent == pytest.approx(judged * evaluators * 0.01)
        if budget.get("budget_usd_per_hour"):
            assert spent <= budget["budget_usd_per_hour"]
        text = httpx.get(sc.url + "/metrics").text
        assert metric_value(text, "llm_eval_layer_budget_exhausted", layer="judge") == 1
        assert metric_value(text, "llm_eval_judge_sidecar_skipped_total", reason=reason) == 10 - judged
    finally:
        sc.stop()


def test_a_full_judge_queue_drops_and_counts_while_ingest_goes_on(tmp_path, judge_server):
    cfg = sidecar_config(tmp_path, {"evaluators": [evaluator(judge_server.base_url, timeout_seconds=1.0, retries=0)],
                                    "workers": 1, "queue_max": 2})
    sc = start_in_thread(cfg, environ={})
    try:
        post(sc, [llm_span(tid(i), sid(i), completion=f"Paris? [hang] call-{i}") for i in range(10)])
        # the one worker hangs on the judge: more OTLP is still taken and counted
        post(sc, [llm_span(tid(i), sid(i), completion=None) for i in range(10, 15)])
        judge = plugin(sc, "judge")
        end = time.monotonic() + 30
        while judge.summary()["funnel"]["outputs"] < 15 and time.monotonic() < end:
            time.sleep(0.02)
        s = judge.summary()
        assert s["funnel"]["outputs"] == 15
        dropped = s["skipped"].get("queue_full", 0)
        assert dropped >= 10 - 2 - 1  # queue_max waiting + one being judged
        s = settle(sc, 15)
        assert s["funnel"]["judged"] + dropped == 10
        assert s["layers"]["judge"]["outcomes"]["error"] == s["funnel"]["judged"]  # every accepted one timed out
    finally:
        sc.stop()


def test_a_call_the_python_app_judged_is_not_judged_again_in_the_sidecar(tmp_path, judge_server):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from otel_llm_eval import HeuristicJudge, LLMEvalSpanProcessor

    sc = start_in_thread(sidecar_config(tmp_path, {"evaluators": [evaluator(judge_server.base_url)]}), environ={})
    provider = TracerProvider(resource=Resource.create({"service.name": "py-app"}))
    try:
        processor = LLMEvalSpanProcessor(judge=HeuristicJudge(), judge_sample_rate=1.0, tracer_provider=provider)
        provider.add_span_processor(processor)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=sc.url + "/v1/traces", timeout=10)))
        tracer = provider.get_tracer("app")
        with tracer.start_as_current_span("chat gpt-4o-mini") as span:
            span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.system": "openai",
                                 "gen_ai.request.model": "gpt-4o-mini",
                                 "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "Capital of France?",
                                 "gen_ai.completion.0.role": "assistant",
                                 "gen_ai.completion.0.content": "Paris is the capital of France. [good] call-1"})
        assert processor.force_flush(10_000) and provider.force_flush(10_000)
        judge = plugin(sc, "judge")
        end = time.monotonic() + 30
        while judge.summary()["layers"]["judge"]["evaluations"] < 1 and time.monotonic() < end:
            time.sleep(0.05)
        s = settle(sc, 1)
        assert judge_server.seen == []
        assert s["skipped"] == {"app_judged": 1}
        assert s["funnel"]["judged"] == 1 and s["funnel"]["passed_judge"] == 1  # the app's heuristic judge
    finally:
        provider.shutdown()
        sc.stop()


def test_cost_with_a_sidecar_compares_the_projected_cost_with_what_the_cascade_spent(tmp_path, judge_server):
    import json
    import subprocess

    cfg = sidecar_config(tmp_path, {"evaluators": [evaluator(judge_server.base_url)], "human_usd_per_label": 5.0})
    sc = start_in_thread(cfg, environ={})
    try:
        post(sc, [llm_span(tid(i), sid(i), completion=f"Paris. [good] call-{i}") for i in range(10)])
        settle(sc, 10)
        item = review_items(sc)[0]  # validation_rate 1.0: every judge-passed call is in the queue
        r = httpx.post(f"{sc.url}/v1/review/{item['id']}/label", json={"quality": 4})
        assert r.status_code == 200, r.text
        judge = plugin(sc, "judge")
        end = time.monotonic() + 30
        while judge.summary()["funnel"]["reviewed"] < 1 and time.monotonic() < end:
            sc.sidecar.flush()
            time.sleep(0.05)
        out = subprocess.run([sys.executable, "-m", "otel_llm_eval.cli", "cost", "--sidecar", sc.url, "--json",
                              "--llm-sample-rate", "1", "--llm-cost", "0.01", "--human-sample-rate", "0.01",
                              "--human-cost", "5"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        c = json.loads(out.stdout)
        assert c["outputs"] == 10
        assert (c["layers"]["judge"]["projected_evaluations"], c["layers"]["judge"]["actual_evaluations"]) == (10, 10)
        assert c["layers"]["judge"]["projected_usd"] == pytest.approx(0.1)
        assert c["layers"]["judge"]["actual_usd"] == pytest.approx(0.1)  # 100 tokens at $100 per million, 10 times
        assert c["layers"]["human"]["projected_usd"] == pytest.approx(0.5)
        assert (c["layers"]["human"]["actual_evaluations"], c["layers"]["human"]["actual_usd"]) == (1, 5.0)
        text = subprocess.run([sys.executable, "-m", "otel_llm_eval.cli", "cost", "--sidecar", sc.url],
                              capture_output=True, text=True, timeout=60)
        assert text.returncode == 0 and "10 outputs seen by the sidecar" in text.stdout, text.stderr
    finally:
        sc.stop()


def test_cost_with_a_sidecar_without_the_judge_plugin_says_so(tmp_path):
    import subprocess

    sc = start_in_thread({"state": {"db_path": str(tmp_path / "s.db")}, "plugins": []}, environ={})
    try:
        out = subprocess.run([sys.executable, "-m", "otel_llm_eval.cli", "cost", "--sidecar", sc.url],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and "judge plugin" in out.stderr
    finally:
        sc.stop()
