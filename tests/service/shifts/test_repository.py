"""The clash scan and the clash lookup, straight on the repository."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from service.core.db import Database
from service.core.time import new_id
from service.shifts import repository as repo
from tenants.context import ROLE_PERMISSIONS, TenantContext
from tests.service.agents.factories import Floor, seed_pool

T0 = datetime(2026, 4, 6, tzinfo=UTC)


def ctx_of(floor: Floor) -> TenantContext:
    return TenantContext(
        floor.seed.id,
        "user",
        floor.seed.admin_id,
        ROLE_PERMISSIONS["tenant_admin"],
        role="tenant_admin",
    )


INSERT = text(
    "insert into shifts (tenant_id, id, agent_id, project_id, client_id, starts_at, ends_at,"
    " activity) values (:t, :id, :a, :p, :c, :s, :e, 'on_queue')"
)


async def test_the_scan_finds_every_overlap_the_constraint_would_refuse(
    db: Database, floor: Floor
) -> None:
    [(agent, _), (other, _)] = await seed_pool(db, floor.seed.id, 2, [floor.project_a])
    ctx = ctx_of(floor)

    def shift(who: uuid.UUID, start: float, end: float) -> dict[str, object]:
        return {
            "t": floor.seed.id,
            "id": new_id(),
            "a": who,
            "p": floor.project_a.id,
            "c": floor.client_a,
            "s": T0 + timedelta(hours=start),
            "e": T0 + timedelta(hours=end),
        }

    long, inner, later = shift(agent, 8, 16), shift(agent, 9, 10), shift(agent, 11, 12)
    async with db.transaction(ctx.db_scope()) as session:
        # Deferred, the constraint lets this transaction see what it would refuse.
        await session.execute(text("set constraints shifts_no_double_booking deferred"))
        for row in (long, inner, later, shift(agent, 16, 17), shift(other, 9, 10)):
            await session.execute(INSERT, row)
        found = await repo.find_overlaps(session, ctx, T0, T0 + timedelta(days=1))
        assert {(a, s) for a, s, _, _ in found} == {(agent, inner["id"]), (agent, later["id"])}
        clashes = await repo.clashing_shifts(
            session, ctx, agent, T0 + timedelta(hours=9.5), T0 + timedelta(hours=11.5)
        )
        assert [c.id for c in clashes] == [long["id"], inner["id"], later["id"]]
        with pytest.raises(IntegrityError, match="shifts_no_double_booking"):
            await session.execute(text("set constraints shifts_no_double_booking immediate"))
        await session.rollback()
    async with db.transaction(ctx.db_scope()) as session:
        assert await repo.find_overlaps(session, ctx, T0, T0 + timedelta(days=1)) == []


async def test_the_clash_lookup_reaches_a_day_long_shift_begun_the_day_before(
    db: Database, floor: Floor
) -> None:
    """The lookup bounds `starts_at` by the longest shift (24 h): a shift that
    began almost a day before the asked range still clashes; ranges stay
    half-open at both ends."""
    [(agent, _)] = await seed_pool(db, floor.seed.id, 1, [floor.project_a])
    ctx = ctx_of(floor)
    minute = timedelta(minutes=1)
    rows = {
        "day_long": (T0 - timedelta(hours=24) + minute, T0 + minute),
        "next": (T0 + timedelta(hours=1), T0 + timedelta(hours=2)),
    }
    ids = {name: new_id() for name in rows}
    async with db.transaction(ctx.db_scope()) as session:
        for name, (start, end) in rows.items():
            await session.execute(
                INSERT,
                {
                    "t": floor.seed.id,
                    "id": ids[name],
                    "a": agent,
                    "p": floor.project_a.id,
                    "c": floor.client_a,
                    "s": start,
                    "e": end,
                },
            )

        async def clashes(start: datetime, end: datetime) -> list[uuid.UUID]:
            return [c.id for c in await repo.clashing_shifts(session, ctx, agent, start, end)]

        assert await clashes(T0, T0 + timedelta(hours=1)) == [ids["day_long"]]
        assert await clashes(T0 + minute, T0 + timedelta(hours=1)) == []
        assert await clashes(T0 - timedelta(hours=30), T0 + timedelta(hours=3)) == [
            ids["day_long"],
            ids["next"],
        ]
        await session.rollback()


def _plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node.get("Plans", []) for n in _plan_nodes(child))]


async def test_the_scan_reads_the_agent_index_in_order_and_leaves_the_planner_as_it_was(
    db: Database, floor: Floor
) -> None:
    ctx = ctx_of(floor)
    end = T0 + timedelta(days=28)
    params = {"t": ctx.tenant_id, "start": T0, "end": end, "lookback": T0 - timedelta(days=1)}
    async with db.transaction(ctx.db_scope()) as session:
        await session.execute(text("select set_config('work_mem', '8MB', true)"))
        assert await repo.find_overlaps(session, ctx, T0, end) == []
        after = await session.execute(
            text("select current_setting('enable_sort'), current_setting('work_mem')")
        )
        assert tuple(after.one()) == ("on", "8MB")

        # The plan the scan runs under its settings: the window fed in order by
        # the covering index (no sort; no table column missing from the index).
        await session.execute(repo._SCAN_SETTINGS)
        explain = text(f"explain (format json) {repo._OVERLAPS.text}")
        [[plan]] = (await session.execute(explain, params)).all()
        nodes = _plan_nodes(plan[0]["Plan"])
        assert not [n for n in nodes if "Sort" in n["Node Type"]]
        [scan] = [n for n in nodes if n["Node Type"].endswith("Scan") and "Index Name" in n]
        assert (scan["Node Type"], scan["Index Name"]) == ("Index Only Scan", "shifts_agent_start")
        await session.rollback()


async def test_the_exclusion_constraint_leads_with_the_agent(db: Database, floor: Floor) -> None:
    """Migration 0009: the same three comparisons, agent first (a tenant's
    entries all tie on tenant_id, which made every insert and probe compare it
    for nothing), still deferrable for imports that swap two shifts."""
    ctx = ctx_of(floor)
    async with db.transaction(ctx.db_scope()) as session:
        definition = (
            await session.execute(
                text(
                    "select pg_get_constraintdef(oid) from pg_constraint"
                    " where conname = 'shifts_no_double_booking'"
                )
            )
        ).scalar_one()
    assert definition == (
        "EXCLUDE USING gist (agent_id WITH =, tenant_id WITH =, during WITH &&) DEFERRABLE"
    )
