"""Reports of a regression-gate run: a plain-text table, Markdown (for PR comments and the job
summary) and JUnit XML (for CI test tabs). Pure formatting, no I/O."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any, Mapping

from .regress import Comparison, MetricComparison

MAX_CELL = 80


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "n/a"
    if unit == "USD":
        return f"${v:.4f}"
    if unit == "s":
        return f"{v:.3f} s"
    return f"{v:.4f}"


def _pct(v: float | None) -> str:
    return "n/a (zero baseline)" if v is None else f"{v * 100:+.1f}%"


def _p(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4f}" if v >= 1e-4 else f"{v:.1e}"


def _verdict(m: MetricComparison) -> str:
    if m.p_value is None:
        return "not compared"
    if m.regressed:
        return "REGRESSED"
    if m.improved:
        return "improved"
    return "ok"


def _unit(name: str) -> str:
    from .scorers import METRICS
    spec = METRICS.get(name)
    return spec.unit if spec else ""


def _clip(text: Any) -> str:
    s = "" if text is None else str(text)
    s = " ".join(s.split())
    return s if len(s) <= MAX_CELL else s[: MAX_CELL - 1] + "…"


def _md_cell(text: Any) -> str:
    return _clip(text).replace("|", "\\|")


def summary_rows(current: Mapping[str, Any], comparison: Comparison | None) -> list[list[str]]:
    rows = []
    if comparison is None:
        for name, s in current["summary"].items():
            rows.append([name, _fmt(s["mean"], _unit(name)), str(s["n"])])
        return rows
    for m in comparison.metrics:
        rows.append([m.metric, _fmt(m.baseline_mean, _unit(m.metric)), _fmt(m.current_mean, _unit(m.metric)),
                     _pct(m.relative_change) if m.relative_change is not None or m.absolute_change is None
                     else f"{m.absolute_change:+.4g} (abs; zero baseline)",
                     _p(m.p_adjusted), str(m.n_pairs), _verdict(m)])
    return rows


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


CMP_HEADERS = ["metric", "baseline", "current", "change", "p (Holm)", "pairs", "verdict"]
RUN_HEADERS = ["metric", "mean", "n"]


def text_report(current: Mapping[str, Any], comparison: Comparison | None) -> str:
    ds = current["dataset"]
    lines = [f"dataset {ds['id']} {ds['version']} ({ds['samples']} samples), target {current['target']}, "
             f"errors {current['errors']}"]
    if comparison is None:
        lines.append(text_table(RUN_HEADERS, summary_rows(current, None)))
        return "\n".join(lines) + "\n"
    lines.append(text_table(CMP_HEADERS, summary_rows(current, comparison)))
    reg = comparison.regressed
    if reg:
        lines.append("")
        lines.append(f"REGRESSION: {', '.join(m.metric for m in reg)} worse by more than "
                     f"{comparison.threshold * 100:g}% with Holm-adjusted p < {comparison.alpha:g}")
        # The first regressed metric's worst samples (the Markdown report has every metric's).
        for metric, rows in list(comparison.worst.items())[:1]:
            lines.append(f"worst samples for {metric}:")
            lines.append(text_table(["id", "baseline", "current", "query", "current answer"],
                                    [[_clip(r["id"]), _fmt(r["baseline"]), _fmt(r["current"]),
                                      _clip(r["query"])[:40], _clip(r["current_answer"])[:40]] for r in rows]))
    else:
        lines.append("")
        lines.append(f"PASS: no metric worse by more than {comparison.threshold * 100:g}% with "
                     f"Holm-adjusted p < {comparison.alpha:g}")
    return "\n".join(lines) + "\n"


def markdown_report(current: Mapping[str, Any], comparison: Comparison | None,
                    baseline: Mapping[str, Any] | None = None) -> str:
    ds = current["dataset"]
    status = ("no baseline" if comparison is None else
              ("❌ regression" if comparison.regressed else "✅ pass"))
    out = [f"## Regression gate: {status}", "",
           f"Dataset `{ds['id']}` version `{ds['version']}` ({ds['samples']} samples); "
           f"target `{current['target']}`; target errors: {current['errors']}.", ""]
    if comparison is None:
        out += ["| " + " | ".join(RUN_HEADERS) + " |", "|" + "---|" * len(RUN_HEADERS)]
        out += ["| " + " | ".join(r) + " |" for r in summary_rows(current, None)]
    else:
        out += [f"A metric regresses when it is worse by more than {comparison.threshold * 100:g}% "
                f"(absolute change for a zero baseline) and a one-sided paired test "
                f"({comparison.method}) over the shared "
                f"samples gives a Holm-adjusted p < {comparison.alpha:g}.", ""]
        out += ["| " + " | ".join(CMP_HEADERS) + " |", "|" + "---|" * len(CMP_HEADERS)]
        out += ["| " + " | ".join(r) + " |" for r in summary_rows(current, comparison)]
        for metric, rows in comparison.worst.items():
            out += ["", f"### Worst samples for `{metric}`", "",
                    "| id | baseline | current | query | expected | baseline answer | current answer |",
                    "|---|---|---|---|---|---|---|"]
            out += [f"| {_md_cell(r['id'])} | {_fmt(r['baseline'])} | {_fmt(r['current'])} | {_md_cell(r['query'])} "
                    f"| {_md_cell(r['expected_answer'])} | {_md_cell(r['baseline_answer'])} "
                    f"| {_md_cell(r['current_answer'])} |" for r in rows]
    errors = [s for s in current["samples"] if s.get("error")]
    if errors:
        out += ["", f"### Target errors ({len(errors)})", "", "| id | error |", "|---|---|"]
        out += [f"| {_md_cell(s['id'])} | {_md_cell(s['error'])} |" for s in errors[:20]]
        if len(errors) > 20:
            out.append(f"| … | {len(errors) - 20} more |")
    return "\n".join(out) + "\n"


def junit_xml(current: Mapping[str, Any], comparison: Comparison | None, *,
              max_error_rate: float | None = None) -> str:
    """One test case per metric (failure = regressed) and one for target errors."""
    suite = ET.Element("testsuite", name="otel-llm-eval regress")
    cases = 0
    failures = 0
    if comparison is not None:
        for m in comparison.metrics:
            cases += 1
            tc = ET.SubElement(suite, "testcase", classname=f"regress.{current['dataset']['id']}",
                               name=f"{m.metric} does not regress")
            detail = (f"baseline={_fmt(m.baseline_mean)} current={_fmt(m.current_mean)} "
                      f"change={_pct(m.relative_change)} p_holm={_p(m.p_adjusted)} pairs={m.n_pairs} "
                      f"method={m.method}")
            if m.regressed:
                failures += 1
                f = ET.SubElement(tc, "failure", message=f"{m.metric} regressed", type="regression")
                f.text = detail
            else:
                ET.SubElement(tc, "system-out").text = detail
    else:
        for name, s in current["summary"].items():
            cases += 1
            tc = ET.SubElement(suite, "testcase", classname=f"regress.{current['dataset']['id']}",
                               name=f"{name} measured")
            ET.SubElement(tc, "system-out").text = f"mean={_fmt(s['mean'])} n={s['n']}"
    cases += 1
    n = max(1, len(current["samples"]))
    rate = current["errors"] / n
    tc = ET.SubElement(suite, "testcase", classname=f"regress.{current['dataset']['id']}",
                       name="target error rate within limit")
    listing = "\n".join(f"{s['id']}: {s['error']}" for s in current["samples"] if s.get("error"))
    if max_error_rate is not None and rate > max_error_rate:
        failures += 1
        f = ET.SubElement(tc, "failure", message=f"error rate {rate:.3f} > {max_error_rate:g}", type="errors")
        f.text = listing
    elif listing:
        ET.SubElement(tc, "system-out").text = listing
    suite.set("tests", str(cases))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
