"""The sidecar's HTTP API (FastAPI): OTLP/HTTP receiver, /metrics, feedback, experiments, health.

Routes: POST /v1/traces, POST /v1/logs (OTLP/HTTP protobuf or JSON, gzip/deflate), GET /metrics,
POST /v1/feedback, GET /v1/experiments, GET /v1/experiments/{id}, GET /healthz, GET /readyz,
plus every plugin's router. With `server.auth_token` set, every route but /healthz requires
`Authorization: Bearer <token>` (/metrics and OTLP only while `server.auth_metrics` /
`server.auth_otlp` are true). Handlers decode and validate on the event loop, then hand the
message to the ingest queue (journaled first); they never wait for ingest.
"""

from __future__ import annotations

import hmac
import json
import math
from typing import Any, Optional

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from .collector import SidecarCollector
from .core import QueueFull, Sidecar
from .guard import RequestGuard
from .ingest.otlp import JSON, PROTOBUF, OTLPError, decode_logs, decode_traces, logs_response, media_type, response_json, traces_response

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class FeedbackIn(BaseModel):
    # python-re: the id patterns use a look-ahead (all-zero ids are invalid in OTel). The anyOf
    # states in the schema what `_something` checks: a value, a label or a comment, not null.
    model_config = ConfigDict(extra="forbid", regex_engine="python-re", json_schema_extra={"anyOf": [
        {"required": ["value"], "properties": {"value": {"type": "number"}}},
        {"required": ["label"], "properties": {"label": {"type": "string"}}},
        {"required": ["comment"], "properties": {"comment": {"type": "string"}}},
    ]})
    trace_id: str = Field(pattern=r"^(?!0{32})[0-9a-fA-F]{32}$",
                          description="trace id of the evaluated call (32 hex, not all zero)")
    span_id: Optional[str] = Field(None, pattern=r"^(?!0{16})[0-9a-fA-F]{16}$",
                                   description="span id of the call (16 hex, not all zero)")
    name: str = Field(min_length=1, max_length=128, strict=True, description="evaluation name, e.g. user_feedback")
    value: Optional[float] = Field(None, strict=True,
                                   description="score, e.g. 1 (thumbs up), 0 or -1 (thumbs down), 1..5; "
                                               "optional for a label (categorical) or a comment (text)")
    label: Optional[str] = Field(None, max_length=128, strict=True)
    comment: Optional[str] = Field(None, max_length=4096, strict=True)
    kind: Optional[Literal["binary", "outcome", "scale", "categorical", "text"]] = Field(
        None, description="what the record means (default: the sidecar's feedback.kinds, else docs/feedback.md)")
    scale_min: Optional[float] = Field(None, strict=True, description="a scale rating's declared minimum")
    scale_max: Optional[float] = Field(None, strict=True, description="a scale rating's declared maximum")

    @model_validator(mode="after")
    def _something(self) -> "FeedbackIn":
        if self.value is None and self.label is None and self.comment is None:
            raise ValueError("feedback needs a value, a label or a comment")
        return self

    @field_validator("value")
    @classmethod
    def _finite(cls, v: Optional[float]) -> Optional[float]:
        if v is not None and not math.isfinite(v):
            raise ValueError("value must be a finite number")
        return v

    @field_validator("trace_id", "span_id")
    @classmethod
    def _lower(cls, v: Optional[str]) -> Optional[str]:
        return v.lower() if v else v


class Accepted(BaseModel):
    status: str = Field(description="accepted | duplicate")


class VariantStats(BaseModel):
    n: int
    sum: float
    sum_sq: float
    mean: Optional[float]
    binary: bool


class ExperimentSummary(BaseModel):
    id: str
    control: Optional[str]
    weights: Optional[dict[str, float]]
    first_seen_unix: float
    last_seen_unix: float
    exposures: dict[str, int] = Field(description="LLM calls per variant")


class ExperimentList(BaseModel):
    experiments: list[ExperimentSummary]


class ExperimentDetail(ExperimentSummary):
    model_config = ConfigDict(extra="allow")  # plugins merge their own keys (p-values, verdicts, ...)
    metrics: dict[str, dict[str, VariantStats]]


class Health(BaseModel):
    status: str
    queue_depth: int = 0
    spans_ingested: int = Field(0, description="OTLP spans applied to the state (llm_eval_ingest_spans_total"
                                               "{signal=\"traces\"}): a cheap progress probe")


class Problem(BaseModel):
    detail: Any


def _auth_dependency(token: Optional[str]):
    expected = f"Bearer {token}".encode() if token else None

    async def check(request: Request) -> None:
        if expected is None:
            return
        got = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(got, expected):
            raise HTTPException(401, "missing or wrong bearer token (Authorization: Bearer <server.auth_token>)",
                                headers={"WWW-Authenticate": "Bearer"})

    return check


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None:
        try:
            if int(length) > limit:
                raise OTLPError(413, "too_large", f"request body of {length} bytes exceeds the limit of {limit}")
        except ValueError:
            raise OTLPError(400, "malformed", "Content-Length is not a number") from None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise OTLPError(413, "too_large", f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _error_response(status: int, message: str, content_type: str, retry_after: int | None = None) -> Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    if content_type == PROTOBUF:
        from google.rpc import status_pb2

        body = status_pb2.Status(code=3 if status < 500 else 14, message=message).SerializeToString()
        return Response(body, status_code=status, media_type=PROTOBUF, headers=headers)
    return JSONResponse({"code": 3 if status < 500 else 14, "message": message}, status_code=status, headers=headers)


def _add_docs_behind_token(app: FastAPI, auth: Any) -> None:
    """/openapi.json, /docs and /redoc that require the bearer token (a browser needs an
    extension or a proxy that adds it; curl and API clients send it as usual)."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html

    @app.get("/openapi.json", include_in_schema=False, dependencies=[auth])
    def openapi_json() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[auth])
    def docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=app.title + " - API")

    @app.get("/redoc", include_in_schema=False, dependencies=[auth])
    def redoc() -> Response:
        return get_redoc_html(openapi_url="/openapi.json", title=app.title + " - API")


def _json_safe(value: Any) -> Any:
    """`value` with non-finite floats as strings (a validation error echoing NaN must still be JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


_NUMBER_ERRORS = frozenset({"finite_number", "greater_than_equal", "less_than_equal", "value_error"})


def _add_error_handlers(app: FastAPI, sidecar: Sidecar) -> None:
    """Bad input is a 4xx with a reason, never a 500 with a traceback in the log."""
    from fastapi.exceptions import RequestValidationError
    from starlette.requests import ClientDisconnect

    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = [{k: _json_safe(v) for k, v in e.items() if k in ("type", "loc", "msg", "input")}
                  for e in exc.errors()]
        if any(e.get("type") in _NUMBER_ERRORS for e in errors):
            sidecar.count_rejected("invalid_number")
        return JSONResponse({"detail": errors}, status_code=422)

    async def too_deep(request: Request, exc: RecursionError) -> Response:
        sidecar.count_rejected("too_deep")
        return JSONResponse({"detail": "JSON body is nested too deeply"}, status_code=400)

    async def disconnected(request: Request, exc: ClientDisconnect) -> Response:
        # the client went away mid-body: nothing was accepted, nobody reads this answer
        sidecar.count_rejected("client_disconnect")
        return Response(status_code=400)

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(RecursionError, too_deep)
    app.add_exception_handler(ClientDisconnect, disconnected)


def create_app(sidecar: Sidecar) -> FastAPI:
    from prometheus_client import CollectorRegistry, generate_latest

    cfg = sidecar.config["server"]
    token = cfg.get("auth_token")
    auth = Depends(_auth_dependency(token))
    no_auth: list = []
    # with a token, the API description is behind it like everything but /healthz (added below)
    app = FastAPI(title="otel-llm-eval sidecar", version="0.1.0",
                  description="OTLP in, Prometheus metrics out: evaluation of LLM calls.",
                  docs_url=None if token else "/docs", redoc_url=None if token else "/redoc",
                  openapi_url=None if token else "/openapi.json")
    app.add_middleware(RequestGuard, bound_host=str(cfg.get("host") or ""), token=token,
                       allowed_hosts=cfg.get("allowed_hosts") or (), allowed_origins=cfg.get("allowed_origins") or (),
                       count=sidecar.count_rejected)
    if token:
        _add_docs_behind_token(app, auth)
    _add_error_handlers(app, sidecar)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SidecarCollector(sidecar))
    otlp_deps = [auth] if cfg.get("auth_otlp", True) else no_auth
    metrics_deps = [auth] if cfg.get("auth_metrics", True) else no_auth

    async def otlp(request: Request, signal: str) -> Response:
        ctype = request.headers.get("content-type")
        mt = media_type(ctype)
        encoding = request.headers.get("content-encoding") or ""
        try:
            body = await _read_body(request, sidecar.max_request_bytes)
            decode = decode_traces if signal == "traces" else decode_logs
            decoded = decode(body, ctype, encoding, max_request_bytes=sidecar.max_request_bytes,
                             max_span_bytes=sidecar.max_span_bytes, edge=sidecar.edge_check(signal))
        except OTLPError as e:
            value_reasons = {r: n for r, n in e.reasons.items() if r != "invalid_item"}
            if value_reasons:  # every item had a bad value: count them by reason
                for reason, n in value_reasons.items():
                    sidecar.count_rejected(reason, n)
            else:
                sidecar.count_rejected(e.reason)
            return _error_response(e.status, e.message, mt)
        journal_body, journal_mt = body, mt
        if decoded.rejected:
            # journal exactly what was accepted: replay and worker processes then never judge the
            # rejected items again (against another "now"), and never count them
            journal_body, journal_mt, encoding = decoded.message.SerializeToString(), PROTOBUF, ""
        try:
            sidecar.submit(signal, decoded.message, journal_body, journal_mt, encoding, clean=True)
        except QueueFull as e:
            sidecar.count_rejected("queue_full")
            status = 503 if not sidecar.ready or "stopping" in str(e) else 429
            return _error_response(status, f"{e}; retry later", mt, sidecar.retry_after_seconds)
        except OSError as e:  # the journal could not be written (disk full): nothing was accepted
            sidecar.count_rejected("journal_error")
            return _error_response(503, f"cannot journal the request ({e.strerror}); retry later", mt,
                                   sidecar.retry_after_seconds)
        for reason, n in (decoded.reasons or {}).items():
            sidecar.count_rejected(reason, n)
        if mt == JSON:
            return Response(response_json(signal, decoded.rejected, decoded.error_message), media_type=JSON)
        make = traces_response if signal == "traces" else logs_response
        return Response(make(decoded.rejected, decoded.error_message), media_type=PROTOBUF)

    otlp_router = APIRouter(dependencies=otlp_deps)

    @otlp_router.post("/v1/traces", include_in_schema=False)
    async def traces(request: Request) -> Response:
        return await otlp(request, "traces")

    @otlp_router.post("/v1/logs", include_in_schema=False)
    async def logs(request: Request) -> Response:
        return await otlp(request, "logs")

    app.include_router(otlp_router)

    @app.get("/metrics", dependencies=metrics_deps, response_class=Response,
             responses={200: {"content": {PROMETHEUS_TEXT: {}}, "description": "Prometheus text format"}})
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=PROMETHEUS_TEXT)

    @app.get("/healthz", response_model=Health)
    def healthz() -> Health:
        return Health(status="ok", queue_depth=sidecar.queue_depth(), spans_ingested=sidecar.spans_ingested())

    @app.get("/readyz", response_model=Health, dependencies=[auth],
             responses={503: {"model": Health, "description": "replaying the journal, workers starting or queue full"}})
    def readyz() -> Response:
        depth = sidecar.queue_depth()
        pool = sidecar.pool
        ready = sidecar.ready and not sidecar.queue.full() and (pool is None or pool.started())
        body = Health(status="ready" if ready else "not_ready", queue_depth=depth)
        return JSONResponse(body.model_dump(), status_code=200 if ready else 503)

    # the value range is the one scores on spans must respect (ingest.limits): in the schema too
    Feedback = create_model("FeedbackIn", __base__=FeedbackIn, value=(Optional[float], Field(
        None, strict=True, ge=sidecar.edge.score_min, le=sidecar.edge.score_max,
        description="score, e.g. 1 (thumbs up), 0 or -1 (thumbs down), 1..5, within ingest.limits.score_min/"
                    "score_max; optional for a label (categorical) or a comment (text)")))

    def feedback(item: Any) -> Response:
        payload = item.model_dump(exclude_none=True)
        payload["time_unix_nano"] = int(sidecar.clock() * 1e9)
        # the journal and dedup see the feedback without its arrival time: a retried POST counts once
        body = json.dumps(item.model_dump(exclude_none=True), sort_keys=True).encode()
        try:
            fresh = sidecar.submit("feedback", payload, body, JSON, "")
        except QueueFull as e:
            return JSONResponse({"detail": str(e)}, status_code=429 if sidecar.ready else 503,
                                headers={"Retry-After": str(sidecar.retry_after_seconds)})
        if not fresh:
            return JSONResponse({"status": "duplicate"}, status_code=200)
        return JSONResponse({"status": "accepted"}, status_code=202)

    # the model is built here (its range comes from the config): give FastAPI the class itself,
    # not the string annotation `from __future__ import annotations` would leave
    feedback.__annotations__["item"] = Feedback
    app.post("/v1/feedback", response_model=Accepted, status_code=202, dependencies=[auth],
             responses={200: {"model": Accepted, "description": "identical feedback seen recently"},
                        400: {"model": Problem, "description": "body is not JSON"},
                        422: {"model": Problem, "description": "a field is invalid (value not finite or out of range)"},
                        429: {"model": Problem, "description": "queue full; retry after Retry-After"},
                        503: {"model": Problem, "description": "stopping; retry after Retry-After"}})(feedback)

    def summary(snap: Any) -> dict[str, Any]:
        exposures = {v: s.n for v, s in snap.metrics.get("exposures", {}).items()}
        return {"id": snap.id, "control": snap.control, "weights": snap.weights,
                "first_seen_unix": snap.first_seen_unix, "last_seen_unix": snap.last_seen_unix,
                "exposures": exposures}

    @app.get("/v1/experiments", response_model=ExperimentList, dependencies=[auth])
    def experiments() -> dict[str, Any]:
        snaps = sidecar.state.snapshot()
        return {"experiments": [summary(snaps[k]) for k in sorted(snaps)]}

    @app.get("/v1/experiments/{experiment_id}", response_model=ExperimentDetail, dependencies=[auth],
             responses={404: {"model": Problem, "description": "no span carried this experiment"}})
    def experiment(experiment_id: str) -> dict[str, Any]:
        snap = sidecar.state.snapshot().get(experiment_id)
        if snap is None:
            raise HTTPException(404, f"unknown experiment {experiment_id!r}")
        out = summary(snap)
        out["metrics"] = {
            metric: {v: {"n": s.n, "sum": s.sum, "sum_sq": s.sum_sq, "mean": (s.sum / s.n if s.n else None),
                         "binary": s.binary} for v, s in by_variant.items()}
            for metric, by_variant in snap.metrics.items()}
        for p in sidecar.plugins:
            try:
                extra = p.experiment_details(experiment_id)
            except Exception:
                extra = None
            if extra:
                for k, v in extra.items():
                    out.setdefault(k, v)
        return out

    @app.get("/v1/analysis/status", dependencies=[auth])
    def analysis_status() -> dict[str, Any]:
        """Health of the plugins' analysis: each plugin's `status()` merged (last pass, sizes, what
        was dropped at a bound, hooks that raised)."""
        return merged_status(sidecar.plugins)

    for p in sidecar.plugins:
        router = p.router()
        if router is not None:
            app.include_router(router, dependencies=[auth])
    return app


def merged_status(plugins: Any) -> dict[str, Any]:
    """Every plugin's `status()` in one dict: `dropped` counters merged, `errors` summed, other
    keys as the plugins name them; `computed_unix` is the latest analysis pass of any plugin."""
    out: dict[str, Any] = {"dropped": {}, "errors": 0}
    for p in plugins:
        try:
            st = p.status()
        except Exception:
            out["errors"] += 1
            continue
        for k, v in (st or {}).items():
            if k == "dropped":
                for what, n in v.items():
                    out["dropped"][what] = out["dropped"].get(what, 0) + n
            elif k == "errors":
                out["errors"] += v
            else:
                out[k] = v
    computed = [r.get("computed_unix") for p in plugins if isinstance(r := getattr(p, "results", None), dict)]
    computed = [c for c in computed if c is not None]
    if computed:
        out["computed_unix"] = max(computed)
    return out
