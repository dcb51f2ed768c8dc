"""Cost model: numbers checked against hand-computed values, the budget reverse, bad input, exit codes."""

from __future__ import annotations

import json

import pytest

from otel_llm_eval.cli import main
from otel_llm_eval.offline.cost import monthly_cost, rates_for_budget


def test_the_seeds_example_computed_correctly():
    # 10,000/day x 30 = 300,000 outputs; 10 % -> 30,000 LLM evals x $0.05 = $1,500;
    # 1 % -> 3,000 human evals x $5 = $15,000; total $16,500 (the seed's comment says $1,500 human).
    b = monthly_cost(10_000)
    assert b.monthly_outputs == 300_000
    assert b.llm_evaluations == pytest.approx(30_000) and b.llm_cost_usd == pytest.approx(1_500)
    assert b.human_evaluations == pytest.approx(3_000) and b.human_cost_usd == pytest.approx(15_000)
    assert b.total_cost_usd == pytest.approx(16_500)


@pytest.mark.parametrize("kwargs,llm,human,total", [
    # 2,500/day x 31 = 77,500; 20 % x $0.002 = 15,500 evals -> $31; 0.5 % x $12 = 387.5 evals -> $4,650.
    ({"daily_outputs": 2_500, "llm_sample_rate": 0.2, "human_sample_rate": 0.005, "llm_cost_usd": 0.002,
      "human_cost_usd": 12, "days_per_month": 31}, 31.0, 4_650.0, 4_681.0),
    # Nothing sampled costs nothing.
    ({"daily_outputs": 1_000, "llm_sample_rate": 0, "human_sample_rate": 0}, 0.0, 0.0, 0.0),
    # Everything judged, nobody reviews: 100 x 30 x $0.05 = $150.
    ({"daily_outputs": 100, "llm_sample_rate": 1, "human_sample_rate": 0}, 150.0, 0.0, 150.0),
], ids=["custom prices over a 31-day month", "zero rates", "judge everything"])
def test_monthly_cost_matches_hand_computed_values(kwargs, llm, human, total):
    b = monthly_cost(**kwargs)
    assert (b.llm_cost_usd, b.human_cost_usd, b.total_cost_usd) == pytest.approx((llm, human, total))


def test_a_budget_keeps_the_ratio_of_the_rates_and_spends_it_exactly():
    # Defaults cost $16,500 at 0.1/0.01; $5,000 scales both by 5000/16500 = 0.30303.
    plan = rates_for_budget(5_000, 10_000)
    assert plan.llm_sample_rate == pytest.approx(0.1 * 5000 / 16500)
    assert plan.human_sample_rate == pytest.approx(0.01 * 5000 / 16500)
    assert plan.breakdown.total_cost_usd == pytest.approx(5_000)


def test_a_human_share_splits_the_budget():
    # $5,000: half to humans -> 2,500 / (300,000 x $5) = 1/600; half to the judge -> 2,500 / (300,000 x $0.05) = 1/6.
    plan = rates_for_budget(5_000, 10_000, human_share=0.5)
    assert plan.human_sample_rate == pytest.approx(1 / 600)
    assert plan.llm_sample_rate == pytest.approx(1 / 6)
    assert plan.breakdown.human_cost_usd == pytest.approx(2_500)


def test_a_rate_capped_at_one_gives_its_leftover_to_the_other():
    # 3,000 outputs/month. Judge everything: $150. $1,000 budget: human gets $850 -> 850 / 15,000.
    plan = rates_for_budget(1_000, 100, llm_sample_rate=0.5, human_sample_rate=0.01)
    assert plan.llm_sample_rate == 1.0
    assert plan.human_sample_rate == pytest.approx(850 / 15_000)
    assert plan.breakdown.total_cost_usd == pytest.approx(1_000)


def test_a_budget_larger_than_everything_evaluates_everything():
    plan = rates_for_budget(1e9, 100)
    assert (plan.llm_sample_rate, plan.human_sample_rate) == (1.0, 1.0)
    assert plan.breakdown.total_cost_usd == pytest.approx(3_000 * 5.05)


@pytest.mark.parametrize("call,message", [
    (lambda: monthly_cost(-1), "daily_outputs must be a finite number >= 0"),
    (lambda: monthly_cost(10, llm_sample_rate=1.5), "llm_sample_rate must be between 0 and 1"),
    (lambda: monthly_cost(10, human_cost_usd=float("nan")), "human_cost_usd must be a finite number"),
    (lambda: rates_for_budget(-5, 10), "budget_usd must be a finite number >= 0"),
    (lambda: rates_for_budget(5, 10, llm_sample_rate=0, human_sample_rate=0), "both sample rates are 0"),
    (lambda: rates_for_budget(5, 10, human_share=2), "human_share must be between 0 and 1"),
], ids=["negative volume", "rate above one", "NaN price", "negative budget", "no ratio to keep", "share above one"])
def test_invalid_input_raises_a_value_error_naming_the_parameter(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_cli_prints_the_breakdown(capsys):
    assert main(["cost", "--daily-outputs", "10000"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["monthly", "outputs", "300,000"]
    assert out[3].split()[:3] == ["LLM", "cost", "$1,500.00"]
    assert out[4].split()[:3] == ["human", "cost", "$15,000.00"]
    assert out[5].split()[:2] == ["total", "$16,500.00"]


def test_cli_budget_prints_the_flags_to_use(capsys):
    assert main(["cost", "--daily-outputs", "10000", "--budget", "5000", "--human-share", "0.5"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "--llm-sample-rate 0.166667 --human-sample-rate 0.00166667" in first


def test_cli_json_output_is_the_library_result(capsys):
    assert main(["cost", "--daily-outputs", "10000", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == monthly_cost(10_000).as_dict()


@pytest.mark.parametrize("argv,message", [
    (["--daily-outputs", "100", "--human-sample-rate", "3"], "human_sample_rate must be between 0 and 1"),
    (["--daily-outputs", "100", "--human-share", "0.5"], "--human-share needs --budget"),
], ids=["rate above one", "share without budget"])
def test_cli_bad_input_exits_2(capsys, argv, message):
    assert main(["cost"] + argv) == 2
    assert message in capsys.readouterr().err
