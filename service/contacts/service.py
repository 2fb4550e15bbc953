"""Contact ingestion rules: turn API bodies and files into records, then ingest."""

from __future__ import annotations

import uuid

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from service.contacts import schemas
from service.contacts.errors import BatchInvalid, BatchTooLarge
from service.contacts.ingest import Receipt, RowProblem, ingest_records
from service.contacts.records import ContactRecord
from tenants.context import TenantContext


def parse_json_batch(
    body: bytes,
) -> tuple[list[tuple[int, ContactRecord, uuid.UUID | None]], list[RowProblem], int]:
    """Validate a batch body in one pass; fall back to row by row only for the rows that failed."""
    try:
        rows = schemas.BATCH.validate_json(body)["records"]
        bad: dict[int, list[RowProblem]] = {}
    except ValidationError:
        try:
            raw = schemas.RAW_BATCH.validate_json(body)
        except ValidationError as exc:
            raise BatchInvalid('Send {"records": [ … ]} as JSON.', field="records") from exc
        if set(raw) != {"records"}:
            raise BatchInvalid(
                'The body has one field, "records".',
                field=next(iter(set(raw) - {"records"}), "records"),
            ) from None
        rows_raw = raw["records"]
        if len(rows_raw) > schemas.MAX_BATCH:
            raise BatchTooLarge(
                f"At most {schemas.MAX_BATCH} records per batch.",
                field="records",
                limit=schemas.MAX_BATCH,
            ) from None
        rows = []
        bad = {}
        for i, item in enumerate(rows_raw, start=1):
            try:
                rows.append(schemas.ROW.validate_python(item))
            except ValidationError as exc:
                bad[i] = [
                    RowProblem(i, schemas.error_field(e["loc"]), e["msg"]) for e in exc.errors()
                ]
                rows.append(None)  # type: ignore[arg-type]
    out: list[tuple[int, ContactRecord, uuid.UUID | None]] = []
    problems = [p for ps in bad.values() for p in ps]
    for i, row in enumerate(rows, start=1):
        if row is None:
            continue
        try:
            record, project = schemas.to_record(row)
        except ValueError as exc:
            field, _, reason = str(exc).partition(": ")
            problems.append(RowProblem(i, field if reason else "record", reason or str(exc)))
            continue
        out.append((i, record, project))
    return out, problems, len(rows)


async def ingest_json_batch(session: AsyncSession, ctx: TenantContext, body: bytes) -> Receipt:
    rows, problems, received = parse_json_batch(body)
    receipt = await ingest_records(session, ctx.tenant_id, rows, projects=ctx.project_ids)
    receipt.received = received
    receipt.rejected = sorted(problems + receipt.rejected, key=lambda p: p.row)
    return receipt
