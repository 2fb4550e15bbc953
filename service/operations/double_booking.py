"""Actual double booking (KPIS.md, "Double booking / Actual"), found set-wise.

Three kinds of finding, each with the agent, the project whose work was
done, the other project, the overlap `[start, end)` (cut to the window) and
the ids of the contacts, shifts and state events involved:

* `cross_project_contacts`: the agent was on contacts of two projects at
  once. An agent is on a contact from `answered_at` until `ended_at` (else
  answered_at + talk + hold), then in its ACW; spans are half-open, so
  back-to-back contacts do not overlap. One finding per overlapping pair.
* `contact_outside_shift`: the agent handled a project's contact while not
  scheduled on that project (no shift of the agent on it covers that time).
  The uncovered part is split by the agent's shifts on other projects: the
  part inside a shift on project Q names Q as the other project and the
  shift; the rest has no other project.
* `logged_in_other_project`: the agent was logged in (any state but
  `logged_out`) on a queue of project P while scheduled on project Q.
  Each state event lasts until the agent's next event (the rule of the
  agent KPIs); its project is the event's, else its queue's. Consecutive
  states on P within one shift on Q are one finding.

How it is computed: the window's answered contacts go into a temporary
table indexed by (agent, start); overlapping pairs come from a range join on
that index (each pair once: the later-starting contact starts inside the
earlier one), uncovered parts from multirange arithmetic against the
agent's shifts (`range_agg`), state spans from `lead()` over the events. No
per-row loop in Python.

Who sees what: client viewers get 403 on this route — a double booking is
by nature about two projects, usually of two clients, so a client's own
staff could learn of another client's work from it. A supervisor sees the
findings that involve one of their projects; the other project, and the
contacts and shifts of it, are blanked when it is not theirs.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.agents.repository import get_agent
from service.core.errors import NotFound
from service.operations.errors import ClientViewersExcluded
from service.operations.schemas import (
    DoubleBookingRead,
    DoubleBookingReport,
    Involved,
    WindowQuery,
)
from service.operations.scope import (
    BUSY_END_SQL,
    MAX_WAIT,
    tenant_zone,
    visible_project,
    window,
)
from tenants.context import TenantContext

KINDS: Final = ("cross_project_contacts", "contact_outside_shift", "logged_in_other_project")
DEFAULT_LIMIT: Final = 500
MAX_LIMIT: Final = 5000

_START = "cast(:start as timestamptz)"
_END = "cast(:end as timestamptz)"

STAGE_SPANS: Final = (
    "drop table if exists ops_contact_spans",
    f"""
    create temp table ops_contact_spans on commit drop as
    select c.id, c.agent_id, c.project_id, c.answered_at as s, {BUSY_END_SQL} as e
    from contacts c
    where c.tenant_id = :t and c.agent_id is not null and c.outcome = 'answered'
      and c.answered_at is not null and c.answered_at < {_END}
      and c.queued_at >= {_START} - {MAX_WAIT} and c.queued_at < {_END}
      and {BUSY_END_SQL} > {_START}
      and (cast(:agent as uuid) is null or c.agent_id = cast(:agent as uuid))
    """,
    "create index on ops_contact_spans (agent_id, s)",
    "analyze ops_contact_spans",
)

FINDINGS: Final = f"""
with
pairs as (
  select 'cross_project_contacts'::text as kind, a.agent_id, a.project_id,
         b.project_id as other_project_id,
         greatest(a.s, b.s, {_START}) as s, least(a.e, b.e, {_END}) as e,
         jsonb_build_array(jsonb_build_object('id', a.id, 'project_id', a.project_id),
                           jsonb_build_object('id', b.id, 'project_id', b.project_id)) as contacts,
         '[]'::jsonb as shifts, '{{}}'::uuid[] as events
  from ops_contact_spans a
  join ops_contact_spans b
    on b.agent_id = a.agent_id and b.s >= a.s and b.s < a.e
   and (b.s > a.s or b.id > a.id) and b.project_id <> a.project_id
  where greatest(a.s, b.s, {_START}) < least(a.e, b.e, {_END})
),
parts as (
  select c.id, c.agent_id, c.project_id, u.part
  from ops_contact_spans c
  cross join lateral (
    select range_agg(s.during) as covered from shifts s
    where s.tenant_id = :t and s.agent_id = c.agent_id and s.project_id = c.project_id
      and s.during && tstzrange(c.s, c.e, '[)')
  ) cov
  cross join lateral unnest(
    tstzmultirange(tstzrange(greatest(c.s, {_START}), least(c.e, {_END}), '[)'))
      - coalesce(cov.covered, '{{}}'::tstzmultirange)
  ) as u(part)
  where greatest(c.s, {_START}) < least(c.e, {_END})
),
outside as (
  select 'contact_outside_shift'::text as kind, p.agent_id, p.project_id,
         s.project_id as other_project_id,
         lower(p.part * s.during) as s, upper(p.part * s.during) as e,
         jsonb_build_array(jsonb_build_object('id', p.id, 'project_id', p.project_id)) as contacts,
         jsonb_build_array(jsonb_build_object('id', s.id, 'project_id', s.project_id)) as shifts,
         '{{}}'::uuid[] as events
  from parts p
  join shifts s on s.tenant_id = :t and s.agent_id = p.agent_id and s.during && p.part
  union all
  select 'contact_outside_shift', p.agent_id, p.project_id, null::uuid, lower(u.r), upper(u.r),
         jsonb_build_array(jsonb_build_object('id', p.id, 'project_id', p.project_id)),
         '[]'::jsonb, '{{}}'::uuid[]
  from parts p
  cross join lateral (
    select range_agg(s.during) as scheduled from shifts s
    where s.tenant_id = :t and s.agent_id = p.agent_id and s.during && p.part
  ) o
  cross join lateral unnest(
    tstzmultirange(p.part) - coalesce(o.scheduled, '{{}}'::tstzmultirange)
  ) as u(r)
),
ev as (
  select e.id, e.agent_id, e.at, e.state, coalesce(e.project_id, qk.project_id) as project_id,
         lead(e.at) over (partition by e.agent_id order by e.at, e.id) as next_at
  from agent_state_events e
  left join project_queue_keys qk
    on e.project_id is null and qk.tenant_id = :t and qk.queue_key = e.queue_key
  where e.tenant_id = :t and e.at < {_END}
    and (cast(:agent as uuid) is null or e.agent_id = cast(:agent as uuid))
    and e.at >= coalesce((select max(p.at) from agent_state_events p
                          where p.tenant_id = :t and p.agent_id = e.agent_id
                            and p.at <= {_START}), {_START})
),
state_spans as (
  select id, agent_id, project_id,
         tstzrange(greatest(at, {_START}), least(coalesce(next_at, {_END}), {_END}), '[)') as r
  from ev
  where state <> 'logged_out' and project_id is not null
    and greatest(at, {_START}) < least(coalesce(next_at, {_END}), {_END})
),
hits as (
  select sp.agent_id, sp.project_id, s.project_id as other, s.id as shift_id,
         sp.id as event_id, sp.r * s.during as r
  from state_spans sp
  join shifts s on s.tenant_id = :t and s.agent_id = sp.agent_id
   and s.project_id <> sp.project_id and s.during && sp.r
),
logged as (
  select 'logged_in_other_project'::text as kind, h.agent_id, h.project_id,
         h.other as other_project_id, lower(u.piece) as s, upper(u.piece) as e,
         '[]'::jsonb as contacts,
         jsonb_build_array(jsonb_build_object('id', h.shift_id, 'project_id', h.other)) as shifts,
         array_agg(x.event_id order by lower(x.r), x.event_id) as events
  from (select agent_id, project_id, other, shift_id, range_agg(r) as m
        from hits group by agent_id, project_id, other, shift_id) h
  cross join lateral unnest(h.m) as u(piece)
  join hits x on x.agent_id = h.agent_id and x.project_id = h.project_id
   and x.shift_id = h.shift_id and x.r && u.piece
  group by h.agent_id, h.project_id, h.other, h.shift_id, u.piece
),
found as (
  select * from pairs union all select * from outside union all select * from logged
),
filtered as (
  select * from found f
  where (cast(:scope as uuid[]) is null or f.project_id = any(cast(:scope as uuid[]))
         or f.other_project_id = any(cast(:scope as uuid[])))
    and (cast(:project as uuid) is null or f.project_id = cast(:project as uuid)
         or f.other_project_id = cast(:project as uuid))
)
select f.*,
       (select jsonb_object_agg(k.kind, k.n)
        from (select kind, count(*) as n from filtered group by kind) k) as counts
from filtered f
order by f.s, f.agent_id, f.kind, f.project_id, f.e
limit :limit
"""


def _involved(items: Any, visible: set[uuid.UUID] | None) -> list[Involved]:
    out = [Involved(id=uuid.UUID(i["id"]), project_id=uuid.UUID(i["project_id"])) for i in items]
    return [i for i in out if visible is None or i.project_id in visible]


def _finding(row: Any, visible: set[uuid.UUID] | None) -> DoubleBookingRead:
    project, other = row.project_id, row.other_project_id
    if visible is not None and project not in visible:
        # Present a finding from the side of the caller's own project.
        project, other = other, project
    hidden = visible is not None and other is not None and other not in visible
    start: datetime = row.s
    end: datetime = row.e
    return DoubleBookingRead(
        kind=row.kind,
        agent_id=row.agent_id,
        project_id=project,
        other_project_id=None if hidden else other,
        other_project_hidden=hidden,
        start=start,
        end=end,
        seconds=(end - start).total_seconds(),
        contacts=_involved(row.contacts, visible),
        shifts=_involved(row.shifts, visible),
        state_events=list(row.events) if visible is None or row.project_id in visible else [],
    )


async def double_bookings(
    session: AsyncSession,
    ctx: TenantContext,
    q: WindowQuery,
    *,
    agent_id: uuid.UUID | None = None,
    project_id: uuid.UUID | None = None,
    limit: int = DEFAULT_LIMIT,
    now: datetime | None = None,
) -> DoubleBookingReport:
    """Every actual double booking in the window, oldest first (at most `limit`)."""
    if ctx.is_client_viewer:
        raise ClientViewersExcluded(
            "Double bookings involve other clients' projects; ask your BPO's staff."
        )
    if agent_id is not None and await get_agent(session, ctx, agent_id) is None:
        raise NotFound("No such agent.", field="agent_id")
    if project_id is not None:
        zone_name = (await visible_project(session, ctx, project_id)).time_zone
    else:
        zone_name = await tenant_zone(session, ctx)
    start, end = window(q, zone_name, now)
    params: dict[str, Any] = {
        "t": ctx.tenant_id,
        "start": start,
        "end": end,
        "agent": agent_id,
        "project": project_id,
        "scope": list(ctx.project_ids) if ctx.project_ids is not None else None,
        "limit": limit + 1,
    }
    for statement in STAGE_SPANS:
        await session.execute(text(statement), params)
    rows = list(await session.execute(text(FINDINGS), params))
    await session.execute(text("drop table if exists ops_contact_spans"))
    counts = dict.fromkeys(KINDS, 0)
    if rows:
        counts.update({k: int(n) for k, n in rows[0].counts.items()})
    visible = set(ctx.project_ids) if ctx.project_ids is not None else None
    return DoubleBookingReport(
        start=start,
        end=end,
        findings=[_finding(r, visible) for r in rows[:limit]],
        counts=counts,
        truncated=len(rows) > limit,
    )
