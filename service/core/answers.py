"""JSON answers kept in a `TenantCache` until their tenant's data changes.

A hot read route (the KPI reports) computes its answer once, serializes it
once and serves the same bytes until a committed change of the tenant makes
them stale (see `service/core/changes.py`). Every answer carries a strong
`ETag` of its bytes, so a dashboard that polls gets `304 Not Modified`
while nothing changed.

An answer is keyed by path, query string and the caller's *view* (what the
caller may see: permissions, client, projects), so a cacheable route must
answer from nothing else besides the tenant's data. The route stores what it
computed (`cached_json`); `CachedAnswerMiddleware` serves a later request for
the same answer before routing, when it can name the caller's view without
any I/O (a token this process verified, of a caller it resolved, neither
stale). A caller it cannot name that way, and every miss, goes through the
route as usual — its dependencies check the caller, its permission and its
walls; an entry only exists because a caller with the same view passed them.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

from service.core.changes import TenantCache

CACHE_CONTROL = "private, no-cache"

Caller = tuple[uuid.UUID, Hashable]
"""The caller's tenant and view, when known without I/O."""


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    body: bytes
    etag: str

    @classmethod
    def of(cls, body: bytes) -> CachedAnswer:
        return cls(body, '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"')


def answer_key(scope: Scope, view: Hashable) -> tuple[str, bytes, Hashable]:
    return (scope["path"], scope.get("query_string", b""), view)


def _not_modified(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return etag in tags or "*" in tags


def _answers(state: Any) -> TenantCache[CachedAnswer] | None:
    cache: TenantCache[CachedAnswer] | None = getattr(state, "kpi_answers", None)
    return cache


async def cached_json(
    request: Request,
    tenant_id: uuid.UUID,
    view: Hashable,
    compute: Callable[[], Awaitable[BaseModel]],
) -> Response:
    """The answer for this path, query and view from the process's cache, else
    `compute()`d, kept (if no change of the tenant raced it) and sent."""
    cache = _answers(request.app.state)
    key = answer_key(request.scope, view)
    answer = cache.get(tenant_id, key) if cache is not None else None
    if answer is None:
        stamp = cache.stamp(tenant_id) if cache is not None else None
        answer = CachedAnswer.of((await compute()).model_dump_json().encode())
        if cache is not None:
            # The key counts too: a query string is the caller's to make long and unique.
            size = len(answer.body) + len(key[0]) + len(key[1]) + 256
            cache.put(tenant_id, key, answer, stamp, size=size)
    headers = {"ETag": answer.etag, "Cache-Control": CACHE_CONTROL}
    if _not_modified(request.headers.get("if-none-match"), answer.etag):
        return Response(status_code=304, headers=headers)
    return Response(answer.body, media_type="application/json", headers=headers)


class CachedAnswerMiddleware:
    """Serves GETs of cacheable paths from the answer cache before routing (see the
    module's docstring); everything else passes through untouched."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        cacheable: re.Pattern[str],
        caller: Callable[[Scope], Caller | None],
    ) -> None:
        self.app = app
        self._cacheable = cacheable
        self._caller = caller

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and self._cacheable.match(scope["path"])
        ):
            cache = _answers(scope["app"].state)
            known = self._caller(scope) if cache is not None else None
            if cache is not None and known is not None:
                answer = cache.peek(known[0], answer_key(scope, known[1]))
                if answer is not None:
                    scope.setdefault("state", {})["cached_answer"] = True
                    await _send(scope, answer, send)
                    return
        await self.app(scope, receive, send)


async def _send(scope: Scope, answer: CachedAnswer, send: Send) -> None:
    if_none_match = next(
        (v.decode("latin-1") for k, v in scope["headers"] if k == b"if-none-match"), None
    )
    headers = [
        (b"etag", answer.etag.encode()),
        (b"cache-control", CACHE_CONTROL.encode()),
    ]
    if _not_modified(if_none_match, answer.etag):
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    headers += [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(answer.body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})
