"""Synthetic OTLP load for the sidecar benchmarks: batches of LLM spans as protobuf bytes."""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

WORDS = ("the order shipped yesterday and should arrive within three business days please check the "
         "tracking link in your email for updates our support team is happy to help with returns "
         "refunds exchanges and warranty questions about any product in your account").split()
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "gemini-2.0-flash")


def text_of(rng: random.Random, size: int) -> str:
    out, n = [], 0
    while n < size:
        w = rng.choice(WORDS)
        out.append(w)
        n += len(w) + 1
    return " ".join(out)[:size]


def _kv(span, key, value):
    kv = span.attributes.add()
    kv.key = key
    if isinstance(value, bool):
        kv.value.bool_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    elif isinstance(value, float):
        kv.value.double_value = value
    else:
        kv.value.string_value = value


def make_batch(seed: int, spans: int = 512, text_bytes: int = 1024, services: int = 4) -> bytes:
    """One ExportTraceServiceRequest with `spans` LLM spans (openai-v2 latest-semconv shape)."""
    rng = random.Random(seed)
    req = ExportTraceServiceRequest()
    per_service = max(1, spans // services)
    made = 0
    for s in range(services):
        rs = req.resource_spans.add()
        kv = rs.resource.attributes.add()
        kv.key, kv.value.string_value = "service.name", f"svc-{s}"
        ss = rs.scope_spans.add()
        ss.scope.name = "opentelemetry.instrumentation.openai_v2"
        count = per_service if s < services - 1 else spans - made
        for _ in range(count):
            made += 1
            span = ss.spans.add()
            span.trace_id = rng.randbytes(16)
            span.span_id = rng.randbytes(8)
            model = rng.choice(MODELS)
            span.name = f"chat {model}"
            span.kind = 3
            start = time.time_ns() - rng.randint(50, 5000) * 1_000_000
            span.start_time_unix_nano = start
            span.end_time_unix_nano = start + rng.randint(50, 5000) * 1_000_000
            _kv(span, "gen_ai.operation.name", "chat")
            _kv(span, "gen_ai.provider.name", "openai")
            _kv(span, "gen_ai.request.model", model)
            _kv(span, "gen_ai.response.model", model)
            _kv(span, "gen_ai.usage.input_tokens", rng.randint(50, 800))
            _kv(span, "gen_ai.usage.output_tokens", rng.randint(20, 400))
            _kv(span, "gen_ai.response.finish_reasons", "stop")
            _kv(span, "user.id", f"user-{rng.randint(0, 5000)}")
            _kv(span, "gen_ai.conversation.id", f"conv-{rng.randint(0, 20000)}")
            variant = rng.choice(("control", "treatment"))
            _kv(span, "llm_eval.experiment.id", "prompt-v2")
            _kv(span, "llm_eval.experiment.variant", variant)
            if text_bytes:
                prompt = text_of(rng, text_bytes)
                completion = text_of(rng, text_bytes)
                _kv(span, "gen_ai.input.messages", json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": prompt}]}]))
                _kv(span, "gen_ai.output.messages", json.dumps(
                    [{"role": "assistant", "parts": [{"type": "text", "content": completion}],
                      "finish_reason": "stop"}]))
    return req.SerializeToString()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SidecarProcess:
    """`otel-llm-eval sidecar` in a subprocess on a free port, stopped by PID."""

    def __init__(self, extra_config: str = "", *, dedup: bool = False, plugins: bool = False):
        self.dir = tempfile.mkdtemp(prefix="sidecar-bench-")
        self.port = free_port()
        cfg = os.path.join(self.dir, "eval.yaml")
        with open(cfg, "w") as f:
            # dedup off by default: the throughput benchmark re-sends the same batches
            f.write(("" if plugins else "plugins: []\n")
                    + ("" if dedup else "state:\n  dedup_retention_seconds: 0\n") + extra_config)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "otel_llm_eval.cli", "sidecar", "--config", cfg, "--port", str(self.port),
             "--db", os.path.join(self.dir, "state.db")])
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url + "/readyz", timeout=1).read()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("sidecar did not become ready")

    def metric(self, name: str, match: str = "") -> float:
        text = urllib.request.urlopen(self.url + "/metrics", timeout=30).read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and match in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def spans_ingested(self) -> int:
        """From /healthz: a cheap probe (rendering /metrics many times a second would load the sidecar)."""
        return int(json.loads(urllib.request.urlopen(self.url + "/healthz", timeout=30).read())["spans_ingested"])

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def post_all(url: str, bodies: list[bytes], threads: int = 2) -> int:
    """POST every body to url/v1/traces over keep-alive connections; retries 429/503. Returns retries."""
    host, port = url.split("//")[1].split(":")
    retries = [0]
    lock = threading.Lock()
    work = list(enumerate(bodies))

    def worker() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        while True:
            with lock:
                if not work:
                    break
                _, body = work.pop()
            while True:
                conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    break
                if resp.status in (429, 503):
                    with lock:
                        retries[0] += 1
                    time.sleep(float(resp.getheader("Retry-After") or 1) / 10)
                    continue
                raise RuntimeError(f"unexpected status {resp.status}")
        conn.close()

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return retries[0]
