"""`Idempotency-Key` for unsafe requests (RFC draft "The Idempotency-Key
HTTP Header Field"): per tenant and API client, 24 hours.

* The key is claimed in the request's own transaction, with a
  transaction-level advisory lock on (tenant, actor, key): a concurrent
  request with the same key cannot take it and answers 409 while the first
  is in flight. Claiming on a connection of its own made a keyed request
  hold two pooled connections at once: as many keyed requests as the pool
  has connections each held one, waited for a second and answered 503.
* The answer is stored in that same transaction, together with the data it
  describes: a replay returns exactly the first answer, and a crash can
  never leave data written without its answer (or the reverse).
* The same key with another body is 422; a failed request (an error
  answer, a crash, a failed commit) stores nothing and its lock ends with
  its transaction, so the client can retry at once.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from fastapi import Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.core.db import DbScope
from service.core.errors import AppError, Conflict
from service.core.time import utcnow

TTL = timedelta(hours=24)
MAX_KEY_LENGTH = 255


class IdempotencyKeyReused(AppError):
    status = 422
    code = "idempotency_key_reused"
    title = "Idempotency key reused with another request"


class IdempotencyInFlight(Conflict):
    code = "idempotency_in_flight"
    title = "A request with this idempotency key is in progress"


class InvalidIdempotencyKey(AppError):
    status = 400
    code = "invalid_idempotency_key"
    title = "Invalid Idempotency-Key header"


Handler = Callable[[], Awaitable[tuple[int, Any]]]


def _json(status: int, payload: Any, replayed: bool = False) -> Response:
    body = json.dumps(payload, separators=(",", ":"), default=str).encode()
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return Response(body, status_code=status, media_type="application/json", headers=headers)


async def run_idempotent(
    session: AsyncSession,
    scope: DbScope,
    actor_id: uuid.UUID,
    key: str | None,
    fingerprint: bytes,
    handler: Handler,
) -> Response:
    """Run `handler` once per (tenant, actor, key); replay its answer afterwards. The
    session is the request's (its transaction commits the data and the answer together)."""
    if key is None:
        status, payload = await handler()
        return _json(status, payload)
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidIdempotencyKey(
            f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters.",
            header="Idempotency-Key",
        )
    assert scope.tenant_id is not None
    digest = hashlib.sha256(fingerprint).digest()
    params = {"t": scope.tenant_id, "a": actor_id, "k": key}
    claimed = (
        await session.execute(
            text("select pg_try_advisory_xact_lock(hashtextextended(:lock, 0))"),
            {"lock": f"callpact.idempotency:{scope.tenant_id}:{actor_id}:{key}"},
        )
    ).scalar_one()
    if not claimed:
        raise IdempotencyInFlight(
            "The first request with this key is still running; retry later.",
            header="Idempotency-Key",
        )
    now = utcnow()
    # Expired answers make way for a fresh request, and so does a claim left `in_flight`
    # by an earlier version of this module (its request is over: we hold the lock).
    await session.execute(
        text(
            "delete from idempotency_keys where tenant_id = :t and actor_id = :a and key = :k "
            "and (expires_at < :now or state = 'in_flight')"
        ),
        {**params, "now": now},
    )
    existing = (
        await session.execute(
            text(
                "select request_hash, response_status, response_body from idempotency_keys "
                "where tenant_id = :t and actor_id = :a and key = :k"
            ),
            params,
        )
    ).first()
    if existing is not None:
        if bytes(existing.request_hash) != digest:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was used with another request.", header="Idempotency-Key"
            )
        return Response(
            bytes(existing.response_body),
            status_code=existing.response_status,
            media_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )
    status, payload = await handler()
    response = _json(status, payload)
    await session.execute(
        text(
            "insert into idempotency_keys (tenant_id, actor_id, key, request_hash, state, "
            "response_status, response_body, expires_at) "
            "values (:t, :a, :k, :h, 'done', :s, :b, :exp)"
        ),
        {**params, "h": digest, "s": status, "b": response.body, "exp": now + TTL},
    )
    return response
