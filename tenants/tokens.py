"""Access tokens (JWT, ES256, 15 minutes) and opaque tokens (refresh, API).

Verification refuses, before any signature check: an algorithm other than
ES256 (so `none` and HS256-with-the-public-key fail), a header that brings
its own key (`jku`, `jwk`, `x5u`, `x5c`) or critical extensions, a `typ`
other than `at+jwt` (so an ID token is not an access token), and a missing or
unknown `kid`. Then the signature, `iss`, `aud`, `exp`, `nbf` and `iat`, and
the tenant and subject claims.

Opaque tokens are `<prefix>_<tenant hex>_<secret>`: the tenant part lets the
lookup run under that tenant's row-level security, and only the SHA-256
digest of the whole token is stored.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwt import JWTClaimsRegistry

from service.core.errors import Unauthorized
from tenants.keys import ALGORITHM, KeyStore
from tenants.security import new_token

ACCESS_TTL_S = 900
REFRESH_TTL_S = 30 * 24 * 3600
AUDIENCE = "callpact-api"
TOKEN_TYPE = "at+jwt"
LEEWAY_S = 30
_FORBIDDEN_HEADERS = frozenset({"jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256", "crit"})


class InvalidToken(Unauthorized):
    code = "invalid_token"
    title = "Invalid token"


class TokenExpired(Unauthorized):
    code = "token_expired"
    title = "Token expired"


@dataclass(frozen=True)
class AccessClaims:
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    role: str
    client_id: uuid.UUID | None
    jti: str


async def issue_access_token(
    keys: KeyStore,
    issuer: str,
    *,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    role: str,
    client_id: uuid.UUID | None,
) -> str:
    key = await keys.signing_key()
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": str(user_id),
        "tid": str(tenant_id),
        "role": role,
        "iat": now,
        "nbf": now,
        "exp": now + ACCESS_TTL_S,
        "jti": uuid.uuid4().hex,
    }
    if client_id is not None:
        claims["cid"] = str(client_id)
    header = {"alg": ALGORITHM, "kid": key.kid, "typ": TOKEN_TYPE}
    return jwt.encode(header, claims, key, algorithms=[ALGORITHM])


def _header(token: str) -> dict[str, Any]:
    try:
        segment = token.split(".")[0]
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    # RecursionError: a header nested a few thousand levels deep fits in one HTTP header line.
    except (ValueError, IndexError, RecursionError) as exc:
        raise InvalidToken("The token is not a JWT.") from exc
    if not isinstance(header, dict):
        raise InvalidToken("The token header is malformed.")
    return header


class _Verified:
    """Tokens whose signature and claims were checked, kept until they expire: the
    signature covers every byte of the token, so the same string verifies the same
    way again — as long as its key is still known and it has not expired."""

    MAX = 20_000

    def __init__(self) -> None:
        self._tokens: OrderedDict[str, tuple[AccessClaims, str, str, float]] = OrderedDict()

    def get(self, token: str, issuer: str) -> tuple[AccessClaims, str] | None:
        entry = self._tokens.get(token)
        if entry is None:
            return None
        claims, kid, iss, expires = entry
        if iss != issuer or expires + LEEWAY_S <= time.time():
            del self._tokens[token]
            return None
        return claims, kid

    def put(self, token: str, claims: AccessClaims, kid: str, issuer: str, expires: float) -> None:
        self._tokens[token] = (claims, kid, issuer, expires)
        if len(self._tokens) > self.MAX:
            self._tokens.popitem(last=False)


_VERIFIED = _Verified()


def remembered_access_token(keys: KeyStore, issuer: str, token: str) -> AccessClaims | None:
    """The claims of a token this process verified, still unexpired and of a key still
    known — from memory only; None means "verify it" (`verify_access_token`)."""
    seen = _VERIFIED.get(token, issuer)
    if seen is None or not keys.knows(seen[1]):
        return None
    return seen[0]


async def verify_access_token(keys: KeyStore, issuer: str, token: str) -> AccessClaims:
    seen = _VERIFIED.get(token, issuer)
    if seen is not None:
        claims_seen, kid_seen = seen
        if await keys.verification_key(kid_seen) is not None:
            return claims_seen
    verified, kid, expires = await _verify(keys, issuer, token)
    _VERIFIED.put(token, verified, kid, issuer, expires)
    return verified


async def _verify(keys: KeyStore, issuer: str, token: str) -> tuple[AccessClaims, str, float]:
    if token.count(".") != 2:
        raise InvalidToken("The token is not a JWT.")
    header = _header(token)
    if header.get("alg") != ALGORITHM:
        raise InvalidToken("The token's algorithm is not accepted.")
    if _FORBIDDEN_HEADERS & header.keys():
        raise InvalidToken("The token header names its own key or critical extensions.")
    if header.get("typ") != TOKEN_TYPE:
        raise InvalidToken("The token is not an access token.")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("The token names no key.")
    key = await keys.verification_key(kid)
    if key is None:
        raise InvalidToken("The token's key is unknown.")
    try:
        decoded = jwt.decode(token, key, algorithms=[ALGORITHM])
    except (JoseError, ValueError) as exc:
        raise InvalidToken("The token's signature is invalid.") from exc
    registry = JWTClaimsRegistry(
        leeway=LEEWAY_S,
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": AUDIENCE},
        exp={"essential": True},
        iat={"essential": True},
        sub={"essential": True},
        tid={"essential": True},
        role={"essential": True},
    )
    claims = decoded.claims
    try:
        registry.validate(claims)
    except JoseError as exc:
        if getattr(exc, "error", "") == "expired_token" or "expired" in str(exc).lower():
            raise TokenExpired("The access token has expired; refresh it.") from exc
        raise InvalidToken(
            f"The token's claims are not accepted ({getattr(exc, 'error', 'invalid')})."
        ) from exc
    if not isinstance(claims.get("iat"), int) or claims["iat"] > time.time() + LEEWAY_S:
        raise InvalidToken("The token was issued in the future.")
    try:
        return (
            AccessClaims(
                tenant_id=uuid.UUID(claims["tid"]),
                user_id=uuid.UUID(claims["sub"]),
                role=str(claims["role"]),
                client_id=uuid.UUID(claims["cid"]) if claims.get("cid") else None,
                jti=str(claims.get("jti", "")),
            ),
            kid,
            float(claims["exp"]),
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidToken("The token's subject or tenant is malformed.") from exc


def new_opaque_token(prefix: str, tenant_id: uuid.UUID) -> str:
    return new_token(f"{prefix}_{tenant_id.hex}")


def opaque_token_tenant(prefix: str, token: str) -> uuid.UUID:
    """The tenant an opaque token claims to belong to (verified by the lookup)."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != prefix:
        raise InvalidToken("The token is malformed.")
    try:
        return uuid.UUID(hex=parts[1])
    except ValueError as exc:
        raise InvalidToken("The token is malformed.") from exc
