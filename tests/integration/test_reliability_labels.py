"""A human label answered 200 is already in the state file: a kill -9 right after loses nothing."""

from __future__ import annotations

import sqlite3

import pytest

from otel_llm_eval.sidecar.plugins.review import read_labels
from review_harness import PII_CALLS, REVIEW_CONFIG, Sidecar, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_a_label_answered_200_is_committed_to_the_state_file_before_the_answer(tmp_path):
    from otel_llm_eval.sidecar.server import start_in_thread

    db = str(tmp_path / "sidecar.db")
    # no periodic flush during the test: only what the label route itself commits reaches the file
    handle = start_in_thread({"state": {"db_path": db, "flush_interval_seconds": 3600},
                              "review": REVIEW_CONFIG}, environ={})
    sc = Sidecar(url=handle.url, db_path=db, token=None, handle=handle)
    try:
        sc.send_llm_spans(PII_CALLS[:1])
        wait_until(lambda: handle.sidecar.spans_ingested() >= 1 and handle.sidecar.flush()
                   and sc.request("GET", "/v1/review/queue")[1]["items"])
        item = sc.request("GET", "/v1/review/queue")[1]["items"][0]
        status, answer = sc.request("POST", f"/v1/review/{item['id']}/label",
                                    body={"quality": 4, "reviewer": "ann.reviewer@example.com"})
        assert status == 200, answer
        labels = read_labels(db)
        assert [(r["id"], r["quality"]) for r in labels] == [(item["id"], 4)]
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:  # the reviewer field is redacted too
            assert conn.execute("SELECT reviewer FROM review_items").fetchall() == [("[EMAIL]",)]
    finally:
        handle.stop()


@pytest.mark.parametrize("path,body,table", [
    ("/v1/benchmarks", {"records": [{"benchmark": "mmlu", "model": "m", "score": 0.7, "date": "2026-01-02"}]},
     "offline_benchmarks"),
    ("/v1/regression-runs", {"status": "fail", "dataset": "golden"}, "offline_regression_runs"),
])
def test_offline_results_answered_200_are_committed_before_the_answer(tmp_path, path, body, table):
    import httpx

    from otel_llm_eval.sidecar.server import start_in_thread

    db = str(tmp_path / "sidecar.db")
    handle = start_in_thread({"state": {"db_path": db, "flush_interval_seconds": 3600}}, environ={})
    try:
        r = httpx.post(handle.url + path, json=body)
        assert r.status_code == 200, r.text
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            assert conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone() == (1,)
    finally:
        handle.stop()
