"""Zero-code: the real `opentelemetry-instrument` command attaches the processor through the
`opentelemetry_post_instrument` entry point; spans go through the real OTLP/HTTP exporter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_binary
from fake_openai import ANSWER, FakeOpenAI
from otlp_receiver import OTLPReceiver

from otel_llm_eval import semconv

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

APP = '''
import os, openai
from opentelemetry import trace
from otel_llm_eval import record_feedback

client = openai.OpenAI(base_url=os.environ["FAKE_BASE_URL"], api_key="sk-test", max_retries=0)
tracer = trace.get_tracer("zero-code-app")
with tracer.start_as_current_span("handle request") as span:
    reply = client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "What is OpenTelemetry?"}])
record_feedback(span, "thumbs", 1, label="up")
print(reply.choices[0].message.content)
'''


@pytest.fixture
def servers():
    llm, receiver = FakeOpenAI(), OTLPReceiver()
    try:
        yield llm, receiver
    finally:
        llm.close()
        receiver.close()


def run_app(tmp_path: Path, llm: FakeOpenAI, receiver: OTLPReceiver, extra_env: dict[str, str]):
    instrument = require_binary(str(Path(sys.executable).parent / "opentelemetry-instrument"),
                                "opentelemetry-instrument")
    app = tmp_path / "app.py"
    app.write_text(APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_"))}
    env.update({
        "FAKE_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": "sk-test",
        "OTEL_SERVICE_NAME": "zero-code-app",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "span_only",
        **extra_env,
    })
    proc = subprocess.Popen([instrument, sys.executable, str(app)], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.strip() == ANSWER
    return receiver.snapshot(), err


def test_processor_attaches_under_opentelemetry_instrument_and_judges(tmp_path, servers):
    llm, receiver = servers
    config = tmp_path / "llm-eval.json"
    config.write_text(json.dumps({
        "experiments": [{"id": "deploy", "variants": {"stable": 0.9, "canary": 0.1}, "variant": "canary"}],
        "judge_options": {"input_usd_per_million_tokens": 1.0},
    }))
    spans, err = run_app(tmp_path, llm, receiver, {
        "OTEL_LLM_EVAL_ENABLED": "true",
        "OTEL_LLM_EVAL_CONFIG": str(config),
        "OTEL_LLM_EVAL_JUDGE": "openai",
        "OTEL_LLM_EVAL_JUDGE_MODEL": "judge-mini",
        "OTEL_LLM_EVAL_JUDGE_BASE_URL": llm.base_url,
        "OTEL_LLM_EVAL_JUDGE_SAMPLE_RATE": "1",
    })
    by_name = {}
    for s in spans:
        by_name.setdefault(s["name"], []).append(s)
    chat = [s for s in spans if s["attributes"].get("gen_ai.operation.name") == "chat"]
    assert len(chat) == 1, [s["name"] for s in spans]
    chat = chat[0]
    assert chat["resource"]["service.name"] == "zero-code-app"
    # stamped by the config-file experiment
    for s in (chat, by_name["handle request"][0]):
        assert s["attributes"][semconv.EXPERIMENTS] == ("deploy=canary",)
        assert s["attributes"][semconv.EXPERIMENT_WEIGHTS] == ("deploy=stable:0.9,canary:0.1",)
    evaluations = [s for s in spans if semconv.EVALUATION_NAME in s["attributes"]]
    judge = [s for s in evaluations if s["attributes"][semconv.EVALUATION_SOURCE] == "llm_judge"]
    user = [s for s in evaluations if s["attributes"][semconv.EVALUATION_SOURCE] == "user"]
    assert len(judge) == 1 and len(user) == 1
    assert judge[0]["parent_span_id"] == chat["span_id"] and judge[0]["trace_id"] == chat["trace_id"]
    assert judge[0]["attributes"][semconv.EVALUATION_SCORE_VALUE] == 4.0
    assert judge[0]["attributes"][semconv.JUDGE_COST_USD] == pytest.approx(12 / 1e6)
    assert judge[0]["attributes"][semconv.EXPERIMENT_VARIANT] == "canary"
    assert judge[0]["events"] == [semconv.EVALUATION_EVENT]
    assert user[0]["parent_span_id"] == by_name["handle request"][0]["span_id"]
    assert [r["body"]["model"] for r in llm.requests] == ["gpt-test", "judge-mini"]


def test_a_bad_configuration_is_reported_and_the_app_still_runs(tmp_path, servers):
    llm, receiver = servers
    spans, err = run_app(tmp_path, llm, receiver, {
        "OTEL_LLM_EVAL_ENABLED": "true",
        "OTEL_LLM_EVAL_JUDGE_SAMPLE_RATE": "lots",
    })
    assert "OTEL_LLM_EVAL_JUDGE_SAMPLE_RATE='lots' is not a valid float" in err
    assert any(s["attributes"].get("gen_ai.operation.name") == "chat" for s in spans)
    assert not any(semconv.EXPERIMENTS in s["attributes"] for s in spans)
    assert not any(s["attributes"].get(semconv.EVALUATION_SOURCE) == "llm_judge" for s in spans)
