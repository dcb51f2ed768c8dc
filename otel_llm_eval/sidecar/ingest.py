"""Ingest: turn decoded OTLP batches into catalog series, experiment statistics and plugin calls.

`Ingestor.apply(item)` runs on the ingest worker thread only. For each span it decides:
- an evaluation span (`gen_ai.evaluation.name` set): one EvaluationRecord for its parent span;
- the processor's judge stats span (`semconv.JUDGE_STATS_SPAN`): judge dropped/skipped deltas;
- an LLM span (`semconv.normalize` returns an LLMCall): checks, cost, usage, experiments, index;
- any span's `gen_ai.evaluation.result` events: EvaluationRecords for that span.
Log records carrying `gen_ai.evaluation.name` are evaluations of the record's trace/span ids.
Evaluations without experiment/service/model are joined through the span index. The same
id-less evaluation seen twice (OpenLIT sends a span event AND a log record) counts once.
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
from .plugins import CALL_METRICS, EXPOSURES, CallRecord, EvaluationRecord
from .prices import PriceTable
from .state import IndexEntry, State

log = logging.getLogger(__name__)

USER_KEYS = ("user.id", "enduser.id", "langfuse.user.id", "traceloop.association.properties.user_id",
             "gen_ai.user", "llm.user", "gen_ai.request.user")
SESSION_KEYS = ("gen_ai.conversation.id", "session.id", "langfuse.session.id",
                "traceloop.association.properties.session_id")


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


class Ingestor:
    """Applies batches to `State` and calls plugins. Single-threaded (the ingest worker)."""

    def __init__(self, state: State, labels: LabelBounder, checks: CheckRunner, prices: PriceTable,
                 plugins: list[Any], cfg: Mapping[str, Any], clock=time.time):
        self.state = state
        self.labels = labels
        self.checks = checks
        self.prices = prices
        self.plugins = plugins
        self.default_service = str(cfg["labels"]["default_service"])
        self.eval_seen: OrderedDict[tuple, None] = OrderedDict()
        self.eval_seen_max = int(cfg["ingest"]["evaluation_dedup_entries"])
        self.clock = clock
        self.plugin_errors = 0
        self._exp_cache: dict[tuple, tuple[ExperimentAssignment, ...]] = {}
        self.span_errors = 0

    # --- entry points ---
    def apply_traces(self, req: Any) -> int:
        """Apply one validated ExportTraceServiceRequest; returns spans seen. Caller holds state.lock."""
        n = 0
        deferred: list[SpanView] = []
        for sv in walk_spans(req, self.default_service):
            n += 1
            if semconv.EVALUATION_NAME in sv.attributes:
                # children end (and are exported) before their parent: join after the batch's calls
                deferred.append(sv)
                continue
            self._guarded(sv)
        for sv in deferred:
            self._guarded(sv)
        self.state.inc("llm_eval_ingest_spans_total", ("traces",), n)
        return n

    def _guarded(self, sv: SpanView) -> None:
        try:
            self._span(sv)
        except Exception:  # one odd span must not lose the rest of the batch
            self.span_errors += 1
            if self.span_errors <= 3:
                log.exception("span %s/%s could not be ingested", sv.trace_id, sv.span_id)

    def apply_logs(self, req: Any) -> int:
        n = 0
        for lv in walk_logs(req, self.default_service):
            n += 1
            try:
                self._log(lv)
            except Exception:
                self.span_errors += 1
                if self.span_errors <= 3:
                    log.exception("log record of %s could not be ingested", lv.trace_id)
        self.state.inc("llm_eval_ingest_spans_total", ("logs",), n)
        return n

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

    # --- spans ---
    def _span(self, sv: SpanView) -> None:
        attrs = sv.attributes
        if semconv.EVALUATION_NAME in attrs:
            ev = self._evaluation_from_attrs(attrs, sv.trace_id, sv.parent_span_id, sv.end, sv.service)
            if ev is not None:
                self._evaluation(ev, dedup_key=None)
            return
        if sv.name == semconv.JUDGE_STATS_SPAN:
            self._judge_stats(sv)
            return
        call = semconv.normalize(attrs, name=sv.name, trace_id=sv.trace_id, span_id=sv.span_id,
                                 start_time_unix_nano=sv.start, end_time_unix_nano=sv.end)
        if call is not None:
            self._call(sv, call)
        for name, ev_kvs, t in sv.events:
            if name == semconv.EVALUATION_EVENT:
                ev_attrs = kv_attributes(ev_kvs)
                ev = self._evaluation_from_attrs(ev_attrs, sv.trace_id, sv.span_id, t or sv.end, sv.service)
                if ev is not None:
                    self._evaluation(ev, dedup_key=self._dedup_key(ev))

    def _log(self, lv: LogView) -> None:
        attrs = lv.attributes
        if semconv.EVALUATION_NAME not in attrs and isinstance(lv.body, dict) \
                and semconv.EVALUATION_NAME in lv.body:
            attrs = {**lv.body, **attrs}  # some emitters put the evaluation in the body
        if semconv.EVALUATION_NAME not in attrs:
            return
        ev = self._evaluation_from_attrs(attrs, lv.trace_id, lv.span_id, lv.time, lv.service)
        if ev is not None:
            self._evaluation(ev, dedup_key=self._dedup_key(ev))

    @staticmethod
    def _dedup_key(ev: EvaluationRecord) -> tuple | None:
        if not ev.trace_id:
            return None
        return (ev.trace_id, ev.span_id, ev.name, ev.score, ev.label)

    def _evaluation_from_attrs(self, attrs: Mapping[str, Any], trace_id: str | None, span_id: str | None,
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

    def _judge_stats(self, sv: SpanView) -> None:
        a = sv.attributes
        service = self.labels.bound("service", sv.service)
        evaluator = self.labels.bound("evaluator", a.get(semconv.JUDGE_EVALUATOR) or "judge")
        st = self.state
        for key, metric, extra in ((semconv.JUDGE_DROPPED, "llm_eval_judge_dropped_total", ()),
                                   (semconv.JUDGE_SKIPPED_RATE, "llm_eval_judge_skipped_total", ("rate",)),
                                   (semconv.JUDGE_SKIPPED_COST, "llm_eval_judge_skipped_total", ("cost",))):
            v = _score(a.get(key))
            if v and v > 0:
                labels = (service, evaluator) + tuple(self.labels.bound("reason", r) for r in extra)
                st.inc(metric, labels, v)

    # --- LLM calls ---
    def _call(self, sv: SpanView, call: LLMCall) -> None:
        st = self.state
        attrs = sv.attributes
        t = (sv.end or sv.start) / 1e9 or self.clock()
        exps = self._experiments(attrs)
        inner = exps[-1] if exps else None
        b = self.labels.bound
        service = b("service", sv.service)
        model = b("model", call.model or "")
        exp_l = b("experiment", inner.id) if inner else ""
        var_l = b("variant", inner.variant) if inner else ""
        base = (service, model, exp_l, var_l)
        error = sv.error
        st.inc("llm_requests_total", base + ("error" if error else "ok",))
        latency = call.latency_seconds
        if latency is None and sv.end and sv.start and sv.end >= sv.start:
            latency = (sv.end - sv.start) / 1e9
        if latency is not None and latency >= 0:
            st.observe("llm_response_latency_seconds", base, latency)
        if call.input_tokens:
            st.inc("llm_tokens_total", base + ("input",), call.input_tokens)
        if call.output_tokens:
            st.inc("llm_tokens_total", base + ("output",), call.output_tokens)
        cost = self.prices.cost_usd(call.model, call.input_tokens, call.output_tokens, attrs)
        if cost is not None:
            st.inc("llm_cost_usd_total", base, cost)
        failed, safety = self.checks.run(call, attrs, error)
        for name in failed:
            st.inc("llm_check_failures_total", (service, model, b("check", name)))
        for name in safety:
            st.inc("llm_safety_violations_total", (service, model, b("check", name)))
        user = call.user_id or _first_str(attrs, USER_KEYS)
        session = call.session_id or _first_str(attrs, SESSION_KEYS)
        if user:
            st.see_id(service, "user", user, t)
        if session:
            st.see_id(service, "session", session, t)
        st.count_request(service, t)
        if exps:
            values = (latency, call.input_tokens, call.output_tokens, cost, 1.0 if error else 0.0)
            add = st.exp_add
            for a in exps:
                e = st.experiment(a, t)
                add(e, EXPOSURES, a.variant, 1.0, t)
                for metric, v in zip(CALL_METRICS, values):
                    if v is not None:
                        add(e, metric, a.variant, float(v), t)
        if call.trace_id and call.span_id:
            st.index_put(call.trace_id, call.span_id, IndexEntry(service, call.model, exps, t))
        if self.plugins:
            record = CallRecord(call=call, service=service, error=error, end_time_unix_nano=sv.end,
                                experiments=exps, failed_checks=failed, safety_checks=safety,
                                cost_usd=cost, attributes=attrs)
            for p in self.plugins:
                try:
                    p.on_call(record)
                except Exception:
                    self._plugin_failed(p, "on_call")

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
        if ev.source == "llm_judge":
            st.inc("llm_eval_judge_sampled_total", (svc, evaluator))
            if ev.error:
                st.inc("llm_eval_judge_errors_total", (svc, evaluator))
            cost = _score(ev.attributes.get(semconv.JUDGE_COST_USD))
            if cost:
                st.inc("llm_eval_judge_cost_usd_total", (svc, evaluator), cost)
        if ev.source == "user":
            st.inc("llm_user_feedback_total", (svc, exp_l, var_l, b("feedback_type", feedback_type(ev))))
        if ev.score is not None and not ev.error:
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
