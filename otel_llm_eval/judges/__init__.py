"""Judges shared by the in-app processor and the sidecar: one implementation of each.

- `HeuristicJudge`: no network, pure CPU (source "code").
- `OpenAIJudge`: any OpenAI-compatible chat-completions endpoint, stdlib HTTP (source "llm_judge").
- user callables `module:attr`, loaded by `build_judge({"kind": "callable", "function": ...})`.

`build_judge(spec)` turns one evaluator's config mapping into a judge; the sidecar's judge plugin
and the app's zero-code attach both use it. Standard library only: the in-app import path must not
pull numpy, scipy, prometheus_client or a web framework.
"""

from __future__ import annotations

from otel_llm_eval.judges.builtin import (
    DEFAULT_RUBRIC,
    HeuristicJudge,
    Judge,
    JudgeResult,
    OpenAIJudge,
    coerce_result,
    parse_judge_reply,
)
from otel_llm_eval.judges.config import EVALUATOR_DEFAULTS, JudgeConfigError, build_judge, judge_source

__all__ = [
    "DEFAULT_RUBRIC",
    "EVALUATOR_DEFAULTS",
    "HeuristicJudge",
    "Judge",
    "JudgeConfigError",
    "JudgeResult",
    "OpenAIJudge",
    "build_judge",
    "coerce_result",
    "judge_source",
    "parse_judge_reply",
]
