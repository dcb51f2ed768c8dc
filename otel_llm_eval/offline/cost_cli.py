"""`otel-llm-eval cost`: monthly cost of evaluation, or (`--budget`) the rates that fit a budget,
or (`--sidecar URL`) the projected cost of the outputs a sidecar saw against what it spent.

Exit codes: 0 ok, 2 invalid input.
"""

from __future__ import annotations

import argparse
import json
import sys

from .cost import CostBreakdown, monthly_cost, rates_for_budget
from .cost_sidecar import compare, fetch_cascade, format_comparison


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--daily-outputs", type=float, help="LLM outputs per day (required without --sidecar)")
    p.add_argument("--llm-sample-rate", type=float, default=0.1, help="share judged by an LLM (default 0.1)")
    p.add_argument("--human-sample-rate", type=float, default=0.01, help="share reviewed by humans (default 0.01)")
    p.add_argument("--llm-cost", type=float, default=0.05, help="USD per LLM evaluation (default 0.05)")
    p.add_argument("--human-cost", type=float, default=5.0, help="USD per human evaluation (default 5)")
    p.add_argument("--days-per-month", type=float, default=30, help="days in a month (default 30)")
    p.add_argument("--budget", type=float, help="monthly budget in USD: print the sample rates that fit it")
    p.add_argument("--human-share", type=float,
                   help="with --budget: share of the budget for human review (default: keep the ratio of the rates)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--sidecar", metavar="URL",
                   help="compare the projected cost of the outputs this sidecar saw with what its cascade spent")
    p.add_argument("--token", help="with --sidecar: bearer token (default: $OTEL_LLM_EVAL_SERVER__AUTH_TOKEN)")


def _money(v: float) -> str:
    return f"${v:,.2f}"


def _count(v: float) -> str:
    return f"{v:,.0f}" if abs(v - round(v)) < 1e-9 else f"{v:,.1f}"


def format_breakdown(b: CostBreakdown) -> str:
    rows = [
        ("monthly outputs", _count(b.monthly_outputs),
         f"{_count(b.daily_outputs)}/day x {b.days_per_month:g} days"),
        ("LLM evaluations", _count(b.llm_evaluations), f"{b.llm_sample_rate * 100:.4g}% of outputs"),
        ("human evaluations", _count(b.human_evaluations), f"{b.human_sample_rate * 100:.4g}% of outputs"),
        ("LLM cost", _money(b.llm_cost_usd), f"{_count(b.llm_evaluations)} x {_money(b.llm_cost_usd_per_eval)}"),
        ("human cost", _money(b.human_cost_usd),
         f"{_count(b.human_evaluations)} x {_money(b.human_cost_usd_per_eval)}"),
        ("total", _money(b.total_cost_usd), "per month"),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    return "\n".join(f"{a.ljust(w0)}  {v.rjust(w1)}  {c}" for a, v, c in rows) + "\n"


def _run_sidecar(args: argparse.Namespace) -> int:
    import os

    token = args.token or os.environ.get("OTEL_LLM_EVAL_SERVER__AUTH_TOKEN") or None
    try:
        if args.budget is not None:
            raise ValueError("--budget and --sidecar do not go together")
        c = compare(fetch_cascade(args.sidecar, token), llm_sample_rate=args.llm_sample_rate,
                    human_sample_rate=args.human_sample_rate, llm_cost_usd=args.llm_cost,
                    human_cost_usd=args.human_cost)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(c, indent=2) + "\n" if args.json else format_comparison(c))
    return 0


def run(args: argparse.Namespace) -> int:
    if getattr(args, "sidecar", None):
        return _run_sidecar(args)
    if args.daily_outputs is None:
        print("error: --daily-outputs is required (or --sidecar URL)", file=sys.stderr)
        return 2
    try:
        if args.budget is None:
            if args.human_share is not None:
                raise ValueError("--human-share needs --budget")
            b = monthly_cost(args.daily_outputs, llm_sample_rate=args.llm_sample_rate,
                             human_sample_rate=args.human_sample_rate, llm_cost_usd=args.llm_cost,
                             human_cost_usd=args.human_cost, days_per_month=args.days_per_month)
            if args.json:
                sys.stdout.write(json.dumps(b.as_dict(), indent=2) + "\n")
            else:
                sys.stdout.write(format_breakdown(b))
            return 0
        plan = rates_for_budget(args.budget, args.daily_outputs, llm_sample_rate=args.llm_sample_rate,
                                human_sample_rate=args.human_sample_rate, llm_cost_usd=args.llm_cost,
                                human_cost_usd=args.human_cost, human_share=args.human_share,
                                days_per_month=args.days_per_month)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.write(json.dumps({"budget_usd": plan.budget_usd, "mode": plan.mode, "note": plan.note,
                                     "llm_sample_rate": plan.llm_sample_rate,
                                     "human_sample_rate": plan.human_sample_rate,
                                     "breakdown": plan.breakdown.as_dict()}, indent=2) + "\n")
        return 0
    print(f"budget {_money(plan.budget_usd)}/month: --llm-sample-rate {plan.llm_sample_rate:.6g} "
          f"--human-sample-rate {plan.human_sample_rate:.6g}")
    print(f"({plan.note})")
    sys.stdout.write(format_breakdown(plan.breakdown))
    return 0
