"""Bounded connections: 1,100 idle sockets under nofile=1024 do not starve /healthz, idle and
half-sent requests are closed, and the log stays a few lines (a real sidecar process)."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time

import httpx
import pytest
from conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def start(tmp_path, nofile: int, config: str) -> tuple[subprocess.Popen, int, str]:
    port = free_port()
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(config)
    log_path = tmp_path / "sidecar.log"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_LLM_EVAL_")}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "otel_llm_eval.cli", "sidecar", "--config", str(cfg),
                                 "--port", str(port), "--db", str(tmp_path / "s.db")],
                                stdout=log, stderr=log, preexec_fn=limit, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc, port, str(log_path)
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(open(log_path).read())


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def test_1100_idle_connections_under_nofile_1024_leave_healthz_answering_and_the_log_short(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1400:
        pytest.skip("this test needs 1,400 file descriptors in the test process")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1400), hard))
    proc, port, log_path = start(tmp_path, 1024, "plugins: []\n")
    idle: list[socket.socket] = []
    try:
        for _ in range(1100):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            idle.append(s)
        time.sleep(1.0)  # let the sidecar accept them (no assertion on time: the answer below is the check)
        r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30)
        assert r.status_code == 200
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
        assert 'reason="connection_evicted"' in metrics
    finally:
        for s in idle:
            s.close()
        stop(proc)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    lines = open(log_path).read().splitlines()
    assert len(lines) < 20, lines[:20]


@pytest.mark.parametrize("what,payload", [
    ("a connection that never sends a byte", b""),
    ("a request whose headers never finish", b"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\n"),
    ("a request whose body never finishes", b"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                            b"Content-Type: application/x-protobuf\r\nContent-Length: 500\r\n\r\nabc"),
])
def test_idle_and_half_sent_requests_are_closed_by_the_sidecar(tmp_path, what, payload):
    proc, port, _ = start(tmp_path, 1024, "plugins: []\nserver:\n  request_timeout_seconds: 0.5\n")
    try:
        with socket.create_connection(("127.0.0.1", port)) as s:
            if payload:
                s.sendall(payload)
            s.settimeout(30)  # generous: the sidecar closes long before; a hang fails the test
            try:
                got = s.recv(4096)  # EOF (b"") or a reset once the sidecar closes it
            except ConnectionResetError:
                got = b""
            assert got == b""
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert 'reason="connection_timed_out"' in metrics
    finally:
        stop(proc)
