"""`otel-llm-eval sidecar` as users run it: refuses a public bind without a token, stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from conftest import free_port
from sidecar_fixtures import SidecarSubprocess, http_get

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_binding_all_interfaces_without_a_token_exits_2_and_says_how_to_set_one(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "otel_llm_eval.cli", "sidecar", "--host", "0.0.0.0",
                           "--port", str(free_port()), "--db", str(tmp_path / "s.db")],
                          capture_output=True, text=True, timeout=30,
                          env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_LLM_EVAL_")})
    assert proc.returncode == 2
    assert "OTEL_LLM_EVAL_SERVER__AUTH_TOKEN" in proc.stderr and "server.auth_token" in proc.stderr


def test_a_config_file_error_names_the_key(tmp_path):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text("ingest:\n  queue_max_batches: lots\n")
    proc = subprocess.run([sys.executable, "-m", "otel_llm_eval.cli", "sidecar", "--config", str(cfg),
                           "--port", str(free_port()), "--db", str(tmp_path / "s.db")],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "ingest.queue_max_batches" in proc.stderr


def test_sigterm_drains_and_flushes_then_exits_0(tmp_path):
    sc = SidecarSubprocess(tmp_path, {"plugins": [], "state": {"flush_interval_seconds": 60}})
    try:
        sc.start()
        status, body = http_get(sc.url + "/healthz")
        assert status == 200 and b"ok" in body
        os.kill(sc.proc.pid, signal.SIGTERM)
        assert sc.proc.wait(20) == 0
    finally:
        sc.stop()
    import sqlite3

    with sqlite3.connect(tmp_path / "sidecar.db") as conn:  # the final flush ran despite the 60 s interval
        assert conn.execute("SELECT value FROM series WHERE metric = 'llm_eval_state_flush_total'").fetchone()[0] >= 1
