"""Fixtures of the isolation suite: one app and one seeded world per module,
and the actors that attack tenant A."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest_asyncio
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from service.app import create_app
from service.core.config import Settings
from service.core.db import Database
from tenants.context import API_TOKEN_SCOPES, ROLE_PERMISSIONS
from tests.factories import bearer
from tests.isolation.registry import Refs
from tests.isolation.seed import (
    CLIENT_LABELS,
    Obj,
    Row,
    SeedEnv,
    World,
    build_suspended,
    build_world,
    expired_access_token,
    victim_rows,
)

Group = Literal["public", "credential", "cross_tenant", "in_tenant"]

# Attempts per actor (attempts, random-id controls, the minimum it had to make), gathered
# from the tests' reports, so that it works with xdist too; printed at the end of the run.
STATS: dict[str, tuple[int, int, int]] = {}
STATS_KEY = "isolation_attempts"

ACTOR_NAMES = (
    "anonymous",
    "expired_access_token",
    "expired_api_token",
    "revoked_api_token",
    "suspended_tenant_user",
    "suspended_tenant_api_token",
    "b_admin",
    "d_api_token",
    "a_viewer_of_other_client",
    "a_supervisor_without_project",
)


@dataclass
class Actor:
    name: str
    group: Group
    headers: dict[str, str]
    permissions: frozenset[str]
    victim: World
    own: World
    hidden: Callable[[Obj], bool]
    secrets: dict[str, str] = field(default_factory=dict)
    """Strings (ids, markers) this actor must never be shown, with what they are."""
    code: str | None = None
    """The problem `code` a credential actor must get on tenant routes."""
    user_id: uuid.UUID | None = None
    role: str | None = None

    def refs(self) -> Refs:
        return Refs(self.victim, self.own, self.hidden)


@dataclass
class Iso:
    a: World
    b: World
    c: World
    d: World
    actors: dict[str, Actor]


def pytest_runtest_logreport(report: Any) -> None:
    for key, value in getattr(report, "user_properties", ()):
        if key == STATS_KEY:
            name, attempts, controls, minimum = value
            STATS[name] = (attempts, controls, minimum)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not STATS:
        return
    attempts = sum(a for a, _, _ in STATS.values())
    controls = sum(c for _, c, _ in STATS.values())
    minimum = sum(m for _, _, m in STATS.values())
    terminalreporter.write_line(
        f"isolation suite: {attempts} attempts (at least {minimum} required: the routes each"
        f" actor must try) and {controls} random-id controls by {len(STATS)} actors: "
        + ", ".join(f"{name} {a}" for name, (a, _, _) in sorted(STATS.items()))
    )


@pytest_asyncio.fixture(scope="module")
async def iso_app(settings: Settings, db: Database, redis: object) -> AsyncIterator[FastAPI]:
    application = create_app(settings, db=db, redis=redis)
    async with application.router.lifespan_context(application):
        yield application


@pytest_asyncio.fixture(scope="module")
async def iso_http(iso_app: FastAPI) -> AsyncIterator[AsyncClient]:
    address = f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"
    transport = ASGITransport(app=iso_app, raise_app_exceptions=False, client=(address, 40000))
    async with AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


def _secret_forms(value: str) -> list[str]:
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return [value.lower()]
    return [str(parsed), parsed.hex]


def secrets_of(rows: list[Row], objects: list[Obj], markers: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for row in rows:
        for form in _secret_forms(row.id):
            out[form] = f"{row.table} {row.id}"
    for o in objects:
        for form in _secret_forms(str(o.id)):
            out.setdefault(form, f"{o.kind} {o.id}")
    for marker in markers:
        out[marker] = f"name or e-mail marked {marker}"
    return out


@pytest_asyncio.fixture(scope="module")
async def iso(iso_app: FastAPI, iso_http: AsyncClient, settings: Settings, db: Database) -> Iso:
    env = SeedEnv(iso_http, settings, db, iso_app)
    a = await build_world(env, "A")
    b = await build_world(env, "B")
    # A second attacker tenant: what one attacker may legitimately create (a client named
    # like one of A's) must not collide with the other attacker's attempts.
    d = await build_world(env, "D")
    c = await build_suspended(env)
    rows = await victim_rows(db, a.tenant_id)
    c1 = a.clients[CLIENT_LABELS[0]]
    projects_of_c1 = {r.id for r in rows if r.table == "projects" and r.client_id == str(c1)}

    everything = secrets_of(rows, a.all_objects(), a.markers)
    for form in _secret_forms(str(a.tenant_id)):
        everything[form] = f"tenant A {a.tenant_id}"

    def all_hidden(o: Obj) -> bool:
        return True

    def viewer_hidden(o: Obj) -> bool:
        return o.client_id == c1

    def supervisor_hidden(o: Obj) -> bool:
        return o.project_id is not None and o.project_id not in a.supervisor_projects

    viewer_rows = [
        r for r in rows if r.client_id == str(c1) or (r.project_id or "") in projects_of_c1
    ]
    supervisor_rows = [
        r
        for r in rows
        if r.project_id is not None and uuid.UUID(r.project_id) not in a.supervisor_projects
    ]
    viewer_secrets = secrets_of(
        viewer_rows, [o for o in a.all_objects() if viewer_hidden(o)], [a.client_marker("c1")]
    )
    supervisor_secrets = secrets_of(
        supervisor_rows, [o for o in a.all_objects() if supervisor_hidden(o)], []
    )
    assert viewer_secrets, "nothing of client 1 is hidden from client 2's viewer: seed more"
    assert supervisor_secrets, "nothing of project 1 is hidden from its supervisor: seed more"

    api_perms = frozenset(API_TOKEN_SCOPES)
    none: frozenset[str] = frozenset()
    credential = {
        "anonymous": ({}, "missing_credentials"),
        "expired_access_token": (
            bearer(await expired_access_token(env, a)),
            "token_expired",
        ),
        "expired_api_token": (bearer(a.tokens["expired_api"]), "invalid_token"),
        "revoked_api_token": (bearer(a.tokens["revoked_api"]), "invalid_token"),
        "suspended_tenant_user": (bearer(c.tokens["admin"]), "tenant_suspended"),
        "suspended_tenant_api_token": (bearer(c.tokens["api"]), "tenant_suspended"),
    }
    actors = {
        name: Actor(name, "credential", headers, none, a, a, all_hidden, everything, code)
        for name, (headers, code) in credential.items()
    }
    actors["public"] = Actor("public", "public", {}, none, a, b, all_hidden, everything)
    actors["b_admin"] = Actor(
        "b_admin",
        "cross_tenant",
        b.headers,
        ROLE_PERMISSIONS["tenant_admin"],
        a,
        b,
        all_hidden,
        everything,
    )
    actors["d_api_token"] = Actor(
        "d_api_token",
        "cross_tenant",
        bearer(d.tokens["api"]),
        api_perms,
        a,
        d,
        all_hidden,
        everything,
    )
    actors["a_viewer_of_other_client"] = Actor(
        "a_viewer_of_other_client",
        "in_tenant",
        bearer(a.tokens["viewer_c2"]),
        ROLE_PERMISSIONS["client_viewer"],
        a,
        a,
        viewer_hidden,
        viewer_secrets,
        user_id=a.users["viewer_c2"],
        role="client_viewer",
    )
    actors["a_supervisor_without_project"] = Actor(
        "a_supervisor_without_project",
        "in_tenant",
        bearer(a.tokens["supervisor"]),
        ROLE_PERMISSIONS["supervisor"],
        a,
        a,
        supervisor_hidden,
        supervisor_secrets,
        user_id=a.users["supervisor"],
        role="supervisor",
    )
    assert set(ACTOR_NAMES) | {"public"} == set(actors)
    return Iso(a, b, c, d, actors)
