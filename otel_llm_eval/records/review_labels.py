"""SQLite tables of the review queue, and `read_labels` for exporting labeled items: shared by the
sidecar's review plugin, which owns the tables, and the offline tools, which read the labels.

`read_labels(db_path)` is the library entry point the offline `dataset export-labels` command
uses; `GET /v1/review/labels` returns the same records. Each record:
`{id, trace_id, span_id, prompt, completion, model, variant, experiment, quality, issues, comment,
corrected_answer, judge_score, failed_checks, created_unix, labeled_unix}`.

Standard library only. Functions that take a connection run on the caller's thread and never
commit (the sidecar's state thread owns the transaction); `read_labels` opens its own read-only
connection and raises sqlite3.Error only when the file is not a SQLite database.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Iterable, Mapping

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS review_items (
        id TEXT PRIMARY KEY,
        trace_id TEXT, span_id TEXT, service TEXT, model TEXT, variant TEXT, experiment TEXT,
        experiments TEXT NOT NULL DEFAULT '[]',
        prompt TEXT, completion TEXT,
        failed_checks TEXT NOT NULL DEFAULT '[]',
        judge_score REAL, reason TEXT, stratum TEXT,
        created_unix REAL NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        skips INTEGER NOT NULL DEFAULT 0,
        quality INTEGER, issues TEXT, comment TEXT, corrected_answer TEXT, reviewer TEXT,
        labeled_unix REAL
    )""",
    "CREATE INDEX IF NOT EXISTS review_items_status ON review_items(status, created_unix)",
    "CREATE TABLE IF NOT EXISTS review_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)

#: Item fields in column order (what `item_row` produces and `row_item` reads).
COLUMNS = (
    "id", "trace_id", "span_id", "service", "model", "variant", "experiment", "experiments",
    "prompt", "completion", "failed_checks", "judge_score", "reason", "stratum", "created_unix",
    "status", "skips", "quality", "issues", "comment", "corrected_answer", "reviewer",
    "labeled_unix",
)
_JSON_COLUMNS = ("experiments", "failed_checks", "issues")

#: The export shape shared by `read_labels` and `GET /v1/review/labels`.
LABEL_FIELDS = (
    "id", "trace_id", "span_id", "prompt", "completion", "model", "variant", "experiment",
    "quality", "issues", "comment", "corrected_answer", "judge_score", "failed_checks",
    "created_unix", "labeled_unix",
)


def create_tables(conn: sqlite3.Connection) -> None:
    for stmt in SCHEMA:
        conn.execute(stmt)


def item_row(item: Mapping[str, Any]) -> tuple:
    """An item dict as a row tuple in COLUMNS order (JSON-encoding list fields)."""
    out = []
    for col in COLUMNS:
        v = item.get(col)
        if col in _JSON_COLUMNS:
            v = json.dumps(list(v) if v is not None else [])
        out.append(v)
    return tuple(out)


def row_item(row: Iterable[Any]) -> dict[str, Any]:
    item = dict(zip(COLUMNS, row))
    for col in _JSON_COLUMNS:
        try:
            item[col] = json.loads(item[col]) if item[col] else []
        except (TypeError, ValueError):
            item[col] = []
    return item


def label_record(item: Mapping[str, Any]) -> dict[str, Any]:
    """The export shape of a labeled item."""
    return {k: item.get(k) for k in LABEL_FIELDS}


def upsert_items(conn: sqlite3.Connection, items: Iterable[Mapping[str, Any]]) -> None:
    placeholders = ",".join("?" * len(COLUMNS))
    conn.executemany(
        f"INSERT OR REPLACE INTO review_items ({','.join(COLUMNS)}) VALUES ({placeholders})",
        [item_row(i) for i in items],
    )


def load_items(conn: sqlite3.Connection, status: str, since_unix: float,
               limit: int | None = None) -> list[dict[str, Any]]:
    sql = (f"SELECT {','.join(COLUMNS)} FROM review_items WHERE status = ? AND created_unix >= ? "
           "ORDER BY created_unix, id")
    args: list[Any] = [status, since_unix]
    if limit is not None:
        sql += " LIMIT ?"
        args.append(int(limit))
    return [row_item(r) for r in conn.execute(sql, args)]


def delete_older_than(conn: sqlite3.Connection, cutoff_unix: float) -> int:
    return conn.execute("DELETE FROM review_items WHERE created_unix < ?", (cutoff_unix,)).rowcount


def get_state(conn: sqlite3.Connection, key: str) -> Any:
    row = conn.execute("SELECT value FROM review_state WHERE key = ?", (key,)).fetchone()
    if not row:
        return None
    try:
        return json.loads(row[0])
    except ValueError:
        return None


def put_state(conn: sqlite3.Connection, key: str, value: Any) -> None:
    conn.execute("INSERT OR REPLACE INTO review_state (key, value) VALUES (?, ?)",
                 (key, json.dumps(value)))


def read_labels(db_path: str, *, since_unix: float | None = None,
                limit: int | None = None) -> list[dict[str, Any]]:
    """Labeled review items from a sidecar SQLite file, oldest label first.

    Opens the file read-only (safe while the sidecar runs: WAL readers do not block it). Returns []
    when the file has no review table yet. `since_unix` keeps labels with labeled_unix > since.
    Raises FileNotFoundError when the file does not exist.
    """
    import os

    if not os.path.exists(db_path):
        raise FileNotFoundError(db_path)
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10.0)
    try:
        has_table = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='review_items'").fetchone()
        if not has_table:
            return []
        sql = f"SELECT {','.join(COLUMNS)} FROM review_items WHERE status = 'labeled'"
        args: list[Any] = []
        if since_unix is not None:
            sql += " AND labeled_unix > ?"
            args.append(float(since_unix))
        sql += " ORDER BY labeled_unix, id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        return [label_record(row_item(r)) for r in conn.execute(sql, args)]
    finally:
        conn.close()
