"""Browser and network guards in front of every route (a pure ASGI middleware, no body buffering).

- Host: without a token (the loopback default) a request whose `Host` names anything but a
  loopback name, the bound host or an entry of `server.allowed_hosts` is refused with 421 (a DNS
  rebinding page cannot talk to the sidecar). With a token the token is the guard, unless
  `server.allowed_hosts` is set, which then always applies. `["*"]` accepts any Host.
- Origin: a state-changing request (POST, PUT, PATCH, DELETE) that carries an `Origin` whose
  host[:port] is not the request's `Host` (the page the sidecar served itself), and that is not in
  `server.allowed_origins`, is refused with 403 (`Origin: null` included). Clients that are not
  browsers send no Origin and are not affected.
- Content type: a state-changing request to a JSON route (anything but OTLP, which checks its own
  types) must say `application/json` (or `*+json`) when it has a body: 415 otherwise, so a
  cross-site HTML form (a "simple request", sent without preflight) cannot post.
- Responses of the review page (`/review...`) carry a Content-Security-Policy, X-Frame-Options
  DENY and Referrer-Policy; every response carries X-Content-Type-Options nosniff.

Refusals are counted through `count(reason)` (`llm_eval_ingest_rejected_total{reason=bad_host|
bad_origin|bad_content_type}`) and answered with a JSON `{"detail": ...}` naming what to change.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any, Callable, Iterable

_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_OTLP_PATHS = frozenset({"/v1/traces", "/v1/logs"})
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})

REVIEW_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
              "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'")


def _hostname(host_header: str) -> str:
    """The name part of a Host header value ("[::1]:9318" -> "::1", "a.b:80" -> "a.b")."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else h[1:]
    if h.count(":") == 1:
        return h.split(":", 1)[0]
    return h


def _is_loopback(name: str) -> bool:
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class RequestGuard:
    def __init__(self, app: Any, *, bound_host: str, token: str | None, allowed_hosts: Iterable[str] = (),
                 allowed_origins: Iterable[str] = (), count: Callable[[str], None] = lambda reason: None):
        self.app = app
        self.allowed_hosts = {h.lower() for h in allowed_hosts}
        self.any_host = "*" in self.allowed_hosts
        self.check_host = not self.any_host and (bool(self.allowed_hosts) or not token)
        bound = _hostname(bound_host)
        if bound not in ("0.0.0.0", "::", ""):
            self.allowed_hosts.add(bound)
        self.allowed_origins = {o.rstrip("/").lower() for o in allowed_origins}
        self.count = count

    def _host_ok(self, host: str) -> bool:
        name = _hostname(host)
        return bool(name) and (name in self.allowed_hosts or _is_loopback(name))

    async def _refuse(self, send: Callable, status: int, reason: str, detail: str) -> None:
        self.count(reason)
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"x-content-type-options", b"nosniff")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k: v for k, v in scope.get("headers") or ()}
        host = headers.get(b"host", b"").decode("latin-1")
        if self.check_host and not self._host_ok(host):
            await self._refuse(send, 421, "bad_host",
                               f"Host {host!r} is not this sidecar's address; add it to server.allowed_hosts "
                               "(or set server.auth_token) to reach the sidecar under that name")
            return
        path = scope.get("path", "")
        if scope.get("method") in _STATE_CHANGING:
            origin = headers.get(b"origin")
            if origin is not None:
                o = origin.decode("latin-1").rstrip("/").lower()
                # same site = same host[:port] as the request's Host; the scheme is not compared, so
                # the page keeps working behind a TLS-terminating proxy that passes Host through
                if o.partition("://")[2] != host.lower() and o not in self.allowed_origins:
                    await self._refuse(send, 403, "bad_origin",
                                       f"cross-origin request from {o!r} refused; add it to server.allowed_origins "
                                       "if that page may change the sidecar's state")
                    return
            if path not in _OTLP_PATHS:
                ctype = headers.get(b"content-type")
                has_body = headers.get(b"content-length", b"0") not in (b"0", b"") or b"transfer-encoding" in headers
                media = ctype.split(b";", 1)[0].strip().lower() if ctype is not None else b""
                if (ctype is not None or has_body) and not (media == b"application/json" or media.endswith(b"+json")):
                    await self._refuse(send, 415, "bad_content_type",
                                       f"{path} takes JSON: send Content-Type: application/json")
                    return
        review_page = path == "/review" or path.startswith("/review/")

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"x-content-type-options", b"nosniff")]
                if review_page:
                    extra += [(b"content-security-policy", REVIEW_CSP.encode()), (b"x-frame-options", b"DENY"),
                              (b"referrer-policy", b"no-referrer")]
                message = {**message, "headers": list(message.get("headers") or []) + extra}
            await send(message)

        await self.app(scope, receive, send_with_headers)
