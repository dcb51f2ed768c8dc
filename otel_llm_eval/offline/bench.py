"""Benchmark history: record scores per (date, benchmark, model) in SQLite, show them as the
seed's table (one row per date and model, one column per benchmark), export the latest score
per benchmark and model as Prometheus text (`llm_benchmark_score`), or push the records to the
sidecar (`POST /v1/benchmarks`) so the offline dashboard shows them.

Recording the same (date, benchmark, model) again replaces the earlier value (a re-run of the
same day is a correction, not a second data point).

Blocking file and network I/O on the caller's thread; raises ValueError on invalid records,
sqlite3.Error on unusable database files, OSError/urllib errors when a push fails.
"""

from __future__ import annotations

import json
import os
import sqlite3
import urllib.request
from contextlib import closing
from pathlib import Path
from typing import Iterable, Sequence

from ..records.benchmarks import Record, latest, make_record  # noqa: F401 (bench_cli and users call them here)

DEFAULT_DB = "otel-llm-eval-bench.db"
DB_ENV = "OTEL_LLM_EVAL_BENCH_DB"
PUSH_BATCH = 500  # records per POST (the sidecar bounds request size)

SCHEMA = """CREATE TABLE IF NOT EXISTS benchmark_results (
    date TEXT NOT NULL,
    benchmark TEXT NOT NULL,
    model TEXT NOT NULL,
    score REAL NOT NULL,
    latency_seconds REAL,
    cost_usd REAL,
    recorded_unix REAL NOT NULL,
    PRIMARY KEY (date, benchmark, model)
)"""


def default_db() -> str:
    return os.environ.get(DB_ENV) or DEFAULT_DB


def connect(db_path: str | Path) -> sqlite3.Connection:
    Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(db_path), timeout=10.0)
    conn.execute(SCHEMA)
    return conn


def record(db_path: str | Path, rec: Record) -> Record:
    with closing(connect(db_path)) as conn, conn:
        conn.execute("INSERT OR REPLACE INTO benchmark_results VALUES (?,?,?,?,?,?,?)",
                     (rec.date, rec.benchmark, rec.model, rec.score, rec.latency_seconds, rec.cost_usd,
                      rec.recorded_unix))
    return rec


def history(db_path: str | Path, *, benchmark: str | None = None, model: str | None = None) -> list[Record]:
    """All records, oldest date first. Raises FileNotFoundError when there is no history yet."""
    if not Path(db_path).exists():
        raise FileNotFoundError(f"no benchmark history at {db_path} (record one with `bench record`)")
    sql = "SELECT date, benchmark, model, score, latency_seconds, cost_usd, recorded_unix FROM benchmark_results"
    where, args = [], []
    if benchmark:
        where.append("benchmark = ?")
        args.append(benchmark)
    if model:
        where.append("model = ?")
        args.append(model)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY date, model, benchmark"
    with closing(connect(db_path)) as conn:
        return [Record(*row) for row in conn.execute(sql, args)]


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def table(records: Sequence[Record]) -> tuple[list[str], list[list[str]]]:
    """The seed's table: one row per (date, model), a column per benchmark, then the mean latency
    and cost of that day's runs for the model ("-" where nothing was recorded)."""
    benchmarks = sorted({r.benchmark for r in records})
    rows_by_key: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        rows_by_key.setdefault((r.date, r.model), []).append(r)
    headers = ["date", "model"] + benchmarks + ["latency_s", "cost_usd"]
    rows = []
    for (d, m) in sorted(rows_by_key):
        recs = rows_by_key[(d, m)]
        by_b = {r.benchmark: r for r in recs}
        lat = _mean([r.latency_seconds for r in recs])
        cost = _mean([r.cost_usd for r in recs])
        rows.append([d, m] + [f"{by_b[b].score:.4g}" if b in by_b else "-" for b in benchmarks]
                    + ["-" if lat is None else f"{lat:.3g}", "-" if cost is None else f"{cost:.4g}"])
    return headers, rows


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines) + "\n"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def prometheus_text(records: Iterable[Record]) -> str:
    """Latest score per benchmark and model in the Prometheus text format (textfile collector)."""
    from ..catalog import metric

    m = metric("llm_benchmark_score")
    lines = [f"# HELP {m.name} {m.help}", f"# TYPE {m.name} gauge"]
    for (b, mod), r in sorted(latest(records).items()):
        lines.append(f'{m.name}{{benchmark="{_escape(b)}",model="{_escape(mod)}"}} {r.score!r}')
    return "\n".join(lines) + "\n"


def push(url: str, records: Sequence[Record], *, token: str | None = None, timeout_seconds: float = 10.0) -> int:
    """POST the records to the sidecar in batches; returns how many it accepted."""
    accepted = 0
    endpoint = url.rstrip("/") + "/v1/benchmarks"
    for start in range(0, len(records), PUSH_BATCH):
        body = json.dumps({"records": [r.as_dict() for r in records[start:start + PUSH_BATCH]]}).encode()
        req = urllib.request.Request(endpoint, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, timeout=timeout_seconds) as resp:
            reply = json.loads(resp.read() or b"{}")
        accepted += int(reply.get("accepted", 0))
    return accepted
