"""`otel-llm-eval sidecar [--config eval.yaml] [--host 127.0.0.1] [--port 9318] [--db PATH]`."""

from __future__ import annotations

import argparse
import logging
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML config file (reference: docs/configuration.md)")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1; anything else needs server.auth_token)")
    parser.add_argument("--port", type=int, help="port (default 9318; 0 picks a free one)")
    parser.add_argument("--db", metavar="PATH", help="SQLite state file (default otel-llm-eval.db)")
    parser.add_argument("--log-level", default="WARNING", help="Python logging level (default WARNING)")


def tune_gc() -> None:
    """Fewer young-generation collections for this process (the sidecar's own, never an app's).

    Ingest allocates and frees millions of short-lived objects (decoded spans, attribute dicts)
    that reference counting frees on its own; at CPython's default threshold (700 allocations) the
    cyclic collector runs every few spans and took 15-20% of the ingest thread. What was built at
    start (modules, config, restored state) is frozen out of the collector's scans."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .config import ConfigError
    from .server import build, serve
    from .startup import StartupError

    # A sidecar that cannot run says why in one line (path or address + what to do) and exits 2:
    # operators read this in a container log, where a traceback hides the one line that matters.
    try:
        sidecar = build(config_path=args.config, host=args.host, port=args.port, db_path=args.db)
        tune_gc()
        return serve(sidecar)
    except (ConfigError, StartupError, ValueError) as e:
        print(f"otel-llm-eval sidecar: {e}", file=sys.stderr)
        return 2
