"""Drift between a reference and a current window, per feature.

Decisions come from tests with proper nulls, so the false-alarm rate is the test's level at every
traffic level (a fixed JS/PSI threshold is crossed by chance at low traffic, where both distances
are large under no drift, and misses real shifts at high traffic):
- Numeric: two-sample Kolmogorov-Smirnov on unweighted samples of both windows
  (`proportional_sample` draws them from per-slot reservoirs in proportion to each slot's count).
- Categorical: the two-sample contingency chi-square (`contingency_chi2`: reference and current
  both estimated, not the reference taken as known proportions), with a Monte Carlo permutation
  p-value (tables drawn with both margins fixed) when expected counts are small, so a handful of
  values or a brand-new category is judged exactly.
Effect sizes, reported but never deciding (detected None):
- JS: Jensen-Shannon *distance* in base 2 (in [0, 1]) on shared bins (edges from both windows
  together, Sturges); PSI = sum (p_ref - p_cur) ln(p_ref / p_cur), empty bins at `epsilon`.

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
    """JS and PSI of two histograms on the same (shared) bins: effect sizes (detected None; the
    thresholds are the conventional rules of thumb, for reading the score)."""
    js = js_distance(reference_counts, current_counts)
    ps = psi(reference_counts, current_counts, epsilon=epsilon)
    return [DriftResult("js", js, None, js_threshold, None),
            DriftResult("psi", ps, None, psi_threshold, None)]


def proportional_sample(slots: Sequence[tuple[int, Sequence[float]]], max_n: int,
                        rng: np.random.Generator) -> np.ndarray:
    """An unweighted sample of a window kept as per-slot reservoirs: slot i (count c_i, a uniform
    reservoir r_i) contributes about n c_i / sum c values drawn without replacement from r_i, with n
    as large as the reservoirs allow (n c_i / sum c <= len(r_i)) and at most `max_n`. Every value
    of the window then has the same chance to be in the sample, which is what KS assumes."""
    parts = [(int(c), np.asarray(v, float)) for c, v in slots if c > 0 and len(v) > 0]
    if not parts:
        return np.empty(0)
    total = sum(c for c, _ in parts)
    n = min(float(max_n), min(len(v) * total / c for c, v in parts))
    out = []
    for c, v in parts:
        k = n * c / total
        whole = int(k)
        k = whole + (1 if rng.random() < k - whole else 0)  # unbiased rounding
        k = min(k, len(v))
        if k == len(v):
            out.append(v)
        elif k > 0:
            out.append(rng.choice(v, size=k, replace=False))
    return np.concatenate(out) if out else np.empty(0)


def contingency_chi2(reference: Mapping[str, float], current: Mapping[str, float], *, alpha: float = P_THRESHOLD,
                     rng: np.random.Generator | None = None, permutations: int = 999,
                     min_expected: float = 5.0) -> DriftResult:
    """Two-sample chi-square on the 2 x K table (reference, current) x categories. With any
    expected count below `min_expected`, the p-value is a Monte Carlo permutation one: current rows
    drawn from the multivariate hypergeometric with both margins fixed ((1 + #{stat >= observed}) /
    (1 + permutations)); else the chi-square distribution's."""
    keys = sorted(set(reference) | set(current))
    ref = np.array([float(reference.get(k, 0.0)) for k in keys])
    cur = np.array([float(current.get(k, 0.0)) for k in keys])
    keep = (ref + cur) > 0
    ref, cur = ref[keep], cur[keep]
    if ref.sum() <= 0 or cur.sum() <= 0 or ref.size < 2:
        return DriftResult("chi2", None, None, alpha, None)
    col = ref + cur
    n_ref, n_cur, grand = ref.sum(), cur.sum(), col.sum()
    exp_ref, exp_cur = col * n_ref / grand, col * n_cur / grand

    def stat_of(cur_rows: np.ndarray) -> np.ndarray:
        ref_rows = col - cur_rows
        return (((ref_rows - exp_ref) ** 2 / exp_ref).sum(axis=-1)
                + ((cur_rows - exp_cur) ** 2 / exp_cur).sum(axis=-1))

    stat = float(stat_of(cur))
    if min(exp_ref.min(), exp_cur.min()) < min_expected:
        rng = rng if rng is not None else np.random.default_rng(0)
        draws = rng.multivariate_hypergeometric(col.astype(np.int64), int(round(n_cur)), size=permutations)
        p = (1.0 + float((stat_of(draws.astype(float)) >= stat - 1e-9).sum())) / (1.0 + permutations)
    else:
        p = chi2_sf(stat, ref.size - 1)
    p = clamp_p(p)
    return DriftResult("chi2", finite(stat), p, alpha, None if p is None else p < alpha)


def numeric_drift(reference: Sequence[float], current: Sequence[float], *,
                  reference_weights: Sequence[float] | None = None,
                  current_weights: Sequence[float] | None = None,
                  bins: int | str = "sturges", js_threshold: float = JS_THRESHOLD,
                  psi_threshold: float = PSI_THRESHOLD, alpha: float = P_THRESHOLD,
                  epsilon: float = PSI_EPSILON, ks_max_samples: int = KS_MAX_SAMPLES) -> list[DriftResult]:
    """JS and PSI on shared bins (effect sizes), plus KS (the decision) when both windows are
    unweighted samples; larger windows are subsampled to `ks_max_samples` each first."""
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
    if rw is None and cw is None:
        rng = np.random.default_rng(0)
        rs = r if r.size <= ks_max_samples else rng.choice(r, ks_max_samples, replace=False)
        cs = c if c.size <= ks_max_samples else rng.choice(c, ks_max_samples, replace=False)
        out.append(ks_test(rs, cs, alpha=alpha))
    return out


def categorical_drift(reference: Mapping[str, float], current: Mapping[str, float], *,
                      alpha: float = P_THRESHOLD, js_threshold: float = JS_THRESHOLD,
                      rng: np.random.Generator | None = None) -> list[DriftResult]:
    """The two-sample contingency chi-square (deciding) and JS over the union of categories
    (effect size)."""
    keys = sorted(set(reference) | set(current))
    ref = np.array([float(reference.get(k, 0.0)) for k in keys])
    cur = np.array([float(current.get(k, 0.0)) for k in keys])
    if ref.sum() <= 0 or cur.sum() <= 0:
        return []
    out = []
    if len(keys) >= 2:
        out.append(contingency_chi2(reference, current, alpha=alpha, rng=rng))
    js = js_distance(ref, cur)
    out.append(DriftResult("js", js, None, js_threshold, None))
    return out
