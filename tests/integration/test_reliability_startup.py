"""A sidecar that cannot run says so in one line naming the path or address and what to do, exit 2,
no traceback; a second sidecar on the same state is refused while the first keeps its data."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from conftest import free_port
from sidecar_fixtures import SidecarSubprocess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def run_sidecar(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_LLM_EVAL_")}
    return subprocess.run([sys.executable, "-m", "otel_llm_eval.cli", "sidecar", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def assert_one_clear_line(proc: subprocess.CompletedProcess, *must_contain: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    for text in must_contain:
        assert text in lines[0], lines[0]


def test_a_port_in_use_is_one_line_naming_the_address(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = run_sidecar("--port", str(port), "--db", str(tmp_path / "s.db"))
    assert_one_clear_line(proc, f"127.0.0.1:{port}", "in use", "--port")


def test_a_state_file_in_a_missing_directory_is_one_line_naming_the_directory(tmp_path):
    proc = run_sidecar("--port", str(free_port()), "--db", str(tmp_path / "nope" / "s.db"))
    assert_one_clear_line(proc, str(tmp_path / "nope"), "does not exist", "--db")


def test_a_corrupt_state_file_is_one_line_naming_it_and_how_to_recover(tmp_path):
    db = tmp_path / "s.db"
    db.write_bytes(b"this is not an SQLite database, it is a text file " * 100)
    proc = run_sidecar("--port", str(free_port()), "--db", str(db))
    assert_one_clear_line(proc, str(db), "corrupt", "move it aside")


def test_a_state_path_that_is_a_directory_is_one_line_naming_it(tmp_path):
    (tmp_path / "dir.db").mkdir()
    proc = run_sidecar("--port", str(free_port()), "--db", str(tmp_path / "dir.db"))
    assert_one_clear_line(proc, str(tmp_path / "dir.db"))


def test_a_second_sidecar_on_the_same_state_is_refused_naming_the_holder(tmp_path):
    with SidecarSubprocess(tmp_path, {"plugins": []}) as first:
        proc = run_sidecar("--port", str(free_port()), "--db", str(first.db))
        assert_one_clear_line(proc, str(first.db), f"pid {first.proc.pid}", "in use")


def test_a_config_with_several_mistakes_lists_every_one_in_one_message(tmp_path):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text("server:\n  prot: 9000\nanalyses: {}\ningest:\n  workers: many\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_LLM_EVAL_")}
    proc = subprocess.run([sys.executable, "-m", "otel_llm_eval.cli", "sidecar", "--config", str(cfg),
                           "--port", str(free_port()), "--db", str(tmp_path / "s.db")],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    for text in ("server.prot", "did you mean 'server.port'", "analyses", "ingest.workers", "3 problems"):
        assert text in proc.stderr
