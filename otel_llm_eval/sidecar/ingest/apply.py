"""The ingest thread's side: apply prepared batches to the state, join evaluations, call plugins.

`Ingestor.apply(prepared)` (the ingest thread only, caller holds `state.lock`) takes what
`prepare.Preparer` made of one request (in a worker process or on this thread): it bounds label
values (an overflow is counted once per call, as if each call were bounded on its own), merges
the batch delta into the state, hands plugin summaries to their plugins, then runs the ops:
evaluations join their call through the span index (the batch's calls are indexed first, since
children end and are exported before their parent) and plugins are called. The same id-less
evaluation seen twice (OpenLIT sends a span event AND a log record) counts once. Never raises on
data: a span that breaks a rule is skipped and counted.
"""

from __future__ import annotations

import logging
import time
from array import array
from collections import OrderedDict
from dataclasses import replace
from typing import Any, Mapping

from ... import semconv
from .. import feedback_kinds
from ...semconv import ExperimentAssignment, LLMCall
from .checks import CheckRunner
from .edge import EdgeLimits
from ..labels import LabelBounder
from .one_call import Links
from .text_join import TextJoin
from ..plugins import CallRecord, EvaluationRecord, SidecarPlugin
from .prepare import (COST, COST_N, ERRORS, IN_TOKENS, LATENCY_COUNTS, LATENCY_N, LATENCY_SUM, OK,
                      OUT_TOKENS, Prepared, Preparer, score_of, summarizer_specs)
from .prices import PriceTable
from ..state import IndexEntry, State

log = logging.getLogger(__name__)


def _is_pairwise(ev: EvaluationRecord) -> bool:
    """A pairwise/interleaving record (`processor.interleaving`): a choice between two arms, not a
    thumbs rating, so it stays out of `llm_user_feedback_total` (the interleaving plugin's
    statistics count it)."""
    return ev.name == semconv.INTERLEAVING_EVALUATION or semconv.INTERLEAVING_ID in (ev.attributes or {})


class Ingestor:
    """Applies prepared batches to `State` and calls plugins. The ingest thread only."""

    def __init__(self, state: State, labels: LabelBounder, checks: CheckRunner, prices: PriceTable,
                 plugins: list[Any], cfg: Mapping[str, Any], clock=time.time):
        self.state = state
        self.labels = labels
        self.plugins = plugins
        self.default_service = str(cfg["labels"]["default_service"])
        self.feedback_kinds = dict((cfg.get("feedback") or {}).get("kinds") or {})
        self.preparer = Preparer(checks, prices, self.default_service,
                                 "all" if self._call_plugins() else "none", clock,
                                 [(name, cls(section)) for name, cls, section in summarizer_specs(plugins, cfg)],
                                 limits=EdgeLimits.from_config(cfg["ingest"].get("limits")))
        #: inner LLM calls by parent span key, for outer spans arriving in a later batch (one_call)
        self.links = Links(min(50_000, int(cfg.get("state", {}).get("span_index_max_entries", 200_000))))
        self.preparer.links = self.links.map
        self.text_join = TextJoin(50_000)
        self.eval_seen: OrderedDict[tuple, None] = OrderedDict()
        self.eval_seen_max = int(cfg["ingest"]["evaluation_dedup_entries"])
        self.clock = clock
        self.plugin_errors = 0
        self.span_errors = 0
        self.check_errors = 0        # checks that raised (counted as passed), wherever they ran
        self.summarizer_errors = 0   # plugin summarizer calls that raised
        self.rejected_values: dict[str, int] = {}  # items skipped for a value out of range, per reason
        self.feedback_out_of_range = 0  # scale ratings outside their declared range (not counted)

    # --- entry points (caller holds state.lock) ---
    def apply_traces(self, req: Any) -> int:
        """Prepare (on this thread) and apply one validated ExportTraceServiceRequest."""
        return self.apply(self.preparer.prepare_traces(req))

    def apply_logs(self, req: Any) -> int:
        return self.apply(self.preparer.prepare_logs(req))

    def apply(self, prepared: Prepared) -> int:
        """Apply one prepared batch: merge its delta, then run its ops in order."""
        signal, n, delta, ops, errors, summaries = prepared
        self.span_errors += errors[0]
        self.check_errors += errors[1]
        self.summarizer_errors += errors[2]
        for reason, count in (errors[3] if len(errors) > 3 else {}).items():
            self.rejected_values[reason] = self.rejected_values.get(reason, 0) + count
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
                elif kind == "links":  # inner calls an outer span of a later batch may wrap
                    self.links.add(op[1])
                elif kind == "notext":  # calls whose span had no text: wait for a GenAI log record
                    _, keys, groups, group_of = op  # key i is of (service, model) groups[group_of[i]]
                    of = array("I")
                    of.frombytes(group_of)
                    for service, model, text in self.text_join.spans_without_text(keys, groups, of, self.clock()):
                        self._text_checks(service, model, text)
                elif kind == "text":  # a GenAI log record's text (event_only content capture)
                    got = self.text_join.text(op[1], op[2])
                    if got is not None:
                        self._text_checks(got[0], got[1], op[2])
            except Exception:
                self.span_errors += 1
                if self.span_errors <= 3:
                    log.exception("prepared %s could not be applied", op[0])
        st.inc("llm_eval_ingest_spans_total", (signal,), n)
        self.settle_text()
        return n

    def settle_text(self) -> None:
        """Count the calls whose text did not arrive within text_join.SETTLE_SECONDS (caller holds
        state.lock; also called from the analysis tick, so a quiet sidecar settles too)."""
        for service, count in self.text_join.settle(self.clock()).items():
            self.state.inc("llm_calls_without_text_total", (self.labels.bound("service", service, count),), count)

    def _text_checks(self, service: str, model: str, text: tuple) -> None:
        """The text checks of a call whose text came in a log record, under the call's labels."""
        _prompt, completion, finish = text
        failed, safety = self.preparer.checks.run_text(LLMCall(model=model or None, completion=completion,
                                                               finish_reason=finish))
        b = self.labels.bound
        for names, metric in ((failed, "llm_check_failures_total"), (safety, "llm_safety_violations_total")):
            for name in names:  # as in prepare: every failure, and safety ones once more
                self.state.inc(metric, (b("service", service), b("model", model or ""), b("check", name)))

    def _merge(self, delta: tuple) -> None:
        """Fold a batch's sums into the state. Label values are bounded once per raw label set,
        weighted by its number of calls (overflow counts as if each call were bounded)."""
        calls, checks, exps, units, usage, requests, index, clusters = delta
        st = self.state
        b = self.labels.bound
        counters: dict[tuple, float] = {}
        services: dict[str, str] = {}
        for (svc_raw, model_raw, exp_raw, var_raw, provider_raw), acc in calls.items():
            n = acc[OK] + acc[ERRORS]
            service = b("service", svc_raw, n)
            services[svc_raw] = service
            base = (service, b("model", model_raw, n),
                    b("experiment", exp_raw, n) if exp_raw else "", b("variant", var_raw, n) if exp_raw else "")
            # requests, tokens and cost also carry the provider (labels: ..., provider[, status|direction])
            pbase = base + (b("provider", provider_raw, n) if provider_raw else "",)
            for status, count in (("ok", acc[OK]), ("error", acc[ERRORS])):
                if count:
                    key = ("llm_requests_total", pbase + (status,))
                    counters[key] = counters.get(key, 0.0) + count
            for kind, value in (("input", acc[IN_TOKENS]), ("output", acc[OUT_TOKENS])):
                if value:
                    key = ("llm_tokens_total", pbase + (kind,))
                    counters[key] = counters.get(key, 0.0) + value
            if acc[COST_N]:
                key = ("llm_cost_usd_total", pbase)
                counters[key] = counters.get(key, 0.0) + acc[COST]
            if acc[LATENCY_N]:
                st.observe_counts("llm_response_latency_seconds", base, acc[LATENCY_COUNTS], acc[LATENCY_SUM])
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
            st.cluster_merge(e, variant, clusters.get((eid, variant), {}))
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
            score=score_of(body.get("value")), label=body.get("label"),
            explanation=body.get("comment"), service=None,
            attributes={k: v for k, v in (("comment", body.get("comment")),
                                          (semconv.FEEDBACK_KIND, body.get("kind")),
                                          (semconv.FEEDBACK_SCALE_MIN, body.get("scale_min")),
                                          (semconv.FEEDBACK_SCALE_MAX, body.get("scale_max"))) if v is not None},
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
        _, service, evaluator, dropped, skipped_rate, skipped_cost = op[:6]
        skipped_no_text = op[6] if len(op) > 6 else None
        b = self.labels.bound
        svc, ev_l = b("service", service), b("evaluator", evaluator)
        st = self.state
        if dropped and dropped > 0:
            st.inc("llm_eval_judge_dropped_total", (svc, ev_l), dropped)
        for value, reason in ((skipped_rate, "rate"), (skipped_cost, "cost"), (skipped_no_text, "no_text")):
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
            # the call's own stamps first: they carry its unit keys (an evaluation span's copies may not)
            exps = joined.experiments or exps
        service = service or self.default_service
        user = ev.source == semconv.USER_SOURCE and not _is_pairwise(ev)
        kind = feedback_kinds.resolve(ev.name, ev.score, ev.label, ev.explanation, ev.attributes,
                                      self.feedback_kinds) if user else None
        if (service, model, exps) != (ev.service, ev.model, ev.experiments) or kind is not None:
            ev = replace(ev, service=service, model=model, experiments=exps, kind=kind.kind if kind else None)
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
            cost = score_of(ev.attributes.get(semconv.JUDGE_COST_USD))
            if cost:
                st.inc("llm_eval_judge_cost_usd_total", (svc, evaluator), cost)
        value = ev.score
        if kind is not None:
            value = self._feedback(ev, kind, svc, exp_l, var_l)
        elif ev.source == semconv.USER_SOURCE:
            value = None  # pairwise choices: the interleaving plugin's statistics
        if value is not None and not ev.error:
            if kind is None:  # user feedback (0/1 thumbs, ratings) is not on the judge's quality scale
                st.observe("llm_quality_score", (svc, mdl, exp_l, var_l, evaluator), value)
            for a in exps:
                e = st.experiment(a, t)
                st.exp_add(e, ev.name, a.variant, value, t)
                if a.unit:
                    st.cluster_add(e, ev.name, a.variant, st.bucket_of(a.unit), value)
        for p in self.plugins:
            try:
                p.on_evaluation(ev)
            except Exception:
                self._plugin_failed(p, "on_evaluation")

    def _feedback(self, ev: EvaluationRecord, kind: feedback_kinds.FeedbackKind, svc: str, exp_l: str,
                  var_l: str) -> float | None:
        """Count one user feedback record by its kind; the value the experiment statistics get
        (1/0 for binary and outcome records, the rating for scales, None otherwise)."""
        st, b = self.state, self.labels.bound
        name = b("feedback", ev.name)
        if ev.explanation:
            st.inc("llm_user_feedback_comments_total", (svc, name))
        if kind.kind in ("binary", "outcome"):
            positive = feedback_kinds.is_positive(ev.score, ev.label)
            if positive is None:
                return None
            if kind.kind == "binary":
                ftype = ev.label if ev.label else ("positive" if positive else "negative")
                st.inc("llm_user_feedback_total", (svc, exp_l, var_l, b("feedback_type", ftype)))
            else:
                st.inc("llm_task_outcomes_total", (svc, exp_l, var_l, name, "success" if positive else "failure"))
            return 1.0 if positive else 0.0
        if kind.kind == "scale":
            if ev.score is None or not feedback_kinds.in_range(kind, ev.score):
                self.feedback_out_of_range += 1
                return None
            st.observe("llm_user_rating", (svc, exp_l, var_l, name), ev.score)
            return ev.score
        if kind.kind == "categorical" and ev.label:
            st.inc("llm_user_feedback_category_total", (svc, name, b("category", ev.label)))
        return None

    def _plugin_failed(self, plugin: Any, hook: str) -> None:
        self.plugin_errors += 1
        if self.plugin_errors <= 5:
            log.exception("plugin %s raised in %s (counted, ingest continues)", getattr(plugin, "name", plugin), hook)
