"""Always-valid p-values: safe to look at after every batch without inflating false positives.

Default: the asymptotic confidence sequence "GAVI" (Howard et al. 2021, arXiv 1810.08240; the form
of Waudby-Smith et al. 2023 used by GrowthBook and PostHog), tuned to be tightest at
`tuning_n` total samples (default 5000, as both platforms):

    rho   = sqrt((-2 ln a + ln(1 - 2 ln a)) / N)
    t^2   = (theta - theta0)^2 n / SE^2          n = n_control + n_variant
    e     = exp(rho^2 t^2 / (2 (n rho^2 + 1))) / sqrt(n rho^2 + 1)
    p     = min(1, 1 / e)

The always-valid p-value is the running minimum of these over time (`running_min`); the caller
keeps the previous value (the sidecar stores it). Also the mixture SPRT of Johari et al. (KDD
2017) for two streams (`msprt_p_value`). Pure functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._util import clamp_p, finite


@dataclass(frozen=True)
class SequentialResult:
    """p_value: this look's always-valid p (take the running min over looks).
    ci_lower/ci_upper: the (1 - alpha) confidence sequence for the difference at this look."""

    p_value: float | None
    ci_lower: float | None
    ci_upper: float | None


def _rho(alpha: float, tuning_n: float) -> float:
    la = math.log(alpha)
    return math.sqrt((-2.0 * la + math.log(1.0 - 2.0 * la)) / tuning_n)


def gavi(diff: float | None, std_error: float | None, n_total: int, *, alpha: float = 0.05,
         tuning_n: float = 5000.0, null: float = 0.0) -> SequentialResult:
    """GAVI always-valid p-value and confidence sequence for a difference estimate `diff` with
    standard error `std_error` from `n_total` observations (both arms together)."""
    if not 0 < alpha < 1 or tuning_n <= 0:
        raise ValueError("need 0 < alpha < 1 and tuning_n > 0")
    if diff is None or std_error is None or std_error <= 0 or n_total < 2:
        return SequentialResult(None, None, None)
    n = float(n_total)
    rho = _rho(alpha, tuning_n)
    nr2 = n * rho * rho
    t2 = (diff - null) ** 2 * n / (std_error ** 2)
    log_e = rho * rho * t2 / (2.0 * (nr2 + 1.0)) - 0.5 * math.log(nr2 + 1.0)
    p = 1.0 if log_e <= 0 else math.exp(-log_e)
    sigma = std_error * math.sqrt(n)
    half = sigma * math.sqrt(2.0 * (nr2 + 1.0) * math.log(math.sqrt(nr2 + 1.0) / alpha) / (n * rho) ** 2)
    return SequentialResult(clamp_p(p), finite(diff - half), finite(diff + half))


def msprt_p_value(diff: float | None, variance_sum: float | None, n_per_arm: int, *,
                  tau2: float) -> float | None:
    """Mixture SPRT (normal mixture N(0, tau2)) for two streams with n observations per arm.

    `variance_sum` is var_control + var_variant per observation (Bernoulli: p_c q_c + p_v q_v).
    Lambda = sqrt(V/(V + n tau2)) exp(n^2 tau2 diff^2 / (2 V (V + n tau2))); p = min(1, 1/Lambda).
    """
    if diff is None or variance_sum is None or variance_sum <= 0 or n_per_arm < 1 or tau2 <= 0:
        return None
    v, n = float(variance_sum), float(n_per_arm)
    log_lam = 0.5 * math.log(v / (v + n * tau2)) + n * n * tau2 * diff * diff / (2.0 * v * (v + n * tau2))
    return clamp_p(1.0 if log_lam <= 0 else math.exp(-log_lam))


def running_min(previous: float | None, current: float | None) -> float | None:
    """The always-valid p-value after a look: never rises (min of the previous and this look)."""
    if previous is None:
        return current
    if current is None:
        return previous
    return min(previous, current)
