"""Experiments: A/B statistics per metric and variant on the unit of randomization, SRM, always-valid
verdicts with a multiplicity correction, the ship / don't ship / keep running decision, engagement
and the judge sample-rate plan (analyze.py holds the statistics; docs/statistics.md the method).

`ExperimentsPlugin` (name "experiments", config `analysis.*`: alpha, power, mde, decision, judge,
engagement, per-experiment overrides under `analysis.experiments.<id>`):
- ingest (ingest thread, O(1), never raises): `SessionSummarizer` counts calls per session for
  engagement; `on_evaluation` learns which metrics are judge scores and which are feedback.
- `tick(now)` (analysis thread): `analyze_experiment` on each experiment of
  `ctx.experiment_snapshot()` (bandits, from the bandits plugin's `ids()`, get no verdicts); the
  always-valid tests' running state carries over ticks and restarts.
- `analysis` in `GET /v1/experiments/{id}`, `GET /v1/experiments/{id}/judge-rate`,
  `GET /v1/judge-rates`; gauges `llm_eval_ab_*` and `llm_eval_judge_sample_rate`. The judge plugin
  reads `results` for its sample-rate plan.
- tables: its rows of `analysis_sequential`, `analysis_sessions`, `analysis_names`.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from .. import CallRecord, EvaluationRecord
from .._analysis import (INTERLEAVING_METRIC, SEQUENTIAL_TABLE, StatisticsPlugin, EvaluationNames, gauges, is_score,
                         prune_none)
from ....stats.sequential import RunningSequence
from .analyze import analyze_experiment
from .engagement import Session, SessionSummarizer, engagement_summaries, session_of

CONFIG_DEFAULTS: dict[str, Any] = {
    "power": 0.8,
    "mde": 0.05,                       # relative minimum detectable effect for sample sizes
    "srm_threshold": 0.001,
    "sequential_tuning_n": 5000,       # GAVI: samples (both arms) where the always-valid interval is tightest
    "min_samples": 30,                 # units (else calls) per arm before any verdict but "collecting"
    "lower_is_better": ["latency_seconds", "input_tokens", "output_tokens", "cost_usd", "error"],
    "binary_metrics": [],              # force 0/1 analysis (default: detected, every value 0 or 1)
    "continuous_metrics": [],          # force Welch
    "planned_duration_days": 14,       # planned end = first seen + this, unless experiments.<id>.planned_end_unix
    "experiments": {},                 # per-experiment overrides: {id: {mde, planned_end_unix, alpha, decision, ...}}
    "decision": {
        "primary": None,               # metric that decides (default: first judge metric, else first feedback)
        "primary_alpha_share": 0.5,    # share of alpha for the primary's comparisons; the rest split over the others
        "targets": {},                 # metric -> {relative: x} | {absolute: x}; default by kind (experiments/analyze.py DEFAULT_TARGETS)
        "guardrails": {                # metric -> largest degradation accepted (non-inferiority margin)
            "latency_seconds": {"relative": 0.10},
            "cost_usd": {"relative": 0.10},
            "error": {"absolute": 0.01},
        },
    },
    "judge": {
        "metric": None,                # evaluation used for the rate plan (default: first judge one, semconv.JUDGE_SOURCES)
        "budget_calls_per_hour": None,
        "min_rate": 0.01,
        "max_rate": 1.0,
        "bootstrap_rate": 0.1,         # until the judge metric has a variance estimate
        "margin": 1.1,
    },
    "engagement": {"max_sessions": 100_000},
}


class ExperimentsPlugin(StatisticsPlugin):
    name = "experiments"
    CONFIG_DEFAULTS = CONFIG_DEFAULTS
    summarizer = SessionSummarizer

    def __init__(self) -> None:
        super().__init__()
        self.sessions: dict[tuple[str, str], Session] = {}
        self.names = EvaluationNames()
        #: (experiment, metric, variant) -> the always-valid test's running p and interval
        self.running: dict[tuple[str, str, str], RunningSequence] = {}
        self._dirty_sessions: set[tuple[str, str]] = set()
        self._deleted_sessions: set[tuple[str, str]] = set()
        self.results = {"experiments": {}}

    # --- ingest thread ---
    def on_call(self, record: CallRecord) -> None:
        self.guarded("on_call", self._on_call, record)

    def on_call_summary(self, summary: Any) -> None:
        self.guarded("on_call_summary", self._apply_summary, summary)

    def on_evaluation(self, record: EvaluationRecord) -> None:
        if is_score(record):
            with self.lock:
                self.names.observe(record)

    def _apply_summary(self, summary: Any) -> None:
        sessions, untimed = summary
        with self.lock:
            for key, (variant, unit, messages, first, last) in sessions.items():
                self._add_session(key, variant, unit, messages, first, last)
        for record in untimed:
            self._on_call(record)

    def _on_call(self, record: CallRecord) -> None:
        got = session_of(record)
        if got is None or not record.experiments:
            return
        session, unit = got
        t = record.end_time_unix_nano / 1e9 if record.end_time_unix_nano else self.now()
        with self.lock:
            for exp in record.experiments:
                self._add_session((exp.id, session), exp.variant, unit, 1, t, t)

    def _add_session(self, key: tuple[str, str], variant: str, unit: str, messages: int,
                     first: float, last: float) -> None:
        """Count `messages` calls of a session (a new one takes the variant and unit given; the
        oldest session goes past engagement.max_sessions, counted). Caller holds self.lock."""
        s = self.sessions.get(key)
        if s is None:
            if len(self.sessions) >= self.cfg["engagement"]["max_sessions"]:
                old = next(iter(self.sessions))
                del self.sessions[old]
                self._deleted_sessions.add(old)
                self.drop("sessions")
            s = self.sessions[key] = Session(key[0], variant, unit, 0, first, last)
        s.messages += messages
        s.first_unix = min(s.first_unix, first)
        s.last_unix = max(s.last_unix, last)
        self._dirty_sessions.add(key)

    # --- analysis thread ---
    def bandit_ids(self) -> frozenset[str]:
        """Experiments the bandits plugin serves adaptively (no A/B verdicts for those)."""
        getter = getattr(getattr(self, "ctx", None), "plugin", None)
        bandits = getter("bandits") if callable(getter) else None
        ids = getattr(bandits, "ids", None)
        return ids() if callable(ids) else frozenset()

    def tick(self, now: float) -> None:
        snapshot = self.ctx.experiment_snapshot()  # before our lock: the core calls on_call under its own
        bandits = self.bandit_ids()
        with self.lock:
            engagement = engagement_summaries(self.sessions.values())
            judge_names, feedback_names = self.names.frozen()
            running = dict(self.running)
        by_exp: dict[str, dict[tuple[str, str], RunningSequence]] = {}
        for (e, m, v), r in running.items():
            by_exp.setdefault(e, {})[(m, v)] = r
        experiments: dict[str, Any] = {}
        new_running: dict[tuple[str, str, str], RunningSequence] = {}
        for exp_id, snap in snapshot.items():
            try:
                details, exp_running = analyze_experiment(
                    snap, self.cfg, running=by_exp.get(exp_id, {}), is_bandit=exp_id in bandits,
                    judge_metrics=judge_names, feedback_metrics=feedback_names,
                    engagement=engagement.get(exp_id), now=now)
            except Exception:
                self.log.exception("analysis of experiment %s failed", exp_id)
                continue
            experiments[exp_id] = prune_none(details)
            new_running.update({(exp_id, m, v): r for (m, v), r in exp_running.items()})
        with self.lock:
            self.running.update(new_running)
        self.results = {"experiments": experiments, "computed_unix": now}  # atomic swap

    # --- publishing ---
    def collect(self) -> Iterable[Any]:
        def put_all(put: Any) -> None:
            for exp_id, d in self.results.get("experiments", {}).items():
                if "srm" in d and "p_value" in d["srm"]:
                    put("llm_eval_ab_srm_p_value", {"experiment": exp_id}, d["srm"]["p_value"])
                if "basis" in d:
                    put("llm_eval_ab_basis", {"experiment": exp_id, "basis": d["basis"]}, 1.0)
                for variant, dv in d.get("decision", {}).get("variants", {}).items():
                    put("llm_eval_ab_decision", {"experiment": exp_id, "variant": variant, "decision": dv["decision"],
                                                 "reason": dv["reason"], "metric": dv.get("metric", "")}, 1.0)
                for metric, m in d.get("metrics", {}).items():
                    for variant, v in m.get("variants", {}).items():
                        lab = {"experiment": exp_id, "metric": metric, "variant": variant}
                        put("llm_eval_ab_mean", lab, v.get("mean"))
                        put("llm_eval_ab_lift", lab, v.get("rel_lift"))
                        put("llm_eval_ab_lift_ci_lower", lab, v.get("rel_ci_lower"))
                        put("llm_eval_ab_lift_ci_upper", lab, v.get("rel_ci_upper"))
                        put("llm_eval_ab_p_value", lab, v.get("p_value"))
                        put("llm_eval_ab_p_value_adjusted", lab, v.get("p_value_adjusted"))
                        put("llm_eval_ab_always_valid_p_value", lab, v.get("always_valid_p_value"))
                        put("llm_eval_ab_required_samples", lab, v.get("required_samples"))
                        if "verdict" in v:
                            put("llm_eval_ab_verdict", dict(lab, verdict=v["verdict"]), 1.0)
                for variant, rate in d.get("judge_sample_rate", {}).get("rates", {}).items():
                    put("llm_eval_judge_sample_rate", {"experiment": exp_id, "variant": variant}, rate)
        return gauges(self.ctx, put_all)

    def experiment_details(self, experiment_id: str) -> Mapping[str, Any] | None:
        got = self.results.get("experiments", {}).get(experiment_id)
        return {"analysis": got} if got is not None else None

    def status(self) -> dict[str, Any]:
        with self.lock:
            return dict(super().status(), experiments=len(self.results.get("experiments", {})),
                        sessions=len(self.sessions))

    def router(self) -> Any:
        from fastapi import APIRouter, HTTPException

        r = APIRouter()

        @r.get("/v1/experiments/{experiment_id}/judge-rate")
        def judge_rate(experiment_id: str) -> dict[str, Any]:
            """Judge sample rate per variant that reaches the experiment's target sample size by its
            planned end at the least judge cost."""
            d = self.results.get("experiments", {}).get(experiment_id)
            if d is None or "judge_sample_rate" not in d:
                raise HTTPException(404, f"no judge sample rate for experiment {experiment_id!r} (yet)")
            return dict(d["judge_sample_rate"], experiment=experiment_id)

        @r.get("/v1/judge-rates")
        def judge_rates() -> dict[str, Any]:
            """Recommended judge sample rates for every experiment: {experiment: {variant: rate}}."""
            return {"experiments": {e: d["judge_sample_rate"].get("rates", {})
                                    for e, d in self.results.get("experiments", {}).items()
                                    if "judge_sample_rate" in d},
                    "computed_unix": self.results.get("computed_unix")}

        return r

    # --- state thread ---
    def load(self, conn: Any) -> None:
        conn.execute(SEQUENTIAL_TABLE)
        conn.execute("CREATE TABLE IF NOT EXISTS analysis_sessions (experiment TEXT, session TEXT, variant TEXT, "
                     "unit TEXT, messages INTEGER, first_unix REAL, last_unix REAL, PRIMARY KEY (experiment, session))")
        EvaluationNames.create_table(conn)
        with self.lock:
            for e, m, v, p, lo, hi, level, rs in conn.execute(
                    "SELECT experiment, metric, variant, p, lower, upper, level, restarts FROM analysis_sequential "
                    "WHERE metric != ?", (INTERLEAVING_METRIC,)):
                self.running[(e, m, v)] = RunningSequence(p, lo, hi, float(level), int(rs or 0))
            for e, s, v, u, m, f, last in conn.execute("SELECT experiment, session, variant, unit, messages, "
                                                        "first_unix, last_unix FROM analysis_sessions"):
                self.sessions[(e, s)] = Session(e, v, u, m, f, last)
            self.names.load(conn)

    def flush(self, conn: Any) -> None:
        with self.lock:
            running = [(*k, r.p_value, r.lower, r.upper, r.level, r.restarts) for k, r in self.running.items()]
            sessions = [(k[0], k[1], s.variant, s.unit, s.messages, s.first_unix, s.last_unix)
                        for k in self._dirty_sessions if (s := self.sessions.get(k)) is not None]
            deleted = list(self._deleted_sessions)
            self._dirty_sessions.clear()
            self._deleted_sessions.clear()
            names = self.names.rows()
        conn.executemany("INSERT OR REPLACE INTO analysis_sequential VALUES (?, ?, ?, ?, ?, ?, ?, ?)", running)
        conn.executemany("INSERT OR REPLACE INTO analysis_sessions VALUES (?, ?, ?, ?, ?, ?, ?)", sessions)
        conn.executemany("DELETE FROM analysis_sessions WHERE experiment = ? AND session = ?", deleted)
        EvaluationNames.write(conn, names)
