"""Zero-code attach for apps run with `opentelemetry-instrument python app.py`.

`opentelemetry-instrument` runs, in order: the distro, the configurator (which creates the global
TracerProvider with its BatchSpanProcessor), the `opentelemetry_pre_instrument` hooks, every
instrumentor, then every `opentelemetry_post_instrument` entry point. This package registers
`post_instrument` in that last group (see pyproject.toml), so the global SDK provider exists when
it runs. It adds an `LLMEvalSpanProcessor` when OTEL_LLM_EVAL_ENABLED=true, and registers an
atexit hook that drains judge work before the provider's own atexit shutdown (atexit is LIFO), so
evaluation spans still reach the exporter.

Settings (environment wins over the JSON config file):
  OTEL_LLM_EVAL_ENABLED                    true|false (default false: installed but inert)
  OTEL_LLM_EVAL_CONFIG                     path of a JSON file with the keys below (lower case)
  OTEL_LLM_EVAL_JUDGE                      none | heuristic | openai | module:attr   (judge)
  OTEL_LLM_EVAL_JUDGE_SAMPLE_RATE          0..1 (judge_sample_rate, default 0)
  OTEL_LLM_EVAL_MAX_JUDGE_CALLS_PER_MINUTE int  (max_judge_calls_per_minute)
  OTEL_LLM_EVAL_MAX_JUDGE_USD_PER_HOUR     float (max_judge_usd_per_hour)
  OTEL_LLM_EVAL_JUDGE_MODEL / _BASE_URL    for judge=openai (key from OPENAI_API_KEY)
Config-file-only keys: "judge_options" (kwargs of the judge class), "variant_sample_rates",
"experiments": [{"id", "variants", "control"?, "variant"}] stamped on every span of the process
(deployment-level experiments such as a canary).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
from typing import Any, Mapping

from .._imports import load_callable

_log = logging.getLogger("otel_llm_eval.autoattach")

ENV_PREFIX = "OTEL_LLM_EVAL_"
_TRUE = ("1", "true", "yes", "on")


class ConfigError(ValueError):
    pass


def _env_settings(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    conv = {
        "JUDGE": ("judge", str),
        "JUDGE_SAMPLE_RATE": ("judge_sample_rate", float),
        "MAX_JUDGE_CALLS_PER_MINUTE": ("max_judge_calls_per_minute", int),
        "MAX_JUDGE_USD_PER_HOUR": ("max_judge_usd_per_hour", float),
        "JUDGE_MODEL": ("judge_model", str),
        "JUDGE_BASE_URL": ("judge_base_url", str),
    }
    for suffix, (key, typ) in conv.items():
        raw = environ.get(ENV_PREFIX + suffix)
        if raw is None or raw.strip() == "":
            continue
        try:
            out[key] = typ(raw.strip())
        except ValueError:
            raise ConfigError(f"{ENV_PREFIX}{suffix}={raw!r} is not a valid {typ.__name__}") from None
    return out


def load_settings(environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """Merged settings, or None when not enabled. Raises ConfigError naming the bad setting."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV_PREFIX + "ENABLED", "").strip().lower() not in _TRUE:
        return None
    settings: dict[str, Any] = {}
    path = environ.get(ENV_PREFIX + "CONFIG")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                loaded = json.load(fh)
        except OSError as exc:
            raise ConfigError(f"{ENV_PREFIX}CONFIG: cannot read {path!r}: {exc.strerror}") from None
        except ValueError as exc:
            raise ConfigError(f"{ENV_PREFIX}CONFIG: {path!r} is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{ENV_PREFIX}CONFIG: {path!r} must hold a JSON object")
        settings.update(loaded)
    settings.update(_env_settings(environ))
    known = {"judge", "judge_sample_rate", "max_judge_calls_per_minute", "max_judge_usd_per_hour",
             "judge_model", "judge_base_url", "judge_options", "variant_sample_rates", "experiments",
             "max_queue_size", "judge_timeout_seconds", "evaluation_name"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(f"unknown otel-llm-eval setting(s) {unknown}; known: {sorted(known)}")
    return settings


def _make_judge(settings: Mapping[str, Any]) -> Any:
    from otel_llm_eval.judges.builtin import HeuristicJudge, OpenAIJudge

    spec = str(settings.get("judge", "heuristic")).strip()
    options = settings.get("judge_options") or {}
    if not isinstance(options, dict):
        raise ConfigError("judge_options must be a JSON object")
    if spec in ("", "none"):
        return None
    if spec == "heuristic":
        return HeuristicJudge(**options)
    if spec == "openai":
        model = settings.get("judge_model") or options.pop("model", None)
        if not model:
            raise ConfigError(f"judge=openai needs {ENV_PREFIX}JUDGE_MODEL (or judge_options.model)")
        if settings.get("judge_base_url"):
            options["base_url"] = settings["judge_base_url"]
        return OpenAIJudge(model=model, **options)
    if ":" not in spec:
        raise ConfigError(f"judge {spec!r}: expected none, heuristic, openai or module:attr")
    try:
        return load_callable(spec, "judge")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def build_processor(settings: Mapping[str, Any], tracer_provider: Any = None) -> Any:
    """An LLMEvalSpanProcessor from merged settings. Raises ConfigError / ValueError on bad values."""
    from otel_llm_eval.processor.experiment import Experiment
    from otel_llm_eval.processor.span_processor import LLMEvalSpanProcessor

    defaults = []
    for i, item in enumerate(settings.get("experiments") or []):
        if not isinstance(item, dict) or "id" not in item or "variants" not in item or "variant" not in item:
            raise ConfigError(f"experiments[{i}] needs id, variants and variant")
        exp = Experiment(item["id"], item["variants"], item.get("control"))
        defaults.append((exp, item["variant"]))
    kwargs: dict[str, Any] = {}
    for key in ("judge_sample_rate", "max_judge_calls_per_minute", "max_judge_usd_per_hour",
                "variant_sample_rates", "max_queue_size", "judge_timeout_seconds", "evaluation_name"):
        if settings.get(key) is not None:
            kwargs[key] = settings[key]
    return LLMEvalSpanProcessor(judge=_make_judge(settings), tracer_provider=tracer_provider,
                                default_experiments=defaults, **kwargs)


_attached: list[Any] = []


def failed_instrumentors() -> list[tuple[str, str]]:
    """(entry point name, why) of every `opentelemetry_instrumentor` whose library is installed in a
    supported version but which did not instrument: `opentelemetry-instrument` reports an import
    failure of an instrumentor's own dependencies only at DEBUG (a missing module looks like a
    library that is not installed), so an app would silently send no LLM spans. Never raises."""
    out: list[tuple[str, str]] = []
    try:
        from importlib.metadata import entry_points

        from opentelemetry.instrumentation.auto_instrumentation._load import _EntryPointDistFinder
        from opentelemetry.instrumentation.dependencies import get_dist_dependency_conflicts
    except Exception:  # noqa: BLE001 - without opentelemetry-instrumentation there is nothing to check
        return out
    disabled = {x.strip() for x in os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")}
    if "*" in disabled:
        return out
    finder = _EntryPointDistFinder()
    for ep in entry_points(group="opentelemetry_instrumentor"):
        if ep.name in disabled:
            continue
        try:
            if get_dist_dependency_conflicts(finder.dist_for(ep)):
                continue  # library not installed (fine) or a version conflict (already an error)
            instrumentor = ep.load()()
            if not getattr(instrumentor, "is_instrumented_by_opentelemetry", True):
                out.append((ep.name, "it did not instrument (see the DEBUG log of opentelemetry-instrument)"))
        except Exception as exc:  # noqa: BLE001 - an import error is exactly what is reported
            out.append((ep.name, f"{type(exc).__name__}: {exc}"))
    return out


def post_instrument(**_: Any) -> None:
    """`opentelemetry_post_instrument` entry point. Never raises (a bad setting is logged as an error).

    Also logs at WARNING every installed instrumentor that failed to load (`failed_instrumentors`)."""
    try:
        settings = load_settings()
        if settings is None or _attached:
            return
        for name, why in failed_instrumentors():
            _log.warning("otel-llm-eval: instrumentor %r is installed but not active, its LLM calls will not be "
                         "seen: %s (docs/instrumentations.md lists working versions)", name, why)
        from opentelemetry import trace

        provider = trace.get_tracer_provider()
        if not hasattr(provider, "add_span_processor"):
            _log.error("otel-llm-eval: the global tracer provider is not an SDK provider (%s); not attached",
                       type(provider).__name__)
            return
        processor = build_processor(settings, tracer_provider=provider)
        provider.add_span_processor(processor)
        # Runs before the provider's own atexit shutdown (LIFO), while the exporter is still alive.
        atexit.register(processor.shutdown)
        _attached.append(processor)
        _log.info("otel-llm-eval: LLMEvalSpanProcessor attached (judge=%s)", processor.evaluator)
    except (ConfigError, ValueError) as exc:
        _log.error("otel-llm-eval: not attached, bad configuration: %s", exc)
    except Exception:  # noqa: BLE001 - never break the app's startup
        _log.exception("otel-llm-eval: attaching the processor failed")
