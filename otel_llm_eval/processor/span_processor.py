"""`LLMEvalSpanProcessor`: stamps experiments on span start, picks LLM spans on end, judges a sample.

Register it BEFORE the BatchSpanProcessor: the SDK calls processors in registration order, and
its `shutdown()` drains judge work while the exporter is still alive.

Hot path cost: `on_start` is one or two context lookups (plus `set_attributes` inside an
experiment); `on_end` for a non-LLM span is a few dict lookups and one C-level
`isdisjoint(...)`; for an LLM span the trace-id draw comes first, and a sampled span is handed off
with one append under a lock. Normalization, the judge call and the evaluation span all happen on a
background thread, which the app never wakes: it drains its queue once a second (sooner on
`force_flush` or when the queue is half full), so judge work does not add a thread switch per
judged span (judge results arrive up to a second later; judges take longer anyway). Every hook is guarded: errors are counted per kind and logged once, never
raised into the app.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import Any, Callable, Mapping, Sequence

from opentelemetry import context as _context
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanContext, StatusCode

from otel_llm_eval import semconv
from otel_llm_eval.processor import feedback as _feedback
from otel_llm_eval.processor.budget import JudgeBudget
from otel_llm_eval.processor.experiment import (
    _ACTIVE_KEY,
    BAGGAGE_EXPERIMENTS,
    BAGGAGE_WEIGHTS,
    Experiment,
    _Active,
    _from_baggage,
)
from otel_llm_eval.judges.builtin import Judge, JudgeResult, coerce_result
from otel_llm_eval.processor.metrics import ErrorLog, NoopMetrics, ProcessorMetrics
from otel_llm_eval.processor.sampling import _MASK64, sampled, threshold
from otel_llm_eval.processor.worker import (
    JudgeCallTimeout,
    JudgeCaller,
    JudgeHung,
    JudgeWorker,
    in_judge_thread,
)

try:
    from opentelemetry.baggage import _BAGGAGE_KEY
except ImportError:  # pragma: no cover
    _BAGGAGE_KEY = None

_get_current = _context.get_current
try:  # one C call instead of two Python frames on every span start (default contextvars runtime)
    from contextvars import ContextVar as _ContextVar

    _cv = _context._RUNTIME_CONTEXT._current_context  # type: ignore[attr-defined]
    if isinstance(_cv, _ContextVar):
        _get_current = _cv.get
except Exception:  # pragma: no cover - another runtime context implementation
    pass
_EMPTY: dict[str, Any] = {}
_DETECTION_KEYS = semconv.DETECTION_KEYS
_no_detection_key = _DETECTION_KEYS.isdisjoint  # one C call over the span's keys
_EXPERIMENT_ID = semconv.EXPERIMENT_ID
_EXPERIMENT_VARIANT = semconv.EXPERIMENT_VARIANT
_EVALUATION_NAME = semconv.EVALUATION_NAME

SampleRateProvider = Callable[[str | None, str | None], float | None]


def _judge_name(judge: Any) -> str:
    for attr in ("name", "__name__"):
        value = getattr(judge, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(judge).__name__


class LLMEvalSpanProcessor(SpanProcessor):
    """Experiment stamping + deterministic, budgeted LLM-judge sampling.

    judge: `judge(call: LLMCall) -> JudgeResult | float`, or None to only stamp/remember.
    judge_sample_rate: fraction of LLM calls judged, decided from the trace id (the low 64 bits
      compared with rate * 2**64), so every process takes the same decision for a trace.
    variant_sample_rates: per-variant overrides, keys "experiment=variant" or "variant".
    sample_rate_provider: called as provider(experiment, variant) for each LLM call; a float
      overrides the rate for that call, None falls back to the above. It runs on the app thread in
      `on_end`, so it MUST be an O(1) cached lookup (no I/O, no locks held for long).
    evaluation_name: `gen_ai.evaluation.name` of judge results (default: the judge's `name`).
    tracer_provider: where evaluation and stats spans go (default: the provider this processor is
      added to; when it cannot be found, the global provider, with one warning).
    max_queue_size: judge work waiting at most; beyond it calls are dropped and counted. The worker
      drains the queue every second, on `force_flush`, and as soon as it is half full.
    judge_timeout_seconds: a judge call taking longer becomes an error record "timeout".
    max_judge_calls_per_minute / max_judge_usd_per_hour: judge budget; over it -> skip and count.
    metrics: a `ProcessorMetrics` sink (default no-op).
    include_embeddings: also judge/remember embeddings calls.
    feedback_memory_size: traces remembered for `record_feedback(trace_id)` (FIFO-bounded).
    stats_interval_seconds: judge stats spans are emitted at most this often (when non-zero).
    shutdown_timeout_millis: how long `shutdown()` waits for queued judge work.
    default_experiments: (Experiment, variant) pairs stamped on spans outside any activated
      scope (deployment-level experiments, e.g. for zero-code apps).
    """

    def __init__(
        self,
        judge: Judge | None = None,
        judge_sample_rate: float = 0.0,
        *,
        variant_sample_rates: Mapping[str, float] | None = None,
        sample_rate_provider: SampleRateProvider | None = None,
        evaluation_name: str | None = None,
        tracer_provider: Any = None,
        max_queue_size: int = 1000,
        judge_timeout_seconds: float = 30.0,
        max_judge_calls_per_minute: int | None = None,
        max_judge_usd_per_hour: float | None = None,
        metrics: ProcessorMetrics | None = None,
        include_embeddings: bool = False,
        feedback_memory_size: int = 10_000,
        stats_interval_seconds: float = 10.0,
        shutdown_timeout_millis: int = 5000,
        default_experiments: Sequence[tuple[Experiment, str]] = (),
    ) -> None:
        if judge is not None and not callable(judge):
            raise ValueError(f"judge must be callable, got {type(judge).__name__}")
        if not isinstance(judge_sample_rate, (int, float)) or not 0.0 <= judge_sample_rate <= 1.0:
            raise ValueError(f"judge_sample_rate must be in [0, 1], got {judge_sample_rate!r}")
        if judge_timeout_seconds <= 0:
            raise ValueError(f"judge_timeout_seconds must be > 0, got {judge_timeout_seconds!r}")
        self._judge = judge
        self._judge_rate = float(judge_sample_rate)
        self._threshold = threshold(judge_sample_rate)
        self._variant_thresholds: dict[str, int] = {}
        for key, rate in (variant_sample_rates or {}).items():
            if not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
                raise ValueError(f"variant_sample_rates[{key!r}] must be in [0, 1], got {rate!r}")
            self._variant_thresholds[str(key)] = threshold(rate)
        self._rate_provider = sample_rate_provider
        # One rate for every span: on_end compares the trace id itself before calling anything.
        self._plain_threshold: int | None = (self._threshold if sample_rate_provider is None
                                             and not self._variant_thresholds else None)
        # Without a judge or any non-zero rate, LLM spans need no work at all on the hot path.
        self._may_sample = judge is not None and bool(
            self._threshold or any(self._variant_thresholds.values()) or sample_rate_provider is not None)
        self.evaluator = evaluation_name or (_judge_name(judge) if judge is not None else "none")
        self._source = getattr(judge, "source", None) or "llm_judge"
        if not isinstance(self._source, str):
            self._source = "llm_judge"
        self._tracer_provider = tracer_provider
        self._timeout = float(judge_timeout_seconds)
        # Judges with `runs_inline = True` (pure CPU, bounded time, no I/O) run on the worker thread
        # itself: no timeout thread hand-off per call. Everything else gets the timeout runner.
        self._inline = getattr(judge, "runs_inline", False) is True
        self._budget = (JudgeBudget(max_judge_calls_per_minute, max_judge_usd_per_hour)
                        if (max_judge_calls_per_minute is not None or max_judge_usd_per_hour is not None) else None)
        self._budget_args = (max_judge_calls_per_minute, max_judge_usd_per_hour)
        self._metrics: ProcessorMetrics = metrics or NoopMetrics()
        self.errors = ErrorLog(self._metrics)
        self._include_embeddings = include_embeddings
        self._memory = _feedback.configure(tracer_provider, feedback_memory_size)
        if tracer_provider is None:  # evaluation spans go to the provider this processor is added to
            _feedback.register_processor(self)
        self._stats_interval = float(stats_interval_seconds)
        self._shutdown_timeout = max(0, shutdown_timeout_millis) / 1000.0
        self._default_state: _Active | None = None
        if default_experiments:
            entries = []
            for exp, variant in default_experiments:
                if variant not in exp.variants:
                    raise ValueError(f"default experiment {exp.id!r}: {variant!r} is not one of {list(exp.variants)}")
                entries.append((exp.id, variant, exp.weights_attribute))
            self._default_state = _Active(tuple(entries))
        self._is_shutdown = False
        #: parent span id of a sampled LLM span -> that (innermost) span's id (bounded)
        self._llm_parents: dict[int, int] = {}
        #: innermost LLM span id -> outer LLM spans describing the same call that ended (bounded);
        #: the judge worker merges what only they have (text, tokens) into the call it judges
        self._outer_spans: dict[int, list] = {}
        #: (trace id, gen_ai.response.id) -> the span judged for that response (bounded): spans of
        #: two instrumentations that are not nested (the Anthropic SDK's own and OpenLLMetry's)
        self._responses: dict[tuple, int] = {}
        self._stats_lock = threading.Lock()
        self._delta = {"dropped": 0, "rate": 0, "cost": 0, "no_text": 0}
        #: cumulative counters (tests, debugging): sampled, judged, errors, dropped, skipped_rate,
        #: skipped_cost, skipped_no_text (calls without output text: not judged)
        self.counters = {"sampled": 0, "judged": 0, "errors": 0, "dropped": 0, "skipped_rate": 0,
                         "skipped_cost": 0, "skipped_no_text": 0, "cost_usd": 0.0, "stats_spans": 0}
        self._last_stats = time.monotonic()
        self._caller = JudgeCaller()
        self._worker = JudgeWorker(self._process, max_queue_size=max_queue_size, on_tick=self._tick,
                                   tick_seconds=min(1.0, self._stats_interval) if self._stats_interval > 0 else 1.0,
                                   on_error=self.errors.record,
                                   wake_on_submit=False)
        ref = weakref.ref(self)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=lambda: (lambda p: p and p._after_fork())(ref()))

    # --- hooks (app threads) ---------------------------------------------------------------------

    # The SDK calls `_on_ending(span)` on every processor for every span; we have nothing to do
    # there, and the inherited no-op is a Python call. A C builtin taking one argument costs less
    # (builtins do not bind `self`); measured with callgrind in benchmarks/bench_processor.py.
    _on_ending = id  # type: ignore[assignment]

    def on_start(self, span: Span, parent_context: _context.Context | None = None) -> None:
        try:
            ctx = parent_context if parent_context is not None else _get_current()
            state = ctx.get(_ACTIVE_KEY)
            if state is None:
                bag = ctx.get(_BAGGAGE_KEY)
                if bag:
                    value = bag.get(BAGGAGE_EXPERIMENTS)
                    if value:
                        state = _from_baggage(value, bag.get(BAGGAGE_WEIGHTS))
                if state is None:
                    state = self._default_state
                    if state is None:
                        return
            attrs = span._attributes
            if type(attrs) is BoundedAttributes and not attrs._immutable and (
                    attrs.maxlen is None or len(attrs._dict) + state.count <= attrs.maxlen) and (
                    attrs.max_value_len is None or state.longest <= attrs.max_value_len):
                # Fast path: the values were validated once when the experiment was activated
                # (str and tuple[str]); the span was just created, so no other thread holds it.
                attrs._dict.update(state.attributes)
            else:
                span.set_attributes(state.attributes)
        except Exception as exc:  # noqa: BLE001 - never raise into the app
            self.errors.record("on_start", exc)

    def on_end(self, span: ReadableSpan) -> None:
        try:
            attrs = span._attributes
            try:
                d = attrs._dict  # BoundedAttributes: the plain dict behind it (read only here)
            except AttributeError:
                d = attrs if attrs is not None else _EMPTY
            if _EXPERIMENT_ID in d:
                ctx = span._context  # SpanContext is a tuple: [0] trace id, [1] span id, [2] is_remote
                parent = span._parent
                is_root = (parent is None or parent[2]) and _EVALUATION_NAME not in d
                # Remembered once per trace: skip the call when the entry is already complete
                # (most spans of a trace are children ending after the first one was seen).
                entry = self._memory._map.get(ctx[0])
                if entry is None or entry[1] is None or (is_root and not entry[0]):
                    self._memory.observe(ctx[0], ctx[1], is_root, d)
            elif span._parent is None:
                ctx = span._context
                self._memory.observe(ctx[0], ctx[1], True, d)
            if self._may_sample and not _no_detection_key(d):
                t = self._plain_threshold
                # The trace-id draw inline: with a 1 % rate, 99 % of LLM spans stop here.
                if t is None or span._context[0] & _MASK64 < t:
                    self._on_llm_end(span, d)
        except Exception as exc:  # noqa: BLE001
            self.errors.record("on_end", exc)

    def _on_llm_end(self, span: ReadableSpan, d: Mapping[str, Any]) -> None:
        """A span with a detection key while judging is possible: decide, then hand off in O(1)."""
        if self._plain_threshold is not None:  # on_end already drew: the trace is sampled
            if _EVALUATION_NAME in d or in_judge_thread() or semconv.detect(d, self._include_embeddings) is None:
                return  # our own evaluation span, the judge's own call, or not an LLM call
        else:
            if _EVALUATION_NAME in d or in_judge_thread():
                return  # our own evaluation span or the judge's own call
            if semconv.detect(d, self._include_embeddings) is None:
                return  # the provider is only asked about LLM calls
            if not sampled(span._context[0], self._threshold_for(d.get(_EXPERIMENT_ID), d.get(_EXPERIMENT_VARIANT))):
                return
        if semconv.is_stream_request_half(d, span.status.status_code is StatusCode.ERROR):
            return  # Logfire's request half of a stream: its response log span is the call
        # One real call, one judgement (semconv "one real call, one count"): frameworks and stacked
        # instrumentations wrap the provider's LLM span in their own (openai-v2 over OpenInference):
        # judge the innermost call once, with what only the outer spans have merged in. Children
        # end first, so remember parents.
        wrappers = self._llm_parents
        inner = wrappers.pop(span._context.span_id, None)
        if inner is not None:
            outers = self._outer_spans.get(inner)
            if outers is not None and len(outers) < 8:
                outers.append(span)
            wrappers_parent = span._parent
            if wrappers_parent is not None:  # a wrapper of a wrapper is skipped too
                wrappers[wrappers_parent.span_id] = inner
            return
        span_id = span._context.span_id
        response_id = d.get("gen_ai.response.id")
        if response_id is not None:  # another span of the same response (not nested) was judged
            rkey = (span._context.trace_id, response_id)
            first = self._responses.get(rkey)
            if first is not None:
                outers = self._outer_spans.get(first)
                if outers is not None and len(outers) < 8:
                    outers.append(span)
                return
            self._responses[rkey] = span_id
        parent = span._parent
        if parent is not None and not parent.is_remote:
            wrappers[parent.span_id] = span_id
        self._outer_spans[span_id] = []
        for bounded in (wrappers, self._outer_spans, self._responses):
            if len(bounded) > 4096:
                try:
                    del bounded[next(iter(bounded))]
                except (KeyError, RuntimeError, StopIteration):
                    pass
        if self._is_shutdown:
            self._count_drop("shutdown")
            return
        if self._budget is not None:
            reason = self._budget.try_acquire()
            if reason is not None:
                self._count_skip(reason)
                return
        marked = _mark_judged(span)
        if not self._worker.submit(span):
            if marked:
                _unmark_judged(span)
            self._count_drop("queue_full")

    def _threshold_for(self, experiment: Any, variant: Any) -> int:
        if self._rate_provider is not None:
            try:
                rate = self._rate_provider(experiment, variant)
            except Exception as exc:  # noqa: BLE001
                self.errors.record("sample_rate_provider", exc)
                rate = None
            if rate is not None:
                return threshold(rate)
        if self._variant_thresholds and variant is not None:
            t = self._variant_thresholds.get(f"{experiment}={variant}")
            if t is None:
                t = self._variant_thresholds.get(str(variant))
            if t is not None:
                return t
        return self._threshold

    def _count_drop(self, reason: str) -> None:
        with self._stats_lock:
            self._delta["dropped"] += 1
            self.counters["dropped"] += 1
        self._safe_metric(self._metrics.judge_dropped, self.evaluator, reason)
        if not self._is_shutdown:
            self._worker.ensure_started()

    def _count_skip(self, reason: str) -> None:
        with self._stats_lock:
            self._delta[reason] += 1
            self.counters["skipped_" + reason] += 1
        self._safe_metric(self._metrics.judge_skipped, self.evaluator, reason)
        self._worker.ensure_started()

    def _safe_metric(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001
            self.errors.record("metrics_sink", exc)

    # --- worker thread ------------------------------------------------------------------------------

    def _process(self, span: ReadableSpan) -> None:
        ctx = span.context
        d = span.attributes or {}
        call = semconv.normalize(d, name=span.name, trace_id=ctx.trace_id, span_id=ctx.span_id,
                                 start_time_unix_nano=span.start_time, end_time_unix_nano=span.end_time,
                                 include_embeddings=self._include_embeddings)
        if call is None:
            return
        for outer in self._outer_spans.pop(ctx.span_id, None) or ():
            other = semconv.normalize_span(outer, self._include_embeddings)
            if other is not None:
                call = semconv.merge_call(call, other)
        if not semconv.has_text(call):  # "not judged: no text": counted, never scored
            with self._stats_lock:
                self._delta["no_text"] += 1
                self.counters["skipped_no_text"] += 1
            self._safe_metric(self._metrics.judge_skipped, self.evaluator, "no_text")
            return
        try:
            if self._inline:  # a judge that declares itself fast and I/O-free skips the runner hop
                result = coerce_result(self._judge(call))
            else:
                result = coerce_result(self._caller.call(self._judge, call, self._timeout))
        except JudgeCallTimeout as exc:
            result = JudgeResult(None, error="timeout", explanation=str(exc))
        except JudgeHung as exc:
            result = JudgeResult(None, error="judge_hung", explanation=str(exc))
        except Exception as exc:  # noqa: BLE001 - a judge that raises is an error record
            result = JudgeResult(None, error=type(exc).__name__, explanation=str(exc)[:300] or None)
        cost = result.cost_usd if isinstance(result.cost_usd, (int, float)) and result.cost_usd >= 0 else None
        with self._stats_lock:
            self.counters["sampled"] += 1
            if result.error:
                self.counters["errors"] += 1
            else:
                self.counters["judged"] += 1
            if cost:
                self.counters["cost_usd"] += cost
        self._safe_metric(self._metrics.judge_sampled, self.evaluator)
        if result.error:
            self._safe_metric(self._metrics.judge_error, self.evaluator, result.error)
        if cost:
            if self._budget is not None:
                self._budget.record_cost(cost)
            self._safe_metric(self._metrics.judge_cost, self.evaluator, cost)
        extra: dict[str, Any] = {}
        if cost is not None:
            extra[semconv.JUDGE_COST_USD] = float(cost)
        response_id = d.get("gen_ai.response.id")
        if response_id is not None:
            extra["gen_ai.response.id"] = response_id
        experiment = {k: d[k] for k in _feedback.EXPERIMENT_KEYS if k in d} or None
        label = result.label if isinstance(result.label, str) else None
        explanation = result.explanation if isinstance(result.explanation, str) else None
        core = _feedback.evaluation_attributes(self.evaluator, result.score, label, explanation, self._source)
        parent = SpanContext(ctx.trace_id, ctx.span_id, is_remote=True, trace_flags=ctx.trace_flags,
                             trace_state=ctx.trace_state)
        _feedback.emit_span(parent, core, extra, experiment, error_type=result.error,
                            tracer_provider=self._tracer_provider)

    def _tick(self) -> None:
        self._emit_stats(force=False)

    def _emit_stats(self, force: bool) -> None:
        now = time.monotonic()
        with self._stats_lock:
            if not force and now - self._last_stats < self._stats_interval:
                return
            delta = self._delta
            if not (delta["dropped"] or delta["rate"] or delta["cost"] or delta["no_text"]):
                return
            self._delta = {"dropped": 0, "rate": 0, "cost": 0, "no_text": 0}
            self._last_stats = now
            self.counters["stats_spans"] += 1
        try:
            tracer = _feedback.get_tracer(self._tracer_provider)
            tracer.start_span(semconv.JUDGE_STATS_SPAN, attributes={
                semconv.JUDGE_EVALUATOR: self.evaluator,
                semconv.JUDGE_DROPPED: delta["dropped"],
                semconv.JUDGE_SKIPPED_RATE: delta["rate"],
                semconv.JUDGE_SKIPPED_COST: delta["cost"],
                semconv.JUDGE_SKIPPED_NO_TEXT: delta["no_text"],
            }).end()
        except Exception as exc:  # noqa: BLE001
            self.errors.record("stats_span", exc)

    # --- lifecycle ----------------------------------------------------------------------------------

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Wait for queued judge work (at most `timeout_millis`), then emit pending stats. Never raises."""
        try:
            ok = self._worker.flush(max(0, timeout_millis) / 1000.0)
            self._emit_stats(force=True)
            return ok
        except Exception as exc:  # noqa: BLE001
            self.errors.record("force_flush", exc)
            return False

    def shutdown(self) -> None:
        """Drain judge work within `shutdown_timeout_millis`, count the rest as dropped. Idempotent."""
        if self._is_shutdown:
            return
        self._is_shutdown = True
        try:
            dropped = self._worker.close(self._shutdown_timeout)
            for _ in range(dropped):
                self._count_drop("shutdown")
            self._emit_stats(force=True)
            self._caller.close()
        except Exception as exc:  # noqa: BLE001
            self.errors.record("shutdown", exc)

    def _after_fork(self) -> None:
        # Locks held by the parent's threads at fork time would never be released in the child.
        self._stats_lock = threading.Lock()
        self.errors._lock = threading.Lock()
        self._caller = JudgeCaller()
        self._delta = {"dropped": 0, "rate": 0, "cost": 0, "no_text": 0}
        self._worker.after_fork_in_child()
        if self._budget is not None:
            self._budget = JudgeBudget(*self._budget_args)


def _mark_judged(span: ReadableSpan) -> bool:
    """Stamp `llm_eval.judge.sampled=True` on an ended span the judge worker is about to get, so a
    sidecar downstream does not judge the call again. App thread, O(1), never raises.

    The span's attributes are frozen at end, but the exporter's BatchSpanProcessor (registered
    after this processor) has not seen the span yet: the mark goes into the same attribute dict
    it exports, unless that dict is full (then the span is exported unmarked). True when marked.
    """
    try:
        attrs = span._attributes
        d = attrs._dict
        maxlen = getattr(attrs, "maxlen", None)
        if maxlen is not None and len(d) >= maxlen:
            return False
        d[semconv.JUDGE_SAMPLED] = True
        return True
    except Exception:  # noqa: BLE001 - an unknown attributes type: export unmarked
        return False


def _unmark_judged(span: ReadableSpan) -> None:
    try:
        span._attributes._dict.pop(semconv.JUDGE_SAMPLED, None)
    except Exception:  # noqa: BLE001
        pass
