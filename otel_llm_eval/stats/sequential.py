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


# --- the decision test: a normal mixture in information time --------------------------------
#
# For an estimate theta_hat ~ N(theta, v) whose variance v shrinks as data arrives (any
# asymptotically normal estimator: a difference of means, a relative lift, a delta-method ratio on
# per-unit sums), the normal-mixture likelihood ratio against theta0 with mixing N(theta0, tau^2)
#
#     Lambda = sqrt(v / (v + tau^2)) * exp((theta_hat - theta0)^2 tau^2 / (2 v (v + tau^2)))
#
# is (asymptotically) a nonnegative martingale under theta = theta0, so by Ville's inequality
# P(sup_t Lambda_t >= 1/alpha) <= alpha: p_t = min(1, 1/Lambda_t) is an always-valid p-value and
# {theta0: Lambda_t(theta0) < 1/alpha} a confidence sequence (Robbins 1970; Johari et al. KDD 2017).
# It needs no sample count: GrowthBook's GAVI above is the same family with tau^2 = rho^2 sigma^2.
# Looking after every batch is safe; the running minimum of p and the running intersection of the
# intervals are what may be published (`RunningSequence`).


def mixture(estimate: float | None, variance: float | None, *, tau2: float, alpha: float = 0.05,
            null: float = 0.0) -> SequentialResult:
    """Always-valid p-value (this look) and (1 - alpha) confidence sequence of a normal mixture
    with mixing variance `tau2`, for `estimate` with sampling `variance`."""
    if not 0 < alpha < 1 or not tau2 > 0:
        raise ValueError("need 0 < alpha < 1 and tau2 > 0")
    if estimate is None or variance is None or not variance > 0 or not math.isfinite(variance):
        return SequentialResult(None, None, None)
    v = float(variance)
    log_lam = 0.5 * math.log(v / (v + tau2)) + (estimate - null) ** 2 * tau2 / (2.0 * v * (v + tau2))
    p = 1.0 if log_lam <= 0 else math.exp(-log_lam)
    half = mixture_half_width(v, tau2=tau2, alpha=alpha)
    return SequentialResult(clamp_p(p), finite(estimate - half), finite(estimate + half))


def mixture_half_width(variance: float, *, tau2: float, alpha: float) -> float:
    """Half-width of the mixture confidence sequence at sampling variance `variance`."""
    v = float(variance)
    return math.sqrt(v * (v + tau2) / tau2 * (2.0 * math.log(1.0 / alpha) + math.log((v + tau2) / v)))


def gavi_tau2(variance: float, n_total: float, *, alpha: float, tuning_n: float) -> float:
    """The mixing variance that makes `mixture` GrowthBook's/PostHog's GAVI: tau^2 = rho^2 sigma^2
    with sigma^2 = variance x n_total (one sample's variance, design effect included) and rho tuned
    so the sequence is tightest at `tuning_n` samples."""
    return _rho(alpha, tuning_n) ** 2 * float(variance) * float(n_total)


def gavi_boundary_se(n_total: float, *, alpha: float, tuning_n: float) -> float:
    """The GAVI rejection boundary in standard errors at n_total samples (about 3 to 4 from a
    tenth to ten times tuning_n at alpha 0.05)."""
    nr2 = float(n_total) * _rho(alpha, tuning_n) ** 2
    return math.sqrt((nr2 + 1.0) / nr2 * (2.0 * math.log(1.0 / alpha) + math.log(nr2 + 1.0)))


def gavi_mde(variance: float | None, n_total: float, *, alpha: float = 0.05, power: float = 0.8,
             tuning_n: float = 5000.0) -> float | None:
    """Smallest |effect| rejected with probability `power` at this look: (boundary + z_power) SE."""
    from ._util import norm_ppf
    if variance is None or not variance > 0 or not math.isfinite(variance) or n_total < 1:
        return None
    b = gavi_boundary_se(n_total, alpha=alpha, tuning_n=tuning_n)
    return finite((b + norm_ppf(power)) * math.sqrt(variance))


def gavi_required_n(effect: float, variance: float | None, n_total: float, *, alpha: float = 0.05,
                    power: float = 0.8, tuning_n: float = 5000.0) -> float | None:
    """Total samples at which `gavi_mde` falls to |effect|, with the variance per sample of now
    (variance x n_total): bisection on log n."""
    effect = abs(float(effect))
    if not effect > 0 or variance is None or not variance > 0 or n_total < 1:
        return None
    from ._util import norm_ppf
    sigma2 = float(variance) * float(n_total)
    # gavi_mde(sigma2 / n, n) inlined with its constants hoisted (the analysis pass runs this for
    # every comparison at every tick): the same expression, so the same bits
    rho2 = _rho(alpha, tuning_n) ** 2
    log_term = 2.0 * math.log(1.0 / alpha)
    z_power = norm_ppf(power)
    lo, hi = 0.0, 60.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if mid == lo or mid == hi:
            break  # the interval cannot shrink further in floating point
        n = math.exp(mid)
        nr2 = n * rho2
        boundary = math.sqrt((nr2 + 1.0) / nr2 * (log_term + math.log(nr2 + 1.0)))
        mde = (boundary + z_power) * math.sqrt(sigma2 / n)
        if not math.isfinite(mde) or mde > effect:
            lo = mid
        else:
            hi = mid
    return math.exp(hi)


@dataclass(frozen=True)
class RunningSequence:
    """What one comparison's always-valid test has shown so far: the running minimum p-value and
    the running intersection [lower, upper] of its confidence sequence at `level` (the comparison's
    share of alpha, Bonferroni). A change of level restarts both (a sequence at one fixed level may
    be intersected over any set of looks; mixing levels may not), so the published p and interval
    always agree: the interval excludes 0 exactly when p <= level."""

    p_value: float | None
    lower: float | None
    upper: float | None
    level: float
    #: times the intersection came out empty and the sequence restarted from that look: under a
    #: constant effect that happens with probability <= level, so it says the effect changed over time
    restarts: int = 0

    def update(self, look: SequentialResult, level: float) -> "RunningSequence":
        if abs(level - self.level) > 1e-12 * max(level, self.level):
            return RunningSequence.start(look, level)
        lower, upper = _max(self.lower, look.ci_lower), _min(self.upper, look.ci_upper)
        if lower is not None and upper is not None and lower > upper:
            return RunningSequence(look.p_value, look.ci_lower, look.ci_upper, level, self.restarts + 1)
        return RunningSequence(running_min(self.p_value, look.p_value), lower, upper, level, self.restarts)

    @staticmethod
    def start(look: SequentialResult, level: float) -> "RunningSequence":
        return RunningSequence(look.p_value, look.ci_lower, look.ci_upper, level)

    def excludes(self, value: float = 0.0) -> int:
        """+1 when the interval lies above `value`, -1 below, 0 when it contains it (or is
        undefined). An empty intersection (lower > upper, probability <= alpha) keeps the side of
        the bound that crossed `value`; when both did, 0."""
        above = self.lower is not None and self.lower > value
        below = self.upper is not None and self.upper < value
        return 1 if above and not below else -1 if below and not above else 0


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def beta_binomial_p_value(successes: int, failures: int, *, prior_strength: float = 12.0) -> float | None:
    """Always-valid p-value for H0: P(success) = 1/2 from a Beta(a, a) mixture over the success
    probability (a = `prior_strength`): Lambda = B(a + s, a + f) / (B(a, a) 0.5^(s + f)) is an
    exact martingale under H0 (no asymptotics), so min(1, 1/Lambda), minimised over looks, is
    valid at any stopping time. a = 12 puts the prior's standard deviation near 0.1."""
    if successes < 0 or failures < 0 or not prior_strength > 0:
        raise ValueError("need counts >= 0 and prior_strength > 0")
    n = successes + failures
    if n == 0:
        return None
    a = float(prior_strength)
    log_lam = (math.lgamma(a + successes) + math.lgamma(a + failures) - math.lgamma(2 * a + n)
               - (2 * math.lgamma(a) - math.lgamma(2 * a)) + n * math.log(2.0))
    return clamp_p(1.0 if log_lam <= 0 else math.exp(-log_lam))
