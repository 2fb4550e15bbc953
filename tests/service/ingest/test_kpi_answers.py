"""KPI answers are computed once and served until the tenant's data changes:
same bytes and ETag while nothing changed, 304 on If-None-Match, fresh figures
right after a write through this process, through another process (the
notification) and after a contract or a role change; the walls still hold
for a request that would hit another caller's cached answer."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import asyncpg
from fastapi import FastAPI
from httpx import AsyncClient, Response

from service.core.changes import TenantCache
from service.core.config import Settings
from service.core.db import Database
from tests.factories import (
    bearer,
    make_client,
    new_signing_key,
    platform_headers,
    user_token,
    withdraw_signing_key,
)
from tests.service.ingest.conftest import Site, add_contract, make_project, make_site
from tests.service.ingest.test_kpi_api import NY_MORNING, contact, push


async def get(client: AsyncClient, site: Site, token: str | None = None, **kw: Any) -> Response:
    headers = bearer(token or site.seed.admin_token) | kw.pop("headers", {})
    return await client.get(
        f"/api/v1/projects/{site.project_id}/kpis",
        params={"from": "2026-03-02", "to": "2026-03-03", **kw},
        headers=headers,
    )


def answers(app: FastAPI) -> TenantCache[Any]:
    cache: TenantCache[Any] = app.state.kpi_answers
    return cache


async def seeded(client: AsyncClient, settings: Settings, db: Database) -> Site:
    site = await make_site(client, settings, db, time_zone="America/New_York")
    await push(
        client,
        site,
        [
            contact(site, 1, "answered", 10, NY_MORNING),
            contact(site, 2, "abandoned", 40, NY_MORNING + timedelta(minutes=5)),
        ],
    )
    return site


async def test_the_second_read_is_the_same_bytes_from_the_cache(
    app: FastAPI, client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await seeded(client, settings, db)
    first = await get(client, site)
    hits = answers(app).hits
    second = await get(client, site)
    assert first.status_code == second.status_code == 200
    assert second.content == first.content
    assert answers(app).hits == hits + 1
    etag = first.headers["etag"]
    assert etag.startswith('"')
    assert second.headers["etag"] == etag
    assert first.headers["content-type"] == "application/json"
    assert first.json()["total"]["offered"]["value"] == 2

    unchanged = await get(client, site, headers={"If-None-Match": etag})
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["etag"] == etag
    other = await get(client, site, headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200

    # Another variant is another answer.
    sl3 = await get(client, site, sl="SL3")
    assert sl3.json()["terms"]["expression"] != first.json()["terms"]["expression"]


async def test_an_ingest_through_the_api_is_seen_by_the_next_read(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await seeded(client, settings, db)
    before = await get(client, site)
    await push(client, site, [contact(site, 3, "answered", 5, NY_MORNING + timedelta(hours=1))])
    after = await get(client, site, headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 200
    assert after.json()["total"]["offered"]["value"] == 3
    assert after.headers["etag"] != before.headers["etag"]


async def test_a_write_by_another_process_reaches_the_cache(
    app: FastAPI, client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await seeded(client, settings, db)
    assert (await get(client, site)).json()["total"]["offered"]["value"] == 2
    received = app.state.changes.received
    # Another process: its own connection, as the application role, under the tenant's scope.
    other = await asyncpg.connect(settings.database.app_dsn())
    try:
        async with other.transaction():
            await other.execute("select set_config('app.tenant_id', $1, true)", str(site.seed.id))
            updated = await other.execute(
                "update projects set time_zone = 'Asia/Tehran' where tenant_id = $1 and id = $2",
                site.seed.id,
                site.project_id,
            )
            assert updated == "UPDATE 1"
    finally:
        await other.close()
    for _ in range(500):
        if app.state.changes.received > received:
            break
        await asyncio.sleep(0.01)
    assert app.state.changes.received > received
    assert (await get(client, site)).json()["time_zone"] == "Asia/Tehran"


async def test_a_new_contract_changes_the_formula_at_once(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await seeded(client, settings, db)
    assert (await get(client, site)).json()["terms"]["source"] == "default"
    await add_contract(
        client,
        site,
        {
            "effective_from": "2026-01-01",
            "targets": [
                {"kpi": "service_level", "formula": "SL3", "threshold_s": 30, "target": 0.8}
            ],
        },
    )
    body = (await get(client, site)).json()
    assert body["terms"]["source"] == "contract"
    assert body["terms"]["expression"] == "A_T / A"


async def test_a_cached_answer_never_crosses_a_wall(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await seeded(client, settings, db)
    assert (await get(client, site)).status_code == 200  # cached for the tenant admin
    globex = await make_client(db, site.seed.id, "Globex")
    await make_project(db, site.seed.id, globex.id, ["q-globex"])
    _, outsider = await user_token(client, db, site.seed, "client_viewer", client_id=globex.id)
    _, insider = await user_token(client, db, site.seed, "client_viewer", client_id=site.client_id)
    assert (await get(client, site, outsider)).status_code == 404
    inside = await get(client, site, insider)
    assert inside.status_code == 200
    assert inside.json()["total"]["offered"]["value"] == 2
    stranger = await make_site(client, settings, db)
    assert (await get(client, site, stranger.seed.admin_token)).status_code == 404


async def test_a_disabled_caller_is_refused_at_once_after_a_cached_read(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await seeded(client, settings, db)
    analyst, token = await user_token(client, db, site.seed, "analyst")
    assert (await get(client, site, token)).status_code == 200
    assert (await get(client, site, token)).status_code == 200  # caller and answer cached
    disabled = await client.patch(
        f"/api/v1/users/{analyst.id}",
        json={"status": "disabled"},
        headers=bearer(site.seed.admin_token),
    )
    assert disabled.status_code == 200, disabled.text
    refused = await get(client, site, token)
    assert refused.status_code == 401
    assert refused.json()["code"] == "account_disabled"


async def test_callers_the_answer_was_not_made_for_go_through_the_route(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """An API token (never served before routing), a token without the permission
    and a suspended tenant: each gets what the route decides, not the cached bytes."""
    site = await seeded(client, settings, db)
    first = await get(client, site)
    assert (await get(client, site)).content == first.content  # cached for the admin
    reader = await client.post(
        "/api/v1/api-tokens",
        json={"name": "bi", "scopes": ["ops:read"]},
        headers=bearer(site.seed.admin_token),
    )
    writer = await client.post(
        "/api/v1/api-tokens",
        json={"name": "pbx", "scopes": ["contacts:write"]},
        headers=bearer(site.seed.admin_token),
    )
    assert reader.status_code == writer.status_code == 201, reader.text
    read = await get(client, site, reader.json()["token"])
    assert read.status_code == 200
    assert read.json()["total"] == first.json()["total"]
    refused = await get(client, site, writer.json()["token"])
    assert refused.status_code == 403
    suspended = await client.post(
        f"/api/v1/platform/tenants/{site.seed.id}/suspend", headers=platform_headers(settings)
    )
    assert suspended.status_code == 200, suspended.text
    gone = await get(client, site)
    assert gone.status_code == 401
    assert gone.json()["code"] == "tenant_suspended"


async def test_a_withdrawn_signing_key_ends_cached_reads_at_once(
    app: FastAPI, client: AsyncClient, settings: Settings, db: Database
) -> None:
    kid = await new_signing_key(db, settings, app.state.keys)
    site = await seeded(client, settings, db)  # its admin logs in with the new key
    for _ in range(2):
        assert (await get(client, site)).status_code == 200
    await withdraw_signing_key(db, settings, app.state.keys, kid)
    refused = await get(client, site)
    assert refused.status_code == 401
    assert refused.json()["code"] == "invalid_token"
