"""normalize(): one realistic attribute set per instrumentation and version, plus malformed input."""

from __future__ import annotations

import json

import pytest

from otel_llm_eval import semconv
from otel_llm_eval.semconv import LLMCall, detect, normalize

IN_MSGS = json.dumps([
    {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
    {"role": "user", "parts": [{"type": "text", "content": "What is OTel?"}]},
])
OUT_MSGS = json.dumps([
    {"role": "assistant", "parts": [{"type": "text", "content": "A telemetry standard."}],
     "finish_reason": "stop"},
])

# (test name, attributes, expected fields)
RECOGNIZED = [
    (
        "current GenAI semconv with JSON messages prefers the response model",
        {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.usage.input_tokens": 21, "gen_ai.usage.output_tokens": 5,
            "gen_ai.response.finish_reasons": ("stop",),
            "gen_ai.input.messages": IN_MSGS, "gen_ai.output.messages": OUT_MSGS,
            "gen_ai.conversation.id": "conv-1", "user.id": "u-7",
        },
        dict(operation="chat", provider="openai", model="gpt-4o-mini-2024-07-18", input_tokens=21,
             output_tokens=5, finish_reason="stop", prompt="Be brief.\nWhat is OTel?",
             completion="A telemetry standard.", session_id="conv-1", user_id="u-7"),
    ),
    (
        "finish reason falls back to the output messages",
        {"gen_ai.operation.name": "generate_content", "gen_ai.provider.name": "gcp.gemini",
         "gen_ai.request.model": "gemini-2.0", "gen_ai.output.messages": OUT_MSGS},
        dict(operation="generate_content", provider="gcp.gemini", model="gemini-2.0", finish_reason="stop"),
    ),
    (
        "older semconv (openai-v2 default) with gen_ai.system and prompt/completion token names",
        {"gen_ai.operation.name": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o",
         "gen_ai.usage.prompt_tokens": 10, "gen_ai.usage.completion_tokens": 3,
         "server.address": "api.openai.com"},
        dict(operation="chat", provider="openai", model="gpt-4o", input_tokens=10, output_tokens=3),
    ),
    (
        "old provider spellings are normalized to the current names",
        {"gen_ai.operation.name": "text_completion", "gen_ai.system": "az.ai.openai",
         "gen_ai.request.model": "m"},
        dict(operation="text_completion", provider="azure.ai.openai"),
    ),
    (
        "OpenLLMetry before 0.55 with indexed prompt and completion",
        {"llm.request.type": "chat", "gen_ai.system": "Anthropic", "gen_ai.request.model": "claude-3",
         "gen_ai.response.model": "claude-3-5", "gen_ai.prompt.0.role": "user",
         "gen_ai.prompt.0.content": "hello", "gen_ai.prompt.1.content": "again",
         "gen_ai.completion.0.content": "hi there", "gen_ai.completion.0.finish_reason": "end_turn",
         "gen_ai.usage.prompt_tokens": 8, "gen_ai.usage.completion_tokens": 2,
         "traceloop.association.properties.user_id": "u1",
         "traceloop.association.properties.session_id": "s1"},
        dict(operation="chat", provider="anthropic", model="claude-3-5", prompt="hello\nagain",
             completion="hi there", finish_reason="stop", input_tokens=8, output_tokens=2,
             user_id="u1", session_id="s1"),
    ),
    (
        "OpenLLMetry completion request type maps to text_completion",
        {"llm.request.type": "completion", "gen_ai.request.model": "davinci"},
        dict(operation="text_completion", model="davinci"),
    ),
    (
        "OpenInference LLM span with flattened messages",
        {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4", "llm.provider": "openai",
         "llm.token_count.prompt": 30, "llm.token_count.completion": 12,
         "llm.input_messages.0.message.role": "user", "llm.input_messages.0.message.content": "Q?",
         "llm.output_messages.0.message.content": "A.", "input.value": "{\"ignored\": true}",
         "llm.finish_reason": "stop", "session.id": "sess"},
        dict(operation="chat", provider="openai", model="gpt-4", input_tokens=30, output_tokens=12,
             prompt="Q?", completion="A.", finish_reason="stop", session_id="sess"),
    ),
    (
        "OpenInference with only input.value and output.value",
        {"openinference.span.kind": "LLM", "llm.model_name": "m", "input.value": "plain question",
         "output.value": "plain answer"},
        dict(prompt="plain question", completion="plain answer"),
    ),
    (
        "Langfuse generation with JSON input/output and usage details",
        {"langfuse.observation.type": "generation", "langfuse.observation.model.name": "gpt-4o",
         "langfuse.observation.input": json.dumps([{"role": "user", "content": "hi"}]),
         "langfuse.observation.output": json.dumps({"role": "assistant", "content": "hello"}),
         "langfuse.observation.usage_details": json.dumps({"input": 4, "output": 1}),
         "langfuse.user.id": "lu", "langfuse.session.id": "ls"},
        dict(operation="chat", model="gpt-4o", prompt="hi", completion="hello", input_tokens=4,
             output_tokens=1, user_id="lu", session_id="ls"),
    ),
    (
        "Logfire LLM span with request and response data",
        {"logfire.tags": ("LLM",),
         "request_data": json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}),
         "response_data": json.dumps({"message": {"content": "y"},
                                      "usage": {"prompt_tokens": 3, "completion_tokens": 1}})},
        dict(operation="chat", model="gpt-4o", prompt="x", completion="y", input_tokens=3, output_tokens=1),
    ),
    (
        "a span with only a request model and no framework kind is an LLM call",
        {"gen_ai.request.model": "llama3", "gen_ai.system": "ollama"},
        dict(operation="chat", model="llama3", provider="ollama"),
    ),
    (
        "experiment attributes stamped by the processor are carried",
        {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m",
         semconv.EXPERIMENT_ID: "prompt-v2", semconv.EXPERIMENT_VARIANT: "b"},
        dict(experiment="prompt-v2", variant="b"),
    ),
]


@pytest.mark.parametrize("attrs,expected", [(a, e) for _, a, e in RECOGNIZED],
                         ids=[n for n, _, _ in RECOGNIZED])
def test_recognizes_llm_calls_from_each_instrumentation(attrs, expected):
    call = normalize(attrs)
    assert isinstance(call, LLMCall)
    for field, value in expected.items():
        assert getattr(call, field) == value, field


NOT_LLM = [
    ("an agent invocation is not an LLM call", {"gen_ai.operation.name": "invoke_agent",
                                                "gen_ai.request.model": "gpt-4o"}),
    ("a tool execution is not an LLM call", {"gen_ai.operation.name": "execute_tool",
                                             "gen_ai.tool.name": "search"}),
    ("an OpenInference chain is not an LLM call", {"openinference.span.kind": "CHAIN",
                                                   "llm.model_name": "gpt-4"}),
    ("a Traceloop workflow with a model is not an LLM call", {"traceloop.span.kind": "workflow",
                                                              "gen_ai.request.model": "gpt-4"}),
    ("a Langfuse span observation is not an LLM call", {"langfuse.observation.type": "span"}),
    ("an HTTP client span is not an LLM call", {"http.request.method": "POST",
                                               "url.full": "https://api.openai.com/v1/chat"}),
    ("embeddings are skipped unless configured", {"gen_ai.operation.name": "embeddings",
                                                  "gen_ai.request.model": "text-embedding-3"}),
    ("an empty attribute set is not an LLM call", {}),
]


@pytest.mark.parametrize("attrs", [a for _, a in NOT_LLM], ids=[n for n, _ in NOT_LLM])
def test_non_llm_spans_give_none(attrs):
    assert normalize(attrs) is None


def test_embeddings_are_recognized_when_configured():
    call = normalize({"gen_ai.operation.name": "embeddings", "gen_ai.request.model": "e"},
                     include_embeddings=True)
    assert call is not None and call.operation == "embeddings"


MALFORMED = [
    ("messages that are not JSON are used as plain text",
     {"gen_ai.operation.name": "chat", "gen_ai.input.messages": "[not json",
      "gen_ai.output.messages": "{broken"}, dict(prompt="[not json", completion="{broken")),
    ("tokens as strings are parsed", {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": " 42 ",
                                      "gen_ai.usage.output_tokens": "7.0"},
     dict(input_tokens=42, output_tokens=7)),
    ("junk and negative tokens become None",
     {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": "lots", "gen_ai.usage.output_tokens": -3},
     dict(input_tokens=None, output_tokens=None)),
    ("boolean tokens are not counts", {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": True},
     dict(input_tokens=None)),
    ("missing fields are None", {"gen_ai.operation.name": "chat"},
     dict(model=None, provider=None, prompt=None, completion=None, finish_reason=None)),
    ("messages of the wrong shape give no text",
     {"gen_ai.operation.name": "chat", "gen_ai.input.messages": json.dumps([1, None, {"parts": 5}]),
      "gen_ai.output.messages": json.dumps({"unexpected": [1, 2]})}, dict(prompt=None, completion=None)),
    ("langfuse usage that is not JSON is ignored",
     {"langfuse.observation.type": "generation", "langfuse.observation.usage_details": "{{"},
     dict(input_tokens=None)),
    ("a finish reason list of odd types is stringified",
     {"gen_ai.operation.name": "chat", "gen_ai.response.finish_reasons": (3,)}, dict(finish_reason="3")),
    ("deeply nested JSON does not crash",
     {"gen_ai.operation.name": "chat", "gen_ai.input.messages": "[" * 5000 + "]" * 5000}, dict()),
]


@pytest.mark.parametrize("attrs,expected", [(a, e) for _, a, e in MALFORMED], ids=[n for n, _, _ in MALFORMED])
def test_malformed_input_never_raises(attrs, expected):
    call = normalize(attrs)
    assert call is not None
    for field, value in expected.items():
        assert getattr(call, field) == value, field


@pytest.mark.parametrize("value", [None, 5, "str", object(), {"gen_ai.operation.name": object()}],
                         ids=["none", "int", "string", "object", "unstringable operation"])
def test_non_mapping_attributes_give_none_without_raising(value):
    assert normalize(value) is None


IDS = [
    ("integer ids are zero-padded lowercase hex", 0xABC, 0x1, "0" * 29 + "abc", "0" * 15 + "1"),
    ("byte ids are hex", b"\x01" * 16, b"\xff" * 8, "01" * 16, "ff" * 8),
    ("hex strings are lowercased", "A" * 32, "B" * 16, "a" * 32, "b" * 16),
    ("invalid ids become None", "xyz", 0, None, None),
]


@pytest.mark.parametrize("tid,sid,exp_tid,exp_sid", [r[1:] for r in IDS], ids=[r[0] for r in IDS])
def test_ids_are_normalized_to_lowercase_hex(tid, sid, exp_tid, exp_sid):
    call = normalize({"gen_ai.operation.name": "chat"}, trace_id=tid, span_id=sid,
                     start_time_unix_nano=1_000, end_time_unix_nano=2_500_001_000)
    assert (call.trace_id, call.span_id) == (exp_tid, exp_sid)
    assert call.latency_seconds == pytest.approx(2.5)


def test_detection_keys_cover_every_detected_span():
    """The processor's fast path skips spans without DETECTION_KEYS: none of RECOGNIZED may be lost."""
    for _, attrs, _ in RECOGNIZED:
        assert not semconv.DETECTION_KEYS.isdisjoint(attrs.keys())
        assert detect(attrs) is not None


def test_normalize_span_reads_an_sdk_span():
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("t")
    span = tracer.start_span("chat m", attributes={"gen_ai.operation.name": "chat",
                                                   "gen_ai.request.model": "m"})
    span.end()
    call = semconv.normalize_span(span)
    assert call.model == "m"
    assert call.trace_id == f"{span.context.trace_id:032x}"
    assert call.span_id == f"{span.context.span_id:016x}"
    assert call.latency_seconds is not None and call.latency_seconds >= 0
    assert semconv.normalize_span(object()) is None


# --- property: arbitrary attribute values never raise ----------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_KEYS = sorted(semconv.DETECTION_KEYS | {
    "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
    "gen_ai.response.finish_reasons", "gen_ai.prompt.0.content", "gen_ai.completion.0.content",
    "llm.input_messages.0.message.content", "input.value", "output.value", "langfuse.observation.input",
    "langfuse.observation.usage_details", "request_data", "response_data", "traceloop.span.kind",
    "gen_ai.system", "user.id", "session.id", semconv.EXPERIMENT_ID,
})
_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40), st.binary(max_size=20),
    st.sampled_from(["chat", "LLM", "generation", "completion", "[", "{\"a\":", "[{\"parts\": 3}]", "-1", "1e400"]),
    st.lists(st.one_of(st.text(max_size=10), st.integers()), max_size=3).map(tuple),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=8))
def test_normalize_never_raises_on_arbitrary_values(attrs):
    call = normalize(attrs, trace_id=attrs.get("user.id"), span_id=attrs.get("session.id"),
                     start_time_unix_nano=attrs.get("gen_ai.usage.input_tokens"), end_time_unix_nano=5)
    assert call is None or isinstance(call, LLMCall)
    if semconv.DETECTION_KEYS.isdisjoint(attrs.keys()):
        assert call is None  # the processor's fast path may skip such spans
    if call is not None:
        assert call.input_tokens is None or call.input_tokens >= 0


def test_normalize_builds_the_same_frozen_llmcall_as_its_constructor():
    import dataclasses

    call = normalize({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", "user.id": "u1",
                      "gen_ai.usage.input_tokens": 3}, trace_id=1, span_id=2,
                      start_time_unix_nano=1, end_time_unix_nano=2_000_000_001)
    names = [f.name for f in dataclasses.fields(LLMCall)]
    assert sorted(vars(call)) == sorted(names)  # every field set (none left to a default)
    same = LLMCall(**{n: getattr(call, n) for n in names})
    assert call == same and hash(call) == hash(same) and repr(call) == repr(same)
    with pytest.raises(dataclasses.FrozenInstanceError):
        call.model = "other"  # type: ignore[misc]
    assert dataclasses.replace(call, model="x").model == "x"


@pytest.mark.parametrize("case,value,expected", [
    ("an array gives its first reason", ("length", "stop"), "length"),
    ("a JSON array string (Logfire) is parsed", '["length"]', "length"),
    ("a plain string passes", "stop", "stop"),
    ("Anthropic's max_tokens is length", "max_tokens", "length"),
    ("Anthropic's end_turn is stop", "end_turn", "stop"),
    ("Gemini's upper-case SAFETY is content_filter", "SAFETY", "content_filter"),
    ("an empty array is no reason", "[]", None),
    ("an object is no reason", '{"a": 1}', None),
])
def test_finish_reasons_are_read_from_every_shape_in_the_genai_spelling(case, value, expected):
    assert semconv.finish_reason_of(value) == expected
