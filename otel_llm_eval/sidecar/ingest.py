"""Ingest: turn decoded OTLP batches into catalog series, experiment statistics and plugin calls.

Two stages, so the expensive per-span work can run in worker processes (`ingest.workers`):

`Preparer.prepare_traces(req)` / `prepare_logs(req)` (pure, no shared state; in a worker process
or on the ingest thread) walk a validated message and return `(signal, items, delta, ops, errors)`:
- `delta` sums the batch's LLM calls (`semconv.normalize` returned an LLMCall) per raw label
  set: request, token, cost and check counters, latency histogram buckets, experiment sufficient
  statistics (`state.summarize_rows`), unit keys, user/session id hashes, request slots, and the
  span index chunk. Its size grows with the batch's distinct label sets, not with its spans, so
  what a worker sends back and what the ingest thread applies is small;
- `ops`: ("call", ...) per LLM call only when a plugin overrides `on_call`; ("eval",
  EvaluationRecord, dedup) per evaluation span (`gen_ai.evaluation.name` set), span event or log
  record; ("judge", ...) per processor judge stats span (`semconv.JUDGE_STATS_SPAN`).

`Ingestor.apply(prepared)` (the ingest thread only, caller holds `state.lock`) bounds label
values (an overflow is counted once per call, as if each call were bounded on its own), merges
the delta into the state, then runs the ops: evaluations join their call through the span index
(the batch's calls are indexed first, since children end and are exported before their parent)
and plugins are called. The same id-less evaluation seen twice (OpenLIT sends a span event AND a
log record) counts once. Never raises on data: a span that breaks a rule is skipped and counted.
"""

from __future__ import annotations

import logging
import math
import time
from array import array
from bisect import bisect_left
from collections import OrderedDict
from typing import Any, Iterable, Mapping

from .. import semconv
from ..catalog import BY_NAME
from ..semconv import ExperimentAssignment, LLMCall, parse_experiments
from .checks import CheckRunner
from .labels import LabelBounder
from .otlp import LogView, SpanView, attributes as kv_attributes, resource_service, walk_logs
from .plugins import CallRecord, EvaluationRecord, SidecarPlugin, call_record
from .prices import PriceTable
from .state import IndexEntry, State, id_hash, summarize_rows

log = logging.getLogger(__name__)

USER_KEYS = ("user.id", "enduser.id", "langfuse.user.id", "traceloop.association.properties.user_id",
             "gen_ai.user", "llm.user", "gen_ai.request.user")
SESSION_KEYS = ("gen_ai.conversation.id", "session.id", "langfuse.session.id",
                "traceloop.association.properties.session_id")

#: With worker processes, longer string attributes are not sent back with a call (see Preparer).
SHORT_ATTRIBUTE_CHARS = 256

#: (signal, items seen, delta or None, operations, spans that raised while preparing)
Prepared = tuple

LATENCY_BUCKETS = tuple(BY_NAME["llm_response_latency_seconds"].buckets or ())
REQUEST_SLOT_SECONDS = 60

# per raw label set (service, model, experiment, variant): one list of running sums
_OK, _ERR, _IN, _OUT, _COST_N, _COST, _LAT_N, _LAT_SUM, _LAT_COUNTS = range(9)


def _first_str(attrs: Mapping[str, Any], keys: Iterable[str]) -> str | None:
    for k in keys:
        v = attrs.get(k)
        if v not in (None, ""):
            return str(v)
    return None


def _score(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def feedback_type(ev: EvaluationRecord) -> str:
    """label when given; else the sign of the score (positive|negative|neutral); else the name."""
    if ev.label:
        return ev.label
    if ev.score is not None:
        return "positive" if ev.score > 0 else "negative" if ev.score < 0 else "neutral"
    return ev.name


def _is_pairwise(ev: EvaluationRecord) -> bool:
    """A pairwise/interleaving record (`processor.interleaving`): a choice between two arms, not a
    thumbs rating, so it stays out of `llm_user_feedback_total` (the analysis plugin's interleaving
    statistics count it)."""
    return ev.name == semconv.INTERLEAVING_EVALUATION or semconv.INTERLEAVING_ID in (ev.attributes or {})


def evaluation_from_attrs(attrs: Mapping[str, Any], trace_id: str | None, span_id: str | None,
                          t: int, service: str) -> EvaluationRecord | None:
    name = attrs.get(semconv.EVALUATION_NAME)
    if not isinstance(name, str) or not name:
        return None
    label = attrs.get(semconv.EVALUATION_SCORE_LABEL)
    error = attrs.get("error.type")
    return EvaluationRecord(
        name=name, source=str(attrs.get(semconv.EVALUATION_SOURCE) or "unknown"),
        trace_id=trace_id, span_id=span_id, time_unix_nano=int(t or 0),
        score=_score(attrs.get(semconv.EVALUATION_SCORE_VALUE)),
        label=str(label) if label not in (None, "") else None,
        explanation=attrs.get(semconv.EVALUATION_EXPLANATION),
        error=str(error) if error not in (None, "") else None,
        service=service, experiments=tuple(parse_experiments(attrs)), attributes=attrs,
    )


class _Batch:
    """A batch's LLM calls summed per raw label set (see the module docstring). Worker side."""

    __slots__ = ("calls", "checks", "exps", "units", "usage", "requests", "keys", "entries", "entry_ix",
                 "entry_of", "t_max")

    def __init__(self) -> None:
        self.calls: dict[tuple, list] = {}
        self.checks: dict[tuple, int] = {}          # (service, model, check, safety?) -> failures
        self.exps: dict[tuple, list] = {}           # (experiment, variant) -> [assignment, row, ...]
        self.units: dict[tuple, dict] = {}          # (experiment, variant) -> {unit key: calls}
        self.usage: dict[tuple, dict] = {}          # (service, kind) -> {id hash: last seen}
        self.requests: dict[tuple, int] = {}        # (service, minute slot) -> calls
        self.keys: list[str] = []                   # span index: trace id hex + span id hex per call
        self.entries: list[tuple] = []              # distinct (service, model, experiments)
        self.entry_ix: dict[tuple, int] = {}
        self.entry_of = array("I")
        self.t_max = 0.0

    def finish(self) -> tuple | None:
        if not self.calls and not self.keys:
            return None
        exps = {k: (rows[0], rows[1][0], max(r[0] for r in rows[1:]), len(rows) - 1, summarize_rows(rows[1:]))
                for k, rows in self.exps.items()}
        index = (self.keys, self.entries, self.entry_of.tobytes(), self.t_max) if self.keys else None
        return (self.calls, self.checks, exps, self.units, self.usage, self.requests, index)


def summarizer_specs(plugins: Iterable[Any], cfg: Mapping[str, Any]) -> list[tuple[str, type, Any]]:
    """(name, CallSummarizer class, config section) of every plugin with a summarizer: what a
    Preparer (here or in a worker process) builds its summarizers from."""
    return [(p.name, type(p).summarizer, dict(cfg.get(p.name) or {})) for p in plugins
            if getattr(type(p), "summarizer", None) is not None]


class Preparer:
    """The per-span work that needs no shared state. Not thread-safe (one per thread/process)."""

    def __init__(self, checks: CheckRunner, prices: PriceTable, default_service: str,
                 attributes: str = "all", clock=time.time,
                 summarizers: list[tuple[str, Any]] | None = None):
        """attributes: what CallRecord.attributes carries — "all" (in-thread), "short" (worker
        processes with plugins: string values over SHORT_ATTRIBUTE_CHARS are left out, the texts
        are in call.prompt/call.completion) or "none" (no plugin takes calls: no ("call", ...)
        ops at all, only the batch delta). summarizers: (plugin name, CallSummarizer) pairs; each
        gets every call's CallRecord and its result() ends up in the prepared batch."""
        self.checks = checks
        self.summarizers = list(summarizers or ())
        self.summarizer_errors = 0
        self.prices = prices
        self.default_service = default_service
        self.attributes = attributes
        self.clock = clock
        self._exp_cache: dict[tuple, tuple[ExperimentAssignment, ...]] = {}
        self._hash_cache: dict[str, int] = {}
        self.span_errors = 0

    def prepare_traces(self, req: Any) -> Prepared:
        ops: list[tuple] = []
        deferred: list[SpanView] = []
        batch = _Batch()
        n = errors = 0
        one_span = self._span
        evaluation = semconv.EVALUATION_NAME
        for rs in req.resource_spans:  # walk_spans, inlined: this loop runs once per span
            service = resource_service(rs.resource, self.default_service)
            for ss in rs.scope_spans:
                for span in ss.spans:
                    n += 1
                    try:
                        sv = SpanView(span, service)
                        if evaluation in sv.attributes:
                            deferred.append(sv)  # join after the batch's calls (children end first)
                            continue
                        one_span(sv, ops, batch)
                    except Exception:  # one odd span must not lose the rest of the batch
                        errors += 1
                        self._log_error("span %s/%s could not be ingested", span.trace_id.hex(), span.span_id.hex())
        for sv in deferred:
            errors += self._guarded(sv, ops, batch)
        return ("traces", n, batch.finish(), ops, errors, self._summaries())

    def _summaries(self) -> dict[str, Any] | None:
        if not self.summarizers:
            return None
        out = {}
        for name, summarizer in self.summarizers:
            try:
                summary = summarizer.result()
            except Exception:
                self.summarizer_errors += 1
                self._log_error("plugin %s: its summarizer failed (batch summary lost)", name)
                continue
            if summary is not None:
                out[name] = summary
        return out

    def prepare_logs(self, req: Any) -> Prepared:
        ops: list[tuple] = []
        n = errors = 0
        for lv in walk_logs(req, self.default_service):
            n += 1
            try:
                self._log(lv, ops)
            except Exception:
                errors += 1
                self._log_error("log record of %s could not be ingested", lv.trace_id)
        return ("logs", n, None, ops, errors, None)

    def _log_error(self, msg: str, *args: Any) -> None:
        self.span_errors += 1
        if self.span_errors <= 3:
            log.exception(msg, *args)

    def _guarded(self, sv: SpanView, ops: list, batch: _Batch) -> int:
        try:
            self._span(sv, ops, batch)
            return 0
        except Exception:  # one odd span must not lose the rest of the batch
            self._log_error("span %s/%s could not be ingested", sv.trace_id, sv.span_id)
            return 1

    def _span(self, sv: SpanView, ops: list, batch: _Batch) -> None:
        attrs = sv.attributes
        if semconv.EVALUATION_NAME in attrs:
            ev = evaluation_from_attrs(attrs, sv.trace_id, sv.parent_span_id, sv.end, sv.service)
            if ev is not None:
                ops.append(("eval", ev, False))
            return
        if sv.name == semconv.JUDGE_STATS_SPAN:
            a = attrs
            ops.append(("judge", sv.service, a.get(semconv.JUDGE_EVALUATOR) or "judge",
                        _score(a.get(semconv.JUDGE_DROPPED)), _score(a.get(semconv.JUDGE_SKIPPED_RATE)),
                        _score(a.get(semconv.JUDGE_SKIPPED_COST))))
            return
        # raw id bytes: normalize turns them into hex without re-validating a hex string
        call = semconv.normalize(attrs, name=sv.name, trace_id=sv.raw_trace_id, span_id=sv.raw_span_id,
                                 start_time_unix_nano=sv.start, end_time_unix_nano=sv.end)
        if call is not None:
            self._add_call(sv, call, batch, ops)
        for name, ev_kvs, t in sv.events:
            if name == semconv.EVALUATION_EVENT:
                ev = evaluation_from_attrs(kv_attributes(ev_kvs), sv.trace_id, sv.span_id, t or sv.end, sv.service)
                if ev is not None:
                    ops.append(("eval", ev, True))

    def _log(self, lv: LogView, ops: list) -> None:
        attrs = lv.attributes
        if semconv.EVALUATION_NAME not in attrs and isinstance(lv.body, dict) \
                and semconv.EVALUATION_NAME in lv.body:
            attrs = {**lv.body, **attrs}  # some emitters put the evaluation in the body
        if semconv.EVALUATION_NAME not in attrs:
            return
        ev = evaluation_from_attrs(attrs, lv.trace_id, lv.span_id, lv.time, lv.service)
        if ev is not None:
            ops.append(("eval", ev, True))

    def _add_call(self, sv: SpanView, call: LLMCall, batch: _Batch, ops: list) -> None:
        attrs = sv.attributes
        error = sv.error
        service = sv.service
        model = call.model
        latency = call.latency_seconds
        if latency is None and sv.end and sv.start and sv.end >= sv.start:
            latency = (sv.end - sv.start) / 1e9
        cost = self.prices.cost_usd(model, call.input_tokens, call.output_tokens, attrs)
        failed, safety = self.checks.run(call, attrs, error)
        exps = self._experiments(attrs)
        t = (sv.end or sv.start) / 1e9 or self.clock()
        inner = exps[-1] if exps else None
        base = (service, model or "", inner.id if inner else "", inner.variant if inner else "")
        acc = batch.calls.get(base)
        if acc is None:
            acc = batch.calls[base] = [0, 0, 0, 0, 0, 0.0, 0, 0.0, None]
        acc[_ERR if error else _OK] += 1
        if latency is not None and latency >= 0:
            counts = acc[_LAT_COUNTS]
            if counts is None:
                counts = acc[_LAT_COUNTS] = [0] * (len(LATENCY_BUCKETS) + 1)
            # first bucket with value <= bound (Prometheus `le`); NaN goes to +Inf
            counts[bisect_left(LATENCY_BUCKETS, latency) if latency == latency else len(LATENCY_BUCKETS)] += 1
            acc[_LAT_N] += 1
            acc[_LAT_SUM] += latency
        input_tokens, output_tokens = call.input_tokens, call.output_tokens
        if input_tokens:
            acc[_IN] += input_tokens
        if output_tokens:
            acc[_OUT] += output_tokens
        if cost is not None:
            acc[_COST_N] += 1
            acc[_COST] += cost
        if failed or safety:
            checks = batch.checks
            for names, is_safety in ((failed, False), (safety, True)):
                for name in names:
                    key = (service, base[1], name, is_safety)
                    checks[key] = checks.get(key, 0) + 1
        user = call.user_id or _first_str(attrs, USER_KEYS)
        session = call.session_id or _first_str(attrs, SESSION_KEYS)
        usage = batch.usage
        for kind, raw_id in (("user", user), ("session", session)):
            if raw_id:
                ids = usage.get((service, kind))
                if ids is None:
                    ids = usage[(service, kind)] = {}
                h = self._id_hash(raw_id)
                if t > ids.get(h, 0.0):
                    ids[h] = t
        slot = (service, int(t // REQUEST_SLOT_SECONDS) * REQUEST_SLOT_SECONDS)
        batch.requests[slot] = batch.requests.get(slot, 0) + 1
        if exps:
            units = semconv.parse_units(attrs) if semconv.EXPERIMENT_UNITS in attrs else None
            # one row per call and (experiment, variant): the batch's sums come from summarize_rows
            row = (t, latency, input_tokens, output_tokens, cost, 1.0 if error else 0.0)
            for a in exps:
                key = (a.id, a.variant)
                rows = batch.exps.get(key)
                if rows is None:
                    batch.exps[key] = [a, row]
                else:
                    rows[0] = a  # the newest stamp (weights) wins, as call by call
                    rows.append(row)
                if units:
                    unit = units.get(a.id)
                    if unit:
                        got = batch.units.get(key)
                        if got is None:
                            got = batch.units[key] = {}
                        got[unit] = got.get(unit, 0) + 1
        trace_id, span_id = call.trace_id, call.span_id
        if trace_id and span_id:
            ekey = (service, model, id(exps))
            ix = batch.entry_ix.get(ekey)
            if ix is None:
                ix = batch.entry_ix[ekey] = len(batch.entries)
                batch.entries.append((service, model, exps))
            batch.keys.append(trace_id + span_id)
            batch.entry_of.append(ix)
            if t > batch.t_max:
                batch.t_max = t
        if self.summarizers:
            record = call_record(call, service, error, sv.end, exps, failed, safety, cost, attrs)
            for name, summarizer in self.summarizers:
                try:
                    summarizer.add(record)
                except Exception:
                    self.summarizer_errors += 1
                    self._log_error("plugin %s: its summarizer raised on a call (not counted there)", name)
        if self.attributes != "none":
            if self.attributes == "all":
                out_attrs = attrs
            else:
                out_attrs = {k: v for k, v in attrs.items()
                             if not (isinstance(v, str) and len(v) > SHORT_ATTRIBUTE_CHARS)}
            ops.append(("call", service, call, error, sv.end, exps, failed, safety, cost, out_attrs))

    def _id_hash(self, raw_id: str) -> int:
        """state.id_hash, memoized (bounded) like State.see_id's cache."""
        h = self._hash_cache.get(raw_id)
        if h is None:
            if len(self._hash_cache) >= 50_000:
                self._hash_cache.clear()
            h = self._hash_cache[raw_id] = id_hash(raw_id)
        return h

    def _experiments(self, attrs: Mapping[str, Any]) -> tuple[ExperimentAssignment, ...]:
        """parse_experiments, memoized on the raw attribute values: the same few experiment
        stamps repeat on every span, and one shared tuple per stamp keeps the span index small."""
        raw = (attrs.get(semconv.EXPERIMENTS), attrs.get(semconv.EXPERIMENT_ID),
               attrs.get(semconv.EXPERIMENT_VARIANT), attrs.get(semconv.EXPERIMENT_WEIGHTS))
        if raw == (None, None, None, None):
            return ()
        key = raw
        try:
            hit = self._exp_cache.get(key)  # strings: the common case, no conversion
        except TypeError:  # OTLP arrays arrive as lists
            try:
                key = tuple(tuple(v) if isinstance(v, list) else v for v in raw)
                hit = self._exp_cache.get(key)
            except TypeError:  # unhashable odd values: parse without the cache
                return tuple(parse_experiments(attrs))
        if hit is None:
            if len(self._exp_cache) >= 10_000:
                self._exp_cache.clear()
            hit = self._exp_cache[key] = tuple(parse_experiments(attrs))
        return hit


class Ingestor:
    """Applies prepared batches to `State` and calls plugins. The ingest thread only."""

    def __init__(self, state: State, labels: LabelBounder, checks: CheckRunner, prices: PriceTable,
                 plugins: list[Any], cfg: Mapping[str, Any], clock=time.time):
        self.state = state
        self.labels = labels
        self.plugins = plugins
        self.default_service = str(cfg["labels"]["default_service"])
        self.preparer = Preparer(checks, prices, self.default_service,
                                 "all" if self._call_plugins() else "none", clock,
                                 [(name, cls(section)) for name, cls, section in summarizer_specs(plugins, cfg)])
        self.eval_seen: OrderedDict[tuple, None] = OrderedDict()
        self.eval_seen_max = int(cfg["ingest"]["evaluation_dedup_entries"])
        self.clock = clock
        self.plugin_errors = 0
        self.span_errors = 0

    # --- entry points (caller holds state.lock) ---
    def apply_traces(self, req: Any) -> int:
        """Prepare (on this thread) and apply one validated ExportTraceServiceRequest."""
        return self.apply(self.preparer.prepare_traces(req))

    def apply_logs(self, req: Any) -> int:
        return self.apply(self.preparer.prepare_logs(req))

    def apply(self, prepared: Prepared) -> int:
        """Apply one prepared batch: merge its delta, then run its ops in order."""
        signal, n, delta, ops, errors, summaries = prepared
        self.span_errors += errors
        st = self.state
        try:
            if delta is not None:
                self._merge(delta)
        except Exception:  # a bug here must not lose the ops or the span count
            self.span_errors += 1
            log.exception("batch delta could not be applied")
        if summaries:
            for p in self.plugins:
                summary = summaries.get(p.name)
                if summary is not None and type(p).summarizer is not None:
                    try:
                        p.on_call_summary(summary)
                    except Exception:
                        self._plugin_failed(p, "on_call_summary")
        call_plugins = self._call_plugins() if ops else []
        for op in ops:
            try:
                kind = op[0]
                if kind == "call":
                    self._call_record(op, call_plugins)
                elif kind == "eval":
                    ev = op[1]
                    self._evaluation(ev, dedup_key=self._dedup_key(ev) if op[2] else None)
                elif kind == "judge":
                    self._judge_stats(op)
            except Exception:
                self.span_errors += 1
                if self.span_errors <= 3:
                    log.exception("prepared %s could not be applied", op[0])
        st.inc("llm_eval_ingest_spans_total", (signal,), n)
        return n

    def _merge(self, delta: tuple) -> None:
        """Fold a batch's sums into the state. Label values are bounded once per raw label set,
        weighted by its number of calls (overflow counts as if each call were bounded)."""
        calls, checks, exps, units, usage, requests, index = delta
        st = self.state
        b = self.labels.bound
        counters: dict[tuple, float] = {}
        services: dict[str, str] = {}
        for (svc_raw, model_raw, exp_raw, var_raw), acc in calls.items():
            n = acc[_OK] + acc[_ERR]
            service = b("service", svc_raw, n)
            services[svc_raw] = service
            base = (service, b("model", model_raw, n),
                    b("experiment", exp_raw, n) if exp_raw else "", b("variant", var_raw, n) if exp_raw else "")
            for status, count in (("ok", acc[_OK]), ("error", acc[_ERR])):
                if count:
                    key = ("llm_requests_total", base + (status,))
                    counters[key] = counters.get(key, 0.0) + count
            for kind, value in (("input", acc[_IN]), ("output", acc[_OUT])):
                if value:
                    key = ("llm_tokens_total", base + (kind,))
                    counters[key] = counters.get(key, 0.0) + value
            if acc[_COST_N]:
                key = ("llm_cost_usd_total", base)
                counters[key] = counters.get(key, 0.0) + acc[_COST]
            if acc[_LAT_N]:
                st.observe_counts("llm_response_latency_seconds", base, acc[_LAT_COUNTS], acc[_LAT_SUM])
        for (svc_raw, model_raw, check, safety), count in checks.items():
            service = services.get(svc_raw) or b("service", svc_raw, 0)
            key = ("llm_safety_violations_total" if safety else "llm_check_failures_total",
                   (service, b("model", model_raw, 0), b("check", check, count)))
            counters[key] = counters.get(key, 0.0) + count
        st.inc_many(counters)

        def service_of(raw: str) -> str:
            got = services.get(raw)
            if got is None:
                got = services[raw] = b("service", raw, 0)
            return got

        for (svc_raw, kind), seen in usage.items():
            st.see_ids(service_of(svc_raw), kind, seen)
        for (svc_raw, slot), count in requests.items():
            st.count_request(service_of(svc_raw), slot, count)
        for (eid, variant), (a, t_first, t_last, n, summary) in exps.items():
            e = st.experiment(a, t_first, n=n, t_last=t_last)
            if e is None:
                continue  # past state.max_experiments (counted by experiment())
            st.exp_merge(e, variant, summary)
            for unit, calls in units.get((eid, variant), {}).items():
                st.see_unit(e, variant, unit, calls)
        if index is not None:
            keys, entries, entry_of, t_max = index
            bounded = [IndexEntry(service_of(svc), model, exps_) for svc, model, exps_ in entries]
            of = array("I")
            of.frombytes(entry_of)
            st.index_add(keys, bounded, of, t_max)

    def _call_plugins(self) -> list[Any]:
        """Plugins that override `on_call` and have no summarizer (they get a CallRecord per call)."""
        base = SidecarPlugin.on_call
        return [p for p in self.plugins if getattr(type(p), "summarizer", None) is None
                and (getattr(type(p), "on_call", None) is not base or "on_call" in getattr(p, "__dict__", {}))]

    def apply_feedback(self, body: Mapping[str, Any]) -> None:
        """POST /v1/feedback payload (already validated by the API)."""
        ev = EvaluationRecord(
            name=str(body["name"]), source=str(body.get("source") or "user"),
            trace_id=str(body["trace_id"]).lower(),
            span_id=(str(body["span_id"]).lower() if body.get("span_id") else None),
            time_unix_nano=int(body.get("time_unix_nano") or self.clock() * 1e9),
            score=_score(body.get("value")), label=body.get("label"),
            explanation=body.get("comment"), service=None,
            attributes={"comment": body["comment"]} if body.get("comment") else {},
        )
        self._evaluation(ev, dedup_key=None)

    def apply_evaluation(self, record: EvaluationRecord) -> None:
        """An evaluation a plugin submitted through `ctx.submit_evaluation` (e.g. a human label)."""
        self._evaluation(record, dedup_key=None)

    @staticmethod
    def _dedup_key(ev: EvaluationRecord) -> tuple | None:
        if not ev.trace_id:
            return None
        return (ev.trace_id, ev.span_id, ev.name, ev.score, ev.label)

    def _judge_stats(self, op: tuple) -> None:
        _, service, evaluator, dropped, skipped_rate, skipped_cost = op
        b = self.labels.bound
        svc, ev_l = b("service", service), b("evaluator", evaluator)
        st = self.state
        if dropped and dropped > 0:
            st.inc("llm_eval_judge_dropped_total", (svc, ev_l), dropped)
        for value, reason in ((skipped_rate, "rate"), (skipped_cost, "cost")):
            if value and value > 0:
                st.inc("llm_eval_judge_skipped_total", (svc, ev_l, b("reason", reason)), value)

    # --- LLM calls (their sums are in the delta; this only feeds plugins) ---
    def _call_record(self, op: tuple, call_plugins: list[Any]) -> None:
        if not call_plugins:
            return
        _, raw_service, call, error, end, exps, failed, safety, cost, attrs = op
        record = CallRecord(call=call, service=self.labels.bound("service", raw_service, 0), error=error,
                            end_time_unix_nano=end, experiments=exps, failed_checks=failed,
                            safety_checks=safety, cost_usd=cost, attributes=attrs)
        for p in call_plugins:
            try:
                p.on_call(record)
            except Exception:
                self._plugin_failed(p, "on_call")

    # --- evaluations ---
    def _evaluation(self, ev: EvaluationRecord, dedup_key: tuple | None) -> None:
        if dedup_key is not None:
            if dedup_key in self.eval_seen:
                return
            self.eval_seen[dedup_key] = None
            if len(self.eval_seen) > self.eval_seen_max:
                self.eval_seen.popitem(last=False)
        st = self.state
        joined = st.index_get(ev.trace_id, ev.span_id)
        service = ev.service
        model = ev.model
        exps: tuple[ExperimentAssignment, ...] = ev.experiments
        if joined is not None:
            service = joined.service
            model = model or joined.model
            exps = exps or joined.experiments
        service = service or self.default_service
        if (service, model, exps) != (ev.service, ev.model, ev.experiments):
            ev = EvaluationRecord(ev.name, ev.source, ev.trace_id, ev.span_id, ev.time_unix_nano, ev.score,
                                  ev.label, ev.explanation, ev.error, service, model, exps, ev.attributes)
        b = self.labels.bound
        inner = exps[-1] if exps else None
        svc = b("service", service)
        mdl = b("model", model or "")
        exp_l = b("experiment", inner.id) if inner else ""
        var_l = b("variant", inner.variant) if inner else ""
        evaluator = b("evaluator", ev.name)
        t = ev.time_unix_nano / 1e9 or self.clock()
        if ev.source in semconv.JUDGE_SOURCES:
            st.inc("llm_eval_judge_sampled_total", (svc, evaluator))
            if ev.error:
                st.inc("llm_eval_judge_errors_total", (svc, evaluator))
            cost = _score(ev.attributes.get(semconv.JUDGE_COST_USD))
            if cost:
                st.inc("llm_eval_judge_cost_usd_total", (svc, evaluator), cost)
        user = ev.source == semconv.USER_SOURCE
        if user and not _is_pairwise(ev):
            st.inc("llm_user_feedback_total", (svc, exp_l, var_l, b("feedback_type", feedback_type(ev))))
        if ev.score is not None and not ev.error:
            if not user:  # user feedback (0/1 thumbs, ...) is not on the histogram's 1..5 quality scale
                st.observe("llm_quality_score", (svc, mdl, exp_l, var_l, evaluator), ev.score)
            for a in exps:
                e = st.experiment(a, t)
                st.exp_add(e, ev.name, a.variant, ev.score, t)
        for p in self.plugins:
            try:
                p.on_evaluation(ev)
            except Exception:
                self._plugin_failed(p, "on_evaluation")

    def _plugin_failed(self, plugin: Any, hook: str) -> None:
        self.plugin_errors += 1
        if self.plugin_errors <= 5:
            log.exception("plugin %s raised in %s (counted, ingest continues)", getattr(plugin, "name", plugin), hook)
