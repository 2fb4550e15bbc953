"""All SQL of the clients domain (guarded writes: service/core/db.py)."""

from __future__ import annotations

import uuid

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from service.clients.models import Client
from service.core.db import Violation, write_guarded
from service.core.pagination import paginate
from service.projects.models import Project
from tenants.context import TenantContext, scoped
from tenants.models import Tenant

FOREIGN_KEY_VIOLATION = "23503"


# --- clients -------------------------------------------------------------------------


def clients(ctx: TenantContext) -> Select[Client]:
    """The clients `ctx` may see: a client viewer only their own (Client names
    its client column, so `scoped` narrows it)."""
    return scoped(Client, ctx)


async def get_client(
    session: AsyncSession, ctx: TenantContext, client_id: uuid.UUID, *, for_update: bool = False
) -> Client | None:
    stmt = clients(ctx).where(col(Client.id) == client_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def client_named(
    session: AsyncSession, ctx: TenantContext, name: str, *, other_than: uuid.UUID | None = None
) -> Client | None:
    stmt = scoped(Client, ctx).where(func.lower(col(Client.name)) == name.lower())
    if other_than is not None:
        stmt = stmt.where(col(Client.id) != other_than)
    return (await session.execute(stmt)).scalars().first()


async def tenant_time_zone(session: AsyncSession, ctx: TenantContext) -> str:
    zone: str = (
        await session.execute(select(col(Tenant.time_zone)).where(col(Tenant.id) == ctx.tenant_id))
    ).scalar_one()
    return zone


async def list_clients(
    session: AsyncSession,
    ctx: TenantContext,
    *,
    status: str | None,
    q: str | None,
    sort: str,
    limit: int,
    cursor: str | None,
) -> tuple[list[Client], str | None]:
    stmt = clients(ctx)
    if status is not None:
        stmt = stmt.where(col(Client.status) == status)
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(col(Client.name).ilike(pattern, escape="\\"))
    descending = sort.startswith("-")
    column = col(Client.name) if sort.lstrip("-") == "name" else col(Client.created_at)
    return await paginate(
        session,
        stmt,
        sort=column,
        id_column=col(Client.id),
        limit=limit,
        cursor=cursor,
        descending=descending,
    )


async def count_projects(session: AsyncSession, ctx: TenantContext, client_id: uuid.UUID) -> int:
    visible = scoped(Project, ctx).where(col(Project.client_id) == client_id).subquery()
    return int((await session.execute(select(func.count()).select_from(visible))).scalar_one())


async def delete_client(session: AsyncSession, client: Client) -> Violation | None:
    """Delete inside a savepoint: users, invitations or identity providers that
    still name the client come back as a foreign-key violation."""
    return await write_guarded(
        session, lambda: session.sync_session.delete(client), expected={FOREIGN_KEY_VIOLATION}
    )
