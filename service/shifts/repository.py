"""All SQL of the shifts domain.

Reads start from `scoped(Shift, ctx)` (tenant, client, the supervisor's
projects). Two reads deliberately look past the caller's client and projects
(never past the tenant): the clash lookup, because a planned double booking
is one whatever project the other shift is on, and the check of an import's
external ids, because they are unique per tenant. Both return only ids and
ranges; callers blank the project of a shift the caller may not see.

The bulk import loads a temporary staging table with COPY (row-level
security forbids COPY into tenant tables), checks it set-wise, then writes
under the tenant's settings: one UPDATE of the stored shifts the file
changes (by external id), one `INSERT … SELECT` of the rest."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import DateTime, Integer, Select, Uuid, and_, bindparam, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from service.agents.models import Agent, Certification
from service.core.pagination import paginate
from service.core.time import BATCH_ID_SQL, MAX_BATCH_IDS, id_prefix
from service.projects.models import Project
from service.shifts.intervals import MAX_SHIFT
from service.shifts.models import Shift
from service.shifts.rows import ImportRow
from tenants.context import TenantContext, scoped

STAGE = "shift_import_stage"
_TS = DateTime(timezone=True)


@dataclass(frozen=True, slots=True)
class ImportProject:
    client_id: uuid.UUID
    time_zone: str
    status: str


@dataclass(frozen=True, slots=True)
class Clash:
    id: uuid.UUID
    project_id: uuid.UUID
    client_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime


# Hot path (every booking that clashes, and availability checks): plain SQL,
# prepared once per connection, answered from the agent's index entries. The
# bounds on `starts_at` are implied by `&&` (a shift lasts at most MAX_SHIFT)
# and keep a read through `shifts_agent_start` to the agent's day, not its
# whole history, whichever index the planner picks.
_CLASHES = text(
    """
    select id, project_id, client_id, starts_at, ends_at from shifts
    where tenant_id = :tenant and agent_id = :agent
      and during && tstzrange(:starts_at, :ends_at, '[)')
      and starts_at < :ends_at and starts_at > :lookback
      and id is distinct from :exclude
    order by starts_at
    limit :limit
    """
).bindparams(
    bindparam("tenant", type_=Uuid()),
    bindparam("agent", type_=Uuid()),
    bindparam("starts_at", type_=_TS),
    bindparam("ends_at", type_=_TS),
    bindparam("lookback", type_=_TS),
    bindparam("exclude", type_=Uuid()),
    bindparam("limit", type_=Integer()),
)


async def clashing_shifts(
    session: AsyncSession,
    ctx: TenantContext,
    agent_id: uuid.UUID,
    starts_at: datetime,
    ends_at: datetime,
    *,
    exclude: uuid.UUID | None = None,
    limit: int = 10,
) -> list[Clash]:
    """The agent's shifts overlapping `[starts_at, ends_at)`, on any project."""
    result = await session.execute(
        _CLASHES,
        {
            "tenant": ctx.tenant_id,
            "agent": agent_id,
            "starts_at": starts_at,
            "ends_at": ends_at,
            "lookback": starts_at - MAX_SHIFT,
            "exclude": exclude,
            "limit": limit,
        },
    )
    return [Clash(*row) for row in result.all()]


async def get_shift(
    session: AsyncSession, ctx: TenantContext, shift_id: uuid.UUID, *, for_update: bool = False
) -> Shift | None:
    stmt = scoped(Shift, ctx).where(col(Shift.id) == shift_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_project(
    session: AsyncSession, ctx: TenantContext, project_id: uuid.UUID
) -> Project | None:
    stmt = scoped(Project, ctx).where(col(Project.id) == project_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_agent(session: AsyncSession, ctx: TenantContext, agent_id: uuid.UUID) -> Agent | None:
    from service.agents.repository import get_agent as get_pool_agent

    return await get_pool_agent(session, ctx, agent_id)


async def is_certified(
    session: AsyncSession,
    ctx: TenantContext,
    agent_id: uuid.UUID,
    project_id: uuid.UUID,
    first_day: date,
    last_day: date,
) -> bool:
    """Certified on every local day the shift touches (a night shift's second day too)."""
    stmt = scoped(Certification, ctx).where(
        col(Certification.agent_id) == agent_id,
        col(Certification.project_id) == project_id,
        col(Certification.certified_from) <= first_day,
        or_(
            col(Certification.certified_until).is_(None),
            col(Certification.certified_until) >= last_day,
        ),
    )
    return (await session.execute(stmt.exists().select())).scalar() is True


def _in_window(stmt: Select[Any], start: datetime | None, end: datetime | None) -> Select[Any]:
    # Shifts last at most a day: the lower bound keeps the starts_at index usable.
    if start is not None:
        stmt = stmt.where(col(Shift.ends_at) > start, col(Shift.starts_at) > start - MAX_SHIFT)
    if end is not None:
        stmt = stmt.where(col(Shift.starts_at) < end)
    return stmt


async def list_shifts(
    session: AsyncSession,
    ctx: TenantContext,
    *,
    agent_id: uuid.UUID | None,
    project_id: uuid.UUID | None,
    activity: str | None,
    start: datetime | None,
    end: datetime | None,
    sort: str,
    descending: bool,
    cursor: str | None,
    limit: int,
) -> tuple[list[Shift], str | None]:
    stmt = scoped(Shift, ctx)
    if agent_id is not None:
        stmt = stmt.where(col(Shift.agent_id) == agent_id)
    if project_id is not None:
        stmt = stmt.where(col(Shift.project_id) == project_id)
    if activity is not None:
        stmt = stmt.where(col(Shift.activity) == activity)
    stmt = _in_window(stmt, start, end)
    sort_column = {
        "start": col(Shift.starts_at),
        "created_at": col(Shift.created_at),
        "updated_at": col(Shift.updated_at),
    }[sort]
    return await paginate(
        session,
        stmt,
        sort=sort_column,
        id_column=col(Shift.id),
        limit=limit,
        cursor=cursor,
        descending=descending,
    )


async def shifts_in_window(
    session: AsyncSession,
    ctx: TenantContext,
    start: datetime,
    end: datetime,
    *,
    project_id: uuid.UUID | None = None,
    agent_id: uuid.UUID | None = None,
) -> list[tuple[Shift, str, str]]:
    """Shifts overlapping `[start, end)` with their agent's and project's names."""
    stmt = (
        _in_window(scoped(Shift, ctx), start, end)
        .add_columns(col(Agent.name), col(Project.name))
        .join(
            Agent,
            and_(
                col(Agent.tenant_id) == col(Shift.tenant_id), col(Agent.id) == col(Shift.agent_id)
            ),
        )
        .join(
            Project,
            and_(
                col(Project.tenant_id) == col(Shift.tenant_id),
                col(Project.id) == col(Shift.project_id),
            ),
        )
        .order_by(col(Shift.starts_at), col(Agent.name), col(Shift.id))
    )
    if project_id is not None:
        stmt = stmt.where(col(Shift.project_id) == project_id)
    if agent_id is not None:
        stmt = stmt.where(col(Shift.agent_id) == agent_id)
    return [(row[0], row[1], row[2]) for row in (await session.execute(stmt)).all()]


async def tenant_time_zone(session: AsyncSession, ctx: TenantContext) -> str:
    from tenants.models import Tenant

    stmt = select(col(Tenant.time_zone)).where(col(Tenant.id) == ctx.tenant_id)
    return (await session.execute(stmt)).scalar_one_or_none() or "UTC"


# The clash scan reads a window in (agent, start) order from `shifts_agent_start`
# (tenant_id, agent_id, starts_at, covering ends_at, client_id, id): an
# index-only scan feeding the window without a sort. The planner, left alone,
# sorts instead: the client policy of row-level security (`app.client_id is
# null or client_id = app.client_id`) is estimated to keep ~1/18 of the rows
# (a null test on a parameter, 0.5 %, or one client in 20), so a sort of the
# month looks ~18 times cheaper than it is — ~100 ms for 100 000 shifts in
# booking order, against ~20 ms for the ordered index. `enable_sort` off
# leaves only the ordered path (a sort stays possible, at a penalty, should
# the index be missing) for this one statement: the previous values come back
# right after it, so the rest of the transaction plans as before. `work_mem`
# covers that fallback sort. (The sub-select reads the old values before the
# outer row sets the new ones.)
_SCAN_SETTINGS = text(
    """
    select old.sort, old.mem,
           set_config('enable_sort', 'off', true), set_config('work_mem', '32MB', true)
    from (select current_setting('enable_sort') as sort,
                 current_setting('work_mem') as mem offset 0) old
    """
)
_SCAN_RESTORE = text(
    "select set_config('enable_sort', :sort, true), set_config('work_mem', :mem, true)"
)
_OVERLAPS = text(
    """
    select agent_id, id, starts_at, prev_end from (
      select agent_id, id, starts_at,
             max(ends_at) over (partition by agent_id order by starts_at
                                rows between unbounded preceding and 1 preceding)
               as prev_end
      from shifts
      where tenant_id = :t and starts_at < :end and starts_at > :lookback
        and ends_at > :start
    ) s
    where prev_end > starts_at
    """
).bindparams(
    bindparam("t", type_=Uuid()),
    bindparam("start", type_=_TS),
    bindparam("end", type_=_TS),
    bindparam("lookback", type_=_TS),
)


async def find_overlaps(
    session: AsyncSession, ctx: TenantContext, start: datetime, end: datetime
) -> list[tuple[uuid.UUID, uuid.UUID, datetime, datetime]]:
    """A full clash scan of a window: (agent, shift, its start, the latest end
    of the agent's earlier shifts) for every shift that starts before an
    earlier one ended. One ordered pass per agent with a running maximum, so
    non-adjacent overlaps are found too; empty while the exclusion
    constraint holds."""
    sort, mem, *_ = (await session.execute(_SCAN_SETTINGS)).one()
    result = await session.execute(
        _OVERLAPS, {"t": ctx.tenant_id, "start": start, "end": end, "lookback": start - MAX_SHIFT}
    )
    found = [(r[0], r[1], r[2], r[3]) for r in result.all()]
    await session.execute(_SCAN_RESTORE, {"sort": sort, "mem": mem})
    return found


# --- bulk import ---------------------------------------------------------------------


async def resolve_external_agents(
    session: AsyncSession, ctx: TenantContext, refs: Sequence[str], system: str | None
) -> dict[str, list[uuid.UUID]]:
    """The agents holding each external id (in `system`, or in any system)."""
    if not refs:
        return {}
    query = (
        "select external_id, agent_id from agent_external_ids"
        " where tenant_id = :t and external_id = any(:refs)"
    )
    params: dict[str, Any] = {"t": ctx.tenant_id, "refs": list(refs)}
    if system is not None:
        query += " and system = :system"
        params["system"] = system
    out: dict[str, list[uuid.UUID]] = {}
    for external_id, agent_id in (await session.execute(text(query), params)).all():
        owners = out.setdefault(external_id, [])
        if agent_id not in owners:
            owners.append(agent_id)
    return out


# For the rest of the import's transaction:
# * JIT off: the checks are a few set-wise queries whose cost estimates would
#   switch JIT compilation on; it costs more than it saves at this size.
# * work_mem: sorting a file's rows into agent order should not spill to disk.
# * statistics target 10 (the sample ANALYZE takes, 300 x target rows): the
#   staging table's statistics serve only to size joins (row count, distinct
#   agents and external ids); the default sample of 30 000 rows took ~100 ms
#   of a 100 000-row import (~0.4x a raw COPY of the file), 3 000 ~15 ms.
_STAGE_SETTINGS = text(
    "select set_config('jit', 'off', true), set_config('work_mem', '64MB', true),"
    " set_config('default_statistics_target', '10', true)"
)


async def stage_rows(
    session: AsyncSession,
    rows: Sequence[ImportRow],
    projects: Mapping[uuid.UUID, ImportProject],
) -> None:
    """A temporary staging table (dropped at commit) filled by COPY on the
    request's own connection and transaction. Each row carries its project's
    client and time zone (None: a project the caller may not book on), so
    neither the checks nor the writes join `projects` again."""
    if len(rows) > MAX_BATCH_IDS:  # the ids are numbered by the staged rows' ordinals
        raise ValueError(f"at most {MAX_BATCH_IDS} shifts in one import")
    await session.execute(_STAGE_SETTINGS)
    await session.execute(
        text(
            f"""
            create temporary table {STAGE} (
              row_no int not null,
              seq int not null,
              agent_id uuid,
              project_id uuid not null,
              client_id uuid,
              time_zone text,
              starts_at timestamptz not null,
              ends_at timestamptz not null,
              activity text not null,
              note text,
              external_id text,
              ok boolean not null default true
            ) on commit drop
            """
        )
    )
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    bookable = {
        project_id: (p.client_id, p.time_zone)
        for project_id, p in projects.items()
        if p.status == "active"
    }
    unbookable = (None, None)
    # A generator, not a list: each tuple is freed once asyncpg has encoded
    # it. A list of 100 000 tuples (of UUIDs, which the garbage collector
    # tracks) set off collections that took ~100-250 ms of a 100 000-row import.
    await driver.copy_records_to_table(
        STAGE,
        records=(
            (
                r.row,
                seq,
                r.agent_id,
                r.project_id,
                *bookable.get(r.project_id, unbookable),
                r.starts_at,
                r.ends_at,
                r.activity,
                r.note,
                r.external_id,
            )
            for seq, r in enumerate(rows)
        ),
        columns=(
            "row_no",
            "seq",
            "agent_id",
            "project_id",
            "client_id",
            "time_zone",
            "starts_at",
            "ends_at",
            "activity",
            "note",
            "external_id",
        ),
    )
    await session.execute(text(f"analyze {STAGE}"))


async def stage_overlapping_agents(session: AsyncSession) -> list[uuid.UUID]:
    """Agents with rows of the file that overlap each other: one sorted pass
    per agent with a running maximum of the ends before each start. Only
    their rows need the exact sweep that pairs them up."""
    result = await session.execute(
        text(
            f"""
            select distinct agent_id from (
              select agent_id, starts_at,
                     max(ends_at) over (partition by agent_id order by starts_at, row_no
                                        rows between unbounded preceding and 1 preceding)
                       as prev_end
              from {STAGE} where agent_id is not null
            ) s
            where prev_end > starts_at
            """
        )
    )
    return [r[0] for r in result.all()]


async def stage_problems(session: AsyncSession, ctx: TenantContext) -> list[tuple[int, str]]:
    """(row, problem code) for rows whose agent or certification is wrong (the
    certification must hold on every local day of the shift, in the project's zone:
    from the day it starts to the day of its last instant)."""
    result = await session.execute(
        text(
            f"""
            select * from (
            select s.row_no,
                   case
                     when a.id is null then 'unknown_agent'
                     when a.status <> 'active' then 'agent_inactive'
                   end as agent_problem,
                   case
                     when a.status = 'active' and s.client_id is not null
                      and s.activity <> 'training'
                      and (c.agent_id is null
                           or c.certified_from > (s.starts_at at time zone s.time_zone)::date
                           or c.certified_until
                              < ((s.ends_at - interval '1 microsecond') at time zone s.time_zone)::date)
                     then 'not_certified'
                   end as certification_problem
            from {STAGE} s
            left join agents a on a.tenant_id = :t and a.id = s.agent_id
            -- One certification per agent and project (a unique key): a join, not a probe per row.
            left join agent_certifications c on c.tenant_id = :t and c.agent_id = s.agent_id
              and c.project_id = s.project_id
            where s.agent_id is not null
            ) checked
            where coalesce(agent_problem, certification_problem) is not null
            """
        ),
        {"t": ctx.tenant_id},
    )
    out: list[tuple[int, str]] = []
    for row_no, *codes in result.all():
        out.extend((row_no, code) for code in codes if code is not None)
    return out


async def stage_unchanged(
    session: AsyncSession, ctx: TenantContext, rows: Sequence[int]
) -> set[int]:
    """Those of `rows` that repeat the stored shift of their external id exactly:
    they change nothing (the comparison `write_staged` makes)."""
    if not rows:
        return set()
    result = await session.execute(
        text(
            f"""
            select s.row_no from {STAGE} s
            join shifts sh on sh.tenant_id = :t and sh.external_id = s.external_id
            where s.row_no = any(:rows)
              and (sh.agent_id, sh.project_id, sh.starts_at, sh.ends_at, sh.activity, sh.note)
                is not distinct from (s.agent_id, s.project_id, s.starts_at, s.ends_at,
                                      s.activity, s.note)
            """
        ),
        {"t": ctx.tenant_id, "rows": list(rows)},
    )
    return {r[0] for r in result.all()}


async def import_projects(
    session: AsyncSession, ctx: TenantContext, project_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, ImportProject]:
    """The projects an import names that the caller may see."""
    if not project_ids:
        return {}
    stmt = scoped(Project, ctx).where(col(Project.id).in_(project_ids))
    return {
        p.id: ImportProject(p.client_id, p.time_zone, p.status)
        for p in (await session.execute(stmt)).scalars()
    }


async def stage_external_ids(
    session: AsyncSession, ctx: TenantContext
) -> list[tuple[int, uuid.UUID, uuid.UUID]]:
    """(row, project, client) of the stored shift each row's external id names."""
    result = await session.execute(
        text(
            f"""
            select s.row_no, sh.project_id, sh.client_id from {STAGE} s
            join shifts sh on sh.tenant_id = :t and sh.external_id = s.external_id
            """
        ),
        {"t": ctx.tenant_id},
    )
    return [(r[0], r[1], r[2]) for r in result.all()]


async def stage_clashes(
    session: AsyncSession, ctx: TenantContext, *, only_ok: bool
) -> list[tuple[int, Clash]]:
    """Rows overlapping a stored shift of their agent, except the stored
    shifts the import replaces (same external id, in a row still to be written)."""
    ok, replaced_ok = (" and s.ok", " and r.ok") if only_ok else ("", "")
    result = await session.execute(
        text(
            f"""
            select s.row_no, sh.id, sh.project_id, sh.client_id, sh.starts_at, sh.ends_at
            from {STAGE} s
            join shifts sh on sh.tenant_id = :t and sh.agent_id = s.agent_id
              and sh.during && tstzrange(s.starts_at, s.ends_at, '[)')
            where s.agent_id is not null{ok}
              and (sh.external_id is null or not exists (
                select 1 from {STAGE} r where r.external_id = sh.external_id{replaced_ok}))
            order by s.row_no, sh.starts_at
            """
        ),
        {"t": ctx.tenant_id},
    )
    return [(r[0], Clash(r[1], r[2], r[3], r[4], r[5])) for r in result.all()]


async def mark_rejected(session: AsyncSession, rows: Sequence[int]) -> None:
    if rows:
        await session.execute(
            text(f"update {STAGE} set ok = false where row_no = any(:rows)"), {"rows": list(rows)}
        )


async def write_staged(session: AsyncSession, ctx: TenantContext) -> tuple[int, int]:
    """Write the staged rows still `ok`: a row whose external id is stored
    updates that shift, only if something changed (a re-import is a no-op);
    the others are inserted. Returns (inserted, updated).

    Two statements rather than `INSERT … ON CONFLICT`: speculative insertion
    nearly doubles the cost of every row. The updates go first, in one
    statement, so that shifts trading places are checked by the (deferrable)
    exclusion constraint at its end; a concurrent writer of the same external
    id meets the unique key in the insert."""
    updated = await session.execute(
        text(
            f"""
            with changed as (
              update shifts sh set
                agent_id = s.agent_id, project_id = s.project_id, client_id = s.client_id,
                starts_at = s.starts_at, ends_at = s.ends_at, activity = s.activity,
                note = s.note, version = sh.version + 1, updated_at = now()
              from {STAGE} s
              where sh.tenant_id = :t and sh.external_id = s.external_id and s.ok
                and (sh.agent_id, sh.project_id, sh.starts_at, sh.ends_at, sh.activity, sh.note)
                  is distinct from (s.agent_id, s.project_id, s.starts_at, s.ends_at,
                                    s.activity, s.note)
              returning 1
            )
            select count(*) from changed
            """
        ),
        {"t": ctx.tenant_id},
    )
    inserted = await session.execute(
        text(
            f"""
            insert into shifts (tenant_id, id, agent_id, project_id, client_id,
                                starts_at, ends_at, activity, note, external_id)
            select :t, {BATCH_ID_SQL.format(prefix=":ids", seq="s.seq")}, s.agent_id, s.project_id, s.client_id,
                   s.starts_at, s.ends_at, s.activity, s.note, s.external_id
            from {STAGE} s
            where s.ok
              and (s.external_id is null or not exists (
                select 1 from shifts sh where sh.tenant_id = :t and sh.external_id = s.external_id))
            -- Week by week, each week in agent and time order. The btrees on
            -- (agent, start) take an agent's shifts fastest in a row, the GiST
            -- index slowest: it took 100 000 shifts of 5 000 agents in 1.76 s of
            -- CPU in agent order, 1.2-1.4 s by week, by day, by start or shuffled.
            -- A week per agent keeps most of the btrees' gain (the whole insert:
            -- 3.3 s in agent order, 3.0 s by day, 2.86 s by week). The price, into
            -- an empty table: shifts_agent_start splits mid-index, as every later
            -- month's import makes it do anyway, and comes out 1 747 pages instead
            -- of 1 262; the month's clash scan reads it in 37 ms instead of 35.
            order by floor(date_part('epoch', s.starts_at) / 604800), s.agent_id, s.starts_at
            """
        ),
        # UUIDv7 ids, the staged row's ordinal in the counter bits (`id_prefix`).
        {"t": ctx.tenant_id, "ids": id_prefix()},
    )
    return int(inserted.rowcount), int(updated.scalar_one())  # type: ignore[attr-defined]


async def drop_stage(session: AsyncSession) -> None:
    await session.execute(text(f"drop table if exists {STAGE}"))
