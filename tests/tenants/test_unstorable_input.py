"""Input the database cannot store, sent to the tenancy routes: each is refused by the
schema with a 422 naming the field, and nothing is written. Each test is a regression
test of a defect found by tests/security/test_api_fuzz.py: a 500, or a 422
`unstorable_value` from the database's safety net that named no field."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient, Response

from service.core.config import Settings
from service.core.db import Database
from tests.factories import PASSWORD, bearer, make_tenant, make_user, platform_headers

PROBLEM = "application/problem+json"


def refused(response: Response, field: str) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM, response.headers
    body: dict[str, Any] = response.json()
    assert (body["code"], body["field"]) == ("validation_failed", field), body
    return body


async def test_a_null_role_is_422_not_500_and_the_user_is_unchanged(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """`{"role": null}` was a 500: the service set the role to NULL and the database's
    not-null constraint refused it. Left out means unchanged; null is refused."""
    seed = await make_tenant(client, settings)
    headers = bearer(seed.admin_token)
    user = await make_user(db, seed.id, "analyst")
    url = f"/api/v1/users/{user.id}"
    before = (await client.get(url, headers=headers)).json()
    for body in ({"role": None}, {"role": None, "status": "disabled", "display_name": "x"}):
        refused(await client.patch(url, json=body, headers=headers), "role")
    assert (await client.get(url, headers=headers)).json() == before
    unbound = await client.patch(url, json={"client_id": None}, headers=headers)
    assert unbound.status_code == 200, unbound.text


async def test_a_nul_character_is_422_naming_the_field(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    seed = await make_tenant(client, settings)
    headers = bearer(seed.admin_token)
    user = await make_user(db, seed.id, "analyst")
    user_url = f"/api/v1/users/{user.id}"
    user_before = (await client.get(user_url, headers=headers)).json()
    tenant_before = (await client.get("/api/v1/tenant", headers=headers)).json()

    refused(
        await client.patch(user_url, json={"display_name": "a\x00b"}, headers=headers),
        "display_name",
    )
    refused(
        await client.patch("/api/v1/tenant", json={"report_footer": "a\x00b"}, headers=headers),
        "report_footer",
    )
    refused(
        await client.get("/api/v1/audit-log", params={"action": "a\x00b"}, headers=headers),
        "action",
    )
    slug = f"{seed.slug}-nul"
    refused(
        await client.post(
            "/api/v1/platform/tenants",
            json={
                "slug": slug,
                "name": "BPO",
                "admin": {"email": "a@example.com", "password": PASSWORD, "display_name": "\x00"},
            },
            headers=platform_headers(settings),
        ),
        "admin.display_name",
    )

    assert (await client.get(user_url, headers=headers)).json() == user_before
    assert (await client.get("/api/v1/tenant", headers=headers)).json() == tenant_before
    tenants = await client.get("/api/v1/platform/tenants", headers=platform_headers(settings))
    assert slug not in {t["slug"] for t in tenants.json()}
