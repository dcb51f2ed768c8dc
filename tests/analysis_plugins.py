"""The five statistics plugins driven together, for tests that feed one stream of records to all of
them the way the core does (each hook called on every plugin; `ctx.plugin(name)` finds siblings)."""

from __future__ import annotations

import itertools
from typing import Any

from otel_llm_eval.sidecar.api import merged_status
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
