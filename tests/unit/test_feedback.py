"""record_feedback / emit_evaluation: child spans of the target with evaluation + experiment attributes."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import INVALID_SPAN, SpanContext, TraceFlags

from otel_llm_eval import record_feedback, semconv
from otel_llm_eval.processor import Experiment, LLMEvalSpanProcessor, emit_evaluation


@pytest.fixture
def pipe():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(LLMEvalSpanProcessor(tracer_provider=provider))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("t"), exporter
    provider.shutdown()


def feedback_spans(exporter):
    return [s for s in exporter.get_finished_spans() if semconv.EVALUATION_NAME in (s.attributes or {})]


def request(tracer, unit="u1"):
    exp = Experiment("prompt", {"a": 0.5, "b": 0.5})
    with exp.activate(unit) as variant:
        with tracer.start_as_current_span("request") as root:
            with tracer.start_as_current_span("chat m", attributes={"gen_ai.operation.name": "chat"}):
                pass
    return root, variant


TARGETS = [
    ("a span", lambda root: root),
    ("a span context", lambda root: root.get_span_context()),
    ("a 32-hex trace id", lambda root: f"{root.get_span_context().trace_id:032x}"),
    ("an upper-case trace id", lambda root: f"{root.get_span_context().trace_id:032X}"),
]


@pytest.mark.parametrize("to_target", [t for _, t in TARGETS], ids=[n for n, _ in TARGETS])
def test_feedback_is_a_child_of_the_target_and_carries_its_experiment(pipe, to_target):
    tracer, exporter = pipe
    root, variant = request(tracer)
    record_feedback(to_target(root), "thumbs", 1, label="up", comment="nice")
    (fb,) = feedback_spans(exporter)
    assert fb.context.trace_id == root.get_span_context().trace_id
    assert fb.parent.span_id == root.get_span_context().span_id  # trace ids resolve to the remembered root
    a = fb.attributes
    assert a[semconv.EVALUATION_NAME] == "thumbs" and a[semconv.EVALUATION_SCORE_VALUE] == 1.0
    assert a[semconv.EVALUATION_SCORE_LABEL] == "up" and a[semconv.EVALUATION_EXPLANATION] == "nice"
    assert a[semconv.EVALUATION_SOURCE] == "user"
    assert (a[semconv.EXPERIMENT_ID], a[semconv.EXPERIMENT_VARIANT]) == ("prompt", variant)
    assert a[semconv.EXPERIMENT_WEIGHTS] == ("prompt=a:0.5,b:0.5",)
    assert [e.name for e in fb.events] == [semconv.EVALUATION_EVENT]


def test_feedback_on_an_unknown_trace_id_stays_in_that_trace_without_experiment(pipe):
    tracer, exporter = pipe
    tid = "0af7651916cd43dd8448eb211c80319c"
    record_feedback(tid, "thumbs", 0)
    (fb,) = feedback_spans(exporter)
    assert f"{fb.context.trace_id:032x}" == tid
    assert semconv.EXPERIMENT_ID not in fb.attributes


def test_feedback_on_an_unsampled_trace_is_still_recorded():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    provider.add_span_processor(LLMEvalSpanProcessor(tracer_provider=provider))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    ctx = SpanContext(0x1234, 0x5678, is_remote=False, trace_flags=TraceFlags(0))
    record_feedback(ctx, "thumbs", 1)
    assert len(feedback_spans(exporter)) == 1
    provider.shutdown()


def test_emit_evaluation_adds_extra_attributes_but_core_ones_win(pipe):
    tracer, exporter = pipe
    root, _ = request(tracer)
    emit_evaluation(root, "pairwise", 1.0, label="b", source="user",
                    attributes={"llm_eval.pairwise.winner": "b", semconv.EVALUATION_NAME: "spoofed", "skip": None})
    (fb,) = feedback_spans(exporter)
    assert fb.attributes["llm_eval.pairwise.winner"] == "b"
    assert fb.attributes[semconv.EVALUATION_NAME] == "pairwise"
    assert "skip" not in fb.attributes


def test_label_only_feedback_and_boolean_values(pipe):
    tracer, exporter = pipe
    root, _ = request(tracer)
    record_feedback(root, "category", label="wrong_language")
    record_feedback(root, "thumbs", True)
    spans = {s.attributes[semconv.EVALUATION_NAME]: s.attributes for s in feedback_spans(exporter)}
    assert semconv.EVALUATION_SCORE_VALUE not in spans["category"]
    assert spans["thumbs"][semconv.EVALUATION_SCORE_VALUE] == 1.0


INVALID = [
    ("a short trace id", dict(target="abc123"), "32-hex"),
    ("a non-hex trace id", dict(target="z" * 32), "32-hex"),
    ("an all-zero trace id", dict(target="0" * 32), "all zeros"),
    ("an invalid span", dict(target=INVALID_SPAN), "invalid"),
    ("an invalid span context", dict(target=INVALID_SPAN.get_span_context()), "invalid"),
    ("a number", dict(target=42), "must be a span"),
    ("None", dict(target=None), "must be a span"),
    ("an empty name", dict(name=""), "name"),
    ("a NaN value", dict(value=float("nan")), "finite"),
    ("a string value", dict(value="good"), "finite"),
    ("no value, no label and no comment", dict(value=None), "a value, a label or a comment"),
    ("a non-string comment", dict(comment=5), "comment"),
    ("an unknown kind", dict(kind="stars"), "kind must be one of"),
    ("a value outside its scale", dict(value=7.0, scale=(1, 5)), "outside the scale"),
    ("a scale upside down", dict(scale=(5, 1)), "min < max"),
]


@pytest.mark.parametrize("override,message", [(o, m) for _, o, m in INVALID], ids=[n for n, *_ in INVALID])
def test_invalid_feedback_raises_a_clear_value_error(pipe, override, message):
    kwargs = dict(target="0af7651916cd43dd8448eb211c80319c", name="thumbs", value=1.0, comment=None)
    kwargs.update(override)
    with pytest.raises(ValueError, match=message):
        record_feedback(kwargs.pop("target"), kwargs.pop("name"), kwargs.pop("value"), **kwargs)
    assert feedback_spans(pipe[1]) == []


def test_a_rating_and_an_outcome_carry_their_kind_to_the_sidecar(pipe):
    from otel_llm_eval import record_outcome
    from otel_llm_eval import semconv as sc
    trace = "0af7651916cd43dd8448eb211c80319c"
    record_feedback(trace, "stars", 4, kind="scale", scale=(1, 5))
    record_outcome(trace, "task_completed", False)
    spans = {s.attributes[sc.EVALUATION_NAME]: s.attributes for s in feedback_spans(pipe[1])}
    assert spans["stars"][sc.FEEDBACK_KIND] == "scale"
    assert (spans["stars"][sc.FEEDBACK_SCALE_MIN], spans["stars"][sc.FEEDBACK_SCALE_MAX]) == (1.0, 5.0)
    assert spans["task_completed"][sc.FEEDBACK_KIND] == "outcome"
    assert spans["task_completed"][sc.EVALUATION_SCORE_VALUE] == 0.0
    with pytest.raises(ValueError, match="True or False"):
        record_outcome(trace, "task_completed", 1)
