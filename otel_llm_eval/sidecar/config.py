"""Sidecar configuration: built-in defaults, a YAML file, environment overrides, plugin sections.

Precedence (later wins): `DEFAULTS` < each plugin's `CONFIG_DEFAULTS` (under the plugin's name)
< the YAML file < environment variables `OTEL_LLM_EVAL_<SECTION>__<KEY>` (for example
`OTEL_LLM_EVAL_SERVER__AUTH_TOKEN=...`, `OTEL_LLM_EVAL_STATE__FLUSH_INTERVAL_SECONDS=0.5`,
nested deeper with more `__`) < command-line flags. Environment values are parsed as YAML
scalars/flow collections, so `true`, `5`, `[a, b]` and `{gpt-4o: 10}` work.

Pure functions plus `load_config`; raises `ConfigError` with a message naming the key.
"""

from __future__ import annotations

import copy
import ipaddress
import os
from typing import Any, Mapping

from .edge import LIMIT_DEFAULTS

ENV_PREFIX = "OTEL_LLM_EVAL_"


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message says which key and how to fix it."""


DEFAULT_PLUGINS = [
    "otel_llm_eval.sidecar.analysis:AnalysisPlugin",
    "otel_llm_eval.sidecar.review:ReviewPlugin",
    "otel_llm_eval.sidecar.offline_plugin:OfflinePlugin",
]

#: Every core key with its default. The README's "Sidecar configuration" table documents each one.
DEFAULTS: dict[str, Any] = {
    "server": {
        "host": "127.0.0.1",
        "port": 9318,
        "auth_token": None,           # bearer token; required to bind anything but loopback
        "auth_metrics": True,         # with a token: /metrics requires it too
        "auth_otlp": True,            # with a token: /v1/traces and /v1/logs require it too
    },
    "state": {
        "db_path": "otel-llm-eval.db",
        "flush_interval_seconds": 1.0,
        "journal": True,                      # write-ahead journal of accepted requests (exactly-once)
        "dedup_retention_seconds": 600.0,     # identical request bodies within this window count once
        "span_index_retention_seconds": 86400.0,
        "span_index_max_entries": 200_000,
        "max_experiments": 200,               # experiments with sufficient statistics (more: counted, skipped)
        "max_stats_per_experiment": 1000,     # (metric, variant) pairs per experiment
        "max_units_per_experiment": 200_000,  # distinct unit keys kept per experiment (SRM on units)
        "max_units": 1_000_000,               # ... and over all experiments (8-byte keys)
    },
    "ingest": {
        "max_request_bytes": 16 * 1024 * 1024,   # compressed AND decompressed body
        "max_span_bytes": 1024 * 1024,           # a span or log record larger than this is rejected
        "queue_max_batches": 64,
        "workers": 0,                            # processes for decode/normalize/checks (0 = ingest thread)
        "retry_after_seconds": 1,
        "evaluation_dedup_entries": 100_000,     # same evaluation as span event and log record counts once
        "limits": dict(LIMIT_DEFAULTS),          # value ranges a span must respect (edge.py); else rejected
    },
    "labels": {
        "caps": {},                    # label -> cap, overrides catalog.DEFAULT_LABEL_CAPS
        "default_service": "unknown_service",
    },
    "usage": {
        "max_ids_per_service": 100_000,   # distinct users (and sessions) tracked per service per day
    },
    "checks": {
        "enabled": ["empty_output", "output_too_short", "output_too_long", "refusal", "invalid_json",
                    "pii", "toxicity", "bad_finish_reason", "error_status"],
        "min_output_chars": 2,
        "max_output_chars": 20_000,
        "pii_kinds": ["email", "card", "phone"],
        "toxicity_words_file": None,      # None: the shipped list
        "extra_toxicity_words": [],
        "refusal_phrases": None,          # None: the shipped list
        "bad_finish_reasons": ["length", "content_filter"],
        "custom": [],                     # [{name, function: "module:function", category: safety|quality}]
    },
    "prices": {
        "file": None,                     # JSON {model: {input_per_million, output_per_million}}
        "models": {},                     # inline overrides, same shape
    },
    "analysis": {
        "interval_seconds": 10.0,         # plugins' tick()
    },
    "plugins": list(DEFAULT_PLUGINS),
}


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: `over` merged into `base`; nested dicts merge, anything else is replaced."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _parse_env_value(raw: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        return raw


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Config overrides from `OTEL_LLM_EVAL_<SECTION>__<KEY>[__<KEY>...]` variables."""
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name[len(ENV_PREFIX):]:
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX):].split("__") if p]
        if len(path) < 2:
            continue
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[path[-1]] = _parse_env_value(raw)
    return out


def read_yaml(path: str) -> dict[str, Any]:
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of sections, got {type(data).__name__}")
    return data


def load_config(
    path: str | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    plugin_defaults: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The merged config: defaults < plugin defaults < YAML file < env < `overrides`. Validated."""
    cfg = deep_merge(DEFAULTS, {})
    for name, section in (plugin_defaults or {}).items():
        cfg = deep_merge(cfg, {name: dict(section)})
    if path:
        cfg = deep_merge(cfg, read_yaml(path))
    cfg = deep_merge(cfg, env_overrides(os.environ if environ is None else environ))
    if overrides:
        cfg = deep_merge(cfg, overrides)
    validate(cfg)
    return cfg


def merge_plugin_defaults(cfg: Mapping[str, Any], name: str, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """`cfg` with `defaults` filled in under `name` wherever the user did not set a key."""
    return deep_merge(cfg, {name: deep_merge(defaults, cfg.get(name) or {})})


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _number(cfg: Mapping[str, Any], section: str, key: str, *, minimum: float, integer: bool = False) -> None:
    value = cfg.get(section, {}).get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{section}.{key} must be {kind} >= {minimum}, got {value!r}")
    if integer and not isinstance(value, int):
        raise ConfigError(f"{section}.{key} must be an integer, got {value!r}")


def validate(cfg: Mapping[str, Any]) -> None:
    """Raise ConfigError for values the sidecar cannot run with (including auth on non-loopback)."""
    for section in ("server", "state", "ingest", "labels", "usage", "checks", "prices", "analysis"):
        if not isinstance(cfg.get(section), Mapping):
            raise ConfigError(f"config section {section!r} must be a mapping")
    _number(cfg, "server", "port", minimum=0, integer=True)
    _number(cfg, "state", "flush_interval_seconds", minimum=0.01)
    _number(cfg, "state", "span_index_retention_seconds", minimum=0)
    _number(cfg, "state", "span_index_max_entries", minimum=1, integer=True)
    _number(cfg, "state", "max_experiments", minimum=1, integer=True)
    _number(cfg, "state", "max_stats_per_experiment", minimum=1, integer=True)
    _number(cfg, "state", "max_units_per_experiment", minimum=0, integer=True)
    _number(cfg, "state", "max_units", minimum=0, integer=True)
    _number(cfg, "state", "dedup_retention_seconds", minimum=0)
    _number(cfg, "ingest", "max_request_bytes", minimum=1024, integer=True)
    _number(cfg, "ingest", "max_span_bytes", minimum=256, integer=True)
    _number(cfg, "ingest", "queue_max_batches", minimum=1, integer=True)
    _number(cfg, "ingest", "retry_after_seconds", minimum=0, integer=True)
    _number(cfg, "ingest", "workers", minimum=0, integer=True)
    _number(cfg, "usage", "max_ids_per_service", minimum=1, integer=True)
    _number(cfg, "checks", "min_output_chars", minimum=0, integer=True)
    _number(cfg, "checks", "max_output_chars", minimum=1, integer=True)
    _number(cfg, "analysis", "interval_seconds", minimum=0.05)
    caps = cfg["labels"].get("caps") or {}
    if not isinstance(caps, Mapping) or any(
        isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in caps.values()
    ):
        raise ConfigError(f"labels.caps must map label names to integers >= 1, got {caps!r}")
    if not isinstance(cfg.get("plugins", []), list):
        raise ConfigError("plugins must be a list of 'module:Class' strings")
    host = str(cfg["server"].get("host") or "")
    token = cfg["server"].get("auth_token")
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"refusing to listen on {host!r} without a bearer token: anything but loopback needs "
            "server.auth_token in the config file or the environment variable "
            "OTEL_LLM_EVAL_SERVER__AUTH_TOKEN=<a long random string> (clients then send "
            "'Authorization: Bearer <token>')"
        )
