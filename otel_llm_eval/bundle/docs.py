"""Generated reference pages under docs/: the metric catalog (`docs/metrics.md`).

Pure: renders text from `otel_llm_eval.catalog`; `otel-llm-eval bundle` writes it and
`otel-llm-eval bundle --check` fails when the committed page differs.
"""

from __future__ import annotations

from otel_llm_eval import catalog
from otel_llm_eval.bundle.common import DO_NOT_EDIT

METRICS_DOC = "docs/metrics.md"


def metrics_page() -> str:
    caps = "\n".join(f"| `{label}` | {cap} |" for label, cap in sorted(catalog.DEFAULT_LABEL_CAPS.items()))
    return (
        f"<!-- {DO_NOT_EDIT} -->\n"
        "# Metric catalog\n"
        "\n"
        "Every metric the sidecar publishes on `GET /metrics`, from `otel_llm_eval/catalog.py` (the single\n"
        "source of the names the generated dashboards and alert rules use). Names are a public contract:\n"
        "a rename would break your own dashboards, so a metric is added and the old one deprecated instead.\n"
        "\n"
        "Labels are bounded: never a user id, prompt text or trace id. Spans without an experiment have\n"
        "`experiment=\"\"` and `variant=\"\"`. Histograms also expose `_bucket`, `_sum` and `_count` series.\n"
        "\n"
        + catalog.markdown_table()
        + "\n"
        "## Label caps\n"
        "\n"
        "Distinct values kept per label and sidecar (`catalog.DEFAULT_LABEL_CAPS`; override in the sidecar's\n"
        f"`labels.caps`). Values beyond a cap fold into `{catalog.OVERFLOW_VALUE}` and are counted in\n"
        "`llm_eval_label_overflow_total{reason=<label>}`.\n"
        "\n"
        "| label | cap |\n"
        "|---|---|\n"
        + caps + "\n"
    )


def render() -> dict[str, str]:
    return {METRICS_DOC: metrics_page()}
