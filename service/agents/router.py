"""Routes of the agents domain: the tenant's agent pool and certifications."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Response, status

from service.agents import service
from service.agents.schemas import (
    AgentCreate,
    AgentRead,
    AgentStatus,
    AgentUpdate,
    CertificationCreate,
    CertificationRead,
    CertificationUpdate,
)
from service.core.concurrency import set_etag
from service.core.db import SessionDep
from service.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from tenants.context import TenantContext
from tenants.deps import require
from tenants.schemas import NoNul

router = APIRouter(tags=["agents"])

OpsRead = Annotated[TenantContext, Depends(require("ops:read"), scope="function")]
OpsWrite = Annotated[TenantContext, Depends(require("ops:write"), scope="function")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Order = Literal["asc", "desc"]


@router.post(
    "/agents", status_code=status.HTTP_201_CREATED, response_model=AgentRead, tags=["agents"]
)
async def create_agent(
    data: AgentCreate, response: Response, session: SessionDep, ctx: OpsWrite
) -> AgentRead:
    """Add an agent to the tenant's pool, with its ids in each telephony system
    (unique per tenant and system: 409 `external_id_taken`)."""
    agent = await service.create_agent(session, ctx, data)
    set_etag(response, agent.version)
    return agent


@router.get("/agents", response_model=Page[AgentRead])
async def list_agents(
    session: SessionDep,
    ctx: OpsRead,
    status_: Annotated[AgentStatus | None, Query(alias="status")] = None,
    q: Annotated[
        Annotated[str, NoNul] | None, Query(max_length=200, description="Name or e-mail contains")
    ] = None,
    skill: Annotated[Annotated[str, NoNul] | None, Query(max_length=60)] = None,
    language: Annotated[Annotated[str, NoNul] | None, Query(max_length=35)] = None,
    project_id: Annotated[
        uuid.UUID | None, Query(description="Only agents certified for this project")
    ] = None,
    sort: Literal["name", "created_at"] = "name",
    order: Order = "asc",
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[AgentRead]:
    """The agent pool, filtered and sorted, one page at a time. A client viewer
    sees the agents certified for its client's projects."""
    items, next_cursor = await service.list_agents(
        session,
        ctx,
        status=status_,
        q=q,
        skill=skill,
        language=language,
        project_id=project_id,
        sort=sort,
        descending=order == "desc",
        cursor=cursor,
        limit=limit,
    )
    return Page(items=items, next_cursor=next_cursor)


@router.get("/agents/{agent_id}", response_model=AgentRead)
async def get_agent(
    agent_id: uuid.UUID, response: Response, session: SessionDep, ctx: OpsRead
) -> AgentRead:
    """One agent, with its ETag."""
    agent = await service.read_agent(session, ctx, agent_id)
    set_etag(response, agent.version)
    return agent


@router.patch("/agents/{agent_id}", response_model=AgentRead)
async def update_agent(
    agent_id: uuid.UUID,
    data: AgentUpdate,
    response: Response,
    session: SessionDep,
    ctx: OpsWrite,
    if_match: Annotated[str | None, Header()] = None,
) -> AgentRead:
    """Change an agent (send the ETag you read in `If-Match`). `external_ids`,
    when given, replaces the whole map. Deactivate with `{"status": "inactive"}`."""
    agent = await service.update_agent(session, ctx, agent_id, data, if_match)
    set_etag(response, agent.version)
    return agent


@router.delete("/agents/{agent_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_agent(agent_id: uuid.UUID, session: SessionDep, ctx: OpsWrite) -> Response:
    """Delete an agent that has no history. An agent with shifts or contacts is
    kept: 409 `agent_has_history` (deactivate it with PATCH instead)."""
    await service.delete_agent(session, ctx, agent_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- certifications ----------------------------------------------------------------


@router.get("/agents/{agent_id}/certifications", response_model=Page[CertificationRead])
async def list_certifications(
    agent_id: uuid.UUID,
    session: SessionDep,
    ctx: OpsRead,
    project_id: uuid.UUID | None = None,
    active_on: Annotated[date | None, Query(description="Only those valid on this day")] = None,
    sort: Literal["certified_from", "created_at"] = "certified_from",
    order: Order = "asc",
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[CertificationRead]:
    """The projects an agent is trained for, and from when."""
    items, next_cursor = await service.list_certifications(
        session,
        ctx,
        agent_id,
        project_id=project_id,
        active_on=active_on,
        sort=sort,
        descending=order == "desc",
        cursor=cursor,
        limit=limit,
    )
    return Page(items=[CertificationRead.model_validate(c) for c in items], next_cursor=next_cursor)


@router.post(
    "/agents/{agent_id}/certifications",
    status_code=status.HTTP_201_CREATED,
    response_model=CertificationRead,
)
async def create_certification(
    agent_id: uuid.UUID, data: CertificationCreate, session: SessionDep, ctx: OpsWrite
) -> CertificationRead:
    """Certify an agent for a project from a date (one certification per agent
    and project: 409 `certification_exists`)."""
    return CertificationRead.model_validate(
        await service.create_certification(session, ctx, agent_id, data)
    )


@router.patch("/agents/{agent_id}/certifications/{project_id}", response_model=CertificationRead)
async def update_certification(
    agent_id: uuid.UUID,
    project_id: uuid.UUID,
    data: CertificationUpdate,
    session: SessionDep,
    ctx: OpsWrite,
) -> CertificationRead:
    """Change a certification's dates or note (end it with `certified_until`)."""
    return CertificationRead.model_validate(
        await service.update_certification(session, ctx, agent_id, project_id, data)
    )


@router.delete(
    "/agents/{agent_id}/certifications/{project_id}", status_code=status.HTTP_204_NO_CONTENT
)
async def delete_certification(
    agent_id: uuid.UUID, project_id: uuid.UUID, session: SessionDep, ctx: OpsWrite
) -> Response:
    """Remove a certification. Shifts already booked stay."""
    await service.delete_certification(session, ctx, agent_id, project_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
