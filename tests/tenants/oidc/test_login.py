"""OIDC login against a real provider on loopback: provisioning, the two walls,
state handling, ID-token checks and an IdP that fails."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import select, update
from sqlmodel import col

from service.core.config import Settings
from service.core.db import Database
from tenants import oidc
from tenants.models import AuditEntry, Client
from tenants.security import token_digest
from tests.factories import bearer, make_client, make_tenant, make_user, platform_headers
from tests.tenants.oidc.flow import (
    at_provider,
    begin,
    configure,
    finish,
    login,
    person,
    state_of,
    users_with_email,
)
from tests.tenants.oidc.provider import DROP, OidcProvider

PROBLEM = "application/problem+json"


def assert_problem(response: object, status: int, code: str) -> None:
    from httpx import Response

    assert isinstance(response, Response)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["code"] == code
    assert "callpact_session" not in response.cookies


async def me(client: AsyncClient) -> dict[str, object]:
    response = await client.get("/api/v1/me")
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


# --- provisioning ------------------------------------------------------------------------


async def test_tenant_staff_login_provisions_user_with_mapped_role(
    client: AsyncClient, settings: Settings, db: Database, idp: OidcProvider
) -> None:
    seed = await make_tenant(client, settings)
    who = person(groups=["everyone", "cc-leads"])
    idp_id, registered = await configure(
        client,
        settings,
        seed,
        idp,
        who,
        role_claim="groups",
        role_map={"cc-leads": "supervisor", "cc-admins": "tenant_admin"},
    )
    done = await login(client, seed.slug, idp_id, return_to="/portal/reports?month=2026-10")
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/portal/reports?month=2026-10"
    cookie = done.headers.get_list("set-cookie")[0]
    assert cookie.startswith("callpact_session=")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie

    body = await me(client)
    assert body["role"] == "supervisor"
    assert body["tenant"]["id"] == str(seed.id)  # type: ignore[index]
    assert body["user"]["email"] == who.email  # type: ignore[index]
    assert body["user"]["client_id"] is None  # type: ignore[index]

    [user] = await users_with_email(db, who.email)
    assert (user.tenant_id, user.idp_id, user.idp_subject) == (seed.id, idp_id, who.sub)
    assert user.password_hash is None
    # The provider really received PKCE and client authentication.
    [request] = registered.token_requests
    assert request["auth"] == "basic"
    assert len(request["code_verifier"]) >= 43
    async with db.admin_transaction() as admin:
        login_events = list(
            (
                await admin.execute(
                    select(AuditEntry).where(
                        col(AuditEntry.tenant_id) == seed.id,
                        col(AuditEntry.action) == "auth.login",
                        col(AuditEntry.object_id) == str(user.id),
                    )
                )
            ).scalars()
        )
    assert [e.summary for e in login_events] == [{"method": "oidc", "idp": str(idp_id)}]
    assert login_events[0].actor_id == user.id


async def test_role_claim_is_authoritative_on_every_login(
    client: AsyncClient, settings: Settings, db: Database, idp: OidcProvider
) -> None:
    seed = await make_tenant(client, settings)
    who = person(realm_access={"roles": ["cc-admins"]})
    idp_id, _ = await configure(
        client,
        settings,
        seed,
        idp,
        who,
        role_claim="realm_access.roles",
        role_map={"cc-leads": "supervisor", "cc-admins": "tenant_admin"},
        default_role="analyst",
    )
    assert (await login(client, seed.slug, idp_id)).status_code == 303
    assert (await me(client))["role"] == "tenant_admin"
    # The IdP removes the admin group: the next login demotes to the default role.
    who.extra = {"realm_access": {"roles": []}}
    assert (await login(client, seed.slug, idp_id)).status_code == 303
    assert (await me(client))["role"] == "analyst"
    assert len(await users_with_email(db, who.email)) == 1


async def test_existing_staff_account_is_linked_by_email_then_found_by_subject(
    client: AsyncClient, settings: Settings, db: Database, idp: OidcProvider
) -> None:
    seed = await make_tenant(client, settings)
    who = person()
    existing = await make_user(db, seed.id, "supervisor", email=who.email.upper())
    idp_id, _ = await configure(client, settings, seed, idp, who)
    assert (await login(client, seed.slug, idp_id)).status_code == 303
    body = await me(client)
    assert body["user"]["id"] == str(existing.id)  # type: ignore[index]
    assert body["role"] == "supervisor"  # no role claim configured: the role stays
    # The person's address changes at the IdP; the subject still finds the account.
    old_email = who.email
    who.email = f"renamed.{who.sub}@{old_email.split('@')[1]}"
    assert (await login(client, seed.slug, idp_id)).status_code == 303
    assert (await me(client))["user"]["id"] == str(existing.id)  # type: ignore[index]
    assert await users_with_email(db, who.email) == []


async def test_es256_id_tokens_are_accepted(
    client: AsyncClient, settings: Settings, idp: OidcProvider
) -> None:
    seed = await make_tenant(client, settings)
    idp_id, _ = await configure(client, settings, seed, idp, person(), knobs={"sign_with": "es256"})
    assert (await login(client, seed.slug, idp_id)).status_code == 303


async def test_rotated_idp_keys_are_fetched_again(
    client: AsyncClient, settings: Settings, idp: OidcProvider
) -> None:
    seed = await make_tenant(client, settings)
    idp_id, _ = await configure(client, settings, seed, idp, person())
    assert (await login(client, seed.slug, idp_id)).status_code == 303
    # The JWKS is cached now; a token under a new kid makes the app read it again.
    idp.rotate_signing_key()
    assert (await login(client, seed.slug, idp_id)).status_code == 303


async def test_discovery_is_fetched_once_and_cached(
    client: AsyncClient, settings: Settings, idp: OidcProvider
) -> None:
    seed = await make_tenant(client, settings)
    idp_id, _ = await configure(client, settings, seed, idp, person())
    before = idp.discovery_hits
    for _ in range(3):
        assert (await login(client, seed.slug, idp_id)).status_code == 303
    assert idp.discovery_hits - before == 1


# --- the two walls -------------------------------------------------------------------------


async def test_client_provider_user_is_viewer_of_that_client_only(
    client: AsyncClient, settings: Settings, db: Database, idp: OidcProvider
) -> None:
    seed = await make_tenant(client, settings)
    client_x = await make_client(db, seed.id)
    await make_client(db, seed.id)
    # Even a role claim asking for admin cannot lift a client's staff.
    who = person(domain="client-x.example", groups=["admins"])
    idp_id, _ = await configure(
        client, settings, seed, idp, who, client_id=str(client_x.id), name="Client X SSO"
    )
    assert (await login(client, seed.slug, idp_id)).status_code == 303
    body = await me(client)
    assert body["role"] == "client_viewer"
    assert body["user"]["client_id"] == str(client_x.id)  # type: ignore[index]
    assert "tenant:admin" not in body["permissions"]  # type: ignore[operator]
    # Through the portal cookie the viewer cannot reach the tenant's configuration.
    denied = await client.get("/api/v1/identity-providers")
    assert denied.status_code == 403
    [user] = await users_with_email(db, who.email)
    assert (user.role, user.client_id, user.tenant_id) == ("client_viewer", client_x.id, seed.id)


async def test_client_x_provider_cannot_take_over_a_viewer_of_client_y(
    client: AsyncClient, settings: Settings, db: Database, idp: OidcProvider
) -> None:
    seed = await make_tenant(client, settings)
    client_x = await make_client(db, seed.id)
    client_y = await make_client(db, seed.id)
    who = person(domain="shared-domain.example")
    viewer_y = await make_user(db, seed.id, "client_viewer", client_id=client_y.id, email=who.email)
    idp_id, _ = await configure(client, settings, seed, idp, who, client_id=str(client_x.id))
    refused = await login(client, seed.slug, idp_id)
    assert_problem(refused, 403, "oidc_account_conflict")
    [user] = await users_with_email(db, who.email)
    assert (user.id, user.client_id, user.idp_id, user.idp_subject) == (
        viewer_y.id,
        client_y.id,
        None,
        None,
    )
    assert (await client.get("/api/v1/me")).status_code == 401


async def test_client_provider_cannot_take_over_tenant_staff(
    client: AsyncClient, settings: Settings, db: Database, idp: OidcProvider
) -> None:
    seed = await make_tenant(client, settings)
    client_x = await make_client(db, seed.id)
    who = person(domain="bpo.example")
    staff = await make_user(db, seed.id, "tenant_admin", email=who.email)
    idp_id, _ = await configure(client, settings, seed, idp, who, client_id=str(client_x.id))
    assert_problem(await login(client, seed.slug, idp_id), 403, "oidc_account_conflict")
    [user] = await users_with_email(db, who.email)
    assert (user.id, user.role, user.client_id, user.idp_id) == (
        staff.id,
        "tenant_admin",
        None,
        None,
    )


async def test_tenant_provider_cannot_take_over_a_client_viewer(
    client: AsyncClient, settings: Settings, db: Database, idp: OidcProvider
) -> None:
    seed = await make_tenant(client, settings)
    client_x = await make_client(db, seed.id)
    who = person(domain="client-x.example")
    viewer = await make_user(db, seed.id, "client_viewer", client_id=client_x.id, email=who.email)
    idp_id, _ = await configure(client, settings, seed, idp, who, default_role="tenant_admin")
    assert_problem(await login(client, seed.slug, idp_id), 403, "oidc_account_conflict")
    [user] = await users_with_email(db, who.email)
    assert (user.id, user.role, user.client_id) == (viewer.id, "client_viewer", client_x.id)


async def test_login_lands_in_the_providers_tenant_whatever_the_email(
    client: AsyncClient, settings: Settings, db: Database, idp: OidcProvider
) -> None:
    home = await make_tenant(client, settings)
    elsewhere = await make_tenant(client, settings)
    client_x = await make_client(db, home.id)
    who = person(domain="client-x.example")
    # The same address is a tenant admin of another tenant.
    other_admin = await make_user(db, elsewhere.id, "tenant_admin", email=who.email)
    idp_id, _ = await configure(client, settings, home, idp, who, client_id=str(client_x.id))

    # The provider of one tenant cannot be reached under another tenant's slug.
    assert_problem(await begin(client, elsewhere.slug, idp_id), 404, "not_found")

    assert (await login(client, home.slug, idp_id)).status_code == 303
    body = await me(client)
    assert body["tenant"]["id"] == str(home.id)  # type: ignore[index]
    assert body["role"] == "client_viewer"
    accounts = {u.tenant_id: u for u in await users_with_email(db, who.email)}
    assert set(accounts) == {home.id, elsewhere.id}
    untouched = accounts[elsewhere.id]
    assert (untouched.id, untouched.role, untouched.idp_id) == (
        other_admin.id,
        "tenant_admin",
        None,
    )


# --- state -----------------------------------------------------------------------------------


async def test_replayed_state_is_refused(
    client: AsyncClient, app: FastAPI, settings: Settings, idp: OidcProvider
) -> None:
    seed = await make_tenant(client, settings)
    idp_id, _ = await configure(client, settings, seed, idp, person())
    start = await begin(client, seed.slug, idp_id)
    binding = start.cookies[oidc.BROWSER_COOKIE]
    callback_url = await at_provider(start.headers["location"])
    assert (await finish(client, callback_url)).status_code == 303
    # Even from the browser that began it (binding cookie and all), a state works once.
    async with AsyncClient(
        transport=ASGITransport(app=app),
        base_url="http://test",
        cookies={oidc.BROWSER_COOKIE: binding},
    ) as same_browser:
        assert_problem(await finish(same_browser, callback_url), 400, "oidc_state_invalid")


async def test_unknown_and_missing_state_are_refused(client: AsyncClient) -> None:
    assert_problem(
        await client.get("/api/v1/auth/oidc/callback", params={"code": "x", "state": "forged"}),
        400,
        "oidc_state_invalid",
    )
    assert_problem(
        await client.get("/api/v1/auth/oidc/callback", params={"code": "x"}),
        400,
        "oidc_state_invalid",
    )


async def test_expired_state_is_refused(
    client: AsyncClient, settings: Settings, db: Database, idp: OidcProvider, redis: object
) -> None:
    seed = await make_tenant(client, settings)
    who = person()
    idp_id, _ = await configure(client, settings, seed, idp, who)
    start = await begin(client, seed.slug, idp_id)
    key = f"callpact:oidc:state:{token_digest(state_of(start.headers['location']))}"
    ttl = await redis.ttl(key)  # type: ignore[attr-defined]
    assert 0 < ttl <= oidc.STATE_TTL_S
    record = json.loads(await redis.get(key))  # type: ignore[attr-defined]
    record["created"] = time.time() - oidc.STATE_TTL_S - 1
    await redis.set(key, json.dumps(record), ex=ttl)  # type: ignore[attr-defined]
    callback_url = await at_provider(start.headers["location"])
    assert_problem(await finish(client, callback_url), 400, "oidc_state_invalid")
    assert await users_with_email(db, who.email) == []


async def test_callback_in_another_browser_is_refused(
    client: AsyncClient, app: FastAPI, settings: Settings, db: Database, idp: OidcProvider
) -> None:
    seed = await make_tenant(client, settings)
    who = person()
    idp_id, _ = await configure(client, settings, seed, idp, who)
    start = await begin(client, seed.slug, idp_id)
    callback_url = await at_provider(start.headers["location"])
    # A victim's browser, lured to the attacker's callback URL, has no binding cookie.
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as victim:
        assert_problem(await finish(victim, callback_url), 400, "oidc_state_invalid")
    assert await users_with_email(db, who.email) == []


@pytest.mark.parametrize(
    "return_to",
    [
        "//evil.example/x",
        "https://evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
        "portal",
    ],
)
async def test_return_to_must_stay_on_this_site(
    client: AsyncClient, settings: Settings, idp: OidcProvider, return_to: str
) -> None:
    seed = await make_tenant(client, settings)
    idp_id, _ = await configure(client, settings, seed, idp, person())
    refused = await begin(client, seed.slug, idp_id, return_to)
    assert_problem(refused, 422, "invalid_return_to")
    assert refused.json()["field"] == "return_to"


# --- the ID token ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "knobs",
    [
        pytest.param({"claims_override": {"nonce": "not-the-nonce"}}, id="wrong-nonce"),
        pytest.param({"claims_override": {"nonce": DROP}}, id="no-nonce"),
        pytest.param({"claims_override": {"aud": "someone-else"}}, id="wrong-audience"),
        pytest.param({"claims_override": {"aud": ["someone-else", "another"]}}, id="audience-list"),
        pytest.param({"claims_override": {"iss": "https://evil.example"}}, id="wrong-issuer"),
        pytest.param(
            {"claims_override": {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}},
            id="expired",
        ),
        pytest.param({"claims_override": {"iat": DROP}}, id="no-iat"),
        pytest.param({"claims_override": {"sub": DROP}}, id="no-subject"),
        pytest.param({"sign_with": "rogue"}, id="key-not-in-jwks"),
        pytest.param({"sign_with": "hs256"}, id="hs256-not-allowed"),
    ],
)
async def test_bad_id_tokens_are_refused(
    client: AsyncClient,
    settings: Settings,
    db: Database,
    idp: OidcProvider,
    knobs: dict[str, object],
) -> None:
    seed = await make_tenant(client, settings)
    who = person()
    idp_id, _ = await configure(client, settings, seed, idp, who, knobs=knobs)
    assert_problem(await login(client, seed.slug, idp_id), 401, "oidc_token_invalid")
    assert await users_with_email(db, who.email) == []


async def test_audience_list_with_us_and_azp_is_accepted(
    client: AsyncClient, settings: Settings, idp: OidcProvider
) -> None:
    seed = await make_tenant(client, settings)
    who = person()
    idp_id, registered = await configure(client, settings, seed, idp, who)
    registered.claims_override = {
        "aud": [registered.client_id, "api://other"],
        "azp": registered.client_id,
    }
    assert (await login(client, seed.slug, idp_id)).status_code == 303
    registered.claims_override = {"aud": [registered.client_id, "api://other"], "azp": "other"}
    assert_problem(await login(client, seed.slug, idp_id), 401, "oidc_token_invalid")


async def test_email_outside_allowed_domains_or_unverified_is_refused(
    client: AsyncClient, settings: Settings, db: Database, idp: OidcProvider
) -> None:
    seed = await make_tenant(client, settings)
    who = person(domain="gmail.example")
    idp_id, _ = await configure(
        client, settings, seed, idp, who, allowed_domains=["staff.example.com"]
    )
    assert_problem(await login(client, seed.slug, idp_id), 403, "oidc_email_not_allowed")

    unverified = person()
    unverified.email_verified = False
    idp_id, _ = await configure(client, settings, seed, idp, unverified)
    assert_problem(await login(client, seed.slug, idp_id), 403, "oidc_email_not_allowed")

    no_email = person()
    idp_id, registered = await configure(client, settings, seed, idp, no_email)
    registered.claims_override = {"email": DROP}
    assert_problem(await login(client, seed.slug, idp_id), 403, "oidc_email_not_allowed")
    for address in (who.email, unverified.email, no_email.email):
        assert await users_with_email(db, address) == []


# --- refusals ----------------------------------------------------------------------------------


async def test_disabled_provider_is_refused_at_start_and_at_callback(
    client: AsyncClient, settings: Settings, db: Database, idp: OidcProvider
) -> None:
    seed = await make_tenant(client, settings)
    who = person()
    idp_id, _ = await configure(client, settings, seed, idp, who)
    start = await begin(client, seed.slug, idp_id)
    callback_url = await at_provider(start.headers["location"])
    disable = await client.patch(
        f"/api/v1/identity-providers/{idp_id}",
        json={"enabled": False},
        headers=bearer(seed.admin_token),
    )
    assert disable.status_code == 200
    assert_problem(await finish(client, callback_url), 403, "oidc_provider_disabled")
    assert_problem(await begin(client, seed.slug, idp_id), 403, "oidc_provider_disabled")
    assert await users_with_email(db, who.email) == []


async def test_provider_of_an_inactive_client_is_refused(
    client: AsyncClient, settings: Settings, db: Database, idp: OidcProvider
) -> None:
    seed = await make_tenant(client, settings)
    customer = await make_client(db, seed.id)
    idp_id, _ = await configure(client, settings, seed, idp, person(), client_id=str(customer.id))
    assert (await begin(client, seed.slug, idp_id)).status_code == 302
    async with db.admin_transaction() as admin:
        await admin.execute(
            update(Client).where(col(Client.id) == customer.id).values(status="inactive")
        )
    assert_problem(await begin(client, seed.slug, idp_id), 403, "oidc_provider_disabled")


async def test_disabled_user_and_suspended_tenant_are_refused(
    client: AsyncClient, settings: Settings, db: Database, idp: OidcProvider
) -> None:
    seed = await make_tenant(client, settings)
    who = person()
    idp_id, _ = await configure(client, settings, seed, idp, who)
    assert (await login(client, seed.slug, idp_id)).status_code == 303
    [user] = await users_with_email(db, who.email)
    disabled = await client.patch(
        f"/api/v1/users/{user.id}", json={"status": "disabled"}, headers=bearer(seed.admin_token)
    )
    assert disabled.status_code == 200, disabled.text
    client.cookies.clear()
    assert_problem(await login(client, seed.slug, idp_id), 401, "account_disabled")

    other = person()
    idp_id, _ = await configure(client, settings, seed, idp, other)
    start = await begin(client, seed.slug, idp_id)
    callback_url = await at_provider(start.headers["location"])
    suspended = await client.post(
        f"/api/v1/platform/tenants/{seed.id}/suspend", headers=platform_headers(settings)
    )
    assert suspended.status_code == 200
    assert_problem(await finish(client, callback_url), 401, "tenant_suspended")
    assert_problem(await begin(client, seed.slug, idp_id), 401, "tenant_suspended")
    assert await users_with_email(db, other.email) == []


async def test_unknown_tenant_or_provider_is_404(client: AsyncClient, settings: Settings) -> None:
    seed = await make_tenant(client, settings)
    assert_problem(await begin(client, seed.slug, uuid.uuid4()), 404, "not_found")
    assert_problem(await begin(client, "no-such-tenant", uuid.uuid4()), 404, "not_found")


async def test_a_nul_character_in_the_tenant_slug_is_422_naming_it(client: AsyncClient) -> None:
    """Was a 422 `unstorable_value` from the database, naming no field (found by
    tests/security/test_api_fuzz.py): the slug was looked up as sent."""
    response = await client.get(f"/api/v1/auth/oidc/a%00b/{uuid.uuid4()}/login")
    assert_problem(response, 422, "validation_failed")
    assert response.json()["field"] == "tenant_slug"


async def test_idp_refusal_and_rejected_code_are_401(
    client: AsyncClient, settings: Settings, db: Database, idp: OidcProvider
) -> None:
    seed = await make_tenant(client, settings)
    who = person()
    idp_id, _ = await configure(client, settings, seed, idp, who, knobs={"deny": "access_denied"})
    assert_problem(await login(client, seed.slug, idp_id), 401, "oidc_authorization_denied")

    idp_id, _ = await configure(client, settings, seed, idp, who)
    start = await begin(client, seed.slug, idp_id)
    callback_url = await at_provider(start.headers["location"])
    forged = callback_url.replace("code=", "code=tampered", 1)
    assert_problem(await finish(client, forged), 401, "oidc_code_rejected")
    assert await users_with_email(db, who.email) == []


# --- an IdP that does not answer ---------------------------------------------------------------


def _dead_issuer() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def test_unreachable_idp_is_a_502_problem(
    client: AsyncClient, settings: Settings, idp: OidcProvider
) -> None:
    seed = await make_tenant(client, settings)
    idp_id, _ = await configure(client, settings, seed, idp, person(), issuer=_dead_issuer())
    assert_problem(await begin(client, seed.slug, idp_id), 502, "oidc_provider_unavailable")


async def test_failing_token_endpoint_is_a_502_problem(
    client: AsyncClient, settings: Settings, db: Database, idp: OidcProvider
) -> None:
    seed = await make_tenant(client, settings)
    who = person()
    idp_id, _ = await configure(client, settings, seed, idp, who, knobs={"token_status": 503})
    assert_problem(await login(client, seed.slug, idp_id), 502, "oidc_provider_unavailable")
    assert await users_with_email(db, who.email) == []


async def test_hanging_token_endpoint_times_out_as_a_502_problem(
    client: AsyncClient,
    settings: Settings,
    idp: OidcProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(oidc, "HTTP_TIMEOUT_S", 0.3)
    seed = await make_tenant(client, settings)
    idp_id, _ = await configure(client, settings, seed, idp, person(), knobs={"token_delay_s": 2})
    started = time.monotonic()
    assert_problem(await login(client, seed.slug, idp_id), 502, "oidc_provider_unavailable")
    assert time.monotonic() - started < 2


async def test_wrong_issuer_in_discovery_is_refused(
    client: AsyncClient, settings: Settings, idp: OidcProvider
) -> None:
    seed = await make_tenant(client, settings)
    # The provider answers discovery for its own issuer, not for this path-suffixed one.
    idp_id, _ = await configure(
        client, settings, seed, idp, person(), issuer=f"{idp.issuer}/tenant-x"
    )
    assert_problem(await begin(client, seed.slug, idp_id), 502, "oidc_provider_misconfigured")
