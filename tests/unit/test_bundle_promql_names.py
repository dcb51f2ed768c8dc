"""The PromQL name extraction the catalog checks rely on finds metrics and nothing else."""

from __future__ import annotations

import pytest

from bundle_helpers import promql_metric_names

CASES = [
    ("a selector with matchers", 'llm_requests_total{service=~"$service", status="error"}', {"llm_requests_total"}),
    ("functions and grouping are not metrics",
     "sum by (service, le) (rate(llm_response_latency_seconds_bucket[5m]))",
     {"llm_response_latency_seconds_bucket"}),
    ("a ratio of two metrics", "sum(rate(a_total[1m])) / sum(rate(b_total[1m]))", {"a_total", "b_total"}),
    ("set operators, on() and offset",
     "x_total unless on (service) y_total offset 5m and z > 0", {"x_total", "y_total", "z"}),
    ("recording rule names with colons", "service:llm_requests:rate5m > 3", {"service:llm_requests:rate5m"}),
    ("string arguments are skipped", 'label_replace(up, "dst", "$1", "src", "(.*)")', {"up"}),
    ("template variables are skipped", "sum(increase(llm_cost_usd_total[$__range])) * $factor",
     {"llm_cost_usd_total"}),
]


@pytest.mark.parametrize("expr,expected", [(e, x) for _, e, x in CASES], ids=[c[0] for c in CASES])
def test_promql_metric_names_finds_exactly_the_selected_metrics(expr, expected):
    assert promql_metric_names(expr) == expected
