"""What every operations check starts from: the visible projects, the time
zone of the scope, the window (cut at now), and the SQL of an agent's busy
span on a contact."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from service.core.errors import NotFound
from service.core.time import utcnow
from service.operations.errors import OperationsQueryInvalid
from service.operations.schemas import WindowQuery
from service.operations.windows import bound
from service.projects.models import Project
from tenants.context import TenantContext, scoped
from tenants.models import Tenant

MAX_WINDOW: Final = timedelta(days=93)
# A contact answered in a window was queued at most this long before it (the wait grid's end).
MAX_WAIT: Final = "interval '31 days'"

# An agent's time on an answered contact: from the answer until `ended_at` (else answer +
# talk + hold), then ACW. `greatest` keeps a skewed `ended_at` from ending it before it starts.
TALK_END_SQL: Final = (
    "greatest(c.answered_at, coalesce(c.ended_at, c.answered_at"
    " + (coalesce(c.talk_ms, 0) + coalesce(c.hold_ms, 0)) * interval '1 millisecond'))"
)
BUSY_END_SQL: Final = f"({TALK_END_SQL} + coalesce(c.acw_ms, 0) * interval '1 millisecond')"


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


async def tenant_zone(session: AsyncSession, ctx: TenantContext) -> str:
    name = (
        await session.execute(select(col(Tenant.time_zone)).where(col(Tenant.id) == ctx.tenant_id))
    ).scalar_one()
    return str(name)


async def visible_project(
    session: AsyncSession, ctx: TenantContext, project_id: uuid.UUID
) -> Project:
    project = (
        await session.execute(scoped(Project, ctx).where(col(Project.id) == project_id))
    ).scalar_one_or_none()
    if project is None:
        raise NotFound("No such project.", field="project_id")
    return project


async def visible_projects(session: AsyncSession, ctx: TenantContext) -> list[Project]:
    return list((await session.execute(scoped(Project, ctx))).scalars())


def sees_every_project(ctx: TenantContext) -> bool:
    return ctx.client_id is None and ctx.project_ids is None


def window(
    q: WindowQuery, zone_name: str, now: datetime | None = None, *, cut: bool = True
) -> tuple[datetime, datetime]:
    """`[start, end)` in UTC; with `cut`, `end` is cut at now (no state, shift or
    contact time is measured in the future)."""
    tz = zone(zone_name)
    try:
        start = bound(q.start, tz)
    except ValueError as exc:
        raise OperationsQueryInvalid(f"from: {exc}.", field="from") from exc
    try:
        end = bound(q.end, tz)
    except ValueError as exc:
        raise OperationsQueryInvalid(f"to: {exc}.", field="to") from exc
    if end <= start:
        raise OperationsQueryInvalid("'to' must be after 'from'.", field="to")
    if end - start > MAX_WINDOW:
        raise OperationsQueryInvalid(
            f"At most {MAX_WINDOW.days} days per request; split the range.", field="to"
        )
    return start, min(end, max(start, now or utcnow())) if cut else end
