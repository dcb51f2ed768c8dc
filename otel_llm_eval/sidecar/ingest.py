"""Ingest: turn decoded OTLP batches into catalog series, experiment statistics and plugin calls.

Two stages, so the expensive per-span work can run in worker processes (`ingest.workers`):

`Preparer.prepare_traces(req)` / `prepare_logs(req)` (pure, no shared state; in a worker process
or on the ingest thread) walk a validated message and return a list of operations:
- an LLM span (`semconv.normalize` returns an LLMCall): ("call", ...) with its checks, cost,
  experiments, user and session already computed;
- an evaluation span (`gen_ai.evaluation.name` set), a `gen_ai.evaluation.result` span event or
  log record: ("eval", EvaluationRecord, dedup) — evaluation spans after the batch's calls,
  because children end (and are exported) before their parent;
- the processor's judge stats span (`semconv.JUDGE_STATS_SPAN`): ("judge", ...).

`Ingestor.apply(prepared)` (the ingest thread only, caller holds `state.lock`) bounds label
values, updates the state, joins evaluations through the span index and calls the plugins. The
same id-less evaluation seen twice (OpenLIT sends a span event AND a log record) counts once.
Never raises on data: a span that breaks a rule is skipped and counted.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from typing import Any, Iterable, Mapping

from .. import semconv
from ..semconv import ExperimentAssignment, LLMCall, parse_experiments
from .checks import CheckRunner
from .labels import LabelBounder
from .otlp import LogView, SpanView, attributes as kv_attributes, walk_logs, walk_spans
from .plugins import CallRecord, EvaluationRecord, SidecarPlugin
from .prices import PriceTable
from .state import State, id_hash

log = logging.getLogger(__name__)

USER_KEYS = ("user.id", "enduser.id", "langfuse.user.id", "traceloop.association.properties.user_id",
             "gen_ai.user", "llm.user", "gen_ai.request.user")
SESSION_KEYS = ("gen_ai.conversation.id", "session.id", "langfuse.session.id",
                "traceloop.association.properties.session_id")

#: With worker processes, longer string attributes are not sent back with a call (see Preparer).
SHORT_ATTRIBUTE_CHARS = 256

#: (signal, items seen, operations, spans that raised while preparing)
Prepared = tuple


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


class Preparer:
    """The per-span work that needs no shared state. Not thread-safe (one per thread/process)."""

    def __init__(self, checks: CheckRunner, prices: PriceTable, default_service: str,
                 attributes: str = "all"):
        """attributes: what CallRecord.attributes carries — "all" (in-thread), "short" (worker
        processes with plugins: string values over SHORT_ATTRIBUTE_CHARS are left out, the texts
        are in call.prompt/call.completion) or "none" (worker processes, no plugins: no attributes and no LLMCall in the op, the
        fields apply needs are flat in it; user/session ids are hashed here in every mode)."""
        self.checks = checks
        self.prices = prices
        self.default_service = default_service
        self.attributes = attributes
        self._exp_cache: dict[tuple, tuple[ExperimentAssignment, ...]] = {}
        self._hash_cache: dict[str, int] = {}
        self.span_errors = 0

    def prepare_traces(self, req: Any) -> Prepared:
        ops: list[tuple] = []
        deferred: list[SpanView] = []
        n = errors = 0
        for sv in walk_spans(req, self.default_service):
            n += 1
            if semconv.EVALUATION_NAME in sv.attributes:
                deferred.append(sv)  # join after the batch's calls (children end first)
                continue
            errors += self._guarded(sv, ops)
        for sv in deferred:
            errors += self._guarded(sv, ops)
        return ("traces", n, ops, errors)

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
        return ("logs", n, ops, errors)

    def _log_error(self, msg: str, *args: Any) -> None:
        self.span_errors += 1
        if self.span_errors <= 3:
            log.exception(msg, *args)

    def _guarded(self, sv: SpanView, ops: list) -> int:
        try:
            self._span(sv, ops)
            return 0
        except Exception:  # one odd span must not lose the rest of the batch
            self._log_error("span %s/%s could not be ingested", sv.trace_id, sv.span_id)
            return 1

    def _span(self, sv: SpanView, ops: list) -> None:
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
            ops.append(self._prepare_call(sv, call))
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

    def _prepare_call(self, sv: SpanView, call: LLMCall) -> tuple:
        attrs = sv.attributes
        error = sv.error
        latency = call.latency_seconds
        if latency is None and sv.end and sv.start and sv.end >= sv.start:
            latency = (sv.end - sv.start) / 1e9
        cost = self.prices.cost_usd(call.model, call.input_tokens, call.output_tokens, attrs)
        failed, safety = self.checks.run(call, attrs, error)
        user = call.user_id or _first_str(attrs, USER_KEYS)
        session = call.session_id or _first_str(attrs, SESSION_KEYS)
        user_h = self._id_hash(user) if user else None
        session_h = self._id_hash(session) if session else None
        if self.attributes == "all":
            out_attrs = attrs
        elif self.attributes == "none":
            out_attrs = {}
        else:
            out_attrs = {k: v for k, v in attrs.items()
                         if not (isinstance(v, str) and len(v) > SHORT_ATTRIBUTE_CHARS)}
        units = semconv.parse_units(attrs) if semconv.EXPERIMENT_UNITS in attrs else None
        # the fields apply needs are flat in the op; the LLMCall itself only travels when plugins
        # may get a CallRecord (not with attributes "none": fewer objects to pickle per span)
        return ("call", sv.service, None if self.attributes == "none" else call, error, sv.start, sv.end,
                self._experiments(attrs), latency, cost, failed, safety, user_h, session_h, out_attrs, units,
                call.model, call.input_tokens, call.output_tokens, call.trace_id, call.span_id)

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
        self.preparer = Preparer(checks, prices, self.default_service)
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
        """Apply one prepared batch. The calls' counter increments and experiment samples are summed
        per key in batch-local dicts and merged into the state once at the end (fewer shared-dict
        updates and dirty-set insertions per span); the state after `apply` is the same as if
        every span had been applied on its own."""
        signal, n, ops, errors = prepared
        self.span_errors += errors
        counters: dict[tuple, float] = {}
        samples: dict[tuple, list] = {}
        try:
            self._apply_ops(ops, counters, samples)
        finally:
            st = self.state
            st.inc_many(counters)
            st.exp_add_many(samples)
        st.inc("llm_eval_ingest_spans_total", (signal,), n)
        return n

    def _apply_ops(self, ops: list, counters: dict, samples: dict) -> None:
        call_plugins = self._call_plugins()
        for op in ops:
            try:
                kind = op[0]
                if kind == "call":
                    self._call(op, counters, samples, call_plugins)
                elif kind == "eval":
                    ev = op[1]
                    self._evaluation(ev, dedup_key=self._dedup_key(ev) if op[2] else None)
                elif kind == "judge":
                    self._judge_stats(op)
            except Exception:
                self.span_errors += 1
                if self.span_errors <= 3:
                    log.exception("prepared %s could not be applied", op[0])

    def _call_plugins(self) -> list[Any]:
        """Plugins that override `on_call` (no CallRecord is built for the others)."""
        base = SidecarPlugin.on_call
        return [p for p in self.plugins
                if getattr(type(p), "on_call", None) is not base or "on_call" in getattr(p, "__dict__", {})]

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

    # --- LLM calls ---
    def _call(self, op: tuple, counters: dict | None = None, samples: dict | None = None,
              call_plugins: list[Any] | None = None) -> None:
        """One LLM call. Counter increments go to `counters` ((metric, labels) -> sum) and
        experiment samples to `samples` (see State.exp_add_many) when given (a batch), else
        straight into the state."""
        (_, raw_service, call, error, start, end, exps, latency, cost, failed, safety, user_h, session_h,
         attrs, units, call_model, input_tokens, output_tokens, trace_id, span_id) = op
        st = self.state
        direct = counters is None
        if counters is None:
            counters, samples = {}, {}
        t = (end or start) / 1e9 or self.clock()
        inner = exps[-1] if exps else None
        b = self.labels.bound
        service = b("service", raw_service)
        model = b("model", call_model or "")
        exp_l = b("experiment", inner.id) if inner else ""
        var_l = b("variant", inner.variant) if inner else ""
        base = (service, model, exp_l, var_l)
        get = counters.get
        key = ("llm_requests_total", base + ("error" if error else "ok",))
        counters[key] = get(key, 0.0) + 1.0
        if latency is not None and latency >= 0:
            st.observe("llm_response_latency_seconds", base, latency)
        if input_tokens:
            key = ("llm_tokens_total", base + ("input",))
            counters[key] = get(key, 0.0) + input_tokens
        if output_tokens:
            key = ("llm_tokens_total", base + ("output",))
            counters[key] = get(key, 0.0) + output_tokens
        if cost is not None:
            key = ("llm_cost_usd_total", base)
            counters[key] = get(key, 0.0) + cost
        for name in failed:
            key = ("llm_check_failures_total", (service, model, b("check", name)))
            counters[key] = get(key, 0.0) + 1.0
        for name in safety:
            key = ("llm_safety_violations_total", (service, model, b("check", name)))
            counters[key] = get(key, 0.0) + 1.0
        if user_h is not None:
            st.see_id_hash(service, "user", user_h, t)
        if session_h is not None:
            st.see_id_hash(service, "session", session_h, t)
        st.count_request(service, t)
        if exps:
            # one row per call and (experiment, variant); State.exp_add_many sums the columns
            row = (t, latency, input_tokens, output_tokens, cost, 1.0 if error else 0.0)
            for a in exps:
                e = st.experiment(a, t)
                if e is None:
                    continue  # past state.max_experiments (counted by experiment())
                variant = a.variant
                rows = samples.get((e.id, variant))
                if rows is None:
                    samples[(e.id, variant)] = [e, row]
                else:
                    rows.append(row)
                if units:
                    unit = units.get(a.id)
                    if unit:
                        st.see_unit(e, variant, unit)
        if direct:
            st.inc_many(counters)
            st.exp_add_many(samples)
        if trace_id and span_id:
            st.index_put(trace_id, span_id, service, call_model, exps, t)
        if call_plugins is None:
            call_plugins = self._call_plugins()
        if call_plugins and call is not None:
            record = CallRecord(call=call, service=service, error=error, end_time_unix_nano=end,
                                experiments=exps, failed_checks=failed, safety_checks=safety,
                                cost_usd=cost, attributes=attrs)
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
