"""Review's /metrics families: queue depth, human labels, the human quality histogram and
judge–human agreement.

`LabelCounters` holds the two label counters (labels per service and issue, the quality
histogram) and their persisted form; it does no locking (the plugin guards it with its lock).
`families` turns a `MetricsSnapshot` taken under that lock into metric families (pure).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple

from .analysis import LabelFacts, agreement


def _buckets() -> tuple[float, ...]:
    from ....catalog import HUMAN_SCORE_BUCKETS

    return HUMAN_SCORE_BUCKETS


def bucket_index(value: float) -> int:
    """Index of the first bucket whose upper bound holds `value`; len(buckets) means +Inf."""
    for i, bound in enumerate(_buckets()):
        if value <= bound:
            return i
    return len(_buckets())


class LabelCounters:
    """llm_human_labels_total and llm_human_quality_score as counts (not thread-safe)."""

    def __init__(self) -> None:
        self.labels_total: dict[tuple[str, str], int] = {}                # (service, issue) -> n
        self.quality_hist: dict[tuple[str, str, str], list[float]] = {}   # counts per bucket + sum

    def count(self, service: str, model: str, variant: str, quality: int, issues: Iterable[str]) -> None:
        """One label: once per issue ("none" when it has no issue), and its quality."""
        for issue in list(issues) or ["none"]:
            k = (service, issue)
            self.labels_total[k] = self.labels_total.get(k, 0) + 1
        hist = self.quality_hist.setdefault((service, model, variant), [0.0] * (len(_buckets()) + 2))
        hist[bucket_index(quality)] += 1  # per-bucket count; last slot is the sum
        hist[-1] += quality

    def state(self) -> dict[str, Any]:
        """The persisted form (JSON): the `labels_total` and `quality` entries of review's counters."""
        return {"labels_total": [[s, i, n] for (s, i), n in self.labels_total.items()],
                "quality": [[s, m, v, h] for (s, m, v), h in self.quality_hist.items()]}

    def restore(self, counters: Mapping[str, Any]) -> None:
        """Read back what `state` wrote (other keys of `counters` are ignored)."""
        for entry in counters.get("labels_total", []):
            self.labels_total[(entry[0], entry[1])] = int(entry[2])
        for entry in counters.get("quality", []):
            self.quality_hist[(entry[0], entry[1], entry[2])] = [float(x) for x in entry[3]]


class MetricsSnapshot(NamedTuple):
    """What /metrics shows, copied under the plugin's lock."""

    depth: dict[str, int]                                # pending items per service
    labels_total: dict[tuple[str, str], int]
    quality_hist: dict[tuple[str, str, str], list[float]]
    facts: list[LabelFacts]                              # labeled items (for agreement)


def snapshot(pending: Iterable[Mapping[str, Any]], counters: LabelCounters,
             facts: Iterable[LabelFacts]) -> MetricsSnapshot:
    depth: dict[str, int] = {}
    for item in pending:
        s = item.get("service") or "unknown"
        depth[s] = depth.get(s, 0) + 1
    return MetricsSnapshot(depth, dict(counters.labels_total),
                           {k: list(v) for k, v in counters.quality_hist.items()}, list(facts))


def families(family: Callable[..., Any], snap: MetricsSnapshot, pass_quality: int,
             judge_pass_score: float) -> Iterator[Any]:
    """The four families, built with the core's `family(name, values)` (ctx.family)."""
    depth = dict(snap.depth)
    for s in {f.service for f in snap.facts} | {k[0] for k in snap.labels_total}:
        depth.setdefault(s, 0)  # a service with labels but an empty queue shows 0, not nothing
    yield family("llm_review_queue_depth", [({"service": s}, n) for s, n in sorted(depth.items())])
    yield family("llm_human_labels_total",
                 [({"service": s, "issue": i}, n) for (s, i), n in sorted(snap.labels_total.items())])
    yield family("llm_human_quality_score",
                 [({"service": s, "model": m, "variant": v}, h[:-1], h[-1])
                  for (s, m, v), h in sorted(snap.quality_hist.items())])
    values = []
    by_service: dict[str, list[LabelFacts]] = {}
    for f in snap.facts:
        by_service.setdefault(f.service, []).append(f)
    for s, group in sorted(by_service.items()):
        agr = agreement(group, pass_quality, judge_pass_score)
        for method in ("kappa", "spearman"):
            if agr[method] is not None:
                values.append(({"service": s, "method": method}, agr[method]))
    yield family("llm_eval_judge_human_agreement", values)


__all__ = ["LabelCounters", "MetricsSnapshot", "bucket_index", "families", "snapshot"]
