"""Identity-provider configuration: tenant admins only, per tenant, secrets kept secret."""

from __future__ import annotations

import uuid
from typing import Any

from httpx import AsyncClient
from sqlalchemy import select
from sqlmodel import col

from service.core.config import Settings
from service.core.db import Database
from tenants.models import AuditEntry, IdentityProvider
from tenants.oidc import SECRET_PURPOSE
from tenants.security import decrypt
from tests.factories import bearer, make_client, make_tenant, user_token

SECRET = "s3cret-value-that-must-never-leave"


def _body(**over: Any) -> dict[str, Any]:
    return {
        "name": "Acme staff SSO",
        "issuer": "https://login.acme.example",
        "oauth_client_id": "callpact-prod",
        "oauth_client_secret": SECRET,
        "allowed_domains": ["acme.example", "acme.example"],
        **over,
    }


async def _stored(db: Database, idp_id: str) -> IdentityProvider:
    async with db.admin_transaction() as admin:
        return (
            await admin.execute(
                select(IdentityProvider).where(col(IdentityProvider.id) == uuid.UUID(idp_id))
            )
        ).scalar_one()


async def test_crud_never_returns_the_secret(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    seed = await make_tenant(client, settings)
    headers = bearer(seed.admin_token)
    created = await client.post(
        "/api/v1/identity-providers",
        json=_body(role_claim="groups", role_map={"cc-leads": "supervisor"}),
        headers=headers,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    idp_id = body["id"]
    assert body["client_id"] is None
    assert body["allowed_domains"] == ["acme.example"]
    assert body["role_map"] == {"cc-leads": "supervisor"}
    assert body["redirect_uri"] == f"{settings.api.public_url}/api/v1/auth/oidc/callback"
    assert body["login_url"].endswith(f"/api/v1/auth/oidc/{seed.slug}/{idp_id}/login")

    listed = await client.get("/api/v1/identity-providers", headers=headers)
    one = await client.get(f"/api/v1/identity-providers/{idp_id}", headers=headers)
    assert [p["id"] for p in listed.json()] == [idp_id]
    assert one.json() == body

    patched = await client.patch(
        f"/api/v1/identity-providers/{idp_id}",
        json={"name": "Renamed", "enabled": False, "oauth_client_secret": "rotated-secret"},
        headers=headers,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["name"] == "Renamed"
    assert patched.json()["enabled"] is False
    stored = await _stored(db, idp_id)
    key = settings.auth.secret_key.get_secret_value()
    assert SECRET.encode() not in stored.client_secret_enc
    assert decrypt(key, stored.client_secret_enc, SECRET_PURPOSE) == b"rotated-secret"

    # Neither the API answers nor the audit log carry a secret.
    audit = await client.get("/api/v1/audit-log", params={"limit": 500}, headers=headers)
    for response in (created, listed, one, patched, audit):
        assert SECRET not in response.text
        assert "rotated-secret" not in response.text
        assert "secret" not in str(response.json()).replace("'client_secret_enc': 'changed'", "")

    deleted = await client.delete(f"/api/v1/identity-providers/{idp_id}", headers=headers)
    assert deleted.status_code == 204
    gone = await client.get(f"/api/v1/identity-providers/{idp_id}", headers=headers)
    assert gone.status_code == 404
    async with db.admin_transaction() as admin:
        actions = {
            a
            for (a,) in await admin.execute(
                select(col(AuditEntry.action)).where(col(AuditEntry.object_id) == idp_id)
            )
        }
    assert actions == {
        "identity_providers.create",
        "identity_providers.update",
        "identity_providers.delete",
    }


async def test_client_provider_makes_viewers_of_a_visible_client_only(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    seed = await make_tenant(client, settings)
    other = await make_tenant(client, settings)
    own_client = await make_client(db, seed.id)
    foreign_client = await make_client(db, other.id)
    headers = bearer(seed.admin_token)

    ok = await client.post(
        "/api/v1/identity-providers", json=_body(client_id=str(own_client.id)), headers=headers
    )
    assert ok.status_code == 201, ok.text
    assert ok.json()["client_id"] == str(own_client.id)
    assert ok.json()["default_role"] == "client_viewer"

    for unknown in (foreign_client.id, uuid.uuid4()):
        refused = await client.post(
            "/api/v1/identity-providers", json=_body(client_id=str(unknown)), headers=headers
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"] == "unknown_client"
        assert refused.json()["field"] == "client_id"


async def test_role_settings_that_would_breach_a_wall_are_refused(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    seed = await make_tenant(client, settings)
    customer = await make_client(db, seed.id)
    headers = bearer(seed.admin_token)
    cases = [
        (_body(default_role="client_viewer"), "default_role"),
        (_body(role_claim="groups", role_map={"x": "client_viewer"}), "role_map"),
        (_body(client_id=str(customer.id), default_role="supervisor"), "default_role"),
        (_body(client_id=str(customer.id), role_map={"x": "client_viewer"}), "role_map"),
        (_body(client_id=str(customer.id), role_claim="groups"), "role_claim"),
    ]
    for body, field in cases:
        response = await client.post("/api/v1/identity-providers", json=body, headers=headers)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["code"] == "invalid_role_binding"
        assert response.json()["field"] == field

    staff = await client.post("/api/v1/identity-providers", json=_body(), headers=headers)
    patched = await client.patch(
        f"/api/v1/identity-providers/{staff.json()['id']}",
        json={"default_role": "client_viewer"},
        headers=headers,
    )
    assert patched.status_code == 422
    assert patched.json()["field"] == "default_role"


async def test_write_schema_refuses_unknown_and_server_owned_fields(
    client: AsyncClient, settings: Settings
) -> None:
    seed = await make_tenant(client, settings)
    headers = bearer(seed.admin_token)
    for extra in ({"tenant_id": str(uuid.uuid4())}, {"id": str(uuid.uuid4())}, {"x": 1}):
        response = await client.post(
            "/api/v1/identity-providers", json=_body(**extra), headers=headers
        )
        assert response.status_code == 422, response.text
    created = await client.post("/api/v1/identity-providers", json=_body(), headers=headers)
    moved = await client.patch(
        f"/api/v1/identity-providers/{created.json()['id']}",
        json={"issuer": "https://evil.example"},
        headers=headers,
    )
    assert moved.status_code == 422
    emptied = await client.patch(
        f"/api/v1/identity-providers/{created.json()['id']}",
        json={"allowed_domains": []},
        headers=headers,
    )
    assert emptied.status_code == 422
    assert emptied.json()["field"] == "allowed_domains"


async def test_another_tenants_provider_is_404(client: AsyncClient, settings: Settings) -> None:
    owner = await make_tenant(client, settings)
    stranger = await make_tenant(client, settings)
    created = await client.post(
        "/api/v1/identity-providers", json=_body(), headers=bearer(owner.admin_token)
    )
    url = f"/api/v1/identity-providers/{created.json()['id']}"
    headers = bearer(stranger.admin_token)
    assert (await client.get(url, headers=headers)).status_code == 404
    assert (await client.patch(url, json={"name": "x"}, headers=headers)).status_code == 404
    assert (await client.delete(url, headers=headers)).status_code == 404
    assert (await client.get("/api/v1/identity-providers", headers=headers)).json() == []
    # Still there for its owner, unchanged.
    mine = await client.get(url, headers=bearer(owner.admin_token))
    assert mine.status_code == 200
    assert mine.json()["name"] == "Acme staff SSO"


async def test_non_admins_are_403(client: AsyncClient, settings: Settings, db: Database) -> None:
    seed = await make_tenant(client, settings)
    created = await client.post(
        "/api/v1/identity-providers", json=_body(), headers=bearer(seed.admin_token)
    )
    _, token = await user_token(client, db, seed, "supervisor")
    headers = bearer(token)
    url = f"/api/v1/identity-providers/{created.json()['id']}"
    for response in (
        await client.get("/api/v1/identity-providers", headers=headers),
        await client.post("/api/v1/identity-providers", json=_body(), headers=headers),
        await client.get(url, headers=headers),
        await client.delete(url, headers=headers),
    ):
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "forbidden"
    assert (await client.get(url, headers=bearer(seed.admin_token))).status_code == 200


async def test_a_nul_character_is_422_naming_the_field_and_nothing_is_written(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """Each was a 422 `unstorable_value` from the database, naming no field (found by
    tests/security/test_api_fuzz.py): PostgreSQL text and jsonb cannot hold U+0000."""
    seed = await make_tenant(client, settings)
    headers = bearer(seed.admin_token)
    created = await client.post("/api/v1/identity-providers", json=_body(), headers=headers)
    assert created.status_code == 201, created.text
    url = f"/api/v1/identity-providers/{created.json()['id']}"
    writes: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", "/api/v1/identity-providers", _body(issuer="https://a\x00b"), "issuer"),
        ("POST", "/api/v1/identity-providers", _body(oauth_client_id="a\x00b"), "oauth_client_id"),
        ("POST", "/api/v1/identity-providers", _body(role_claim="ro\x00le"), "role_claim"),
        ("POST", "/api/v1/identity-providers", _body(role_map={"a\x00": "analyst"}), "role_map"),
        ("PATCH", url, {"role_claim": "ro\x00le"}, "role_claim"),
        ("PATCH", url, {"role_map": {"a\x00": "analyst"}}, "role_map"),
    ]
    before = (await client.get(url, headers=headers)).json()
    for method, path, body, field in writes:
        response = await client.request(method, path, json=body, headers=headers)
        assert response.status_code == 422, (path, body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["code"] == "validation_failed", problem
        assert problem["field"].split(".")[0] == field, problem
    listed = (await client.get("/api/v1/identity-providers", headers=headers)).json()
    assert [p["id"] for p in listed] == [created.json()["id"]]
    assert (await client.get(url, headers=headers)).json() == before
