"""Feedback analysis over human labels: failure rate with a confidence interval, top issues,
issue rates per variant and model, and judge-human agreement (Cohen's kappa, Spearman's rho).

Pure functions over plain values: no I/O, no numpy/scipy, never raise on well-typed input.
Undefined statistics (empty input, zero variance, chance agreement of 1) are returned as None,
never NaN or Inf, so callers can omit them from JSON and /metrics.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

#: z for a two-sided 95% interval.
Z_95 = 1.959963984540054


@dataclass(frozen=True)
class LabelFacts:
    """What the analysis needs of one labeled review item (no text, so it stays small in memory)."""

    item_id: str
    service: str
    model: str
    variant: str
    reason: str                 # why it was sampled: error | low_score | low_confidence | random
    quality: int                # 1..5
    issues: tuple[str, ...]
    judge_score: float | None
    labeled_unix: float


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """Wilson score interval for a proportion; None when n == 0.

    Chosen over the normal (Wald) interval because review samples are small and failure rates
    are often near 0 or 1, where Wald collapses to a zero-width or out-of-range interval.
    """
    if n <= 0:
        return None
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def failure_rate(labels: Sequence[LabelFacts], pass_quality: int) -> dict | None:
    """Share of labels with quality below `pass_quality`, with a 95% Wilson interval.

    None when there are no labels.
    """
    n = len(labels)
    if n == 0:
        return None
    failures = sum(1 for lab in labels if lab.quality < pass_quality)
    lo, hi = wilson_interval(failures, n)  # type: ignore[misc]
    return {"n": n, "failures": failures, "rate": failures / n, "ci_lower": lo, "ci_upper": hi}


def top_issues(labels: Sequence[LabelFacts], k: int = 10) -> list[dict]:
    """The k most frequent issues: [{issue, count, share}], share of labeled items having it.

    Ties break by issue name so the output is stable.
    """
    n = len(labels)
    if n == 0:
        return []
    counts: Counter[str] = Counter()
    for lab in labels:
        counts.update(set(lab.issues))
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    return [{"issue": issue, "count": c, "share": c / n} for issue, c in ordered]


def rates_by(labels: Sequence[LabelFacts], key: str, pass_quality: int) -> dict[str, dict]:
    """Per value of `key` ("variant", "model", "service"): n, failure rate with CI, mean quality
    and the rate of each issue among that group's labels."""
    groups: dict[str, list[LabelFacts]] = {}
    for lab in labels:
        groups.setdefault(getattr(lab, key) or "unknown", []).append(lab)
    out: dict[str, dict] = {}
    for value, group in sorted(groups.items()):
        n = len(group)
        counts: Counter[str] = Counter()
        for lab in group:
            counts.update(set(lab.issues))
        out[value] = {
            "n": n,
            "mean_quality": sum(lab.quality for lab in group) / n,
            "failure_rate": failure_rate(group, pass_quality),
            "issue_rates": {issue: c / n for issue, c in sorted(counts.items())},
        }
    return out


def cohen_kappa(a: Sequence[object], b: Sequence[object]) -> float | None:
    """Cohen's kappa between two raters' categorical labels (same length).

    kappa = (p_o - p_e) / (1 - p_e). None when fewer than 2 pairs or p_e == 1 (both raters used
    one and the same category only: agreement is undefined, not perfect).
    """
    n = len(a)
    if n != len(b) or n < 2:
        return None
    observed = sum(1 for x, y in zip(a, b) if x == y) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[c] * cb.get(c, 0) for c in ca) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks with ties given the average of the ranks they span (as scipy's rankdata)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        avg = (i + j) / 2.0 + 1.0
        for t in range(i, j + 1):
            ranks[order[t]] = avg
        i = j + 1
    return ranks


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson correlation; None for fewer than 2 pairs or a constant input."""
    n = len(x)
    if n != len(y) or n < 2:
        return None
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx <= 0 or syy <= 0:
        return None
    r = sxy / math.sqrt(sxx * syy)
    return max(-1.0, min(1.0, r))


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho: Pearson correlation of average ranks (handles ties like scipy.spearmanr).

    None for fewer than 2 pairs or when either side is constant.
    """
    if len(x) != len(y) or len(x) < 2:
        return None
    return pearson(average_ranks(x), average_ranks(y))


def agreement(
    labels: Iterable[LabelFacts], pass_quality: int, judge_pass_score: float
) -> dict:
    """Judge-human agreement over labels that carry a judge score.

    kappa is on pass/fail (human: quality >= pass_quality; judge: score >= judge_pass_score);
    spearman is on the raw scores. Undefined values are None.
    """
    pairs = [(lab.quality, lab.judge_score) for lab in labels if lab.judge_score is not None]
    human_pass = [q >= pass_quality for q, _ in pairs]
    judge_pass = [s >= judge_pass_score for _, s in pairs]  # type: ignore[operator]
    return {
        "n": len(pairs),
        "kappa": cohen_kappa(human_pass, judge_pass),
        "spearman": spearman([float(q) for q, _ in pairs], [float(s) for _, s in pairs]),  # type: ignore[arg-type]
    }


def summarize(labels: Sequence[LabelFacts], pass_quality: int, judge_pass_score: float,
              top_k: int = 10) -> dict:
    """Everything `GET /v1/review/summary` reports about labels.

    `failure_rate` uses only randomly sampled items: triggered items (errors, low judge scores)
    are chosen because they look bad, so including them would overstate the failure rate.
    `failure_rate_all_labeled` is over every label, for a reviewer's view of the queue.
    """
    random_only = [lab for lab in labels if lab.reason == "random"]
    return {
        "labeled": len(labels),
        "failure_rate": failure_rate(random_only, pass_quality),
        "failure_rate_all_labeled": failure_rate(labels, pass_quality),
        "mean_quality": (sum(lab.quality for lab in labels) / len(labels)) if labels else None,
        "top_issues": top_issues(labels, top_k),
        "by_variant": rates_by(labels, "variant", pass_quality),
        "by_model": rates_by(labels, "model", pass_quality),
        "by_reason": {r: len([lab for lab in labels if lab.reason == r])
                      for r in sorted({lab.reason for lab in labels})},
        "agreement": agreement(labels, pass_quality, judge_pass_score),
    }
