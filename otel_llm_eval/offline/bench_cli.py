"""`otel-llm-eval bench record|show|export`: benchmark history in SQLite.

Exit codes: 0 ok, 1 push failed, 2 invalid input or no history.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import urllib.error
from pathlib import Path

from . import bench


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="bench_command", metavar="ACTION")
    db_help = f"SQLite history (default ${bench.DB_ENV} or ./{bench.DEFAULT_DB})"
    r = sub.add_parser("record", help="record one benchmark score")
    r.add_argument("--benchmark", required=True, help="e.g. MMLU")
    r.add_argument("--model", required=True, help="e.g. gpt-4o")
    r.add_argument("--score", type=float, required=True)
    r.add_argument("--latency", type=float, help="seconds per item (mean)")
    r.add_argument("--cost", type=float, help="USD (per item or per run: be consistent)")
    r.add_argument("--date", help="YYYY-MM-DD (default today)")
    r.add_argument("--db", help=db_help)
    s = sub.add_parser("show", help="history: one row per date and model, a column per benchmark")
    s.add_argument("--db", help=db_help)
    s.add_argument("--benchmark", help="only this benchmark")
    s.add_argument("--model", help="only this model")
    s.add_argument("--json", action="store_true", help="the records as JSON")
    e = sub.add_parser("export", help="latest scores as Prometheus text, or --push to a sidecar")
    e.add_argument("--db", help=db_help)
    e.add_argument("--out", help="write the text here (e.g. for node_exporter's textfile collector)")
    e.add_argument("--push", metavar="SIDECAR_URL", help="POST the history to SIDECAR_URL/v1/benchmarks")
    e.add_argument("--token", help="bearer token for --push")


def _db(args) -> str:
    return args.db or bench.default_db()


def run(args: argparse.Namespace) -> int:
    cmd = getattr(args, "bench_command", None)
    try:
        if cmd == "record":
            rec = bench.record(_db(args), bench.make_record(
                benchmark=args.benchmark, model=args.model, score=args.score, latency_seconds=args.latency,
                cost_usd=args.cost, date=args.date))
            print(f"recorded {rec.benchmark} {rec.model} {rec.score:g} on {rec.date} in {_db(args)}")
            return 0
        if cmd == "show":
            recs = bench.history(_db(args), benchmark=args.benchmark, model=args.model)
            if args.json:
                sys.stdout.write(json.dumps([r.as_dict() for r in recs], indent=2) + "\n")
            elif not recs:
                print("no records")
            else:
                sys.stdout.write(bench.format_table(*bench.table(recs)))
            return 0
        if cmd == "export":
            recs = bench.history(_db(args))
            if args.push:
                try:
                    n = bench.push(args.push, recs, token=args.token)
                except urllib.error.HTTPError as e:
                    detail = e.read(500).decode("utf-8", "replace")
                    print(f"error: {args.push} answered {e.code} {e.reason}: {detail}", file=sys.stderr)
                    return 1
                except (urllib.error.URLError, OSError, ValueError) as e:
                    print(f"error: cannot push to {args.push}: {getattr(e, 'reason', e)}", file=sys.stderr)
                    return 1
                print(f"pushed {len(recs)} records to {args.push}, {n} accepted")
                return 0
            text = bench.prometheus_text(recs)
            if args.out:
                tmp = Path(args.out + ".tmp")  # rename: a scraper never reads half a file
                tmp.write_text(text, encoding="utf-8")
                tmp.replace(args.out)
                print(f"wrote {args.out}")
            else:
                sys.stdout.write(text)
            return 0
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    except sqlite3.Error as e:
        print(f"error: {_db(args)} is not a usable benchmark database: {e}", file=sys.stderr)
        return 2
    print("usage: otel-llm-eval bench {record,show,export} ...", file=sys.stderr)
    return 2
