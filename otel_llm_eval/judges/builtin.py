"""Built-in judges: `judge(call: LLMCall) -> JudgeResult | float`, shared by the app and the sidecar.

The processor's background worker runs them in the app; the sidecar's judge plugin
(`otel_llm_eval.sidecar.plugins.judge`) runs the same classes on its own worker threads for apps in any
language. Standard library only: importing this module costs an app nothing.

Built in:
- `HeuristicJudge`: no network. Scores 1..5 from empty output, refusals, length bounds and, when
  asked, JSON validity. Source "code".
- `OpenAIJudge`: any OpenAI-compatible chat-completions endpoint (stdlib HTTP, no openai package).
  A rubric prompt asks for {"score": 1-5, "explanation": "..."}; timeout, retries with backoff;
  a malformed reply becomes a `JudgeResult` with `error` set, never an exception; token usage is
  priced into `cost_usd`. Source "llm_judge".

A judge may raise; the processor turns that into an error record. A judge class may set
`runs_inline = True` when it is pure CPU with bounded time (no I/O): the processor then calls it on
its worker thread directly instead of through the timeout runner thread. Judges run on worker threads
with instrumentation suppressed, so their own HTTP/LLM calls are not traced as app traffic.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Union

from otel_llm_eval.semconv import LLMCall


@dataclass(frozen=True)
class JudgeResult:
    """One evaluation. `score` None with `error` set means the judge failed (error = error.type).

    `label`: low-cardinality verdict ("pass", "fail", ...). `cost_usd`: what this judgement cost.
    """

    score: float | None
    label: str | None = None
    explanation: str | None = None
    cost_usd: float | None = None
    error: str | None = None


Judge = Callable[[LLMCall], Union[JudgeResult, float]]


def coerce_result(value: Any) -> JudgeResult:
    """Whatever a judge returned -> JudgeResult; garbage becomes an error record. Never raises."""
    if isinstance(value, JudgeResult):
        score = value.score
        if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))
                                  or not math.isfinite(score)):
            return JudgeResult(None, error="invalid_score", explanation=f"judge returned score {score!r}"[:200])
        if score is None and value.error is None:
            return JudgeResult(None, label=value.label, explanation=value.explanation,
                               cost_usd=value.cost_usd, error="missing_score")
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if math.isfinite(value):
            return JudgeResult(float(value))
        return JudgeResult(None, error="invalid_score", explanation=f"judge returned {value!r}")
    try:
        shown = repr(value)[:200]
    except Exception:
        shown = type(value).__name__
    return JudgeResult(None, error="invalid_result", explanation=f"judge returned {shown}")


_REFUSAL = re.compile(
    r"\b(i'?m sorry|i am sorry|i can(?:no|')t (?:help|assist|do that|comply)|i am unable to|"
    r"i'?m unable to|as an ai(?: language model)?|i (?:must|have to) decline|i won'?t be able to)\b",
    re.IGNORECASE,
)


class HeuristicJudge:
    """Scores 1..5 without network. Deterministic, thread-safe, cheap.

    1: empty output (or invalid JSON when `expect_json`); 2: refusal; 3: shorter than
    `min_chars` or longer than `max_chars`; 5: none of these. label "pass" for >= 4 else "fail".
    """

    source = "code"
    runs_inline = True  # pure CPU and bounded: the processor calls it without a timeout thread

    def __init__(self, *, name: str = "heuristic", min_chars: int = 1, max_chars: int = 8000,
                 expect_json: bool = False) -> None:
        self.name = name
        self.min_chars = min_chars
        self.max_chars = max_chars
        self.expect_json = expect_json

    def __call__(self, call: LLMCall) -> JudgeResult:
        text = (call.completion or "").strip()
        problems: list[str] = []
        score = 5.0
        if not text:
            return JudgeResult(1.0, "fail", "empty output")
        if self.expect_json:
            try:
                json.loads(text)
            except ValueError:
                return JudgeResult(1.0, "fail", "output is not valid JSON")
        if _REFUSAL.search(text[:2000]):
            score = min(score, 2.0)
            problems.append("refusal")
        if len(text) < self.min_chars:
            score = min(score, 3.0)
            problems.append(f"shorter than {self.min_chars} chars")
        if len(text) > self.max_chars:
            score = min(score, 3.0)
            problems.append(f"longer than {self.max_chars} chars")
        if call.finish_reason == "length":
            score = min(score, 3.0)
            problems.append("cut off (finish_reason=length)")
        return JudgeResult(score, "pass" if score >= 4 else "fail", "; ".join(problems) or "ok")


DEFAULT_RUBRIC = (
    "You are grading an AI assistant's answer. Rate how helpful, correct and on-topic the answer is "
    "for the user's request, from 1 (useless or wrong) to 5 (excellent). Reply with only a JSON "
    'object: {"score": <integer 1-5>, "explanation": "<one sentence>"}.'
)

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


def parse_judge_reply(content: Any) -> tuple[float, str | None]:
    """The model's reply -> (score 1..5, explanation). Raises ValueError when malformed."""
    if not isinstance(content, str) or not content.strip():
        raise ValueError("empty reply")
    text = _FENCE.sub("", content.strip())
    try:
        data = json.loads(text)
    except ValueError:
        match = re.search(r"\{.*\}", text, re.DOTALL)
        if not match:
            raise ValueError("reply is not JSON") from None
        data = json.loads(match.group(0))
    if not isinstance(data, dict):
        raise ValueError("reply JSON is not an object")
    score = data.get("score")
    if isinstance(score, str):
        score = float(score)
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not 1 <= score <= 5:
        raise ValueError(f"score {score!r} is not a number in 1..5")
    explanation = data.get("explanation")
    return float(score), (str(explanation)[:2000] if explanation is not None else None)


class _Retryable(Exception):
    pass


class OpenAIJudge:
    """LLM-as-judge over an OpenAI-compatible `POST {base_url}/chat/completions`.

    Blocking; called on the processor's worker (never on app threads). Each attempt waits at most
    `timeout_seconds`; connection errors, timeouts, 429 and 5xx are retried `retries` times with
    exponential backoff (`backoff_seconds` * 2**attempt, jittered). A reply that is not the
    requested JSON becomes `JudgeResult(error="malformed_reply")`; exhausted retries become
    `JudgeResult(error="http_<status>" | "timeout" | "connection")`. Never raises.
    Cost: usage.prompt_tokens/completion_tokens times the configured USD per million tokens.
    """

    source = "llm_judge"

    def __init__(self, *, model: str, base_url: str | None = None, api_key: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", rubric: str = DEFAULT_RUBRIC,
                 name: str = "llm_judge", timeout_seconds: float = 30.0, retries: int = 2,
                 backoff_seconds: float = 0.5, input_usd_per_million_tokens: float = 0.0,
                 output_usd_per_million_tokens: float = 0.0, max_prompt_chars: int = 8000) -> None:
        self.model = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        self._api_key = api_key if api_key is not None else os.environ.get(api_key_env, "")
        self.rubric = rubric
        self.name = name
        self.timeout_seconds = timeout_seconds
        self.retries = max(0, int(retries))
        self.backoff_seconds = backoff_seconds
        self.input_usd_per_million_tokens = input_usd_per_million_tokens
        self.output_usd_per_million_tokens = output_usd_per_million_tokens
        self.max_prompt_chars = max_prompt_chars
        self._sleep: Callable[[float], None] = time.sleep

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIJudge(model={self.model!r}, base_url={self.base_url!r}, name={self.name!r})"

    def _messages(self, call: LLMCall) -> list[dict[str, str]]:
        cut = self.max_prompt_chars
        user = (f"User request:\n{(call.prompt or '(unknown)')[:cut]}\n\n"
                f"Assistant answer:\n{(call.completion or '(empty)')[:cut]}")
        return [{"role": "system", "content": self.rubric}, {"role": "user", "content": user}]

    def _post(self, body: bytes) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        req = urllib.request.Request(self.base_url + "/chat/completions", data=body, headers=headers,
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_seconds) as resp:
                raw = resp.read(4 * 1024 * 1024)
        except urllib.error.HTTPError as exc:
            status = exc.code
            if status == 429 or status >= 500:
                raise _Retryable(f"http_{status}") from None
            raise ValueError(f"http_{status}") from None
        except (TimeoutError, OSError) as exc:  # URLError is an OSError
            reason = getattr(exc, "reason", exc)
            kind = "timeout" if isinstance(reason, TimeoutError) or "timed out" in str(reason) else "connection"
            raise _Retryable(kind) from None
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("malformed_reply")
        return data

    def __call__(self, call: LLMCall) -> JudgeResult:
        body = json.dumps({"model": self.model, "messages": self._messages(call), "temperature": 0}).encode()
        last = "error"
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep(self.backoff_seconds * (2 ** (attempt - 1)) * (0.5 + random.random()))
            try:
                data = self._post(body)
            except _Retryable as exc:
                last = str(exc)
                continue
            except ValueError as exc:
                msg = str(exc)
                return JudgeResult(None, error=msg if msg.startswith("http_") else "malformed_reply",
                                   explanation=None if msg.startswith("http_") else "reply body is not JSON")
            cost = self._cost(data.get("usage"))
            try:
                content = data["choices"][0]["message"]["content"]
                score, explanation = parse_judge_reply(content)
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                return JudgeResult(None, error="malformed_reply", explanation=str(exc)[:300], cost_usd=cost)
            label = "pass" if score >= 4 else "fail"
            return JudgeResult(score, label, explanation, cost_usd=cost)
        return JudgeResult(None, error=last, explanation=f"gave up after {self.retries + 1} attempts")

    def _cost(self, usage: Any) -> float | None:
        if not isinstance(usage, dict):
            return None
        pin, pout = usage.get("prompt_tokens"), usage.get("completion_tokens")
        pin = pin if isinstance(pin, int) and not isinstance(pin, bool) and pin >= 0 else 0
        pout = pout if isinstance(pout, int) and not isinstance(pout, bool) and pout >= 0 else 0
        if not (self.input_usd_per_million_tokens or self.output_usd_per_million_tokens):
            return None
        return (pin * self.input_usd_per_million_tokens + pout * self.output_usd_per_million_tokens) / 1e6
