"""In-app part: span processor, experiments, sampling, judge worker, judges, feedback.

Names are loaded lazily (importing a submodule does not import the others).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "CountingMetrics": "otel_llm_eval.processor.metrics",
    "Experiment": "otel_llm_eval.processor.experiment",
    "HeuristicJudge": "otel_llm_eval.judges.builtin",
    "JudgeResult": "otel_llm_eval.judges.builtin",
    "LLMEvalSpanProcessor": "otel_llm_eval.processor.span_processor",
    "NoopMetrics": "otel_llm_eval.processor.metrics",
    "OpenAIJudge": "otel_llm_eval.judges.builtin",
    "ProcessorMetrics": "otel_llm_eval.processor.metrics",
    "emit_evaluation": "otel_llm_eval.processor.feedback",
    "record_feedback": "otel_llm_eval.processor.feedback",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'otel_llm_eval.processor' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
