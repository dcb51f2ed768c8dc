"""LLMEvalSpanProcessor with the real SDK: stamping, sampling, judge worker, failures, lifecycle."""

from __future__ import annotations

import os
import threading
import time

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_llm_eval import semconv
from otel_llm_eval.processor import CountingMetrics, Experiment, JudgeResult, LLMEvalSpanProcessor
from otel_llm_eval.processor.sampling import should_sample

CHAT = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "m",
        "gen_ai.response.id": "resp-1",
        "gen_ai.output.messages": '[{"role":"assistant","parts":[{"type":"text","content":"fine"}]}]'}


class Pipeline:
    def __init__(self, **kwargs):
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.processor = LLMEvalSpanProcessor(tracer_provider=self.provider, **kwargs)
        self.provider.add_span_processor(self.processor)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("test")

    def llm_span(self, attrs=None, name="chat m"):
        span = self.tracer.start_span(name, attributes=dict(CHAT if attrs is None else attrs))
        span.end()
        return span

    def spans(self, name_prefix=""):
        return [s for s in self.exporter.get_finished_spans() if s.name.startswith(name_prefix)]

    def evaluations(self):
        return self.spans("gen_ai.evaluation")


@pytest.fixture
def make():
    made = []

    def factory(**kwargs):
        p = Pipeline(**kwargs)
        made.append(p)
        return p

    yield factory
    for p in made:
        p.provider.shutdown()


def constant_judge(score=4.0):
    def judge(call):
        return JudgeResult(score, "pass", f"model={call.model}", cost_usd=0.001)
    judge.name = "const"
    return judge


def test_a_judged_llm_span_gets_an_evaluation_child_span_with_event_and_experiment(make):
    p = make(judge=constant_judge(), judge_sample_rate=1.0)
    exp = Experiment("prompt", {"a": 0.5, "b": 0.5})
    with exp.activate("u1") as variant:
        target = p.llm_span()
    assert p.processor.force_flush(5000)
    (ev,) = p.evaluations()
    assert ev.parent.span_id == target.context.span_id and ev.context.trace_id == target.context.trace_id
    a = ev.attributes
    assert a[semconv.EVALUATION_NAME] == "const"
    assert a[semconv.EVALUATION_SCORE_VALUE] == 4.0
    assert a[semconv.EVALUATION_SCORE_LABEL] == "pass"
    assert a[semconv.EVALUATION_EXPLANATION] == "model=m"
    assert a[semconv.EVALUATION_SOURCE] == "llm_judge"
    assert a[semconv.JUDGE_COST_USD] == pytest.approx(0.001)
    assert a["gen_ai.response.id"] == "resp-1"
    assert (a[semconv.EXPERIMENT_ID], a[semconv.EXPERIMENT_VARIANT]) == ("prompt", variant)
    assert a[semconv.EXPERIMENTS] == (f"prompt={variant}",)
    assert a[semconv.EXPERIMENT_WEIGHTS] == ("prompt=a:0.5,b:0.5",)
    (event,) = ev.events
    assert event.name == semconv.EVALUATION_EVENT
    assert event.attributes[semconv.EVALUATION_SCORE_VALUE] == 4.0
    assert p.processor.counters["judged"] == 1


def test_evaluation_spans_and_non_llm_spans_are_never_judged(make):
    calls = []
    p = make(judge=lambda c: calls.append(c) or 3.0, judge_sample_rate=1.0)
    p.llm_span({"http.request.method": "GET"}, name="GET /")
    p.llm_span({"gen_ai.operation.name": "invoke_agent", "gen_ai.request.model": "m"}, name="agent")
    p.llm_span()
    assert p.processor.force_flush(5000)
    # a second flush round: the evaluation span produced above must not be judged again
    assert p.processor.force_flush(5000)
    assert len(calls) == 1 and len(p.evaluations()) == 1


def test_sampling_is_deterministic_from_the_trace_id(make):
    p = make(judge=lambda c: 3.0, judge_sample_rate=0.3)
    spans = [p.llm_span() for _ in range(300)]
    assert p.processor.force_flush(10000)
    judged = {e.context.trace_id for e in p.evaluations()}
    expected = {s.context.trace_id for s in spans if should_sample(s.context.trace_id, 0.3)}
    assert judged == expected and 40 < len(judged) < 140


SAMPLING = [
    ("a zero rate judges nothing", dict(judge_sample_rate=0.0), 0),
    ("a per-variant rate overrides the default", dict(judge_sample_rate=0.0, variant_sample_rates={"exp=b": 1.0}), 20),
    ("a variant-name key also works", dict(judge_sample_rate=0.0, variant_sample_rates={"b": 1.0}), 20),
    ("a provider rate overrides everything", dict(judge_sample_rate=1.0, sample_rate_provider=lambda e, v: 0.0), 0),
    ("a provider returning None falls back", dict(judge_sample_rate=1.0, sample_rate_provider=lambda e, v: None), 20),
    ("a provider that raises falls back and is counted", dict(judge_sample_rate=1.0,
                                                              sample_rate_provider=lambda e, v: 1 / 0), 20),
]


@pytest.mark.parametrize("kwargs,expected", [(k, e) for _, k, e in SAMPLING], ids=[n for n, _, _ in SAMPLING])
def test_sample_rate_configuration(make, kwargs, expected):
    seen = []
    p = make(judge=lambda c: seen.append((c.experiment, c.variant)) or 3.0, **kwargs)
    with Experiment("exp", {"a": 0.5, "b": 0.5}).activate(variant="b"):
        for _ in range(20):
            p.llm_span()
    assert p.processor.force_flush(5000)
    assert len(seen) == expected
    assert all(s == ("exp", "b") for s in seen)


def test_provider_is_called_with_experiment_and_variant(make):
    args = []
    p = make(judge=lambda c: 3.0, sample_rate_provider=lambda e, v: args.append((e, v)) or 0.0)
    with Experiment("exp", {"a": 0.5, "b": 0.5}).activate(variant="a"):
        p.llm_span()
    p.llm_span()
    assert args == [("exp", "a"), (None, None)]


def test_judge_failures_become_error_records(make):
    def raising(call):
        raise RuntimeError("judge exploded")

    metrics = CountingMetrics()
    p = make(judge=raising, judge_sample_rate=1.0, metrics=metrics)
    p.llm_span()
    assert p.processor.force_flush(5000)
    (ev,) = p.evaluations()
    assert ev.attributes["error.type"] == "RuntimeError"
    assert semconv.EVALUATION_SCORE_VALUE not in ev.attributes
    assert ev.events[0].attributes["error.type"] == "RuntimeError"
    assert metrics.get("error", "RuntimeError") == 1 and metrics.get("sampled", "raising") == 1


GARBAGE = [
    ("a string", "great"),
    ("None", None),
    ("NaN", float("nan")),
    ("a JudgeResult with an infinite score", JudgeResult(float("inf"))),
    ("a JudgeResult without score or error", JudgeResult(None)),
    ("a bool", True),
]


@pytest.mark.parametrize("value", [v for _, v in GARBAGE], ids=[n for n, _ in GARBAGE])
def test_a_judge_returning_garbage_gives_an_error_record(make, value):
    p = make(judge=lambda c: value, judge_sample_rate=1.0)
    p.llm_span()
    assert p.processor.force_flush(5000)
    (ev,) = p.evaluations()
    assert ev.attributes["error.type"] in ("invalid_result", "invalid_score", "missing_score")
    assert semconv.EVALUATION_SCORE_VALUE not in ev.attributes


def test_a_judge_hanging_past_its_timeout_is_recorded_and_work_continues(make):
    release = threading.Event()
    calls = []

    def judge(call):
        calls.append(call)
        if len(calls) == 1:
            release.wait(10)
        return 5.0

    p = make(judge=judge, judge_sample_rate=1.0, judge_timeout_seconds=0.2)
    p.llm_span()
    p.llm_span()
    assert p.processor.force_flush(5000)
    release.set()
    errors = sorted(e.attributes.get("error.type", "ok") for e in p.evaluations())
    assert errors == ["ok", "timeout"]


def test_force_flush_honours_its_deadline_with_a_slow_judge(make):
    release = threading.Event()
    p = make(judge=lambda c: release.wait(10) and 5.0, judge_sample_rate=1.0, judge_timeout_seconds=30)
    p.llm_span()
    started = time.monotonic()
    assert p.processor.force_flush(200) is False
    assert time.monotonic() - started < 5  # generous: the point is it returned, not the exact time
    release.set()
    assert p.processor.force_flush(5000) is True
    assert len(p.evaluations()) == 1


def test_a_full_queue_drops_never_blocks_and_emits_a_stats_span(make):
    release = threading.Event()
    metrics = CountingMetrics()
    p = make(judge=lambda c: release.wait(10) and 5.0, judge_sample_rate=1.0, max_queue_size=2, metrics=metrics)
    for _ in range(10):
        p.llm_span()
    release.set()
    assert p.processor.force_flush(5000)
    dropped = p.processor.counters["dropped"]
    assert 6 <= dropped <= 8  # 1 in flight + 2 queued were kept (the first may still be queued)
    assert metrics.get("dropped", "queue_full") == dropped
    stats = p.spans(semconv.JUDGE_STATS_SPAN)
    assert sum(s.attributes[semconv.JUDGE_DROPPED] for s in stats) == dropped
    assert all(s.attributes[semconv.JUDGE_EVALUATOR] == "<lambda>" for s in stats)


BUDGETS = [
    ("over the calls-per-minute budget calls are skipped for rate", dict(max_judge_calls_per_minute=3),
     semconv.JUDGE_SKIPPED_RATE, 3),
    ("over the USD-per-hour budget calls are skipped for cost", dict(max_judge_usd_per_hour=0.0025),
     semconv.JUDGE_SKIPPED_COST, 3),
]


@pytest.mark.parametrize("kwargs,key,judged", [(k, a, j) for _, k, a, j in BUDGETS], ids=[n for n, *_ in BUDGETS])
def test_judge_budget_skips_and_counts(make, kwargs, key, judged):
    p = make(judge=constant_judge(), judge_sample_rate=1.0, **kwargs)
    for _ in range(10):
        p.llm_span()
        p.processor.force_flush(5000)  # cost is known only after each judgement
    assert len(p.evaluations()) == judged
    stats = p.spans(semconv.JUDGE_STATS_SPAN)
    assert sum(s.attributes[key] for s in stats) == 10 - judged
    assert all(isinstance(s.attributes[semconv.JUDGE_DROPPED], int) for s in stats)


def test_stats_spans_are_rate_limited_and_only_sent_when_non_zero(make):
    p = make(judge=constant_judge(), judge_sample_rate=1.0, max_judge_calls_per_minute=0,
             stats_interval_seconds=3600)
    p.processor.force_flush(1000)
    assert p.spans(semconv.JUDGE_STATS_SPAN) == []
    for _ in range(5):
        p.llm_span()
    time.sleep(1.3)  # the worker ticks; the interval (1 h) has not passed, so nothing is sent yet
    assert p.spans(semconv.JUDGE_STATS_SPAN) == []
    p.processor.force_flush(1000)
    (stats,) = p.spans(semconv.JUDGE_STATS_SPAN)
    assert stats.attributes[semconv.JUDGE_SKIPPED_RATE] == 5


ODD_ATTRS = [
    ("tokens as strings", {**CHAT, "gen_ai.usage.input_tokens": "12"}),
    ("messages that are not JSON", {**CHAT, "gen_ai.output.messages": "not json"}),
    ("sequences of numbers", {**CHAT, "gen_ai.response.finish_reasons": (1, 2)}),
    ("bytes values", {**CHAT, "gen_ai.request.model": b"\xff\xfe"}),
    ("a boolean operation", {"gen_ai.operation.name": True}),
]


@pytest.mark.parametrize("attrs", [a for _, a in ODD_ATTRS], ids=[n for n, _ in ODD_ATTRS])
def test_attributes_of_odd_types_never_raise(make, attrs):
    p = make(judge=lambda c: 3.0, judge_sample_rate=1.0)
    p.llm_span(attrs)
    assert p.processor.force_flush(5000)
    assert p.processor.errors.counts == {}


def test_shutdown_twice_and_use_after_shutdown_are_safe(make):
    metrics = CountingMetrics()
    p = make(judge=lambda c: 3.0, judge_sample_rate=1.0, metrics=metrics)
    p.llm_span()
    p.processor.shutdown()
    p.processor.shutdown()
    assert len(p.evaluations()) == 1  # drained before shutdown returned
    p.processor.on_end(p.tracer.start_span("chat late", attributes=CHAT))  # span started after shutdown
    p.processor.on_start(p.tracer.start_span("x"))
    assert p.processor.force_flush(100) is True
    assert metrics.get("dropped", "shutdown") == 1
    assert p.processor.errors.counts == {}


def test_shutdown_drops_queued_work_past_its_deadline(make):
    release = threading.Event()
    p = make(judge=lambda c: release.wait(10) and 5.0, judge_sample_rate=1.0, shutdown_timeout_millis=100,
             judge_timeout_seconds=30)
    for _ in range(3):
        p.llm_span()
    started = time.monotonic()
    p.processor.shutdown()
    assert time.monotonic() - started < 5
    release.set()
    assert p.processor.counters["dropped"] >= 2


def test_a_metrics_sink_that_raises_is_counted_not_raised(make):
    class Broken:
        def __getattr__(self, name):
            def fail(*args):
                raise RuntimeError("sink down")
            return fail

    p = make(judge=lambda c: 3.0, judge_sample_rate=1.0, metrics=Broken())
    p.llm_span()
    assert p.processor.force_flush(5000)
    assert len(p.evaluations()) == 1
    assert p.processor.errors.counts.get("metrics_sink", 0) >= 1


def test_hooks_never_raise_on_broken_spans(make):
    p = make(judge=lambda c: 3.0, judge_sample_rate=1.0)
    p.processor.on_end(object())
    p.processor.on_start(object(), parent_context=None)
    assert p.processor.errors.counts == {"on_end": 1}


def test_default_experiments_stamp_spans_outside_any_scope(make):
    exp = Experiment("deploy", {"stable": 0.9, "canary": 0.1})
    p = make(default_experiments=[(exp, "canary")])
    p.tracer.start_span("plain").end()
    with Experiment("prompt", {"a": 1.0}).activate("u"):
        p.tracer.start_span("scoped").end()
    spans = {s.name: s.attributes for s in p.spans()}
    assert spans["plain"][semconv.EXPERIMENTS] == ("deploy=canary",)
    assert spans["plain"][semconv.EXPERIMENT_WEIGHTS] == ("deploy=stable:0.9,canary:0.1",)
    assert spans["scoped"][semconv.EXPERIMENTS] == ("prompt=a",)


INVALID_CONFIG = [
    ("a rate above one", dict(judge_sample_rate=1.5), "judge_sample_rate"),
    ("a non-callable judge", dict(judge="gpt"), "callable"),
    ("a bad per-variant rate", dict(variant_sample_rates={"b": -1}), "variant_sample_rates"),
    ("a zero timeout", dict(judge_timeout_seconds=0), "judge_timeout_seconds"),
]


@pytest.mark.parametrize("kwargs,message", [(k, m) for _, k, m in INVALID_CONFIG], ids=[n for n, *_ in INVALID_CONFIG])
def test_invalid_configuration_is_rejected_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LLMEvalSpanProcessor(**kwargs)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_judging_works_in_a_forked_child(make, tmp_path):
    p = make(judge=lambda c: 3.0, judge_sample_rate=1.0)
    p.llm_span()
    assert p.processor.force_flush(5000)  # the worker thread now exists in the parent
    out = tmp_path / "child.txt"
    pid = os.fork()
    if pid == 0:  # child: the parent's worker thread is gone; judging must restart
        code = 1
        try:
            p.llm_span()
            ok = p.processor.force_flush(5000)
            out.write_text(f"{ok} {len(p.evaluations())}")
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert out.read_text() == "True 2"
    p.llm_span()
    assert p.processor.force_flush(5000) and len(p.evaluations()) == 2


def test_stamping_respects_the_sdk_attribute_limits():
    from opentelemetry.sdk.trace import SpanLimits

    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=SpanLimits(max_span_attributes=3, max_attribute_length=8))
    provider.add_span_processor(LLMEvalSpanProcessor(tracer_provider=provider))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with Experiment("long-experiment-name", {"a": 1.0}).activate("u"):
        provider.get_tracer("t").start_span("s", attributes={"x": 1}).end()
    (span,) = exporter.get_finished_spans()
    assert len(span.attributes) == 3  # the SDK's count limit holds
    assert all(len(v) <= 8 for v in span.attributes.values() if isinstance(v, str))
    provider.shutdown()


def test_the_in_app_import_path_stays_light():
    import subprocess
    import sys

    code = ("import sys, otel_llm_eval as o\n"
            "o.LLMEvalSpanProcessor, o.Experiment, o.record_feedback, o.HeuristicJudge, o.OpenAIJudge\n"
            "import otel_llm_eval.processor.autoattach\n"
            "heavy = [m for m in sys.modules if m.split('.')[0] in "
            "('numpy', 'scipy', 'prometheus_client', 'fastapi', 'starlette', 'uvicorn')]\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""


def test_a_framework_span_wrapping_a_provider_span_is_judged_once_on_the_innermost(make):
    calls = []
    p = make(judge=lambda c: calls.append(c.model) or 4.0, judge_sample_rate=1.0)
    with p.tracer.start_as_current_span("agent run"):
        with p.tracer.start_as_current_span("LangChain LLM", attributes={
                "openinference.span.kind": "LLM", "llm.model_name": "outer"}):
            with p.tracer.start_as_current_span("chat inner", attributes={
                    "gen_ai.operation.name": "chat", "gen_ai.request.model": "inner",
                    "gen_ai.output.messages": CHAT["gen_ai.output.messages"]}):
                pass
        p.llm_span()  # a sibling call in the same trace is judged too
    assert p.processor.force_flush(5000)
    assert sorted(calls) == ["inner", "m"]


def test_an_inline_judge_runs_on_the_worker_and_its_errors_are_records_too(make):
    class Inline:
        runs_inline = True
        name = "inline"

        def __init__(self):
            self.threads = []

        def __call__(self, call):
            self.threads.append(threading.current_thread().name)
            if len(self.threads) == 2:
                raise KeyError("boom")
            return 5.0

    judge = Inline()
    p = make(judge=judge, judge_sample_rate=1.0)
    p.llm_span()
    p.llm_span()
    assert p.processor.force_flush(5000)
    assert set(judge.threads) == {"otel-llm-eval-judge"}
    assert sorted(e.attributes.get("error.type", "ok") for e in p.evaluations()) == ["KeyError", "ok"]


def test_a_call_without_text_is_not_judged_and_counted_as_no_text_in_a_stats_span(make):
    calls = []
    p = make(judge=lambda c: calls.append(c) or 1.0, judge_sample_rate=1.0)
    p.llm_span({k: v for k, v in CHAT.items() if k != "gen_ai.output.messages"})
    assert p.processor.force_flush(5000)
    assert calls == [] and p.evaluations() == []
    assert p.processor.counters["skipped_no_text"] == 1 and p.processor.counters["sampled"] == 0
    (stats,) = p.spans(semconv.JUDGE_STATS_SPAN)
    assert stats.attributes[semconv.JUDGE_SKIPPED_NO_TEXT] == 1


def test_the_judge_sees_the_text_only_the_outer_span_of_a_stacked_call_has(make):
    calls = []
    p = make(judge=lambda c: calls.append(c) or 4.0, judge_sample_rate=1.0)
    with p.tracer.start_as_current_span("chat gpt-4o-mini", attributes={  # openai-v2 without capture
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini"}):
        with p.tracer.start_as_current_span("ChatCompletion", attributes={  # OpenInference under it
                "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini",
                "llm.input_messages.0.message.content": "hi"}):
            pass
    # the inner span has only the prompt; the outer one adds nothing here: no text -> not judged
    assert p.processor.force_flush(5000)
    assert calls == [] and p.processor.counters["skipped_no_text"] == 1
    with p.tracer.start_as_current_span("ChatCompletion", attributes={  # OpenInference over openai-v2
            "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini",
            "llm.output_messages.0.message.content": "the answer", "llm.token_count.prompt": 12}):
        with p.tracer.start_as_current_span("chat gpt-4o-mini", attributes={
                "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini"}):
            pass
    assert p.processor.force_flush(5000)
    assert [(c.completion, c.input_tokens) for c in calls] == [("the answer", 12)]
    assert len(p.evaluations()) == 1


def test_the_request_half_of_a_logfire_stream_is_not_judged_and_its_response_log_is(make):
    calls = []
    p = make(judge=lambda c: calls.append(c.completion) or 4.0, judge_sample_rate=1.0)
    base = {"request_data": '{"model":"gpt-4o-mini"}', "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o-mini", "logfire.tags": ("LLM",)}
    p.llm_span({**base, "logfire.span_type": "span"})
    p.llm_span({**base, "logfire.span_type": "log", "duration": 0.2,
                "gen_ai.output.messages": CHAT["gen_ai.output.messages"]})
    assert p.processor.force_flush(5000)
    assert calls == ["fine"] and p.processor.counters["skipped_no_text"] == 0


def test_two_spans_of_one_response_that_are_not_nested_are_judged_once_with_the_text_of_either(make):
    calls = []
    p = make(judge=lambda c: calls.append((c.completion, c.output_tokens)) or 4.0, judge_sample_rate=1.0)
    sdk = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "claude", "gen_ai.response.id": "msg_1",
           "gen_ai.usage.output_tokens": 9}
    with p.tracer.start_as_current_span("request"):
        p.llm_span(sdk, name="anthropic.messages.create")  # the SDK's own span ends first
        p.llm_span({**sdk, "gen_ai.usage.output_tokens": 10,
                    "gen_ai.output.messages": CHAT["gen_ai.output.messages"]}, name="anthropic.chat")
    assert p.processor.force_flush(5000)
    assert calls == [("fine", 9)]
