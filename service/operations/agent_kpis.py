"""Agent KPIs per project and in total: the rows `service/kpis/agents.py`
computes from, read set-wise for one agent or every agent of a project.

Visibility: the agent must be visible to the caller (`agents_select`: tenant
staff see the pool, a client viewer the agents certified for its client).
Per-project figures are listed for the projects the caller sees; the total
across projects is shown to tenant staff only, because it includes work for
other clients. Row-level security already hides other clients' shifts and
contacts from a client viewer's session.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from service.agents.models import Agent
from service.agents.repository import agents_select, get_agent
from service.core.errors import NotFound
from service.kpis.agents import (
    AgentFigures,
    HandledContact,
    ScheduledShift,
    StateEvent,
    project_figures,
    total_figures,
)
from service.kpis.schemas import KpiRead
from service.operations.schemas import (
    AgentFiguresRead,
    AgentKpiReport,
    AgentTimeRead,
    ProjectAgentKpis,
    ProjectAgentRow,
    WindowQuery,
)
from service.operations.scope import (
    BUSY_END_SQL,
    MAX_WAIT,
    TALK_END_SQL,
    tenant_zone,
    visible_project,
    visible_projects,
    window,
)
from tenants.context import TenantContext

# Each agent's events of the window, and the last one before it (the state it opened in).
EVENTS_SQL = """
select e.agent_id, e.at, e.state, e.reason
from agent_state_events e
where e.tenant_id = :t and e.agent_id = any(:agents) and e.at < :end
  and e.at >= coalesce((select max(p.at) from agent_state_events p
                        where p.tenant_id = :t and p.agent_id = e.agent_id and p.at <= :start),
                       :start)
order by e.agent_id, e.at, e.id
"""

SHIFTS_SQL = """
select s.agent_id, s.project_id, s.starts_at, s.ends_at, s.activity
from shifts s
where s.tenant_id = :t and s.agent_id = any(:agents)
  and s.during && tstzrange(:start, :end, '[)')
order by s.agent_id, s.starts_at
"""

CONTACTS_SQL = f"""
select c.agent_id, c.project_id, c.answered_at, {TALK_END_SQL} as talk_end,
       {BUSY_END_SQL} as busy_end
from contacts c
where c.tenant_id = :t and c.agent_id = any(:agents) and c.outcome = 'answered'
  and c.answered_at is not null and c.answered_at < :end
  and c.queued_at >= cast(:start as timestamptz) - {MAX_WAIT} and c.queued_at < :end
  and ({BUSY_END_SQL} > :start or c.answered_at >= :start)
order by c.agent_id, c.answered_at
"""

# The agents who worked on a project in the window: scheduled on it, or handling its contacts.
# (A contact answered at the window's first instant with no time on it is still handled.)
PROJECT_AGENTS_SQL = f"""
select s.agent_id from shifts s
where s.tenant_id = :t and s.project_id = :p and s.during && tstzrange(:start, :end, '[)')
union
select c.agent_id from contacts c
where c.tenant_id = :t and c.project_id = :p and c.agent_id is not null
  and c.outcome = 'answered' and c.answered_at is not null and c.answered_at < :end
  and c.queued_at >= cast(:start as timestamptz) - {MAX_WAIT} and c.queued_at < :end
  and ({BUSY_END_SQL} > :start or c.answered_at >= :start)
"""


class Inputs:
    """One agent's events, shifts and handled contacts over the window."""

    def __init__(self) -> None:
        self.events: list[StateEvent] = []
        self.shifts: list[ScheduledShift] = []
        self.contacts: list[HandledContact] = []

    @property
    def projects(self) -> set[uuid.UUID]:
        found = {s.project for s in self.shifts} | {c.project for c in self.contacts}
        return {p for p in found if isinstance(p, uuid.UUID)}


async def load_inputs(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    agent_ids: Iterable[uuid.UUID],
    start: datetime,
    end: datetime,
) -> dict[uuid.UUID, Inputs]:
    agents = list(agent_ids)
    out: dict[uuid.UUID, Inputs] = defaultdict(Inputs)
    if not agents:
        return out
    params = {"t": tenant_id, "agents": agents, "start": start, "end": end}
    for r in await session.execute(text(EVENTS_SQL), params):
        out[r.agent_id].events.append(StateEvent(r.at, r.state, r.reason))
    for r in await session.execute(text(SHIFTS_SQL), params):
        out[r.agent_id].shifts.append(
            ScheduledShift(r.starts_at, r.ends_at, r.activity, r.project_id)
        )
    for r in await session.execute(text(CONTACTS_SQL), params):
        out[r.agent_id].contacts.append(
            HandledContact(r.answered_at, r.talk_end, r.busy_end, r.project_id)
        )
    return out


def _read(figures: AgentFigures, project_id: uuid.UUID | None) -> AgentFiguresRead:
    t = figures.time
    return AgentFiguresRead(
        project_id=project_id,
        time=AgentTimeRead(
            logged_in_s=t.logged_in_s,
            available_s=t.available_s,
            on_contact_s=t.on_contact_s,
            acw_s=t.acw_s,
            not_ready_s=t.not_ready_s,
            scheduled_s=figures.scheduled_s,
            in_scheduled_state_s=figures.in_scheduled_state_s,
            handled=figures.handled,
        ),
        kpis={
            name: KpiRead(
                value=v.value,
                unit=v.unit.value,
                numerator=v.numerator,
                denominator=v.denominator,
                formula=v.formula,
            )
            for name, v in figures.kpis().items()
        },
    )


def _project(
    inputs: Inputs, project_id: uuid.UUID, start: datetime, end: datetime
) -> AgentFiguresRead:
    figures = project_figures(project_id, inputs.events, inputs.shifts, inputs.contacts, start, end)
    return _read(figures, project_id)


def _total(inputs: Inputs, start: datetime, end: datetime) -> AgentFiguresRead:
    return _read(total_figures(inputs.events, inputs.shifts, inputs.contacts, start, end), None)


async def agent_kpis(
    session: AsyncSession,
    ctx: TenantContext,
    agent_id: uuid.UUID,
    q: WindowQuery,
    project_id: uuid.UUID | None = None,
    *,
    now: datetime | None = None,
) -> AgentKpiReport:
    """One agent's KPIs in total and per visible project (or for `project_id` only)."""
    agent = await get_agent(session, ctx, agent_id)
    if agent is None:
        raise NotFound("No such agent.")
    if project_id is not None:
        project = await visible_project(session, ctx, project_id)
        zone_name = project.time_zone
        wanted = {project.id}
    else:
        zone_name = await tenant_zone(session, ctx)
        wanted = {p.id for p in await visible_projects(session, ctx)}
    start, end = window(q, zone_name, now)
    inputs = (await load_inputs(session, ctx.tenant_id, [agent.id], start, end))[agent.id]
    shown = sorted(wanted if project_id is not None else wanted & inputs.projects)
    return AgentKpiReport(
        agent_id=agent.id,
        time_zone=zone_name,
        start=start,
        end=end,
        total=None if ctx.is_client_viewer else _total(inputs, start, end),
        projects=[_project(inputs, p, start, end) for p in shown],
    )


async def project_agent_kpis(
    session: AsyncSession,
    ctx: TenantContext,
    project_id: uuid.UUID,
    q: WindowQuery,
    *,
    now: datetime | None = None,
) -> ProjectAgentKpis:
    """Every agent scheduled on the project or handling its contacts in the window:
    their figures on this project (and, for tenant staff, in total)."""
    project = await visible_project(session, ctx, project_id)
    start, end = window(q, project.time_zone, now)
    found = (
        await session.execute(
            text(PROJECT_AGENTS_SQL),
            {"t": ctx.tenant_id, "p": project.id, "start": start, "end": end},
        )
    ).scalars()
    ids = set(found)
    agents = (
        list(
            (
                await session.execute(
                    agents_select(ctx)
                    .where(col(Agent.id).in_(ids))
                    .order_by(col(Agent.name), col(Agent.id))
                )
            ).scalars()
        )
        if ids
        else []
    )
    inputs = await load_inputs(session, ctx.tenant_id, [a.id for a in agents], start, end)
    staff = not ctx.is_client_viewer
    return ProjectAgentKpis(
        project_id=project.id,
        time_zone=project.time_zone,
        start=start,
        end=end,
        agents=[
            ProjectAgentRow(
                agent_id=a.id,
                name=a.name,
                project=_project(inputs[a.id], project.id, start, end),
                total=_total(inputs[a.id], start, end) if staff else None,
            )
            for a in agents
        ],
    )
