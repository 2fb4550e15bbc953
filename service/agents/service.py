"""Rules of the agent pool and certifications. Functions flush, never commit.

Deleting an agent: an agent without history (no shift ever, no contact) is
deleted with its telephony ids and certifications; an agent with history is
never deleted — the answer is 409 `agent_has_history`, and the way out is
`PATCH {"status": "inactive"}`, which keeps every figure that names the agent
reproducible."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from service.agents import repository as repo
from service.agents.errors import (
    AgentEmailTaken,
    AgentHasHistory,
    CertificationExists,
    ExternalIdTaken,
    InvalidCertificationDates,
    UnknownProject,
)
from service.agents.models import Agent, AgentExternalId, Certification
from service.agents.schemas import (
    AgentCreate,
    AgentRead,
    AgentUpdate,
    CertificationCreate,
    CertificationUpdate,
)
from service.core.concurrency import check_if_match
from service.core.db import violation_of
from service.core.errors import NotFound
from service.core.time import utcnow
from tenants.context import TenantContext, ensure_visible

_UNIQUE_VIOLATION = "23505"
_FOREIGN_KEY_VIOLATION = "23503"
_DEADLOCK_DETECTED = "40P01"


def agent_read(agent: Agent, external_ids: dict[str, str]) -> AgentRead:
    read = AgentRead.model_validate(agent)
    read.external_ids = dict(sorted(external_ids.items()))
    return read


async def _check_email(
    session: AsyncSession, ctx: TenantContext, email: str | None, agent_id: uuid.UUID | None
) -> None:
    if email is None:
        return
    owner = await repo.email_owner(session, ctx, email)
    if owner is not None and owner != agent_id:
        raise AgentEmailTaken("Another agent of this tenant has this e-mail.", field="email")


async def _check_external_ids(
    session: AsyncSession,
    ctx: TenantContext,
    external_ids: dict[str, str],
    agent_id: uuid.UUID | None,
) -> None:
    owners = await repo.external_id_owners(session, ctx, list(external_ids.items()))
    for (system, external_id), owner in sorted(owners.items()):
        if owner != agent_id:
            raise ExternalIdTaken(
                f"The {system} id {external_id!r} belongs to another agent.",
                field=f"external_ids.{system}",
                agent_id=str(owner),
            )


@asynccontextmanager
async def _guarded(session: AsyncSession) -> AsyncIterator[None]:
    """Make the changes of the block and flush them in a savepoint, so a
    concurrent writer that took the same e-mail or telephony id between our
    check and our write gets the same 409 instead of a 500. (Changes go
    inside the block: opening a savepoint flushes what is pending.)"""
    try:
        async with session.begin_nested():
            yield
            await session.flush()
    except DBAPIError as exc:
        violation = violation_of(exc)
        sqlstate, constraint = violation.sqlstate, violation.constraint
        if sqlstate == _DEADLOCK_DETECTED:
            # Two writers taking the same ids in opposite orders: one loses.
            raise ExternalIdTaken(
                "Another agent took one of these ids at the same moment; retry.",
                field="external_ids",
            ) from exc
        if sqlstate == _UNIQUE_VIOLATION and constraint and "email" in constraint:
            raise AgentEmailTaken(
                "Another agent of this tenant has this e-mail.", field="email"
            ) from exc
        if sqlstate == _UNIQUE_VIOLATION:
            raise ExternalIdTaken(
                "A telephony id belongs to another agent.", field="external_ids"
            ) from exc
        raise


async def create_agent(session: AsyncSession, ctx: TenantContext, data: AgentCreate) -> AgentRead:
    email = str(data.email).lower() if data.email else None
    await _check_email(session, ctx, email, None)
    await _check_external_ids(session, ctx, data.external_ids, None)
    agent = Agent(
        tenant_id=ctx.tenant_id,
        name=data.name,
        email=email,
        status=data.status,
        hire_date=data.hire_date,
        skills=data.skills,
        languages=data.languages,
        weekly_hours=data.weekly_hours,
    )
    async with _guarded(session):
        session.add(agent)
        session.add_all(
            AgentExternalId(
                tenant_id=ctx.tenant_id, agent_id=agent.id, system=system, external_id=external_id
            )
            for system, external_id in data.external_ids.items()
        )
    await repo.attribute_contacts(session, ctx, list(data.external_ids.values()))
    return agent_read(agent, data.external_ids)


async def get_agent(session: AsyncSession, ctx: TenantContext, agent_id: uuid.UUID) -> Agent:
    return ensure_visible(await repo.get_agent(session, ctx, agent_id), "agent")


async def read_agent(session: AsyncSession, ctx: TenantContext, agent_id: uuid.UUID) -> AgentRead:
    agent = await get_agent(session, ctx, agent_id)
    ids = await repo.external_ids_of(session, ctx, [agent.id])
    return agent_read(agent, ids[agent.id])


async def list_agents(
    session: AsyncSession, ctx: TenantContext, **filters: Any
) -> tuple[list[AgentRead], str | None]:
    agents, cursor = await repo.list_agents(session, ctx, **filters)
    ids = await repo.external_ids_of(session, ctx, [a.id for a in agents])
    return [agent_read(a, ids[a.id]) for a in agents], cursor


async def update_agent(
    session: AsyncSession,
    ctx: TenantContext,
    agent_id: uuid.UUID,
    data: AgentUpdate,
    if_match: str | None,
) -> AgentRead:
    agent = ensure_visible(await repo.get_agent(session, ctx, agent_id, for_update=True), "agent")
    check_if_match(if_match, agent.version)
    changes = data.model_dump(exclude_unset=True)
    email = agent.email
    if "email" in changes:
        email = str(changes["email"]).lower() if changes["email"] else None
        await _check_email(session, ctx, email, agent.id)
    external_ids: dict[str, str] | None = changes.get("external_ids")
    current: list[AgentExternalId] = []
    if external_ids is not None:
        await _check_external_ids(session, ctx, external_ids, agent.id)
        current = await repo.external_id_rows(session, ctx, agent.id)
    async with _guarded(session):
        agent.email = email
        for key in ("name", "status", "skills", "languages"):
            if changes.get(key) is not None:
                setattr(agent, key, changes[key])
        for key in ("hire_date", "weekly_hours"):
            if key in changes:
                setattr(agent, key, changes[key])
        if external_ids is not None:
            wanted = set(external_ids.items())
            # Deletes first: a changed id keeps its (agent, system) key.
            await repo.delete_external_ids(
                session, ctx, [r for r in current if (r.system, r.external_id) not in wanted]
            )
            kept = {(r.system, r.external_id) for r in current}
            session.add_all(
                AgentExternalId(
                    tenant_id=ctx.tenant_id,
                    agent_id=agent.id,
                    system=system,
                    external_id=external_id,
                )
                for system, external_id in sorted(wanted - kept)
            )
        agent.version += 1
        agent.updated_at = utcnow()
    if external_ids is not None:
        # Contacts that landed with a key nobody held are this agent's now.
        added = set(external_ids.values()) - {r.external_id for r in current}
        await repo.attribute_contacts(session, ctx, sorted(added))
    ids = await repo.external_ids_of(session, ctx, [agent.id])
    return agent_read(agent, ids[agent.id])


async def delete_agent(session: AsyncSession, ctx: TenantContext, agent_id: uuid.UUID) -> None:
    agent = ensure_visible(await repo.get_agent(session, ctx, agent_id, for_update=True), "agent")
    history = AgentHasHistory(
        "This agent has shifts or contacts and is kept; set its status to 'inactive' instead.",
        agent_id=str(agent_id),
    )
    if await repo.agent_has_history(session, ctx, agent.id):
        raise history
    try:
        async with session.begin_nested():
            await repo.delete_agent_row(session, ctx, agent)
    except IntegrityError as exc:
        # History in a table this check does not know yet (contacts): the key refuses.
        if violation_of(exc).sqlstate == _FOREIGN_KEY_VIOLATION:
            raise history from exc
        raise


# --- certifications -------------------------------------------------------------


def _check_dates(certified_from: date, certified_until: date | None) -> None:
    if certified_until is not None and certified_until < certified_from:
        raise InvalidCertificationDates(
            "certified_until is before certified_from.", field="certified_until"
        )


async def create_certification(
    session: AsyncSession, ctx: TenantContext, agent_id: uuid.UUID, data: CertificationCreate
) -> Certification:
    agent = await get_agent(session, ctx, agent_id)
    project = await repo.get_project(session, ctx, data.project_id)
    if project is None:
        raise UnknownProject("No such project.", field="project_id")
    _check_dates(data.certified_from, data.certified_until)
    if await repo.get_certification(session, ctx, agent.id, project.id) is not None:
        raise CertificationExists(
            "The agent is already certified for this project; update that certification.",
            field="project_id",
        )
    certification = Certification(
        tenant_id=ctx.tenant_id,
        agent_id=agent.id,
        project_id=project.id,
        client_id=project.client_id,
        certified_from=data.certified_from,
        certified_until=data.certified_until,
        note=data.note,
    )
    try:
        async with session.begin_nested():
            session.add(certification)
            await session.flush()
    except IntegrityError as exc:
        sqlstate = violation_of(exc).sqlstate
        if sqlstate == _UNIQUE_VIOLATION:
            raise CertificationExists(
                "The agent is already certified for this project.", field="project_id"
            ) from exc
        if sqlstate == _FOREIGN_KEY_VIOLATION:
            # The agent was deleted between our read and our write (projects are never deleted).
            raise NotFound("No such agent.") from exc
        raise
    return certification


async def list_certifications(
    session: AsyncSession, ctx: TenantContext, agent_id: uuid.UUID, **filters: Any
) -> tuple[list[Certification], str | None]:
    agent = await get_agent(session, ctx, agent_id)
    return await repo.list_certifications(session, ctx, agent.id, **filters)


async def _certification(
    session: AsyncSession, ctx: TenantContext, agent_id: uuid.UUID, project_id: uuid.UUID
) -> Certification:
    agent = await get_agent(session, ctx, agent_id)
    return ensure_visible(
        await repo.get_certification(session, ctx, agent.id, project_id), "certification"
    )


async def update_certification(
    session: AsyncSession,
    ctx: TenantContext,
    agent_id: uuid.UUID,
    project_id: uuid.UUID,
    data: CertificationUpdate,
) -> Certification:
    certification = await _certification(session, ctx, agent_id, project_id)
    changes = data.model_dump(exclude_unset=True)
    if changes.get("certified_from") is not None:
        certification.certified_from = changes["certified_from"]
    if "certified_until" in changes:
        certification.certified_until = changes["certified_until"]
    if "note" in changes:
        certification.note = changes["note"]
    _check_dates(certification.certified_from, certification.certified_until)
    certification.updated_at = utcnow()
    await session.flush()
    return certification


async def delete_certification(
    session: AsyncSession, ctx: TenantContext, agent_id: uuid.UUID, project_id: uuid.UUID
) -> None:
    """Shifts already booked stay: they were valid when booked. New shifts
    on the project need a certification again (unless training)."""
    certification = await _certification(session, ctx, agent_id, project_id)
    await repo.delete_certification_row(session, ctx, certification)
