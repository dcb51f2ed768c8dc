"""`otel-llm-eval bundle [--out DIR] [--check]`: regenerate dashboards/, alerts/, processors/, deploy/ and docs/metrics.md.

Without --check, writes every generated file under DIR (default: the current directory) and prints
what changed. With --check, writes nothing and exits 1 naming every stale file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="directory that holds dashboards/, alerts/, processors/ (default: .)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 and name the files that are stale")
    parser.add_argument("--runbook-base-url", default=None, metavar="URL",
                        help="base of the alerts' runbook_url annotations (default: docs/runbooks.md)")


def run(args: argparse.Namespace) -> int:
    from otel_llm_eval.bundle.common import set_runbook_base
    from otel_llm_eval.bundle.generate import render_all, stale, write

    if args.runbook_base_url:
        set_runbook_base(args.runbook_base_url)
    try:
        files = render_all()
    except ImportError as e:  # grafanalib / PyYAML come with the `bundle` extra
        print(f"otel-llm-eval bundle needs the bundle extra ({e.name} is missing): "
              "pip install 'otel-llm-eval[bundle]'", file=sys.stderr)
        return 2
    out: Path = args.out
    if args.check:
        problems = stale(out, files)
        for rel, reason in problems:
            print(f"stale: {rel}: {reason}", file=sys.stderr)
        if problems:
            print(f"{len(problems)} generated file(s) are stale; run `otel-llm-eval bundle` and commit",
                  file=sys.stderr)
            return 1
        print(f"bundle up to date ({len(files)} files)")
        return 0
    changed = write(out, files)
    for rel in changed:
        print(f"wrote {rel}")
    print(f"{len(changed)} of {len(files)} file(s) changed")
    return 0
