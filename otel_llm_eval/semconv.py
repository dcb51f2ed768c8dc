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
#: string[]: every experiment active in the scope, outermost first, each "{id}={variant}".
#: `EXPERIMENT_ID`/`EXPERIMENT_VARIANT` carry the innermost one.
EXPERIMENTS = "llm_eval.experiments"
#: string[] aligned with EXPERIMENTS: each "{id}={control}:{w},{variant}:{w},..." (control first),
#: so the sidecar learns weights and control without users configuring them twice.
EXPERIMENT_WEIGHTS = "llm_eval.experiment.weights"
#: Judge bookkeeping. On evaluation spans: what the judge call cost.
JUDGE_COST_USD = "llm_eval.judge.cost_usd"
#: A span named JUDGE_STATS_SPAN, emitted by the processor only when something was dropped or
#: skipped, carries deltas since its previous one (ints): judge evaluator name, dropped (queue
#: full / shutdown), skipped by rate budget, skipped by cost budget.
JUDGE_STATS_SPAN = "llm_eval.judge.stats"
JUDGE_EVALUATOR = "llm_eval.judge.evaluator"
JUDGE_DROPPED = "llm_eval.judge.dropped"
JUDGE_SKIPPED_RATE = "llm_eval.judge.skipped.rate"
JUDGE_SKIPPED_COST = "llm_eval.judge.skipped.cost"

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


@dataclass(frozen=True)
class ExperimentAssignment:
    """One active experiment on a span: id, variant, and (when the span carries them) weights."""

    id: str
    variant: str
    weights: dict[str, float] | None = None  # variant -> weight, control first
    control: str | None = None


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
        inner_id = attributes.get(EXPERIMENT_ID)
        inner_variant = attributes.get(EXPERIMENT_VARIANT)
        if not entries and inner_id is not None and inner_variant is not None:
            entries = [f"{inner_id}={inner_variant}"]
        for entry in entries:
            exp_id, sep, variant = entry.partition("=")
            if not sep or not exp_id or not variant or exp_id in seen:
                continue
            seen.add(exp_id)
            w = weights_by_id.get(exp_id)
            out.append(ExperimentAssignment(exp_id, variant, w[0] if w else None, w[1] if w else None))
        return out
    except Exception:  # malformed attributes must never break ingest
        return []
