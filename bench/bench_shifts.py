"""Shifts at scale: 100 000 shifts of 5 000 agents on 200 projects over 4 weeks.

Figures, each against a baseline measured in this run:

* bulk import through the exclusion constraint (COPY into a staging table,
  set-wise checks against the database and the file, one UPDATE of the
  shifts the file changes and one `INSERT … SELECT` of the rest, commit) vs
  a raw COPY of the same rows into an unconstrained table — target ≥ 0.1x
  the raw COPY's speed;
* for reference, a COPY of the same rows into a table that has nothing but
  the exclusion constraint, in the order the import inserts them (week by
  week, each week by agent and start: `repository.write_staged`'s ORDER BY;
  the GiST index takes one agent's shifts in a row, the file's order, a
  third slower than any other order): what the constraint costs by itself
  when fed as the import feeds it. The import also writes the heap, the
  primary key, three btrees that readers use and two foreign keys, and
  stages and checks the file first. Profiled (backend CPU per 100 000
  rows, 2026-11-23): GiST insert and probe 1.16 s, the two foreign-key
  checks 0.92 s, the three btrees 0.57 s, heap, primary key, sort and ids
  0.6 s — the INSERT 3.1 s;
  the staging COPY 0.2-0.3 s (about a raw COPY: it is one), the checks
  0.12 s, Python 0.07 s. A raw COPY took 0.26-0.47 s on this 2-core machine,
  depending on load, so the import lands at 0.07-0.12x: the constraint and
  the foreign keys alone take 4-8 raw COPYs;
* the floor: what any import bound by the design must do at least, in one
  transaction as the application role under the tenant's scope — COPY into
  a temporary staging table (row-level security forbids COPY into tenant
  tables), then one `INSERT … SELECT` in the import's order into a twin of
  shifts that has the exclusion constraint (as shifts has it), the two
  composite foreign keys (DESIGN.md) and shifts' RLS policies, and no
  primary key, unique, secondary index or check. If it is below 0.1x the
  raw COPY, no import that honours RLS, the composite foreign keys and the
  constraint can reach the target on this machine;
* the same import again (idempotent: every row unchanged);
* reading the same rows from CSV (parse only, no database);
* a full clash scan of the 4 weeks (window query, running maximum per agent,
  fed in (agent, start) order by the covering index `shifts_agent_start`)
  — target ≤ 50 ms; baseline: counting the same rows;
* a single-shift overlap check (the agent's index entries around the range)
  — target p99 ≤ 1 ms; baseline: a `select 1` round trip.
"""

from __future__ import annotations

import dataclasses
import gc
import io
import math
import random
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import insert, text

from bench.harness import Report, median, percentile, scratch_database, stopwatch, timed
from migrations.rls import TENANT_SETTING, client_policy_sql
from service.agents.models import Agent, AgentExternalId, Certification
from service.core.db import Database
from service.core.time import new_id
from service.projects.models import Project
from service.shifts import repository as repo
from service.shifts.rows import MAX_ROWS, ImportRow, Parsed, parse_csv
from service.shifts.service import import_shifts
from tenants.audit import set_actor
from tenants.context import ROLE_PERMISSIONS, TenantContext
from tenants.models import Client, Tenant

AGENTS = 5_000
PROJECTS = 200
CLIENTS = 20
WEEKS = 4
FIRST_DAY = date(2026, 3, 2)  # a Monday; the window crosses New York's DST change
ZONES = ("UTC", "Europe/Istanbul", "Asia/Tehran", "America/New_York")
PROBES = 2_000
REPEAT = 3

COLUMNS = (
    "tenant_id", "id", "agent_id", "project_id", "client_id", "starts_at", "ends_at",
    "activity", "note", "external_id",
)  # fmt: skip


async def _seed(db: Database) -> tuple[TenantContext, list[uuid.UUID], list[Project]]:
    tenant = Tenant(slug=f"bench-{uuid.uuid4().hex[:8]}", name="Bench BPO")
    clients = [Client(tenant_id=tenant.id, name=f"Client {i}") for i in range(CLIENTS)]
    projects = [
        Project(
            tenant_id=tenant.id,
            client_id=clients[i % CLIENTS].id,
            name=f"Project {i}",
            time_zone=ZONES[i % len(ZONES)],
        )
        for i in range(PROJECTS)
    ]
    agents = [new_id() for _ in range(AGENTS)]
    async with db.admin_transaction() as admin:
        admin.add(tenant)
        await admin.flush()
        admin.add_all(clients)
        await admin.flush()
        admin.add_all(projects)
        await admin.flush()
        await admin.execute(
            insert(Agent),
            [{"tenant_id": tenant.id, "id": a, "name": f"Agent {i}"} for i, a in enumerate(agents)],
        )
        await admin.execute(
            insert(AgentExternalId),
            [
                {
                    "tenant_id": tenant.id,
                    "agent_id": a,
                    "system": "asterisk",
                    "external_id": f"Agent/{i}",
                }
                for i, a in enumerate(agents)
            ],
        )
        await admin.execute(
            insert(Certification),
            [
                {
                    "tenant_id": tenant.id,
                    "id": new_id(),
                    "agent_id": a,
                    "project_id": projects[p].id,
                    "client_id": projects[p].client_id,
                    "certified_from": date(2025, 1, 1),
                }
                for i, a in enumerate(agents)
                for p in _homes(i)
            ],
        )
    ctx = TenantContext(
        tenant_id=tenant.id,
        actor_type="user",
        actor_id=uuid.uuid4(),
        permissions=ROLE_PERMISSIONS["tenant_admin"],
        role="tenant_admin",
    )
    return ctx, agents, projects


def _homes(i: int) -> tuple[int, int]:
    first = i % PROJECTS
    return first, (first + 1 + (i * 7) % (PROJECTS - 1)) % PROJECTS


def _schedule(agents: list[uuid.UUID], projects: list[Project]) -> list[ImportRow]:
    """Five 8-hour shifts a week per agent, alternating its two projects;
    even agents named by id, odd ones by their Asterisk id."""
    rows: list[ImportRow] = []
    for i, agent in enumerate(agents):
        homes = _homes(i)
        for day in range(WEEKS * 7):
            if day % 7 >= 5:
                continue
            start = datetime.combine(FIRST_DAY, datetime.min.time(), UTC) + timedelta(
                days=day, hours=6 + i % 8, minutes=15 * (i % 4)
            )
            rows.append(
                ImportRow(
                    row=len(rows) + 1,
                    line=None,
                    agent_ref=str(agent) if i % 2 == 0 else f"Agent/{i}",
                    agent_id=agent if i % 2 == 0 else None,
                    project_id=projects[homes[day % 2]].id,
                    starts_at=start,
                    ends_at=start + timedelta(hours=8),
                    activity="on_queue",
                    note=None,
                    external_id=f"b-{i}-{day}",
                )
            )
    return rows


def _copy_records(
    ctx: TenantContext, rows: list[ImportRow], agents: list[uuid.UUID], projects: list[Project]
) -> list[tuple[object, ...]]:
    client_of = {p.id: p.client_id for p in projects}
    by_ref = {f"Agent/{i}": a for i, a in enumerate(agents)}
    return [
        (
            ctx.tenant_id,
            new_id(),
            r.agent_id or by_ref[r.agent_ref],
            r.project_id,
            client_of[r.project_id],
            r.starts_at,
            r.ends_at,
            r.activity,
            r.note,
            r.external_id,
        )
        for r in rows
    ]


def _import_order(record: tuple[object, ...]) -> tuple[int, uuid.UUID, datetime]:
    """A COPY record's place in the order the import inserts (`repository.write_staged`):
    week (`floor(date_part('epoch', starts_at) / 604800)`), agent, start."""
    agent, starts_at = record[2], record[5]
    assert isinstance(agent, uuid.UUID)
    assert isinstance(starts_at, datetime)
    return math.floor(starts_at.timestamp() / 604_800), agent, starts_at


def _csv(rows: list[ImportRow]) -> bytes:
    out = io.StringIO()
    out.write("agent,project,start,end,activity,note,external_id\r\n")
    for r in rows:
        out.write(
            f"{r.agent_ref},{r.project_id},{r.starts_at.isoformat()},{r.ends_at.isoformat()},"
            f"{r.activity},,{r.external_id}\r\n"
        )
    return out.getvalue().encode()


def _fresh(rows: list[ImportRow]) -> Parsed:
    """The parsed rows as the importer receives them (it resolves agent refs in place)."""
    copies = [dataclasses.replace(r) for r in rows]
    return Parsed(rows=copies, total=len(copies))


async def _maintain(command: str, db: Database) -> None:
    owner = await asyncpg.connect(db.settings.owner_dsn())
    try:
        await owner.execute(command)
    finally:
        await owner.close()


FLOOR_TABLE = "bench_floor_shifts"
FLOOR_STAGE = "bench_floor_stage"


async def _floor(
    db: Database, ctx: TenantContext, records: list[tuple[object, ...]]
) -> list[float]:
    """Seconds of each of REPEAT runs of the floor, each into the emptied twin:
    in one transaction as the application role under the tenant's scope, a
    temporary staging table (dropped at commit) filled by COPY with the file's
    records, then `INSERT … SELECT` into `FLOOR_TABLE` in the import's order
    (`repository.write_staged`'s ORDER BY), with the staging settings the import
    uses (JIT off, 64 MB of work_mem for the sort)."""
    owner = await asyncpg.connect(db.settings.owner_dsn())
    try:
        client_condition = client_policy_sql("client_id")
        for statement in (
            f"create table {FLOOR_TABLE} (tenant_id uuid not null, id uuid not null,"
            " agent_id uuid not null, project_id uuid not null, client_id uuid not null,"
            " starts_at timestamptz not null, ends_at timestamptz not null,"
            " during tstzrange not null generated always as"
            " (tstzrange(starts_at, ends_at, '[)')) stored,"
            " activity text not null, note text, external_id text,"
            " foreign key (tenant_id, agent_id) references agents (tenant_id, id),"
            " foreign key (tenant_id, client_id, project_id)"
            " references projects (tenant_id, client_id, id),"
            " exclude using gist (agent_id with =, tenant_id with =, during with &&)"
            " deferrable initially immediate)",
            f"alter table {FLOOR_TABLE} enable row level security",
            f"alter table {FLOOR_TABLE} force row level security",
            f"create policy tenant_isolation on {FLOOR_TABLE}"
            f" using (tenant_id = {TENANT_SETTING}) with check (tenant_id = {TENANT_SETTING})",
            f"create policy client_isolation on {FLOOR_TABLE} as restrictive"
            f" using ({client_condition}) with check ({client_condition})",
            f'grant select, insert, delete on {FLOOR_TABLE} to "{db.settings.app_role}"',
        ):
            await owner.execute(statement)
        times: list[float] = []
        for attempt in range(REPEAT):
            if attempt:
                # As the owner: truncate ignores row-level security.
                await owner.execute(f"truncate {FLOOR_TABLE}")
                await owner.execute(f"vacuum analyze {FLOOR_TABLE}")
            with stopwatch() as t:
                async with db.transaction(ctx.db_scope()) as session:
                    await session.execute(
                        text(
                            "select set_config('jit', 'off', true),"
                            " set_config('work_mem', '64MB', true)"
                        )
                    )
                    await session.execute(
                        text(
                            f"create temporary table {FLOOR_STAGE} (tenant_id uuid, id uuid,"
                            " agent_id uuid, project_id uuid, client_id uuid,"
                            " starts_at timestamptz, ends_at timestamptz,"
                            " activity text, note text, external_id text) on commit drop"
                        )
                    )
                    connection = await session.connection()
                    raw = await connection.get_raw_connection()
                    driver: Any = raw.driver_connection
                    await driver.copy_records_to_table(
                        FLOOR_STAGE, records=records, columns=COLUMNS
                    )
                    columns = ", ".join(COLUMNS)
                    inserted = await session.execute(
                        text(
                            f"insert into {FLOOR_TABLE} ({columns})"
                            f" select {columns} from {FLOOR_STAGE}"
                            " order by floor(date_part('epoch', starts_at) / 604800),"
                            " agent_id, starts_at"
                        )
                    )
                    count = int(inserted.rowcount)  # type: ignore[attr-defined]
            assert count == len(records), count
            times.append(t[0])
    finally:
        try:
            await owner.execute(f"drop table if exists {FLOOR_TABLE}")
        finally:
            await owner.close()
    return times


async def run(report: Report) -> None:
    async with scratch_database() as settings:
        db = Database(settings)
        try:
            await _run(report, db)
        finally:
            await db.dispose()


async def _run(report: Report, db: Database) -> None:
    ctx, agents, projects = await _seed(db)
    rows = _schedule(agents, projects)
    n = len(rows)
    report.note(f"{n:,} shifts, {AGENTS:,} agents, {PROJECTS} projects, {WEEKS} weeks")

    # Baseline: raw COPY into a table with the same columns and no constraint or index.
    records = _copy_records(ctx, rows, agents, projects)
    owner = await asyncpg.connect(db.settings.owner_dsn())
    try:
        await owner.execute(
            "create table bench_raw_shifts (tenant_id uuid, id uuid, agent_id uuid,"
            " project_id uuid, client_id uuid, starts_at timestamptz, ends_at timestamptz,"
            " activity text, note text, external_id text)"
        )
        copy_times = []
        for _ in range(REPEAT):
            with stopwatch() as t:
                async with owner.transaction():
                    await owner.copy_records_to_table(
                        "bench_raw_shifts", records=records, columns=COLUMNS
                    )
            copy_times.append(t[0])
            await owner.execute("truncate bench_raw_shifts")
        await owner.execute("drop table bench_raw_shifts")
        # The same rows into a table with the exclusion constraint and nothing else, in
        # the import's order (repository.write_staged): week, agent, start.
        in_import_order = sorted(records, key=_import_order)
        await owner.execute(
            "create table bench_excl_shifts (tenant_id uuid, id uuid, agent_id uuid,"
            " project_id uuid, client_id uuid, starts_at timestamptz, ends_at timestamptz,"
            " activity text, note text, external_id text, during tstzrange generated always as"
            " (tstzrange(starts_at, ends_at, '[)')) stored,"
            " exclude using gist (agent_id with =, tenant_id with =, during with &&))"
        )
        excl_times = []
        for _ in range(2):
            with stopwatch() as t:
                async with owner.transaction():
                    await owner.copy_records_to_table(
                        "bench_excl_shifts", records=in_import_order, columns=COLUMNS
                    )
            excl_times.append(t[0])
            await owner.execute("truncate bench_excl_shifts")
        await owner.execute("drop table bench_excl_shifts")
    finally:
        await owner.close()
    copy_s = min(copy_times)
    report.add("raw COPY, unconstrained table", n / copy_s, "rows/s")
    report.add(
        "COPY, exclusion constraint alone, import's order",
        n / min(excl_times),
        "rows/s",
        baseline_name="raw COPY",
        baseline=n / copy_s,
    )

    # The floor: what any import bound by the design must do at least (stage by
    # COPY, as row-level security forbids COPY into a tenant table, then one
    # INSERT … SELECT in the import's order through the exclusion constraint
    # and the two composite foreign keys, RLS on), into a twin of shifts with
    # nothing else: no primary key, unique, secondary index or check.
    floor_times = await _floor(db, ctx, records)
    report.add(
        "floor: stage + INSERT, exclusion constraint + 2 foreign keys",
        n / min(floor_times),
        "rows/s",
        baseline_name="raw COPY",
        baseline=n / copy_s,
    )

    # The import, into an empty shifts table each time.
    import_times: list[float] = []
    phases: list[dict[str, float]] = []
    for attempt in range(REPEAT):
        if attempt:
            async with db.admin_transaction() as admin:
                await admin.execute(
                    text("delete from shifts where tenant_id = :t"), {"t": ctx.tenant_id}
                )
            await _maintain("vacuum analyze shifts", db)
        parsed = _fresh(rows)
        with stopwatch() as t:
            async with db.transaction(ctx.db_scope()) as session:
                set_actor(session, ctx)
                result = await import_shifts(session, ctx, parsed, mode="all_or_nothing")
        assert result.inserted == n, result.model_dump(exclude={"errors"})
        import_times.append(t[0])
        phases.append(result.timings_ms)
    import_s = min(import_times)
    speed = n / import_s
    report.add(
        "import with exclusion constraint",
        speed,
        "rows/s",
        baseline_name="raw COPY",
        baseline=n / copy_s,
        target=">= 0.1x raw COPY",
        ok=speed >= 0.1 * n / copy_s,
    )
    best = phases[import_times.index(import_s)]
    report.note(
        "import phases (ms): "
        + ", ".join(f"{k} {v:,.0f}" for k, v in best.items())
        + f", commit {import_s * 1000 - sum(best.values()):,.0f}"
    )
    await _maintain("vacuum analyze shifts", db)

    parsed = _fresh(rows)
    with stopwatch() as t:
        async with db.transaction(ctx.db_scope()) as session:
            set_actor(session, ctx)
            again = await import_shifts(session, ctx, parsed, mode="all_or_nothing")
    assert again.unchanged == n, again.model_dump(exclude={"errors"})
    report.note(
        "re-import phases (ms): " + ", ".join(f"{k} {v:,.0f}" for k, v in again.timings_ms.items())
    )
    report.add(
        "re-import, all rows unchanged",
        n / t[0],
        "rows/s",
        baseline_name="raw COPY",
        baseline=n / copy_s,
    )

    # A file holds at most 50 000 rows: parse one that full.
    data = _csv(rows[:MAX_ROWS])
    with stopwatch() as t:
        parsed_csv = parse_csv(io.BytesIO(data))
    assert parsed_csv.total == MAX_ROWS
    assert not parsed_csv.problems
    report.add(
        f"CSV parse, {MAX_ROWS:,} rows ({len(data) / 1e6:.1f} MB)",
        MAX_ROWS / t[0],
        "rows/s",
        baseline_name="raw COPY",
        baseline=n / copy_s,
    )

    # Full clash scan of the 4 weeks vs counting the same rows.
    window_start = datetime.combine(FIRST_DAY, datetime.min.time(), UTC)
    window_end = window_start + timedelta(weeks=WEEKS)
    async with db.transaction(ctx.db_scope()) as session:

        async def scan() -> None:
            found = await repo.find_overlaps(session, ctx, window_start, window_end)
            assert found == []

        async def count() -> None:
            await session.execute(
                text(
                    "select count(*) from shifts where tenant_id = :t and starts_at < :e"
                    " and starts_at > :lb and ends_at > :s"
                ),
                {
                    "t": ctx.tenant_id,
                    "s": window_start,
                    "e": window_end,
                    "lb": window_start - timedelta(days=1),
                },
            )

        await scan()
        await count()
        # Interleaved, so a busy moment of the machine hits both alike.
        scans, counts = [], []
        for _ in range(9):
            scans += await timed(scan, 1)
            counts += await timed(count, 1)
    scan_ms, count_ms = median(scans) * 1000, median(counts) * 1000
    report.add(
        "clash scan, 4 weeks (median)",
        scan_ms,
        "ms",
        baseline_name="count(*) same rows",
        baseline=count_ms,
        target="<= 50 ms",
        ok=scan_ms <= 50,
    )

    # Single-shift overlap checks, as a booking makes them.
    rng = random.Random(7)
    probes = []
    for _ in range(PROBES):
        start = window_start + timedelta(
            days=rng.randrange(WEEKS * 7), minutes=15 * rng.randrange(96)
        )
        probes.append((rng.choice(agents), start, start + timedelta(hours=1)))
    del rows, records, parsed, parsed_csv, data
    async with db.transaction(ctx.db_scope()) as session:
        for agent, start, end in probes[:100]:
            await repo.clashing_shifts(session, ctx, agent, start, end)
        checks, pings = [], []
        clashing = 0
        # Client-side garbage collection pauses are not the database's latency.
        gc.collect()
        gc.disable()
        try:
            for agent, start, end in probes:
                with stopwatch() as t:
                    found = await repo.clashing_shifts(session, ctx, agent, start, end)
                checks.append(t[0])
                clashing += bool(found)
                with stopwatch() as t:
                    await session.execute(text("select 1"))
                pings.append(t[0])
        finally:
            gc.enable()
    p99, ping99 = percentile(checks, 99) * 1000, percentile(pings, 99) * 1000
    report.add(
        "single-shift check p50",
        percentile(checks, 50) * 1000,
        "ms",
        baseline_name="select 1 p50",
        baseline=percentile(pings, 50) * 1000,
    )
    report.add(
        "single-shift check p99",
        p99,
        "ms",
        baseline_name="select 1 p99",
        baseline=ping99,
        target="<= 1 ms",
        ok=p99 <= 1,
    )
    report.note(f"{clashing} of {PROBES} probes found a clash")
