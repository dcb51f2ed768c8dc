"""The offline loop in the demo: review labels -> dataset version -> regression gate -> benchmark.

Runs the same commands a team would, as subprocesses of this Python (`otel-llm-eval dataset
export-labels`, `regress`, `bench record`, `bench export --push`), against the demo's sidecar:
1. the reviewers' failures become a new version of the dataset `review-failures` (the corrected
   answers are the expected answers);
2. the regression gate replays that dataset through the support bot with the control prompt
   (`--save`, the baseline) and with the new prompt (`--baseline`, `--push` to the sidecar);
3. each prompt's F1 on the dataset is recorded as a benchmark and pushed to the sidecar, which
   publishes `llm_benchmark_score`.

`answer_control` and `answer_new_prompt` are the regression targets: the simulated bot's answer
under each prompt (deterministic per sample, with the prompt's quality from the simulation).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import simulation as sim

DATASET_ID = "review-failures"
BENCHMARK = "review-failures-f1"
MODEL = "gpt-4o-mini"
#: USD per million tokens of the simulated model (as the shipped price table has it).
PRICE_IN, PRICE_OUT = 0.15, 0.60


def _answer(sample: dict[str, Any], variant: str) -> dict[str, Any]:
    found = sim.question_in(str(sample.get("query") or ""))
    draw = int.from_bytes(hashlib.sha256(f"{variant}:{sample.get('id')}".encode()).digest()[:8], "big") / 2**64
    good = found is not None and draw < sim.good_probability(variant, MODEL, "baseline")
    text = sim.good_answer(*found) if good else sim.BAD_ANSWERS[int(draw * 1000) % len(sim.BAD_ANSWERS)]
    tokens_in = sim.SYSTEM_PROMPT_TOKENS[variant] + max(1, round(len(str(sample.get("query", "")).split()) * 1.3))
    tokens_out = max(1, round(len(text.split()) * 1.3))
    return {"answer": text, "cost": (tokens_in * PRICE_IN + tokens_out * PRICE_OUT) / 1e6,
            "latency": round(sim.MEDIAN_LATENCY_SECONDS[MODEL] * (0.5 + tokens_out / 100.0), 4)}


def answer_control(sample: dict[str, Any]) -> dict[str, Any]:
    return _answer(sample, sim.CONTROL)


def answer_new_prompt(sample: dict[str, Any]) -> dict[str, Any]:
    return _answer(sample, sim.TREATMENT)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "otel_llm_eval.cli", *args], capture_output=True, text=True,
                          timeout=120)


def _shown(args: tuple[str, ...], work: Path) -> str:
    return "otel-llm-eval " + " ".join(a.replace(str(work) + "/", "") for a in args)


def run_loop(sidecar_url: str, work_dir: str) -> dict[str, Any]:
    """Run the loop; every step's command, exit code and key output go into the returned dict."""
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    steps: list[dict[str, Any]] = []
    out: dict[str, Any] = {"steps": steps}

    def step(*args: str) -> subprocess.CompletedProcess:
        res = _cli(*args)
        steps.append({"command": _shown(args, work), "exit_code": res.returncode,
                      "output": (res.stdout + res.stderr).strip().splitlines()})
        return res

    res = step("dataset", "export-labels", "--out", str(work / "datasets"), "--sidecar", sidecar_url,
               "--dataset-id", DATASET_ID)
    versions = sorted((work / "datasets").glob(f"{DATASET_ID}-*.json"))
    if res.returncode != 0 or not versions:
        out["error"] = "no dataset version was written (no labeled failures?)"
        return out
    dataset = json.loads(versions[-1].read_text(encoding="utf-8"))
    samples = dataset.get("samples") or []
    out["dataset"] = {"id": DATASET_ID, "file": versions[-1].name, "samples": len(samples),
                      "with_expected_answer": sum(1 for s in samples if s.get("expected_answer")),
                      "tags": _tag_counts(samples)}

    base = str(work / "baseline.json")
    current = str(work / "current.json")
    common = ("--dataset", str(versions[-1]), "--scorers", "exact,contains,f1,latency,cost", "--no-progress")
    res = step("regress", *common, "--target", "otel_llm_eval.demo.offline:answer_control", "--save", base)
    if res.returncode != 0:
        out["error"] = "the baseline run of the regression gate failed"
        return out
    res = step("regress", *common, "--target", "otel_llm_eval.demo.offline:answer_new_prompt",
               "--baseline", base, "--save", current, "--push", sidecar_url)
    verdict = [line for line in res.stdout.splitlines() if line.startswith(("PASS", "REGRESSION", "FAIL"))]
    out["gate"] = {"exit_code": res.returncode, "passed": res.returncode == 0, "verdict": verdict[0] if verdict else None,
                   "baseline": _means(base), "current": _means(current)}

    bench_db = str(work / "bench.db")
    for variant, path in ((sim.CONTROL, base), (sim.TREATMENT, current)):
        f1 = _means(path).get("f1")
        if f1 is not None:
            step("bench", "record", "--benchmark", BENCHMARK, "--model", f"{MODEL}+{variant}",
                 "--score", f"{f1:.4f}", "--db", bench_db)
    step("bench", "export", "--db", bench_db, "--push", sidecar_url)
    return out


def _means(path: str) -> dict[str, float]:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {m: s["mean"] for m, s in (doc.get("summary") or {}).items() if s.get("mean") is not None}


def _tag_counts(samples: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in samples:
        for tag in s.get("tags") or []:
            counts[tag] = counts.get(tag, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
