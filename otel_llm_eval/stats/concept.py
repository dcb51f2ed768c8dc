"""Concept drift: the relationship between inputs and quality changed.

Input drift says the traffic changed; output drift says the answers changed. Concept drift asks
whether the *same kind of input* now gets a different quality: per input segment (a declared
attribute such as a topic, or input-length quantile bins taken from the reference window), the
quality signal (a judge score, a thumbs or outcome rate) of the current window is compared with the
reference window's for that segment. A change in the mix of segments moves the overall average but
no segment's own comparison, so a flagged segment is a change the mix does not explain.

Each segment: Welch's t on the two windows' values (a proportion test for 0/1 signals in effect),
Bonferroni over the segments tested, so the service's false-alarm rate stays at `alpha` however
many segments there are. Also reported: how much of the overall change the mix explains
(expected current mean = the reference's per-segment means weighted by the current mix). Pure
functions; every segment result has the detectors' shape (score, p_value, threshold, detected).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from .ab import Summary, welch
from ._util import finite


@dataclass(frozen=True)
class SegmentResult:
    """score: the change of the segment's mean (current - reference); p_value: Bonferroni-adjusted
    over the segments tested; detected: p_value < threshold."""

    segment: str
    n_reference: int
    n_current: int
    mean_reference: float | None
    mean_current: float | None
    score: float | None
    p_value: float | None
    threshold: float
    detected: bool | None


@dataclass(frozen=True)
class MixSummary:
    """Overall means and the part of their change the segment mix explains."""

    mean_reference: float | None
    mean_current: float | None
    explained_by_mix: float | None     # expected current mean (reference per-segment means, current mix) - reference mean
    unexplained: float | None          # current mean - expected current mean


def _summaries(pairs: Iterable[tuple[str, float]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for seg, v in pairs:
        s = out.get(seg)
        if s is None:
            s = out[seg] = [0.0, 0.0, 0.0]
        s[0] += 1
        s[1] += v
        s[2] += v * v
    return out


def concept_drift(reference: Sequence[tuple[str, float]], current: Sequence[tuple[str, float]], *,
                  alpha: float = 0.05, min_samples: int = 20) -> tuple[list[SegmentResult], MixSummary]:
    """Per segment, reference vs current values of the quality signal (see the module docstring)."""
    ref, cur = _summaries(reference), _summaries(current)
    rows = []
    for seg in sorted(set(ref) | set(cur)):
        r, c = ref.get(seg, [0.0, 0.0, 0.0]), cur.get(seg, [0.0, 0.0, 0.0])
        sr, sc = Summary(int(r[0]), r[1], r[2]), Summary(int(c[0]), c[1], c[2])
        p = None
        if sr.n >= min_samples and sc.n >= min_samples:
            p = welch(sr, sc).p_value
            if p is None and sr.mean != sc.mean:  # both windows constant and different: certain
                p = 0.0
            elif p is None:
                p = 1.0
        rows.append((seg, sr, sc, p))
    tested = sum(1 for *_, p in rows if p is not None)
    out = []
    for seg, sr, sc, p in rows:
        adj = min(1.0, p * tested) if p is not None else None
        shift = sc.mean - sr.mean if sr.mean is not None and sc.mean is not None else None
        out.append(SegmentResult(seg, sr.n, sc.n, finite(sr.mean), finite(sc.mean), finite(shift), adj, alpha,
                                 None if adj is None else adj < alpha))
    n_ref = sum(s[0] for s in ref.values())
    n_cur = sum(s[0] for s in cur.values())
    mean_ref = sum(s[1] for s in ref.values()) / n_ref if n_ref else None
    mean_cur = sum(s[1] for s in cur.values()) / n_cur if n_cur else None
    explained = unexplained = None
    covered = {seg: c for seg, c in cur.items() if seg in ref and ref[seg][0] > 0}
    n_cov = sum(c[0] for c in covered.values())
    if mean_ref is not None and mean_cur is not None and n_cov:
        expected = sum(c[0] / n_cov * (ref[seg][1] / ref[seg][0]) for seg, c in covered.items())
        explained, unexplained = expected - mean_ref, mean_cur - expected
    return out, MixSummary(finite(mean_ref), finite(mean_cur), finite(explained), finite(unexplained))


def quantile_edges(values: Sequence[float], bins: int) -> list[float]:
    """Inner edges of `bins` quantile bins of `values` (sorted, deduplicated): the reference window's
    input-length quartiles, fixed for comparing both windows."""
    xs = sorted(values)
    if not xs or bins < 2:
        return []
    edges = []
    for k in range(1, bins):
        e = xs[min(len(xs) - 1, int(k * len(xs) / bins))]
        if not edges or e > edges[-1]:
            edges.append(e)
    return edges


def bin_label(x: float, edges: Sequence[float]) -> str:
    """'q1'..'qN': the quantile bin of x (x < edges[0] is q1)."""
    i = 0
    while i < len(edges) and x >= edges[i]:
        i += 1
    return f"q{i + 1}"
