"""Routes of contact ingestion."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response

from service.contacts import service
from service.contacts.schemas import BATCH, ReceiptRead, inline_schema
from service.core.db import Database, SessionDep
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
    body = await request.body()
    db: Database = request.app.state.db

    async def handle() -> tuple[int, object]:
        receipt = await service.ingest_json_batch(session, ctx, body)
        return 200, receipt.as_dict()

    return await run_idempotent(
        db,
        session,
        ctx.db_scope(),
        ctx.actor_id,
        idempotency_key,
        b"POST /contacts:batch\n" + body,
        handle,
    )


__all__ = ["router"]
