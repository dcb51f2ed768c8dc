"""Built-in judges: the heuristic judge, and the OpenAI-compatible judge against a real local HTTP server."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from otel_llm_eval.processor import HeuristicJudge, OpenAIJudge
from otel_llm_eval.processor.judges import parse_judge_reply
from otel_llm_eval.semconv import LLMCall

HEURISTIC = [
    ("an empty output scores 1", dict(), LLMCall(completion="  "), 1.0, "empty"),
    ("a refusal scores 2", dict(), LLMCall(completion="I'm sorry, but I can't help with that."), 2.0, "refusal"),
    ("a too short answer scores 3", dict(min_chars=20), LLMCall(completion="ok"), 3.0, "shorter"),
    ("a too long answer scores 3", dict(max_chars=5), LLMCall(completion="x" * 10), 3.0, "longer"),
    ("a cut-off answer scores 3", dict(), LLMCall(completion="partial", finish_reason="length"), 3.0, "cut off"),
    ("invalid JSON scores 1 when JSON is expected", dict(expect_json=True), LLMCall(completion="{nope"), 1.0, "JSON"),
    ("valid JSON scores 5 when JSON is expected", dict(expect_json=True), LLMCall(completion='{"a": 1}'), 5.0, "ok"),
    ("a normal answer scores 5", dict(), LLMCall(completion="Paris is the capital of France."), 5.0, "ok"),
]


@pytest.mark.parametrize("kwargs,call,score,why", [h[1:] for h in HEURISTIC], ids=[h[0] for h in HEURISTIC])
def test_heuristic_judge(kwargs, call, score, why):
    result = HeuristicJudge(**kwargs)(call)
    assert result.score == score
    assert why in result.explanation
    assert result.label == ("pass" if score >= 4 else "fail")


REPLIES = [
    ("plain JSON", '{"score": 4, "explanation": "good"}', (4.0, "good")),
    ("fenced JSON", '```json\n{"score": 2, "explanation": "meh"}\n```', (2.0, "meh")),
    ("JSON inside prose", 'Sure! {"score": "5", "explanation": "great"} Hope it helps', (5.0, "great")),
]


@pytest.mark.parametrize("content,expected", [r[1:] for r in REPLIES], ids=[r[0] for r in REPLIES])
def test_judge_replies_are_parsed(content, expected):
    assert parse_judge_reply(content) == expected


@pytest.mark.parametrize("content", ["", "no json here", '{"score": 9}', '{"score": "high"}', "[1, 2]"],
                         ids=["empty", "prose", "out of range", "non-numeric", "not an object"])
def test_malformed_judge_replies_raise_value_error(content):
    with pytest.raises(ValueError):
        parse_judge_reply(content)


class FakeLLM:
    """A small OpenAI-compatible chat-completions server on 127.0.0.1 with a scripted reply list."""

    def __init__(self, script):
        self.script = list(script)
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((self.path, dict(self.headers), body))
                step = outer.script.pop(0) if outer.script else ("ok", '{"score": 3, "explanation": "x"}')
                kind, payload = step
                if kind == "sleep":
                    time.sleep(payload)
                    kind, payload = "ok", '{"score": 3, "explanation": "slow"}'
                if kind == "status":
                    self.send_response(payload)
                    self.end_headers()
                    return
                if kind == "raw":
                    data = payload.encode()
                else:
                    data = json.dumps({
                        "id": "x", "object": "chat.completion", "model": body["model"],
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": payload},
                                     "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200},
                    }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_llm():
    servers = []

    def start(script):
        s = FakeLLM(script)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


CALL = LLMCall(prompt="What is 2+2?", completion="4")


def judge_for(server, **kwargs):
    j = OpenAIJudge(model="judge-model", base_url=server.base_url, api_key="sk-test", backoff_seconds=0.01,
                    input_usd_per_million_tokens=1.0, output_usd_per_million_tokens=5.0, **kwargs)
    return j


def test_openai_judge_scores_prices_and_sends_the_rubric(fake_llm):
    server = fake_llm([("ok", '{"score": 5, "explanation": "correct"}')])
    result = judge_for(server)(CALL)
    assert (result.score, result.label, result.explanation, result.error) == (5.0, "pass", "correct", None)
    assert result.cost_usd == pytest.approx((1000 * 1.0 + 200 * 5.0) / 1e6)
    path, headers, body = server.requests[0]
    assert path == "/v1/chat/completions" and headers["Authorization"] == "Bearer sk-test"
    assert body["model"] == "judge-model" and "What is 2+2?" in body["messages"][1]["content"]
    assert "JSON" in body["messages"][0]["content"]


JUDGE_FAILURES = [
    ("a malformed reply is an error record", [("ok", "I think it is fine")], "malformed_reply", 1),
    ("a body that is not JSON is an error record", [("raw", "<html>")], "malformed_reply", 1),
    ("a 400 is not retried", [("status", 400)], "http_400", 1),
    ("a 500 is retried until retries run out", [("status", 500)] * 3, "http_500", 3),
    ("a timeout is retried and reported", [("sleep", 0.6)] * 2, "timeout", 2),
]


@pytest.mark.parametrize("script,error,attempts", [f[1:] for f in JUDGE_FAILURES], ids=[f[0] for f in JUDGE_FAILURES])
def test_openai_judge_failures_never_raise(fake_llm, script, error, attempts):
    server = fake_llm(script)
    retries = attempts - 1 if error != "malformed_reply" and error != "http_400" else 2
    result = judge_for(server, retries=retries, timeout_seconds=0.2)(CALL)
    assert result.score is None and result.error == error
    # a request the client gave up on may be recorded by its server thread a moment later (load)
    deadline = time.monotonic() + 5
    while len(server.requests) < attempts and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(server.requests) == attempts


def test_openai_judge_recovers_after_a_retryable_error(fake_llm):
    server = fake_llm([("status", 429), ("status", 503), ("ok", '{"score": 2, "explanation": "weak"}')])
    result = judge_for(server, retries=2)(CALL)
    assert (result.score, result.label) == (2.0, "fail") and len(server.requests) == 3


def test_openai_judge_connection_refused_is_an_error_record():
    result = OpenAIJudge(model="m", base_url="http://127.0.0.1:9/v1", retries=0, timeout_seconds=1)(CALL)
    assert result.error == "connection"


def test_api_key_comes_from_the_environment_and_is_not_shown(monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-secret")
    judge = OpenAIJudge(model="m", base_url="http://127.0.0.1:9/v1", api_key_env="MY_JUDGE_KEY")
    assert judge._api_key == "sk-secret" and "sk-secret" not in repr(judge)
