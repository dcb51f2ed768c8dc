"""examples/app.py really exports over OTLP/HTTP: LLM spans, judge evaluations and feedback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from otlp_receiver import OTLPReceiver

from otel_llm_eval import semconv

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]
APP = Path(__file__).resolve().parents[2] / "examples" / "app.py"


def test_example_app_exports_llm_spans_evaluations_and_feedback():
    receiver = OTLPReceiver()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint
        out = subprocess.run([sys.executable, str(APP), "--requests", "12", "--interval", "0"], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        spans = receiver.snapshot()
    finally:
        receiver.close()
    llm = [s for s in spans if s["attributes"].get("gen_ai.operation.name") == "chat"]
    assert len(llm) == 12
    assert {s["attributes"][semconv.EXPERIMENT_ID] for s in llm} == {"prompt-style"}
    sources = [s["attributes"].get(semconv.EVALUATION_SOURCE) for s in spans]
    assert sources.count("code") >= 1 and sources.count("user") >= 1
    llm_ids = {s["span_id"] for s in llm}
    assert all(s["parent_span_id"] in llm_ids for s in spans
               if s["attributes"].get(semconv.EVALUATION_SOURCE) == "code")
