"""Print the calibration table: false-positive rate and power of every published decision, by seeded
simulation through the sidecar's real path (see benchmarks/_calibration.py for how it runs).

    .venv/bin/python benchmarks/calibration_table.py            # ~10 minutes on 2 cores
    .venv/bin/python benchmarks/calibration_table.py --quick    # the test suite's sizes, ~1 minute

Columns: scenario, replicates, the rate measured, its Monte-Carlo standard error, the target.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _calibration as cal  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the test suite's replicate counts")
    args = ap.parse_args()
    k = 1 if args.quick else 4
    rows: list[tuple[str, int, float, str]] = []
    start = time.perf_counter()

    r = cal.run_ab(experiments=80 * k, users_per_experiment=120, looks=10, seed=2)
    rows += [("A/A, per unit (1-20 calls/user, ICC 0.1-0.3), 7 metrics, 10 looks: any better/worse",
              r.experiments, r.any_verdict, "<= 5%"),
             ("A/A, same: decision `ship`", r.experiments, r.ship, "<= 5%"),
             ("A/A, same: SRM alarm (units, p < 0.001)", r.experiments, r.srm, "~0.1% per look")]
    r = cal.run_ab(experiments=40 * k, users_per_experiment=120, looks=10, seed=4, units=False)
    rows.append(("A/A, same users but no unit keys (analysed per call): any better/worse",
                 r.experiments, r.any_verdict, "shows why units matter"))
    for users in (300, 500):
        r = cal.run_ab(experiments=20 * k, users_per_experiment=users, looks=10, seed=3 + users, effect=0.10)
        rows.append((f"A/B, +10% judge score, {users} users: primary `better`", r.experiments, r.primary_better,
                     ">= 80% at 500 users"))
    for n in (10, 100, 1000, 10000):
        reps = (120 if n < 1000 else 60 if n == 1000 else 15) * k
        rates = cal.run_drift(replicates=reps, values_per_window=n, seed=n)
        rows.append((f"drift, none, {n} values per window: KS alarms", reps, rates["ks"], "<= 5%"))
        rows.append((f"drift, none, {n} values per window: chi2 alarms", reps, rates["chi2"], "<= 5%"))
    rates = cal.run_drift(replicates=40 * k, values_per_window=1000, shift_sd=0.2, new_category_share=0.1, seed=7)
    rows.append(("drift, 0.2 sd mean shift, 1000 values: KS detects", 40 * k, rates["ks"], ">= 80%"))
    rows.append(("drift, new category at 10%, 1000 values: chi2 detects", 40 * k, rates["chi2"], "100%"))
    rows.append(("interleaving A/A, 400 outcomes, 20 looks: winner declared", 100 * k,
                 cal.run_interleaving(comparisons=100 * k, outcomes=400, looks=20, seed=1), "<= 5%"))
    rows.append(("interleaving 60/40 preference, 400 outcomes: winner found", 40 * k,
                 cal.run_interleaving(comparisons=40 * k, outcomes=400, looks=20, preference=0.6, seed=2), ">= 70%"))

    rows.append(("concept drift, topic mix 50/30/20 -> 20/30/50, quality per topic unchanged: alarms", 80 * k,
                 cal.run_concept_drift(replicates=80 * k, seed=1), "<= 5%"))
    rows.append(("concept drift, same at 60 values per window: alarms", 80 * k,
                 cal.run_concept_drift(replicates=80 * k, values_per_window=60, seed=5), "<= 5%"))
    rows.append(("concept drift, input-length quartiles, no change: alarms", 80 * k,
                 cal.run_concept_drift(replicates=80 * k, by_length=True, mix_shift=False, seed=2), "<= 5%"))
    rows.append(("concept drift, one topic (20% of traffic) loses 0.5 points: found", 30 * k,
                 cal.run_concept_drift(replicates=30 * k, degrade=0.5, mix_shift=False, seed=3), ">= 90%"))
    print("| scenario | replicates | rate | MC s.e. | target |")
    print("|---|---|---|---|---|")
    for name, n, rate, target in rows:
        print(f"| {name} | {n} | {rate:.1%} | {cal.mc_se(rate, n):.1%} | {target} |")
    print(f"\n{time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
