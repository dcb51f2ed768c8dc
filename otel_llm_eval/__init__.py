"""otel-llm-eval: production evaluation for LLM systems on OpenTelemetry, Prometheus and Grafana.

Importing this package is cheap: the public names are loaded lazily, and nothing on the in-app
path imports numpy, scipy, prometheus_client or a web framework.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "LLMCall": "otel_llm_eval.semconv",
    "normalize": "otel_llm_eval.semconv",
    "Experiment": "otel_llm_eval.processor.experiment",
    "LLMEvalSpanProcessor": "otel_llm_eval.processor.span_processor",
    "record_feedback": "otel_llm_eval.processor.feedback",
    "record_outcome": "otel_llm_eval.processor.feedback",
    "emit_evaluation": "otel_llm_eval.processor.feedback",
    "JudgeResult": "otel_llm_eval.processor.judges",
    "HeuristicJudge": "otel_llm_eval.processor.judges",
    "OpenAIJudge": "otel_llm_eval.processor.judges",
    "Bandit": "otel_llm_eval.processor.bandit",
    "pairwise": "otel_llm_eval.processor.interleaving",
    "team_draft": "otel_llm_eval.processor.interleaving",
    "RemoteJudgeRates": "otel_llm_eval.processor.remote",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'otel_llm_eval' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
