"""KPI rollups: maintained set-wise in the ingest transaction, rebuildable from raw.

Two grains of the project's local calendar: the day, as a table of additive
sums and a table of wait-histogram rows (outcome, grid edge), and the month,
as wait-histogram rows only (migration 0011: a month's 31 daily histograms
are thousands of cells to merge at each read; its 31 rows of sums are not);
interval figures come from raw rows (see migration 0005 for why). The columns mirror
`service.kpis.sums.KpiSums` exactly: handling figures count answered
contacts only; CSAT/NPS responses count for every finished contact; a
contact still in queue counts only as in queue.

A batch of changes is a relation `stage_delta` (a CTE over ingestion's staged
verdicts; a temporary table when rebuilding from raw) of contact rows with a
sign: -1 for the old version of a corrected contact, +1 for every new
version. Subtractions are applied first (an UPDATE), then additions (an
UPSERT adding to what is there). A maximum cannot be subtracted: when a
removed wait reaches a histogram row's maximum, the row's `max_exact` turns
false and readers recompute that maximum from raw rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.core.db import CUSTOM_PLANS, planner_settings
from service.kpis.sums import FINAL_OUTCOMES, MAX_FCR_WINDOW_DAYS

OUTCOME_CODE_SQL = (
    "case outcome "
    + " ".join(f"when '{o.value}' then {i}" for i, o in enumerate(FINAL_OUTCOMES))
    + " end"
)

# A contact judged by repeat (KPIS.md, FCR): answered, no flag from the source, a customer.
FCR_BY_REPEAT = (
    "outcome = 'answered' and resolved_first_contact is null and customer_key is not null"
)
# `contacts.repeat_days` of a contact queued at `queued_at` whose customer's next
# contact on the project is queued at `next_at` (`service.kpis.sums.repeat_days`):
# whole days rounded up, at least 1; null past the longest window.
REPEAT_DAYS_SQL = (
    f"case when next_at - queued_at <= interval '{MAX_FCR_WINDOW_DAYS} days'"
    " then greatest(1, ceil(date_part('epoch', next_at - queued_at) / 86400))::smallint end"
)

_SUMS: tuple[tuple[str, str], ...] = (
    *((f"n_{o.value}", f"sum(sign) filter (where outcome = '{o.value}')") for o in FINAL_OUTCOMES),
    ("n_in_queue", "sum(sign) filter (where outcome = 'in_queue')"),
    ("talk_ms", "sum(sign * coalesce(talk_ms, 0)) filter (where outcome = 'answered')"),
    ("hold_ms", "sum(sign * coalesce(hold_ms, 0)) filter (where outcome = 'answered')"),
    ("acw_ms", "sum(sign * coalesce(acw_ms, 0)) filter (where outcome = 'answered')"),
    ("held", "sum(sign) filter (where outcome = 'answered' and hold_ms > 0)"),
    ("hold_count", "sum(sign * coalesce(hold_count, 0)) filter (where outcome = 'answered')"),
    ("transferred", "sum(sign) filter (where outcome = 'answered' and transferred)"),
    ("fcr_resolved", "sum(sign) filter (where outcome = 'answered' and resolved_first_contact)"),
    (
        "fcr_known",
        "sum(sign) filter (where outcome = 'answered' and resolved_first_contact is not null)",
    ),
    ("fcr_repeat_known", f"sum(sign) filter (where {FCR_BY_REPEAT})"),
    *(
        (f"csat_{k}", f"sum(sign) filter (where outcome <> 'in_queue' and csat = {k})")
        for k in range(1, 6)
    ),
    *(
        (f"nps_{k}", f"sum(sign) filter (where outcome <> 'in_queue' and nps = {k})")
        for k in range(11)
    ),
)
SUM_COLUMNS: tuple[str, ...] = tuple(name for name, _ in _SUMS)
SUM_EXPRESSIONS = _SUMS

# (grain, its bucket column in `stage_delta` and in the tables, the tables kept).
_GRAINS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("daily", "local_day", ("sums", "waits")),
    ("monthly", "local_month", ("waits",)),
)
# The first day of a local day's month (a date: no time zone comes into it).
LOCAL_MONTH_SQL = "date_trunc('month', {day}::timestamp)::date"


def _sums_statements(grain: str, bucket: str, where: str) -> tuple[str, str]:
    table = f"kpi_{grain}_sums"
    aggregates = ", ".join(f"coalesce({expr}, 0) as {name}" for name, expr in _SUMS)
    keys = f"project_id, client_id, channel, {bucket}"
    subtract = f"""
    update {table} r set {", ".join(f"{c} = r.{c} + d.{c}" for c in SUM_COLUMNS)}
    from (select {keys}, {aggregates} from stage_delta where sign < 0 {where} group by {keys}) d
    where r.tenant_id = :t and r.project_id = d.project_id and r.channel = d.channel
      and r.{bucket} = d.{bucket}
    """
    add = f"""
    insert into {table} (tenant_id, {keys}, {", ".join(SUM_COLUMNS)})
    select :t, {keys}, {", ".join(SUM_COLUMNS)} from (
      select {keys}, {aggregates} from stage_delta where sign > 0 {where} group by {keys}
    ) d
    on conflict (tenant_id, project_id, {bucket}, channel) do update set
      {", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in SUM_COLUMNS)}
    """
    return subtract, add


def _wait_statements(grain: str, bucket: str, where: str) -> tuple[str, str]:
    """One signed upsert: the delta's histogram per key is merged into the stored arrays.

    The six arrays of a row are parallel: element i of each is one (outcome, edge)
    cell. They are aggregated in one node, so they take the rows in one order and
    stay aligned: the order of the sub-select, sorted once by key, outcome and
    edge (an ORDER BY in each `array_agg` cost six sorts per key: a third of the
    statement for a batch of sparse days). A month's row is read as stored when
    it is alone in its bucket (`repository.read_sums`), so it must be sorted;
    `KpiSums.from_row` refuses one that is not.

    A held key merges by the rule of `kpi_merge_hist` (migration 0005), written out
    here as a sub-select of the conflict's SET: the function, a SQL function that
    cannot be inlined, started an executor per conflicting row (~40 us each: 0.41 s
    of 0.17 s + 0.41 s for 10 000 contacts onto 5 500 held days); the sub-select is
    rescanned in the statement's own executor. Its input is sorted by (outcome,
    edge), so the merged arrays are, as the function's were. ON CONFLICT keeps the
    merge on the newest committed row (it locks it first) and finds held keys by
    index, whatever the statistics say."""
    table = f"kpi_{grain}_waits"
    keys = f"project_id, client_id, channel, {bucket}"
    upsert = f"""
    insert into {table} (tenant_id, {keys}, outcome, edge_s, n, sum_ms, max_ms, max_exact)
    select :t, {keys}, array_agg(o), array_agg(e), array_agg(n), array_agg(s), array_agg(m), array_agg(x)
    from (
      select {keys}, {OUTCOME_CODE_SQL}::smallint as o, kpi_wait_edge(wait_ms) as e,
             sum(sign)::int as n, sum(sign * wait_ms)::bigint as s, max(wait_ms) as m,
             bool_and(sign > 0) as x
      from stage_delta
      where outcome <> 'in_queue' and wait_ms is not null {where}
      group by {keys}, 5, 6, sign
      order by {keys}, 5, 6
    ) d
    group by {keys}
    on conflict (tenant_id, project_id, {bucket}, channel) do update set
      (outcome, edge_s, n, sum_ms, max_ms, max_exact) = (
        select coalesce(array_agg(g.o), '{{}}'), coalesce(array_agg(g.e), '{{}}'),
               coalesce(array_agg(g.n), '{{}}'), coalesce(array_agg(g.s), '{{}}'),
               coalesce(array_agg(g.m), '{{}}'), coalesce(array_agg(g.x), '{{}}')
        from (
          select u.o, u.e, sum(u.n)::int as n, sum(u.s)::bigint as s,
                 coalesce(max(u.m) filter (where u.n > 0), max(u.m)) as m,
                 coalesce(bool_and(u.x) filter (where u.n > 0), false)
                   and coalesce(max(u.m) filter (where u.n < 0) < max(u.m) filter (where u.n > 0),
                                true) as x
          from (
            select * from unnest({table}.outcome, {table}.edge_s, {table}.n, {table}.sum_ms,
                                 {table}.max_ms, {table}.max_exact) as a(o, e, n, s, m, x)
            union all
            select * from unnest(excluded.outcome, excluded.edge_s, excluded.n, excluded.sum_ms,
                                 excluded.max_ms, excluded.max_exact) as b(o, e, n, s, m, x)
          ) u
          group by u.o, u.e
          having sum(u.n) <> 0
          order by u.o, u.e
        ) g)
    """
    return "", upsert


def _repeats_statements(where: str = "") -> tuple[str, str]:
    """FCR repeats per local day: contacts judged by repeat, counted by `repeat_days`
    (service/kpis/sums.py). Each key moves by its net change: an UPDATE for the keys
    that lose contacts, an upsert for those that gain (an upsert's proposed row is
    checked before its conflict is found, so a negative count there would fail
    `n >= 0`). A count reaching 0 stays as a row of 0, which readers skip."""
    keys = "project_id, client_id, channel, local_day, repeat_days"
    net = f"""
      select {keys}, sum(sign)::int as n
      from stage_delta
      where {FCR_BY_REPEAT} and repeat_days is not null {where}
      group by {keys}
    """
    subtract = f"""
    update kpi_daily_repeats r set n = r.n + d.n
    from ({net} having sum(sign) < 0) d
    where r.tenant_id = :t and r.project_id = d.project_id and r.local_day = d.local_day
      and r.channel = d.channel and r.repeat_days = d.repeat_days
    """
    add = f"""
    insert into kpi_daily_repeats (tenant_id, {keys}, n)
    select :t, {keys}, n from ({net} having sum(sign) > 0) d
    on conflict (tenant_id, project_id, local_day, channel, repeat_days) do update
      set n = kpi_daily_repeats.n + excluded.n
    """
    return subtract, add


def _apply_statements(where: str = "") -> tuple[list[str], list[str]]:
    """The delta's subtractions (UPDATEs, run first) and additions (upserts)."""
    subtracts: list[str] = []
    adds: list[str] = []
    for grain, bucket, kinds in _GRAINS:
        for kind, build in (("sums", _sums_statements), ("waits", _wait_statements)):
            if kind not in kinds:
                continue
            sub, add = build(grain, bucket, where)
            if sub:
                subtracts.append(sub)
            adds.append(add)
    return subtracts, adds


_SUBTRACT_STATEMENTS, _ADD_STATEMENTS = _apply_statements()
_REPEATS_SUBTRACT, _REPEATS_ADD = _repeats_statements()
APPLY_DELTA = (*_SUBTRACT_STATEMENTS, _REPEATS_SUBTRACT, *_ADD_STATEMENTS, _REPEATS_ADD)
# A batch without corrections only adds, and its new versions' repeat_days are null
# until `apply_repeat_changes` sets them: no subtraction and no repeats to move.
_NEW_ONLY_STATEMENTS = _ADD_STATEMENTS

_NEW_VERSIONS = f"""
    select 1 as sign, v.project_id, v.client_id, v.channel, null::timestamptz as bucket_start,
           v.local_day, {LOCAL_MONTH_SQL.format(day="v.local_day")} as local_month, v.outcome, v.wait_ms, v.talk_ms, v.hold_ms, v.hold_count, v.acw_ms,
           v.transferred, v.resolved_first_contact, v.csat, v.nps, v.customer_key,
           null::smallint as repeat_days
    from stage_verdicts v
    where v.verdict in ('new', 'update')
"""
_OLD_VERSIONS = f"""
    select -1, project_id, client_id, channel, bucket_start, local_day,
           {LOCAL_MONTH_SQL.format(day="local_day")}, outcome,
           wait_ms, talk_ms, hold_ms, hold_count, acw_ms, transferred, resolved_first_contact,
           csat, nps, customer_key, repeat_days
    from stage_old
"""
# The ingest's delta is named `stage_delta` by a CTE in front of each statement, not
# copied into a temporary table: the copy cost 0.05 s a 50 000-row batch, and each
# statement reads the staged verdicts once either way.
_FROM_INGEST = f"with stage_delta as ({_NEW_VERSIONS} union all {_OLD_VERSIONS})\n"
_ADDITIONS = f"with stage_delta as ({_NEW_VERSIONS})\n"


async def apply_ingest_delta(
    session: AsyncSession, tenant_id: uuid.UUID, *, corrections: bool = True
) -> None:
    """Move the rollups by what the ingest pipeline just changed (same transaction):
    `stage_verdicts` (every new version) and, with corrections, `stage_old` (the
    versions they replace). Without corrections there is nothing to subtract."""
    if corrections:
        statements = [_FROM_INGEST + st for st in APPLY_DELTA]
    else:
        statements = [_ADDITIONS + st for st in _NEW_ONLY_STATEMENTS]
    for statement in statements:
        await session.execute(text(statement), {"t": tenant_id})


# ---- FCR by repeat ---------------------------------------------------------------
# `repeat_days` (how soon the customer's next contact on the project came) is kept on
# `contact_keys`, the non-partitioned table that holds one row per contact with its
# project, customer and time, and copied to `contacts` for raw reads. A contact that
# arrives, leaves or moves changes the repeat_days of the contacts of its customer
# queued up to MAX_FCR_WINDOW_DAYS before it (and its own): those are recomputed,
# with a window over the customer's contacts in reach, and the ones that changed
# move in `kpi_daily_repeats`. The customer index on `contact_keys` finds them with
# one probe per customer of the batch (on `contacts` it was a probe per partition).

_WINDOW = f"interval '{MAX_FCR_WINDOW_DAYS} days'"

_REPEATS_RECOMPUTE = f"""
create temp table stage_repeats on commit drop as
with touched as (
  select project_id, customer_key, min(queued_at) as lo, max(queued_at) as hi
  from ({{sources}}) x
  where customer_key is not null
  group by project_id, customer_key
)
-- One probe of the customer index per customer (a lateral subquery keeps it a
-- nested loop: joined plainly, it was planned as a hash join reading every key of
-- the tenant), each customer's contacts in reach ordered by the index.
select * from (
  select s.project_id, s.external_id, s.contact_id, s.queued_at, s.repeat_days as old_days,
         {REPEAT_DAYS_SQL} as new_days
  from touched t
  cross join lateral (
    select k.project_id, k.external_id, k.contact_id, k.queued_at, k.repeat_days,
           lead(k.queued_at) over (order by k.queued_at, k.contact_id) as next_at
    from contact_keys k
    where k.tenant_id = :t and k.project_id = t.project_id and k.customer_key = t.customer_key
      and k.queued_at >= t.lo - {_WINDOW} and k.queued_at <= t.hi + {_WINDOW}
  ) s
  where s.queued_at <= t.hi
) s
where new_days is distinct from old_days
"""
# The changed contacts are a table of their own before they are written, and an
# ingest writes them with a probe per changed contact: estimated from the customers
# of a batch (thousands) where a few hundred change, the updates were planned as
# hash joins reading every key and every contact of the tenant; with hash joins
# off, and statistics of a table just filled (a tenant's first imports), as one
# read of the tenant's keys materialized and joined row by row. The time bounds prune the
# month partitions when the update is planned (planning it over every partition
# took 45 ms with 200 of them).
_REPEATS_WRITE = (
    """
    update contact_keys k set repeat_days = c.new_days
    from stage_repeats c
    where k.tenant_id = :t and k.project_id = c.project_id and k.external_id = c.external_id
    """,
    """
    create temp table stage_repeat_moves on commit drop as
    with moved as (
      update contacts c set repeat_days = ch.new_days
      from stage_repeats ch
      where c.tenant_id = :t and c.project_id = ch.project_id and c.queued_at = ch.queued_at
        and c.id = ch.contact_id and c.queued_at >= :lo and c.queued_at <= :hi
      returning c.project_id, c.client_id, c.channel, c.local_day, c.outcome,
                c.resolved_first_contact, c.customer_key, ch.old_days, ch.new_days
    )
    select * from moved
    """,
)
# Where a batch's customers were and are: every new version, and the old versions
# of corrected contacts (a contact that moved away leaves a gap behind it).
_BATCH_CUSTOMERS = (
    "select project_id, customer_key, queued_at from stage_verdicts"
    " where verdict in ('new', 'update')"
)
_OLD_CUSTOMERS = " union all select project_id, customer_key, queued_at from stage_old"
_REPEAT_DELTA = (
    "with stage_delta as ("
    " select -1 as sign, project_id, client_id, channel, local_day, outcome,"
    " resolved_first_contact, customer_key, old_days as repeat_days"
    " from stage_repeat_moves where old_days is not null"
    " union all select 1, project_id, client_id, channel, local_day, outcome,"
    " resolved_first_contact, customer_key, new_days"
    " from stage_repeat_moves where new_days is not null)\n"
)


_TENANT_REPEATS_LOCK = "select pg_advisory_xact_lock(hashtextextended('callpact:fcr-repeats:' || cast(cast(:t as uuid) as text), 0))"


async def apply_repeat_changes(
    session: AsyncSession, tenant_id: uuid.UUID, *, corrections: bool = True
) -> None:
    """After an ingest batch (same transaction): recompute `repeat_days` around the
    batch's customers and move `kpi_daily_repeats` by what changed.

    Two imports of one tenant recompute one at a time, to their commits: each
    statement after the lock sees what the other committed (read committed). Without
    it, two contacts of one customer imported at once each missed the other, and the
    earlier one kept no repeat."""
    await session.execute(text(_TENANT_REPEATS_LOCK), {"t": tenant_id})
    sources = _BATCH_CUSTOMERS + (_OLD_CUSTOMERS if corrections else "")
    await _recompute_repeats(session, tenant_id, sources)


async def _recompute_repeats(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    sources: str,
    params: Mapping[str, object] | None = None,
    *,
    move_rollups: bool = True,
) -> None:
    """Recompute repeat_days of the customers in `sources` (a select of project_id,
    customer_key, queued_at) and write what changed; with `move_rollups`, move
    `kpi_daily_repeats` by it."""
    params = {"t": tenant_id, **(params or {})}
    for table in ("stage_repeats", "stage_repeat_moves"):
        await session.execute(text(f"drop table if exists {table}"))
    found = await session.execute(text(_REPEATS_RECOMPUTE.format(sources=sources)), params)
    if not found.rowcount:  # type: ignore[attr-defined]
        return
    lo, hi = (
        await session.execute(text("select min(queued_at), max(queued_at) from stage_repeats"))
    ).one()
    bounded = {**params, "lo": lo, "hi": hi}
    if move_rollups:  # an ingest: a few changes
        async with planner_settings(
            session,
            enable_hashjoin="off",
            enable_mergejoin="off",
            enable_material="off",
            enable_seqscan="off",
            enable_bitmapscan="off",
            plan_cache_mode=CUSTOM_PLANS,
        ):
            for statement in _REPEATS_WRITE:
                await session.execute(text(statement), bounded)
        for statement in (_REPEATS_SUBTRACT, _REPEATS_ADD):
            await session.execute(text(_REPEAT_DELTA + statement), params)
    else:  # a rebuild: any number
        await session.execute(text("analyze stage_repeats"))
        for statement in _REPEATS_WRITE:
            await session.execute(text(statement), bounded)


# Every customer of the tenant (or project), over all time: a rebuild's recompute.
_ALL_CUSTOMERS = (
    "select project_id, customer_key, queued_at from contact_keys"
    " where tenant_id = :t and customer_key is not null {only}"
)


async def rebuild_rollups(
    session: AsyncSession, tenant_id: uuid.UUID, project_id: uuid.UUID | None = None
) -> int:
    """Recompute the tenant's (or one project's) rollups from raw contacts; returns contacts read."""
    only = "and project_id = :p" if project_id is not None else ""
    params = {"t": tenant_id, "p": project_id}
    # Every contact's repeat_days again, from the keys (whatever the rollups say); the
    # rollups are rebuilt from the contacts below.
    await _recompute_repeats(
        session, tenant_id, _ALL_CUSTOMERS.format(only=only), params, move_rollups=False
    )
    # ... and the copy on `contacts` (raw reads) wherever it drifted from the keys.
    await session.execute(
        text(
            "update contacts c set repeat_days = k.repeat_days from contact_keys k"
            " where c.tenant_id = :t and k.tenant_id = :t and k.project_id = c.project_id"
            " and k.external_id = c.external_id and k.contact_id = c.id"
            f" and c.repeat_days is distinct from k.repeat_days {only.replace('project_id', 'c.project_id')}"
        ),
        params,
    )
    for grain, _, kinds in _GRAINS:
        for kind in kinds:
            await session.execute(
                text(f"delete from kpi_{grain}_{kind} where tenant_id = :t {only}"), params
            )
    await session.execute(
        text(f"delete from kpi_daily_repeats where tenant_id = :t {only}"), params
    )
    await session.execute(text("drop table if exists stage_delta"))
    await session.execute(
        text(
            f"""
            create temp table stage_delta on commit drop as
            select 1 as sign, project_id, client_id, channel, bucket_start, local_day,
                   {LOCAL_MONTH_SQL.format(day="local_day")} as local_month, outcome,
                   wait_ms, talk_ms, hold_ms, hold_count, acw_ms, transferred,
                   resolved_first_contact, csat, nps, customer_key, repeat_days
            from contacts where tenant_id = :t {only}
            """
        ),
        params,
    )
    count = (await session.execute(text("select count(*) from stage_delta"))).scalar_one()
    for statement in APPLY_DELTA:
        await session.execute(text(statement), params)
    return int(count)
