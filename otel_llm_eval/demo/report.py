"""The demo's final report: built only from what the sidecar serves, then rendered as text.

`Scrape` parses one `GET /metrics` (prometheus_client's text parser). The `*_from_metrics` and
`*_section` helpers turn the last scrape, the sidecar's JSON (`/v1/experiments/{id}`,
`/v1/bandits/{id}`, `/v1/review/summary`), the detection times the demo saw while polling
`/metrics`, Prometheus' alerts and the offline loop's results into the plain dict `--report-json`
writes; `render(report)` turns it into the text people read.

Pure: no I/O here.
"""

from __future__ import annotations

import json
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


#: the demo app's judge and the demo sidecar's judge (evaluator names)
APP_JUDGE = "quality"
SIDECAR_JUDGE = "sidecar_heuristic"


def traffic_from_metrics(scrape: Scrape, service: str) -> dict[str, Any]:
    return {
        "llm_calls": scrape.total("llm_requests_total", service=service),
        "llm_calls_error": scrape.total("llm_requests_total", service=service, status="error"),
        "feedback": scrape.total("llm_user_feedback_total", service=service),
        "feedback_positive": scrape.total("llm_user_feedback_total", service=service, feedback_type="positive"),
        "judge_calls": scrape.total("llm_eval_judge_sampled_total", service=service),
        # layer 2 split: the app's judge ("quality") and the sidecar's judge on what the app left
        "app_judge_calls": scrape.total("llm_eval_judge_sampled_total", service=service, evaluator=APP_JUDGE),
        "sidecar_judge_calls": scrape.total("llm_eval_judge_sampled_total", service=service, evaluator=SIDECAR_JUDGE),
        "judge_errors": scrape.total("llm_eval_judge_errors_total", service=service),
        "judge_cost_usd": scrape.total("llm_eval_judge_cost_usd_total", service=service),
        "cost_usd": scrape.total("llm_cost_usd_total", service=service),
        "check_failures": {labels.get("check", ""): v for labels, v in
                           _sum_by(scrape.select("llm_check_failures_total", service=service), "check")},
        "safety_violations": {labels.get("check", ""): v for labels, v in
                              _sum_by(scrape.select("llm_safety_violations_total", service=service), "check")},
        "ingest_rejected": scrape.total("llm_eval_ingest_rejected_total"),
    }


def review_section(review: dict[str, Any], scrape: Scrape, service: str) -> dict[str, Any]:
    """What the reviewers did and what the sidecar made of it (summary JSON and /metrics)."""
    summary = review.get("summary") or {}
    return {
        "labels_posted": review.get("labels_posted", 0),
        "conflicts": review.get("conflicts", 0),
        "labeled": summary.get("labeled"),
        "queue_depth": summary.get("queue_depth"),
        "by_reason": summary.get("by_reason") or {},
        "failure_rate": summary.get("failure_rate"),
        "failure_rate_all_labeled": summary.get("failure_rate_all_labeled"),
        "top_issues": summary.get("top_issues") or [],
        "by_variant": summary.get("by_variant") or {},
        "agreement": summary.get("agreement") or {},
        "metrics": {
            "human_labels": scrape.total("llm_human_labels_total", service=service),
            "kappa": scrape.value("llm_eval_judge_human_agreement", service=service, method="kappa"),
            "spearman": scrape.value("llm_eval_judge_human_agreement", service=service, method="spearman"),
        },
    }


#: Prices per evaluation the cost model uses by default (`otel-llm-eval cost`): an LLM judge call
#: and a human label.
LLM_JUDGE_USD, HUMAN_LABEL_USD = 0.05, 5.0
#: The volume the monthly example uses (the cost model's own example); the demo's 30 requests/s
#: would be 2.6 million outputs a day.
EXAMPLE_DAILY_OUTPUTS = 10_000


def cost_section(report: dict[str, Any], *, judge_sample_rate: float, review_random_rate: float) -> dict[str, Any]:
    """Cost of evaluation: what the cost model projects for this run's outputs at the configured
    rates, what the run spent (counted by the sidecar), and the month at this run's pace."""
    from otel_llm_eval.offline.cost import monthly_cost

    outputs = float(report["traffic"]["llm_calls"])
    # the cost model projects the app's judge at its sample rate; the sidecar's judge (layer 2 on
    # the calls the app did not judge) is reported beside it as spent
    judged = float(report["traffic"].get("app_judge_calls", report["traffic"]["judge_calls"]))
    sidecar_judged = float(report["traffic"].get("sidecar_judge_calls", 0.0))
    labels = float(report["review"]["labels_posted"])
    projected = monthly_cost(outputs, llm_sample_rate=judge_sample_rate, human_sample_rate=review_random_rate,
                             llm_cost_usd=LLM_JUDGE_USD, human_cost_usd=HUMAN_LABEL_USD, days_per_month=1)
    llm_rate = round(min(1.0, judged / outputs), 3) if outputs else 0.0
    human_rate = round(min(1.0, labels / outputs), 3) if outputs else 0.0
    example = monthly_cost(EXAMPLE_DAILY_OUTPUTS, llm_sample_rate=llm_rate, human_sample_rate=human_rate,
                           llm_cost_usd=LLM_JUDGE_USD, human_cost_usd=HUMAN_LABEL_USD)
    return {
        "prices": {"llm_judge_usd": LLM_JUDGE_USD, "human_label_usd": HUMAN_LABEL_USD},
        "outputs": int(outputs),
        "projected": {"judge_evaluations": projected.llm_evaluations, "human_labels": projected.human_evaluations,
                      "judge_usd": projected.llm_cost_usd, "human_usd": projected.human_cost_usd,
                      "total_usd": projected.total_cost_usd,
                      "rates": {"judge": judge_sample_rate, "human_random": review_random_rate}},
        "spent": {"judge_evaluations": int(judged), "human_labels": int(labels),
                  "sidecar_judge_evaluations": int(sidecar_judged),
                  "judge_usd": judged * LLM_JUDGE_USD, "human_usd": labels * HUMAN_LABEL_USD,
                  "total_usd": judged * LLM_JUDGE_USD + labels * HUMAN_LABEL_USD,
                  "judge_usd_counted_by_sidecar": report["traffic"].get("judge_cost_usd", 0.0)},
        "example_month": example.as_dict(),
        "example_command": (f"otel-llm-eval cost --daily-outputs {EXAMPLE_DAILY_OUTPUTS} --llm-sample-rate {llm_rate:g} "
                            f"--human-sample-rate {human_rate:g}"),
    }


_DECISION_WORDS = {"ship": "SHIP", "dont_ship": "DON'T SHIP", "keep_running": "KEEP RUNNING"}


def decision_text(exp_json: dict[str, Any] | None) -> str | None:
    """The experiment-level decision (ship / don't ship / keep running) when the sidecar gives one."""
    decision = (((exp_json or {}).get("analysis") or {}).get("decision"))
    if decision is None or decision == {}:
        return None
    if not isinstance(decision, dict):
        return str(decision)
    head = next((decision[k] for k in ("decision", "verdict", "value", "outcome", "status") if decision.get(k)), None)
    why = next((decision[k] for k in ("text", "explanation", "reason", "why", "summary") if decision.get(k)), None)
    if head is None and why is None:
        return json.dumps(decision, sort_keys=True)[:200]
    if isinstance(head, str):
        head = _DECISION_WORDS.get(head, head)
    scope = (f" (primary {decision['primary']}"
             + (f"; guardrails {', '.join(map(str, decision['guardrails']))}" if decision.get("guardrails") else "")
             + ")") if decision.get("primary") else ""
    return " - ".join(str(x) for x in (head, why) if x is not None) + scope


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


def _concept_rows(add, rows: list[dict[str, Any]], topic: str) -> None:
    """Concept drift per topic and quality signal: when first flagged after the injection, the
    change of the topic's mean quality at the end (the story's quality drop later hits every topic)."""
    rows = [r for r in rows if r["first_detected_at"] is not None]
    if not rows:
        add("  not detected by the sidecar during the run")
        return
    add(f"  {'topic':<24}{'quality signal':<26}{'first flagged':>14}{'change at the end':>19}")
    for r in sorted(rows, key=lambda r: (r["segment"] != topic, r["first_detected_at"]))[:8]:
        add(f"  {r['segment'][:23]:<24}{r['signal'][:25]:<26}{_at(r['first_detected_at']):>14}"
            f"{_num(r.get('score'), '{:+.2f}'):>19}")


def _int(v: float | None) -> str:
    return "—" if v is None else f"{round(v):d}"


def _money(v: float | None) -> str:
    if v is None:
        return "—"
    return f"${v:,.2f}" if abs(v) >= 1 else f"${v:.4f}"


def _rate_ci(fr: dict[str, Any] | None) -> str:
    if not fr or fr.get("rate") is None:
        return "—"
    ci = (f" (95% CI {fr['ci_lower'] * 100:.0f}–{fr['ci_upper'] * 100:.0f}%)"
          if fr.get("ci_lower") is not None and fr.get("ci_upper") is not None else "")
    return f"{fr['rate'] * 100:.1f}% of {fr.get('n', 0)}{ci}"


def render(report: dict[str, Any]) -> str:
    lines: list[str] = []
    add = lines.append
    d = report["demo"]
    secs = d.get("traffic_seconds") or d["duration_seconds"]
    add("")
    add("=" * 78)
    add(f"otel-llm-eval demo report  (SIMULATED traffic: {d['requests_sent']} requests from simulated "
        f"users, seed {d['seed']}, {d['duration_seconds']:.0f} s)")
    add("Every number below was read back from the sidecar's own endpoints "
        f"({report['sidecar']['url']}: /metrics, /v1/experiments/{{id}}, /v1/bandits/{{id}}, /v1/review/summary)")
    add("or from Prometheus. Times (t=) are seconds since the traffic started, on the demo's real clock.")
    add("=" * 78)

    tr = report["traffic"]
    add("")
    add("Traffic the sidecar saw")
    add(f"  LLM calls {_int(tr['llm_calls'])} (errors {_int(tr['llm_calls_error'])}) · user feedback "
        f"{_int(tr['feedback'])} ({_int(tr['feedback_positive'])} thumbs up) · judge evaluations "
        f"{_int(tr['judge_calls'])}")
    add(f"  cost of the LLM calls ${tr['cost_usd']:.4f} in {secs:.0f} s of traffic "
        f"(at this pace ${tr['cost_usd'] / secs * 3600:.2f} per hour)")
    if tr["check_failures"]:
        add("  checks failed on 100% of outputs: " + ", ".join(
            f"{k} {_int(v)}" for k, v in tr["check_failures"].items()))
    if tr["safety_violations"]:
        add("  safety violations: " + ", ".join(f"{k} {_int(v)}" for k, v in tr["safety_violations"].items()))

    exp = report["experiment"]
    add("")
    add(f"A/B experiment '{exp['id']}': '{exp['treatment']}' vs control '{exp['control']}' "
        f"(in the simulation the new prompt really is better, and longer)")
    add(f"  {'metric':<17}{'control':>9}{'variant':>9}{'lift':>9}{'interval of lift':>21}{'fixed p':>9}"
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
        n = f"{_int(ctrl.get('n'))}/{_int(s.get('n'))}"
        add(f"  {metric[:16]:<17}{_num(ctrl.get('mean')):>9}{_num(s.get('mean')):>9}{_pct(s.get('lift')):>9}"
            f"{ci:>21}{_p(s.get('p_value')):>9}{_p(s.get('always_valid_p_value')):>16}  {verdict} ({n})")
        if s.get("verdict") in ("better", "worse"):
            headline.append(f"{s['verdict']} on {metric} ({_pct(s.get('lift'))})")
    if headline:
        add(f"  → {exp['treatment']}: " + "; ".join(headline))
    decision = decision_text(exp.get("json"))
    if decision:
        add(f"  DECISION (the sidecar's, from the primary metric and the guardrails): {decision}")
    add("  (interval of lift: the sidecar's interval for the verdict; verdicts use the always-valid p, safe to read "
        "at any time; the fixed-horizon p is for reference)")
    skipped = [m for m in metrics if m in _SKIPPED_METRICS]
    if skipped:
        add(f"  (also analysed: {', '.join(skipped)}; most simulated sessions have one request)")
    srm = exp.get("srm_p_value")
    # the sidecar tests SRM on users (unit keys on the spans) when it has them, else on calls
    basis = (((exp.get("json") or {}).get("analysis") or {}).get("srm") or {}).get("basis") or "exposures"
    counted = exp["metrics"].get(basis) or exp["metrics"].get("exposures", {})
    add(f"  SRM: {'users' if basis == 'units' else 'calls'} "
        + ", ".join(f"{v} {_int(s.get('n', 0))}" for v, s in sorted(counted.items()))
        + f" against 50/50 weights, p = {_p(srm)}"
        + ("  → SAMPLE RATIO MISMATCH, do not trust" if srm is not None and srm < 0.001 else "  → no mismatch"))

    b = report["bandit"]
    add("")
    add(f"Bandit '{b['id']}' over three models (reward: thumbs up)")
    for arm, s in sorted(b["arms"].items(), key=lambda kv: -(kv[1].get("allocation") or 0)):
        add(f"  {arm:<20} allocation {_num(s.get('allocation'), '{:.1%}'):>7}   rewards {_int(s.get('pulls')):>5}"
            f"   mean reward {_num(s.get('mean_reward'), '{:.3f}')}")

    il = report["interleaving"]
    add("")
    add(f"Pairwise interleaving '{il['id']}' (two answers side by side, order randomized)")
    for variant, s in sorted(il["variants"].items()):
        add(f"  {variant:<20} preference {_num(s.get('preference'), '{:+.3f}')}   always-valid p {_p(s.get('p_value'))}")
    add(f"  comparisons {_int(il.get('comparisons'))} · first-shown answer won "
        f"{_num(il.get('first_position_win_rate'), '{:.0%}')} of decisive ones (position bias check)")

    cd = report.get("concept_drift")
    if cd is not None:
        add("")
        add(f"Concept drift (injected at t={cd['injected_at_seconds']:.0f}s: answers about '{cd['topic']}' degrade "
            "while the topic mix stays the same; each topic's quality vs its own reference)")
        _concept_rows(add, cd["detected"], cd["topic"])
        add(f"  (topics flagged after t={report['anomaly']['injected_at_seconds']:.0f}s are the quality drop below, "
            "which hits every topic)")

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

    _render_alerts(add, report["alerts"])
    if "review" in report:
        _render_review(add, report["review"])
    if "offline" in report:
        _render_offline(add, report["offline"])
    if "cost" in report:
        _render_cost(add, report["cost"], secs)
    add("")
    add("This was simulated traffic. Point your app's OTLP exporter at a real sidecar "
        "(`otel-llm-eval sidecar`) to get the same report on your own traffic.")
    return "\n".join(lines) + "\n"


def _representative(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The label set to show for one alert: one still firing, of the demo's A/B experiment if any."""
    from .simulation import EXPERIMENT_ID

    return min(rows, key=lambda r: (r.get("state") != "firing", r["labels"].get("experiment") != EXPERIMENT_ID,
                                    r.get("fired_at") if r.get("fired_at") is not None else 1e9))


def _render_alerts(add, al: dict[str, Any]) -> None:
    add("")
    add("Alerts")
    add("  " + al["mode_text"])
    if al.get("mode") != "prometheus":
        return
    groups: dict[str, list[dict[str, Any]]] = {}
    for a in al.get("fired", []):
        groups.setdefault(a["name"], []).append(a)
    for name, rows in sorted(groups.items(), key=lambda kv: min(r.get("fired_at") or 1e9 for r in kv[1])):
        first = min(r.get("fired_at") if r.get("fired_at") is not None else 1e9 for r in rows)
        shown = _representative(rows)
        now = sum(1 for r in rows if r.get("state") == "firing")
        when = f"first notified at t={first:.0f}s" if first < 1e9 else "firing, not notified yet"
        sets = f"{len(rows)} label set{'s' if len(rows) > 1 else ''}, {now} firing at the end"
        add(f"  FIRED  {name} [{shown['severity']}] {when} -> {shown.get('receiver') or '?'} ({sets})")
        tag = "now" if shown.get("state") == "firing" else f"as notified at t={shown['fired_at']:.0f}s"
        add(f"         {tag}: {shown['description'] or shown['summary']}")
    pend = sorted({(a["name"], a["severity"]) for a in al.get("pending", [])} - {(n, r[0]["severity"]) for n, r in groups.items()})
    for name, severity in pend:
        add(f"  pending {name} [{severity}]: condition true, waiting for its (compressed) 'for'")
    if not groups and not pend:
        add("  none")
    for note in al.get("notes", []):
        add("  " + note)
    add("  Per-hour figures in alert texts (USD/h) are rates per real hour at the demo's pace; only windows and "
        "'for:' are compressed.")


def _render_review(add, rv: dict[str, Any]) -> None:
    add("")
    add(f"Human review (simulated reviewers labeled {rv['labels_posted']} queue items through "
        "POST /v1/review/{id}/label)")
    if rv.get("by_reason"):
        add("  items by why they were picked: " + ", ".join(f"{k} {v}" for k, v in sorted(rv["by_reason"].items())))
    add(f"  failure rate (quality < 3) on the unbiased random sample: {_rate_ci(rv.get('failure_rate'))}")
    add(f"  on every labeled item (biased: most were picked because a check failed): "
        f"{_rate_ci(rv.get('failure_rate_all_labeled'))}")
    if rv.get("top_issues"):
        add("  top issues: " + ", ".join(f"{i['issue']} {i['count']} ({i['share'] * 100:.0f}%)"
                                         for i in rv["top_issues"][:4]))
    ag = rv.get("agreement") or {}
    add(f"  judge–human agreement on {ag.get('n', 0)} items the judge also scored: Cohen's kappa "
        f"{_num(ag.get('kappa'), '{:.2f}')} (pass/fail), Spearman {_num(ag.get('spearman'), '{:.2f}')} (scores)")


def _render_offline(add, off: dict[str, Any]) -> None:
    add("")
    add("Offline loop (the same commands you would run; output shortened)")
    if off.get("error"):
        add("  " + off["error"])
    ds = off.get("dataset")
    if ds:
        tags = ", ".join(f"{k} {v}" for k, v in ds["tags"].items())
        add(f"  dataset  {ds['file']}: {ds['samples']} labeled failures, {ds['with_expected_answer']} with the "
            f"reviewer's corrected answer ({tags})")
    for st in off.get("steps", []):
        add(f"  $ {st['command']}   # exit {st['exit_code']}")
    gate = off.get("gate")
    if gate:
        cols = [m for m in ("exact", "f1", "cost") if m in gate["baseline"]]
        add("  gate, control prompt (baseline) -> new prompt: " + ", ".join(
            f"{m} {gate['baseline'][m]:.3g} -> {gate['current'].get(m, float('nan')):.3g}" for m in cols))
        if gate.get("verdict"):
            add(f"  {gate['verdict']}")
    if off.get("benchmark_scores"):
        add("  llm_benchmark_score on the sidecar: " + ", ".join(
            f"{m} {v:.3f}" for m, v in sorted(off["benchmark_scores"].items())))
    if off.get("regression_runs"):
        add("  llm_eval_regression_runs_total: " + ", ".join(
            f"{k} {_int(v)}" for k, v in sorted(off["regression_runs"].items())))


def _render_cost(add, c: dict[str, Any], secs: float) -> None:
    pr, sp, ex = c["projected"], c["spent"], c["example_month"]
    add("")
    add(f"Cost of evaluation (priced like `otel-llm-eval cost`: {_money(c['prices']['llm_judge_usd'])} per LLM "
        f"judge call, {_money(c['prices']['human_label_usd'])} per human label)")
    add(f"  {'':<30}{'judge calls':>12}{'human labels':>14}{'judge':>10}{'humans':>10}{'total':>10}")
    add(f"  {'projected for ' + str(c['outputs']) + ' outputs':<30}{pr['judge_evaluations']:>12.0f}"
        f"{pr['human_labels']:>14.0f}{_money(pr['judge_usd']):>10}{_money(pr['human_usd']):>10}"
        f"{_money(pr['total_usd']):>10}")
    add(f"  {'spent in this run':<30}{sp['judge_evaluations']:>12d}{sp['human_labels']:>14d}"
        f"{_money(sp['judge_usd']):>10}{_money(sp['human_usd']):>10}{_money(sp['total_usd']):>10}")
    add(f"  projected: judge {pr['rates']['judge']:.0%} of outputs (by trace id), review {pr['rates']['human_random']:.0%} "
        "random; spent also counts the review queue's error-triggered and low-score items.")
    if sp.get("sidecar_judge_evaluations"):
        add(f"  layer 2 in the sidecar also judged {sp['sidecar_judge_evaluations']:d} outputs the app did not judge "
            "(those that passed the checks: the cascade; `otel-llm-eval cost --sidecar URL` compares per layer)")
    add(f"  (the demo's judge is the free heuristic one; the sidecar counted {_money(sp['judge_usd_counted_by_sidecar'])} "
        "of judge cost, so judge calls are priced as if an LLM judged)")
    add(f"  a month at {ex['daily_outputs']:,.0f} outputs/day with this run's rates: {_money(ex['total_cost_usd'])} "
        f"({_money(ex['llm_cost_usd'])} judge, {_money(ex['human_cost_usd'])} human review); "
        f"`{c['example_command']}` prints it, `--budget` gives rates for a budget.")
