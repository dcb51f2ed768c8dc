"""HTTP routes of human review (FastAPI APIRouter); the sidecar core adds bearer-token auth.

- `GET  /v1/review/queue?limit=10`   next pending items `{items, depth, issues}`
- `POST /v1/review/{id}/label`       `{quality: 1..5, issues: [...], comment?, corrected_answer?}`
                                     400 bad body, 404 unknown id, 409 already labeled, 413 too big
- `POST /v1/review/{id}/skip`        move an item behind the others
- `GET  /v1/review/summary`          queue, sampling counters, failure rate, issues, agreement
- `GET  /v1/review/labels?since=&limit=`  labeled items in the export shape (otel_llm_eval.records.review_labels)
- `GET  /review` (+ `/review/assets/review.js|css`)  the labeling page: served without the token
  (it holds no data; see PUBLIC_PATHS), its own API calls carry the token.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Protocol

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from .labeling import LABEL_BODY_MAX_BYTES, LabelError
from .page import STATIC_FILES, static_text

#: Paths that serve the page itself (no data), for cores that exempt static pages from auth.
PUBLIC_PATHS = ("/review", "/review/assets/review.js", "/review/assets/review.css")


class ReviewOperations(Protocol):
    """What the routes call (ReviewPlugin provides it); named here so api.py imports no plugin."""

    issues: Mapping[str, str]

    def queue(self, limit: int = 10) -> list[dict[str, Any]]: ...
    def depth(self) -> int: ...
    def label(self, item_id: str, body: Any) -> dict[str, Any]: ...
    def persist(self) -> bool: ...
    def skip(self, item_id: str) -> dict[str, Any]: ...
    def summary(self) -> dict[str, Any]: ...
    def labels(self, since_unix: float | None = None, limit: int = 1000) -> list[dict[str, Any]]: ...


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def build_router(plugin: ReviewOperations) -> APIRouter:
    router = APIRouter()

    @router.get("/v1/review/queue", tags=["review"])
    def review_queue(limit: int = Query(10, ge=1, le=100)) -> dict[str, Any]:
        return {"items": plugin.queue(limit), "depth": plugin.depth(),
                "issues": [{"id": k, "name": v} for k, v in plugin.issues.items()]}

    @router.post("/v1/review/{item_id}/label", tags=["review"])
    async def review_label(item_id: str, request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > LABEL_BODY_MAX_BYTES:
            return _error(413, f"label body larger than {LABEL_BODY_MAX_BYTES} bytes")
        raw = await request.body()
        if len(raw) > LABEL_BODY_MAX_BYTES:
            return _error(413, f"label body larger than {LABEL_BODY_MAX_BYTES} bytes")
        try:
            body = json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError):
            return _error(400, "body is not valid JSON")
        try:
            item = await run_in_threadpool(plugin.label, item_id, body)
        except LabelError as e:
            return _error(e.status, e.message)
        # durable before the 200 (a kill -9 right after must not put the item back in the queue)
        if not await run_in_threadpool(plugin.persist):
            return JSONResponse({"error": "label recorded in memory but the state could not be written yet "
                                          "(it is retried on every flush; see the sidecar log)"},
                                status_code=503, headers={"Retry-After": "1"})
        return JSONResponse(item)

    @router.post("/v1/review/{item_id}/skip", tags=["review"])
    def review_skip(item_id: str) -> Response:
        try:
            return JSONResponse(plugin.skip(item_id))
        except LabelError as e:
            return _error(e.status, e.message)

    @router.get("/v1/review/summary", tags=["review"])
    def review_summary() -> dict[str, Any]:
        return plugin.summary()

    @router.get("/v1/review/labels", tags=["review"])
    def review_labels(since: float | None = Query(None, description="labeled_unix lower bound"),
                      limit: int = Query(1000, ge=1, le=10000)) -> dict[str, Any]:
        items = plugin.labels(since_unix=since, limit=limit)
        return {"items": items, "count": len(items)}

    # The page and its two assets are plain Starlette routes, not FastAPI routes: FastAPI's
    # include_router(..., dependencies=[auth]) applies the core's bearer-token check to API routes
    # only, so a browser can load the page (which holds no data) and the page then sends the
    # token on every API call. Everything under /v1/review stays behind the token.
    def review_page(request: Request) -> Response:
        return HTMLResponse(static_text("review.html"), headers={"Cache-Control": "no-store"})

    def review_asset(request: Request) -> Response:
        name = request.path_params.get("name", "")
        media = STATIC_FILES.get(name)
        if media is None:  # whitelist: nothing else of the package is served
            return _error(404, "not found")
        return Response(static_text(name), media_type=media, headers={"Cache-Control": "no-store"})

    router.add_route("/review", review_page, methods=["GET"], include_in_schema=False)
    router.add_route("/review/assets/{name}", review_asset, methods=["GET"], include_in_schema=False)

    return router
