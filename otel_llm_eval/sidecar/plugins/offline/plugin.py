"""Offline results in the sidecar: benchmark scores and regression-gate runs, for the dashboards.

Routes (bearer-token auth applied by the core):
- `POST /v1/benchmarks` `{"records": [{benchmark, model, score, date?, latency_seconds?, cost_usd?,
  recorded_unix?}, ...]}` (what `otel-llm-eval bench export --push URL` sends). Each record is
  validated on its own: 200 `{"accepted": n, "rejected": [{"index", "reason"}]}`; 400 when the
  body is not JSON or no record is valid; 413 past `max_records_per_request` or `max_body_bytes`;
  409 when every record is for a new (benchmark, model) pair past `max_pairs` (refused records
  are counted in `llm_eval_label_overflow_total{reason="benchmark_pairs"}`).
  Same (date, benchmark, model) again replaces the earlier record.
- `GET /v1/benchmarks`: the latest record per benchmark and model.
- `POST /v1/regression-runs` `{"status": "pass"|"fail", ...}` (what `otel-llm-eval
  regress --push URL` sends): counted, and the run's JSON kept (the last `keep_regression_runs`).

Metrics (collect): `llm_benchmark_score{benchmark,model}` = latest score per benchmark and model;
`llm_eval_regression_runs_total{status}`.

State (own tables, written in `flush`, restored in `load`): `offline_benchmarks`,
`offline_regression_runs`, `offline_regression_counts`. Records waiting for a flush are bounded
by `max_pending`; beyond it new ones are refused with 503 (counted in `dropped`), never silently
lost. Thread-safe: HTTP handlers, flush and collect share one lock held for O(records) work.
"""

# No `from __future__ import annotations` here: FastAPI resolves the handlers' `Request`
# annotation at runtime, and Request is imported inside router() (fastapi stays optional).
import json
import threading
import time
from typing import Any, Iterable

from ....records.benchmarks import Record, latest, make_record
from .. import SidecarPlugin

CONFIG_DEFAULTS: dict[str, Any] = {
    "max_records_per_request": 1000,
    "max_body_bytes": 4 * 1024 * 1024,
    "max_pending": 100_000,          # records + runs waiting for the next flush
    "max_pairs": 2500,               # distinct (benchmark, model) pairs kept; records of new pairs beyond it are refused
    "keep_regression_runs": 1000,    # run bodies kept in the table (counts are kept forever)
    "max_run_body_bytes": 64 * 1024,
}

RUN_STATUSES = ("pass", "fail")  # as the catalog documents llm_eval_regression_runs_total

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS offline_benchmarks (
        date TEXT NOT NULL, benchmark TEXT NOT NULL, model TEXT NOT NULL, score REAL NOT NULL,
        latency_seconds REAL, cost_usd REAL, recorded_unix REAL NOT NULL,
        PRIMARY KEY (date, benchmark, model))""",
    """CREATE TABLE IF NOT EXISTS offline_regression_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT, status TEXT NOT NULL, received_unix REAL NOT NULL,
        body TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS offline_regression_counts (
        status TEXT PRIMARY KEY, count INTEGER NOT NULL)""",
)


class PayloadError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class OfflinePlugin(SidecarPlugin):
    name = "offline"
    CONFIG_DEFAULTS = CONFIG_DEFAULTS

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[tuple[str, str], Record] = {}
        self._pending_records: dict[tuple[str, str, str], Record] = {}
        self._pending_runs: list[tuple[str, float, str]] = []
        self._run_counts: dict[str, int] = {s: 0 for s in RUN_STATUSES}
        self._unflushed_counts: dict[str, int] = {}
        self.dropped = 0
        self.pairs_refused = 0  # records refused by max_pairs (llm_eval_label_overflow_total{reason="benchmark_pairs"})
        self.cfg = dict(CONFIG_DEFAULTS)

    def attach(self, ctx: Any) -> None:
        super().attach(ctx)
        section = (getattr(ctx, "config", None) or {}).get(self.name) or {}
        self.cfg = {**CONFIG_DEFAULTS, **section}

    def _now(self) -> float:
        ctx = getattr(self, "ctx", None)
        return ctx.now() if ctx is not None and hasattr(ctx, "now") else time.time()

    # --- state -----------------------------------------------------------------------------------

    def load(self, conn: Any) -> None:
        for stmt in _SCHEMA:
            conn.execute(stmt)
        rows = conn.execute("SELECT date, benchmark, model, score, latency_seconds, cost_usd, recorded_unix "
                            "FROM offline_benchmarks").fetchall()
        counts = dict(conn.execute("SELECT status, count FROM offline_regression_counts").fetchall())
        with self._lock:
            self._latest = latest(Record(*r) for r in rows)
            for s, n in counts.items():
                self._run_counts[s] = int(n)

    def flush(self, conn: Any) -> None:
        with self._lock:
            records = list(self._pending_records.values())
            runs = list(self._pending_runs)
            deltas = dict(self._unflushed_counts)
            self._pending_records.clear()
            self._pending_runs.clear()
            self._unflushed_counts.clear()
        try:
            conn.executemany("INSERT OR REPLACE INTO offline_benchmarks VALUES (?,?,?,?,?,?,?)",
                             [(r.date, r.benchmark, r.model, r.score, r.latency_seconds, r.cost_usd,
                               r.recorded_unix) for r in records])
            conn.executemany("INSERT INTO offline_regression_runs (status, received_unix, body) VALUES (?,?,?)",
                             runs)
            for status, n in deltas.items():
                conn.execute("INSERT INTO offline_regression_counts (status, count) VALUES (?, ?) "
                             "ON CONFLICT(status) DO UPDATE SET count = count + excluded.count", (status, n))
            if runs:
                keep = int(self.cfg["keep_regression_runs"])
                conn.execute("DELETE FROM offline_regression_runs WHERE id <= "
                             "(SELECT MAX(id) FROM offline_regression_runs) - ?", (keep,))
        except Exception:
            # The transaction is rolled back by the core: put the work back for the next flush.
            with self._lock:
                for r in records:
                    self._pending_records.setdefault((r.date, r.benchmark, r.model), r)
                self._pending_runs[:0] = runs
                for s, n in deltas.items():
                    self._unflushed_counts[s] = self._unflushed_counts.get(s, 0) + n
            raise

    # --- ingest (called by the HTTP handlers; usable directly in tests) --------------------------

    def _pending_size(self) -> int:
        return len(self._pending_records) + len(self._pending_runs)

    def add_benchmarks(self, payload: Any) -> dict[str, Any]:
        """Validate and store benchmark records. Raises PayloadError(status, message)."""
        if isinstance(payload, dict):
            items = payload.get("records")
            if items is None and "benchmark" in payload:
                items = [payload]
        else:
            items = payload
        if not isinstance(items, list):
            raise PayloadError(400, "expected {\"records\": [...]} with benchmark, model, score per record")
        if len(items) > int(self.cfg["max_records_per_request"]):
            raise PayloadError(413, f"at most {self.cfg['max_records_per_request']} records per request")
        now = self._now()
        accepted: list[Record] = []
        rejected = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                rejected.append({"index": i, "reason": "record must be an object"})
                continue
            try:
                accepted.append(make_record(
                    benchmark=item.get("benchmark"), model=item.get("model"), score=item.get("score"),
                    latency_seconds=item.get("latency_seconds", item.get("latency")),
                    cost_usd=item.get("cost_usd", item.get("cost")), date=item.get("date"),
                    recorded_unix=item.get("recorded_unix") if isinstance(item.get("recorded_unix"), (int, float))
                    else now))
            except ValueError as e:
                rejected.append({"index": i, "reason": str(e)})
        if not accepted:
            raise PayloadError(400, "no valid record: " + "; ".join(f"[{r['index']}] {r['reason']}" for r in rejected[:5]))
        with self._lock:
            if self._pending_size() + len(accepted) > int(self.cfg["max_pending"]):
                self.dropped += len(accepted)
                raise PayloadError(503, "too many records waiting to be stored; retry shortly")
            # stored pairs are a label set like any other: bounded, and what is refused is counted
            max_pairs, kept = int(self.cfg["max_pairs"]), []
            new_pairs: set[tuple[str, str]] = set()
            for i, r in enumerate(accepted):
                key = (r.benchmark, r.model)
                if key not in self._latest and key not in new_pairs:
                    if len(self._latest) + len(new_pairs) >= max_pairs:
                        self.pairs_refused += 1
                        rejected.append({"index": i, "reason": f"offline.max_pairs={max_pairs} (benchmark, model) "
                                                               "pairs are stored already; this pair is new"})
                        continue
                    new_pairs.add(key)
                kept.append(r)
            if not kept:
                raise PayloadError(409, f"every record is for a new (benchmark, model) pair and offline.max_pairs="
                                        f"{max_pairs} pairs are stored already")
            accepted = kept
            for r in accepted:
                self._pending_records[(r.date, r.benchmark, r.model)] = r
                key = (r.benchmark, r.model)
                cur = self._latest.get(key)
                if cur is None or (r.date, r.recorded_unix) >= (cur.date, cur.recorded_unix):
                    self._latest[key] = r
        return {"accepted": len(accepted), "rejected": rejected}

    def add_regression_run(self, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise PayloadError(400, "expected a JSON object with status")
        status = payload.get("status")
        if status not in RUN_STATUSES:
            raise PayloadError(400, f"status must be one of {', '.join(RUN_STATUSES)}, got {status!r}")
        body = json.dumps(payload, sort_keys=True)
        if len(body) > int(self.cfg["max_run_body_bytes"]):
            body = json.dumps({"status": status, "truncated": True})
        with self._lock:
            if self._pending_size() + 1 > int(self.cfg["max_pending"]):
                self.dropped += 1
                raise PayloadError(503, "too many runs waiting to be stored; retry shortly")
            self._pending_runs.append((status, self._now(), body))
            self._run_counts[status] = self._run_counts.get(status, 0) + 1
            self._unflushed_counts[status] = self._unflushed_counts.get(status, 0) + 1
            total = self._run_counts[status]
        return {"accepted": True, "status": status, "runs_with_status": total}

    def persist(self) -> bool:
        """Commit what was just accepted to the state file now (True once committed)."""
        flush_now = getattr(getattr(self, "ctx", None), "flush_now", None)
        return bool(flush_now()) if callable(flush_now) else True

    def latest_records(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.as_dict() for _, r in sorted(self._latest.items())]

    # --- /metrics --------------------------------------------------------------------------------

    def collect(self) -> Iterable[Any]:
        with self._lock:
            scores = [({"benchmark": b, "model": m}, r.score) for (b, m), r in sorted(self._latest.items())]
            runs = [({"status": s}, n) for s, n in sorted(self._run_counts.items())]
            refused = self.pairs_refused
        yield self.ctx.family("llm_benchmark_score", scores)
        yield self.ctx.family("llm_eval_regression_runs_total", runs)
        if refused:
            yield self.ctx.family("llm_eval_label_overflow_total", [({"reason": "benchmark_pairs"}, refused)])

    # --- HTTP ------------------------------------------------------------------------------------

    def router(self) -> Any:
        from fastapi import APIRouter, Request
        from fastapi.responses import JSONResponse
        from starlette.concurrency import run_in_threadpool

        router = APIRouter()
        plugin = self

        async def _json(request: Request) -> Any:
            declared = request.headers.get("content-length")
            limit = int(plugin.cfg["max_body_bytes"])
            if declared and declared.isdigit() and int(declared) > limit:
                raise PayloadError(413, f"body larger than {limit} bytes")
            body = await request.body()
            if len(body) > limit:
                raise PayloadError(413, f"body larger than {limit} bytes")
            try:
                return json.loads(body)
            except ValueError:
                raise PayloadError(400, "body is not valid JSON") from None

        async def durable(result: dict[str, Any]) -> JSONResponse:
            # like spans and labels: written to the state file before the answer says so
            if not await run_in_threadpool(plugin.persist):
                return JSONResponse({"error": "accepted in memory but the state could not be written yet; "
                                              "it is retried on every flush (see the sidecar log)"},
                                    status_code=503, headers={"Retry-After": "1"})
            return JSONResponse(result)

        @router.post("/v1/benchmarks", tags=["offline"])
        async def post_benchmarks(request: Request) -> JSONResponse:
            try:
                return await durable(plugin.add_benchmarks(await _json(request)))
            except PayloadError as e:
                return JSONResponse({"error": e.message}, status_code=e.status,
                                    headers={"Retry-After": "1"} if e.status == 503 else None)

        @router.get("/v1/benchmarks", tags=["offline"])
        def get_benchmarks() -> dict[str, Any]:
            return {"latest": plugin.latest_records()}

        @router.post("/v1/regression-runs", tags=["offline"])
        async def post_regression_run(request: Request) -> JSONResponse:
            try:
                return await durable(plugin.add_regression_run(await _json(request)))
            except PayloadError as e:
                return JSONResponse({"error": e.message}, status_code=e.status,
                                    headers={"Retry-After": "1"} if e.status == 503 else None)

        return router
