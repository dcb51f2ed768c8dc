"""Regression gate: run a target over a dataset, score it, compare with a baseline run.

Contract of a target: `target(sample: dict) -> str | dict`. The dict form is
`{"answer": str, "cost": float (USD, optional), "latency": float (seconds, optional)}`; when
latency is not given, the wall time of the call is used. A target that raises (or returns
something else) marks that sample as failed (`success` = 0, quality scores 0) and the run goes
on. Targets run on a thread pool (`concurrency` threads), so they must be thread-safe.

A metric regresses when BOTH hold:
- its relative change (current mean vs baseline mean, oriented so worse is negative) is worse
  than `threshold` (0.05 = 5 %); when the baseline mean is 0 the relative change is undefined
  and the threshold applies to the absolute change instead;
- a paired one-sided test over the samples both runs share says the drop is real: Holm-adjusted
  p < `alpha` across the metrics compared.

A baseline from another dataset version is refused (BaselineMismatch): comparing different
samples would report differences in the data as differences in the system.

`run_dataset` blocks until every sample is done (or timed out). Nothing here exits the process.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import math
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TextIO

from . import datasets
from .datasets import Dataset
from .scorers import DEFAULT_SCORERS, METRICS, Judge, score_sample

RESULTS_FORMAT = "otel-llm-eval/regress-results/v1"
MAX_ANSWER_CHARS = 20_000  # answers stored in the results file are truncated past this
MAX_ERROR_CHARS = 500


class GateError(Exception):
    """Input the gate cannot work with (bad target, unreadable results). Exit code 2."""


class BaselineMismatch(GateError):
    """The baseline was run on another dataset version."""


# --------------------------------------------------------------------------- target


def load_target(spec: str) -> Callable[[dict], Any]:
    """Resolve `module:function` or `path/to/file.py:function` to a callable.

    The current directory is importable (as with `python -m`), so a project's own module works.
    """
    mod_name, sep, func_name = spec.rpartition(":")
    if not sep or not mod_name or not func_name:
        raise GateError(f"--target must look like module:function or file.py:function, got {spec!r}")
    try:
        if mod_name.endswith(".py") or "/" in mod_name or "\\" in mod_name:
            path = Path(mod_name)
            if not path.is_file():
                raise GateError(f"target file {mod_name} not found")
            digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
            unique = f"_otel_llm_eval_target_{digest}"
            spec_obj = importlib.util.spec_from_file_location(unique, path)
            module = importlib.util.module_from_spec(spec_obj)  # type: ignore[arg-type]
            sys.modules[unique] = module
            spec_obj.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(mod_name)
    except GateError:
        raise
    except Exception as e:
        raise GateError(f"cannot import target module {mod_name!r}: {type(e).__name__}: {e}") from e
    fn = module
    for part in func_name.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise GateError(f"{mod_name!r} has no attribute {func_name!r}")
    if not callable(fn):
        raise GateError(f"target {spec!r} is not callable")
    return fn  # type: ignore[return-value]


@dataclass
class SampleResult:
    id: str
    answer: str | None
    error: str | None
    latency_seconds: float | None
    cost_usd: float | None
    scores: dict[str, float | None] = field(default_factory=dict)


def _interpret(value: Any) -> tuple[str, float | None, float | None]:
    """(answer, cost, latency) from what a target returned; raises TypeError/ValueError if bad."""
    if isinstance(value, str):
        return value, None, None
    if isinstance(value, Mapping):
        answer = value.get("answer")
        if not isinstance(answer, str):
            raise TypeError(f"target returned a dict whose 'answer' is {type(answer).__name__}, not str")
        cost = value.get("cost", value.get("cost_usd"))
        latency = value.get("latency", value.get("latency_seconds"))
        cost = None if cost is None else float(cost)
        latency = None if latency is None else float(latency)
        for name, v in (("cost", cost), ("latency", latency)):
            if v is not None and not math.isfinite(v):
                raise ValueError(f"target returned a non-finite {name}")
        return answer, cost, latency
    raise TypeError(f"target returned {type(value).__name__}; expected str or dict with 'answer'")


def _call_one(target: Callable[[dict], Any], sample: dict) -> tuple[str | None, str | None, float | None, float | None]:
    start = time.perf_counter()
    try:
        # A deep copy is cheap insurance: one target mutating its input cannot change another's.
        value = target(json.loads(json.dumps(sample)))
        elapsed = time.perf_counter() - start
        answer, cost, latency = _interpret(value)
        return answer, None, cost, latency if latency is not None else elapsed
    except Exception as e:  # the run goes on: this sample counts as failed
        msg = f"{type(e).__name__}: {e}"
        return None, msg[:MAX_ERROR_CHARS], None, None


class Progress:
    """A progress bar on a stream: redrawn in place on a terminal, a line per 10 % otherwise."""

    def __init__(self, total: int, stream: TextIO | None, width: int = 30):
        self.total, self.stream, self.width = total, stream, width
        self.done = self.errors = 0
        self.start = time.monotonic()
        self._tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self._last_decile = -1

    def update(self, failed: bool) -> None:
        self.done += 1
        self.errors += int(failed)
        if self.stream is None:
            return
        frac = self.done / self.total if self.total else 1.0
        filled = int(self.width * frac)
        rate = self.done / max(1e-9, time.monotonic() - self.start)
        line = (f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} "
                f"errors={self.errors} {rate:.1f}/s")
        if self._tty:
            self.stream.write("\r" + line + ("\n" if self.done == self.total else ""))
            self.stream.flush()
        else:
            decile = int(frac * 10)
            if decile != self._last_decile:
                self._last_decile = decile
                self.stream.write(line + "\n")
                self.stream.flush()


def run_dataset(ds: Dataset, target: Callable[[dict], Any], *, scorers: Sequence[str] = DEFAULT_SCORERS,
                judge: Judge | None = None, concurrency: int = 8, timeout_seconds: float | None = 300.0,
                progress: TextIO | None = None) -> list[SampleResult]:
    """Call the target on every sample (concurrently) and score the answers.

    Each worker calls the target and then the scorers (judge included), so judge calls run
    concurrently too. A sample running past `timeout_seconds` is recorded as failed (its thread is left to finish
    on its own: Python cannot kill a thread). Results come back in dataset order.
    """
    scorers = tuple(scorers)
    for s in scorers:
        if s not in METRICS:
            raise GateError(f"unknown scorer {s!r} (known: {', '.join(METRICS)})")
    if "judge" in scorers and judge is None:
        raise GateError("scorer 'judge' needs --judge heuristic|openai")
    if concurrency < 1:
        raise GateError("--concurrency must be >= 1")
    bar = Progress(len(ds.samples), progress)
    done_results: dict[int, SampleResult] = {}

    def run_one(sample: dict) -> SampleResult:
        # Target and scorers (the judge is a network call too) run on the worker thread.
        answer, error, cost, latency = _call_one(target, sample)
        scores = score_sample(sample, answer, scorers=scorers, latency_seconds=latency, cost_usd=cost, judge=judge)
        return SampleResult(datasets.sample_id(sample), answer, error, latency, cost, scores)

    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="regress")
    try:
        futures = {}
        started: dict[Any, float] = {}
        pending_idx = list(range(len(ds.samples)))
        # Submit at most `concurrency` at a time so each call's deadline starts when it runs.
        while pending_idx or futures:
            while pending_idx and len(futures) < concurrency:
                i = pending_idx.pop(0)
                fut = pool.submit(run_one, ds.samples[i])
                futures[fut] = i
                started[fut] = time.monotonic()
            wait_for = None
            if timeout_seconds is not None:
                oldest = min(started[f] for f in futures)
                wait_for = max(0.0, oldest + timeout_seconds - time.monotonic())
            done, _ = wait(list(futures), timeout=wait_for, return_when=FIRST_COMPLETED)
            now = time.monotonic()
            for fut in list(futures):
                i = futures[fut]
                if fut in done:
                    done_results[i] = fut.result()
                elif timeout_seconds is not None and now - started[fut] >= timeout_seconds:
                    sample = ds.samples[i]
                    done_results[i] = SampleResult(
                        datasets.sample_id(sample), None, f"TimeoutError: no answer within {timeout_seconds:g} s",
                        None, None, score_sample(sample, None, scorers=scorers, latency_seconds=None,
                                                 cost_usd=None, judge=judge))
                    fut.cancel()
                else:
                    continue
                del futures[fut]
                del started[fut]
                bar.update(done_results[i].answer is None)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return [done_results[i] for i in range(len(ds.samples))]


# --------------------------------------------------------------------------- results files


def summarize(results: Sequence[SampleResult], metrics: Sequence[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for m in metrics:
        vals = [r.scores.get(m) for r in results]
        vals = [v for v in vals if v is not None]
        out[m] = {"n": len(vals), "mean": (sum(vals) / len(vals)) if vals else None}
    return out


def metrics_of(results: Sequence[SampleResult]) -> list[str]:
    names: list[str] = []
    for r in results:
        for k in r.scores:
            if k not in names:
                names.append(k)
    return names


def results_document(ds: Dataset, target: str, results: Sequence[SampleResult], *,
                     scorers: Sequence[str], judge: str | None) -> dict[str, Any]:
    metrics = metrics_of(results)
    return {
        "format": RESULTS_FORMAT,
        "created_at": datasets.now_iso(),
        "dataset": {"id": ds.dataset_id, "version": ds.version, "path": ds.path, "samples": len(ds.samples)},
        "target": target,
        "scorers": list(scorers),
        "judge": judge,
        "errors": sum(1 for r in results if r.error),
        "summary": summarize(results, metrics),
        "samples": [
            {"id": r.id,
             "answer": None if r.answer is None else r.answer[:MAX_ANSWER_CHARS],
             "error": r.error, "latency_seconds": r.latency_seconds, "cost_usd": r.cost_usd,
             "scores": r.scores}
            for r in results
        ],
    }


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a results file written by `--save`. Raises GateError with a clear reason."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise GateError(f"cannot read baseline {path}: {e.strerror or e}") from e
    except ValueError as e:
        raise GateError(f"baseline {path} is not valid JSON: {e}") from e
    if not isinstance(doc, dict) or doc.get("format") != RESULTS_FORMAT:
        raise GateError(f"baseline {path} is not a results file of `otel-llm-eval regress --save` "
                        f"(expected format {RESULTS_FORMAT!r})")
    if not isinstance(doc.get("samples"), list) or not isinstance(doc.get("dataset"), dict):
        raise GateError(f"baseline {path} lacks `samples` or `dataset`")
    return doc


# --------------------------------------------------------------------------- comparison


@dataclass
class MetricComparison:
    metric: str
    higher_is_better: bool
    baseline_mean: float | None
    current_mean: float | None
    n_pairs: int
    relative_change: float | None   # (cur - base) / |base|; None for a zero baseline
    absolute_change: float | None   # cur - base
    worse_by: float | None          # relative (or absolute for a zero baseline) worsening, >0 = worse
    p_value: float | None           # one-sided, H1: worse
    p_adjusted: float | None        # Holm across compared metrics
    method: str
    regressed: bool = False
    improved: bool = False


@dataclass
class Comparison:
    metrics: list[MetricComparison]
    threshold: float
    alpha: float
    worst: dict[str, list[dict[str, Any]]]  # metric -> worst per-sample diffs
    method: str = "paired permutation (sign flips)"

    @property
    def regressed(self) -> list[MetricComparison]:
        return [m for m in self.metrics if m.regressed]


def compare(baseline: Mapping[str, Any], current: Mapping[str, Any], *, threshold: float = 0.05,
            alpha: float = 0.05, test: str = "permutation", resamples: int = 10000, seed: int = 0,
            worst_k: int = 5, dataset: Dataset | None = None) -> Comparison:
    """Compare two results documents. Raises BaselineMismatch if the dataset versions differ."""
    try:
        from . import paired  # numpy is needed only when comparing
    except ImportError as e:
        raise GateError(f"comparing with a baseline needs numpy ({e}): pip install 'otel-llm-eval[sidecar]'") from e

    bver, cver = baseline["dataset"].get("version"), current["dataset"].get("version")
    if bver != cver:
        raise BaselineMismatch(
            f"the baseline was run on dataset version {bver} ({baseline['dataset'].get('id')}), this run "
            f"on {cver} ({current['dataset'].get('id')}): comparing different samples would report data "
            f"changes as regressions. Re-run the baseline on this dataset version (--save) and compare again.")
    if threshold < 0:
        raise GateError("--threshold must be >= 0")
    if test not in ("permutation", "bootstrap"):
        raise GateError("--test must be permutation or bootstrap")
    base_by_id = {s["id"]: s for s in baseline["samples"] if isinstance(s, dict) and "id" in s}
    cur_by_id = {s["id"]: s for s in current["samples"]}
    shared = [sid for sid in cur_by_id if sid in base_by_id]
    names = [m for m in (current.get("summary") or {}) if m in (baseline.get("summary") or {})]
    comps: list[MetricComparison] = []
    diffs_by_metric: dict[str, list[tuple[str, float]]] = {}
    for name in names:
        spec = METRICS.get(name)
        hib = spec.higher_is_better if spec else True
        pairs = []
        for sid in shared:
            b = (base_by_id[sid].get("scores") or {}).get(name)
            c = (cur_by_id[sid].get("scores") or {}).get(name)
            if isinstance(b, (int, float)) and isinstance(c, (int, float)):
                pairs.append((sid, float(b), float(c)))
        if not pairs:
            comps.append(MetricComparison(name, hib, None, None, 0, None, None, None, None, None, "no pairs"))
            continue
        bmean = sum(p[1] for p in pairs) / len(pairs)
        cmean = sum(p[2] for p in pairs) / len(pairs)
        d = [(c - b) if hib else (b - c) for _, b, c in pairs]
        diffs_by_metric[name] = [(sid, dd) for (sid, _, _), dd in zip(pairs, d)]
        if test == "bootstrap":
            res = paired.bootstrap_p_value(d, resamples=resamples, seed=seed)
        else:
            res = paired.sign_flip_p_value(d, resamples=resamples, seed=seed)
        rel = paired.relative_change(bmean, cmean)
        absolute = cmean - bmean
        signed = rel if rel is not None else absolute
        worse_by = -signed if hib else signed
        comp = MetricComparison(name, hib, bmean, cmean, len(pairs), rel, absolute, worse_by,
                                res.p_value, None, res.method)
        if -worse_by > threshold:
            # "Improved" is information only (never gates): the same test in the other direction.
            neg = [-x for x in d]
            better = (paired.bootstrap_p_value(neg, resamples=resamples, seed=seed) if test == "bootstrap"
                      else paired.sign_flip_p_value(neg, resamples=resamples, seed=seed))
            comp.improved = better.p_value < alpha
        comps.append(comp)
    tested = [c for c in comps if c.p_value is not None]
    for c, adj in zip(tested, paired.holm([c.p_value for c in tested])):  # type: ignore[misc]
        c.p_adjusted = adj
        c.regressed = bool(c.worse_by is not None and c.worse_by > threshold and adj < alpha)
    worst: dict[str, list[dict[str, Any]]] = {}
    queries = dataset.by_id() if dataset is not None else {}
    for c in comps:
        if not c.regressed:
            continue
        rows = sorted(diffs_by_metric.get(c.metric, []), key=lambda x: x[1])[:worst_k]
        worst[c.metric] = [
            {"id": sid, "diff": dd,
             "baseline": (base_by_id[sid].get("scores") or {}).get(c.metric),
             "current": (cur_by_id[sid].get("scores") or {}).get(c.metric),
             "query": (queries.get(sid) or {}).get("query"),
             "expected_answer": (queries.get(sid) or {}).get("expected_answer"),
             "baseline_answer": base_by_id[sid].get("answer") if base_by_id[sid].get("error") is None
             else f"[error] {base_by_id[sid].get('error')}",
             "current_answer": cur_by_id[sid].get("answer") if cur_by_id[sid].get("error") is None
             else f"[error] {cur_by_id[sid].get('error')}"}
            for sid, dd in rows if dd < 0
        ]
    method = ("paired bootstrap of the mean difference" if test == "bootstrap"
              else "paired permutation (sign flips; exact up to 16 non-zero differences)")
    return Comparison(comps, threshold, alpha, worst, method)
