"""All SQL of the contracts domain. Every query starts from `scoped(Contract, ctx)`."""

from __future__ import annotations

import uuid
from datetime import date

from sqlalchemy import func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from service.contracts.models import Contract
from service.core.pagination import paginate
from tenants.context import TenantContext, scoped


async def get_contract(
    session: AsyncSession, ctx: TenantContext, contract_id: uuid.UUID, *, for_update: bool = False
) -> Contract | None:
    stmt = scoped(Contract, ctx).where(col(Contract.id) == contract_id)
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def overlapping(
    session: AsyncSession,
    ctx: TenantContext,
    project_id: uuid.UUID,
    start: date,
    end: date | None,
    *,
    excluding: uuid.UUID | None = None,
) -> Contract | None:
    """The earliest version of the project whose dates overlap [start, end]."""
    stmt = scoped(Contract, ctx).where(
        col(Contract.project_id) == project_id,
        func.daterange(col(Contract.effective_from), col(Contract.effective_to), literal("[]")).op(
            "&&"
        )(func.daterange(start, end, literal("[]"))),
    )
    if excluding is not None:
        stmt = stmt.where(col(Contract.id) != excluding)
    stmt = stmt.order_by(col(Contract.effective_from)).limit(1)
    return (await session.execute(stmt)).scalar_one_or_none()


async def in_force(
    session: AsyncSession, ctx: TenantContext, project_id: uuid.UUID, at: date
) -> Contract | None:
    stmt = scoped(Contract, ctx).where(
        col(Contract.project_id) == project_id,
        col(Contract.effective_from) <= at,
        (col(Contract.effective_to).is_(None)) | (col(Contract.effective_to) >= at),
    )
    return (await session.execute(stmt)).scalars().first()


async def next_version_number(
    session: AsyncSession, ctx: TenantContext, project_id: uuid.UUID
) -> int:
    # Callers hold the project's row lock, so two writers cannot read the same maximum.
    visible = scoped(Contract, ctx).where(col(Contract.project_id) == project_id).subquery()
    highest = (await session.execute(select(func.max(visible.c.version_number)))).scalar_one()
    return int(highest or 0) + 1


async def list_contracts(
    session: AsyncSession,
    ctx: TenantContext,
    *,
    project_id: uuid.UUID | None,
    client_id: uuid.UUID | None,
    at: date | None,
    sort: str,
    limit: int,
    cursor: str | None,
) -> tuple[list[Contract], str | None]:
    stmt = scoped(Contract, ctx)
    if project_id is not None:
        stmt = stmt.where(col(Contract.project_id) == project_id)
    if client_id is not None:
        stmt = stmt.where(col(Contract.client_id) == client_id)
    if at is not None:
        stmt = stmt.where(
            col(Contract.effective_from) <= at,
            (col(Contract.effective_to).is_(None)) | (col(Contract.effective_to) >= at),
        )
    column = (
        col(Contract.effective_from)
        if sort.lstrip("-") == "effective_from"
        else col(Contract.created_at)
    )
    return await paginate(
        session,
        stmt,
        sort=column,
        id_column=col(Contract.id),
        limit=limit,
        cursor=cursor,
        descending=sort.startswith("-"),
    )
