"""An OpenAI- and Anthropic-compatible LLM server on 127.0.0.1 for the interop tests.

The only stand-in the project's test rules allow (an LLM provider), speaking the real wire formats:
- `POST /v1/chat/completions`: JSON, or Server-Sent Events when `stream` is true (usage in the
  last chunk when `stream_options.include_usage` is set, as OpenAI does);
- `POST /v1/messages`: Anthropic Messages API, JSON or SSE events.
Every answer is ANSWER with USAGE tokens and finish reason "stop", except when the request's
`max_tokens` (or `max_completion_tokens`) is below 5: then the answer is cut to CUT_ANSWER and the
finish reason is "length" ("max_tokens" in the Anthropic format). Standard library only, so every
interop venv can run it. Thread-safe request log in `requests`.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = "OpenTelemetry is a vendor-neutral observability framework."
CUT_ANSWER = "OpenTelemetry is"
USAGE = (12, 9)       # input, output tokens of a full answer
CUT_USAGE = (12, 3)   # input, output tokens of a cut answer


def _cut(body: dict) -> bool:
    limit = body.get("max_tokens", body.get("max_completion_tokens"))
    return isinstance(limit, int) and limit < 5


class Provider:
    """Start with `Provider()`, stop with `close()`. `base_url` ends in /v1."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                with outer._lock:
                    outer.requests.append({"path": self.path, "body": body})
                    n = len(outer.requests)
                if self.path.rstrip("/").endswith("/messages"):
                    self._anthropic(body, n)
                else:
                    self._openai(body, n)

            def _send(self, data: bytes, content_type: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _openai(self, body: dict, n: int) -> None:
                model = str(body.get("model", ""))
                cut = _cut(body)
                text, (tin, tout) = (CUT_ANSWER, CUT_USAGE) if cut else (ANSWER, USAGE)
                finish = "length" if cut else "stop"
                usage = {"prompt_tokens": tin, "completion_tokens": tout, "total_tokens": tin + tout}
                rid = f"chatcmpl-{n}"
                if not body.get("stream"):
                    self._send(json.dumps({
                        "id": rid, "object": "chat.completion", "created": 0, "model": model,
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                     "finish_reason": finish, "logprobs": None}],
                        "usage": usage}).encode(), "application/json")
                    return
                chunks = []
                words = text.split(" ")
                for i, w in enumerate(words):
                    piece = w if i == 0 else " " + w
                    delta = {"content": piece} if i else {"role": "assistant", "content": piece}
                    chunks.append({"id": rid, "object": "chat.completion.chunk", "created": 0, "model": model,
                                   "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
                chunks.append({"id": rid, "object": "chat.completion.chunk", "created": 0, "model": model,
                               "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
                if (body.get("stream_options") or {}).get("include_usage"):
                    chunks.append({"id": rid, "object": "chat.completion.chunk", "created": 0, "model": model,
                                   "choices": [], "usage": usage})
                data = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
                self._send(data.encode(), "text/event-stream")

            def _anthropic(self, body: dict, n: int) -> None:
                model = str(body.get("model", ""))
                cut = _cut(body)
                text, (tin, tout) = (CUT_ANSWER, CUT_USAGE) if cut else (ANSWER, USAGE)
                stop = "max_tokens" if cut else "end_turn"
                mid = f"msg_{n}"
                if not body.get("stream"):
                    self._send(json.dumps({
                        "id": mid, "type": "message", "role": "assistant", "model": model,
                        "content": [{"type": "text", "text": text}], "stop_reason": stop,
                        "stop_sequence": None, "usage": {"input_tokens": tin, "output_tokens": tout}}).encode(),
                        "application/json")
                    return
                events = [
                    ("message_start", {"type": "message_start", "message": {
                        "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
                        "stop_reason": None, "stop_sequence": None,
                        "usage": {"input_tokens": tin, "output_tokens": 1}}}),
                    ("content_block_start", {"type": "content_block_start", "index": 0,
                                             "content_block": {"type": "text", "text": ""}}),
                ]
                for i, w in enumerate(text.split(" ")):
                    events.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
                        "type": "text_delta", "text": w if i == 0 else " " + w}}))
                events += [
                    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                       "usage": {"output_tokens": tout}}),
                    ("message_stop", {"type": "message_stop"}),
                ]
                data = "".join(f"event: {e}\ndata: {json.dumps(d)}\n\n" for e, d in events)
                self._send(data.encode(), "text/event-stream")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
