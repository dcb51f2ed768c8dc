"""Verdicts per metric and the experiment-level decision, from always-valid intervals.

Per metric and variant (`verdict`), in this order:
1. srm: the split of units does not match the weights (SRM p < 0.001): trust no number.
2. collecting: fewer than `min_samples` per arm (units, or calls when no unit is known).
3. better / worse: the running intersection of the always-valid confidence sequence, at the
   experiment's family level alpha / m (Bonferroni over every metric x variant comparison that can
   trigger a verdict), excludes 0. Valid however often anyone looks; the direction is the side the
   interval lies on, so a verdict never contradicts its interval.
4. no_difference: the samples the sequential test needs for the metric's target effect are
   reached without 3.
5. collecting: otherwise.

Per variant (`decide`), one primary metric with a target and guardrails with non-inferiority
margins, all as relative effects in the metric's good direction (a lower-is-better metric's
interval is mirrored):
- don't ship: SRM; the primary is worse (interval below 0); a guardrail is worse by more than its
  margin (interval entirely below -margin); the primary cannot reach its target (interval entirely
  below the target while not better); or the primary's samples are reached with no difference.
- ship: the primary is better (interval above 0) and every guardrail is shown non-inferior
  (interval entirely above -margin, or no value in either arm).
- keep running: otherwise, with what it waits for.
All intervals are simultaneous at level alpha (Bonferroni), so every claim a decision rests on holds
together with probability >= 1 - alpha. Pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

VERDICTS = ("collecting", "no_difference", "better", "worse", "srm")

VERDICT_TEXT = {
    "collecting": "collecting data",
    "no_difference": "no detectable difference",
    "better": "better than control",
    "worse": "worse than control",
    "srm": "sample ratio mismatch: don't trust these numbers",
}

DECISIONS = ("ship", "dont_ship", "keep_running")

#: bounded reasons (a label on llm_eval_ab_decision)
REASONS = ("primary_better", "srm", "primary_worse", "guardrail_worse", "below_target", "no_difference",
           "collecting", "guardrail_unproven", "no_primary")


def verdict(*, side: int, srm: bool, started: bool, enough: bool, higher_is_better: bool = True) -> str:
    """`side`: +1 when the always-valid interval of the lift lies above 0, -1 below, 0 else."""
    if srm:
        return "srm"
    if not started:
        return "collecting"
    if side:
        return "better" if (side > 0) == higher_is_better else "worse"
    return "no_difference" if enough else "collecting"


@dataclass(frozen=True)
class MetricEvidence:
    """One metric's always-valid interval of the relative lift (variant vs control) in the
    metric's good direction, with what the decision needs to know about it.

    lower/upper: None when undefined. target/margin: relative (e.g. 0.05 for +5%)."""

    metric: str
    lower: float | None
    upper: float | None
    started: bool = True
    enough: bool = False
    target: float | None = None     # primary: the improvement the experiment is for
    margin: float | None = None     # guardrail: the largest degradation accepted
    empty: bool = False             # no value in either arm (e.g. no errors at all): nothing to guard


@dataclass(frozen=True)
class Decision:
    decision: str
    reason: str
    text: str
    metric: str = ""   # the metric whose interval decided ("" when none did)


def good_direction(lower: float | None, upper: float | None, higher_is_better: bool) -> tuple[float | None, float | None]:
    """An interval of a lift mirrored so that larger is better."""
    if higher_is_better:
        return lower, upper
    return (-upper if upper is not None else None), (-lower if lower is not None else None)


def _pct(x: float | None) -> str:
    return "?" if x is None else f"{x * 100:+.1f}%"


def decide(primary: MetricEvidence | None, guardrails: Sequence[MetricEvidence], *, srm: bool) -> Decision:
    if srm:
        return Decision("dont_ship", "srm", "sample ratio mismatch: the split is broken, fix assignment first")
    if primary is None:
        return Decision("keep_running", "no_primary",
                        "no primary metric yet: set analysis.decision.primary or send judge scores or feedback")
    p = primary
    if p.started and p.upper is not None and p.upper < 0:
        return Decision("dont_ship", "primary_worse",
                        f"{p.metric} is worse than control (lift in [{_pct(p.lower)}, {_pct(p.upper)}])", p.metric)
    for g in guardrails:
        if g.started and g.margin is not None and g.upper is not None and g.upper < -g.margin:
            return Decision("dont_ship", "guardrail_worse",
                            f"guardrail {g.metric} is worse by more than its {g.margin * 100:.0f}% margin "
                            f"(lift in [{_pct(g.lower)}, {_pct(g.upper)}], good direction)", g.metric)
    better = p.started and p.lower is not None and p.lower > 0
    if not better and p.started and p.target is not None and p.upper is not None and p.upper < p.target:
        return Decision("dont_ship", "below_target",
                        f"{p.metric} cannot reach its target of {_pct(p.target)} (at most {_pct(p.upper)})", p.metric)
    if not better:
        if p.enough:
            return Decision("dont_ship", "no_difference",
                            f"no detectable difference on {p.metric} at the planned sample size", p.metric)
        return Decision("keep_running", "collecting", f"collecting data for {p.metric}", p.metric)
    unproven = [g.metric for g in guardrails
                if not g.empty and not (g.started and g.margin is not None and g.lower is not None
                                        and g.lower > -g.margin)]
    if unproven:
        return Decision("keep_running", "guardrail_unproven",
                        f"{p.metric} is better ({_pct(p.lower)} or more); waiting for "
                        f"{', '.join(unproven)} to be shown within margin", p.metric)
    return Decision("ship", "primary_better",
                    f"{p.metric} is better (lift in [{_pct(p.lower)}, {_pct(p.upper)}]) and every guardrail is within margin",
                    p.metric)
