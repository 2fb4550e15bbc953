"""Data quality of the contact feeds, per tenant and source: what a person
needs to trace a wrong KPI to its cause.

* **issues**: what ingestion recorded in `ingest_issues` (unmapped queues,
  whose contacts were refused; unmapped agents, whose contacts were kept
  without an agent; and any other kind recorded there), all of them, latest
  first: they carry when ingestion saw them, not the contacts' times.
* **feed gaps**: an active project with business hours that received no
  contact (queued in that time) for an hour or more of its business hours:
  each maximal contact-free run of business hours of at least one hour,
  within the window and before now (the other checks cover the whole window). Runs continue across the midnight of
  back-to-back business hours. With `source`, only that source's contacts
  count (a gap means "nothing from this feed").
* **clock skew**: contacts whose `answered_at`, `abandoned_at` or
  `ended_at` lies before `queued_at`, whose `ended_at` lies before
  `answered_at` (the agent KPIs then take no time on the contact), or whose
  `queued_at` — or `ended_at`, which the agent KPIs and double bookings run
  the agent's time on the contact to — lies more than 5 minutes after the
  moment the row was stored (`ingested_at`, the current version's): a clock
  ahead of ours. Up to `limit` examples, all counted in the summary.
* **late days**: per project, source and local day, the contacts stored
  after their local day had ended — a daily figure reported before they
  arrived has changed since.
* **corrections**: newer versions of contacts queued in the window (before
  or after the change), whenever they arrived (`contact_corrections`), with
  the fields they changed.

Duplicates (a record re-sent unchanged) and stale versions (an older
version arriving after a newer one) change no figure and are counted only in
each batch's receipt; they are listed in `not_recorded`.

Visibility: every contact-based check covers only the projects the caller
sees. `ingest_issues` have no client: tenant staff see them (a supervisor
those without a project or of their projects); a client viewer does not.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.core.time import utcnow
from service.operations.schemas import (
    CorrectionRead,
    DataQualityReport,
    FeedGapRead,
    IssueRead,
    LateDayRead,
    SkewRead,
    WindowQuery,
)
from service.operations.scope import tenant_zone, visible_projects, window, zone
from service.operations.windows import BadHours, business_windows
from tenants.context import TenantContext

DEFAULT_LIMIT: Final = 200
MAX_LIMIT: Final = 2000
SKEW_TOLERANCE: Final = "interval '5 minutes'"
GAP: Final = "interval '1 hour'"
NOT_RECORDED: Final = ["duplicates", "stale_versions"]

_START = "cast(:start as timestamptz)"
_END = "cast(:end as timestamptz)"
_SOURCE = "(cast(:source as text) is null or c.source = cast(:source as text))"

# Issues carry when ingestion saw them, not when the contacts happened: all are listed.
ISSUES_SQL = """
select i.source, i.kind, i.subject, i.project_id, i.first_seen, i.last_seen, i.occurrences,
       i.detail
from ingest_issues i
where i.tenant_id = :t
  and (cast(:source as text) is null or i.source = cast(:source as text))
  and (cast(:scope as uuid[]) is null or i.project_id is null
       or i.project_id = any(cast(:scope as uuid[])))
order by i.last_seen desc, i.kind, i.subject
limit :limit
"""

# Contact-free runs inside each business-hours window: the window's edges and the
# contacts' queue times, in order; a run is a gap when the next point is an hour or more away.
GAPS_SQL = f"""
with w as (
  select * from unnest(cast(:wp as uuid[]), cast(:ws as timestamptz[]), cast(:we as timestamptz[]))
    as w(project_id, s, e)
),
points as (
  select w.project_id, w.s, w.s as at from w
  union all
  select w.project_id, w.s, c.queued_at from w
  join contacts c on c.tenant_id = :t and c.project_id = w.project_id
   and c.queued_at >= w.s and c.queued_at < w.e and {_SOURCE}
  union all
  select w.project_id, w.s, w.e from w
),
runs as (
  select project_id, at, lead(at) over (partition by project_id, s order by at) as next_at
  from points
)
select project_id, at as s, next_at as e from runs
where next_at - at >= {GAP}
order by project_id, at
"""

SKEW_WHERE = f"""
c.tenant_id = :t and c.project_id = any(cast(:projects as uuid[]))
  and c.queued_at >= {_START} and c.queued_at < {_END} and {_SOURCE}
  and (c.answered_at < c.queued_at or c.abandoned_at < c.queued_at or c.ended_at < c.queued_at
       or c.ended_at < c.answered_at
       or c.queued_at > c.ingested_at + {SKEW_TOLERANCE}
       or c.ended_at > c.ingested_at + {SKEW_TOLERANCE})
"""
SKEW_PROBLEM = f"""
case when c.answered_at < c.queued_at then 'answered_before_queued'
     when c.abandoned_at < c.queued_at then 'abandoned_before_queued'
     when c.ended_at < c.queued_at then 'ended_before_queued'
     when c.ended_at < c.answered_at then 'ended_before_answered'
     when c.queued_at > c.ingested_at + {SKEW_TOLERANCE} then 'queued_in_future'
     else 'ended_in_future' end
"""
SKEW_SQL = f"""
select c.id, c.project_id, c.source, c.external_id, {SKEW_PROBLEM} as problem, c.queued_at,
       c.answered_at, c.ended_at, c.abandoned_at, c.ingested_at, count(*) over () as n
from contacts c
where {SKEW_WHERE}
order by c.queued_at, c.id
limit :limit
"""

LATE_SQL = f"""
select c.project_id, c.source, c.local_day, count(*) as n, max(c.ingested_at) as last_ingested_at
from contacts c
join projects p on p.tenant_id = c.tenant_id and p.id = c.project_id
where c.tenant_id = :t and c.project_id = any(cast(:projects as uuid[]))
  and c.queued_at >= {_START} and c.queued_at < {_END} and {_SOURCE}
  and c.ingested_at >= ((c.local_day + 1)::timestamp at time zone p.time_zone)
group by c.project_id, c.source, c.local_day
order by c.local_day, c.project_id, c.source
limit :limit
"""

# A correction concerns the window when the contact was queued in it before or after
# the change (whenever the correction arrived); with a source, when the contact came from it.
CORRECTIONS_SQL = f"""
select r.id, r.contact_id, r.project_id, r.external_id, k.queued_at, r.corrected_at,
       r.old_version, r.new_version, r.changes, count(*) over () as n
from contact_corrections r
join contact_keys k on k.tenant_id = r.tenant_id and k.project_id = r.project_id
 and k.external_id = r.external_id
where r.tenant_id = :t and r.project_id = any(cast(:projects as uuid[]))
  and ((k.queued_at >= {_START} and k.queued_at < {_END})
       or (r.changes ? 'queued_at'
           and cast(r.changes -> 'queued_at' ->> 'old' as timestamptz) >= {_START}
           and cast(r.changes -> 'queued_at' ->> 'old' as timestamptz) < {_END}))
  and (cast(:source as text) is null or exists (
        select 1 from contacts c
        where c.tenant_id = k.tenant_id and c.project_id = k.project_id
          and c.queued_at = k.queued_at and c.id = k.contact_id
          and {_SOURCE}))
order by r.corrected_at, r.id
limit :limit
"""


async def data_quality(
    session: AsyncSession,
    ctx: TenantContext,
    q: WindowQuery,
    *,
    source: str | None = None,
    limit: int = DEFAULT_LIMIT,
    now: datetime | None = None,
) -> DataQualityReport:
    """Every data-quality check over the window, for the projects the caller sees."""
    # Uncut: a contact stamped in the future is a finding, not something to skip.
    start, end = window(q, await tenant_zone(session, ctx), now, cut=False)
    until = min(end, max(start, now or utcnow()))
    projects = await visible_projects(session, ctx)
    ids = [p.id for p in projects]
    params: dict[str, Any] = {
        "t": ctx.tenant_id,
        "start": start,
        "end": end,
        "source": source,
        "projects": ids,
        "scope": list(ctx.project_ids) if ctx.project_ids is not None else None,
        "limit": limit + 1,
    }
    truncated = False

    issues: list[IssueRead] = []
    if not ctx.is_client_viewer:
        rows = list(await session.execute(text(ISSUES_SQL), params))
        truncated |= len(rows) > limit
        issues = [
            IssueRead(
                source=r.source,
                kind=r.kind,
                subject=r.subject,
                project_id=r.project_id,
                first_seen=r.first_seen,
                last_seen=r.last_seen,
                occurrences=r.occurrences,
                detail=r.detail or {},
            )
            for r in rows[:limit]
        ]

    gaps = await _feed_gaps(session, projects, start, until, params)
    truncated |= len(gaps) > limit

    rows = list(await session.execute(text(SKEW_SQL), params))
    skew_total = int(rows[0].n) if rows else 0
    truncated |= len(rows) > limit
    skew = [
        SkewRead(
            contact_id=r.id,
            project_id=r.project_id,
            source=r.source,
            external_id=r.external_id,
            problem=r.problem,
            queued_at=r.queued_at,
            answered_at=r.answered_at,
            ended_at=r.ended_at,
            abandoned_at=r.abandoned_at,
            ingested_at=r.ingested_at,
        )
        for r in rows[:limit]
    ]

    rows = list(await session.execute(text(LATE_SQL), params))
    truncated |= len(rows) > limit
    late = [
        LateDayRead(
            project_id=r.project_id,
            source=r.source,
            local_day=r.local_day,
            late_contacts=int(r.n),
            last_ingested_at=r.last_ingested_at,
        )
        for r in rows[:limit]
    ]

    rows = list(await session.execute(text(CORRECTIONS_SQL), params))
    corrections_total = int(rows[0].n) if rows else 0
    truncated |= len(rows) > limit
    corrections = [
        CorrectionRead(
            id=r.id,
            contact_id=r.contact_id,
            project_id=r.project_id,
            external_id=r.external_id,
            queued_at=r.queued_at,
            corrected_at=r.corrected_at,
            old_version=r.old_version,
            new_version=r.new_version,
            changed=sorted(r.changes or {}),
            changes=r.changes or {},
        )
        for r in rows[:limit]
    ]

    summary = {
        "unmapped_queues": sum(i.occurrences for i in issues if i.kind == "unmapped_queue"),
        "unmapped_agents": sum(i.occurrences for i in issues if i.kind == "unmapped_agent"),
        "feed_gaps": len(gaps),
        "clock_skew": skew_total,
        "late_contacts": sum(d.late_contacts for d in late),
        "corrections": corrections_total,
    }
    return DataQualityReport(
        start=start,
        end=end,
        source=source,
        summary=summary,
        issues=issues,
        feed_gaps=gaps[:limit],
        clock_skew=skew,
        late_days=late,
        corrections=corrections,
        not_recorded=NOT_RECORDED,
        truncated=truncated,
    )


async def _feed_gaps(
    session: AsyncSession,
    projects: list[Any],
    start: datetime,
    end: datetime,
    params: dict[str, Any],
) -> list[FeedGapRead]:
    wp: list[uuid.UUID] = []
    ws: list[datetime] = []
    we: list[datetime] = []
    for project in projects:
        if project.status != "active" or not project.business_hours:
            continue
        try:
            found = business_windows(
                project.business_hours, project.holidays or [], zone(project.time_zone), start, end
            )
        except BadHours:
            continue  # the projects API validates hours; an unreadable row is not a feed gap
        for s, e in found:
            wp.append(project.id)
            ws.append(s)
            we.append(e)
    if not wp:
        return []
    rows = await session.execute(text(GAPS_SQL), {**params, "wp": wp, "ws": ws, "we": we})
    return [
        FeedGapRead(
            project_id=r.project_id, start=r.s, end=r.e, hours=(r.e - r.s).total_seconds() / 3600
        )
        for r in rows
    ]
