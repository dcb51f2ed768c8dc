"""Deprecated import path: the judges moved to `otel_llm_eval.judges` (shared with the sidecar).

Kept as a thin re-export so `from otel_llm_eval.processor.judges import OpenAIJudge` and
`module:attr` specs naming this module keep working.
"""

from __future__ import annotations

from otel_llm_eval.judges.builtin import (  # noqa: F401
    DEFAULT_RUBRIC,
    HeuristicJudge,
    Judge,
    JudgeResult,
    OpenAIJudge,
    coerce_result,
    parse_judge_reply,
)

__all__ = ["DEFAULT_RUBRIC", "HeuristicJudge", "Judge", "JudgeResult", "OpenAIJudge", "coerce_result",
           "parse_judge_reply"]
