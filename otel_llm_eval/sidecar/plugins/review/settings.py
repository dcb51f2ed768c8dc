"""The `review` config section: merging it over the defaults, checking it, and the text rule it
sets (truncate, then redact PII). Pure; CONFIG_DEFAULTS itself stays in plugin.py, where the
generated docs/configuration.md reads the comments next to its keys.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from ....pii import redact

#: Keys that must be numbers at least this large.
NUMBER_MINIMUMS = (("retention_days", 1e-9), ("max_pending", 1), ("max_text_chars", 100),
                   ("judge_wait_seconds", 0), ("judge_wait_max_calls", 0))


def merge(defaults: Mapping[str, Any], override: Mapping[str, Any] | None) -> dict[str, Any]:
    """`override` over `defaults`, nested mappings merged key by key."""
    out = dict(defaults)
    for k, v in (override or {}).items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def check_section(cfg: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
    """ValueError naming the key when the merged section `cfg` is wrong (sampling is checked by
    SamplingConfig.from_mapping)."""
    unknown = set(cfg) - set(defaults)
    if unknown:
        raise ValueError(f"unknown review config keys: {sorted(unknown)}")
    for key, minimum in NUMBER_MINIMUMS:
        try:
            ok = float(cfg[key]) >= minimum
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"review.{key} must be a number >= {minimum:g}, got {cfg[key]!r}")
    if not (isinstance(cfg["pass_quality"], int) and 1 <= cfg["pass_quality"] <= 5):
        raise ValueError(f"review.pass_quality must be an integer 1..5, got {cfg['pass_quality']!r}")
    if not isinstance(cfg.get("issues") or [], list):
        raise ValueError("review.issues must be a list of issue names")


def clean_text(text: Any, limit: int, redact_kinds: Iterable[str]) -> str | None:
    """Truncate to `limit` then redact `redact_kinds` (redaction is what makes storing the text
    acceptable); no kinds: no redaction."""
    if text is None:
        return None
    s = str(text)
    if len(s) > limit:
        s = s[:limit] + " [truncated]"
    kinds = tuple(redact_kinds)
    if kinds:
        s = redact(s, kinds)
    return s


__all__ = ["NUMBER_MINIMUMS", "check_section", "clean_text", "merge"]
