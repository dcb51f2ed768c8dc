"""Reusable sidecar fixtures: an in-process sidecar (thread) and a subprocess (stopped by PID).

    from sidecar_fixtures import SidecarSubprocess, sidecar_thread  # noqa: F401 (fixture)

    def test_x(sidecar_thread):            # in-process, plugins off, state in tmp_path
        url = sidecar_thread.url

    def test_y(tmp_path):
        with SidecarSubprocess(tmp_path, {"plugins": []}) as sc:   # `otel-llm-eval sidecar`
            sc.kill9(); sc.start()                                 # same port and database

`metric_value(text, name, **labels)` sums the samples of one metric in an exposition text.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from conftest import free_port


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of samples named exactly `name` whose labels include `labels` (0.0 when none)."""
    total = 0.0
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        sname, _, rest = series.partition("{")
        if sname != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += float(value)
    return total


def http_get(url: str, token: str | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class SidecarSubprocess:
    """`python -m otel_llm_eval.cli sidecar` on a fixed free port with its database in `directory`."""

    def __init__(self, directory: Path, config: dict[str, Any] | None = None, port: int | None = None):
        self.directory = Path(directory)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = self.directory / "sidecar.db"
        self.config_path = self.directory / "eval.yaml"
        self.config_path.write_text(json.dumps(config or {"plugins": []}))  # JSON is YAML
        self.log_path = self.directory / "sidecar.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "SidecarSubprocess":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "otel_llm_eval.cli", "sidecar", "--config", str(self.config_path),
             "--port", str(self.port), "--db", str(self.db)],
            stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sidecar exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                status, _ = http_get(self.url + "/readyz", timeout=1)
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sidecar not ready after {timeout}s: {self.log_path.read_text()[-2000:]}")

    def _children(self) -> list[int]:
        """PIDs of the sidecar's child processes (ingest workers), from /proc."""
        pids: list[int] = []
        if not self.proc:
            return pids
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*"):
            try:
                pids += [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                pass
        return pids

    def _reap(self, pids: list[int]) -> None:
        for pid in pids:  # children orphaned by a SIGKILL (a worker caught mid-start), stopped by PID
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def kill9(self) -> None:
        """SIGKILL by PID: no drain, no final flush (what a crash looks like)."""
        if self.proc and self.proc.poll() is None:
            children = self._children()
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            self._reap(children)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            children = self._children()
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            self._reap(children)

    def metrics(self) -> str:
        status, body = http_get(self.url + "/metrics")
        assert status == 200, body
        return body.decode()

    def __enter__(self) -> "SidecarSubprocess":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@pytest.fixture
def sidecar_thread(tmp_path):
    """An in-process sidecar (no plugins, state in tmp_path) on a free loopback port."""
    from otel_llm_eval.sidecar.server import start_in_thread

    sc = start_in_thread({"state": {"db_path": str(tmp_path / "sidecar.db")}, "plugins": []}, environ={})
    try:
        yield sc
    finally:
        sc.stop()


@pytest.fixture
def sidecar_subprocess(tmp_path):
    """A started `otel-llm-eval sidecar` subprocess (no plugins); stopped by PID afterwards."""
    sc = SidecarSubprocess(tmp_path)
    try:
        yield sc.start()
    finally:
        sc.stop()
