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


def ingest(tmp_path, attrs):
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "shop"
    ev = rs.scope_spans.add().spans.add()
    ev.trace_id, ev.span_id, ev.name = bytes.fromhex(TRACE), b"\xee" * 8, "evaluate"
    ev.end_time_unix_nano = T0 * 10**9
    for k, v in {semconv.EXPERIMENTS: "exp=b", **attrs}.items():
        _set(ev, k, v)
    sc = build({"state": {"db_path": str(tmp_path / "s.db")}, "plugins": []}, plugins=[],
               clock=lambda: T0 + 10.0, environ={})
    try:
        sc._apply(0, "traces", req)
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
    pytest.param(_ev("stars", "user", 5.0), {"positive": 1.0}, False, True,
                 id="a user star rating stays out of the quality histogram too"),
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
