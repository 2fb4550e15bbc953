"""Factories for the operations domains, through the API (the real path)."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from httpx import AsyncClient

from service.core.config import Settings
from tests.factories import TenantSeed, bearer, make_tenant

API = "/api/v1"


async def create_client(client: AsyncClient, token: str, **fields: Any) -> dict[str, Any]:
    body = {"name": f"Client {secrets.token_hex(4)}", **fields}
    response = await client.post(f"{API}/clients", json=body, headers=bearer(token))
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def create_project(
    client: AsyncClient, token: str, client_id: str | uuid.UUID, **fields: Any
) -> dict[str, Any]:
    body = {"client_id": str(client_id), "name": f"Project {secrets.token_hex(4)}", **fields}
    response = await client.post(f"{API}/projects", json=body, headers=bearer(token))
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


@dataclass
class World:
    """A tenant with two clients, a project each, and an admin token."""

    seed: TenantSeed
    client_a: dict[str, Any]
    client_b: dict[str, Any]
    project_a: dict[str, Any]
    project_b: dict[str, Any]

    @property
    def token(self) -> str:
        return self.seed.admin_token


async def make_world(client: AsyncClient, settings: Settings) -> World:
    seed = await make_tenant(client, settings)
    a = await create_client(client, seed.admin_token)
    b = await create_client(client, seed.admin_token)
    pa = await create_project(client, seed.admin_token, a["id"], channels=["voice", "chat"])
    pb = await create_project(client, seed.admin_token, b["id"])
    return World(seed, a, b, pa, pb)
