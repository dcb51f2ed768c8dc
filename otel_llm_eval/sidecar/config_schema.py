"""The sidecar config schema, derived from the defaults: validation at start and the reference doc.

Nobody keeps a list of keys by hand. The schema is built from the defaults dicts themselves
(`config.DEFAULTS` and every plugin's `CONFIG_DEFAULTS` under the plugin's name), so a key added
to a defaults dict is known, typed and documented at once:

- a non-empty dict is a section: its keys are the only ones allowed (unknown keys are errors,
  with a did-you-mean); an empty dict is a free-form map (`labels.caps`, `prices.models`, ...);
- bool -> a boolean; str -> a string; float -> a finite number; int -> an integer, or a number
  when the key names a continuous quantity (`*_seconds`, `*_days`, `*_rate`, ...); list -> a list
  (of strings when the default holds strings); None -> anything (or the type in `TYPES`);
- `RANGES` adds bounds for keys whose valid values are known; entries for keys that do not exist
  (yet) are ignored, so the table never breaks when a section changes.

`validate_schema(cfg, sections)` raises ConfigError with ONE message listing every problem.
`reference_markdown(sections)` renders docs/configuration.md (the comments next to each default
in the source become its description); `python -m otel_llm_eval.sidecar.config_schema FILE`
writes it.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import inspect
import sys
from typing import Annotated, Any, Mapping, Optional

from pydantic import ConfigDict, Field, ValidationError, create_model

#: (minimum, maximum, exclusive) per dotted key; None = unbounded on that side
RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    "server.port": (0, 65535, False),
    "state.flush_interval_seconds": (0.01, None, False),
    "state.span_index_retention_seconds": (0, None, False),
    "state.span_index_max_entries": (1, None, False),
    "state.max_experiments": (1, None, False),
    "state.max_stats_per_experiment": (1, None, False),
    "state.max_units_per_experiment": (0, None, False),
    "state.max_units": (0, None, False),
    "state.unit_buckets": (100, None, False),
    "state.dedup_retention_seconds": (0, None, False),
    "state.journal_max_age_seconds": (1, None, False),
    "ingest.max_request_bytes": (1024, None, False),
    "ingest.max_span_bytes": (256, None, False),
    "ingest.queue_max_batches": (1, None, False),
    "ingest.retry_after_seconds": (0, None, False),
    "ingest.workers": (0, None, False),
    "ingest.evaluation_dedup_entries": (0, None, False),
    "ingest.limits.max_tokens": (0, None, False),
    "ingest.limits.max_cost_usd": (0, None, False),
    "ingest.limits.max_duration_seconds": (0, None, False),
    "ingest.limits.max_age_seconds": (0, None, False),
    "ingest.limits.max_future_seconds": (0, None, False),
    "server.max_connections": (1, None, False),
    "server.timeout_keep_alive_seconds": (0.1, None, False),
    "server.request_timeout_seconds": (0.1, None, False),
    "usage.max_ids_per_service": (1, None, False),
    "checks.min_output_chars": (0, None, False),
    "checks.max_output_chars": (1, None, False),
    "analysis.interval_seconds": (0.05, None, False),
    "analysis.alpha": (0, 1, True),
    "analysis.power": (0, 1, True),
    "analysis.srm_threshold": (0, 1, True),
    "analysis.mde": (0, None, True),
    "analysis.min_samples": (2, None, False),
    "review.retention_days": (0, None, True),
    "review.max_pending": (1, None, False),
    "review.sampling.random_rate": (0, 1, False),
    "offline.max_pairs": (1, None, False),
    "offline.max_pending": (1, None, False),
}

#: types for keys whose default (None, an empty list) says nothing about them
TYPES: dict[str, tuple[Any, str]] = {
    "server.auth_token": (Optional[str], "a string or null (quote it in YAML)"),
    "server.allowed_hosts": (list[str], "a list of strings"),
    "server.allowed_origins": (list[str], "a list of strings"),
    "labels.caps": (dict[str, Annotated[int, Field(ge=1)]], "a mapping of label name to an integer >= 1"),
    "checks.toxicity_words_file": (Optional[str], "a file path or null"),
    "checks.refusal_phrases": (Optional[list[str]], "a list of strings or null"),
    "prices.file": (Optional[str], "a file path or null"),
    "prices.models": (dict[str, dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]]],
                      "a mapping of model to {input_per_million, output_per_million} numbers >= 0"),
    "plugins": (list[str], "a list of 'module:Class' strings"),
}

_CONTINUOUS = ("_seconds", "_days", "_hours", "_minutes", "_rate", "_usd", "_fraction", "_ratio", "_threshold",
               "_factor", "_weight", "_quality", "_score")


def _field_type(path: str, key: str, default: Any) -> tuple[Any, str]:
    """(pydantic type, human description) for one key."""
    if path in TYPES:
        return TYPES[path]
    bounds = RANGES.get(path)
    constraint: dict[str, Any] = {}
    rng = ""
    if bounds:
        lo, hi, exclusive = bounds
        if lo is not None:
            constraint["gt" if exclusive else "ge"] = lo
        if hi is not None:
            constraint["lt" if exclusive else "le"] = hi
        rng = _range_text(lo, hi, exclusive)
    if isinstance(default, bool):
        return bool, "a boolean"
    if isinstance(default, int) and not key.endswith(_CONTINUOUS):
        return Annotated[int, Field(**constraint)], f"an integer{rng}"
    if isinstance(default, (int, float)):
        return Annotated[float, Field(allow_inf_nan=False, **constraint)], f"a number{rng}"
    if isinstance(default, str):
        return str, "a string"
    if isinstance(default, list):
        if default and all(isinstance(x, str) for x in default):
            return list[str], "a list of strings"
        return list[Any], "a list"
    if isinstance(default, dict):
        return dict[str, Any], "a mapping"
    return Any, "any value"


def _range_text(lo: Any, hi: Any, exclusive: bool) -> str:
    if lo is not None and hi is not None:
        return f" in ({lo:g}, {hi:g})" if exclusive else f" in [{lo:g}, {hi:g}]"
    if lo is not None:
        return f" {'>' if exclusive else '>='} {lo:g}"
    if hi is not None:
        return f" {'<' if exclusive else '<='} {hi:g}"
    return ""


def _model(name: str, defaults: Mapping[str, Any], prefix: str) -> Any:
    fields: dict[str, Any] = {}
    for key, default in defaults.items():
        path = f"{prefix}{key}"
        if isinstance(default, Mapping) and default and path not in TYPES:
            fields[key] = (Optional[_model(f"{name}_{key}", default, path + ".")], None)
        else:
            t, _ = _field_type(path, key, default)
            # null is a documented value for some keys ("None disables"); never for a bounded one
            fields[key] = (t if path in RANGES else Optional[t], None)
    return create_model(name, __config__=ConfigDict(extra="forbid", strict=True), **fields)


def _lookup(defaults: Mapping[str, Any], loc: tuple) -> tuple[str, Any, Mapping[str, Any] | None]:
    """(dotted path, default at that path, the section containing it) for a pydantic error loc;
    the default is None for an unknown key. A loc reaching inside a leaf (a list index, a map
    key) stops at the leaf."""
    node: Any = defaults
    parts: list[str] = []
    parent: Mapping[str, Any] | None = None
    for part in loc:
        if not (isinstance(node, Mapping) and node and ".".join(parts) not in TYPES):
            break  # inside a leaf value
        parent = node
        parts.append(str(part))
        if part not in node:
            return ".".join(parts), None, parent
        node = node[part]
    return ".".join(parts), node, parent


def validate_schema(cfg: Mapping[str, Any], defaults: Mapping[str, Any]) -> list[str]:
    """Every problem of `cfg` against the schema derived from `defaults`, one line each (empty: valid)."""
    model = _model("SidecarConfig", defaults, "")
    try:
        model.model_validate(dict(cfg))
        return []
    except ValidationError as e:
        errors = e.errors()
    problems: dict[str, str] = {}
    for err in errors:
        loc = tuple(err["loc"])
        path, default, parent = _lookup(defaults, loc)
        if err["type"] == "extra_forbidden":
            key = path.rpartition(".")[2]
            where = path.rpartition(".")[0]
            known = sorted(parent) if isinstance(parent, Mapping) else []
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f" (did you mean '{(where + '.') if where else ''}{close[0]}'?)" if close else \
                f" (known {'keys of ' + where if where else 'sections'}: {', '.join(known)})"
            problems.setdefault(path, f"{path}: unknown {'key' if where else 'section'}{hint}")
            continue
        top_key = path.rpartition(".")[2]
        if path in TYPES:
            desc = TYPES[path][1]
        elif isinstance(default, Mapping) and default:
            desc = "a mapping (a config section)"
        else:
            desc = _field_type(path, top_key, default)[1]
        got = err.get("input")
        problems.setdefault(path, f"{path}: must be {desc}, got {got!r}")
    return [problems[k] for k in sorted(problems)]


# --- the reference ------------------------------------------------------------------------------

def _comments(obj: Any, name: str) -> dict[str, str]:
    """dotted key -> the comment written next to it in the source of the dict `name` in `obj`'s module."""
    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    out: dict[str, str] = {}

    def walk(node: ast.AST, prefix: str) -> None:
        if not isinstance(node, ast.Dict):
            return
        for k, v in zip(node.keys, node.values):
            if not isinstance(k, ast.Constant) or not isinstance(k.value, str):
                continue
            line = lines[k.lineno - 1]
            end_line = lines[(v.end_lineno or k.lineno) - 1]
            for text in (end_line, line):
                if "#" in text:
                    out[prefix + k.value] = text.split("#", 1)[1].strip()
                    break
            walk(v, prefix + k.value + ".")

    for node in ast.walk(ast.parse(source)):
        targets = []
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            targets = [node.target.id]
        elif isinstance(node, ast.Assign):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
        if name in targets and node.value is not None:
            walk(node.value, "")
    return out


def _default_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        import json

        text = json.dumps(value)
        return text if len(text) <= 60 else text[:57] + "..."
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1e6:
        return f"{value:.0f}"
    return str(value)


def reference_markdown(sections: list[tuple[str, str, Mapping[str, Any], dict[str, str]]]) -> str:
    """The configuration reference. sections: (section name, source, defaults, comments)."""
    out = ["<!-- Generated from the defaults in the code by `python -m otel_llm_eval.sidecar.config_schema "
           "docs/configuration.md`. DO NOT EDIT: change the defaults (and their comments) instead. -->",
           "",
           "# Sidecar configuration reference",
           "",
           "Every key the sidecar accepts, with its type, default and range. Precedence (later wins):",
           "built-in defaults < each plugin's defaults < the YAML file (`--config`) < environment variables",
           "`OTEL_LLM_EVAL_<SECTION>__<KEY>` (nested deeper with more `__`; string keys such as tokens are",
           "taken as written, other values are parsed as YAML scalars) < command-line flags.",
           "",
           "The whole config is validated at start: a wrong type, a value out of range or an unknown key",
           "(with a did-you-mean) stops the sidecar with one message that lists every problem (exit code 2).",
           ""]
    for name, source, defaults, comments in sections:
        out += [f"## {name}" if name.startswith("`") else f"## `{name}`", "", f"Defined in `{source}`.", "", "| key | type | default | description |",
                "|---|---|---|---|"]
        rows: list[tuple[str, str, str, str]] = []

        def walk(d: Mapping[str, Any], prefix: str) -> None:
            for key, default in d.items():
                path = prefix + key
                section = name.split("`")[1] if name.startswith("`") else name
                full = f"{section}.{path}" if section != "(top level)" else path
                if isinstance(default, Mapping) and default and full not in TYPES:
                    walk(default, path + ".")
                    continue
                _, desc = _field_type(full, key, default)
                rows.append((path, desc, _default_text(default), comments.get(path, "").replace("|", "\\|")))

        walk(defaults, "")
        out += [f"| `{p}` | {t} | `{d}` | {c} |" for p, t, d, c in rows]
        out.append("")
    return "\n".join(out)


def default_sections() -> list[tuple[str, str, Mapping[str, Any], dict[str, str]]]:
    """The core sections and those of the default plugins, for the reference."""
    from . import config
    from .plugins import section_of

    sections = []
    comments = _comments(config, "DEFAULTS")
    from .ingest import edge  # ingest.limits is dict(edge.LIMIT_DEFAULTS): its comments live there

    comments.update({f"ingest.limits.{k}": v for k, v in _comments(edge, "LIMIT_DEFAULTS").items()})
    for name, value in config.DEFAULTS.items():
        if isinstance(value, Mapping):
            sub = {k[len(name) + 1:]: v for k, v in comments.items() if k.startswith(name + ".")}
            sections.append((name, "otel_llm_eval/sidecar/config.py", value, sub))
    sections.append(("(top level)", "otel_llm_eval/sidecar/config.py", {"plugins": config.DEFAULTS["plugins"]},
                     {"plugins": "plugin classes to load, `module:Class`"}))
    for spec in config.DEFAULT_PLUGINS:
        module_name, _, cls_name = spec.partition(":")
        module = importlib.import_module(module_name)
        cls = getattr(module, cls_name)
        defaults = getattr(cls, "CONFIG_DEFAULTS", None) or {}
        if defaults:
            section = section_of(cls)
            title = section if section == cls.name else f"`{section}` (plugin `{cls.name}`)"
            sections.append((title, cls.__module__.replace(".", "/") + ".py", defaults, _comments(sys.modules[cls.__module__], "CONFIG_DEFAULTS")))
    return sections


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = reference_markdown(default_sections()) + "\n"
    if not args:
        sys.stdout.write(text)
        return 0
    with open(args[0], "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
