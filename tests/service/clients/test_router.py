"""Clients: CRUD, validation, visibility (tenant, client viewer), permissions, deletion rules."""

from __future__ import annotations

import uuid

from httpx import AsyncClient
from sqlalchemy import select
from sqlmodel import col

from service.core.config import Settings
from service.core.db import Database
from tenants.models import AuditEntry
from tests.factories import bearer, make_tenant, user_token
from tests.service.projects.factories import API, create_client, create_project


async def test_admin_creates_reads_and_lists_a_client(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    seed = await make_tenant(client, settings)
    zone = await client.patch(
        f"{API}/tenant", json={"time_zone": "Asia/Tehran"}, headers=bearer(seed.admin_token)
    )
    assert zone.status_code == 200, zone.text
    created = await create_client(
        client,
        seed.admin_token,
        name="Acme Telecom",
        legal_name="Acme Telecom GmbH",
        report_emails=["Ops@Acme.example", "ops@acme.example", "cfo@acme.example"],
        locale="tr",
        email_domains=["ACME.example"],
    )
    assert created["time_zone"] == "Asia/Tehran"  # the tenant's, when not given
    assert created["report_emails"] == ["ops@acme.example", "cfo@acme.example"]
    assert created["email_domains"] == ["acme.example"]
    assert created["status"] == "active"

    got = await client.get(f"{API}/clients/{created['id']}", headers=bearer(seed.admin_token))
    assert got.status_code == 200
    assert got.json() == created

    listed = await client.get(f"{API}/clients", headers=bearer(seed.admin_token))
    assert [c["id"] for c in listed.json()["items"]] == [created["id"]]

    async with db.admin_transaction() as admin:
        actions = (
            await admin.execute(
                select(col(AuditEntry.action)).where(
                    col(AuditEntry.tenant_id) == seed.id,
                    col(AuditEntry.object_id) == created["id"],
                )
            )
        ).scalars()
        assert list(actions) == ["clients.create"]


async def test_client_validation_names_the_field(client: AsyncClient, settings: Settings) -> None:
    seed = await make_tenant(client, settings)
    cases = [
        ({"name": ""}, "name"),
        ({"name": "x", "report_emails": ["not-an-email"]}, "report_emails.0"),
        ({"name": "x", "time_zone": "Mars/Olympus"}, "time_zone"),
        ({"name": "x", "locale": "xx"}, "locale"),
        ({"name": "x", "email_domains": ["nodot"]}, "email_domains.0"),
        ({"name": "x", "tenant_id": str(uuid.uuid4())}, "tenant_id"),
        ({"name": "x", "status": "inactive"}, "status"),
    ]
    for body, field in cases:
        response = await client.post(f"{API}/clients", json=body, headers=bearer(seed.admin_token))
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert field in [e["field"] for e in response.json()["errors"]], (body, response.json())

    created = await create_client(client, seed.admin_token)
    response = await client.patch(
        f"{API}/clients/{created['id']}", json={"name": None}, headers=bearer(seed.admin_token)
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "name"


async def test_duplicate_name_is_409_ignoring_case(client: AsyncClient, settings: Settings) -> None:
    seed = await make_tenant(client, settings)
    await create_client(client, seed.admin_token, name="Globex")
    again = await client.post(
        f"{API}/clients", json={"name": "GLOBEX"}, headers=bearer(seed.admin_token)
    )
    assert again.status_code == 409
    assert again.json()["code"] == "client_name_taken"
    assert again.json()["field"] == "name"

    other = await create_client(client, seed.admin_token, name="Initech")
    rename = await client.patch(
        f"{API}/clients/{other['id']}", json={"name": "globex"}, headers=bearer(seed.admin_token)
    )
    assert rename.status_code == 409
    assert rename.json()["field"] == "name"

    # Another tenant may use the same name.
    seed2 = await make_tenant(client, settings)
    await create_client(client, seed2.admin_token, name="Globex")


async def test_update_and_deactivate(client: AsyncClient, settings: Settings) -> None:
    seed = await make_tenant(client, settings)
    created = await create_client(client, seed.admin_token, name="Umbrella")
    response = await client.patch(
        f"{API}/clients/{created['id']}",
        json={"legal_name": "Umbrella Corp.", "status": "inactive", "time_zone": "Europe/Berlin"},
        headers=bearer(seed.admin_token),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["legal_name"], body["status"], body["time_zone"]) == (
        "Umbrella Corp.",
        "inactive",
        "Europe/Berlin",
    )
    assert body["updated_at"] > created["updated_at"]

    active = await client.get(f"{API}/clients?status=active", headers=bearer(seed.admin_token))
    inactive = await client.get(f"{API}/clients?status=inactive", headers=bearer(seed.admin_token))
    assert active.json()["items"] == []
    assert [c["id"] for c in inactive.json()["items"]] == [created["id"]]


async def test_list_sorts_filters_and_paginates(client: AsyncClient, settings: Settings) -> None:
    seed = await make_tenant(client, settings)
    for name in ("Charlie", "alpha", "Bravo", "Delta"):
        await create_client(client, seed.admin_token, name=name)
    names: list[str] = []
    cursor = None
    while True:
        url = f"{API}/clients?sort=-name&limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(url, headers=bearer(seed.admin_token))).json()
        names += [c["name"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert names == sorted(names, reverse=True)
    assert set(names) == {"Charlie", "alpha", "Bravo", "Delta"}

    found = await client.get(f"{API}/clients?q=ELT", headers=bearer(seed.admin_token))
    assert [c["name"] for c in found.json()["items"]] == ["Delta"]

    bad = await client.get(f"{API}/clients?cursor=garbage", headers=bearer(seed.admin_token))
    assert bad.status_code == 422
    assert bad.json()["field"] == "cursor"
    bad_sort = await client.get(f"{API}/clients?sort=legal_name", headers=bearer(seed.admin_token))
    assert bad_sort.status_code == 422


async def test_another_tenants_client_does_not_exist(
    client: AsyncClient, settings: Settings
) -> None:
    seed = await make_tenant(client, settings)
    other = await make_tenant(client, settings)
    theirs = await create_client(client, other.admin_token)
    url = f"{API}/clients/{theirs['id']}"
    assert (await client.get(url, headers=bearer(seed.admin_token))).status_code == 404
    patched = await client.patch(url, json={"name": "mine"}, headers=bearer(seed.admin_token))
    assert patched.status_code == 404
    assert (await client.delete(url, headers=bearer(seed.admin_token))).status_code == 404
    listed = await client.get(f"{API}/clients", headers=bearer(seed.admin_token))
    assert listed.json()["items"] == []
    # Untouched.
    still = await client.get(url, headers=bearer(other.admin_token))
    assert still.json()["name"] == theirs["name"]


async def test_client_viewer_sees_only_their_client_and_cannot_write(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    seed = await make_tenant(client, settings)
    mine = await create_client(client, seed.admin_token)
    theirs = await create_client(client, seed.admin_token)
    _, token = await user_token(client, db, seed, "client_viewer", client_id=uuid.UUID(mine["id"]))
    listed = await client.get(f"{API}/clients", headers=bearer(token))
    assert [c["id"] for c in listed.json()["items"]] == [mine["id"]]
    assert (
        await client.get(f"{API}/clients/{mine['id']}", headers=bearer(token))
    ).status_code == 200
    other = await client.get(f"{API}/clients/{theirs['id']}", headers=bearer(token))
    assert other.status_code == 404

    writes = [
        client.post(f"{API}/clients", json={"name": "Mine now"}, headers=bearer(token)),
        client.patch(f"{API}/clients/{mine['id']}", json={"name": "x"}, headers=bearer(token)),
        client.delete(f"{API}/clients/{mine['id']}", headers=bearer(token)),
    ]
    for call in writes:
        response = await call
        assert response.status_code == 403, response.text
        assert response.json()["permission"] == "ops:write"


async def test_analyst_reads_but_cannot_write(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    seed = await make_tenant(client, settings)
    existing = await create_client(client, seed.admin_token)
    _, token = await user_token(client, db, seed, "analyst")
    assert (await client.get(f"{API}/clients", headers=bearer(token))).status_code == 200
    created = await client.post(f"{API}/clients", json={"name": "N"}, headers=bearer(token))
    assert created.status_code == 403
    patched = await client.patch(
        f"{API}/clients/{existing['id']}", json={"name": "N"}, headers=bearer(token)
    )
    assert patched.status_code == 403
    unchanged = await client.get(f"{API}/clients/{existing['id']}", headers=bearer(token))
    assert unchanged.json()["name"] == existing["name"]


async def test_delete_only_without_projects_or_users(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    seed = await make_tenant(client, settings)
    headers = bearer(seed.admin_token)

    with_project = await create_client(client, seed.admin_token)
    await create_project(client, seed.admin_token, with_project["id"])
    refused = await client.delete(f"{API}/clients/{with_project['id']}", headers=headers)
    assert refused.status_code == 409
    assert refused.json()["code"] == "client_has_projects"
    assert refused.json()["projects"] == 1

    with_viewer = await create_client(client, seed.admin_token)
    await user_token(client, db, seed, "client_viewer", client_id=uuid.UUID(with_viewer["id"]))
    in_use = await client.delete(f"{API}/clients/{with_viewer['id']}", headers=headers)
    assert in_use.status_code == 409
    assert in_use.json()["code"] == "client_in_use"
    assert (
        await client.get(f"{API}/clients/{with_viewer['id']}", headers=headers)
    ).status_code == 200

    bare = await create_client(client, seed.admin_token)
    gone = await client.delete(f"{API}/clients/{bare['id']}", headers=headers)
    assert gone.status_code == 204
    assert (await client.get(f"{API}/clients/{bare['id']}", headers=headers)).status_code == 404
