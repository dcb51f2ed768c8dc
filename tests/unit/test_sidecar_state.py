"""Ingest -> state -> /metrics exposition (exact text, fresh registry), persistence and journal replay."""

from __future__ import annotations

import json

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client import CollectorRegistry, generate_latest

from otel_llm_eval.sidecar.collector import SidecarCollector
from otel_llm_eval.sidecar.server import build

T0 = 1_800_000_000  # unix seconds of the spans
TRACE_A, SPAN_A = "0a" * 16, "a1" * 8
TRACE_B, SPAN_B = "0b" * 16, "b1" * 8


def _set(span, key, value):
    kv = span.attributes.add()
    kv.key = key
    if isinstance(value, str):
        kv.value.string_value = value
    elif isinstance(value, float):
        kv.value.double_value = value
    else:
        kv.value.int_value = value


def llm_span(ss, trace, span_id, variant, tokens, completion, user, cost, error=False, latency=1.5):
    s = ss.spans.add()
    s.trace_id, s.span_id, s.name = bytes.fromhex(trace), bytes.fromhex(span_id), "chat gpt-4o"
    s.start_time_unix_nano = T0 * 10**9
    s.end_time_unix_nano = int((T0 + latency) * 10**9)
    if error:
        s.status.code = 2
    for k, v in {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                 "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": tokens[0],
                 "gen_ai.usage.output_tokens": tokens[1], "gen_ai.usage.cost": cost, "user.id": user,
                 "session.id": "sess-" + user,
                 "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
                     {"type": "text", "content": completion}], "finish_reason": "stop"}]),
                 "llm_eval.experiment.id": "e1", "llm_eval.experiment.variant": variant,
                 "llm_eval.experiments": "e1=" + variant,
                 "llm_eval.experiment.weights": "e1=control:0.5,treatment:0.5"}.items():
        _set(s, k, v)


def batch() -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "shop"
    ss = rs.scope_spans.add()
    # the evaluation comes first in the batch: the join must still find its parent call
    ev = ss.spans.add()
    ev.trace_id, ev.span_id, ev.parent_span_id = bytes.fromhex(TRACE_A), b"\xee" * 8, bytes.fromhex(SPAN_A)
    ev.name = "evaluate helpfulness"
    for k, v in {"gen_ai.evaluation.name": "helpfulness", "gen_ai.evaluation.score.value": 4.0,
                 "llm_eval.evaluation.source": "llm_judge", "llm_eval.judge.cost_usd": 0.125}.items():
        _set(ev, k, v)
    llm_span(ss, TRACE_A, SPAN_A, "control", (1000, 500), "Hello there, happy to help.", "u1", 0.25)
    llm_span(ss, TRACE_B, SPAN_B, "treatment", (2000, 100), "Mail me at jane@example.com", "u2", 0.5,
             error=True, latency=4.0)
    return req


def make(tmp_path, **kw):
    return build({"state": {"db_path": str(tmp_path / "s.db")}, "plugins": [], **kw}, plugins=[],
                 clock=lambda: T0 + 10.0, environ={})


def exposition(sidecar) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SidecarCollector(sidecar))
    return generate_latest(registry).decode()


def family(text: str, name: str) -> str:
    out, on = [], False
    for line in text.splitlines():
        if line.startswith("# HELP "):
            on = line.split()[2] == name
        if on:
            out.append(line)
    return "\n".join(out) + "\n"


def feed(sc):
    sc._apply(0, "traces", batch())
    sc._apply(0, "feedback", {"trace_id": TRACE_B, "name": "user_feedback", "value": -1.0,
                              "time_unix_nano": (T0 + 5) * 10**9})


EXPECTED = {
    "llm_requests_total": """\
# HELP llm_requests_total LLM calls seen by the sidecar, by outcome (status=ok|error).
# TYPE llm_requests_total counter
llm_requests_total{experiment="e1",model="gpt-4o",service="shop",status="error",variant="treatment"} 1.0
llm_requests_total{experiment="e1",model="gpt-4o",service="shop",status="ok",variant="control"} 1.0
""",
    "llm_cost_usd_total": """\
# HELP llm_cost_usd_total Cost of LLM calls in US dollars: span attribute when present, else the price table.
# TYPE llm_cost_usd_total counter
llm_cost_usd_total{experiment="e1",model="gpt-4o",service="shop",variant="control"} 0.25
llm_cost_usd_total{experiment="e1",model="gpt-4o",service="shop",variant="treatment"} 0.5
""",
    "llm_tokens_total": """\
# HELP llm_tokens_total Tokens used by LLM calls, direction=input|output.
# TYPE llm_tokens_total counter
llm_tokens_total{direction="input",experiment="e1",model="gpt-4o",service="shop",variant="control"} 1000.0
llm_tokens_total{direction="input",experiment="e1",model="gpt-4o",service="shop",variant="treatment"} 2000.0
llm_tokens_total{direction="output",experiment="e1",model="gpt-4o",service="shop",variant="control"} 500.0
llm_tokens_total{direction="output",experiment="e1",model="gpt-4o",service="shop",variant="treatment"} 100.0
""",
    "llm_check_failures_total": """\
# HELP llm_check_failures_total Outputs that failed a check (run on 100% of LLM spans that carry text).
# TYPE llm_check_failures_total counter
llm_check_failures_total{check="error_status",model="gpt-4o",service="shop"} 1.0
llm_check_failures_total{check="pii",model="gpt-4o",service="shop"} 1.0
""",
    "llm_safety_violations_total": """\
# HELP llm_safety_violations_total Outputs that failed a check of category safety (PII, toxicity, content filter).
# TYPE llm_safety_violations_total counter
llm_safety_violations_total{check="pii",model="gpt-4o",service="shop"} 1.0
""",
    "llm_user_feedback_total": """\
# HELP llm_user_feedback_total Binary user feedback (thumbs; feedback_type=label, else positive|negative). Ratings, outcomes, categories and comments have their own metrics.
# TYPE llm_user_feedback_total counter
llm_user_feedback_total{experiment="e1",feedback_type="negative",service="shop",variant="treatment"} 1.0
""",
    "llm_eval_judge_cost_usd_total": """\
# HELP llm_eval_judge_cost_usd_total What the LLM judge itself cost, in US dollars.
# TYPE llm_eval_judge_cost_usd_total counter
llm_eval_judge_cost_usd_total{evaluator="helpfulness",service="shop"} 0.125
""",
    "llm_active_users": """\
# HELP llm_active_users Distinct users seen in the trailing window (window=1h|1d). Counted, never a label.
# TYPE llm_active_users gauge
llm_active_users{service="shop",window="1d"} 2.0
llm_active_users{service="shop",window="1h"} 2.0
""",
    "llm_eval_ab_samples": """\
# HELP llm_eval_ab_samples Samples per experiment, metric and variant (metric=exposures: LLM calls; metric=units: distinct assignment units, for SRM).
# TYPE llm_eval_ab_samples gauge
llm_eval_ab_samples{experiment="e1",metric="cost_usd",variant="control"} 1.0
llm_eval_ab_samples{experiment="e1",metric="cost_usd",variant="treatment"} 1.0
llm_eval_ab_samples{experiment="e1",metric="error",variant="control"} 1.0
llm_eval_ab_samples{experiment="e1",metric="error",variant="treatment"} 1.0
llm_eval_ab_samples{experiment="e1",metric="exposures",variant="control"} 1.0
llm_eval_ab_samples{experiment="e1",metric="exposures",variant="treatment"} 1.0
llm_eval_ab_samples{experiment="e1",metric="helpfulness",variant="control"} 1.0
llm_eval_ab_samples{experiment="e1",metric="input_tokens",variant="control"} 1.0
llm_eval_ab_samples{experiment="e1",metric="input_tokens",variant="treatment"} 1.0
llm_eval_ab_samples{experiment="e1",metric="latency_seconds",variant="control"} 1.0
llm_eval_ab_samples{experiment="e1",metric="latency_seconds",variant="treatment"} 1.0
llm_eval_ab_samples{experiment="e1",metric="output_tokens",variant="control"} 1.0
llm_eval_ab_samples{experiment="e1",metric="output_tokens",variant="treatment"} 1.0
llm_eval_ab_samples{experiment="e1",metric="user_feedback",variant="treatment"} 1.0
""",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_one_batch_produces_exactly_the_expected_exposition(tmp_path, name):
    sc = make(tmp_path)
    try:
        feed(sc)
        assert family(exposition(sc), name) == EXPECTED[name]
    finally:
        sc.stop()


def test_latency_histogram_buckets_are_cumulative_with_the_catalog_bounds(tmp_path):
    sc = make(tmp_path)
    try:
        feed(sc)
        text = family(exposition(sc), "llm_response_latency_seconds")
    finally:
        sc.stop()
    lines = [ln for ln in text.splitlines() if 'variant="treatment"' in ln]
    assert 'le="3.0"' in lines[9] and lines[9].endswith(" 0.0")
    assert 'le="5.0"' in lines[10] and lines[10].endswith(" 1.0")
    assert lines[-2].startswith("llm_response_latency_seconds_count") and lines[-2].endswith(" 1.0")
    assert lines[-1].startswith("llm_response_latency_seconds_sum") and lines[-1].endswith(" 4.0")


def test_experiment_statistics_are_sufficient_and_weights_come_from_the_spans(tmp_path):
    sc = make(tmp_path)
    try:
        feed(sc)
        snap = sc.state.snapshot()["e1"]
    finally:
        sc.stop()
    assert snap.control == "control" and snap.weights == {"control": 0.5, "treatment": 0.5}
    lat = snap.metrics["latency_seconds"]["treatment"]
    assert (lat.n, lat.sum, lat.sum_sq, lat.binary) == (1, 4.0, 16.0, False)
    err = snap.metrics["error"]
    assert (err["control"].sum, err["treatment"].sum, err["treatment"].binary) == (0.0, 1.0, True)
    assert snap.metrics["helpfulness"]["control"].sum == 4.0


def test_a_restart_resumes_the_same_statistics_and_series(tmp_path):
    sc = make(tmp_path)
    feed(sc)
    before_text, before_snap = exposition(sc), sc.state.snapshot()
    sc.stop()  # final flush
    again = make(tmp_path)
    try:
        assert again.state.snapshot() == before_snap
        after_text = exposition(again)
        for name in EXPECTED:
            assert family(after_text, name) == family(before_text, name)
    finally:
        again.stop()


def test_journaled_requests_that_were_never_applied_are_replayed_once_after_a_crash(tmp_path):
    sc = make(tmp_path)
    body = batch().SerializeToString()
    assert sc.submit("traces", batch(), body, "application/x-protobuf", "") is True
    assert sc.submit("traces", batch(), body, "application/x-protobuf", "") is False  # same body: dedup
    sc.store.close()  # "crash": nothing applied, nothing flushed
    again = make(tmp_path)
    try:
        again.start()
        again.stop()  # drains the replay, flushes
    finally:
        again.stop()
    third = make(tmp_path)
    try:
        assert family(exposition(third), "llm_requests_total") == EXPECTED["llm_requests_total"]
        assert third.store.pending_journal() == []
    finally:
        third.stop()


def test_label_values_past_the_cap_fold_into_other_and_are_counted(tmp_path):
    sc = make(tmp_path, labels={"caps": {"model": 2}})
    try:
        for i in range(5):
            req = batch()
            for s in req.resource_spans[0].scope_spans[0].spans:
                for kv in s.attributes:
                    if kv.key == "gen_ai.request.model":
                        kv.value.string_value = f"model-{i}"
            sc._apply(0, "traces", req)
        text = exposition(sc)
    finally:
        sc.stop()
    models = {ln.split('model="')[1].split('"')[0] for ln in text.splitlines()
              if ln.startswith("llm_requests_total{")}
    assert models == {"model-0", "model-1", "other"}
    assert 'llm_eval_label_overflow_total{reason="model"}' in text


def test_an_evaluation_a_plugin_submits_is_journaled_with_its_flush_and_counted_once(tmp_path):
    from otel_llm_eval.sidecar.plugins import EvaluationRecord, SidecarPlugin

    class Labeler(SidecarPlugin):
        name = "labeler"

        def flush(self, conn):
            conn.execute("CREATE TABLE IF NOT EXISTS labeler (n INTEGER)")
            if not conn.execute("SELECT 1 FROM labeler").fetchone():
                conn.execute("INSERT INTO labeler VALUES (1)")
                self.ctx.submit_evaluation(EvaluationRecord(
                    name="human_quality", source="human", trace_id=TRACE_A, span_id=SPAN_A,
                    time_unix_nano=T0 * 10**9, score=5.0))

    def make_with_plugin():
        return build({"state": {"db_path": str(tmp_path / "s.db")}, "plugins": []}, plugins=[Labeler()],
                     clock=lambda: T0 + 10.0, environ={})

    sc = make_with_plugin()
    sc._apply(0, "traces", batch())
    sc.flush()  # the plugin submits during its flush; the record is journaled in that transaction
    sc.store.close()  # crash before the worker applied it
    again = make_with_plugin()
    again.start()
    again.stop()
    third = make_with_plugin()
    try:
        snap = third.state.snapshot()["e1"]
        assert snap.metrics["human_quality"]["control"].n == 1
        assert third.store.pending_journal() == []
    finally:
        third.stop()


def test_capped_user_sets_and_span_index_count_what_they_drop(tmp_path):
    sc = make(tmp_path, usage={"max_ids_per_service": 1}, state={"db_path": str(tmp_path / "s.db"),
                                                                  "span_index_max_entries": 1})
    try:
        feed(sc)
        text = exposition(sc)
    finally:
        sc.stop()
    assert 'llm_active_users{service="shop",window="1h"} 1.0' in text
    assert 'llm_eval_label_overflow_total{reason="usage_ids"} 2.0' in text  # u2 and sess-u2
    assert 'llm_eval_label_overflow_total{reason="span_index"} 1.0' in text


def test_the_persisted_span_index_is_trimmed_with_the_in_memory_cap_and_restored_in_order(tmp_path):
    import sqlite3

    def make_capped():
        return make(tmp_path, state={"db_path": str(tmp_path / "s.db"), "span_index_max_entries": 2})

    sc = make_capped()
    for i in range(5):
        req = batch()
        for s in req.resource_spans[0].scope_spans[0].spans:
            s.trace_id = bytes([i + 1]) * 16
        sc._apply(0, "traces", req)
        sc.flush()
    sc.stop()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        rows = conn.execute("SELECT ids FROM span_index_chunks ORDER BY seq").fetchall()
    # one row per batch; only the newest batch (its call pair) is still indexed
    assert [bytes(r[0])[:16] for r in rows] == [b"\x05" * 16]
    again = make_capped()
    try:
        assert again.state.index_get("05" * 16, SPAN_B).service == "shop"
        assert again.state.index_get("01" * 16, SPAN_A) is None
    finally:
        again.stop()


def test_experiments_past_the_cap_are_counted_not_tracked(tmp_path):
    sc = make(tmp_path, state={"db_path": str(tmp_path / "s.db"), "max_experiments": 1})
    try:
        sc._apply(0, "traces", batch())  # e1 is tracked
        req = batch()
        for s in req.resource_spans[0].scope_spans[0].spans:
            for kv in s.attributes:
                if kv.key in ("llm_eval.experiment.id",):
                    kv.value.string_value = "e2"
                if kv.key == "llm_eval.experiments":
                    kv.value.string_value = kv.value.string_value.replace("e1=", "e2=")
        sc._apply(0, "traces", req)
        assert set(sc.state.snapshot()) == {"e1"}
        text = exposition(sc)
    finally:
        sc.stop()
    assert 'llm_eval_label_overflow_total{reason="experiments"}' in text


def test_judge_stats_spans_and_failed_judge_evaluations_land_in_the_judge_counters(tmp_path):
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "shop"
    ss = rs.scope_spans.add()
    stats = ss.spans.add()
    stats.trace_id, stats.span_id, stats.name = b"\x07" * 16, b"\x08" * 8, "llm_eval.judge.stats"
    for k, v in {"llm_eval.judge.evaluator": "helpfulness", "llm_eval.judge.dropped": 3,
                 "llm_eval.judge.skipped.rate": 2, "llm_eval.judge.skipped.cost": 0}.items():
        _set(stats, k, v)
    failed = ss.spans.add()
    failed.trace_id, failed.span_id, failed.parent_span_id = bytes.fromhex(TRACE_A), b"\x09" * 8, bytes.fromhex(SPAN_A)
    failed.name = "evaluate helpfulness"
    for k, v in {"gen_ai.evaluation.name": "helpfulness", "llm_eval.evaluation.source": "llm_judge",
                 "error.type": "timeout", "gen_ai.evaluation.score.value": 1.0}.items():
        _set(failed, k, v)
    sc = make(tmp_path)
    try:
        sc._apply(0, "traces", req)
        text = exposition(sc)
    finally:
        sc.stop()
    assert 'llm_eval_judge_dropped_total{evaluator="helpfulness",service="shop"} 3.0' in text
    assert 'llm_eval_judge_skipped_total{evaluator="helpfulness",reason="rate",service="shop"} 2.0' in text
    assert 'reason="cost"' not in family(text, "llm_eval_judge_skipped_total")
    assert 'llm_eval_judge_sampled_total{evaluator="helpfulness",service="shop"} 1.0' in text
    assert 'llm_eval_judge_errors_total{evaluator="helpfulness",service="shop"} 1.0' in text
    assert "llm_quality_score" not in text  # a failed evaluation has no score to count


def test_a_known_user_seen_in_a_later_minute_is_persisted_by_the_minute_refresh(tmp_path):
    """Usage ids are written when new; a known id's newer last-seen time waits for the flush's
    once-a-minute refresh (no write per call for a busy user) and survives a restart."""
    now = [T0 + 10.0]
    cfg = {"state": {"db_path": str(tmp_path / "s.db")}, "plugins": []}
    sc = build(cfg, plugins=[], clock=lambda: now[0], environ={})
    try:
        sc._apply(0, "traces", batch())
        assert sc.flush()
        h = next(iter(sc.state.usage[("shop", "user")]))
        assert sc.store.conn.execute("SELECT last_seen FROM usage_ids WHERE id = ?", (h,)).fetchone()[0] == T0 + 1.5
        with sc.state.lock:
            sc.state.see_ids("shop", "user", {h: T0 + 30.0})  # same id, 28.5 s later
        assert not sc.state.dirty_usage[("shop", "user")]  # not a write per sighting
        now[0] = T0 + 59.0
        assert sc.flush()  # same minute as the last refresh: nothing rewritten
        assert sc.store.conn.execute("SELECT last_seen FROM usage_ids WHERE id = ?", (h,)).fetchone()[0] == T0 + 1.5
        now[0] = T0 + 125.0
        assert sc.flush()  # a new minute: ids seen since the last refresh are rewritten
    finally:
        sc.stop()
    again = build(cfg, plugins=[], clock=lambda: now[0], environ={})
    try:
        assert again.state.usage[("shop", "user")][h] == T0 + 30.0
    finally:
        again.stop()


def test_span_index_chunks_expire_with_their_newest_call_and_leave_the_database(tmp_path):
    import sqlite3

    now = [T0 + 10.0]
    cfg = {"state": {"db_path": str(tmp_path / "s.db"), "span_index_retention_seconds": 100.0}, "plugins": []}
    sc = build(cfg, plugins=[], clock=lambda: now[0], environ={})
    try:
        sc._apply(0, "traces", batch())  # calls end at T0 + 1.5 and T0 + 4
        assert sc.flush()
        assert sc.state.index_get(TRACE_B, SPAN_B).experiments[0].variant == "treatment"
        assert sc.state.index_get(TRACE_A, "ff" * 8).model == "gpt-4o"  # unknown span: the trace's call
        now[0] = T0 + 103.0  # past the retention of the first call, not of the newest one
        assert sc.flush() and sc.state.index_get(TRACE_A, SPAN_A) is not None
        now[0] = T0 + 105.0
        assert sc.flush()
        assert sc.state.index_get(TRACE_A, SPAN_A) is None and sc.state.index_get(TRACE_B, SPAN_B) is None
        assert not sc.state.trace_last and sc.state.index_size == 0
    finally:
        sc.stop()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM span_index_chunks").fetchone()[0] == 0


def test_a_chunk_the_size_cap_trimmed_leaves_the_index_empty_when_it_expires(tmp_path):
    now = [T0 + 10.0]
    cfg = {"state": {"db_path": str(tmp_path / "s.db"), "span_index_retention_seconds": 100.0,
                     "span_index_max_entries": 1}, "plugins": []}
    sc = build(cfg, plugins=[], clock=lambda: now[0], environ={})
    try:
        sc._apply(0, "traces", batch())  # two calls in one chunk, one evicted by the cap
        assert sc.state.index_size == 1 and sc.state.index_evicted == 1
        assert sc.state.index_get(TRACE_B, SPAN_B) is not None and sc.state.index_get(TRACE_A, SPAN_A) is None
        now[0] = T0 + 200.0
        assert sc.flush()
        assert sc.state.index_size == 0 and not sc.state.span_index and not sc.state.index_chunks
        sc._apply(0, "traces", batch())  # the cap still holds afterwards
        assert sc.state.index_size == 1 and len(sc.state.span_index) == 1
    finally:
        sc.stop()
