"""Tenant provisioning, login, refresh rotation, suspension, roles."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import default

from httpx import AsyncClient
from sqlalchemy import select

from service.core.config import Settings
from service.core.db import Database
from service.core.mail import deliver_outbox
from tenants.models import AuditEntry
from tests.factories import PASSWORD, bearer, make_client, make_tenant, platform_headers, user_token


async def test_platform_admin_creates_tenant_whose_admin_logs_in(
    client: AsyncClient, settings: Settings
) -> None:
    seed = await make_tenant(client, settings)
    me = await client.get("/api/v1/me", headers=bearer(seed.admin_token))
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["tenant"]["slug"] == seed.slug
    assert body["role"] == "tenant_admin"
    assert "users:admin" in body["permissions"]


async def test_tenant_creation_needs_the_platform_token(client: AsyncClient) -> None:
    response = await client.post(
        "/api/v1/platform/tenants", json={}, headers=bearer("not-the-token")
    )
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"
    missing = await client.get("/api/v1/platform/tenants")
    assert missing.status_code == 401
    assert missing.json()["code"] == "missing_credentials"


async def test_duplicate_slug_is_409(client: AsyncClient, settings: Settings) -> None:
    seed = await make_tenant(client, settings)
    again = await client.post(
        "/api/v1/platform/tenants",
        json={
            "slug": seed.slug,
            "name": "x",
            "admin": {"email": "a@example.com", "password": PASSWORD},
        },
        headers=platform_headers(settings),
    )
    assert again.status_code == 409
    assert again.json()["code"] == "slug_taken"
    assert again.json()["field"] == "slug"


async def test_wrong_password_unknown_user_and_unknown_tenant_answer_alike(
    client: AsyncClient, settings: Settings
) -> None:
    seed = await make_tenant(client, settings)
    attempts = [
        {"tenant": seed.slug, "email": seed.admin_email, "password": "wrong password!"},
        {"tenant": seed.slug, "email": "nobody@example.com", "password": PASSWORD},
        {"tenant": "no-such-tenant", "email": seed.admin_email, "password": PASSWORD},
    ]
    bodies = []
    for attempt in attempts:
        response = await client.post("/api/v1/auth/token", json=attempt)
        assert response.status_code == 401
        bodies.append(response.json())
    assert bodies[0] == bodies[1] == bodies[2]


async def test_login_is_rate_limited_per_account(client: AsyncClient, settings: Settings) -> None:
    seed = await make_tenant(client, settings)
    codes = []
    for _ in range(7):
        response = await client.post(
            "/api/v1/auth/token",
            json={"tenant": seed.slug, "email": seed.admin_email, "password": "wrong password!"},
        )
        codes.append(response.status_code)
    assert codes[:5] == [401] * 5
    assert codes[5:] == [429, 429]
    # Even the right password is refused while the account is locked out.
    locked = await client.post(
        "/api/v1/auth/token",
        json={"tenant": seed.slug, "email": seed.admin_email, "password": PASSWORD},
    )
    assert locked.status_code == 429
    assert locked.json()["code"] == "too_many_attempts"


async def test_refresh_rotates_and_reuse_revokes_the_family(
    client: AsyncClient, settings: Settings
) -> None:
    seed = await make_tenant(client, settings)
    first = (
        await client.post(
            "/api/v1/auth/token",
            json={"tenant": seed.slug, "email": seed.admin_email, "password": PASSWORD},
        )
    ).json()
    second = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert second.status_code == 200
    second_pair = second.json()
    assert second_pair["refresh_token"] != first["refresh_token"]
    replay = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert replay.status_code == 401
    assert replay.json()["code"] == "refresh_token_reused"
    # The thief's replay also killed the legitimate descendant.
    after = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": second_pair["refresh_token"]}
    )
    assert after.status_code == 401


async def test_suspended_tenant_is_refused_at_once(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    seed = await make_tenant(client, settings)
    created = await client.post(
        "/api/v1/api-tokens",
        json={"name": "pbx", "scopes": ["contacts:write"]},
        headers=bearer(seed.admin_token),
    )
    api_token = created.json()["token"]
    assert (await client.get("/api/v1/me", headers=bearer(api_token))).status_code == 200
    suspended = await client.post(
        f"/api/v1/platform/tenants/{seed.id}/suspend", headers=platform_headers(settings)
    )
    assert suspended.json()["status"] == "suspended"
    for token in (seed.admin_token, api_token):
        response = await client.get("/api/v1/me", headers=bearer(token))
        assert response.status_code == 401
        assert response.json()["code"] == "tenant_suspended"
    login = await client.post(
        "/api/v1/auth/token",
        json={"tenant": seed.slug, "email": seed.admin_email, "password": PASSWORD},
    )
    assert login.status_code == 401


async def test_analyst_cannot_invite_and_the_denial_is_audited(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    seed = await make_tenant(client, settings)
    analyst, token = await user_token(client, db, seed, "analyst")
    response = await client.post(
        "/api/v1/invitations",
        json={"email": "x@example.com", "role": "analyst"},
        headers=bearer(token),
    )
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    async with db.admin_transaction() as admin:
        denials = (
            (
                await admin.execute(
                    select(AuditEntry).where(
                        AuditEntry.tenant_id == seed.id, AuditEntry.outcome == "denied"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert [d.actor_id for d in denials] == [analyst.id]
    assert denials[0].summary["permission"] == "users:admin"


async def test_writes_are_audited_without_secrets(client: AsyncClient, settings: Settings) -> None:
    seed = await make_tenant(client, settings)
    await client.patch(
        "/api/v1/tenant", json={"brand_primary": "#112233"}, headers=bearer(seed.admin_token)
    )
    await client.post(
        "/api/v1/api-tokens",
        json={"name": "pbx", "scopes": ["contacts:write"]},
        headers=bearer(seed.admin_token),
    )
    log = await client.get("/api/v1/audit-log", headers=bearer(seed.admin_token))
    assert log.status_code == 200
    items = log.json()["items"]
    actions = [i["action"] for i in items]
    assert "tenants.update" in actions
    assert "api_tokens.create" in actions
    assert "auth.login" in actions
    update = next(i for i in items if i["action"] == "tenants.update")
    assert update["summary"]["brand_primary"] == "#112233"
    assert update["actor_id"] == str(seed.admin_id)
    token_entry = next(i for i in items if i["action"] == "api_tokens.create")
    assert (
        "token_hash" not in token_entry["summary"]
        or token_entry["summary"]["token_hash"] == "changed"
    )


async def test_invitation_flow_creates_a_client_viewer(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    seed = await make_tenant(client, settings)
    acme = await make_client(db, seed.id, "Acme")
    invited = await client.post(
        "/api/v1/invitations",
        json={
            "email": "viewer@acme.example.com",
            "role": "client_viewer",
            "client_id": str(acme.id),
        },
        headers=bearer(seed.admin_token),
    )
    assert invited.status_code == 201, invited.text
    # The request queued the mail; the worker's job delivers it.
    await deliver_outbox(db, settings)
    mails = [
        mail
        for mail in (
            message_from_bytes(path.read_bytes(), policy=default)
            for path in sorted(settings.outbox_dir.glob("*.eml"))
        )
        if mail["To"] == "viewer@acme.example.com" and seed.slug in mail["Subject"]
    ]
    assert len(mails) == 1
    mail = mails[0]
    body = mail.get_body().get_content()
    token = body.split("token=")[1].split()[0]
    accepted = await client.post(
        "/api/v1/auth/invitations/accept", json={"token": token, "password": PASSWORD}
    )
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["client_id"] == str(acme.id)
    again = await client.post(
        "/api/v1/auth/invitations/accept", json={"token": token, "password": PASSWORD}
    )
    assert again.status_code == 400
    assert again.json()["code"] == "link_invalid"


async def test_client_viewer_role_needs_a_client(client: AsyncClient, settings: Settings) -> None:
    seed = await make_tenant(client, settings)
    response = await client.post(
        "/api/v1/invitations",
        json={"email": "v@example.com", "role": "client_viewer"},
        headers=bearer(seed.admin_token),
    )
    assert response.status_code == 422
    assert response.json()["field"] == "client_id"


async def test_rate_limited_login_says_when_to_retry(
    client: AsyncClient, settings: Settings
) -> None:
    seed = await make_tenant(client, settings)
    for _ in range(5):
        await client.post(
            "/api/v1/auth/token",
            json={"tenant": seed.slug, "email": seed.admin_email, "password": "wrong password!"},
        )
    locked = await client.post(
        "/api/v1/auth/token",
        json={"tenant": seed.slug, "email": seed.admin_email, "password": PASSWORD},
    )
    assert locked.status_code == 429
    assert locked.headers["retry-after"] == "900"


async def test_identity_provider_domains_are_normalised_not_refused(
    client: AsyncClient, settings: Settings
) -> None:
    seed = await make_tenant(client, settings)
    created = await client.post(
        "/api/v1/identity-providers",
        json={
            "name": "Corp SSO",
            "issuer": "https://idp.example.com",
            "oauth_client_id": "callpact",
            "oauth_client_secret": "s3cret",
            "allowed_domains": ["Acme.Example.COM"],
        },
        headers=bearer(seed.admin_token),
    )
    assert created.status_code == 201, created.text
    assert created.json()["allowed_domains"] == ["acme.example.com"]
