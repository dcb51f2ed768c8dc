"""A/B comparisons from sufficient statistics: proportions, Welch, lift with intervals, Holm/BH.

Conventions (DESIGN.md "Statistics"):
- A metric per variant is summarised by `Summary(n, total, total_sq)`; `binary=True` means every value
  is 0/1 (a proportion). Binary variance is p(1-p) (as GrowthBook); continuous variance is the
  sample variance (ddof=1).
- Proportions: Pearson chi-square on the 2xK table without continuity correction (for two arms this
  equals the pooled two-proportion z-test). Continuous: Welch's t-test.
- Lift: absolute (mean_v - mean_c) with a normal/t interval from the unpooled standard error, and
  relative ((mean_v - mean_c) / mean_c) with a delta-method interval:
  Var = var_v / (mean_c^2 n_v) + var_c mean_v^2 / (mean_c^4 n_c).
- Everything undefined (n < 2, zero variance, control mean 0) is None.

Pure functions; raise ValueError only for impossible inputs (negative counts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ._util import chi2_sf, clamp_p, finite, norm_ppf, t_ppf, t_sf


@dataclass(frozen=True)
class Summary:
    """Sufficient statistics of one arm: count, sum and sum of squares of the values."""

    n: int
    total: float
    total_sq: float

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError(f"n must be >= 0, got {self.n}")

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n > 0 else None

    def variance(self, binary: bool = False) -> float | None:
        """p(1-p) for binary metrics (n >= 1); the ddof=1 sample variance otherwise (n >= 2)."""
        if binary:
            if self.n < 1:
                return None
            p = self.total / self.n
            return max(0.0, p * (1.0 - p))
        if self.n < 2:
            return None
        var = (self.total_sq - self.total * self.total / self.n) / (self.n - 1)
        return max(0.0, var)  # rounding can make it slightly negative

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray) -> "Summary":
        a = np.asarray(values, dtype=float)
        return cls(int(a.size), float(a.sum()), float((a * a).sum()))


@dataclass(frozen=True)
class TestResult:
    """A test statistic with its p-value and degrees of freedom (None when undefined)."""

    statistic: float | None
    p_value: float | None
    dof: float | None


@dataclass(frozen=True)
class Comparison:
    """One variant against the control on one metric.

    `p_value` is the fixed-horizon p-value of `test` ("chi2" or "welch"); absolute and relative
    lift intervals are at level 1 - alpha. Any field may be None when not yet computable.
    """

    n_control: int
    n_variant: int
    mean_control: float | None
    mean_variant: float | None
    test: str
    statistic: float | None
    p_value: float | None
    abs_lift: float | None
    abs_ci_lower: float | None
    abs_ci_upper: float | None
    rel_lift: float | None
    rel_ci_lower: float | None
    rel_ci_upper: float | None
    std_error: float | None   # of the absolute difference (unpooled)
    alpha: float


def chi_square_proportions(successes: Sequence[float], totals: Sequence[float]) -> TestResult:
    """Pearson chi-square (no continuity correction) on the 2xK table successes/failures by arm.

    Arms with total 0 are dropped. Undefined (all successes or all failures, < 2 arms) → None fields.
    """
    s = np.asarray(successes, dtype=float)
    n = np.asarray(totals, dtype=float)
    if s.shape != n.shape:
        raise ValueError("successes and totals must have the same length")
    if np.any(n < 0) or np.any(s < 0) or np.any(s > n):
        raise ValueError("need 0 <= successes <= totals")
    keep = n > 0
    s, n = s[keep], n[keep]
    if s.size < 2:
        return TestResult(None, None, None)
    f = n - s
    table = np.vstack([s, f])
    row = table.sum(axis=1, keepdims=True)
    col = table.sum(axis=0, keepdims=True)
    grand = table.sum()
    expected = row * col / grand
    if np.any(expected <= 0):
        return TestResult(None, None, None)
    stat = float(((table - expected) ** 2 / expected).sum())
    dof = float(s.size - 1)
    return TestResult(finite(stat), clamp_p(chi2_sf(stat, dof)), dof)


def welch(a: Summary, b: Summary) -> TestResult:
    """Welch's unequal-variance t-test of mean(b) - mean(a) from sufficient statistics."""
    va, vb = a.variance(), b.variance()
    if va is None or vb is None:
        return TestResult(None, None, None)
    sa, sb = va / a.n, vb / b.n
    se2 = sa + sb
    if se2 <= 0:
        return TestResult(None, None, None)
    t = (b.mean - a.mean) / math.sqrt(se2)
    den = (sa * sa) / (a.n - 1) + (sb * sb) / (b.n - 1)
    if den <= 0:  # the squares underflow for variances near 1e-160: undefined, not a crash
        return TestResult(None, None, None)
    dof = se2 * se2 / den
    p = 2.0 * t_sf(abs(t), dof)
    return TestResult(finite(t), clamp_p(p), finite(dof))


def compare(control: Summary, variant: Summary, *, binary: bool, alpha: float = 0.05) -> Comparison:
    """Variant vs control: fixed-horizon test, absolute and relative lift with (1-alpha) intervals."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    mc, mv = control.mean, variant.mean
    if binary:
        test = chi_square_proportions([control.total, variant.total], [control.n, variant.n])
        name = "chi2"
        dof_ci = math.inf
        # signed z for reporting: sqrt(chi2) with the sign of the difference
        stat = None
        if test.statistic is not None and mc is not None and mv is not None:
            stat = math.copysign(math.sqrt(test.statistic), mv - mc)
    else:
        test = welch(control, variant)
        name = "welch"
        dof_ci = test.dof if test.dof is not None else math.inf
        stat = test.statistic
    vc, vv = control.variance(binary), variant.variance(binary)
    abs_lift = abs_lo = abs_hi = rel = rel_lo = rel_hi = se = None
    if mc is not None and mv is not None:
        abs_lift = mv - mc
        if mc != 0:
            rel = (mv - mc) / mc
    ok_var = vc is not None and vv is not None and control.n >= (1 if binary else 2) and variant.n >= (1 if binary else 2)
    if ok_var and abs_lift is not None:
        se2 = vc / control.n + vv / variant.n
        if se2 > 0:
            se = math.sqrt(se2)
            crit = norm_ppf(1 - alpha / 2) if math.isinf(dof_ci) else t_ppf(1 - alpha / 2, dof_ci)
            abs_lo, abs_hi = abs_lift - crit * se, abs_lift + crit * se
            if mc not in (None, 0):
                try:
                    rel_var = vv / (mc * mc * variant.n) + vc * mv * mv / (mc ** 4 * control.n)
                except (ZeroDivisionError, OverflowError):  # |mc| so small its 4th power underflows
                    rel_var = 0.0
                if rel_var > 0 and math.isfinite(rel_var):
                    rel_se = math.sqrt(rel_var)
                    rel_lo, rel_hi = rel - crit * rel_se, rel + crit * rel_se
    return Comparison(
        n_control=control.n, n_variant=variant.n, mean_control=finite(mc), mean_variant=finite(mv),
        test=name, statistic=finite(stat), p_value=test.p_value,
        abs_lift=finite(abs_lift), abs_ci_lower=finite(abs_lo), abs_ci_upper=finite(abs_hi),
        rel_lift=finite(rel), rel_ci_lower=finite(rel_lo), rel_ci_upper=finite(rel_hi),
        std_error=finite(se), alpha=alpha,
    )


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm step-down adjusted p-values (family-wise error). None entries stay None and don't count."""
    idx = [i for i, p in enumerate(p_values) if p is not None]
    m = len(idx)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: p_values[i])):
        adj = min(1.0, (m - rank) * float(p_values[i]))
        running = max(running, adj)
        out[i] = running
    return out


def benjamini_hochberg(p_values: Sequence[float | None]) -> list[float | None]:
    """Benjamini-Hochberg step-up adjusted p-values (false discovery rate). None entries stay None."""
    idx = [i for i, p in enumerate(p_values) if p is not None]
    m = len(idx)
    out: list[float | None] = [None] * len(p_values)
    running = 1.0
    for rank, i in reversed(list(enumerate(sorted(idx, key=lambda i: p_values[i]), start=1))):
        running = min(running, m * float(p_values[i]) / rank)
        out[i] = min(1.0, running)
    return out
