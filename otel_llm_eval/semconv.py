"""Attribute names (ours and the GenAI conventions) and `normalize`: one LLM span -> `LLMCall`.

Shared by the in-app processor and the sidecar, so there is exactly one copy of the detection and
normalization rules. Standard library only (no SDK import): the sidecar calls it on decoded OTLP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

# --- attributes this project writes (public contract, see README "Span attributes") ---
EXPERIMENT_ID = "llm_eval.experiment.id"
EXPERIMENT_VARIANT = "llm_eval.experiment.variant"
EVALUATION_SOURCE = "llm_eval.evaluation.source"  # llm_judge | user | human | code

# --- GenAI evaluation (OTel GenAI semconv) ---
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
    """
    raise NotImplementedError  # implemented in issue 2
