"""Sample-ratio mismatch: chi-square goodness of fit of assignment counts against the weights.

Flag at p < 0.001 (GrowthBook, Statsig's "likely a problem"): at alpha 0.05 half of SRM alarms would
be false when 5% of experiments have a real SRM; at 0.001 about 2%. Pure function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping


from ._util import chi2_sf, clamp_p, finite

SRM_THRESHOLD = 0.001


@dataclass(frozen=True)
class SRMResult:
    """(score, p_value, threshold, detected): score is the chi-square statistic."""

    score: float | None
    p_value: float | None
    threshold: float
    detected: bool | None
    dof: int | None


def srm(counts: Mapping[str, int], weights: Mapping[str, float], *, threshold: float = SRM_THRESHOLD) -> SRMResult:
    """Chi-square goodness of fit of `counts` (variant -> units) against `weights` (normalized here).

    A variant that received traffic but has weight 0 (or none) is a mismatch by definition
    (p = 0). Fewer than two weighted variants or no traffic → undefined (None fields).
    """
    if any(c < 0 for c in counts.values()) or any(w < 0 for w in weights.values()):
        raise ValueError("counts and weights must be >= 0")
    wsum = sum(weights.values())
    total = sum(counts.values())
    arms = [v for v, w in weights.items() if w > 0]
    if wsum <= 0 or len(arms) < 2 or total <= 0:
        return SRMResult(None, None, threshold, None, None)
    if any(c > 0 and weights.get(v, 0) <= 0 for v, c in counts.items()):
        return SRMResult(None, 0.0, threshold, True, len(arms) - 1)
    obs = [float(counts.get(v, 0)) for v in arms]
    exp = [total * weights[v] / wsum for v in arms]
    stat = sum((o - e) ** 2 / e for o, e in zip(obs, exp))
    dof = len(arms) - 1
    p = clamp_p(chi2_sf(stat, dof))
    return SRMResult(finite(stat), p, threshold, p < threshold, dof)


def false_discovery_rate(alpha: float, prevalence: float, power: float = 1.0) -> float:
    """Share of SRM alarms that are false when `prevalence` of experiments have a real SRM.

    GrowthBook's argument for alpha 0.001: 0.4872 at alpha 0.05 vs 0.01865 at 0.001 (5%, power 1).
    """
    false_alarms = alpha * (1 - prevalence)
    return false_alarms / (false_alarms + power * prevalence)
