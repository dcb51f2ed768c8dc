"""Applying a batch at once (per-batch sums) leaves the same state as applying its spans one by one."""

from __future__ import annotations

import math
import random

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from otel_llm_eval import Experiment, LLMEvalSpanProcessor
from otel_llm_eval.sidecar.server import build

T0 = 1_800_000_000


def spans(n: int, seed: int):
    rng = random.Random(seed)
    outer, inner = Experiment("prompt", ["a", "b"]), Experiment("model", {"m1": 0.7, "m2": 0.3})
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(LLMEvalSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("app")
    for i in range(n):
        user = f"u{rng.randrange(40)}"
        with outer.activate(user), inner.activate(user):
            attrs = {"gen_ai.operation.name": "chat", "gen_ai.request.model": rng.choice(["gpt-4o", "mini"]),
                     "user.id": user, "session.id": f"s{rng.randrange(80)}"}
            if rng.random() < 0.8:  # some calls have no token counts or cost: None columns
                attrs.update({"gen_ai.usage.input_tokens": rng.randrange(1, 900),
                              "gen_ai.usage.output_tokens": rng.randrange(1, 300),
                              "gen_ai.usage.cost": rng.random() / 1000})
            with tracer.start_as_current_span("chat", attributes=attrs) as span:
                if rng.random() < 0.1:
                    span.set_status(Status(StatusCode.ERROR))
    provider.shutdown()
    return exporter.get_finished_spans()


def state_of(sc):
    st = sc.state
    stats = {(e.id, k): (s.n, s.sum, s.sum_sq, s.binary, s.first_seen, s.last_seen)
             for e in st.experiments.values() for k, s in e.stats.items()}
    units = {(e.id, v): len(u) for e in st.experiments.values() for v, u in e.units.items()}
    exps = {e.id: (e.first_seen, e.last_seen, e.control, e.weights) for e in st.experiments.values()}
    index = {k: st.index_get(k[:32], k[32:]) for k in st.span_index}
    return dict(st.counters), {k: (list(h[0]), h[1]) for k, h in st.hists.items()}, stats, units, \
        set(st.dirty_series), set(st.dirty_stats), exps, index, dict(st.usage), dict(st.request_slots), \
        sc.labels.overflow_snapshot()


def test_a_batch_applied_at_once_equals_its_calls_applied_one_by_one(tmp_path):
    """The batch delta (sums per raw label set, made in a worker) leaves the same state as the
    same spans sent one per request — label caps and their overflow counts included."""
    finished = spans(400, seed=2)
    caps = {"labels": {"caps": {"model": 1}}}  # the second model folds into `other`, call by call
    a = build({"state": {"db_path": str(tmp_path / "a.db")}, "plugins": [], **caps}, plugins=[], environ={})
    b = build({"state": {"db_path": str(tmp_path / "b.db")}, "plugins": [], **caps}, plugins=[], environ={})
    try:
        with a.state.lock:
            a.ingestor.apply(a.ingestor.preparer.prepare_traces(encode_spans(finished)))
        with b.state.lock:
            for span in finished:
                b.ingestor.apply(b.ingestor.preparer.prepare_traces(encode_spans([span])))
        batch, single = state_of(a), state_of(b)
    finally:
        a.stop()
        b.stop()
    counters_a, hists_a, stats_a, units_a, dirty_a, dirty_stats_a, exps_a, index_a, *rest_a = batch
    counters_b, hists_b, stats_b, units_b, dirty_b, dirty_stats_b, exps_b, index_b, *rest_b = single
    assert counters_a.keys() == counters_b.keys() and hists_a.keys() == hists_b.keys() and units_a == units_b
    for k in counters_a:
        if k[0] == "llm_eval_ingest_spans_total":
            continue  # 400 either way, but counted per request
        assert math.isclose(counters_a[k], counters_b[k], rel_tol=1e-12), k
    for k in hists_a:
        assert hists_a[k][0] == hists_b[k][0] and math.isclose(hists_a[k][1], hists_b[k][1], rel_tol=1e-12), k
    assert stats_a.keys() == stats_b.keys() and len(stats_a) >= 2 * 2 * 6
    for k in stats_a:
        (n1, s1, q1, bin1, f1, l1), (n2, s2, q2, bin2, f2, l2) = stats_a[k], stats_b[k]
        assert (n1, bin1, f1, l1) == (n2, bin2, f2, l2), k
        assert math.isclose(s1, s2, rel_tol=1e-12) and math.isclose(q1, q2, rel_tol=1e-12), k
    assert dirty_a == dirty_b and dirty_stats_a == dirty_stats_b and exps_a == exps_b
    assert index_a == index_b and len(index_a) == 400
    usage_a, slots_a, overflow_a = rest_a
    usage_b, slots_b, overflow_b = rest_b
    assert usage_a == usage_b and slots_a == slots_b and sum(n for slots in slots_a.values() for n in slots.values()) == 400
    assert overflow_a == overflow_b and overflow_a["model"] > 0
    assert counters_a[("llm_eval_ingest_spans_total", ("traces",))] == 400


class _FailingSpanIndexWrites:
    """A connection proxy whose span index insert fails (a full disk, say)."""

    def __init__(self, conn):
        self._conn = conn

    def executemany(self, sql, rows):
        if "INTO span_index_chunks" in sql:
            raise OSError("disk full")
        return self._conn.executemany(sql, rows)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def test_a_failed_flush_leaves_everything_dirty_and_the_next_one_writes_it(tmp_path):
    """Without plugins the flush takes the dirty sets and writes without holding the state lock;
    when the write fails they are dirty again, and a later flush persists the same state."""
    req = encode_spans(spans(200, seed=3))
    db = str(tmp_path / "s.db")
    a = build({"state": {"db_path": db}, "plugins": []}, plugins=[], environ={})
    try:
        with a.state.lock:
            a.ingestor.apply(a.ingestor.preparer.prepare_traces(req))
        st = a.state
        before = (set(st.dirty_series), set(st.dirty_stats), {k: set(v) for k, v in st.dirty_usage.items()},
                  list(st.index_new))
        assert before[0] and before[2] and before[3]
        real = a.store.conn
        a.store.conn = _FailingSpanIndexWrites(real)
        assert a.flush() is False
        a.store.conn = real
        assert before[0] <= st.dirty_series and before[1] <= st.dirty_stats
        assert before[2] == st.dirty_usage and before[3] == st.index_new
        assert a.flush() is True
        assert not st.dirty_usage and not st.index_new
        counters = {k: v for k, v in st.counters.items() if not k[0].startswith("llm_eval_")}
        n_index = len(st.span_index)
    finally:
        a.stop()
    b = build({"state": {"db_path": db}, "plugins": []}, plugins=[], environ={})
    try:
        assert {k: v for k, v in b.state.counters.items() if not k[0].startswith("llm_eval_")} == counters
        assert len(b.state.span_index) == n_index
    finally:
        b.stop()
