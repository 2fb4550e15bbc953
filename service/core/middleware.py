"""Pure-ASGI middleware: request context (id, log line, metrics, last-resort
500) and the streaming request-body limit.

Pure ASGI rather than `BaseHTTPMiddleware` so that streaming bodies stay
streams and contextvars bound here are seen by the endpoint.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core.errors import PROBLEM_JSON, PayloadTooLarge, problem
from service.core.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = structlog.get_logger("callpact.http")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RouteTemplates:
    """Request path → route template (`/api/v1/users/{user_id}`), for metrics and
    logs: one time series per route, never one per object id. Built from the
    app's own OpenAPI paths on first use, so it needs no framework internals."""

    REMEMBERED = 8192  # paths whose template is kept (a linear regex scan otherwise)

    def __init__(self, paths: Callable[[], list[str]]) -> None:
        self._paths = paths
        self._compiled: list[tuple[re.Pattern[str], str]] | None = None
        self._seen: dict[str, str] = {}

    def match(self, path: str) -> str:
        template = self._seen.get(path)
        if template is None:
            template = self._match(path)
            if len(self._seen) >= self.REMEMBERED:
                self._seen.clear()  # paths with ids are unbounded; the hot ones come back
            self._seen[path] = template
        return template

    def _match(self, path: str) -> str:
        if self._compiled is None:
            templates = sorted(self._paths(), key=lambda t: (t.count("{"), -len(t)))
            self._compiled = [
                (re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(t)) + "$"), t)
                for t in templates
            ]
        for pattern, template in self._compiled:
            if pattern.match(path):
                return template
        return "<unmatched>"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, templates: RouteTemplates | None = None) -> None:
        self.app = app
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_headers = dict(scope["headers"])
        incoming = request_headers.get(b"x-request-id", b"").decode("latin-1")
        # An answer for a caller (a token or a cookie) is that caller's: no shared
        # cache may keep it, and no browser should either, unless the route says
        # otherwise (KPI answers: `private, no-cache` with an ETag).
        personal = b"authorization" in request_headers or b"cookie" in request_headers
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                if personal and not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"private, no-store"))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Anything that escaped the exception handlers: log it with the id,
            # answer a problem document, never a trace.
            log.exception("unhandled_error", error=type(exc).__name__)
            if not response_started:
                response = problem(
                    500,
                    "internal_error",
                    "Internal server error",
                    "An unexpected error occurred; it has been logged with the request id.",
                )
                await response(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            if self.templates is not None:
                routed = scope.get("route") or scope.get("state", {}).get("cached_answer")
                template = self.templates.match(scope["path"]) if routed else "<unmatched>"
            else:
                template = getattr(scope.get("route"), "path", None) or "<unmatched>"
            method = scope["method"]
            HTTP_REQUESTS.labels(method, template, str(status)).inc()
            HTTP_LATENCY.labels(method, template).observe(elapsed)
            log.info(
                "request",
                method=method,
                route=template,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )


class BodyTooLarge(HTTPException):
    """Raised from `receive`; an HTTPException so FastAPI's body parsing re-raises
    it as is (it turns any other exception into a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _detail(limit))


class BodyLimitMiddleware:
    """Refuses bodies past a limit chosen by route class, while streaming.

    `Content-Length` past the limit is refused before reading; a chunked body
    is counted as it arrives and refused at the first byte past the limit.
    """

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                too_big = False
            if too_big:
                await self._refuse(scope, receive, send, limit)
                return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counting_receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = problem(
            413, PayloadTooLarge.code, PayloadTooLarge.title, _detail(limit), {"limit_bytes": limit}
        )
        response.headers["connection"] = "close"
        assert response.media_type == PROBLEM_JSON
        await response(scope, receive, send)


def _detail(limit: int) -> str:
    return f"The request body exceeds the {limit}-byte limit of this route."
