"""The browser and the network: cross-origin and rebinding requests refused, JSON routes take JSON,
security headers on the review page, API docs behind the token, odd bodies get a 4xx and no
traceback (real HTTP on loopback)."""

from __future__ import annotations

import gzip
import json
import socket
import time

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from review_harness import REVIEW_CONFIG
from sidecar_fixtures import SidecarSubprocess, metric_value

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

TOKEN = "http-guard-token"
TRACE = "ab" * 16


@pytest.fixture(scope="module")
def open_sidecar(tmp_path_factory):
    """No token: the loopback default, where the browser guards matter most."""
    from otel_llm_eval.sidecar.server import start_in_thread

    sc = start_in_thread({"state": {"db_path": str(tmp_path_factory.mktemp("open") / "s.db")},
                          "review": REVIEW_CONFIG}, environ={})
    try:
        yield sc
    finally:
        sc.stop()


STATE_CHANGING = [
    ("feedback", "/v1/feedback", {"trace_id": TRACE, "name": "thumbs", "value": 1}),
    ("benchmark records", "/v1/benchmarks", {"records": [{"benchmark": "b", "model": "m", "score": 1}]}),
    ("regression runs", "/v1/regression-runs", {"status": "pass"}),
    ("a label", "/v1/review/ffffffffffffffff/label", {"quality": 3}),
    ("a skip", "/v1/review/ffffffffffffffff/skip", None),
]


@pytest.mark.parametrize("what,path,body", STATE_CHANGING, ids=[c[0] for c in STATE_CHANGING])
def test_a_cross_origin_page_cannot_post_state_changes_but_same_origin_and_non_browser_clients_can(
        open_sidecar, what, path, body):
    url = open_sidecar.url
    before = metric_value(httpx.get(url + "/metrics").text, "llm_eval_ingest_rejected_total", reason="bad_origin")
    # what a cross-site "simple request" looks like: a form post needs no preflight
    r = httpx.post(url + path, content=json.dumps(body or {}), headers={"Origin": "https://evil.example",
                                                                       "Content-Type": "text/plain"})
    assert r.status_code == 403 and "allowed_origins" in r.json()["detail"]
    after = metric_value(httpx.get(url + "/metrics").text, "llm_eval_ingest_rejected_total", reason="bad_origin")
    assert after == before + 1
    same = httpx.post(url + path, json=body, headers={"Origin": url}) if body is not None else \
        httpx.post(url + path, headers={"Origin": url})
    plain = httpx.post(url + path, json=body) if body is not None else httpx.post(url + path)
    for resp in (same, plain):
        assert resp.status_code not in (403, 415, 421), (what, resp.status_code, resp.text)


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"])
def test_json_routes_refuse_bodies_that_do_not_say_json(open_sidecar, ctype):
    r = httpx.post(open_sidecar.url + "/v1/feedback", content=json.dumps({"trace_id": TRACE, "name": "n", "value": 1}),
                   headers={"Content-Type": ctype})
    assert r.status_code == 415 and "application/json" in r.json()["detail"]


@pytest.mark.parametrize("host,status", [
    ("evil.example", 421), ("evil.example:9318", 421), ("127.0.0.1.nip.io", 421),
    ("localhost", 200), ("127.0.0.1", 200), ("[::1]:9318", 200),
])
def test_without_a_token_only_loopback_host_names_are_answered(open_sidecar, host, status):
    assert httpx.get(open_sidecar.url + "/metrics", headers={"Host": host}).status_code == status


def test_the_review_page_forbids_framing_and_foreign_scripts(open_sidecar):
    r = httpx.get(open_sidecar.url + "/review")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "default-src 'self'" in csp
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"


@pytest.fixture(scope="module")
def token_sidecar(tmp_path_factory):
    from otel_llm_eval.sidecar.server import start_in_thread

    sc = start_in_thread({"state": {"db_path": str(tmp_path_factory.mktemp("tok") / "s.db")}, "plugins": [],
                          "server": {"auth_token": TOKEN}}, environ={})
    try:
        yield sc
    finally:
        sc.stop()


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
def test_with_a_token_the_api_description_needs_it_too(token_sidecar, path):
    assert httpx.get(token_sidecar.url + path).status_code == 401
    ok = httpx.get(token_sidecar.url + path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    if path == "/openapi.json":
        assert "/v1/feedback" in ok.json()["paths"]


def test_with_a_token_any_host_name_is_answered_the_token_is_the_guard(token_sidecar):
    r = httpx.get(token_sidecar.url + "/metrics", headers={"Host": "sidecar:9318", "Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200


def deep_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("what,path,ctype", [
    ("OTLP JSON", "/v1/traces", "application/json"),
    ("a label", "/v1/review/ffffffffffffffff/label", "application/json"),
    ("benchmark records", "/v1/benchmarks", "application/json"),
    ("feedback", "/v1/feedback", "application/json"),
])
def test_json_nested_100k_deep_is_a_400_never_a_500(open_sidecar, what, path, ctype):
    r = httpx.post(open_sidecar.url + path, content=deep_json(100_000), headers={"Content-Type": ctype})
    assert 400 <= r.status_code < 500, (what, r.status_code, r.text[:200])


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_feedback_with_a_non_finite_value_is_a_422_naming_the_field(open_sidecar, value):
    body = '{"trace_id": "%s", "name": "thumbs", "value": %s}' % (TRACE, value)
    r = httpx.post(open_sidecar.url + "/v1/feedback", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "value" in r.text


def _spans(n: int, name: str) -> bytes:
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    now = time.time_ns()
    for i in range(n):
        s = ss.spans.add()
        s.trace_id, s.span_id, s.name = bytes([1 + i]) * 16, bytes([1 + i]) * 8, name
        s.start_time_unix_nano, s.end_time_unix_nano = now - 10**9, now
        for k, v in (("gen_ai.operation.name", "chat"), ("gen_ai.request.model", name)):
            a = s.attributes.add()
            a.key, a.value.string_value = k, v
    return req.SerializeToString()


def test_a_gzip_body_of_several_members_is_read_whole(open_sidecar):
    # protobuf messages concatenate into one message: two members = the spans of both
    body = gzip.compress(_spans(2, "member-one")) + gzip.compress(_spans(3, "member-two"))
    before = open_sidecar.sidecar.spans_ingested()
    r = httpx.post(open_sidecar.url + "/v1/traces", content=body,
                   headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 20
    while open_sidecar.sidecar.spans_ingested() < before + 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    text = httpx.get(open_sidecar.url + "/metrics").text
    assert metric_value(text, "llm_requests_total", model="member-one") == 2
    assert metric_value(text, "llm_requests_total", model="member-two") == 3


def test_a_client_that_disconnects_mid_body_leaves_no_traceback(tmp_path):
    with SidecarSubprocess(tmp_path, {"plugins": []}) as sc:
        for path, ctype in (("/v1/traces", "application/x-protobuf"), ("/v1/feedback", "application/json")):
            with socket.create_connection(("127.0.0.1", sc.port)) as s:
                s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
                          "Content-Length: 100000\r\n\r\n".encode() + b"x" * 1000)
        # the sidecar still answers, and logged nothing alarming about the abandoned requests
        assert httpx.get(sc.url + "/healthz").status_code == 200
        text = httpx.get(sc.url + "/metrics").text
        deadline = time.monotonic() + 10
        while metric_value(text, "llm_eval_ingest_rejected_total", reason="client_disconnect") < 1 and \
                time.monotonic() < deadline:
            time.sleep(0.05)
            text = httpx.get(sc.url + "/metrics").text
        assert metric_value(text, "llm_eval_ingest_rejected_total", reason="client_disconnect") >= 1
    log = sc.log_path.read_text()
    assert "Traceback" not in log and "ClientDisconnect" not in log, log[-2000:]


@pytest.mark.parametrize("origin,status", [
    ("null", 403),                              # sandboxed iframes and file:// pages
    ("http://127.0.0.1.evil.example", 403),
    ("https://{host}", 202),                    # the review page behind a TLS-terminating proxy
])
def test_origin_is_compared_by_host_so_proxies_work_and_look_alikes_do_not(open_sidecar, origin, status):
    host = open_sidecar.url.partition("://")[2]
    r = httpx.post(open_sidecar.url + "/v1/feedback", json={"trace_id": "ef" * 16, "name": "n", "value": 1},
                   headers={"Origin": origin.format(host=host)})
    assert r.status_code == status, r.text
