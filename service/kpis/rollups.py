"""KPI rollups: maintained set-wise in the ingest transaction, rebuildable from raw.

Two grains — the 15-minute interval (UTC-aligned; every zone in use is a
whole number of quarter hours from UTC, so it is also a local quarter hour)
and the project's local day — each as a table of additive sums and a table
of wait-histogram rows (outcome, grid edge). The columns mirror
`service.kpis.sums.KpiSums` exactly: handling figures count answered
contacts only; CSAT/NPS responses count for every finished contact; a
contact still in queue counts only as in queue.

A batch of changes is a temporary table `stage_delta` of contact rows with a
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

_GRAINS = (("interval", "bucket_start"), ("daily", "local_day"))


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
    table = f"kpi_{grain}_waits"
    keys = f"project_id, client_id, channel, {bucket}"
    inner = f"""
      select {keys}, {OUTCOME_CODE_SQL} as outcome, kpi_wait_edge(wait_ms) as edge_s,
             sum(sign) as n, sum(sign * wait_ms) as sum_ms, max(wait_ms) as max_ms
      from stage_delta
      where outcome <> 'in_queue' and wait_ms is not null and SIGN {where}
      group by {keys}, 5, 6
    """
    subtract = f"""
    update {table} r set n = r.n + d.n, sum_ms = r.sum_ms + d.sum_ms,
      max_exact = r.max_exact and (r.max_ms is null or d.max_ms < r.max_ms)
    from ({inner.replace("SIGN", "sign < 0")}) d
    where r.tenant_id = :t and r.project_id = d.project_id and r.channel = d.channel
      and r.{bucket} = d.{bucket} and r.outcome = d.outcome and r.edge_s = d.edge_s
    """
    add = f"""
    insert into {table} (tenant_id, {keys}, outcome, edge_s, n, sum_ms, max_ms)
    select :t, {keys}, outcome, edge_s, n, sum_ms, max_ms from ({inner.replace("SIGN", "sign > 0")}) d
    on conflict (tenant_id, project_id, {bucket}, channel, outcome, edge_s) do update set
      n = {table}.n + excluded.n, sum_ms = {table}.sum_ms + excluded.sum_ms,
      max_ms = case when {table}.n = 0 then excluded.max_ms
                    else greatest({table}.max_ms, excluded.max_ms) end,
      max_exact = {table}.n = 0 or {table}.max_exact
    """
    return subtract, add


def _apply_statements(where: str = "") -> list[str]:
    subtracts: list[str] = []
    adds: list[str] = []
    for grain, bucket in _GRAINS:
        for build in (_sums_statements, _wait_statements):
            sub, add = build(grain, bucket, where)
            subtracts.append(sub)
            adds.append(add)
    return subtracts + adds


APPLY_DELTA = tuple(_apply_statements())

STAGE_DELTA_FROM_INGEST = (
    "drop table if exists stage_delta",
    """
    create temp table stage_delta on commit drop as
    select -1 as sign, project_id, client_id, channel, bucket_start, local_day, outcome,
           wait_ms, talk_ms, hold_ms, hold_count, acw_ms, transferred, resolved_first_contact,
           csat, nps
    from stage_old
    union all
    select 1, c.project_id, c.client_id, c.channel, c.bucket_start, c.local_day, c.outcome,
           c.wait_ms, c.talk_ms, c.hold_ms, c.hold_count, c.acw_ms, c.transferred,
           c.resolved_first_contact, c.csat, c.nps
    from stage_verdicts v
    join contacts c on c.tenant_id = :t and c.id = coalesce(v.old_id, v.new_id)
      and c.queued_at = v.queued_at
    where v.verdict in ('new', 'update')
    """,
)


async def apply_ingest_delta(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Move the rollups by what the ingest pipeline just changed (same transaction)."""
    for statement in (*STAGE_DELTA_FROM_INGEST, *APPLY_DELTA):
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
