"""The agent pool and certifications through the API."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from service.core.config import Settings
from service.core.db import Database
from tests.factories import bearer, make_client, make_tenant, user_token
from tests.service.agents.factories import Floor, certify, make_agent, make_project


async def test_create_and_read_an_agent_with_telephony_ids(
    client: AsyncClient, floor: Floor
) -> None:
    created = await client.post(
        "/api/v1/agents",
        json={
            "name": "Ayse Yilmaz",
            "email": "Ayse@Example.com",
            "hire_date": "2024-05-01",
            "skills": ["billing", "billing", "retention"],
            "languages": ["tr", "en"],
            "weekly_hours": 37.5,
            "external_ids": {"asterisk": "Agent/1101", "amazon_connect": "ayse.yilmaz"},
        },
        headers=floor.headers,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["email"] == "ayse@example.com"
    assert body["skills"] == ["billing", "retention"]
    assert body["weekly_hours"] == 37.5
    assert body["external_ids"] == {"amazon_connect": "ayse.yilmaz", "asterisk": "Agent/1101"}
    assert created.headers["etag"] == 'W/"1"'

    read = await client.get(f"/api/v1/agents/{body['id']}", headers=floor.headers)
    assert read.status_code == 200
    assert read.json() == body
    assert read.headers["etag"] == 'W/"1"'


async def test_external_id_is_unique_per_system_within_the_tenant(
    client: AsyncClient, settings: Settings, floor: Floor
) -> None:
    first = await make_agent(client, floor.token, external_ids={"asterisk": "Agent/2001"})
    again = await client.post(
        "/api/v1/agents",
        json={"name": "Other", "external_ids": {"asterisk": "Agent/2001"}},
        headers=floor.headers,
    )
    assert again.status_code == 409
    problem = again.json()
    assert problem["code"] == "external_id_taken"
    assert problem["field"] == "external_ids.asterisk"
    assert problem["agent_id"] == first["id"]
    assert again.headers["content-type"] == "application/problem+json"

    # The same id in another system, or in another tenant, is someone else's business.
    await make_agent(client, floor.token, external_ids={"amazon_connect": "Agent/2001"})
    other = await make_tenant(client, settings)
    await make_agent(client, other.admin_token, external_ids={"asterisk": "Agent/2001"})


async def test_the_database_refuses_a_second_owner_of_an_external_id(
    client: AsyncClient, db: Database, floor: Floor
) -> None:
    agent = await make_agent(client, floor.token, external_ids={"asterisk": "Agent/2101"})
    other = await make_agent(client, floor.token)
    async with db.admin_engine.connect() as conn:
        with pytest.raises(IntegrityError, match="agent_external_ids_pkey"):
            await conn.execute(
                text(
                    "insert into agent_external_ids (tenant_id, agent_id, system, external_id)"
                    " values (:t, :a, 'asterisk', 'Agent/2101')"
                ),
                {"t": floor.seed.id, "a": uuid.UUID(other["id"])},
            )
    assert agent["external_ids"] == {"asterisk": "Agent/2101"}


async def test_email_is_unique_per_tenant(client: AsyncClient, floor: Floor) -> None:
    await make_agent(client, floor.token, email="same@example.com")
    again = await client.post(
        "/api/v1/agents",
        json={"name": "Two", "email": "SAME@example.com"},
        headers=floor.headers,
    )
    assert again.status_code == 409
    assert again.json()["code"] == "email_taken"
    assert again.json()["field"] == "email"


async def test_unknown_and_server_owned_fields_are_refused(
    client: AsyncClient, floor: Floor
) -> None:
    for body in (
        {"name": "X", "id": str(uuid.uuid4())},
        {"name": "X", "tenant_id": str(uuid.uuid4())},
        {"name": "X", "weekly_hours": 200},
        {"name": "X", "external_ids": {"Bad System": "1"}},
        {"name": ""},
    ):
        response = await client.post("/api/v1/agents", json=body, headers=floor.headers)
        assert response.status_code == 422, body
        assert response.json()["code"] == "validation_failed"


async def test_update_needs_the_current_etag_and_replaces_external_ids(
    client: AsyncClient, floor: Floor
) -> None:
    agent = await make_agent(client, floor.token, external_ids={"asterisk": "Agent/3001"})
    url = f"/api/v1/agents/{agent['id']}"
    missing = await client.patch(url, json={"name": "New"}, headers=floor.headers)
    assert missing.status_code == 428
    stale = await client.patch(
        url, json={"name": "New"}, headers={**floor.headers, "If-Match": 'W/"7"'}
    )
    assert stale.status_code == 412
    changed = await client.patch(
        url,
        json={"name": "New", "external_ids": {"asterisk": "Agent/3002", "genesys": "g-1"}},
        headers={**floor.headers, "If-Match": 'W/"1"'},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["external_ids"] == {"asterisk": "Agent/3002", "genesys": "g-1"}
    assert changed.headers["etag"] == 'W/"2"'
    # The old id is free again.
    await make_agent(client, floor.token, external_ids={"asterisk": "Agent/3001"})
    cleared = await client.patch(
        url,
        json={"email": None, "weekly_hours": None},
        headers={**floor.headers, "If-Match": changed.headers["etag"]},
    )
    assert cleared.status_code == 200
    assert cleared.json()["name"] == "New"


async def test_list_filters_sorts_and_paginates(client: AsyncClient, floor: Floor) -> None:
    names = ["Cem", "Ali", "Deniz", "Berk", "Ece"]
    agents = {}
    for i, name in enumerate(names):
        agents[name] = await make_agent(
            client,
            floor.token,
            name,
            skills=["sales"] if i % 2 == 0 else ["billing"],
            languages=["tr", "en"] if name != "Ece" else ["de"],
        )
    await client.patch(
        f"/api/v1/agents/{agents['Ece']['id']}",
        json={"status": "inactive"},
        headers={**floor.headers, "If-Match": "*"},
    )
    await certify(client, floor.token, agents["Berk"]["id"], floor.project_a.id)

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = await client.get("/api/v1/agents", params=params, headers=floor.headers)
        assert page.status_code == 200, page.text
        seen += [a["name"] for a in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(names)

    async def names_for(**params: str) -> list[str]:
        response = await client.get("/api/v1/agents", params=params, headers=floor.headers)
        assert response.status_code == 200, response.text
        return [a["name"] for a in response.json()["items"]]

    assert await names_for(order="desc") == sorted(names, reverse=True)
    assert await names_for(status="inactive") == ["Ece"]
    assert await names_for(skill="sales") == ["Cem", "Deniz", "Ece"]
    assert await names_for(language="de") == ["Ece"]
    assert await names_for(q="er") == ["Berk"]
    assert await names_for(project_id=str(floor.project_a.id)) == ["Berk"]
    bad = await client.get("/api/v1/agents", params={"cursor": "nope"}, headers=floor.headers)
    assert bad.status_code == 422
    assert bad.json()["code"] == "invalid_cursor"


async def test_an_agent_without_history_is_deleted(client: AsyncClient, floor: Floor) -> None:
    agent = await make_agent(client, floor.token, external_ids={"asterisk": "Agent/4001"})
    await certify(client, floor.token, agent["id"], floor.project_a.id)
    deleted = await client.delete(f"/api/v1/agents/{agent['id']}", headers=floor.headers)
    assert deleted.status_code == 204
    gone = await client.get(f"/api/v1/agents/{agent['id']}", headers=floor.headers)
    assert gone.status_code == 404
    await make_agent(client, floor.token, external_ids={"asterisk": "Agent/4001"})


async def test_an_agent_with_shifts_is_never_deleted(
    client: AsyncClient, db: Database, floor: Floor
) -> None:
    agent = await make_agent(client, floor.token)
    async with db.admin_transaction() as admin:
        await admin.execute(
            text(
                "insert into shifts (tenant_id, id, agent_id, project_id, client_id, starts_at,"
                " ends_at, activity) values (:t, :id, :a, :p, :c, '2026-01-05 08:00Z',"
                " '2026-01-05 12:00Z', 'training')"
            ),
            {
                "t": floor.seed.id,
                "id": uuid.uuid4(),
                "a": uuid.UUID(agent["id"]),
                "p": floor.project_a.id,
                "c": floor.client_a,
            },
        )
    refused = await client.delete(f"/api/v1/agents/{agent['id']}", headers=floor.headers)
    assert refused.status_code == 409
    assert refused.json()["code"] == "agent_has_history"
    still = await client.get(f"/api/v1/agents/{agent['id']}", headers=floor.headers)
    assert still.status_code == 200
    inactive = await client.patch(
        f"/api/v1/agents/{agent['id']}",
        json={"status": "inactive"},
        headers={**floor.headers, "If-Match": still.headers["etag"]},
    )
    assert inactive.json()["status"] == "inactive"


async def test_another_tenants_agent_does_not_exist(
    client: AsyncClient, settings: Settings, floor: Floor
) -> None:
    other = await make_tenant(client, settings)
    theirs = await make_agent(client, other.admin_token)
    url = f"/api/v1/agents/{theirs['id']}"
    assert (await client.get(url, headers=floor.headers)).status_code == 404
    patch = await client.patch(url, json={"name": "x"}, headers={**floor.headers, "If-Match": "*"})
    assert patch.status_code == 404
    assert (await client.delete(url, headers=floor.headers)).status_code == 404
    certs = await client.get(url + "/certifications", headers=floor.headers)
    assert certs.status_code == 404
    listed = await client.get("/api/v1/agents", headers=floor.headers)
    assert theirs["id"] not in {a["id"] for a in listed.json()["items"]}


async def test_readers_may_read_but_not_write(
    client: AsyncClient, db: Database, floor: Floor
) -> None:
    agent = await make_agent(client, floor.token)
    _, analyst = await user_token(client, db, floor.seed, "analyst")
    assert (await client.get("/api/v1/agents", headers=bearer(analyst))).status_code == 200
    read = await client.get(f"/api/v1/agents/{agent['id']}", headers=bearer(analyst))
    assert read.status_code == 200
    create = await client.post("/api/v1/agents", json={"name": "x"}, headers=bearer(analyst))
    assert create.status_code == 403
    assert create.json()["code"] == "forbidden"
    delete = await client.delete(f"/api/v1/agents/{agent['id']}", headers=bearer(analyst))
    assert delete.status_code == 403


async def test_a_client_viewer_sees_only_agents_certified_for_its_projects(
    client: AsyncClient, db: Database, floor: Floor
) -> None:
    mine = await make_agent(client, floor.token, "Mine")
    theirs = await make_agent(client, floor.token, "Theirs")
    await certify(client, floor.token, mine["id"], floor.project_a.id)
    await certify(client, floor.token, theirs["id"], floor.project_b.id)
    _, viewer = await user_token(client, db, floor.seed, "client_viewer", client_id=floor.client_a)
    listed = await client.get("/api/v1/agents", headers=bearer(viewer))
    assert [a["name"] for a in listed.json()["items"]] == ["Mine"]
    hidden = await client.get(f"/api/v1/agents/{theirs['id']}", headers=bearer(viewer))
    assert hidden.status_code == 404
    certs = await client.get(f"/api/v1/agents/{mine['id']}/certifications", headers=bearer(viewer))
    assert [c["project_id"] for c in certs.json()["items"]] == [str(floor.project_a.id)]


async def test_null_for_a_field_that_cannot_be_empty_is_422_not_ignored(
    client: AsyncClient, floor: Floor
) -> None:
    agent = await make_agent(client, floor.token, external_ids={"asterisk": "Agent/3101"})
    url = f"/api/v1/agents/{agent['id']}"
    for field in ("name", "status", "skills", "languages", "external_ids"):
        response = await client.patch(
            url, json={field: None}, headers={**floor.headers, "If-Match": 'W/"1"'}
        )
        assert response.status_code == 422, (field, response.text)
        assert (response.json()["code"], response.json()["field"]) == ("validation_failed", field)
    unchanged = await client.get(url, headers=floor.headers)
    assert unchanged.headers["etag"] == 'W/"1"'  # nothing was written
    assert unchanged.json()["external_ids"] == {"asterisk": "Agent/3101"}

    await certify(client, floor.token, agent["id"], floor.project_a.id, "2026-02-01")
    cert_url = f"{url}/certifications/{floor.project_a.id}"
    response = await client.patch(cert_url, json={"certified_from": None}, headers=floor.headers)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "certified_from"
    # certified_until and note may be cleared.
    cleared = await client.patch(
        cert_url, json={"certified_until": None, "note": None}, headers=floor.headers
    )
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["certified_from"] == "2026-02-01"


async def test_certifications(client: AsyncClient, floor: Floor) -> None:
    agent = await make_agent(client, floor.token)
    url = f"/api/v1/agents/{agent['id']}/certifications"
    cert = await certify(client, floor.token, agent["id"], floor.project_a.id, "2026-02-01")
    assert cert["client_id"] == str(floor.client_a)
    again = await client.post(
        url,
        json={"project_id": str(floor.project_a.id), "certified_from": "2026-03-01"},
        headers=floor.headers,
    )
    assert again.status_code == 409
    assert again.json()["code"] == "certification_exists"

    unknown = await client.post(
        url,
        json={"project_id": str(uuid.uuid4()), "certified_from": "2026-03-01"},
        headers=floor.headers,
    )
    assert unknown.status_code == 422
    assert unknown.json()["code"] == "unknown_project"
    assert unknown.json()["field"] == "project_id"

    await certify(
        client,
        floor.token,
        agent["id"],
        floor.project_b.id,
        "2026-01-01",
        certified_until="2026-01-31",
    )
    active = await client.get(url, params={"active_on": "2026-02-15"}, headers=floor.headers)
    assert [c["project_id"] for c in active.json()["items"]] == [str(floor.project_a.id)]
    all_ = await client.get(url, headers=floor.headers)
    assert [c["certified_from"] for c in all_.json()["items"]] == ["2026-01-01", "2026-02-01"]

    bad = await client.patch(
        f"{url}/{floor.project_a.id}", json={"certified_until": "2026-01-01"}, headers=floor.headers
    )
    assert bad.status_code == 422
    assert bad.json()["code"] == "invalid_certification_dates"
    ended = await client.patch(
        f"{url}/{floor.project_a.id}", json={"certified_until": "2026-06-30"}, headers=floor.headers
    )
    assert ended.status_code == 200
    assert ended.json()["certified_until"] == "2026-06-30"

    removed = await client.delete(f"{url}/{floor.project_b.id}", headers=floor.headers)
    assert removed.status_code == 204
    missing = await client.delete(f"{url}/{floor.project_b.id}", headers=floor.headers)
    assert missing.status_code == 404


async def test_a_certification_cannot_name_another_tenants_project(
    client: AsyncClient, settings: Settings, db: Database, floor: Floor
) -> None:
    other = await make_tenant(client, settings)
    their_client = await make_client(db, other.id)
    their_project = await make_project(db, other.id, their_client.id)
    agent = await make_agent(client, floor.token)
    response = await client.post(
        f"/api/v1/agents/{agent['id']}/certifications",
        json={"project_id": str(their_project.id), "certified_from": "2026-01-01"},
        headers=floor.headers,
    )
    assert response.status_code == 422
    assert response.json()["code"] == "unknown_project"


async def test_a_certification_of_an_agent_deleted_meanwhile_is_404_not_500(
    client: AsyncClient, floor: Floor, db: Database
) -> None:
    agent = await make_agent(client, floor.token)
    async with db.admin_transaction() as admin:
        # The agent is being deleted: the request still reads it, and its
        # insert waits on the foreign key until this commits.
        await admin.execute(
            text("delete from agents where tenant_id = :t and id = :a"),
            {"t": floor.seed.id, "a": agent["id"]},
        )
        certifying = asyncio.create_task(
            client.post(
                f"/api/v1/agents/{agent['id']}/certifications",
                json={"project_id": str(floor.project_a.id), "certified_from": "2026-01-01"},
                headers=floor.headers,
            )
        )
        await asyncio.sleep(0.5)
        assert not certifying.done()
    response = await certifying
    assert response.status_code == 404, response.text
    assert response.json()["code"] == "not_found"


async def test_a_crafted_cursor_is_422_invalid_cursor(client: AsyncClient, floor: Floor) -> None:
    await make_agent(client, floor.token)
    nil = "00000000-0000-0000-0000-000000000000"
    # Text the database cannot hold, or no text at all where the sort is by name.
    values: list[Any] = ["a\x00b", "\ud800", 1e308, -1, True, [1], {"a": 1}]
    for value in values:
        cursor = base64.urlsafe_b64encode(json.dumps([value, nil]).encode()).decode().rstrip("=")
        for url in ("/api/v1/agents?sort=name", "/api/v1/clients?sort=name", "/api/v1/projects?"):
            response = await client.get(f"{url}&cursor={cursor}", headers=floor.headers)
            assert response.status_code == 422, (url, response.text)
            assert (response.json()["code"], response.json()["field"]) == (
                "invalid_cursor",
                "cursor",
            )


async def test_a_cursor_time_python_cannot_move_to_utc_is_422_invalid_cursor(
    client: AsyncClient, floor: Floor
) -> None:
    """Was a 422 `unstorable_value` naming no field (found by tests/security/test_api_fuzz.py):
    a time at the edge of Python's years reached the driver, which could not move it to
    UTC. A time without a zone is no cursor this API issues either."""
    await make_agent(client, floor.token)
    nil = "00000000-0000-0000-0000-000000000000"
    times = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-01-01T00:00:00"]
    urls = (
        "/api/v1/agents?sort=created_at",
        "/api/v1/clients?sort=-created_at",
        "/api/v1/shifts?sort=start&order=desc",
        "/api/v1/audit-log?",
    )
    for value in times:
        cursor = base64.urlsafe_b64encode(json.dumps([value, nil]).encode()).decode().rstrip("=")
        for url in urls:
            response = await client.get(f"{url}&cursor={cursor}", headers=floor.headers)
            assert response.status_code == 422, (url, value, response.text)
            assert (response.json()["code"], response.json()["field"]) == (
                "invalid_cursor",
                "cursor",
            ), (url, value)
