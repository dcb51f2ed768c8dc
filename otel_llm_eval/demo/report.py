"""The demo's final report: built only from what the sidecar serves, then rendered as text.

`Scrape` parses one `GET /metrics` (prometheus_client's text parser). `build_report(...)` takes the
last scrape, the JSON of `/v1/experiments/{id}` and `/v1/bandits/{id}`, the detection times the
demo saw while polling `/metrics`, and the alert evaluation, and returns a plain dict (what
`--report-json` writes). `render(report)` turns it into the text people read.

Pure apart from nothing: no I/O here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

Sample = tuple[str, dict[str, str], float]


@dataclass
class Scrape:
    t: float                    # seconds since the demo started
    samples: list[Sample] = field(default_factory=list)

    @classmethod
    def parse(cls, t: float, text: str) -> "Scrape":
        from prometheus_client.parser import text_string_to_metric_families

        samples: list[Sample] = []
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples.append((s.name, dict(s.labels), float(s.value)))
        return cls(t, samples)

    def select(self, name: str, **match: str) -> list[tuple[dict[str, str], float]]:
        return [(labels, v) for n, labels, v in self.samples
                if n == name and all(labels.get(k) == want for k, want in match.items())]

    def value(self, name: str, **match: str) -> float | None:
        rows = self.select(name, **match)
        return rows[0][1] if len(rows) == 1 else None

    def total(self, name: str, **match: str) -> float:
        return sum(v for _, v in self.select(name, **match))


AB_GAUGES = {
    "n": "llm_eval_ab_samples",
    "mean": "llm_eval_ab_mean",
    "lift": "llm_eval_ab_lift",
    "ci_lower": "llm_eval_ab_lift_ci_lower",
    "ci_upper": "llm_eval_ab_lift_ci_upper",
    "p_value": "llm_eval_ab_p_value",
    "p_value_adjusted": "llm_eval_ab_p_value_adjusted",
    "always_valid_p_value": "llm_eval_ab_always_valid_p_value",
    "required_samples": "llm_eval_ab_required_samples",
}


def experiment_from_metrics(scrape: Scrape, experiment: str) -> dict[str, Any]:
    """metric -> variant -> {n, mean, lift, ci_lower, ci_upper, p_value, ..., verdict}."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for key, gauge in AB_GAUGES.items():
        for labels, value in scrape.select(gauge, experiment=experiment):
            out.setdefault(labels.get("metric", ""), {}).setdefault(labels.get("variant", ""), {})[key] = value
    for labels, value in scrape.select("llm_eval_ab_verdict", experiment=experiment):
        if value == 1:
            out.setdefault(labels.get("metric", ""), {}).setdefault(labels.get("variant", ""), {})[
                "verdict"] = labels.get("verdict")
    return out


def bandit_from_metrics(scrape: Scrape, bandit: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for key, gauge in (("allocation", "llm_eval_bandit_allocation"), ("pulls", "llm_eval_bandit_pulls"),
                       ("mean_reward", "llm_eval_bandit_mean_reward")):
        for labels, value in scrape.select(gauge, bandit=bandit):
            out.setdefault(labels.get("arm", ""), {})[key] = value
    return out


def interleaving_from_metrics(scrape: Scrape, experiment: str) -> dict[str, Any]:
    variants: dict[str, dict[str, float]] = {}
    for key, gauge in (("preference", "llm_eval_interleaving_preference"),
                       ("p_value", "llm_eval_interleaving_p_value")):
        for labels, value in scrape.select(gauge, experiment=experiment):
            variants.setdefault(labels.get("variant", ""), {})[key] = value
    return {
        "variants": variants,
        "comparisons": scrape.value("llm_eval_interleaving_comparisons", experiment=experiment),
        "first_position_win_rate": scrape.value("llm_eval_interleaving_first_position_win_rate",
                                                experiment=experiment),
    }


def traffic_from_metrics(scrape: Scrape, service: str) -> dict[str, Any]:
    return {
        "llm_calls": scrape.total("llm_requests_total", service=service),
        "llm_calls_error": scrape.total("llm_requests_total", service=service, status="error"),
        "feedback": scrape.total("llm_user_feedback_total", service=service),
        "feedback_positive": scrape.total("llm_user_feedback_total", service=service, feedback_type="positive"),
        "judge_calls": scrape.total("llm_eval_judge_sampled_total", service=service),
        "judge_errors": scrape.total("llm_eval_judge_errors_total", service=service),
        "cost_usd": scrape.total("llm_cost_usd_total", service=service),
        "check_failures": {labels.get("check", ""): v for labels, v in
                           _sum_by(scrape.select("llm_check_failures_total", service=service), "check")},
        "safety_violations": {labels.get("check", ""): v for labels, v in
                              _sum_by(scrape.select("llm_safety_violations_total", service=service), "check")},
        "ingest_rejected": scrape.total("llm_eval_ingest_rejected_total"),
    }


def _sum_by(rows: Iterable[tuple[dict[str, str], float]], label: str) -> list[tuple[dict[str, str], float]]:
    acc: dict[str, float] = {}
    for labels, v in rows:
        acc[labels.get(label, "")] = acc.get(labels.get(label, ""), 0.0) + v
    return [({label: k}, v) for k, v in sorted(acc.items())]


# ---------------------------------------------------------------- rendering

def _pct(v: float | None, digits: int = 1) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v * 100:+.{digits}f}%"


def _p(v: float | None) -> str:
    if v is None:
        return "—"
    if v < 1e-16:
        return "<1e-16"
    return f"{v:.2g}" if v >= 0.001 else f"{v:.1e}"


def _num(v: float | None, fmt: str = "{:.3g}") -> str:
    return "—" if v is None else fmt.format(v)


def _at(t: float | None) -> str:
    return "not detected" if t is None else f"t={t:.0f}s"


#: Metrics the sidecar derives from every LLM call (shown after the evaluation metrics).
_CALL_METRICS = ("cost_usd", "latency_seconds", "input_tokens", "output_tokens", "error")
#: Engagement metrics: meaningless in this simulation (one request per session).
_SKIPPED_METRICS = ("messages_per_session", "session_length_seconds")

VERDICT_TEXT = {
    "better": "BETTER than control",
    "worse": "WORSE than control",
    "no_difference": "no detectable difference",
    "collecting": "still collecting data",
    "srm": "do not trust (sample ratio mismatch)",
}


def _detection_rows(add, rows: list[dict[str, Any]], key: str) -> None:
    if not rows:
        add("  not detected by the sidecar during the run")
        return
    early = [r for r in rows if r["first_detected_at"] is None]
    rows = [r for r in rows if r["first_detected_at"] is not None]
    if not rows:
        add("  not detected after the injection")
    else:
        add(f"  {key:<30}{'method':<8}{'first after injection':>22}{'detected since':>16}"
            f"{'flagged before injection':>26}")
    for r in rows[:12]:
        add(f"  {r[key][:29]:<30}{r['method']:<8}{_at(r['first_detected_at']):>22}"
            f"{_at(r['detected_since']) if r['detected_since'] is not None else 'cleared':>16}"
            f"{r['detections_before_injection']:>18} of {r['scrapes']} scrapes")
    if len(rows) > 12:
        add(f"  ... and {len(rows) - 12} more (see --report-json)")
    if early:
        add("  flagged only before the injection: " + ", ".join(
            f"{r[key]} {r['method']} ({r['detections_before_injection']}x)" for r in early))


def render(report: dict[str, Any]) -> str:
    lines: list[str] = []
    add = lines.append
    d = report["demo"]
    add("")
    add("=" * 78)
    add(f"otel-llm-eval demo report  (SIMULATED traffic: {d['requests_sent']} requests from simulated "
        f"users, seed {d['seed']}, {d['duration_seconds']:.0f} s)")
    add("Every number below was read back from the sidecar's own endpoints "
        f"({report['sidecar']['url']}: /metrics, /v1/experiments/{{id}}, /v1/bandits/{{id}}).")
    add("=" * 78)

    tr = report["traffic"]
    add("")
    add("Traffic the sidecar saw")
    add(f"  LLM calls {tr['llm_calls']:.0f} (errors {tr['llm_calls_error']:.0f}) · user feedback "
        f"{tr['feedback']:.0f} ({tr['feedback_positive']:.0f} thumbs up) · judge evaluations "
        f"{tr['judge_calls']:.0f} · cost ${tr['cost_usd']:.4f}")
    if tr["check_failures"]:
        add("  checks failed on 100% of outputs: " + ", ".join(
            f"{k} {v:.0f}" for k, v in tr["check_failures"].items()))
    if tr["safety_violations"]:
        add("  safety violations: " + ", ".join(f"{k} {v:.0f}" for k, v in tr["safety_violations"].items()))

    exp = report["experiment"]
    add("")
    add(f"A/B experiment '{exp['id']}': '{exp['treatment']}' vs control '{exp['control']}' "
        f"(in the simulation the new prompt really is better, and longer)")
    add(f"  {'metric':<17}{'control':>9}{'variant':>9}{'lift':>9}{'95% CI of lift':>21}{'p':>9}"
        f"{'always-valid p':>16}  verdict (n control/variant)")
    metrics = exp["metrics"]
    order = [m for m in metrics if m not in _CALL_METRICS and m not in _SKIPPED_METRICS
             and m not in ("exposures", "units")]
    order += [m for m in _CALL_METRICS if m in metrics]
    headline = []
    for metric in order:
        ctrl = metrics[metric].get(exp["control"], {})
        s = metrics[metric].get(exp["treatment"], {})
        if not s or (not ctrl.get("mean") and not s.get("mean")):
            continue  # e.g. error rate 0 in both arms
        ci = ("[" + _pct(s.get("ci_lower")) + ", " + _pct(s.get("ci_upper")) + "]"
              if s.get("ci_lower") is not None else "")
        verdict = VERDICT_TEXT.get(s.get("verdict") or "", s.get("verdict") or "")
        n = f"{_num(ctrl.get('n'), '{:.0f}')}/{_num(s.get('n'), '{:.0f}')}"
        add(f"  {metric[:16]:<17}{_num(ctrl.get('mean')):>9}{_num(s.get('mean')):>9}{_pct(s.get('lift')):>9}"
            f"{ci:>21}{_p(s.get('p_value')):>9}{_p(s.get('always_valid_p_value')):>16}  {verdict} ({n})")
        if s.get("verdict") in ("better", "worse"):
            headline.append(f"{s['verdict']} on {metric} ({_pct(s.get('lift'), 0)})")
    if headline:
        add(f"  → {exp['treatment']}: " + "; ".join(headline))
    skipped = [m for m in metrics if m in _SKIPPED_METRICS]
    if skipped:
        add(f"  (also analysed: {', '.join(skipped)}; most simulated sessions have one request)")
    srm = exp.get("srm_p_value")
    # the sidecar tests SRM on users (unit keys on the spans) when it has them, else on calls
    basis = (((exp.get("json") or {}).get("analysis") or {}).get("srm") or {}).get("basis") or "exposures"
    counted = exp["metrics"].get(basis) or exp["metrics"].get("exposures", {})
    add(f"  SRM: {'users' if basis == 'units' else 'calls'} "
        + ", ".join(f"{v} {s.get('n', 0):.0f}" for v, s in sorted(counted.items()))
        + f" against 50/50 weights, p = {_p(srm)}"
        + ("  → SAMPLE RATIO MISMATCH, do not trust" if srm is not None and srm < 0.001 else "  → no mismatch"))

    b = report["bandit"]
    add("")
    add(f"Bandit '{b['id']}' over three models (reward: thumbs up)")
    for arm, s in sorted(b["arms"].items(), key=lambda kv: -(kv[1].get("allocation") or 0)):
        add(f"  {arm:<20} allocation {_num(s.get('allocation'), '{:.1%}'):>7}   rewards {_num(s.get('pulls'), '{:.0f}'):>5}"
            f"   mean reward {_num(s.get('mean_reward'), '{:.3f}')}")

    il = report["interleaving"]
    add("")
    add(f"Pairwise interleaving '{il['id']}' (two answers side by side, order randomized)")
    for variant, s in sorted(il["variants"].items()):
        add(f"  {variant:<20} preference {_num(s.get('preference'), '{:+.3f}')}   sign-test p {_p(s.get('p_value'))}")
    add(f"  comparisons {_num(il.get('comparisons'), '{:.0f}')} · first-shown answer won "
        f"{_num(il.get('first_position_win_rate'), '{:.0%}')} of decisive ones (position bias check)")

    dr = report["drift"]
    add("")
    add(f"Drift (injected at t={dr['injected_at_seconds']:.0f}s: 3x longer questions, a new topic; "
        "reference window vs current window)")
    _detection_rows(add, dr["detected"], "feature")

    an = report["anomaly"]
    add("")
    add(f"Anomalies (quality drop injected at t={an['injected_at_seconds']:.0f}s: most answers turn "
        "into refusals)")
    _detection_rows(add, an["detected"], "metric")

    al = report["alerts"]
    add("")
    add("Alerts")
    add("  " + al["mode_text"])
    groups: dict[str, list[dict[str, Any]]] = {}
    for a in al.get("firing", []):
        groups.setdefault(a["name"], []).append(a)
    for name, rows in sorted(groups.items(), key=lambda kv: min(r.get("fired_at") or 0 for r in kv[1])):
        first = min(rows, key=lambda r: r.get("fired_at") or 0)
        extra = f" (+{len(rows) - 1} more label sets)" if len(rows) > 1 else ""
        when = f"since t={first['fired_at']:.0f}s" if first.get("fired_at") is not None else "firing"
        scales = sorted({r["timescale"] for r in rows if r.get("timescale")})
        scale = f" (rules: {', '.join('as generated' if x == 'production' else 'compressed ' + x for x in scales)})" if scales else ""
        add(f"  FIRING  {name} [{first['severity']}] {when}{extra}{scale}")
        add(f"          {first['description'] or first['summary']}")
    pend = sorted({(a["name"], a["severity"]) for a in al.get("pending", [])} - {(n, r[0]["severity"]) for n, r in groups.items()})
    for name, severity in pend:
        add(f"  pending {name} [{severity}]: condition true, waiting for its 'for'")
    if not groups and not pend:
        add("  none")
    for note in al.get("notes", []):
        add("  " + note)
    add("")
    add("This was simulated traffic. Point your app's OTLP exporter at a real sidecar "
        "(`otel-llm-eval sidecar`) to get the same report on your own traffic.")
    return "\n".join(lines) + "\n"
