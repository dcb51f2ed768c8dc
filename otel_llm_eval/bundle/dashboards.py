"""Grafana dashboards built with grafanalib from the catalog's metrics.

Pure functions, no I/O. Each dashboard is described as rows of `P` panel specs; `build()` turns a
spec into a grafanalib Dashboard and `to_json()` into the JSON model Grafana provisions, cleaned of
grafanalib's legacy output (nulls, `rows`, schemaVersion 12, string datasources) so it validates
against the schema generated from @grafana/schema. Every query names the fixed datasource uid
that dashboards/provisioning defines, because file provisioning does not resolve `${DS_...}`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from otel_llm_eval.bundle.common import COMMAND, DATASOURCE, DO_NOT_EDIT, NEGATIVE_FEEDBACK, POSITIVE_FEEDBACK

#: Grafana's current classic-model schema version (Grafana 11.x writes 39..41).
SCHEMA_VERSION = 39
GRID_WIDTH = 24

# Selectors shared by the panels (Grafana expands multi-value variables to regex alternations).
SVC = 'service=~"$service"'
SVC_MODEL = 'service=~"$service", model=~"$model"'
EXP = 'experiment=~"$experiment"'
RI = "$__rate_interval"


@dataclass(frozen=True)
class Q:
    """One query: PromQL, legend, and whether it is an instant query (tables, stats)."""

    expr: str
    legend: str = ""
    instant: bool = False


@dataclass(frozen=True)
class P:
    """One panel: kind is timeseries | stat | table | bargauge | bars (hourly bar chart)."""

    kind: str
    title: str
    description: str
    queries: tuple[Q, ...]
    unit: str
    width: int = 8
    height: int = 8
    stack: bool = False
    log_scale: bool = False
    thresholds: tuple[tuple[str, float | None], ...] = (("green", None),)
    min_value: float | None = None
    max_value: float | None = None


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    query: str


@dataclass(frozen=True)
class DashboardSpec:
    file_stem: str
    title: str
    description: str
    tags: tuple[str, ...]
    variables: tuple[Variable, ...]
    rows: tuple[tuple[str, tuple[P, ...]], ...]
    time_from: str = "now-6h"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def uid(self) -> str:
        """Stable uid derived from the file name (Grafana allows 40 characters)."""
        return f"otel-llm-eval-{self.file_stem}"[:40]

    @property
    def file_name(self) -> str:
        return f"{self.file_stem}.json"


_SERVICE_VAR = Variable("service", "Service", "label_values(llm_requests_total, service)")
_MODEL_VAR = Variable("model", "Model", 'label_values(llm_requests_total{service=~"$service"}, model)')
_EXPERIMENT_VAR = Variable("experiment", "Experiment", "label_values(llm_eval_ab_samples, experiment)")


def _ratio(num: str, den: str, by: str = "service") -> str:
    return f"sum by ({by}) ({num})\n/\nsum by ({by}) ({den})"


def _quantile(q: float) -> Q:
    return Q(f"histogram_quantile({q}, sum by (le) (rate(llm_response_latency_seconds_bucket{{{SVC_MODEL}}}[{RI}])))",
             f"p{int(q * 100)}")


OVERVIEW = DashboardSpec(
    "llm-overview", "LLM overview",
    "Quality, performance, cost and usage of LLM calls seen by the otel-llm-eval sidecar.",
    ("otel-llm-eval", "llm"), (_SERVICE_VAR, _MODEL_VAR),
    rows=(
        ("Quality", (
            P("timeseries", "Judge score (mean)",
              "Mean evaluation score per evaluator (1..5 for LLM judges).",
              (Q(_ratio(f"rate(llm_quality_score_sum{{{SVC_MODEL}}}[{RI}])",
                        f"rate(llm_quality_score_count{{{SVC_MODEL}}}[{RI}])", "evaluator"), "{{evaluator}}"),),
              "none", min_value=0),
            P("timeseries", "Scores at most 3.0",
              "Share of evaluation scores in the bucket le=3.0 (the LLMLowQuality alert fires above 10% over 1 h).",
              (Q(_ratio(f'rate(llm_quality_score_bucket{{{SVC_MODEL}, le="3.0"}}[{RI}])',
                        f"rate(llm_quality_score_count{{{SVC_MODEL}}}[{RI}])", "evaluator"), "{{evaluator}}"),),
              "percentunit", min_value=0, max_value=1,
              thresholds=(("green", None), ("red", 0.1))),
            P("timeseries", "Thumbs-up share",
              "Positive / (positive + negative) user feedback (feedback_type positive|up|... vs negative|down|...).",
              (Q(_ratio(f'rate(llm_user_feedback_total{{{SVC}, feedback_type=~"{POSITIVE_FEEDBACK}"}}[{RI}])',
                        f'rate(llm_user_feedback_total{{{SVC}, feedback_type=~"{POSITIVE_FEEDBACK}|{NEGATIVE_FEEDBACK}"}}[{RI}])'),
                 "{{service}}"),),
              "percentunit", min_value=0, max_value=1),
            P("timeseries", "Task completion rate",
              "Successful / all task outcomes per outcome name (record_outcome, or feedback of kind outcome: "
              "task_completed, converted, ...).",
              (Q(_ratio(f'rate(llm_task_outcomes_total{{{SVC}, result="success"}}[{RI}])',
                        f"rate(llm_task_outcomes_total{{{SVC}}}[{RI}])", "feedback"), "{{feedback}}"),),
              "percentunit", min_value=0, max_value=1),
            P("timeseries", "User ratings (mean)",
              "Mean user rating per feedback name (feedback of kind scale, e.g. 1..5 stars; never counted as thumbs).",
              (Q(_ratio(f"rate(llm_user_rating_sum{{{SVC}}}[{RI}])",
                        f"rate(llm_user_rating_count{{{SVC}}}[{RI}])", "feedback"), "{{feedback}}"),),
              "none", min_value=0),
            P("timeseries", "Safety violations per 1000 outputs",
              "Outputs failing a safety check (PII, toxicity, content filter) per 1000 LLM calls.",
              (Q("1000 * " + _ratio(f"rate(llm_safety_violations_total{{{SVC_MODEL}}}[{RI}])",
                                    f"rate(llm_requests_total{{{SVC_MODEL}}}[{RI}])"), "{{service}}"),),
              "none", min_value=0, thresholds=(("green", None), ("red", 1))),
            P("timeseries", "Check failures by check",
              "Outputs failing each check per second (all categories).",
              (Q(f"sum by (check) (rate(llm_check_failures_total{{{SVC_MODEL}}}[{RI}]))", "{{check}}"),),
              "ops", stack=True),
            P("timeseries", "Human review quality (mean)",
              "Mean quality given by human reviewers (1..5).",
              (Q(_ratio(f"rate(llm_human_quality_score_sum{{{SVC}}}[{RI}])",
                        f"rate(llm_human_quality_score_count{{{SVC}}}[{RI}])"), "{{service}}"),),
              "none", min_value=0),
        )),
        ("Performance", (
            P("timeseries", "Latency p50 / p95 / p99",
              "Duration of LLM calls from the latency histogram (the LLMHighLatencyP95 alert fires above 3 s).",
              (_quantile(0.5), _quantile(0.95), _quantile(0.99)), "s",
              thresholds=(("green", None), ("red", 3.0))),
            P("timeseries", "Throughput",
              "LLM calls per second by model.",
              (Q(f"sum by (model) (rate(llm_requests_total{{{SVC_MODEL}}}[{RI}]))", "{{model}}"),),
              "reqps", stack=True),
            P("timeseries", "Error rate",
              "Share of LLM calls with status=error.",
              (Q(_ratio(f'rate(llm_requests_total{{{SVC_MODEL}, status="error"}}[{RI}])',
                        f"rate(llm_requests_total{{{SVC_MODEL}}}[{RI}])"), "{{service}}"),),
              "percentunit", min_value=0, thresholds=(("green", None), ("orange", 0.05), ("red", 0.2))),
        )),
        ("Cost", (
            P("stat", "Cost, last 24 h",
              "US dollars spent on LLM calls over the last day.",
              (Q(f"sum(increase(llm_cost_usd_total{{{SVC_MODEL}}}[1d]))", instant=True),),
              "currencyUSD", width=6),
            P("timeseries", "Cost per hour by model",
              "Spend rate in US dollars per hour.",
              (Q(f"3600 * sum by (model) (rate(llm_cost_usd_total{{{SVC_MODEL}}}[{RI}]))", "{{model}}"),),
              "currencyUSD", width=6, stack=True),
            P("timeseries", "Cost per successful interaction",
              "US dollars of LLM calls per successful task outcome (llm_task_outcomes_total result=success): "
              "what one completed task costs. Empty until the app records outcomes (record_outcome).",
              (Q(_ratio(f"rate(llm_cost_usd_total{{{SVC}}}[{RI}])",
                        f'rate(llm_task_outcomes_total{{{SVC}, result="success"}}[{RI}])'), "{{service}}"),),
              "currencyUSD", width=6),
            P("timeseries", "Tokens per second",
              "Input and output tokens per second.",
              (Q(f"sum by (direction) (rate(llm_tokens_total{{{SVC_MODEL}}}[{RI}]))", "{{direction}}"),),
              "short", width=6, stack=True),
            P("timeseries", "Tokens per request",
              "Input and output tokens per LLM call.",
              (Q(f"sum by (direction) (rate(llm_tokens_total{{{SVC_MODEL}}}[{RI}]))\n/ on () group_left\n"
                 f"sum(rate(llm_requests_total{{{SVC_MODEL}}}[{RI}]))", "{{direction}}"),),
              "short", width=6),
        )),
        ("Usage", (
            P("stat", "Requests, last 24 h",
              "LLM calls over the last day.",
              (Q(f"sum(increase(llm_requests_total{{{SVC_MODEL}}}[1d]))", instant=True),),
              "short", width=4),
            P("timeseries", "Active users and sessions",
              "Distinct users and sessions in the trailing hour and day (counted, never labels).",
              (Q(f"sum by (window) (llm_active_users{{{SVC}}})", "users {{window}}"),
               Q(f"sum by (window) (llm_active_sessions{{{SVC}}})", "sessions {{window}}")),
              "short", width=7),
            P("timeseries", "Requests per user",
              "LLM calls per distinct user in the trailing window.",
              (Q(f"avg by (window) (llm_requests_per_user{{{SVC}}})", "{{window}}"),),
              "short", width=6),
            P("timeseries", "Messages per session",
              "Engagement: LLM calls in the last hour per session active in it.",
              (Q(_ratio(f"increase(llm_requests_total{{{SVC}}}[1h])", f'llm_active_sessions{{{SVC}, window="1h"}}'),
                 "{{service}}"),),
              "short", width=6),
            P("bars", "Requests per hour (peak hours)",
              "LLM calls per hour; switch the time range to 7 days to see daily peaks.",
              (Q(f"sum(increase(llm_requests_total{{{SVC_MODEL}}}[1h]))", "requests"),),
              "short", width=7),
        )),
        ("LLM judge", (
            P("timeseries", "Judged calls per second",
              "Calls judged by LLM judges, judge errors, calls dropped in the app and skipped by the budget.",
              (Q(f"sum by (evaluator) (rate(llm_eval_judge_sampled_total{{{SVC}}}[{RI}]))", "judged {{evaluator}}"),
               Q(f"sum by (evaluator) (rate(llm_eval_judge_errors_total{{{SVC}}}[{RI}]))", "errors {{evaluator}}"),
               Q(f"sum by (evaluator) (rate(llm_eval_judge_dropped_total{{{SVC}}}[{RI}]))", "dropped {{evaluator}}"),
               Q(f"sum by (evaluator, reason) (rate(llm_eval_judge_skipped_total{{{SVC}}}[{RI}]))",
                 "skipped {{evaluator}} ({{reason}})")),
              "ops", width=12),
            P("timeseries", "Judge cost per hour",
              "What the LLM judge itself costs, in US dollars per hour.",
              (Q(f"3600 * sum by (evaluator) (rate(llm_eval_judge_cost_usd_total{{{SVC}}}[{RI}]))", "{{evaluator}}"),),
              "currencyUSD", width=12),
        )),
        ("Sidecar", (
            P("timeseries", "Ingest",
              "Spans and log records accepted, and OTLP requests or items rejected, per second.",
              (Q(f"sum by (signal) (rate(llm_eval_ingest_spans_total[{RI}]))", "accepted {{signal}}"),
               Q(f"sum by (reason) (rate(llm_eval_ingest_rejected_total[{RI}]))", "rejected {{reason}}")),
              "ops", width=8),
            P("timeseries", "Ingest queue depth",
              "Batches waiting in the sidecar's ingest queue.",
              (Q("sum by (instance) (llm_eval_ingest_queue_depth)", "{{instance}}"),),
              "short", width=4),
            P("timeseries", "Analysis pass duration",
              "Wall time of the last analysis pass (statistics, drift, anomalies).",
              (Q("max by (instance) (llm_eval_analysis_duration_seconds)", "{{instance}}"),),
              "s", width=4),
            P("timeseries", "State flushes and label overflow",
              "SQLite flushes by status, and label values folded into 'other' by their cap.",
              (Q(f"sum by (status) (rate(llm_eval_state_flush_total[{RI}]))", "flush {{status}}"),
               Q(f"sum by (reason) (rate(llm_eval_label_overflow_total[{RI}]))", "overflow {{reason}}")),
              "ops", width=8),
        )),
    ),
)

_AB = f'{EXP}, metric=~"$metric"'
_METRIC_VAR = Variable("metric", "Metric", 'label_values(llm_eval_ab_samples{experiment=~"$experiment"}, metric)')


def _ab_table_query(name: str, column: str) -> Q:
    return Q(f"max by (experiment, metric, variant) (llm_eval_{name}{{{_AB}}})", column, instant=True)


EXPERIMENTS = DashboardSpec(
    "llm-experiments", "LLM experiments",
    "A/B statistics per experiment, metric and variant; sample-ratio mismatch; interleaving; bandits.",
    ("otel-llm-eval", "llm", "experiments"), (_EXPERIMENT_VAR, _METRIC_VAR),
    rows=(
        ("A/B results", (
            P("table", "Decision",
              "Per variant: ship, dont_ship or keep_running, and the rule that decided (primary_better, "
              "primary_worse, guardrail_worse, below_target, no_difference, srm, collecting, "
              "guardrail_unproven, no_primary). From always-valid intervals: safe to watch continuously.",
              (Q(f"max by (experiment, variant, decision, reason) (llm_eval_ab_decision{{{EXP}}}) == 1",
                 instant=True),),
              "none", width=16, height=6),
            P("table", "Unit of analysis",
              "unit: per-unit sums (a user's calls count as one unit, delta method); call: the spans carry no "
              "unit keys, calls are treated as independent (activate experiments with a user id).",
              (Q(f"max by (experiment, basis) (llm_eval_ab_basis{{{EXP}}}) == 1", instant=True),),
              "none", width=8, height=6),
            P("table", "Variants vs control",
              "n, mean, relative lift with its always-valid interval (running intersection at the comparison's "
              "share of alpha), always-valid p and p x (alpha / level) (the verdict is better/worse below alpha), "
              "and the fixed-horizon p (informational: valid only if read once at a planned sample size).",
              tuple(_ab_table_query(n, c) for n, c in (
                  ("ab_samples", "n"), ("ab_mean", "mean"), ("ab_lift", "lift"),
                  ("ab_lift_ci_lower", "lift CI lower"), ("ab_lift_ci_upper", "lift CI upper"),
                  ("ab_always_valid_p_value", "always-valid p"), ("ab_p_value_adjusted", "adjusted p"),
                  ("ab_p_value", "fixed-horizon p"))),
              "none", width=24, height=9),
            P("table", "Verdict",
              "Current verdict per variant and metric: collecting, no_difference, better, worse or srm (do not trust).",
              (Q(f"max by (experiment, metric, variant, verdict) (llm_eval_ab_verdict{{{_AB}}}) == 1",
                 instant=True),),
              "none", width=12, height=7),
            P("timeseries", "Samples vs required",
              "Samples per variant and the samples per arm the always-valid test needs for the metric's target effect.",
              (Q(f"max by (variant) (llm_eval_ab_samples{{{_AB}}})", "n {{variant}}"),
               Q(f"max by (variant) (llm_eval_ab_required_samples{{{_AB}}})", "required {{variant}}")),
              "short", width=12, height=7),
        )),
        ("Over time", (
            P("timeseries", "Relative lift with confidence interval",
              "Lift of each variant over control and its always-valid interval (it only narrows over time).",
              (Q(f"max by (variant) (llm_eval_ab_lift{{{_AB}}})", "lift {{variant}}"),
               Q(f"max by (variant) (llm_eval_ab_lift_ci_lower{{{_AB}}})", "lower {{variant}}"),
               Q(f"max by (variant) (llm_eval_ab_lift_ci_upper{{{_AB}}})", "upper {{variant}}")),
              "percentunit"),
            P("timeseries", "p-values",
              "Always-valid p-value (safe to peek at; it never rises) and the fixed-horizon p-value (not safe to peek at) per variant.",
              (Q(f"max by (variant) (llm_eval_ab_p_value{{{_AB}}})", "p {{variant}}"),
               Q(f"max by (variant) (llm_eval_ab_always_valid_p_value{{{_AB}}})", "always-valid {{variant}}")),
              "none", log_scale=True, thresholds=(("red", None), ("green", 0.05))),
            P("timeseries", "Sample ratio mismatch p-value",
              "Chi-square of assignment units vs configured weights (absent without unit keys); below 0.001 the split is broken.",
              (Q(f"max by (experiment) (llm_eval_ab_srm_p_value{{{EXP}}})", "{{experiment}}"),),
              "none", log_scale=True, thresholds=(("red", None), ("green", 0.001))),
            P("timeseries", "Units and exposures per variant",
              "Distinct assignment units (metric=units, what SRM tests when spans carry unit keys) and LLM calls (metric=exposures) per variant.",
              (Q(f'max by (variant, metric) (llm_eval_ab_samples{{{EXP}, metric=~"units|exposures"}})', "{{variant}} {{metric}}"),),
              "short"),
            P("timeseries", "Engagement per variant",
              "Messages per session and session length per variant (ratio metrics per user, delta method).",
              (Q(f'max by (variant, metric) (llm_eval_ab_mean{{{EXP}, metric=~"messages_per_session|session_length_seconds"}})',
                 "{{variant}} {{metric}}"),),
              "short"),
            P("timeseries", "Task completion per variant",
              "Successful / all task outcomes per variant and outcome name.",
              (Q(_ratio(f'rate(llm_task_outcomes_total{{{EXP}, result="success"}}[{RI}])',
                        f"rate(llm_task_outcomes_total{{{EXP}}}[{RI}])", "variant, feedback"), "{{variant}} {{feedback}}"),),
              "percentunit", min_value=0, max_value=1),
            P("timeseries", "Tokens per request per variant",
              "Output tokens per LLM call in each variant.",
              (Q(_ratio(f'rate(llm_tokens_total{{{EXP}, direction="output"}}[{RI}])',
                        f"rate(llm_requests_total{{{EXP}}}[{RI}])", "variant"), "{{variant}}"),),
              "short"),
            P("timeseries", "Judge sample rate per variant",
              "Judge sample rate that reaches the experiment's target power at least cost.",
              (Q(f"max by (experiment, variant) (llm_eval_judge_sample_rate{{{EXP}}})", "{{experiment}} {{variant}}"),),
              "percentunit", min_value=0, max_value=1),
        )),
        ("Interleaving", (
            P("timeseries", "Interleaving preference",
              "(wins + ties/2) / n - 0.5 per variant: above 0 the variant is preferred.",
              (Q(f"max by (experiment, variant) (llm_eval_interleaving_preference{{{EXP}}})",
                 "{{experiment}} {{variant}}"),),
              "none", min_value=-0.5, max_value=0.5),
            P("timeseries", "Interleaving p-value",
              "Always-valid p-value (Beta-binomial mixture on decisive comparisons, running minimum): safe to watch.",
              (Q(f"max by (experiment, variant) (llm_eval_interleaving_p_value{{{EXP}}})",
                 "{{experiment}} {{variant}}"),),
              "none", log_scale=True),
            P("timeseries", "Comparisons and position bias",
              "Comparisons recorded, and how often the response shown first wins (0.5 = no bias).",
              (Q(f"max by (experiment) (llm_eval_interleaving_comparisons{{{EXP}}})", "comparisons {{experiment}}"),
               Q(f"max by (experiment) (llm_eval_interleaving_first_position_win_rate{{{EXP}}})",
                 "first-position wins {{experiment}}")),
              "short"),
        )),
        ("Bandits", (
            P("timeseries", "Bandit allocation over time",
              "Traffic share per arm served to apps.",
              (Q("max by (bandit, arm) (llm_eval_bandit_allocation)", "{{bandit}} {{arm}}"),),
              "percentunit", stack=True, min_value=0, max_value=1),
            P("timeseries", "Bandit pulls",
              "Rewards received per arm.",
              (Q("max by (bandit, arm) (llm_eval_bandit_pulls)", "{{bandit}} {{arm}}"),),
              "short"),
            P("timeseries", "Bandit mean reward",
              "Mean reward per arm.",
              (Q("max by (bandit, arm) (llm_eval_bandit_mean_reward)", "{{bandit}} {{arm}}"),),
              "none"),
            P("timeseries", "Bandit: probability each arm is best",
              "Posterior P(best) per arm. Bandits get no A/B p-values: their allocation moves with the data, "
              "which breaks a fixed-split test.",
              (Q("max by (bandit, arm) (llm_eval_bandit_probability_best)", "{{bandit}} {{arm}}"),),
              "percentunit", min_value=0, max_value=1),
            P("timeseries", "Bandit: expected regret per pull",
              "What the current allocation is expected to lose per pull against the best arm (posterior means).",
              (Q("max by (bandit) (llm_eval_bandit_expected_regret)", "{{bandit}}"),),
              "none"),
        )),
    ),
)

DRIFT = DashboardSpec(
    "llm-drift-anomalies", "LLM drift and anomalies",
    "Distribution drift of inputs and outputs against the reference window, and anomalies per metric series.",
    ("otel-llm-eval", "llm", "drift"), (_SERVICE_VAR,),
    rows=(
        ("Drift", (
            P("timeseries", "Drift score by feature",
              "ks and chi2: the test p-value (drift below 0.05); js and psi: effect sizes (distance), never deciding.",
              (Q(f"max by (feature, method) (llm_eval_drift_score{{{SVC}}})", "{{feature}} {{method}}"),),
              "none", width=12),
            P("timeseries", "Drift detected",
              "1 while a feature's drift test (KS for numbers, two-sample chi-square for categories) is below "
              "p 0.05 (input features: LLMInputDrift; output features: LLMOutputDrift).",
              (Q(f"max by (feature) (llm_eval_drift_detected{{{SVC}}})", "{{feature}}"),),
              "none", width=12, min_value=0, max_value=1),
            P("timeseries", "Concept drift: quality change per input segment",
              "Per input segment (a declared attribute such as a topic, or input-length quantiles of the reference "
              "window): current minus reference mean of each quality signal. A segment mix change moves no line here.",
              (Q(f"max by (signal, segment) (llm_eval_concept_drift_shift{{{SVC}}})", "{{signal}} {{segment}}"),),
              "none"),
            P("timeseries", "Concept drift detected",
              "1 while a segment's quality change is significant (Welch, Bonferroni over segments; LLMConceptDrift).",
              (Q(f"max by (signal, segment) (llm_eval_concept_drift_detected{{{SVC}}})", "{{signal}} {{segment}}"),),
              "none", min_value=0, max_value=1),
        )),
        ("Anomalies", (
            P("timeseries", "Anomaly score by metric",
              "Score of the newest slot per metric series and method (z-score, MAD z, EWMA).",
              (Q(f"max by (metric, method) (llm_eval_anomaly_score{{{SVC}}})", "{{metric}} {{method}}"),),
              "none", width=12),
            P("timeseries", "Anomaly detected",
              "1 while the newest slot is anomalous (quality and judge series: LLMQualityAnomaly).",
              (Q(f"max by (metric) (llm_eval_anomaly_detected{{{SVC}}})", "{{metric}}"),),
              "none", width=12, min_value=0, max_value=1),
        )),
    ),
)

REVIEW = DashboardSpec(
    "llm-human-review", "LLM human review",
    "Human review queue, labels and issues, human quality scores and judge-human agreement.",
    ("otel-llm-eval", "llm", "review"), (_SERVICE_VAR,),
    rows=(
        ("Review", (
            P("timeseries", "Review queue depth",
              "Items waiting in the human review queue.",
              (Q(f"sum by (service) (llm_review_queue_depth{{{SVC}}})", "{{service}}"),),
              "short"),
            P("timeseries", "Labels per hour by issue",
              "Human labels per hour, one per item and issue (issue=none: no issue).",
              (Q(f"sum by (issue) (increase(llm_human_labels_total{{{SVC}}}[1h]))", "{{issue}}"),),
              "short", stack=True),
            P("bargauge", "Top issues",
              "Most frequent issues labeled by reviewers over the selected time range.",
              (Q(f'topk(10, sum by (issue) (increase(llm_human_labels_total{{{SVC}, issue!="none"}}[$__range])))',
                 "{{issue}}", instant=True),),
              "short"),
            P("timeseries", "Human quality score (mean)",
              "Mean quality (1..5) given by reviewers per model.",
              (Q(_ratio(f"rate(llm_human_quality_score_sum{{{SVC}}}[{RI}])",
                        f"rate(llm_human_quality_score_count{{{SVC}}}[{RI}])", "model"), "{{model}}"),),
              "none", width=12, min_value=0),
            P("timeseries", "Judge-human agreement",
              "Agreement between the LLM judge and human reviewers (Cohen's kappa, Spearman).",
              (Q(f"max by (method) (llm_eval_judge_human_agreement{{{SVC}}})", "{{method}}"),),
              "none", width=12, min_value=-1, max_value=1),
        )),
    ),
)

OFFLINE = DashboardSpec(
    "llm-offline", "LLM offline evaluation",
    "Benchmark scores over time and regression-gate runs pushed by `otel-llm-eval bench` and `regress`.",
    ("otel-llm-eval", "llm", "offline"), (),
    time_from="now-30d",
    rows=(
        ("Offline", (
            P("timeseries", "Benchmark scores over time",
              "Latest recorded score per benchmark and model.",
              (Q("max by (benchmark, model) (llm_benchmark_score)", "{{benchmark}} {{model}}"),),
              "none", width=12),
            P("table", "Latest benchmark scores",
              "Latest score per benchmark and model.",
              (Q("max by (benchmark, model) (llm_benchmark_score)", "score", instant=True),),
              "none", width=12),
            P("bars", "Regression runs per day",
              "Regression gate runs by status (pass, fail).",
              (Q("sum by (status) (increase(llm_eval_regression_runs_total[1d]))", "{{status}}"),),
              "short", width=24),
        )),
    ),
)

DASHBOARDS: tuple[DashboardSpec, ...] = (OVERVIEW, EXPERIMENTS, DRIFT, REVIEW, OFFLINE)


# --- building ---------------------------------------------------------------------------------------

def _thresholds(steps: tuple[tuple[str, float | None], ...]) -> list[dict[str, Any]]:
    return [{"color": c, "value": v} for c, v in steps]


def _targets(panel: P) -> list[Any]:
    from grafanalib import core as g

    return [g.Target(expr=q.expr, legendFormat=q.legend, refId=chr(ord("A") + i), instant=q.instant,
                     format="table" if panel.kind == "table" else "time_series", datasource=DATASOURCE)
            for i, q in enumerate(panel.queries)]


def _panel(panel: P, pos: Any) -> Any:
    from grafanalib import core as g

    common = dict(title=panel.title, description=panel.description, dataSource=DATASOURCE,
                  targets=_targets(panel), gridPos=pos)
    if panel.kind in ("timeseries", "bars"):
        extra: dict[str, Any] = {}
        if panel.kind == "bars":
            extra = {"drawStyle": "bars", "fillOpacity": 80, "interval": "1h"}
        return g.TimeSeries(
            unit=panel.unit, thresholds=_thresholds(panel.thresholds),
            stacking={"mode": "normal", "group": "A"} if panel.stack else {"mode": "none", "group": "A"},
            scaleDistributionType="log" if panel.log_scale else "linear",
            scaleDistributionLog=10 if panel.log_scale else 2,
            fillOpacity=extra.pop("fillOpacity", 20 if panel.stack else 0),
            legendDisplayMode="table", legendCalcs=["lastNotNull", "max"], tooltipMode="multi",
            **extra, **common)
    if panel.kind == "stat":
        return g.Stat(format=panel.unit, thresholds=_thresholds(panel.thresholds), reduceCalc="lastNotNull",
                      graphMode="none", **common)
    if panel.kind == "table":
        # One row per label set; each query's value column is named by its legend (a table query's
        # value column is "Value #<refId>" once several are merged, plain "Value" for one query).
        names = {(f"Value #{t.refId}" if len(panel.queries) > 1 else "Value"): q.legend
                 for t, q in zip(common["targets"], panel.queries) if q.legend}
        exclude = {"Time": True} if names or len(panel.queries) > 1 else {"Time": True, "Value": True}
        return g.Table(unit=panel.unit, thresholds=_thresholds(panel.thresholds), transformations=[
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {"excludeByName": exclude, "renameByName": names}},
        ], **common)
    if panel.kind == "bargauge":
        return g.BarGauge(format=panel.unit, thresholds=_thresholds(panel.thresholds), calc="lastNotNull",
                          orientation="horizontal", displayMode="gradient", **common)
    raise ValueError(f"unknown panel kind {panel.kind!r} ({panel.title})")


def build(spec: DashboardSpec) -> Any:
    """The grafanalib Dashboard for `spec`: a row panel per row, panels laid out left to right."""
    from grafanalib import core as g

    panels: list[Any] = []
    y = 0
    next_id = 1
    for row_title, row_panels in spec.rows:
        panels.append(g.RowPanel(title=row_title, gridPos=g.GridPos(h=1, w=GRID_WIDTH, x=0, y=y), id=next_id))
        next_id += 1
        y += 1
        x = 0
        row_height = 0
        for p in row_panels:
            if x + p.width > GRID_WIDTH:
                x, y, row_height = 0, y + row_height, 0
            built = _panel(p, g.GridPos(h=p.height, w=p.width, x=x, y=y))
            built.id = next_id
            next_id += 1
            panels.append(built)
            x += p.width
            row_height = max(row_height, p.height)
        y += row_height
    templates = [g.Template(name=v.name, label=v.label, query=v.query, dataSource=DATASOURCE,
                            includeAll=True, multi=True, allValue=".*", default="All", refresh=2, sort=1)
                 for v in spec.variables]
    description = f"{spec.description} {DO_NOT_EDIT}; rerun `{COMMAND}`."
    return g.Dashboard(title=spec.title, uid=spec.uid, description=description, tags=list(spec.tags),
                       panels=panels, templating=g.Templating(list=templates),
                       time=g.Time(spec.time_from, "now"), refresh="30s", timezone="browser",
                       graphTooltip=1)


#: grafanalib keys that Grafana's current model does not have (it migrates them away on load).
_LEGACY_DASHBOARD_KEYS = ("__inputs", "rows", "hideControls", "sharedCrosshair", "style", "gnetId", "id")
_LEGACY_PANEL_KEYS = ("height", "span", "error", "minSpan", "editable", "cacheTimeout", "columns",
                      "fontSize", "repeatDirection", "maxPerRow", "maxDataPoints")
_LEGACY_TARGET_KEYS = ("query", "target", "metric", "step", "intervalFactor")


def _strip_nulls(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_nulls(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_strip_nulls(v) for v in obj]
    return obj


def _restore_null_threshold_base(panel: dict[str, Any]) -> None:
    # Grafana's base threshold step has value null; stripping nulls removed it.
    steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
    for step in steps:
        step.setdefault("value", None)


def _specs_in_order(spec: DashboardSpec) -> list[P]:
    return [p for _, row in spec.rows for p in row]


def to_json(spec: DashboardSpec) -> dict[str, Any]:
    """The provisioned JSON model of `spec` (plain dicts; keys sorted when serialized)."""
    from grafanalib._gen import DashboardEncoder

    raw = json.loads(json.dumps(build(spec).to_json_data(), cls=DashboardEncoder))
    for key in _LEGACY_DASHBOARD_KEYS:
        raw.pop(key, None)
    raw = _strip_nulls(raw)
    raw["schemaVersion"] = SCHEMA_VERSION
    raw["version"] = 1
    # A dropdown to the other otel-llm-eval dashboards, keeping the time range and variables.
    raw["links"] = [{"asDropdown": True, "icon": "external link", "includeVars": True, "keepTime": True,
                     "tags": ["otel-llm-eval"], "targetBlank": False, "title": "otel-llm-eval",
                     "tooltip": "", "type": "dashboards", "url": ""}]
    specs = iter(_specs_in_order(spec))
    for panel in raw["panels"]:
        for key in _LEGACY_PANEL_KEYS:
            panel.pop(key, None)
        _restore_null_threshold_base(panel)
        if panel["type"] == "row":
            panel.pop("targets", None)
            panel.pop("fieldConfig", None)
            panel.pop("transformations", None)
            panel.pop("links", None)
            panel.pop("hideTimeOverride", None)
            panel.pop("transparent", None)
            panel.pop("datasource", None)
            continue
        spec_panel = next(specs)
        defaults = panel["fieldConfig"]["defaults"]
        # grafanalib drops the unit of some panel types (BarGauge) and takes only integer min/max.
        defaults["unit"] = spec_panel.unit
        for key, value in (("min", spec_panel.min_value), ("max", spec_panel.max_value)):
            if value is not None:
                defaults[key] = value
        panel["fieldConfig"].setdefault("overrides", [])
        for target in panel.get("targets", []):
            for key in _LEGACY_TARGET_KEYS:
                target.pop(key, None)
        if panel["type"] == "bargauge":
            panel.pop("options", None)
            panel["options"] = {"displayMode": "gradient", "orientation": "horizontal",
                                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                                "showUnfilled": True}
    for var in raw.get("templating", {}).get("list", []):
        var["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
        var.pop("tags", None)
        var.pop("useTags", None)
        var.pop("tagsQuery", None)
        var.pop("tagValuesQuery", None)
        var["definition"] = var["query"]
        var["query"] = {"query": var["query"], "refId": "PrometheusVariableQueryEditor-VariableQuery"}
    return raw


#: Where docker-compose mounts dashboards/ inside the Grafana container.
GRAFANA_DASHBOARDS_PATH = "/var/lib/grafana/dashboards/otel-llm-eval"


def datasource_provisioning() -> dict[str, Any]:
    """Grafana datasource provisioning: the Prometheus datasource with the uid dashboards use."""
    return {"apiVersion": 1, "datasources": [{
        "name": "Prometheus", "type": DATASOURCE["type"], "uid": DATASOURCE["uid"], "access": "proxy",
        # Grafana expands $VAR / ${VAR} in provisioning files (not in dashboard JSON).
        "url": "$PROMETHEUS_URL", "orgId": 1, "isDefault": True, "editable": False, "version": 1,
        "jsonData": {"httpMethod": "POST", "timeInterval": "15s"},
    }]}


def dashboard_provisioning() -> dict[str, Any]:
    """Grafana dashboard provider reading the generated JSON files."""
    return {"apiVersion": 1, "providers": [{
        "name": "otel-llm-eval", "orgId": 1, "folder": "otel-llm-eval", "type": "file",
        "disableDeletion": False, "updateIntervalSeconds": 30, "allowUiUpdates": False,
        "options": {"path": GRAFANA_DASHBOARDS_PATH, "foldersFromFilesStructure": False},
    }]}


def render() -> dict[str, str]:
    from otel_llm_eval.bundle.common import dump_json, dump_yaml

    files = {f"dashboards/{spec.file_name}": dump_json(to_json(spec)) for spec in DASHBOARDS}
    files["dashboards/provisioning/datasources/otel-llm-eval.yaml"] = dump_yaml(
        datasource_provisioning(),
        header="Grafana datasource provisioning (mount at /etc/grafana/provisioning/datasources).\n"
               "Set PROMETHEUS_URL in Grafana's environment; dashboards use the fixed uid below.")
    files["dashboards/provisioning/dashboards/otel-llm-eval.yaml"] = dump_yaml(
        dashboard_provisioning(),
        header="Grafana dashboard provisioning (mount at /etc/grafana/provisioning/dashboards);\n"
               f"mount dashboards/*.json at {GRAFANA_DASHBOARDS_PATH}.")
    return files
