"""Routes of the shifts domain: shifts, schedule imports (JSON and CSV) and
schedule views of projects and agents (JSON and CSV)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from starlette.datastructures import UploadFile

from service.core.concurrency import set_etag
from service.core.config import Settings
from service.core.db import SessionDep
from service.core.errors import AppError, PayloadTooLarge
from service.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from service.shifts import service
from service.shifts.errors import InvalidImportFile
from service.shifts.rows import Parsed
from service.shifts.schemas import (
    Activity,
    AgentSchedule,
    Day,
    ImportMode,
    ImportReport,
    Instant,
    ProjectSchedule,
    ShiftBatch,
    ShiftCreate,
    ShiftRead,
    ShiftUpdate,
    SystemKey,
)
from tenants.context import TenantContext
from tenants.deps import require
from tenants.schemas import TimeZone

router = APIRouter(tags=["shifts"])

OpsRead = Annotated[TenantContext, Depends(require("ops:read"), scope="function")]
OpsWrite = Annotated[TenantContext, Depends(require("ops:write"), scope="function")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Order = Literal["asc", "desc"]
FromDay = Annotated[Day, Query(alias="from", description="First local day")]
ToDay = Annotated[Day | None, Query(description="Last local day (inclusive); default: from")]
IfMatch = Annotated[str | None, Header()]
Interval = Annotated[int, Query(description="Minutes per coverage interval: 15, 30 or 60")]


class UnsupportedMediaType(AppError):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _csv(text: str, filename: str) -> Response:
    return Response(
        content=text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


_IMPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {
        "description": "`import_rejected` (all_or_nothing: every problem by row; nothing written)"
    }
}


# --- shifts ---------------------------------------------------------------------------


@router.post("/shifts", status_code=status.HTTP_201_CREATED, response_model=ShiftRead)
async def create_shift(
    data: ShiftCreate, response: Response, session: SessionDep, ctx: OpsWrite
) -> ShiftRead:
    """Book an agent on a project for `[start, end)`. 409 `shift_overlaps` names
    the shift it clashes with, on whatever project; 422 `agent_not_certified`
    unless the agent is certified for the project on that day (training is
    always allowed)."""
    shift = await service.create_shift(session, ctx, data)
    set_etag(response, shift.version)
    read: ShiftRead = ShiftRead.of(shift)
    return read


@router.get("/shifts", response_model=Page[ShiftRead])
async def list_shifts(
    session: SessionDep,
    ctx: OpsRead,
    agent_id: uuid.UUID | None = None,
    project_id: uuid.UUID | None = None,
    activity: Activity | None = None,
    from_: Annotated[Instant | None, Query(alias="from", description="Overlapping from")] = None,
    to: Annotated[Instant | None, Query(description="Overlapping until")] = None,
    sort: Literal["start", "created_at", "updated_at"] = "start",
    order: Order = "asc",
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[ShiftRead]:
    """Shifts, filtered by agent, project, activity and a time window they
    overlap, sorted, one page at a time."""
    items, next_cursor = await service.list_shifts(
        session,
        ctx,
        agent_id=agent_id,
        project_id=project_id,
        activity=activity,
        start=from_,
        end=to,
        sort=sort,
        descending=order == "desc",
        cursor=cursor,
        limit=limit,
    )
    return Page(items=[ShiftRead.of(s) for s in items], next_cursor=next_cursor)


@router.post(
    "/shifts:batch",
    response_model=ImportReport,
    responses=_IMPORT_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ShiftBatch.model_json_schema()}},
        }
    },
)
async def import_shifts_json(request: Request, session: SessionDep, ctx: OpsWrite) -> ImportReport:
    """Import a schedule as JSON rows (up to 50 000). Every row is checked
    against the database and the other rows; the answer lists every problem by
    row. `all_or_nothing` (default) writes nothing if any row fails;
    `valid_rows` writes the good rows. Rows with an `external_id` are
    idempotent: the same row again changes nothing, a changed row updates.
    `dry_run: true` gives the same answer and stores nothing."""
    body = await request.body()
    batch, parsed = await asyncio.to_thread(service.parse_batch, body)
    return await service.import_shifts(
        session,
        ctx,
        parsed,
        mode=batch.mode,
        agent_system=batch.agent_system,
        dry_run=batch.dry_run,
    )


@router.post(
    "/shifts/uploads",
    response_model=ImportReport,
    responses=_IMPORT_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                },
            },
        }
    },
)
async def import_shifts_csv(
    request: Request,
    session: SessionDep,
    ctx: OpsWrite,
    mode: ImportMode = "all_or_nothing",
    agent_system: SystemKey | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Import a schedule from a CSV file (a `text/csv` body, or a multipart
    form's `file`), streamed, up to 50 000 rows. The header names the
    columns: agent (id or external id), project (id), start, end, activity,
    note, external_id (`note` and `external_id` optional). Same
    checks, report, modes and `dry_run` as `POST /shifts:batch`; row numbers count data
    rows (the header is not one), and `line` gives the file's line."""
    parsed = await _read_upload(request)
    return await service.import_shifts(
        session, ctx, parsed, mode=mode, agent_system=agent_system, dry_run=dry_run
    )


async def _read_upload(request: Request) -> Parsed:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    limit = _settings(request).api.max_batch_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        # 50 000 rows never need more; refuse before a form spools it to disk.
        raise PayloadTooLarge(f"A schedule file is at most {limit} bytes.", limit_bytes=limit)
    if content_type == "multipart/form-data":
        async with request.form(max_files=1, max_fields=5) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise InvalidImportFile("Send the CSV as the form's 'file'.", reason="missing_file")
            return await service.parse_csv_file(upload.file)
    if content_type in {"text/csv", "application/csv", "text/plain", "application/octet-stream"}:
        return await service.parse_csv_stream(request.stream(), limit)
    raise UnsupportedMediaType("Send text/csv, or multipart/form-data with a 'file'.")


@router.get("/shifts/{shift_id}", response_model=ShiftRead)
async def get_shift(
    shift_id: uuid.UUID, response: Response, session: SessionDep, ctx: OpsRead
) -> ShiftRead:
    """One shift, with its ETag."""
    shift = await service.get_shift(session, ctx, shift_id)
    set_etag(response, shift.version)
    read: ShiftRead = ShiftRead.of(shift)
    return read


@router.patch("/shifts/{shift_id}", response_model=ShiftRead)
async def update_shift(
    shift_id: uuid.UUID,
    data: ShiftUpdate,
    response: Response,
    session: SessionDep,
    ctx: OpsWrite,
    if_match: IfMatch = None,
) -> ShiftRead:
    """Move, re-assign or change a shift; send the ETag you read in `If-Match`
    (428 without it, 412 when stale). The same overlap and certification
    rules as booking apply."""
    shift = await service.update_shift(session, ctx, shift_id, data, if_match)
    set_etag(response, shift.version)
    read: ShiftRead = ShiftRead.of(shift)
    return read


@router.delete("/shifts/{shift_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_shift(
    shift_id: uuid.UUID, session: SessionDep, ctx: OpsWrite, if_match: IfMatch = None
) -> Response:
    """Cancel a shift (with `If-Match`, only if unchanged since read)."""
    await service.delete_shift(session, ctx, shift_id, if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- schedule views --------------------------------------------------------------------


@router.get("/projects/{project_id}/schedule", response_model=ProjectSchedule)
async def project_schedule(
    project_id: uuid.UUID,
    session: SessionDep,
    ctx: OpsRead,
    from_: FromDay,
    to: ToDay = None,
    interval: Interval = 15,
) -> ProjectSchedule:
    """A project's shifts for local days `from`..`to`, and its coverage per
    interval (agents on queue, and on any activity) in the project's time
    zone: intervals are 15 minutes of absolute time labelled in local time,
    so a DST day has 92 or 100 of them."""
    return await service.project_schedule(session, ctx, project_id, from_, to or from_, interval)


@router.get("/projects/{project_id}/schedule.csv", response_class=Response)
async def project_schedule_csv(
    project_id: uuid.UUID,
    session: SessionDep,
    ctx: OpsRead,
    from_: FromDay,
    to: ToDay = None,
    interval: Interval = 15,
    view: Literal["shifts", "coverage"] = "shifts",
) -> Response:
    """The project schedule as CSV (`view=shifts` or `coverage`); cells a
    spreadsheet would run as a formula are neutralized."""
    schedule = await service.project_schedule(
        session, ctx, project_id, from_, to or from_, interval
    )
    text = await service.schedule_csv(schedule, view)
    return _csv(text, f"schedule-{project_id}-{schedule.from_}-{schedule.to}-{view}.csv")


@router.get("/agents/{agent_id}/schedule", response_model=AgentSchedule)
async def agent_schedule(
    agent_id: uuid.UUID,
    session: SessionDep,
    ctx: OpsRead,
    from_: FromDay,
    to: ToDay = None,
    tz: Annotated[TimeZone | None, Query(description="Default: the tenant's")] = None,
) -> AgentSchedule:
    """An agent's shifts across projects for local days `from`..`to`, with
    minutes per day and activity."""
    return await service.agent_schedule(session, ctx, agent_id, from_, to or from_, tz)


@router.get("/agents/{agent_id}/schedule.csv", response_class=Response)
async def agent_schedule_csv(
    agent_id: uuid.UUID,
    session: SessionDep,
    ctx: OpsRead,
    from_: FromDay,
    to: ToDay = None,
    tz: Annotated[TimeZone | None, Query()] = None,
) -> Response:
    """The agent schedule as CSV, cells neutralized against formula injection."""
    schedule = await service.agent_schedule(session, ctx, agent_id, from_, to or from_, tz)
    text = await service.schedule_csv(schedule)
    return _csv(text, f"schedule-{agent_id}-{schedule.from_}-{schedule.to}.csv")
