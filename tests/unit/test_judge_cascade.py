"""The sidecar judge plugin's parts: shared judges, config, the layer-2 candidate rules, budgets,
the planner's rates, and the cascade's counters across a restart."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from typing import Any

import pytest

from otel_llm_eval.judges import HeuristicJudge, JudgeConfigError, OpenAIJudge, build_judge
from otel_llm_eval.semconv import ExperimentAssignment, LLMCall
from otel_llm_eval.sidecar.config import ConfigError
from otel_llm_eval.sidecar.plugins.judge import JudgeCallSummarizer, JudgePlugin
from otel_llm_eval.sidecar.plugins.judge.budget import BUDGET_CALLS, BUDGET_USD, Budget
from otel_llm_eval.sidecar.plugins import CallRecord, EvaluationRecord


def test_the_old_processor_import_path_gives_the_same_judges():
    from otel_llm_eval import processor
    from otel_llm_eval.processor import judges as old

    assert old.OpenAIJudge is OpenAIJudge and old.HeuristicJudge is HeuristicJudge
    assert processor.HeuristicJudge is HeuristicJudge


def test_the_app_import_path_with_the_shared_judges_imports_nothing_heavy():
    code = ("import sys, otel_llm_eval\n"
            "from otel_llm_eval import LLMEvalSpanProcessor, HeuristicJudge, OpenAIJudge\n"
            "from otel_llm_eval.judges import build_judge\n"
            "bad = [m for m in ('numpy', 'scipy', 'fastapi', 'starlette', 'uvicorn', 'prometheus_client')"
            " if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)


BUILD = [
    ("a heuristic evaluator is a HeuristicJudge", {"kind": "heuristic", "name": "h"}, HeuristicJudge, None),
    ("an openai evaluator is an OpenAIJudge", {"kind": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"},
     OpenAIJudge, None),
    ("a callable evaluator is the imported function", {"kind": "callable", "function": "os.path:basename"},
     None, None),
    ("an unknown kind is refused", {"kind": "magic"}, None, "kind must be one of"),
    ("a callable without a function is refused", {"kind": "callable"}, None, "function is required"),
    ("a negative price is refused", {"input_usd_per_million_tokens": -1}, None, "input_usd_per_million_tokens"),
    ("an unknown key is refused", {"temperature": 0.2}, None, "unknown keys"),
    ("negative retries are refused", {"retries": -1}, None, "retries"),
]


@pytest.mark.parametrize("case,spec,cls,error", BUILD, ids=[b[0] for b in BUILD])
def test_build_judge_makes_the_judge_an_evaluator_names_or_says_which_key_is_wrong(case, spec, cls, error):
    if error:
        with pytest.raises(JudgeConfigError, match=error):
            build_judge(spec)
        return
    judge = build_judge(spec)
    if cls is not None:
        assert isinstance(judge, cls)
    else:
        assert callable(judge)


def test_an_openai_evaluator_reads_its_key_from_the_named_environment_variable(monkeypatch):
    monkeypatch.setenv("CASCADE_UNIT_KEY", "sk-test-123")
    judge = build_judge({"kind": "openai", "model": "m", "api_key_env": "CASCADE_UNIT_KEY"})
    assert judge._api_key == "sk-test-123" and "sk-test" not in repr(judge)


def call(trace: str | None = "ab" * 16, completion: str | None = "Paris.", **kw: Any) -> LLMCall:
    return LLMCall(operation="chat", provider="openai", model="m", input_tokens=1, output_tokens=1,
                   finish_reason="stop", prompt="q", completion=completion, session_id=None, user_id=None,
                   experiment=None, variant=None, latency_seconds=0.1, trace_id=trace, span_id="cd" * 8, **kw)


def record(c: LLMCall, failed: tuple[str, ...] = (), error: bool = False, attrs: dict | None = None,
           exps: tuple = ()) -> CallRecord:
    return CallRecord(call=c, service="svc", error=error, end_time_unix_nano=1, experiments=exps,
                      failed_checks=failed, attributes=attrs or {})


SUMMARIZE = [
    ("a call that passed the checks is a candidate", {}, record(call()), "pass", None),
    ("a call that failed a check is not", {}, record(call(), failed=("refusal",)), "fail", "failed_checks"),
    ("an errored call is not", {}, record(call(), error=True), "fail", "failed_checks"),
    ("with sample_from all a failed call is a candidate", {"sample_from": "all"},
     record(call(), failed=("refusal",)), "fail", None),
    ("a call without an answer is skipped as no_text", {}, record(call(completion=None)), "pass", "no_text"),
    ("a blank answer is no text either", {}, record(call(completion="  ")), "pass", "no_text"),
    ("a call the app judged is skipped", {}, record(call(), attrs={"llm_eval.judge.sampled": True}), "pass",
     "app_judged"),
    ("the app's mark sent as a string counts too", {}, record(call(), attrs={"llm_eval.judge.sampled": "true"}),
     "pass", "app_judged"),
    ("a call without a trace id is skipped", {}, record(call(trace=None)), "pass", "no_trace_id"),
]


@pytest.mark.parametrize("case,cfg,rec,outcome,skip", SUMMARIZE, ids=[s[0] for s in SUMMARIZE])
def test_the_summarizer_counts_layer_one_and_picks_layer_two_candidates(case, cfg, rec, outcome, skip):
    s = JudgeCallSummarizer({"enabled": True, **cfg})
    s.add(rec)
    outcomes, skips, candidates = s.result()
    assert outcomes == {("svc", outcome): 1}
    assert skips == ({("svc", skip): 1} if skip else {})
    assert len(candidates) == (0 if skip else 1)
    assert s.result() is None  # the next batch starts empty


def test_a_disabled_judge_still_counts_layer_one_and_picks_nothing():
    s = JudgeCallSummarizer({"enabled": False})
    s.add(record(call()))
    assert s.result() == ({("svc", "pass"): 1}, {}, [])


BUDGET_STEPS = [
    ("calls per minute refuse the call past the budget", dict(calls_per_minute=2),
     [(0.0, 1), (1.0, 1), (2.0, 1)], [None, None, BUDGET_CALLS]),
    ("a new minute gives the calls back", dict(calls_per_minute=1), [(0.0, 1), (61.0, 1)], [None, None]),
    ("a judgement with more calls than are left is refused", dict(calls_per_minute=3), [(0.0, 2), (1.0, 2)],
     [None, BUDGET_CALLS]),
    ("reservations count against the hour's USD", dict(usd_per_hour=0.025, reserve_usd_per_call=0.01),
     [(0.0, 1), (1.0, 1), (2.0, 1)], [None, None, BUDGET_USD]),
    ("while no cost is known, one judgement at a time", dict(usd_per_hour=1.0), [(0.0, 1), (1.0, 1)],
     [None, BUDGET_USD]),
]


@pytest.mark.parametrize("case,kw,steps,expected", BUDGET_STEPS, ids=[b[0] for b in BUDGET_STEPS])
def test_the_budget_admits_and_refuses_in_clock_windows(case, kw, steps, expected):
    budget = Budget(**kw)
    got = [budget.acquire(3600.0 * 100 + t, n)[0] for t, n in steps]
    assert got == expected


def test_settled_costs_replace_reservations_and_set_the_estimate():
    budget = Budget(usd_per_hour=0.05)
    reason, ticket = budget.acquire(100.0)
    assert reason is None and ticket.reserved_usd == 0.0
    budget.settle(ticket, 0.02, calls_made=1)
    assert budget.estimate() == 0.02
    assert [budget.acquire(101.0 + k)[0] for k in range(2)] == [None, BUDGET_USD]  # 0.02 + 0.02 held, 0.06 > 0.05
    snap = budget.snapshot(102.0)
    assert snap["spent_usd"] == pytest.approx(0.02) and snap["reserved_usd"] == pytest.approx(0.02)
    assert snap["exhausted"] == 1.0


class Ctx:
    def __init__(self, config: dict, analysis: Any = None, now: float = 1000.0):
        self.config = config
        self._analysis = analysis
        self._now = now
        self.submitted: list[EvaluationRecord] = []

    def now(self) -> float:
        return self._now

    def bound(self, label: str, value: Any, n: int = 1) -> str:
        return str(value)

    def plugin(self, name: str) -> Any:
        return self._analysis if name == "experiments" else None

    def submit_evaluation(self, rec: EvaluationRecord) -> None:
        self.submitted.append(rec)


class FakeAnalysis:
    name = "experiments"
    results = {"experiments": {"e": {"judge_sample_rate": {"rates": {"a": 0.25, "b": 0.75}}},
                               "no-plan": {"metrics": {}}}}


def test_rates_come_from_the_analysis_plugins_plan_else_the_default_and_never_above_max_rate():
    p = JudgePlugin()
    p.attach(Ctx({"judge": {"enabled": True, "default_rate": 0.1, "max_rate": 0.5,
                            "evaluators": [{"kind": "heuristic", "name": "h"}]}}, FakeAnalysis()))
    try:
        p.tick(0.0)
        assert [p._rate("e", "a"), p._rate("e", "b"), p._rate("e", "c"), p._rate("no-plan", "a"), p._rate(None, None)] \
            == [0.25, 0.5, 0.1, 0.1, 0.1]
    finally:
        p.close()


CONFIG_ERRORS = [
    ("a rate above 1", {"default_rate": 1.5}, "judge.default_rate"),
    ("an unknown sample_from", {"sample_from": "failed"}, "judge.sample_from"),
    ("no evaluators", {"evaluators": []}, "judge.evaluators"),
    ("two evaluators with one name", {"evaluators": [{"kind": "heuristic", "name": "x"}] * 2}, "used twice"),
    ("zero workers", {"workers": 0}, "judge.workers"),
    ("an unknown key", {"sampel_rate": 0.1}, "unknown keys"),
    ("a bad evaluator", {"evaluators": [{"kind": "callable"}]}, r"judge.evaluators\[0\].function"),
]


@pytest.mark.parametrize("case,section,message", CONFIG_ERRORS, ids=[c[0] for c in CONFIG_ERRORS])
def test_a_wrong_judge_section_stops_the_sidecar_with_the_key_named(case, section, message):
    with pytest.raises(ConfigError, match=message):
        JudgePlugin().attach(Ctx({"judge": section}))


def test_layer_counts_costs_and_skips_survive_a_restart():
    cfg = {"judge": {"human_usd_per_label": 4.0, "checks_usd_per_output": 0.001}}
    conn = sqlite3.connect(":memory:")
    first = JudgePlugin()
    first.attach(Ctx(cfg))
    first.load(conn)
    s = JudgeCallSummarizer({"enabled": True})
    for rec in (record(call()), record(call(completion=None)), record(call(), failed=("pii",))):
        s.add(rec)
    first.on_call_summary(s.result())
    exps = (ExperimentAssignment(id="e", variant="a"),)
    for source, score, label, cost in (("llm_judge", 5.0, "pass", 0.01), ("llm_judge", None, None, None),
                                       ("human", 2.0, "fail", None), ("user", 1.0, None, None)):
        first.on_evaluation(EvaluationRecord(name="q", source=source, trace_id="ab" * 16, span_id=None,
                                             time_unix_nano=1, score=score, label=label,
                                             error=None if score is not None else "timeout", service="svc",
                                             experiments=exps,
                                             attributes={"llm_eval.judge.cost_usd": cost} if cost else {}))
    before = first.summary()
    assert before["funnel"] == {"outputs": 3, "passed_checks": 2, "judged": 2, "passed_judge": 1, "reviewed": 1}
    assert before["layers"]["judge"]["outcomes"] == {"pass": 1, "fail": 0, "error": 1}
    assert [before["layers"][k]["cost_usd"] for k in ("checks", "judge", "human")] == pytest.approx([0.003, 0.01, 4.0])
    assert before["skipped"] == {"no_text": 1, "failed_checks": 1}
    first.flush(conn)
    second = JudgePlugin()
    second.attach(Ctx(cfg))
    second.load(conn)
    after = second.summary()
    assert (after["layers"], after["skipped"], after["budgets"]["human"]) == \
        (before["layers"], before["skipped"], before["budgets"]["human"])


VALIDATION = [
    ("a judge pass by label is validated at rate 1", 1.0, 5.0, "pass", "validation"),
    ("a judge fail by label is never validated", 1.0, 5.0, "fail", None),
    ("without a label the score decides (pass)", 1.0, 3.0, None, "validation"),
    ("without a label the score decides (fail)", 1.0, 2.9, None, None),
    ("rate 0 validates nothing", 0.0, 5.0, "pass", None),
    ("an evaluation without score or label is not a pass", 1.0, None, None, None),
]


@pytest.mark.parametrize("case,rate,score,label,reason", VALIDATION, ids=[v[0] for v in VALIDATION])
def test_layer_three_validates_only_calls_the_judge_passed(case, rate, score, label, reason):
    from otel_llm_eval.sidecar.plugins.review.sampling import SamplingConfig, validation_candidate

    got = validation_candidate(SamplingConfig(validation_rate=rate), "ab" * 16, score, label, 3.0)
    assert (got[0] if got else None) == reason


def test_the_validation_draw_is_deterministic_and_near_its_rate():
    from otel_llm_eval.sidecar.plugins.review.sampling import SamplingConfig, validation_candidate

    cfg = SamplingConfig(validation_rate=0.2)
    picks = [validation_candidate(cfg, f"{i:032x}", 5.0, "pass", 3.0) is not None for i in range(5000)]
    assert picks == [validation_candidate(cfg, f"{i:032x}", 5.0, "pass", 3.0) is not None for i in range(5000)]
    assert 0.17 < sum(picks) / len(picks) < 0.23


MARKS = [
    ("a span handed to the app's judge is marked", 1.0, True),
    ("a span the app does not judge is not marked", 0.0, False),
]


@pytest.mark.parametrize("case,rate,marked", MARKS, ids=[m[0] for m in MARKS])
def test_the_processor_marks_the_spans_it_judges_for_the_sidecar(case, rate, marked):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from otel_llm_eval import LLMEvalSpanProcessor

    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    processor = LLMEvalSpanProcessor(judge=HeuristicJudge(), judge_sample_rate=rate, tracer_provider=provider)
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        with provider.get_tracer("t").start_as_current_span("chat m") as span:
            span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.request.model": "m",
                                 "gen_ai.completion.0.content": "Paris."})
        assert processor.force_flush(10_000)
        (llm,) = [s for s in exporter.get_finished_spans() if s.name == "chat m"]
        assert (llm.attributes.get("llm_eval.judge.sampled") is True) == marked
    finally:
        provider.shutdown()


def test_the_cascade_config_in_the_docs_is_a_valid_sidecar_config(tmp_path):
    import re
    from pathlib import Path

    import yaml

    from otel_llm_eval.sidecar.server import build

    doc = (Path(__file__).resolve().parents[2] / "docs" / "evaluation-cascade.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(.*?)```", doc, re.DOTALL).group(1)
    cfg = yaml.safe_load(block)
    sidecar = build(cfg, db_path=str(tmp_path / "s.db"), environ={})
    try:
        judge = next(p for p in sidecar.plugins if p.name == "judge")
        assert judge.enabled and [name for name, *_ in judge.judges] == ["quality"]
        assert sidecar.config["review"]["sampling"]["validation_rate"] == 0.1
    finally:
        sidecar.stop()
