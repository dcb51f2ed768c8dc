"""Cost of one full analysis pass: 100 experiments x 5 metrics, 100 drift features, 100 anomaly series.

    .venv/bin/python benchmarks/bench_analysis.py

Fills the five statistics plugins (experiments, bandits, interleaving, drift, anomalies) through
their real ingest hooks (20 services x 5 drift features over 25 h of
10-minute slots; 20 services x 5 anomaly series over 4 h of 5-minute slots) and gives it 100
experiment snapshots (2 binary + 3 continuous metrics, 2 variants each, plus exposures). Then times
`tick()` + `collect()`: the first (cold: reference windows sorted once per slot change) and the
median of the next passes (warm), against a baseline measured in the same run: the bare scipy/numpy
calls for the same work (chi2_contingency / ttest_ind_from_stats per comparison, a histogram + JS
distance per drift feature, a z-score per series). Target: warm pass <= 100 ms.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from scipy import stats as st  # noqa: E402
from scipy.spatial.distance import jensenshannon  # noqa: E402

from otel_llm_eval.semconv import LLMCall  # noqa: E402
from otel_llm_eval.sidecar.core import build_family  # noqa: E402
from otel_llm_eval.sidecar.plugins.anomalies import AnomaliesPlugin  # noqa: E402
from otel_llm_eval.sidecar.plugins.bandits import BanditsPlugin  # noqa: E402
from otel_llm_eval.sidecar.plugins.drift import DriftPlugin  # noqa: E402
from otel_llm_eval.sidecar.plugins.experiments import ExperimentsPlugin  # noqa: E402
from otel_llm_eval.sidecar.plugins.interleaving import InterleavingPlugin  # noqa: E402
from otel_llm_eval.sidecar.plugins import (CallRecord, EvaluationRecord, ExperimentSnapshot,  # noqa: E402
                                           MetricStats)

NOW = 1_800_000_000.0
SERVICES = 20
EXPERIMENTS = 100
TARGET_MS = 100.0


class StatisticsPlugins:
    """The five plugins fed and ticked together, as the core does (one analysis pass = every tick)."""

    def __init__(self):
        self.plugins = [ExperimentsPlugin(), BanditsPlugin(), InterleavingPlugin(), DriftPlugin(), AnomaliesPlugin()]

    def attach(self, ctx):
        ctx.plugin = {p.name: p for p in self.plugins}.get
        for p in self.plugins:
            p.attach(ctx)

    def on_call(self, record):
        for p in self.plugins:
            p.on_call(record)

    def on_evaluation(self, record):
        for p in self.plugins:
            p.on_evaluation(record)

    def tick(self, now):
        for p in self.plugins:
            p.tick(now)

    def collect(self):
        return [f for p in self.plugins for f in p.collect()]

    @property
    def results(self):
        return {k: v for p in self.plugins for k, v in p.results.items()}


class Ctx:
    def __init__(self, snapshot):
        self.config = {"analysis": {"drift": {"features": ["input_tokens", "output_tokens", "latency_seconds",
                                                           "output_length", "finish_reason"]}}}
        self.snapshot = snapshot

    def now(self):
        return NOW

    def experiment_snapshot(self):
        return dict(self.snapshot)

    def bound(self, label, value):
        return str(value)

    def family(self, name, values):
        return build_family(name, values, self.bound)


def snapshots(rng):
    out = {}
    for e in range(EXPERIMENTS):
        metrics = {"exposures": {v: MetricStats(int(n), float(n), float(n), True)
                                 for v, n in (("control", 10000 + rng.integers(0, 200)),
                                              ("treatment", 10000 + rng.integers(0, 200)))}}
        for m, p in (("thumbs", 0.3), ("task_done", 0.6)):
            metrics[m] = {v: MetricStats(4000, float(rng.binomial(4000, p)), 0.0, True) for v in ("control", "treatment")}
            for v, s in metrics[m].items():
                metrics[m][v] = MetricStats(s.n, s.sum, s.sum, True)
        for m, mu, sd in (("quality", 3.8, 1.0), ("latency_seconds", 1.2, 0.5), ("output_tokens", 300, 120)):
            metrics[m] = {}
            for v in ("control", "treatment"):
                n = 3000
                mean = mu * (1 + rng.normal(0, 0.02))
                metrics[m][v] = MetricStats(n, mean * n, (sd * sd + mean * mean) * n, False)
        out[f"exp{e}"] = ExperimentSnapshot(f"exp{e}", "control", {"control": 0.5, "treatment": 0.5}, metrics,
                                            NOW - 86400, NOW)
    return out


def fill(plugin, rng):
    i = 0
    for slot in range(150):  # 25 h of 10-minute drift slots
        t0 = NOW - 150 * 600 + slot * 600
        for svc in range(SERVICES):
            lat = rng.lognormal(0, 0.4, 40)
            for k in range(40):
                t = t0 + k * 15
                call = LLMCall(latency_seconds=float(lat[k]), input_tokens=int(50 + k), output_tokens=int(200 + 3 * k),
                               completion="x" * (100 + k), finish_reason="stop" if k % 9 else "length")
                plugin.on_call(CallRecord(call=call, service=f"svc{svc}", error=k % 50 == 0,
                                          end_time_unix_nano=int(t * 1e9), cost_usd=0.001 * (1 + k % 3)))
                if slot >= 100 and k % 2 == 0:  # judge scores and feedback in the last ~8 h
                    for name, source, score in (("quality", "llm_judge", float(rng.normal(4, 0.5))),
                                                ("thumbs", "user", float(k % 3 != 0))):
                        plugin.on_evaluation(EvaluationRecord(name=name, source=source, trace_id=None, span_id=None,
                                                              time_unix_nano=int(t * 1e9), score=score,
                                                              service=f"svc{svc}"))
                i += 1
    return i


def analysis_pass(plugin):
    """(tick wall ms, tick CPU ms, collect wall ms, collect CPU ms, families)."""
    w, c = time.perf_counter(), time.process_time()
    plugin.tick(NOW)
    w2, c2 = time.perf_counter(), time.process_time()
    families = list(plugin.collect())
    w3, c3 = time.perf_counter(), time.process_time()
    return (w2 - w) * 1000, (c2 - c) * 1000, (w3 - w2) * 1000, (c3 - c2) * 1000, families


def baseline(rng):
    """The bare scipy/numpy calls for the same amount of work: (wall ms, CPU ms)."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(EXPERIMENTS):
        for _ in range(2):
            st.chi2_contingency([[1200, 2800], [1250, 2750]], correction=False)
        for _ in range(3):
            st.ttest_ind_from_stats(3.8, 1.0, 3000, 3.85, 1.0, 3000, equal_var=False)
    ref, cur = rng.normal(0, 1, 6000), rng.normal(0, 1, 240)
    for _ in range(100):
        edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
        jensenshannon(np.histogram(ref, edges)[0], np.histogram(cur, edges)[0], base=2)
    hist = rng.normal(0, 1, 48)
    for _ in range(100):
        (hist[-1] - hist[:-1].mean()) / hist[:-1].std(ddof=1)
    return (time.perf_counter() - start) * 1000, (time.process_time() - cpu) * 1000


def main() -> int:
    rng = np.random.default_rng(0)
    plugin = StatisticsPlugins()
    plugin.attach(Ctx(snapshots(rng)))
    t = time.perf_counter()
    calls = fill(plugin, rng)
    fill_s = time.perf_counter() - t
    cold = analysis_pass(plugin)
    runs = [analysis_pass(plugin) for _ in range(15)]
    base = [baseline(rng) for _ in range(15)]
    families = runs[-1][4]
    res = plugin.results
    n_cmp = sum(len(m["variants"]) - 1 for d in res["experiments"].values() for m in d["metrics"].values())
    n_drift = len({(s, f) for s, f, _ in res["drift"]})
    n_anom = len({(s, m) for s, m, _ in res["anomaly"]})
    n_samples = sum(len(f.samples) for f in families)
    med = [statistics.median(r[i] for r in runs) for i in range(4)]
    base_wall, base_cpu = (statistics.median(b[i] for b in base) for i in range(2))
    print(f"ingest: {calls} calls through on_call/on_evaluation in {fill_s:.1f} s "
          f"({fill_s / calls * 1e6:.1f} us per record)")
    print(f"analysis pass over {len(res['experiments'])} experiments ({n_cmp} comparisons), "
          f"{n_drift} drift features, {n_anom} anomaly series -> {n_samples} gauge samples")
    print(f"cold tick (sorts every reference window once): {cold[0]:.1f} ms wall, {cold[1]:.1f} ms CPU")
    print(f"tick, median of {len(runs)}: {med[0]:.1f} ms wall, {med[1]:.1f} ms CPU   target <= {TARGET_MS:.0f} ms"
          f"   {'OK' if med[1] <= TARGET_MS else 'OVER'} (CPU)")
    print(f"collect (/metrics families from the last result), median: {med[2]:.1f} ms wall, {med[3]:.1f} ms CPU")
    print(f"baseline, bare scipy/numpy calls for the same statistics, median: {base_wall:.1f} ms wall, "
          f"{base_cpu:.1f} ms CPU   tick/baseline (CPU) {med[1] / base_cpu:.2f}x")
    print("(CPU time is reported beside wall time because the wall clock includes waiting for a core"
          " on a shared machine)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
