"""Plain async factories for the agents and shifts tests: projects are
inserted with the admin engine, so these tests do not depend on the
projects routes."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from httpx import AsyncClient

from service.core.config import Settings
from service.core.db import Database
from service.projects.models import Project
from tests.factories import TenantSeed, bearer, make_client, make_tenant


async def make_project(
    db: Database,
    tenant_id: uuid.UUID,
    client_id: uuid.UUID,
    *,
    time_zone: str = "UTC",
    name: str | None = None,
) -> Project:
    async with db.admin_transaction() as admin:
        project = Project(
            tenant_id=tenant_id,
            client_id=client_id,
            name=name or f"Project {secrets.token_hex(3)}",
            time_zone=time_zone,
        )
        admin.add(project)
    return project


async def make_agent(
    client: AsyncClient, token: str, name: str | None = None, **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/agents",
        json={"name": name or f"Agent {secrets.token_hex(3)}", **fields},
        headers=bearer(token),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def certify(
    client: AsyncClient,
    token: str,
    agent_id: str,
    project_id: uuid.UUID | str,
    certified_from: date | str = "2020-01-01",
    **fields: Any,
) -> dict[str, Any]:
    response = await client.post(
        f"/api/v1/agents/{agent_id}/certifications",
        json={"project_id": str(project_id), "certified_from": str(certified_from), **fields},
        headers=bearer(token),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@dataclass
class Floor:
    """A tenant with two clients, a project each, and its admin's token."""

    seed: TenantSeed
    client_a: uuid.UUID
    client_b: uuid.UUID
    project_a: Project
    project_b: Project

    @property
    def token(self) -> str:
        return self.seed.admin_token

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.seed.admin_token)


async def make_floor(
    client: AsyncClient,
    settings: Settings,
    db: Database,
    *,
    time_zone_a: str = "UTC",
    time_zone_b: str = "UTC",
) -> Floor:
    seed = await make_tenant(client, settings)
    client_a = await make_client(db, seed.id)
    client_b = await make_client(db, seed.id)
    project_a = await make_project(db, seed.id, client_a.id, time_zone=time_zone_a)
    project_b = await make_project(db, seed.id, client_b.id, time_zone=time_zone_b)
    return Floor(seed, client_a.id, client_b.id, project_a, project_b)


async def seed_pool(
    db: Database,
    tenant_id: uuid.UUID,
    count: int,
    projects: list[Project],
    *,
    system: str = "asterisk",
    prefix: str = "Agent/",
    certified_from: date = date(2020, 1, 1),
) -> list[tuple[uuid.UUID, str]]:
    """`count` active agents with an external id each, certified for `projects`,
    inserted as the admin role in one transaction: (agent id, external id)."""
    from sqlalchemy import insert

    from service.agents.models import Agent, AgentExternalId, Certification
    from service.core.time import new_id

    agents = [(new_id(), f"{prefix}{i + 1000}") for i in range(count)]
    async with db.admin_transaction() as admin:
        await admin.execute(
            insert(Agent),
            [{"tenant_id": tenant_id, "id": a, "name": f"Pool agent {x}"} for a, x in agents],
        )
        await admin.execute(
            insert(AgentExternalId),
            [
                {"tenant_id": tenant_id, "agent_id": a, "system": system, "external_id": x}
                for a, x in agents
            ],
        )
        if projects:
            await admin.execute(
                insert(Certification),
                [
                    {
                        "tenant_id": tenant_id,
                        "id": new_id(),
                        "agent_id": a,
                        "project_id": p.id,
                        "client_id": p.client_id,
                        "certified_from": certified_from,
                    }
                    for a, _ in agents
                    for p in projects
                ],
            )
    return agents
