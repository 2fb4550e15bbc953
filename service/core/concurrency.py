"""Optimistic concurrency for updates: `ETag` / `If-Match` on a row's
`version` column. A stale `If-Match` is 412; an update without one is 428, so
two editors cannot silently overwrite each other."""

from __future__ import annotations

from fastapi import Response

from service.core.errors import AppError


class PreconditionFailed(AppError):
    status = 412
    code = "precondition_failed"
    title = "The resource changed"


class PreconditionRequired(AppError):
    status = 428
    code = "precondition_required"
    title = "If-Match required"


def etag(version: int) -> str:
    return f'W/"{version}"'


def set_etag(response: Response, version: int) -> None:
    response.headers["ETag"] = etag(version)


def check_if_match(if_match: str | None, version: int) -> None:
    if if_match is None:
        raise PreconditionRequired(
            "Send the ETag you read in an If-Match header.", header="If-Match"
        )
    candidates = {c.strip() for c in if_match.split(",")}
    if "*" in candidates:
        return
    normalized = {c if c.startswith("W/") else f"W/{c}" for c in candidates}
    if etag(version) not in normalized:
        raise PreconditionFailed(
            "Someone changed this since you read it; read it again.", current_etag=etag(version)
        )
