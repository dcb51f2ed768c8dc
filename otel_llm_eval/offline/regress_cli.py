"""`otel-llm-eval regress`: run a dataset through a target and gate on regressions.

Exit codes: 0 pass (or no baseline), 1 regression (or target error rate above
--max-error-rate), 2 bad input (dataset, target, baseline from another dataset version).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path

from . import datasets
from .scorers import DEFAULT_SCORERS, METRICS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="dataset file (seed JSON or JSONL)")
    p.add_argument("--target", required=True, help="module:function or file.py:function; called with each sample dict")
    p.add_argument("--baseline", help="results file of an earlier run (--save) to compare with")
    p.add_argument("--save", help="write this run's results here (use it as a later baseline)")
    p.add_argument("--threshold", type=float, default=0.05,
                   help="relative worsening that counts as a regression (default 0.05 = 5%%)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level after Holm (default 0.05)")
    p.add_argument("--test", choices=("permutation", "bootstrap"), default="permutation",
                   help="paired test over samples (default permutation: sign flips)")
    p.add_argument("--resamples", type=int, default=10000, help="sign flips / bootstrap resamples (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the paired test (default 0)")
    p.add_argument("--scorers", default=",".join(DEFAULT_SCORERS),
                   help=f"comma-separated, from {','.join(m for m in METRICS if m != 'success')} "
                        f"(default {','.join(DEFAULT_SCORERS)}; success is always on)")
    p.add_argument("--judge", choices=("heuristic", "openai"), help="judge for the judge scorer (adds it)")
    p.add_argument("--judge-base-url", help="openai judge: base URL (default $OPENAI_BASE_URL)")
    p.add_argument("--judge-model", help="openai judge: model (default $OTEL_LLM_EVAL_JUDGE_MODEL)")
    p.add_argument("--concurrency", type=int, default=8, help="parallel target calls (default 8)")
    p.add_argument("--timeout-seconds", type=float, default=300.0, help="per-sample deadline (default 300)")
    p.add_argument("--max-error-rate", type=float, default=None,
                   help="fail when more than this share of samples raise (default: no limit)")
    p.add_argument("--junit", help="write a JUnit XML report here")
    p.add_argument("--report", help="write a Markdown report here")
    p.add_argument("--push", metavar="SIDECAR_URL",
                   help="report pass/fail to a sidecar (POST /v1/regression-runs); failures to push only warn")
    p.add_argument("--token", help="bearer token for --push")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _push(url: str, token: str | None, body: dict) -> None:
    req = urllib.request.Request(url.rstrip("/") + "/v1/regression-runs", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


def run(args: argparse.Namespace) -> int:
    from . import regress, report
    from .judging import build_judge

    err = sys.stderr
    try:
        ds = datasets.load(args.dataset)
    except datasets.DatasetError as e:
        print(f"error: {e}", file=err)
        return 2
    except OSError as e:
        print(f"error: cannot read dataset {args.dataset}: {e.strerror or e}", file=err)
        return 2
    scorers = [s.strip() for s in args.scorers.split(",") if s.strip()]
    if args.judge and "judge" not in scorers:
        scorers.append("judge")
    try:
        for s in scorers:
            if s not in METRICS:
                raise regress.GateError(f"unknown scorer {s!r} (known: {', '.join(METRICS)})")
        baseline = regress.load_results(args.baseline) if args.baseline else None
        # Refuse a mismatched baseline before spending time (and money) on target calls.
        if baseline is not None and baseline["dataset"].get("version") != ds.version:
            raise regress.BaselineMismatch(
                f"the baseline {args.baseline} was run on dataset version {baseline['dataset'].get('version')} "
                f"({baseline['dataset'].get('id')}), but {args.dataset} is version {ds.version}: "
                f"comparing different samples would report data changes as regressions. "
                f"Re-run the baseline on this dataset version (--save) and compare again.")
        target = regress.load_target(args.target)
        judge = build_judge(args.judge, base_url=args.judge_base_url, model=args.judge_model)
        results = regress.run_dataset(ds, target, scorers=scorers, judge=judge, concurrency=args.concurrency,
                                      timeout_seconds=args.timeout_seconds,
                                      progress=None if args.no_progress else err)
        current = regress.results_document(ds, args.target, results, scorers=scorers, judge=args.judge)
        comparison = (regress.compare(baseline, current, threshold=args.threshold, alpha=args.alpha,
                                      test=args.test, resamples=args.resamples, seed=args.seed, dataset=ds)
                      if baseline is not None else None)
    except regress.GateError as e:
        print(f"error: {e}", file=err)
        return 2
    if args.save:
        Path(args.save).write_text(json.dumps(current, indent=1) + "\n", encoding="utf-8")
    if args.report:
        Path(args.report).write_text(report.markdown_report(current, comparison, baseline), encoding="utf-8")
    if args.junit:
        Path(args.junit).write_text(report.junit_xml(current, comparison, max_error_rate=args.max_error_rate),
                                    encoding="utf-8")
    sys.stdout.write(report.text_report(current, comparison))
    error_rate = current["errors"] / max(1, len(current["samples"]))
    too_many_errors = args.max_error_rate is not None and error_rate > args.max_error_rate
    if too_many_errors:
        print(f"FAIL: target error rate {error_rate:.3f} > --max-error-rate {args.max_error_rate:g}")
    failed = bool(comparison and comparison.regressed) or too_many_errors
    if args.push:
        status = "fail" if failed else "pass"
        body = {"status": status, "dataset_id": ds.dataset_id, "dataset_version": ds.version,
                "target": args.target, "errors": current["errors"],
                "regressed": [m.metric for m in comparison.regressed] if comparison else [],
                "summary": current["summary"]}
        try:
            _push(args.push, args.token, body)
        except Exception as e:  # the gate's verdict must not depend on the dashboard being up
            print(f"warning: could not push the run to {args.push}: {e}", file=err)
    return 1 if failed else 0
