"""Signing keys rotate without a restart, and a flood of unknown kids cannot
turn into a flood of key-set reloads.

Signing keys are platform-wide, so these rotations are real for the whole
test run: that is safe because a rotation never stops an older key from
verifying (every other test keeps working with the tokens it holds)."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from joserfc.jwk import ECKey
from sqlalchemy import delete, select, update
from sqlmodel import col

import tenants.keys
from service.core.config import Settings
from service.core.db import Database
from service.core.time import utcnow
from service.worker import CRON_JOBS, WorkerSettings, rotate_signing_keys
from tenants.keys import REFRESH_S, UNKNOWN_KID_RELOAD_S, KeyStore, rotate_keys
from tenants.models import SigningKey
from tenants.security import encrypt
from tenants.tokens import InvalidToken, verify_access_token
from tests.factories import bearer, login, make_tenant
from tests.tenants.test_tokens import es256_signer, mint, private_key_of, token_header


@dataclass
class Clock:
    """`time.monotonic` as tenants.keys sees it, plus an offset the test moves."""

    offset: float = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    # Only the module's view of time: the event loop keeps the real clock.
    monkeypatch.setattr(tenants.keys, "time", SimpleNamespace(monotonic=fake.monotonic))
    return fake


def secret(settings: Settings) -> str:
    return settings.auth.secret_key.get_secret_value()


async def current_kids(db: Database) -> list[str]:
    async with db.admin_transaction() as admin:
        rows = (
            await admin.execute(
                select(col(SigningKey.kid))
                .where(col(SigningKey.verify_until) > utcnow())
                .order_by(col(SigningKey.created_at))
            )
        ).scalars()
        return list(rows)


async def test_rotation_takes_effect_without_a_restart(
    client: AsyncClient, settings: Settings, db: Database, app: FastAPI, clock: Clock
) -> None:
    store: KeyStore = app.state.keys
    seed = await make_tenant(client, settings)
    old_token = seed.admin_token
    old_kid = token_header(old_token)["kid"]
    # Another API replica, up since before the rotation.
    replica = KeyStore(db.engine, secret(settings))
    await replica.load()

    async with db.admin_transaction() as admin:
        new_kid = await rotate_keys(admin, secret(settings), force=True)
    assert new_kid is not None
    assert new_kid != old_kid

    # Until the store reloads, this process still signs with the key it has.
    assert token_header(await login(client, seed.slug, seed.admin_email))["kid"] == old_kid

    reloads = store.reloads
    clock.advance(REFRESH_S + 1)
    new_token = await login(client, seed.slug, seed.admin_email)
    assert token_header(new_token)["kid"] == new_kid
    assert store.reloads == reloads + 1

    # (a) tokens signed by the old key still verify, here and on a fresh process…
    for token in (old_token, new_token):
        response = await client.get("/api/v1/me", headers=bearer(token))
        assert response.status_code == 200, response.text
    fresh = KeyStore(db.engine, secret(settings))
    await fresh.load()
    issuer = settings.api.public_url
    assert (await verify_access_token(fresh, issuer, old_token)).user_id == seed.admin_id

    # …and the replica that has not reloaded yet verifies the new kid at once.
    replica_reloads = replica.reloads
    claims = await verify_access_token(replica, issuer, new_token)
    assert claims.user_id == seed.admin_id
    assert replica.reloads == replica_reloads + 1

    # (c) the published key set lists both, public parts only.
    jwks = (await client.get("/.well-known/jwks.json")).json()
    published = {k["kid"]: k for k in jwks["keys"]}
    assert {old_kid, new_kid} <= published.keys()
    assert all("d" not in k for k in jwks["keys"])
    assert all(k["kty"] == "EC" and k["crv"] == "P-256" for k in jwks["keys"])


async def test_a_retired_key_no_longer_verifies(
    client: AsyncClient, settings: Settings, db: Database, app: FastAPI
) -> None:
    """A key past its `verify_until` leaves the key set: its tokens are refused."""
    seed = await make_tenant(client, settings)
    key = ECKey.generate_key("P-256", private=True)
    kid = "retired-" + secrets.token_hex(4)
    past = utcnow() - timedelta(hours=2)
    async with db.admin_transaction() as admin:
        admin.add(
            SigningKey(
                kid=kid,
                private_jwk_enc=encrypt(secret(settings), b"{}", b"signing-key"),
                public_jwk=key.as_dict(private=False),
                created_at=past - timedelta(days=30),
                sign_until=past - timedelta(hours=1),
                verify_until=past,
            )
        )
    try:
        now = int(time.time())
        token = mint(
            {"alg": "ES256", "kid": kid, "typ": "at+jwt"},
            {
                "iss": settings.api.public_url,
                "aud": "callpact-api",
                "sub": str(seed.admin_id),
                "tid": str(seed.id),
                "role": "tenant_admin",
                "iat": now,
                "nbf": now,
                "exp": now + 600,
            },
            es256_signer(private_key_of(key)),
        )
        response = await client.get("/api/v1/me", headers=bearer(token))
        assert response.status_code == 401
        assert response.json()["code"] == "invalid_token"
        jwks = (await client.get("/.well-known/jwks.json")).json()
        assert kid not in {k["kid"] for k in jwks["keys"]}
    finally:
        async with db.admin_transaction() as admin:
            await admin.execute(delete(SigningKey).where(col(SigningKey.kid) == kid))


async def test_unknown_kid_flood_reloads_the_key_set_at_most_once_a_minute(
    client: AsyncClient, settings: Settings, app: FastAPI, clock: Clock
) -> None:
    store: KeyStore = app.state.keys
    seed = await make_tenant(client, settings)
    attacker = ECKey.generate_key("P-256", private=True)
    now = int(time.time())
    claims = {
        "iss": settings.api.public_url,
        "aud": "callpact-api",
        "sub": str(seed.admin_id),
        "tid": str(seed.id),
        "role": "tenant_admin",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    signer = es256_signer(private_key_of(attacker))

    async def wave(size: int) -> list[int]:
        tokens = [
            mint({"alg": "ES256", "kid": secrets.token_hex(8), "typ": "at+jwt"}, claims, signer)
            for _ in range(size)
        ]
        responses = await asyncio.gather(
            *(client.get("/api/v1/me", headers=bearer(t)) for t in tokens)
        )
        assert all(r.json()["code"] == "invalid_token" for r in responses)
        return [r.status_code for r in responses]

    start = store.reloads
    assert await wave(200) == [401] * 200
    assert store.reloads == start + 1
    # The legitimate caller is unaffected by the flood.
    assert (await client.get("/api/v1/me", headers=bearer(seed.admin_token))).status_code == 200

    clock.advance(UNKNOWN_KID_RELOAD_S - 5)
    await wave(50)
    assert store.reloads == start + 1

    clock.advance(10)  # a minute since the last unknown-kid reload
    await wave(50)
    assert store.reloads == start + 2


# --- the worker's daily rotation ------------------------------------------------------


def test_the_worker_rotates_keys_daily() -> None:
    job = next(c for c in CRON_JOBS if c.name == "tenants.rotate_keys")
    assert job in WorkerSettings.cron_jobs
    assert job.coroutine is rotate_signing_keys
    assert job.day is None
    assert job.month is None
    assert job.weekday is None
    assert isinstance(job.hour, set)
    assert len(job.hour) == 1
    assert isinstance(job.minute, set)
    assert len(job.minute) == 1
    assert job.unique


async def _make_rotation_due(db: Database) -> str:
    """The current key stops signing in 12 hours: the next rotation is due."""
    async with db.admin_transaction() as admin:
        latest = (
            await admin.execute(
                select(SigningKey).order_by(col(SigningKey.sign_until).desc()).limit(1)
            )
        ).scalar_one()
        await admin.execute(
            update(SigningKey)
            .where(col(SigningKey.kid) == latest.kid)
            .values(sign_until=utcnow() + timedelta(hours=12))
        )
        return latest.kid


async def test_rotation_job_is_idempotent(settings: Settings, db: Database) -> None:
    ctx: dict[str, Any] = {"settings": settings, "db": db}
    # Not due: nothing to do, however often it runs.
    assert await rotate_signing_keys(ctx) is None
    before = await current_kids(db)

    previous = await _make_rotation_due(db)
    added = await rotate_signing_keys(ctx)
    assert added is not None
    assert await rotate_signing_keys(ctx) is None
    assert await rotate_signing_keys(ctx) is None
    after = await current_kids(db)
    assert after == [*before, added]
    assert previous in after  # the retiring key still verifies

    store = KeyStore(db.engine, secret(settings))
    await store.load()
    assert (await store.signing_key()).kid == added


async def test_concurrent_rotations_add_one_key(settings: Settings, db: Database) -> None:
    """Two workers (or a worker and an API starting up) that find the rotation
    due at the same moment add one key between them, not two."""
    before = await current_kids(db)
    await _make_rotation_due(db)

    async def rotate_in_a_slow_transaction() -> str | None:
        async with db.admin_transaction() as admin:
            kid = await rotate_keys(admin, secret(settings))
            await asyncio.sleep(0.3)  # the other one looks while this one is uncommitted
        return kid

    results = await asyncio.gather(rotate_in_a_slow_transaction(), rotate_in_a_slow_transaction())
    added = [kid for kid in results if kid is not None]
    assert len(added) == 1, results
    assert await current_kids(db) == [*before, added[0]]


async def test_verification_refuses_a_kid_no_store_knows(settings: Settings, db: Database) -> None:
    """The store's answer to an unknown kid is a refusal, not an error."""
    store = KeyStore(db.engine, secret(settings))
    await store.load()
    assert await store.verification_key("no-such-kid") is None
    token = mint(
        {"alg": "ES256", "kid": "no-such-kid", "typ": "at+jwt"},
        {"sub": "x"},
        es256_signer(private_key_of(ECKey.generate_key("P-256", private=True))),
    )
    with pytest.raises(InvalidToken):
        await verify_access_token(store, settings.api.public_url, token)
