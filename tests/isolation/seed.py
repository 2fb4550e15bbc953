"""The isolation suite's world: tenant A (the victim) and tenant B (the
attacker), seeded alike with two clients and objects of every kind, and a
third tenant C that is suspended.

Every seed function is registered with `@seeder` and runs once per tenant,
in the order of this file (put a new one below those it depends on). It
creates its objects through the real API where one exists (as the tenant's
admin) or with the admin engine, and records each with `world.add(kind, id,
client=…, project=…, **refs)`. `kind` is the table name; `client`/`project`
say which client and project own the object, which decides who must not
see it: everything of A is hidden from B; objects of A's client 1 from
A's client viewer of client 2; objects of A's project 1 from A's supervisor
(assigned to project 2 only). Names and e-mails carry a marker per tenant
and per client, so a leaked name is caught like a leaked id.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes
from email.policy import default as default_policy
from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient
from joserfc import jwt
from sqlalchemy import select, text, update
from sqlmodel import col

from service.core.config import Settings
from service.core.db import Database
from service.core.mail import deliver_outbox
from service.core.time import utcnow
from tenants.context import API_TOKEN_SCOPES
from tenants.keys import ALGORITHM, KeyStore
from tenants.models import ApiToken, AuditEntry, IdentityProvider, PasswordReset
from tenants.tokens import AUDIENCE, TOKEN_TYPE
from tests.factories import PASSWORD, bearer, login, make_tenant, make_user, platform_headers

CLIENT_LABELS = ("c1", "c2")
NIL = uuid.UUID(int=0)  # until seed_tenant runs
LOGO_SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8">'
    b'<rect width="8" height="8" fill="#123456"/></svg>'
)


@dataclass(frozen=True)
class Obj:
    """One seeded object: its table (`kind`), id, owners and the other values
    its routes need (`refs`, e.g. the agent and project of a certification)."""

    kind: str
    id: uuid.UUID
    client_id: uuid.UUID | None = None
    project_id: uuid.UUID | None = None
    refs: Mapping[str, str] = field(default_factory=dict)

    def attr(self, name: str) -> str:
        if name == "id":
            return str(self.id)
        if name in ("client_id", "project_id"):
            value = getattr(self, name)
            assert value is not None, f"{self.kind} {self.id} has no {name}"
            return str(value)
        return self.refs[name]


@dataclass
class World:
    """One tenant and everything seeded in it."""

    name: str
    marker: str
    tenant_id: uuid.UUID = NIL
    slug: str = ""
    admin_id: uuid.UUID = NIL
    admin_email: str = ""
    clients: dict[str, uuid.UUID] = field(default_factory=dict)
    users: dict[str, uuid.UUID] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    objects: dict[str, list[Obj]] = field(default_factory=dict)
    supervisor_projects: set[uuid.UUID] = field(default_factory=set)
    projects_of_client: dict[str, uuid.UUID] = field(default_factory=dict)
    seed_errors: list[str] = field(default_factory=list)

    def client_marker(self, label: str) -> str:
        return f"{self.marker}{label}"

    @property
    def markers(self) -> list[str]:
        return [self.marker, *(self.client_marker(label) for label in CLIENT_LABELS)]

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.tokens["admin"])

    def add(
        self,
        kind: str,
        id: uuid.UUID | str,
        *,
        client: str | uuid.UUID | None = None,
        project: uuid.UUID | str | None = None,
        **refs: Any,
    ) -> Obj:
        """Record a seeded object. `client`: a label ("c1"/"c2") or a client id."""
        client_id = self.clients[client] if isinstance(client, str) else client
        obj = Obj(
            kind,
            uuid.UUID(str(id)),
            client_id,
            uuid.UUID(str(project)) if project is not None else None,
            {k: str(v) for k, v in refs.items()},
        )
        self.objects.setdefault(kind, []).append(obj)
        return obj

    def all_objects(self) -> list[Obj]:
        return [o for objs in self.objects.values() for o in objs]


@dataclass
class SeedEnv:
    http: AsyncClient
    settings: Settings
    db: Database
    app: FastAPI

    async def call(
        self,
        world: World,
        method: str,
        path: str,
        json: Any = None,
        *,
        files: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """A request as the world's tenant admin that must succeed; its JSON (or None)."""
        response = await self.http.request(
            method,
            "/api/v1" + path,
            json=json,
            files=files,
            headers=headers or world.headers,
        )
        assert response.status_code < 300, f"seed {method} {path}: {response.text}"
        return response.json() if response.content else None


Seeder = Callable[[SeedEnv, World], Awaitable[None]]
SEEDERS: list[Seeder] = []


def seeder(fn: Seeder) -> Seeder:
    SEEDERS.append(fn)
    return fn


# --- seed functions, in dependency order --------------------------------------------------


@seeder
async def seed_tenant(env: SeedEnv, w: World) -> None:
    seed = await make_tenant(env.http, env.settings, slug=f"iso-{w.marker}")
    w.tenant_id, w.slug, w.admin_id, w.admin_email = (
        seed.id,
        seed.slug,
        seed.admin_id,
        seed.admin_email,
    )
    w.tokens["admin"] = seed.admin_token
    w.users["admin"] = seed.admin_id
    w.add("tenants", seed.id)
    w.add("users", seed.admin_id)
    await env.call(
        w, "PUT", "/tenant/logo", files={"logo": ("logo.svg", LOGO_SVG, "image/svg+xml")}
    )
    pair = await env.http.post(
        "/api/v1/auth/token",
        json={"tenant": w.slug, "email": w.admin_email, "password": PASSWORD},
    )
    w.secrets["refresh_token"] = pair.json()["refresh_token"]


@seeder
async def seed_clients(env: SeedEnv, w: World) -> None:
    for label in CLIENT_LABELS:
        # Unmarked name: attackers reuse it (names are unique per tenant only).
        name = f"Client {label} {secrets.token_hex(6)}"
        body = await env.call(w, "POST", "/clients", {"name": name})
        w.clients[label] = uuid.UUID(body["id"])
        w.add("clients", body["id"], client=label, name=name)


@seeder
async def seed_users(env: SeedEnv, w: World) -> None:
    roles = {
        "supervisor": ("supervisor", None),
        "analyst": ("analyst", None),
        "viewer_c1": ("client_viewer", "c1"),
        "viewer_c2": ("client_viewer", "c2"),
    }
    for name, (role, label) in roles.items():
        marker = w.client_marker(label) if label else w.marker
        user = await make_user(
            env.db,
            w.tenant_id,
            role,
            client_id=w.clients[label] if label else None,
            email=f"{name.replace('_', '-')}-{marker}@example.com",
        )
        w.users[name] = user.id
        w.add("users", user.id, client=label)
        if name in ("supervisor", "viewer_c2"):
            w.tokens[name] = await login(env.http, w.slug, user.email)


@seeder
async def seed_projects(env: SeedEnv, w: World) -> None:
    for label in CLIENT_LABELS:
        queue = f"q-{secrets.token_hex(6)}"  # unmarked: attackers send it
        body = await env.call(
            w,
            "POST",
            "/projects",
            {
                "client_id": str(w.clients[label]),
                "name": f"{w.client_marker(label)} project",
                "queue_keys": [queue],
            },
        )
        w.projects_of_client[label] = uuid.UUID(body["id"])
        w.add("projects", body["id"], client=label, project=body["id"], queue_key=queue)
    # The supervisor actor runs project 2 only: project 1's objects are hidden from them.
    assigned = [str(w.projects_of_client["c2"])]
    await env.call(w, "PUT", f"/users/{w.users['supervisor']}/projects", {"project_ids": assigned})
    w.supervisor_projects = {w.projects_of_client["c2"]}


@seeder
async def seed_contracts(env: SeedEnv, w: World) -> None:
    """One contract per project, in force since 2020 and open-ended (so `current` finds it)."""
    for label in CLIENT_LABELS:
        project = w.projects_of_client[label]
        body = await env.call(
            w,
            "POST",
            "/contracts",
            {
                "project_id": str(project),
                "effective_from": "2020-01-01",
                "reference": f"{w.client_marker(label)} contract",
                "targets": [
                    {"kpi": "service_level", "formula": "SL1", "threshold_s": 20, "target": 0.8}
                ],
            },
        )
        w.add("contracts", body["id"], client=label, project=project)


@seeder
async def seed_agents(env: SeedEnv, w: World) -> None:
    # Unmarked: attackers reuse it (external ids are unique per tenant only).
    external, external_2 = f"ext-{secrets.token_hex(6)}", f"ext-{secrets.token_hex(6)}"
    agent = await env.call(
        w,
        "POST",
        "/agents",
        {"name": f"{w.marker} agent", "external_ids": {"pbx": external, "acd": external_2}},
    )
    w.add("agents", agent["id"], external_id=external, external_id_2=external_2, name=agent["name"])
    for label in CLIENT_LABELS:
        project = w.projects_of_client[label]
        cert = await env.call(
            w,
            "POST",
            f"/agents/{agent['id']}/certifications",
            {"project_id": str(project), "certified_from": "2026-01-01"},
        )
        w.add(
            "agent_certifications",
            cert["id"],
            client=label,
            project=project,
            agent_id=agent["id"],
            project_id=project,
        )
    # An agent of client 1 only: the pool is the tenant's, but a client viewer sees only
    # the agents certified for its client, so to client 2's viewer this one does not exist.
    label = CLIENT_LABELS[0]
    project = w.projects_of_client[label]
    own_external, own_external_2 = f"ext-{secrets.token_hex(6)}", f"ext-{secrets.token_hex(6)}"
    only = await env.call(
        w,
        "POST",
        "/agents",
        {
            "name": f"{w.client_marker(label)} agent",
            "external_ids": {"pbx": own_external, "acd": own_external_2},
        },
    )
    await env.call(
        w,
        "POST",
        f"/agents/{only['id']}/certifications",
        {"project_id": str(project), "certified_from": "2026-01-01"},
    )
    w.add(
        "agents",
        only["id"],
        client=label,
        external_id=own_external,
        external_id_2=own_external_2,
        name=only["name"],
    )


@seeder
async def seed_shifts(env: SeedEnv, w: World) -> None:
    """The agent on each project, on different days (2026-03-02 and -03)."""
    agent = w.objects["agents"][0]
    for day, label in enumerate(CLIENT_LABELS, start=2):
        project = w.projects_of_client[label]
        body = await env.call(
            w,
            "POST",
            "/shifts",
            {
                "agent_id": str(agent.id),
                "project_id": str(project),
                "start": f"2026-03-0{day}T09:00:00Z",
                "end": f"2026-03-0{day}T17:00:00Z",
                "note": f"{w.client_marker(label)} shift",
            },
        )
        w.add("shifts", body["id"], client=label, project=project, agent_id=agent.id)


@seeder
async def seed_contacts(env: SeedEnv, w: World) -> None:
    """A contact per project, on the shifts' days, so KPI answers carry data."""
    for day, label in enumerate(CLIENT_LABELS, start=2):
        receipt = await env.call(
            w,
            "POST",
            "/contacts:batch",
            {
                "records": [
                    {
                        "external_id": f"{w.client_marker(label)}-contact",
                        "project_id": str(w.projects_of_client[label]),
                        "queued_at": f"2026-03-0{day}T10:00:00Z",
                        "answered_at": f"2026-03-0{day}T10:00:10Z",
                        "ended_at": f"2026-03-0{day}T10:05:00Z",
                        "outcome": "answered",
                    }
                ]
            },
        )
        assert receipt["accepted"] == 1, receipt
    # A double booking: the agent, on shift on project 1 on 2026-03-02, takes a contact
    # of project 2 at that time (so findings name both clients' projects).
    agent = w.objects["agents"][0]
    receipt = await env.call(
        w,
        "POST",
        "/contacts:batch",
        {
            "records": [
                {
                    "external_id": f"{w.client_marker('c2')}-double",
                    "project_id": str(w.projects_of_client["c2"]),
                    "queued_at": "2026-03-02T10:30:00Z",
                    "answered_at": "2026-03-02T10:30:05Z",
                    "ended_at": "2026-03-02T10:40:00Z",
                    "outcome": "answered",
                    "agent_key": agent.refs["external_id"],
                }
            ]
        },
    )
    assert receipt["accepted"] == 1, receipt


@seeder
async def seed_invitations(env: SeedEnv, w: World) -> None:
    invites = [("analyst", None), ("client_viewer", "c1"), ("client_viewer", "c2")]
    for role, label in invites:
        marker = w.client_marker(label) if label else w.marker
        email = f"invitee-{role.replace('_', '-')}-{marker}@example.com"
        body = await env.call(
            w,
            "POST",
            "/invitations",
            {
                "email": email,
                "role": role,
                "client_id": str(w.clients[label]) if label else None,
            },
        )
        w.add("invitations", body["id"], client=label)
    # The last invitation's link, from the mail: a real token of this tenant. Requests
    # only queue mail; deliver it here as the worker would.
    await deliver_outbox(env.db, env.settings)
    for path in sorted(env.settings.outbox_dir.glob("*.eml"), reverse=True):
        mail = message_from_bytes(path.read_bytes(), policy=default_policy)
        if mail["To"] == email:
            w.secrets["invitation_token"] = (
                mail.get_body().get_content().split("token=")[1].split()[0]  # type: ignore[union-attr]
            )
            break
    assert "invitation_token" in w.secrets


@seeder
async def seed_api_tokens(env: SeedEnv, w: World) -> None:
    for name in ("api", "expired_api", "revoked_api"):
        body = await env.call(
            w,
            "POST",
            "/api-tokens",
            {"name": f"{w.marker} {name}", "scopes": sorted(API_TOKEN_SCOPES)},
        )
        w.tokens[name] = body["token"]
        w.add("api_tokens", body["id"])
        if name == "expired_api":
            async with env.db.admin_transaction() as admin:
                await admin.execute(
                    update(ApiToken)
                    .where(col(ApiToken.tenant_id) == w.tenant_id, col(ApiToken.id) == body["id"])
                    .values(expires_at=utcnow() - timedelta(hours=1))
                )
        if name == "revoked_api":
            await env.call(w, "DELETE", f"/api-tokens/{body['id']}")


@seeder
async def seed_identity_providers(env: SeedEnv, w: World) -> None:
    async with env.db.admin_transaction() as admin:
        for label in (None, *CLIENT_LABELS):
            marker = w.client_marker(label) if label else w.marker
            provider = IdentityProvider(
                tenant_id=w.tenant_id,
                client_id=w.clients[label] if label else None,
                name=f"{marker} idp",
                issuer=f"https://idp-{marker}.invalid",
                oauth_client_id=f"oauth-{marker}",
                client_secret_enc=secrets.token_bytes(32),
                allowed_domains=[f"{marker}.example.com"],
                default_role="client_viewer" if label else "analyst",
            )
            admin.add(provider)
            await admin.flush()
            w.add("identity_providers", provider.id, client=label)


@seeder
async def seed_password_resets(env: SeedEnv, w: World) -> None:
    async with env.db.admin_transaction() as admin:
        reset = PasswordReset(
            tenant_id=w.tenant_id,
            user_id=w.users["analyst"],
            token_hash=secrets.token_hex(32),
            expires_at=utcnow() + timedelta(hours=1),
        )
        admin.add(reset)
        await admin.flush()
        w.add("password_resets", reset.id)


@seeder
async def seed_audit_log(env: SeedEnv, w: World) -> None:
    """Last: the entries every write above left."""
    async with env.db.admin_transaction() as admin:
        ids = (
            await admin.execute(
                select(col(AuditEntry.id)).where(col(AuditEntry.tenant_id) == w.tenant_id)
            )
        ).scalars()
        for entry_id in ids:
            w.add("audit_log", entry_id)


# --- the worlds -------------------------------------------------------------------------


async def build_world(env: SeedEnv, name: str) -> World:
    world = World(name=name, marker=f"m{secrets.token_hex(5)}")
    for fn in SEEDERS:
        try:
            await fn(env, world)
        except Exception as exc:  # one broken domain must not hide the others' results
            world.seed_errors.append(f"tenant {name}: {fn.__name__}: {exc!r}"[:600])
    return world


async def build_suspended(env: SeedEnv) -> World:
    """Tenant C: a user token and an API token, then suspended by the platform admin."""
    world = World(name="C", marker=f"m{secrets.token_hex(5)}")
    await seed_tenant(env, world)
    body = await env.call(
        world, "POST", "/api-tokens", {"name": "c", "scopes": sorted(API_TOKEN_SCOPES)}
    )
    world.tokens["api"] = body["token"]
    response = await env.http.post(
        f"/api/v1/platform/tenants/{world.tenant_id}/suspend",
        headers=platform_headers(env.settings),
    )
    assert response.status_code == 200, response.text
    return world


async def expired_access_token(env: SeedEnv, world: World) -> str:
    """A correctly signed access token of the world's admin that expired an hour ago."""
    keys: KeyStore = env.app.state.keys
    key = await keys.signing_key()
    now = int(time.time())
    claims = {
        "iss": env.settings.api.public_url,
        "aud": AUDIENCE,
        "sub": str(world.admin_id),
        "tid": str(world.tenant_id),
        "role": "tenant_admin",
        "iat": now - 7200,
        "nbf": now - 7200,
        "exp": now - 3600,
        "jti": uuid.uuid4().hex,
    }
    header = {"alg": ALGORITHM, "kid": key.kid, "typ": TOKEN_TYPE}
    return jwt.encode(header, claims, key, algorithms=[ALGORITHM])


# --- what each actor must never see -----------------------------------------------------


@dataclass(frozen=True)
class Row:
    """A row of the victim tenant, as the catalog finds it."""

    table: str
    id: str
    client_id: str | None
    project_id: str | None


async def victim_rows(db: Database, tenant_id: uuid.UUID) -> list[Row]:
    """Every row with an `id` of every table with a `tenant_id` column (found in the
    catalog, so new tables count without a change here), with its client and project."""
    async with db.admin_engine.connect() as conn:
        tables = (
            await conn.execute(
                text(
                    """
                    select c.relname,
                           bool_or(a.attname = 'client_id') as has_client,
                           bool_or(a.attname = 'project_id') as has_project
                    from pg_class c join pg_namespace n on n.oid = c.relnamespace
                    join pg_attribute a on a.attrelid = c.oid and a.attnum > 0
                                        and not a.attisdropped
                    where n.nspname = 'public' and c.relkind in ('r', 'p')
                      and not c.relispartition
                    group by c.relname
                    having bool_or(a.attname = 'tenant_id') and bool_or(a.attname = 'id')
                    """
                )
            )
        ).all()
        rows: list[Row] = []
        for t in tables:
            client = "client_id::text" if t.has_client else "null"
            project = "project_id::text" if t.has_project else "null"
            if t.relname == "clients":
                client = "id::text"
            if t.relname == "projects":
                project = "id::text"
            result = await conn.execute(
                text(
                    f'select id::text, {client}, {project} from "{t.relname}" where tenant_id = :t'
                ),
                {"t": tenant_id},
            )
            rows += [Row(t.relname, r[0], r[1], r[2]) for r in result]
    return rows


class Snapshots:
    """Every row of a tenant in every tenant table (and its tenant row), as JSON lines;
    a fingerprint first, so an unchanged tenant costs one small answer."""

    def __init__(self, db: Database, tenant_id: uuid.UUID) -> None:
        self.db, self.tenant_id = db, tenant_id
        self._union: str | None = None

    async def _sql(self, conn: Any) -> str:
        if self._union is None:
            tables = (
                await conn.execute(
                    text(
                        """
                        select c.relname from pg_class c
                        join pg_namespace n on n.oid = c.relnamespace
                        where n.nspname = 'public' and c.relkind in ('r', 'p')
                          and not c.relispartition
                          and exists (select 1 from pg_attribute a where a.attrelid = c.oid
                                      and a.attname = 'tenant_id' and not a.attisdropped)
                        """
                    )
                )
            ).scalars()
            parts = [
                f"select '{t}' || ' ' || to_jsonb(x)::text from \"{t}\" x where tenant_id = :t"
                for t in tables
            ]
            parts.append("select 'tenants ' || to_jsonb(x)::text from tenants x where id = :t")
            self._union = " union all ".join(parts)
        return self._union

    async def fingerprint(self) -> str:
        async with self.db.admin_engine.connect() as conn:
            sql = await self._sql(conn)
            value: str = (
                await conn.execute(
                    text(
                        f"select md5(coalesce(string_agg(l, E'\\n' order by l), '')) from ({sql}) u(l)"
                    ),
                    {"t": self.tenant_id},
                )
            ).scalar_one()
        return value

    async def lines(self) -> list[str]:
        async with self.db.admin_engine.connect() as conn:
            sql = await self._sql(conn)
            return sorted((await conn.execute(text(sql), {"t": self.tenant_id})).scalars())
