"""A real OIDC provider on loopback for the whole run; tests register their own clients."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.core.config import OidcSettings, Settings
from tenants import oidc
from tests.tenants.oidc.provider import OidcProvider


@pytest.fixture(scope="session")
def settings(settings: Settings) -> Settings:
    """The fake provider listens on loopback over http, which the server refuses to fetch
    unless OIDC_ALLOW_PRIVATE_ISSUERS is on: on for these tests (test_ssrf.py turns it off)."""
    return settings.model_copy(update={"oidc": OidcSettings(allow_private_issuers=True)})


@pytest.fixture(scope="session")
def idp() -> Iterator[OidcProvider]:
    provider = OidcProvider()
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture(autouse=True)
def _fresh_documents() -> None:
    # Discovery and JWKS are cached per process; each test starts without them,
    # so that one test's cached documents cannot make another pass.
    oidc._discovery.clear()
    oidc._jwks.clear()
