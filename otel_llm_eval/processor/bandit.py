"""`Bandit`: pick an arm per request, locally, from a shared allocation or a local policy.

Two modes:
- Shared (`sidecar_url=...`): the sidecar computes the allocation from the rewards it receives
  (feedback or judge scores on the spans this bandit stamped) and serves it on
  `GET /v1/bandits/{id}`; a daemon thread refreshes it every `refresh_seconds`. `choose()` samples
  an arm from the last allocation fetched: O(1), no I/O on the caller's thread. Offline, the last
  known allocation stays in use; before the first successful fetch, a uniform one.
- Local (`sidecar_url=None`, one process): `reward(arm, value)` updates per-arm statistics and
  `choose()` runs the policy itself: Thompson sampling (Beta-Bernoulli), UCB1 or epsilon-greedy,
  with a burn-in (uniform until each arm has `burn_in` rewards) and a floor (each arm is picked
  at least `floor` of the time).

`with bandit.activate() as arm:` stamps the chosen arm exactly like an experiment variant
(`llm_eval.experiment.id` = bandit id, `llm_eval.experiment.variant` = arm), so feedback and judge
scores on those spans flow back to the sidecar as rewards. Thread-safe; never raises into the
app after construction (bad constructor arguments raise ValueError). Standard library only.
"""

from __future__ import annotations

import math
import random
import threading
import urllib.parse
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Sequence

from .experiment import Experiment
from .remote import Poller

ALGORITHMS = ("thompson", "ucb1", "epsilon_greedy")


class Bandit:
    def __init__(self, id: str, arms: Sequence[str], *, sidecar_url: str | None = None,
                 refresh_seconds: float = 30.0, timeout_seconds: float = 2.0, token: str | None = None,
                 algorithm: str = "thompson", floor: float = 0.01, burn_in: int = 20, epsilon: float = 0.1,
                 seed: int | None = None, start: bool = True) -> None:
        arms = list(arms)
        if len(arms) < 2 or len(set(arms)) != len(arms):
            raise ValueError(f"bandit {id!r}: needs at least two distinct arms, got {arms!r}")
        if algorithm not in ALGORITHMS:
            raise ValueError(f"bandit {id!r}: unknown algorithm {algorithm!r} (one of {', '.join(ALGORITHMS)})")
        if not 0 <= floor <= 1.0 / len(arms):
            raise ValueError(f"bandit {id!r}: floor must be in [0, 1/{len(arms)}], got {floor}")
        if not 0 <= epsilon <= 1 or burn_in < 0:
            raise ValueError(f"bandit {id!r}: need 0 <= epsilon <= 1 and burn_in >= 0")
        # validates names (reserved characters) and gives the stamping; weights are nominal
        self.experiment = Experiment(id, {a: 1.0 / len(arms) for a in arms})
        self.id = id
        self.arms = arms
        self.algorithm = algorithm
        self.floor = float(floor)
        self.burn_in = int(burn_in)
        self.epsilon = float(epsilon)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._n = dict.fromkeys(arms, 0.0)
        self._sum = dict.fromkeys(arms, 0.0)
        self._shares: dict[str, float] | None = None
        self.poller: Poller | None = None
        if sidecar_url:
            query = urllib.parse.urlencode({"arms": ",".join(arms)})
            url = f"{sidecar_url.rstrip('/')}/v1/bandits/{urllib.parse.quote(id, safe='')}?{query}"
            self.poller = Poller(url, refresh_seconds=refresh_seconds, timeout_seconds=timeout_seconds,
                                 token=token, start=start, on_value=self._parse)

    @property
    def local(self) -> bool:
        return self.poller is None

    def _parse(self, value: Any) -> None:
        alloc = value.get("allocation") if isinstance(value, dict) else None
        if not isinstance(alloc, Mapping):
            raise ValueError("no 'allocation' object in the bandit response")
        shares = {a: float(alloc.get(a, 0.0)) for a in self.arms}
        shares = {a: s if math.isfinite(s) and s > 0 else 0.0 for a, s in shares.items()}
        total = sum(shares.values())
        if total <= 0:
            raise ValueError("allocation has no positive share for any known arm")
        self._shares = {a: s / total for a, s in shares.items()}

    def refresh(self) -> bool:
        """Fetch the allocation now (blocks up to timeout_seconds). False when it failed."""
        return self.poller.refresh() if self.poller else False

    def allocation(self) -> dict[str, float]:
        """Traffic shares in use now: fetched (shared mode), policy-implied (local), else uniform."""
        if self.poller is not None:
            self.poller.ensure_running()
            shares = self._shares
            return dict(shares) if shares else {a: 1.0 / len(self.arms) for a in self.arms}
        with self._lock:
            if min(self._n.values()) < self.burn_in:
                return {a: 1.0 / len(self.arms) for a in self.arms}
            counts = dict.fromkeys(self.arms, 0)
            for _ in range(1000):  # policy-implied shares by simulation (cheap, for display)
                counts[self._policy_choice()] += 1
            return {a: c / 1000 for a, c in counts.items()}

    def choose(self) -> str:
        """One arm for this request. Never raises; O(arms)."""
        try:
            if self.poller is not None:
                self.poller.ensure_running()
                shares = self._shares
                if not shares:
                    return self._rng.choice(self.arms)
                u, acc = self._rng.random(), 0.0
                for a in self.arms:
                    acc += shares[a]
                    if u < acc:
                        return a
                return self.arms[-1]
            with self._lock:
                under = [a for a in self.arms if self._n[a] < self.burn_in]
                if under:  # burn-in: uniform over the arms that still need rewards
                    return self._rng.choice(under)
                if self._rng.random() < self.floor * len(self.arms):
                    return self._rng.choice(self.arms)  # floor: every arm keeps >= floor
                return self._policy_choice()
        except Exception:
            return self.arms[0]

    def _policy_choice(self) -> str:
        arms = self.arms
        if self.algorithm == "thompson":
            draws = {a: self._rng.betavariate(1.0 + self._sum[a], 1.0 + max(0.0, self._n[a] - self._sum[a]))
                     for a in arms}
            return max(arms, key=draws.__getitem__)
        if self.algorithm == "ucb1":
            unplayed = [a for a in arms if self._n[a] == 0]
            if unplayed:
                return unplayed[0]
            total = sum(self._n.values())
            return max(arms, key=lambda a: self._sum[a] / self._n[a] + math.sqrt(2 * math.log(total) / self._n[a]))
        if self._rng.random() < self.epsilon:
            return self._rng.choice(arms)
        means = {a: (self._sum[a] / self._n[a] if self._n[a] else math.inf) for a in arms}
        return max(arms, key=means.__getitem__)

    def reward(self, arm: str, value: float) -> None:
        """Local mode: add a reward in [0, 1] (clipped) for `arm`. In shared mode rewards reach the
        sidecar as feedback/judge spans on the stamped calls; this only updates local counts.
        Unknown arms and non-numbers are ignored (counted in `ignored_rewards`)."""
        try:
            x = float(value)
            if arm not in self._n or not math.isfinite(x):
                raise ValueError
        except (TypeError, ValueError):
            self.ignored_rewards = getattr(self, "ignored_rewards", 0) + 1
            return
        with self._lock:
            self._n[arm] += 1
            self._sum[arm] += min(1.0, max(0.0, x))

    def stats(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {a: {"n": self._n[a], "reward_sum": self._sum[a]} for a in self.arms}

    @contextmanager
    def activate(self, arm: str | None = None) -> Iterator[str]:
        """Choose an arm (or use `arm`) and stamp every span in the scope with it; yields the arm."""
        chosen = arm if arm is not None else self.choose()
        with self.experiment.activate(variant=chosen) as v:
            yield v

    def close(self) -> None:
        if self.poller is not None:
            self.poller.close()
