"""An OpenAI-compatible chat-completions server for tests: the LLM provider is the only stand-in.

    with FakeJudge() as judge:        # 127.0.0.1, free port; stopped on exit
        base_url = judge.base_url     # "http://127.0.0.1:PORT/v1"

How it answers `POST /v1/chat/completions` is chosen by a marker in the judged answer text (the
user message the judge builds holds the call's completion):
- `[good]`: score 5; `[bad]`: score 2 (the judge labels it fail)
- `[slow]`: score 4 after `slow_seconds`
- `[429]`: 429 with Retry-After on the first attempt for that text, score 5 on the next
- `[garbage]`: 200 with a reply that is not the requested JSON
- `[hang]`: never answers (until the server stops): the judge's timeout ends it
- anything else: score 4
Every reply carries usage (prompt_tokens, completion_tokens) so the judge prices it. `requests`
counts requests per marker; `seen` holds every `call-<n>` token judged (one per request). Thread-safe; `stop()` releases hanging handlers.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MARKER = re.compile(r"\[(good|bad|slow|429|garbage|hang)\]")
CALL_TOKEN = re.compile(r"call-(\d+)")


class FakeJudge:
    def __init__(self, *, slow_seconds: float = 0.3, prompt_tokens: int = 100, completion_tokens: int = 10,
                 delay_seconds: float = 0.0):
        """delay_seconds: added to every answer (a provider's latency, for benchmarks)."""
        self.slow_seconds = slow_seconds
        self.delay_seconds = delay_seconds
        self.usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}
        self.requests: dict[str, int] = {}
        self.seen: list[int] = []
        self._seen_429: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                status, reply, headers = outer._answer(self.path, body)
                if status is None:
                    return
                data = json.dumps(reply).encode()
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timeout)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-judge", daemon=True)

    def _answer(self, path: str, body: dict[str, Any]) -> tuple[int | None, Any, dict[str, str]]:
        if path.rstrip("/") != "/v1/chat/completions":
            return 404, {"error": {"message": f"no route {path}"}}, {}
        text = " ".join(str(m.get("content", "")) for m in body.get("messages", []) if m.get("role") == "user")
        found = MARKER.search(text)
        marker = found.group(1) if found else "plain"
        with self._lock:
            self.requests[marker] = self.requests.get(marker, 0) + 1
            token = CALL_TOKEN.search(text)
            if token:
                self.seen.append(int(token.group(1)))
            first_429 = marker == "429" and text not in self._seen_429
            if first_429:
                self._seen_429.add(text)
        if marker == "hang":
            self._stop.wait(30)
            return None, None, {}
        if first_429:
            return 429, {"error": {"message": "rate limited", "type": "rate_limit"}}, {"Retry-After": "0"}
        if self.delay_seconds:
            self._stop.wait(self.delay_seconds)
        if marker == "slow":
            self._stop.wait(self.slow_seconds)
        if marker == "garbage":
            content = "Sure! I think this answer is pretty good, maybe a four?"
        else:
            score = {"good": 5, "bad": 2}.get(marker, 4)
            content = json.dumps({"score": score, "explanation": f"{marker} answer"})
        return 200, {"id": "chatcmpl-test", "object": "chat.completion", "model": body.get("model"),
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": content}}],
                     "usage": dict(self.usage)}, {}

    def start(self) -> "FakeJudge":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def total_requests(self) -> int:
        with self._lock:
            return sum(self.requests.values())

    def __enter__(self) -> "FakeJudge":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
