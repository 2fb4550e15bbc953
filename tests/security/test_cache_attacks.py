"""Adversarial checks of the per-process caches of the KPI read path (the caller
cache, the verified-token cache and the answer cache served before routing):
no answer crosses a tenant, a client or a supervisor's projects, no stale
authorization is honoured, and a committed change is seen by the next read."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
from fastapi import FastAPI
from httpx import AsyncClient, Response

from service.core.config import Settings
from service.core.db import Database
from tests.factories import bearer, kill_change_listeners, make_client, user_token
from tests.service.ingest.conftest import make_project
from tests.service.ingest.test_kpi_answers import answers, seeded
from tests.service.ingest.test_kpi_api import NY_MORNING, contact, push

DAY = {"from": "2026-03-02", "to": "2026-03-03"}


async def kpis(client: AsyncClient, path: str, token: str, **kw: Any) -> Response:
    headers = bearer(token) | kw.pop("headers", {})
    params = kw.pop("params", None)
    return await client.get(path, params=DAY | kw if params is None else params, headers=headers)


async def twice(client: AsyncClient, path: str, token: str, **kw: Any) -> Response:
    """The second read: served before routing when the first was kept."""
    first = await kpis(client, path, token, **kw)
    assert first.status_code == 200, first.text
    return await kpis(client, path, token, **kw)


async def until(condition: Any, within_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def offered(response: Response) -> int:
    assert response.status_code == 200, response.text
    value: int = response.json()["total"]["offered"]["value"]
    return value


async def test_a_supervisor_unassigned_from_a_project_stops_seeing_it_at_once(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await seeded(client, settings, db)  # 2 contacts in site's project
    other = await make_project(db, site.seed.id, site.client_id, ["q-other"])
    supervisor, token = await user_token(client, db, site.seed, "supervisor")
    assign = f"/api/v1/users/{supervisor.id}/projects"
    admin = bearer(site.seed.admin_token)
    put = await client.put(
        assign, json={"project_ids": [str(site.project_id), str(other)]}, headers=admin
    )
    assert put.status_code == 200, put.text
    assert offered(await twice(client, "/api/v1/tenant/kpis", token)) == 2
    put = await client.put(assign, json={"project_ids": [str(other)]}, headers=admin)
    assert put.status_code == 200, put.text
    assert offered(await kpis(client, "/api/v1/tenant/kpis", token)) == 0
    project = await kpis(client, f"/api/v1/projects/{site.project_id}/kpis", token)
    assert project.status_code == 404


async def test_a_client_viewer_moved_to_another_client_loses_the_old_one_at_once(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await seeded(client, settings, db)
    globex = await make_client(db, site.seed.id, "Globex")
    viewer, token = await user_token(
        client, db, site.seed, "client_viewer", client_id=site.client_id
    )
    path = f"/api/v1/projects/{site.project_id}/kpis"
    assert offered(await twice(client, path, token)) == 2
    async with db.admin_transaction() as admin:  # an unscoped (platform) write: '*'
        from sqlalchemy import text

        await admin.execute(
            text("update users set client_id = :c where id = :u"), {"c": globex.id, "u": viewer.id}
        )
    assert (await kpis(client, path, token)).status_code == 404
    assert offered(await kpis(client, "/api/v1/tenant/kpis", token)) == 0


async def test_path_spellings_never_reach_another_callers_answer(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """The admin warms every spelling of the path; a client viewer of another client
    asking the same spellings is answered by the route (404), never from the cache."""
    site = await seeded(client, settings, db)
    globex = await make_client(db, site.seed.id, "Globex")
    await make_project(db, site.seed.id, globex.id, ["q-globex"])
    _, outsider = await user_token(client, db, site.seed, "client_viewer", client_id=globex.id)
    pid = site.project_id
    spellings = [
        f"/api/v1/projects/{pid}/kpis",
        f"/api/v1/projects/{str(pid).upper()}/kpis",
        f"/api/v1/projects/{pid.hex}/kpis",
        f"/api/v1/projects/{{{pid}}}/kpis",
        f"/api/v1/projects/urn:uuid:{pid}/kpis",
        f"/api/v1/projects/{str(pid).replace('-', '%2D')}/kpis",
    ]
    for path in spellings:
        warm = await kpis(client, path, site.seed.admin_token)
        again = await kpis(client, path, site.seed.admin_token)
        assert warm.status_code == again.status_code
        if warm.status_code != 200:
            continue
        refused = await kpis(client, path, outsider)
        assert refused.status_code == 404, (path, refused.status_code)
    for path in (
        f"/api/v1/projects/{pid}/kpis/",
        f"/api/v1//projects/{pid}/kpis",
        f"/api/v1/projects/{pid}//kpis",
        f"/api/v1/projects/{pid}/KPIS",
        f"/API/v1/projects/{pid}/kpis",
    ):
        response = await kpis(client, path, outsider)
        assert response.status_code != 200 or offered(response) == 0, path


async def test_query_string_tricks_never_share_an_answer_wrongly(
    app: FastAPI, client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await seeded(client, settings, db)
    path = f"/api/v1/projects/{site.project_id}/kpis"
    token = site.seed.admin_token
    later = {"from": "2026-03-03", "to": "2026-03-04"}
    assert offered(await twice(client, path, token, params=DAY)) == 2
    assert offered(await twice(client, path, token, params=later)) == 0
    # Duplicated and reordered parameters: each spelling answers for what the route reads.
    for qs in (
        "from=2026-03-03&to=2026-03-04&from=2026-03-02",
        "from=2026-03-02&from=2026-03-03&to=2026-03-04",
        "to=2026-03-03&from=2026-03-02",
        "from=2026-03-02&to=2026-03-03&",
        "from=2026-03-02&to=2026-03-03&to=2026-03-04",
        "from=2026%2D03%2D02&to=2026-03-03",
    ):
        routed = [await client.get(f"{path}?{qs}", headers=bearer(token)) for _ in range(2)]
        assert routed[0].status_code == routed[1].status_code
        assert routed[0].content == routed[1].content
        if routed[0].status_code == 200:
            start = routed[0].json()["start"][:10]
            assert offered(routed[0]) == (2 if start == "2026-03-02" else 0), qs


async def test_the_memory_bound_counts_the_callers_query_string(
    app: FastAPI, client: AsyncClient, settings: Settings, db: Database
) -> None:
    """Unknown parameters are refused, but a valid query string can still be made long
    and unique (empty items of the `kpis` list are skipped), and all of it is the key:
    the bound must count the key's bytes."""
    site = await seeded(client, settings, db)
    path = f"/api/v1/projects/{site.project_id}/kpis"
    cache = answers(app)
    before = cache.size
    for i in range(5):
        padding = "," * (7000 + i)
        response = await client.get(
            path,
            params=DAY | {"kpis": f"offered{padding}"},
            headers=bearer(site.seed.admin_token),
        )
        assert response.status_code == 200, response.text
    assert cache.size - before >= 5 * (7000 + len(response.content))
    refused = await client.get(
        path, params=DAY | {"junk": "a" * 7000}, headers=bearer(site.seed.admin_token)
    )
    assert refused.status_code == 422
    assert refused.json()["field"] == "junk"


async def test_a_token_of_another_tenant_is_never_served_this_tenants_answer(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await seeded(client, settings, db)
    stranger = await seeded(client, settings, db)
    path = f"/api/v1/projects/{site.project_id}/kpis"
    assert offered(await twice(client, path, site.seed.admin_token)) == 2
    for _ in range(2):  # the stranger's caller and token are cached after the first
        assert (await kpis(client, path, stranger.seed.admin_token)).status_code == 404
    assert offered(await twice(client, "/api/v1/tenant/kpis", stranger.seed.admin_token)) == 2
    assert offered(await kpis(client, "/api/v1/tenant/kpis", site.seed.admin_token)) == 2


async def test_a_cached_answer_keeps_the_headers_of_the_routed_one(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await seeded(client, settings, db)
    path = f"/api/v1/projects/{site.project_id}/kpis"
    routed = await kpis(client, path, site.seed.admin_token)
    cached = await kpis(client, path, site.seed.admin_token)
    assert cached.content == routed.content
    for name in ("x-request-id", "etag", "cache-control", "content-type"):
        assert name in cached.headers, name
    assert cached.headers["cache-control"] == routed.headers["cache-control"]
    # HEAD is never answered from the cache with another verb's rules.
    head = await client.head(path, params=DAY, headers=bearer(site.seed.admin_token))
    assert head.status_code in {405, 200}
    assert head.content == b""
    # An unauthenticated caller with the answer's ETag learns nothing.
    bare = await client.get(path, params=DAY, headers={"If-None-Match": routed.headers["etag"]})
    assert bare.status_code == 401


async def test_the_tenants_and_clients_zone_are_seen_at_once(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await seeded(client, settings, db)
    token = site.seed.admin_token
    admin = bearer(token)
    assert (await twice(client, "/api/v1/tenant/kpis", token)).json()["time_zone"] == "UTC"
    patched = await client.patch("/api/v1/tenant", json={"time_zone": "Asia/Tokyo"}, headers=admin)
    assert patched.status_code == 200, patched.text
    assert (await kpis(client, "/api/v1/tenant/kpis", token)).json()["time_zone"] == "Asia/Tokyo"

    path = f"/api/v1/clients/{site.client_id}/kpis"
    before = (await twice(client, path, token)).json()["time_zone"]
    current = await client.get(f"/api/v1/clients/{site.client_id}", headers=admin)
    zone = "Europe/Paris" if before != "Europe/Paris" else "Europe/Rome"
    patched = await client.patch(
        f"/api/v1/clients/{site.client_id}",
        json={"time_zone": zone},
        headers=admin | {"If-Match": current.headers.get("etag", "*")},
    )
    assert patched.status_code == 200, patched.text
    assert (await kpis(client, path, token)).json()["time_zone"] == zone


async def test_a_write_while_the_listener_is_down_is_never_served_stale(
    app: FastAPI, client: AsyncClient, settings: Settings, db: Database
) -> None:
    """Kill the listening connection and commit a write from another process at
    once: whether the process has noticed the loss yet or not, the next reads
    after it listens again see the write, and none in between serves the old answer."""
    site = await seeded(client, settings, db)
    path = f"/api/v1/projects/{site.project_id}/kpis"
    token = site.seed.admin_token
    assert offered(await twice(client, path, token)) == 2
    other = await asyncpg.connect(settings.database.app_dsn())
    try:
        await kill_change_listeners(settings.database)
        async with other.transaction():
            await other.execute("select set_config('app.tenant_id', $1, true)", str(site.seed.id))
            for table in ("contacts", "kpi_daily_sums", "kpi_daily_waits"):
                await other.execute(
                    f"delete from {table} where tenant_id = $1 and project_id = $2",
                    site.seed.id,
                    site.project_id,
                )
    finally:
        await other.close()
    seen = []
    deadline = asyncio.get_running_loop().time() + 5
    while asyncio.get_running_loop().time() < deadline:
        seen.append(offered(await kpis(client, path, token)))
        if app.state.changes.live and seen[-1] == 0 and len(seen) > 3:
            break
        await asyncio.sleep(0.01)
    assert seen[-1] == 0
    assert 2 not in seen[1:], seen


async def test_an_ingest_after_a_cached_read_reaches_a_group_by_agent_answer(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await seeded(client, settings, db)
    path = f"/api/v1/projects/{site.project_id}/kpis"
    token = site.seed.admin_token
    assert offered(await twice(client, path, token, group_by="agent")) == 2
    await push(client, site, [contact(site, 9, "answered", 5, NY_MORNING + timedelta(hours=2))])
    assert offered(await kpis(client, path, token, group_by="agent")) == 3


async def test_unknown_tenant_ids_in_the_cache_never_match(app: FastAPI) -> None:
    cache = answers(app)
    tenant = uuid.uuid4()
    assert cache.put(tenant, "k", "v", cache.stamp(tenant))  # type: ignore[arg-type]
    assert cache.get(uuid.uuid4(), "k") is None
