"""How parts of the sidecar plug into its ingest, state, HTTP API and /metrics.

The core (receiver, checks, catalog counters, experiment sufficient statistics, span index) calls
every registered plugin. Each capability is a plugin in its own package here, owning its config
defaults, state, ingest hooks, tick, metrics, routes and SQLite tables: experiments, bandits,
interleaving, drift, anomalies, review, judge (layer 2 of the evaluation cascade) and offline
(benchmark and regression-gate results). This module is the contract they are written against.

Contract for plugin authors:
- `on_call` / `on_evaluation` run on the ingest worker thread for every record: O(1), no I/O,
  never raise (the core guards and counts exceptions anyway).
- Optional, for throughput: a `summarizer` class (a `CallSummarizer`) does the per-call part of
  `on_call` where the spans are decoded (in the `ingest.workers` processes, else on the ingest
  thread) and returns one picklable summary per batch; the core then calls
  `on_call_summary(summary)` once per batch on the ingest thread instead of `on_call` per call.
  The outcome must be the same as `on_call` for each call (the bundled plugins test this).
- `flush(conn)` runs on the state thread every `state.flush_interval_seconds` inside one SQLite
  transaction shared with the core; write what a restart must find there.
- `load(conn)` runs once at start, after the core created its tables: create yours
  (`CREATE TABLE IF NOT EXISTS`) and restore state.
- `tick(now)` runs on the analysis thread every `analysis.interval_seconds`.
- `collect()` yields prometheus_client metric families from a snapshot of the plugin's state;
  every name must be in otel_llm_eval.catalog (use `ctx.family(name)` to build them).
- `router()` returns a FastAPI APIRouter (or None); the core applies bearer-token auth.
- `experiment_details(id)` returns extra JSON for `GET /v1/experiments/{id}` (merged by the core).
- `status()` returns health facts (sizes, `dropped` counters, `errors`) merged by the core into
  `GET /v1/analysis/status`.
- `config_section` (class attribute): the config section the plugin reads, when not its name. The
  statistics plugins (experiments, bandits, interleaving, drift, anomalies) share `analysis`,
  each owning its keys there (plugins/_analysis.py).

The SidecarContext the core passes to `attach` offers at least:
- `ctx.config`: the whole merged config (dict); your section is `ctx.config[plugin.name]`.
- `ctx.family(metric_name, values)`: a prometheus_client family for a catalog metric, where
  `values` is an iterable of (label dict, value) — or for histograms (label dict, bucket counts,
  sum); label values are bounded by the catalog caps.
- `ctx.bound(label, value, n=1) -> str`: fold a label value into `other` past the label's cap
  (an overflow counts `n`: the calls a summary's value stands for).
- `ctx.experiment_snapshot() -> dict[str, ExperimentSnapshot]`: a consistent copy.
- `ctx.now() -> float`: unix seconds (tests may replace the clock).
- `ctx.submit_evaluation(record: EvaluationRecord)`: count an evaluation made inside the sidecar
  (e.g. a human label) like one from OTLP, exactly once: it is journaled in the next flush
  transaction (with the caller's own tables when called from `flush`). Never blocks or raises.
- `ctx.db_path`: the SQLite file (for read-only side connections).
- `ctx.plugin(name)`: another loaded plugin (or None), e.g. the judge plugin reading the analysis
  plugin's judge sample-rate plan.
- `CONFIG_DEFAULTS` (module or class attribute): the plugin's config section with defaults; the
  config loader merges it, so docs/configuration.md (generated) and env overrides cover it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from ...semconv import ExperimentAssignment, LLMCall

if TYPE_CHECKING:  # pragma: no cover
    import sqlite3


@dataclass(frozen=True)
class CallRecord:
    """One LLM call as the sidecar saw it, after checks ran."""

    call: LLMCall
    service: str
    error: bool                                  # span status ERROR or error.type set
    end_time_unix_nano: int
    experiments: tuple[ExperimentAssignment, ...] = ()  # all active, outermost first
    failed_checks: tuple[str, ...] = ()          # names of checks that failed
    safety_checks: tuple[str, ...] = ()          # the subset whose category is safety
    cost_usd: float | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)  # raw span attributes


def call_record(call: LLMCall, service: str, error: bool, end_time_unix_nano: int,
                experiments: tuple[ExperimentAssignment, ...], failed_checks: tuple[str, ...],
                safety_checks: tuple[str, ...], cost_usd: float | None,
                attributes: Mapping[str, Any]) -> CallRecord:
    """`CallRecord(...)` with every field, built without the frozen dataclass `__init__`'s
    object.__setattr__ per field (the ingest path builds one per call): the same object."""
    record = _object_new(CallRecord)
    record.__dict__.update(call=call, service=service, error=error, end_time_unix_nano=end_time_unix_nano,
                           experiments=experiments, failed_checks=failed_checks, safety_checks=safety_checks,
                           cost_usd=cost_usd, attributes=attributes)
    return record


_object_new = object.__new__


@dataclass(frozen=True)
class EvaluationRecord:
    """One evaluation (judge, user feedback, human label, code check) joined to its call.

    service/model/experiments come from the evaluation itself or, when it lacks them, from the
    span index (trace id + span id of the evaluated call).
    """

    name: str                     # gen_ai.evaluation.name
    source: str                   # llm_judge | user | human | code | unknown
    trace_id: str | None          # of the evaluated call
    span_id: str | None           # of the evaluated call (None when only the trace is known)
    time_unix_nano: int
    score: float | None = None
    label: str | None = None
    explanation: str | None = None
    error: str | None = None      # error.type when the evaluation failed
    service: str | None = None
    model: str | None = None
    experiments: tuple[ExperimentAssignment, ...] = ()
    attributes: Mapping[str, Any] = field(default_factory=dict)
    #: user feedback's kind as the core resolved it (feedback_kinds.KINDS), None for other sources
    kind: str | None = None


@dataclass(frozen=True)
class MetricStats:
    """Sufficient statistics of one metric in one variant (enough for Welch and chi-square)."""

    n: int
    sum: float
    sum_sq: float
    binary: bool  # every value seen so far was 0 or 1 (a proportion metric)


#: Metric names the core keeps per experiment and variant from LLM calls. Evaluation and feedback
#: records add one metric per `gen_ai.evaluation.name`.
EXPOSURES = "exposures"          # n = LLM calls (SRM uses them when the spans carry no unit keys)
#: n = distinct assignment units (`llm_eval.experiment.units` keys) per variant; SRM uses it when
#: present and not capped (several calls per user make call counts overdispersed).
UNITS = "units"
CALL_METRICS = ("latency_seconds", "input_tokens", "output_tokens", "cost_usd", "error")


@dataclass(frozen=True)
class ExperimentSnapshot:
    """What the core knows of one experiment, for the statistics plugins and /v1/experiments."""

    id: str
    control: str | None                     # from the spans' weights; None until seen
    weights: dict[str, float] | None
    metrics: dict[str, dict[str, MetricStats]]   # metric -> variant -> stats
    first_seen_unix: float
    last_seen_unix: float
    #: the unit sets (metrics[UNITS]) hit a cap: they hold a uniform hash sample of 1 in
    #: 2**unit_sample_level units (SRM on that sample stays valid)
    units_capped: bool = False
    unit_sample_level: int = 0
    #: metric -> variant -> (Σ value, Σ count) per cluster (units hashed into buckets; calls with
    #: a unit key only): present when the spans carry unit keys, for per-unit analysis
    clusters: dict[str, dict[str, tuple[Any, Any]]] = field(default_factory=dict)


def section_of(plugin: Any) -> str | None:
    """The config section a plugin (instance or class) reads: its `config_section`, else its name
    (None for an object that has neither)."""
    return getattr(plugin, "config_section", None) or getattr(plugin, "name", None)


class CallSummarizer:
    """The per-call half of a plugin's `on_call`, run per batch where spans are decoded.

    Built once per ingest worker process (and once for the ingest thread) as `cls(config)`, with
    `config` the plugin's merged config section. `add(record)` gets every LLM call of a batch in
    order; `record.service` is the raw `service.name` (not yet bounded: bound it when applying)
    and `record.attributes` are all the span's attributes. `result()` returns the batch's summary
    (picklable; None when there is nothing to apply) and starts the next batch. Pure: no I/O, no
    clock, no shared state; must not raise (a raising summarizer loses its batch, counted).
    """

    def __init__(self, config: Mapping[str, Any]):
        self.config = config

    def add(self, record: CallRecord) -> None:
        pass

    def result(self) -> Any:
        return None


class SidecarPlugin:
    """Base class with no-op hooks; override what you need."""

    name = "plugin"
    #: the config section read (and that CONFIG_DEFAULTS fill); None: the plugin's name
    config_section: str | None = None
    CONFIG_DEFAULTS: dict[str, Any] = {}
    #: a CallSummarizer subclass, or None: then `on_call_summary` replaces `on_call`
    summarizer: type[CallSummarizer] | None = None

    def attach(self, ctx: Any) -> None:
        """Called once before `load`. `ctx` is the sidecar's SidecarContext."""
        self.ctx = ctx

    def load(self, conn: "sqlite3.Connection") -> None:
        pass

    def on_call(self, record: CallRecord) -> None:
        pass

    def on_call_summary(self, summary: Any) -> None:
        """Apply one batch's `summarizer.result()` (ingest thread; never called with None)."""

    def on_evaluation(self, record: EvaluationRecord) -> None:
        pass

    def flush(self, conn: "sqlite3.Connection") -> None:
        pass

    def tick(self, now: float) -> None:
        pass

    def collect(self) -> Iterable[Any]:
        return ()

    def router(self) -> Any:
        return None

    def experiment_details(self, experiment_id: str) -> Mapping[str, Any] | None:
        return None

    def status(self) -> Mapping[str, Any] | None:
        return None

    def close(self) -> None:
        pass
