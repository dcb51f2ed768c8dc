"""The verdict a person can read, per experiment, metric and variant.

Order of checks:
1. srm: the assignment counts don't match the weights (SRM p < 0.001): don't trust any number.
2. better / worse: significant — the always-valid p-value is below alpha (safe under continuous
   looking), or, once the planned sample size is reached, the Holm-adjusted fixed-horizon p-value
   is. Direction from the lift and whether higher is better for the metric.
3. no_difference: the required sample size per arm is reached without significance.
4. collecting: otherwise (not enough data yet).
Pure function.
"""

from __future__ import annotations

VERDICTS = ("collecting", "no_difference", "better", "worse", "srm")

VERDICT_TEXT = {
    "collecting": "collecting data",
    "no_difference": "no detectable difference",
    "better": "better than control",
    "worse": "worse than control",
    "srm": "sample ratio mismatch: don't trust these numbers",
}


def verdict(*, n_control: int, n_variant: int, required_per_arm: int | None, abs_lift: float | None,
            always_valid_p: float | None, adjusted_p: float | None, srm_p: float | None,
            alpha: float = 0.05, srm_threshold: float = 0.001, higher_is_better: bool = True,
            min_samples: int = 30) -> str:
    if srm_p is not None and srm_p < srm_threshold:
        return "srm"
    enough = required_per_arm is not None and min(n_control, n_variant) >= required_per_arm
    started = min(n_control, n_variant) >= min_samples
    significant = started and ((always_valid_p is not None and always_valid_p < alpha)
                               or (enough and adjusted_p is not None and adjusted_p < alpha))
    if significant and abs_lift is not None and abs_lift != 0:
        return "better" if (abs_lift > 0) == higher_is_better else "worse"
    if enough:
        return "no_difference"
    return "collecting"
