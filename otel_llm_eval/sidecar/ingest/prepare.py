"""The worker side of ingest: decoded OTLP batches -> batch deltas, operations, plugin summaries.

`Preparer.prepare_traces(req)` / `prepare_logs(req)` (pure, no shared state; in an ingest worker
process or on the ingest thread) walk a validated message and return
`(signal, items, delta, ops, errors, summaries)`, errors being (spans that raised, checks that
raised, summarizer calls that raised) during this batch:
- `delta` sums the batch's LLM calls (`semconv.normalize` returned an LLMCall) per raw label
  set: request, token, cost and check counters, latency histogram buckets, experiment sufficient
  statistics (`state.summarize_rows`), unit keys, user/session id hashes, request slots, and the
  span index chunk. Its size grows with the batch's distinct label sets, not with its spans, so
  what a worker sends back and what the ingest thread applies is small;
- `ops`: ("call", ...) per LLM call only when a plugin without a summarizer overrides `on_call`;
  ("eval", EvaluationRecord, dedup) per evaluation span (`gen_ai.evaluation.name` set), span
  event or log record; ("judge", ...) per processor judge stats span (`semconv.JUDGE_STATS_SPAN`);
- `summaries`: plugin name -> its CallSummarizer's result for the batch.

`ingest.Ingestor` applies them on the ingest thread.
"""

from __future__ import annotations

import logging
import math
import time
from array import array
from bisect import bisect_left
from typing import Any, Iterable, Mapping

from ... import semconv
from ...catalog import BY_NAME
from ...semconv import ExperimentAssignment, LLMCall, parse_experiments
from . import one_call
from .checks import CheckRunner
from .edge import EdgeLimits
from .otlp import LogView, SpanView, attributes as kv_attributes, resource_service, walk_logs
from ..plugins import EvaluationRecord, call_record, section_of
from .prices import PriceTable
from ..state import id_hash, summarize_rows, unit_key_int, unit_mix

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

#: layout of the running sums kept per raw label set (service, model, experiment, variant)
OK, ERRORS, IN_TOKENS, OUT_TOKENS, COST_N, COST, LATENCY_N, LATENCY_SUM, LATENCY_COUNTS = range(9)


_EXPERIMENTS, _EXPERIMENT_ID, _EXPERIMENT_VARIANT = semconv.EXPERIMENTS, semconv.EXPERIMENT_ID, semconv.EXPERIMENT_VARIANT
_EXPERIMENT_WEIGHTS, _EXPERIMENT_UNITS = semconv.EXPERIMENT_WEIGHTS, semconv.EXPERIMENT_UNITS
_NO_EXPERIMENT = (None, None, None, None, None)


def _first_str(attrs: Mapping[str, Any], keys: Iterable[str]) -> str | None:
    for k in keys:
        v = attrs.get(k)
        if v not in (None, ""):
            return str(v)
    return None


def score_of(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


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
        score=score_of(attrs.get(semconv.EVALUATION_SCORE_VALUE)),
        label=str(label) if label not in (None, "") else None,
        explanation=attrs.get(semconv.EVALUATION_EXPLANATION),
        error=str(error) if error not in (None, "") else None,
        service=service, experiments=tuple(parse_experiments(attrs)), attributes=attrs,
    )


class _Batch:
    """A batch's LLM calls summed per raw label set (see the module docstring). Worker side."""

    __slots__ = ("calls", "checks", "exps", "units", "clusters", "usage", "requests", "keys", "entries",
                 "entry_ix", "entry_of", "t_max", "pending")

    def __init__(self) -> None:
        self.calls: dict[tuple, list] = {}
        self.checks: dict[tuple, int] = {}          # (service, model, check, safety?) -> failures
        self.exps: dict[tuple, list] = {}           # (experiment, variant) -> [assignment, row, ...]
        self.units: dict[tuple, dict] = {}          # (experiment, variant) -> {unit key: calls}
        #: (experiment, variant) -> {mixed unit (or trace) key: [Σ x, n] per CALL_METRICS column}
        self.clusters: dict[tuple, dict] = {}
        self.usage: dict[tuple, dict] = {}          # (service, kind) -> {id hash: last seen}
        self.requests: dict[tuple, int] = {}        # (service, minute slot) -> calls
        self.keys: list[str] = []                   # span index: trace id hex + span id hex per call
        self.entries: list[tuple] = []              # distinct (service, model, experiments)
        self.entry_ix: dict[tuple, int] = {}
        self.entry_of = array("I")
        self.t_max = 0.0
        self.pending: list[tuple[SpanView, LLMCall]] = []  # this batch's LLM calls, before `one_call`

    def finish(self) -> tuple | None:
        if not self.calls and not self.keys:
            return None
        exps = {k: (rows[0], rows[1][0], max(r[0] for r in rows[1:]), len(rows) - 1, summarize_rows(rows[1:]))
                for k, rows in self.exps.items()}
        index = (self.keys, self.entries, self.entry_of.tobytes(), self.t_max) if self.keys else None
        return (self.calls, self.checks, exps, self.units, self.usage, self.requests, index, self.clusters)


def summarizer_specs(plugins: Iterable[Any], cfg: Mapping[str, Any]) -> list[tuple[str, type, Any]]:
    """(name, CallSummarizer class, config section) of every plugin with a summarizer: what a
    Preparer (here or in a worker process) builds its summarizers from."""
    return [(p.name, type(p).summarizer, dict(cfg.get(section_of(p)) or {}))
            for p in plugins
            if getattr(type(p), "summarizer", None) is not None]


class Preparer:
    """The per-span work that needs no shared state. Not thread-safe (one per thread/process)."""

    def __init__(self, checks: CheckRunner, prices: PriceTable, default_service: str,
                 attributes: str = "all", clock=time.time,
                 summarizers: list[tuple[str, Any]] | None = None, limits: EdgeLimits | None = None):
        """attributes: what CallRecord.attributes carries — "all" (in-thread), "short" (worker
        processes with plugins: string values over SHORT_ATTRIBUTE_CHARS are left out, the texts
        are in call.prompt/call.completion) or "none" (no plugin takes calls: no ("call", ...)
        ops at all, only the batch delta). summarizers: (plugin name, CallSummarizer) pairs; each
        gets every call's CallRecord and its result() ends up in the prepared batch. limits: the
        value ranges (edge.py) a span, evaluation event or log record must respect, else it is
        skipped whole and counted by reason in the batch's errors."""
        self.checks = checks
        self.summarizers = list(summarizers or ())
        self.summarizer_errors = 0
        self._reported = (checks.errors, 0)  # check and summarizer errors already in a batch
        self.prices = prices
        self.default_service = default_service
        self.attributes = attributes
        self.clock = clock
        self._exp_cache: dict[tuple, tuple[ExperimentAssignment, ...]] = {}
        self._hash_cache: dict[str, int] = {}
        self._mix_cache: dict[str, int] = {}
        self.span_errors = 0
        #: parent key -> Link of an inner call seen in an earlier batch (`one_call`). The ingest
        #: thread's Preparer reads the Ingestor's map; worker processes have none (batch-local).
        self.links: Mapping[str, Any] | None = None
        self.limits = limits or EdgeLimits()
        self.rejected: dict[str, int] = {}  # this batch's items skipped for a value out of range

    def _reject(self, why: tuple[str, str]) -> None:
        self.rejected[why[0]] = self.rejected.get(why[0], 0) + 1
        if sum(self.rejected.values()) <= 3:
            log.warning("item rejected (%s): %s", why[0], why[1])

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
        if batch.pending:
            errors += self._calls(batch, ops)
        for sv in deferred:
            errors += self._guarded(sv, ops, batch)
        summaries = self._summaries()
        return ("traces", n, batch.finish(), ops, self._errors(errors), summaries)

    def _calls(self, batch: _Batch, ops: list) -> int:
        """Count the batch's LLM calls once each (`one_call.resolve`); spans that raise are counted."""
        errors = 0
        links: list[tuple[str, one_call.Link]] = []
        # calls without text: span keys, their distinct (service, model) and which one each has
        notext: list[str] = []
        notext_groups: dict[tuple[str, str], int] = {}
        notext_of = array("I")
        if one_call.is_flat(batch.pending, self.links):  # every span a call of its own: no pairing
            add = self._add_call
            for sv, call in batch.pending:
                try:
                    base, _cost, key = add(sv, call, batch, ops, sv.attributes)
                    if key is not None and not isinstance(call.completion, str):  # as below
                        group = (sv.service, base[1])
                        g = notext_groups.get(group)
                        if g is None:
                            g = notext_groups[group] = len(notext_groups)
                        notext.append(key)
                        notext_of.append(g)
                except Exception:
                    errors += 1
                    self._log_error("span %s/%s could not be ingested", sv.trace_id, sv.span_id)
            resolved: list[tuple] = []
        else:
            resolved = one_call.resolve_general(batch.pending, self.links)
        for sv, call, attrs, aliases, merge, parent_key, response_key in resolved:
            try:
                if merge is not None:  # an outer span of an inner call counted in an earlier batch
                    self._merge_late(merge, call, batch)
                    if parent_key:  # a wrapper of the wrapper finds the same inner call (nothing left to add)
                        links.append((parent_key, merge[:5] + (True, True, True)))
                    continue
                base, cost, key = self._add_call(sv, call, batch, ops, attrs, aliases)
                if key is not None and not isinstance(call.completion, str):  # not semconv.has_text
                    # "not judged: no text": its text may still come as a GenAI log record (text_join)
                    group = (sv.service, base[1])
                    g = notext_groups.get(group)
                    if g is None:
                        g = notext_groups[group] = len(notext_groups)
                    notext.append(key)
                    notext_of.append(g)
                if parent_key or response_key:
                    link = (call.operation, call.trace_id or "", sv.start, sv.end, base,  # a one_call.Link
                            bool(call.input_tokens), bool(call.output_tokens), cost is not None)
                    if parent_key:
                        links.append((parent_key, link))
                    if response_key:
                        links.append((response_key, link))
            except Exception:
                errors += 1
                self._log_error("span %s/%s could not be ingested", sv.trace_id, sv.span_id)
        if links:
            ops.append(("links", links))
        if notext:  # the keys are the span index's own strings: pickled once for both
            ops.append(("notext", notext, list(notext_groups), notext_of.tobytes()))
        return errors

    def _merge_late(self, merge: Any, outer: LLMCall, batch: _Batch) -> None:
        """Tokens and cost only the outer span has, added under the earlier inner call's labels
        (the call itself, its checks and exposures were counted with the inner span)."""
        base, had_in, had_out, had_cost = merge[4:8]
        acc = batch.calls.get(base)
        if acc is None:
            acc = batch.calls[base] = [0, 0, 0, 0, 0, 0.0, 0, 0.0, None]
        if not had_in and outer.input_tokens:
            acc[IN_TOKENS] += outer.input_tokens
        if not had_out and outer.output_tokens:
            acc[OUT_TOKENS] += outer.output_tokens
        if not had_cost and not (had_in or had_out):
            cost = self.prices.cost_usd(base[1], outer.input_tokens, outer.output_tokens, None, base[4] or None)
            if cost is not None:
                acc[COST_N] += 1
                acc[COST] += cost

    def _errors(self, span_errors: int) -> tuple[int, int, int, dict[str, int]]:
        """This batch's error counts: the ingest thread adds them up (a worker's own counters
        are not visible there). The last item: items rejected for a value, per reason."""
        checks, summarizers = self.checks.errors, self.summarizer_errors
        out = (span_errors, checks - self._reported[0], summarizers - self._reported[1], self.rejected)
        self._reported = (checks, summarizers)
        self.rejected = {}
        return out

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
        return ("logs", n, None, ops, self._errors(errors), None)

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
        why = self.limits.attrs_problem(attrs)
        if why is not None:  # before any sum sees it: one absurd value must not poison a series
            self._reject(why)
            return
        if semconv.EVALUATION_NAME in attrs:
            ev = evaluation_from_attrs(attrs, sv.trace_id, sv.parent_span_id, sv.end, sv.service)
            if ev is not None:
                ops.append(("eval", ev, False))
            return
        if sv.name == semconv.JUDGE_STATS_SPAN:
            a = attrs
            ops.append(("judge", sv.service, a.get(semconv.JUDGE_EVALUATOR) or "judge",
                        score_of(a.get(semconv.JUDGE_DROPPED)), score_of(a.get(semconv.JUDGE_SKIPPED_RATE)),
                        score_of(a.get(semconv.JUDGE_SKIPPED_COST)), score_of(a.get(semconv.JUDGE_SKIPPED_NO_TEXT))))
            return
        # raw id bytes: normalize turns them into hex without re-validating a hex string
        call = semconv.normalize(attrs, name=sv.name, trace_id=sv.raw_trace_id, span_id=sv.raw_span_id,
                                 start_time_unix_nano=sv.start, end_time_unix_nano=sv.end)
        for name, ev_kvs, t in sv.events:
            if name == semconv.EVALUATION_EVENT:
                ev_attrs = kv_attributes(ev_kvs)
                why = self.limits.attrs_problem(ev_attrs)
                if why is not None:
                    self._reject(why)
                    continue
                ev = evaluation_from_attrs(ev_attrs, sv.trace_id, sv.span_id, t or sv.end, sv.service)
                if ev is not None:
                    ops.append(("eval", ev, True))
            elif call is not None and name in semconv.TEXT_EVENTS and not semconv.has_text(call):
                ev_attrs = kv_attributes(ev_kvs)
                call = semconv.with_text(call, *semconv.text_of_event(name, ev_attrs, ev_attrs.get("body")))
        if call is not None and not semconv.is_stream_request_half(attrs, sv.error):
            batch.pending.append((sv, call))

    def _log(self, lv: LogView, ops: list) -> None:
        attrs = lv.attributes
        if semconv.EVALUATION_NAME not in attrs and isinstance(lv.body, dict) \
                and semconv.EVALUATION_NAME in lv.body:
            attrs = {**lv.body, **attrs}  # some emitters put the evaluation in the body
        if semconv.EVALUATION_NAME not in attrs:
            name = lv.event_name or attrs.get("event.name")
            if name in semconv.TEXT_EVENTS and lv.trace_id and lv.span_id:  # event_only content capture
                text = semconv.text_of_event(name, attrs, lv.body)
                if text[1] is not None:
                    ops.append(("text", lv.trace_id + lv.span_id, text))
            return
        why = self.limits.attrs_problem(attrs)
        if why is not None:
            self._reject(why)
            return
        ev = evaluation_from_attrs(attrs, lv.trace_id, lv.span_id, lv.time, lv.service)
        if ev is not None:
            ops.append(("eval", ev, True))

    def _add_call(self, sv: SpanView, call: LLMCall, batch: _Batch, ops: list,
                  attrs: Mapping[str, Any] | None = None, aliases: tuple[str, ...] = ()) -> tuple:
        """Count one call (after `one_call.resolve`): attrs are the span's (merged with its outer
        spans'); aliases are the span index keys of the outer spans that describe the same call.
        Returns (raw label set, cost, span index key or None)."""
        attrs = sv.attributes if attrs is None else attrs
        error = sv.error
        service = sv.service
        model = call.model
        latency = call.latency_seconds
        if latency is None and sv.end and sv.start and sv.end >= sv.start:
            latency = (sv.end - sv.start) / 1e9
        cost = self.prices.cost_usd(model, call.input_tokens, call.output_tokens, attrs, call.provider)
        failed, safety = self.checks.run(call, attrs, error)
        exps = self._experiments(attrs)
        t = (sv.end or sv.start) / 1e9 or self.clock()
        inner = exps[-1] if exps else None
        provider = call.provider or self.prices.provider_of(model)  # Langfuse names none: the catalogue's
        base = (service, model or "", inner.id if inner else "", inner.variant if inner else "", provider or "")
        acc = batch.calls.get(base)
        if acc is None:
            acc = batch.calls[base] = [0, 0, 0, 0, 0, 0.0, 0, 0.0, None]
        acc[ERRORS if error else OK] += 1
        if latency is not None and latency >= 0:
            counts = acc[LATENCY_COUNTS]
            if counts is None:
                counts = acc[LATENCY_COUNTS] = [0] * (len(LATENCY_BUCKETS) + 1)
            # first bucket with value <= bound (Prometheus `le`); NaN goes to +Inf
            counts[bisect_left(LATENCY_BUCKETS, latency) if latency == latency else len(LATENCY_BUCKETS)] += 1
            acc[LATENCY_N] += 1
            acc[LATENCY_SUM] += latency
        input_tokens, output_tokens = call.input_tokens, call.output_tokens
        if input_tokens:
            acc[IN_TOKENS] += input_tokens
        if output_tokens:
            acc[OUT_TOKENS] += output_tokens
        if cost is not None:
            acc[COST_N] += 1
            acc[COST] += cost
        if failed or safety:
            checks = batch.checks
            for names, is_safety in ((failed, False), (safety, True)):
                for name in names:
                    key = (service, base[1], name, is_safety)
                    checks[key] = checks.get(key, 0) + 1
        user = call.user_id or _first_str(attrs, USER_KEYS)
        session = call.session_id or _first_str(attrs, SESSION_KEYS)
        if user:
            self._see_id(batch.usage, (service, "user"), user, t)
        if session:
            self._see_id(batch.usage, (service, "session"), session, t)
        slot = (service, int(t // REQUEST_SLOT_SECONDS) * REQUEST_SLOT_SECONDS)
        batch.requests[slot] = batch.requests.get(slot, 0) + 1
        if exps:
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
                unit = a.unit
                if unit:  # per-unit sums (calls without a unit key are analysed per call only)
                    got = batch.units.get(key)
                    if got is None:
                        got = batch.units[key] = {}
                    got[unit] = got.get(unit, 0) + 1
                    cluster = self._mixed(unit)
                    sums = batch.clusters.get(key)
                    if sums is None:
                        sums = batch.clusters[key] = {}
                    acc_c = sums.get(cluster)
                    if acc_c is None:
                        acc_c = sums[cluster] = [0.0] * (2 * len(row) - 2)
                    for i, value in enumerate(row[1:]):
                        if value is not None:
                            acc_c[2 * i] += value
                            acc_c[2 * i + 1] += 1.0
        trace_id, span_id = call.trace_id, call.span_id
        key = None
        if trace_id and span_id:
            ekey = (service, model, id(exps))
            ix = batch.entry_ix.get(ekey)
            if ix is None:
                ix = batch.entry_ix[ekey] = len(batch.entries)
                batch.entries.append((service, model, exps))
            key = trace_id + span_id
            batch.keys.append(key)
            batch.entry_of.append(ix)
            for alias in aliases:  # evaluations of an outer span join the same call
                batch.keys.append(alias)
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
        return base, cost, key

    def _mixed(self, unit: str) -> int:
        """`unit_mix(unit_key_int(unit))`, memoized (bounded): the state maps it to a cluster."""
        h = self._mix_cache.get(unit)
        if h is None:
            if len(self._mix_cache) >= 50_000:
                self._mix_cache.clear()
            h = self._mix_cache[unit] = unit_mix(unit_key_int(unit)) if unit else 0
        return h

    def _see_id(self, usage: dict, key: tuple[str, str], raw_id: str, t: float) -> None:
        """Note that `raw_id` (its hash) was seen at `t` under (service, kind)."""
        ids = usage.get(key)
        if ids is None:
            ids = usage[key] = {}
        h = self._hash_cache.get(raw_id)
        if h is None:
            h = self._id_hash(raw_id)
        if t > ids.get(h, 0.0):
            ids[h] = t

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
        get = attrs.get
        raw = (get(_EXPERIMENTS), get(_EXPERIMENT_ID), get(_EXPERIMENT_VARIANT), get(_EXPERIMENT_WEIGHTS),
               get(_EXPERIMENT_UNITS))
        if raw == _NO_EXPERIMENT:
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
