"""The browser's side of an OIDC login, and helpers to set a provider up."""

from __future__ import annotations

import secrets
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlmodel import col

from service.core.config import Settings
from service.core.db import Database
from tenants.models import User
from tenants.oidc import redirect_uri
from tests.factories import TenantSeed, bearer
from tests.tenants.oidc.provider import OidcProvider, Person, RegisteredClient


def person(domain: str = "staff.example.com", **extra: Any) -> Person:
    tag = secrets.token_hex(4)
    return Person(sub=f"sub-{tag}", email=f"pat.{tag}@{domain}", extra=extra)


async def configure(
    client: AsyncClient,
    settings: Settings,
    seed: TenantSeed,
    idp: OidcProvider,
    who: Person,
    *,
    knobs: dict[str, Any] | None = None,
    **fields: Any,
) -> tuple[uuid.UUID, RegisteredClient]:
    """Register an OAuth client at the provider and the matching provider in the tenant."""
    registered = idp.register(who, redirect_uri=redirect_uri(settings), **(knobs or {}))
    body = {
        "name": "Staff SSO",
        "issuer": idp.issuer,
        "oauth_client_id": registered.client_id,
        "oauth_client_secret": registered.client_secret,
        "allowed_domains": [who.email.split("@")[1]],
        **fields,
    }
    response = await client.post(
        "/api/v1/identity-providers", json=body, headers=bearer(seed.admin_token)
    )
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"]), registered


async def begin(
    client: AsyncClient, slug: str, idp_id: uuid.UUID, return_to: str = "/portal"
) -> httpx.Response:
    return await client.get(
        f"/api/v1/auth/oidc/{slug}/{idp_id}/login", params={"return_to": return_to}
    )


async def at_provider(authorize_url: str) -> str:
    """What the browser does at the IdP: follow to /authorize, return the redirect back."""
    async with httpx.AsyncClient(timeout=10) as browser:
        response = await browser.get(authorize_url)
    assert response.status_code == 302, response.text
    return response.headers["location"]


async def finish(client: AsyncClient, callback_url: str) -> httpx.Response:
    """Hand the IdP's redirect to the app (the app's public URL is not where the test runs it)."""
    parts = urlsplit(callback_url)
    return await client.get(f"{parts.path}?{parts.query}")


async def login(
    client: AsyncClient, slug: str, idp_id: uuid.UUID, return_to: str = "/portal"
) -> httpx.Response:
    start = await begin(client, slug, idp_id, return_to)
    assert start.status_code == 302, start.text
    return await finish(client, await at_provider(start.headers["location"]))


def state_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["state"][0]


async def users_with_email(db: Database, email: str) -> list[User]:
    async with db.admin_transaction() as admin:
        rows = await admin.execute(select(User).where(func.lower(col(User.email)) == email.lower()))
        return list(rows.scalars())
