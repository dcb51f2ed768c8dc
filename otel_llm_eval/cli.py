"""`otel-llm-eval` command line: one subcommand per module, imported only when it runs.

Each subcommand module defines `add_arguments(parser: argparse.ArgumentParser) -> None` and
`run(args: argparse.Namespace) -> int` (the exit code). Keeping them in their own modules keeps
`otel-llm-eval --help` fast and lets each part of the tree own its command.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "sidecar": ("otel_llm_eval.sidecar.cli", "run the evaluation sidecar (OTLP in, Prometheus metrics out)"),
    "demo": ("otel_llm_eval.demo", "run the whole loop on simulated traffic and print a report"),
    "bundle": ("otel_llm_eval.bundle.cli", "regenerate dashboards/, alerts/ and processors/ from the catalog"),
    "regress": ("otel_llm_eval.offline.regress_cli", "regression gate for CI: run a dataset, compare to a baseline"),
    "dataset": ("otel_llm_eval.offline.dataset_cli", "validate, inspect, sample, diff and export datasets"),
    "bench": ("otel_llm_eval.offline.bench_cli", "record and show benchmark history"),
    "cost": ("otel_llm_eval.offline.cost_cli", "monthly cost of evaluation for given sample rates, or rates for a budget"),
}


def _load(name: str):
    module, _ = SUBCOMMANDS[name]
    return importlib.import_module(module)


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otel-llm-eval", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only the chosen subcommand's module is imported (its dependencies may be an extra).
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (_, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            _load(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return int(_load(args.command).run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
