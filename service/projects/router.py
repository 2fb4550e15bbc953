"""Routes of the projects domain: a client's queues and campaigns, and which
projects a supervisor is assigned to."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Response, status

from service.core.concurrency import set_etag
from service.core.db import SessionDep
from service.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from service.projects import service
from service.projects.schemas import (
    Channel,
    ProjectCreate,
    ProjectRead,
    ProjectStatus,
    ProjectUpdate,
    UserProjectsRead,
    UserProjectsUpdate,
)
from tenants.context import TenantContext
from tenants.deps import require
from tenants.schemas import NoNul

router = APIRouter(tags=["projects"])

OpsRead = Annotated[TenantContext, Depends(require("ops:read"), scope="function")]
OpsWrite = Annotated[TenantContext, Depends(require("ops:write"), scope="function")]
UsersAdmin = Annotated[TenantContext, Depends(require("users:admin"), scope="function")]
ProjectSort = Literal["name", "-name", "created_at", "-created_at"]


@router.post("/projects", status_code=status.HTTP_201_CREATED, response_model=ProjectRead)
async def create_project(
    data: ProjectCreate, response: Response, ctx: OpsWrite, session: SessionDep
) -> ProjectRead:
    """Create a project (queue or campaign) of a client: channels, time zone (default: the
    client's), business hours, holidays and the raw queue keys that feed it."""
    project = await service.create_project(session, ctx, data)
    set_etag(response, project.version)
    return ProjectRead.model_validate(project)


@router.get("/projects", response_model=Page[ProjectRead])
async def list_projects(
    ctx: OpsRead,
    session: SessionDep,
    client_id: uuid.UUID | None = None,
    status: ProjectStatus | None = None,
    channel: Channel | None = None,
    q: Annotated[
        Annotated[str, NoNul] | None, Query(max_length=200, description="Name contains")
    ] = None,
    sort: ProjectSort = "name",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[ProjectRead]:
    """Projects the caller may see (client viewers: their client's; supervisors: their
    assigned ones), filtered by client, status and channel."""
    rows, next_cursor = await service.list_projects(
        session,
        ctx,
        client_id=client_id,
        status=status,
        channel=channel,
        q=q,
        sort=sort,
        limit=limit,
        cursor=cursor,
    )
    return Page(items=[ProjectRead.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get("/projects/{project_id}", response_model=ProjectRead)
async def get_project(
    project_id: uuid.UUID, response: Response, ctx: OpsRead, session: SessionDep
) -> ProjectRead:
    """One project, with its ETag for a later update."""
    project = await service.get_project(session, ctx, project_id)
    set_etag(response, project.version)
    return ProjectRead.model_validate(project)


@router.patch("/projects/{project_id}", response_model=ProjectRead)
async def update_project(
    project_id: uuid.UUID,
    data: ProjectUpdate,
    response: Response,
    ctx: OpsWrite,
    session: SessionDep,
    if_match: Annotated[str | None, Header()] = None,
) -> ProjectRead:
    """Change a project. Needs `If-Match` with the ETag read (412 when stale, 428 when missing)."""
    project = await service.update_project(session, ctx, project_id, data, if_match)
    set_etag(response, project.version)
    return ProjectRead.model_validate(project)


@router.get("/users/{user_id}/projects", response_model=UserProjectsRead)
async def get_user_projects(
    user_id: uuid.UUID, ctx: UsersAdmin, session: SessionDep
) -> UserProjectsRead:
    """The projects a user (a supervisor) is assigned to; a supervisor sees only these."""
    ids = await service.get_user_projects(session, ctx, user_id)
    return UserProjectsRead(user_id=user_id, project_ids=ids)


@router.put("/users/{user_id}/projects", response_model=UserProjectsRead)
async def set_user_projects(
    user_id: uuid.UUID, data: UserProjectsUpdate, ctx: UsersAdmin, session: SessionDep
) -> UserProjectsRead:
    """Replace a user's project assignments (the whole set)."""
    ids = await service.set_user_projects(session, ctx, user_id, data.project_ids)
    return UserProjectsRead(user_id=user_id, project_ids=ids)
