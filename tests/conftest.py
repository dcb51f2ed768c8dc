"""Fixtures shared by every test: free loopback ports and CI-aware requirements on binaries."""

from __future__ import annotations

import os
import shutil
import socket

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_binary(*names: str) -> str:
    """Path of the first binary found; skip when absent, but fail under CI=true (never skip in CI)."""
    for name in names:
        path = shutil.which(name) or (name if os.path.isabs(name) and os.access(name, os.X_OK) else None)
        if path:
            return path
    msg = f"required binary not found: {' or '.join(names)} (make test installs it when run as root)"
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture
def port() -> int:
    return free_port()
