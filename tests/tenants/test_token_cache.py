"""Verified access tokens are remembered only while they would verify again:
a token whose key has left the key set is refused even after it was
accepted, and an expired one is never served from memory."""

from __future__ import annotations

import time
import uuid

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from service.core.config import Settings
from service.core.db import Database
from tenants.tokens import (
    _VERIFIED,
    LEEWAY_S,
    AccessClaims,
    InvalidToken,
    _Verified,
    verify_access_token,
)
from tests.factories import bearer, make_tenant, new_signing_key, withdraw_signing_key


async def test_a_remembered_token_is_refused_once_its_key_is_withdrawn(
    app: FastAPI, client: AsyncClient, settings: Settings, db: Database
) -> None:
    kid = await new_signing_key(db, settings, app.state.keys)
    seed = await make_tenant(client, settings)  # logs in: its token is signed by the new key
    token = seed.admin_token
    for _ in range(2):  # verified, then from memory
        assert (await client.get("/api/v1/me", headers=bearer(token))).status_code == 200
    assert _VERIFIED.get(token, settings.api.public_url) is not None

    await withdraw_signing_key(db, settings, app.state.keys, kid)
    refused = await client.get("/api/v1/me", headers=bearer(token))
    assert refused.status_code == 401
    assert refused.json()["code"] == "invalid_token"
    # Another issuer never reads this process's memory of the token.
    assert _VERIFIED.get(token, "https://elsewhere.example") is None


def test_an_expired_token_is_forgotten() -> None:
    verified = _Verified()
    claims = AccessClaims(uuid.uuid4(), uuid.uuid4(), "analyst", None, "j")
    verified.put("a.b.c", claims, "kid", "iss", time.time() - LEEWAY_S - 1)
    assert verified.get("a.b.c", "iss") is None
    verified.put("d.e.f", claims, "kid", "iss", time.time() + 60)
    assert verified.get("d.e.f", "iss") == (claims, "kid")


def test_memory_is_bounded() -> None:
    verified = _Verified()
    verified.MAX = 3
    claims = AccessClaims(uuid.uuid4(), uuid.uuid4(), "analyst", None, "j")
    for i in range(5):
        verified.put(f"t{i}", claims, "kid", "iss", time.time() + 60)
    assert [verified.get(f"t{i}", "iss") is not None for i in range(5)] == [
        False,
        False,
        True,
        True,
        True,
    ]


async def test_a_forged_token_is_not_remembered(app: FastAPI, settings: Settings) -> None:
    forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."
    with pytest.raises(InvalidToken):
        await verify_access_token(app.state.keys, settings.api.public_url, forged)
    assert _VERIFIED.get(forged, settings.api.public_url) is None
