"""Drift between a reference and a current window, per feature.

Numeric features (Evidently's approach, with its traps fixed):
- Bin edges are shared: computed from reference and current together (`np.histogram_bin_edges`
  on the concatenation, Sturges by default), so both histograms describe the same bins.
- JS: Jensen-Shannon *distance* in base 2 (in [0, 1]); drift when >= 0.1.
- PSI = sum (p_ref - p_cur) ln(p_ref / p_cur), empty bins filled with `epsilon` (1e-4) first so it
  is always finite; drift when >= 0.2.
- KS: two-sample Kolmogorov-Smirnov p-value, only for small samples (both windows <= ks_max_samples
  unweighted values); drift when p < 0.05.
Weights: each value may carry a weight (a reservoir sample standing for more values); histograms
use them, KS requires unweighted data.

Categorical features: chi-square of current counts against the reference proportions over the
union of categories. Categories unseen in the reference get a pseudo-count (add-0.5 smoothing of the
reference) so the statistic stays finite; JS over the same union.

Every detector returns `DriftResult(method, score, p_value, threshold, detected)` (as alibi-detect):
for js/psi `score` is the distance and p_value None; for ks/chi2 `score` is the test statistic,
`p_value` the p-value and `threshold` the alpha. Pure functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import stats as _st

from ._util import chi2_sf, clamp_p, finite

JS_THRESHOLD = 0.1
PSI_THRESHOLD = 0.2
P_THRESHOLD = 0.05
PSI_EPSILON = 1e-4
KS_MAX_SAMPLES = 1000


@dataclass(frozen=True)
class DriftResult:
    method: str
    score: float | None
    p_value: float | None
    threshold: float
    detected: bool | None

    @property
    def published(self) -> float | None:
        """The number published as llm_eval_drift_score: the p-value for tests, else the score."""
        return self.p_value if self.method in ("ks", "chi2") else self.score


def shared_edges(reference: np.ndarray, current: np.ndarray, bins: int | str = "sturges") -> np.ndarray:
    """Bin edges from both windows together (never from one side only)."""
    both = np.concatenate([np.asarray(reference, float), np.asarray(current, float)])
    both = both[np.isfinite(both)]
    if both.size == 0:
        raise ValueError("no finite values in either window")
    return np.histogram_bin_edges(both, bins=bins)


def _normalize(counts: np.ndarray) -> np.ndarray | None:
    total = counts.sum()
    return counts / total if total > 0 else None


def js_distance(p: Sequence[float], q: Sequence[float]) -> float | None:
    """Jensen-Shannon distance, base 2, of two count or probability vectors on the same support."""
    p = _normalize(np.asarray(p, float))
    q = _normalize(np.asarray(q, float))
    if p is None or q is None or p.shape != q.shape:
        return None
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_pm = np.where(p > 0, p * np.log2(p / m), 0.0).sum()
        kl_qm = np.where(q > 0, q * np.log2(q / m), 0.0).sum()
    js = max(0.0, 0.5 * (kl_pm + kl_qm))
    return finite(math.sqrt(min(1.0, js)))


def psi(reference: Sequence[float], current: Sequence[float], *, epsilon: float = PSI_EPSILON) -> float | None:
    """Population stability index of two count vectors on the same bins, empty bins -> epsilon."""
    p = _normalize(np.asarray(reference, float))
    q = _normalize(np.asarray(current, float))
    if p is None or q is None or p.shape != q.shape:
        return None
    p = np.where(p > 0, p, epsilon)
    q = np.where(q > 0, q, epsilon)
    return finite(float(((p - q) * np.log(p / q)).sum()))


def ks_test(reference: Sequence[float], current: Sequence[float], *, alpha: float = P_THRESHOLD) -> DriftResult:
    r = np.asarray(reference, float)
    c = np.asarray(current, float)
    if r.size < 1 or c.size < 1:
        return DriftResult("ks", None, None, alpha, None)
    res = _st.ks_2samp(r, c)
    p = clamp_p(res.pvalue)
    return DriftResult("ks", finite(res.statistic), p, alpha, None if p is None else p < alpha)


def sorted_with_weights(values: Sequence[float], weights: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Values sorted, with the cumulative weights (0 prepended): the form `histogram_sorted` reads.
    Sorting the reference once lets every later histogram on new edges cost O(bins log n)."""
    v = np.asarray(values, float)
    w = np.ones_like(v) if weights is None else np.asarray(weights, float)
    order = np.argsort(v, kind="stable")
    return v[order], np.concatenate([[0.0], np.cumsum(w[order])])


def histogram_sorted(sorted_values: np.ndarray, cum_weights: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Weighted counts per bin (np.histogram semantics: last bin closed) from sorted values."""
    idx = np.searchsorted(sorted_values, edges, side="left")
    idx[-1] = np.searchsorted(sorted_values, edges[-1], side="right")
    return np.diff(cum_weights[idx])


def drift_from_histograms(reference_counts: np.ndarray, current_counts: np.ndarray, *,
                          js_threshold: float = JS_THRESHOLD, psi_threshold: float = PSI_THRESHOLD,
                          epsilon: float = PSI_EPSILON) -> list[DriftResult]:
    """JS and PSI of two histograms on the same (shared) bins."""
    js = js_distance(reference_counts, current_counts)
    ps = psi(reference_counts, current_counts, epsilon=epsilon)
    return [DriftResult("js", js, None, js_threshold, None if js is None else js >= js_threshold),
            DriftResult("psi", ps, None, psi_threshold, None if ps is None else ps >= psi_threshold)]


def numeric_drift(reference: Sequence[float], current: Sequence[float], *,
                  reference_weights: Sequence[float] | None = None,
                  current_weights: Sequence[float] | None = None,
                  bins: int | str = "sturges", js_threshold: float = JS_THRESHOLD,
                  psi_threshold: float = PSI_THRESHOLD, alpha: float = P_THRESHOLD,
                  epsilon: float = PSI_EPSILON, ks_max_samples: int = KS_MAX_SAMPLES) -> list[DriftResult]:
    """JS and PSI on shared bins, plus KS when both windows are small and unweighted."""
    r = np.asarray(reference, float)
    c = np.asarray(current, float)
    rw = None if reference_weights is None else np.asarray(reference_weights, float)
    cw = None if current_weights is None else np.asarray(current_weights, float)
    if r.size == 0 or c.size == 0:
        return []
    edges = shared_edges(r, c, bins)
    if edges.size < 2 or edges[0] == edges[-1]:
        # every value identical in both windows: one bin, no drift
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    hr, _ = np.histogram(r, bins=edges, weights=rw)
    hc, _ = np.histogram(c, bins=edges, weights=cw)
    out = drift_from_histograms(hr, hc, js_threshold=js_threshold, psi_threshold=psi_threshold, epsilon=epsilon)
    if rw is None and cw is None and r.size <= ks_max_samples and c.size <= ks_max_samples:
        out.append(ks_test(r, c, alpha=alpha))
    return out


def categorical_drift(reference: Mapping[str, float], current: Mapping[str, float], *,
                      alpha: float = P_THRESHOLD, js_threshold: float = JS_THRESHOLD,
                      smoothing: float = 0.5) -> list[DriftResult]:
    """Chi-square of current counts vs reference proportions over the union of categories, and JS.

    New categories (absent from the reference) get the add-`smoothing` pseudo-count, so their
    expected count is small but positive: a new category shows up as drift, never as infinity.
    """
    keys = sorted(set(reference) | set(current))
    ref = np.array([float(reference.get(k, 0.0)) for k in keys])
    cur = np.array([float(current.get(k, 0.0)) for k in keys])
    if ref.sum() <= 0 or cur.sum() <= 0:
        return []
    out = []
    if len(keys) >= 2:
        ref_s = ref + smoothing
        expected = ref_s / ref_s.sum() * cur.sum()
        stat = float(((cur - expected) ** 2 / expected).sum())
        p = clamp_p(chi2_sf(stat, len(keys) - 1))
        out.append(DriftResult("chi2", finite(stat), p, alpha, None if p is None else p < alpha))
    js = js_distance(ref, cur)
    out.append(DriftResult("js", js, None, js_threshold, None if js is None else js >= js_threshold))
    return out
