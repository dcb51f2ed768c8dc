"""Judge sample rates that serve an experiment: reach the needed sample size by the planned end
at the least judge cost.

A fixed judge rate over-samples big arms and may under-sample small ones. Given, per variant, the
judged samples so far, the traffic rate (calls per second) and the target per arm (from the power
analysis of the judge-score metric), the cheapest rate that still reaches the target by the planned
end is exactly

    rate_v = clamp((margin * target - judged_v)+ / (traffic_v * remaining_seconds), min_rate, max_rate)

(cost is linear in judged calls, so sampling any more is waste and any less misses the target).
With a budget (judge calls per hour), rates are scaled down together when the plan exceeds it and
`feasible` turns False. Before the power analysis is possible (no variance estimate yet) the
`bootstrap_rate` applies. Pure function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class VariantLoad:
    """What the optimizer needs to know about one variant."""

    judged: int                   # judge samples collected so far
    traffic_per_second: float     # LLM calls per second in this variant (recent estimate)


@dataclass(frozen=True)
class JudgeRatePlan:
    """rates: variant -> judge sample rate in [min_rate, max_rate]; feasible: targets reachable by
    the planned end within the budget; expected_calls_per_hour: judge calls the rates imply."""

    rates: dict[str, float]
    target_per_arm: int | None
    feasible: bool
    expected_calls_per_hour: float
    reason: str


def plan_rates(variants: Mapping[str, VariantLoad], *, target_per_arm: int | None, remaining_seconds: float,
               min_rate: float = 0.01, max_rate: float = 1.0, bootstrap_rate: float = 0.1,
               budget_calls_per_hour: float | None = None, margin: float = 1.1) -> JudgeRatePlan:
    """Rates per variant. `margin` aims that much above the target, because sampling is random:
    aiming exactly at it would end below the target (and below the planned power) half the time."""
    if not 0 <= min_rate <= max_rate <= 1:
        raise ValueError("need 0 <= min_rate <= max_rate <= 1")
    if not variants:
        return JudgeRatePlan({}, target_per_arm, True, 0.0, "no variants")
    if target_per_arm is None:
        rates = {v: min(max_rate, max(min_rate, bootstrap_rate)) for v in variants}
        reason = "no variance estimate yet: bootstrap rate"
        feasible = True
    elif remaining_seconds <= 0:
        rates = {v: min_rate for v in variants}
        reason = "planned end reached"
        feasible = all(l.judged >= target_per_arm for l in variants.values())
    else:
        rates, feasible = {}, True
        for v, load in variants.items():
            need = max(0.0, target_per_arm * margin - load.judged)
            if need == 0:
                rates[v] = min_rate
                continue
            expected_traffic = max(0.0, load.traffic_per_second) * remaining_seconds
            if expected_traffic <= 0:
                rates[v] = max_rate
                feasible = False
                continue
            r = need / expected_traffic
            if r > max_rate:
                feasible = False
            rates[v] = min(max_rate, max(min_rate, r))
        reason = "least rates reaching the target by the planned end" if feasible else \
            "target not reachable by the planned end at max_rate"
    per_hour = sum(rates[v] * max(0.0, l.traffic_per_second) * 3600.0 for v, l in variants.items())
    if budget_calls_per_hour is not None and per_hour > budget_calls_per_hour > 0:
        scale = budget_calls_per_hour / per_hour
        rates = {v: r * scale for v, r in rates.items()}
        per_hour = budget_calls_per_hour
        feasible = False
        reason = "scaled down to the judge budget"
    return JudgeRatePlan(rates, target_per_arm, feasible, per_hour, reason)
