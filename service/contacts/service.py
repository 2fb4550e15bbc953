"""Contact ingestion rules: turn API bodies and files into records, then ingest."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterable, Callable
from typing import Any

import msgspec
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.contacts import schemas
from service.contacts.agent_states import AgentStateReceipt, ingest_agent_states
from service.contacts.errors import BatchInvalid, BatchTooLarge
from service.contacts.ingest import Receipt, RowProblem, ingest_records
from service.contacts.records import AgentStateEvent, ContactRecord
from service.contacts.uploads import UploadImport, UploadResult, UploadSpec, discard, spool
from tenants.context import TenantContext

# A time with more than 6 decimals: msgspec rounds it to the microsecond, pydantic
# truncates; such a body goes to pydantic so that a contact has one value whichever
# path read it (a different value would make a re-sent record a correction).
_SUB_MICROSECOND = re.compile(rb":\d\d\.\d{7}")


def _parse_fast(
    body: bytes,
) -> tuple[list[tuple[int, ContactRecord, uuid.UUID | None]], list[RowProblem], int] | None:
    """The msgspec pass (see schemas.py); None when it refuses anything."""
    if _SUB_MICROSECOND.search(body):
        return None
    # msgspec has no check for NUL (JSON can only carry it escaped): pydantic names the row.
    if b"\\u0000" in body:
        return None
    try:
        rows = schemas.FAST_BATCH.decode(body).records
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
        # UnicodeDecodeError: a body that is not UTF-8; pydantic refuses it as invalid JSON.
        return None
    problems: list[RowProblem] = []
    return _records(rows, schemas.fast_to_record, problems), problems, len(rows)


def _records(
    rows: list[Any],
    to_record: Callable[[Any], tuple[ContactRecord, uuid.UUID | None]],
    problems: list[RowProblem],
) -> list[tuple[int, ContactRecord, uuid.UUID | None]]:
    """Numbered records of the rows that convert (a None row was refused already);
    each row that does not is added to `problems` with its field and reason."""
    out: list[tuple[int, ContactRecord, uuid.UUID | None]] = []
    for i, row in enumerate(rows, start=1):
        if row is None:
            continue
        try:
            record, project = to_record(row)
        except ValueError as exc:
            field, _, reason = str(exc).partition(": ")
            problems.append(RowProblem(i, field if reason else "record", reason or str(exc)))
            continue
        out.append((i, record, project))
    return out


def _first_error(exc: ValidationError) -> str:
    """What was wrong with a body that is no JSON object of lists: invalid JSON (with its
    line and column: a truncated body, invalid UTF-8, a lone surrogate), or another shape."""
    errors = exc.errors(include_url=False, include_input=False)
    return errors[0]["msg"] if errors else "invalid"


class _Pairs(list[tuple[str, Any]]):
    """An object's members in order, duplicates kept (`object_pairs_hook`)."""


def _refuse_repeated_key(body: bytes, key: str) -> None:
    """A body with the list's key twice: both JSON readers keep the last list, so every
    record of the first would vanish without a word; refused instead. Checked only when
    the key's text occurs twice (a record may also contain it), so the cost is a count."""
    if body.count(b'"' + key.encode() + b'"') < 2:
        return
    try:
        top = json.loads(body, object_pairs_hook=_Pairs)
    except (ValueError, RecursionError):
        return  # not JSON: the readers refuse it and say why
    if isinstance(top, _Pairs) and [k for k, _ in top].count(key) > 1:
        raise BatchInvalid(f'The body has "{key}" more than once; send one list.', field=key)


def parse_json_batch(
    body: bytes,
) -> tuple[list[tuple[int, ContactRecord, uuid.UUID | None]], list[RowProblem], int]:
    """Validate a batch body in one pass; fall back to row by row only for the rows that failed."""
    _refuse_repeated_key(body, "records")
    fast = _parse_fast(body)
    return fast if fast is not None else parse_json_batch_exactly(body)


def parse_json_batch_exactly(
    body: bytes,
) -> tuple[list[tuple[int, ContactRecord, uuid.UUID | None]], list[RowProblem], int]:
    """The pydantic pass: the contract itself, every bad row and field named."""
    try:
        rows = schemas.BATCH.validate_json(body)["records"]
        bad: dict[int, list[RowProblem]] = {}
    except ValidationError:
        try:
            raw = schemas.RAW_BATCH.validate_json(body)
        except ValidationError as exc:
            raise BatchInvalid(
                f'Send {{"records": [ … ]}} as JSON ({_first_error(exc)}).', field="records"
            ) from exc
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
    problems = [p for ps in bad.values() for p in ps]
    return _records(rows, schemas.to_record, problems), problems, len(rows)


async def ingest_json_batch(session: AsyncSession, ctx: TenantContext, body: bytes) -> Receipt:
    rows, problems, received = parse_json_batch(body)
    receipt = await ingest_records(session, ctx.tenant_id, rows, projects=ctx.project_ids)
    receipt.received = received
    receipt.rejected = sorted(problems + receipt.rejected, key=lambda p: p.row)
    return receipt


# ---- agent states and uploads --------------------------------------------------------


def parse_agent_state_batch(
    body: bytes,
) -> tuple[list[tuple[int, AgentStateEvent]], list[RowProblem], int]:
    """Validate an agent-state batch in one pass; row by row only for the rows that failed."""
    _refuse_repeated_key(body, "events")
    try:
        rows: list[schemas.AgentStateIn | None] = list(
            schemas.AGENT_STATE_BATCH.validate_json(body)["events"]
        )
        problems: list[RowProblem] = []
    except ValidationError:
        try:
            raw = schemas.RAW_BATCH.validate_json(body)
        except ValidationError as exc:
            raise BatchInvalid(
                f'Send {{"events": [ … ]}} as JSON ({_first_error(exc)}).', field="events"
            ) from exc
        if set(raw) != {"events"}:
            raise BatchInvalid(
                'The body has one field, "events".',
                field=next(iter(set(raw) - {"events"}), "events"),
            ) from None
        if len(raw["events"]) > schemas.MAX_BATCH:
            raise BatchTooLarge(
                f"At most {schemas.MAX_BATCH} events per batch.",
                field="events",
                limit=schemas.MAX_BATCH,
            ) from None
        rows, problems = [], []
        for i, item in enumerate(raw["events"], start=1):
            try:
                rows.append(schemas.AGENT_STATE_ROW.validate_python(item))
            except ValidationError as exc:
                problems.extend(
                    RowProblem(i, schemas.error_field(e["loc"]), e["msg"]) for e in exc.errors()
                )
                rows.append(None)
    out: list[tuple[int, AgentStateEvent]] = []
    for i, row in enumerate(rows, start=1):
        if row is None:
            continue
        try:
            event = AgentStateEvent(
                source="api",
                agent_key=row["agent_key"],
                state=row["state"],
                at=row["at"],
                raw_ref="api",
                reason=row.get("reason"),
                queue_key=row.get("queue_key"),
            )
        except ValueError as exc:  # e.g. a time that leaves the years 1-9999 in UTC
            field, _, reason = str(exc).partition(": ")
            problems.append(RowProblem(i, field if reason else "record", reason or str(exc)))
            continue
        out.append((i, event))
    problems.sort(key=lambda p: p.row)
    return out, problems, len(rows)


async def ingest_agent_state_batch(
    session: AsyncSession, ctx: TenantContext, body: bytes
) -> AgentStateReceipt:
    rows, problems, received = parse_agent_state_batch(body)
    receipt = await ingest_agent_states(session, ctx.tenant_id, rows, projects=ctx.project_ids)
    receipt.received = received
    receipt.rejected = sorted(problems + receipt.rejected, key=lambda p: p.row)
    return receipt


async def upload_contacts(
    session: AsyncSession,
    ctx: TenantContext,
    spec: UploadSpec,
    body: AsyncIterable[bytes],
) -> UploadResult:
    """Import one uploaded file in the request's transaction: lock the source (409 while
    another import of it runs), spool the body to disk, parse and ingest batch by batch."""
    job = UploadImport(ctx.tenant_id, spec, projects=ctx.project_ids)
    await job.start(session)

    async def keepalive() -> None:
        await session.execute(text("select 1"))

    path, size = await spool(body, keepalive=keepalive)
    try:
        job.open(path, size)
        while await job.step(session):
            pass
        return await job.finish(session)
    finally:
        await job.close()
        await discard(path)
