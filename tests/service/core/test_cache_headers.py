"""An answer for a caller is never kept by a shared cache or the browser."""

from __future__ import annotations

from httpx import AsyncClient

from service.core.config import Settings
from service.core.db import Database
from tests.factories import bearer, make_tenant
from tests.service.ingest.conftest import make_site


async def test_answers_to_a_caller_are_private_and_not_stored(
    client: AsyncClient, settings: Settings
) -> None:
    seed = await make_tenant(client, settings)
    me = await client.get("/api/v1/me", headers=bearer(seed.admin_token))
    assert me.status_code == 200, me.text
    assert me.headers["cache-control"] == "private, no-store"
    # An error for a caller too (it may name what the caller asked for).
    missing = await client.get(
        "/api/v1/clients/00000000-0000-0000-0000-000000000000", headers=bearer(seed.admin_token)
    )
    assert missing.status_code == 404
    assert missing.headers["cache-control"] == "private, no-store"
    # Public answers are left to their routes.
    health = await client.get("/healthz")
    assert "cache-control" not in health.headers


async def test_a_kpi_answer_keeps_its_own_revalidation_rule(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    url = f"/api/v1/projects/{site.project_id}/kpis"
    params = {"from": "2026-05-04", "to": "2026-05-05"}
    for _ in range(2):  # computed, then served from the answer cache
        answer = await client.get(url, params=params, headers=bearer(site.seed.admin_token))
        assert answer.status_code == 200, answer.text
        assert answer.headers["cache-control"] == "private, no-cache"
        assert answer.headers["etag"]
