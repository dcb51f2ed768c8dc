"""Prometheus recording and alert rules, their promtool unit tests, and alertmanager.yml.

Pure data and functions, no I/O. `rule_groups()` is what Prometheus loads from alerts/;
`rule_tests()` is the promtool test file: for every alert, one test whose input makes the alert's
condition true from a known minute, then asserts it is silent one evaluation before its `for`
elapses and firing, with every label and annotation, when it does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from otel_llm_eval.bundle.common import JOB_NAME, NEGATIVE_FEEDBACK, POSITIVE_FEEDBACK, runbook_url

_POS = f'feedback_type=~"{POSITIVE_FEEDBACK}"'
_ANY_THUMB = f'feedback_type=~"{POSITIVE_FEEDBACK}|{NEGATIVE_FEEDBACK}"'

RULES_FILE = "llm-eval.rules.yml"
RULES_TEST_FILE = "llm-eval.rules.test.yml"

#: The promtool tests evaluate every minute (the rules themselves use Prometheus' global interval).
EVALUATION_INTERVAL = "1m"

#: Share of quality samples at or below 3.0 (bucket le="3.0") over 1 h that counts as low quality.
LOW_QUALITY_RATIO = 0.10
#: Fewer judged samples than this per hour say nothing about quality; the alert waits for more.
LOW_QUALITY_MIN_SAMPLES = 20
LATENCY_P95_SECONDS = 3.0
ERROR_RATIO_WARNING = 0.05
ERROR_RATIO_CRITICAL = 0.20
SRM_P_VALUE = 0.001
#: Thumbs-up share of the last hour below this fraction of the last day's share is a drop.
THUMBS_UP_DROP_FACTOR = 0.8
THUMBS_UP_MIN_FEEDBACK_PER_HOUR = 20
#: Cost per hour above this multiple of the day's hourly average (and above the floor) is a spike.
COST_SPIKE_FACTOR = 3.0
COST_SPIKE_MIN_USD_PER_HOUR = 1.0


def new_or_increased(metric: str, by: str, window: str) -> str:
    """PromQL that is > 0 when a counter grew within `window`, including a series' first sample.

    `increase()` needs two samples, so a counter the sidecar creates at its first increment (a
    series that appears with value 1) would never show an increase; the `unless ... offset` branch
    catches series that did not exist `window` ago.
    """
    return (f"sum by ({by}) (increase({metric}[{window}])) > 0\n"
            f"or\nsum by ({by}) ({metric} unless {metric} offset {window}) > 0")


@dataclass(frozen=True)
class Recording:
    record: str
    expr: str

    def rule(self) -> dict[str, Any]:
        return {"record": self.record, "expr": self.expr}


RECORDING_RULES: tuple[Recording, ...] = (
    Recording("service:llm_requests:rate5m",
              "sum by (service) (rate(llm_requests_total[5m]))"),
    Recording("service:llm_request_errors:ratio_rate5m",
              'sum by (service) (rate(llm_requests_total{status="error"}[5m]))\n/\n'
              "sum by (service) (rate(llm_requests_total[5m]))"),
    Recording("service:llm_response_latency_seconds:p95_rate5m",
              "histogram_quantile(0.95, sum by (service, le) (rate(llm_response_latency_seconds_bucket[5m])))"),
    Recording("service_evaluator:llm_quality_score_samples:increase1h",
              "sum by (service, evaluator) (increase(llm_quality_score_count[1h]))"),
    # Prometheus buckets count samples <= le; the catalog has a bucket at 3.0 for this rule.
    Recording("service_evaluator:llm_quality_score_low:ratio_rate1h",
              'sum by (service, evaluator) (rate(llm_quality_score_bucket{le="3.0"}[1h]))\n/\n'
              "sum by (service, evaluator) (rate(llm_quality_score_count[1h]))"),
    Recording("service:llm_user_feedback:increase1h",
              f"sum by (service) (increase(llm_user_feedback_total{{{_ANY_THUMB}}}[1h]))"),
    Recording("service:llm_thumbs_up:ratio_rate1h",
              f"sum by (service) (rate(llm_user_feedback_total{{{_POS}}}[1h]))\n/\n"
              f"sum by (service) (rate(llm_user_feedback_total{{{_ANY_THUMB}}}[1h]))"),
    # The baselines end an hour ago so the window being judged is not part of its own baseline.
    Recording("service:llm_thumbs_up:ratio_rate1d_offset1h",
              f"sum by (service) (rate(llm_user_feedback_total{{{_POS}}}[1d] offset 1h))\n/\n"
              f"sum by (service) (rate(llm_user_feedback_total{{{_ANY_THUMB}}}[1d] offset 1h))"),
    Recording("service:llm_cost_usd_per_hour:rate1h",
              "sum by (service) (rate(llm_cost_usd_total[1h])) * 3600"),
    Recording("service:llm_cost_usd_per_hour:rate1d_offset1h",
              "sum by (service) (rate(llm_cost_usd_total[1d] offset 1h)) * 3600"),
)


@dataclass(frozen=True)
class AlertTest:
    """promtool input for one alert: the condition is true from `active_from_minutes` on."""

    series: tuple[tuple[str, str], ...]
    active_from_minutes: int
    #: Expected alerts when firing: (labels without alertname/severity, description).
    expected: tuple[tuple[dict[str, str], str], ...]
    #: Expected summary per expected alert (same order); computed from labels when empty.
    summaries: tuple[str, ...] = ()


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_minutes: int
    severity: str
    summary: str
    description: str
    test: AlertTest
    extra_labels: dict[str, str] = field(default_factory=dict)
    #: Further cases (a second branch of the expression), tested the same way.
    more_tests: tuple[tuple[str, AlertTest], ...] = ()

    def rule(self) -> dict[str, Any]:
        rule: dict[str, Any] = {
            "alert": self.name,
            "expr": self.expr,
            "labels": {"severity": self.severity, **self.extra_labels},
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook_url": runbook_url(self.name),
            },
        }
        if self.for_minutes:
            rule["for"] = f"{self.for_minutes}m"
        return rule


def _ramp(start: float, step: float, n: int) -> str:
    """promtool's expanding notation: start, start+step, ... (n+1 samples)."""
    return f"{start:g}+{step:g}x{n}"


_SVC = 'service="chat"'

# Crossing times and values of the rate-window alerts, read off promtool once and pinned here; the
# unit tests then catch any change to the expressions that moves them.
THUMBS_ACTIVE = 76
THUMBS_DESC = ("Thumbs-up share of chat over the last hour is 36.33%, below 80% of its share over the "
               "day before.")
COST_ACTIVE = 1443
COST_DESC = "chat spent 9.42 USD/h over the last hour, more than 3x its average over the day before."
INGEST_DESC = ("The sidecar at sidecar:9318 rejected 10 OTLP request(s) or item(s) with reason "
               "queue_full in the last 10 minutes.")

# Counts in descriptions are printed with printf "%.0f": increase() extrapolates to the window's
# edges, so a counter that grew by 2 can read 2.041, and an alert should not speak of 2.041 outputs.
ALERTS: tuple[Alert, ...] = (
    Alert(
        "LLMSafetyViolation",
        new_or_increased("llm_safety_violations_total", "service, model, check", "5m"),
        0, "critical",
        "Safety check {{ $labels.check }} failed on {{ $labels.service }}",
        "{{ $value | printf \"%.0f\" }} output(s) of {{ $labels.service }} ({{ $labels.model }}) failed the "
        "safety check {{ $labels.check }} in the last 5 minutes.",
        AlertTest(
            series=((f'llm_safety_violations_total{{{_SVC},model="gpt-4o",check="pii"}}',
                     "_ _ _ _ _ 1 1 2 2 2 2 2"),),
            active_from_minutes=5,
            expected=(({"service": "chat", "model": "gpt-4o", "check": "pii"},
                       "1 output(s) of chat (gpt-4o) failed the safety check pii in the last 5 minutes."),),
            summaries=("Safety check pii failed on chat",),
        ),
    ),
    Alert(
        "LLMHighLatencyP95",
        f"service:llm_response_latency_seconds:p95_rate5m > {LATENCY_P95_SECONDS:g}",
        5, "warning",
        "p95 LLM latency of {{ $labels.service }} above 3s",
        "p95 latency of {{ $labels.service }} over 5 minutes is {{ $value | humanizeDuration }} "
        "(threshold 3s).",
        AlertTest(
            series=(
                (f'llm_response_latency_seconds_bucket{{{_SVC},model="m",experiment="",variant="",le="1.0"}}', "0x20"),
                (f'llm_response_latency_seconds_bucket{{{_SVC},model="m",experiment="",variant="",le="3.0"}}', "0x20"),
                (f'llm_response_latency_seconds_bucket{{{_SVC},model="m",experiment="",variant="",le="5.0"}}', _ramp(0, 10, 20)),
                (f'llm_response_latency_seconds_bucket{{{_SVC},model="m",experiment="",variant="",le="+Inf"}}', _ramp(0, 10, 20)),
            ),
            active_from_minutes=1,
            expected=(({"service": "chat"},
                       "p95 latency of chat over 5 minutes is 4.9s (threshold 3s)."),),
        ),
    ),
    Alert(
        "LLMLowQuality",
        f"service_evaluator:llm_quality_score_low:ratio_rate1h > {LOW_QUALITY_RATIO:g}\n"
        f"and\nservice_evaluator:llm_quality_score_samples:increase1h >= {LOW_QUALITY_MIN_SAMPLES}",
        15, "warning",
        "Low quality scores on {{ $labels.service }} ({{ $labels.evaluator }})",
        "{{ $value | humanizePercentage }} of {{ $labels.evaluator }} scores for {{ $labels.service }} "
        "were at most 3.0 over the last hour (threshold 10%).",
        AlertTest(
            series=(
                (f'llm_quality_score_bucket{{{_SVC},model="m",experiment="",variant="",evaluator="judge",le="3.0"}}', _ramp(0, 3, 40)),
                (f'llm_quality_score_bucket{{{_SVC},model="m",experiment="",variant="",evaluator="judge",le="+Inf"}}', _ramp(0, 10, 40)),
                (f'llm_quality_score_count{{{_SVC},model="m",experiment="",variant="",evaluator="judge"}}', _ramp(0, 10, 40)),
            ),
            active_from_minutes=2,  # the 20-sample minimum is met at the third scrape
            expected=(({"service": "chat", "evaluator": "judge"},
                        "30% of judge scores for chat were at most 3.0 over the last hour (threshold 10%)."),),
        ),
    ),
    Alert(
        "LLMQualityAnomaly",
        # The value is the score of the method(s) that flagged the slot.
        'max by (service, metric) (\n  llm_eval_anomaly_score{metric=~"quality.*|judge.*"}\n'
        '  and on (service, metric, method)\n  llm_eval_anomaly_detected{metric=~"quality.*|judge.*"} == 1\n)',
        5, "warning",
        "Anomaly in {{ $labels.metric }} of {{ $labels.service }}",
        "The newest slot of {{ $labels.metric }} for {{ $labels.service }} is anomalous against its "
        "history (anomaly score {{ $value | printf \"%.2f\" }}).",
        AlertTest(
            series=(
                (f'llm_eval_anomaly_detected{{{_SVC},metric="judge_score_mean",method="mad"}}', "0 0 0 0 0 1x20"),
                (f'llm_eval_anomaly_score{{{_SVC},metric="judge_score_mean",method="mad"}}', "1 1 1 1 1 4.25x20"),
                (f'llm_eval_anomaly_detected{{{_SVC},metric="judge_score_mean",method="zscore"}}', "0x25"),
                (f'llm_eval_anomaly_score{{{_SVC},metric="judge_score_mean",method="zscore"}}', "2.5x25"),
                (f'llm_eval_anomaly_detected{{{_SVC},metric="latency_p95",method="mad"}}', "1x25"),
                (f'llm_eval_anomaly_score{{{_SVC},metric="latency_p95",method="mad"}}', "9x25"),
            ),
            active_from_minutes=5,
            expected=(({"service": "chat", "metric": "judge_score_mean"},
                       "The newest slot of judge_score_mean for chat is anomalous against its history "
                       "(anomaly score 4.25)."),),
        ),
    ),
    Alert(
        "LLMInputDrift",
        'max by (service, feature) (\n  llm_eval_drift_score{feature=~"input.*|attr:.*"}\n'
        '  and on (service, feature, method)\n  llm_eval_drift_detected{feature=~"input.*|attr:.*"} == 1\n)',
        15, "warning",
        "Input drift in {{ $labels.feature }} of {{ $labels.service }}",
        "The distribution of {{ $labels.feature }} for {{ $labels.service }} drifted from the reference "
        "window (test p-value {{ $value | printf \"%.3g\" }} < 0.05, KS for numbers, chi-square for categories).",
        AlertTest(
            series=(
                (f'llm_eval_drift_detected{{{_SVC},feature="input_length",method="ks"}}', "0 0 0 0 0 1x30"),
                (f'llm_eval_drift_score{{{_SVC},feature="input_length",method="ks"}}', "0.4 0.4 0.4 0.4 0.4 0.00125x30"),
                (f'llm_eval_drift_score{{{_SVC},feature="input_length",method="psi"}}', "0.15x35"),
                (f'llm_eval_drift_detected{{{_SVC},feature="output_length",method="ks"}}', "1x35"),
                (f'llm_eval_drift_score{{{_SVC},feature="output_length",method="ks"}}', "0.001x35"),
            ),
            active_from_minutes=5,
            expected=(({"service": "chat", "feature": "input_length"},
                       "The distribution of input_length for chat drifted from the reference window "
                       "(test p-value 0.00125 < 0.05, KS for numbers, chi-square for categories)."),),
        ),
    ),
    Alert(
        "LLMOutputDrift",
        'max by (service, feature) (\n  llm_eval_drift_score{feature!~"input.*|attr:.*|latency.*"}\n'
        '  and on (service, feature, method)\n  llm_eval_drift_detected{feature!~"input.*|attr:.*|latency.*"} == 1\n)',
        15, "warning",
        "Output drift in {{ $labels.feature }} of {{ $labels.service }}",
        "The distribution of {{ $labels.feature }} for {{ $labels.service }} drifted from the reference "
        "window (test p-value {{ $value | printf \"%.3g\" }} < 0.05, KS for numbers, chi-square for categories).",
        AlertTest(
            series=(
                (f'llm_eval_drift_detected{{{_SVC},feature="judge_score",method="ks"}}', "0 0 0 0 0 1x30"),
                (f'llm_eval_drift_score{{{_SVC},feature="judge_score",method="ks"}}', "0.5 0.5 0.5 0.5 0.5 0.002x30"),
                (f'llm_eval_drift_score{{{_SVC},feature="judge_score",method="js"}}', "0.2x35"),
                (f'llm_eval_drift_detected{{{_SVC},feature="input_tokens",method="ks"}}', "1x35"),
                (f'llm_eval_drift_score{{{_SVC},feature="input_tokens",method="ks"}}', "0.001x35"),
                (f'llm_eval_drift_detected{{{_SVC},feature="latency_seconds",method="ks"}}', "1x35"),
                (f'llm_eval_drift_score{{{_SVC},feature="latency_seconds",method="ks"}}', "0.001x35"),
                (f'llm_eval_drift_detected{{{_SVC},feature="attr:app.topic",method="chi2"}}', "1x35"),
                (f'llm_eval_drift_score{{{_SVC},feature="attr:app.topic",method="chi2"}}', "0.001x35"),
            ),
            active_from_minutes=5,
            expected=(({"service": "chat", "feature": "judge_score"},
                       "The distribution of judge_score for chat drifted from the reference window "
                       "(test p-value 0.002 < 0.05, KS for numbers, chi-square for categories)."),),
        ),
    ),
    Alert(
        "LLMConceptDrift",
        'max by (service, signal, segment) (\n  llm_eval_concept_drift_shift\n  and on (service, signal, segment)\n'
        '  llm_eval_concept_drift_detected == 1\n)',
        15, "warning",
        "Concept drift in {{ $labels.segment }} of {{ $labels.service }}",
        "For the same kind of input ({{ $labels.segment }}), {{ $labels.signal }} of {{ $labels.service }} moved by "
        "{{ $value | printf \"%.3g\" }} against the reference window: the relationship between inputs and quality "
        "changed (the segment mix does not explain it).",
        AlertTest(
            series=(
                (f'llm_eval_concept_drift_detected{{{_SVC},signal="judge_score:quality",segment="billing"}}', "0 0 0 0 0 1x30"),
                (f'llm_eval_concept_drift_shift{{{_SVC},signal="judge_score:quality",segment="billing"}}', "-0.05x5 -0.8x30"),
                (f'llm_eval_concept_drift_detected{{{_SVC},signal="judge_score:quality",segment="shipping"}}', "0x35"),
                (f'llm_eval_concept_drift_shift{{{_SVC},signal="judge_score:quality",segment="shipping"}}', "0.02x35"),
            ),
            active_from_minutes=5,
            expected=(({"service": "chat", "signal": "judge_score:quality", "segment": "billing"},
                       "For the same kind of input (billing), judge_score:quality of chat moved by -0.8 against the "
                       "reference window: the relationship between inputs and quality changed (the segment mix does "
                       "not explain it)."),),
        ),
    ),
    Alert(
        "LLMExperimentSampleRatioMismatch",
        f"llm_eval_ab_srm_p_value < {SRM_P_VALUE:g}",
        10, "warning",
        "Sample ratio mismatch in experiment {{ $labels.experiment }}",
        "The split of {{ $labels.experiment }} across variants (users, else calls) does not match the configured weights "
        "(SRM p = {{ $value | printf \"%.1e\" }} < 0.001): do not trust its results.",
        AlertTest(
            series=(('llm_eval_ab_srm_p_value{experiment="prompt-v2"}', "0.5 0.5 0.5 0.5 0.5 0.0001x20"),
                    ('llm_eval_ab_srm_p_value{experiment="other"}', "0.3x25")),
            active_from_minutes=5,
            expected=(({"experiment": "prompt-v2"},
                       "The split of prompt-v2 across variants (users, else calls) does not match the configured weights "
                       "(SRM p = 1.0e-04 < 0.001): do not trust its results."),),
        ),
    ),
    Alert(
        "LLMExperimentDontShip",
        # The decision (docs/statistics.md): always-valid intervals at each comparison's share of
        # alpha, so it may be watched continuously; the reason label says which rule decided.
        '(\n  max by (experiment, variant, reason, metric) (llm_eval_ab_decision{decision="dont_ship"} == 1)\n'
        '  * on (experiment, variant, metric) group_left\n'
        '  max by (experiment, variant, metric) (llm_eval_ab_lift)\n)\nor\n'
        'max by (experiment, variant, reason, metric) (llm_eval_ab_decision{decision="dont_ship"} == 1)',
        5, "warning",
        "Do not ship variant {{ $labels.variant }} of {{ $labels.experiment }}",
        "The analysis decided not to ship variant {{ $labels.variant }} of experiment {{ $labels.experiment }}: "
        "{{ if eq $labels.reason \"primary_worse\" }}its primary metric {{ $labels.metric }} is worse than control"
        "{{ else if eq $labels.reason \"guardrail_worse\" }}the guardrail {{ $labels.metric }} is worse than "
        "control by more than its margin"
        "{{ else if eq $labels.reason \"below_target\" }}its primary metric {{ $labels.metric }} cannot reach its target"
        "{{ else if eq $labels.reason \"no_difference\" }}no detectable difference on {{ $labels.metric }} at the "
        "planned sample size"
        "{{ else if eq $labels.reason \"srm\" }}its sample ratio does not match the weights"
        "{{ else }}{{ $labels.reason }}{{ end }} (relative lift of the deciding metric "
        "{{ $value | humanizePercentage }}; 100% when it is undefined).",
        AlertTest(
            series=(
                ('llm_eval_ab_decision{experiment="prompt-v2",variant="b",decision="keep_running",'
                 'reason="collecting",metric="judge_score"}', "1 1 1 1 1 0x20"),
                ('llm_eval_ab_decision{experiment="prompt-v2",variant="b",decision="dont_ship",'
                 'reason="primary_worse",metric="judge_score"}', "0 0 0 0 0 1x20"),
                ('llm_eval_ab_lift{experiment="prompt-v2",variant="b",metric="judge_score"}', "-0.125x25"),
                ('llm_eval_ab_decision{experiment="other",variant="b",decision="ship",reason="primary_better",'
                 'metric="judge_score"}', "1x25"),
            ),
            active_from_minutes=5,
            expected=(({"experiment": "prompt-v2", "variant": "b", "reason": "primary_worse", "metric": "judge_score"},
                       "The analysis decided not to ship variant b of experiment prompt-v2: its primary metric "
                       "judge_score is worse than control (relative lift of the deciding metric -12.5%; 100% when "
                       "it is undefined)."),),
        ),
        more_tests=(("a guardrail", AlertTest(
            series=(('llm_eval_ab_decision{experiment="cheap",variant="small",decision="dont_ship",'
                     'reason="guardrail_worse",metric="latency_seconds"}', "0 0 0 1x20"),
                    ('llm_eval_ab_lift{experiment="cheap",variant="small",metric="latency_seconds"}', "0.4x23")),
            active_from_minutes=3,
            expected=(({"experiment": "cheap", "variant": "small", "reason": "guardrail_worse",
                        "metric": "latency_seconds"},
                       "The analysis decided not to ship variant small of experiment cheap: the guardrail "
                       "latency_seconds is worse than control by more than its margin (relative lift of the "
                       "deciding metric 40%; 100% when it is undefined)."),),
        )), ("a broken split", AlertTest(
            series=(('llm_eval_ab_decision{experiment="split",variant="b",decision="dont_ship",reason="srm",'
                     'metric=""}', "0 0 0 1x20"),),
            active_from_minutes=3,
            expected=(({"experiment": "split", "variant": "b", "reason": "srm"},
                       "The analysis decided not to ship variant b of experiment split: its sample ratio does not "
                       "match the weights (relative lift of the deciding metric 100%; 100% when it is undefined)."),),
        ))),
    ),
    Alert(
        "LLMExperimentReadyToShip",
        'max by (experiment, variant, metric) (llm_eval_ab_decision{decision="ship"} == 1)\n'
        '* on (experiment, variant, metric) group_left\n'
        'max by (experiment, variant, metric) (llm_eval_ab_lift)',
        5, "info",
        "Variant {{ $labels.variant }} of {{ $labels.experiment }} is ready to ship",
        "Variant {{ $labels.variant }} of experiment {{ $labels.experiment }} is better than control on its primary "
        "metric {{ $labels.metric }} (relative lift {{ $value | humanizePercentage }}) and every guardrail is shown "
        "within its margin (always-valid intervals).",
        AlertTest(
            series=(('llm_eval_ab_decision{experiment="prompt-v2",variant="b",decision="ship",reason="primary_better",'
                     'metric="judge_score"}', "0 0 0 0 0 1x20"),
                    ('llm_eval_ab_lift{experiment="prompt-v2",variant="b",metric="judge_score"}', "0.08x25")),
            active_from_minutes=5,
            expected=(({"experiment": "prompt-v2", "variant": "b", "metric": "judge_score"},
                       "Variant b of experiment prompt-v2 is better than control on its primary metric judge_score "
                       "(relative lift 8%) and every guardrail is shown within its margin (always-valid intervals)."),),
        ),
    ),
    Alert(
        "LLMThumbsUpDrop",
        f"service:llm_thumbs_up:ratio_rate1h < {THUMBS_UP_DROP_FACTOR:g} * service:llm_thumbs_up:ratio_rate1d_offset1h\n"
        f"and\nservice:llm_user_feedback:increase1h >= {THUMBS_UP_MIN_FEEDBACK_PER_HOUR}",
        30, "warning",
        "Thumbs-up share of {{ $labels.service }} dropped",
        "Thumbs-up share of {{ $labels.service }} over the last hour is {{ $value | humanizePercentage }}, "
        "below 80% of its share over the day before.",
        AlertTest(
            series=(
                (f'llm_user_feedback_total{{{_SVC},experiment="",variant="",feedback_type="up"}}',
                 "0+9x60 542+2x60"),
                (f'llm_user_feedback_total{{{_SVC},experiment="",variant="",feedback_type="down"}}',
                 "0+1x60 68+8x60"),
                (f'llm_user_feedback_total{{{_SVC},experiment="",variant="",feedback_type="control"}}',
                 "0+50x120"),  # pairwise choices are not thumbs
            ),
            active_from_minutes=THUMBS_ACTIVE,
            expected=(({"service": "chat"}, THUMBS_DESC),),
        ),
    ),
    Alert(
        "LLMHighErrorRate",
        f"service:llm_request_errors:ratio_rate5m > {ERROR_RATIO_WARNING:g}",
        10, "warning",
        "LLM error rate of {{ $labels.service }} above 5%",
        "{{ $value | humanizePercentage }} of LLM calls of {{ $labels.service }} failed over the last "
        "5 minutes (threshold 5%).",
        AlertTest(
            series=(
                (f'llm_requests_total{{{_SVC},model="m",experiment="",variant="",status="ok"}}', _ramp(0, 90, 20)),
                (f'llm_requests_total{{{_SVC},model="m",experiment="",variant="",status="error"}}', _ramp(0, 10, 20)),
            ),
            active_from_minutes=1,
            expected=(({"service": "chat"},
                       "10% of LLM calls of chat failed over the last 5 minutes (threshold 5%)."),),
        ),
    ),
    Alert(
        "LLMHighErrorRate",
        f"service:llm_request_errors:ratio_rate5m > {ERROR_RATIO_CRITICAL:g}",
        5, "critical",
        "LLM error rate of {{ $labels.service }} above 20%",
        "{{ $value | humanizePercentage }} of LLM calls of {{ $labels.service }} failed over the last "
        "5 minutes (threshold 20%).",
        AlertTest(
            series=(
                (f'llm_requests_total{{{_SVC},model="m",experiment="",variant="",status="ok"}}', _ramp(0, 70, 20)),
                (f'llm_requests_total{{{_SVC},model="m",experiment="",variant="",status="error"}}', _ramp(0, 30, 20)),
            ),
            active_from_minutes=1,
            expected=(({"service": "chat"},
                       "30% of LLM calls of chat failed over the last 5 minutes (threshold 20%)."),),
        ),
    ),
    Alert(
        "LLMCostSpike",
        f"service:llm_cost_usd_per_hour:rate1h > {COST_SPIKE_FACTOR:g} * service:llm_cost_usd_per_hour:rate1d_offset1h\n"
        f"and\nservice:llm_cost_usd_per_hour:rate1h > {COST_SPIKE_MIN_USD_PER_HOUR:g}",
        15, "warning",
        "LLM cost of {{ $labels.service }} spiked",
        "{{ $labels.service }} spent {{ $value | printf \"%.2f\" }} USD/h over the last hour, more than 3x "
        "its average over the day before.",
        AlertTest(
            series=(
                (f'llm_cost_usd_total{{{_SVC},model="m",experiment="",variant=""}}',
                 "0+0.01x1440 14.9+0.5x60"),
            ),
            active_from_minutes=COST_ACTIVE,
            expected=(({"service": "chat"}, COST_DESC),),
        ),
    ),
    Alert(
        "LLMJudgeBudgetExhausted",
        new_or_increased("llm_eval_judge_skipped_total", "service, evaluator, reason", "15m"),
        0, "info",
        "LLM judge budget exhausted for {{ $labels.service }}",
        "{{ $value | printf \"%.0f\" }} call(s) of {{ $labels.service }} sampled for {{ $labels.evaluator }} were "
        "skipped by the judge budget ({{ $labels.reason }}) in the last 15 minutes.",
        AlertTest(
            series=((f'llm_eval_judge_skipped_total{{{_SVC},evaluator="judge",reason="cost"}}',
                     "_ _ _ _ _ 3 3 3 3 3"),),
            active_from_minutes=5,
            expected=(({"service": "chat", "evaluator": "judge", "reason": "cost"},
                       "3 call(s) of chat sampled for judge were skipped by the judge budget (cost) in "
                       "the last 15 minutes."),),
        ),
    ),
    Alert(
        "LLMEvalSidecarDown",
        f'up{{job="{JOB_NAME}"}} == 0',
        2, "critical",
        "otel-llm-eval sidecar {{ $labels.instance }} is down",
        "Prometheus cannot scrape the otel-llm-eval sidecar at {{ $labels.instance }}: no LLM metrics, "
        "checks or experiment statistics are being produced.",
        AlertTest(
            series=((f'up{{job="{JOB_NAME}",instance="sidecar:9318"}}', "1 1 1 1 1 0x10"),),
            active_from_minutes=5,
            expected=(({"job": JOB_NAME, "instance": "sidecar:9318"},
                       "Prometheus cannot scrape the otel-llm-eval sidecar at sidecar:9318: no LLM "
                       "metrics, checks or experiment statistics are being produced."),),
        ),
    ),
    Alert(
        "LLMEvalIngestRejected",
        new_or_increased("llm_eval_ingest_rejected_total", "instance, reason", "10m"),
        5, "warning",
        "otel-llm-eval sidecar {{ $labels.instance }} rejects OTLP data ({{ $labels.reason }})",
        "The sidecar at {{ $labels.instance }} rejected {{ $value | printf \"%.0f\" }} OTLP request(s) or item(s) "
        "with reason {{ $labels.reason }} in the last 10 minutes.",
        AlertTest(
            series=((f'llm_eval_ingest_rejected_total{{job="{JOB_NAME}",instance="sidecar:9318",reason="queue_full"}}',
                     "0 0 0 0 0 10x20"),),
            active_from_minutes=5,
            expected=(({"instance": "sidecar:9318", "reason": "queue_full"}, INGEST_DESC),),
        ),
    ),
)


def rule_groups() -> dict[str, Any]:
    """The Prometheus rule file: one group, recording rules first, then the alerts.

    Rules in one group run in order within one evaluation, so every alert reads the recording
    rules of the same instant (separate groups run concurrently and would lag by an interval).
    """
    return {"groups": [
        # No group interval: Prometheus' global evaluation_interval applies (15 s in deploy/).
        {"name": "otel-llm-eval",
         "rules": [r.rule() for r in RECORDING_RULES] + [a.rule() for a in ALERTS]},
    ]}


def _minutes(n: int) -> str:
    return f"{n}m"


def rule_tests() -> dict[str, Any]:
    """The promtool test file: per alert, silent one step before `for` elapses, firing when it does."""
    tests = []
    for alert in ALERTS:
        tests.append(_rule_test(alert, alert.test, ""))
        tests += [_rule_test(alert, t, f" ({case})") for case, t in alert.more_tests]
    return {"rule_files": [RULES_FILE], "evaluation_interval": EVALUATION_INTERVAL, "tests": tests}


def _rule_test(alert: Alert, t: AlertTest, case: str) -> dict[str, Any]:
    fire_at = t.active_from_minutes + alert.for_minutes
    expected = []
    for i, (labels, description) in enumerate(t.expected):
        summary = t.summaries[i] if t.summaries else _render_summary(alert.summary, labels)
        expected.append({
            "exp_labels": {"severity": alert.severity, **alert.extra_labels, **labels},
            "exp_annotations": {"summary": summary, "description": description,
                                "runbook_url": runbook_url(alert.name)},
        })
    return {
        "name": f"{alert.name} ({alert.severity}){case} is silent at {fire_at - 1}m and fires at {fire_at}m",
        "interval": EVALUATION_INTERVAL,
        "input_series": [{"series": s, "values": v} for s, v in t.series],
        "alert_rule_test": [
            {"eval_time": _minutes(fire_at - 1), "alertname": alert.name, "exp_alerts": []},
            {"eval_time": _minutes(fire_at), "alertname": alert.name, "exp_alerts": expected},
        ],
    }


def _render_summary(template: str, labels: dict[str, str]) -> str:
    """Fill `{{ $labels.x }}` in a summary (the only template construct summaries use)."""
    out = template
    for key, value in labels.items():
        out = out.replace("{{ $labels.%s }}" % key, value)
    if "{{" in out:
        raise ValueError(f"summary {template!r} uses more than $labels")
    return out


# --- Alertmanager ---------------------------------------------------------------------------------

#: Receiver per severity. Webhook URLs are placeholders: replace them (or the receivers' configs
#: with pagerduty_configs / slack_configs) for your environment.
RECEIVERS: dict[str, str] = {
    "critical": "pager",
    "warning": "tickets",
    "info": "info",
}
WEBHOOK_BASE_URL = "http://127.0.0.1:5001"


def alertmanager_config() -> dict[str, Any]:
    """Routing by severity, grouped by alert and service; critical inhibits warning of the same alert."""
    routes = [
        {"matchers": ['severity="critical"'], "receiver": RECEIVERS["critical"],
         "group_wait": "10s", "repeat_interval": "1h"},
        {"matchers": ['severity="warning"'], "receiver": RECEIVERS["warning"]},
        {"matchers": ['severity="info"'], "receiver": RECEIVERS["info"], "repeat_interval": "24h"},
    ]
    receivers = [{"name": name, "webhook_configs": [
        {"url": f"{WEBHOOK_BASE_URL}/{name}", "send_resolved": True}]}
        for name in sorted(RECEIVERS.values())]
    return {
        "route": {
            "receiver": RECEIVERS["warning"],
            "group_by": ["alertname", "service", "experiment"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": routes,
        },
        "receivers": receivers,
        "inhibit_rules": [{
            "source_matchers": ['severity="critical"'],
            "target_matchers": ['severity="warning"'],
            "equal": ["alertname", "service", "instance"],
        }],
    }


def route_cases() -> list[tuple[dict[str, str], str]]:
    """(labels, expected receiver) for `amtool config routes test --verify.receivers`."""
    cases = []
    seen = set()
    for alert in ALERTS:
        if (alert.name, alert.severity) in seen:
            continue
        seen.add((alert.name, alert.severity))
        cases.append(({"alertname": alert.name, "severity": alert.severity}, RECEIVERS[alert.severity]))
    cases.append(({"alertname": "SomethingElse"}, RECEIVERS["warning"]))
    return cases
