"""Rules of the clients domain: plain async functions that flush, never commit."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from service.clients import repository
from service.clients.errors import ClientHasProjects, ClientInUse, ClientNameTaken
from service.clients.models import Client
from service.clients.schemas import ClientCreate, ClientUpdate
from service.core.db import insert_guarded, update_from, write_guarded
from service.core.time import utcnow
from tenants.context import TenantContext, ensure_visible

NAME_KEY = ("clients_name_key",)


async def create_client(session: AsyncSession, ctx: TenantContext, data: ClientCreate) -> Client:
    if await repository.client_named(session, ctx, data.name) is not None:
        raise ClientNameTaken(f"A client named '{data.name}' exists.", field="name")
    client = Client(
        tenant_id=ctx.tenant_id,
        name=data.name,
        legal_name=data.legal_name,
        report_emails=list(data.report_emails),
        locale=data.locale,
        time_zone=data.time_zone or await repository.tenant_time_zone(session, ctx),
        email_domains=list(data.email_domains),
    )
    if await insert_guarded(session, client, expected=NAME_KEY) is not None:
        # Only the name is unique; a concurrent create took it between check and insert.
        raise ClientNameTaken(f"A client named '{data.name}' exists.", field="name")
    return client


async def get_client(session: AsyncSession, ctx: TenantContext, client_id: uuid.UUID) -> Client:
    return ensure_visible(await repository.get_client(session, ctx, client_id), "client")


async def list_clients(
    session: AsyncSession,
    ctx: TenantContext,
    *,
    status: str | None = None,
    q: str | None = None,
    sort: str = "name",
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Client], str | None]:
    return await repository.list_clients(
        session, ctx, status=status, q=q, sort=sort, limit=limit, cursor=cursor
    )


async def update_client(
    session: AsyncSession, ctx: TenantContext, client_id: uuid.UUID, data: ClientUpdate
) -> Client:
    client = ensure_visible(
        await repository.get_client(session, ctx, client_id, for_update=True), "client"
    )
    changes = data.model_dump(exclude_unset=True)
    if not changes:
        return client
    name = changes.get("name")
    if name is not None and await repository.client_named(session, ctx, name, other_than=client.id):
        raise ClientNameTaken(f"A client named '{name}' exists.", field="name")
    changes["updated_at"] = utcnow()
    if await write_guarded(session, update_from(client, changes), expected=NAME_KEY):
        raise ClientNameTaken(f"A client named '{name}' exists.", field="name")
    return client


async def delete_client(session: AsyncSession, ctx: TenantContext, client_id: uuid.UUID) -> None:
    """Only a client without projects can go; otherwise deactivate it (status)."""
    client = ensure_visible(
        await repository.get_client(session, ctx, client_id, for_update=True), "client"
    )
    projects = await repository.count_projects(session, ctx, client.id)
    if projects:
        raise ClientHasProjects(
            f"The client has {projects} project(s): deactivate it instead (status: inactive).",
            projects=projects,
        )
    if await repository.delete_client(session, client) is not None:
        raise ClientInUse(
            "Users, invitations, identity providers or projects still name this client: "
            "deactivate it instead (status: inactive)."
        )
