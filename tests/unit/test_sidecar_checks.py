"""Layer-1 checks and the price table, table-driven."""

from __future__ import annotations

import json

import pytest

from otel_llm_eval.semconv import LLMCall
from otel_llm_eval.sidecar.ingest.checks import CheckRunner, build_checks
from otel_llm_eval.sidecar.config import DEFAULTS
from otel_llm_eval.sidecar.ingest.prices import PriceTable

RUNNER = CheckRunner(build_checks(DEFAULTS["checks"]))


def run(completion, attributes=None, error=False, finish_reason="stop"):
    call = LLMCall(completion=completion, finish_reason=finish_reason)
    return RUNNER.run(call, attributes or {}, error)


@pytest.mark.parametrize("completion,attributes,error,finish,failed,safety", [
    ("Your order ships tomorrow.", {}, False, "stop", (), ()),
    ("", {}, False, "stop", ("empty_output",), ()),
    ("   \n", {}, False, "stop", ("empty_output",), ()),
    ("k", {}, False, "stop", ("output_too_short",), ()),
    ("x" * 20_001, {}, False, "stop", ("output_too_long",), ()),
    ("I'm sorry, but I can't help with that request.", {}, False, "stop", ("refusal",), ()),
    ("I\u2019m unable to share that.", {}, False, "stop", ("refusal",), ()),
    ('{"ok": true}', {"gen_ai.output.type": "json"}, False, "stop", (), ()),
    ('```json\n{"ok": true}\n```', {"gen_ai.openai.request.response_format": "json_object"}, False, "stop", (), ()),
    ("ok: true", {"gen_ai.output.type": "json"}, False, "stop", ("invalid_json",), ()),
    ("ok: true", {}, False, "stop", (), ()),
    ("Write to jane.doe@example.com for a refund.", {}, False, "stop", ("pii",), ("pii",)),
    ("Card 4111 1111 1111 1111 is on file.", {}, False, "stop", ("pii",), ("pii",)),
    ("Order 12345678 shipped on 2024-05-01.", {}, False, "stop", (), ()),
    ("Call +1 415-555-0132 today.", {}, False, "stop", ("pii",), ("pii",)),
    ("You absolute IDIOT, read the manual.", {}, False, "stop", ("toxicity",), ("toxicity",)),
    ("Just go   to hell.", {}, False, "stop", ("toxicity",), ("toxicity",)),
    ("That idiom is idiomatic.", {}, False, "stop", (), ()),
    ("The answer was cut", {}, False, "length", ("finish_reason_length",), ()),
    ("Filtered", {}, False, "content_filter", ("content_filter",), ("content_filter",)),
    ("Partial answer", {}, True, "stop", ("error_status",), ()),
])
def test_each_check_fails_exactly_on_its_own_problem(completion, attributes, error, finish, failed, safety):
    assert run(completion, attributes, error, finish) == (failed, safety)


def test_spans_without_output_text_run_only_the_checks_that_need_no_text():
    call = LLMCall(completion=None, finish_reason="length")
    assert RUNNER.run(call, {}, True) == (("finish_reason_length", "error_status"), ())


def user_check_mentions_competitor(call, attributes):
    return "acme" in (call.completion or "").lower()


def user_check_that_raises(call, attributes):
    raise RuntimeError("boom")


def test_user_checks_from_config_run_with_their_category_and_exceptions_are_counted_not_raised():
    cfg = dict(DEFAULTS["checks"], enabled=[], custom=[
        {"name": "competitor", "function": f"{__name__}:user_check_mentions_competitor", "category": "safety"},
        {"name": "broken", "function": f"{__name__}:user_check_that_raises"},
    ])
    runner = CheckRunner(build_checks(cfg))
    assert runner.run(LLMCall(completion="Try ACME instead"), {}, False) == (("competitor",), ("competitor",))
    assert runner.errors == 1


@pytest.mark.parametrize("spec", ["no_colon", "json:does_not_exist", "no.such.module:fn"])
def test_a_user_check_that_cannot_be_loaded_is_a_clear_error(spec):
    with pytest.raises(ValueError, match="check function"):
        build_checks(dict(DEFAULTS["checks"], custom=[{"name": "x", "function": spec}]))


def test_custom_toxicity_words_extend_the_shipped_list(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("# comment\nfrobnicate\n")
    runner = CheckRunner(build_checks(dict(DEFAULTS["checks"], enabled=["toxicity"], toxicity_words_file=str(words),
                                           extra_toxicity_words=["Blorp"])))
    assert runner.run(LLMCall(completion="please frobnicate"), {}, False)[0] == ("toxicity",)
    assert runner.run(LLMCall(completion="blorp!"), {}, False)[0] == ("toxicity",)
    assert runner.run(LLMCall(completion="idiot"), {}, False)[0] == ()  # the file replaced the shipped list


PRICES = PriceTable.from_config({"models": {"my-model": {"input_per_million": 1.0, "output_per_million": 2.0}}})


@pytest.mark.parametrize("model,inp,out,attrs,expected", [
    ("gpt-4o", 1_000_000, 0, {}, 2.50),
    ("gpt-4o-2024-08-06", 0, 1_000_000, {}, 10.0),
    ("gpt-4o-mini-2024-07-18", 1_000_000, 1_000_000, {}, 0.75),
    ("openai/gpt-4o-mini", 1_000_000, 0, {}, 0.15),
    ("claude-3-5-sonnet-20241022", 1_000_000, 1_000_000, {}, 18.0),
    ("models/gemini-2.0-flash", 1_000_000, 0, {}, 0.10),
    ("mistral-large-latest", 0, 1_000_000, {}, 6.0),
    ("my-model", 500_000, 500_000, {}, 1.5),
    ("gpt-4o", 1000, 1000, {"gen_ai.usage.cost": 0.42}, 0.42),
    ("gpt-4o", 1_000_000, 0, {"gen_ai.usage.cost": "not a number"}, 2.50),
    ("unknown-model", 1000, 1000, {}, None),
    ("gpt-4o", None, None, {}, None),
    ("gpt-4ox", 1_000_000, 0, {}, None),
])
def test_cost_comes_from_the_span_attribute_else_the_price_table_by_longest_prefix(model, inp, out, attrs, expected):
    got = PRICES.cost_usd(model, inp, out, attrs)
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_shipped_price_table_covers_the_four_providers():
    data = json.loads((__import__("importlib.resources").resources.files("otel_llm_eval.sidecar") / "data/prices.json").read_text())
    names = " ".join(data["models"])
    for prefix in ("gpt-", "claude-", "gemini-", "mistral-"):
        assert prefix in names
