"""All SQL of the clients domain, and the guarded writes the operations
domains share: a write inside a SAVEPOINT whose constraint violation comes
back as a value, so the service can answer 409 naming the clash and the
request's transaction stays usable."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from service.clients.models import Client
from service.core.pagination import paginate
from service.projects.models import Project
from tenants.context import TenantContext, scoped
from tenants.models import Tenant

# --- guarded writes ------------------------------------------------------------------

FOREIGN_KEY_VIOLATION = "23503"


@dataclass(frozen=True)
class Violation:
    """A constraint the database refused: its SQLSTATE, name and (server-side) detail.
    The detail is for the service to read, never to send to a client."""

    sqlstate: str | None
    constraint: str | None
    detail: str | None


def violation_of(exc: IntegrityError) -> Violation:
    orig: Any = exc.orig
    cause: Any = getattr(orig, "__cause__", None)
    return Violation(
        sqlstate=getattr(orig, "sqlstate", None) or getattr(cause, "sqlstate", None),
        constraint=getattr(cause, "constraint_name", None),
        detail=getattr(cause, "detail", None),
    )


async def write_guarded(
    session: AsyncSession, apply: Callable[[], None], *, expected: Collection[str]
) -> Violation | None:
    """Run `apply` (adds, attribute changes, deletes) and flush inside a savepoint.
    A violation of an `expected` constraint (by name or SQLSTATE) rolls the
    savepoint back and is returned; any other is a bug and propagates."""
    try:
        async with session.begin_nested():
            apply()
            await session.flush()
    except IntegrityError as exc:
        violation = violation_of(exc)
        if violation.constraint in expected or violation.sqlstate in expected:
            return violation
        raise
    return None


async def insert_guarded(
    session: AsyncSession, obj: Any, *, expected: Collection[str]
) -> Violation | None:
    return await write_guarded(session, lambda: session.add(obj), expected=expected)


def update_from(obj: Any, changes: dict[str, Any]) -> Callable[[], None]:
    def apply() -> None:
        for key, value in changes.items():
            setattr(obj, key, value)

    return apply


# --- clients -------------------------------------------------------------------------


def clients(ctx: TenantContext) -> Select[Client]:
    """The clients `ctx` may see: a client viewer only their own."""
    stmt = scoped(Client, ctx)
    if ctx.client_id is not None:
        stmt = stmt.where(col(Client.id) == ctx.client_id)
    return stmt


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
    try:
        async with session.begin_nested():
            await session.delete(client)
            await session.flush()
    except IntegrityError as exc:
        violation = violation_of(exc)
        if violation.sqlstate == FOREIGN_KEY_VIOLATION:
            return violation
        raise
    return None
