"""Benchmark history: record, show (the seed's table), export (Prometheus text), push to a real sidecar."""

from __future__ import annotations

import sqlite3
import urllib.request

import pytest

from otel_llm_eval.cli import main
from otel_llm_eval.offline import bench


def rec(db, benchmark, model, score, date, *extra):
    return main(["bench", "record", "--db", str(db), "--benchmark", benchmark, "--model", model,
                 "--score", str(score), "--date", date, *extra])


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "bench.db"
    assert rec(path, "MMLU", "gpt-4o", 0.86, "2026-11-01", "--latency", "1.2", "--cost", "0.03") == 0
    assert rec(path, "HumanEval", "gpt-4o", 0.90, "2026-11-01", "--latency", "0.8") == 0
    assert rec(path, "MMLU", "gpt-4o-mini", 0.82, "2026-11-01") == 0
    assert rec(path, "MMLU", "gpt-4o", 0.87, "2026-11-20") == 0
    return path


def test_show_prints_one_row_per_date_and_model_with_a_column_per_benchmark(db, capsys):
    capsys.readouterr()
    assert main(["bench", "show", "--db", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["date", "model", "HumanEval", "MMLU", "latency_s", "cost_usd"]
    assert lines[2].split() == ["2026-11-01", "gpt-4o", "0.9", "0.86", "1", "0.03"]  # latency mean of 1.2 and 0.8
    assert lines[3].split() == ["2026-11-01", "gpt-4o-mini", "-", "0.82", "-", "-"]
    assert lines[4].split() == ["2026-11-20", "gpt-4o", "-", "0.87", "-", "-"]


def test_recording_the_same_day_again_replaces_the_score(db, capsys):
    assert rec(db, "MMLU", "gpt-4o", 0.88, "2026-11-20") == 0
    recs = bench.history(db, benchmark="MMLU", model="gpt-4o")
    assert [(r.date, r.score) for r in recs] == [("2026-11-01", 0.86), ("2026-11-20", 0.88)]


def test_export_prints_the_latest_score_per_benchmark_and_model(db, capsys):
    capsys.readouterr()
    assert main(["bench", "export", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1] == "# TYPE llm_benchmark_score gauge"
    samples = [line for line in out.splitlines() if not line.startswith("#")]
    assert samples == ['llm_benchmark_score{benchmark="HumanEval",model="gpt-4o"} 0.9',
                       'llm_benchmark_score{benchmark="MMLU",model="gpt-4o"} 0.87',
                       'llm_benchmark_score{benchmark="MMLU",model="gpt-4o-mini"} 0.82']


def test_export_text_is_accepted_by_the_prometheus_parser(db, tmp_path, capsys):
    from prometheus_client.parser import text_string_to_metric_families

    out = tmp_path / "bench.prom"
    assert main(["bench", "export", "--db", str(db), "--out", str(out)]) == 0
    fams = list(text_string_to_metric_families(out.read_text()))
    assert [f.name for f in fams] == ["llm_benchmark_score"] and len(fams[0].samples) == 3


def test_label_values_are_escaped_in_the_text_format():
    r = bench.make_record(benchmark='my "bench"\\x', model="m\nx", score=1.0, date="2026-01-01")
    assert 'benchmark="my \\"bench\\"\\\\x",model="m\\nx"' in bench.prometheus_text([r])


@pytest.mark.parametrize("args,message", [
    (["--score", "nan"], "score must be a finite number"),
    (["--score", "0.5", "--date", "2026-13-01"], "date must be YYYY-MM-DD"),
    (["--score", "0.5", "--latency", "-1"], "latency must be >= 0"),
    (["--score", "0.5", "--benchmark", " "], "benchmark must be a non-empty string"),
], ids=["NaN score", "impossible date", "negative latency", "blank benchmark"])
def test_record_rejects_bad_values_with_exit_2(tmp_path, capsys, args, message):
    base = {"--benchmark": "MMLU", "--model": "m"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    argv = ["bench", "record", "--db", str(tmp_path / "b.db")] + [x for kv in base.items() for x in kv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_show_without_history_exits_2_and_says_how_to_start(tmp_path, capsys):
    assert main(["bench", "show", "--db", str(tmp_path / "none.db")]) == 2
    assert "bench record" in capsys.readouterr().err


def test_a_file_that_is_not_sqlite_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.db"
    bad.write_text("not a database at all " * 100)
    assert main(["bench", "show", "--db", str(bad)]) == 2
    assert "not a usable benchmark database" in capsys.readouterr().err


def test_the_default_database_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(bench.DB_ENV, str(tmp_path / "env.db"))
    assert main(["bench", "record", "--benchmark", "B", "--model", "m", "--score", "1"]) == 0
    assert sqlite3.connect(tmp_path / "env.db").execute("SELECT count(*) FROM benchmark_results").fetchone() == (1,)


@pytest.mark.timeout(60)
def test_export_push_makes_the_scores_appear_on_a_real_sidecars_metrics_and_survive_a_restart(db, tmp_path, capsys):
    from otel_llm_eval.sidecar.server import start_in_thread

    state = str(tmp_path / "sidecar.db")
    cfg = {"state": {"db_path": state, "flush_interval_seconds": 0.1}}
    sc = start_in_thread(cfg)
    try:
        assert main(["bench", "export", "--db", str(db), "--push", sc.url]) == 0
        assert "pushed 4 records" in capsys.readouterr().out
        metrics = urllib.request.urlopen(sc.url + "/metrics", timeout=10).read().decode()
        assert 'llm_benchmark_score{benchmark="MMLU",model="gpt-4o"} 0.87' in metrics
        assert 'llm_benchmark_score{benchmark="MMLU",model="gpt-4o-mini"} 0.82' in metrics
    finally:
        sc.stop()
    sc = start_in_thread(cfg)  # same state file: the plugin restores what it flushed
    try:
        metrics = urllib.request.urlopen(sc.url + "/metrics", timeout=10).read().decode()
        assert 'llm_benchmark_score{benchmark="HumanEval",model="gpt-4o"} 0.9' in metrics
    finally:
        sc.stop()


def test_push_to_an_unreachable_sidecar_exits_1(db, capsys):
    from conftest import free_port

    assert main(["bench", "export", "--db", str(db), "--push", f"http://127.0.0.1:{free_port()}"]) == 1
    assert "cannot push" in capsys.readouterr().err
