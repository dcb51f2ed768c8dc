"""Per-experiment analysis over the core's ExperimentSnapshot: A/B per metric and variant, SRM,
Holm/BH, always-valid p-values, power, verdicts, engagement ratio metrics, judge sample rates.

`analyze_experiment` is a pure function of its inputs (the snapshot, config, the previous
always-valid p-values and the engagement summaries); the plugin keeps the state and publishes.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..stats import ab, judge_rate, power, sequential, srm, verdict
from ..stats.ratio import RatioSummary, compare_ratio
from .plugins import EXPOSURES, UNITS, ExperimentSnapshot, MetricStats

ENGAGEMENT_METRICS = ("messages_per_session", "session_length_seconds")


def prune_none(value: Any) -> Any:
    """Drop None values from dicts, recursively (undefined numbers are omitted, never null/NaN)."""
    if isinstance(value, dict):
        return {k: prune_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [prune_none(v) for v in value]
    return value


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


def analyze_experiment(snap: ExperimentSnapshot, cfg: Mapping[str, Any], *,
                       avp_previous: Mapping[tuple[str, str], float], is_bandit: bool = False,
                       judge_metrics: set[str] | frozenset[str] = frozenset(),
                       engagement: Mapping[str, Mapping[str, RatioSummary]] | None = None,
                       now: float) -> tuple[dict[str, Any], dict[tuple[str, str], float]]:
    """(details, new always-valid p-values keyed by (metric, variant)). details is JSON-ready with
    None values still present (the caller prunes); see the README "Statistics" section."""
    cfg = experiment_config(cfg, snap.id)
    alpha = float(cfg["alpha"])
    pw = float(cfg["power"])
    mde = float(cfg["mde"])
    tuning_n = float(cfg["sequential_tuning_n"])
    srm_threshold = float(cfg["srm_threshold"])
    min_samples = int(cfg["min_samples"])
    control = snap.control
    out: dict[str, Any] = {"control": control, "weights": snap.weights, "bandit": is_bandit,
                           "correction": cfg["correction"], "alpha": alpha, "power": pw, "mde_relative": mde}

    # --- SRM against the weights the spans carry (not for bandits: weights move). On assignment
    # units when the spans carry unit keys and the unit sets are complete: calls per user vary, so
    # call counts are overdispersed and a chi-square on them flags fine splits. Else on exposures.
    srm_p = None
    exposures = snap.metrics.get(EXPOSURES, {})
    units = snap.metrics.get(UNITS, {})
    basis = UNITS if units and not snap.units_capped else EXPOSURES
    counted = units if basis == UNITS else exposures
    if snap.weights and exposures and not is_bandit:
        counts = {v: int(s.n) for v, s in counted.items()}
        r = srm.srm(counts, snap.weights, threshold=srm_threshold)
        srm_p = r.p_value
        out["srm"] = {"p_value": r.p_value, "statistic": r.score, "threshold": r.threshold,
                      "detected": r.detected, "basis": basis, "counts": counts,
                      "units_capped": bool(snap.units_capped)}

    # --- per metric and variant ---
    rows: list[dict[str, Any]] = []   # comparisons in a flat list for the multiple-testing step
    metrics_out: dict[str, Any] = {}
    for metric in sorted(snap.metrics):
        if metric == EXPOSURES or metric == UNITS:
            continue
        stats = snap.metrics[metric]
        binary = _is_binary(metric, stats, cfg)
        hib = _higher_is_better(metric, cfg)
        m_out: dict[str, Any] = {"binary": binary, "higher_is_better": hib, "kind": "mean", "variants": {}}
        for v, s in sorted(stats.items()):
            m_out["variants"][v] = {"n": int(s.n), "mean": (s.sum / s.n) if s.n else None}
        metrics_out[metric] = m_out
        if control is None or control not in stats:
            continue
        c = _summary(stats[control])
        for v, s in sorted(stats.items()):
            if v == control:
                continue
            cmp = ab.compare(c, _summary(s), binary=binary, alpha=alpha)
            rows.append({"metric": metric, "variant": v, "cmp": cmp, "binary": binary, "hib": hib,
                         "control_var": c.variance(binary), "control_mean": c.mean})

    # --- engagement ratio metrics ---
    if engagement and control is not None and control in engagement.get(ENGAGEMENT_METRICS[0], {}):
        for metric in ENGAGEMENT_METRICS:
            arms = engagement.get(metric, {})
            hib = _higher_is_better(metric, cfg)  # more engagement is better unless configured
            m_out = {"binary": False, "higher_is_better": hib, "kind": "ratio",
                     "unit": "user (session when no user id)", "variants": {}}
            for v, r in sorted(arms.items()):
                m_out["variants"][v] = {"n": r.n, "mean": r.ratio, "sessions": r.sy}
            metrics_out[metric] = m_out
            c = arms.get(control)
            for v, r in sorted(arms.items()):
                if v == control or c is None:
                    continue
                rc = compare_ratio(c, r, alpha=alpha)
                cmp = ab.Comparison(rc.n_control, rc.n_variant, rc.ratio_control, rc.ratio_variant, "ratio_z",
                                    None, rc.p_value, rc.abs_lift, rc.abs_ci_lower, rc.abs_ci_upper,
                                    rc.rel_lift, rc.rel_ci_lower, rc.rel_ci_upper, rc.std_error, alpha)
                cvar = c.variance_of_ratio()
                rows.append({"metric": metric, "variant": v, "cmp": cmp, "binary": False, "hib": hib,
                             "control_var": cvar * c.n if cvar is not None else None,
                             "control_mean": rc.ratio_control})

    adjust = ab.benjamini_hochberg if cfg["correction"] == "bh" else ab.holm
    adjusted = adjust([r["cmp"].p_value for r in rows])
    new_avp: dict[tuple[str, str], float] = {}
    for r, p_adj in zip(rows, adjusted):
        cmp: ab.Comparison = r["cmp"]
        key = (r["metric"], r["variant"])
        seq = sequential.gavi(cmp.abs_lift, cmp.std_error, cmp.n_control + cmp.n_variant,
                              alpha=alpha, tuning_n=tuning_n)
        avp = sequential.running_min(avp_previous.get(key), seq.p_value)
        if avp is not None:
            new_avp[key] = avp
        req = power.required_per_arm(r["control_mean"], r["control_var"], mde, alpha=alpha, power=pw,
                                     binary=r["binary"])
        # control_var is p(1-p) for binary metrics already (ab.Summary.variance)
        _, mde_rel = power.minimum_detectable_effect(r["control_mean"], r["control_var"],
                                                     min(cmp.n_control, cmp.n_variant), alpha=alpha, power=pw)
        vd = verdict.verdict(n_control=cmp.n_control, n_variant=cmp.n_variant, required_per_arm=req,
                             abs_lift=cmp.abs_lift, always_valid_p=avp, adjusted_p=p_adj, srm_p=srm_p,
                             alpha=alpha, srm_threshold=srm_threshold, higher_is_better=r["hib"],
                             min_samples=min_samples)
        metrics_out[r["metric"]]["variants"][r["variant"]].update({
            "test": cmp.test,
            "abs_lift": cmp.abs_lift, "abs_ci_lower": cmp.abs_ci_lower, "abs_ci_upper": cmp.abs_ci_upper,
            "rel_lift": cmp.rel_lift, "rel_ci_lower": cmp.rel_ci_lower, "rel_ci_upper": cmp.rel_ci_upper,
            "p_value": cmp.p_value, "p_value_adjusted": p_adj, "always_valid_p_value": avp,
            "always_valid_ci_lower": seq.ci_lower, "always_valid_ci_upper": seq.ci_upper,
            "required_samples": req, "mde_relative": mde_rel,
            "verdict": vd, "verdict_text": verdict.VERDICT_TEXT[vd],
        })
    out["metrics"] = metrics_out

    # --- judge sample rate per variant ---
    if not is_bandit and exposures:
        out["judge_sample_rate"] = judge_rates(snap, cfg, judge_metrics, now=now)
    return out, new_avp


def judge_rates(snap: ExperimentSnapshot, cfg: Mapping[str, Any], judge_metrics: set[str] | frozenset[str], *,
                now: float) -> dict[str, Any]:
    jcfg = cfg.get("judge") or {}
    metric = jcfg.get("metric") or next((m for m in sorted(snap.metrics) if m in judge_metrics), None)
    exposures = snap.metrics.get(EXPOSURES, {})
    elapsed = max(1.0, float(snap.last_seen_unix) - float(snap.first_seen_unix))
    stats = snap.metrics.get(metric, {}) if metric else {}
    loads = {v: judge_rate.VariantLoad(int(stats[v].n) if v in stats else 0, float(s.n) / elapsed)
             for v, s in exposures.items()}
    target = None
    if metric and snap.control in stats:
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
