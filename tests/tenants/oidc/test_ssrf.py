"""A tenant admin cannot aim the server at its own network through an issuer URL (SSRF):
the issuer and every URL the server fetches must be https on a public address, unless
OIDC_ALLOW_PRIVATE_ISSUERS says otherwise. Name resolution is stubbed: it leaves the machine."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from httpx import AsyncClient

from service.core.config import Environment, OidcSettings, Settings
from service.core.db import Database
from service.core.errors import PROBLEM_JSON
from tenants import oidc
from tenants.models import IdentityProvider
from tenants.oidc import (
    OidcProviderMisconfigured,
    RemotePolicy,
    check_issuer,
    is_public_address,
    url_refusal,
)
from tenants.security import encrypt
from tests.factories import bearer, make_tenant
from tests.tenants.oidc.provider import OidcProvider

PUBLIC = "93.184.215.14"
STRICT = RemotePolicy(allow_private=False, require_https=True)
NAMES = {
    "login.acme-sso.com": [PUBLIC, "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    "sso.internal.acme-sso.com": ["10.20.0.7"],
    "split.acme-sso.com": [PUBLIC, "192.168.1.10"],  # one private address is enough
    "rebind.acme-sso.com": ["::ffff:169.254.169.254"],
}


@pytest.fixture(scope="session")
def settings(settings: Settings) -> Settings:
    """The production default: private issuers refused."""
    return settings.model_copy(update={"oidc": OidcSettings(allow_private_issuers=False)})


@pytest.fixture(autouse=True)
def resolver(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        if host not in NAMES:
            raise OSError(f"unknown host {host}")
        return NAMES[host]

    monkeypatch.setattr(oidc, "_resolve", resolve)
    return asked


REFUSED = [
    pytest.param("https://169.254.169.254/latest/meta-data", "issuer_not_public", id="metadata"),
    pytest.param("https://127.0.0.1:6379/", "issuer_not_public", id="loopback"),
    pytest.param("https://10.1.2.3/realms/acme", "issuer_not_public", id="private-10"),
    pytest.param("https://[::1]/", "issuer_not_public", id="ipv6-loopback"),
    pytest.param("https://[::ffff:127.0.0.1]/", "issuer_not_public", id="ipv4-mapped-loopback"),
    pytest.param("https://0.0.0.0/", "issuer_not_public", id="unspecified"),
    pytest.param("https://sso.internal.acme-sso.com", "issuer_not_public", id="name-to-private"),
    pytest.param("https://split.acme-sso.com", "issuer_not_public", id="one-address-private"),
    pytest.param("https://rebind.acme-sso.com", "issuer_not_public", id="name-to-mapped-meta"),
    pytest.param("http://login.acme-sso.com", "insecure_issuer", id="http-scheme"),
    pytest.param("http://169.254.169.254/", "insecure_issuer", id="http-metadata"),
]


@pytest.mark.parametrize(("issuer", "code"), REFUSED)
async def test_an_issuer_inside_the_network_is_refused(
    client: AsyncClient, settings: Settings, issuer: str, code: str
) -> None:
    seed = await make_tenant(client, settings)
    response = await client.post(
        "/api/v1/identity-providers",
        json={
            "name": "Staff SSO",
            "issuer": issuer,
            "oauth_client_id": "callpact",
            "oauth_client_secret": "s3cret",
            "allowed_domains": ["acme-sso.com"],
        },
        headers=bearer(seed.admin_token),
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body = response.json()
    assert body["code"] == code
    assert body["field"] == "issuer"
    listed = await client.get("/api/v1/identity-providers", headers=bearer(seed.admin_token))
    assert listed.json() == []


async def test_a_public_https_issuer_is_accepted(
    client: AsyncClient, settings: Settings, resolver: list[str]
) -> None:
    seed = await make_tenant(client, settings)
    response = await client.post(
        "/api/v1/identity-providers",
        json={
            "name": "Staff SSO",
            "issuer": "https://login.acme-sso.com/realms/staff",
            "oauth_client_id": "callpact",
            "oauth_client_secret": "s3cret",
            "allowed_domains": ["acme-sso.com"],
        },
        headers=bearer(seed.admin_token),
    )
    assert response.status_code == 201, response.text
    assert resolver == ["login.acme-sso.com"]


@pytest.mark.parametrize(
    ("url", "refusal"),
    [
        ("https://login.acme-sso.com/", None),
        ("https://93.184.215.14/", None),
        ("https://169.254.169.254/", "not_public"),
        ("https://100.64.0.1/", "not_public"),  # carrier-grade NAT: not global
        ("https://224.0.0.1/", "not_public"),
        ("https://240.0.0.1/", "not_public"),
        ("https://[fe80::1]/", "not_public"),
        ("https://[fc00::1]/", "not_public"),
        ("https://nowhere.acme-sso.com/", "unresolvable"),
        ("ftp://login.acme-sso.com/", "insecure"),
        ("https:///no-host", "insecure"),
        ("https://login.acme-sso.com:notaport/", "insecure"),
    ],
)
async def test_url_refusal(url: str, refusal: str | None) -> None:
    assert await url_refusal(url, STRICT) == refusal


def test_public_addresses() -> None:
    assert is_public_address(PUBLIC)
    assert is_public_address("2606:2800:21f:cb07:6820:80da:af6b:8b2c")
    for inside in ("127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.0.1", "::1", "fe80::1%eth0"):
        assert not is_public_address(inside), inside


async def test_the_setting_allows_a_private_issuer_and_http_outside_production(
    resolver: list[str],
) -> None:
    await check_issuer(
        "http://127.0.0.1:8080", RemotePolicy(allow_private=True, require_https=False)
    )
    await check_issuer("https://10.1.2.3", RemotePolicy(allow_private=True, require_https=True))
    assert resolver == []  # allowed without asking where the name points
    with pytest.raises(oidc.InsecureIssuer):
        await check_issuer("http://10.1.2.3", RemotePolicy(allow_private=True, require_https=True))


def test_the_policy_follows_the_settings(settings: Settings) -> None:
    assert oidc.remote_policy(settings) == STRICT
    allowed = settings.model_copy(update={"oidc": OidcSettings(allow_private_issuers=True)})
    assert oidc.remote_policy(allowed) == RemotePolicy(allow_private=True, require_https=False)
    production = allowed.model_copy(update={"env": Environment.production})
    assert oidc.remote_policy(production).require_https


async def test_a_stored_private_issuer_is_not_fetched_at_login(
    client: AsyncClient, settings: Settings, db: Database, idp: OidcProvider
) -> None:
    """A provider stored before the check, or while the setting was on, is checked again
    before each fetch: the login is a 502 and the provider never hears from us."""
    seed = await make_tenant(client, settings)
    async with db.admin_transaction() as admin:
        provider = IdentityProvider(
            tenant_id=seed.id,
            name="Staff SSO",
            issuer=idp.issuer,  # http://127.0.0.1:…
            oauth_client_id="callpact",
            client_secret_enc=encrypt(
                settings.auth.secret_key.get_secret_value(), b"s3cret", oidc.SECRET_PURPOSE
            ),
            allowed_domains=["acme-sso.com"],
        )
        admin.add(provider)
    hits = idp.discovery_hits
    response = await client.get(
        f"/api/v1/auth/oidc/{seed.slug}/{provider.id}/login", params={"return_to": "/portal"}
    )
    assert response.status_code == 502, response.text
    assert response.json()["code"] == "oidc_provider_misconfigured"
    assert idp.discovery_hits == hits


@pytest.mark.parametrize(
    "target", ["http://127.0.0.1:6379/", "https://169.254.169.254/", "https://[::1]/keys"]
)
async def test_documents_and_the_token_endpoint_are_checked_before_each_fetch(
    settings: Settings, target: str
) -> None:
    """jwks_uri and token_endpoint come from the provider's discovery document: a public
    issuer could name an inside address there."""
    with pytest.raises(OidcProviderMisconfigured):
        await oidc._key_set(target, STRICT)
    provider = IdentityProvider(
        tenant_id=uuid.uuid4(),
        name="x",
        issuer="https://login.acme-sso.com",
        oauth_client_id="callpact",
        client_secret_enc=b"",
        allowed_domains=["acme-sso.com"],
    )
    metadata: dict[str, Any] = {"token_endpoint": target}
    with pytest.raises(OidcProviderMisconfigured):
        await oidc._exchange_code(provider, metadata, settings, "code", "verifier")
