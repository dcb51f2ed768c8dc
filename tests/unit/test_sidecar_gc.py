"""The sidecar process raises the cyclic collector's young-generation threshold and freezes its
start-up heap (ingest frees its short-lived objects by reference counting; at the default
threshold the collector took 15-20% of the ingest thread). Only the sidecar's own process: importing
the package in an app changes nothing."""

from __future__ import annotations

import subprocess
import sys


def run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_the_sidecar_process_tunes_its_collector():
    got = run("import gc; from otel_llm_eval.sidecar.cli import tune_gc; tune_gc(); "
              "print(gc.get_threshold()[0], gc.get_freeze_count() > 0)")
    assert got == "20000 True"


def test_importing_the_package_and_the_sidecar_leaves_an_apps_collector_alone():
    got = run("import gc; before = gc.get_threshold(); import otel_llm_eval, otel_llm_eval.sidecar.server; "
              "print(gc.get_threshold() == before)")
    assert got == "True"
