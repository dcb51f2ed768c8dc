"""The demo's small PromQL evaluator agrees with promtool on the generated rules' own unit tests.

`otel_llm_eval.bundle.alerts.rule_tests()` is what `promtool test rules` checks for alerts/. Replaying
every one of those cases through `otel_llm_eval.demo.alerts.RuleEvaluator` must give the same alerts
(names, labels, descriptions) at the same evaluation times: then "which alerts would fire" in the
demo report means what Prometheus would say.
"""

from __future__ import annotations

import re

import pytest

from otel_llm_eval.demo import alerts, promql

bundle_alerts = pytest.importorskip("otel_llm_eval.bundle.alerts")

_SERIES = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?$")


def expand_values(text: str) -> list[float | None]:
    """promtool's input series notation: `a+bxc`, `a-bxc`, `axc`, `_`, `_xn`, plain numbers."""
    out: list[float | None] = []
    for token in text.split():
        if token.startswith("_"):
            count = int(token[2:]) if token.startswith("_x") else 0
            out.extend([None] * (count + 1 if count else 1))
            continue
        m = re.fullmatch(r"(-?[0-9.e]+)(?:([+-])([0-9.e]+))?x(\d+)", token)
        if m:
            start, sign, step, n = float(m.group(1)), m.group(2), m.group(3), int(m.group(4))
            delta = 0.0 if step is None else float(step) * (1 if sign == "+" else -1)
            out.extend(start + delta * i for i in range(n + 1))
        else:
            out.append(float(token))
    return out


def parse_series(text: str) -> tuple[str, dict[str, str]]:
    m = _SERIES.match(text.strip())
    assert m, text
    labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
    return m.group(1), labels


def replay(case: dict) -> alerts.RuleEvaluator:
    evaluator = alerts.RuleEvaluator(bundle_alerts.rule_groups())
    step = promql.parse_duration(case.get("interval", "1m"))
    series = [(parse_series(s["series"]), expand_values(s["values"])) for s in case["input_series"]]
    last_eval = max(promql.parse_duration(t["eval_time"]) for t in case["alert_rule_test"])
    evaluator.snapshots = {}
    t = 0.0
    i = 0
    while t <= last_eval + 1e-9:
        samples = [(name, labels, values[i]) for (name, labels), values in series
                   if i < len(values) and values[i] is not None]
        evaluator.add_scrape(t, samples)
        evaluator.snapshots[round(t)] = {(s.name, tuple(sorted(s.labels.items())), s.description)
                                         for s in evaluator.firing()}
        t += step
        i += 1
    return evaluator


CASES = bundle_alerts.rule_tests()["tests"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_demo_evaluator_fires_exactly_when_promtool_expects(case):
    evaluator = replay(case)
    assert not evaluator.errors, evaluator.errors
    for check in case["alert_rule_test"]:
        at = round(promql.parse_duration(check["eval_time"]))
        got = {(labels, desc) for name, labels, desc in evaluator.snapshots[at] if name == check["alertname"]}
        want = set()
        for exp in check["exp_alerts"]:
            labels = tuple(sorted(exp["exp_labels"].items()))
            want.add((labels, exp["exp_annotations"]["description"]))
        assert got == want, f"at {check['eval_time']}"


@pytest.mark.parametrize(
    "expr, message",
    [
        ("label_replace(x, 'a', 'b', 'c', 'd')", "not supported"),
        ("x[5m:1m]", "subqueries"),
        ("sum(x) by (", "expected"),
    ],
    ids=["an unknown function is refused by name", "a subquery is refused",
         "a truncated expression is refused"],
)
def test_unsupported_promql_is_refused_not_guessed(expr, message):
    with pytest.raises(promql.PromQLError, match=message):
        promql.evaluate(expr, promql.History(), 0.0)


def test_compressed_rules_divide_every_duration_and_keep_thresholds():
    groups = bundle_alerts.rule_groups()
    compressed = alerts.compressed_rule_groups(groups, 120, 1.0)
    for group, original_group in zip(compressed["groups"], groups["groups"]):
        for rule, original in zip(group["rules"], original_group["rules"]):
            assert "[1h]" not in rule["expr"] and "[5m]" not in rule["expr"]
            if "for" in rule:
                assert promql.parse_duration(rule["for"]) == pytest.approx(
                    max(1.0, promql.parse_duration(original["for"]) / 120))
            if "alert" in rule:
                assert rule["labels"][alerts.TIMESCALE_LABEL] == "1/120"
            promql.parse(rule["expr"])  # still parses


def test_the_same_seed_gives_the_same_story_and_another_seed_another():
    from otel_llm_eval.demo import simulation as sim

    first = list(sim.Story(3, 20, 30).requests())
    again = list(sim.Story(3, 20, 30).requests())
    other = list(sim.Story(4, 20, 30).requests())
    assert first == again
    assert [r.question for r in first] != [r.question for r in other]
    phases = [r.phase for r in first]
    assert phases.index("drift") < phases.index("incident")  # the story keeps its order


@pytest.mark.parametrize("duration", [15, 20, 60, 300], ids=lambda d: f"a {d} s run keeps its windows inside the run")
def test_the_timeline_scales_with_the_duration(duration):
    from otel_llm_eval.demo import Timeline
    from otel_llm_eval.demo import simulation as sim

    t = Timeline(duration)
    slots_before_drop = sim.INCIDENT_AT * duration / t.slot_seconds
    assert t.anomaly_min_history < slots_before_drop  # an anomaly verdict is possible before the end
    assert t.drift_current_seconds < (1 - sim.DRIFT_AT) * duration  # the current window can fill with drift
    assert t.analysis_interval_seconds <= t.slot_seconds
    assert 1.0 <= 3600 / t.alert_timescale <= duration  # a compressed hour fits in the run
