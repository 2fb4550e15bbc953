"""OIDC login for tenant staff and client staff, and the configuration of
identity providers.

Invariants held here:

* **The tenant and client of a login come from the provider the login
  started at**, stored with the state in Redis — never from the e-mail or any
  other claim. A client provider only ever yields a `client_viewer` of its
  own client; a tenant provider never yields a `client_viewer`. An existing
  account is linked only when its binding fits the provider (tenant staff
  through a tenant provider, a viewer of client X through X's provider);
  anything else is a 403 and nothing is written.
* **State is single use, short-lived and bound to the browser** that started
  the login: Redis `GETDEL` consumes it, it expires after 10 minutes, and the
  callback must carry the cookie set at the start (so an attacker cannot
  make a victim's browser finish the attacker's login).
* **The ID token is checked in full** with joserfc against the provider's
  JWKS: an allow-listed algorithm (RS256, ES256), no header-supplied keys,
  the signature, `iss` equal to the configured issuer, `aud` containing our
  client id (and `azp` when there are several audiences), `exp`, `iat`,
  `sub`, and `nonce` equal to the one stored with the state.
* **The IdP is a remote party**: every call has a timeout and a size cap, and
  its failures are 502 problems, never a 500.
* **A tenant admin cannot aim the server at the inside** (SSRF): the issuer
  and every URL the server itself fetches (discovery, JWKS, token endpoint)
  must be https on a host whose every address is public — no loopback,
  private, link-local (cloud metadata), multicast, reserved or unspecified
  address. Checked when the provider is registered and again before each
  fetch (the name may resolve elsewhere since). `OIDC_ALLOW_PRIVATE_ISSUERS`
  lifts this for an IdP inside the network (and allows http outside
  production).
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import ipaddress
import json
import secrets
import socket
import time
import uuid
import warnings
from dataclasses import asdict, dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
from cryptography.exceptions import InvalidTag
from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.responses import RedirectResponse
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from pydantic import Field, StringConstraints
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from service.core.config import Environment, Settings
from service.core.db import DbScope, SessionDep, set_scope
from service.core.errors import (
    AppError,
    DependencyUnavailable,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthorized,
)
from service.core.time import utcnow
from tenants import schemas
from tenants.audit import ACTOR_KEY, record_event
from tenants.context import TenantContext, ensure_visible, scoped
from tenants.deps import AccountDisabled, AdminSessionDep, TenantSuspended, require
from tenants.errors import InvalidRoleBinding
from tenants.models import Client, IdentityProvider, Tenant, User
from tenants.portal_session import open_session
from tenants.security import decrypt, encrypt, token_digest

# Authlib warns at import that it would rather use the `httpx2` package; the
# `httpx` it falls back to is the one this project depends on. Its warning
# module installs an "always" filter when first imported, so import it before
# ours is put in front.
importlib.import_module("authlib.deprecate")
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from authlib.integrations.base_client import OAuthError
    from authlib.integrations.httpx_client import AsyncOAuth2Client
    from authlib.oauth2.rfc7636 import create_s256_code_challenge

idp_router = APIRouter(tags=["identity providers"])
oidc_router = APIRouter(prefix="/auth/oidc", tags=["auth"])

CALLBACK_PATH = "/api/v1/auth/oidc/callback"
SECRET_PURPOSE = b"idp-secret"
STATE_TTL_S = 600
METADATA_TTL_S = 3600
HTTP_TIMEOUT_S = 5.0
MAX_DOCUMENT_BYTES = 512 * 1024
LEEWAY_S = 60
ALGORITHMS = ("RS256", "ES256")
SCOPE = "openid email profile"
BROWSER_COOKIE = "callpact_oidc"
_FORBIDDEN_HEADERS = frozenset({"jku", "jwk", "x5u", "x5c", "crit"})
# Most privileged first: a role claim with several mapped values yields the highest.
_STAFF_ROLES = ("tenant_admin", "supervisor", "analyst")


# --- errors ----------------------------------------------------------------------------


class OidcStateInvalid(AppError):
    status = 400
    code = "oidc_state_invalid"
    title = "Login state invalid or expired"


class OidcAuthorizationDenied(Unauthorized):
    code = "oidc_authorization_denied"
    title = "The identity provider did not authorize the login"


class OidcCodeRejected(Unauthorized):
    code = "oidc_code_rejected"
    title = "The identity provider refused the authorization code"


class OidcTokenInvalid(Unauthorized):
    code = "oidc_token_invalid"
    title = "ID token invalid"


class OidcEmailNotAllowed(Forbidden):
    code = "oidc_email_not_allowed"
    title = "E-mail not allowed"


class OidcProviderDisabled(Forbidden):
    code = "oidc_provider_disabled"
    title = "Identity provider disabled"


class OidcAccountConflict(Forbidden):
    code = "oidc_account_conflict"
    title = "Account cannot be linked"


class OidcLoginConflict(AppError):
    status = 409
    code = "oidc_login_conflict"
    title = "Concurrent first login"


class OidcProviderUnavailable(AppError):
    status = 502
    retry_after_s = 30
    code = "oidc_provider_unavailable"
    title = "Identity provider unavailable"


class OidcProviderMisconfigured(AppError):
    status = 502
    code = "oidc_provider_misconfigured"
    title = "Identity provider misconfigured"


class InvalidReturnTo(InvalidInput):
    code = "invalid_return_to"
    title = "return_to must be a relative path"


class UnknownClient(InvalidInput):
    code = "unknown_client"
    title = "No such client"


class InsecureIssuer(InvalidInput):
    code = "insecure_issuer"
    title = "Issuer must use https"


class IssuerNotPublic(InvalidInput):
    code = "issuer_not_public"
    title = "Issuer must be a public host"


# --- schemas -----------------------------------------------------------------------------


class IdentityProviderView(schemas.IdentityProviderRead):
    """A provider as its admin sees it: never the secret; with what to give the IdP."""

    redirect_uri: str = Field(description="Register this redirect URI at the provider.")
    login_url: str = Field(description="Where the portal sends people to log in with it.")


ReturnTo = Annotated[str, StringConstraints(max_length=2000)]


# --- what the server may fetch (SSRF) ----------------------------------------------------------


@dataclass(frozen=True)
class RemotePolicy:
    """Which URLs of a provider the server may fetch."""

    allow_private: bool
    require_https: bool


def remote_policy(settings: Settings) -> RemotePolicy:
    allow_private = settings.oidc.allow_private_issuers
    return RemotePolicy(
        allow_private=allow_private,
        require_https=settings.env is Environment.production or not allow_private,
    )


async def _resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (tests replace this: resolution leaves the machine)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback
    return ip.is_global and not (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


async def url_refusal(url: str, policy: RemotePolicy) -> str | None:
    """Why the server must not fetch `url`: "insecure" (scheme), "unresolvable" or
    "not_public" (some address of the host is not public); None when it may."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http" and not policy.require_https):
        return "insecure"
    try:
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is not a number
        return "insecure"
    if not host:
        return "insecure"
    if policy.allow_private:
        return None
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            addresses = await asyncio.wait_for(
                _resolve(host, port or (443 if parts.scheme == "https" else 80)), HTTP_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            return "unresolvable"
    if not addresses or not all(is_public_address(a) for a in addresses):
        return "not_public"
    return None


async def _ensure_fetchable(url: str, policy: RemotePolicy, what: str) -> None:
    """Refuse to fetch a URL that could reach the inside; checked right before each fetch."""
    refusal = await url_refusal(url, policy)
    if refusal == "unresolvable":
        raise OidcProviderUnavailable(f"The provider's {what} host does not resolve.")
    if refusal == "insecure":
        raise OidcProviderMisconfigured(f"The provider's {what} must be an https URL.")
    if refusal == "not_public":
        raise OidcProviderMisconfigured(
            f"The provider's {what} resolves to a private or reserved address; the server "
            "does not fetch it (OIDC_ALLOW_PRIVATE_ISSUERS allows it)."
        )


# --- remote documents: discovery and JWKS, cached per process ---------------------------------


@dataclass
class _Cached:
    value: dict[str, Any]
    fetched: float


class _DocumentCache:
    """Discovery documents and key sets by URL, for `ttl` seconds. Bounded, so
    that many configured issuers cannot grow it without limit."""

    def __init__(self, ttl: float, max_items: int = 1024) -> None:
        self.ttl = ttl
        self.max_items = max_items
        self._items: dict[str, _Cached] = {}

    def get(self, key: str, *, max_age: float | None = None) -> dict[str, Any] | None:
        item = self._items.get(key)
        age_limit = self.ttl if max_age is None else min(max_age, self.ttl)
        if item is None or time.monotonic() - item.fetched > age_limit:
            return None
        return item.value

    def put(self, key: str, value: dict[str, Any]) -> None:
        if len(self._items) >= self.max_items:
            oldest = min(self._items, key=lambda k: self._items[k].fetched)
            del self._items[oldest]
        self._items[key] = _Cached(value, time.monotonic())

    def clear(self) -> None:
        self._items.clear()


_discovery = _DocumentCache(METADATA_TTL_S)
_jwks = _DocumentCache(METADATA_TTL_S)


def _http() -> httpx.AsyncClient:
    # No redirects: a document is where the provider says it is.
    return httpx.AsyncClient(timeout=HTTP_TIMEOUT_S, follow_redirects=False)


async def _get_json(url: str, policy: RemotePolicy, what: str) -> dict[str, Any]:
    await _ensure_fetchable(url, policy, what)
    try:
        async with _http() as http, http.stream("GET", url) as response:
            if response.status_code >= 500:
                raise OidcProviderUnavailable(
                    f"The identity provider answered {response.status_code} for {url}."
                )
            if response.status_code != 200:
                raise OidcProviderMisconfigured(
                    f"The identity provider answered {response.status_code} for {url}."
                )
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body.extend(chunk)
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise OidcProviderMisconfigured(f"The document at {url} is too large.")
    except httpx.HTTPError as exc:
        raise OidcProviderUnavailable(
            f"The identity provider did not answer ({type(exc).__name__})."
        ) from exc
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise OidcProviderMisconfigured(f"The document at {url} is not JSON.") from exc
    if not isinstance(document, dict):
        raise OidcProviderMisconfigured(f"The document at {url} is not a JSON object.")
    return document


def _check_url(url: object, *, require_https: bool, what: str) -> str:
    if not isinstance(url, str):
        raise OidcProviderMisconfigured(f"The discovery document has no {what}.")
    scheme = urlsplit(url).scheme
    if scheme != "https" and not (scheme == "http" and not require_https):
        raise OidcProviderMisconfigured(f"The provider's {what} must be an https URL.")
    return url


async def provider_metadata(issuer: str, policy: RemotePolicy) -> dict[str, Any]:
    """The provider's discovery document (OpenID Connect Discovery 1.0), checked and cached."""
    cached = _discovery.get(issuer)
    if cached is not None:
        return cached
    document = await _get_json(
        issuer.rstrip("/") + "/.well-known/openid-configuration", policy, "issuer"
    )
    # Discovery §4.3: the document must name exactly the issuer it was fetched for.
    if document.get("issuer") != issuer:
        raise OidcProviderMisconfigured(
            "The provider's discovery document names another issuer; check the issuer URL."
        )
    for what in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        _check_url(document.get(what), require_https=policy.require_https, what=what)
    _discovery.put(issuer, document)
    return document


async def _key_set(jwks_uri: str, policy: RemotePolicy, *, fresh: bool = False) -> KeySet:
    document = None if fresh else _jwks.get(jwks_uri)
    if document is None:
        document = await _get_json(jwks_uri, policy, "jwks_uri")
        _jwks.put(jwks_uri, document)
    try:
        return KeySet.import_key_set(document)  # type: ignore[arg-type]
    except (JoseError, KeyError, TypeError, ValueError) as exc:
        raise OidcProviderMisconfigured("The provider's JWKS cannot be read.") from exc


# --- pure checks ---------------------------------------------------------------------------------


def validate_return_to(value: str) -> str:
    """A path on this site: no scheme, no host, no `//` or `\\` a browser would read as a host."""
    parts = urlsplit(value)
    if (
        not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)
        or parts.scheme
        or parts.netloc
    ):
        raise InvalidReturnTo(
            "return_to must be a path on this site, such as /portal.", field="return_to"
        )
    return value


def _claim(claims: dict[str, Any], path: str) -> Any:
    """A claim by name, or by a dotted path into nested objects (`realm_access.roles`)."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def staff_role(provider: IdentityProvider, claims: dict[str, Any]) -> str:
    """The role a tenant provider grants: the most privileged value of its role
    claim found in its role map, else its default role. Never client_viewer."""
    if provider.role_claim:
        raw = _claim(claims, provider.role_claim)
        values = raw if isinstance(raw, list) else [raw]
        mapped = {provider.role_map.get(v) for v in values if isinstance(v, str)}
        for role in _STAFF_ROLES:
            if role in mapped:
                return role
    if provider.default_role in _STAFF_ROLES:
        return provider.default_role
    return "analyst"


def verified_email(provider: IdentityProvider, claims: dict[str, Any]) -> str:
    email = claims.get("email")
    if not isinstance(email, str) or email.count("@") != 1 or len(email) > 320:
        raise OidcEmailNotAllowed("The identity provider sent no usable e-mail address.")
    verified = claims.get("email_verified")
    if verified is False or (isinstance(verified, str) and verified.lower() == "false"):
        raise OidcEmailNotAllowed("The identity provider says this e-mail is not verified.")
    email = email.strip().lower()
    local, domain = email.split("@")
    if not local or domain not in {d.lower() for d in provider.allowed_domains}:
        raise OidcEmailNotAllowed(
            f"E-mail addresses at {domain!r} may not log in with this provider."
        )
    return email


def validate_id_token(
    id_token: str, keys: KeySet, *, issuer: str, client_id: str, nonce: str
) -> dict[str, Any]:
    """The ID token's claims, or OidcTokenInvalid. See the module docstring for the checks."""
    try:
        header = json.loads(_b64decode(id_token.split(".")[0]))
    except (ValueError, IndexError) as exc:
        raise OidcTokenInvalid("The ID token is not a JWT.") from exc
    if not isinstance(header, dict) or header.get("alg") not in ALGORITHMS:
        raise OidcTokenInvalid(f"ID tokens must be signed with one of {', '.join(ALGORITHMS)}.")
    if _FORBIDDEN_HEADERS & header.keys():
        raise OidcTokenInvalid("The ID token's header brings its own key or extensions.")
    try:
        token = jwt.decode(id_token, keys, algorithms=list(ALGORITHMS))
        jwt.JWTClaimsRegistry(
            leeway=LEEWAY_S,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        ).validate(token.claims)
    except ExpiredTokenError as exc:
        raise OidcTokenInvalid("The ID token has expired.") from exc
    except JoseError as exc:
        raise OidcTokenInvalid(f"The ID token was refused ({exc.error}).") from exc
    claims = token.claims
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    # OIDC Core §3.1.3.7: with several audiences, the token must be issued to us.
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise OidcTokenInvalid("The ID token was issued to another party (azp).")
    if not isinstance(claims["sub"], str) or not 0 < len(claims["sub"]) <= 255:
        raise OidcTokenInvalid("The ID token's subject is not usable.")
    return claims


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


# --- identity-provider configuration (tenant admins) -----------------------------------------


async def check_issuer(issuer: str, policy: RemotePolicy) -> None:
    """422 naming `issuer` when the server must not fetch it. A name that does not resolve
    now passes: nothing can be fetched from it, and every fetch checks again."""
    refusal = await url_refusal(issuer, policy)
    if refusal == "insecure":
        raise InsecureIssuer("The issuer must be an https URL.", field="issuer")
    if refusal == "not_public":
        raise IssuerNotPublic(
            "The issuer's host resolves to a loopback, private, link-local or reserved "
            "address; the server does not fetch from inside its network.",
            field="issuer",
        )


def _check_roles(
    client_id: uuid.UUID | None,
    default_role: str,
    role_map: dict[str, str],
    role_claim: str | None,
    explicit_default: bool,
) -> str:
    """The default role to store, or 422 naming the field that breaks the two walls."""
    if client_id is not None:
        if explicit_default and default_role != "client_viewer":
            raise InvalidRoleBinding(
                "A client's provider only makes client viewers.", field="default_role"
            )
        if role_claim or role_map:
            raise InvalidRoleBinding(
                "A client's provider only makes client viewers; it takes no role mapping.",
                field="role_map" if role_map else "role_claim",
            )
        return "client_viewer"
    if default_role == "client_viewer":
        raise InvalidRoleBinding(
            "A provider for the tenant's staff cannot make client viewers.", field="default_role"
        )
    if "client_viewer" in role_map.values():
        raise InvalidRoleBinding(
            "A provider for the tenant's staff cannot make client viewers.", field="role_map"
        )
    return default_role


async def create_identity_provider(
    session: AsyncSession,
    ctx: TenantContext,
    data: schemas.IdentityProviderCreate,
    *,
    secret_key: str,
    policy: RemotePolicy,
) -> IdentityProvider:
    await check_issuer(data.issuer, policy)
    if data.client_id is not None:
        found = (
            await session.execute(scoped(Client, ctx).where(col(Client.id) == data.client_id))
        ).scalar_one_or_none()
        if found is None:
            raise UnknownClient("No such client.", field="client_id")
    default_role = _check_roles(
        data.client_id,
        data.default_role,
        dict(data.role_map),
        data.role_claim,
        "default_role" in data.model_fields_set,
    )
    provider = IdentityProvider(
        tenant_id=ctx.tenant_id,
        client_id=data.client_id,
        name=data.name,
        issuer=data.issuer,
        oauth_client_id=data.oauth_client_id,
        client_secret_enc=encrypt(secret_key, data.oauth_client_secret.encode(), SECRET_PURPOSE),
        allowed_domains=sorted(set(data.allowed_domains)),
        role_claim=data.role_claim or None,
        role_map=dict(data.role_map),
        default_role=default_role,
        enabled=data.enabled,
    )
    session.add(provider)
    await session.flush()
    return provider


async def list_identity_providers(
    session: AsyncSession, ctx: TenantContext
) -> list[IdentityProvider]:
    return list(
        (
            await session.execute(
                scoped(IdentityProvider, ctx).order_by(
                    col(IdentityProvider.created_at), col(IdentityProvider.id)
                )
            )
        ).scalars()
    )


async def get_identity_provider(
    session: AsyncSession, ctx: TenantContext, idp_id: uuid.UUID
) -> IdentityProvider:
    provider = (
        await session.execute(
            scoped(IdentityProvider, ctx).where(col(IdentityProvider.id) == idp_id)
        )
    ).scalar_one_or_none()
    return ensure_visible(provider, "identity provider")


async def update_identity_provider(
    session: AsyncSession,
    ctx: TenantContext,
    idp_id: uuid.UUID,
    data: schemas.IdentityProviderUpdate,
    *,
    secret_key: str,
) -> IdentityProvider:
    provider = await get_identity_provider(session, ctx, idp_id)
    changes = data.model_dump(exclude_unset=True)
    for required in ("name", "allowed_domains", "default_role", "enabled", "role_map"):
        if required in changes and changes[required] is None:
            raise InvalidInput(f"{required} cannot be empty.", field=required)
    if changes.get("allowed_domains") == []:
        raise InvalidInput("At least one allowed domain is needed.", field="allowed_domains")
    role_map = changes.get("role_map", provider.role_map)
    role_claim = changes.get("role_claim", provider.role_claim) or None
    default_role = _check_roles(
        provider.client_id,
        changes.get("default_role", provider.default_role),
        role_map,
        role_claim,
        "default_role" in changes,
    )
    if "name" in changes:
        provider.name = changes["name"]
    if "allowed_domains" in changes:
        provider.allowed_domains = sorted(set(changes["allowed_domains"]))
    if "enabled" in changes:
        provider.enabled = changes["enabled"]
    if data.oauth_client_secret is not None:
        provider.client_secret_enc = encrypt(
            secret_key, data.oauth_client_secret.encode(), SECRET_PURPOSE
        )
    provider.role_map, provider.role_claim, provider.default_role = (
        dict(role_map),
        role_claim,
        default_role,
    )
    await session.flush()
    return provider


async def delete_identity_provider(
    session: AsyncSession, ctx: TenantContext, idp_id: uuid.UUID
) -> None:
    # Users it created stay (with their role); they can no longer log in through it.
    provider = await get_identity_provider(session, ctx, idp_id)
    await session.delete(provider)
    await session.flush()


# --- login -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginState:
    tenant_id: str
    idp_id: str
    code_verifier: str
    nonce: str
    return_to: str
    created: float
    browser: str  # digest of the cookie that binds the login to the browser that began it


def _state_key(state: str) -> str:
    return f"callpact:oidc:state:{token_digest(state)}"


def redirect_uri(settings: Settings) -> str:
    return settings.api.public_url.rstrip("/") + CALLBACK_PATH


def _client_secret(provider: IdentityProvider, settings: Settings) -> str:
    try:
        return decrypt(
            settings.auth.secret_key.get_secret_value(), provider.client_secret_enc, SECRET_PURPOSE
        ).decode()
    except (InvalidTag, ValueError) as exc:
        raise OidcProviderMisconfigured(
            "The provider's client secret cannot be read; a tenant admin must enter it again."
        ) from exc


def _auth_method(metadata: dict[str, Any]) -> str:
    # Discovery §3: absent means client_secret_basic.
    supported = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    if "client_secret_basic" in supported or "client_secret_post" not in supported:
        return "client_secret_basic"
    return "client_secret_post"


async def _redis_call(coro: Any) -> Any:
    try:
        return await coro
    except RedisError as exc:
        raise DependencyUnavailable("The session store is unavailable; retry.") from exc


async def _tenant_and_provider(
    session: AsyncSession, tenant_id: uuid.UUID, idp_id: uuid.UUID
) -> tuple[Tenant, IdentityProvider]:
    await set_scope(session, DbScope(tenant_id=tenant_id))
    tenant = (
        await session.execute(select(Tenant).where(col(Tenant.id) == tenant_id))
    ).scalar_one_or_none()
    provider = (
        await session.execute(
            select(IdentityProvider).where(
                col(IdentityProvider.tenant_id) == tenant_id, col(IdentityProvider.id) == idp_id
            )
        )
    ).scalar_one_or_none()
    if tenant is None or provider is None:
        raise NotFound("No such identity provider.")
    if tenant.status != "active":
        raise TenantSuspended("This tenant is suspended.")
    if not provider.enabled:
        raise OidcProviderDisabled("This identity provider is disabled.")
    if provider.client_id is not None:
        client_status = (
            await session.execute(
                select(col(Client.status)).where(
                    col(Client.tenant_id) == tenant_id, col(Client.id) == provider.client_id
                )
            )
        ).scalar_one_or_none()
        if client_status != "active":
            raise OidcProviderDisabled("The client of this identity provider is not active.")
    return tenant, provider


async def start_login(
    admin: AsyncSession,
    session: AsyncSession,
    redis: Redis,
    settings: Settings,
    tenant_slug: str,
    idp_id: uuid.UUID,
    return_to: str,
) -> tuple[str, str]:
    """The IdP authorization URL to send the browser to, and the browser-binding cookie value."""
    return_to = validate_return_to(return_to)
    tenant_id = (
        await admin.execute(select(col(Tenant.id)).where(col(Tenant.slug) == tenant_slug))
    ).scalar_one_or_none()
    if tenant_id is None:
        raise NotFound("No such identity provider.")
    _, provider = await _tenant_and_provider(session, tenant_id, idp_id)
    metadata = await provider_metadata(provider.issuer, remote_policy(settings))
    state, nonce, browser = (secrets.token_urlsafe(32) for _ in range(3))
    verifier = secrets.token_urlsafe(64)  # 86 characters: within RFC 7636's 43..128
    record = LoginState(
        tenant_id=str(tenant_id),
        idp_id=str(provider.id),
        code_verifier=verifier,
        nonce=nonce,
        return_to=return_to,
        created=time.time(),
        browser=token_digest(browser),
    )
    await _redis_call(redis.set(_state_key(state), json.dumps(asdict(record)), ex=STATE_TTL_S))
    async with AsyncOAuth2Client(
        client_id=provider.oauth_client_id,
        scope=SCOPE,
        redirect_uri=redirect_uri(settings),
        code_challenge_method="S256",
    ) as oauth:
        url, _ = oauth.create_authorization_url(
            metadata["authorization_endpoint"], state=state, code_verifier=verifier, nonce=nonce
        )
    # Authlib only adds the challenge for S256 clients; refuse to send a login without one.
    if create_s256_code_challenge(verifier) not in url:
        raise RuntimeError("PKCE challenge missing from the authorization URL")
    return str(url), browser


async def _consume_state(redis: Redis, state: str | None, browser: str | None) -> LoginState:
    if not state or len(state) > 256:
        raise OidcStateInvalid("The login state is missing; start the login again.")
    raw = await _redis_call(redis.getdel(_state_key(state)))
    if raw is None:
        raise OidcStateInvalid("The login state is unknown, used or expired; start again.")
    try:
        record = LoginState(**json.loads(raw))
    except (TypeError, ValueError) as exc:
        raise OidcStateInvalid("The login state is unreadable; start the login again.") from exc
    if time.time() - record.created > STATE_TTL_S:
        raise OidcStateInvalid("The login took too long; start the login again.")
    if browser is None or token_digest(browser) != record.browser:
        raise OidcStateInvalid("This login was started in another browser; start it again here.")
    return record


async def _exchange_code(
    provider: IdentityProvider,
    metadata: dict[str, Any],
    settings: Settings,
    code: str,
    verifier: str,
) -> dict[str, Any]:
    await _ensure_fetchable(metadata["token_endpoint"], remote_policy(settings), "token_endpoint")
    async with AsyncOAuth2Client(
        client_id=provider.oauth_client_id,
        client_secret=_client_secret(provider, settings),
        token_endpoint_auth_method=_auth_method(metadata),
        redirect_uri=redirect_uri(settings),
        code_challenge_method="S256",
        timeout=HTTP_TIMEOUT_S,
        follow_redirects=False,
    ) as oauth:
        try:
            token = await oauth.fetch_token(
                metadata["token_endpoint"],
                grant_type="authorization_code",
                code=code,
                code_verifier=verifier,
            )
        except OAuthError as exc:
            raise OidcCodeRejected(
                f"The identity provider refused the code ({exc.error})."
            ) from exc
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code >= 500:
                raise OidcProviderUnavailable(
                    f"The identity provider's token endpoint answered {exc.response.status_code}."
                ) from exc
            raise OidcCodeRejected(
                f"The identity provider refused the code ({exc.response.status_code})."
            ) from exc
        except httpx.HTTPError as exc:
            raise OidcProviderUnavailable(
                f"The identity provider's token endpoint did not answer ({type(exc).__name__})."
            ) from exc
    return dict(token)


async def _verify(
    id_token: str,
    metadata: dict[str, Any],
    provider: IdentityProvider,
    nonce: str,
    policy: RemotePolicy,
) -> dict[str, Any]:
    jwks_uri = str(metadata["jwks_uri"])
    keys = await _key_set(jwks_uri, policy)
    try:
        return validate_id_token(
            id_token, keys, issuer=provider.issuer, client_id=provider.oauth_client_id, nonce=nonce
        )
    except OidcTokenInvalid as exc:
        if not isinstance(exc.__cause__, InvalidKeyIdError):
            raise
    # An unknown kid: the provider may have rotated its keys since we cached them.
    keys = await _key_set(jwks_uri, policy, fresh=True)
    return validate_id_token(
        id_token, keys, issuer=provider.issuer, client_id=provider.oauth_client_id, nonce=nonce
    )


def _display_name(claims: dict[str, Any]) -> str:
    name = claims.get("name")
    if not isinstance(name, str):
        parts = [claims.get("given_name"), claims.get("family_name")]
        name = " ".join(p for p in parts if isinstance(p, str))
    return name.strip()[:200]


async def _find_or_provision(
    session: AsyncSession, provider: IdentityProvider, claims: dict[str, Any], email: str
) -> User:
    tenant_id, subject = provider.tenant_id, str(claims["sub"])
    if provider.client_id is not None:
        role, client_id = "client_viewer", provider.client_id
    else:
        role, client_id = staff_role(provider, claims), None
    # The provider, not the person, writes these rows: the audit log says so.
    session.info[ACTOR_KEY] = ("identity_provider", provider.id)
    user = (
        await session.execute(
            select(User).where(
                col(User.tenant_id) == tenant_id,
                col(User.idp_id) == provider.id,
                col(User.idp_subject) == subject,
            )
        )
    ).scalar_one_or_none()
    if user is None:
        user = (
            await session.execute(
                select(User).where(
                    col(User.tenant_id) == tenant_id, func.lower(col(User.email)) == email
                )
            )
        ).scalar_one_or_none()
        if user is not None:
            await _check_link(session, provider, user, subject)
    if user is None:
        user = User(
            tenant_id=tenant_id,
            email=email,
            display_name=_display_name(claims),
            role=role,
            client_id=client_id,
            idp_id=provider.id,
            idp_subject=subject,
        )
        session.add(user)
    else:
        if user.client_id != client_id:
            raise OidcAccountConflict(
                "This account belongs elsewhere and cannot log in with this provider."
            )
        if user.status != "active":
            raise AccountDisabled("This account is disabled.")
        user.idp_id, user.idp_subject = provider.id, subject
        # With a role claim configured, the IdP decides staff roles at every login.
        if client_id is None and provider.role_claim and user.role != role:
            user.role = role
    user.last_login_at = utcnow()
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise OidcLoginConflict(
            "Another login created this account at the same moment; log in again."
        ) from exc
    return user


async def _check_link(
    session: AsyncSession, provider: IdentityProvider, user: User, subject: str
) -> None:
    """May this existing account (found by e-mail) be linked to `provider`?"""
    if user.client_id != provider.client_id:
        # Tenant staff through a client's provider, a client's viewer through the
        # tenant's provider, or a viewer of client Y through client X's provider.
        raise OidcAccountConflict(
            "An account with this e-mail exists here with another role or client; "
            "it cannot be taken over through this provider."
        )
    if user.idp_id is None or (user.idp_id, user.idp_subject) == (provider.id, subject):
        return
    still_there = (
        await session.execute(
            select(col(IdentityProvider.id)).where(
                col(IdentityProvider.tenant_id) == user.tenant_id,
                col(IdentityProvider.id) == user.idp_id,
            )
        )
    ).first()
    if user.idp_id == provider.id or still_there is not None:
        raise OidcAccountConflict(
            "This account is linked to another identity; it cannot be linked again."
        )


async def finish_login(
    session: AsyncSession,
    redis: Redis,
    settings: Settings,
    *,
    state: str | None,
    code: str | None,
    error: str | None,
    browser: str | None,
) -> tuple[User, IdentityProvider, str]:
    """Complete a login: the user (found, linked or created), its provider and where to go."""
    record = await _consume_state(redis, state, browser)
    tenant_id, idp_id = uuid.UUID(record.tenant_id), uuid.UUID(record.idp_id)
    _, provider = await _tenant_and_provider(session, tenant_id, idp_id)
    if error is not None:
        raise OidcAuthorizationDenied(f"The identity provider answered '{error[:100]}'.")
    if not code or len(code) > 2048:
        raise OidcStateInvalid("The identity provider sent no authorization code.")
    metadata = await provider_metadata(provider.issuer, remote_policy(settings))
    token = await _exchange_code(provider, metadata, settings, code, record.code_verifier)
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        raise OidcTokenInvalid("The identity provider sent no ID token.")
    claims = await _verify(id_token, metadata, provider, record.nonce, remote_policy(settings))
    email = verified_email(provider, claims)
    user = await _find_or_provision(session, provider, claims, email)
    ctx = TenantContext(user.tenant_id, "user", user.id, frozenset(), role=user.role)
    await record_event(
        session, ctx, "auth.login", "users", user.id, method="oidc", idp=str(provider.id)
    )
    return user, provider, record.return_to


# --- routes --------------------------------------------------------------------------------------

TenantAdmin = Annotated[TenantContext, Depends(require("tenant:admin"), scope="function")]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _secure(request: Request) -> bool:
    return _settings(request).api.public_url.startswith("https://") or request.url.scheme == "https"


async def _view(
    session: AsyncSession, ctx: TenantContext, settings: Settings, provider: IdentityProvider
) -> IdentityProviderView:
    slug = (
        await session.execute(select(col(Tenant.slug)).where(col(Tenant.id) == ctx.tenant_id))
    ).scalar_one()
    base = settings.api.public_url.rstrip("/")
    return IdentityProviderView(
        **schemas.IdentityProviderRead.model_validate(provider).model_dump(),
        redirect_uri=redirect_uri(settings),
        login_url=f"{base}/api/v1/auth/oidc/{slug}/{provider.id}/login",
    )


@idp_router.post(
    "/identity-providers",
    status_code=status.HTTP_201_CREATED,
    response_model=IdentityProviderView,
)
async def create_identity_provider_route(
    data: schemas.IdentityProviderCreate, request: Request, ctx: TenantAdmin, session: SessionDep
) -> IdentityProviderView:
    """Add an OIDC provider for the tenant's staff (no `client_id`) or for one client's staff
    (they log in as viewers of that client only). The client secret is stored encrypted and
    never returned."""
    settings = _settings(request)
    provider = await create_identity_provider(
        session,
        ctx,
        data,
        secret_key=settings.auth.secret_key.get_secret_value(),
        policy=remote_policy(settings),
    )
    return await _view(session, ctx, settings, provider)


@idp_router.get("/identity-providers", response_model=list[IdentityProviderView])
async def list_identity_providers_route(
    request: Request, ctx: TenantAdmin, session: SessionDep
) -> list[IdentityProviderView]:
    """The tenant's identity providers (never their secrets)."""
    settings = _settings(request)
    return [
        await _view(session, ctx, settings, p) for p in await list_identity_providers(session, ctx)
    ]


@idp_router.get("/identity-providers/{idp_id}", response_model=IdentityProviderView)
async def get_identity_provider_route(
    idp_id: uuid.UUID, request: Request, ctx: TenantAdmin, session: SessionDep
) -> IdentityProviderView:
    """One identity provider, with the redirect URI to register at the IdP."""
    provider = await get_identity_provider(session, ctx, idp_id)
    return await _view(session, ctx, _settings(request), provider)


@idp_router.patch("/identity-providers/{idp_id}", response_model=IdentityProviderView)
async def update_identity_provider_route(
    idp_id: uuid.UUID,
    data: schemas.IdentityProviderUpdate,
    request: Request,
    ctx: TenantAdmin,
    session: SessionDep,
) -> IdentityProviderView:
    """Change a provider's name, secret, allowed domains, role mapping or enable it/disable it.
    Its issuer, OAuth client id and client are fixed: create another provider to change them."""
    settings = _settings(request)
    provider = await update_identity_provider(
        session, ctx, idp_id, data, secret_key=settings.auth.secret_key.get_secret_value()
    )
    return await _view(session, ctx, settings, provider)


@idp_router.delete("/identity-providers/{idp_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_identity_provider_route(
    idp_id: uuid.UUID, ctx: TenantAdmin, session: SessionDep
) -> Response:
    """Remove a provider; nobody can log in through it any more (their accounts stay)."""
    await delete_identity_provider(session, ctx, idp_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@oidc_router.get(
    "/{tenant_slug}/{idp_id}/login",
    status_code=status.HTTP_302_FOUND,
    response_class=RedirectResponse,
    responses={302: {"description": "To the identity provider's authorization endpoint."}},
)
async def login(
    tenant_slug: Annotated[schemas.Text, Path(max_length=63)],
    idp_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    admin: AdminSessionDep,
    return_to: ReturnTo = "/portal",
) -> RedirectResponse:
    """Begin an OIDC login (authorization code with PKCE) at one of the tenant's providers.
    `return_to` is a path on this site where the browser lands after the login."""
    url, browser = await start_login(
        admin,
        session,
        request.app.state.redis,
        _settings(request),
        tenant_slug,
        idp_id,
        return_to,
    )
    response = RedirectResponse(url, status_code=status.HTTP_302_FOUND)
    # SameSite=Lax: sent on the IdP's top-level redirect back, not on cross-site sub-requests.
    response.set_cookie(
        BROWSER_COOKIE,
        browser,
        max_age=STATE_TTL_S,
        httponly=True,
        secure=_secure(request),
        samesite="lax",
        path="/api/v1/auth/oidc",
    )
    return response


@oidc_router.get(
    "/callback",
    status_code=status.HTTP_303_SEE_OTHER,
    response_class=RedirectResponse,
    responses={303: {"description": "To `return_to`, with the portal session cookie set."}},
)
async def callback(
    request: Request,
    session: SessionDep,
    code: Annotated[str | None, Query(max_length=4096)] = None,
    state: Annotated[str | None, Query(max_length=512)] = None,
    error: Annotated[str | None, Query(max_length=512)] = None,
) -> RedirectResponse:
    """Where the identity provider sends the browser back: checks the state, the code and the
    ID token, provisions or links the account, opens a portal session and redirects."""
    user, _, return_to = await finish_login(
        session,
        request.app.state.redis,
        _settings(request),
        state=state,
        code=code,
        error=error,
        browser=request.cookies.get(BROWSER_COOKIE),
    )
    response = RedirectResponse(return_to, status_code=status.HTTP_303_SEE_OTHER)
    await open_session(request, response, user.tenant_id, user.id)
    response.delete_cookie(BROWSER_COOKIE, path="/api/v1/auth/oidc")
    return response
