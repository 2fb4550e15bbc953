"""All SQL of the projects domain: projects, their queue keys and supervisor
assignments. Every query starts from `scoped(...)`."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from service.core.pagination import paginate
from service.projects.models import Project, ProjectQueueKey, UserProject
from tenants.context import TenantContext, scoped
from tenants.models import User


async def get_project(
    session: AsyncSession, ctx: TenantContext, project_id: uuid.UUID, *, for_update: bool = False
) -> Project | None:
    stmt = scoped(Project, ctx).where(col(Project.id) == project_id)
    if for_update:
        # populate_existing: a row already in the session is refreshed with the locked values.
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def project_named(
    session: AsyncSession,
    ctx: TenantContext,
    client_id: uuid.UUID,
    name: str,
    *,
    other_than: uuid.UUID | None = None,
) -> Project | None:
    stmt = scoped(Project, ctx).where(
        col(Project.client_id) == client_id, func.lower(col(Project.name)) == name.lower()
    )
    if other_than is not None:
        stmt = stmt.where(col(Project.id) != other_than)
    return (await session.execute(stmt)).scalars().first()


async def queue_keys_taken(
    session: AsyncSession,
    ctx: TenantContext,
    keys: Iterable[str],
    *,
    other_than: uuid.UUID | None = None,
) -> dict[str, uuid.UUID]:
    """Which of `keys` map to another (visible) project: key → project id."""
    wanted = list(keys)
    if not wanted:
        return {}
    stmt = scoped(ProjectQueueKey, ctx).where(col(ProjectQueueKey.queue_key).in_(wanted))
    if other_than is not None:
        stmt = stmt.where(col(ProjectQueueKey.project_id) != other_than)
    return {row.queue_key: row.project_id for row in (await session.execute(stmt)).scalars()}


async def list_projects(
    session: AsyncSession,
    ctx: TenantContext,
    *,
    client_id: uuid.UUID | None,
    status: str | None,
    channel: str | None,
    q: str | None,
    sort: str,
    limit: int,
    cursor: str | None,
) -> tuple[list[Project], str | None]:
    stmt = scoped(Project, ctx)
    if client_id is not None:
        stmt = stmt.where(col(Project.client_id) == client_id)
    if status is not None:
        stmt = stmt.where(col(Project.status) == status)
    if channel is not None:
        stmt = stmt.where(col(Project.channels).contains([channel]))
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(col(Project.name).ilike(pattern, escape="\\"))
    column = col(Project.name) if sort.lstrip("-") == "name" else col(Project.created_at)
    return await paginate(
        session,
        stmt,
        sort=column,
        id_column=col(Project.id),
        limit=limit,
        cursor=cursor,
        descending=sort.startswith("-"),
    )


async def visible_project_ids(
    session: AsyncSession, ctx: TenantContext, project_ids: Iterable[uuid.UUID]
) -> set[uuid.UUID]:
    wanted = list(project_ids)
    if not wanted:
        return set()
    stmt = scoped(Project, ctx).where(col(Project.id).in_(wanted))
    return {p.id for p in (await session.execute(stmt)).scalars()}


# --- supervisor assignments ------------------------------------------------------------


async def get_user(
    session: AsyncSession, ctx: TenantContext, user_id: uuid.UUID, *, for_update: bool = False
) -> User | None:
    stmt = scoped(User, ctx).where(col(User.id) == user_id)
    if for_update:
        # Serializes concurrent replacements of one user's assignments.
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def assigned_project_ids(
    session: AsyncSession, ctx: TenantContext, user_id: uuid.UUID
) -> list[uuid.UUID]:
    stmt = (
        scoped(UserProject, ctx)
        .where(col(UserProject.user_id) == user_id)
        .order_by(col(UserProject.project_id))
    )
    return [row.project_id for row in (await session.execute(stmt)).scalars()]


async def assign(
    session: AsyncSession, ctx: TenantContext, user_id: uuid.UUID, project_ids: Iterable[uuid.UUID]
) -> None:
    for project_id in project_ids:
        session.add(UserProject(tenant_id=ctx.tenant_id, user_id=user_id, project_id=project_id))
    await session.flush()


async def unassign(
    session: AsyncSession, ctx: TenantContext, user_id: uuid.UUID, project_ids: Iterable[uuid.UUID]
) -> None:
    wanted = list(project_ids)
    if not wanted:
        return
    # Loaded and deleted through the session, so each removal is audited.
    stmt = scoped(UserProject, ctx).where(
        col(UserProject.user_id) == user_id, col(UserProject.project_id).in_(wanted)
    )
    for row in (await session.execute(stmt)).scalars():
        await session.delete(row)
    await session.flush()
