"""SRM on assignment units, not calls: the processor stamps pseudonymous unit keys, the sidecar keeps
exact per-variant unit sets (persisted, capped) and the analysis counts units when it can."""

from __future__ import annotations

import hashlib
import random
import sqlite3

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_llm_eval import Experiment, LLMEvalSpanProcessor, semconv
from otel_llm_eval.catalog import BY_NAME
from otel_llm_eval.sidecar.plugins.experiments import ExperimentsPlugin
from otel_llm_eval.sidecar.server import build
from otel_llm_eval.stats import srm

T0 = 1_800_000_000
EXP = Experiment("prompt-v2", {"control": 0.5, "treatment": 0.5})


def app_spans(n_users: int, calls_per_user, *, seed: int, forced_share: float | None = None):
    """What an instrumented app exports: one LLM span per call, inside `EXP.activate(user)`.
    `forced_share`: a buggy app that sends this share of users to control whatever the hash says."""
    rng = random.Random(seed)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(LLMEvalSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("app")
    for u in range(n_users):
        user = f"user-{seed}-{u}"
        forced = None
        if forced_share is not None:
            forced = "control" if rng.random() < forced_share else "treatment"
        with EXP.activate(user, variant=forced):
            for _ in range(calls_per_user(rng)):
                with tracer.start_as_current_span("chat m", attributes={
                        "gen_ai.operation.name": "chat", "gen_ai.request.model": "m", "user.id": user}):
                    pass
    provider.shutdown()
    return exporter.get_finished_spans()


def heavy_users(rng: random.Random) -> int:
    """Most users make a few calls, a few make hundreds (lognormal, capped)."""
    return min(400, 1 + int(rng.lognormvariate(1.0, 1.4)))


def sidecar(tmp_path, **state):
    return build({"state": {"db_path": str(tmp_path / "s.db"), **state}, "plugins": []}, plugins=[],
                 clock=lambda: T0 + 10.0, environ={})


def ingest(sc, spans, batch=500):
    for i in range(0, len(spans), batch):
        sc._apply(0, "traces", encode_spans(spans[i:i + batch]))


class Ctx:
    def __init__(self, sc):
        self.config = {"analysis": {}}
        self.sc = sc

    def now(self):
        return T0 + 10.0

    def experiment_snapshot(self):
        return self.sc.state.snapshot()


def analysis_srm(sc, tmp_path) -> dict:
    plugin = ExperimentsPlugin()
    plugin.attach(Ctx(sc))
    plugin.load(sqlite3.connect(str(tmp_path / "a.db")))
    plugin.tick(T0 + 10.0)
    return plugin.experiment_details(EXP.id)["analysis"]["srm"]


def test_spans_carry_a_pseudonymous_unit_key_per_experiment_never_the_raw_id():
    spans = app_spans(3, lambda rng: 1, seed=1)
    for i, span in enumerate(spans):
        user = f"user-1-{i}"
        key = hashlib.sha256(f"{EXP.id}:{user}".encode()).hexdigest()[:16]
        assert span.attributes[semconv.EXPERIMENT_UNITS] == (key,) == (EXP.unit_key(user),)
        assert span.attributes[semconv.EXPERIMENTS] == (f"{EXP.id}={EXP.assign(user)}",)
        assert user not in str(span.attributes[semconv.EXPERIMENT_UNITS])


def test_nested_experiments_keep_unit_keys_aligned_and_forced_variants_without_a_unit_stamp_none():
    inner = Experiment("model", ["a", "b"])
    with EXP.activate("u1"), inner.activate(variant="b"):
        from otel_llm_eval.processor.experiment import active_attributes
        attrs = active_attributes()
    assert attrs[semconv.EXPERIMENTS] == (f"{EXP.id}={EXP.assign('u1')}", "model=b")
    assert attrs[semconv.EXPERIMENT_UNITS] == (EXP.unit_key("u1"), "")
    assert semconv.parse_units(attrs) == {EXP.id: EXP.unit_key("u1")}
    with inner.activate(variant="a"):
        assert semconv.EXPERIMENT_UNITS not in active_attributes()


def test_heavy_users_make_call_level_srm_alarm_but_unit_level_srm_does_not(tmp_path):
    spans = app_spans(600, heavy_users, seed=7)
    sc = sidecar(tmp_path)
    try:
        ingest(sc, spans)
        snap = sc.state.snapshot()[EXP.id]
        calls = {v: s.n for v, s in snap.metrics["exposures"].items()}
        units = {v: s.n for v, s in snap.metrics["units"].items()}
        result = analysis_srm(sc, tmp_path)
    finally:
        sc.stop()
    assert sum(units.values()) == 600 and sum(calls.values()) == len(spans)
    # the same split judged on calls: a false alarm (call counts are overdispersed)
    assert srm.srm(calls, EXP.variants).p_value < 0.001
    assert result["basis"] == "units" and result["counts"] == units
    assert result["detected"] is False and result["p_value"] > 0.01


def test_a_real_55_45_split_is_flagged_on_units(tmp_path):
    spans = app_spans(3000, lambda rng: rng.randint(1, 3), seed=3, forced_share=0.55)
    sc = sidecar(tmp_path)
    try:
        ingest(sc, spans)
        result = analysis_srm(sc, tmp_path)
    finally:
        sc.stop()
    assert result["basis"] == "units" and sum(result["counts"].values()) == 3000
    assert result["detected"] is True and result["p_value"] < 0.001


def test_unit_counts_survive_a_restart_and_are_published_as_samples(tmp_path):
    spans = app_spans(200, heavy_users, seed=11)
    sc = sidecar(tmp_path)
    try:
        ingest(sc, spans[: len(spans) // 2])
        assert sc.flush()
    finally:
        sc.stop()
    before = {v: s.n for v, s in sc.state.snapshot()[EXP.id].metrics["units"].items()}
    again = sidecar(tmp_path)
    try:
        assert {v: s.n for v, s in again.state.snapshot()[EXP.id].metrics["units"].items()} == before
        ingest(again, spans)  # the first half again: the same units are not counted twice
        after = {v: s.n for v, s in again.state.snapshot()[EXP.id].metrics["units"].items()}
        from otel_llm_eval.sidecar.collector import SidecarCollector
        samples = {(s.labels["metric"], s.labels["variant"]): s.value
                   for fam in SidecarCollector(again).collect() if fam.name == "llm_eval_ab_samples"
                   for s in fam.samples}
    finally:
        again.stop()
    assert sum(after.values()) == 200
    assert {v: samples[("units", v)] for v in after} == after
    assert "units" in BY_NAME["llm_eval_ab_samples"].help


def test_past_the_cap_srm_runs_on_a_uniform_hash_sample_of_units_that_stays_bounded(tmp_path):
    spans = app_spans(400, lambda rng: 2, seed=5)
    sc = sidecar(tmp_path, max_units_per_experiment=100)
    try:
        ingest(sc, spans)
        snap = sc.state.snapshot()[EXP.id]
        result = analysis_srm(sc, tmp_path)
        dropped = sc.state.units_dropped
        assert sc.flush()
    finally:
        sc.stop()
    kept = sum(s.n for s in snap.metrics["units"].values())
    level = snap.unit_sample_level
    assert snap.units_capped and level >= 2 and kept <= 100
    # about 1 in 2**level of the 400 units; calls arriving for units outside the sample are counted
    # (units evicted when the sample halves had their calls counted while they were in it)
    assert abs(kept - 400 / 2 ** level) < 4 * (400 / 2 ** level) ** 0.5
    assert 0 < dropped <= 2 * (400 - kept)
    assert result["basis"] == "units" and result["units_sampled"] == f"1 in {2 ** level}"
    assert sum(result["counts"].values()) == kept and result["detected"] is False
    again = sidecar(tmp_path, max_units_per_experiment=100)
    try:  # the sample and its level are persisted
        snap2 = again.state.snapshot()[EXP.id]
        assert snap2.unit_sample_level == level
        assert {v: s.n for v, s in snap2.metrics["units"].items()} == {v: s.n for v, s in snap.metrics["units"].items()}
    finally:
        again.stop()


def test_the_unit_sample_is_independent_of_the_assignment_so_a_sampled_srm_stays_calibrated():
    # units whose mixed key has k low zero bits: the split inside the sample is the split outside it
    from otel_llm_eval.sidecar.state import unit_key_int, unit_mix
    users = [f"u{i}" for i in range(40000)]
    sampled = [u for u in users if unit_mix(unit_key_int(EXP.unit_key(u))) & 7 == 0]
    counts = {"control": 0, "treatment": 0}
    for u in sampled:
        counts[EXP.assign(u)] += 1
    assert abs(len(sampled) - 5000) < 300
    assert srm.srm(counts, EXP.variants).p_value > 0.001


def test_without_unit_keys_srm_is_unknown_with_a_hint_never_a_verdict_on_calls(tmp_path):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(LLMEvalSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("app")
    for i in range(300):
        with EXP.activate(variant="control" if i % 3 else "treatment"):  # a 2:1 split, no units
            with tracer.start_as_current_span("chat m", attributes={"gen_ai.operation.name": "chat",
                                                                     "gen_ai.request.model": "m"}):
                pass
    provider.shutdown()
    sc = sidecar(tmp_path)
    try:
        ingest(sc, exporter.get_finished_spans())
        result = analysis_srm(sc, tmp_path)
    finally:
        sc.stop()
    assert result["status"] == "unknown" and "unit" in result["hint"] and "p_value" not in result
