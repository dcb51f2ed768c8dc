"""Plugin call summaries (made per batch where spans are decoded) leave the state `on_call` per call does."""

from __future__ import annotations

import json
import math
import random

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_llm_eval.sidecar.plugins.anomalies import AnomaliesPlugin
from otel_llm_eval.sidecar.plugins.drift import DriftPlugin
from otel_llm_eval.sidecar.plugins.experiments import ExperimentsPlugin
from otel_llm_eval.sidecar.plugins.review import ReviewPlugin
from otel_llm_eval.sidecar.server import build
from test_sidecar_state import _set as _kv  # one span-attribute helper for the sidecar tests

T0 = 1_800_000_000


def per_call(cls):
    """The plugin without its summarizer: the core then calls on_call for every call."""
    return type(f"PerCall{cls.__name__}", (cls,), {"summarizer": None})()


SUMMARIZING = (ExperimentsPlugin, DriftPlugin, AnomaliesPlugin, ReviewPlugin)


def with_summaries():
    return [cls() for cls in SUMMARIZING]


def call_by_call():
    return [per_call(cls) for cls in SUMMARIZING]


def batch(n: int, seed: int, untimed: float = 0.0) -> ExportTraceServiceRequest:
    """n LLM calls across 3 services (one past a service cap of 2), 2 experiments' variants,
    sessions, texts of varied length (some short: the review's length rule), errors, a drift
    attribute that is sometimes numeric and sometimes not; a share `untimed` has no end time."""
    rng = random.Random(seed)
    req = ExportTraceServiceRequest()
    for s in range(3):
        rs = req.resource_spans.add()
        kv = rs.resource.attributes.add()
        kv.key, kv.value.string_value = "service.name", f"svc-{s}"
        ss = rs.scope_spans.add()
        for i in range(n // 3):
            span = ss.spans.add()
            span.trace_id, span.span_id = rng.randbytes(16), rng.randbytes(8)
            span.name = "chat"
            start = (T0 + rng.randint(0, 600)) * 10**9
            span.start_time_unix_nano = start
            if rng.random() >= untimed:
                span.end_time_unix_nano = start + rng.randint(50, 9000) * 10**6
            if rng.random() < 0.1:
                span.status.code = 2
            variant = rng.choice(["control", "treatment"])
            completion = " ".join(rng.choice(["ok", "sure", "the answer", "42"]) for _ in range(rng.randint(0, 30)))
            for key, value in {
                "gen_ai.operation.name": "chat", "gen_ai.request.model": rng.choice(["gpt-4o", "mini"]),
                "gen_ai.usage.input_tokens": rng.randint(1, 900), "gen_ai.usage.output_tokens": rng.randint(1, 300),
                "user.id": f"u{rng.randrange(30)}", "gen_ai.conversation.id": f"c{rng.randrange(60)}",
                "llm_eval.experiment.id": "prompt", "llm_eval.experiment.variant": variant,
                "app.tier": rng.choice(["free", "pro", "3", "7"]),
                "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [
                    {"type": "text", "content": "q" * rng.randint(1, 400)}]}]),
                "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
                    {"type": "text", "content": completion}], "finish_reason": rng.choice(["stop", "length"])}]),
            }.items():
                _kv(span, key, value)
    return req


def run(tmp_path, name, plugins, req):
    cfg = {"state": {"db_path": str(tmp_path / f"{name}.db")}, "labels": {"caps": {"service": 2}},
           "analysis": {"drift": {"attributes": ["app.tier"]}},
           "review": {"sampling": {"random_rate": 0.2, "stratify_by": "service"}}}
    sc = build(cfg, plugins=plugins, clock=lambda: T0 + 700.0, environ={})
    try:
        with sc.state.lock:
            sc.ingestor.apply(sc.ingestor.preparer.prepare_traces(req))
        return {p.name: p for p in sc.plugins}, sc.labels.overflow_snapshot()
    finally:
        sc.stop()


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("summaries")
    req = batch(600, seed=11)
    return run(tmp, "summary", with_summaries(), req), run(tmp, "per_call", call_by_call(), req)


def test_the_drift_summary_leaves_the_reservoirs_and_segments_of_per_call_updates(both):
    (plugins_a, _), (plugins_b, _) = both
    a, b = plugins_a["drift"], plugins_b["drift"]
    assert a.slots.keys() == b.slots.keys() and {k[0] for k in a.slots} == {"svc-0", "svc-1", "other"}
    for key in a.slots:
        assert a.slots[key].keys() == b.slots[key].keys(), key
        for slot, da in a.slots[key].items():
            db = b.slots[key][slot]
            # reservoirs are not full here: same values, same order
            assert (da.count, list(da.values), da.categories) == (db.count, list(db.values), db.categories), key
    assert any(ds.categories and ds.values.tolist() for slots in a.slots.values() for ds in slots.values())
    assert a._dirty == b._dirty and a.errors == b.errors == 0
    # concept drift remembers every call's input segment (here the input length) until its evaluation
    assert a.concept.pending == b.concept.pending and len(a.concept.pending) > 0


def test_the_anomaly_summary_leaves_the_slot_aggregates_of_per_call_updates(both):
    (plugins_a, _), (plugins_b, _) = both
    a, b = plugins_a["anomalies"], plugins_b["anomalies"]
    assert a.series.keys() == b.series.keys() and a.series
    for key in a.series:
        for slot, sa in a.series[key].items():
            sb = b.series[key][slot]
            assert (sa.n, sa.buckets) == (sb.n, sb.buckets) and math.isclose(sa.total, sb.total, rel_tol=1e-12)
    assert a._dirty == b._dirty and a.errors == b.errors == 0


def test_the_session_summary_leaves_the_engagement_sessions_of_per_call_updates(both):
    (plugins_a, _), (plugins_b, _) = both
    a, b = plugins_a["experiments"], plugins_b["experiments"]
    assert {k: vars(s) for k, s in a.sessions.items()} == {k: vars(s) for k, s in b.sessions.items()} != {}
    assert a._dirty_sessions == b._dirty_sessions and a.errors == b.errors == 0


def test_the_review_summary_admits_the_same_items_as_per_call_sampling(both):
    (plugins_a, overflow_a), (plugins_b, overflow_b) = both
    a, b = plugins_a["review"], plugins_b["review"]
    assert list(a._waiting) == list(b._waiting) and len(a._waiting) > 100
    assert a._waiting == b._waiting and a._by_trace == b._by_trace
    assert {p["service"] for p in a._waiting.values()} == {"svc-0", "svc-1", "other"}
    assert a.sampler._heaps == b.sampler._heaps and a.sampler._heaps
    assert a.sampler._strata == b.sampler._strata == {"svc-0", "svc-1", "other"}
    assert a._dropped == b._dropped
    assert overflow_a == overflow_b and overflow_a["service"] == 200  # once per call of svc-2


def test_calls_without_an_end_time_are_counted_with_the_plugin_clock_in_both_paths(tmp_path):
    """A summary applies them after the batch's timed calls (so a session's first variant may
    differ from call-by-call order); what is counted is the same."""
    req = batch(90, seed=5, untimed=0.5)
    a, _ = run(tmp_path, "summary", with_summaries(), req)
    b, _ = run(tmp_path, "per_call", call_by_call(), req)

    def calls(plugins):
        return sum(s.n for (svc, series), slots in plugins["anomalies"].series.items() if series == "error_rate"
                   for s in slots.values())

    assert calls(a) == calls(b) == 90
    late = [s for (svc, series), slots in a["anomalies"].series.items() if series == "error_rate"
            for slot, s in slots.items() if slot == T0 + 600]  # the clock's slot (T0 + 700)
    assert sum(s.n for s in late) >= 30
    sessions = [sum(s.messages for s in p["experiments"].sessions.values()) for p in (a, b)]
    assert sessions[0] == sessions[1] > 0
    drift = [sum(ds.count for slots in p["drift"].slots.values() for ds in slots.values()) for p in (a, b)]
    assert drift[0] == drift[1] > 0


def test_call_record_builds_the_same_frozen_record_as_its_constructor():
    import dataclasses

    from otel_llm_eval.semconv import ExperimentAssignment, LLMCall
    from otel_llm_eval.sidecar.plugins import CallRecord, call_record

    fields = dict(call=LLMCall(model="m"), service="s", error=True, end_time_unix_nano=5,
                  experiments=(ExperimentAssignment("e", "a"),), failed_checks=("pii",), safety_checks=("pii",),
                  cost_usd=0.5, attributes={"k": 1})
    fast, slow = call_record(**fields), CallRecord(**fields)
    assert fast == slow and repr(fast) == repr(slow)
    assert sorted(vars(fast)) == sorted(f.name for f in dataclasses.fields(CallRecord))
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.service = "x"  # type: ignore[misc]


def test_a_batch_added_to_a_drift_reservoir_keeps_a_uniform_sample_of_everything_seen():
    """add_numeric_many (the summary path) keeps each of N values with probability cap / N, like
    add_numeric one by one: over 2,000 seeded runs every position is kept about equally often."""
    from otel_llm_eval.sidecar.plugins.drift.windows import DriftSlot

    cap, n, runs = 10, 100, 2000
    kept = [0] * n
    rng = random.Random(3)
    for _ in range(runs):
        ds = DriftSlot()
        ds.add_numeric_many([float(i) for i in range(40)], cap, rng)   # fills, then replaces
        ds.add_numeric_many([float(i) for i in range(40, n)], cap, rng)
        assert ds.count == n and len(ds.values) == cap
        for v in ds.values:
            kept[int(v)] += 1
    expected = runs * cap / n  # 200 per position
    chi2 = sum((k - expected) ** 2 / expected for k in kept)
    assert chi2 < 150  # 99 degrees of freedom: p ~ 0.001 at 149
    assert kept[:10] != [runs] * 10  # the first values do get replaced
