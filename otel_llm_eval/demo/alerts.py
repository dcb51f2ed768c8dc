"""Which of the generated alerts would fire on the demo's traffic, and why.

The generated rules (`otel_llm_eval.bundle.alerts.rule_groups()`, the content of alerts/) speak in
production time: rates over 5 minutes to a day, `for:` of 5 to 30 minutes. A demo lasts a minute,
so the demo also builds a time-compressed copy of the same rules: every range, offset and `for:`
divided by one factor (for a 60 s demo, 1 h becomes 30 s). The expressions and thresholds are
unchanged. `RuleEvaluator` plays Prometheus' rule manager over the demo's scrapes of the sidecar
(recording rules first, then alerts with pending/firing states), using `promql.evaluate`.

Pure: no I/O; the caller feeds scrapes.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from typing import Any

from . import promql

TIMESCALE_LABEL = "demo_timescale"


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
        group["interval"] = promql.format_duration(interval_seconds)
        for rule in group["rules"]:
            rule["expr"] = promql.scale_durations(rule["expr"], factor)
            if "for" in rule:
                rule["for"] = promql.format_duration(max(interval_seconds, promql.parse_duration(rule["for"]) / factor))
            if "alert" in rule:
                rule.setdefault("labels", {})[TIMESCALE_LABEL] = label
    return out


@dataclass
class AlertState:
    name: str
    labels: dict[str, str]
    severity: str
    active_since: float
    value: float
    for_seconds: float
    summary: str = ""
    description: str = ""
    fired_at: float | None = None


@dataclass
class RuleEvaluator:
    """Evaluates recording and alert rules at each scrape time, like Prometheus' rule manager."""

    groups: dict[str, Any]
    history: promql.History = field(default_factory=promql.History)
    states: dict[tuple, AlertState] = field(default_factory=dict)
    #: Alerts that fired at some point: (rule id, name, labels) -> first state seen firing.
    fired: dict[tuple, AlertState] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def add_scrape(self, t: float, samples: list[tuple[str, dict[str, str], float]]) -> None:
        for name, labels, value in samples:
            self.history.add(name, labels, t, value)
        self.evaluate(t)

    def evaluate(self, t: float) -> None:
        for gi, group in enumerate(self.groups["groups"]):
            for ri, rule in enumerate(group["rules"]):
                name = rule.get("record") or rule.get("alert")
                try:
                    result = promql.evaluate(rule["expr"], self.history, t)
                except promql.PromQLError as e:
                    self.errors[name] = str(e)
                    continue
                except (ZeroDivisionError, OverflowError, ValueError) as e:
                    self.errors[name] = f"evaluation error: {e}"
                    continue
                if "record" in rule:
                    for labels, value in result.items():
                        if not math.isnan(value):
                            self.history.add(rule["record"], dict(labels), t, value)
                else:
                    self._alert((gi, ri), rule, result, t)

    def _alert(self, rule_id: tuple[int, int], rule: dict[str, Any], result: promql.Vector, t: float) -> None:
        name = rule["alert"]
        for_seconds = promql.parse_duration(rule["for"]) if rule.get("for") else 0.0
        active_keys = set()
        for labels, value in result.items():
            d = {k: v for k, v in labels if k != "__name__"}
            d.update(rule.get("labels", {}))
            key = (rule_id, name, tuple(sorted(d.items())))
            active_keys.add(key)
            state = self.states.get(key)
            if state is None:
                state = AlertState(name, d, d.get("severity", ""), t, value, for_seconds)
                self.states[key] = state
            state.value = value
            ann = rule.get("annotations", {})
            state.summary = render_template(ann.get("summary", ""), d, value)
            state.description = render_template(ann.get("description", ""), d, value)
            if state.fired_at is None and t - state.active_since >= for_seconds:
                state.fired_at = t
                self.fired.setdefault(key, copy.copy(state))
        for key in [k for k in self.states if k[0] == rule_id and k not in active_keys]:
            del self.states[key]

    def firing(self) -> list[AlertState]:
        return [s for s in self.states.values() if s.fired_at is not None]

    def pending(self) -> list[AlertState]:
        return [s for s in self.states.values() if s.fired_at is None]


# ---------------------------------------------------------------- templates (the subset rules use)

def _humanize(v: float) -> str:
    if v == 0 or math.isnan(v) or math.isinf(v):
        return f"{v:g}"
    for prefix, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= size:
            return f"{v / size:.4g}{prefix}"
    for prefix, size in (("", 1.0), ("m", 1e-3), ("u", 1e-6), ("n", 1e-9)):
        if abs(v) >= size:
            return f"{v / size:.4g}{prefix}"
    return f"{v:.4g}"


def _humanize_duration(v: float) -> str:
    if v >= 60:
        m, s = divmod(v, 60)
        return f"{int(m)}m {s:.0f}s"
    if v >= 1:
        return f"{v:.4g}s"
    return f"{v * 1000:.4g}ms"


_TEMPLATE = re.compile(r"\{\{\s*(.*?)\s*\}\}")


def render_template(template: str, labels: dict[str, str], value: float) -> str:
    """Fill `$labels.x`, `$value` and the pipes humanize, humanizePercentage, humanizeDuration, printf."""
    def fill(m: re.Match) -> str:
        parts = [p.strip() for p in m.group(1).split("|")]
        head = parts[0]
        if head.startswith("$labels."):
            out: Any = labels.get(head[len("$labels."):], "")
        elif head == "$value":
            out = value
        else:
            return m.group(0)
        for pipe in parts[1:]:
            if pipe == "humanize":
                out = _humanize(float(out))
            elif pipe == "humanizePercentage":
                out = f"{float(out) * 100:.4g}%"
            elif pipe == "humanizeDuration":
                out = _humanize_duration(float(out))
            elif pipe.startswith("printf"):
                fmt = pipe[len("printf"):].strip().strip('"').replace('\\"', '"')
                try:
                    out = fmt % float(out)
                except (TypeError, ValueError):
                    pass
        if isinstance(out, float):
            out = f"{out:g}"
        return str(out)

    return _TEMPLATE.sub(fill, template)
