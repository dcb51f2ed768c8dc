"""Per-experiment analysis over the core's ExperimentSnapshot: A/B per metric and variant on the
unit of randomization, SRM on units, always-valid tests with Bonferroni over the experiment's
comparisons, verdicts, the ship / don't ship / keep running decision, engagement ratio metrics,
judge sample rates.

Basis: when the spans carry unit keys, every metric is analysed on per-unit sums (units hashed into
`state.unit_buckets` clusters; delta method over clusters), so a user's many calls count as one
unit; else per call, and the result says so. `analyze_experiment` is a pure function of its inputs
(snapshot, config, the running sequences so far, engagement summaries); the plugin keeps the state
and publishes. See docs/statistics.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from ....stats import ab, decision, judge_rate, power, sequential, srm
from ....stats.ratio import RatioSummary, compare_ratio
from .. import EXPOSURES, UNITS, ExperimentSnapshot, MetricStats

ENGAGEMENT_METRICS = ("messages_per_session", "session_length_seconds")


def experiment_config(cfg: Mapping[str, Any], experiment_id: str) -> dict[str, Any]:
    """The analysis section with per-experiment overrides (`experiments.<id>.*`) applied."""
    out = dict(cfg)
    over = (cfg.get("experiments") or {}).get(experiment_id) or {}
    out.update(over)
    return out


def _summary(s: MetricStats) -> ab.Summary:
    return ab.Summary(int(s.n), float(s.sum), float(s.sum_sq))


def _is_binary(metric: str, stats: Mapping[str, MetricStats], cfg: Mapping[str, Any]) -> bool:
    if metric in (cfg.get("binary_metrics") or ()):
        return True
    if metric in (cfg.get("continuous_metrics") or ()):
        return False
    return all(s.binary for s in stats.values())


def _higher_is_better(metric: str, cfg: Mapping[str, Any]) -> bool:
    return metric not in set(cfg.get("lower_is_better") or ())


def planned_end_unix(snap: ExperimentSnapshot, cfg: Mapping[str, Any]) -> float:
    end = cfg.get("planned_end_unix")
    if end:
        return float(end)
    return float(snap.first_seen_unix) + float(cfg.get("planned_duration_days", 14)) * 86400.0


#: the seed's targets (docs/statistics.md): what a primary metric of each kind should move
DEFAULT_TARGETS = {
    "judge": {"absolute": 0.2},          # +0.2 points of judge quality
    "feedback": {"relative": 0.05},      # +5% user satisfaction
    "task": {"relative": 0.10},          # +10% task completion / conversion
    "engagement": {"relative": 0.15},    # +15% engagement
    "cost_usd": {"relative": -0.20},     # -20% cost
}
TASK_WORDS = ("task", "complet", "conver", "success", "resolved")


@dataclass
class _Comparison:
    """One variant vs control on one metric, on the analysis basis."""

    metric: str
    variant: str
    hib: bool
    binary: bool
    n_control: int            # samples on the basis (units, else calls/evaluations)
    n_variant: int
    calls_control: int        # calls/evaluations, whatever the basis
    calls_variant: int
    mean_control: float | None
    mean_variant: float | None
    rel: float | None
    fixed: dict[str, Any]     # the fixed-horizon test (informational)
    log_ratio: float | None = None   # ln(mean_v / mean_c): what the always-valid test runs on
    log_var: float | None = None     # its sampling variance (delta method)


def _unit_summary(clusters: tuple[Any, Any] | None) -> RatioSummary | None:
    """Per-cluster (Σ value, Σ count) arrays -> the ratio metric's sufficient statistics."""
    if clusters is None:
        return None
    n = 0
    sx = sy = sxx = syy = sxy = 0.0
    for x, y in zip(*clusters):
        if y:
            n += 1
            sx += x
            sy += y
            sxx += x * x
            syy += y * y
            sxy += x * y
    return RatioSummary(n, sx, sy, sxx, syy, sxy) if n else None


def _rel(log_ratio: float | None) -> float | None:
    """A log ratio as a relative lift (exp - 1); None stays None."""
    if log_ratio is None:
        return None
    return math.expm1(log_ratio) if log_ratio < 700 else None


def _log_ratio(mc: float | None, var_mc: float | None, mv: float | None,
               var_mv: float | None) -> tuple[float | None, float | None]:
    """ln(mv / mc) and its delta-method variance var_mv / mv^2 + var_mc / mc^2 (positive means only)."""
    if mc is None or mv is None or var_mc is None or var_mv is None or mc <= 0 or mv <= 0:
        return None, None
    v = var_mv / (mv * mv) + var_mc / (mc * mc)
    return (math.log(mv / mc), v) if v > 0 and math.isfinite(v) else (None, None)


def _call_comparison(metric: str, variant: str, c: MetricStats, v: MetricStats, binary: bool, hib: bool,
                     alpha: float) -> _Comparison:
    sc, sv = _summary(c), _summary(v)
    cmp = ab.compare(sc, sv, binary=binary, alpha=alpha)
    vc, vv = sc.variance(binary), sv.variance(binary)
    log_ratio = log_var = None
    if vc is not None and vv is not None and sc.n >= 2 and sv.n >= 2:
        log_ratio, log_var = _log_ratio(sc.mean, vc / sc.n, sv.mean, vv / sv.n)
    return _Comparison(metric, variant, hib, binary, sc.n, sv.n, sc.n, sv.n, sc.mean, sv.mean, cmp.rel_lift,
                       {"test": cmp.test, "p_value": cmp.p_value, "rel_ci_lower": cmp.rel_ci_lower,
                        "rel_ci_upper": cmp.rel_ci_upper, "abs_lift": cmp.abs_lift,
                        "abs_ci_lower": cmp.abs_ci_lower, "abs_ci_upper": cmp.abs_ci_upper}, log_ratio, log_var)


def _ratio_comparison(metric: str, variant: str, c: RatioSummary, v: RatioSummary, calls: tuple[int, int],
                      binary: bool, hib: bool, alpha: float) -> _Comparison:
    rc = compare_ratio(c, v, alpha=alpha)
    log_ratio, log_var = _log_ratio(c.ratio, c.variance_of_ratio(), v.ratio, v.variance_of_ratio())
    return _Comparison(metric, variant, hib, binary, c.n, v.n, calls[0], calls[1], rc.ratio_control, rc.ratio_variant,
                       rc.rel_lift,
                       {"test": "delta_z", "p_value": rc.p_value, "rel_ci_lower": rc.rel_ci_lower,
                        "rel_ci_upper": rc.rel_ci_upper, "abs_lift": rc.abs_lift,
                        "abs_ci_lower": rc.abs_ci_lower, "abs_ci_upper": rc.abs_ci_upper}, log_ratio, log_var)


def metric_kind(metric: str, judge_metrics: frozenset[str] | set[str], feedback_metrics: frozenset[str] | set[str]) -> str:
    """judge | task | feedback | engagement | the metric's own name (call metrics)."""
    if metric in ENGAGEMENT_METRICS:
        return "engagement"
    if metric in judge_metrics:
        return "judge"
    if metric in feedback_metrics:
        return "task" if any(w in metric.lower() for w in TASK_WORDS) else "feedback"
    return metric


def _relative(effect: Mapping[str, Any] | None, control_mean: float | None) -> float | None:
    """{"relative": x} or {"absolute": x} as a relative effect (absolute / |control mean|)."""
    if not effect:
        return None
    if effect.get("relative") is not None:
        return float(effect["relative"])
    if effect.get("absolute") is not None and control_mean not in (None, 0):
        return float(effect["absolute"]) / abs(control_mean)
    return None


def _primary(snap: ExperimentSnapshot, dcfg: Mapping[str, Any], judge_metrics: Any, feedback_metrics: Any) -> str | None:
    if dcfg.get("primary"):
        return str(dcfg["primary"])
    names = sorted(m for m in snap.metrics if m not in (EXPOSURES, UNITS))
    for pool in (judge_metrics, feedback_metrics):
        for m in names:
            if m in pool:
                return m
    return None


def analyze_experiment(snap: ExperimentSnapshot, cfg: Mapping[str, Any], *,
                       running: Mapping[tuple[str, str], sequential.RunningSequence], is_bandit: bool = False,
                       judge_metrics: set[str] | frozenset[str] = frozenset(),
                       feedback_metrics: set[str] | frozenset[str] = frozenset(),
                       engagement: Mapping[str, Mapping[str, RatioSummary]] | None = None,
                       now: float) -> tuple[dict[str, Any], dict[tuple[str, str], sequential.RunningSequence]]:
    """(details, new running sequences keyed by (metric, variant)). details is JSON-ready with
    None values still present (the caller prunes); see docs/statistics.md."""
    cfg = experiment_config(cfg, snap.id)
    alpha = float(cfg["alpha"])
    pw = float(cfg["power"])
    mde = float(cfg["mde"])
    tuning_n = float(cfg["sequential_tuning_n"])
    srm_threshold = float(cfg["srm_threshold"])
    min_samples = int(cfg["min_samples"])
    dcfg = cfg.get("decision") or {}
    control = snap.control
    exposures = snap.metrics.get(EXPOSURES, {})
    units = snap.metrics.get(UNITS, {})
    basis = "unit" if snap.clusters else "call"
    out: dict[str, Any] = {"control": control, "weights": snap.weights, "bandit": is_bandit, "basis": basis,
                           "alpha": alpha, "power": pw, "mde_relative": mde,
                           "decision_rule": "always-valid (GAVI normal mixture) at alpha / comparisons, "
                                            "running intersection", "sequential_tuning_n": tuning_n}
    if basis == "call":
        out["basis_note"] = ("per call: the spans carry no unit keys (activate the experiment with a user id), "
                             "so calls of one user are treated as independent")

    # --- SRM: on assignment units only (calls per user vary: call counts are overdispersed) ---
    srm_detected = False
    if is_bandit:
        out["srm"] = {"status": "not_applicable", "reason": "bandit: the allocation moves on purpose"}
    elif not units:
        out["srm"] = {"status": "unknown", "reason": "no unit keys on the spans",
                      "hint": "activate the experiment with a unit id (exp.activate(user_id)) so spans carry "
                              "llm_eval.experiment.units"}
    elif snap.weights:
        counts = {v: int(s.n) for v, s in units.items()}
        r = srm.srm(counts, snap.weights, threshold=srm_threshold)
        srm_detected = bool(r.detected)
        out["srm"] = {"status": "checked", "p_value": r.p_value, "statistic": r.score, "threshold": r.threshold,
                      "detected": r.detected, "basis": "units", "counts": counts,
                      "units_sampled": ("1 in %d" % (1 << snap.unit_sample_level)) if snap.unit_sample_level else None}

    # --- per metric and variant ---
    comparisons: list[_Comparison] = []
    metrics_out: dict[str, Any] = {}
    for metric in sorted(snap.metrics):
        if metric == EXPOSURES or metric == UNITS:
            continue
        stats = snap.metrics[metric]
        binary = _is_binary(metric, stats, cfg)
        hib = _higher_is_better(metric, cfg)
        clusters = snap.clusters.get(metric, {}) if basis == "unit" else {}
        summaries = {v: _unit_summary(c) for v, c in clusters.items()}
        m_out: dict[str, Any] = {"binary": binary, "higher_is_better": hib, "kind": "mean", "basis": basis,
                                 "variants": {}}
        for v, s in sorted(stats.items()):
            m_out["variants"][v] = {"n": int(s.n), "mean": (s.sum / s.n) if s.n else None}
            if basis == "unit":
                m_out["variants"][v]["units"] = summaries[v].n if summaries.get(v) else 0
        metrics_out[metric] = m_out
        if is_bandit or control is None or control not in stats:
            continue
        for v, s in sorted(stats.items()):
            if v == control:
                continue
            if basis == "unit":
                sc, sv = summaries.get(control), summaries.get(v)
                if sc is None or sv is None:
                    continue
                comparisons.append(_ratio_comparison(metric, v, sc, sv, (int(stats[control].n), int(s.n)),
                                                     binary, hib, alpha))
            else:
                comparisons.append(_call_comparison(metric, v, stats[control], s, binary, hib, alpha))

    # --- engagement ratio metrics (per user, else per session) ---
    if engagement and not is_bandit and control is not None and control in engagement.get(ENGAGEMENT_METRICS[0], {}):
        for metric in ENGAGEMENT_METRICS:
            arms = engagement.get(metric, {})
            hib = _higher_is_better(metric, cfg)  # more engagement is better unless configured
            m_out = {"binary": False, "higher_is_better": hib, "kind": "ratio", "basis": "unit",
                     "unit": "user (session when no user id)", "variants": {}}
            for v, r in sorted(arms.items()):
                m_out["variants"][v] = {"n": r.n, "units": r.n, "mean": r.ratio, "sessions": r.sy}
            metrics_out[metric] = m_out
            c = arms.get(control)
            for v, r in sorted(arms.items()):
                if v != control and c is not None:
                    comparisons.append(_ratio_comparison(metric, v, c, r, (c.n, r.n), False, hib, alpha))

    # --- always-valid tests; verdicts; required samples ---
    # Weighted Bonferroni over every comparison that can give a verdict: the primary metric's
    # comparisons share `primary_alpha_share` of alpha, the others the rest (all of it without a
    # primary). Each is tested on the log of the ratio of means (closer to normal than the lift
    # itself for skewed and rare metrics); its interval is published as a relative lift.
    testable = [c for c in comparisons if c.log_ratio is not None and c.log_var is not None]
    primary = _primary(snap, dcfg, judge_metrics, feedback_metrics)
    n_primary = sum(1 for c in testable if c.metric == primary)
    n_other = len(testable) - n_primary
    share = float(dcfg.get("primary_alpha_share", 0.5)) if n_primary and n_other else (1.0 if n_primary else 0.0)
    new_running: dict[tuple[str, str], sequential.RunningSequence] = {}
    evidence: dict[tuple[str, str], Any] = {}
    targets = dcfg.get("targets") or {}
    for c in comparisons:
        key = (c.metric, c.variant)
        level = alpha * share / n_primary if c.metric == primary and n_primary else \
            alpha * (1.0 - share) / max(1, n_other)
        n_total = c.calls_control + c.calls_variant
        look = sequential.SequentialResult(None, None, None)
        if c in testable:
            tau2 = sequential.gavi_tau2(c.log_var, n_total, alpha=level, tuning_n=tuning_n)
            lg = sequential.mixture(c.log_ratio, c.log_var, tau2=tau2, alpha=level)
            look = sequential.SequentialResult(lg.p_value, _rel(lg.ci_lower), _rel(lg.ci_upper))
        prev = running.get(key)
        run = prev.update(look, level) if prev is not None else sequential.RunningSequence.start(look, level)
        if run.p_value is not None:
            new_running[key] = run
        kind = metric_kind(c.metric, judge_metrics, feedback_metrics)
        target = _relative(targets.get(c.metric) or DEFAULT_TARGETS.get(kind), c.mean_control)
        effect = abs(math.log1p(target)) if target is not None and target > -1 else math.log1p(mde)
        req = mde_rel = None
        if c.log_var is not None:
            n_req = sequential.gavi_required_n(effect, c.log_var, n_total, alpha=level, power=pw, tuning_n=tuning_n)
            if n_req is not None:  # per arm, in the smaller arm's share of the samples
                req = int(math.ceil(n_req * min(c.calls_control, c.calls_variant) / n_total))
            mde_log = sequential.gavi_mde(c.log_var, n_total, alpha=level, power=pw, tuning_n=tuning_n)
            mde_rel = _rel(mde_log)
        started = min(c.n_control, c.n_variant) >= min_samples
        enough = req is not None and min(c.calls_control, c.calls_variant) >= req
        side = run.excludes(0.0) if run.p_value is not None else 0
        vd = decision.verdict(side=side, srm=srm_detected, started=started, enough=enough, higher_is_better=c.hib)
        good_lo, good_hi = decision.good_direction(run.lower, run.upper, c.hib)
        evidence[key] = (c, good_lo, good_hi, started, enough, target)
        p_adj = min(1.0, run.p_value * alpha / level) if run.p_value is not None else None
        metrics_out[c.metric]["variants"][c.variant].update({
            "rel_lift": c.rel, "rel_ci_lower": run.lower, "rel_ci_upper": run.upper,
            "always_valid_p_value": run.p_value, "p_value_adjusted": p_adj,
            "abs_lift": c.fixed["abs_lift"], "test": c.fixed["test"], "p_value": c.fixed["p_value"],
            "fixed_horizon": {"p_value": c.fixed["p_value"], "rel_ci_lower": c.fixed["rel_ci_lower"],
                              "rel_ci_upper": c.fixed["rel_ci_upper"], "abs_ci_lower": c.fixed["abs_ci_lower"],
                              "abs_ci_upper": c.fixed["abs_ci_upper"], "test": c.fixed["test"],
                              "note": "valid only if read once, at a sample size fixed in advance"},
            "required_samples": req, "mde_relative": mde_rel, "target_relative": target, "alpha_level": level,
            "effect_changed": run.restarts or None,
            "verdict": vd, "verdict_text": decision.VERDICT_TEXT[vd],
        })
    out["comparisons"] = len(testable)
    out["primary"] = primary
    out["metrics"] = metrics_out

    # --- the experiment-level decision, per variant ---
    if not is_bandit and control is not None and exposures:
        out["decision"] = _decisions(snap, dcfg, evidence, primary, srm_detected, control)

    # --- judge sample rate per variant ---
    if not is_bandit and exposures:
        out["judge_sample_rate"] = judge_rates(snap, cfg, judge_metrics, now=now, analysed=metrics_out)
    return out, new_running


def _decisions(snap: ExperimentSnapshot, dcfg: Mapping[str, Any], evidence: Mapping[tuple[str, str], Any],
               primary: str | None, srm_detected: bool, control: str) -> dict[str, Any]:
    guardrail_cfg = dcfg.get("guardrails") or {}
    variants = sorted(v for v in snap.metrics.get(EXPOSURES, {}) if v != control)
    per_variant: dict[str, Any] = {}
    for v in variants:
        p_ev = None
        if primary is not None and (primary, v) in evidence:
            c, lo, hi, started, enough, target = evidence[(primary, v)]
            p_ev = decision.MetricEvidence(primary, lo, hi, started, enough,
                                           target=(target if c.hib else -target) if target is not None else None)
        guards = []
        for g, margin_cfg in sorted(guardrail_cfg.items()):
            if g == primary:
                continue
            if (g, v) in evidence:
                c, lo, hi, started, enough, _ = evidence[(g, v)]
                margin = _relative(margin_cfg, c.mean_control)
                empty = (c.mean_control == 0 and c.mean_variant == 0)
                guards.append(decision.MetricEvidence(g, lo, hi, started, enough,
                                                      margin=abs(margin) if margin is not None else None,
                                                      empty=empty))
            elif g in snap.metrics and v in snap.metrics[g]:
                stats = snap.metrics[g]
                empty = all(s.sum == 0 for s in stats.values())
                guards.append(decision.MetricEvidence(g, None, None, False, False, empty=empty))
        d = decision.decide(p_ev if primary is not None else None, guards, srm=srm_detected)
        if primary is not None and p_ev is None and d.reason == "no_primary":
            d = decision.Decision("keep_running", "collecting", f"collecting data for {primary}", primary)
        per_variant[v] = {"decision": d.decision, "reason": d.reason, "text": d.text, "metric": d.metric,
                          "guardrails": [g.metric for g in guards]}
    if primary is None and per_variant:
        for v in per_variant:
            d = decision.decide(None, [], srm=srm_detected)
            per_variant[v].update(decision=d.decision, reason=d.reason, text=d.text, metric=d.metric)
    ships = [v for v, d in per_variant.items() if d["decision"] == "ship"]
    if ships:
        overall = {"decision": "ship", "variant": ships[0], "text": per_variant[ships[0]]["text"]}
    elif per_variant and all(d["decision"] == "dont_ship" for d in per_variant.values()):
        overall = {"decision": "dont_ship", "text": "; ".join(f"{v}: {d['text']}" for v, d in per_variant.items())}
    else:
        overall = {"decision": "keep_running",
                   "text": "; ".join(f"{v}: {d['text']}" for v, d in per_variant.items()) or "collecting data"}
    return {"primary": primary, "guardrails": sorted(guardrail_cfg), "variants": per_variant, **overall}


def judge_rates(snap: ExperimentSnapshot, cfg: Mapping[str, Any], judge_metrics: set[str] | frozenset[str], *,
                now: float, analysed: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The judge plan: its target per arm is the judge metric's required samples as the analysis
    computed them (same test, same basis: per-unit variance included), else the fixed-horizon
    power formula on the per-call variance until there is an estimate."""
    jcfg = cfg.get("judge") or {}
    metric = jcfg.get("metric") or next((m for m in sorted(snap.metrics) if m in judge_metrics), None)
    exposures = snap.metrics.get(EXPOSURES, {})
    elapsed = max(1.0, float(snap.last_seen_unix) - float(snap.first_seen_unix))
    stats = snap.metrics.get(metric, {}) if metric else {}
    loads = {v: judge_rate.VariantLoad(int(stats[v].n) if v in stats else 0, float(s.n) / elapsed)
             for v, s in exposures.items()}
    target = None
    analysed_req = [v.get("required_samples") for v in ((analysed or {}).get(metric) or {}).get("variants", {}).values()
                    if v.get("required_samples")]
    if analysed_req:
        target = max(analysed_req)
    elif metric and snap.control in stats:
        c = _summary(stats[snap.control])
        binary = _is_binary(metric, stats, cfg)
        target = power.required_per_arm(c.mean, c.variance(binary), float(cfg["mde"]), alpha=float(cfg["alpha"]),
                                        power=float(cfg["power"]), binary=binary)
    end = planned_end_unix(snap, cfg)
    plan = judge_rate.plan_rates(loads, target_per_arm=target, remaining_seconds=end - now,
                                 min_rate=float(jcfg.get("min_rate", 0.01)), max_rate=float(jcfg.get("max_rate", 1.0)),
                                 bootstrap_rate=float(jcfg.get("bootstrap_rate", 0.1)),
                                 budget_calls_per_hour=jcfg.get("budget_calls_per_hour"),
                                 margin=float(jcfg.get("margin", 1.1)))
    return {"metric": metric, "rates": plan.rates, "target_per_arm": plan.target_per_arm,
            "feasible": plan.feasible, "expected_calls_per_hour": plan.expected_calls_per_hour,
            "reason": plan.reason, "planned_end_unix": end}
