"""Typed errors rendered as RFC 9457 problem details.

Code below a router raises `AppError` subclasses; `install_error_handlers`
renders every error — ours, FastAPI's validation errors, Starlette's 404/405,
database timeouts and anything unexpected — as `application/problem+json`
with a stable machine `code`. No stack trace or database text reaches a client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, ClassVar

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.core.db import violation_of

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://callpact.dev/problems/"

log = structlog.get_logger("callpact.errors")


class AppError(Exception):
    """Base of every error the application raises on purpose."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"
    retry_after_s: ClassVar[int | None] = None
    """Sent as `Retry-After` (503s, 429s, an upstream that did not answer)."""

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or self.title
        self.extra = extra
        super().__init__(self.detail)

    @property
    def headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.status == 401:
            out["WWW-Authenticate"] = "Bearer"
        retry = self.extra.get("retry_after_s", self.retry_after_s)
        if isinstance(retry, int) and retry >= 0:
            out["Retry-After"] = str(retry)
        return out


class NotFound(AppError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(AppError):
    status = 409
    code = "conflict"
    title = "Conflict"


class Forbidden(AppError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class Unauthorized(AppError):
    status = 401
    code = "unauthorized"
    title = "Authentication required"


class InvalidInput(AppError):
    """A value the schema accepted but the rules refuse; name the field."""

    status = 422
    code = "invalid_input"
    title = "Invalid input"


class PayloadTooLarge(AppError):
    status = 413
    code = "payload_too_large"
    title = "Request body too large"


class UnsupportedMediaType(AppError):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


def require_json(content_type: str | None) -> None:
    """Refuse a body declared as something else than JSON (`application/json` or a
    `+json` type). A request without a Content-Type is read as JSON."""
    if content_type is None:
        return
    media = content_type.split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(
            f"Send the records as application/json, not {media or 'an empty type'}.",
            field="Content-Type",
        )


class DependencyUnavailable(AppError):
    retry_after_s = 5
    status = 503
    code = "dependency_unavailable"
    title = "A backing service is unavailable"


def problem(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    extra: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code.replace("_", "-"),
        "title": title,
        "status": status,
        "detail": detail or title,
        "code": code,
    }
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    out = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        where = loc[0] if loc else "body"
        field = ".".join(loc[1:]) if len(loc) > 1 else where
        out.append(
            {
                "in": where,
                "field": field,
                "message": err.get("msg", ""),
                "type": err.get("type", ""),
            }
        )
    return out


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "too_many_requests",
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        return problem(exc.status, exc.code, exc.title, exc.detail, exc.extra, exc.headers or None)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc.errors())
        first = errors[0] if errors else {"field": "body", "message": "invalid"}
        return problem(
            422,
            "validation_failed",
            "Request validation failed",
            f"{first['field']}: {first['message']}",
            {"field": first["field"], "errors": errors},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        code = _STATUS_CODES.get(status, "http_error")
        try:
            title = HTTPStatus(status).phrase
        except ValueError:
            title = "HTTP error"
        detail = exc.detail if isinstance(exc.detail, str) else title
        return problem(status, code, title, detail, headers=exc.headers)

    @app.exception_handler(PoolTimeoutError)
    async def _pool_timeout(request: Request, exc: PoolTimeoutError) -> JSONResponse:
        log.warning("db_pool_timeout")
        return problem(
            503,
            "database_busy",
            "Database busy",
            "No database connection was free in time; retry.",
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(DBAPIError)
    async def _dbapi(request: Request, exc: DBAPIError) -> JSONResponse:
        # The database's own text may name tables, constraints or other tenants' values.
        sqlstate = violation_of(exc).sqlstate
        if sqlstate == "57014":  # query_canceled: statement_timeout
            log.warning("db_statement_timeout")
            return problem(
                503,
                "database_timeout",
                "Database timeout",
                "The query took too long and was cancelled; retry or narrow the request.",
                headers={"Retry-After": "1"},
            )
        if exc.connection_invalidated or sqlstate is None or sqlstate.startswith("08"):
            log.error("db_unavailable", error=type(exc.orig).__name__)
            return problem(
                503,
                "database_unavailable",
                "Database unavailable",
                "The database could not be reached; retry.",
                headers={"Retry-After": "5"},
            )
        if sqlstate.startswith("22"):
            # Data exception: a value the database cannot store (a NUL character in text,
            # a number out of a column's range, an impossible date). The request sent it;
            # validation should have named it, so it is logged, but it is no server error.
            # The request's transaction is rolled back: nothing of it was written.
            log.warning("db_data_exception", sqlstate=sqlstate)
            return problem(
                422,
                "unstorable_value",
                "A value cannot be stored",
                "A value of the request cannot be stored (e.g. a NUL character in a text, "
                "or a number out of range); nothing was written.",
                {"sqlstate": sqlstate},
            )
        log.exception("db_error", sqlstate=sqlstate)
        return problem(
            500,
            "internal_error",
            "Internal server error",
            "An unexpected error occurred; it has been logged with the request id.",
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", error=type(exc).__name__)
        return problem(
            500,
            "internal_error",
            "Internal server error",
            "An unexpected error occurred; it has been logged with the request id.",
        )
