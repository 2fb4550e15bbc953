"""JSON answers kept in a `TenantCache` until their tenant's data changes.

A hot read route (the KPI reports) computes its answer once, serializes it
once and serves the same bytes until a committed change of the tenant makes
them stale (see `service/core/changes.py`). Every answer carries a strong
`ETag` of its bytes, so a dashboard that polls gets `304 Not Modified`
while nothing changed. The key must hold everything the answer depends on
besides the tenant's data: the route, its parameters and what the caller
may see.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from pydantic import BaseModel

from service.core.changes import TenantCache


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    body: bytes
    etag: str

    @classmethod
    def of(cls, body: bytes) -> CachedAnswer:
        return cls(body, '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"')


def _not_modified(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match")
    if not header:
        return False
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return etag in tags or "*" in tags


async def cached_json(
    request: Request,
    tenant_id: uuid.UUID,
    key: Any,
    compute: Callable[[], Awaitable[BaseModel]],
) -> Response:
    """The answer under `key` from the process's cache, else `compute()`d, kept and sent."""
    cache: TenantCache[CachedAnswer] | None = getattr(request.app.state, "kpi_answers", None)
    answer = cache.get(tenant_id, key) if cache is not None else None
    if answer is None:
        stamp = cache.stamp(tenant_id) if cache is not None else None
        answer = CachedAnswer.of((await compute()).model_dump_json().encode())
        if cache is not None:
            cache.put(tenant_id, key, answer, stamp, size=len(answer.body) + 256)
    headers = {"ETag": answer.etag, "Cache-Control": "private, no-cache"}
    if _not_modified(request, answer.etag):
        return Response(status_code=304, headers=headers)
    return Response(answer.body, media_type="application/json", headers=headers)
