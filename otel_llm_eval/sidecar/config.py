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

from .ingest.edge import LIMIT_DEFAULTS
from .plugins import section_of

ENV_PREFIX = "OTEL_LLM_EVAL_"


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message says which key and how to fix it."""


DEFAULT_PLUGINS = [
    "otel_llm_eval.sidecar.plugins.experiments:ExperimentsPlugin",
    "otel_llm_eval.sidecar.plugins.bandits:BanditsPlugin",
    "otel_llm_eval.sidecar.plugins.interleaving:InterleavingPlugin",
    "otel_llm_eval.sidecar.plugins.drift:DriftPlugin",
    "otel_llm_eval.sidecar.plugins.anomalies:AnomaliesPlugin",
    "otel_llm_eval.sidecar.plugins.review:ReviewPlugin",
    "otel_llm_eval.sidecar.plugins.offline:OfflinePlugin",
    "otel_llm_eval.sidecar.plugins.judge:JudgePlugin",
]

#: The analysis plugin of earlier versions became five plugins; a config naming it gets all five.
ANALYSIS_SPLIT = {"otel_llm_eval.sidecar.analysis:AnalysisPlugin": DEFAULT_PLUGINS[:5]}


def expand_plugin_spec(spec: str) -> list[str]:
    """The plugin specs a configured spec stands for (itself, or what a split plugin became)."""
    return list(ANALYSIS_SPLIT.get(str(spec), [spec]))


#: Every core key with its default; the comment next to a key is its description in the generated
#: docs/configuration.md (config_schema.py derives the schema and that reference from this dict).
DEFAULTS: dict[str, Any] = {
    "server": {
        "host": "127.0.0.1",          # address to listen on (anything but loopback needs auth_token)
        "port": 9318,                 # 0 picks a free port
        "auth_token": None,           # bearer token; required to bind anything but loopback
        "auth_metrics": True,         # with a token: /metrics requires it too
        "auth_otlp": True,            # with a token: /v1/traces and /v1/logs require it too
        "allowed_hosts": [],          # Host header names accepted without a token (besides loopback names and host); ["*"]: any
        "allowed_origins": [],        # browser origins (scheme://host:port) allowed to POST besides the sidecar's own
        "max_connections": 512,       # open HTTP connections; beyond it the oldest idle one is closed (keep under ulimit -n)
        "request_timeout_seconds": 30.0,     # a request must arrive whole within this (idle/half-sent connections are closed)
        "timeout_keep_alive_seconds": 30.0,  # idle time between requests on a keep-alive connection
    },
    "state": {
        "db_path": "otel-llm-eval.db",        # SQLite state; the journal is <db_path>.journal/, the lock <db_path>.lock
        "flush_interval_seconds": 1.0,        # how often the state is written to SQLite
        "journal": True,                      # write-ahead journal of accepted requests (exactly-once)
        "journal_max_age_seconds": 900.0,     # the newest journal segment (raw request bodies) is closed and deleted after this
        "dedup_retention_seconds": 600.0,     # identical request bodies within this window count once
        "span_index_retention_seconds": 86400.0,  # how long evaluations can still join their call
        "span_index_max_entries": 200_000,    # calls kept in the join index (oldest evicted, counted)
        "max_experiments": 200,               # experiments with sufficient statistics (more: counted, skipped)
        "max_stats_per_experiment": 1000,     # (metric, variant) pairs per experiment
        "max_units_per_experiment": 200_000,  # distinct unit keys kept per experiment (SRM on units)
        "max_units": 1_000_000,               # ... and over all experiments (8-byte keys)
        "unit_buckets": 256,                  # per-unit sums: units hashed into this many clusters per arm
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
        "default_service": "unknown_service",  # service label when a resource has no service.name
    },
    "usage": {
        "max_ids_per_service": 100_000,   # distinct users (and sessions) tracked per service per day
    },
    "feedback": {
        # what each feedback name means: {name: {kind: binary|outcome|scale|categorical|text, min, max}};
        # names not listed follow the default of otel_llm_eval/sidecar/feedback_kinds.py
        "kinds": {},
    },
    "checks": {
        "enabled": ["empty_output",  # layer-1 checks run on every call
                    "output_too_short", "output_too_long", "refusal", "invalid_json",
                    "pii", "toxicity", "bad_finish_reason", "error_status"],
        "min_output_chars": 2,            # output_too_short below this
        "max_output_chars": 20_000,       # output_too_long above this
        "pii_kinds": ["email", "card", "phone"],  # what the pii check looks for
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
    "analysis": {                     # shared with the statistics plugins (experiments, bandits, ...), which add their keys
        "interval_seconds": 10.0,         # plugins' tick()
        "alpha": 0.05,                    # family-wise false-positive level of every verdict (experiments, interleaving)
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


#: keys whose environment values are taken exactly as written (a token `0123` must not become 83)
_VERBATIM_KEYS = ("token", "secret", "password", "path", "file", "host", "name")


def _verbatim(path: list[str]) -> bool:
    """True when the env value for `path` must stay a string: its default is a string, or the
    key names a secret, path or name (whose default may be None)."""
    node: Any = DEFAULTS
    for part in path:
        node = node.get(part) if isinstance(node, Mapping) else None
    return isinstance(node, str) or any(w in path[-1] for w in _VERBATIM_KEYS)


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Config overrides from `OTEL_LLM_EVAL_<SECTION>__<KEY>[__<KEY>...]` variables.

    Values are parsed as YAML scalars/flow collections, except for string keys (tokens, paths,
    hosts, names), which are kept exactly as written."""
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
            node[path[-1]] = raw if _verbatim(path) else _parse_env_value(raw)
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
    plugins: list | None = None,
) -> dict[str, Any]:
    """The merged config: defaults < plugin defaults < YAML file < env < `overrides`. Validated
    against the schema of the core and of the plugins (`plugins` instances, else the plugin
    specs the config names)."""
    cfg = deep_merge(DEFAULTS, {})
    for name, section in (plugin_defaults or {}).items():
        cfg = deep_merge(cfg, {name: dict(section)})
    if path:
        cfg = deep_merge(cfg, read_yaml(path))
    cfg = deep_merge(cfg, env_overrides(os.environ if environ is None else environ))
    if overrides:
        cfg = deep_merge(cfg, overrides)
    validate(cfg, plugins, plugin_defaults)
    return cfg


def merge_plugin_defaults(cfg: Mapping[str, Any], name: str, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """`cfg` with `defaults` filled in under section `name` wherever the user did not set a key."""
    return deep_merge(cfg, {name: deep_merge(defaults, cfg.get(name) or {})})


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def schema_defaults(cfg: Mapping[str, Any], plugins: list | None = None,
                    extra: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Everything a config may contain, with defaults: the core's DEFAULTS plus the CONFIG_DEFAULTS
    of `plugins` (instances), of the plugin classes `cfg["plugins"]` names and of the default
    plugins (a section for a plugin that is not loaded is still a known section)."""
    import importlib

    out = deep_merge(DEFAULTS, {})
    sources: list[Any] = list(plugins or [])
    specs = list(DEFAULT_PLUGINS)
    if plugins is None and isinstance(cfg.get("plugins"), list):
        specs += [s for s in cfg["plugins"] if isinstance(s, str)]
    for spec in dict.fromkeys(s for spec in specs for s in expand_plugin_spec(spec)):
        module_name, _, cls_name = spec.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), cls_name, None)
        except ImportError:
            continue  # load_plugins reports it
        if cls is not None:
            sources.append(cls)
    for p in sources:
        name = section_of(p)
        defaults = getattr(p, "CONFIG_DEFAULTS", None)
        if isinstance(name, str) and isinstance(defaults, Mapping):
            out = deep_merge(out, {name: deep_merge(defaults, out.get(name) or {})})
    for name, section in (extra or {}).items():
        out = deep_merge(out, {name: dict(section)})
    return out


def validate(cfg: Mapping[str, Any], plugins: list | None = None,
             extra: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Raise ConfigError listing EVERY problem: wrong types, values out of range, unknown keys and
    sections (with a did-you-mean), and no token on a non-loopback address (see config_schema)."""
    from .config_schema import validate_schema

    problems = validate_schema(cfg, schema_defaults(cfg, plugins, extra))
    server = cfg.get("server") if isinstance(cfg.get("server"), Mapping) else {}
    host = str(server.get("host") or "")
    token = server.get("auth_token")
    if not is_loopback(host) and not token:
        problems.append(
            f"refusing to listen on {host!r} without a bearer token: anything but loopback needs "
            "server.auth_token in the config file or the environment variable "
            "OTEL_LLM_EVAL_SERVER__AUTH_TOKEN=<a long random string> (clients then send "
            "'Authorization: Bearer <token>')"
        )
    if problems:
        if len(problems) == 1:
            raise ConfigError(f"invalid configuration: {problems[0]}")
        raise ConfigError(f"invalid configuration ({len(problems)} problems):\n  - " + "\n  - ".join(problems))
