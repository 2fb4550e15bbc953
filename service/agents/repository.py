"""All SQL of the agents domain. Every query starts from a statement scoped to
the caller's `TenantContext`.

Agents belong to the tenant's pool, not to a client: tenant staff see the
whole pool; a client viewer sees only the agents certified for one of its
client's projects (the certifications table carries the client policy)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Select, exists, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from service.agents.models import Agent, AgentExternalId, Certification
from service.core.pagination import paginate
from service.projects.models import Project
from tenants.context import TenantContext, scoped


def agents_select(ctx: TenantContext) -> Select[Agent]:
    stmt = scoped(Agent, ctx)
    if ctx.client_id is not None:
        stmt = stmt.where(
            exists().where(
                col(Certification.tenant_id) == col(Agent.tenant_id),
                col(Certification.agent_id) == col(Agent.id),
                col(Certification.client_id) == ctx.client_id,
            )
        )
    return stmt


async def get_agent(
    session: AsyncSession, ctx: TenantContext, agent_id: uuid.UUID, *, for_update: bool = False
) -> Agent | None:
    stmt = agents_select(ctx).where(col(Agent.id) == agent_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_agents(
    session: AsyncSession,
    ctx: TenantContext,
    *,
    status: str | None,
    q: str | None,
    skill: str | None,
    language: str | None,
    project_id: uuid.UUID | None,
    sort: str,
    descending: bool,
    cursor: str | None,
    limit: int,
) -> tuple[list[Agent], str | None]:
    stmt = agents_select(ctx)
    if status is not None:
        stmt = stmt.where(col(Agent.status) == status)
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(or_(col(Agent.name).ilike(pattern), col(Agent.email).ilike(pattern)))
    if skill is not None:
        stmt = stmt.where(col(Agent.skills).contains([skill]))
    if language is not None:
        stmt = stmt.where(col(Agent.languages).contains([language]))
    if project_id is not None:
        certified = scoped(Certification, ctx).where(
            col(Certification.agent_id) == col(Agent.id),
            col(Certification.project_id) == project_id,
        )
        stmt = stmt.where(certified.exists())
    sort_column = {"name": col(Agent.name), "created_at": col(Agent.created_at)}[sort]
    return await paginate(
        session,
        stmt,
        sort=sort_column,
        id_column=col(Agent.id),
        limit=limit,
        cursor=cursor,
        descending=descending,
    )


async def external_ids_of(
    session: AsyncSession, ctx: TenantContext, agent_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, dict[str, str]]:
    ids = list(agent_ids)
    out: dict[uuid.UUID, dict[str, str]] = {i: {} for i in ids}
    if not ids:
        return out
    rows = await session.execute(
        scoped(AgentExternalId, ctx).where(col(AgentExternalId.agent_id).in_(ids))
    )
    for row in rows.scalars():
        out[row.agent_id][row.system] = row.external_id
    return out


async def external_id_rows(
    session: AsyncSession, ctx: TenantContext, agent_id: uuid.UUID
) -> list[AgentExternalId]:
    stmt = scoped(AgentExternalId, ctx).where(col(AgentExternalId.agent_id) == agent_id)
    return list((await session.execute(stmt)).scalars())


async def external_id_owners(
    session: AsyncSession, ctx: TenantContext, pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], uuid.UUID]:
    """Which agent holds each (system, external id), over the whole pool."""
    if not pairs:
        return {}
    stmt = select(AgentExternalId).where(
        col(AgentExternalId.tenant_id) == ctx.tenant_id,
        or_(
            *(
                (col(AgentExternalId.system) == system)
                & (col(AgentExternalId.external_id) == external_id)
                for system, external_id in pairs
            )
        ),
    )
    return {(r.system, r.external_id): r.agent_id for r in (await session.execute(stmt)).scalars()}


async def email_owner(session: AsyncSession, ctx: TenantContext, email: str) -> uuid.UUID | None:
    # Over the whole pool: uniqueness does not depend on what the caller sees.
    stmt = select(col(Agent.id)).where(
        col(Agent.tenant_id) == ctx.tenant_id, func.lower(col(Agent.email)) == email.lower()
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def delete_external_ids(
    session: AsyncSession, ctx: TenantContext, rows: Sequence[AgentExternalId]
) -> None:
    for row in rows:
        await session.delete(row)
    await session.flush()


async def agent_has_history(session: AsyncSession, ctx: TenantContext, agent_id: uuid.UUID) -> bool:
    # Every shift counts, on whatever project: history does not depend on what the caller sees.
    found = await session.execute(
        text("select exists (select 1 from shifts where tenant_id = :t and agent_id = :a)"),
        {"t": ctx.tenant_id, "a": agent_id},
    )
    return bool(found.scalar())


async def delete_agent_row(session: AsyncSession, ctx: TenantContext, agent: Agent) -> None:
    await session.delete(agent)
    await session.flush()


# --- projects, as the agents domain sees them ------------------------------------


async def get_project(
    session: AsyncSession, ctx: TenantContext, project_id: uuid.UUID
) -> Project | None:
    stmt = scoped(Project, ctx).where(col(Project.id) == project_id)
    return (await session.execute(stmt)).scalar_one_or_none()


# --- certifications ----------------------------------------------------------------


async def list_certifications(
    session: AsyncSession,
    ctx: TenantContext,
    agent_id: uuid.UUID,
    *,
    project_id: uuid.UUID | None,
    active_on: Any,
    sort: str,
    descending: bool,
    cursor: str | None,
    limit: int,
) -> tuple[list[Certification], str | None]:
    stmt = scoped(Certification, ctx).where(col(Certification.agent_id) == agent_id)
    if project_id is not None:
        stmt = stmt.where(col(Certification.project_id) == project_id)
    if active_on is not None:
        stmt = stmt.where(
            col(Certification.certified_from) <= active_on,
            or_(
                col(Certification.certified_until).is_(None),
                col(Certification.certified_until) >= active_on,
            ),
        )
    sort_column = {
        "certified_from": col(Certification.certified_from),
        "created_at": col(Certification.created_at),
    }[sort]
    return await paginate(
        session,
        stmt,
        sort=sort_column,
        id_column=col(Certification.id),
        limit=limit,
        cursor=cursor,
        descending=descending,
    )


async def get_certification(
    session: AsyncSession, ctx: TenantContext, agent_id: uuid.UUID, project_id: uuid.UUID
) -> Certification | None:
    stmt = scoped(Certification, ctx).where(
        col(Certification.agent_id) == agent_id, col(Certification.project_id) == project_id
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def delete_certification_row(
    session: AsyncSession, ctx: TenantContext, certification: Certification
) -> None:
    await session.delete(certification)
    await session.flush()


async def attribute_contacts(
    session: AsyncSession, ctx: TenantContext, external_ids: Sequence[str]
) -> int:
    """Give the contacts that landed with one of these agent keys and no agent to
    the agent that now holds the key (by ingestion's rule: the key's first system
    in name order); returns how many. Served by `contacts_unmapped_agent`."""
    if not external_ids:
        return 0
    result = await session.execute(
        text(
            """
            update contacts c set agent_id = ax.agent_id
            from (
              select distinct on (e.external_id) e.external_id, e.agent_id
              from agent_external_ids e
              where e.tenant_id = :t and e.external_id = any(:keys)
              order by e.external_id, e.system
            ) ax
            where c.tenant_id = :t and c.agent_id is null and c.agent_key is not null
              and c.agent_key = ax.external_id
            """
        ),
        {"t": ctx.tenant_id, "keys": sorted(set(external_ids))},
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
