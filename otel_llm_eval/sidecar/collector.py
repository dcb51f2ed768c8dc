"""prometheus_client custom collector over the sidecar's state (`GET /metrics`).

Yields one family per catalog metric that has samples: the core's series, usage gauges,
`llm_eval_ab_samples` from experiment sufficient statistics, the sidecar's own health series,
then every plugin's `collect()`. Families with the same name (core and a plugin) are merged,
first sample wins, so the exposition never repeats a metric. Runs on HTTP threads; takes
`state.lock` only to copy.
"""

from __future__ import annotations

import logging
from typing import Any, Iterator

from ..catalog import BY_NAME
from .core import Sidecar, build_family
from .plugins import UNITS

log = logging.getLogger(__name__)


def _identity(label: str, value: Any) -> str:
    return "" if value is None else str(value)


class SidecarCollector:
    def __init__(self, sidecar: Sidecar):
        self.sidecar = sidecar

    def describe(self) -> list:
        return []  # unchecked collector: families vary with the state

    def core_families(self) -> list[Any]:
        sc = self.sidecar
        st = sc.state
        by_metric: dict[str, list[Any]] = {}
        with st.lock:
            for (metric, labels), v in st.counters.items():
                by_metric.setdefault(metric, []).append((dict(zip(BY_NAME[metric].labels, labels)), v))
            for (metric, labels), (counts, total) in st.hists.items():
                by_metric.setdefault(metric, []).append((dict(zip(BY_NAME[metric].labels, labels)), list(counts), total))
            ab = []
            for e in st.experiments.values():
                for (metric, variant), s in e.stats.items():
                    ab.append(({"experiment": e.id, "metric": metric, "variant": variant}, s.n))
                for variant, units in e.units.items():
                    ab.append(({"experiment": e.id, "metric": UNITS, "variant": variant}, len(units)))
        for metric, service, window, value in st.usage_gauges(sc.clock()):
            by_metric.setdefault(metric, []).append(({"service": service, "window": window}, value))
        # experiment ids, metric names and variants come from spans: bound them like any label
        by_metric["llm_eval_ab_samples"] = [
            ({k: sc.labels.bound(k, v, None) for k, v in lbl.items()}, n) for lbl, n in ab]
        rejected = sc.rejected_snapshot()
        # spans that broke a rule inside ingest (counted, skipped), user checks and plugin
        # summarizers that raised (in a worker process or here)
        if sc.ingestor.span_errors:
            rejected["span_error"] = sc.ingestor.span_errors
        if sc.ingestor.check_errors:
            rejected["check_error"] = sc.ingestor.check_errors
        if sc.ingestor.summarizer_errors:
            rejected["summarizer_error"] = sc.ingestor.summarizer_errors
        if sc.ingestor.feedback_out_of_range:
            rejected["feedback_out_of_range"] = sc.ingestor.feedback_out_of_range
        # spans skipped for a value out of range where they were prepared (edge.py)
        for reason, n in list(sc.ingestor.rejected_values.items()):
            rejected[reason] = rejected.get(reason, 0) + n
        by_metric["llm_eval_ingest_rejected_total"] = [({"reason": r}, n) for r, n in sorted(rejected.items())]
        by_metric["llm_eval_ingest_queue_depth"] = [({}, sc.queue_depth())]
        overflow = sc.labels.overflow_snapshot()
        # other bounded sets: distinct-id sets per service, the span index size cap
        if st.usage_dropped:
            overflow["usage_ids"] = st.usage_dropped
        if st.index_evicted:
            overflow["span_index"] = st.index_evicted
        if st.experiments_dropped:
            overflow["experiments"] = st.experiments_dropped
        if st.units_dropped:
            overflow["experiment_units"] = st.units_dropped
        by_metric["llm_eval_label_overflow_total"] = [({"reason": k}, n) for k, n in sorted(overflow.items())]
        if sc.analysis_duration_seconds is not None and sc.plugins:
            by_metric["llm_eval_analysis_duration_seconds"] = [({}, sc.analysis_duration_seconds)]
        fams = []
        for metric in sorted(by_metric):
            values = by_metric[metric]
            if not values:
                continue
            values.sort(key=lambda item: tuple(sorted(item[0].items())))
            fams.append(build_family(metric, values, _identity))
        return fams

    def collect(self) -> Iterator[Any]:
        merged: dict[str, Any] = {}
        seen: dict[str, set] = {}
        sources: list[Any] = [self.core_families()]
        for p in self.sidecar.plugins:
            try:
                sources.append(list(p.collect() or ()))
            except Exception:
                log.exception("plugin %s failed in collect (its metrics are missing from this scrape)", p.name)
        for fams in sources:
            for fam in fams:
                target = merged.get(fam.name)
                if target is None:
                    merged[fam.name] = fam
                    seen[fam.name] = {(s.name, tuple(sorted(s.labels.items()))) for s in fam.samples}
                    continue
                keys = seen[fam.name]
                for s in fam.samples:
                    k = (s.name, tuple(sorted(s.labels.items())))
                    if k not in keys:
                        keys.add(k)
                        target.samples.append(s)
        yield from merged.values()
