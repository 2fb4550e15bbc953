"""Routes of contact ingestion."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from starlette.requests import ClientDisconnect

from service.contacts import service
from service.contacts.schemas import (
    AGENT_STATE_BATCH,
    BATCH,
    AgentStateReceiptRead,
    ReceiptRead,
    UploadRead,
    inline_schema,
)
from service.contacts.uploads import UploadFormat, UploadIncomplete, upload_spec
from service.core.db import SessionDep
from service.core.errors import require_json
from service.core.idempotency import run_idempotent
from tenants.context import TenantContext
from tenants.deps import require

router = APIRouter(tags=["contacts"])

ContactsWriter = Annotated[TenantContext, Depends(require("contacts:write"), scope="function")]


@router.post(
    "/contacts:batch",
    response_model=ReceiptRead,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline_schema(BATCH)}},
        }
    },
)
async def ingest_contact_batch(
    request: Request,
    ctx: ContactsWriter,
    session: SessionDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    """Ingest up to 10 000 contact records. Idempotent per record (project + external_id: a re-sent
    record is a duplicate, a newer version a correction, an older one changes nothing) and per request
    with `Idempotency-Key` (24 h: a replay returns the first answer). The receipt names every rejected
    row (from 1) with its field and reason; valid rows land."""
    require_json(request.headers.get("content-type"))
    body = await request.body()

    async def handle() -> tuple[int, object]:
        receipt = await service.ingest_json_batch(session, ctx, body)
        return 200, receipt.as_dict()

    return await run_idempotent(
        session,
        ctx.db_scope(),
        ctx.actor_id,
        idempotency_key,
        b"POST /contacts:batch\n" + body,
        handle,
    )


# ---- agent states and uploads --------------------------------------------------------


@router.post(
    "/agent-states:batch",
    response_model=AgentStateReceiptRead,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline_schema(AGENT_STATE_BATCH)}},
        }
    },
)
async def ingest_agent_state_batch(
    request: Request,
    ctx: ContactsWriter,
    session: SessionDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    """Ingest up to 10 000 agent-state events (`agent_key`, `state` — logged_out, available,
    on_contact, acw, not_ready —, `reason`, `queue_key`, `at` with an offset). Idempotent per
    event (agent, time, state, queue: a re-sent event is a duplicate) and per request with
    `Idempotency-Key` (24 h). Events of agents no pool agent is mapped to are reported as
    `unmapped` per key, not stored, and do not fail the batch; invalid rows are named (from 1)
    with their field while the valid ones land."""
    require_json(request.headers.get("content-type"))
    body = await request.body()

    async def handle() -> tuple[int, object]:
        receipt = await service.ingest_agent_state_batch(session, ctx, body)
        return 200, receipt.as_dict()

    return await run_idempotent(
        session,
        ctx.db_scope(),
        ctx.actor_id,
        idempotency_key,
        b"POST /agent-states:batch\n" + body,
        handle,
    )


async def _body(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect:
        raise UploadIncomplete("The client went away during the upload.") from None


@router.post(
    "/contacts/uploads",
    response_model=UploadRead,
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The file itself, as the raw body (any Content-Type).",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "text/csv": {"schema": {"type": "string"}},
                "text/plain": {"schema": {"type": "string"}},
            },
        }
    },
)
async def upload_contacts(
    request: Request,
    ctx: ContactsWriter,
    session: SessionDep,
    format_: Annotated[
        UploadFormat,
        Query(
            alias="format",
            description="csv (with `mapping`), queue_log (the flat Asterisk file), "
            "queue_log_extended_csv, queue_log_mysql and queue_log_psql (table exports, with "
            "`time_zone`), amazon_connect (contact trace records).",
        ),
    ],
    source: Annotated[
        str | None,
        Query(
            description="The source's name (a PBX, an export): required for queue_log formats, "
            "whose next file of the same source continues where this one ends."
        ),
    ] = None,
    mapping: Annotated[
        str | None,
        Query(
            description="CSV only: the column mapping as JSON (`columns`, `timestamp_format`, …)."
        ),
    ] = None,
    time_zone: Annotated[
        str | None,
        Query(description="queue_log_mysql/_psql only: the IANA zone of the table's times."),
    ] = None,
    filename: Annotated[
        str | None, Query(description="Named in each record's provenance (`raw_ref`).")
    ] = None,
) -> dict[str, object]:
    """Import a contact file sent as the raw request body, streamed to disk (never held in
    memory), parsed in batches and ingested in this request's transaction: all of it or, on
    an error, none. Idempotent: the same file again, or a rotated log overlapping the last
    one, changes nothing (duplicates). A queue_log's calls still waiting at the end are kept
    per source and completed by the next file; meanwhile they count as "in queue". Answers
    the merged receipt, the parser's count of every line (used, ignored, unknown by event
    name; malformed) and each problem with its line or record and field. 422 for a file that
    cannot be read as a whole (invalid JSON, a CSV header without a mapped column) or an
    invalid option; 409 while another import of the same source runs."""
    spec = upload_spec(
        format_, file_name=filename, source=source, mapping=mapping, time_zone=time_zone
    )
    result = await service.upload_contacts(session, ctx, spec, _body(request))
    return result.as_dict()


__all__ = ["router"]
