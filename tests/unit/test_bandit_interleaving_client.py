"""App-side helpers: the Bandit client (local mode, offline fallback, stamping), pairwise and
team-draft interleaving records, and RemoteJudgeRates when the sidecar is unreachable."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_llm_eval import Bandit, LLMEvalSpanProcessor, RemoteJudgeRates, pairwise, semconv, team_draft
from conftest import free_port


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(LLMEvalSpanProcessor(tracer_provider=provider))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("t"), exporter
    provider.shutdown()


@pytest.mark.parametrize("algorithm", ["thompson", "ucb1", "epsilon_greedy"])
def test_local_bandit_learns_the_best_arm_without_a_sidecar(algorithm):
    rng = random.Random(5)
    truth = {"a": 0.1, "b": 0.2, "c": 0.6}
    bandit = Bandit("local", list(truth), algorithm=algorithm, burn_in=10, floor=0.01, seed=1)
    picks = {a: 0 for a in truth}
    for _ in range(3000):
        arm = bandit.choose()
        picks[arm] += 1
        bandit.reward(arm, 1.0 if rng.random() < truth[arm] else 0.0)
    assert max(picks, key=picks.get) == "c"
    assert picks["c"] > 0.6 * 3000
    assert min(picks.values()) >= 10  # burn-in and floor keep exploring
    assert max(bandit.allocation(), key=bandit.allocation().get) == "c"


def test_bandit_activate_stamps_the_arm_like_an_experiment_variant(spans):
    tracer, exporter = spans
    bandit = Bandit("models", ["small", "large"], seed=2)
    with bandit.activate("large") as arm:
        with tracer.start_as_current_span("chat"):
            pass
    attrs = exporter.get_finished_spans()[0].attributes
    assert arm == "large"
    assert attrs[semconv.EXPERIMENT_ID] == "models" and attrs[semconv.EXPERIMENT_VARIANT] == "large"


def test_shared_bandit_offline_uses_a_uniform_allocation_and_never_raises():
    bandit = Bandit("models", ["a", "b"], sidecar_url=f"http://127.0.0.1:{free_port()}", start=False,
                    timeout_seconds=0.5, seed=3)
    assert bandit.refresh() is False and bandit.poller.fetches_failed == 1
    assert bandit.allocation() == {"a": 0.5, "b": 0.5}
    picks = [bandit.choose() for _ in range(2000)]
    assert 850 < picks.count("a") < 1150


def test_shared_bandit_keeps_the_last_known_allocation_when_the_sidecar_goes_away():
    bandit = Bandit("models", ["a", "b"], sidecar_url=f"http://127.0.0.1:{free_port()}", start=False, seed=4,
                    timeout_seconds=0.5)
    bandit._parse({"allocation": {"a": 0.9, "b": 0.1, "gone": 0.5}})  # as a fetch would
    assert bandit.refresh() is False
    assert bandit.allocation() == pytest.approx({"a": 0.9, "b": 0.1})


@pytest.mark.parametrize("kwargs,match", [
    (dict(arms=["a"]), "two distinct arms"),
    (dict(arms=["a", "a"]), "two distinct arms"),
    (dict(arms=["a", "b"], algorithm="softmax"), "unknown algorithm"),
    (dict(arms=["a", "b"], floor=0.7), "floor"),
    (dict(arms=["a=1", "b"]), "reserved characters"),
], ids=["one arm", "duplicate arms", "unknown algorithm", "floor above 1/arms", "reserved character in an arm"])
def test_bad_bandit_arguments_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Bandit("b", **kwargs)


def test_bad_rewards_are_ignored_and_counted():
    bandit = Bandit("b", ["x", "y"])
    bandit.reward("nope", 1.0)
    bandit.reward("x", float("nan"))
    bandit.reward("x", "high")  # type: ignore[arg-type]
    assert bandit.ignored_rewards == 3 and bandit.stats()["x"]["n"] == 0


def test_pairwise_randomizes_the_order_and_records_winner_loser_and_first_shown(spans):
    tracer, exporter = spans
    rng = random.Random(1)
    orders = [pairwise("style", "terse", "friendly", rng=rng).shown for _ in range(400)]
    assert 150 < sum(o[0] == "terse" for o in orders) < 250
    cmp = pairwise("style", "terse", "friendly", rng=rng)
    with tracer.start_as_current_span("chat") as span:
        pass
    cmp.record(span, winner="friendly")
    cmp.record(span, tie=True)
    ev = [s for s in exporter.get_finished_spans() if s.attributes.get(semconv.EVALUATION_NAME)]
    assert len(ev) == 2
    a = ev[0].attributes
    assert a[semconv.INTERLEAVING_ID] == "style" and a[semconv.INTERLEAVING_WINNER] == "friendly"
    assert a[semconv.INTERLEAVING_LOSER] == "terse" and a[semconv.INTERLEAVING_FIRST_SHOWN] == cmp.shown[0]
    assert a[semconv.INTERLEAVING_TIE] is False and a[semconv.EVALUATION_SOURCE] == "user"
    assert ev[0].parent.span_id == span.get_span_context().span_id
    assert ev[1].attributes[semconv.INTERLEAVING_TIE] is True
    with pytest.raises(ValueError, match="winner must be"):
        cmp.record(span, winner="other")


def test_team_draft_interleaves_without_duplicates_and_credits_clicks_to_teams(spans):
    tracer, exporter = spans
    a = ["d1", "d2", "d3", "d4", "d5"]
    b = ["d3", "d1", "d6", "d7", "d2"]
    td = team_draft("ranker", a, b, a="old", b="new", length=6, rng=random.Random(3))
    assert len(td.items) == 6 and len(set(td.items)) == 6
    assert td.teams.count("old") == td.teams.count("new") == 3
    # every prefix is balanced within one item (the coin decides who drafts first each round)
    for k in range(1, 7):
        assert abs(td.teams[:k].count("old") - td.teams[:k].count("new")) <= 1
    new_pos = [i for i, t in enumerate(td.teams) if t == "new"]
    old_pos = [i for i, t in enumerate(td.teams) if t == "old"]
    assert td.outcome([]) is None
    assert td.outcome(new_pos[:2] + old_pos[:1]) == "new"
    assert td.outcome([new_pos[0], old_pos[0]]) == "tie"
    with tracer.start_as_current_span("search") as span:
        pass
    assert td.record(span, []) is None and not exporter.get_finished_spans()[1:]
    assert td.record(span, [old_pos[0]]) == "old"
    rec = exporter.get_finished_spans()[-1].attributes
    assert rec[semconv.INTERLEAVING_METHOD] == "team_draft" and rec[semconv.INTERLEAVING_WINNER] == "old"
    with pytest.raises(ValueError, match="outside the list"):
        td.credit([99])


def test_remote_judge_rates_fall_back_to_the_configured_rate_when_unreachable():
    rates = RemoteJudgeRates(f"http://127.0.0.1:{free_port()}", start=False, timeout_seconds=0.5)
    assert rates.refresh() is False
    assert rates("exp", "control") is None
    rates._parse({"experiments": {"exp": {"control": 0.25, "bad": "x"}}})
    assert rates("exp", "control") == 0.25 and rates("exp", "bad") is None


def test_the_app_side_helpers_import_no_numpy_scipy_or_web_framework():
    code = ("import sys, otel_llm_eval\n"
            "from otel_llm_eval import Bandit, pairwise, team_draft, RemoteJudgeRates\n"
            "bad = [m for m in ('numpy', 'scipy', 'fastapi', 'starlette', 'uvicorn', 'prometheus_client')"
            " if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)
