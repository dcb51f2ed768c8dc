"""Which evaluation sources count as "the judge": one constant (semconv.JUDGE_SOURCES) for every part."""

from __future__ import annotations

import sqlite3

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_llm_eval import semconv
from otel_llm_eval.semconv import ExperimentAssignment, LLMCall
from otel_llm_eval.sidecar.plugins import CallRecord, EvaluationRecord
from analysis_plugins import analysis_plugins
from otel_llm_eval.sidecar.plugins.review import ReviewPlugin
from otel_llm_eval.sidecar.server import build

T0 = 1_800_000_000
TRACE, SPAN = "0c" * 16, "c1" * 8

SOURCES = [
    pytest.param("code", True, id="a code judge such as HeuristicJudge counts as the judge"),
    pytest.param("llm_judge", True, id="an LLM judge counts as the judge"),
    pytest.param("user", False, id="user feedback is not the judge"),
    pytest.param("human", False, id="a human label is not the judge"),
]


class Ctx:
    """The slice of the core's SidecarContext the plugins use."""

    def __init__(self, config):
        self.config = config
        self.t = float(T0)

    def now(self):
        return self.t

    def submit_evaluation(self, record):
        pass

    def experiment_snapshot(self):
        return {}


def _evaluation(source: str, score: float) -> EvaluationRecord:
    return EvaluationRecord(name="quality", source=source, trace_id=TRACE, span_id=SPAN,
                            time_unix_nano=T0 * 10**9, score=score, service="shop")


def _set(span, key, value):
    kv = span.attributes.add()
    kv.key = key
    if isinstance(value, str):
        kv.value.string_value = value
    else:
        kv.value.double_value = float(value)


@pytest.mark.parametrize("source, is_judge", SOURCES)
def test_the_sidecar_counts_an_evaluation_as_judged_only_for_judge_sources(tmp_path, source, is_judge):
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "shop"
    ev = rs.scope_spans.add().spans.add()
    ev.trace_id, ev.span_id, ev.name = bytes.fromhex(TRACE), b"\xee" * 8, "evaluate quality"
    ev.end_time_unix_nano = T0 * 10**9
    for k, v in {semconv.EVALUATION_NAME: "quality", semconv.EVALUATION_SCORE_VALUE: 4.0,
                 semconv.EVALUATION_SOURCE: source, semconv.JUDGE_COST_USD: 0.5}.items():
        _set(ev, k, v)
    sc = build({"state": {"db_path": str(tmp_path / "s.db")}, "plugins": []}, plugins=[],
               clock=lambda: T0 + 10.0, environ={})
    try:
        sc._apply(0, "traces", req)
        with sc.state.lock:
            sampled = sc.state.counters.get(("llm_eval_judge_sampled_total", ("shop", "quality")), 0.0)
            cost = sc.state.counters.get(("llm_eval_judge_cost_usd_total", ("shop", "quality")), 0.0)
    finally:
        sc.stop()
    assert (sampled, cost) == ((1.0, 0.5) if is_judge else (0.0, 0.0))


@pytest.mark.parametrize("source, is_judge", SOURCES)
def test_the_statistics_plugins_track_judge_score_series_only_for_judge_sources(tmp_path, source, is_judge):
    plugins = {p.name: p for p in analysis_plugins()}
    conn = sqlite3.connect(str(tmp_path / "a.db"))
    for p in plugins.values():
        p.attach(Ctx({"analysis": {}}))
        p.load(conn)
        p.on_evaluation(_evaluation(source, 4.0))
    series = {metric for _, metric in plugins["anomalies"].series}
    assert ("judge_score:quality" in series) is is_judge
    assert ("quality" in plugins["experiments"].names.judge) is is_judge
    assert ("quality" in plugins["bandits"].names.judge) is is_judge
    assert any(f == "judge_score:quality" for _, f in plugins["drift"].slots) is is_judge


@pytest.mark.parametrize("source, is_judge", SOURCES)
def test_the_review_queue_pulls_in_low_scores_only_from_judge_sources(tmp_path, source, is_judge):
    ctx = Ctx({"review": {"sampling": {"window_seconds": 1, "random_rate": 0.0}}})
    plugin = ReviewPlugin()
    plugin.attach(ctx)
    conn = sqlite3.connect(str(tmp_path / "r.db"))
    plugin.load(conn)
    call = LLMCall(model="m", prompt="hello", completion="a perfectly fine answer", trace_id=TRACE, span_id=SPAN)
    plugin.on_call(CallRecord(call=call, service="shop", error=False, end_time_unix_nano=T0 * 10**9,
                              experiments=(ExperimentAssignment("exp1", "a"),)))
    plugin.on_evaluation(_evaluation(source, 1.0))
    ctx.t += 2.0
    plugin.flush(conn)
    conn.commit()
    reasons = [i["reason"] for i in plugin.queue(10)]
    assert reasons == (["low_score"] if is_judge else [])
