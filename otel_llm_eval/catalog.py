"""The metric catalog: every metric otel-llm-eval publishes, in one place.

This file is the single source of truth for metric names, types, units, help text, labels and
histogram buckets. The sidecar's Prometheus collector, the generated Grafana dashboards, the
generated alert rules and the metric reference (docs/metrics.md) are all built from it; a test fails when a
dashboard or alert names a metric that is not here. Renaming a metric is a breaking change for
every user dashboard: add a new one and deprecate the old instead.

Pure data, no imports beyond the standard library: importing this module costs an app nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MetricType = Literal["counter", "gauge", "histogram"]

#: Value that label values beyond a label's cap fold into (as spanmetricsconnector does).
OVERFLOW_VALUE = "other"

#: Default cap on distinct values per label (per sidecar). Beyond it, new values become "other".
#: Configurable in the sidecar config under `labels.caps`.
DEFAULT_LABEL_CAPS: dict[str, int] = {
    "service": 100,
    "model": 50,
    "experiment": 50,
    "variant": 20,
    "evaluator": 30,
    "check": 50,
    "feature": 100,
    "metric": 50,
    "method": 10,
    "bandit": 20,
    "arm": 20,
    "benchmark": 50,
    "feedback_type": 20,
    "issue": 30,
    "status": 5,
    "direction": 2,
    "window": 2,
    "reason": 20,
    "signal": 2,
    "verdict": 8,
    "decision": 3,
    "basis": 2,
    "feedback": 50,
    "category": 50,
    "result": 2,
    "signal": 50,
    "segment": 30,
}

#: LLM latencies run from tens of milliseconds (cached, small models) to minutes (long generations,
#: reasoning models). 3 s is a boundary because the default latency alert fires on p95 > 3 s.
LATENCY_BUCKETS_SECONDS: tuple[float, ...] = (
    0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0,
    120.0, 300.0,
)

#: Quality scores are on the 1..5 judge scale (0..1 scores from other evaluators land in the low
#: buckets). 3 is a boundary because the low-quality alert counts samples below 3.0.
QUALITY_SCORE_BUCKETS: tuple[float, ...] = (
    0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0,
)

HUMAN_SCORE_BUCKETS: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 5.0)

#: User ratings: whole points of 1..5 and 1..10 scales (a bucket per point, le = the point).
RATING_BUCKETS: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0)


@dataclass(frozen=True)
class Metric:
    """One published metric. `name` is the full exposition name (counters end in `_total`)."""

    name: str
    type: MetricType
    unit: str
    help: str
    labels: tuple[str, ...]
    group: str
    buckets: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.type == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"counter {self.name} must end in _total")
        if self.type == "histogram" and not self.buckets:
            raise ValueError(f"histogram {self.name} needs buckets")
        if self.type != "histogram" and self.buckets:
            raise ValueError(f"only histograms have buckets ({self.name})")
        for label in self.labels:
            if label not in DEFAULT_LABEL_CAPS:
                raise ValueError(f"label {label!r} of {self.name} has no cap in DEFAULT_LABEL_CAPS")

    @property
    def family_name(self) -> str:
        """Name without the `_total` suffix, as prometheus_client's metric families want it."""
        return self.name[: -len("_total")] if self.type == "counter" else self.name


_CALL = ("service", "model", "experiment", "variant")

METRICS: tuple[Metric, ...] = (
    # --- traffic, performance, cost (from every LLM span) ---
    Metric("llm_requests_total", "counter", "1",
           "LLM calls seen by the sidecar, by outcome (status=ok|error).",
           _CALL + ("status",), "traffic"),
    Metric("llm_response_latency_seconds", "histogram", "seconds",
           "Duration of LLM calls (span end minus start).",
           _CALL, "traffic", LATENCY_BUCKETS_SECONDS),
    Metric("llm_tokens_total", "counter", "tokens",
           "Tokens used by LLM calls, direction=input|output.",
           _CALL + ("direction",), "cost"),
    Metric("llm_cost_usd_total", "counter", "usd",
           "Cost of LLM calls in US dollars: span attribute when present, else the price table.",
           _CALL, "cost"),
    # --- usage ---
    Metric("llm_active_users", "gauge", "1",
           "Distinct users seen in the trailing window (window=1h|1d). Counted, never a label.",
           ("service", "window"), "usage"),
    Metric("llm_active_sessions", "gauge", "1",
           "Distinct sessions or conversations seen in the trailing window (window=1h|1d).",
           ("service", "window"), "usage"),
    Metric("llm_requests_per_user", "gauge", "1",
           "LLM calls per distinct user in the trailing window (window=1h|1d).",
           ("service", "window"), "usage"),
    Metric("llm_user_feedback_total", "counter", "1",
           "Binary user feedback (thumbs; feedback_type=label, else positive|negative). Ratings, outcomes, categories and comments have their own metrics.",
           ("service", "experiment", "variant", "feedback_type"), "quality"),
    Metric("llm_task_outcomes_total", "counter", "1",
           "Task outcomes (record_outcome, or feedback of kind outcome): result=success|failure per outcome name, e.g. task_completed, converted.",
           ("service", "experiment", "variant", "feedback", "result"), "quality"),
    Metric("llm_user_rating", "histogram", "1",
           "User ratings on a scale (feedback of kind scale, e.g. 1..5 stars), per feedback name; never counted as thumbs.",
           ("service", "experiment", "variant", "feedback"), "quality", RATING_BUCKETS),
    Metric("llm_user_feedback_category_total", "counter", "1",
           "Categorical user feedback (a label without a number, e.g. wrong_language), per feedback name and category.",
           ("service", "feedback", "category"), "quality"),
    Metric("llm_user_feedback_comments_total", "counter", "1",
           "User feedback records that carry a free-text comment, per feedback name (the text stays in the trace).",
           ("service", "feedback"), "quality"),
    # --- quality and safety ---
    Metric("llm_quality_score", "histogram", "score",
           "Evaluation scores of judge, code and human evaluators per evaluator (user feedback is not here).",
           _CALL + ("evaluator",), "quality", QUALITY_SCORE_BUCKETS),
    Metric("llm_check_failures_total", "counter", "1",
           "Outputs that failed a check (run on 100% of LLM spans that carry text).",
           ("service", "model", "check"), "quality"),
    Metric("llm_safety_violations_total", "counter", "1",
           "Outputs that failed a check of category safety (PII, toxicity, content filter).",
           ("service", "model", "check"), "quality"),
    # --- human review ---
    Metric("llm_review_queue_depth", "gauge", "1",
           "Items waiting in the human review queue.",
           ("service",), "review"),
    Metric("llm_human_labels_total", "counter", "1",
           "Human review labels, one per item and issue (issue=none when the item had no issue).",
           ("service", "issue"), "review"),
    Metric("llm_human_quality_score", "histogram", "score",
           "Quality (1..5) given by human reviewers.",
           ("service", "model", "variant"), "review", HUMAN_SCORE_BUCKETS),
    Metric("llm_eval_judge_human_agreement", "gauge", "1",
           "Agreement between LLM judge and human reviewers (method=kappa|spearman).",
           ("service", "method"), "review"),
    # --- LLM judge (from evaluation spans and the processor's judge stats spans) ---
    Metric("llm_eval_judge_sampled_total", "counter", "1",
           "Calls judged by the judge worker (one per evaluation with source llm_judge or code).",
           ("service", "evaluator"), "judge"),
    Metric("llm_eval_judge_errors_total", "counter", "1",
           "Judge evaluations that ended in an error (error.type set on the evaluation).",
           ("service", "evaluator"), "judge"),
    Metric("llm_eval_judge_dropped_total", "counter", "1",
           "Calls sampled for judging but dropped in the app (judge queue full, shutdown).",
           ("service", "evaluator"), "judge"),
    Metric("llm_eval_judge_skipped_total", "counter", "1",
           "Calls sampled for judging but skipped by the judge budget (reason=rate|cost).",
           ("service", "evaluator", "reason"), "judge"),
    Metric("llm_eval_judge_cost_usd_total", "counter", "usd",
           "What the LLM judge itself cost, in US dollars.",
           ("service", "evaluator"), "judge"),
    Metric("llm_eval_judge_sample_rate", "gauge", "ratio",
           "Judge sample rate per variant that reaches the experiment's target power at least cost.",
           ("experiment", "variant"), "judge"),
    # --- experiments (A/B) ---
    Metric("llm_eval_ab_samples", "gauge", "1",
           "Samples per experiment, metric and variant (metric=exposures: LLM calls; metric=units: distinct assignment units, for SRM).",
           ("experiment", "metric", "variant"), "experiments"),
    Metric("llm_eval_ab_mean", "gauge", "1",
           "Mean of the metric in the variant.",
           ("experiment", "metric", "variant"), "experiments"),
    Metric("llm_eval_ab_lift", "gauge", "ratio",
           "Relative lift of the variant over control ((mean_v - mean_c) / mean_c).",
           ("experiment", "metric", "variant"), "experiments"),
    Metric("llm_eval_ab_lift_ci_lower", "gauge", "ratio",
           "Lower bound of the relative lift's always-valid interval (running intersection at alpha / comparisons); the verdict follows it.",
           ("experiment", "metric", "variant"), "experiments"),
    Metric("llm_eval_ab_lift_ci_upper", "gauge", "ratio",
           "Upper bound of the relative lift's always-valid interval (running intersection at alpha / comparisons); the verdict follows it.",
           ("experiment", "metric", "variant"), "experiments"),
    Metric("llm_eval_ab_p_value", "gauge", "1",
           "Fixed-horizon p-value of variant vs control (informational: valid only if read once at a planned sample size).",
           ("experiment", "metric", "variant"), "experiments"),
    Metric("llm_eval_ab_p_value_adjusted", "gauge", "1",
           "Always-valid p-value times the experiment's number of comparisons (Bonferroni): the verdict is better/worse when it is below alpha.",
           ("experiment", "metric", "variant"), "experiments"),
    Metric("llm_eval_ab_always_valid_p_value", "gauge", "1",
           "Always-valid (sequential) p-value, running minimum over looks: safe to look at continuously.",
           ("experiment", "metric", "variant"), "experiments"),
    Metric("llm_eval_ab_required_samples", "gauge", "1",
           "Samples per arm the always-valid test needs to detect the metric's target effect with the configured power (per-unit variance included).",
           ("experiment", "metric", "variant"), "experiments"),
    Metric("llm_eval_ab_verdict", "gauge", "1",
           "1 for the current verdict of the variant (verdict=collecting|no_difference|better|worse|srm).",
           ("experiment", "metric", "variant", "verdict"), "experiments"),
    Metric("llm_eval_ab_srm_p_value", "gauge", "1",
           "Sample-ratio-mismatch p-value (chi-square of assignment units per variant vs weights; absent without unit keys); alert below 0.001.",
           ("experiment",), "experiments"),
    Metric("llm_eval_ab_decision", "gauge", "1",
           "1 for the experiment's current decision per variant (decision=ship|dont_ship|keep_running, reason from a fixed set, metric: the one that decided).",
           ("experiment", "variant", "decision", "reason", "metric"), "experiments"),
    Metric("llm_eval_ab_basis", "gauge", "1",
           "1 for the experiment's unit of analysis (basis=unit: per-unit sums, delta method; basis=call: no unit keys on the spans).",
           ("experiment", "basis"), "experiments"),
    # --- interleaving ---
    Metric("llm_eval_interleaving_preference", "gauge", "1",
           "Preference for the variant: (wins + ties/2) / n - 0.5, in [-0.5, 0.5].",
           ("experiment", "variant"), "experiments"),
    Metric("llm_eval_interleaving_p_value", "gauge", "1",
           "Two-sided binomial sign test on decisive comparisons.",
           ("experiment", "variant"), "experiments"),
    Metric("llm_eval_interleaving_comparisons", "gauge", "1",
           "Comparisons recorded for the experiment (all outcomes, ties included).",
           ("experiment",), "experiments"),
    Metric("llm_eval_interleaving_first_position_win_rate", "gauge", "ratio",
           "Share of decisive pairwise comparisons won by the response shown first (position bias).",
           ("experiment",), "experiments"),
    # --- bandits ---
    Metric("llm_eval_bandit_allocation", "gauge", "ratio",
           "Current traffic share per arm served to apps.",
           ("bandit", "arm"), "experiments"),
    Metric("llm_eval_bandit_pulls", "gauge", "1",
           "Rewards received per arm.",
           ("bandit", "arm"), "experiments"),
    Metric("llm_eval_bandit_mean_reward", "gauge", "1",
           "Mean reward per arm.",
           ("bandit", "arm"), "experiments"),
    Metric("llm_eval_bandit_probability_best", "gauge", "ratio",
           "Posterior probability that the arm is the best (Thompson sampling's Beta posteriors); bandits get no A/B p-values.",
           ("bandit", "arm"), "experiments"),
    Metric("llm_eval_bandit_expected_regret", "gauge", "1",
           "Expected regret per pull of the current allocation, from posterior means (reward units).",
           ("bandit",), "experiments"),
    # --- drift and anomalies ---
    Metric("llm_eval_drift_score", "gauge", "1",
           "Drift between the reference and current window (method=js|psi|ks|chi2; ks/chi2 give p-values).",
           ("service", "feature", "method"), "drift"),
    Metric("llm_eval_drift_detected", "gauge", "1",
           "1 when the drift score crosses its threshold, else 0.",
           ("service", "feature", "method"), "drift"),
    Metric("llm_eval_concept_drift_shift", "gauge", "1",
           "Concept drift: change of an input segment's mean quality (judge score, feedback rate), current minus reference window.",
           ("service", "signal", "segment"), "drift"),
    Metric("llm_eval_concept_drift_p_value", "gauge", "1",
           "Concept drift: Welch p-value of the segment's quality change, Bonferroni-adjusted over the service's segments.",
           ("service", "signal", "segment"), "drift"),
    Metric("llm_eval_concept_drift_detected", "gauge", "1",
           "1 when an input segment's quality changed (adjusted p below 0.05) while the segment itself is the same, else 0.",
           ("service", "signal", "segment"), "drift"),
    Metric("llm_eval_anomaly_score", "gauge", "1",
           "Anomaly score of the newest slot of a metric series (method=zscore|mad|ewma).",
           ("service", "metric", "method"), "drift"),
    Metric("llm_eval_anomaly_detected", "gauge", "1",
           "1 when the newest slot is anomalous by the method, else 0.",
           ("service", "metric", "method"), "drift"),
    # --- offline ---
    Metric("llm_benchmark_score", "gauge", "1",
           "Latest recorded benchmark score per benchmark and model.",
           ("benchmark", "model"), "offline"),
    Metric("llm_eval_regression_runs_total", "counter", "1",
           "Regression gate runs pushed to the sidecar (status=pass|fail).",
           ("status",), "offline"),
    # --- the sidecar itself ---
    Metric("llm_eval_ingest_spans_total", "counter", "1",
           "Spans and log records accepted by the OTLP receiver (signal=traces|logs).",
           ("signal",), "sidecar"),
    Metric("llm_eval_ingest_rejected_total", "counter", "1",
           "OTLP requests or items rejected (reason=malformed|too_large|unsupported|queue_full|...).",
           ("reason",), "sidecar"),
    Metric("llm_eval_ingest_queue_depth", "gauge", "1",
           "Batches waiting in the sidecar's ingest queue.",
           (), "sidecar"),
    Metric("llm_eval_label_overflow_total", "counter", "1",
           "Label values folded into 'other' because the label's cap was reached.",
           ("reason",), "sidecar"),
    Metric("llm_eval_state_flush_total", "counter", "1",
           "Flushes of the sidecar's state to SQLite (status=ok|error).",
           ("status",), "sidecar"),
    Metric("llm_eval_analysis_duration_seconds", "gauge", "seconds",
           "Wall time of the last analysis pass (statistics, drift, anomalies).",
           (), "sidecar"),
)

BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}

#: Series names Prometheus derives from a histogram (used to check queries against the catalog).
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def metric(name: str) -> Metric:
    """The catalog entry for `name`; KeyError naming the metric when it is not in the catalog."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"metric {name!r} is not in otel_llm_eval.catalog") from None


def series_names() -> set[str]:
    """Every series name a query may use: metric names plus histogram _bucket/_sum/_count."""
    names: set[str] = set()
    for m in METRICS:
        names.add(m.name)
        if m.type == "histogram":
            names.update(m.name + s for s in HISTOGRAM_SUFFIXES)
    return names


def markdown_table() -> str:
    """The metric table of docs/metrics.md (`otel-llm-eval bundle --check` fails when it is stale)."""
    rows = ["| metric | type | unit | labels | meaning |", "|---|---|---|---|---|"]
    for m in METRICS:
        labels = ", ".join(m.labels) or "—"
        # a bare "|" (as in "status=ok|error") would split the Markdown cell
        rows.append(f"| `{m.name}` | {m.type} | {m.unit} | {labels} | {m.help.replace('|', chr(92) + '|')} |")
    return "\n".join(rows) + "\n"
