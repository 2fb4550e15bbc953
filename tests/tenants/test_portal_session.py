"""The portal's cookie session: unsafe requests need the session's CSRF token."""

from __future__ import annotations

import json
import secrets

from fastapi import FastAPI
from httpx import AsyncClient

from service.core.config import Settings
from tenants.portal_session import COOKIE, TTL_S, _key
from tests.factories import make_tenant


async def _session(app: FastAPI, tenant_id: object, user_id: object) -> tuple[str, str]:
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    await app.state.redis.set(
        _key(token),
        json.dumps({"tenant_id": str(tenant_id), "user_id": str(user_id), "csrf": csrf}),
        ex=TTL_S,
    )
    return token, csrf


async def test_cookie_session_reads_but_writes_only_with_its_csrf_token(
    client: AsyncClient, app: FastAPI, settings: Settings
) -> None:
    seed = await make_tenant(client, settings)
    token, csrf = await _session(app, seed.id, seed.admin_id)
    client.cookies.set(COOKIE, token)
    me = await client.get("/api/v1/me")
    assert me.status_code == 200
    assert me.json()["tenant"]["slug"] == seed.slug
    forged = await client.patch("/api/v1/tenant", json={"report_footer": "cross-site"})
    assert forged.status_code == 403
    assert forged.json()["code"] == "csrf_failed"
    wrong = await client.patch(
        "/api/v1/tenant", json={"report_footer": "cross-site"}, headers={"X-CSRF-Token": "guess"}
    )
    assert wrong.status_code == 403
    ok = await client.patch(
        "/api/v1/tenant", json={"report_footer": "from the portal"}, headers={"X-CSRF-Token": csrf}
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["report_footer"] == "from the portal"


async def test_unknown_or_expired_session_cookie_is_401(client: AsyncClient) -> None:
    client.cookies.set(COOKIE, "no-such-session")
    response = await client.get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["code"] == "missing_credentials"
