"""Plain async factories for tests. Tenants are created through the platform
API (the real path); other rows directly as the admin role."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

import asyncpg
from httpx import AsyncClient
from sqlalchemy import update
from sqlmodel import col

from service.core.config import DatabaseSettings, Settings
from service.core.db import Database
from service.core.time import utcnow
from tenants.keys import KeyStore, rotate_keys
from tenants.models import Client, SigningKey, User
from tenants.security import hash_password

PASSWORD = "correct horse battery staple"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def platform_headers(settings: Settings) -> dict[str, str]:
    return bearer(settings.auth.platform_admin_token.get_secret_value())


@dataclass
class TenantSeed:
    id: uuid.UUID
    slug: str
    admin_id: uuid.UUID
    admin_email: str
    admin_token: str


async def login(client: AsyncClient, slug: str, email: str, password: str = PASSWORD) -> str:
    response = await client.post(
        "/api/v1/auth/token", json={"tenant": slug, "email": email, "password": password}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def make_tenant(
    client: AsyncClient, settings: Settings, slug: str | None = None
) -> TenantSeed:
    slug = slug or f"t-{secrets.token_hex(5)}"
    email = f"admin@{slug}.example.com"
    response = await client.post(
        "/api/v1/platform/tenants",
        json={"slug": slug, "name": f"BPO {slug}", "admin": {"email": email, "password": PASSWORD}},
        headers=platform_headers(settings),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    token = await login(client, slug, email)
    return TenantSeed(
        uuid.UUID(body["tenant"]["id"]), slug, uuid.UUID(body["admin_user_id"]), email, token
    )


async def make_client(db: Database, tenant_id: uuid.UUID, name: str | None = None) -> Client:
    async with db.admin_transaction() as admin:
        client = Client(tenant_id=tenant_id, name=name or f"Client {secrets.token_hex(3)}")
        admin.add(client)
    return client


async def make_user(
    db: Database,
    tenant_id: uuid.UUID,
    role: str,
    *,
    client_id: uuid.UUID | None = None,
    email: str | None = None,
) -> User:
    async with db.admin_transaction() as admin:
        user = User(
            tenant_id=tenant_id,
            email=email or f"{role}-{secrets.token_hex(3)}@example.com",
            role=role,
            client_id=client_id,
            password_hash=await hash_password(PASSWORD),
        )
        admin.add(user)
    return user


async def user_token(
    client: AsyncClient,
    db: Database,
    seed: TenantSeed,
    role: str,
    *,
    client_id: uuid.UUID | None = None,
) -> tuple[User, str]:
    user = await make_user(db, seed.id, role, client_id=client_id)
    return user, await login(client, seed.slug, user.email)


async def new_signing_key(db: Database, settings: Settings, keys: KeyStore) -> str:
    """Rotate now: the next tokens are signed by a key of their own (its kid)."""
    async with db.admin_transaction() as admin:
        kid = await rotate_keys(admin, settings.auth.secret_key.get_secret_value(), force=True)
    assert kid is not None
    await keys.load()
    return kid


async def withdraw_signing_key(db: Database, settings: Settings, keys: KeyStore, kid: str) -> None:
    """`kid` neither signs nor verifies any more; a fresh key signs the next tests' tokens."""
    async with db.admin_transaction() as admin:
        await admin.execute(
            update(SigningKey)
            .where(col(SigningKey.kid) == kid)
            .values(sign_until=utcnow(), verify_until=utcnow())
        )
        secret = settings.auth.secret_key.get_secret_value()
        assert await rotate_keys(admin, secret, force=True) is not None
    await keys.load()


async def kill_change_listeners(settings: DatabaseSettings) -> None:
    """Terminate every API process's LISTEN connection to this database."""
    owner = await asyncpg.connect(settings.owner_dsn())
    try:
        killed = await owner.fetchval(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity"
            " where application_name = 'callpact-changes' and datname = current_database()"
        )
        assert killed >= 1
    finally:
        await owner.close()
