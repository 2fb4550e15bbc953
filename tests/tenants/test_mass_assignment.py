"""Mass assignment: every JSON write schema of the API refuses server-owned and
unknown fields, and a refused write leaves the database untouched.

Generic on purpose: the routes come from the app's OpenAPI, so a route added
tomorrow is probed tomorrow. For every POST/PUT/PATCH under /api/v1 with a JSON
body, and for every object the body schema nests (`admin` of TenantCreate,
`business_hours` of ProjectCreate, items of lists…), one request carries
`tenant_id`, `id`, `created_at`, `updated_at`, `version`, — where that schema
does not define them — `role` and `client_id`, and an unknown field. The
answer must be 422 `validation_failed` naming *each* of those fields as
`extra_forbidden` (so a 422 for some other reason, like a missing required
field, proves nothing and does not pass), and a snapshot of the tenant's rows
and of the tenants table, taken with the admin engine, must be unchanged.

Paths with ids are filled with real objects of the probing tenant by the
providers in PATH_PARAMS / ROUTE_PARAMS below. A route whose parameters no
provider fills FAILS the test with instructions: register it there.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from pydantic import BaseModel, ConfigDict
from sqlalchemy import text

from service.app import create_app
from service.core.config import Settings
from service.core.db import Database
from service.core.errors import install_error_handlers
from tenants.models import IdentityProvider
from tenants.security import encrypt
from tests.factories import (
    TenantSeed,
    bearer,
    make_client,
    make_tenant,
    make_user,
    platform_headers,
)

API = "/api/v1"
WRITE_METHODS = ("post", "put", "patch")


@dataclass
class Probe:
    """The probing tenant (its admin calls every route) and the objects made for paths."""

    client: AsyncClient
    settings: Settings
    db: Database
    seed: TenantSeed
    other: TenantSeed
    """Another tenant: its id is the `tenant_id` a mass-assignment attack would send."""
    made: dict[str, str] = field(default_factory=dict)

    async def once(self, name: str, make: Callable[[], Awaitable[str]]) -> str:
        """One object per name and test, shared by the routes that need it."""
        if name not in self.made:
            self.made[name] = await make()
        return self.made[name]

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.post(
            API + path, json=body, headers=bearer(self.seed.admin_token)
        )
        if response.status_code != 201:
            pytest.fail(
                f"A path-parameter provider could not create its object: POST {API}{path} "
                f"{body} answered {response.status_code} {response.text}. If the route's contract "
                f"changed, update the provider in PATH_PARAMS ({__file__})."
            )
        created: dict[str, Any] = response.json()
        return created


ParamProvider = Callable[[Probe], Awaitable[str]]
RouteProvider = Callable[[Probe], Awaitable[dict[str, str]]]

# --- registries: extend these when you add routes ------------------------------------------


async def _tenant(probe: Probe) -> str:
    return str(probe.seed.id)


async def _user(probe: Probe) -> str:
    async def make() -> str:
        return str((await make_user(probe.db, probe.seed.id, "supervisor")).id)

    return await probe.once("user", make)


async def _client(probe: Probe) -> str:
    async def make() -> str:
        return str((await make_client(probe.db, probe.seed.id)).id)

    return await probe.once("client", make)


async def _project(probe: Probe) -> str:
    async def make() -> str:
        client_id = await _client(probe)
        body = {"client_id": client_id, "name": f"Project {secrets.token_hex(3)}"}
        return str((await probe.create("/projects", body))["id"])

    return await probe.once("project", make)


async def _agent(probe: Probe) -> str:
    async def make() -> str:
        return str((await probe.create("/agents", {"name": "Ann Agent"}))["id"])

    return await probe.once("agent", make)


async def _contract(probe: Probe) -> str:
    async def make() -> str:
        body = {
            "project_id": await _project(probe),
            "effective_from": "2024-01-01",
            "targets": [{"kpi": "abandonment_rate", "target": 0.05}],
        }
        return str((await probe.create("/contracts", body))["id"])

    return await probe.once("contract", make)


async def _shift(probe: Probe) -> str:
    async def make() -> str:
        ids = await _certification(probe)  # an agent works the projects it is certified for
        body = {**ids, "start": "2030-01-07T09:00:00Z", "end": "2030-01-07T17:00:00Z"}
        return str((await probe.create("/shifts", body))["id"])

    return await probe.once("shift", make)


async def _identity_provider(probe: Probe) -> str:
    # Made directly: creating one through the API fetches the issuer's discovery document.
    async def make() -> str:
        async with probe.db.admin_transaction() as admin:
            idp = IdentityProvider(
                tenant_id=probe.seed.id,
                name="Staff SSO",
                issuer="https://idp.example.com",
                oauth_client_id="callpact",
                client_secret_enc=encrypt(
                    probe.settings.auth.secret_key.get_secret_value(), b"s3cret", b"idp-secret"
                ),
                allowed_domains=["example.com"],
            )
            admin.add(idp)
        return str(idp.id)

    return await probe.once("identity_provider", make)


async def _certification(probe: Probe) -> dict[str, str]:
    agent_id, project_id = await _agent(probe), await _project(probe)

    async def make() -> str:
        body = {"project_id": project_id, "certified_from": "2024-01-01"}
        return str((await probe.create(f"/agents/{agent_id}/certifications", body))["id"])

    await probe.once("certification", make)
    return {"agent_id": agent_id, "project_id": project_id}


PATH_PARAMS: dict[str, ParamProvider] = {
    # path parameter name -> a real object of the probing tenant (its id as in the URL)
    "tenant_id": _tenant,
    "user_id": _user,
    "client_id": _client,
    "project_id": _project,
    "agent_id": _agent,
    "contract_id": _contract,
    "shift_id": _shift,
    "idp_id": _identity_provider,
}

ROUTE_PARAMS: dict[tuple[str, str], RouteProvider] = {
    # (METHOD, path template) -> every parameter of that route, when they depend on each other
    ("PATCH", "/api/v1/agents/{agent_id}/certifications/{project_id}"): _certification,
}

UNREACHABLE: dict[tuple[str, str], str] = {
    # (METHOD, path template) -> why the probing caller gets 401/403/404 before the body is
    # validated. Each entry is counted; an entry whose route answers 422 fails as stale.
}

_RECEIPT = (
    "validates its body itself, row by row: a malformed body is one 422 naming the body, and "
    "bad rows are listed (row, field) in a 200 receipt while the valid rows land"
)
SELF_VALIDATED: dict[tuple[str, str], str] = {
    # (METHOD, path template) -> how the route refuses what its schema forbids, when it is not
    # FastAPI's 422 `validation_failed`. Understood: a 422 problem refusing the whole body, and
    # a 200 receipt whose `rejected` names (row, field) — row 1 being the probed object.
    ("POST", "/api/v1/contacts:batch"): _RECEIPT,
    ("POST", "/api/v1/agent-states:batch"): _RECEIPT,
}

ALLOWED_FIELDS: dict[tuple[str, str], dict[str, str]] = {
    # (METHOD, path template) -> {server-owned field a schema legitimately defines: why}
}


def caller_headers(probe: Probe, path: str) -> dict[str, str]:
    """Platform routes are probed as the platform admin, the rest as the tenant's admin."""
    if path.startswith(f"{API}/platform/"):
        return platform_headers(probe.settings)
    return bearer(probe.seed.admin_token)


# --- the probe ---------------------------------------------------------------------

SERVER_OWNED = ("tenant_id", "id", "created_at", "updated_at", "version")
UNLESS_DEFINED = ("role", "client_id")
UNKNOWN = "is_platform_admin"


def attack_value(probe: Probe, name: str) -> Any:
    return {
        "tenant_id": str(probe.other.id),
        "id": str(uuid.uuid4()),
        "created_at": "2000-01-01T00:00:00Z",
        "updated_at": "2000-01-01T00:00:00Z",
        "version": 999,
        "role": "tenant_admin",
        "client_id": probe.made.get("client", str(uuid.uuid4())),
        UNKNOWN: True,
    }[name]


@dataclass(frozen=True)
class Site:
    """An object inside a request body: where it sits and what its schema defines."""

    path: tuple[str, ...]
    """Keys from the body's root; "0" is a list item."""
    schema_name: str
    defined: frozenset[str]
    extra: tuple[tuple[str, Any], ...] = ()
    """Fields the object must carry to be validated at all (a union's discriminator)."""

    def where(self) -> str:
        return ".".join(self.path) or "<body>"


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    ref = schema.get("$ref")
    if ref is None:
        return "", schema
    name = ref.rsplit("/", 1)[-1]
    resolved: dict[str, Any] = spec["components"]["schemas"][name]
    return name, resolved


def sites(
    spec: dict[str, Any],
    schema: dict[str, Any],
    path: tuple[str, ...] = (),
    seen: frozenset[str] = frozenset(),
    extra: tuple[tuple[str, Any], ...] = (),
) -> Iterator[Site]:
    """Every object a body can hold, depth-first, each schema once per branch."""
    name, schema = _resolve(spec, schema)
    if name in seen or len(path) > 6:
        return
    seen = seen | {name} if name else seen
    discriminator = schema.get("discriminator")
    if discriminator and discriminator.get("mapping"):
        for tag, ref in discriminator["mapping"].items():
            yield from sites(
                spec, {"$ref": ref}, path, seen, ((discriminator["propertyName"], tag),)
            )
        return
    for key in ("anyOf", "oneOf", "allOf"):
        for variant in schema.get(key, []):
            yield from sites(spec, variant, path, seen, extra)
    if schema.get("type") == "array" and "items" in schema:
        yield from sites(spec, schema["items"], (*path, "0"), seen)
    properties: dict[str, Any] = schema.get("properties", {})
    if schema.get("type") == "object" or properties:
        if properties:
            yield Site(path, name or "<inline>", frozenset(properties), extra)
            for prop, sub in properties.items():
                yield from sites(spec, sub, (*path, prop), seen)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict) and additional:
            yield from sites(spec, additional, (*path, "key"), seen)


def body_for(site: Site, fields: list[str], probe: Probe) -> Any:
    body: Any = {**dict(site.extra), **{f: attack_value(probe, f) for f in fields}}
    for part in reversed(site.path):
        body = [body] if part == "0" else {part: body}
    return body


def probed_fields(site: Site, allowed: dict[str, str]) -> tuple[list[str], list[str]]:
    """(fields to send, server-owned fields the schema defines without an ALLOWED_FIELDS entry)."""
    fields = [f for f in SERVER_OWNED if f not in site.defined]
    fields += [f for f in UNLESS_DEFINED if f not in site.defined]
    fields.append(UNKNOWN)
    defined_server_owned = [f for f in SERVER_OWNED if f in site.defined and f not in allowed]
    return [f for f in fields if f not in allowed], defined_server_owned


def rejected(errors: list[dict[str, Any]], site: Site, name: str) -> bool:
    """An `extra_forbidden` error for `name` at the site (a union may add its variant's name)."""
    for error in errors:
        parts = str(error.get("field", "")).split(".")
        if error.get("type") != "extra_forbidden" or parts[-1] != name:
            continue
        rest = iter(parts[:-1])
        if all(any(p == want for p in rest) for want in site.path):
            return True
    return False


def rejected_row(problems: list[dict[str, Any]], site: Site, name: str) -> bool:
    """A receipt's refusal of `name` in row 1 (rows count from 1) at the site's place in it."""
    if len(site.path) < 2 or site.path[1] != "0":
        return False
    want = ".".join((*site.path[2:], name))
    return any(p.get("row") == 1 and p.get("field") == want for p in problems)


async def snapshot(db: Database, tenant_id: uuid.UUID) -> dict[str, tuple[int, str]]:
    """Row count and digest of every tenant-owned table (this tenant's rows) and of `tenants`."""
    async with db.admin_transaction() as admin:
        tables = (
            await admin.execute(
                text(
                    """
                    select c.relname from pg_class c
                    join pg_namespace n on n.oid = c.relnamespace
                    join pg_attribute a on a.attrelid = c.oid
                    where n.nspname = 'public' and c.relkind in ('r', 'p')
                      and not c.relispartition and a.attname = 'tenant_id' and not a.attisdropped
                    order by c.relname
                    """
                )
            )
        ).scalars()
        parts = [
            f"select '{t}', count(*), md5(coalesce(string_agg(x::text, '|' order by x::text), ''))"
            f' from "{t}" x where x.tenant_id = :t'
            for t in tables
        ]
        parts.append(
            "select 'tenants', count(*), md5(string_agg(x::text, '|' order by x::text))"
            " from tenants x"
        )
        rows = await admin.execute(text(" union all ".join(parts)), {"t": tenant_id})
        return {name: (count, digest) for name, count, digest in rows}


# --- collection ---------------------------------------------------------------------


def _spec() -> dict[str, Any]:
    app = create_app(Settings(env="test", log={"level": "WARNING", "format": "json"}))
    return app.openapi()


SPEC = _spec()


def write_routes(spec: dict[str, Any]) -> list[tuple[str, str]]:
    routes = []
    for path, operations in spec["paths"].items():
        if not path.startswith(API + "/"):
            continue
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if method not in WRITE_METHODS or "application/json" not in content:
                continue
            # A file sent as the raw body (JSON among its media types) has no fields to assign.
            _, schema = _resolve(spec, content["application/json"].get("schema", {}))
            if schema.get("type") == "string":
                continue
            routes.append((method.upper(), path))
    return sorted(routes)


ROUTES = write_routes(SPEC)


def path_params(spec: dict[str, Any], method: str, path: str) -> list[str]:
    operation = spec["paths"][path][method.lower()]
    return [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]


def unfilled(method: str, path: str) -> list[str]:
    if (method, path) in ROUTE_PARAMS:
        return []
    return [p for p in path_params(SPEC, method, path) if p not in PATH_PARAMS]


def how_to_register(method: str, path: str, missing: list[str]) -> str:
    return (
        f"{method} {path}: no provider for path parameter(s) {', '.join(missing)}. "
        f"Register one in {__file__}: add to PATH_PARAMS an entry "
        f"'{missing[0]}': an async function (probe: Probe) -> str that creates a real object "
        f"of probe.seed's tenant and returns its id (see _project), or, when the parameters "
        f"depend on each other, add to ROUTE_PARAMS ({method!r}, {path!r}): an async function "
        f"(probe: Probe) -> dict[str, str] giving every parameter (see _certification)."
    )


def test_the_walk_finds_the_write_routes() -> None:
    """Guards the walk itself: a broken OpenAPI walk must not pass by probing nothing."""
    assert ("POST", f"{API}/platform/tenants") in ROUTES
    assert ("PATCH", f"{API}/users/{{user_id}}") in ROUTES
    assert ("POST", f"{API}/invitations") in ROUTES
    # The multipart logo upload has no JSON body.
    assert not [r for r in ROUTES if r[1].endswith("/tenant/logo")]
    tenant_create = next(
        s
        for s in sites(SPEC, {"$ref": "#/components/schemas/TenantCreate"})
        if s.path == ("admin",)
    )
    assert tenant_create.schema_name == "FirstAdmin"


def test_every_path_parameter_has_a_provider() -> None:
    problems = [how_to_register(m, p, unfilled(m, p)) for m, p in ROUTES if unfilled(m, p)]
    assert not problems, "\n".join(problems)


def test_registries_name_existing_routes() -> None:
    for registry in (ROUTE_PARAMS, UNREACHABLE, SELF_VALIDATED, ALLOWED_FIELDS):
        stale = [key for key in registry if key not in ROUTES]
        assert not stale, f"entries for routes that no longer exist: {stale}"


# --- the probe, route by route ---------------------------------------------------------


_OTHER: list[TenantSeed] = []


@pytest_asyncio.fixture
async def probe(client: AsyncClient, settings: Settings, db: Database, app: FastAPI) -> Probe:
    seed = await make_tenant(client, settings)
    # Only its id is used, as an attack value: one for the run is enough.
    if not _OTHER:
        _OTHER.append(await make_tenant(client, settings))
    return Probe(client, settings, db, seed, _OTHER[0])


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
async def test_write_schema_refuses_server_owned_and_unknown_fields(
    probe: Probe, method: str, path: str
) -> None:
    missing = unfilled(method, path)
    if missing:
        pytest.fail(how_to_register(method, path, missing))
    route_provider = ROUTE_PARAMS.get((method, path))
    if route_provider is not None:
        values = await route_provider(probe)
    else:
        values = {p: await PATH_PARAMS[p](probe) for p in path_params(SPEC, method, path)}
    url = path.format(**values)
    await _client(probe)  # a real client id of the tenant, the client_id an attacker would try

    operation = SPEC["paths"][path][method.lower()]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    allowed = ALLOWED_FIELDS.get((method, path), {})
    found = list(sites(SPEC, schema))
    assert found, f"{method} {path}: its JSON body holds no object schema to probe"

    before = await snapshot(probe.db, probe.seed.id)
    failures: list[str] = []
    unreachable: list[int] = []
    self_validated = SELF_VALIDATED.get((method, path))
    self_refusals = 0
    for site in found:
        fields, defines = probed_fields(site, allowed)
        if defines:
            failures.append(
                f"{site.schema_name} at {site.where()} defines server-owned {defines}; if a "
                f"caller may really set it, add it with the reason to ALLOWED_FIELDS"
            )
        response = await probe.client.request(
            method,
            url,
            json=body_for(site, fields, probe),
            headers=caller_headers(probe, path),
        )
        if response.status_code in (401, 403, 404):
            unreachable.append(response.status_code)
            continue
        body = response.json()
        if response.status_code == 422 and body.get("code") == "validation_failed":
            assert response.headers["content-type"] == "application/problem+json"
            accepted = [f for f in fields if not rejected(body["errors"], site, f)]
        elif self_validated and response.status_code == 422:
            assert response.headers["content-type"] == "application/problem+json"
            self_refusals += 1  # the whole body refused
            continue
        elif self_validated and response.status_code == 200 and "rejected" in body:
            self_refusals += 1
            assert body.get("accepted", 0) == 0, body
            accepted = [f for f in fields if not rejected_row(body["rejected"], site, f)]
        else:
            failures.append(
                f"{site.schema_name} at {site.where()}: {response.status_code} {response.text}"
            )
            continue
        if accepted:
            failures.append(
                f"{site.schema_name} at {site.where()} does not forbid {accepted} "
                f"(write schemas need extra='forbid'): {body['errors']}"
            )
    after = await snapshot(probe.db, probe.seed.id)

    changed = sorted(t for t in before.keys() | after.keys() if before.get(t) != after.get(t))
    assert not changed, f"{method} {path}: refused writes changed {changed}"
    reason = UNREACHABLE.get((method, path))
    if unreachable:
        assert reason, (
            f"{method} {path} answered {sorted(set(unreachable))} to its tenant's admin before "
            f"validating the body. If that caller cannot reach it by design, add the route with "
            f"the reason to UNREACHABLE; otherwise fix the route or its provider."
        )
        assert len(unreachable) == len(found)
        print(f"unreachable ({len(unreachable)} probes): {method} {path}: {reason}")
    else:
        assert reason is None, f"{method} {path} is reachable now: remove it from UNREACHABLE"
    if self_refusals:
        print(f"self-validated ({self_refusals} probes): {method} {path}: {self_validated}")
    assert not failures, f"{method} {path}:\n" + "\n".join(failures)


# --- the probe can fail -----------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str


class _Loose(BaseModel):  # extra="ignore", pydantic's default: the mass-assignment hole
    name: str


class _Parent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    strict: _Strict
    loose: list[_Loose]


async def test_the_probe_tells_a_loose_schema_from_a_strict_one() -> None:
    """A schema that ignores extras is caught, at any depth."""
    mini = FastAPI()
    install_error_handlers(mini)

    @mini.post("/things")
    async def create(data: _Parent) -> None:
        """A write route."""

    spec = mini.openapi()
    schema = spec["paths"]["/things"]["post"]["requestBody"]["content"]["application/json"]
    found = {s.where(): s for s in sites(spec, schema["schema"])}
    assert set(found) == {"<body>", "strict", "loose.0"}
    fake = Probe(None, None, None, None, None)  # type: ignore[arg-type]
    fake.other = TenantSeed(uuid.uuid4(), "x", uuid.uuid4(), "x", "x")
    verdicts = {}
    async with AsyncClient(transport=ASGITransport(app=mini), base_url="http://t") as http:
        for where, site in found.items():
            fields, _ = probed_fields(site, {})
            response = await http.post("/things", json=body_for(site, fields, fake))
            assert response.status_code == 422
            errors = response.json()["errors"]
            verdicts[where] = all(rejected(errors, site, f) for f in fields)
    assert verdicts == {"<body>": True, "strict": True, "loose.0": False}
