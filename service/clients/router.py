"""Routes of the clients domain: a BPO's customers (the employers)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response, status

from service.clients import service
from service.clients.schemas import ClientCreate, ClientRead, ClientStatus, ClientUpdate
from service.core.db import SessionDep
from service.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from tenants.context import TenantContext
from tenants.deps import require
from tenants.schemas import NoNul

router = APIRouter(tags=["clients"])

OpsRead = Annotated[TenantContext, Depends(require("ops:read"), scope="function")]
OpsWrite = Annotated[TenantContext, Depends(require("ops:write"), scope="function")]
ClientSort = Literal["name", "-name", "created_at", "-created_at"]


@router.post("/clients", status_code=status.HTTP_201_CREATED, response_model=ClientRead)
async def create_client(data: ClientCreate, ctx: OpsWrite, session: SessionDep) -> ClientRead:
    """Create a client (an employer). Names are unique per tenant, ignoring case."""
    return ClientRead.model_validate(await service.create_client(session, ctx, data))


@router.get("/clients", response_model=Page[ClientRead])
async def list_clients(
    ctx: OpsRead,
    session: SessionDep,
    status: ClientStatus | None = None,
    q: Annotated[
        Annotated[str, NoNul] | None, Query(max_length=200, description="Name contains")
    ] = None,
    sort: ClientSort = "name",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[ClientRead]:
    """Clients the caller may see (a client viewer: their own), filtered and sorted."""
    rows, next_cursor = await service.list_clients(
        session, ctx, status=status, q=q, sort=sort, limit=limit, cursor=cursor
    )
    return Page(items=[ClientRead.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get("/clients/{client_id}", response_model=ClientRead)
async def get_client(client_id: uuid.UUID, ctx: OpsRead, session: SessionDep) -> ClientRead:
    """One client."""
    return ClientRead.model_validate(await service.get_client(session, ctx, client_id))


@router.patch("/clients/{client_id}", response_model=ClientRead)
async def update_client(
    client_id: uuid.UUID, data: ClientUpdate, ctx: OpsWrite, session: SessionDep
) -> ClientRead:
    """Change a client; `status: inactive` deactivates it (its history stays)."""
    return ClientRead.model_validate(await service.update_client(session, ctx, client_id, data))


@router.delete("/clients/{client_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_client(client_id: uuid.UUID, ctx: OpsWrite, session: SessionDep) -> Response:
    """Delete a client that has no projects and no users; otherwise 409: deactivate it instead."""
    await service.delete_client(session, ctx, client_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
