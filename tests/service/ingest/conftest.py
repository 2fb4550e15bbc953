"""Factories for ingestion tests: a tenant with a client, a project mapped to
queue keys, and agents with telephony ids — inserted as the admin role."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from httpx import AsyncClient
from sqlalchemy import text

from service.core.config import Settings
from service.core.db import Database, DbScope
from tests.factories import TenantSeed, bearer, make_client, make_tenant


@dataclass
class Site:
    seed: TenantSeed
    client_id: uuid.UUID
    project_id: uuid.UUID
    queue: str
    agent_id: uuid.UUID
    agent_key: str


async def make_project(
    db: Database,
    tenant_id: uuid.UUID,
    client_id: uuid.UUID,
    queue_keys: list[str],
    time_zone: str = "UTC",
) -> uuid.UUID:
    project_id = uuid.uuid4()
    async with db.admin_transaction() as admin:
        await admin.execute(
            text(
                "insert into projects (tenant_id, id, client_id, name, time_zone, queue_keys) "
                "values (:t, :id, :c, :n, :tz, :q)"
            ),
            {
                "t": tenant_id,
                "id": project_id,
                "c": client_id,
                "n": f"P {secrets.token_hex(3)}",
                "tz": time_zone,
                "q": queue_keys,
            },
        )
    return project_id


async def make_agent(
    db: Database, tenant_id: uuid.UUID, system: str, external_id: str
) -> uuid.UUID:
    agent_id = uuid.uuid4()
    async with db.admin_transaction() as admin:
        await admin.execute(
            text("insert into agents (tenant_id, id, name) values (:t, :id, :n)"),
            {"t": tenant_id, "id": agent_id, "n": f"Agent {external_id}"},
        )
        await admin.execute(
            text(
                "insert into agent_external_ids (tenant_id, agent_id, system, external_id) values (:t, :a, :s, :e)"
            ),
            {"t": tenant_id, "a": agent_id, "s": system, "e": external_id},
        )
    return agent_id


async def make_site(
    client: AsyncClient, settings: Settings, db: Database, time_zone: str = "UTC"
) -> Site:
    seed = await make_tenant(client, settings)
    acme = await make_client(db, seed.id, "Acme")
    queue = f"q-{secrets.token_hex(3)}"
    project_id = await make_project(db, seed.id, acme.id, [queue], time_zone)
    agent_id = await make_agent(db, seed.id, "asterisk", "Agent/1001")
    return Site(seed, acme.id, project_id, queue, agent_id, "Agent/1001")


def scope(site: Site) -> DbScope:
    return DbScope(tenant_id=site.seed.id)


async def add_contract(client: AsyncClient, site: Site, fields: dict[str, Any]) -> dict[str, Any]:
    """A contract version for the site's project, through the API (201 asserted)."""
    created = await client.post(
        "/api/v1/contracts",
        json={"project_id": str(site.project_id), **fields},
        headers=bearer(site.seed.admin_token),
    )
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body
