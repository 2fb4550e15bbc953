"""Portal sessions: an HttpOnly, Secure, SameSite=Lax cookie holding an opaque
session id; the session (tenant, user, CSRF token) lives in Redis with a
sliding expiry. Unsafe methods authenticated by the cookie must echo the
session's CSRF token (`X-CSRF-Token` header or `csrf_token` form field), so a
cross-site form cannot act for a logged-in viewer."""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass

from fastapi import Request, Response

from service.core.errors import Forbidden
from tenants.security import constant_time_equals, token_digest

COOKIE = "callpact_session"
TTL_S = 8 * 3600
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


class CsrfFailed(Forbidden):
    code = "csrf_failed"
    title = "CSRF check failed"


@dataclass(frozen=True)
class PortalSession:
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    csrf: str


def _key(token: str) -> str:
    return f"callpact:portal:session:{token_digest(token)}"


async def open_session(
    request: Request, response: Response, tenant_id: uuid.UUID, user_id: uuid.UUID
) -> PortalSession:
    token = secrets.token_urlsafe(32)
    session = PortalSession(tenant_id, user_id, secrets.token_urlsafe(24))
    await request.app.state.redis.set(
        _key(token),
        json.dumps({"tenant_id": str(tenant_id), "user_id": str(user_id), "csrf": session.csrf}),
        ex=TTL_S,
    )
    secure = (
        request.app.state.settings.api.public_url.startswith("https://")
        or request.url.scheme == "https"
    )
    response.set_cookie(
        COOKIE, token, max_age=TTL_S, httponly=True, secure=secure, samesite="lax", path="/"
    )
    return session


async def close_session(request: Request, response: Response) -> None:
    token = request.cookies.get(COOKIE)
    if token:
        await request.app.state.redis.delete(_key(token))
    response.delete_cookie(COOKIE, path="/")


async def current_session(request: Request) -> PortalSession | None:
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 128:
        return None
    raw = await request.app.state.redis.get(_key(token))
    if raw is None:
        return None
    await request.app.state.redis.expire(_key(token), TTL_S)
    data = json.loads(raw)
    session = PortalSession(uuid.UUID(data["tenant_id"]), uuid.UUID(data["user_id"]), data["csrf"])
    if request.method not in _SAFE:
        sent = request.headers.get("x-csrf-token")
        if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            form = await request.form()
            value = form.get("csrf_token")
            sent = value if isinstance(value, str) else None
        if sent is None or not constant_time_equals(sent, session.csrf):
            raise CsrfFailed("Send the session's CSRF token with this request.")
    return session
