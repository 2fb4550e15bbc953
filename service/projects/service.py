"""Rules of the projects domain: plain async functions that flush, never commit."""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service.clients import repository as clients_repository
from service.core.concurrency import check_if_match
from service.core.db import Violation, insert_guarded, update_from, write_guarded
from service.core.time import utcnow
from service.projects import repository
from service.projects.errors import (
    ClientInactive,
    NotAssignable,
    ProjectNameTaken,
    ProjectScoped,
    QueueKeyTaken,
    UnknownClient,
    UnknownProject,
)
from service.projects.models import Project
from service.projects.schemas import (
    ProjectCreate,
    ProjectUpdate,
    business_hours_json,
    holidays_json,
)
from tenants.context import TenantContext, ensure_visible

UNIQUE_KEYS = ("projects_name_key", "project_queue_keys_pkey")
FOREIGN_KEY_VIOLATION = "23503"
_KEY_DETAIL = re.compile(r"^Key \(tenant_id, queue_key\)=\([^,]+, (?P<key>.*)\) already exists")


def _queue_key_problem(
    keys: list[str], taken: dict[str, uuid.UUID], ctx: TenantContext
) -> QueueKeyTaken:
    index, key = next((i, k) for i, k in enumerate(keys) if k in taken)
    extra: dict[str, Any] = {"field": f"queue_keys.{index}", "queue_key": key}
    if ctx.project_ids is None:
        extra["project_id"] = str(taken[key])
    return QueueKeyTaken(f"Queue key '{key}' already maps to another project.", **extra)


def _raise_for(violation: Violation, keys: list[str], name: str) -> None:
    """Turn a constraint the database refused (a concurrent writer won) into a 409."""
    if violation.constraint == "projects_name_key":
        raise ProjectNameTaken(f"The client has a project named '{name}'.", field="name")
    match = _KEY_DETAIL.match(violation.detail or "")
    key = match.group("key") if match else None
    field = f"queue_keys.{keys.index(key)}" if key in keys else "queue_keys"
    raise QueueKeyTaken("A queue key already maps to another project.", field=field, queue_key=key)


async def create_project(session: AsyncSession, ctx: TenantContext, data: ProjectCreate) -> Project:
    if ctx.project_ids is not None:
        # A project-scoped supervisor would create a project they then cannot see.
        raise ProjectScoped("Only users who see every project can create one.")
    client = await clients_repository.get_client(session, ctx, data.client_id)
    if client is None:
        raise UnknownClient("No such client.", field="client_id")
    if client.status != "active":
        raise ClientInactive("The client is inactive: reactivate it first.", field="client_id")
    if await repository.project_named(session, ctx, client.id, data.name) is not None:
        raise ProjectNameTaken(f"The client has a project named '{data.name}'.", field="name")
    taken = await repository.queue_keys_taken(session, ctx, data.queue_keys)
    if taken:
        raise _queue_key_problem(data.queue_keys, taken, ctx)
    project = Project(
        tenant_id=ctx.tenant_id,
        client_id=client.id,
        name=data.name,
        channels=list(data.channels),
        time_zone=data.time_zone or client.time_zone,
        business_hours=business_hours_json(data.business_hours),
        holidays=holidays_json(data.holidays),
        queue_keys=list(data.queue_keys),
        status=data.status,
    )
    violation = await insert_guarded(
        session, project, expected=(*UNIQUE_KEYS, FOREIGN_KEY_VIOLATION)
    )
    if violation is not None and violation.sqlstate == FOREIGN_KEY_VIOLATION:
        # The client was deleted between our read and our write.
        raise UnknownClient("No such client.", field="client_id")
    if violation is not None:
        _raise_for(violation, data.queue_keys, data.name)
    return project


async def get_project(session: AsyncSession, ctx: TenantContext, project_id: uuid.UUID) -> Project:
    return ensure_visible(await repository.get_project(session, ctx, project_id), "project")


async def list_projects(
    session: AsyncSession,
    ctx: TenantContext,
    *,
    client_id: uuid.UUID | None = None,
    status: str | None = None,
    channel: str | None = None,
    q: str | None = None,
    sort: str = "name",
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Project], str | None]:
    return await repository.list_projects(
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


async def update_project(
    session: AsyncSession,
    ctx: TenantContext,
    project_id: uuid.UUID,
    data: ProjectUpdate,
    if_match: str | None,
) -> Project:
    # Locked before the ETag check, so two editors holding the same ETag cannot both win.
    project = ensure_visible(
        await repository.get_project(session, ctx, project_id, for_update=True), "project"
    )
    check_if_match(if_match, project.version)
    changes = data.model_dump(exclude_unset=True)
    if not changes:
        return project
    if "business_hours" in changes:
        changes["business_hours"] = business_hours_json(data.business_hours)
    if data.holidays is not None:
        changes["holidays"] = holidays_json(data.holidays)
    name = changes.get("name", project.name)
    if "name" in changes and await repository.project_named(
        session, ctx, project.client_id, name, other_than=project.id
    ):
        raise ProjectNameTaken(f"The client has a project named '{name}'.", field="name")
    keys: list[str] = changes.get("queue_keys", project.queue_keys)
    if "queue_keys" in changes:
        taken = await repository.queue_keys_taken(session, ctx, keys, other_than=project.id)
        if taken:
            raise _queue_key_problem(keys, taken, ctx)
    changes["version"] = project.version + 1
    changes["updated_at"] = utcnow()
    violation = await write_guarded(session, update_from(project, changes), expected=UNIQUE_KEYS)
    if violation is not None:
        _raise_for(violation, keys, name)
    return project


# --- supervisor assignments ------------------------------------------------------------


async def get_user_projects(
    session: AsyncSession, ctx: TenantContext, user_id: uuid.UUID
) -> list[uuid.UUID]:
    ensure_visible(await repository.get_user(session, ctx, user_id), "user")
    return await repository.assigned_project_ids(session, ctx, user_id)


async def set_user_projects(
    session: AsyncSession, ctx: TenantContext, user_id: uuid.UUID, project_ids: list[uuid.UUID]
) -> list[uuid.UUID]:
    """Replace the user's assignments with `project_ids` (only supervisors are narrowed by them)."""
    user = ensure_visible(await repository.get_user(session, ctx, user_id, for_update=True), "user")
    if user.role == "client_viewer":
        raise NotAssignable(
            "Client viewers see their client's projects; they are not assigned.", field="user_id"
        )
    wanted = list(dict.fromkeys(project_ids))
    visible = await repository.visible_project_ids(session, ctx, wanted)
    for index, project_id in enumerate(wanted):
        if project_id not in visible:
            raise UnknownProject("No such project.", field=f"project_ids.{index}")
    current = set(await repository.assigned_project_ids(session, ctx, user_id))
    await repository.unassign(session, ctx, user_id, current - set(wanted))
    await repository.assign(session, ctx, user_id, [p for p in wanted if p not in current])
    return await repository.assigned_project_ids(session, ctx, user_id)
