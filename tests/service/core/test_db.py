"""The roles and the per-transaction tenant scope."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from service.core.config import DatabaseSettings
from service.core.db import Database, DbScope, planner_settings, set_scope


async def test_application_role_cannot_bypass_rls(
    app_engine: AsyncEngine, db_settings: DatabaseSettings
) -> None:
    async with app_engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "select current_user, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb from pg_roles where rolname = current_user"
                )
            )
        ).one()
    assert row.current_user == db_settings.app_role
    assert row.rolsuper is False
    assert row.rolbypassrls is False
    assert row.rolcreaterole is False
    assert row.rolcreatedb is False


async def test_admin_role_bypasses_rls_but_is_no_superuser(
    admin_engine: AsyncEngine, db_settings: DatabaseSettings
) -> None:
    async with admin_engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "select current_user, rolsuper, rolbypassrls from pg_roles where rolname = current_user"
                )
            )
        ).one()
    assert row.current_user == db_settings.admin_role
    assert row.rolbypassrls is True
    assert row.rolsuper is False


async def test_application_role_owns_nothing_and_cannot_create(app_engine: AsyncEngine) -> None:
    async with app_engine.connect() as conn:
        owned = (
            await conn.execute(
                text(
                    "select count(*) from pg_class where relowner = (select oid from pg_roles where rolname = current_user)"
                )
            )
        ).scalar()
        can_create = (
            await conn.execute(
                text("select has_schema_privilege(current_user, 'public', 'CREATE')")
            )
        ).scalar()
    assert owned == 0
    assert can_create is False


async def test_scope_is_set_per_transaction_and_fails_closed(db: Database) -> None:
    tenant = uuid.uuid4()
    async with db.session() as session:
        unset = (
            await session.execute(text("select nullif(current_setting('app.tenant_id', true), '')"))
        ).scalar()
        assert unset is None
        await set_scope(session, DbScope(tenant_id=tenant))
        seen = (
            await session.execute(text("select current_setting('app.tenant_id', true)"))
        ).scalar()
        assert seen == str(tenant)
        await session.commit()  # a savepoint here; the next begin re-applies the scope
        again = (
            await session.execute(
                text(
                    "select current_setting('app.tenant_id', true), current_setting('app.client_id', true)"
                )
            )
        ).one()
        assert again[0] == str(tenant)
        assert again[1] == ""


async def test_setting_is_transaction_local_on_a_pooled_connection(app_engine: AsyncEngine) -> None:
    tenant = uuid.uuid4()
    async with app_engine.connect() as conn:
        async with conn.begin():
            await conn.execute(
                text("select set_config('app.tenant_id', :t, true)"), {"t": str(tenant)}
            )
        async with conn.begin():
            after = (
                await conn.execute(
                    text("select nullif(current_setting('app.tenant_id', true), '')")
                )
            ).scalar()
    assert after is None


async def test_planner_settings_hold_inside_the_block_and_are_restored_after(db: Database) -> None:
    async def show(session: AsyncSession, name: str) -> str:
        return str((await session.execute(text(f"show {name}"))).scalar_one())

    async with db.transaction() as db_session:
        await db_session.execute(text("set local work_mem = '5MB'"))
        async with planner_settings(db_session, work_mem="48MB", enable_sort="off"):
            assert await show(db_session, "work_mem") == "48MB"
            assert await show(db_session, "enable_sort") == "off"
        # The transaction's own earlier value, not the server default, comes back.
        assert await show(db_session, "work_mem") == "5MB"
        assert await show(db_session, "enable_sort") == "on"
    async with db.transaction() as db_session:
        assert await show(db_session, "work_mem") != "48MB"


async def test_planner_settings_die_with_a_failed_savepoint(db: Database) -> None:
    async with db.transaction() as db_session:

        async def fail() -> None:
            async with db_session.begin_nested(), planner_settings(db_session, enable_sort="off"):
                assert (await db_session.execute(text("show enable_sort"))).scalar_one() == "off"
                await db_session.execute(text("select 1 / 0"))

        with pytest.raises(DBAPIError):
            await fail()
        # Rolling back to the savepoint undid the setting; the transaction goes on.
        assert (await db_session.execute(text("show enable_sort"))).scalar_one() == "on"
