"""Projects: creation with business hours, holidays and queue keys; validation;
queue keys unique per tenant (in the database); ETag/If-Match; visibility and
permissions; supervisor assignments."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from httpx import AsyncClient
from sqlalchemy import select, text
from sqlmodel import col

from service.core.config import Settings
from service.core.db import Database
from service.projects.models import ProjectQueueKey
from tenants.models import AuditEntry
from tests.factories import bearer, make_tenant, user_token
from tests.service.projects.factories import API, create_client, create_project, make_world

HOURS = {
    "mon": [{"start": "13:00", "end": "18:00"}, {"start": "08:00", "end": "12:00"}],
    "sat": [{"start": "10:00", "end": "24:00"}],
}


async def test_create_with_hours_holidays_and_queue_keys(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    seed = await make_tenant(client, settings)
    owner = await create_client(client, seed.admin_token, time_zone="Europe/Istanbul")
    response = await client.post(
        f"{API}/projects",
        json={
            "client_id": owner["id"],
            "name": "Inbound support",
            "channels": ["chat", "voice", "chat"],
            "business_hours": HOURS,
            "holidays": [
                "2026-12-31",
                {"start": "2026-12-24", "end": "2026-12-26", "name": "Christmas"},
            ],
            "queue_keys": ["support-en", "arn:aws:connect:eu:1:queue/7"],
        },
        headers=bearer(seed.admin_token),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["etag"] == 'W/"1"'
    assert body["time_zone"] == "Europe/Istanbul"  # the client's, when not given
    assert body["channels"] == ["voice", "chat"]
    assert body["business_hours"]["mon"] == [
        {"start": "08:00", "end": "12:00"},
        {"start": "13:00", "end": "18:00"},
    ]
    assert body["business_hours"]["tue"] == []
    assert body["business_hours"]["sat"] == [{"start": "10:00", "end": "24:00"}]
    assert body["holidays"] == [
        {"start": "2026-12-24", "end": "2026-12-26", "name": "Christmas"},
        {"start": "2026-12-31", "end": "2026-12-31", "name": None},
    ]
    assert body["queue_keys"] == ["support-en", "arn:aws:connect:eu:1:queue/7"]
    assert body["version"] == 1

    got = await client.get(f"{API}/projects/{body['id']}", headers=bearer(seed.admin_token))
    assert got.status_code == 200
    assert got.json() == body
    assert got.headers["etag"] == 'W/"1"'

    async with db.admin_transaction() as admin:
        mirrored = (
            await admin.execute(
                select(ProjectQueueKey).where(col(ProjectQueueKey.tenant_id) == seed.id)
            )
        ).scalars()
        assert {(k.queue_key, str(k.project_id), str(k.client_id)) for k in mirrored} == {
            ("support-en", body["id"], owner["id"]),
            ("arn:aws:connect:eu:1:queue/7", body["id"], owner["id"]),
        }
        audited = (
            await admin.execute(
                select(col(AuditEntry.action)).where(
                    col(AuditEntry.tenant_id) == seed.id, col(AuditEntry.object_id) == body["id"]
                )
            )
        ).scalars()
        assert list(audited) == ["projects.create"]


async def test_no_business_hours_reads_as_null(client: AsyncClient, settings: Settings) -> None:
    seed = await make_tenant(client, settings)
    owner = await create_client(client, seed.admin_token)
    project = await create_project(client, seed.admin_token, owner["id"], business_hours={})
    assert project["business_hours"] is None
    assert project["channels"] == ["voice"]
    assert project["holidays"] == []


async def _field_of(response: Any) -> str:
    assert response.status_code == 422, response.text
    body = response.json()
    return str(body.get("field") or body["errors"][0]["field"])


async def test_validation_names_the_field(client: AsyncClient, settings: Settings) -> None:
    seed = await make_tenant(client, settings)
    owner = await create_client(client, seed.admin_token)
    base = {"client_id": owner["id"], "name": "P"}
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {
                "business_hours": {
                    "mon": [{"start": "08:00", "end": "12:00"}, {"start": "11:00", "end": "13:00"}]
                }
            },
            "business_hours.mon",
        ),
        (
            {"business_hours": {"tue": [{"start": "18:00", "end": "08:00"}]}},
            "business_hours.tue.0.end",
        ),
        (
            {"business_hours": {"wed": [{"start": "08:00", "end": "25:00"}]}},
            "business_hours.wed.0.end",
        ),
        (
            {"business_hours": {"thu": [{"start": "24:00", "end": "24:00"}]}},
            "business_hours.thu.0.end",
        ),
        ({"business_hours": {"xyz": []}}, "business_hours.xyz"),
        ({"holidays": [{"start": "2026-12-26", "end": "2026-12-24"}]}, "holidays.0.end"),
        ({"holidays": ["not a date"]}, "holidays.0.start"),
        ({"channels": ["fax"]}, "channels.0"),
        ({"channels": []}, "channels"),
        ({"time_zone": "Nowhere/City"}, "time_zone"),
        ({"queue_keys": ["a", "a"]}, "queue_keys"),
        ({"queue_keys": [""]}, "queue_keys.0"),
        ({"version": 7}, "version"),
    ]
    for extra, field in cases:
        response = await client.post(
            f"{API}/projects", json={**base, **extra}, headers=bearer(seed.admin_token)
        )
        assert await _field_of(response) == field, (extra, response.json())

    missing = await client.post(
        f"{API}/projects", json={"name": "P"}, headers=bearer(seed.admin_token)
    )
    assert await _field_of(missing) == "client_id"

    # Touching spans are fine (half-open); several spans a day.
    ok = await create_project(
        client,
        seed.admin_token,
        owner["id"],
        business_hours={
            "fri": [{"start": "08:00", "end": "12:00"}, {"start": "12:00", "end": "16:00"}]
        },
    )
    assert len(ok["business_hours"]["fri"]) == 2


async def test_unknown_or_inactive_client_is_422(client: AsyncClient, settings: Settings) -> None:
    seed = await make_tenant(client, settings)
    other = await make_tenant(client, settings)
    foreign = await create_client(client, other.admin_token)
    for client_id in (foreign["id"], str(uuid.uuid4())):
        response = await client.post(
            f"{API}/projects",
            json={"client_id": client_id, "name": "P"},
            headers=bearer(seed.admin_token),
        )
        assert response.status_code == 422
        assert response.json()["code"] == "unknown_client"
        assert response.json()["field"] == "client_id"

    owner = await create_client(client, seed.admin_token)
    await client.patch(
        f"{API}/clients/{owner['id']}",
        json={"status": "inactive"},
        headers=bearer(seed.admin_token),
    )
    response = await client.post(
        f"{API}/projects",
        json={"client_id": owner["id"], "name": "P"},
        headers=bearer(seed.admin_token),
    )
    assert response.status_code == 422
    assert response.json()["code"] == "client_inactive"


async def test_names_unique_per_client(client: AsyncClient, settings: Settings) -> None:
    world = await make_world(client, settings)
    name = world.project_a["name"]
    again = await client.post(
        f"{API}/projects",
        json={"client_id": world.client_a["id"], "name": name.upper()},
        headers=bearer(world.token),
    )
    assert again.status_code == 409
    assert again.json()["code"] == "project_name_taken"
    assert again.json()["field"] == "name"
    # Another client may have a project of the same name.
    await create_project(client, world.token, world.client_b["id"], name=name)


async def test_queue_key_maps_to_one_project_per_tenant(
    client: AsyncClient, settings: Settings
) -> None:
    world = await make_world(client, settings)
    headers = bearer(world.token)
    etag_a = (await client.get(f"{API}/projects/{world.project_a['id']}", headers=headers)).headers[
        "etag"
    ]
    first = await client.patch(
        f"{API}/projects/{world.project_a['id']}",
        json={"queue_keys": ["sales", "support"]},
        headers={**headers, "If-Match": etag_a},
    )
    assert first.status_code == 200, first.text

    clash = await client.post(
        f"{API}/projects",
        json={
            "client_id": world.client_b["id"],
            "name": "B2",
            "queue_keys": ["billing", "support"],
        },
        headers=headers,
    )
    assert clash.status_code == 409
    problem = clash.json()
    assert problem["code"] == "queue_key_taken"
    assert problem["field"] == "queue_keys.1"
    assert problem["queue_key"] == "support"
    assert problem["project_id"] == world.project_a["id"]

    etag_b = (await client.get(f"{API}/projects/{world.project_b['id']}", headers=headers)).headers[
        "etag"
    ]
    moved = await client.patch(
        f"{API}/projects/{world.project_b['id']}",
        json={"queue_keys": ["sales"]},
        headers={**headers, "If-Match": etag_b},
    )
    assert moved.status_code == 409
    assert moved.json()["field"] == "queue_keys.0"

    # Freed by A, the key can move to B.
    freed = await client.patch(
        f"{API}/projects/{world.project_a['id']}",
        json={"queue_keys": ["support"]},
        headers={**headers, "If-Match": first.headers["etag"]},
    )
    assert freed.status_code == 200
    moved = await client.patch(
        f"{API}/projects/{world.project_b['id']}",
        json={"queue_keys": ["sales"]},
        headers={**headers, "If-Match": etag_b},
    )
    assert moved.status_code == 200, moved.text

    # Another tenant's keys are its own business.
    other = await make_world(client, settings)
    await create_project(client, other.token, other.client_a["id"], queue_keys=["sales", "support"])


async def test_concurrent_creates_cannot_map_one_queue_twice(
    client: AsyncClient, settings: Settings
) -> None:
    world = await make_world(client, settings)

    async def create(n: int) -> int:
        response = await client.post(
            f"{API}/projects",
            json={
                "client_id": world.client_a["id"],
                "name": f"Race {n}",
                "queue_keys": ["hot-queue"],
            },
            headers=bearer(world.token),
        )
        assert response.status_code in (201, 409), response.text
        if response.status_code == 409:
            assert response.json()["code"] == "queue_key_taken"
        return response.status_code

    codes = await asyncio.gather(*(create(n) for n in range(6)))
    assert sorted(codes).count(201) == 1
    listed = await client.get(f"{API}/projects?q=Race", headers=bearer(world.token))
    assert [p["queue_keys"] for p in listed.json()["items"]] == [["hot-queue"]]


async def test_update_needs_a_fresh_if_match(client: AsyncClient, settings: Settings) -> None:
    world = await make_world(client, settings)
    url = f"{API}/projects/{world.project_a['id']}"
    headers = bearer(world.token)

    missing = await client.patch(url, json={"name": "Renamed"}, headers=headers)
    assert missing.status_code == 428
    assert missing.json()["code"] == "precondition_required"

    updated = await client.patch(
        url,
        json={"name": "Renamed", "status": "inactive", "business_hours": HOURS},
        headers={**headers, "If-Match": 'W/"1"'},
    )
    assert updated.status_code == 200, updated.text
    assert updated.headers["etag"] == 'W/"2"'
    assert updated.json()["version"] == 2
    assert updated.json()["status"] == "inactive"

    stale = await client.patch(
        url, json={"name": "Again"}, headers={**headers, "If-Match": 'W/"1"'}
    )
    assert stale.status_code == 412
    assert stale.json()["code"] == "precondition_failed"
    assert (await client.get(url, headers=headers)).json()["name"] == "Renamed"

    cleared = await client.patch(
        url, json={"business_hours": None}, headers={**headers, "If-Match": 'W/"2"'}
    )
    assert cleared.status_code == 200
    assert cleared.json()["business_hours"] is None

    for body, field in (
        ({"client_id": world.client_b["id"]}, "client_id"),
        ({"name": None}, "name"),
    ):
        refused = await client.patch(url, json=body, headers={**headers, "If-Match": 'W/"3"'})
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["field"] == field


async def test_concurrent_editors_with_one_etag_cannot_both_win(
    client: AsyncClient, settings: Settings
) -> None:
    world = await make_world(client, settings)
    url = f"{API}/projects/{world.project_a['id']}"

    async def edit(n: int) -> int:
        response = await client.patch(
            url,
            json={"name": f"Editor {n}"},
            headers={**bearer(world.token), "If-Match": 'W/"1"'},
        )
        return response.status_code

    codes = await asyncio.gather(*(edit(n) for n in range(5)))
    assert sorted(codes) == [200, 412, 412, 412, 412]
    final = (await client.get(url, headers=bearer(world.token))).json()
    assert final["version"] == 2
    assert final["name"].startswith("Editor ")


async def test_list_filters_sorts_and_paginates(client: AsyncClient, settings: Settings) -> None:
    world = await make_world(client, settings)
    headers = bearer(world.token)
    extra = await create_project(
        client,
        world.token,
        world.client_a["id"],
        name="Zulu",
        channels=["email"],
        status="inactive",
    )

    async def ids(query: str) -> list[str]:
        response = await client.get(f"{API}/projects?{query}", headers=headers)
        assert response.status_code == 200, response.text
        return [p["id"] for p in response.json()["items"]]

    assert set(await ids(f"client_id={world.client_a['id']}")) == {
        world.project_a["id"],
        extra["id"],
    }
    assert await ids("channel=chat") == [world.project_a["id"]]
    assert await ids("channel=email") == [extra["id"]]
    assert await ids("status=inactive") == [extra["id"]]
    assert set(await ids("status=active")) == {world.project_a["id"], world.project_b["id"]}
    newest_first = await ids("sort=-created_at")
    assert newest_first[0] == extra["id"]
    assert newest_first[-1] == world.project_a["id"]

    seen: list[str] = []
    cursor = None
    while True:
        query = "sort=name&limit=1" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(f"{API}/projects?{query}", headers=headers)).json()
        seen += [p["name"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 3
    assert seen == sorted(seen)
    assert (await client.get(f"{API}/projects?channel=fax", headers=headers)).status_code == 422


async def test_another_tenants_project_does_not_exist(
    client: AsyncClient, settings: Settings
) -> None:
    mine = await make_world(client, settings)
    theirs = await make_world(client, settings)
    url = f"{API}/projects/{theirs.project_a['id']}"
    headers = bearer(mine.token)
    assert (await client.get(url, headers=headers)).status_code == 404
    patched = await client.patch(url, json={"name": "x"}, headers={**headers, "If-Match": "*"})
    assert patched.status_code == 404
    listed = await client.get(f"{API}/projects", headers=headers)
    assert {p["id"] for p in listed.json()["items"]} == {mine.project_a["id"], mine.project_b["id"]}


async def test_client_viewer_sees_their_clients_projects_only(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    world = await make_world(client, settings)
    _, token = await user_token(
        client, db, world.seed, "client_viewer", client_id=uuid.UUID(world.client_a["id"])
    )
    headers = bearer(token)
    listed = await client.get(f"{API}/projects", headers=headers)
    assert [p["id"] for p in listed.json()["items"]] == [world.project_a["id"]]
    assert (
        await client.get(f"{API}/projects/{world.project_a['id']}", headers=headers)
    ).status_code == 200
    assert (
        await client.get(f"{API}/projects/{world.project_b['id']}", headers=headers)
    ).status_code == 404
    filtered = await client.get(f"{API}/projects?client_id={world.client_b['id']}", headers=headers)
    assert filtered.json()["items"] == []

    writes = await asyncio.gather(
        client.post(
            f"{API}/projects",
            json={"client_id": world.client_a["id"], "name": "X"},
            headers=headers,
        ),
        client.patch(
            f"{API}/projects/{world.project_a['id']}",
            json={"name": "X"},
            headers={**headers, "If-Match": "*"},
        ),
    )
    assert [w.status_code for w in writes] == [403, 403]


async def test_analyst_cannot_write(client: AsyncClient, settings: Settings, db: Database) -> None:
    world = await make_world(client, settings)
    _, token = await user_token(client, db, world.seed, "analyst")
    headers = bearer(token)
    assert (await client.get(f"{API}/projects", headers=headers)).status_code == 200
    created = await client.post(
        f"{API}/projects", json={"client_id": world.client_a["id"], "name": "X"}, headers=headers
    )
    assert created.status_code == 403
    patched = await client.patch(
        f"{API}/projects/{world.project_a['id']}",
        json={"name": "X"},
        headers={**headers, "If-Match": "*"},
    )
    assert patched.status_code == 403
    assigned = await client.put(
        f"{API}/users/{world.seed.admin_id}/projects", json={"project_ids": []}, headers=headers
    )
    assert assigned.status_code == 403


async def test_supervisor_sees_only_assigned_projects(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    world = await make_world(client, settings)
    supervisor, token = await user_token(client, db, world.seed, "supervisor")
    admin = bearer(world.token)
    url = f"{API}/users/{supervisor.id}/projects"

    assert (await client.get(url, headers=admin)).json() == {
        "user_id": str(supervisor.id),
        "project_ids": [],
    }
    # Unassigned: nothing visible.
    assert (await client.get(f"{API}/projects", headers=bearer(token))).json()["items"] == []

    put = await client.put(url, json={"project_ids": [world.project_a["id"]]}, headers=admin)
    assert put.status_code == 200, put.text
    assert put.json()["project_ids"] == [world.project_a["id"]]
    assert (await client.get(url, headers=admin)).json()["project_ids"] == [world.project_a["id"]]

    # The scope is read per request: the next request sees the assignment.
    listed = await client.get(f"{API}/projects", headers=bearer(token))
    assert [p["id"] for p in listed.json()["items"]] == [world.project_a["id"]]
    hidden = await client.get(f"{API}/projects/{world.project_b['id']}", headers=bearer(token))
    assert hidden.status_code == 404
    # A supervisor may edit an assigned project...
    edited = await client.patch(
        f"{API}/projects/{world.project_a['id']}",
        json={"holidays": ["2027-01-01"]},
        headers={**bearer(token), "If-Match": 'W/"1"'},
    )
    assert edited.status_code == 200, edited.text
    # ...but not create projects they would not see.
    created = await client.post(
        f"{API}/projects",
        json={"client_id": world.client_a["id"], "name": "S"},
        headers=bearer(token),
    )
    assert created.status_code == 403
    assert created.json()["code"] == "project_scoped"
    # Nor assign themselves more.
    self_assign = await client.put(
        url, json={"project_ids": [world.project_b["id"]]}, headers=bearer(token)
    )
    assert self_assign.status_code == 403

    # Replacing the set removes what is left out.
    swap = await client.put(url, json={"project_ids": [world.project_b["id"]]}, headers=admin)
    assert swap.json()["project_ids"] == [world.project_b["id"]]
    listed = await client.get(f"{API}/projects", headers=bearer(token))
    assert [p["id"] for p in listed.json()["items"]] == [world.project_b["id"]]

    async with db.admin_transaction() as session:
        audited = (
            await session.execute(
                select(AuditEntry)
                .where(
                    col(AuditEntry.tenant_id) == world.seed.id,
                    col(AuditEntry.object_type) == "user_projects",
                )
                .order_by(col(AuditEntry.id))
            )
        ).scalars()
        entries = [(e.action, e.object_id, e.summary.get("project_id")) for e in audited]
    created_a, created_b, removed = sorted(entries, key=lambda e: e[0])
    assert created_a[2] == world.project_a["id"]
    assert created_b[2] == world.project_b["id"]
    # The removal names the assignment whose creation named the project.
    assert removed[:2] == ("user_projects.delete", created_a[1])


async def test_assignment_validation_and_isolation(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    world = await make_world(client, settings)
    other = await make_world(client, settings)
    supervisor, _ = await user_token(client, db, world.seed, "supervisor")
    admin = bearer(world.token)
    url = f"{API}/users/{supervisor.id}/projects"

    foreign = await client.put(
        url, json={"project_ids": [world.project_a["id"], other.project_a["id"]]}, headers=admin
    )
    assert foreign.status_code == 422
    assert foreign.json()["code"] == "unknown_project"
    assert foreign.json()["field"] == "project_ids.1"
    assert (await client.get(url, headers=admin)).json()["project_ids"] == []

    other_supervisor, _ = await user_token(client, db, other.seed, "supervisor")
    for call in (
        client.get(f"{API}/users/{other_supervisor.id}/projects", headers=admin),
        client.put(
            f"{API}/users/{other_supervisor.id}/projects", json={"project_ids": []}, headers=admin
        ),
    ):
        assert (await call).status_code == 404

    viewer, _ = await user_token(
        client, db, world.seed, "client_viewer", client_id=uuid.UUID(world.client_a["id"])
    )
    refused = await client.put(
        f"{API}/users/{viewer.id}/projects",
        json={"project_ids": [world.project_a["id"]]},
        headers=admin,
    )
    assert refused.status_code == 422
    assert refused.json()["code"] == "not_assignable"


async def test_a_project_of_a_client_deleted_meanwhile_is_422_not_500(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    world = await make_world(client, settings)
    lone = await create_client(client, world.token)
    async with db.admin_transaction() as admin:
        # The client (no projects yet) is being deleted: the request still reads
        # it, and its insert waits on the foreign key until this commits.
        await admin.execute(
            text("delete from clients where tenant_id = :t and id = :c"),
            {"t": world.seed.id, "c": lone["id"]},
        )
        creating = asyncio.create_task(
            client.post(
                f"{API}/projects",
                json={"client_id": lone["id"], "name": "Late"},
                headers=bearer(world.token),
            )
        )
        await asyncio.sleep(0.5)
        assert not creating.done()
    response = await creating
    assert response.status_code == 422, response.text
    assert (response.json()["code"], response.json()["field"]) == ("unknown_client", "client_id")


async def test_a_nul_character_is_422_naming_the_field(
    client: AsyncClient, settings: Settings
) -> None:
    """PostgreSQL text cannot hold U+0000: every text of the operating model
    (and every text search) refuses it by name, instead of the database's
    nameless `unstorable_value`."""
    world = await make_world(client, settings)
    headers = bearer(world.token)
    nul = "a\x00b"
    agent = await client.post(f"{API}/agents", json={"name": "Nul"}, headers=headers)
    assert agent.status_code == 201
    agent_id = agent.json()["id"]
    writes: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", f"{API}/clients", {"name": nul}, "name"),
        ("POST", f"{API}/clients", {"name": "N", "legal_name": nul}, "legal_name"),
        ("PATCH", f"{API}/clients/{world.client_a['id']}", {"legal_name": nul}, "legal_name"),
        ("POST", f"{API}/projects", {"client_id": world.client_a["id"], "name": nul}, "name"),
        (
            "POST",
            f"{API}/projects",
            {"client_id": world.client_a["id"], "name": "N", "queue_keys": [nul]},
            "queue_keys.0",
        ),
        (
            "POST",
            f"{API}/projects",
            {
                "client_id": world.client_a["id"],
                "name": "N",
                "holidays": [{"start": "2026-12-25", "name": nul}],
            },
            "holidays.0.name",
        ),
        (
            "POST",
            f"{API}/contracts",
            {
                "project_id": world.project_a["id"],
                "effective_from": "2020-01-01",
                "targets": [{"kpi": "answer_rate", "target": 0.9}],
                "reference": nul,
            },
            "reference",
        ),
        ("POST", f"{API}/agents", {"name": nul}, "name"),
        ("POST", f"{API}/agents", {"name": "N", "skills": [nul]}, "skills.0"),
        ("POST", f"{API}/agents", {"name": "N", "external_ids": {"pbx": nul}}, "external_ids.pbx"),
        (
            "POST",
            f"{API}/agents/{agent_id}/certifications",
            {"project_id": world.project_a["id"], "certified_from": "2026-01-01", "note": nul},
            "note",
        ),
    ]
    for method, url, body, field in writes:
        response = await client.request(
            method, url, json=body, headers={**headers, "If-Match": "*"}
        )
        assert response.status_code == 422, (url, body, response.text)
        assert (response.json()["code"], response.json()["field"]) == (
            "validation_failed",
            field,
        ), (url, body)
    for url, field in (
        (f"{API}/clients?q=%00", "q"),
        (f"{API}/projects?q=%00", "q"),
        (f"{API}/agents?q=%00", "q"),
        (f"{API}/agents?skill=%00", "skill"),
    ):
        response = await client.get(url, headers=headers)
        assert response.status_code == 422, (url, response.text)
        assert (response.json()["code"], response.json()["field"]) == ("validation_failed", field)
