"""The processor's hot path shortcuts keep their meaning: trace memory, sampling order, batched judge hand-off."""

from __future__ import annotations

import threading
import time

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_llm_eval import semconv
from otel_llm_eval.processor import Experiment, LLMEvalSpanProcessor
from otel_llm_eval.processor.feedback import TraceMemory, resolve_target
from otel_llm_eval.processor.worker import JudgeWorker

CHAT = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "m",
        "gen_ai.output.messages": '[{"role":"assistant","parts":[{"type":"text","content":"fine"}]}]'}


@pytest.fixture
def pipeline():
    made = []

    def factory(**kwargs):
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        processor = LLMEvalSpanProcessor(tracer_provider=provider, **kwargs)
        provider.add_span_processor(processor)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        made.append(provider)
        return provider.get_tracer("test"), processor, exporter

    yield factory
    for provider in made:
        provider.shutdown()


def _children_end_first(tracer):
    with tracer.start_as_current_span("request") as root:
        for _ in range(3):
            tracer.start_span("db").end()
    return root


def _root_ends_first(tracer):
    root = tracer.start_span("request")
    from opentelemetry import trace
    ctx = trace.set_span_in_context(root)
    root.end()
    tracer.start_span("late child", context=ctx).end()
    return root


SHAPES = [("children end before the root", _children_end_first), ("the root ends before a child", _root_ends_first)]


@pytest.mark.parametrize("shape", [s for _, s in SHAPES], ids=[n for n, _ in SHAPES])
@pytest.mark.parametrize("in_experiment", [True, False], ids=["in an experiment", "outside experiments"])
def test_a_trace_id_resolves_to_its_root_span_and_experiment_whatever_order_spans_end_in(pipeline, shape,
                                                                                         in_experiment):
    tracer, _, _ = pipeline()
    if in_experiment:
        with Experiment("exp", {"a": 0.5, "b": 0.5}).activate(variant="b"):
            root = shape(tracer)
    else:
        root = shape(tracer)
    parent, experiment = resolve_target(f"{root.get_span_context().trace_id:032x}")
    assert parent.span_id == root.get_span_context().span_id
    if in_experiment:
        assert experiment[semconv.EXPERIMENT_ID] == "exp" and experiment[semconv.EXPERIMENT_VARIANT] == "b"
    else:
        assert experiment is None


def test_the_trace_memory_evicts_the_oldest_traces_first_and_stays_bounded():
    memory = TraceMemory(capacity=3)
    for trace_id in range(1, 8):
        memory.observe(trace_id, 100 + trace_id, True, {})
        memory.observe(trace_id, 200 + trace_id, False, {})  # a second span of the same trace adds nothing
    assert len(memory) == 3 and memory.evicted == 4 and len(memory._order) == 3
    assert [memory.get(t)[0] for t in range(1, 8)] == [0, 0, 0, 0, 105, 106, 107]


def test_the_sample_rate_provider_is_asked_only_about_llm_calls(pipeline):
    asked = []
    tracer, processor, _ = pipeline(judge=lambda c: 3.0, sample_rate_provider=lambda e, v: asked.append(v) or 0.0)
    tracer.start_span("GET /", attributes={"http.request.method": "GET"}).end()
    tracer.start_span("tool", attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.request.model": "m"}).end()
    tracer.start_span("chat m", attributes=CHAT).end()
    assert asked == [None]


def test_sampled_spans_with_a_detection_key_that_are_not_llm_calls_are_not_judged(pipeline):
    judged = []
    tracer, processor, exporter = pipeline(judge=lambda c: judged.append(c.operation) or 3.0, judge_sample_rate=1.0)
    tracer.start_span("tool", attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.request.model": "m"}).end()
    tracer.start_span("agent", attributes={"openinference.span.kind": "AGENT"}).end()
    tracer.start_span("chat m", attributes=CHAT).end()
    assert processor.force_flush(5000)
    assert judged == ["chat"]


class Recorder:
    def __init__(self, block: threading.Event | None = None) -> None:
        self.items: list[int] = []
        self.started = threading.Event()
        self.block = block

    def __call__(self, item: int) -> None:
        self.started.set()
        if self.block is not None:
            self.block.wait(10)
        self.items.append(item)


def _start_and_wait_idle(worker: JudgeWorker) -> None:
    """A freshly started thread drains what is already queued: wait until it sleeps."""
    worker.ensure_started()
    deadline = time.monotonic() + 10.0
    while not worker._idle and time.monotonic() < deadline:
        time.sleep(0.005)
    assert worker._idle


def test_flush_wakes_a_worker_waiting_for_its_tick_and_returns_once_every_item_was_processed():
    rec = Recorder()
    worker = JudgeWorker(rec, tick_seconds=600.0, wake_on_submit=False)
    try:
        _start_and_wait_idle(worker)
        assert all(worker.submit(i) for i in range(5))
        assert worker.flush(10.0)  # without waking the worker (600 s tick) this would return False
        assert rec.items == [0, 1, 2, 3, 4]
    finally:
        assert worker.close(10.0) == 0


def test_close_drains_the_queue_of_a_worker_waiting_for_its_tick():
    rec = Recorder()
    worker = JudgeWorker(rec, tick_seconds=600.0, wake_on_submit=False)
    _start_and_wait_idle(worker)
    assert all(worker.submit(i) for i in range(3))
    assert worker.close(10.0) == 0 and rec.items == [0, 1, 2]
    assert not worker.submit(9)  # closed


def test_a_burst_filling_half_the_queue_wakes_a_worker_that_is_not_woken_on_submit():
    rec = Recorder()
    worker = JudgeWorker(rec, max_queue_size=10, tick_seconds=600.0, wake_on_submit=False)
    try:
        _start_and_wait_idle(worker)
        assert all(worker.submit(i) for i in range(4))
        assert not rec.started.wait(0.2)  # below half full: waits for its tick (or a flush)
        assert worker.submit(4)
        assert rec.started.wait(10.0)  # half full: woken without a flush
    finally:
        worker.close(10.0)


def test_a_worker_not_woken_on_submit_still_drains_on_its_tick():
    rec = Recorder()
    worker = JudgeWorker(rec, tick_seconds=0.05, wake_on_submit=False)
    try:
        _start_and_wait_idle(worker)
        assert worker.submit(1)
        assert rec.started.wait(10.0)
    finally:
        worker.close(10.0)


def test_by_default_the_first_item_wakes_the_worker():
    rec = Recorder()
    worker = JudgeWorker(rec, tick_seconds=600.0)
    try:
        _start_and_wait_idle(worker)
        assert worker.submit(1)
        assert rec.started.wait(10.0)
    finally:
        worker.close(10.0)


def test_a_processor_judges_without_force_flush_within_its_tick(pipeline):
    tracer, processor, exporter = pipeline(judge=lambda c: 4.0, judge_sample_rate=1.0)
    tracer.start_span("chat m", attributes=CHAT).end()
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and not any(s.name.startswith("gen_ai.evaluation") for s in
                                                   exporter.get_finished_spans()):
        time.sleep(0.02)
    assert any(s.name.startswith("gen_ai.evaluation") for s in exporter.get_finished_spans())
