"""Projected vs actual cost of evaluation: the cost calculator against what a sidecar spent.

`fetch_cascade(url, token)` reads `GET {url}/v1/cascade` (the judge plugin's per-layer counts and
USD since the sidecar's state began). `compare(cascade, ...)` runs `cost.monthly_cost` on the
outputs the sidecar actually saw (one "day" of that many outputs) with the planned rates and
prices, and sets it beside the actual evaluations and spend per layer. Pure except `fetch_cascade`
(blocking HTTP, raises ValueError with the reason when the sidecar cannot be read).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Mapping

from .cost import monthly_cost


def fetch_cascade(url: str, token: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
    req = urllib.request.Request(url.rstrip("/") + "/v1/cascade",
                                 headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        hint = " (is the judge plugin loaded?)" if e.code == 404 else " (pass --token)" if e.code == 401 else ""
        raise ValueError(f"{url}/v1/cascade answered HTTP {e.code}{hint}") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {url}/v1/cascade: {e}") from None
    if not isinstance(data, dict) or "layers" not in data:
        raise ValueError(f"{url}/v1/cascade did not answer with the cascade summary")
    return data


def compare(cascade: Mapping[str, Any], *, llm_sample_rate: float, human_sample_rate: float,
            llm_cost_usd: float, human_cost_usd: float) -> dict[str, Any]:
    """Per layer (judge, human): projected and actual evaluations, USD, rate and USD per evaluation."""
    layers = cascade["layers"]
    outputs = float(layers["checks"]["evaluations"])
    projected = monthly_cost(outputs, llm_sample_rate=llm_sample_rate, human_sample_rate=human_sample_rate,
                             llm_cost_usd=llm_cost_usd, human_cost_usd=human_cost_usd, days_per_month=1)
    rows = {}
    for layer, evals, cost, rate, price in (
            ("judge", projected.llm_evaluations, projected.llm_cost_usd, llm_sample_rate, llm_cost_usd),
            ("human", projected.human_evaluations, projected.human_cost_usd, human_sample_rate, human_cost_usd)):
        actual_n = float(layers[layer]["evaluations"])
        actual_usd = float(layers[layer]["cost_usd"])
        rows[layer] = {
            "projected_evaluations": evals, "actual_evaluations": actual_n,
            "projected_usd": cost, "actual_usd": actual_usd,
            "planned_rate": rate, "actual_rate": actual_n / outputs if outputs else None,
            "planned_usd_per_evaluation": price,
            "actual_usd_per_evaluation": actual_usd / actual_n if actual_n else None,
        }
    total_projected = projected.total_cost_usd
    total_actual = sum(r["actual_usd"] for r in rows.values()) + float(layers["checks"]["cost_usd"])
    return {"outputs": outputs, "passed_checks": float(layers["checks"]["outcomes"]["pass"]),
            "layers": rows, "projected_usd": total_projected, "actual_usd": total_actual,
            "funnel": dict(cascade.get("funnel") or {}), "skipped": dict(cascade.get("skipped") or {})}


def _fmt(v: float | None, money: bool = False, pct: bool = False) -> str:
    if v is None:
        return "-"
    if money:
        return f"${v:,.4f}" if abs(v) < 1 else f"${v:,.2f}"
    if pct:
        return f"{v * 100:.3g}%"
    return f"{v:,.0f}" if abs(v - round(v)) < 1e-9 else f"{v:,.1f}"


def format_comparison(c: Mapping[str, Any]) -> str:
    header = ("layer", "evaluations (proj / actual)", "rate (plan / actual)", "USD (proj / actual)",
              "USD per eval (plan / actual)")
    rows = [header]
    for layer, r in c["layers"].items():
        rows.append((layer, f"{_fmt(r['projected_evaluations'])} / {_fmt(r['actual_evaluations'])}",
                     f"{_fmt(r['planned_rate'], pct=True)} / {_fmt(r['actual_rate'], pct=True)}",
                     f"{_fmt(r['projected_usd'], money=True)} / {_fmt(r['actual_usd'], money=True)}",
                     f"{_fmt(r['planned_usd_per_evaluation'], money=True)} / "
                     f"{_fmt(r['actual_usd_per_evaluation'], money=True)}"))
    rows.append(("total", "", "", f"{_fmt(c['projected_usd'], money=True)} / {_fmt(c['actual_usd'], money=True)}", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [f"{_fmt(c['outputs'])} outputs seen by the sidecar, {_fmt(c['passed_checks'])} passed the checks"]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    if c.get("skipped"):
        lines.append("not judged by the sidecar: " + ", ".join(f"{k} {v}" for k, v in sorted(c["skipped"].items())))
    return "\n".join(lines) + "\n"
