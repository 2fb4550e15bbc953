"""A small but real OpenID Connect provider for the tests, served over HTTP on
loopback by uvicorn in a background thread.

It speaks the authorization-code flow the way a production IdP does:
discovery, `/authorize` (which approves the person configured for the client
at once, as if they had just signed in), `/token` (client authentication,
single-use codes bound to client and redirect URI, PKCE S256 verification)
and `/jwks`. Each test registers its own OAuth client, so tests do not share
state; per-client knobs make the provider misbehave in the ways an ID token
or an IdP can go wrong.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlencode

import uvicorn
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

Signer = Literal["rs256", "es256", "rogue", "hs256"]
DROP = object()  # a claims-override value that removes the claim


@dataclass
class Person:
    """Who /authorize signs in for a client."""

    sub: str
    email: str
    email_verified: Any = True
    name: str = "Pat Example"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RegisteredClient:
    client_id: str
    client_secret: str
    redirect_uri: str
    person: Person
    claims_override: dict[str, Any] = field(default_factory=dict)
    sign_with: Signer = "rs256"
    deny: str | None = None  # /authorize answers with this OAuth error instead of a code
    token_status: int | None = None  # /token fails with this status
    token_delay_s: float = 0.0
    token_requests: list[dict[str, str]] = field(default_factory=list)


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str | None
    person: Person
    expires: float


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _error(status: int, error: str, description: str = "") -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


class OidcProvider:
    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig"})
        self.ec = ECKey.generate_key("P-256", parameters={"kid": "ec-1", "use": "sig"})
        # Claims to be the published RSA key (same kid), but is not: its signatures must fail.
        self.rogue = RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig"})
        self._generation = 1
        self.clients: dict[str, RegisteredClient] = {}
        self._codes: dict[str, _Code] = {}
        self._lock = threading.Lock()
        self.discovery_hits = 0
        self.app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
                Route("/jwks", self.jwks),
                # Any other path prefix serves this issuer's document too: an issuer
                # configured with a wrong path gets a document naming another issuer.
                Route("/{prefix}/.well-known/openid-configuration", self.discovery),
            ]
        )
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="off", http="h11", ws="none"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the test OIDC provider did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()

    def register(self, person: Person, *, redirect_uri: str, **knobs: Any) -> RegisteredClient:
        client = RegisteredClient(
            client_id=f"client-{secrets.token_hex(4)}",
            client_secret=secrets.token_urlsafe(24),
            redirect_uri=redirect_uri,
            person=person,
            **knobs,
        )
        with self._lock:
            self.clients[client.client_id] = client
        return client

    def rotate_signing_key(self) -> None:
        """Sign with a new RSA key under a new kid from now on, as IdPs do."""
        self._generation += 1
        self.rsa = RSAKey.generate_key(
            2048, parameters={"kid": f"rsa-{self._generation}", "use": "sig"}
        )

    # --- endpoints ---------------------------------------------------------------------

    async def discovery(self, request: Request) -> Response:
        self.discovery_hits += 1
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                ],
                "scopes_supported": ["openid", "email", "profile"],
            }
        )

    async def jwks(self, request: Request) -> Response:
        return JSONResponse(KeySet([self.rsa, self.ec]).as_dict(private=False))

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        client = self.clients.get(q.get("client_id", ""))
        if client is None or q.get("redirect_uri") != client.redirect_uri:
            # Never redirect to an unregistered URI.
            return _error(400, "invalid_request", "unknown client or redirect_uri")
        back: dict[str, str] = {"state": q.get("state", "")}
        problem = None
        if q.get("response_type") != "code":
            problem = "unsupported_response_type"
        elif "openid" not in q.get("scope", "").split():
            problem = "invalid_scope"
        elif q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            problem = "invalid_request"
        elif client.deny:
            problem = client.deny
        if problem:
            back["error"] = problem
        else:
            code = secrets.token_urlsafe(24)
            with self._lock:
                self._codes[code] = _Code(
                    client_id=client.client_id,
                    redirect_uri=client.redirect_uri,
                    challenge=q["code_challenge"],
                    nonce=q.get("nonce"),
                    person=client.person,
                    expires=time.time() + 60,
                )
            back["code"] = code
        return RedirectResponse(f"{client.redirect_uri}?{urlencode(back)}", status_code=302)

    def _authenticate(self, request: Request, form: dict[str, str]) -> RegisteredClient | None:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            raw = base64.b64decode(header[6:]).decode()
            client_id, _, secret = raw.partition(":")
            client_id, secret = unquote(client_id), unquote(secret)
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        client = self.clients.get(client_id)
        if client is None or not secrets.compare_digest(client.client_secret, secret):
            return None
        return client

    async def token(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        client = self._authenticate(request, form)
        if client is None:
            return _error(401, "invalid_client", "client authentication failed")
        client.token_requests.append(
            {**form, "auth": "basic" if "authorization" in request.headers else "post"}
        )
        if client.token_delay_s:
            await asyncio.sleep(client.token_delay_s)
        if client.token_status is not None:
            return Response("upstream trouble", status_code=client.token_status)
        if form.get("grant_type") != "authorization_code":
            return _error(400, "unsupported_grant_type")
        with self._lock:
            grant = self._codes.pop(form.get("code", ""), None)  # single use
        verifier = form.get("code_verifier", "")
        if (
            grant is None
            or grant.client_id != client.client_id
            or grant.redirect_uri != form.get("redirect_uri")
            or grant.expires < time.time()
            or not verifier
            or _s256(verifier) != grant.challenge
        ):
            return _error(400, "invalid_grant", "code, redirect_uri or code_verifier wrong")
        return JSONResponse(
            {
                "access_token": secrets.token_urlsafe(24),
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": self.id_token(client, grant),
            },
            headers={"Cache-Control": "no-store"},
        )

    def id_token(self, client: RegisteredClient, grant: _Code) -> str:
        now = int(time.time())
        person = grant.person
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": person.sub,
            "aud": client.client_id,
            "exp": now + 300,
            "iat": now,
            "auth_time": now,
            "email": person.email,
            "name": person.name,
            **person.extra,
        }
        if person.email_verified is not None:
            claims["email_verified"] = person.email_verified
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        for name, value in client.claims_override.items():
            if value is DROP:
                claims.pop(name, None)
            else:
                claims[name] = value
        if client.sign_with == "es256":
            return jwt.encode({"alg": "ES256", "kid": "ec-1"}, claims, self.ec)
        if client.sign_with == "hs256":
            key = OctKey.import_key(client.client_secret.encode())
            return jwt.encode({"alg": "HS256"}, claims, key, algorithms=["HS256"])
        rsa = self.rogue if client.sign_with == "rogue" else self.rsa
        return jwt.encode({"alg": "RS256", "kid": self.rsa.kid}, claims, rsa)
