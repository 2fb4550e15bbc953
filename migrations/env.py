"""Alembic environment: runs as the owner role (DATABASE_URL) on asyncpg.

The role names and passwords the migrations need come from the
`DatabaseSettings` that `service.core.migrate` puts in the config attributes
(or from the environment when alembic is run by hand).
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from service.core.config import DatabaseSettings
from service.core.db import asyncpg_url

config = context.config
settings: DatabaseSettings = config.attributes.get("database_settings") or DatabaseSettings()
config.attributes["database_settings"] = settings


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=None,
        transaction_per_migration=False,
        compare_type=True,
    )
    with context.begin_transaction():
        # Serialise concurrent `migrate` runs (two pods starting at once).
        connection.exec_driver_sql("select pg_advisory_xact_lock(7317001)")
        context.run_migrations()


async def run_async() -> None:
    engine = create_async_engine(asyncpg_url(settings.owner_dsn()), poolclass=pool.NullPool)
    async with engine.connect() as conn:
        await conn.run_sync(run_migrations)
    await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported: run `callpact migrate upgrade`")
asyncio.run(run_async())
