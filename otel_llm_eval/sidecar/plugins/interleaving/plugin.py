"""Interleaving and pairwise comparisons: which arm users prefer when shown both, with an
always-valid p-value per arm and the position bias of the comparisons.

`InterleavingPlugin` (name "interleaving", config `analysis.interleaving` and `analysis.alpha`):
- `on_evaluation` (ingest thread, O(1), never raises): the outcomes `otel_llm_eval.pairwise(...)`
  and `team_draft(...)` record (winner, loser, tie, first shown); arms and experiments bounded.
- `tick(now)`: per arm the preference, the Beta-binomial mixture p-value (an exact martingale on
  decisive outcomes; its running minimum is kept, so the p-value never rises) and the verdict at
  alpha / (arms - 1); the sign test is kept as `p_value_fixed_horizon`.
- `GET /v1/interleaving`, `interleaving` in `GET /v1/experiments/{id}`; gauges
  `llm_eval_interleaving_{comparisons,preference,p_value,first_position_win_rate}`.
- tables `analysis_interleaving` (outcomes) and the rows of `analysis_sequential` whose metric is
  INTERLEAVING_METRIC (the running minimum).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .... import semconv
from ....stats.sequential import RunningSequence
from .. import EvaluationRecord
from .._analysis import INTERLEAVING_METRIC, SEQUENTIAL_TABLE, StatisticsPlugin, gauges, is_comparison, prune_none

CONFIG_DEFAULTS: dict[str, Any] = {
    "interleaving": {
        "max_arms": 20,                # per experiment (more: counted in dropped.interleaving_arms)
        "max_experiments": 50,         # more: counted in dropped.interleaving_experiments
        "prior_strength": 12.0,        # Beta(a, a) mixture of the always-valid test
    },
}



@dataclass
class ArmRecord:
    wins: int = 0
    losses: int = 0
    ties: int = 0


@dataclass
class Comparisons:
    """Per interleaving experiment: outcomes per arm and the position-bias counts."""

    arms: dict[str, ArmRecord] = field(default_factory=dict)
    total: int = 0
    decisive_with_position: int = 0
    first_wins: int = 0

    def record(self, winner: str, loser: str, tie: bool, first_shown: str | None, max_arms: int) -> bool:
        for arm in (winner, loser):
            if arm not in self.arms:
                if len(self.arms) >= max_arms:
                    return False
                self.arms[arm] = ArmRecord()
        self.total += 1
        if tie:
            self.arms[winner].ties += 1
            self.arms[loser].ties += 1
            return True
        self.arms[winner].wins += 1
        self.arms[loser].losses += 1
        if first_shown in (winner, loser):
            self.decisive_with_position += 1
            self.first_wins += first_shown == winner
        return True


def as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


class InterleavingPlugin(StatisticsPlugin):
    name = "interleaving"
    CONFIG_DEFAULTS = CONFIG_DEFAULTS

    def __init__(self) -> None:
        super().__init__()
        self.comparisons: dict[str, Comparisons] = {}
        #: (experiment, INTERLEAVING_METRIC, arm) -> the running always-valid p and the preference at its minimum
        self.running: dict[tuple[str, str, str], RunningSequence] = {}
        self._dirty: set[str] = set()
        self.results = {"interleaving": {}}

    # --- ingest thread ---
    def on_evaluation(self, record: EvaluationRecord) -> None:
        self.guarded("on_evaluation", self._on_evaluation, record)

    def _on_evaluation(self, record: EvaluationRecord) -> None:
        if not is_comparison(record):
            return
        attrs = record.attributes or {}
        cid = attrs.get(semconv.INTERLEAVING_ID)
        winner, loser = attrs.get(semconv.INTERLEAVING_WINNER), attrs.get(semconv.INTERLEAVING_LOSER)
        if not cid or not winner or not loser or winner == loser:
            with self.lock:
                self.drop("interleaving_malformed")
            return
        first = attrs.get(semconv.INTERLEAVING_FIRST_SHOWN)
        icfg = self.cfg["interleaving"]
        with self.lock:
            c = self.comparisons.get(str(cid))
            if c is None:
                if len(self.comparisons) >= icfg["max_experiments"]:
                    self.drop("interleaving_experiments")
                    return
                c = self.comparisons[str(cid)] = Comparisons()
            ok = c.record(str(winner), str(loser), as_bool(attrs.get(semconv.INTERLEAVING_TIE, False)),
                          str(first) if first is not None else None, icfg["max_arms"])
            if ok:
                self._dirty.add(str(cid))
            else:
                self.drop("interleaving_arms")

    # --- analysis thread ---
    def tick(self, now: float) -> None:
        with self.lock:
            comparisons = {k: ({a: ArmRecord(r.wins, r.losses, r.ties) for a, r in c.arms.items()},
                               c.total, c.decisive_with_position, c.first_wins) for k, c in self.comparisons.items()}
            running = dict(self.running)
        out, new_running = self._analyze(comparisons, running)
        with self.lock:
            self.running.update(new_running)
        self.results = {"interleaving": out, "computed_unix": now}

    def _analyze(self, comparisons: Mapping[str, Any],
                 running: Mapping[tuple[str, str, str], RunningSequence]) -> tuple[dict[str, Any], dict]:
        """Preference per arm with an always-valid p-value (Beta-binomial mixture on decisive
        outcomes, running minimum over ticks) and its verdict at alpha / (arms - 1). The running
        state keeps, in lower/upper, the preference at the look that set the minimum: the verdict's
        direction is that of the evidence, not of the latest look."""
        from ....stats import interleaving as I
        from ....stats.sequential import SequentialResult, beta_binomial_p_value
        alpha = float(self.cfg["alpha"])
        strength = float(self.cfg["interleaving"]["prior_strength"])
        out, new_running = {}, {}
        for cid, (arms, total, decisive, first_wins) in comparisons.items():
            family = max(1, len(arms) - 1)
            level = alpha / family
            per_arm = {}
            for arm, r in arms.items():
                p = I.preference(r.wins, r.losses, r.ties)
                look_p = beta_binomial_p_value(r.wins, r.losses, prior_strength=strength) if r.wins + r.losses else None
                key = (cid, INTERLEAVING_METRIC, arm)
                prev = running.get(key)
                pref = p.preference
                look = SequentialResult(look_p, pref, pref)
                if prev is None or abs(prev.level - level) > 1e-12:
                    run = RunningSequence.start(look, level)
                elif look_p is not None and (prev.p_value is None or look_p < prev.p_value):
                    run = RunningSequence(look_p, pref, pref, level)
                else:
                    run = prev
                if run.p_value is not None:
                    new_running[key] = run
                significant = run.p_value is not None and run.p_value <= level and run.lower
                verdict = ("better" if run.lower > 0 else "worse") if significant else \
                    ("collecting" if r.wins + r.losses else None)
                per_arm[arm] = prune_none({"wins": r.wins, "losses": r.losses, "ties": r.ties, "n": p.n,
                                           "preference": pref, "p_value": run.p_value,
                                           "p_value_fixed_horizon": p.p_value, "verdict": verdict})
            bias = I.position_bias(first_wins, decisive)
            out[cid] = prune_none({"comparisons": total, "arms": per_arm, "alpha": alpha, "family": family,
                                   "test": "always-valid Beta-binomial mixture on decisive outcomes",
                                   "position_bias": prune_none({
                                       "decisive": bias.decisive, "first_wins": bias.first_wins,
                                       "first_win_rate": bias.first_win_rate, "p_value": bias.p_value})})
        return out, new_running

    # --- publishing ---
    def collect(self) -> Iterable[Any]:
        def put_all(put: Any) -> None:
            for cid, c in self.results.get("interleaving", {}).items():
                put("llm_eval_interleaving_comparisons", {"experiment": cid}, c.get("comparisons"))
                put("llm_eval_interleaving_first_position_win_rate", {"experiment": cid},
                    c.get("position_bias", {}).get("first_win_rate"))
                for arm, a in c.get("arms", {}).items():
                    put("llm_eval_interleaving_preference", {"experiment": cid, "variant": arm}, a.get("preference"))
                    put("llm_eval_interleaving_p_value", {"experiment": cid, "variant": arm}, a.get("p_value"))
        return gauges(self.ctx, put_all)

    def experiment_details(self, experiment_id: str) -> Mapping[str, Any] | None:
        got = self.results.get("interleaving", {}).get(experiment_id)
        return {"interleaving": got} if got is not None else None

    def status(self) -> dict[str, Any]:
        with self.lock:
            return dict(super().status(), interleaving_comparisons=len(self.comparisons))

    def router(self) -> Any:
        from fastapi import APIRouter

        r = APIRouter()

        @r.get("/v1/interleaving")
        def interleaving() -> dict[str, Any]:
            """Preference, always-valid p-value, verdict and position bias per interleaving/pairwise comparison."""
            return {"interleaving": self.results.get("interleaving", {})}

        return r

    # --- state thread ---
    def load(self, conn: Any) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS analysis_interleaving (id TEXT PRIMARY KEY, data TEXT)")
        conn.execute(SEQUENTIAL_TABLE)
        with self.lock:
            for cid, data in conn.execute("SELECT id, data FROM analysis_interleaving"):
                d = json.loads(data)
                self.comparisons[cid] = Comparisons({a: ArmRecord(*r) for a, r in d["arms"].items()}, d["total"],
                                                    d["decisive"], d["first_wins"])
            for e, m, v, p, lo, hi, level, rs in conn.execute(
                    "SELECT experiment, metric, variant, p, lower, upper, level, restarts FROM analysis_sequential "
                    "WHERE metric = ?", (INTERLEAVING_METRIC,)):
                self.running[(e, m, v)] = RunningSequence(p, lo, hi, float(level), int(rs or 0))

    def flush(self, conn: Any) -> None:
        with self.lock:
            running = [(*k, r.p_value, r.lower, r.upper, r.level, r.restarts) for k, r in self.running.items()]
            rows = [(c, json.dumps({"arms": {a: [r.wins, r.losses, r.ties] for a, r in self.comparisons[c].arms.items()},
                                    "total": self.comparisons[c].total,
                                    "decisive": self.comparisons[c].decisive_with_position,
                                    "first_wins": self.comparisons[c].first_wins}))
                    for c in self._dirty if c in self.comparisons]
            self._dirty.clear()
        conn.executemany("INSERT OR REPLACE INTO analysis_sequential VALUES (?, ?, ?, ?, ?, ?, ?, ?)", running)
        conn.executemany("INSERT OR REPLACE INTO analysis_interleaving VALUES (?, ?)", rows)
