"""Bandits: traffic allocation per arm from the rewards the core already counts per experiment
and variant (Thompson sampling, UCB1 or epsilon-greedy: otel_llm_eval.stats.bandits).

`BanditsPlugin` (name "bandits", config `analysis.bandits`):
- A bandit is an experiment served adaptively: listed in `bandits.ids` or registered by the first
  `GET /v1/bandits/{id}[?arms=a,b]` (bounded by `max_bandits`, counted past it).
- `tick(now)`: allocation, pulls, mean reward, probability each arm is best and the expected
  regret per pull, from `ctx.experiment_snapshot()`. Bandits get no A/B p-values or verdicts:
  adaptive allocation breaks a fixed-sample test's assumptions (the experiments plugin skips them
  via `ids()`).
- `GET /v1/bandits/{id}`, `bandit` in `GET /v1/experiments/{id}`; gauges `llm_eval_bandit_*`.
- table `analysis_bandits` (the registry); reward names in `analysis_names`.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from .. import EvaluationRecord, ExperimentSnapshot
from .._analysis import StatisticsPlugin, EvaluationNames, gauges, is_score, prune_none

CONFIG_DEFAULTS: dict[str, Any] = {
    "bandits": {
        "ids": [],                     # experiments served as bandits (GET /v1/bandits/{id} adds more)
        "max_bandits": 20,
        "algorithm": "thompson",       # thompson | ucb1 | epsilon_greedy
        "floor": 0.01,
        "burn_in": 20,                 # rewards per arm before leaving the uniform allocation
        "epsilon": 0.1,
        "draws": 10_000,
        "reward": None,                # metric name (default: first user feedback, else judge metric)
        "reward_min": None,            # rewards map to [0, 1]; default 0..1 for 0/1 metrics, else 1..5
        "reward_max": None,
        "seed": 0,
    },
}
ALGORITHMS = ("thompson", "ucb1", "epsilon_greedy")


class BanditsPlugin(StatisticsPlugin):
    name = "bandits"
    CONFIG_DEFAULTS = CONFIG_DEFAULTS

    def __init__(self) -> None:
        super().__init__()
        self.bandits: dict[str, dict[str, Any]] = {}   # id -> {"arms": [...], "last_requested": t}
        self.names = EvaluationNames()
        self._dirty: set[str] = set()
        self.results = {"bandits": {}}

    def attach(self, ctx: Any) -> None:
        super().attach(ctx)
        alg = self.cfg["bandits"]["algorithm"]
        if alg not in ALGORITHMS:
            raise ValueError(f"analysis.bandits.algorithm must be thompson, ucb1 or epsilon_greedy, got {alg!r}")
        for bid in self.cfg["bandits"]["ids"] or []:
            self.bandits.setdefault(str(bid), {"arms": [], "last_requested": 0.0})

    def ids(self) -> frozenset[str]:
        """The experiments served as bandits (any thread)."""
        with self.lock:
            return frozenset(self.bandits)

    # --- ingest thread ---
    def on_evaluation(self, record: EvaluationRecord) -> None:
        if is_score(record):
            with self.lock:
                self.names.observe(record)

    # --- analysis thread ---
    def tick(self, now: float) -> None:
        snapshot = self.ctx.experiment_snapshot()
        with self.lock:
            bandits = {k: list(v["arms"]) for k, v in self.bandits.items()}
            judge_names, feedback_names = self.names.frozen()
        self.results = {"bandits": {bid: self._bandit(bid, arms, snapshot.get(bid), judge_names, feedback_names)
                                    for bid, arms in bandits.items()}, "computed_unix": now}

    def _reward_metric(self, snap: ExperimentSnapshot | None, judge_names: frozenset[str],
                       feedback_names: frozenset[str]) -> str | None:
        configured = self.cfg["bandits"]["reward"]
        if configured:
            return configured
        if snap is None:
            return None
        for pool in (feedback_names, judge_names):
            for m in sorted(snap.metrics):
                if m in pool:
                    return m
        return None

    def _bandit(self, bid: str, arms: list[str], snap: ExperimentSnapshot | None, judge_names: frozenset[str],
                feedback_names: frozenset[str]) -> dict[str, Any]:
        import numpy as np

        from ....stats import bandits as B

        bcfg = self.cfg["bandits"]
        all_arms = list(dict.fromkeys(list(arms) + (sorted(snap.metrics.get("exposures", {})) if snap else [])))
        metric = self._reward_metric(snap, judge_names, feedback_names)
        stats_by_arm = (snap.metrics.get(metric, {}) if snap and metric else {})
        lo, hi = bcfg["reward_min"], bcfg["reward_max"]
        binary = all(s.binary for s in stats_by_arm.values()) if stats_by_arm else True
        if lo is None or hi is None:
            lo, hi = (0.0, 1.0) if binary else (1.0, 5.0)
        span = (hi - lo) or 1.0
        arm_stats = {}
        for arm in all_arms:
            s = stats_by_arm.get(arm)
            if s is None or s.n == 0:
                arm_stats[arm] = B.ArmStats(0.0, 0.0)
            else:
                reward_sum = min(float(s.n), max(0.0, (s.sum - s.n * lo) / span))
                arm_stats[arm] = B.ArmStats(float(s.n), reward_sum)
        floor = min(float(bcfg["floor"]), 1.0 / len(all_arms)) if all_arms else 0.0
        alloc = B.allocate(arm_stats, algorithm=bcfg["algorithm"], floor=floor, burn_in=int(bcfg["burn_in"]),
                           epsilon=float(bcfg["epsilon"]), draws=int(bcfg["draws"]),
                           rng=np.random.default_rng(int(bcfg["seed"])))
        return prune_none({
            "bandit": bid, "algorithm": alloc.algorithm, "allocation": alloc.shares, "burn_in": alloc.burn_in,
            "reward_metric": metric, "probability_best": alloc.probability_best,
            "pulls": {a: s.n for a, s in arm_stats.items()},
            "mean_reward": {a: s.mean for a, s in arm_stats.items() if s.mean is not None},
            "expected_regret_per_pull": B.expected_regret(arm_stats, alloc.shares),
            "updated_unix": self.now(),
        })

    def bandit_allocation(self, bandit_id: str, arms: list[str] | None = None) -> dict[str, Any] | None:
        """Current allocation; registers the bandit (bounded) so later ticks publish it."""
        now = self.now()
        with self.lock:
            entry = self.bandits.get(bandit_id)
            if entry is None:
                if len(self.bandits) >= self.cfg["bandits"]["max_bandits"]:
                    self.drop("bandits")
                    registered = False
                else:
                    entry = self.bandits[bandit_id] = {"arms": [], "last_requested": now}
                    registered = True
            else:
                registered = True
            if entry is not None:
                if arms:
                    merged = list(dict.fromkeys(list(entry["arms"]) + [a for a in arms if a][:20]))[:20]
                    if merged != entry["arms"]:
                        entry["arms"] = merged
                entry["last_requested"] = now
                self._dirty.add(bandit_id)
            known = list(entry["arms"]) if entry else list(arms or [])
            judge_names, feedback_names = self.names.frozen()
        cached = self.results.get("bandits", {}).get(bandit_id)
        if cached and set(known) <= set(cached.get("allocation", {})):
            return dict(cached, registered=registered)
        snap = self.ctx.experiment_snapshot().get(bandit_id)
        if snap is None and not known:
            return None
        return dict(self._bandit(bandit_id, known, snap, judge_names, feedback_names), registered=registered)

    # --- publishing ---
    def collect(self) -> Iterable[Any]:
        def put_all(put: Any) -> None:
            for bid, b in self.results.get("bandits", {}).items():
                for arm, share in b.get("allocation", {}).items():
                    put("llm_eval_bandit_allocation", {"bandit": bid, "arm": arm}, share)
                for arm, n in b.get("pulls", {}).items():
                    put("llm_eval_bandit_pulls", {"bandit": bid, "arm": arm}, n)
                for arm, m in b.get("mean_reward", {}).items():
                    put("llm_eval_bandit_mean_reward", {"bandit": bid, "arm": arm}, m)
                for arm, pb in (b.get("probability_best") or {}).items():
                    put("llm_eval_bandit_probability_best", {"bandit": bid, "arm": arm}, pb)
                put("llm_eval_bandit_expected_regret", {"bandit": bid}, b.get("expected_regret_per_pull"))
        return gauges(self.ctx, put_all)

    def experiment_details(self, experiment_id: str) -> Mapping[str, Any] | None:
        got = self.results.get("bandits", {}).get(experiment_id)
        return {"bandit": got} if got is not None else None

    def status(self) -> dict[str, Any]:
        with self.lock:
            return dict(super().status(), bandits=sorted(self.bandits))

    def router(self) -> Any:
        from fastapi import APIRouter, HTTPException, Query

        r = APIRouter()

        @r.get("/v1/bandits/{bandit_id}")
        def bandit(bandit_id: str, arms: str | None = Query(None, max_length=2000)) -> dict[str, Any]:
            """Arm allocation of a bandit (traffic shares summing to 1). `arms` (comma-separated)
            names arms that may have no traffic yet. Registers the bandit for /metrics."""
            arm_list = [a.strip() for a in arms.split(",")] if arms else None
            out = self.bandit_allocation(bandit_id, arm_list)
            if out is None:
                raise HTTPException(404, f"unknown bandit {bandit_id!r}: no traffic yet; pass ?arms=a,b,c")
            return out

        return r

    # --- state thread ---
    def load(self, conn: Any) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS analysis_bandits (id TEXT PRIMARY KEY, arms TEXT, last_requested REAL)")
        EvaluationNames.create_table(conn)
        with self.lock:
            for bid, arms, last in conn.execute("SELECT id, arms, last_requested FROM analysis_bandits"):
                self.bandits[bid] = {"arms": json.loads(arms or "[]"), "last_requested": last or 0.0}
            self.names.load(conn)

    def flush(self, conn: Any) -> None:
        with self.lock:
            rows = [(b, json.dumps(self.bandits[b]["arms"]), self.bandits[b]["last_requested"])
                    for b in self._dirty if b in self.bandits]
            self._dirty.clear()
            names = self.names.rows()
        conn.executemany("INSERT OR REPLACE INTO analysis_bandits VALUES (?, ?, ?)", rows)
        EvaluationNames.write(conn, names)
