"""Run the sidecar: in the foreground (the CLI) or in a background thread (tests, the demo).

    from otel_llm_eval.sidecar.server import start_in_thread
    sc = start_in_thread({"state": {"db_path": str(tmp_path / "s.db")}}, port=0)
    ... export OTLP to f"{sc.url}/v1/traces", scrape f"{sc.url}/metrics" ...
    sc.stop()

`start_in_thread(config=None, *, host="127.0.0.1", port=0, config_path=None, plugins=None,
clock=None) -> RunningSidecar`: `config` is a partial config dict merged over the defaults
(and over `config_path` and the environment); port 0 picks a free port. RunningSidecar has
`.url`, `.host`, `.port`, `.sidecar` (the core: `.state`, `.config`, `.ctx`, `.flush()`,
`.tick()`), `.app` and `.stop()` (drains, flushes, closes; idempotent). It is also a context manager.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
import threading
import time
from typing import Any, Callable, Mapping

from .config import load_config
from .core import Sidecar
from .startup import StartupError

log = logging.getLogger(__name__)


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket; StartupError (one line: the address and what to do) when it cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(512)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise StartupError(f"address {host}:{port} is already in use: stop the process listening there or "
                               "choose another port (--port / server.port)") from None
        if e.errno in (errno.EACCES, errno.EPERM):
            raise StartupError(f"not allowed to listen on {host}:{port} ({e.strerror}): use a port above 1023 "
                               "(--port / server.port)") from None
        raise StartupError(f"cannot listen on {host}:{port} ({e.strerror}): check --host / server.host") from None
    sock.setblocking(False)
    return sock


def _uvicorn_server(app: Any, sidecar: Sidecar) -> Any:
    """uvicorn with bounded connections, a deadline per request and a rate-limited EMFILE log."""
    import uvicorn

    from .connections import install_log_limits, protocol_class

    srv = sidecar.config["server"]
    http = protocol_class(int(srv["max_connections"]), float(srv["request_timeout_seconds"]),
                          sidecar.connection_stats)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", http=http,
                            timeout_keep_alive=float(srv["timeout_keep_alive_seconds"]), limit_concurrency=None)
    install_log_limits()
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # we own signals
    return server


def build(config: Mapping[str, Any] | None = None, *, config_path: str | None = None,
          host: str | None = None, port: int | None = None, db_path: str | None = None,
          plugins: list | None = None, clock: Callable[[], float] | None = None,
          environ: Mapping[str, str] | None = None) -> Sidecar:
    """A configured (not yet started) Sidecar; raises ConfigError for bad config."""
    overrides: dict[str, Any] = dict(config or {})
    server = dict(overrides.get("server") or {})
    if host is not None:
        server["host"] = host
    if port is not None:
        server["port"] = port
    overrides["server"] = server
    if db_path is not None:
        overrides["state"] = {**(overrides.get("state") or {}), "db_path": db_path}
    cfg = load_config(config_path, overrides=overrides, environ=environ, plugins=plugins)
    kwargs: dict[str, Any] = {"plugins": plugins}
    if clock is not None:
        kwargs["clock"] = clock
    return Sidecar(cfg, **kwargs)


class RunningSidecar:
    def __init__(self, sidecar: Sidecar, app: Any, server: Any, thread: threading.Thread, host: str, port: int):
        self.sidecar = sidecar
        self.app = app
        self._server = server
        self._thread = thread
        self.host = host
        self.port = port
        self.url = f"http://{host if ':' not in host else '[' + host + ']'}:{port}"
        self._stopped = False

    def stop(self, timeout: float = 10.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._server.should_exit = True
        self._thread.join(timeout)
        self.sidecar.stop(timeout)

    def __enter__(self) -> "RunningSidecar":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_in_thread(config: Mapping[str, Any] | None = None, *, host: str = "127.0.0.1", port: int = 0,
                    config_path: str | None = None, plugins: list | None = None,
                    clock: Callable[[], float] | None = None,
                    environ: Mapping[str, str] | None = None) -> RunningSidecar:
    """Start a sidecar serving HTTP on a background thread; returns once it accepts connections."""
    from .api import create_app

    sidecar = build(config, config_path=config_path, host=host, port=port, plugins=plugins, clock=clock,
                    environ=environ)
    try:
        sock = _bind(host, port)
    except StartupError:
        sidecar.store.close()
        raise
    actual_port = sock.getsockname()[1]
    sidecar.start()
    app = create_app(sidecar)
    server = _uvicorn_server(app, sidecar)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])),
                              name="sidecar-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not server.started:
        sidecar.stop()
        raise RuntimeError("sidecar HTTP server did not start")
    return RunningSidecar(sidecar, app, server, thread, host, actual_port)


def serve(sidecar: Sidecar) -> int:
    """Serve in the foreground until SIGINT/SIGTERM; drains and flushes on the way out."""
    from .api import create_app

    host = sidecar.config["server"]["host"]
    port = int(sidecar.config["server"]["port"])
    try:
        sock = _bind(host, port)
    except StartupError:
        sidecar.store.close()  # releases the state lock; nothing was started
        raise
    sidecar.start()
    server = _uvicorn_server(create_app(sidecar), sidecar)

    def _stop(signum: int, frame: Any) -> None:
        server.should_exit = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    log.warning("otel-llm-eval sidecar listening on http://%s:%d (state %s)", host, sock.getsockname()[1],
                sidecar.config["state"]["db_path"])
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:
        sidecar.stop()
    return 0
