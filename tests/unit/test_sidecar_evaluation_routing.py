"""Where one evaluation lands: quality histogram, user feedback counter, experiment statistics."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_llm_eval import semconv
from otel_llm_eval.sidecar.server import build

T0 = 1_800_000_000
TRACE = "0d" * 16
PAIRWISE = {semconv.INTERLEAVING_ID: "v2-vs-v1", semconv.INTERLEAVING_METHOD: "pairwise",
            semconv.INTERLEAVING_WINNER: "v2", semconv.INTERLEAVING_LOSER: "v1"}


def _set(span, key, value):
    kv = span.attributes.add()
    kv.key = key
    if isinstance(value, bool):
        kv.value.bool_value = value
    elif isinstance(value, str):
        kv.value.string_value = value
    else:
        kv.value.double_value = float(value)


def evaluation_request(attrs):
    """One evaluation span of service shop in experiment exp, variant b."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "shop"
    ev = rs.scope_spans.add().spans.add()
    ev.trace_id, ev.span_id, ev.name = bytes.fromhex(TRACE), b"\xee" * 8, "evaluate"
    ev.end_time_unix_nano = T0 * 10**9
    for k, v in {semconv.EXPERIMENTS: "exp=b", **attrs}.items():
        _set(ev, k, v)
    return req


def ingest(tmp_path, attrs):
    sc = build({"state": {"db_path": str(tmp_path / "s.db")}, "plugins": []}, plugins=[],
               clock=lambda: T0 + 10.0, environ={})
    try:
        sc._apply(0, "traces", evaluation_request(attrs))
        with sc.state.lock:
            feedback = {labels[3]: v for (m, labels), v in sc.state.counters.items()
                        if m == "llm_user_feedback_total"}
            quality = {labels[4]: h[0] for (m, labels), h in sc.state.hists.items() if m == "llm_quality_score"}
        stats = {m: {v: s.n for v, s in by.items()} for m, by in snap.metrics.items()} if (snap := sc.state.snapshot().get("exp")) else {}
    finally:
        sc.stop()
    return feedback, quality, stats


def _ev(name, source, value=None, label=None, **extra):
    attrs = {semconv.EVALUATION_NAME: name, semconv.EVALUATION_SOURCE: source, **extra}
    if value is not None:
        attrs[semconv.EVALUATION_SCORE_VALUE] = value
    if label is not None:
        attrs[semconv.EVALUATION_SCORE_LABEL] = label
    return attrs


@pytest.mark.parametrize("attrs, in_feedback, in_quality, in_stats", [
    pytest.param(_ev("thumbs_up", "user", 0.0, "negative"), {"negative": 1.0}, False, True,
                 id="a thumbs-down is user feedback and an experiment sample, not a quality score"),
    pytest.param(_ev("stars", "user", 5.0), {}, False, True,
                 id="a user star rating is neither thumbs nor a quality score but an experiment sample"),
    pytest.param(_ev("quality", "code", 2.0), {}, True, True,
                 id="a code judge score is a quality score"),
    pytest.param(_ev("quality", "llm_judge", 4.0), {}, True, True,
                 id="an LLM judge score is a quality score"),
    pytest.param(_ev("human_quality", "human", 3.0), {}, True, True,
                 id="a human label is a quality score"),
    pytest.param(_ev(semconv.INTERLEAVING_EVALUATION, "user", label="v2", **PAIRWISE), {}, False, False,
                 id="a pairwise choice is not thumbs feedback"),
    pytest.param(_ev("my_pairwise", "user", label="v2", **PAIRWISE), {}, False, False,
                 id="a record with interleaving attributes under another name is not thumbs feedback either"),
])
def test_each_evaluation_source_lands_in_the_right_series(tmp_path, attrs, in_feedback, in_quality, in_stats):
    feedback, quality, stats = ingest(tmp_path, attrs)
    name = attrs[semconv.EVALUATION_NAME]
    assert feedback == in_feedback
    assert (name in quality) is in_quality
    assert (stats.get(name) == {"b": 1}) is in_stats


def _counters(tmp_path, attrs, config=None):
    sc = build({"state": {"db_path": str(tmp_path / "s.db")}, "plugins": [], "feedback": config or {}},
               plugins=[], clock=lambda: T0 + 10.0, environ={})
    try:
        sc._apply(0, "traces", evaluation_request(attrs))
        with sc.state.lock:
            counters = {(m, labels[-2:]): v for (m, labels), v in sc.state.counters.items()
                        if m.startswith(("llm_user_feedback", "llm_task_outcomes"))}
            ratings = {(m, labels[-1]): h[1] for (m, labels), h in sc.state.hists.items() if m == "llm_user_rating"}
        snap = sc.state.snapshot().get("exp")
        stats = {m: by["b"].sum / by["b"].n for m, by in snap.metrics.items() if "b" in by} if snap else {}
    finally:
        sc.stop()
    return counters, ratings, stats


@pytest.mark.parametrize("attrs, config, counters, ratings, stat", [
    pytest.param(_ev("user_rating", "user", 1.0), None, {}, {("llm_user_rating", "user_rating"): 1.0}, 1.0,
                 id="an unknown rating of 1 is a rating of 1, never a thumbs-up"),
    pytest.param(_ev("thumbs", "user", 1.0), None,
                 {("llm_user_feedback_total", ("b", "positive")): 1.0}, {}, 1.0,
                 id="a thumbs name with 1 is a thumbs-up and a 1 in the proportion"),
    pytest.param(_ev("helpful", "user", -1.0), None,
                 {("llm_user_feedback_total", ("b", "negative")): 1.0}, {}, 0.0,
                 id="a thumbs-down of -1 enters the experiment as 0"),
    pytest.param(_ev("task_completed", "user", 1.0), None,
                 {("llm_task_outcomes_total", ("task_completed", "success")): 1.0}, {}, 1.0,
                 id="a task name is an outcome"),
    pytest.param(_ev("resolved", "user", label="failed"), None,
                 {("llm_task_outcomes_total", ("resolved", "failure")): 1.0}, {}, 0.0,
                 id="an outcome from its label alone"),
    pytest.param(_ev("csat", "user", 4.0), {"kinds": {"csat": {"kind": "scale", "min": 1, "max": 5}}}, {},
                 {("llm_user_rating", "csat"): 4.0}, 4.0,
                 id="a configured scale rating lands in the rating histogram"),
    pytest.param(_ev("csat", "user", 9.0), {"kinds": {"csat": {"kind": "scale", "min": 1, "max": 5}}}, {}, {}, None,
                 id="a rating outside its declared range is counted nowhere"),
    pytest.param(_ev("vibe", "user", 1.0, **{semconv.FEEDBACK_KIND: "binary"}), None,
                 {("llm_user_feedback_total", ("b", "positive")): 1.0}, {}, 1.0,
                 id="the kind attribute on the span declares a binary record"),
    pytest.param(_ev("issue", "user", label="wrong_language"), None,
                 {("llm_user_feedback_category_total", ("issue", "wrong_language")): 1.0}, {}, None,
                 id="a label without a number is a category"),
    pytest.param(_ev("note", "user", **{semconv.EVALUATION_EXPLANATION: "too long"}), None,
                 {("llm_user_feedback_comments_total", ("shop", "note")): 1.0}, {}, None,
                 id="a comment alone is counted as text"),
])
def test_each_feedback_kind_has_its_own_metric_and_experiment_value(tmp_path, attrs, config, counters, ratings, stat):
    got_counters, got_ratings, stats = _counters(tmp_path, attrs, config)
    assert got_counters == counters
    assert got_ratings == ratings
    assert stats.get(attrs[semconv.EVALUATION_NAME]) == stat
