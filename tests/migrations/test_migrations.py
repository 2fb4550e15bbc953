"""Migrations are reversible: upgrade → downgrade → upgrade on an empty database."""

from __future__ import annotations

import uuid
from datetime import date

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


async def test_the_monthly_histograms_start_from_the_daily_rows_held(
    pg_server: Server, db_settings: DatabaseSettings, run_id: str
) -> None:
    """0011 fills `kpi_monthly_waits` from the daily rows an existing database
    holds: cells of one outcome and edge add up over the month's days, a
    maximum stays exact only where every day's was, months stay apart."""
    name = f"callpact_mig11_{run_id}"
    dsn = await create_database(pg_server, name)
    settings = db_settings.model_copy(update={"url": dsn})
    tenant, project, client = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    try:
        await upgrade_async(settings, "0010")
        conn = await asyncpg.connect(dsn)
        try:
            days = [
                (date(2026, 3, 30), [0, 0, 1], [20, 21, 45], [2, 1, 1], [30_000, 20_500, 44_100],
                 [19_000, 20_500, 44_100], [True, True, True]),
                (date(2026, 3, 31), [0, 1], [20, 45], [1, 3], [19_500, 130_000],
                 [19_500, 44_900], [True, False]),
                (date(2026, 4, 1), [0], [20], [4], [70_000], [19_900], [True]),
            ]  # fmt: skip
            for day, o, e, n, s, m, x in days:
                await conn.execute(
                    "insert into kpi_daily_waits (tenant_id, project_id, client_id, channel,"
                    " local_day, outcome, edge_s, n, sum_ms, max_ms, max_exact)"
                    " values ($1, $2, $3, 'voice', $4, $5, $6, $7, $8, $9, $10)",
                    tenant, project, client, day, o, e, n, s, m, x,
                )  # fmt: skip
        finally:
            await conn.close()
        await upgrade_async(settings)
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                "select local_month, outcome, edge_s, n, sum_ms, max_ms, max_exact"
                " from kpi_monthly_waits where tenant_id = $1 order by local_month",
                tenant,
            )
        finally:
            await conn.close()
        assert [tuple(r) for r in rows] == [
            (date(2026, 3, 1), [0, 0, 1], [20, 21, 45], [3, 1, 4], [49_500, 20_500, 174_100],
             [19_500, 20_500, 44_900], [True, True, False]),
            (date(2026, 4, 1), [0], [20], [4], [70_000], [19_900], [True]),
        ]  # fmt: skip
    finally:
        await drop_database(pg_server, name)
