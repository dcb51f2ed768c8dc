"""Anomaly scores of the newest point of a metric series against its history.

- z-score: (x - mean) / max(std, sigma floor); flagged when |z| > 3. The floor (absolute, and
  relative to |mean|) keeps a flat history from dividing by zero.
- Robust z (Iglewicz & Hoaglin 1993): M = 0.6745 (x - median) / MAD, flagged when |M| > 3.5. When
  MAD = 0 (over half the values identical) it falls back to 1.253314 * mean absolute deviation, then
  to the sigma floor.
- EWMA control chart (NIST 6.3.2.4): z_t = lam x_t + (1 - lam) z_{t-1} over the last few points,
  z_0 = mean of the older history (the baseline);
  limits mu0 +- L sigma sqrt(lam / (2 - lam) (1 - (1 - lam)^(2t))). The score is (z_t - mu0) /
  (sigma sqrt(...)), i.e. in the same units as L: flagged when |score| > L (3, lambda 0.3).
No verdict (score and detected None) before `min_history` points. Every detector returns
`AnomalyResult(method, score, p_value, threshold, detected)`. Pure functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ._util import clamp_p, finite, norm_sf

Z_THRESHOLD = 3.0
MAD_THRESHOLD = 3.5
MAD_CONSTANT = 0.6745
MEANAD_CONSTANT = 1.253314
EWMA_LAMBDA = 0.3
EWMA_L = 3.0
MIN_HISTORY = 12


@dataclass(frozen=True)
class AnomalyResult:
    method: str
    score: float | None
    p_value: float | None
    threshold: float
    detected: bool | None


def sigma_floor(mean: float, *, absolute: float = 1e-9, relative: float = 0.01) -> float:
    """Smallest sigma used: max(absolute, relative * |mean|)."""
    return max(absolute, relative * abs(mean))


def _clean(history: Sequence[float]) -> np.ndarray:
    h = np.asarray(history, float)
    return h[np.isfinite(h)]


def zscore(history: Sequence[float], value: float, *, threshold: float = Z_THRESHOLD,
           min_history: int = MIN_HISTORY, floor_absolute: float = 1e-9, floor_relative: float = 0.01) -> AnomalyResult:
    h = _clean(history)
    if h.size < max(2, min_history) or not math.isfinite(value):
        return AnomalyResult("zscore", None, None, threshold, None)
    mean = float(h.mean())
    sd = max(float(h.std(ddof=1)), sigma_floor(mean, absolute=floor_absolute, relative=floor_relative))
    z = (value - mean) / sd
    return AnomalyResult("zscore", finite(z), clamp_p(2 * norm_sf(abs(z))), threshold, abs(z) > threshold)


def mad_score(history: Sequence[float], value: float, *, threshold: float = MAD_THRESHOLD,
              min_history: int = MIN_HISTORY, floor_absolute: float = 1e-9, floor_relative: float = 0.01) -> AnomalyResult:
    h = _clean(history)
    if h.size < max(2, min_history) or not math.isfinite(value):
        return AnomalyResult("mad", None, None, threshold, None)
    med = float(np.median(h))
    mad = float(np.median(np.abs(h - med)))
    if mad > 0:
        m = MAD_CONSTANT * (value - med) / mad
    else:
        mean_ad = float(np.mean(np.abs(h - med)))
        # 1.253314 * MeanAD estimates sigma like MAD / 0.6745 does; floor it for flat histories
        scale = max(MEANAD_CONSTANT * mean_ad, sigma_floor(med, absolute=floor_absolute, relative=floor_relative))
        m = (value - med) / scale
    return AnomalyResult("mad", finite(m), None, threshold, abs(m) > threshold)


def ewma_limits(mu0: float, sigma: float, lam: float = EWMA_LAMBDA, L: float = EWMA_L,
                t: int | None = None) -> tuple[float, float]:
    """(upper, lower) control limits at step t (steady state when t is None)."""
    if not 0 < lam <= 1:
        raise ValueError("lambda must be in (0, 1]")
    factor = lam / (2 - lam)
    if t is not None:
        factor *= 1 - (1 - lam) ** (2 * t)
    half = L * sigma * math.sqrt(factor)
    return mu0 + half, mu0 - half


def ewma(history: Sequence[float], value: float, *, lam: float = EWMA_LAMBDA, L: float = EWMA_L,
         min_history: int = MIN_HISTORY, recent: int = 5, floor_absolute: float = 1e-9,
         floor_relative: float = 0.01) -> AnomalyResult:
    """EWMA chart: mu0 and sigma from the history minus its last `recent` points (the baseline),
    the recursion from z_0 = mu0 over those recent points and `value`. Score = (z_t - mu0) /
    (sigma sqrt(lam/(2-lam) (1-(1-lam)^(2t)))), flagged when |score| > L."""
    h = _clean(history)
    if h.size < max(2, min_history) or not math.isfinite(value):
        return AnomalyResult("ewma", None, None, L, None)
    k = recent if h.size - recent >= max(2, min_history) else 0
    baseline, monitored = (h[:-k], h[-k:]) if k else (h, h[:0])
    mu0 = float(baseline.mean())
    sigma = max(float(baseline.std(ddof=1)), sigma_floor(mu0, absolute=floor_absolute, relative=floor_relative))
    series = np.append(monitored, value)
    # closed form of z_t = lam x_t + (1 - lam) z_{t-1} from z_0 = mu0
    t = series.size
    w = lam * (1 - lam) ** np.arange(t - 1, -1, -1)
    z_t = float((1 - lam) ** t * mu0 + (w * series).sum())
    sd_z = sigma * math.sqrt(lam / (2 - lam) * (1 - (1 - lam) ** (2 * t)))
    score = (z_t - mu0) / sd_z
    return AnomalyResult("ewma", finite(score), None, L, abs(score) > L)


def detect_all(history: Sequence[float], value: float, *, min_history: int = MIN_HISTORY,
               z_threshold: float = Z_THRESHOLD, mad_threshold: float = MAD_THRESHOLD,
               ewma_lambda: float = EWMA_LAMBDA, ewma_L: float = EWMA_L,
               floor_relative: float = 0.01) -> list[AnomalyResult]:
    """zscore, mad and ewma for one series (the sidecar publishes all three)."""
    return [
        zscore(history, value, threshold=z_threshold, min_history=min_history, floor_relative=floor_relative),
        mad_score(history, value, threshold=mad_threshold, min_history=min_history, floor_relative=floor_relative),
        ewma(history, value, lam=ewma_lambda, L=ewma_L, min_history=min_history, floor_relative=floor_relative),
    ]
