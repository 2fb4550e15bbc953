"""`Idempotency-Key` for unsafe requests (RFC draft "The Idempotency-Key
HTTP Header Field"): per tenant and API client, 24 hours.

* The key is claimed in a transaction of its own (so a concurrent request
  with the same key sees it at once: 409 while in flight).
* The answer is stored in the request's own transaction, together with
  the data it describes: a replay returns exactly the first answer, and a
  crash can never leave data written without its answer (or the reverse).
* The same key with another body is 422; a failed request releases the key
  so the client can retry.
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

from service.core.db import Database, DbScope
from service.core.errors import AppError, Conflict
from service.core.time import utcnow

TTL = timedelta(hours=24)
IN_FLIGHT_LEASE = timedelta(minutes=10)
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
    db: Database,
    session: AsyncSession,
    scope: DbScope,
    actor_id: uuid.UUID,
    key: str | None,
    fingerprint: bytes,
    handler: Handler,
) -> Response:
    """Run `handler` once per (tenant, actor, key); replay its answer afterwards."""
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
    now = utcnow()
    async with db.transaction(scope) as claim:
        # Expired answers and abandoned claims make way for a fresh request.
        await claim.execute(
            text(
                "delete from idempotency_keys where tenant_id = :t and actor_id = :a and key = :k "
                "and (expires_at < :now or (state = 'in_flight' and created_at < :lease))"
            ),
            {**params, "now": now, "lease": now - IN_FLIGHT_LEASE},
        )
        claimed = (
            await claim.execute(
                text(
                    "insert into idempotency_keys (tenant_id, actor_id, key, request_hash, state, expires_at) "
                    "values (:t, :a, :k, :h, 'in_flight', :exp) on conflict do nothing returning 1"
                ),
                {**params, "h": digest, "exp": now + TTL},
            )
        ).first()
        existing = None
        if claimed is None:
            existing = (
                await claim.execute(
                    text(
                        "select request_hash, state, response_status, response_body from idempotency_keys "
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
        if existing.state == "in_flight":
            raise IdempotencyInFlight(
                "The first request with this key is still running; retry later.",
                header="Idempotency-Key",
            )
        return Response(
            bytes(existing.response_body),
            status_code=existing.response_status,
            media_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )
    try:
        status, payload = await handler()
        response = _json(status, payload)
        await session.execute(
            text(
                "update idempotency_keys set state = 'done', response_status = :s, response_body = :b "
                "where tenant_id = :t and actor_id = :a and key = :k"
            ),
            {**params, "s": status, "b": response.body},
        )
        return response
    except BaseException:
        async with db.transaction(scope) as release:
            await release.execute(
                text(
                    "delete from idempotency_keys where tenant_id = :t and actor_id = :a and key = :k and state = 'in_flight'"
                ),
                params,
            )
        raise
