"""Forged and misused credentials. Each is refused with 401, problem+json and a
stable code — and each forgery is minted next to a control that passes, so a
refusal proves the guard it names (a jku header signed with *our* key is
refused only because of the jku header).

The forgeries are built by hand (base64url + cryptography), not with joserfc,
whose own guards would refuse to mint most of them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from fastapi import FastAPI
from httpx import AsyncClient, Response
from joserfc.jwk import ECKey
from sqlalchemy import delete, select, update
from sqlmodel import col

from service.core.config import Settings
from service.core.db import Database
from service.core.time import utcnow
from tenants.context import ROLE_PERMISSIONS
from tenants.keys import KeyStore
from tenants.models import ApiToken, RefreshToken, User
from tenants.tokens import AUDIENCE, LEEWAY_S, TOKEN_TYPE
from tests.factories import (
    PASSWORD,
    TenantSeed,
    bearer,
    make_tenant,
    platform_headers,
    user_token,
)

Signer = Callable[[bytes], bytes]

# --- minting ------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def json_segment(obj: Any) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def es256_signer(private_key: ec.EllipticCurvePrivateKey) -> Signer:
    """JWS ES256: the raw r‖s pair (64 bytes), not cryptography's DER."""

    def sign(data: bytes) -> bytes:
        r, s = decode_dss_signature(private_key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return sign


def der_signer(private_key: ec.EllipticCurvePrivateKey) -> Signer:
    return lambda data: private_key.sign(data, ec.ECDSA(hashes.SHA256()))


def hs256_signer(secret: bytes) -> Signer:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


def rs256_signer(private_key: rsa.RSAPrivateKey) -> Signer:
    return lambda data: private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def no_signature(data: bytes) -> bytes:
    return b""


def mint(header: dict[str, Any], claims: dict[str, Any], signer: Signer) -> str:
    signing_input = f"{json_segment(header)}.{json_segment(claims)}"
    return f"{signing_input}.{b64url(signer(signing_input.encode()))}"


def token_header(token: str) -> dict[str, Any]:
    header: dict[str, Any] = json.loads(b64url_decode(token.split(".")[0]))
    return header


def token_claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = json.loads(b64url_decode(token.split(".")[1]))
    return claims


def with_claims(token: str, **changes: Any) -> str:
    """The same header and signature over a changed payload."""
    head, _, signature = token.split(".")
    return f"{head}.{json_segment({**token_claims(token), **changes})}.{signature}"


def attacker_ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_of(key: ECKey) -> ec.EllipticCurvePrivateKey:
    private = key.private_key
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    return private


@dataclass
class Env:
    client: AsyncClient
    settings: Settings
    db: Database
    app: FastAPI
    seed: TenantSeed
    key: ECKey
    """The app's current signing key (the real one)."""
    attacker: ec.EllipticCurvePrivateKey = field(default_factory=attacker_ec_key)

    @property
    def keys(self) -> KeyStore:
        store: KeyStore = self.app.state.keys
        return store

    @property
    def kid(self) -> str:
        kid = self.key.kid
        assert kid
        return kid

    def header(self, **changes: Any) -> dict[str, Any]:
        """Our access-token header; a change to None drops the field."""
        base: dict[str, Any] = {"alg": "ES256", "kid": self.kid, "typ": TOKEN_TYPE}
        return {k: v for k, v in {**base, **changes}.items() if v is not None}

    def claims(self, **changes: Any) -> dict[str, Any]:
        """The claims `issue_access_token` gives the seed's admin; a change to None drops it."""
        now = int(time.time())
        base: dict[str, Any] = {
            "iss": self.settings.api.public_url,
            "aud": AUDIENCE,
            "sub": str(self.seed.admin_id),
            "tid": str(self.seed.id),
            "role": "tenant_admin",
            "iat": now,
            "nbf": now,
            "exp": now + 900,
            "jti": uuid.uuid4().hex,
        }
        return {k: v for k, v in {**base, **changes}.items() if v is not None}

    def legit(
        self, header: dict[str, Any] | None = None, claims: dict[str, Any] | None = None
    ) -> str:
        """Signed with the real signing key."""
        return mint(
            header or self.header(), claims or self.claims(), es256_signer(private_key_of(self.key))
        )

    def forged(
        self, header: dict[str, Any] | None = None, claims: dict[str, Any] | None = None
    ) -> str:
        """Signed with the attacker's EC key."""
        return mint(header or self.header(), claims or self.claims(), es256_signer(self.attacker))

    def attacker_jwk(self) -> dict[str, Any]:
        return dict(ECKey.import_key(self.attacker.public_key()).as_dict(private=False))


@pytest_asyncio.fixture
async def env(client: AsyncClient, settings: Settings, db: Database, app: FastAPI) -> Env:
    seed = await make_tenant(client, settings)
    keys: KeyStore = app.state.keys
    return Env(client, settings, db, app, seed, await keys.signing_key())


async def me(env: Env, headers: dict[str, str]) -> Response:
    return await env.client.get("/api/v1/me", headers=headers)


def assert_refused(response: Response, code: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code, body
    assert body["status"] == 401
    assert response.headers["www-authenticate"] == "Bearer"
    # Nothing of the caller's identity leaks into a refusal.
    assert "user" not in body
    assert "tenant" not in body


# --- the controls: what a forgery must differ from ----------------------------------------


async def test_control_hand_minted_token_with_the_real_key_is_accepted(env: Env) -> None:
    """Every refusal below differs from this token in one respect only."""
    response = await me(env, bearer(env.legit()))
    assert response.status_code == 200, response.text
    assert response.json()["user"]["id"] == str(env.seed.admin_id)
    assert response.json()["tenant"]["id"] == str(env.seed.id)


async def test_control_issued_token_has_the_shape_the_forgeries_copy(env: Env) -> None:
    issued = env.seed.admin_token
    assert token_header(issued) == env.header()
    assert set(token_claims(issued)) == set(env.claims())
    # The scheme name is case-insensitive (RFC 9110), the token is not.
    response = await me(env, {"Authorization": f"bearer {issued}"})
    assert response.status_code == 200, response.text


# --- forged and misused access tokens -------------------------------------------------------

Builder = Callable[[Env], Awaitable[dict[str, str]]]
ACCESS_CASES: list[Any] = []


def case(code: str) -> Callable[[Builder], Builder]:
    def register(build: Builder) -> Builder:
        ACCESS_CASES.append(pytest.param(build, code, id=build.__name__))
        return build

    return register


@case("invalid_token")
async def alg_none(env: Env) -> dict[str, str]:
    return bearer(mint(env.header(alg="none"), env.claims(), no_signature))


@case("invalid_token")
async def alg_none_capitalised(env: Env) -> dict[str, str]:
    return bearer(mint(env.header(alg="None"), env.claims(), no_signature))


@case("invalid_token")
async def hs256_signed_with_public_key_pem(env: Env) -> dict[str, str]:
    pem = env.key.as_pem(private=False)
    return bearer(mint(env.header(alg="HS256"), env.claims(), hs256_signer(pem)))


@case("invalid_token")
async def hs256_signed_with_public_jwk_json(env: Env) -> dict[str, str]:
    jwk = json.dumps(env.key.as_dict(private=False)).encode()
    return bearer(mint(env.header(alg="HS256"), env.claims(), hs256_signer(jwk)))


@case("invalid_token")
async def rs256_signed_with_attacker_key(env: Env) -> dict[str, str]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return bearer(mint(env.header(alg="RS256"), env.claims(), rs256_signer(rsa_key)))


@case("invalid_token")
async def es256_signed_with_attacker_key_and_our_kid(env: Env) -> dict[str, str]:
    return bearer(env.forged())


@case("invalid_token")
async def es256_signed_with_attacker_key_and_its_kid(env: Env) -> dict[str, str]:
    return bearer(env.forged(env.header(kid="attacker-" + secrets.token_hex(4))))


@case("invalid_token")
async def signature_der_encoded(env: Env) -> dict[str, str]:
    return bearer(mint(env.header(), env.claims(), der_signer(private_key_of(env.key))))


@case("invalid_token")
async def signature_stripped(env: Env) -> dict[str, str]:
    token = env.legit()
    return bearer(token.rsplit(".", 1)[0] + ".")


@case("invalid_token")
async def wrong_issuer(env: Env) -> dict[str, str]:
    return bearer(env.legit(claims=env.claims(iss="https://evil.example.com")))


@case("invalid_token")
async def wrong_audience(env: Env) -> dict[str, str]:
    return bearer(env.legit(claims=env.claims(aud="some-other-api")))


@case("invalid_token")
async def audience_list_without_ours(env: Env) -> dict[str, str]:
    return bearer(env.legit(claims=env.claims(aud=["some-other-api", "callpact"])))


@case("invalid_token")
async def missing_audience(env: Env) -> dict[str, str]:
    return bearer(env.legit(claims=env.claims(aud=None)))


@case("invalid_token")
async def missing_expiry(env: Env) -> dict[str, str]:
    return bearer(env.legit(claims=env.claims(exp=None)))


@case("token_expired")
async def expired_beyond_leeway(env: Env) -> dict[str, str]:
    now = int(time.time())
    claims = env.claims(iat=now - 1000, nbf=now - 1000, exp=now - LEEWAY_S - 5)
    return bearer(env.legit(claims=claims))


@case("invalid_token")
async def not_before_in_the_future(env: Env) -> dict[str, str]:
    return bearer(env.legit(claims=env.claims(nbf=int(time.time()) + LEEWAY_S + 60)))


@case("invalid_token")
async def issued_in_the_future(env: Env) -> dict[str, str]:
    now = int(time.time())
    return bearer(env.legit(claims=env.claims(iat=now + LEEWAY_S + 60, exp=now + 3600)))


@case("invalid_token")
async def unknown_kid(env: Env) -> dict[str, str]:
    return bearer(env.legit(env.header(kid=secrets.token_hex(8))))


@case("invalid_token")
async def missing_kid(env: Env) -> dict[str, str]:
    return bearer(env.legit(env.header(kid=None)))


@case("invalid_token")
async def kid_not_a_string(env: Env) -> dict[str, str]:
    return bearer(env.legit(env.header(kid=[env.kid])))


@case("invalid_token")
async def jku_header_pointing_elsewhere(env: Env) -> dict[str, str]:
    header = env.header(kid="attacker", jku="https://evil.example.com/jwks.json")
    return bearer(env.forged(header))


@case("invalid_token")
async def jku_header_even_with_our_signature(env: Env) -> dict[str, str]:
    return bearer(env.legit(env.header(jku="https://evil.example.com/jwks.json")))


@case("invalid_token")
async def embedded_jwk_header_with_attacker_key(env: Env) -> dict[str, str]:
    return bearer(env.forged(env.header(jwk=env.attacker_jwk())))


@case("invalid_token")
async def embedded_jwk_header_even_with_our_signature(env: Env) -> dict[str, str]:
    return bearer(env.legit(env.header(jwk=env.key.as_dict(private=False))))


@case("invalid_token")
async def x5u_header(env: Env) -> dict[str, str]:
    return bearer(env.legit(env.header(x5u="https://evil.example.com/cert.pem")))


@case("invalid_token")
async def x5c_header(env: Env) -> dict[str, str]:
    return bearer(env.forged(env.header(x5c=[b64url(b"not really a certificate")])))


@case("invalid_token")
async def crit_header(env: Env) -> dict[str, str]:
    return bearer(env.legit(env.header(crit=["exp"])))


@case("invalid_token")
async def typ_jwt_id_token_shape(env: Env) -> dict[str, str]:
    """An OIDC ID token: typ JWT, a nonce, the user's name — not an access token."""
    claims = env.claims(nonce=secrets.token_hex(8), email=env.seed.admin_email, auth_time=0)
    return bearer(env.legit(env.header(typ="JWT"), claims))


@case("invalid_token")
async def typ_missing(env: Env) -> dict[str, str]:
    return bearer(env.legit(env.header(typ=None)))


@case("invalid_token")
async def tenant_b_with_subject_of_tenant_a(env: Env) -> dict[str, str]:
    other = await make_tenant(env.client, env.settings)
    # A real signature: the only lie is the pairing of tenant and user.
    return bearer(env.legit(claims=env.claims(tid=str(other.id), sub=str(env.seed.admin_id))))


@case("invalid_token")
async def tenant_a_with_subject_of_tenant_b(env: Env) -> dict[str, str]:
    other = await make_tenant(env.client, env.settings)
    return bearer(env.legit(claims=env.claims(tid=str(env.seed.id), sub=str(other.admin_id))))


@case("invalid_token")
async def tenant_that_does_not_exist(env: Env) -> dict[str, str]:
    return bearer(env.legit(claims=env.claims(tid=str(uuid.uuid4()))))


@case("invalid_token")
async def subject_not_a_uuid(env: Env) -> dict[str, str]:
    return bearer(env.legit(claims=env.claims(sub="admin")))


@case("account_disabled")
async def user_disabled_after_issuance(env: Env) -> dict[str, str]:
    user, token = await user_token(env.client, env.db, env.seed, "supervisor")
    disabled = await env.client.patch(
        f"/api/v1/users/{user.id}",
        json={"status": "disabled"},
        headers=bearer(env.seed.admin_token),
    )
    assert disabled.status_code == 200, disabled.text
    return bearer(token)


@case("invalid_token")
async def user_deleted_after_issuance(env: Env) -> dict[str, str]:
    user, token = await user_token(env.client, env.db, env.seed, "analyst")
    async with env.db.admin_transaction() as admin:
        await admin.execute(
            delete(RefreshToken).where(
                col(RefreshToken.tenant_id) == env.seed.id, col(RefreshToken.user_id) == user.id
            )
        )
        await admin.execute(
            delete(User).where(col(User.tenant_id) == env.seed.id, col(User.id) == user.id)
        )
    return bearer(token)


@case("tenant_suspended")
async def tenant_suspended_after_issuance(env: Env) -> dict[str, str]:
    suspended = await env.client.post(
        f"/api/v1/platform/tenants/{env.seed.id}/suspend", headers=platform_headers(env.settings)
    )
    assert suspended.status_code == 200, suspended.text
    return bearer(env.seed.admin_token)


@case("invalid_token")
async def payload_tampered_role(env: Env) -> dict[str, str]:
    _, token = await user_token(env.client, env.db, env.seed, "analyst")
    return bearer(with_claims(token, role="tenant_admin"))


@case("invalid_token")
async def payload_tampered_tenant(env: Env) -> dict[str, str]:
    other = await make_tenant(env.client, env.settings)
    return bearer(with_claims(env.seed.admin_token, tid=str(other.id), sub=str(other.admin_id)))


@case("invalid_token")
async def payload_tampered_expiry(env: Env) -> dict[str, str]:
    return bearer(with_claims(env.seed.admin_token, exp=int(time.time()) + 10 * 365 * 86400))


@case("invalid_token")
async def truncated(env: Env) -> dict[str, str]:
    return bearer(env.seed.admin_token[:-12])


@case("invalid_token")
async def truncated_to_two_segments(env: Env) -> dict[str, str]:
    return bearer(env.seed.admin_token.rsplit(".", 1)[0])


@case("invalid_token")
async def garbage_word(env: Env) -> dict[str, str]:
    return bearer("letmein")


@case("invalid_token")
async def garbage_three_segments(env: Env) -> dict[str, str]:
    return bearer("a.b.c")


@case("invalid_token")
async def garbage_header_not_json(env: Env) -> dict[str, str]:
    return bearer(f"{b64url(b'{not json')}.{json_segment(env.claims())}.{b64url(b'x')}")


@case("invalid_token")
async def garbage_header_a_json_list(env: Env) -> dict[str, str]:
    return bearer(f"{json_segment(['ES256'])}.{json_segment(env.claims())}.{b64url(b'x')}")


@case("invalid_token")
async def garbage_header_nested_deeper_than_the_parser_recurses(env: Env) -> dict[str, str]:
    # 5,000 brackets fit in the 16 KiB a server accepts in a header line.
    return bearer(f"{b64url(b'[' * 5000)}.{json_segment(env.claims())}.{b64url(b'x')}")


@case("invalid_token")
async def jwe_five_segments(env: Env) -> dict[str, str]:
    header = json_segment({"alg": "dir", "enc": "A256GCM", "kid": env.kid, "typ": TOKEN_TYPE})
    return bearer(f"{header}..{b64url(b'iv')}.{b64url(b'ciphertext')}.{b64url(b'tag')}")


@case("invalid_token")
async def refresh_token_used_as_access_token(env: Env) -> dict[str, str]:
    login = await env.client.post(
        "/api/v1/auth/token",
        json={"tenant": env.seed.slug, "email": env.seed.admin_email, "password": PASSWORD},
    )
    return bearer(login.json()["refresh_token"])


@case("invalid_token")
async def bearer_scheme_missing(env: Env) -> dict[str, str]:
    return {"Authorization": env.seed.admin_token}


@case("invalid_token")
async def basic_scheme(env: Env) -> dict[str, str]:
    basic = base64.b64encode(f"{env.seed.admin_email}:{PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {basic}"}


@case("invalid_token")
async def token_scheme_with_our_token(env: Env) -> dict[str, str]:
    return {"Authorization": f"Token {env.seed.admin_token}"}


@case("invalid_token")
async def bearer_without_token(env: Env) -> dict[str, str]:
    return {"Authorization": "Bearer "}


@case("missing_credentials")
async def no_authorization_header(env: Env) -> dict[str, str]:
    return {}


@case("missing_credentials")
async def token_in_a_custom_header(env: Env) -> dict[str, str]:
    return {"X-Access-Token": env.seed.admin_token, "X-Tenant-Id": str(env.seed.id)}


# API tokens (opaque: cpk_<tenant hex>_<secret>)


async def _api_token(env: Env, **body: Any) -> tuple[str, str]:
    created = await env.client.post(
        "/api/v1/api-tokens",
        json={"name": "pbx", "scopes": ["contacts:write", "ops:read"], **body},
        headers=bearer(env.seed.admin_token),
    )
    assert created.status_code == 201, created.text
    token_id, token = created.json()["id"], created.json()["token"]
    # The control: the token works before it is misused.
    assert (await me(env, bearer(token))).status_code == 200
    return token_id, token


@case("invalid_token")
async def api_token_revoked(env: Env) -> dict[str, str]:
    token_id, token = await _api_token(env)
    revoked = await env.client.delete(
        f"/api/v1/api-tokens/{token_id}", headers=bearer(env.seed.admin_token)
    )
    assert revoked.status_code == 204
    return bearer(token)


@case("invalid_token")
async def api_token_expired(env: Env) -> dict[str, str]:
    expires = (utcnow() + timedelta(hours=1)).isoformat()
    token_id, token = await _api_token(env, expires_at=expires)
    async with env.db.admin_transaction() as admin:
        await admin.execute(
            update(ApiToken)
            .where(col(ApiToken.tenant_id) == env.seed.id, col(ApiToken.id) == uuid.UUID(token_id))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    return bearer(token)


@case("invalid_token")
async def api_token_with_another_tenants_part(env: Env) -> dict[str, str]:
    _, token = await _api_token(env)
    other = await make_tenant(env.client, env.settings)
    prefix, _, secret = token.split("_", 2)
    return bearer(f"{prefix}_{other.id.hex}_{secret}")


@case("invalid_token")
async def api_token_with_a_malformed_tenant_part(env: Env) -> dict[str, str]:
    _, token = await _api_token(env)
    prefix, _, secret = token.split("_", 2)
    return bearer(f"{prefix}_not-a-tenant_{secret}")


@case("invalid_token")
async def api_token_with_a_tampered_secret(env: Env) -> dict[str, str]:
    _, token = await _api_token(env)
    return bearer(token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"))


@case("tenant_suspended")
async def api_token_of_a_suspended_tenant(env: Env) -> dict[str, str]:
    _, token = await _api_token(env)
    suspended = await env.client.post(
        f"/api/v1/platform/tenants/{env.seed.id}/suspend", headers=platform_headers(env.settings)
    )
    assert suspended.status_code == 200
    return bearer(token)


def test_there_are_enough_distinct_forgeries() -> None:
    assert len(ACCESS_CASES) >= 20
    assert len({p.id for p in ACCESS_CASES}) == len(ACCESS_CASES)


@pytest.mark.parametrize(("build", "code"), ACCESS_CASES)
async def test_forged_or_misused_token_is_refused(env: Env, build: Builder, code: str) -> None:
    headers = await build(env)
    assert_refused(await me(env, headers), code)
    # The refusal changed nothing for the legitimate caller (unless it was suspended).
    if code != "tenant_suspended":
        assert (await me(env, bearer(env.seed.admin_token))).status_code == 200


# --- refresh tokens ------------------------------------------------------------------


async def _login(env: Env, email: str | None = None) -> dict[str, Any]:
    response = await env.client.post(
        "/api/v1/auth/token",
        json={
            "tenant": env.seed.slug,
            "email": email or env.seed.admin_email,
            "password": PASSWORD,
        },
    )
    assert response.status_code == 200, response.text
    pair: dict[str, Any] = response.json()
    return pair


async def _refresh(env: Env, token: str) -> Response:
    return await env.client.post("/api/v1/auth/refresh", json={"refresh_token": token})


async def test_revoked_refresh_token_is_refused(env: Env) -> None:
    pair = await _login(env)
    out = await env.client.post(
        "/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]}
    )
    assert out.status_code == 204
    assert_refused(await _refresh(env, pair["refresh_token"]), "invalid_token")


async def test_replayed_refresh_token_revokes_the_whole_family(env: Env) -> None:
    first = await _login(env)
    other_login = await _login(env)  # another device: a different family, untouched
    rotated = await _refresh(env, first["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()

    assert_refused(await _refresh(env, first["refresh_token"]), "refresh_token_reused")
    # The legitimate holder's newer token died with the family…
    assert_refused(await _refresh(env, second["refresh_token"]), "invalid_token")
    # …and a second replay is refused the same way (no resurrection).
    assert_refused(await _refresh(env, first["refresh_token"]), "refresh_token_reused")
    async with env.db.admin_transaction() as admin:
        rows = (
            (
                await admin.execute(
                    select(RefreshToken).where(col(RefreshToken.tenant_id) == env.seed.id)
                )
            )
            .scalars()
            .all()
        )
    family = {r.family_id for r in rows if r.revoked_at is not None}
    assert len(family) == 1
    revoked = [r for r in rows if r.family_id in family]
    assert len(revoked) == 2
    assert all(r.revoked_at is not None for r in revoked)
    assert (await _refresh(env, other_login["refresh_token"])).status_code == 200


async def test_refresh_token_of_a_suspended_tenant_is_refused(env: Env) -> None:
    pair = await _login(env)
    suspended = await env.client.post(
        f"/api/v1/platform/tenants/{env.seed.id}/suspend", headers=platform_headers(env.settings)
    )
    assert suspended.status_code == 200
    assert_refused(await _refresh(env, pair["refresh_token"]), "invalid_token")
    # The refusal did not spend the token: after reactivation it still works once.
    activated = await env.client.post(
        f"/api/v1/platform/tenants/{env.seed.id}/activate", headers=platform_headers(env.settings)
    )
    assert activated.status_code == 200
    assert (await _refresh(env, pair["refresh_token"])).status_code == 200


async def test_refresh_token_of_a_disabled_user_is_refused(env: Env) -> None:
    user, _ = await user_token(env.client, env.db, env.seed, "analyst")
    pair = await _login(env, user.email)
    disabled = await env.client.patch(
        f"/api/v1/users/{user.id}",
        json={"status": "disabled"},
        headers=bearer(env.seed.admin_token),
    )
    assert disabled.status_code == 200
    assert_refused(await _refresh(env, pair["refresh_token"]), "invalid_token")


async def test_expired_refresh_token_is_refused(env: Env) -> None:
    pair = await _login(env)
    async with env.db.admin_transaction() as admin:
        await admin.execute(
            update(RefreshToken)
            .where(col(RefreshToken.tenant_id) == env.seed.id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert_refused(await _refresh(env, pair["refresh_token"]), "invalid_token")


async def test_refresh_token_moved_to_another_tenant_is_refused(env: Env) -> None:
    pair = await _login(env)
    other = await make_tenant(env.client, env.settings)
    prefix, _, secret = pair["refresh_token"].split("_", 2)
    assert_refused(await _refresh(env, f"{prefix}_{other.id.hex}_{secret}"), "invalid_token")
    assert_refused(await _refresh(env, f"{prefix}_zz_{secret}"), "invalid_token")
    # Untouched, it still works: the refusals were about the tampering.
    assert (await _refresh(env, pair["refresh_token"])).status_code == 200


async def test_access_token_is_not_a_refresh_token(env: Env) -> None:
    assert_refused(await _refresh(env, env.seed.admin_token), "invalid_token")


# --- the role comes from the database, not the token ------------------------------------


async def test_demoted_admin_gets_analyst_permissions_with_the_old_token(env: Env) -> None:
    user, token = await user_token(env.client, env.db, env.seed, "tenant_admin")
    assert token_claims(token)["role"] == "tenant_admin"
    before = await me(env, bearer(token))
    assert before.json()["role"] == "tenant_admin"
    invite = {"email": f"{secrets.token_hex(3)}@example.com", "role": "analyst"}
    allowed = await env.client.post("/api/v1/invitations", json=invite, headers=bearer(token))
    assert allowed.status_code == 201, allowed.text

    demoted = await env.client.patch(
        f"/api/v1/users/{user.id}", json={"role": "analyst"}, headers=bearer(env.seed.admin_token)
    )
    assert demoted.status_code == 200, demoted.text

    after = await me(env, bearer(token))
    assert after.status_code == 200
    assert after.json()["role"] == "analyst"
    assert set(after.json()["permissions"]) == ROLE_PERMISSIONS["analyst"]
    invite = {"email": f"{secrets.token_hex(3)}@example.com", "role": "analyst"}
    refused = await env.client.post("/api/v1/invitations", json=invite, headers=bearer(token))
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"
    users = await env.client.get("/api/v1/users", headers=bearer(token))
    assert users.status_code == 403
