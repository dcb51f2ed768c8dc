"""Paired tests for the regression gate: is the current run really worse than the baseline?

Input: per-sample differences `d_i = current_i - baseline_i`, oriented so that a positive value
is an improvement (for lower-is-better metrics the caller passes `baseline_i - current_i`).
H0: no change; H1 (one-sided): the current run is worse (E[d] < 0).

- `sign_flip_p_value`: paired permutation test. Under H0 each difference is as likely to have
  either sign, so the null distribution of the mean is built by flipping signs: exactly (all
  2^m sign patterns of the m non-zero differences) when m <= `exact_max`, else by Monte Carlo
  with the (count + 1) / (resamples + 1) estimate so a p-value is never 0.
- `bootstrap_p_value`: paired bootstrap of the mean difference; p = share of bootstrap means
  >= 0 (with the same +1 correction), plus a percentile interval for the mean difference.
- `holm`: Holm step-down adjustment across the gate's metrics.

Pure functions on numpy arrays, no I/O; deterministic for a given seed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class PairedResult:
    n: int                   # pairs compared
    mean_diff: float         # mean of d (positive = better)
    p_value: float           # one-sided, H1: worse
    ci_low: float | None     # 95% bootstrap interval of mean d (None for the permutation test)
    ci_high: float | None
    method: str


def sign_flip_p_value(d: Sequence[float], *, resamples: int = 10000, seed: int = 0,
                      exact_max: int = 16) -> PairedResult:
    arr = np.asarray(d, dtype=float)
    n = int(arr.size)
    if n == 0:
        return PairedResult(0, 0.0, 1.0, None, None, "permutation")
    observed = float(arr.mean())
    nz = arr[arr != 0.0]
    m = int(nz.size)
    if m == 0:
        return PairedResult(n, observed, 1.0, None, None, "permutation")
    # Zeros contribute nothing to any permuted sum, so only the non-zero differences are flipped.
    obs_sum = float(nz.sum())
    tol = 1e-12 * max(1.0, float(np.abs(nz).sum()))
    if m <= exact_max:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=m)))
        sums = signs @ nz
        p = float(np.mean(sums <= obs_sum + tol))
        method = "permutation (exact)"
    else:
        rng = np.random.default_rng(seed)
        count = 0
        done = 0
        chunk = 2000  # bounds memory: chunk x m signs at a time
        while done < resamples:
            k = min(chunk, resamples - done)
            signs = rng.integers(0, 2, size=(k, m), dtype=np.int8) * 2 - 1
            sums = signs @ nz
            count += int(np.sum(sums <= obs_sum + tol))
            done += k
        p = (count + 1) / (resamples + 1)
        method = f"permutation ({resamples} sign flips)"
    return PairedResult(n, observed, min(1.0, p), None, None, method)


def bootstrap_p_value(d: Sequence[float], *, resamples: int = 10000, seed: int = 0) -> PairedResult:
    arr = np.asarray(d, dtype=float)
    n = int(arr.size)
    if n == 0:
        return PairedResult(0, 0.0, 1.0, None, None, "bootstrap")
    observed = float(arr.mean())
    if np.all(arr == arr[0]):
        p = 1.0 if arr[0] >= 0 else 1.0 / (resamples + 1)
        return PairedResult(n, observed, p, observed, observed, f"bootstrap ({resamples} resamples)")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // n)  # bounds memory to ~16 MB of indices per chunk
    for start in range(0, resamples, chunk):
        k = min(chunk, resamples - start)
        idx = rng.integers(0, n, size=(k, n))
        means[start:start + k] = arr[idx].mean(axis=1)
    p = (int(np.sum(means >= 0.0)) + 1) / (resamples + 1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return PairedResult(n, observed, min(1.0, p), float(lo), float(hi), f"bootstrap ({resamples} resamples)")


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order (monotone, capped at 1)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def relative_change(baseline_mean: float, current_mean: float) -> float | None:
    """(current - baseline) / |baseline|; None when the baseline mean is 0 (undefined)."""
    if baseline_mean == 0:
        return None
    return (current_mean - baseline_mean) / abs(baseline_mean)
