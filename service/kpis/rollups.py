"""KPI rollups: maintained set-wise in the ingest transaction, rebuildable from raw.

One grain, the project's local day, as a table of additive sums and a
table of wait-histogram rows (outcome, grid edge); interval figures come
from raw rows (see migration 0005 for why). The columns mirror
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

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.kpis.sums import FINAL_OUTCOMES

OUTCOME_CODE_SQL = (
    "case outcome "
    + " ".join(f"when '{o.value}' then {i}" for i, o in enumerate(FINAL_OUTCOMES))
    + " end"
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

_GRAINS = (("daily", "local_day"),)


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
    """One statement: the delta's histogram cells merged into the stored arrays set-wise.

    The six arrays of a row are parallel: element i of each is one (outcome, edge)
    cell. The stored rows of the keys the delta touches are read and locked (FOR
    UPDATE: under READ COMMITTED that yields the newest committed version, which the
    UPDATE then writes), unnested, merged with the delta's cells by the rule of
    `kpi_merge_hist` in one aggregate, and written back. That function, called per
    stored row by ON CONFLICT, cost ~40 us a row: most of the statement for live
    data onto days already held. It still merges a key another import inserted
    after this statement's snapshot (the INSERT's conflict path). The six
    `array_agg`s of a row run in one aggregate node over one input, so they stay
    aligned; that input is sorted by key first (a hash aggregate of array states
    spilled to disk), then by (outcome, edge), so no `array_agg` sorts on its own
    (six sorts per key; readers group by outcome and edge anyway)."""
    table = f"kpi_{grain}_waits"
    keys = f"project_id, client_id, channel, {bucket}"
    conflict = f"project_id, {bucket}, channel"
    arrays = "outcome, edge_s, n, sum_ms, max_ms, max_exact"
    statement = f"""
    with cells as (
      select {keys}, {OUTCOME_CODE_SQL}::smallint as o, kpi_wait_edge(wait_ms) as e,
             sum(sign)::int as n, sum(sign * wait_ms)::bigint as s, max(wait_ms) as m,
             bool_and(sign > 0) as x
      from stage_delta
      where outcome <> 'in_queue' and wait_ms is not null {where}
      group by {keys}, 5, 6, sign
    ),
    stored as materialized (
      select r.project_id, r.channel, r.{bucket}, r.outcome, r.edge_s, r.n, r.sum_ms, r.max_ms,
             r.max_exact
      from {table} r
      where r.tenant_id = :t
        and ({conflict}) in (select distinct {conflict} from cells)
      for update
    ),
    merged as (
      select {conflict}, o, e, sum(n)::int as n, sum(s)::bigint as s,
             coalesce(max(m) filter (where n > 0), max(m)) as m,
             coalesce(bool_and(x) filter (where n > 0), false)
               and coalesce(max(m) filter (where n < 0) < max(m) filter (where n > 0), true) as x
      from (
        select c.project_id, c.channel, c.{bucket}, o, e, n, s, m, x from cells c
        where exists (
          select from stored st
          where st.project_id = c.project_id and st.channel = c.channel and st.{bucket} = c.{bucket})
        union all
        select st.project_id, st.channel, st.{bucket}, u.o, u.e, u.n, u.s, u.m, u.x
        from stored st, unnest(st.outcome, st.edge_s, st.n, st.sum_ms, st.max_ms, st.max_exact)
          as u(o, e, n, s, m, x)
      ) u
      group by {conflict}, o, e
      having sum(n) <> 0
    ),
    rewritten as (
      update {table} r set ({arrays}) = (
        coalesce(g.o, '{{}}'), coalesce(g.e, '{{}}'), coalesce(g.n, '{{}}'),
        coalesce(g.s, '{{}}'), coalesce(g.m, '{{}}'), coalesce(g.x, '{{}}'))
      from stored st
      left join (
        select {conflict}, array_agg(o) as o, array_agg(e) as e, array_agg(n) as n,
               array_agg(s) as s, array_agg(m) as m, array_agg(x) as x
        from (select * from merged order by {conflict}, o, e) sorted
        group by {conflict}
      ) g using ({conflict})
      where r.tenant_id = :t and r.project_id = st.project_id and r.channel = st.channel
        and r.{bucket} = st.{bucket}
    )
    insert into {table} (tenant_id, {keys}, {arrays})
    select :t, {keys}, array_agg(o), array_agg(e), array_agg(n), array_agg(s), array_agg(m),
           array_agg(x)
    from (
      select c.* from cells c
      where not exists (
        select from stored st
        where st.project_id = c.project_id and st.channel = c.channel and st.{bucket} = c.{bucket})
      order by {keys}
    ) fresh
    group by {keys}
    on conflict (tenant_id, {conflict}) do update set
      ({arrays}) = (
        select * from kpi_merge_hist(
          {table}.outcome, {table}.edge_s, {table}.n, {table}.sum_ms, {table}.max_ms, {table}.max_exact,
          excluded.outcome, excluded.edge_s, excluded.n, excluded.sum_ms, excluded.max_ms, excluded.max_exact))
    """
    return "", statement


def _apply_statements(where: str = "") -> list[str]:
    subtracts: list[str] = []
    adds: list[str] = []
    for grain, bucket in _GRAINS:
        for build in (_sums_statements, _wait_statements):
            sub, add = build(grain, bucket, where)
            if sub:
                subtracts.append(sub)
            adds.append(add)
    return subtracts + adds


APPLY_DELTA = tuple(_apply_statements())

_NEW_VERSIONS = """
    select 1 as sign, v.project_id, v.client_id, v.channel, null::timestamptz as bucket_start,
           v.local_day, v.outcome, v.wait_ms, v.talk_ms, v.hold_ms, v.hold_count, v.acw_ms,
           v.transferred, v.resolved_first_contact, v.csat, v.nps
    from stage_verdicts v
    where v.verdict in ('new', 'update')
"""
_OLD_VERSIONS = """
    select -1, project_id, client_id, channel, bucket_start, local_day, outcome,
           wait_ms, talk_ms, hold_ms, hold_count, acw_ms, transferred, resolved_first_contact,
           csat, nps
    from stage_old
"""
# The ingest's delta is named `stage_delta` by a CTE in front of each statement, not
# copied into a temporary table: the copy cost 0.05 s a 50 000-row batch, and each
# statement reads the staged verdicts once either way.
_FROM_INGEST = f"stage_delta as ({_NEW_VERSIONS} union all {_OLD_VERSIONS})"
_ADDITIONS = f"stage_delta as ({_NEW_VERSIONS})"


def _with(delta: str, statement: str) -> str:
    """`statement` with the CTE `delta` in front (joined to its own WITH, if any)."""
    body = statement.lstrip()
    if body.startswith("with "):
        return f"with {delta},\n{body[5:]}"
    return f"with {delta}\n{body}"


async def apply_ingest_delta(
    session: AsyncSession, tenant_id: uuid.UUID, *, corrections: bool = True
) -> None:
    """Move the rollups by what the ingest pipeline just changed (same transaction):
    `stage_verdicts` (every new version) and, with corrections, `stage_old` (the
    versions they replace). Without corrections there is nothing to subtract."""
    if corrections:
        statements = [_with(_FROM_INGEST, st) for st in APPLY_DELTA]
    else:
        statements = [
            _with(_ADDITIONS, st) for st in APPLY_DELTA if not st.lstrip().startswith("update")
        ]
    for statement in statements:
        await session.execute(text(statement), {"t": tenant_id})


async def rebuild_rollups(
    session: AsyncSession, tenant_id: uuid.UUID, project_id: uuid.UUID | None = None
) -> int:
    """Recompute the tenant's (or one project's) rollups from raw contacts; returns contacts read."""
    only = "and project_id = :p" if project_id is not None else ""
    params = {"t": tenant_id, "p": project_id}
    for grain, _ in _GRAINS:
        for kind in ("sums", "waits"):
            await session.execute(
                text(f"delete from kpi_{grain}_{kind} where tenant_id = :t {only}"), params
            )
    await session.execute(text("drop table if exists stage_delta"))
    await session.execute(
        text(
            f"""
            create temp table stage_delta on commit drop as
            select 1 as sign, project_id, client_id, channel, bucket_start, local_day, outcome,
                   wait_ms, talk_ms, hold_ms, hold_count, acw_ms, transferred,
                   resolved_first_contact, csat, nps
            from contacts where tenant_id = :t {only}
            """
        ),
        params,
    )
    count = (await session.execute(text("select count(*) from stage_delta"))).scalar_one()
    for statement in APPLY_DELTA:
        await session.execute(text(statement), params)
    return int(count)
