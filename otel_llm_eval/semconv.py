"""Attribute names (ours and the GenAI conventions) and `normalize`: one LLM span -> `LLMCall`.

Shared by the in-app processor and the sidecar, so there is exactly one copy of the detection and
normalization rules. Standard library only (no SDK import): the sidecar calls it on decoded OTLP.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from collections.abc import Mapping  # isinstance on typing.Mapping takes a slow detour
from typing import Any

# --- attributes this project writes (public contract, see docs/app.md "Span attributes and experiments") ---
EXPERIMENT_ID = "llm_eval.experiment.id"
EXPERIMENT_VARIANT = "llm_eval.experiment.variant"
EVALUATION_SOURCE = "llm_eval.evaluation.source"  # llm_judge | user | human | code
#: Sources that mean "an automatic evaluator run by the processor's judge worker" (an LLM judge or
#: a code judge such as HeuristicJudge): they count as "the judge" in the sidecar (judge counters,
#: judge-score drift and anomaly series, judge sample-rate planning, judge-human agreement).
JUDGE_SOURCES = ("llm_judge", "code")
#: End-user feedback (thumbs, stars, pairwise choices): counted in `llm_user_feedback_total` and the
#: experiment statistics, never in the `llm_quality_score` histogram (its buckets are a 1..5 scale).
USER_SOURCE = "user"
#: string[]: every experiment active in the scope, outermost first, each "{id}={variant}".
#: `EXPERIMENT_ID`/`EXPERIMENT_VARIANT` carry the innermost one.
EXPERIMENTS = "llm_eval.experiments"
#: string[] aligned with EXPERIMENTS: each "{id}={control}:{w},{variant}:{w},..." (control first),
#: so the sidecar learns weights and control without users configuring them twice.
EXPERIMENT_WEIGHTS = "llm_eval.experiment.weights"
#: string[] aligned with EXPERIMENTS: a pseudonymous key of the assignment unit per experiment
#: (first 16 hex of sha256("{id}:{unit_id}"), never the raw id; "" when there is none), so the
#: sidecar counts units, not calls, for the sample ratio mismatch check.
EXPERIMENT_UNITS = "llm_eval.experiment.units"
#: Judge bookkeeping. On evaluation spans: what the judge call cost.
JUDGE_COST_USD = "llm_eval.judge.cost_usd"
#: On an LLM span the app's processor handed to its judge: True. The sidecar's judge plugin does not
#: judge such a call again (layer 2 of the cascade runs once per call, in the app or the sidecar).
JUDGE_SAMPLED = "llm_eval.judge.sampled"
#: A span named JUDGE_STATS_SPAN, emitted by the processor only when something was dropped or
#: skipped, carries deltas since its previous one (ints): judge evaluator name, dropped (queue
#: full / shutdown), skipped by rate budget, skipped by cost budget.
JUDGE_STATS_SPAN = "llm_eval.judge.stats"
JUDGE_EVALUATOR = "llm_eval.judge.evaluator"
JUDGE_DROPPED = "llm_eval.judge.dropped"
JUDGE_SKIPPED_RATE = "llm_eval.judge.skipped.rate"
JUDGE_SKIPPED_COST = "llm_eval.judge.skipped.cost"
#: Calls sampled for judging that carried no output text ("not judged: no text").
JUDGE_SKIPPED_NO_TEXT = "llm_eval.judge.skipped.no_text"
#: Interleaving / pairwise preference records: evaluation spans named INTERLEAVING_EVALUATION
#: (source "user") with these attributes. For a tie, winner/loser hold the two arms and TIE=true.
INTERLEAVING_EVALUATION = "llm_eval.interleaving"
INTERLEAVING_ID = "llm_eval.interleaving.id"              # the comparison (experiment label)
INTERLEAVING_METHOD = "llm_eval.interleaving.method"      # pairwise | team_draft
INTERLEAVING_WINNER = "llm_eval.interleaving.winner"
INTERLEAVING_LOSER = "llm_eval.interleaving.loser"
INTERLEAVING_TIE = "llm_eval.interleaving.tie"            # bool
INTERLEAVING_FIRST_SHOWN = "llm_eval.interleaving.first_shown"  # arm shown first (position bias)

# --- GenAI evaluation (OTel GenAI semconv) ---
#: What a feedback record means (otel_llm_eval.sidecar.feedback_kinds): binary | outcome | scale |
#: categorical | text. Optional: configured kinds and the documented default apply without it.
FEEDBACK_KIND = "llm_eval.feedback.kind"
FEEDBACK_SCALE_MIN = "llm_eval.feedback.scale.min"   # a scale rating's declared range, e.g. 1..5
FEEDBACK_SCALE_MAX = "llm_eval.feedback.scale.max"
EVALUATION_NAME = "gen_ai.evaluation.name"
EVALUATION_SCORE_VALUE = "gen_ai.evaluation.score.value"
EVALUATION_SCORE_LABEL = "gen_ai.evaluation.score.label"
EVALUATION_EXPLANATION = "gen_ai.evaluation.explanation"
EVALUATION_EVENT = "gen_ai.evaluation.result"


@dataclass(frozen=True)
class LLMCall:
    """The normalized view of one LLM span. Every field is None when unknown.

    Ids are lowercase hex (32 chars for trace_id, 16 for span_id).
    """

    operation: str | None = None
    provider: str | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None
    prompt: str | None = None
    completion: str | None = None
    session_id: str | None = None
    user_id: str | None = None
    experiment: str | None = None
    variant: str | None = None
    latency_seconds: float | None = None
    trace_id: str | None = None
    span_id: str | None = None


# --- detection ---------------------------------------------------------------------------------
# Operations that are LLM inference calls (GenAI semconv `gen_ai.operation.name`).
LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "completion"})
EMBEDDING_OPERATIONS = frozenset({"embeddings", "embedding"})

#: If a span carries none of these keys it cannot be an LLM call. The processor checks this with
#: one C-level `dict.keys().isdisjoint(...)` before doing any other work on a span.
DETECTION_KEYS = frozenset({
    "gen_ai.operation.name",
    "openinference.span.kind",
    "langfuse.observation.type",
    "llm.request.type",
    "logfire.tags",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "llm.model_name",
})

_LLM_REQUEST_TYPES = {"chat": "chat", "completion": "text_completion"}
# Old `gen_ai.system` spellings -> current `gen_ai.provider.name` values.
_PROVIDER_ALIASES = {
    "az.ai.openai": "azure.ai.openai",
    "az.ai.inference": "azure.ai.inference",
    "vertex_ai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "xai": "x_ai",
    "mistralai": "mistral_ai",
    "bedrock": "aws.bedrock",
    "aws_bedrock": "aws.bedrock",
}
_MAX_INDEXED = 64  # gen_ai.prompt.{i}.* and llm.input_messages.{i}.* scanned at most this far
_MAX_TEXT_CHARS = 100_000  # prompt/completion text is cut here (a judge never needs more)


def detect(attributes: Mapping[str, Any], include_embeddings: bool = False) -> str | None:
    """The operation of an LLM call ("chat", "text_completion", ...), or None when the span is not one.

    Cheap (a handful of dict lookups); the processor calls it on the end of candidate spans.
    Follows the detection order of the GenAI notes: semconv operation, OpenInference span kind,
    Langfuse observation type, OpenLLMetry request type, Logfire tags, then "has a model and is
    not a Traceloop workflow/task/agent/tool". Never raises.
    """
    try:
        get = attributes.get
        op = get("gen_ai.operation.name")
        if op is not None:
            op = str(op).lower()
            if op in LLM_OPERATIONS:
                return "text_completion" if op == "completion" else op
            if op in EMBEDDING_OPERATIONS:
                return "embeddings" if include_embeddings else None
            return None  # invoke_agent, execute_tool, retrieval, create_agent, workflows ...
        kind = get("openinference.span.kind")
        if kind is not None:
            kind = str(kind).upper()
            if kind == "LLM":
                return "chat"
            if kind == "EMBEDDING":
                return "embeddings" if include_embeddings else None
            return None  # CHAIN, TOOL, AGENT, RETRIEVER, RERANKER, GUARDRAIL ...
        obs = get("langfuse.observation.type")
        if obs is not None:
            obs = str(obs).lower()
            if obs == "generation":
                return "chat"
            if obs == "embedding":
                return "embeddings" if include_embeddings else None
            return None
        req = get("llm.request.type")
        if req is not None:
            req = str(req).lower()
            if req in _LLM_REQUEST_TYPES:
                return _LLM_REQUEST_TYPES[req]
            if req in EMBEDDING_OPERATIONS:
                return "embeddings" if include_embeddings else None
            return None  # rerank, unknown
        tags = get("logfire.tags")
        if tags is not None and "LLM" in _as_str_list(tags) and get("request_data") is not None:
            return "chat"
        if get("traceloop.span.kind") is not None:
            return None  # workflow / task / agent / tool wrapper around the real call
        if (get("gen_ai.request.model") is not None or get("gen_ai.response.model") is not None
                or get("llm.model_name") is not None):
            return "chat"
        return None
    except Exception:
        return None


# --- value coercion ------------------------------------------------------------------------------

def _first(get: Any, *keys: str) -> Any:
    for key in keys:
        value = get(key)
        if value is not None and value != "":
            return value
    return None


def _to_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8", "replace") or None
        except Exception:
            return None
    if isinstance(value, (list, tuple)):
        return _to_str(value[0]) if value else None
    return str(value)


def _to_int(value: Any) -> int | None:
    """Token counts: ints, integral floats and numeric strings; negatives, bools, junk -> None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        if isinstance(value, int):
            n = value
        elif isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                return None
            n = int(value)
        elif isinstance(value, (str, bytes)):
            text = value.decode() if isinstance(value, bytes) else value
            text = text.strip()
            n = int(float(text)) if text and "." in text else int(text)
        else:
            return None
    except (ValueError, TypeError, OverflowError, UnicodeDecodeError):
        return None
    return n if n >= 0 else None


def _hex_id(value: Any, width: int) -> str | None:
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return f"{value:0{width}x}" if value > 0 else None
        if isinstance(value, (bytes, bytearray)):
            return bytes(value).hex() if value else None
        text = str(value).strip().lower()
        if len(text) == width and all(c in "0123456789abcdef" for c in text):
            return text
    except Exception:
        return None
    return None


def _maybe_json(value: Any) -> Any:
    """Parse a JSON string when it looks like JSON; anything else is returned unchanged."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in ("[", "{"):
            try:
                return json.loads(text)
            except (ValueError, RecursionError):
                return value
    return value


def _cut(text: str | None) -> str | None:
    if text is None:
        return None
    text = text if len(text) <= _MAX_TEXT_CHARS else text[:_MAX_TEXT_CHARS]
    return text if text.strip() else None


def _text_of_parts(parts: Any) -> list[str]:
    out: list[str] = []
    if isinstance(parts, str):
        return [parts]
    if not isinstance(parts, (list, tuple)):
        return out
    for part in parts:
        part = _maybe_json(part)
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, Mapping):
            ptype = part.get("type")
            if ptype in (None, "text", "input_text", "output_text"):
                content = part.get("content", part.get("text"))
                if isinstance(content, str):
                    out.append(content)
    return out


def _text_of_messages(value: Any, *, skip_system: bool = False) -> str | None:
    """Text of a message list in the GenAI (parts) or OpenAI (content) shape; plain strings pass."""
    if value is None:  # the common case: the attribute is absent
        return None
    value = _maybe_json(value)
    if isinstance(value, str):
        return _cut(value)
    if isinstance(value, Mapping):
        for key in ("messages", "input", "output", "content", "text", "message", "completion"):
            if key in value:
                return _text_of_messages(value[key], skip_system=skip_system)
        return None
    if not isinstance(value, (list, tuple)):
        return None
    texts: list[str] = []
    for msg in value:
        msg = _maybe_json(msg)
        if isinstance(msg, str):
            texts.append(msg)
            continue
        if not isinstance(msg, Mapping):
            continue
        if skip_system and msg.get("role") == "system":
            continue
        if "parts" in msg:
            texts.extend(_text_of_parts(msg.get("parts")))
        elif "content" in msg:
            texts.extend(_text_of_parts(msg.get("content")))
        elif "message" in msg:  # gen_ai.choice body / OpenAI choice
            inner = _text_of_messages([msg.get("message")])
            if inner:
                texts.append(inner)
        elif "text" in msg:
            texts.extend(_text_of_parts(msg.get("text")))
    return _cut("\n".join(t for t in texts if t)) if texts else None


#: Provider spellings of finish reasons -> the GenAI values (stop, length, content_filter,
#: tool_call, error), so checks such as finish_reason_length fire for every provider.
FINISH_REASON_ALIASES = {
    "max_tokens": "length", "end_turn": "stop", "stop_sequence": "stop", "tool_use": "tool_call",
    "tool_calls": "tool_call", "function_call": "tool_call", "refusal": "content_filter",
    "safety": "content_filter", "recitation": "content_filter", "blocklist": "content_filter",
    "prohibited_content": "content_filter", "finish_reason_unspecified": None,
}


def finish_reason_of(value: Any) -> str | None:
    """The first finish reason of an array, a JSON array string (Logfire sends
    `gen_ai.response.finish_reasons` as '["stop"]') or a plain string, in the GenAI spelling
    (`FINISH_REASON_ALIASES`: Anthropic's max_tokens is length); None when there is none."""
    if value is None:
        return None
    kind = type(value)
    if kind is tuple or kind is list:  # the common shape (OTLP string arrays): the first reason
        for item in value:
            got = finish_reason_of(item)
            if got:
                return got
        return None
    if kind is str:  # a handful of distinct values: memoized (bounded)
        hit = _FINISH_MEMO.get(value, _FINISH_MISS)
        if hit is _FINISH_MISS:
            hit = _finish_reason_of(value)
            if len(_FINISH_MEMO) < 1024:
                _FINISH_MEMO[value] = hit
        return hit
    return _finish_reason_of(value)


_FINISH_MEMO: dict[str, str | None] = {}
_FINISH_MISS = object()


def _finish_reason_of(value: Any) -> str | None:
    value = _maybe_json(value)
    if isinstance(value, (list, tuple)):
        for item in value:
            got = finish_reason_of(item)
            if got:
                return got
        return None
    if isinstance(value, Mapping):
        return None
    text = _to_str(value)
    if text is None:
        return None
    low = text.strip().lower()
    if len(low) > 1 and low[0] == low[-1] == '"':  # a JSON string (Langfuse metadata: '"stop"')
        low = low[1:-1]
    return FINISH_REASON_ALIASES.get(low, low) or None


def _finish_of_messages(value: Any) -> str | None:
    if value is None:
        return None
    value = _maybe_json(value)
    if isinstance(value, (list, tuple)):
        for msg in value:
            msg = _maybe_json(msg)
            if isinstance(msg, Mapping) and msg.get("finish_reason"):
                return finish_reason_of(msg.get("finish_reason"))
    return None


_INDEXED_KEYS: dict[tuple[str, str], tuple[str, ...]] = {}

#: Every key the prompt (completion) text can come from, indexed ones by their first two keys
#: (`_indexed` reads nothing else when both are absent): a span with none of them has no text, and
#: one C-level `isdisjoint` says so without the dozen lookups below (no-text spans are common).
_PROMPT_KEYS = frozenset({
    "gen_ai.input.messages", "gen_ai.prompt.0.content", "gen_ai.prompt.1.content",
    "llm.input_messages.0.message.content", "llm.input_messages.1.message.content",
    "llm.prompts.0.prompt.text", "llm.prompts.1.prompt.text", "input.value", "langfuse.observation.input",
    "gen_ai.prompt", "request_data"})
_COMPLETION_KEYS = frozenset({
    "gen_ai.output.messages", "gen_ai.completion.0.content", "gen_ai.completion.1.content",
    "llm.output_messages.0.message.content", "llm.output_messages.1.message.content",
    "llm.choices.0.completion.text", "llm.choices.1.completion.text", "output.value",
    "langfuse.observation.output", "gen_ai.completion", "response_data"})


def _indexed(get: Any, prefix: str, suffix: str) -> str | None:
    keys = _INDEXED_KEYS.get((prefix, suffix))
    if keys is None:  # a handful of (prefix, suffix) pairs: formatted once, not on every span
        keys = _INDEXED_KEYS[(prefix, suffix)] = tuple(f"{prefix}{i}{suffix}" for i in range(_MAX_INDEXED))
    if get(keys[0]) is None and get(keys[1]) is None:
        return None  # the common case (no indexed messages) without building anything
    texts: list[str] = []
    for i, key in enumerate(keys):
        value = get(key)
        if value is None:
            if i > 0:
                break
            continue
        text = _to_str(value)
        if text:
            texts.append(text)
    return _cut("\n".join(texts)) if texts else None


def _json_get(value: Any, *path: str) -> Any:
    value = _maybe_json(value)
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = _maybe_json(value.get(key))
    return value


def _provider(get: Any) -> str | None:
    value = _to_str(get("gen_ai.provider.name"))
    if value:
        return value
    value = _to_str(_first(get, "gen_ai.system", "llm.provider", "llm.system"))
    if value:
        low = value.strip().lower()
        return _PROVIDER_ALIASES.get(low, low)
    return _to_str(get("server.address"))


def normalize(
    attributes: Mapping[str, Any],
    *,
    name: str = "",
    trace_id: str | int | bytes | None = None,
    span_id: str | int | bytes | None = None,
    start_time_unix_nano: int | None = None,
    end_time_unix_nano: int | None = None,
    include_embeddings: bool = False,
) -> LLMCall | None:
    """Recognize an LLM call from span attributes; None for anything that is not one.

    Never raises on odd input (non-JSON messages, tokens as strings, missing fields).
    Field fallbacks follow section 3 of the GenAI notes (first non-empty wins); the model prefers
    the response model. `name` is unused for detection (span names are not reliable) but kept
    for callers that have it. Pure function, safe from any thread.
    """
    try:
        if attributes is None:
            return None
        operation = detect(attributes, include_embeddings)
        if operation is None:
            return None
        return _normalize_detected(attributes, operation, trace_id, span_id,
                                   start_time_unix_nano, end_time_unix_nano)
    except Exception:  # malformed input must never break the app or the sidecar
        return None


def _normalize_detected(attributes: Mapping[str, Any], operation: str, trace_id: Any, span_id: Any,
                        start: Any, end: Any) -> LLMCall:
    get = attributes.get
    logfire_req = get("request_data")
    logfire_resp = get("response_data")
    langfuse_usage = get("langfuse.observation.usage_details")

    # Each field: the first key's value read inline when it is set (GenAI semconv spans, the common
    # case), else `_first` over every key; strings and non-negative ints are taken as they are,
    # anything else through `_to_str` / `_to_int` (same results: tests compare with the helpers).
    model = get("gen_ai.response.model")
    if model is None or model == "":
        model = _first(get, "gen_ai.request.model", "llm.response.model_name", "llm.request.model_name",
                       "llm.model_name", "langfuse.observation.model.name")
    if type(model) is not str:
        model = _to_str(model)
    if model is None and logfire_req is not None:
        model = _to_str(_json_get(logfire_req, "model"))

    input_tokens = get("gen_ai.usage.input_tokens")
    if input_tokens is None or input_tokens == "":
        input_tokens = _first(get, "gen_ai.usage.prompt_tokens", "llm.token_count.prompt", "llm.usage.prompt_tokens")
    if type(input_tokens) is not int or input_tokens < 0:
        input_tokens = _to_int(input_tokens)
    output_tokens = get("gen_ai.usage.output_tokens")
    if output_tokens is None or output_tokens == "":
        output_tokens = _first(get, "gen_ai.usage.completion_tokens", "llm.token_count.completion",
                               "llm.usage.completion_tokens")
    if type(output_tokens) is not int or output_tokens < 0:
        output_tokens = _to_int(output_tokens)
    if input_tokens is None and langfuse_usage is not None:
        input_tokens = _to_int(_json_get(langfuse_usage, "input"))
        if input_tokens is None:
            input_tokens = _to_int(_json_get(langfuse_usage, "prompt_tokens"))
    if output_tokens is None and langfuse_usage is not None:
        output_tokens = _to_int(_json_get(langfuse_usage, "output"))
        if output_tokens is None:
            output_tokens = _to_int(_json_get(langfuse_usage, "completion_tokens"))
    if logfire_resp is not None:
        if input_tokens is None:
            input_tokens = _to_int(_json_get(logfire_resp, "usage", "prompt_tokens"))
        if output_tokens is None:
            output_tokens = _to_int(_json_get(logfire_resp, "usage", "completion_tokens"))

    output_messages = get("gen_ai.output.messages")
    finish = finish_reason_of(get("gen_ai.response.finish_reasons"))
    if finish is None and output_messages is not None:
        finish = _finish_of_messages(output_messages)
    if finish is None:
        finish = finish_reason_of(_first(get, "gen_ai.completion.0.finish_reason", "llm.response.finish_reason",
                                         "llm.finish_reason", "langfuse.observation.metadata.finish_reason"))
    if finish is None and get("langfuse.observation.metadata") is not None:
        meta = _maybe_json(get("langfuse.observation.metadata"))
        if isinstance(meta, Mapping):
            finish = finish_reason_of(meta.get("finish_reason") or meta.get("stop_reason"))

    keys = attributes.keys()
    no_prompt, no_completion = keys.isdisjoint(_PROMPT_KEYS), keys.isdisjoint(_COMPLETION_KEYS)
    prompt = None if no_prompt else _text_of_messages(get("gen_ai.input.messages"))
    if not prompt and not no_prompt:
        prompt = (_indexed(get, "gen_ai.prompt.", ".content")
                  or _indexed(get, "llm.input_messages.", ".message.content")
                  or _indexed(get, "llm.prompts.", ".prompt.text")
                  or _text_of_messages(get("input.value"))
                  or _text_of_messages(get("langfuse.observation.input"))
                  or _text_of_messages(get("gen_ai.prompt"))
                  or (_text_of_messages(_json_get(logfire_req, "messages")) if logfire_req is not None else None))
    completion = None if no_completion else _text_of_messages(output_messages)
    if not completion and not no_completion:
        completion = (_indexed(get, "gen_ai.completion.", ".content")
                      or _indexed(get, "llm.output_messages.", ".message.content")
                      or _indexed(get, "llm.choices.", ".completion.text")
                      or _text_of_messages(get("output.value"))
                      or _text_of_messages(get("langfuse.observation.output"))
                      or _text_of_messages(get("gen_ai.completion"))
                      or (_text_of_messages(_json_get(logfire_resp, "message", "content"))
                          if logfire_resp is not None else None))

    latency = None
    s = start if type(start) is int and start >= 0 else _to_int(start)
    e = end if type(end) is int and end >= 0 else _to_int(end)
    if s is not None and e is not None and e >= s and s > 0:
        latency = (e - s) / 1e9
    if get("logfire.span_type") == "log":  # Logfire's streamed response: a zero-length log span
        took = get("duration")             # whose `duration` is how long the stream took
        if isinstance(took, (int, float)) and not isinstance(took, bool) and math.isfinite(took) and took >= 0:
            latency = float(took)

    provider = get("gen_ai.provider.name")
    if type(provider) is not str or not provider:
        provider = _provider(get)
    session = get("gen_ai.conversation.id")
    if session is None or session == "":
        session = _first(get, "session.id", "langfuse.session.id", "traceloop.association.properties.session_id")
    if type(session) is not str:
        session = _to_str(session)
    user = get("user.id")
    if user is None or user == "":
        user = _first(get, "enduser.id", "langfuse.user.id", "traceloop.association.properties.user_id",
                      "gen_ai.user", "llm.user", "gen_ai.request.user")
    if type(user) is not str:
        user = _to_str(user)
    experiment, variant = get(EXPERIMENT_ID), get(EXPERIMENT_VARIANT)
    return _new_call(
        operation=operation,
        provider=provider,
        model=model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        finish_reason=finish,
        prompt=prompt,
        completion=completion,
        session_id=session,
        user_id=user,
        experiment=(experiment or None) if type(experiment) is str else _to_str(experiment),
        variant=(variant or None) if type(variant) is str else _to_str(variant),
        latency_seconds=latency,
        trace_id=(trace_id.hex() or None) if type(trace_id) is bytes else _hex_id(trace_id, 32),
        span_id=(span_id.hex() or None) if type(span_id) is bytes else _hex_id(span_id, 16),
    )


def _new_call(**fields: Any) -> LLMCall:
    """`LLMCall(**fields)` with every field given, without the frozen dataclass `__init__`'s
    object.__setattr__ per field (about 1 µs of the sidecar's and the processor's per-call work):
    the instance dict is filled in one C call, as attrs does for frozen classes. The object is the
    same (eq, hash, repr, dataclasses.replace); a test checks it equals the __init__ result."""
    call = _object_new(LLMCall)
    call.__dict__.update(fields)
    return call


_object_new = object.__new__


def normalize_span(span: Any, include_embeddings: bool = False) -> LLMCall | None:
    """`normalize` for an OTel SDK `ReadableSpan` (attributes, ids and times read from it).

    Imports nothing from the SDK; duck-typed, never raises.
    """
    try:
        attributes = span.attributes
        if not attributes:
            return None
        ctx = span.context
        return normalize(
            attributes,
            name=getattr(span, "name", "") or "",
            trace_id=ctx.trace_id if ctx is not None else None,
            span_id=ctx.span_id if ctx is not None else None,
            start_time_unix_nano=span.start_time,
            end_time_unix_nano=span.end_time,
            include_embeddings=include_embeddings,
        )
    except Exception:
        return None


# --- one real call, one count ------------------------------------------------------------------
#
# Several LLM spans can describe one provider call. The rule (docs/instrumentations.md):
# 1. Nested: an LLM span whose parent span is an LLM span of the same trace with the same
#    operation and an overlapping time interval describes the same call as its parent (two
#    instrumentations on one client, a framework over a provider instrumentation). The innermost
#    span is the call; what only the outer one has (text, tokens, finish reason, ...) is merged in.
# 2. Logfire streams: the request span ends when the stream object is returned, before any
#    response, and a sibling log span (`logfire.span_type=log`) carries request and response. The
#    request half (a Logfire span with no response attribute and no error) is not a call.

#: Attributes only a span that saw the provider's response has (any dialect).
RESPONSE_KEYS = frozenset({
    "gen_ai.response.id", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
    "gen_ai.output.messages", "gen_ai.response.finish_reasons", "response_data", "output.value",
    "llm.token_count.completion", "gen_ai.completion",
})


def is_stream_request_half(attributes: Mapping[str, Any], error: bool = False) -> bool:
    """True for Logfire's request span of a streamed call (rule 2 above): not a call of its own."""
    try:
        return (attributes.get("logfire.span_type") == "span" and "request_data" in attributes
                and not error and "error.type" not in attributes
                and attributes.keys().isdisjoint(RESPONSE_KEYS))
    except Exception:
        return False


def same_call(outer: LLMCall, outer_start: int, outer_end: int,
              inner: LLMCall, inner_start: int, inner_end: int) -> bool:
    """Rule 1 for a parent span `outer` and its child `inner` (the caller checked parenthood):
    same operation and overlapping [start, end] intervals. Never raises."""
    try:
        return (outer.operation == inner.operation and outer.trace_id == inner.trace_id
                and int(outer_start) <= int(inner_end) and int(inner_start) <= int(outer_end))
    except Exception:
        return False


_MERGED_FIELDS = ("provider", "model", "input_tokens", "output_tokens", "finish_reason", "prompt", "completion",
                  "session_id", "user_id", "experiment", "variant")


def merge_call(inner: LLMCall, outer: LLMCall) -> LLMCall:
    """The innermost call with every unknown field filled from the outer one (ids, operation and
    latency stay the inner's). Returns `inner` itself when the outer adds nothing."""
    extra = {f: getattr(outer, f) for f in _MERGED_FIELDS
             if getattr(inner, f) is None and getattr(outer, f) is not None}
    if not extra:
        return inner
    fields = dict(inner.__dict__)
    fields.update(extra)
    return _new_call(**fields)


# --- text outside span attributes ---------------------------------------------------------------

#: Span-event and log-record names that carry message text (GenAI conventions, old and new).
TEXT_EVENTS = frozenset({
    "gen_ai.client.inference.operation.details", "gen_ai.content.prompt", "gen_ai.content.completion",
    "gen_ai.system.message", "gen_ai.user.message", "gen_ai.assistant.message", "gen_ai.tool.message",
    "gen_ai.choice",
})
_PROMPT_EVENTS = frozenset({"gen_ai.system.message", "gen_ai.user.message", "gen_ai.tool.message",
                            "gen_ai.assistant.message"})


def text_of_event(name: str | None, attributes: Mapping[str, Any] | None, body: Any = None
                  ) -> tuple[str | None, str | None, str | None]:
    """(prompt, completion, finish reason) carried by one span event or GenAI log record; Nones
    when it carries none. Reads `gen_ai.input/output.messages` (operation details), `gen_ai.prompt`
    / `gen_ai.completion` (OpenLIT's content events), and the bodies of the deprecated per-message
    events (`gen_ai.user.message` content, `gen_ai.choice` message + finish_reason). Never raises."""
    try:
        attrs = attributes or {}
        get = attrs.get
        prompt = _text_of_messages(get("gen_ai.input.messages")) or _text_of_messages(get("gen_ai.prompt"))
        completion = _text_of_messages(get("gen_ai.output.messages")) or _text_of_messages(get("gen_ai.completion"))
        finish = _finish_of_messages(get("gen_ai.output.messages"))
        if isinstance(body, Mapping) and name in _PROMPT_EVENTS and body.get("role", "user") != "system":
            prompt = prompt or _text_of_messages([body])
        elif isinstance(body, Mapping) and name == "gen_ai.choice":
            completion = completion or _text_of_messages([body])
            finish = finish or finish_reason_of(body.get("finish_reason"))
        return prompt, completion, finish
    except Exception:
        return None, None, None


def with_text(call: LLMCall, prompt: str | None, completion: str | None, finish: str | None) -> LLMCall:
    """`call` with its missing prompt, completion and finish reason taken from the arguments."""
    return merge_call(call, LLMCall(prompt=prompt, completion=completion, finish_reason=finish))


def has_text(call: LLMCall) -> bool:
    """Whether the call carries output text: what text checks and judges need. A call without it
    is "not judged: no text" (counted), never scored, and its text checks are not run."""
    return isinstance(call.completion, str)


@dataclass(frozen=True)
class ExperimentAssignment:
    """One active experiment on a span: id, variant, and (when the span carries them) weights."""

    id: str
    variant: str
    weights: dict[str, float] | None = None  # variant -> weight, control first
    control: str | None = None
    #: the assignment unit's pseudonymous key (EXPERIMENT_UNITS, aligned with EXPERIMENTS): the
    #: sidecar analyses per unit (user) when it is known, per call otherwise
    unit: str | None = None


def _as_str_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    try:
        return [str(v) for v in value]
    except TypeError:
        return [str(value)]


def format_weights(experiment_id: str, weights: Mapping[str, float], control: str) -> str:
    """Encode one experiment's weights for EXPERIMENT_WEIGHTS ("{id}={control}:{w},...")."""
    ordered = [control] + [v for v in weights if v != control]
    return experiment_id + "=" + ",".join(f"{v}:{weights[v]:g}" for v in ordered)


def parse_units(attributes: Mapping[str, Any]) -> dict[str, str] | None:
    """{experiment id: unit key} from EXPERIMENT_UNITS aligned with EXPERIMENTS, or None when the
    span carries no unit keys. Never raises."""
    raw = attributes.get(EXPERIMENT_UNITS)
    if raw is None:
        return None
    try:
        out: dict[str, str] = {}
        for entry, unit in zip(_as_str_list(attributes.get(EXPERIMENTS)), _as_str_list(raw)):
            exp_id, sep, _ = entry.partition("=")
            if sep and exp_id and unit and exp_id not in out:
                out[exp_id] = unit
        return out or None
    except Exception:
        return None


def parse_experiments(attributes: Mapping[str, Any]) -> list[ExperimentAssignment]:
    """Every experiment a span was stamped with, outermost first. Never raises.

    Reads EXPERIMENTS (all active) and falls back to EXPERIMENT_ID/EXPERIMENT_VARIANT (spans from
    other SDKs or older versions that only carry the innermost one).
    """
    try:
        weights_by_id: dict[str, tuple[dict[str, float], str]] = {}
        for entry in _as_str_list(attributes.get(EXPERIMENT_WEIGHTS)):
            exp_id, sep, rest = entry.partition("=")
            if not sep or not exp_id:
                continue
            parsed: dict[str, float] = {}
            for part in rest.split(","):
                name, sep2, w = part.rpartition(":")
                if not sep2 or not name:
                    continue
                try:
                    parsed[name] = float(w)
                except ValueError:
                    continue
            if parsed:
                weights_by_id[exp_id] = (parsed, next(iter(parsed)))
        out: list[ExperimentAssignment] = []
        seen: set[str] = set()
        entries = _as_str_list(attributes.get(EXPERIMENTS))
        units = _as_str_list(attributes.get(EXPERIMENT_UNITS)) if entries else []
        inner_id = attributes.get(EXPERIMENT_ID)
        inner_variant = attributes.get(EXPERIMENT_VARIANT)
        if not entries and inner_id is not None and inner_variant is not None:
            entries = [f"{inner_id}={inner_variant}"]
        for i, entry in enumerate(entries):
            exp_id, sep, variant = entry.partition("=")
            if not sep or not exp_id or not variant or exp_id in seen:
                continue
            seen.add(exp_id)
            w = weights_by_id.get(exp_id)
            unit = units[i] if i < len(units) and units[i] else None
            out.append(ExperimentAssignment(exp_id, variant, w[0] if w else None, w[1] if w else None, unit))
        return out
    except Exception:  # malformed attributes must never break ingest
        return []
