"""Factories of the operations tests: a tenant with two clients and a project
each (queue keys q1-…, q2-…), an agent of the pool, and plain inserts of
shifts and agent-state events (as the admin role); contacts go through the
real ingestion."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from httpx import AsyncClient
from sqlalchemy import text

from service.contacts.ingest import Receipt, ingest_records
from service.contacts.records import ContactRecord
from service.core.config import Settings
from service.core.db import Database, DbScope
from tests.factories import TenantSeed, bearer, make_client, make_tenant
from tests.service.ingest.conftest import make_agent, make_project


@dataclass
class Floor:
    seed: TenantSeed
    client_1: uuid.UUID
    client_2: uuid.UUID
    p1: uuid.UUID
    p2: uuid.UUID
    q1: str
    q2: str
    agent: uuid.UUID
    agent_key: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.seed.admin_token)

    def client_of(self, project: uuid.UUID) -> uuid.UUID:
        return self.client_1 if project == self.p1 else self.client_2


async def make_floor(
    client: AsyncClient, settings: Settings, db: Database, time_zone: str = "UTC"
) -> Floor:
    seed = await make_tenant(client, settings)
    c1 = await make_client(db, seed.id, "Client one")
    c2 = await make_client(db, seed.id, "Client two")
    q1, q2 = f"q1-{secrets.token_hex(3)}", f"q2-{secrets.token_hex(3)}"
    p1 = await make_project(db, seed.id, c1.id, [q1], time_zone)
    p2 = await make_project(db, seed.id, c2.id, [q2], time_zone)
    key = f"Agent/{secrets.token_hex(3)}"
    agent = await make_agent(db, seed.id, "asterisk", key)
    return Floor(seed, c1.id, c2.id, p1, p2, q1, q2, agent, key)


async def admin_sql(db: Database, sql: str, params: dict[str, Any]) -> None:
    async with db.admin_transaction() as admin:
        await admin.execute(text(sql), params)


async def add_shift(
    db: Database,
    floor: Floor,
    project: uuid.UUID,
    start: datetime,
    end: datetime,
    activity: str = "on_queue",
    agent: uuid.UUID | None = None,
) -> uuid.UUID:
    shift_id = uuid.uuid4()
    await admin_sql(
        db,
        "insert into shifts (tenant_id, id, agent_id, project_id, client_id, starts_at, ends_at,"
        " activity) values (:t, :id, :a, :p, :c, :s, :e, :act)",
        {
            "t": floor.seed.id,
            "id": shift_id,
            "a": agent or floor.agent,
            "p": project,
            "c": floor.client_of(project),
            "s": start,
            "e": end,
            "act": activity,
        },
    )
    return shift_id


async def add_event(
    db: Database,
    floor: Floor,
    at: datetime,
    state: str,
    *,
    reason: str | None = None,
    project: uuid.UUID | None = None,
    queue_key: str | None = None,
    agent: uuid.UUID | None = None,
) -> uuid.UUID:
    event_id = uuid.uuid4()
    await admin_sql(
        db,
        "insert into agent_state_events (tenant_id, id, agent_id, at, state, reason, queue_key,"
        " project_id, source) values (:t, :id, :a, :at, :st, :r, :q, :p, 'test')",
        {
            "t": floor.seed.id,
            "id": event_id,
            "a": agent or floor.agent,
            "at": at,
            "st": state,
            "r": reason,
            "q": queue_key,
            "p": project,
        },
    )
    return event_id


async def certify(db: Database, floor: Floor, project: uuid.UUID) -> None:
    await admin_sql(
        db,
        "insert into agent_certifications (tenant_id, id, agent_id, project_id, client_id,"
        " certified_from) values (:t, :id, :a, :p, :c, '2020-01-01')",
        {
            "t": floor.seed.id,
            "id": uuid.uuid4(),
            "a": floor.agent,
            "p": project,
            "c": floor.client_of(project),
        },
    )


async def ingest(db: Database, floor: Floor, records: list[ContactRecord]) -> Receipt:
    async with db.transaction(DbScope(tenant_id=floor.seed.id)) as session:
        return await ingest_records(session, floor.seed.id, list(enumerate(records, start=1)))


async def contact_ids(db: Database, floor: Floor) -> dict[str, uuid.UUID]:
    """external_id → contact id."""
    async with db.admin_transaction() as admin:
        rows = await admin.execute(
            text("select external_id, id from contacts where tenant_id = :t"), {"t": floor.seed.id}
        )
        return {r.external_id: r.id for r in rows}
