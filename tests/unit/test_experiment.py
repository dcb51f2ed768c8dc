"""Experiment: validation, deterministic weighted assignment, stamping through context and baggage."""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from otel_llm_eval import semconv
from otel_llm_eval.processor import Experiment, LLMEvalSpanProcessor
from otel_llm_eval.processor.experiment import active_attributes

INVALID = [
    ("weights not summing to one are rejected", ("e", {"a": 0.5, "b": 0.4}), "sum to 0.9"),
    ("negative weights are rejected", ("e", {"a": 1.5, "b": -0.5}), "negative"),
    ("empty variants are rejected", ("e", {}), "empty"),
    ("an empty sequence of variants is rejected", ("e", []), "empty"),
    ("non-numeric weights are rejected", ("e", {"a": "1"}), "must be a number"),
    ("NaN weights are rejected", ("e", {"a": float("nan")}), "not finite"),
    ("an empty id is rejected", ("", {"a": 1.0}), "non-empty"),
    ("reserved characters in ids are rejected", ("a=b", {"a": 1.0}), "reserved"),
    ("reserved characters in variant names are rejected", ("e", {"x,y": 1.0}), "reserved"),
    ("a control that is not a variant is rejected", ("e", {"a": 1.0}, "b"), "control"),
]


@pytest.mark.parametrize("args,message", [(a, m) for _, a, m in INVALID], ids=[n for n, _, _ in INVALID])
def test_invalid_experiments_raise_a_value_error_naming_the_problem(args, message):
    with pytest.raises(ValueError, match=message):
        Experiment(*args)


def test_control_defaults_to_the_first_variant_and_sequences_mean_equal_weights():
    exp = Experiment("e", ["x", "y"])
    assert exp.control == "x" and exp.variants == {"x": 0.5, "y": 0.5}
    assert Experiment("e", {"a": 0.2, "b": 0.8}, control="b").weights_attribute == "e=b:0.8,a:0.2"


# Pinned values: a change here means every running experiment would reshuffle its users.
PINNED = [("user-1", "a"), ("user-2", "a"), ("alice", "b"), ("bob", "a"), ("dave", "b"), ("frank", "b")]


def test_assignment_is_pinned_and_stable_across_processes_and_hash_seeds():
    exp = Experiment("checkout-prompt", {"a": 0.5, "b": 0.5})
    assert [exp.assign(u) for u, _ in PINNED] == [v for _, v in PINNED]
    code = ("from otel_llm_eval.processor import Experiment;"
            "e=Experiment('checkout-prompt', {'a': 0.5, 'b': 0.5});"
            f"print(','.join(e.assign(u) for u in {[u for u, _ in PINNED]!r}))")
    for seed in ("0", "12345"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={"PYTHONHASHSEED": seed, "PATH": ""}, timeout=60).stdout.strip()
        assert out.split(",") == [v for _, v in PINNED]


def test_weights_are_respected_on_100k_ids_by_chi_square():
    from scipy.stats import chisquare

    weights = {"control": 0.5, "b": 0.3, "c": 0.2}
    exp = Experiment("w", weights)
    counts = dict.fromkeys(weights, 0)
    for i in range(100_000):
        counts[exp.assign(f"u{i}")] += 1
    observed = [counts[v] for v in weights]
    expected = [100_000 * w for w in weights.values()]
    assert chisquare(observed, expected).pvalue > 0.001


def test_a_zero_weight_variant_is_never_assigned():
    exp = Experiment("z", {"a": 1.0, "b": 0.0})
    assert {exp.assign(i) for i in range(2000)} == {"a"}


def test_unit_id_none_is_rejected_and_forced_variants_are_checked():
    exp = Experiment("e", {"a": 0.5, "b": 0.5})
    with pytest.raises(ValueError, match="unit_id"):
        exp.assign(None)
    with pytest.raises(ValueError, match="not one of"):
        with exp.activate(variant="zzz"):
            pass
    with exp.activate(variant="b") as v:
        assert v == "b"


@pytest.fixture
def pipeline():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    processor = LLMEvalSpanProcessor(tracer_provider=provider)
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter, provider
    provider.shutdown()


def _by_name(exporter):
    return {s.name: s for s in exporter.get_finished_spans()}


def test_every_span_in_the_scope_is_stamped_including_nested_and_threaded_ones(pipeline):
    tracer, exporter, _ = pipeline
    exp = Experiment("prompt", {"a": 0.5, "b": 0.5})
    with exp.activate("user-42") as variant:
        with tracer.start_as_current_span("outer"):
            with tracer.start_as_current_span("deep inside a library"):
                pass
            ctx = otel_context.get_current()

            def work():
                token = otel_context.attach(ctx)
                try:
                    tracer.start_span("in a thread that received the context").end()
                finally:
                    otel_context.detach(token)

            with ThreadPoolExecutor(1) as pool:
                pool.submit(work).result()
    tracer.start_span("after the scope").end()
    spans = _by_name(exporter)
    for name in ("outer", "deep inside a library", "in a thread that received the context"):
        attrs = spans[name].attributes
        assert attrs[semconv.EXPERIMENT_ID] == "prompt"
        assert attrs[semconv.EXPERIMENT_VARIANT] == variant == exp.assign("user-42")
        assert attrs[semconv.EXPERIMENTS] == (f"prompt={variant}",)
        assert attrs[semconv.EXPERIMENT_WEIGHTS] == ("prompt=a:0.5,b:0.5",)
    assert semconv.EXPERIMENT_ID not in spans["after the scope"].attributes


def test_a_thread_without_the_context_is_not_stamped(pipeline):
    tracer, exporter, _ = pipeline
    exp = Experiment("prompt", {"a": 0.5, "b": 0.5})
    with exp.activate("u"):
        t = threading.Thread(target=lambda: tracer.start_span("plain thread").end())
        t.start()
        t.join()
    assert semconv.EXPERIMENT_ID not in _by_name(exporter)["plain thread"].attributes


def test_nested_experiments_list_all_outermost_first_and_innermost_in_id_and_variant(pipeline):
    tracer, exporter, _ = pipeline
    outer = Experiment("model", {"small": 0.5, "large": 0.5})
    inner = Experiment("prompt", {"a": 0.25, "b": 0.75})
    with outer.activate("u1", variant="large"):
        with inner.activate("u1", variant="a"):
            tracer.start_span("both").end()
            with outer.activate("u1", variant="small"):
                tracer.start_span("reactivated").end()
        tracer.start_span("outer only").end()
    spans = _by_name(exporter)
    both = spans["both"].attributes
    assert (both[semconv.EXPERIMENT_ID], both[semconv.EXPERIMENT_VARIANT]) == ("prompt", "a")
    assert both[semconv.EXPERIMENTS] == ("model=large", "prompt=a")
    assert both[semconv.EXPERIMENT_WEIGHTS] == ("model=small:0.5,large:0.5", "prompt=a:0.25,b:0.75")
    assert spans["reactivated"].attributes[semconv.EXPERIMENTS] == ("prompt=a", "model=small")
    assert spans["outer only"].attributes[semconv.EXPERIMENTS] == ("model=large",)
    parsed = semconv.parse_experiments(both)
    assert [(p.id, p.variant, p.control) for p in parsed] == [("model", "large", "small"), ("prompt", "a", "a")]
    assert parsed[1].weights == {"a": 0.25, "b": 0.75}


def test_downstream_service_gets_the_experiment_through_w3c_baggage(pipeline):
    tracer, exporter, _ = pipeline
    # The "downstream service": its own provider and processor, fed only by HTTP headers.
    down_exporter = InMemorySpanExporter()
    down_provider = TracerProvider()
    down_provider.add_span_processor(LLMEvalSpanProcessor(tracer_provider=down_provider))
    down_provider.add_span_processor(SimpleSpanProcessor(down_exporter))
    headers: dict[str, str] = {}
    outer = Experiment("model", {"small": 0.5, "large": 0.5})
    inner = Experiment("prompt", {"a": 0.5, "b": 0.5})
    with outer.activate("u9", variant="small"), inner.activate("u9", variant="b"):
        with tracer.start_as_current_span("client"):
            TraceContextTextMapPropagator().inject(headers)
            W3CBaggagePropagator().inject(headers)
    token = otel_context.attach(otel_context.get_current())
    try:
        ctx = TraceContextTextMapPropagator().extract(headers)
        ctx = W3CBaggagePropagator().extract(headers, context=ctx)
        down_provider.get_tracer("down").start_span("server", context=ctx).end()
    finally:
        otel_context.detach(token)
    server = down_exporter.get_finished_spans()[0].attributes
    client = _by_name(exporter)["client"].attributes
    for key in (semconv.EXPERIMENT_ID, semconv.EXPERIMENT_VARIANT, semconv.EXPERIMENTS, semconv.EXPERIMENT_WEIGHTS):
        assert server[key] == client[key], key
    down_provider.shutdown()


def test_active_attributes_is_none_outside_any_scope():
    assert active_attributes() is None
