"""Monthly cost of evaluation, and the sample rates that fit a budget.

The model (the seed's, with its arithmetic done right):

    monthly_outputs   = daily_outputs * days_per_month            (30 by default)
    llm_evaluations   = monthly_outputs * llm_sample_rate
    human_evaluations = monthly_outputs * human_sample_rate
    llm_cost_usd      = llm_evaluations * llm_cost_usd_per_eval
    human_cost_usd    = human_evaluations * human_cost_usd_per_eval
    total_cost_usd    = llm_cost_usd + human_cost_usd

With the seed's defaults and 10,000 outputs a day: 300,000 outputs, 30,000 LLM evaluations
($1,500) and 3,000 human evaluations ($15,000), $16,500 in total (the seed's own comment calls
$1,500 the human cost; by its formula that is the LLM cost and human review costs ten times more).

The reverse (`rates_for_budget`): with two rates and one budget there is one equation for two
unknowns, so one more choice is needed. Either keep the ratio of the given rates (scale both by
the same factor), or give human review a share of the budget; in both cases a rate is capped
at 1 (you cannot evaluate more than every output) and the budget it leaves goes to the other.

Pure functions; raise ValueError on invalid input (negative counts, rates outside [0, 1]).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class CostBreakdown:
    daily_outputs: float
    days_per_month: float
    llm_sample_rate: float
    human_sample_rate: float
    llm_cost_usd_per_eval: float
    human_cost_usd_per_eval: float
    monthly_outputs: float
    llm_evaluations: float
    human_evaluations: float
    llm_cost_usd: float
    human_cost_usd: float
    total_cost_usd: float

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BudgetPlan:
    budget_usd: float
    mode: str                 # "keep ratio" | "human share"
    note: str                 # how the rates were chosen, in words
    breakdown: CostBreakdown  # at the chosen rates (total <= budget, up to rounding)

    @property
    def llm_sample_rate(self) -> float:
        return self.breakdown.llm_sample_rate

    @property
    def human_sample_rate(self) -> float:
        return self.breakdown.human_sample_rate


def _check_nonneg(**values: float) -> None:
    for name, v in values.items():
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")


def _check_rate(**values: float) -> None:
    _check_nonneg(**values)
    for name, v in values.items():
        if v > 1:
            raise ValueError(f"{name} must be between 0 and 1, got {v!r}")


def monthly_cost(daily_outputs: float, *, llm_sample_rate: float = 0.1, human_sample_rate: float = 0.01,
                 llm_cost_usd: float = 0.05, human_cost_usd: float = 5.0,
                 days_per_month: float = 30) -> CostBreakdown:
    """The monthly breakdown for the given volume, sample rates and per-evaluation prices."""
    _check_nonneg(daily_outputs=daily_outputs, llm_cost_usd=llm_cost_usd, human_cost_usd=human_cost_usd,
                  days_per_month=days_per_month)
    _check_rate(llm_sample_rate=llm_sample_rate, human_sample_rate=human_sample_rate)
    monthly = daily_outputs * days_per_month
    llm_evals = monthly * llm_sample_rate
    human_evals = monthly * human_sample_rate
    llm_cost = llm_evals * llm_cost_usd
    human_cost = human_evals * human_cost_usd
    return CostBreakdown(daily_outputs, days_per_month, llm_sample_rate, human_sample_rate, llm_cost_usd,
                         human_cost_usd, monthly, llm_evals, human_evals, llm_cost, human_cost,
                         llm_cost + human_cost)


def rates_for_budget(budget_usd: float, daily_outputs: float, *, llm_sample_rate: float = 0.1,
                     human_sample_rate: float = 0.01, llm_cost_usd: float = 0.05, human_cost_usd: float = 5.0,
                     human_share: float | None = None, days_per_month: float = 30) -> BudgetPlan:
    """Sample rates whose monthly cost fits `budget_usd` (and uses it, unless every rate hits 1).

    `human_share=None`: keep the ratio of `llm_sample_rate` to `human_sample_rate` and scale both.
    `human_share=s`: spend the share s of the budget on human review, the rest on the LLM judge.
    """
    _check_nonneg(budget_usd=budget_usd, daily_outputs=daily_outputs, llm_cost_usd=llm_cost_usd,
                  human_cost_usd=human_cost_usd, days_per_month=days_per_month)
    _check_rate(llm_sample_rate=llm_sample_rate, human_sample_rate=human_sample_rate)
    monthly = daily_outputs * days_per_month
    per_rate_llm = monthly * llm_cost_usd      # USD per unit of LLM sample rate
    per_rate_human = monthly * human_cost_usd  # USD per unit of human sample rate

    def fill(budget: float, per_rate: float, cap: float = 1.0) -> float:
        if per_rate == 0:
            return cap  # free: evaluate everything allowed
        return min(cap, budget / per_rate)

    if human_share is not None:
        _check_rate(human_share=human_share)
        r_h = fill(budget_usd * human_share, per_rate_human)
        r_l = fill(budget_usd - r_h * per_rate_human, per_rate_llm)
        mode = "human share"
        note = (f"{human_share:.0%} of the budget to human review, the rest to the LLM judge"
                + (" (capped at every output)" if 1.0 in (r_h, r_l) else ""))
    else:
        if llm_sample_rate == 0 and human_sample_rate == 0:
            raise ValueError("both sample rates are 0: give the ratio to keep (nonzero rates) or --human-share")
        spend_per_k = llm_sample_rate * per_rate_llm + human_sample_rate * per_rate_human
        k = math.inf if spend_per_k == 0 else budget_usd / spend_per_k
        r_l, r_h = min(1.0, k * llm_sample_rate), min(1.0, k * human_sample_rate)
        # A rate capped at 1 spends less than its share: the other rate gets the remainder.
        if r_l == 1.0 and r_h < 1.0 and human_sample_rate > 0:
            r_h = fill(budget_usd - per_rate_llm, per_rate_human)
        elif r_h == 1.0 and r_l < 1.0 and llm_sample_rate > 0:
            r_l = fill(budget_usd - per_rate_human, per_rate_llm)
        mode = "keep ratio"
        note = (f"kept the ratio {llm_sample_rate:g} : {human_sample_rate:g} (LLM : human), scaled by "
                f"{k:.4g}" if math.isfinite(k) else "nothing to pay for: every rate at 1")
        if math.isfinite(k) and (r_l == 1.0 or r_h == 1.0):
            note += "; a rate hit 1 (every output) and the rest of the budget went to the other"
    return BudgetPlan(budget_usd, mode, note,
                      monthly_cost(daily_outputs, llm_sample_rate=r_l, human_sample_rate=r_h,
                                   llm_cost_usd=llm_cost_usd, human_cost_usd=human_cost_usd,
                                   days_per_month=days_per_month))
