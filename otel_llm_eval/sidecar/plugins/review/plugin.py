"""Human review as a sidecar plugin: sampling into a review queue, the labeling API and page,
label metrics, judge-human agreement, and labels as `human` evaluations of the reviewed call.

Threads (see plugins.py): `on_call`/`on_evaluation` on the ingest worker (O(1), never raise),
`flush` on the state thread, HTTP handlers on the server's worker threads. One lock guards the
in-memory state; it is held for short, I/O-free sections only.

Memory is bounded: pending queue (`max_pending`), calls waiting for a judge score
(`sampling`-independent `judge_wait_max_calls`), sampler reservoirs, label facts (retention).
Everything dropped is counted and shown on `GET /v1/review/summary`.

Persistence: new items, labels, skips and judge-score updates are written by `flush` (so a crash
loses at most one flush interval), restored by `load`. Text is PII-redacted before it is stored.

Helpers live next door: the config checks and text rule (settings), label validation (labeling),
the evaluation record of a label and its hand-over to the core (feedback), the label counters and
/metrics families (metrics); this module keeps the review state, its lock and the hooks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Iterable, Mapping

from .... import semconv
from ....records import review_labels as store
from .. import CallRecord, CallSummarizer, EvaluationRecord, SidecarPlugin
from .analysis import LabelFacts, summarize
from .feedback import MAX_UNSENT_EVALUATIONS, EvaluationFeedback, label_evaluation
from .labeling import (COMMENT_MAX_CHARS, CORRECTED_MAX_CHARS, DEFAULT_ISSUES, LABEL_BODY_MAX_BYTES,
                       REVIEWER_MAX_CHARS, LabelError, issue_id, issue_table, item_id_for,
                       validate_label)
from .metrics import LabelCounters, families, snapshot
from .page import STATIC_FILES, static_text
from .sampling import (Candidate, ReviewSampler, SamplingConfig, classify, low_score_candidate,
                       validation_candidate)
from .settings import check_section, clean_text, merge

log = logging.getLogger(__name__)

CONFIG_DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "sampling": SamplingConfig().as_dict(),
    "issues": [],                  # extra issue names shown on the page next to DEFAULT_ISSUES
    "redact_pii": True,
    "redact_kinds": ["email", "card", "phone"],
    "retention_days": 30.0,        # items (and their labels) older than this are deleted
    "max_pending": 1000,           # queue bound; admissions beyond it are dropped and counted
    "max_text_chars": 8000,        # prompt/completion/corrected answer truncated to this
    "judge_wait_seconds": 600.0,   # how long a call can still be picked for a low judge score
    "judge_wait_max_calls": 2000,  # bound on calls kept for that
    "judge_evaluator": None,       # evaluation name whose score is "the judge"; None: any judge source (llm_judge, code)
    "pass_quality": 3,             # human quality >= this is a pass (failure rate, kappa)
    "judge_pass_score": 3.0,       # judge score >= this is a pass (kappa)
    "label_evaluation_name": "human_quality",
}


def review_item(sampling: SamplingConfig, record: CallRecord) -> tuple | None:
    """What review keeps of a call: (item id, payload, sampling decision, raw stratum, wait for
    a judge score?, service as given), or None when no strategy and no judge wait wants it.
    Pure: it runs per call in `ReviewPlugin.on_call` and in ReviewCallSummarizer."""
    call = record.call
    if not call.trace_id:
        return None
    key = item_id_for(call.trace_id, call.span_id)
    confidence = None
    attr = sampling.confidence_attribute
    if attr:
        try:
            raw = record.attributes.get(attr)
            confidence = float(raw) if raw is not None else None
        except (TypeError, ValueError):
            confidence = None
    decision = classify(sampling, call.trace_id, failed_checks=record.failed_checks,
                        error=record.error, completion=call.completion, confidence=confidence)
    wants_judge = sampling.low_judge_score is not None or bool(sampling.validation_rate)
    if decision is None and not wants_judge:
        return None
    experiments = [[e.id, e.variant] for e in record.experiments]
    variant = call.variant or (record.experiments[-1].variant if record.experiments else None)
    experiment = call.experiment or (record.experiments[-1].id if record.experiments else None)
    strat_key = sampling.stratify_by
    raw_stratum = None
    if strat_key in ("variant", "model", "service"):
        raw_stratum = {"variant": variant, "model": call.model, "service": record.service}[strat_key]
    elif strat_key:
        v = record.attributes.get(strat_key)
        raw_stratum = None if v is None else str(v)
    payload = {
        "id": key, "trace_id": call.trace_id, "span_id": call.span_id,
        "service": record.service or "unknown", "model": call.model, "variant": variant,
        "experiment": experiment, "experiments": experiments,
        "prompt": call.prompt, "completion": call.completion,
        "failed_checks": list(record.failed_checks), "judge_score": None,
        "created_unix": record.end_time_unix_nano / 1e9 if record.end_time_unix_nano else None,
    }
    return (key, payload, decision, raw_stratum, wants_judge, record.service)


class ReviewCallSummarizer(CallSummarizer):
    """`ReviewPlugin.on_call`'s per-call part (sampling decision, item payload) per batch, where
    the spans are decoded; `ReviewPlugin.on_call_summary` admits the items."""

    def __init__(self, config: Mapping[str, Any]):
        super().__init__(config)
        cfg = merge(CONFIG_DEFAULTS, config)
        self.enabled = bool(cfg.get("enabled", True))
        self.sampling = SamplingConfig.from_mapping(cfg["sampling"])
        self.items: list[tuple] = []

    def add(self, record: CallRecord) -> None:
        if self.enabled:
            item = review_item(self.sampling, record)
            if item is not None:
                self.items.append(item)

    def result(self) -> Any:
        out, self.items = self.items, []
        return out or None


class ReviewPlugin(SidecarPlugin):
    name = "review"
    CONFIG_DEFAULTS = CONFIG_DEFAULTS
    summarizer = ReviewCallSummarizer

    def __init__(self) -> None:
        self.ctx: Any = None
        self._lock = threading.Lock()
        self._configure({})
        self._pending: dict[str, dict[str, Any]] = {}
        self._labeled: dict[str, LabelFacts] = {}
        self._dirty: dict[str, dict[str, Any]] = {}      # id -> item to write at next flush
        self._waiting: OrderedDict[str, dict[str, Any]] = OrderedDict()  # calls awaiting a judge
        self._by_trace: dict[str, str] = {}              # trace id -> item id (of _waiting)
        self.counters = LabelCounters()                  # label metrics (under _lock)
        self._dropped: dict[str, int] = {"queue_full": 0, "judge_wait": 0, "errors": 0,
                                         "evaluations": 0}
        self.feedback = EvaluationFeedback(lambda: self.ctx, self._lock, self._dropped)
        self._db_path: str | None = None
        self._last_prune = 0.0
        self.sampler = ReviewSampler(self.sampling, self._now())

    # --- configuration -------------------------------------------------------------------------

    def _configure(self, section: Mapping[str, Any] | None) -> None:
        """Merge and validate the `review` section; ValueError naming the key when it is wrong."""
        cfg = merge(CONFIG_DEFAULTS, section)
        check_section(cfg, CONFIG_DEFAULTS)
        self.cfg = cfg
        self.sampling = SamplingConfig.from_mapping(cfg["sampling"])
        self.issues: dict[str, str] = issue_table(cfg.get("issues") or [])
        self.pass_quality = int(cfg["pass_quality"])
        self.judge_pass_score = float(cfg["judge_pass_score"])
        self.retention_seconds = float(cfg["retention_days"]) * 86400.0
        self.max_pending = int(cfg["max_pending"])
        self.max_text_chars = int(cfg["max_text_chars"])
        self.redact_kinds = tuple(cfg.get("redact_kinds") or ())

    def attach(self, ctx: Any) -> None:
        self.ctx = ctx
        config = getattr(ctx, "config", None) or {}
        self._configure(config.get(self.name) if isinstance(config, Mapping) else None)
        self.sampler = ReviewSampler(self.sampling, self._now())
        self._db_path = getattr(ctx, "db_path", None)

    def _now(self) -> float:
        now = getattr(self.ctx, "now", None)
        return float(now()) if callable(now) else time.time()

    # --- text handling ---------------------------------------------------------------------------

    def _clean(self, text: Any, limit: int | None = None) -> str | None:
        """Truncate then redact (redaction is what makes storing the text acceptable)."""
        kinds = self.redact_kinds if self.cfg.get("redact_pii", True) else ()
        return clean_text(text, limit or self.max_text_chars, kinds)

    # --- ingest hooks (ingest thread) -------------------------------------------------------------

    def _guarded(self, hook: str, handler: Any, arg: Any) -> None:
        """Run an ingest hook's handler when review is enabled; never raise into ingest: a
        failure is counted (dropped.errors) and logged at debug level instead."""
        if not self.cfg.get("enabled", True):
            return
        try:
            handler(arg)
        except Exception:
            self._dropped["errors"] += 1
            log.debug("review %s failed", hook, exc_info=True)

    def on_call(self, record: CallRecord) -> None:
        self._guarded("on_call", self._on_call, record)

    def _on_call(self, record: CallRecord) -> None:
        item = review_item(self.sampling, record)
        if item is not None:
            self._admit_many([item], self._now())

    def on_call_summary(self, summary: Any) -> None:
        """Admit the items a ReviewCallSummarizer found in one batch (ingest thread); their
        service is the raw one, bounded here (the core already counted its overflow)."""
        self._guarded("on_call_summary", self._admit_summary, summary)

    def _admit_summary(self, summary: Any) -> None:
        bound = getattr(self.ctx, "bound", None)
        names: dict[str, str] = {}
        now = self._now()
        items = []
        for item in summary:
            raw = item[5]
            svc = names.get(raw)
            if svc is None:
                svc = names[raw] = bound("service", raw, 0) if bound is not None and raw else raw
            item[1]["service"] = svc or "unknown"
            if self.sampling.stratify_by == "service":
                item = (item[0], item[1], item[2], svc, item[4], svc)
            items.append(item)
        self._admit_many(items, now)

    def _admit_many(self, items: list[tuple], now: float) -> None:
        """Queue candidates and remember calls awaiting a judge score; the judge-wait bound is
        enforced once after the batch (the same calls survive as one at a time: the oldest go)."""
        waiting = self._waiting
        remembered = False
        with self._lock:
            for key, payload, decision, raw_stratum, wants_judge, _ in items:
                if key in self._pending or key in self._labeled:
                    continue
                stratum = self.sampler.stratum_of(raw_stratum)
                payload["stratum"] = stratum
                if wants_judge:
                    payload["_seen_unix"] = now
                    waiting[key] = payload
                    waiting.move_to_end(key)
                    self._by_trace[payload["trace_id"]] = key
                    remembered = True
                if decision is not None:
                    reason, priority = decision
                    self.sampler.offer(Candidate(priority, key, reason, stratum, payload))
            if remembered:
                self._trim_waiting(now)

    def _trim_waiting(self, now: float) -> None:
        """Forget calls past judge_wait_seconds, and the oldest past judge_wait_max_calls (counted)."""
        cutoff = now - float(self.cfg["judge_wait_seconds"])
        limit = int(self.cfg["judge_wait_max_calls"])
        while self._waiting:
            oldest_key, oldest = next(iter(self._waiting.items()))
            if len(self._waiting) <= limit and oldest["_seen_unix"] >= cutoff:
                break
            self._waiting.popitem(last=False)
            if self._by_trace.get(oldest["trace_id"]) == oldest_key:
                del self._by_trace[oldest["trace_id"]]
            if len(self._waiting) >= limit:
                self._dropped["judge_wait"] += 1

    def on_evaluation(self, record: EvaluationRecord) -> None:
        self._guarded("on_evaluation", self._on_evaluation, record)

    def _on_evaluation(self, record: EvaluationRecord) -> None:
        if record.source not in semconv.JUDGE_SOURCES or record.score is None or not record.trace_id:
            return
        wanted = self.cfg.get("judge_evaluator")
        if wanted and record.name != wanted:
            return
        score = float(record.score)
        with self._lock:
            if record.span_id:
                key = item_id_for(record.trace_id, record.span_id)
            else:
                key = self._by_trace.get(record.trace_id) or item_id_for(record.trace_id, None)
            if key in self._pending:
                self._pending[key]["judge_score"] = score
                self._dirty[key] = self._pending[key]
                return
            facts = self._labeled.get(key)
            if facts is not None:
                # A judge score that arrives after the label still counts for agreement.
                self._labeled[key] = _replace_score(facts, score)
                self._dirty.setdefault(key, {"id": key, "_judge_only": True})["judge_score"] = score
                return
            payload = self._waiting.get(key)
            if payload is None:
                return
            payload["judge_score"] = score
            decision = low_score_candidate(self.sampling, score)
            if decision is None:  # layer 3 of the cascade: a sample of what the judge passed
                decision = validation_candidate(self.sampling, record.trace_id, score, record.label,
                                                self.judge_pass_score)
            if decision is not None and not self.sampler.contains(key):
                reason, priority = decision
                self.sampler.offer(Candidate(priority, key, reason, payload["stratum"], payload))

    # --- state (state thread) -----------------------------------------------------------------

    def load(self, conn: Any) -> None:
        store.create_tables(conn)
        try:  # the file GET /v1/review/labels reads (hosts without ctx.db_path included)
            for _, name, path in conn.execute("PRAGMA database_list").fetchall():
                if name == "main" and path:
                    self._db_path = path
        except Exception:
            pass
        now = self._now()
        since = now - self.retention_seconds
        pending = store.load_items(conn, "pending", since)
        labeled = store.load_items(conn, "labeled", since)
        counters = store.get_state(conn, "counters") or {}
        daily = store.get_state(conn, "daily") or {}
        with self._lock:
            for item in pending[-self.max_pending:]:
                self._pending[item["id"]] = item
            for item in labeled:
                self._labeled[item["id"]] = _facts(item)
            self.counters.restore(counters)
            for k, v in (counters.get("dropped") or {}).items():
                self._dropped[k] = int(v)
            for k, v in (counters.get("sampler_dropped") or {}).items():
                self.sampler.dropped[k] = int(v)
            if daily.get("day") == self.sampler.day:
                self.sampler.admitted_today = int(daily.get("admitted", 0))

    def flush(self, conn: Any) -> None:
        now = self._now()
        self._admit_due(now)
        with self._lock:
            dirty, self._dirty = self._dirty, {}
            counters = {
                **self.counters.state(),
                "dropped": dict(self._dropped),
                "sampler_dropped": dict(self.sampler.dropped),
            }
            daily = {"day": self.sampler.day, "admitted": self.sampler.admitted_today}
            prune = now - self._last_prune >= 60.0
            if prune:
                self._last_prune = now
                self._prune_memory(now)
        try:
            full = [i for i in dirty.values() if not i.get("_judge_only")]
            store.upsert_items(conn, full)
            for item in dirty.values():
                if item.get("_judge_only"):
                    conn.execute("UPDATE review_items SET judge_score = ? WHERE id = ?",
                                 (item["judge_score"], item["id"]))
            store.put_state(conn, "counters", counters)
            store.put_state(conn, "daily", daily)
            if prune:
                store.delete_older_than(conn, now - self.retention_seconds)
        except Exception:
            # Put the writes back so the next flush retries them, then let the core count it.
            with self._lock:
                for k, v in dirty.items():
                    self._dirty.setdefault(k, v)
            raise

    def _prune_memory(self, now: float) -> None:
        cutoff = now - self.retention_seconds
        for k in [k for k, i in self._pending.items() if (i.get("created_unix") or now) < cutoff]:
            del self._pending[k]
        for k in [k for k, f in self._labeled.items() if f.labeled_unix < cutoff]:
            del self._labeled[k]

    def tick(self, now: float) -> None:
        self._admit_due(now)
        # Retried here, never in flush: flush runs inside the core's transaction and under its
        # state lock, where handing a record to the core's journal could deadlock or commit early.
        if self.feedback.unsent:
            self.feedback.send()

    def _admit_due(self, now: float) -> None:
        """Close the sampling window when due: redact and enqueue what the sampler admits."""
        with self._lock:
            if not self.sampler.due(now):
                return
            free = max(0, self.max_pending - len(self._pending))
            result = self.sampler.drain(now, capacity=free)
            self._dropped["queue_full"] += result.dropped.get("queue_full", 0)
            admitted = [c for c in result.admitted if c.key not in self._pending]
        items = []
        for cand in admitted:  # redaction outside the lock: it is the only costly step
            p = cand.payload
            items.append({
                **{k: v for k, v in p.items() if not k.startswith("_")},
                "prompt": self._clean(p.get("prompt")),
                "completion": self._clean(p.get("completion")),
                "reason": cand.reason, "stratum": cand.stratum,
                "created_unix": p.get("created_unix") or now,
                "status": "pending", "skips": 0,
            })
        with self._lock:
            for item in items:
                if item["id"] in self._labeled:
                    continue
                self._pending[item["id"]] = item
                self._dirty[item["id"]] = item
                self._waiting.pop(item["id"], None)

    # --- API operations (HTTP threads) ----------------------------------------------------------

    def queue(self, limit: int = 10) -> list[dict[str, Any]]:
        """The next pending items: fewest skips first, then oldest."""
        with self._lock:
            items = sorted(self._pending.values(),
                           key=lambda i: (i.get("skips", 0), i.get("created_unix") or 0, i["id"]))
            return [_public(i) for i in items[: max(0, limit)]]

    def depth(self) -> int:
        with self._lock:
            return len(self._pending)

    def skip(self, item_id: str) -> dict[str, Any]:
        with self._lock:
            item = self._pending.get(item_id)
            if item is None:
                raise LabelError(404 if item_id not in self._labeled else 409,
                                 f"no pending review item {item_id!r}")
            item["skips"] = int(item.get("skips", 0)) + 1
            self._dirty[item_id] = item
            return {"id": item_id, "skips": item["skips"]}

    def validate_label(self, body: Any) -> dict[str, Any]:
        """Check a label body; LabelError(400) with the reason when it is not acceptable."""
        return validate_label(body, self.issues)

    def label(self, item_id: str, body: Any) -> dict[str, Any]:
        """Apply a label: 400 bad body, 404 unknown id, 409 already labeled. Returns the item."""
        lab = self.validate_label(body)
        comment = self._clean(lab["comment"], COMMENT_MAX_CHARS)
        corrected = self._clean(lab["corrected_answer"], CORRECTED_MAX_CHARS)
        reviewer = self._clean(lab["reviewer"], REVIEWER_MAX_CHARS)  # often an email address: redacted like any text
        now = self._now()
        with self._lock:
            item = self._pending.get(item_id)
            if item is None:
                if item_id in self._labeled:
                    raise LabelError(409, f"review item {item_id!r} is already labeled")
                raise LabelError(404, f"no review item {item_id!r}")
            del self._pending[item_id]
            item.update(status="labeled", quality=lab["quality"], issues=lab["issues"],
                        comment=comment, corrected_answer=corrected, reviewer=reviewer,
                        labeled_unix=now)
            self._dirty[item_id] = item
            self._labeled[item_id] = _facts(item)
            self.counters.count(item.get("service") or "unknown", item.get("model") or "unknown",
                                item.get("variant") or "none", lab["quality"], lab["issues"])
            result = _public(item)
        name = str(self.cfg.get("label_evaluation_name") or "human_quality")
        self.feedback.emit(label_evaluation(item, lab["quality"], comment, now, name=name,
                                            pass_quality=self.pass_quality))
        return result

    def persist(self) -> bool:
        """Make what was just changed (a label) durable now: True once it is committed to the
        state file (with its evaluation record journaled in the same transaction)."""
        flush_now = getattr(self.ctx, "flush_now", None)
        return bool(flush_now()) if callable(flush_now) else True

    def labels(self, since_unix: float | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Labeled items in the export shape: flushed ones from the SQLite file plus unflushed."""
        with self._lock:
            unflushed = {k: store.label_record(v) for k, v in self._dirty.items()
                         if v.get("status") == "labeled"}
        rows: dict[str, dict[str, Any]] = {}
        if self._db_path:
            try:
                for r in store.read_labels(self._db_path, since_unix=since_unix, limit=limit):
                    rows[r["id"]] = r
            except Exception:
                log.warning("review: could not read labels from %s", self._db_path, exc_info=True)
        for k, r in unflushed.items():
            if since_unix is None or (r.get("labeled_unix") or 0) > since_unix:
                rows[k] = r
        out = sorted(rows.values(), key=lambda r: (r.get("labeled_unix") or 0, r["id"]))
        return out[: max(0, limit)]

    def summary(self) -> dict[str, Any]:
        with self._lock:
            facts = list(self._labeled.values())
            depth = len(self._pending)
            by_reason: dict[str, int] = {}
            for item in self._pending.values():
                by_reason[item.get("reason") or "unknown"] = by_reason.get(item.get("reason") or "unknown", 0) + 1
            sampling = {
                "config": self.sampling.as_dict(),
                "admitted_today": self.sampler.admitted_today,
                "in_reservoir": self.sampler.pending(),
                "dropped": dict(self.sampler.dropped),
            }
            dropped = dict(self._dropped)
        out = {"queue_depth": depth, "queue_by_reason": by_reason, "pass_quality": self.pass_quality,
               "judge_pass_score": self.judge_pass_score, "sampling": sampling, "dropped": dropped,
               "issues": [{"id": k, "name": v} for k, v in self.issues.items()]}
        out.update(summarize(facts, self.pass_quality, self.judge_pass_score))
        return out

    # --- /metrics --------------------------------------------------------------------------------

    def collect(self) -> Iterable[Any]:
        with self._lock:
            snap = snapshot(self._pending.values(), self.counters, self._labeled.values())
        yield from families(self.ctx.family, snap, self.pass_quality, self.judge_pass_score)

    # --- HTTP -------------------------------------------------------------------------------------

    def router(self) -> Any:
        from .api import build_router

        return build_router(self)


def _facts(item: Mapping[str, Any]) -> LabelFacts:
    return LabelFacts(
        item_id=item["id"], service=item.get("service") or "unknown",
        model=item.get("model") or "unknown", variant=item.get("variant") or "none",
        reason=item.get("reason") or "unknown", quality=int(item["quality"]),
        issues=tuple(item.get("issues") or ()),
        judge_score=item.get("judge_score"), labeled_unix=float(item.get("labeled_unix") or 0),
    )


def _replace_score(f: LabelFacts, score: float) -> LabelFacts:
    from dataclasses import replace

    return replace(f, judge_score=score)


_PUBLIC = ("id", "trace_id", "span_id", "service", "model", "variant", "experiment", "prompt",
           "completion", "failed_checks", "judge_score", "reason", "created_unix", "skips",
           "status", "quality", "issues", "comment", "corrected_answer", "labeled_unix")


def _public(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: item.get(k) for k in _PUBLIC}


def read_labels(db_path: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Labeled items from a sidecar SQLite file (see otel_llm_eval.records.review_labels.read_labels)."""
    return store.read_labels(db_path, **kwargs)


# LABEL_BODY_MAX_BYTES, MAX_UNSENT_EVALUATIONS, STATIC_FILES and static_text live in labeling.py,
# feedback.py and page.py; they stay importable from here for the old module path
# otel_llm_eval.sidecar.review (see sidecar/_moved.py).
__all__ = ["ReviewPlugin", "read_labels", "CONFIG_DEFAULTS", "DEFAULT_ISSUES", "LabelError",
           "issue_id", "item_id_for", "LABEL_BODY_MAX_BYTES", "MAX_UNSENT_EVALUATIONS", "STATIC_FILES",
           "static_text"]
