"""Ratio metrics (e.g. messages per session) with the delta method.

Each randomization unit (user, or session when no user id is known) contributes a numerator x
(messages, seconds) and a denominator y (sessions). The arm's metric is R = sum x / sum y, and
Var(R) ~= (1/n) (s_xx / ybar^2 - 2 xbar s_xy / ybar^3 + xbar^2 s_yy / ybar^4)
(Deng et al., "Applying the Delta Method in Metric Analytics", KDD 2018). Arms are compared with a
z-test on the difference; relative lift gets a delta-method interval. Pure functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ._util import clamp_p, finite, norm_ppf, norm_sf


@dataclass(frozen=True)
class RatioSummary:
    """Per-arm sufficient statistics over units: n, sums of x, y, x^2, y^2, x*y."""

    n: int
    sx: float
    sy: float
    sxx: float
    syy: float
    sxy: float

    @classmethod
    def of(cls, x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> "RatioSummary":
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        if x.shape != y.shape:
            raise ValueError("x and y must have the same length")
        return cls(int(x.size), float(x.sum()), float(y.sum()), float((x * x).sum()), float((y * y).sum()),
                   float((x * y).sum()))

    @property
    def ratio(self) -> float | None:
        return self.sx / self.sy if self.sy > 0 else None

    def variance_of_ratio(self) -> float | None:
        """Delta-method variance of R (None with n < 2 or a zero denominator)."""
        if self.n < 2 or self.sy <= 0:
            return None
        n = self.n
        xb, yb = self.sx / n, self.sy / n
        cxx = (self.sxx - n * xb * xb) / (n - 1)
        cyy = (self.syy - n * yb * yb) / (n - 1)
        cxy = (self.sxy - n * xb * yb) / (n - 1)
        v = (cxx / yb ** 2 - 2 * xb * cxy / yb ** 3 + xb * xb * cyy / yb ** 4) / n
        return max(0.0, v)


@dataclass(frozen=True)
class RatioComparison:
    n_control: int
    n_variant: int
    ratio_control: float | None
    ratio_variant: float | None
    p_value: float | None
    abs_lift: float | None
    abs_ci_lower: float | None
    abs_ci_upper: float | None
    rel_lift: float | None
    rel_ci_lower: float | None
    rel_ci_upper: float | None
    std_error: float | None


def compare_ratio(control: RatioSummary, variant: RatioSummary, *, alpha: float = 0.05) -> RatioComparison:
    """z-test of R_variant - R_control with delta-method variances; relative lift R_v/R_c - 1."""
    rc, rv = control.ratio, variant.ratio
    vc, vv = control.variance_of_ratio(), variant.variance_of_ratio()
    p = lo = hi = rel = rlo = rhi = se = diff = None
    if rc is not None and rv is not None:
        diff = rv - rc
        rel = diff / rc if rc != 0 else None
    if diff is not None and vc is not None and vv is not None and vc + vv > 0:
        se = math.sqrt(vc + vv)
        z = norm_ppf(1 - alpha / 2)
        p = clamp_p(2 * norm_sf(abs(diff) / se))
        lo, hi = diff - z * se, diff + z * se
        if rc:
            rel_var = vv / rc ** 2 + vc * rv ** 2 / rc ** 4
            if rel_var > 0:
                rlo, rhi = rel - z * math.sqrt(rel_var), rel + z * math.sqrt(rel_var)
    return RatioComparison(control.n, variant.n, finite(rc), finite(rv), p, finite(diff), finite(lo), finite(hi),
                           finite(rel), finite(rlo), finite(rhi), finite(se))
