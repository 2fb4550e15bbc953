"""Routes of the contracts domain: versioned SLA terms per project."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Response, status

from service.contracts import service
from service.contracts.schemas import (
    ContractCreate,
    ContractRead,
    ContractUpdate,
    ContractVersionCreate,
)
from service.core.concurrency import set_etag
from service.core.db import SessionDep
from service.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from tenants.context import TenantContext
from tenants.deps import require

router = APIRouter(tags=["contracts"])

OpsRead = Annotated[TenantContext, Depends(require("ops:read"), scope="function")]
OpsWrite = Annotated[TenantContext, Depends(require("ops:write"), scope="function")]
IfMatch = Annotated[str | None, Header()]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
ContractSort = Literal["effective_from", "-effective_from", "created_at", "-created_at"]


@router.post("/contracts", status_code=status.HTTP_201_CREATED, response_model=ContractRead)
async def create_contract(
    data: ContractCreate, response: Response, ctx: OpsWrite, session: SessionDep
) -> ContractRead:
    """Create a contract version for a project: SLA targets (service-level presets SL1-SL4 or
    a full formula), measurement period, fee and service credits. Dates overlapping another
    version of the project are 409 `contract_overlaps`, naming it."""
    contract = await service.create_contract(session, ctx, data)
    set_etag(response, contract.version)
    return ContractRead.of(contract)


@router.get("/contracts", response_model=Page[ContractRead])
async def list_contracts(
    ctx: OpsRead,
    session: SessionDep,
    project_id: uuid.UUID | None = None,
    client_id: uuid.UUID | None = None,
    at: Annotated[date | None, Query(description="Only versions in force on this day")] = None,
    sort: ContractSort = "effective_from",
    limit: Limit = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[ContractRead]:
    """Contract versions the caller may see, by project, client or day in force."""
    rows, next_cursor = await service.list_contracts(
        session,
        ctx,
        project_id=project_id,
        client_id=client_id,
        at=at,
        sort=sort,
        limit=limit,
        cursor=cursor,
    )
    return Page(items=[ContractRead.of(r) for r in rows], next_cursor=next_cursor)


@router.get("/contracts/{contract_id}", response_model=ContractRead)
async def get_contract(
    contract_id: uuid.UUID, response: Response, ctx: OpsRead, session: SessionDep
) -> ContractRead:
    """One contract version, with its ETag."""
    contract = await service.get_contract(session, ctx, contract_id)
    set_etag(response, contract.version)
    return ContractRead.of(contract)


@router.patch("/contracts/{contract_id}", response_model=ContractRead)
async def update_contract(
    contract_id: uuid.UUID,
    data: ContractUpdate,
    response: Response,
    ctx: OpsWrite,
    session: SessionDep,
    if_match: IfMatch = None,
) -> ContractRead:
    """Edit a version that has not started yet; a version in force only takes a new end date
    or reference (409 `contract_in_force` otherwise). Needs `If-Match` (412 stale, 428 missing)."""
    contract = await service.update_contract(session, ctx, contract_id, data, if_match)
    set_etag(response, contract.version)
    return ContractRead.of(contract)


@router.post(
    "/contracts/{contract_id}/versions",
    status_code=status.HTTP_201_CREATED,
    response_model=ContractRead,
)
async def create_version(
    contract_id: uuid.UUID,
    data: ContractVersionCreate,
    response: Response,
    ctx: OpsWrite,
    session: SessionDep,
    if_match: IfMatch = None,
) -> ContractRead:
    """Change a contract from a date: this version closes the day before `effective_from` and
    a new one opens with the changes (fields left out carry over), atomically. Needs
    `If-Match` with this version's ETag."""
    contract = await service.create_version(session, ctx, contract_id, data, if_match)
    set_etag(response, contract.version)
    return ContractRead.of(contract)


@router.get("/projects/{project_id}/contracts", response_model=Page[ContractRead])
async def list_project_contracts(
    project_id: uuid.UUID,
    ctx: OpsRead,
    session: SessionDep,
    sort: ContractSort = "effective_from",
    limit: Limit = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[ContractRead]:
    """Every version of the project's contract, oldest first: the history stays readable."""
    rows, next_cursor = await service.list_project_contracts(
        session, ctx, project_id, sort=sort, limit=limit, cursor=cursor
    )
    return Page(items=[ContractRead.of(r) for r in rows], next_cursor=next_cursor)


@router.get("/projects/{project_id}/contracts/current", response_model=ContractRead)
async def current_contract(
    project_id: uuid.UUID,
    response: Response,
    ctx: OpsRead,
    session: SessionDep,
    at: Annotated[date | None, Query(description="Default: today in the project's zone")] = None,
) -> ContractRead:
    """The version in force on a day (404 `no_contract_in_force` when none is)."""
    contract = await service.current_contract(session, ctx, project_id, at)
    set_etag(response, contract.version)
    return ContractRead.of(contract)
