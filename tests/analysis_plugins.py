"""The five statistics plugins driven together, for tests that feed one stream of records to all of
them the way the core does (each hook called on every plugin; `ctx.plugin(name)` finds siblings),
and the records, snapshots and scrape helpers those tests share."""

from __future__ import annotations

import itertools
import math
import sqlite3
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from otel_llm_eval import semconv
from otel_llm_eval.catalog import BY_NAME
from otel_llm_eval.semconv import ExperimentAssignment, LLMCall

from otel_llm_eval.sidecar.api import merged_status
from otel_llm_eval.sidecar.plugins import CallRecord, EvaluationRecord, ExperimentSnapshot, MetricStats
from otel_llm_eval.sidecar.plugins.anomalies import AnomaliesPlugin
from otel_llm_eval.sidecar.plugins.bandits import BanditsPlugin
from otel_llm_eval.sidecar.plugins.drift import DriftPlugin
from otel_llm_eval.sidecar.plugins.experiments import ExperimentsPlugin
from otel_llm_eval.sidecar.plugins.interleaving import InterleavingPlugin


def analysis_plugins() -> list[Any]:
    """Fresh instances, in the order of the default plugin list."""
    return [ExperimentsPlugin(), BanditsPlugin(), InterleavingPlugin(), DriftPlugin(), AnomaliesPlugin()]


class AnalysisPlugins:
    def __init__(self) -> None:
        self.plugins = analysis_plugins()
        self.by_name = {p.name: p for p in self.plugins}
        self.experiments, self.bandits, self.interleaving, self.drift, self.anomalies = self.plugins

    def attach(self, ctx: Any) -> None:
        if not callable(getattr(type(ctx), "plugin", None)):
            ctx.plugin = self.by_name.get  # the core's ctx.plugin(name)
        for p in self.plugins:
            p.attach(ctx)

    def __getattr__(self, hook: str) -> Any:
        if hook in ("load", "flush", "on_call", "on_evaluation", "tick", "close"):
            return lambda *args: [getattr(p, hook)(*args) for p in self.plugins] and None
        raise AttributeError(hook)

    def learn_feedback(self, name: str) -> None:
        """As if a feedback evaluation `name` had arrived (for the plugins that track the names)."""
        for p in (self.experiments, self.bandits):
            p.names.feedback.add(name)

    def collect(self) -> Any:
        return itertools.chain.from_iterable(p.collect() for p in self.plugins)

    def experiment_details(self, experiment_id: str) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        for p in self.plugins:
            out.update(p.experiment_details(experiment_id) or {})
        return out or None

    def status(self) -> dict[str, Any]:
        return merged_status(self.plugins)

    def router(self) -> Any:
        from fastapi import APIRouter

        r = APIRouter()
        for p in self.plugins:
            r.include_router(p.router())

        @r.get("/v1/analysis/status")
        def status() -> dict[str, Any]:
            return self.status()
        return r

    @property
    def results(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for p in self.plugins:
            out.update(p.results)
        return out

    @property
    def dropped(self) -> dict[str, int]:
        return self.status()["dropped"]

    @property
    def errors(self) -> int:
        return sum(p.errors for p in self.plugins)


T0 = 1_800_000_000.0


class Ctx:
    """The slice of the core's SidecarContext the plugin uses: config, clock, snapshot, families."""

    def __init__(self, config=None):
        self.config = {"analysis": config or {}}
        self.t = T0
        self.snapshot: dict[str, ExperimentSnapshot] = {}

    def now(self):
        return self.t

    def experiment_snapshot(self):
        return dict(self.snapshot)

    def family(self, name, values):
        m = BY_NAME[name]
        assert m.type == "gauge", name
        fam = GaugeMetricFamily(m.name, m.help, labels=list(m.labels))
        for labels, value in values:
            assert set(labels) == set(m.labels), (name, labels)
            assert math.isfinite(value), (name, labels, value)
            fam.add_metric([labels[k] for k in m.labels], value)
        return fam


def make(tmp_path, config=None, ctx=None):
    ctx = ctx or Ctx(config)
    plugin = AnalysisPlugins()
    plugin.attach(ctx)
    conn = sqlite3.connect(str(tmp_path / "state.db"))
    plugin.load(conn)
    return plugin, conn, ctx


def samples(plugin) -> dict[tuple[str, tuple], float]:
    class C:
        def collect(self):
            return plugin.collect()
    reg = CollectorRegistry()
    reg.register(C())
    text = generate_latest(reg).decode()
    assert "NaN" not in text and "Inf" not in text
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def get(samples_, name, **labels):
    return samples_.get((name, tuple(sorted(labels.items()))))


def ms(values, binary=None):
    a = np.asarray(values, float)
    if binary is None:
        binary = bool(np.all((a == 0) | (a == 1)))
    return MetricStats(int(a.size), float(a.sum()), float((a * a).sum()), binary)


def bern(n, k):
    return MetricStats(n, float(k), float(k), True)


def snap(exp_id="exp", weights=None, metrics=None, first=T0 - 3600, last=T0):
    weights = weights or {"control": 0.5, "treatment": 0.5}
    return ExperimentSnapshot(exp_id, next(iter(weights)), weights, metrics or {}, first, last)


def call(i, *, variant="control", session=None, user=None, t=T0, latency=1.0, service="shop", exp="exp",
         prompt="hello", finish="stop", error=False):
    c = LLMCall(model="m", prompt=prompt, completion="answer", trace_id=f"{i + 1:032x}", span_id=f"{i + 1:016x}",
                session_id=session, user_id=user, latency_seconds=latency, input_tokens=len(prompt),
                output_tokens=5, finish_reason=finish, experiment=exp, variant=variant)
    return CallRecord(call=c, service=service, error=error, end_time_unix_nano=int(t * 1e9),
                      experiments=(ExperimentAssignment(exp, variant),))


def comparison(winner, loser, first, tie=False, cid="pair"):
    return EvaluationRecord(name=semconv.INTERLEAVING_EVALUATION, source="user", trace_id=None, span_id=None,
                            time_unix_nano=int(T0 * 1e9), label="tie" if tie else winner, attributes={
                                semconv.INTERLEAVING_ID: cid, semconv.INTERLEAVING_WINNER: winner,
                                semconv.INTERLEAVING_LOSER: loser, semconv.INTERLEAVING_FIRST_SHOWN: first,
                                semconv.INTERLEAVING_TIE: tie})
