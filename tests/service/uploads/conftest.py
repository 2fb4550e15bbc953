"""A contact-center tenant for upload tests: the queues of the real samples mapped to
projects (`IT`, `Support`, `sales`, Wazo's `q1`, Amazon Connect's `TCC Refrig AC LLA`;
Wazo's `q2` left unmapped), a few agents
mapped (`Agent/1127` and its callback member `Local/1127@callback-agent`, `PJSIP/400`,
Connect's `agent.one`), the rest left unmapped on purpose; helpers to upload and to
read back what landed (as the admin role)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from httpx import AsyncClient, Response
from sqlalchemy import text

from service.core.config import Settings
from service.core.db import Database
from tests.conftest import SHARED_DATA
from tests.factories import TenantSeed, bearer, make_client, make_tenant
from tests.service.ingest.conftest import make_project

QUEUE_LOG = SHARED_DATA / "queue_log"
CONNECT = SHARED_DATA / "contact_records" / "amazon_connect"
UPLOADS = "/api/v1/contacts/uploads"

CONTACT_COLUMNS = (
    "external_id, queue_key, outcome, queued_at, answered_at, ended_at, abandoned_at, "
    "wait_ms, talk_ms, hold_ms, acw_ms, agent_key, customer_key, transferred, channel"
)


@dataclass
class Center:
    seed: TenantSeed
    client_id: uuid.UUID
    projects: dict[str, uuid.UUID]
    """queue key → project"""
    agent_1127: uuid.UUID
    agent_400: uuid.UUID

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.seed.admin_token)


async def add_agent(db: Database, tenant_id: uuid.UUID, ids: dict[str, str]) -> uuid.UUID:
    """One pool agent with external ids per system."""
    agent_id = uuid.uuid4()
    async with db.admin_transaction() as admin:
        await admin.execute(
            text("insert into agents (tenant_id, id, name) values (:t, :id, :n)"),
            {"t": tenant_id, "id": agent_id, "n": f"Agent {next(iter(ids.values()))}"},
        )
        for system, external in ids.items():
            await admin.execute(
                text(
                    "insert into agent_external_ids (tenant_id, agent_id, system, external_id) "
                    "values (:t, :a, :s, :e)"
                ),
                {"t": tenant_id, "a": agent_id, "s": system, "e": external},
            )
    return agent_id


async def make_center(client: AsyncClient, settings: Settings, db: Database) -> Center:
    seed = await make_tenant(client, settings)
    acme = await make_client(db, seed.id, "Acme")
    projects = {
        queue: await make_project(db, seed.id, acme.id, [queue])
        for queue in ("IT", "Support", "sales", "q1", "TCC Refrig AC LLA")
    }
    agent_1127 = await add_agent(
        db, seed.id, {"asterisk": "Agent/1127", "asterisk_member": "Local/1127@callback-agent"}
    )
    agent_400 = await add_agent(db, seed.id, {"asterisk": "PJSIP/400"})
    await add_agent(db, seed.id, {"connect": "agent.one"})
    return Center(seed, acme.id, projects, agent_1127, agent_400)


async def upload(
    client: AsyncClient,
    center: Center,
    body: bytes | AsyncIterator[bytes],
    fmt: str,
    **params: Any,
) -> Response:
    query = {"format": fmt, **params}
    if isinstance(query.get("mapping"), dict):
        query["mapping"] = json.dumps(query["mapping"])
    return await client.post(
        UPLOADS,
        params=query,
        content=body,
        headers={**center.headers, "content-type": "application/octet-stream"},
        timeout=600,
    )


def read(path: Path) -> bytes:
    return path.read_bytes()


async def contact_rows(db: Database, tenant_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    """What landed, by external id (the facts, not ids or provenance)."""
    async with db.admin_transaction() as admin:
        rows = (
            await admin.execute(
                text(f"select {CONTACT_COLUMNS} from contacts where tenant_id = :t"),
                {"t": tenant_id},
            )
        ).mappings()
        out = {r["external_id"]: dict(r) for r in rows}
    return out


async def scalar(db: Database, sql: str, **params: Any) -> Any:
    async with db.admin_transaction() as admin:
        return (await admin.execute(text(sql), params)).scalar_one()
