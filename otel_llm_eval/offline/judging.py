"""Build the judge for `regress --judge heuristic|openai` from the built-in judges (otel_llm_eval.judges).

There is one implementation of each judge (otel_llm_eval.judges); this module only
maps command-line options onto their constructors. Raises GateError with a clear reason when a
judge cannot be built.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

from .regress import GateError
from .scorers import Judge

_HEURISTIC_NAMES = ("HeuristicJudge",)
_OPENAI_NAMES = ("OpenAIJudge",)


def _judges_module() -> Any:
    try:
        from .. import judges
    except ImportError as e:
        raise GateError(f"the built-in judges are not available in this install ({e})") from e
    return judges


def _find(module: Any, names: tuple[str, ...]) -> Any:
    for n in names:
        cls = getattr(module, n, None)
        if cls is not None:
            return cls
    raise GateError(f"otel_llm_eval.judges has none of {', '.join(names)}")


def _accepted(cls: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Keep only the keyword arguments the constructor accepts (options are all optional)."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return kwargs
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


def build_judge(kind: str | None, *, base_url: str | None = None, model: str | None = None,
                api_key: str | None = None, timeout_seconds: float | None = None) -> Judge | None:
    """`None` for no judge; `heuristic` (no network) or `openai` (OpenAI-compatible endpoint).

    For `openai`, base_url/model/api_key default to OPENAI_BASE_URL / OTEL_LLM_EVAL_JUDGE_MODEL /
    OPENAI_API_KEY from the environment.
    """
    if kind in (None, "", "none"):
        return None
    module = _judges_module()
    if kind == "heuristic":
        return _find(module, _HEURISTIC_NAMES)()
    if kind == "openai":
        cls = _find(module, _OPENAI_NAMES)
        kwargs: dict[str, Any] = {
            "base_url": base_url or os.environ.get("OPENAI_BASE_URL"),
            "model": model or os.environ.get("OTEL_LLM_EVAL_JUDGE_MODEL"),
            "api_key": api_key,
        }
        if timeout_seconds is not None:
            kwargs["timeout_seconds"] = timeout_seconds
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        if not kwargs.get("model"):
            raise GateError("--judge openai needs a model: --judge-model NAME or $OTEL_LLM_EVAL_JUDGE_MODEL")
        try:
            return cls(**_accepted(cls, kwargs))
        except (TypeError, ValueError) as e:
            raise GateError(f"cannot build the openai judge: {e}") from e
    raise GateError(f"unknown judge {kind!r} (heuristic or openai)")
