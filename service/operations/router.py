"""Routes of the operations checks: agent KPIs, actual double bookings, data quality."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from service.core.db import SessionDep
from service.core.time import supported_year
from service.operations import agent_kpis, data_quality, double_booking
from service.operations.errors import OperationsQueryInvalid
from service.operations.schemas import (
    AgentKpiReport,
    DataQualityReport,
    DoubleBookingReport,
    ProjectAgentKpis,
    WindowQuery,
)
from tenants.context import TenantContext
from tenants.deps import require

router = APIRouter(tags=["operations"])

Reader = Annotated[TenantContext, Depends(require("ops:read"), scope="function")]


def _when(value: str, name: str) -> date | datetime:
    try:
        when = date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
    except ValueError as exc:
        raise OperationsQueryInvalid(
            f"{name}: a local date (YYYY-MM-DD) or an RFC 3339 timestamp with offset.",
            field=name,
        ) from exc
    try:
        supported_year(when, name)
    except ValueError as exc:
        raise OperationsQueryInvalid(str(exc), field=name) from None
    return when


def window_query(
    from_: Annotated[
        str,
        Query(
            alias="from",
            description="Start (inclusive): a local date of the scope's time zone, or a "
            "timestamp with offset.",
        ),
    ],
    to: Annotated[
        str, Query(description="End (exclusive): a local date or a timestamp with offset.")
    ],
) -> WindowQuery:
    return WindowQuery(start=_when(from_, "from"), end=_when(to, "to"))


Window = Annotated[WindowQuery, Depends(window_query)]


@router.get("/agents/{agent_id}/kpis", response_model=AgentKpiReport)
async def agent_kpis_route(
    agent_id: uuid.UUID,
    q: Window,
    ctx: Reader,
    session: SessionDep,
    project_id: uuid.UUID | None = None,
) -> AgentKpiReport:
    """An agent's KPIs (KPIS.md, "Agent KPIs"): logged-in time, occupancy, utilization,
    schedule adherence, conformance, shrinkage and contacts per hour — in total across
    projects (tenant staff only) and per project (time on that project's contacts,
    available and not-ready time while scheduled on it). Dates are local to the project's
    zone with `project_id`, else to the tenant's; the window ends at now at the latest."""
    return await agent_kpis.agent_kpis(session, ctx, agent_id, q, project_id)


@router.get("/projects/{project_id}/agent-kpis", response_model=ProjectAgentKpis)
async def project_agent_kpis_route(
    project_id: uuid.UUID, q: Window, ctx: Reader, session: SessionDep
) -> ProjectAgentKpis:
    """The agent KPIs of every agent scheduled on the project or handling its contacts in
    the window: on this project, and in total (tenant staff only). Dates are local to the
    project's zone."""
    return await agent_kpis.project_agent_kpis(session, ctx, project_id, q)


@router.get("/double-bookings", response_model=DoubleBookingReport)
async def double_bookings_route(
    q: Window,
    ctx: Reader,
    session: SessionDep,
    agent_id: uuid.UUID | None = None,
    project_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=double_booking.MAX_LIMIT)] = double_booking.DEFAULT_LIMIT,
) -> DoubleBookingReport:
    """Actual double bookings (KPIS.md): an agent on contacts of two projects at once, on a
    project's contact outside any shift on it, or logged in on a project's queues while
    scheduled on another — with the agent, both projects, the overlap and the contacts,
    shifts and state events involved. Client viewers get 403: every finding concerns a
    second project, usually another client's. A supervisor sees findings involving their
    projects, with other projects blanked."""
    return await double_booking.double_bookings(
        session, ctx, q, agent_id=agent_id, project_id=project_id, limit=limit
    )


@router.get("/data-quality", response_model=DataQualityReport)
async def data_quality_route(
    q: Window,
    ctx: Reader,
    session: SessionDep,
    source: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=data_quality.MAX_LIMIT)] = data_quality.DEFAULT_LIMIT,
) -> DataQualityReport:
    """Data quality of the contact feeds over the window (dates local to the tenant's zone),
    optionally of one source: unmapped queues and agents, feed gaps in business hours,
    clock skew, contacts that arrived after their day closed, and corrections — so a wrong
    KPI can be traced to its cause."""
    return await data_quality.data_quality(session, ctx, q, source=source, limit=limit)
