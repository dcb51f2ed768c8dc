"""One evaluator's configuration -> a judge callable. Standard library only.

An evaluator is a mapping with the keys of `EVALUATOR_DEFAULTS`:
- `name`: the evaluation name (`gen_ai.evaluation.name`) its results carry.
- `kind`: `heuristic` (HeuristicJudge, no network), `openai` (OpenAIJudge: any OpenAI-compatible
  chat-completions endpoint) or `callable` (`function: "module:attr"`, a user judge
  `judge(call) -> JudgeResult | float`).
- `rubric`, `model`, `base_url`, `api_key_env` (the NAME of the environment variable holding the
  API key: keys never live in config files), `timeout_seconds`, `retries`, `backoff_seconds`,
  `max_prompt_chars`: passed to OpenAIJudge.
- `input_usd_per_million_tokens`, `output_usd_per_million_tokens`: price of the judge model
  (OpenAIJudge prices each reply's usage); `usd_per_call`: a fixed price per judgement, used
  when the judge reports no cost (callables, replies without usage).
- `options`: extra keyword arguments for HeuristicJudge (min_chars, max_chars, expect_json).

`build_judge` raises JudgeConfigError (a ValueError) naming the key; it never does I/O beyond
importing a `module:attr` callable.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from otel_llm_eval._imports import load_callable
from otel_llm_eval.judges.builtin import DEFAULT_RUBRIC, HeuristicJudge, OpenAIJudge

KINDS = ("heuristic", "openai", "callable")

EVALUATOR_DEFAULTS: dict[str, Any] = {
    "name": "llm_judge",
    "kind": "openai",
    "rubric": DEFAULT_RUBRIC,
    "model": "gpt-4o-mini",
    "base_url": "",                        # empty: OPENAI_BASE_URL, else https://api.openai.com/v1
    "api_key_env": "OPENAI_API_KEY",
    "function": "",                        # kind=callable: "module:attr"
    "timeout_seconds": 30.0,
    "retries": 2,
    "backoff_seconds": 0.5,
    "max_prompt_chars": 8000,
    "input_usd_per_million_tokens": 0.15,
    "output_usd_per_million_tokens": 0.60,
    "usd_per_call": 0.0,
    "options": {},
}


class JudgeConfigError(ValueError):
    """An evaluator's configuration is wrong; the message names the key."""


def _number(spec: Mapping[str, Any], key: str, where: str, minimum: float = 0.0) -> float:
    value = spec.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < minimum:
        raise JudgeConfigError(f"{where}.{key} must be a number >= {minimum:g}, got {value!r}")
    return float(value)


def evaluator_config(spec: Mapping[str, Any], where: str = "evaluator") -> dict[str, Any]:
    """`spec` merged over EVALUATOR_DEFAULTS and checked. Raises JudgeConfigError."""
    if not isinstance(spec, Mapping):
        raise JudgeConfigError(f"{where} must be a mapping, got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(EVALUATOR_DEFAULTS))
    if unknown:
        raise JudgeConfigError(f"{where}: unknown keys {unknown}; known: {sorted(EVALUATOR_DEFAULTS)}")
    cfg = {**EVALUATOR_DEFAULTS, **spec}
    if not isinstance(cfg["name"], str) or not cfg["name"].strip():
        raise JudgeConfigError(f"{where}.name must be a non-empty string")
    if cfg["kind"] not in KINDS:
        raise JudgeConfigError(f"{where}.kind must be one of {', '.join(KINDS)}, got {cfg['kind']!r}")
    for key in ("timeout_seconds", "backoff_seconds", "input_usd_per_million_tokens",
                "output_usd_per_million_tokens", "usd_per_call"):
        _number(cfg, key, where)
    if _number(cfg, "timeout_seconds", where) <= 0:
        raise JudgeConfigError(f"{where}.timeout_seconds must be > 0")
    if isinstance(cfg["retries"], bool) or not isinstance(cfg["retries"], int) or cfg["retries"] < 0:
        raise JudgeConfigError(f"{where}.retries must be an integer >= 0, got {cfg['retries']!r}")
    if cfg["kind"] == "callable" and not cfg.get("function"):
        raise JudgeConfigError(f"{where}.function is required for kind=callable ('module:attr')")
    if cfg["kind"] == "openai" and not cfg.get("model"):
        raise JudgeConfigError(f"{where}.model is required for kind=openai")
    if not isinstance(cfg.get("options") or {}, Mapping):
        raise JudgeConfigError(f"{where}.options must be a mapping")
    return cfg


def build_judge(spec: Mapping[str, Any], where: str = "evaluator") -> Any:
    """A judge callable for one evaluator config (see the module docstring).

    The returned object is called as `judge(call)` on a worker thread; it blocks (HTTP) for at
    most about (retries + 1) * timeout_seconds plus backoff. Raises JudgeConfigError.
    """
    cfg = evaluator_config(spec, where)
    kind = cfg["kind"]
    if kind == "heuristic":
        try:
            return HeuristicJudge(name=cfg["name"], **dict(cfg.get("options") or {}))
        except TypeError as exc:
            raise JudgeConfigError(f"{where}.options: {exc}") from None
    if kind == "openai":
        return OpenAIJudge(model=str(cfg["model"]), base_url=cfg.get("base_url") or None,
                           api_key_env=str(cfg.get("api_key_env") or "OPENAI_API_KEY"),
                           rubric=str(cfg.get("rubric") or DEFAULT_RUBRIC), name=cfg["name"],
                           timeout_seconds=float(cfg["timeout_seconds"]), retries=int(cfg["retries"]),
                           backoff_seconds=float(cfg["backoff_seconds"]),
                           input_usd_per_million_tokens=float(cfg["input_usd_per_million_tokens"]),
                           output_usd_per_million_tokens=float(cfg["output_usd_per_million_tokens"]),
                           max_prompt_chars=int(cfg["max_prompt_chars"]))
    try:
        return load_callable(str(cfg["function"]), f"{where}.function")
    except ValueError as exc:
        raise JudgeConfigError(str(exc)) from None


def judge_source(judge: Any) -> str:
    """The `llm_eval.evaluation.source` of a judge's results: its `source` attribute, else llm_judge."""
    source = getattr(judge, "source", None)
    return source if isinstance(source, str) and source else "llm_judge"
