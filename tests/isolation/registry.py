"""Every route of the app, and how the isolation suite attacks it.

One entry per (method, path template). A route the app serves that is not
here fails `test_every_route_is_registered`, with the entry to paste; an
entry for a route that no longer exists fails it too. See README.md.

Kinds:

* `public(…)`: needs no credential; a `reason` says why. It is probed once,
  anonymously, with what a tenant-B attacker knows (B's slug, tokens) aimed
  at tenant A, and must answer one of `expect`.
* `platform(…)`: the platform admin's routes: every tenant credential is 401.
* `tenant(…)`: a route of the caller's own tenant that names no object in
  its path (a list, a create, the tenant's own settings).
* `obj(…)`: a route whose path names an object of kind `target` (a table
  name, as the seed records it); `params` maps each path parameter to an
  attribute of that object (default: the only parameter is its `id`).

Builders (`body`, `queries`, `path_params`) receive a `Refs`: `r.victim(kind)`
names an object the actor must not see (A's, for tenant B; A's client 1's,
for A's viewer of client 2; A's project 1's, for A's supervisor of project
2) — an attempt that names one must be refused and must answer exactly
like the same request with a fresh random id instead; `r.own(kind)` names
one the actor may see.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tests.isolation.seed import CLIENT_LABELS, LOGO_SVG, Obj, World

Kind = Literal["public", "platform", "tenant", "object"]
API = "/api/v1"


class NotApplicable(Exception):
    """The actor has no object of this kind to attack with: the attempt is not made."""


class Refs:
    """What a request builder may name, for one actor."""

    def __init__(self, victim: World, own: World, hidden: Callable[[Obj], bool]) -> None:
        self.victim_world = victim
        self.own_world = own
        self.hidden = hidden
        self.used: dict[str, str] = {}
        """Victim values this request names, with what they are."""

    def _ordered(self, world: World, kind: str) -> list[Obj]:
        # Objects of client 1 first: one object then serves every actor.
        first = world.clients.get(CLIENT_LABELS[0])
        objs = world.objects.get(kind, [])
        return sorted(objs, key=lambda o: (o.client_id != first, o.client_id is None))

    def victim_obj(self, kind: str) -> Obj:
        for obj in self._ordered(self.victim_world, kind):
            if self.hidden(obj):
                return obj
        raise NotApplicable(f"no {kind} hidden from this actor")

    def victim(self, kind: str, attr: str = "id") -> str:
        value = self.victim_obj(kind).attr(attr)
        self.used[value] = f"victim {kind}.{attr}"
        return value

    def own_obj(self, kind: str) -> Obj:
        for obj in reversed(self._ordered(self.own_world, kind)):
            if self.own_world is not self.victim_world or not self.hidden(obj):
                return obj
        raise NotApplicable(f"no {kind} visible to this actor")

    def own(self, kind: str, attr: str = "id") -> str:
        return self.own_obj(kind).attr(attr)

    def victim_tenant_hex(self) -> str:
        value = self.victim_world.tenant_id.hex
        self.used[value] = "victim tenant (hex)"
        return value

    @staticmethod
    def unique(prefix: str = "probe") -> str:
        return f"{prefix}-{secrets.token_hex(4)}"


Builder = Callable[[Refs], Any]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    kind: Kind
    target: str | None = None
    permission: str | None = None
    params: Mapping[str, str] | None = None
    body: Builder | None = None
    queries: tuple[Builder | None, ...] = (None,)
    files: Builder | None = None
    raw: Builder | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    ok: frozenset[int] = frozenset({200})
    victim_ok: frozenset[int] = frozenset({404, 422})
    own_target: bool = False
    refused: frozenset[str] = frozenset()
    """Roles refused with 403 although they hold `permission` (e.g. client viewers)."""
    reason: str = ""
    path_params: Builder | None = None
    expect: frozenset[int] = frozenset()

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.path)

    def param_map(self) -> dict[str, str]:
        names = path_params(self.path)
        if self.params is not None:
            return dict(self.params)
        if len(names) == 1:
            return {names[0]: "id"}
        return {}


def path_params(path: str) -> list[str]:
    out, rest = [], path
    while "{" in rest:
        start = rest.index("{")
        end = rest.index("}", start)
        out.append(rest[start + 1 : end])
        rest = rest[end + 1 :]
    return out


def public(
    method: str,
    path: str,
    reason: str,
    *,
    expect: tuple[int, ...] = (200,),
    body: Builder | None = None,
    query: Builder | None = None,
    path_params: Builder | None = None,
) -> Route:
    return Route(
        method,
        path,
        "public",
        reason=reason,
        expect=frozenset(expect),
        body=body,
        queries=(query,),
        path_params=path_params,
    )


def platform(method: str, path: str, *, body: Builder | None = None) -> Route:
    return Route(method, path, "platform", target="tenants" if "{" in path else None, body=body)


def tenant(
    method: str,
    path: str,
    permission: str | None,
    *,
    body: Builder | None = None,
    queries: tuple[Builder | None, ...] = (None,),
    files: Builder | None = None,
    raw: Builder | None = None,
    ok: tuple[int, ...] = (200,),
    victim_ok: tuple[int, ...] = (404, 422),
    refused: tuple[str, ...] = (),
) -> Route:
    return Route(
        method,
        path,
        "tenant",
        refused=frozenset(refused),
        permission=permission,
        body=body,
        queries=queries,
        files=files,
        raw=raw,
        ok=frozenset(ok),
        victim_ok=frozenset(victim_ok),
    )


def obj(
    method: str,
    path: str,
    target: str,
    permission: str | None,
    *,
    params: Mapping[str, str] | None = None,
    body: Builder | None = None,
    queries: tuple[Builder | None, ...] = (None,),
    headers: Mapping[str, str] | None = None,
    own_target: bool = False,
    ok: tuple[int, ...] = (200,),
    victim_ok: tuple[int, ...] = (404, 422),
    refused: tuple[str, ...] = (),
) -> Route:
    return Route(
        method,
        path,
        "object",
        refused=frozenset(refused),
        target=target,
        permission=permission,
        params=params,
        body=body,
        queries=queries,
        headers=headers or {},
        own_target=own_target,
        ok=frozenset(ok),
        victim_ok=frozenset(victim_ok),
    )


# --- helpers for builders -----------------------------------------------------------------


def swap_tenant(token: str, r: Refs) -> str:
    """An opaque token of the attacker's tenant, relabelled as the victim's."""
    prefix, _, secret = token.split("_", 2)
    return f"{prefix}_{r.victim_tenant_hex()}_{secret}"


def _logo(r: Refs) -> Any:
    return {"logo": ("logo.svg", LOGO_SVG, "image/svg+xml")}


ANY_VERSION = {"If-Match": "*"}  # an attacker who got through would not be stopped by a version


# --- the registry ---------------------------------------------------------------------------


ROUTES: list[Route] = [
    # operations and documentation
    public("GET", "/healthz", "liveness: says 'ok', reads nothing"),
    public("GET", "/readyz", "readiness of PostgreSQL and Redis; no tenant data"),
    public(
        "GET",
        "/metrics",
        "Prometheus metrics: METRICS_TOKEN as a bearer token, or unset (as here) loopback "
        "only; the probes call from elsewhere",
        expect=(404,),
    ),
    public("GET", "/openapi.json", "the API description"),
    public("GET", "/docs", "Swagger UI for the API description"),
    public("GET", "/docs/oauth2-redirect", "Swagger UI's OAuth2 helper page"),
    public("GET", "/redoc", "ReDoc for the API description"),
    public("GET", "/.well-known/jwks.json", "public keys that verify access tokens"),
    # authentication: the credential in the body is the wall
    public(
        "POST",
        f"{API}/auth/token",
        "password login; the password is the credential",
        expect=(401,),
        # B's slug with A's admin: an account exists in one tenant only.
        body=lambda r: {
            "tenant": r.own_world.slug,
            "email": r.victim_world.admin_email,
            "password": "correct horse battery staple",
        },
    ),
    public(
        "POST",
        f"{API}/auth/refresh",
        "the refresh token is the credential",
        expect=(401,),
        body=lambda r: {"refresh_token": swap_tenant(r.own_world.secrets["refresh_token"], r)},
    ),
    public(
        "POST",
        f"{API}/auth/logout",
        "the refresh token is the credential; unknown tokens are ignored",
        expect=(204,),
        body=lambda r: {"refresh_token": swap_tenant(r.own_world.secrets["refresh_token"], r)},
    ),
    public(
        "POST",
        f"{API}/auth/password-reset",
        "answers alike whether the account exists; mails only the account's owner",
        expect=(202,),
        body=lambda r: {"tenant": r.own_world.slug, "email": r.victim_world.admin_email},
    ),
    public(
        "POST",
        f"{API}/auth/password-reset/confirm",
        "the mailed reset token is the credential",
        expect=(400,),
        body=lambda r: {
            "token": f"cpw_{r.victim_tenant_hex()}_{secrets.token_urlsafe(24)}",
            "password": "a new password of length",
        },
    ),
    public(
        "POST",
        f"{API}/auth/invitations/accept",
        "the mailed invitation token is the credential",
        expect=(400,),
        body=lambda r: {
            "token": swap_tenant(r.own_world.secrets["invitation_token"], r),
            "password": "a new password of length",
        },
    ),
    public(
        "GET",
        f"{API}/auth/oidc/{{tenant_slug}}/{{idp_id}}/login",
        "starts a browser login at a tenant's provider; the provider authenticates",
        # B's slug with A's provider: a provider serves its own tenant only.
        expect=(404,),
        path_params=lambda r: {
            "tenant_slug": r.own_world.slug,
            "idp_id": r.victim("identity_providers"),
        },
    ),
    public(
        "GET",
        f"{API}/auth/oidc/callback",
        "the provider's redirect back; the single-use state bound to the browser is the wall",
        expect=(400,),
        query=lambda r: {"state": r.unique("state"), "code": r.unique("code")},
    ),
    # platform administration
    platform("GET", f"{API}/platform/tenants"),
    platform(
        "POST",
        f"{API}/platform/tenants",
        body=lambda r: {
            "slug": r.unique("iso-forged"),
            "name": "forged",
            "admin": {"email": "forged@example.com", "password": "a password of length"},
        },
    ),
    platform("GET", f"{API}/platform/tenants/{{tenant_id}}"),
    platform("POST", f"{API}/platform/tenants/{{tenant_id}}/suspend"),
    platform("POST", f"{API}/platform/tenants/{{tenant_id}}/activate"),
    # the caller's own tenant
    tenant("GET", f"{API}/me", None),
    tenant("GET", f"{API}/tenant", None),
    tenant("PATCH", f"{API}/tenant", "tenant:admin", body=lambda r: {"report_footer": "probe"}),
    tenant("GET", f"{API}/tenant/logo", None),
    tenant("PUT", f"{API}/tenant/logo", "tenant:admin", files=_logo),
    # users, invitations, API tokens, audit
    tenant("GET", f"{API}/users", "users:admin"),
    obj("GET", f"{API}/users/{{user_id}}", "users", "users:admin"),
    obj(
        "PATCH",
        f"{API}/users/{{user_id}}",
        "users",
        "users:admin",
        body=lambda r: {"display_name": "taken over"},
    ),
    obj("GET", f"{API}/users/{{user_id}}/projects", "users", "users:admin"),
    obj(
        "PUT",
        f"{API}/users/{{user_id}}/projects",
        "users",
        "users:admin",
        body=lambda r: {"project_ids": [r.victim("projects")]},
        own_target=True,
    ),
    tenant("GET", f"{API}/invitations", "users:admin"),
    tenant(
        "POST",
        f"{API}/invitations",
        "users:admin",
        body=lambda r: {
            "email": f"{r.unique()}@example.com",
            "role": "client_viewer",
            "client_id": r.victim("clients"),
        },
    ),
    obj("DELETE", f"{API}/invitations/{{invitation_id}}", "invitations", "users:admin"),
    tenant("GET", f"{API}/api-tokens", "users:admin"),
    tenant(
        "POST",
        f"{API}/api-tokens",
        "users:admin",
        body=lambda r: {"name": r.unique(), "scopes": ["ops:read"]},
        ok=(201,),
    ),
    obj("DELETE", f"{API}/api-tokens/{{token_id}}", "api_tokens", "users:admin"),
    tenant(
        "GET",
        f"{API}/audit-log",
        "audit:read",
        queries=(None, lambda r: {"actor_id": r.victim("users")}),
    ),
    # identity providers
    tenant("GET", f"{API}/identity-providers", "tenant:admin"),
    tenant(
        "POST",
        f"{API}/identity-providers",
        "tenant:admin",
        body=lambda r: {
            "name": r.unique(),
            "client_id": r.victim("clients"),
            "issuer": "https://idp.example.com",
            "oauth_client_id": "probe",
            "oauth_client_secret": "probe",
            "allowed_domains": ["example.com"],
            "default_role": "client_viewer",
        },
    ),
    obj("GET", f"{API}/identity-providers/{{idp_id}}", "identity_providers", "tenant:admin"),
    obj(
        "PATCH",
        f"{API}/identity-providers/{{idp_id}}",
        "identity_providers",
        "tenant:admin",
        body=lambda r: {"enabled": False},
    ),
    obj("DELETE", f"{API}/identity-providers/{{idp_id}}", "identity_providers", "tenant:admin"),
    # clients
    tenant("GET", f"{API}/clients", "ops:read"),
    tenant(
        "POST",
        f"{API}/clients",
        "ops:write",
        # Another tenant's client name is free: names are unique per tenant, so no oracle.
        body=lambda r: {"name": r.victim("clients", "name")},
        ok=(201,),
        victim_ok=(201,),
    ),
    obj("GET", f"{API}/clients/{{client_id}}", "clients", "ops:read"),
    obj(
        "PATCH",
        f"{API}/clients/{{client_id}}",
        "clients",
        "ops:write",
        body=lambda r: {"name": "taken over"},
    ),
    obj("DELETE", f"{API}/clients/{{client_id}}", "clients", "ops:write"),
    # projects
    tenant(
        "GET",
        f"{API}/projects",
        "ops:read",
        queries=(None, lambda r: {"client_id": r.victim("clients")}),
    ),
    tenant(
        "POST",
        f"{API}/projects",
        "ops:write",
        body=lambda r: {"client_id": r.victim("clients"), "name": r.unique()},
    ),
    obj("GET", f"{API}/projects/{{project_id}}", "projects", "ops:read"),
    obj(
        "PATCH",
        f"{API}/projects/{{project_id}}",
        "projects",
        "ops:write",
        body=lambda r: {"name": "taken over"},
        headers=ANY_VERSION,
    ),
    # contracts (entries by the clients/projects/contracts engineer)
    tenant(
        "GET",
        f"{API}/contracts",
        "ops:read",
        queries=(
            None,
            lambda r: {"project_id": r.victim("projects")},
            lambda r: {"client_id": r.victim("clients")},
        ),
    ),
    tenant(
        "POST",
        f"{API}/contracts",
        "ops:write",
        body=lambda r: {
            "project_id": r.victim("projects"),
            "effective_from": "2031-01-01",
            "targets": [{"kpi": "answer_rate", "target": 0.9}],
        },
        ok=(201,),
    ),
    obj("GET", f"{API}/contracts/{{contract_id}}", "contracts", "ops:read"),
    obj(
        "PATCH",
        f"{API}/contracts/{{contract_id}}",
        "contracts",
        "ops:write",
        body=lambda r: {"reference": "taken over"},
        headers=ANY_VERSION,
    ),
    obj(
        "POST",
        f"{API}/contracts/{{contract_id}}/versions",
        "contracts",
        "ops:write",
        body=lambda r: {"effective_from": "2030-01-01", "reference": "taken over"},
        headers=ANY_VERSION,
        ok=(201,),
    ),
    obj("GET", f"{API}/projects/{{project_id}}/contracts", "projects", "ops:read"),
    obj(
        "GET",
        f"{API}/projects/{{project_id}}/contracts/current",
        "projects",
        "ops:read",
        queries=(None, lambda r: {"at": "2025-06-01"}),
    ),
    # agents and certifications
    tenant(
        "GET",
        f"{API}/agents",
        "ops:read",
        queries=(None, lambda r: {"project_id": r.victim("projects")}),
    ),
    tenant(
        "POST",
        f"{API}/agents",
        "ops:write",
        # External ids are unique per tenant: A's id is free in B (a 409 would be an oracle).
        body=lambda r: {
            "name": r.unique(),
            "external_ids": {"pbx": r.victim("agents", "external_id")},
        },
        ok=(201,),
        victim_ok=(201,),
    ),
    obj("GET", f"{API}/agents/{{agent_id}}", "agents", "ops:read"),
    obj(
        "PATCH",
        f"{API}/agents/{{agent_id}}",
        "agents",
        "ops:write",
        body=lambda r: {"name": "taken over"},
        headers=ANY_VERSION,
    ),
    obj("DELETE", f"{API}/agents/{{agent_id}}", "agents", "ops:write"),
    obj(
        "GET",
        f"{API}/agents/{{agent_id}}/certifications",
        "agents",
        "ops:read",
        queries=(None, lambda r: {"project_id": r.victim("projects")}),
    ),
    obj(
        "POST",
        f"{API}/agents/{{agent_id}}/certifications",
        "agents",
        "ops:write",
        body=lambda r: {"project_id": r.victim("projects"), "certified_from": "2026-02-01"},
        own_target=True,
    ),
    obj(
        "PATCH",
        f"{API}/agents/{{agent_id}}/certifications/{{project_id}}",
        "agent_certifications",
        "ops:write",
        params={"agent_id": "agent_id", "project_id": "project_id"},
        body=lambda r: {"note": "taken over"},
    ),
    obj(
        "DELETE",
        f"{API}/agents/{{agent_id}}/certifications/{{project_id}}",
        "agent_certifications",
        "ops:write",
        params={"agent_id": "agent_id", "project_id": "project_id"},
    ),
    # shifts and schedules
    tenant(
        "GET",
        f"{API}/shifts",
        "ops:read",
        queries=(
            None,
            lambda r: {"agent_id": r.victim("agents")},
            lambda r: {"project_id": r.victim("projects")},
        ),
    ),
    tenant(
        "POST",
        f"{API}/shifts",
        "ops:write",
        body=lambda r: {
            "agent_id": r.own("agents"),
            "project_id": r.victim("projects"),
            "start": "2026-04-01T09:00:00Z",
            "end": "2026-04-01T10:00:00Z",
            "activity": "training",
        },
    ),
    tenant(
        "POST",
        f"{API}/shifts:batch",
        "ops:write",
        body=lambda r: {
            "rows": [
                {
                    "agent": r.own("agents"),
                    "project": r.victim("projects"),
                    "start": "2026-04-02T09:00:00Z",
                    "end": "2026-04-02T10:00:00Z",
                    "activity": "training",
                }
            ]
        },
    ),
    tenant(
        "POST",
        f"{API}/shifts/uploads",
        "ops:write",
        files=lambda r: {
            "file": (
                "schedule.csv",
                "agent,project,start,end,activity\n"
                f"{r.own('agents')},{r.victim('projects')},"
                "2026-04-03T09:00:00Z,2026-04-03T10:00:00Z,training\n",
                "text/csv",
            )
        },
    ),
    obj("GET", f"{API}/shifts/{{shift_id}}", "shifts", "ops:read"),
    obj(
        "PATCH",
        f"{API}/shifts/{{shift_id}}",
        "shifts",
        "ops:write",
        body=lambda r: {"project_id": r.victim("projects"), "activity": "training"},
        headers=ANY_VERSION,
        own_target=True,
    ),
    obj("DELETE", f"{API}/shifts/{{shift_id}}", "shifts", "ops:write", headers=ANY_VERSION),
    obj(
        "GET",
        f"{API}/projects/{{project_id}}/schedule",
        "projects",
        "ops:read",
        queries=(lambda r: {"from": "2026-03-01", "to": "2026-03-04"},),
    ),
    obj(
        "GET",
        f"{API}/projects/{{project_id}}/schedule.csv",
        "projects",
        "ops:read",
        queries=(lambda r: {"from": "2026-03-01", "to": "2026-03-04"},),
    ),
    obj(
        "GET",
        f"{API}/agents/{{agent_id}}/schedule",
        "agents",
        "ops:read",
        queries=(lambda r: {"from": "2026-03-01", "to": "2026-03-04"},),
    ),
    obj(
        "GET",
        f"{API}/agents/{{agent_id}}/schedule.csv",
        "agents",
        "ops:read",
        queries=(lambda r: {"from": "2026-03-01", "to": "2026-03-04"},),
    ),
    # contacts and KPIs
    tenant(
        "POST",
        f"{API}/contacts:batch",
        "contacts:write",
        body=lambda r: {
            "records": [
                {
                    "external_id": r.unique(),
                    "project_id": r.victim("projects"),
                    "queued_at": "2026-03-02T11:00:00Z",
                    "outcome": "abandoned",
                    "ended_at": "2026-03-02T11:01:00Z",
                }
            ]
        },
        victim_ok=(200, 404, 422),
    ),
    obj(
        "GET",
        f"{API}/projects/{{project_id}}/kpis",
        "projects",
        "ops:read",
        queries=(lambda r: {"from": "2026-03-01", "to": "2026-03-04"},),
    ),
    obj(
        "GET",
        f"{API}/clients/{{client_id}}/kpis",
        "clients",
        "ops:read",
        queries=(
            lambda r: {"from": "2026-03-01", "to": "2026-03-04"},
            lambda r: {"from": "2026-03-01", "to": "2026-03-04", "group_by": "agent"},
        ),
    ),
    tenant(
        "GET",
        f"{API}/tenant/kpis",
        "ops:read",
        queries=(
            lambda r: {"from": "2026-03-01", "to": "2026-03-04"},
            lambda r: {"from": "2026-03-01", "to": "2026-03-04", "group_by": "agent"},
        ),
    ),
    tenant(
        "POST",
        f"{API}/agent-states:batch",
        "contacts:write",
        # A's agent's telephony key means nothing in another tenant: "unmapped", like any key.
        body=lambda r: {
            "events": [
                {
                    "agent_key": r.victim("agents", "external_id_2"),
                    "state": "available",
                    "at": "2026-03-02T09:00:00Z",
                }
            ]
        },
        victim_ok=(200,),
    ),
    tenant(
        "POST",
        f"{API}/contacts/uploads",
        "contacts:write",
        # A's queue key maps to no project of another tenant (or of another project's scope).
        queries=(
            lambda r: {
                "format": "csv",
                "filename": "probe.csv",
                "mapping": json.dumps(
                    {
                        "columns": {
                            "external_id": "id",
                            "queue_key": "queue",
                            "queued_at": "start",
                            "ended_at": "end",
                            "abandoned_at": "end",
                            "outcome": "outcome",
                        },
                        "channel": "voice",
                    }
                ),
            },
        ),
        raw=lambda r: (
            "id,queue,start,end,outcome\n"
            f"{r.unique()},{r.victim('projects', 'queue_key')},"
            "2026-03-02T12:00:00Z,2026-03-02T12:01:00Z,abandoned\n",
            "text/csv",
        ),
        victim_ok=(200, 422),
    ),
    # operations: agent KPIs, double bookings, data quality
    obj(
        "GET",
        f"{API}/agents/{{agent_id}}/kpis",
        "agents",
        "ops:read",
        queries=(
            lambda r: {"from": "2026-03-01", "to": "2026-03-04"},
            lambda r: {
                "from": "2026-03-01",
                "to": "2026-03-04",
                "project_id": r.victim("projects"),
            },
        ),
    ),
    obj(
        "GET",
        f"{API}/projects/{{project_id}}/agent-kpis",
        "projects",
        "ops:read",
        queries=(lambda r: {"from": "2026-03-01", "to": "2026-03-04"},),
    ),
    tenant(
        "GET",
        f"{API}/double-bookings",
        "ops:read",
        # Every finding names a second project, usually another client's.
        refused=("client_viewer",),
        queries=(
            lambda r: {"from": "2026-03-01", "to": "2026-03-04"},
            lambda r: {"from": "2026-03-01", "to": "2026-03-04", "agent_id": r.victim("agents")},
            lambda r: {
                "from": "2026-03-01",
                "to": "2026-03-04",
                "project_id": r.victim("projects"),
            },
        ),
    ),
    tenant(
        "GET",
        f"{API}/data-quality",
        "ops:read",
        queries=(lambda r: {"from": "2026-03-01", "to": "2026-03-04"},),
    ),
]


def by_key() -> dict[tuple[str, str], Route]:
    out: dict[tuple[str, str], Route] = {}
    for route in ROUTES:
        assert route.key not in out, f"registered twice: {route.method} {route.path}"
        out[route.key] = route
    return out


def suggestion(method: str, path: str) -> str:
    """The entry a developer pastes for an unregistered route (then adjusts)."""
    names = path_params(path)
    api_path = path.replace(API, "{API}", 1) if path.startswith(API) else path
    literal = f'f"{api_path}"' if api_path.startswith("{API}") else f'"{api_path}"'
    literal = literal.replace("{" + "API}", "\0").replace("{", "{{").replace("}", "}}")
    literal = literal.replace("\0", "{API}")
    permission = '"ops:read"' if method == "GET" else '"ops:write"'
    if not names:
        extra = "" if method == "GET" else ", body=lambda r: {...}"
        return f'    tenant("{method}", {literal}, {permission}{extra}),'
    # The object is the one the last path parameter names: the segment before it.
    segments = path.split("/")
    last = max(i for i, s in enumerate(segments) if s.startswith("{"))
    target = segments[last - 1].replace("-", "_") if last > 0 else "?"
    params = ""
    if len(names) > 1:
        params = ", params={" + ", ".join(f'"{n}": "?"' for n in names) + "}"
    extra = "" if method in ("GET", "DELETE") else ", body=lambda r: {...}"
    return f'    obj("{method}", {literal}, "{target}", {permission}{params}{extra}),'
