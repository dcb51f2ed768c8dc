"""Bandit allocations (traffic shares per arm) from per-arm reward statistics.

The sidecar computes allocations centrally (as GrowthBook does) and apps sample arms from them:
- Thompson sampling, Beta-Bernoulli: prior Beta(1, 1), posterior Beta(1 + s, 1 + f); the allocation
  is P(arm is best) by Monte Carlo over `draws` posterior samples. Rewards in [0, 1] that are not
  0/1 count fractionally (s = sum of rewards, f = n - s).
- UCB1 (Auer et al. 2002): all traffic to argmax mean + sqrt(2 ln N / n); unplayed arms first.
- epsilon-greedy: epsilon spread uniformly, the rest to the best mean.
Then a burn-in (uniform until every arm has `burn_in` rewards) and a per-arm floor (every arm keeps
at least `floor` of the traffic). Pure functions (randomness only through the `rng` passed in).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

ALGORITHMS = ("thompson", "ucb1", "epsilon_greedy")


@dataclass(frozen=True)
class ArmStats:
    """Rewards seen for one arm: count and sum of rewards (each in [0, 1])."""

    n: float
    reward_sum: float

    @property
    def mean(self) -> float | None:
        return self.reward_sum / self.n if self.n > 0 else None


@dataclass(frozen=True)
class Allocation:
    """Traffic share per arm (sums to 1), the algorithm, and whether burn-in is still on."""

    algorithm: str
    shares: dict[str, float]
    burn_in: bool
    probability_best: dict[str, float] | None = None


def apply_floor(shares: Mapping[str, float], floor: float) -> dict[str, float]:
    """Every arm gets at least `floor`; the rest is split in proportion to the shares above it."""
    k = len(shares)
    if k == 0:
        return {}
    if not 0 <= floor <= 1.0 / k:
        raise ValueError(f"floor must be in [0, 1/{k}] for {k} arms, got {floor}")
    total = sum(shares.values())
    norm = {a: (s / total if total > 0 else 1.0 / k) for a, s in shares.items()}
    return {a: floor + (1 - k * floor) * s for a, s in norm.items()}


def thompson_probabilities(stats: Mapping[str, ArmStats], *, draws: int = 10000,
                           rng: np.random.Generator | None = None) -> dict[str, float]:
    """P(arm has the highest mean) under Beta(1 + s, 1 + f) posteriors, by Monte Carlo."""
    rng = rng if rng is not None else np.random.default_rng(0)
    arms = list(stats)
    a = np.array([1.0 + max(0.0, stats[x].reward_sum) for x in arms])
    b = np.array([1.0 + max(0.0, stats[x].n - stats[x].reward_sum) for x in arms])
    samples = rng.beta(a[:, None], b[:, None], size=(len(arms), draws))
    best = np.bincount(samples.argmax(axis=0), minlength=len(arms))
    return {x: float(best[i]) / draws for i, x in enumerate(arms)}


def ucb1_scores(stats: Mapping[str, ArmStats]) -> dict[str, float]:
    """UCB1 index per arm (inf for unplayed arms)."""
    total = sum(s.n for s in stats.values())
    out = {}
    for arm, s in stats.items():
        out[arm] = math.inf if s.n <= 0 else s.reward_sum / s.n + math.sqrt(2.0 * math.log(max(total, 1.0)) / s.n)
    return out


def _argmax_share(scores: Mapping[str, float]) -> dict[str, float]:
    best = max(scores.values())
    winners = [a for a, v in scores.items() if v == best]
    return {a: (1.0 / len(winners) if a in winners else 0.0) for a in scores}


def allocate(stats: Mapping[str, ArmStats], *, algorithm: str = "thompson", floor: float = 0.01,
             burn_in: int = 0, epsilon: float = 0.1, draws: int = 10000,
             rng: np.random.Generator | None = None) -> Allocation:
    """Traffic shares for the next period. Unknown algorithm → ValueError."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown bandit algorithm {algorithm!r} (one of {', '.join(ALGORITHMS)})")
    arms = list(stats)
    if not arms:
        return Allocation(algorithm, {}, True)
    if min(s.n for s in stats.values()) < burn_in:
        return Allocation(algorithm, {a: 1.0 / len(arms) for a in arms}, True)
    pbest = None
    if algorithm == "thompson":
        pbest = thompson_probabilities(stats, draws=draws, rng=rng)
        shares = pbest
    elif algorithm == "ucb1":
        shares = _argmax_share(ucb1_scores(stats))
    else:
        means = {a: (s.mean if s.mean is not None else math.inf) for a, s in stats.items()}
        greedy = _argmax_share(means)
        shares = {a: epsilon / len(arms) + (1 - epsilon) * g for a, g in greedy.items()}
    return Allocation(algorithm, apply_floor(shares, min(floor, 1.0 / len(arms))), False, pbest)


def expected_regret(stats: Mapping[str, ArmStats], shares: Mapping[str, float]) -> float | None:
    """Per-pull regret of `shares` estimated from posterior means (production has no true means)."""
    means = {a: (1.0 + s.reward_sum) / (2.0 + s.n) for a, s in stats.items()}
    if not means:
        return None
    best = max(means.values())
    return float(sum(shares.get(a, 0.0) * (best - m) for a, m in means.items()))


def pseudo_regret(true_means: Sequence[float], pulls: Sequence[float]) -> float:
    """sum_k (mu* - mu_k) N_k: only computable in simulation, where the true means are known."""
    best = max(true_means)
    return float(sum((best - m) * n for m, n in zip(true_means, pulls)))
