"""Interop matrix: the real instrumentation libraries, pinned, through the processor and the OTLP
exporter to a real sidecar, with exact numbers.

Each stack (stacks.py) runs app.py in its own venv (.cache/interop/<stack>, built by
`make test-interop` / build_venvs.py): a plain, a streaming and a max_tokens=3 call against the
OpenAI-/Anthropic-compatible server of provider.py. The sidecar must then show exactly 3 requests,
36 input and 21 output tokens, the catalogue cost, one finish_reason_length failure and nothing
else, and the in-app judge must have seen the three completions with their finish reasons. A stack
whose venv is missing is skipped locally and fails under CI=true.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import IN_CI
from sidecar_fixtures import SidecarSubprocess, metric_value

from build_venvs import is_built, python_of
from provider import ANSWER, CUT_ANSWER, CUT_USAGE, USAGE, Provider
from stacks import STACKS

from otel_llm_eval.sidecar.ingest.text_join import SETTLE_SECONDS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

APP = Path(__file__).resolve().parent / "app.py"
INPUT_TOKENS = 2 * USAGE[0] + CUT_USAGE[0]
OUTPUT_TOKENS = 2 * USAGE[1] + CUT_USAGE[1]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    llm = Provider()
    sidecar = SidecarSubprocess(tmp_path_factory.mktemp("interop"),
                                {"plugins": [], "analysis": {"interval_seconds": 0.5}}).start()
    try:
        yield llm, sidecar
    finally:
        sidecar.stop()
        llm.close()


def _ingested(sidecar) -> float:
    return metric_value(sidecar.metrics(), "llm_eval_ingest_spans_total", signal="traces")


def _post_marker(sidecar) -> str:
    """One LLM span of its own service, posted after the app's batches: the sidecar applies
    batches in order, so once it is counted every earlier batch is too. Returns the service."""
    service = f"marker-{time.monotonic_ns()}"
    now_ns = time.time_ns()  # a span of now: the edge rejects times far from the sidecar's clock
    body = {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                               "scopeSpans": [{"spans": [{
                                   "traceId": os.urandom(16).hex(), "spanId": os.urandom(8).hex(), "name": "chat m",
                                   "startTimeUnixNano": str(now_ns - 1000), "endTimeUnixNano": str(now_ns),
                                   "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                                                  {"key": "gen_ai.request.model", "value": {"stringValue": "m"}}]}]}]}]}
    req = urllib.request.Request(sidecar.url + "/v1/traces", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200
    return service


def _failures(text: str, service: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("llm_check_failures_total{") and f'service="{service}"' in line:
            check = line.split('check="')[1].split('"')[0]
            out[check] = out.get(check, 0.0) + float(line.rpartition(" ")[2])
    return out


@pytest.mark.parametrize("name", list(STACKS))
def test_each_library_gives_exact_counts_tokens_cost_checks_and_judge_input(name, servers, tmp_path):
    stack = STACKS[name]
    if not is_built(stack):
        msg = f"interop venv for {name} is missing: run `make test-interop`"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    llm, sidecar = servers
    before = _ingested(sidecar)
    out = tmp_path / "judged.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACELOOP_", "LANGFUSE_"))}
    env.update({"OTEL_SDK_DISABLED": "false", "PYTHONDONTWRITEBYTECODE": "1"})
    cmd = [str(python_of(name)), str(APP), "--stack", name, "--llm-url", llm.base_url,
           "--sidecar", sidecar.url, "--out", str(out)]
    if stack.zero_code:  # the documented zero-code line: opentelemetry-instrument python app.py
        cmd = [str(python_of(name).parent / "opentelemetry-instrument")] + cmd
        env.update(stack.env)
        env.update({"OTEL_SERVICE_NAME": name, "OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "none",
                    "OTEL_LOGS_EXPORTER": "none", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": sidecar.url + "/v1/traces",
                    "OTEL_LLM_EVAL_ENABLED": "true", "OTEL_LLM_EVAL_JUDGE": "interop_judge:judge",
                    "OTEL_LLM_EVAL_JUDGE_SAMPLE_RATE": "1", "INTEROP_JUDGE_OUT": str(out),
                    "PYTHONPATH": str(APP.parent)})
        out.write_text("")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "not active" not in proc.stderr, proc.stderr[-4000:]  # no instrumentor failed to load
    exported = json.loads(proc.stdout.strip().splitlines()[-1])["exported"]
    deadline = time.monotonic() + 60
    if exported is None:  # every batch was accepted before the app exited: wait for a marker behind them
        marker = _post_marker(sidecar)
        while metric_value(sidecar.metrics(), "llm_requests_total", service=marker) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
    while exported is not None and _ingested(sidecar) < before + exported and time.monotonic() < deadline:
        time.sleep(0.1)  # the sidecar applies accepted batches on its ingest thread
    text = sidecar.metrics()

    assert metric_value(text, "llm_requests_total", service=name) == 3
    assert metric_value(text, "llm_tokens_total", service=name, direction="input") == INPUT_TOKENS
    assert metric_value(text, "llm_tokens_total", service=name, direction="output") == OUTPUT_TOKENS
    assert metric_value(text, "llm_cost_usd_total", service=name) == pytest.approx(
        INPUT_TOKENS * stack.prices[0] + OUTPUT_TOKENS * stack.prices[1], rel=1e-6)
    provider = "anthropic" if stack.client == "anthropic" else "openai"
    assert metric_value(text, "llm_requests_total", service=name, provider=provider) == 3
    assert _failures(text, name) == {"finish_reason_length": 1.0}

    judged = [json.loads(line) for line in out.read_text().splitlines()]
    if not stack.finish_reasons:  # no text on spans: not judged, counted with the reason
        assert judged == []
        assert metric_value(text, "llm_eval_judge_skipped_total", service=name, reason="no_text") == 3
        # the text came as log records: once the join window passed, no call is without text
        time.sleep(SETTLE_SECONDS + 1.5)  # not an assertion on time: the window must pass first
        assert metric_value(sidecar.metrics(), "llm_calls_without_text_total", service=name) == 0
        return
    assert sorted(j["completion"] for j in judged) == sorted([ANSWER, ANSWER, CUT_ANSWER])
    assert sorted((j["finish_reason"] for j in judged), key=str) == sorted(stack.finish_reasons, key=str)
    assert metric_value(text, "llm_eval_judge_skipped_total", service=name) == 0
