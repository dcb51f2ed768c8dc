"""The sidecar judge (layer 2 of the evaluation cascade) and the cascade's per-layer accounting.

For apps in any language: the sidecar already receives every LLM call's text over OTLP, so it can
judge a sample itself. The cascade, per call:

1. layer 1, checks (the core, 100% of outputs): counted here as pass (no failed check, no error)
   or fail.
2. layer 2, judge: a call is a candidate when it passed layer 1 (`sample_from: all` drops that
   condition), carries an answer (`call.completion` not empty; else skipped, reason `no_text`),
   was not already judged in the app (span attribute `llm_eval.judge.sampled`; reason
   `app_judged`) and has a trace id. It is judged when the salted trace-id fraction is below its
   rate: the experiments plugin's power-aware plan for its experiment variant
   (`GET /v1/judge-rates`), else `default_rate`, never above `max_rate`. Within the budgets
   (`budget_usd_per_hour`, `budget_calls_per_minute`; reasons `budget_usd`, `budget_calls`) the
   call goes on a bounded queue (full: reason `queue_full`) that `workers` threads drain, calling
   every configured evaluator. Results go through `ctx.submit_evaluation` with source
   `llm_judge` (or the judge's own source): journaled, joined to the call, its experiment and
   variant, counted exactly once like an evaluation span from an app.
3. layer 3, humans: the review plugin samples a `validation` share of judge-passed calls
   (`review.sampling.validation_rate`); labels come back as `human` evaluations, priced at
   `human_usd_per_label`.

Threads: the summarizer runs where spans are decoded (pure); `on_call_summary` and
`on_evaluation` on the ingest thread (O(batch), no I/O, never raise, never block: the queue is
bounded); judges on this plugin's own worker threads; `tick` on the analysis thread (copies the
rate plan); `flush`/`load` on the state thread; `collect` and the route on HTTP threads. One lock
guards the counters.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import OrderedDict
from typing import Any, Iterable, Mapping

from .... import semconv
from ....judges.builtin import JudgeResult, coerce_result
from ....judges.config import EVALUATOR_DEFAULTS, JudgeConfigError, build_judge, evaluator_config, judge_source
from ...config import ConfigError
from .. import CallRecord, CallSummarizer, EvaluationRecord, SidecarPlugin
from ...cascade import judge_passed, trace_fraction
from .budget import Budget
from .pool import JudgePool

log = logging.getLogger(__name__)

LAYERS = ("checks", "judge", "human")
SKIP_REASONS = ("failed_checks", "no_text", "app_judged", "no_trace_id", "budget_usd", "budget_calls",
                "queue_full", "shutdown")
#: Attribute on evaluations this plugin made (the app's judge does not set it).
RUNNER_ATTRIBUTE = "llm_eval.judge.runner"

CONFIG_DEFAULTS: dict[str, Any] = {
    "enabled": False,                  # off by default: judging costs money
    "evaluators": [dict(EVALUATOR_DEFAULTS)],  # each: name, kind, rubric, model, base_url, api_key_env, prices, ...
    "sample_from": "passed_checks",    # passed_checks | all
    "default_rate": 0.1,               # for calls without an experiment, or before the planner has a rate
    "use_planner": True,               # per-variant rates from the experiments plugin's judge sample-rate plan
    "max_rate": 1.0,                   # no rate above this (also bounds what the summarizer passes on)
    "salt": "judge",                   # trace-id sampling salt (independent of review and the app's draw)
    "budget_usd_per_hour": 0.0,        # 0: no limit
    "budget_calls_per_minute": 0,      # judge calls (one per evaluator); 0: no limit
    "reserve_usd_per_call": 0.0,       # held per judge call until its cost is known; 0: the largest seen
    "workers": 4,                      # judge threads
    "queue_max": 1000,                 # calls waiting for a judge; full: dropped and counted
    "judge_pass_score": 3.0,           # a judge score >= this passes when the result has no pass/fail label
    "human_pass_score": 3.0,           # the same for human labels
    "checks_usd_per_output": 0.0,      # what layer 1 costs per output (usually nothing)
    "human_usd_per_label": 0.0,        # what one human label costs (the seed: $1-10)
    "human_budget_usd_per_day": 0.0,   # 0: no budget (reported and alerted on, labels are not refused)
    "recent_max_calls": 100_000,       # calls remembered so a call is judged once (re-sent spans)
}


def _section(config: Mapping[str, Any] | None) -> dict[str, Any]:
    cfg = {**CONFIG_DEFAULTS, **dict(config or {})}
    unknown = sorted(set(cfg) - set(CONFIG_DEFAULTS))
    if unknown:
        raise ConfigError(f"judge: unknown keys {unknown}; known: {sorted(CONFIG_DEFAULTS)}")
    return cfg


def _check(cfg: Mapping[str, Any]) -> None:
    """ConfigError naming the key for a `judge` section the plugin cannot run with."""
    def number(key: str, lo: float, hi: float = math.inf, integer: bool = False) -> None:
        v = cfg[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi or (integer and not isinstance(v, int)):
            kind = "an integer" if integer else "a number"
            raise ConfigError(f"judge.{key} must be {kind} in [{lo:g}, {hi:g}], got {v!r}")
    for key in ("default_rate", "max_rate"):
        number(key, 0.0, 1.0)
    for key in ("budget_usd_per_hour", "reserve_usd_per_call", "checks_usd_per_output", "human_usd_per_label",
                "human_budget_usd_per_day", "judge_pass_score", "human_pass_score"):
        number(key, 0.0)
    number("budget_calls_per_minute", 0, integer=True)
    number("workers", 1, 64, integer=True)
    number("queue_max", 1, integer=True)
    number("recent_max_calls", 0, integer=True)
    if cfg["sample_from"] not in ("passed_checks", "all"):
        raise ConfigError(f"judge.sample_from must be passed_checks or all, got {cfg['sample_from']!r}")
    if not isinstance(cfg["evaluators"], list) or not cfg["evaluators"]:
        raise ConfigError("judge.evaluators must be a non-empty list of evaluators")
    names = set()
    for i, spec in enumerate(cfg["evaluators"]):
        try:
            ev = evaluator_config(spec, f"judge.evaluators[{i}]")
        except JudgeConfigError as exc:
            raise ConfigError(str(exc)) from None
        if ev["name"] in names:
            raise ConfigError(f"judge.evaluators[{i}].name {ev['name']!r} is used twice")
        names.add(ev["name"])


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true") or value == 1


class JudgeCallSummarizer(CallSummarizer):
    """Per batch, where spans are decoded: layer-1 outcomes per service, reasons calls cannot be
    judged, and the candidates (calls whose trace-id fraction is below `max_rate`) with their
    text. Pure; the summary is `(outcomes, skips, candidates)` or None."""

    def __init__(self, config: Mapping[str, Any]):
        super().__init__(config)
        cfg = {**CONFIG_DEFAULTS, **dict(config or {})}
        self.enabled = bool(cfg["enabled"])
        self.all_calls = cfg["sample_from"] == "all"
        self.max_rate = float(cfg["max_rate"])
        self.salt = str(cfg["salt"])
        self._reset()

    def _reset(self) -> None:
        self.outcomes: dict[tuple[str, str], int] = {}
        self.skips: dict[tuple[str, str], int] = {}
        self.candidates: list[tuple] = []

    def add(self, record: CallRecord) -> None:
        passed = not record.failed_checks and not record.error
        key = (record.service, "pass" if passed else "fail")
        self.outcomes[key] = self.outcomes.get(key, 0) + 1
        if not self.enabled:
            return
        call = record.call
        if not passed and not self.all_calls:
            reason = "failed_checks"
        elif not call.completion or not call.completion.strip():
            reason = "no_text"
        elif _truthy(record.attributes.get(semconv.JUDGE_SAMPLED)):
            reason = "app_judged"
        elif not call.trace_id:
            reason = "no_trace_id"
        else:
            frac = trace_fraction(call.trace_id, self.salt)
            if frac < self.max_rate:
                inner = record.experiments[-1] if record.experiments else None
                self.candidates.append((frac, record.service, inner.id if inner else None,
                                        inner.variant if inner else None, call, record.experiments))
            return
        skey = (record.service, reason)
        self.skips[skey] = self.skips.get(skey, 0) + 1

    def result(self) -> Any:
        if not (self.outcomes or self.skips or self.candidates):
            return None
        out = (self.outcomes, self.skips, self.candidates)
        self._reset()
        return out


class JudgePlugin(SidecarPlugin):
    """Layer 2 in the sidecar plus the cascade's per-layer counts, costs and budgets."""

    name = "judge"
    CONFIG_DEFAULTS = CONFIG_DEFAULTS
    summarizer = JudgeCallSummarizer

    def __init__(self) -> None:
        self.ctx: Any = None
        self.cfg = dict(CONFIG_DEFAULTS)
        self.enabled = False
        self.judges: list[tuple[str, Any, str, float]] = []
        self.pool: JudgePool | None = None
        self.budget = Budget()
        self._lock = threading.Lock()
        self._evaluations: dict[tuple[str, str, str], int] = {}   # (service, layer, outcome)
        self._cost: dict[tuple[str, str], float] = {}              # (service, layer)
        self._skipped: dict[tuple[str, str], int] = {}             # (service, reason)
        self._human_day = (-1, 0.0)                                # (UTC day, USD of labels that day)
        self._rates: dict[str, dict[str, float]] = {}              # experiment -> variant -> rate
        self._recent: OrderedDict[tuple[str, str | None], None] = OrderedDict()
        self.judged_calls = 0                                      # calls whose judgement finished

    # --- setup ---------------------------------------------------------------------------------
    def attach(self, ctx: Any) -> None:
        """Validate the `judge` section (ConfigError) and, when enabled, build the evaluators and
        start the worker threads."""
        self.ctx = ctx
        cfg = _section((getattr(ctx, "config", None) or {}).get(self.name))
        _check(cfg)
        self.cfg = cfg
        self.enabled = bool(cfg["enabled"])
        self.budget = Budget(cfg["budget_usd_per_hour"], cfg["budget_calls_per_minute"], cfg["reserve_usd_per_call"])
        if not self.enabled:
            return
        judges = []
        for i, spec in enumerate(cfg["evaluators"]):
            ev = evaluator_config(spec, f"judge.evaluators[{i}]")
            try:
                judge = build_judge(ev, f"judge.evaluators[{i}]")
            except JudgeConfigError as exc:
                raise ConfigError(str(exc)) from None
            judges.append((ev["name"], judge, judge_source(judge), float(ev["usd_per_call"])))
        self.judges = judges
        self.pool = JudgePool(cfg["workers"], cfg["queue_max"], self._run, self._discard)
        for _, judge, _, _ in judges:
            if hasattr(judge, "_sleep"):  # backoff waits end when the sidecar stops
                judge._sleep = self.pool.stop_event.wait

    def _now(self) -> float:
        return float(self.ctx.now())

    # --- ingest thread -------------------------------------------------------------------------
    def on_call_summary(self, summary: Any) -> None:
        outcomes, skips, candidates = summary
        bound = self.ctx.bound
        per_output = float(self.cfg["checks_usd_per_output"])
        services: dict[str, str] = {}

        def svc(raw: str) -> str:
            got = services.get(raw)
            if got is None:
                got = services[raw] = bound("service", raw, 0)
            return got

        with self._lock:
            for (raw, outcome), n in outcomes.items():
                key = (svc(raw), "checks", outcome)
                self._evaluations[key] = self._evaluations.get(key, 0) + n
                if per_output:
                    ckey = (key[0], "checks")
                    self._cost[ckey] = self._cost.get(ckey, 0.0) + n * per_output
            for (raw, reason), n in skips.items():
                self._skip(svc(raw), reason, n)
        if not candidates or self.pool is None:
            return
        now = self._now()
        calls_per_judgement = len(self.judges)
        for frac, raw, exp, variant, call, experiments in candidates:
            if frac >= self._rate(exp, variant):
                continue
            key = (call.trace_id, call.span_id)
            if key in self._recent:
                continue
            service = svc(raw)
            reason, ticket = self.budget.acquire(now, calls_per_judgement)
            if ticket is None:
                with self._lock:
                    self._skip(service, reason or "budget", 1)
                continue
            self._remember(key)
            if not self.pool.submit((call, service, experiments, ticket)):
                self.budget.release(ticket, now)
                with self._lock:
                    self._skip(service, "queue_full", 1)

    def _remember(self, key: tuple[str, str | None]) -> None:
        limit = int(self.cfg["recent_max_calls"])
        if not limit:
            return
        self._recent[key] = None
        while len(self._recent) > limit:
            self._recent.popitem(last=False)

    def _skip(self, service: str, reason: str, n: int) -> None:
        """Caller holds the lock."""
        key = (service, reason)
        self._skipped[key] = self._skipped.get(key, 0) + n

    def _rate(self, experiment: str | None, variant: str | None) -> float:
        rate = None
        if experiment is not None and self.cfg["use_planner"]:
            rate = self._rates.get(experiment, {}).get(variant or "")
        if rate is None:
            rate = self.cfg["default_rate"]
        return min(float(rate), float(self.cfg["max_rate"]))

    def on_evaluation(self, record: EvaluationRecord) -> None:
        """Layers 2 and 3 from every evaluation, wherever it was made (app, sidecar, review)."""
        if record.source in semconv.JUDGE_SOURCES:
            layer, threshold = "judge", float(self.cfg["judge_pass_score"])
            cost = _cost_of(record.attributes.get(semconv.JUDGE_COST_USD))
        elif record.source == "human":
            layer, threshold = "human", float(self.cfg["human_pass_score"])
            cost = float(self.cfg["human_usd_per_label"])
        else:
            return
        passed = None if record.error else judge_passed(record.score, record.label, threshold)
        outcome = "error" if passed is None else "pass" if passed else "fail"
        service = self.ctx.bound("service", record.service or "unknown_service")
        with self._lock:
            key = (service, layer, outcome)
            self._evaluations[key] = self._evaluations.get(key, 0) + 1
            if cost:
                ckey = (service, layer)
                self._cost[ckey] = self._cost.get(ckey, 0.0) + cost
                if layer == "human":
                    day = int(self._now() // 86400)
                    d, spent = self._human_day
                    self._human_day = (day, (spent if d == day else 0.0) + cost)

    # --- judge workers ----------------------------------------------------------------------------
    def _run(self, job: tuple) -> None:
        """One call through every evaluator (a judge worker thread; blocks on the judges' HTTP)."""
        call, service, experiments, ticket = job
        total, made = 0.0, 0
        assert self.pool is not None
        for name, judge, source, usd_per_call in self.judges:
            if self.pool.stop_event.is_set():
                break
            try:
                result = coerce_result(judge(call))
            except Exception as exc:  # a judge that raises is an error record
                result = JudgeResult(None, error=type(exc).__name__, explanation=str(exc)[:300] or None)
            made += 1
            cost = result.cost_usd if isinstance(result.cost_usd, (int, float)) and not isinstance(
                result.cost_usd, bool) and result.cost_usd >= 0 else None
            if cost is None and usd_per_call:
                cost = usd_per_call
            total += cost or 0.0
            attrs: dict[str, Any] = {RUNNER_ATTRIBUTE: "sidecar"}
            if cost:
                attrs[semconv.JUDGE_COST_USD] = float(cost)
            self.ctx.submit_evaluation(EvaluationRecord(
                name=name, source=source, trace_id=call.trace_id, span_id=call.span_id,
                time_unix_nano=int(self._now() * 1e9), score=result.score,
                label=result.label if isinstance(result.label, str) else None,
                explanation=result.explanation if isinstance(result.explanation, str) else None,
                error=result.error, service=service, model=call.model, experiments=experiments,
                attributes=attrs))
        self.budget.settle(ticket, total, made)
        with self._lock:
            self.judged_calls += 1

    def _discard(self, job: tuple) -> None:
        call, service, _, ticket = job
        self.budget.release(ticket, self._now())
        with self._lock:
            self._skip(service, "shutdown", 1)

    def idle(self) -> bool:
        """No judgement queued or running (tests and the benchmark wait on this)."""
        return self.pool is None or self.pool.idle()

    # --- analysis thread ------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Copy the experiments plugin's judge sample-rate plan: {experiment: {variant: rate}}."""
        if not self.enabled or not self.cfg["use_planner"]:
            return
        getter = getattr(self.ctx, "plugin", None)
        experiments = getter("experiments") if callable(getter) else None
        results = getattr(experiments, "results", None) or {}
        rates: dict[str, dict[str, float]] = {}
        for exp_id, details in (results.get("experiments") or {}).items():
            plan = details.get("judge_sample_rate") if isinstance(details, Mapping) else None
            got = plan.get("rates") if isinstance(plan, Mapping) else None
            if isinstance(got, Mapping):
                rates[str(exp_id)] = {str(v): float(r) for v, r in got.items()
                                      if isinstance(r, (int, float)) and 0.0 <= r <= 1.0}
        self._rates = rates  # atomic swap

    def set_rates(self, rates: Mapping[str, Mapping[str, float]]) -> None:
        """Replace the per-variant rate plan (what `tick` does from the experiments plugin)."""
        self._rates = {str(e): {str(v): float(r) for v, r in m.items()} for e, m in rates.items()}

    # --- state thread ---------------------------------------------------------------------------
    def load(self, conn: Any) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS judge_cascade_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = conn.execute("SELECT value FROM judge_cascade_state WHERE key = 'counters'").fetchone()
        if row is None:
            return
        data = json.loads(row[0])
        with self._lock:
            self._evaluations = {(s, layer, o): int(n) for s, layer, o, n in data.get("evaluations", [])}
            self._cost = {(s, layer): float(v) for s, layer, v in data.get("cost", [])}
            self._skipped = {(s, r): int(n) for s, r, n in data.get("skipped", [])}
            day = data.get("human_day") or [-1, 0.0]
            self._human_day = (int(day[0]), float(day[1]))
        self.budget.restore(data.get("budget") or {})
        if self.ctx is not None:  # restored label values count against the caps again
            for s, _, _ in self._evaluations:
                self.ctx.bound("service", s, 0)

    def flush(self, conn: Any) -> None:
        with self._lock:
            data = {"evaluations": [[s, layer, o, n] for (s, layer, o), n in self._evaluations.items()],
                    "cost": [[s, layer, v] for (s, layer), v in self._cost.items()],
                    "skipped": [[s, r, n] for (s, r), n in self._skipped.items()],
                    "human_day": list(self._human_day)}
        data["budget"] = self.budget.state()
        conn.execute("INSERT OR REPLACE INTO judge_cascade_state (key, value) VALUES ('counters', ?)",
                     (json.dumps(data),))

    # --- reading --------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """The cascade as JSON (GET /v1/cascade, `otel-llm-eval cost --sidecar`)."""
        now = self._now()
        with self._lock:
            evaluations = dict(self._evaluations)
            cost = dict(self._cost)
            skipped = dict(self._skipped)
            human_day = self._human_day
        layers: dict[str, Any] = {}
        for layer in LAYERS:
            outcomes = {"pass": 0, "fail": 0, "error": 0}
            for (_, lay, o), n in evaluations.items():
                if lay == layer:
                    outcomes[o] = outcomes.get(o, 0) + n
            layers[layer] = {"evaluations": sum(outcomes.values()), "outcomes": outcomes,
                             "cost_usd": sum(v for (_, lay), v in cost.items() if lay == layer)}
        snap = self.budget.snapshot(now)
        day = int(now // 86400)
        human_spent = human_day[1] if human_day[0] == day else 0.0
        reasons: dict[str, int] = {}
        for (_, r), n in skipped.items():
            reasons[r] = reasons.get(r, 0) + n
        return {
            "enabled": self.enabled,
            "evaluators": [name for name, _, _, _ in self.judges],
            "layers": layers,
            "funnel": {"outputs": layers["checks"]["evaluations"],
                       "passed_checks": layers["checks"]["outcomes"]["pass"],
                       "judged": layers["judge"]["evaluations"],
                       "passed_judge": layers["judge"]["outcomes"]["pass"],
                       "reviewed": layers["human"]["evaluations"]},
            "skipped": reasons,
            "budgets": {
                "judge": {"usd_per_hour": self.cfg["budget_usd_per_hour"],
                          "calls_per_minute": self.cfg["budget_calls_per_minute"],
                          "spent_usd_this_hour": snap["spent_usd"], "reserved_usd": snap["reserved_usd"],
                          "calls_this_minute": int(snap["calls"]), "exhausted": bool(snap["exhausted"])},
                "human": {"usd_per_day": self.cfg["human_budget_usd_per_day"],
                          "usd_per_label": self.cfg["human_usd_per_label"],
                          "spent_usd_today": human_spent,
                          "exhausted": bool(self.cfg["human_budget_usd_per_day"])
                          and human_spent >= self.cfg["human_budget_usd_per_day"]},
            },
            "queue_depth": self.pool.depth() if self.pool is not None else 0,
            "rates": {e: dict(m) for e, m in self._rates.items()},
            "default_rate": self.cfg["default_rate"],
        }

    def collect(self) -> Iterable[Any]:
        family = self.ctx.family
        with self._lock:
            evaluations = sorted(self._evaluations.items())
            cost = sorted(self._cost.items())
            skipped = sorted(self._skipped.items())
        s = self.summary()
        yield family("llm_eval_layer_evaluations_total",
                     [({"service": sv, "layer": layer, "outcome": o}, n) for (sv, layer, o), n in evaluations])
        yield family("llm_eval_layer_cost_usd_total",
                     [({"service": sv, "layer": layer}, v) for (sv, layer), v in cost])
        budgets, spent, exhausted = [], [], []
        judge_b, human_b = s["budgets"]["judge"], s["budgets"]["human"]
        if judge_b["usd_per_hour"] or judge_b["calls_per_minute"]:
            if judge_b["usd_per_hour"]:
                budgets.append(({"layer": "judge", "window": "1h"}, judge_b["usd_per_hour"]))
            exhausted.append(({"layer": "judge"}, 1.0 if judge_b["exhausted"] else 0.0))
        if self.enabled:
            spent.append(({"layer": "judge", "window": "1h"}, judge_b["spent_usd_this_hour"]))
        if human_b["usd_per_day"]:
            budgets.append(({"layer": "human", "window": "1d"}, human_b["usd_per_day"]))
            exhausted.append(({"layer": "human"}, 1.0 if human_b["exhausted"] else 0.0))
        if human_b["usd_per_label"]:
            spent.append(({"layer": "human", "window": "1d"}, human_b["spent_usd_today"]))
        yield family("llm_eval_layer_budget_usd", budgets)
        yield family("llm_eval_layer_spent_usd", spent)
        yield family("llm_eval_layer_budget_exhausted", exhausted)
        yield family("llm_eval_judge_sidecar_skipped_total",
                     [({"service": sv, "reason": r}, n) for (sv, r), n in skipped])
        if self.enabled:
            yield family("llm_eval_judge_queue_depth", [({}, s["queue_depth"])])

    def router(self) -> Any:
        from fastapi import APIRouter

        r = APIRouter()

        @r.get("/v1/cascade")
        def cascade() -> dict[str, Any]:
            """The evaluation cascade: per-layer counts and USD, the funnel, budgets, skip reasons."""
            return self.summary()

        return r

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


def _cost_of(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return 0.0
    return float(value)
