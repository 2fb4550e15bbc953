"""Migrations are reversible: upgrade → downgrade → upgrade on an empty database."""

from __future__ import annotations

import asyncpg

from service.core.config import DatabaseSettings
from service.core.migrate import downgrade_async, head_revision, upgrade_async
from tests.conftest import Server, create_database, drop_database


async def _state(dsn: str) -> dict[str, object]:
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch(
            "select tablename from pg_tables where schemaname = 'public' order by 1"
        )
        ext = await conn.fetchval("select count(*) from pg_extension where extname = 'btree_gist'")
        version = (
            await conn.fetchval("select version_num from alembic_version")
            if any(t["tablename"] == "alembic_version" for t in tables)
            else None
        )
        return {"tables": [t["tablename"] for t in tables], "btree_gist": ext, "version": version}
    finally:
        await conn.close()


async def test_upgrade_downgrade_upgrade(
    pg_server: Server, db_settings: DatabaseSettings, run_id: str
) -> None:
    name = f"callpact_mig_{run_id}"
    dsn = await create_database(pg_server, name)
    settings = db_settings.model_copy(update={"url": dsn})
    try:
        await upgrade_async(settings)
        first = await _state(dsn)
        assert first["version"] == head_revision()
        assert first["btree_gist"] == 1

        await downgrade_async(settings, "base")
        emptied = await _state(dsn)
        assert emptied["tables"] == ["alembic_version"]
        assert emptied["version"] is None
        assert emptied["btree_gist"] == 0

        await upgrade_async(settings)
        assert await _state(dsn) == first
    finally:
        await drop_database(pg_server, name)
