"""The generated alert rules, time-compressed so that the demo's minute can show them firing.

The generated rules (`otel_llm_eval.bundle.alerts.rule_groups()`, the content of alerts/) speak in
production time: rates over 5 minutes to a day, `for:` of 5 to 30 minutes. The demo loads into a
real Prometheus a copy of the same rules with every range, offset and `for:` divided by one factor
(for a 60 s demo, 1 h becomes 30 s) and a label saying so. Expressions and thresholds are
unchanged; which alerts fire, and when, is Prometheus' answer (see demo.stack).

Pure: no I/O.
"""

from __future__ import annotations

import copy
import re
from typing import Any

TIMESCALE_LABEL = "demo_timescale"

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")


def parse_duration(text: str) -> float:
    """Seconds of a Prometheus duration such as `5m`, `1h30m` or `500ms`; ValueError otherwise."""
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"bad duration {text!r}")
    return total


def format_duration(seconds: float) -> str:
    """The shortest exact Prometheus duration: 3600 -> `1h`, 7.5 -> `7500ms`."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and abs(seconds / size - round(seconds / size)) < 1e-9:
            return f"{int(round(seconds / size))}{unit}"
    return f"{int(round(seconds * 1000))}ms"


def scale_durations(expr: str, factor: float) -> str:
    """`expr` with every range (`[5m]`, `[1h:1m]`) and offset divided by `factor`, at least 1 s."""
    def scaled(text: str) -> str:
        return format_duration(max(1.0, parse_duration(text) / factor))

    def fix_range(m: re.Match) -> str:
        return "[" + ":".join(scaled(part) if part else part for part in m.group(1).split(":")) + "]"

    out = re.sub(r"\[([0-9a-z.:]+)\]", fix_range, expr)
    return re.sub(r"offset\s+([0-9a-z.]+)", lambda m: "offset " + scaled(m.group(1)), out)


def generated_rule_groups() -> dict[str, Any] | None:
    """The rule file the bundle generates for alerts/ (None when the bundle part is unavailable)."""
    try:
        from otel_llm_eval.bundle.alerts import rule_groups
    except Exception:  # the bundle extra or module is missing: the demo says so
        return None
    return rule_groups()


def compressed_rule_groups(groups: dict[str, Any], factor: float, interval_seconds: float) -> dict[str, Any]:
    """A copy of `groups` with every duration divided by `factor` and a label saying so."""
    out = copy.deepcopy(groups)
    label = f"1/{factor:g}"
    for group in out["groups"]:
        group["name"] = group["name"] + ".demo-timescale"
        group["interval"] = format_duration(interval_seconds)
        for rule in group["rules"]:
            rule["expr"] = scale_durations(rule["expr"], factor)
            if "for" in rule:
                rule["for"] = format_duration(max(interval_seconds, parse_duration(rule["for"]) / factor))
            if "alert" in rule:
                rule.setdefault("labels", {})[TIMESCALE_LABEL] = label
    return out
