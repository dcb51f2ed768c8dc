"""Power analysis: samples per arm to detect a relative effect, and the detectable effect for n.

Two-sided test at level alpha with the given power, equal allocation:
    n = (z_{1-a/2} + z_{power})^2 (var_c + var_v) / delta^2
with delta = mde_relative * |baseline mean|. For proportions var = p(1-p) per arm (the variant at
p (1 + mde)); for continuous metrics the same variance in both arms. Pure functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


from ._util import finite, norm_ppf


@dataclass(frozen=True)
class PowerResult:
    """required_per_arm: samples per arm for `mde_relative`; mde_*: what `n_per_arm` can detect."""

    required_per_arm: int | None
    mde_absolute: float | None
    mde_relative: float | None


def _z(alpha: float, power: float) -> float:
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError("need 0 < alpha < 1 and 0 < power < 1")
    return norm_ppf(1 - alpha / 2) + norm_ppf(power)


def required_per_arm(baseline_mean: float | None, variance: float | None, mde_relative: float, *,
                     alpha: float = 0.05, power: float = 0.8, binary: bool = False) -> int | None:
    """Samples per arm to detect a relative change of `mde_relative` (e.g. 0.05 for 5%)."""
    if baseline_mean is None or mde_relative <= 0 or baseline_mean == 0:
        return None
    z = _z(alpha, power)
    delta = abs(baseline_mean) * mde_relative
    if binary:
        p1 = baseline_mean
        p2 = min(1.0, max(0.0, p1 * (1 + mde_relative)))
        var_sum = p1 * (1 - p1) + p2 * (1 - p2)
    else:
        if variance is None:
            return None
        var_sum = 2.0 * variance
    if var_sum <= 0:
        return None
    return int(math.ceil(z * z * var_sum / (delta * delta)))


def minimum_detectable_effect(baseline_mean: float | None, variance: float | None, n_per_arm: int, *,
                              alpha: float = 0.05, power: float = 0.8) -> tuple[float | None, float | None]:
    """(absolute, relative) effect detectable with `n_per_arm` samples per arm."""
    if variance is None or variance <= 0 or n_per_arm < 1:
        return None, None
    mde_abs = _z(alpha, power) * math.sqrt(2.0 * variance / n_per_arm)
    rel = mde_abs / abs(baseline_mean) if baseline_mean not in (None, 0) else None
    return finite(mde_abs), finite(rel)


def power_analysis(baseline_mean: float | None, variance: float | None, n_per_arm: int, mde_relative: float, *,
                   alpha: float = 0.05, power: float = 0.8, binary: bool = False) -> PowerResult:
    """Both directions at once: samples needed for `mde_relative` and the MDE of `n_per_arm`."""
    req = required_per_arm(baseline_mean, variance, mde_relative, alpha=alpha, power=power, binary=binary)
    a, r = minimum_detectable_effect(baseline_mean, variance, n_per_arm, alpha=alpha, power=power)
    return PowerResult(req, a, r)
