"""The sidecar's offline plugin on a real sidecar: benchmark and regression-run routes, metrics, bad input."""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from otel_llm_eval.cli import main
from otel_llm_eval.sidecar.plugins.offline import OfflinePlugin, PayloadError

ROOT = Path(__file__).resolve().parents[2]


def post(url, body, token=None, raw=None):
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def metrics(sc):
    return urllib.request.urlopen(sc.url + "/metrics", timeout=10).read().decode()


@pytest.fixture
def sidecar(tmp_path):
    from otel_llm_eval.sidecar.server import start_in_thread

    sc = start_in_thread({"state": {"db_path": str(tmp_path / "state.db"), "flush_interval_seconds": 0.1},
                          "offline": {"max_records_per_request": 5}})
    try:
        yield sc
    finally:
        sc.stop()


pytestmark = pytest.mark.timeout(60)


def test_the_sidecar_loads_the_offline_plugin_by_default(sidecar):
    assert any(isinstance(p, OfflinePlugin) for p in sidecar.sidecar.plugins)


def test_posted_benchmarks_are_served_and_published_as_the_latest_score(sidecar):
    status, body = post(sidecar.url + "/v1/benchmarks", {"records": [
        {"benchmark": "MMLU", "model": "m1", "score": 0.7, "date": "2026-10-01"},
        {"benchmark": "MMLU", "model": "m1", "score": 0.75, "date": "2026-11-01"},
        {"benchmark": "MMLU", "model": "m1", "score": 0.5, "date": "2026-09-01"},  # older: not the latest
    ]})
    assert (status, body) == (200, {"accepted": 3, "rejected": []})
    assert 'llm_benchmark_score{benchmark="MMLU",model="m1"} 0.75' in metrics(sidecar)
    latest = json.loads(urllib.request.urlopen(sidecar.url + "/v1/benchmarks", timeout=10).read())["latest"]
    assert [(r["benchmark"], r["model"], r["date"], r["score"]) for r in latest] == [("MMLU", "m1", "2026-11-01", 0.75)]


BAD_POSTS = [
    ("a body that is not JSON is a 400", None, b"{nope", 400, "not valid JSON"),
    ("records that are not a list are a 400", {"records": "x"}, None, 400, "expected"),
    ("no valid record is a 400 naming the reason", {"records": [{"benchmark": "B", "model": "m", "score": "high"}]},
     None, 400, "score must be a finite number"),
    ("more records than the configured cap is a 413", {"records": [{"benchmark": "B", "model": "m", "score": 1}] * 6},
     None, 413, "at most 5 records"),
]


@pytest.mark.parametrize("name,body,raw,status,message", BAD_POSTS, ids=[c[0] for c in BAD_POSTS])
def test_bad_benchmark_posts_get_a_clear_error(sidecar, name, body, raw, status, message):
    code, reply = post(sidecar.url + "/v1/benchmarks", body, raw=raw)
    assert code == status and message in reply["error"]
    assert "llm_benchmark_score{" not in metrics(sidecar)


def test_valid_records_are_kept_when_others_in_the_same_request_are_rejected(sidecar):
    code, reply = post(sidecar.url + "/v1/benchmarks", {"records": [
        {"benchmark": "B", "model": "m", "score": 1.0, "date": "2026-01-01"},
        {"benchmark": "", "model": "m", "score": 1.0}, "not a record"]})
    assert code == 200 and reply["accepted"] == 1
    assert [r["index"] for r in reply["rejected"]] == [1, 2]


def test_regression_runs_are_counted_by_status_and_bad_status_is_refused(sidecar):
    for status in ("pass", "pass", "fail"):
        assert post(sidecar.url + "/v1/regression-runs", {"status": status, "dataset_version": "sha256:x"})[0] == 200
    code, reply = post(sidecar.url + "/v1/regression-runs", {"status": "maybe"})
    assert code == 400 and "status must be one of" in reply["error"]
    text = metrics(sidecar)
    assert 'llm_eval_regression_runs_total{status="pass"} 2.0' in text
    assert 'llm_eval_regression_runs_total{status="fail"} 1.0' in text


def test_the_gate_reports_its_verdict_to_the_sidecar_with_push(sidecar, tmp_path, monkeypatch):
    monkeypatch.setenv("REGRESS_DEMO_VARIANT", "worse")
    base = tmp_path / "b.json"
    args = ["regress", "--dataset", str(ROOT / "examples" / "dataset.json"), "--target",
            f"{ROOT / 'examples' / 'regress_target.py'}:answer", "--no-progress", "--resamples", "1000"]
    monkeypatch.setenv("REGRESS_DEMO_VARIANT", "baseline")
    assert main(args + ["--save", str(base), "--push", sidecar.url]) == 0
    monkeypatch.setenv("REGRESS_DEMO_VARIANT", "worse")
    assert main(args + ["--baseline", str(base), "--push", sidecar.url]) == 1
    text = metrics(sidecar)
    assert 'llm_eval_regression_runs_total{status="pass"} 1.0' in text
    assert 'llm_eval_regression_runs_total{status="fail"} 1.0' in text


def test_runs_and_counts_are_persisted_in_the_plugins_own_tables(tmp_path):
    from otel_llm_eval.sidecar.server import start_in_thread

    db = tmp_path / "state.db"
    cfg = {"state": {"db_path": str(db), "flush_interval_seconds": 0.1}}
    with start_in_thread(cfg) as sc:
        post(sc.url + "/v1/regression-runs", {"status": "fail", "regressed": ["exact"]})
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT status, count FROM offline_regression_counts").fetchall() == [("fail", 1)]
    assert json.loads(conn.execute("SELECT body FROM offline_regression_runs").fetchone()[0])["regressed"] == ["exact"]
    conn.close()
    with start_in_thread(cfg) as sc:
        assert 'llm_eval_regression_runs_total{status="fail"} 1.0' in metrics(sc)


def test_with_a_token_pushes_need_it(tmp_path, capsys):
    from otel_llm_eval.sidecar.server import start_in_thread

    bench_db = tmp_path / "bench.db"
    assert main(["bench", "record", "--db", str(bench_db), "--benchmark", "B", "--model", "m", "--score", "1"]) == 0
    cfg = {"state": {"db_path": str(tmp_path / "s.db")}, "server": {"auth_token": "s3cret"}}
    with start_in_thread(cfg) as sc:
        assert main(["bench", "export", "--db", str(bench_db), "--push", sc.url]) == 1
        assert "401" in capsys.readouterr().err
        assert main(["bench", "export", "--db", str(bench_db), "--push", sc.url, "--token", "s3cret"]) == 0


def test_pending_work_is_bounded_and_refused_with_503_past_the_cap():
    p = OfflinePlugin()
    p.cfg["max_pending"] = 2
    p.add_benchmarks({"records": [{"benchmark": "B", "model": "m", "score": 1, "date": "2026-01-01"},
                                  {"benchmark": "B", "model": "m", "score": 1, "date": "2026-01-02"}]})
    with pytest.raises(PayloadError) as exc:
        p.add_regression_run({"status": "pass"})
    assert exc.value.status == 503 and p.dropped == 1
