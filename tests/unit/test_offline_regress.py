"""Regression gate: scorers, paired tests, concurrent runs with failing targets, baselines, reports, judges."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from otel_llm_eval.cli import main
from otel_llm_eval.offline import datasets, paired, regress, report
from otel_llm_eval.offline.scorers import contains, exact_match, judge_score, normalize_text, token_f1

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "dataset.json"
TARGET = f"{ROOT / 'examples' / 'regress_target.py'}:answer"


# ------------------------------------------------------------------------------------ scorers


@pytest.mark.parametrize("answer,expected,exact,cont,f1", [
    ("Paris", "Paris", 1.0, 1.0, 1.0),
    ("The capital of France is Paris.", "Paris", 0.0, 1.0, 2 * (1 / 5) * 1 / (1 / 5 + 1)),  # 5 tokens, 1 shared
    ("paris!", "The Paris", 1.0, 1.0, 1.0),                 # case, punctuation and articles ignored
    ("124", "144", 0.0, 0.0, 0.0),
    ("42 apples", "4", 0.0, 0.0, 0.0),                      # containment is by whole tokens
    ("new york city", "new york", 0.0, 1.0, 2 * (2 / 3) * 1 / (2 / 3 + 1)),
    ("", "Paris", 0.0, 0.0, 0.0),
], ids=["identical", "answer in a sentence", "normalization", "wrong number",
        "no partial-token match", "extra token", "empty answer"])
def test_reference_scorers_match_hand_computed_values(answer, expected, exact, cont, f1):
    assert exact_match(answer, expected) == exact
    assert contains(answer, expected) == cont
    assert token_f1(answer, expected) == pytest.approx(f1)


def test_normalization_is_squad_style():
    assert normalize_text("  The  Quick, brown fox! ") == "quick brown fox"


# ------------------------------------------------------------------------------ paired tests


def test_exact_sign_flip_p_value_for_five_losses_is_one_in_thirty_two():
    res = paired.sign_flip_p_value([-1.0] * 5)
    assert res.p_value == pytest.approx(1 / 32)
    assert res.method == "permutation (exact)"


def test_exact_sign_flip_counts_every_pattern_at_least_as_extreme():
    # Sums <= -2 among 16 sign patterns of four unit differences: 3 or 4 minus signs = 5 patterns.
    assert paired.sign_flip_p_value([-1, -1, -1, 1, 0, 0]).p_value == pytest.approx(5 / 16)


def test_no_differences_give_p_one_for_both_tests():
    assert paired.sign_flip_p_value([0.0] * 50).p_value == 1.0
    assert paired.bootstrap_p_value([0.0] * 50).p_value == 1.0


def test_monte_carlo_sign_flips_and_bootstrap_agree_on_a_clear_drop():
    d = [-0.2 + 0.01 * (i % 5) for i in range(100)]  # mean -0.18, all negative
    mc = paired.sign_flip_p_value(d, resamples=2000)
    bs = paired.bootstrap_p_value(d, resamples=2000)
    assert mc.p_value == pytest.approx(1 / 2001)
    assert bs.p_value == pytest.approx(1 / 2001)
    assert bs.ci_low < -0.18 < bs.ci_high < 0


def test_noise_around_zero_is_not_significant():
    d = [(-1) ** i * 0.1 for i in range(60)]
    assert paired.sign_flip_p_value(d, resamples=2000).p_value > 0.3
    assert paired.bootstrap_p_value(d, resamples=2000).p_value > 0.3


def test_holm_adjustment_matches_hand_computation():
    assert paired.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_relative_change_of_a_zero_baseline_is_undefined_not_a_division_error():
    assert paired.relative_change(0.0, 0.5) is None
    assert paired.relative_change(2.0, 1.0) == -0.5


# -------------------------------------------------------------------------------- comparison


def results(version, per_sample, metric="exact"):
    """A results document with one metric; per_sample maps id -> value."""
    samples = [{"id": sid, "answer": "a", "error": None, "scores": {"success": 1.0, metric: v}}
               for sid, v in per_sample.items()]
    vals = list(per_sample.values())
    return {"format": regress.RESULTS_FORMAT, "dataset": {"id": "d", "version": version, "samples": len(vals)},
            "target": "t", "errors": 0, "samples": samples,
            "summary": {"success": {"n": len(vals), "mean": 1.0}, metric: {"n": len(vals), "mean": sum(vals) / len(vals)}}}


COMPARE_CASES = [
    ("a large drop on many samples regresses", {f"s{i}": 1.0 for i in range(30)},
     {f"s{i}": (0.0 if i < 15 else 1.0) for i in range(30)}, "exact", True),
    ("a large drop on only three samples is not significant", {"a": 1.0, "b": 1.0, "c": 1.0},
     {"a": 0.0, "b": 0.0, "c": 0.0}, "exact", False),
    ("a significant drop under the threshold does not regress", {f"s{i}": 1.0 for i in range(100)},
     {f"s{i}": 0.98 for i in range(100)}, "f1", False),
    ("higher latency is worse", {f"s{i}": 1.0 for i in range(30)}, {f"s{i}": 1.5 for i in range(30)},
     "latency", True),
    ("lower latency is not a regression", {f"s{i}": 1.5 for i in range(30)}, {f"s{i}": 1.0 for i in range(30)},
     "latency", False),
    ("a zero cost baseline compares the absolute change, under the threshold",
     {f"s{i}": 0.0 for i in range(30)}, {f"s{i}": 0.01 for i in range(30)}, "cost", False),
    ("a zero cost baseline compares the absolute change, over the threshold",
     {f"s{i}": 0.0 for i in range(30)}, {f"s{i}": 0.2 for i in range(30)}, "cost", True),
]


@pytest.mark.parametrize("name,base,cur,metric,regressed", COMPARE_CASES, ids=[c[0] for c in COMPARE_CASES])
def test_a_metric_regresses_only_when_the_drop_is_large_and_significant(name, base, cur, metric, regressed):
    comp = regress.compare(results("v1", base, metric), results("v1", cur, metric), resamples=2000)
    m = next(c for c in comp.metrics if c.metric == metric)
    assert m.regressed is regressed
    assert all(c.p_value is None or 0 < c.p_value <= 1 for c in comp.metrics)


def test_the_zero_baseline_is_reported_without_a_relative_change():
    comp = regress.compare(results("v1", {"a": 0.0, "b": 0.0}, "cost"), results("v1", {"a": 0.1, "b": 0.1}, "cost"))
    m = next(c for c in comp.metrics if c.metric == "cost")
    assert m.relative_change is None and m.absolute_change == pytest.approx(0.1)
    assert "zero baseline" in report.text_report(results("v1", {"a": 0.1, "b": 0.1}, "cost"), comp)


def test_a_baseline_from_another_dataset_version_is_refused():
    with pytest.raises(regress.BaselineMismatch, match="dataset version v1"):
        regress.compare(results("v1", {"a": 1.0}), results("v2", {"a": 1.0}))


def test_worst_per_sample_diffs_list_the_biggest_drops_first():
    base = {f"s{i}": 1.0 for i in range(20)}
    cur = {f"s{i}": (0.0 if i < 12 else 1.0) for i in range(20)}
    cur["s0"] = 0.0
    comp = regress.compare(results("v", base, "f1"), results("v", cur, "f1"), worst_k=3, resamples=2000)
    worst = comp.worst["f1"]
    assert len(worst) == 3 and all(w["diff"] == -1.0 for w in worst)


# ------------------------------------------------------------------------------------- runs


def make_ds(n=12):
    return datasets.Dataset("d", None, [{"id": f"s{i}", "query": f"q{i}", "context": [], "expected_answer": f"a{i}",
                                         "tags": []} for i in range(n)])


def test_a_target_that_raises_on_some_samples_fails_those_and_the_run_goes_on():
    def target(sample):
        if sample["id"] in ("s3", "s7"):
            raise RuntimeError("boom " + sample["id"])
        return f"a{sample['id'][1:]}"

    res = regress.run_dataset(make_ds(), target, concurrency=4)
    by_id = {r.id: r for r in res}
    assert [r.id for r in res] == [f"s{i}" for i in range(12)]  # dataset order
    assert by_id["s3"].error == "RuntimeError: boom s3" and by_id["s3"].scores["success"] == 0.0
    assert by_id["s3"].scores["exact"] == 0.0 and by_id["s3"].scores["latency"] is None
    assert sum(r.scores["exact"] for r in res) == 10


@pytest.mark.parametrize("returned,error", [
    (None, "expected str or dict"),
    ({"text": "x"}, "'answer' is NoneType"),
    ({"answer": "x", "cost": float("nan")}, "non-finite cost"),
], ids=["None", "dict without answer", "NaN cost"])
def test_a_target_returning_the_wrong_shape_counts_as_a_failure(returned, error):
    res = regress.run_dataset(make_ds(2), lambda s: returned, concurrency=1)
    assert all(error in r.error and r.scores["success"] == 0.0 for r in res)


def test_a_dict_answer_carries_cost_and_latency_into_the_scores():
    res = regress.run_dataset(make_ds(2), lambda s: {"answer": "a0", "cost": 0.25, "latency": 1.5})
    assert res[0].scores == {"success": 1.0, "exact": 1.0, "contains": 1.0, "f1": 1.0, "latency": 1.5, "cost": 0.25}


def test_targets_really_run_concurrently():
    barrier = threading.Barrier(4, timeout=10)

    def target(sample):
        barrier.wait()  # raises BrokenBarrierError unless 4 calls are in flight together
        return "x"

    res = regress.run_dataset(make_ds(8), target, concurrency=4)
    assert [r.error for r in res] == [None] * 8


def test_a_call_past_its_deadline_is_recorded_as_a_timeout():
    release = threading.Event()

    def target(sample):
        if sample["id"] == "s1":
            release.wait(10)
        return "x"

    try:
        res = regress.run_dataset(make_ds(3), target, concurrency=2, timeout_seconds=1.0)
    finally:
        release.set()
    assert res[1].error.startswith("TimeoutError") and res[0].error is None and res[2].error is None


def test_progress_prints_a_bar_with_counts_and_errors(tmp_path):
    import io

    buf = io.StringIO()
    regress.run_dataset(make_ds(10), lambda s: 1 / 0 if s["id"] == "s0" else "x", progress=buf)
    assert "10/10 errors=1" in buf.getvalue()


# --------------------------------------------------------------------------------- the CLI


def run_cli(args, variant="baseline", monkeypatch=None):
    monkeypatch.setenv("REGRESS_DEMO_VARIANT", variant)
    return main(["regress", "--dataset", str(EXAMPLE), "--target", TARGET, "--no-progress", "--resamples", "2000"]
                + args)


def test_cli_gate_fails_on_a_worse_candidate_with_reports(tmp_path, monkeypatch, capsys):
    base = tmp_path / "base.json"
    assert run_cli(["--save", str(base)], monkeypatch=monkeypatch) == 0
    md, junit = tmp_path / "r.md", tmp_path / "j.xml"
    code = run_cli(["--baseline", str(base), "--report", str(md), "--junit", str(junit)], "worse", monkeypatch)
    assert code == 1
    out = capsys.readouterr().out
    assert "REGRESSION: exact, contains, f1" in out
    text = md.read_text()
    assert "## Regression gate: ❌ regression" in text and "| exact | 0.7500 | 0.3333 | -55.6% |" in text
    assert "### Worst samples for `exact`" in text and "| math-001 | 1.0000 | 0.0000 |" in text
    suite = ET.parse(junit).getroot()
    failed = [tc.get("name") for tc in suite.iter("testcase") if tc.find("failure") is not None]
    assert failed == ["exact does not regress", "contains does not regress", "f1 does not regress"]
    assert suite.get("failures") == "3"


def test_cli_gate_passes_a_candidate_that_is_slower_by_less_than_the_threshold(tmp_path, monkeypatch, capsys):
    base = tmp_path / "base.json"
    assert run_cli(["--save", str(base)], monkeypatch=monkeypatch) == 0
    capsys.readouterr()
    assert run_cli(["--baseline", str(base)], "candidate", monkeypatch) == 0
    out = capsys.readouterr().out
    latency = next(line for line in out.splitlines() if line.startswith("latency"))
    assert "ok" in latency and "+" in latency  # slower (and significantly so) but within 5 %
    assert "PASS" in out


def test_cli_counts_raising_samples_as_failures_and_can_gate_on_the_error_rate(tmp_path, monkeypatch, capsys):
    save = tmp_path / "flaky.json"
    assert run_cli(["--save", str(save)], "flaky", monkeypatch) == 0
    doc = json.loads(save.read_text())
    assert doc["errors"] == 2
    assert {s["id"] for s in doc["samples"] if s["error"]} == {"geo-002", "sci-005"}
    assert run_cli(["--max-error-rate", "0.05"], "flaky", monkeypatch) == 1
    assert "FAIL: target error rate 0.083" in capsys.readouterr().out


def test_cli_refuses_a_baseline_from_another_dataset_version(tmp_path, monkeypatch, capsys):
    small = tmp_path / "small.json"
    assert main(["dataset", "sample", str(EXAMPLE), "--n", "10", "--out", str(small)]) == 0
    base = tmp_path / "base.json"
    monkeypatch.setenv("REGRESS_DEMO_VARIANT", "baseline")
    assert main(["regress", "--dataset", str(small), "--target", TARGET, "--no-progress", "--save", str(base)]) == 0
    capsys.readouterr()
    assert run_cli(["--baseline", str(base)], monkeypatch=monkeypatch) == 2
    err = capsys.readouterr().err
    assert "was run on dataset version" in err and datasets.load(small).version in err
    assert "Re-run the baseline" in err


@pytest.mark.parametrize("args,message", [
    (["--target", "nope_module_xyz:f"], "cannot import target module"),
    (["--target", "no-colon"], "module:function"),
    (["--scorers", "exact,bleu"], "unknown scorer 'bleu'"),
    (["--concurrency", "0"], "--concurrency must be >= 1"),
    (["--judge", "openai"], "needs a model"),
], ids=["missing module", "bad spec", "unknown scorer", "zero concurrency", "openai judge without model"])
def test_cli_bad_arguments_exit_2_with_a_reason(monkeypatch, capsys, args, message):
    monkeypatch.delenv("OTEL_LLM_EVAL_JUDGE_MODEL", raising=False)
    base = ["regress", "--dataset", str(EXAMPLE), "--no-progress"]
    if "--target" not in args:
        base += ["--target", TARGET]
    assert main(base + args) == 2
    assert message in capsys.readouterr().err


def test_cli_rejects_a_baseline_that_is_not_a_results_file(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    assert run_cli(["--baseline", str(bad)], monkeypatch=monkeypatch) == 2
    assert "is not a results file" in capsys.readouterr().err


def test_cli_on_a_malformed_dataset_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "query": "q"}\n')
    assert main(["regress", "--dataset", str(bad), "--target", TARGET]) == 2
    assert "expected_answer: missing required field" in capsys.readouterr().err


def test_the_installed_command_exits_1_on_a_regression(tmp_path):
    env = dict(os.environ, REGRESS_DEMO_VARIANT="baseline")
    base = tmp_path / "base.json"
    cmd = [sys.executable, "-m", "otel_llm_eval.cli", "regress", "--dataset", str(EXAMPLE), "--target", TARGET,
           "--resamples", "1000"]
    first = subprocess.run(cmd + ["--save", str(base)], env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    env["REGRESS_DEMO_VARIANT"] = "worse"
    second = subprocess.run(cmd + ["--baseline", str(base)], env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert "24/24" in second.stderr  # the progress bar went to stderr


# ------------------------------------------------------------------------------------ judges


def test_heuristic_judge_scores_empty_answers_lower(monkeypatch):
    from otel_llm_eval.offline.judging import build_judge

    judge = build_judge("heuristic")
    res = regress.run_dataset(make_ds(4), lambda s: "" if s["id"] == "s0" else "a fine answer",
                              scorers=("exact", "judge"), judge=judge)
    assert [r.scores["judge"] for r in res] == [1.0, 5.0, 5.0, 5.0]


class _FakeLLM(BaseHTTPRequestHandler):
    """OpenAI-compatible chat completions: 5 when the graded answer says Paris, else 2;
    a reply that is not JSON when the answer says 'garbage'."""

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        if self.server.barrier is not None:
            self.server.barrier.wait()  # BrokenBarrierError (-> no reply) unless calls overlap
        user = body["messages"][-1]["content"]
        answer = user.split("Assistant answer:", 1)[1]
        if "garbage" in answer:
            content = "I refuse to give JSON"
        else:
            content = json.dumps({"score": 5 if "Paris" in answer else 2, "explanation": "graded"})
        out = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}],
                          "usage": {"prompt_tokens": 10, "completion_tokens": 5}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *a):
        pass


@pytest.fixture
def fake_llm():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeLLM)
    server.requests = []
    server.barrier = None
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        t.join(5)


def test_openai_judge_scores_answers_through_a_chat_completions_server(fake_llm, tmp_path, monkeypatch, capsys):
    url = f"http://127.0.0.1:{fake_llm.server_address[1]}/v1"
    save = tmp_path / "judged.json"
    assert run_cli(["--judge", "openai", "--judge-base-url", url, "--judge-model", "grader", "--scorers", "exact",
                    "--save", str(save)], monkeypatch=monkeypatch) == 0
    doc = json.loads(save.read_text())
    scores = {s["id"]: s["scores"]["judge"] for s in doc["samples"]}
    assert scores["geo-001"] == 5.0 and scores["geo-002"] == 2.0
    assert len(fake_llm.requests) == 24 and fake_llm.requests[0]["model"] == "grader"
    # The context passages reach the judge with the question.
    rag = next(r for r in fake_llm.requests if "annual leave" in r["messages"][-1]["content"])
    assert "Policy HR-7" in rag["messages"][-1]["content"]


def test_a_judge_failure_leaves_the_sample_out_of_the_judge_metric_instead_of_failing_it(fake_llm):
    from otel_llm_eval.offline.judging import build_judge

    judge = build_judge("openai", base_url=f"http://127.0.0.1:{fake_llm.server_address[1]}", model="g")
    sample = {"id": "x", "query": "capital of France?", "context": [], "expected_answer": "Paris"}
    assert judge_score(judge, sample, "garbage") is None
    assert judge_score(judge, sample, "Paris") == 5.0


def test_judge_calls_run_concurrently_on_the_worker_threads(fake_llm):
    from otel_llm_eval.offline.judging import build_judge

    fake_llm.barrier = threading.Barrier(4, timeout=10)
    judge = build_judge("openai", base_url=f"http://127.0.0.1:{fake_llm.server_address[1]}", model="g")
    judge.retries = 0
    res = regress.run_dataset(make_ds(8), lambda s: "Paris", scorers=("judge",), judge=judge, concurrency=4)
    assert [r.scores["judge"] for r in res] == [5.0] * 8
