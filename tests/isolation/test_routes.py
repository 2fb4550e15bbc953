"""Tenant isolation, route by route: every route of the app, attacked by every actor.

For each (route, actor) the registry says what to send; the expectation follows
from the actor and the route:

* no, expired, revoked or suspended credentials → 401 (with the right `code`);
* a platform route with any tenant credential → 401;
* a permission the actor lacks → 403, before any object is looked at;
* a path naming an object the actor must not see → 404, never 403 or 200;
* a body or query naming such an object → refused (404/422 unless the entry
  says otherwise) — or, for reads, an answer without it;
* every error is `application/problem+json`; no 5xx.

And for every attempt: the response contains no id, name or e-mail of the
objects the actor must not see (unless the request itself sent it), tenant
A's rows are exactly as before (save the audit log's record of a denial of
A's own user), and when the request named a victim object, the same request
with fresh random ids instead gets the same status and the same body — so
"exists elsewhere" and "does not exist" cannot be told apart.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response
from starlette.routing import Mount

from service.core.db import Database
from tests.isolation.conftest import ACTOR_NAMES, STATS_KEY, Actor, Iso
from tests.isolation.registry import (
    ROUTES,
    NotApplicable,
    Refs,
    Route,
    by_key,
    path_params,
    suggestion,
)
from tests.isolation.seed import Snapshots

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
METHOD_ORDER = {"GET": 0, "POST": 1, "PUT": 2, "PATCH": 3, "DELETE": 4}
PROBLEM = "application/problem+json"


# --- the app's routes --------------------------------------------------------------------


def served_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path template) of every route: the OpenAPI schema's, plus those left
    out of it (documentation pages, future portal pages) and mounted apps."""
    served = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
        if method.upper() in HTTP_METHODS
    }
    for route in app.routes:
        if isinstance(route, Mount):
            served.add(("MOUNT", route.path))
            continue
        methods = getattr(route, "methods", None) or set()
        if not getattr(route, "include_in_schema", True):
            path = getattr(route, "path", "")
            for method in methods - {"HEAD", "OPTIONS"}:
                served.add((method, path))
    return served


def test_every_route_is_registered(iso_app: FastAPI) -> None:
    served = served_routes(iso_app)
    known = by_key()
    missing = sorted(served - known.keys(), key=lambda k: (k[1], k[0]))
    stale = sorted(known.keys() - served, key=lambda k: (k[1], k[0]))
    message = []
    if missing:
        message.append(
            f"{len(missing)} route(s) unknown to the isolation suite. Add to ROUTES in"
            " tests/isolation/registry.py (and, for a new kind of object, a @seeder in"
            " tests/isolation/seed.py); see tests/isolation/README.md:\n"
            + "\n".join(suggestion(method, path) for method, path in missing)
        )
    if stale:
        message.append(
            "registered but not served (remove or fix in tests/isolation/registry.py):\n"
            + "\n".join(f"    {method} {path}" for method, path in stale)
        )
    assert not message, "\n\n".join(message)


def test_registry_entries_are_well_formed() -> None:
    problems = []
    for route in by_key().values():
        where = f"{route.method} {route.path}"
        names = path_params(route.path)
        if route.kind == "public":
            if not route.reason:
                problems.append(f"{where}: a public route needs a reason")
            if names and route.path_params is None:
                problems.append(f"{where}: give path_params=lambda r: {{...}}")
            if not route.expect:
                problems.append(f"{where}: say which statuses the probe expects")
            continue
        if route.kind == "object":
            mapped = route.param_map()
            if route.target is None or set(mapped) != set(names):
                problems.append(f"{where}: params must map each of {names} to an attribute")
        elif route.kind == "tenant" and names:
            problems.append(f"{where}: a route with path parameters is obj(...)")
        if route.own_target and route.body is None:
            problems.append(f"{where}: own_target needs a body naming a victim object")
    assert not problems, "\n".join(problems)


def test_every_seed_function_ran(iso: Iso) -> None:
    errors = iso.a.seed_errors + iso.b.seed_errors + iso.d.seed_errors
    assert not errors, "seed functions failed (tests/isolation/seed.py):\n" + "\n".join(errors)


def test_every_target_kind_is_seeded(iso: Iso) -> None:
    """Each kind a route names exists in both tenants (or the attack cannot be made)."""
    kinds = {r.target for r in ROUTES if r.target}
    missing = sorted(k for k in kinds if not iso.a.objects.get(k) or not iso.b.objects.get(k))
    assert not missing, (
        f"no seeded objects of kind(s) {missing}: add a @seeder to tests/isolation/seed.py"
    )


# --- one attempt --------------------------------------------------------------------------


@dataclass
class Attempt:
    route: Route
    actor: Actor
    label: str
    path: str
    query: dict[str, Any] | None
    body: Any
    expect: frozenset[int]
    used: dict[str, str] = field(default_factory=dict)
    code: str | None = None
    files: dict[str, tuple[str, str | bytes, str]] | None = None
    raw: tuple[str, str] | None = None

    def describe(self) -> str:
        query = f"?{self.query}" if self.query else ""
        return (
            f"[{self.actor.name}] {self.route.method} {self.route.path} ({self.label})"
            f" → {self.path}{query}"
        )


def _fill(path: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    return path


def _attempt(route: Route, actor: Actor, query_fn: Any, mode: str) -> Attempt | None:
    """What `actor` sends to `route` and what it must get back; None: not applicable."""
    refs = actor.refs()
    label = (mode if route.kind == "object" else "no object in path") + (
        " + query" if query_fn else ""
    )
    lacks = (
        route.permission is not None and route.permission not in actor.permissions
    ) or actor.role in route.refused

    if route.kind == "public" or actor.group == "public":
        if route.kind != "public" or actor.group != "public" or route.method == "MOUNT":
            return None
        path = _fill(route.path, route.path_params(refs) if route.path_params else {})
        query = query_fn(refs) if query_fn else None
        body = route.body(refs) if route.body else None
        files = route.files(refs) if route.files else None
        raw = route.raw(refs) if route.raw else None
        return Attempt(
            route, actor, "probe", path, query, body, route.expect, refs.used, None, files, raw
        )

    if actor.group == "credential" or route.kind == "platform":
        if mode != "victim target":
            return None
        path = route.path
        if route.target:
            # Any object of A fills the path: the credential is refused before it is read.
            target = Refs(actor.victim, actor.victim, lambda o: True).victim_obj(route.target)
            path = _fill(path, {p: target.attr(a) for p, a in route.param_map().items()})
        try:
            query = query_fn(refs) if query_fn else None
            body = route.body(refs) if route.body else None
            files = route.files(refs) if route.files else None
            raw = route.raw(refs) if route.raw else None
        except NotApplicable:
            query, body, files, raw = None, None, None, None
        if actor.name == "anonymous":
            code = "missing_credentials"
        elif route.kind == "platform":
            code = "invalid_token"
        else:
            code = actor.code
        return Attempt(route, actor, label, path, query, body, frozenset({401}), {}, code, files)

    target_hidden = False
    path = route.path
    if route.kind == "object":
        assert route.target is not None
        if mode == "victim target":
            try:
                target = refs.victim_obj(route.target)
                target_hidden = True
            except NotApplicable:
                target = refs.own_obj(route.target)
        else:
            target = refs.own_obj(route.target)
        values = {p: target.attr(a) for p, a in route.param_map().items()}
        if target_hidden:
            # The values the actor must not know (a certification's agent may be visible).
            hidden = {v: f"victim {route.target}" for v in values.values() if v in actor.secrets}
            refs.used.update(hidden or dict.fromkeys(values.values(), f"victim {route.target}"))
        path = _fill(path, values)
    try:
        query = query_fn(refs) if query_fn else None
        body = route.body(refs) if route.body else None
        files = route.files(refs) if route.files else None
        raw = route.raw(refs) if route.raw else None
    except NotApplicable:
        if not lacks:
            return None
        # Refused anyway: any object of A makes a well-formed request.
        anything = Refs(actor.victim, actor.own, lambda o: True)
        query = query_fn(anything) if query_fn else None
        body = route.body(anything) if route.body else None
        files = route.files(anything) if route.files else None
        raw = route.raw(anything) if route.raw else None
    names_victim = bool(refs.used)
    write = route.method != "GET"
    if lacks:
        expect = frozenset({403})
    elif target_hidden:
        expect = frozenset({404})
    elif mode == "own target" and not names_victim:
        return None
    elif names_victim:
        expect = route.victim_ok if write else route.ok | {404, 422}
    elif write and (actor.group == "in_tenant" or route.kind == "object"):
        return None  # a legitimate write of the actor's own object: no attack
    elif route.kind == "object":
        expect = route.ok | {403, 404}  # a read of a visible object: scanned for leaks
    else:
        expect = route.ok
    return Attempt(route, actor, label, path, query, body, expect, refs.used, None, files, raw)


def plan(actor: Actor, routes: list[Route]) -> list[Attempt]:
    attempts = []
    for route in sorted(routes, key=lambda r: (METHOD_ORDER.get(r.method, 9), r.path)):
        for query_fn in route.queries:
            for mode in ("victim target", "own target") if route.own_target else ("victim target",):
                try:
                    attempt = _attempt(route, actor, query_fn, mode)
                except NotApplicable:
                    attempt = None
                if attempt is not None:
                    attempts.append(attempt)
    return attempts


async def _send(
    http: AsyncClient,
    attempt: Attempt,
    path: str,
    query: Any,
    body: Any,
    files: dict[str, tuple[str, str | bytes, str]] | None,
    raw: tuple[str, str] | None,
) -> Response:
    headers = {**attempt.actor.headers, **attempt.route.headers}
    method = attempt.route.method
    if raw is not None:
        content, kind = raw
        headers["Content-Type"] = kind
        return await http.request(method, path, params=query, content=content, headers=headers)
    if files is not None:
        return await http.request(method, path, params=query, files=files, headers=headers)
    if body is None:
        return await http.request(method, path, params=query, headers=headers)
    return await http.request(method, path, params=query, json=body, headers=headers)


def _replace_files(
    files: dict[str, tuple[str, str | bytes, str]] | None, mapping: dict[str, str]
) -> dict[str, tuple[str, str | bytes, str]] | None:
    if files is None:
        return None
    out = {}
    for name, (filename, content, kind) in files.items():
        text = content.decode() if isinstance(content, bytes) else content
        for old, new in mapping.items():
            text = text.replace(old, new)
        out[name] = (filename, text, kind)
    return out


def _text(files: dict[str, tuple[str, str | bytes, str]] | None) -> str:
    if not files:
        return ""
    return " ".join(
        c.decode(errors="replace") if isinstance(c, bytes) else c for _, c, _ in files.values()
    )


def _random_like(value: str) -> str:
    try:
        uuid.UUID(value)
    except ValueError:
        if len(value) == 32 and all(ch in "0123456789abcdef" for ch in value):
            return uuid.uuid4().hex
        # Same length: a size in the answer (bytes read) must not differ for that reason.
        return f"x{secrets.token_hex(len(value) // 2 + 1)}"[: max(len(value), 8)]
    return str(uuid.uuid4())


def _replace(data: Any, mapping: dict[str, str]) -> Any:
    if data is None:
        return None
    encoded = json.dumps(data)
    for old, new in mapping.items():
        encoded = encoded.replace(old, new)
    return json.loads(encoded)


VOLATILE_KEYS = ("timings_ms", "duration_ms", "elapsed_ms", "generated_at", "request_id")


def _steady(data: Any) -> Any:
    """A JSON answer without what differs between two identical requests (timings)."""
    if isinstance(data, dict):
        return {k: _steady(v) for k, v in data.items() if k not in VOLATILE_KEYS}
    if isinstance(data, list):
        return [_steady(v) for v in data]
    return data


def _mask(text: str, mapping: dict[str, str]) -> str:
    for index, (old, new) in enumerate(mapping.items()):
        text = text.replace(old, f"<v{index}>").replace(new, f"<v{index}>")
    try:
        return json.dumps(_steady(json.loads(text)), ensure_ascii=False)
    except ValueError:
        return text


class Walk:
    """Runs attempts, checks each response, keeps tenant A's rows under watch."""

    def __init__(self, http: AsyncClient, db: Database, iso: Iso) -> None:
        self.http, self.db, self.iso = http, db, iso
        self.failures: list[str] = []
        self.attempts = 0
        self.controls = 0
        self.routes_attempted: set[tuple[str, str]] = set()
        self.snapshots = Snapshots(db, iso.a.tenant_id)
        self.before: list[str] = []
        self.fingerprint = ""

    async def start(self) -> None:
        self.before = await self.snapshots.lines()
        self.fingerprint = await self.snapshots.fingerprint()

    def _fail(self, attempt: Attempt, what: str, response: Response | None = None) -> None:
        tail = f"\n      got {response.status_code}: {response.text[:300]}" if response else ""
        self.failures.append(f"{attempt.describe()}\n    {what}{tail}")

    def _check_response(self, attempt: Attempt, response: Response, request_text: str) -> None:
        if response.status_code >= 400:
            kind = response.headers.get("content-type", "")
            if not kind.startswith(PROBLEM):
                self._fail(attempt, f"an error that is not {PROBLEM} ({kind})", response)
        body = response.text.lower()
        sent = request_text.lower()
        leaked = sorted(
            {
                what
                for secret, what in attempt.actor.secrets.items()
                if secret in body and secret not in sent
            }
        )
        if leaked:
            self._fail(attempt, f"the response shows what it must not: {leaked}", response)

    async def _check_victim_unchanged(self, attempt: Attempt) -> None:
        """Tenant B and D may change nothing of A. A's own users may cause A's ordinary
        bookkeeping (a recorded denial, an ingest note), but nothing that touches a row
        hidden from them: such a line holds one of their secrets."""
        fingerprint = await self.snapshots.fingerprint()
        if fingerprint == self.fingerprint:
            return
        after = await self.snapshots.lines()
        self.fingerprint = fingerprint
        actor = attempt.actor
        added = sorted(set(after) - set(self.before))
        removed = sorted(set(self.before) - set(after))
        if actor.group == "in_tenant":

            def touches_hidden(line: str) -> bool:
                lowered = line.lower()
                return any(secret in lowered for secret in actor.secrets)

            def own_denial(line: str) -> bool:
                if not line.startswith("audit_log "):
                    return False
                entry = json.loads(line.split(" ", 1)[1])
                return bool(
                    entry["outcome"] == "denied" and entry["actor_id"] == str(actor.user_id)
                )

            added = [a for a in added if touches_hidden(a) and not own_denial(a)]
            removed = [r for r in removed if touches_hidden(r)]
        if added or removed:
            self._fail(
                attempt,
                "tenant A's rows changed:"
                + "".join(f"\n      - removed {r[:240]}" for r in removed)
                + "".join(f"\n      + added {a[:240]}" for a in added),
            )
        self.before = after

    async def run(self, attempt: Attempt) -> None:
        self.attempts += 1
        self.routes_attempted.add(attempt.route.key)
        request_text = json.dumps(
            [attempt.path, attempt.query, attempt.body, _text(attempt.files), attempt.raw]
        )
        response = await _send(
            self.http,
            attempt,
            attempt.path,
            attempt.query,
            attempt.body,
            attempt.files,
            attempt.raw,
        )
        if response.status_code not in attempt.expect:
            self._fail(attempt, f"expected {sorted(attempt.expect)}", response)
        elif attempt.code is not None and response.json().get("code") != attempt.code:
            self._fail(attempt, f"expected problem code {attempt.code!r}", response)
        self._check_response(attempt, response, request_text)
        await self._check_victim_unchanged(attempt)
        if attempt.used:
            await self._control(attempt, response)

    async def _control(self, attempt: Attempt, response: Response) -> None:
        """The same request with fresh random values for every victim value it named."""
        self.controls += 1
        mapping = {value: _random_like(value) for value in attempt.used}
        path = attempt.path
        for old, new in mapping.items():
            path = path.replace(old, new)
        query = _replace(attempt.query, mapping)
        body = _replace(attempt.body, mapping)
        files = _replace_files(attempt.files, mapping)
        raw = _replace(attempt.raw, mapping)
        control = await _send(self.http, attempt, path, query, body, files, raw)
        request_text = json.dumps([path, query, body, _text(files), raw])
        self._check_response(attempt, control, request_text)
        await self._check_victim_unchanged(attempt)
        if control.status_code != response.status_code:
            self._fail(
                attempt,
                f"an oracle: {response.status_code} for the victim's ids but"
                f" {control.status_code} for random ones ({control.text[:200]})",
                response,
            )
            return
        # A create answers with new ids and times; every other answer must match.
        comparable = response.status_code != 201
        victim_text, random_text = _mask(response.text, mapping), _mask(control.text, mapping)
        if comparable and victim_text != random_text:
            # Show where they part: the start is usually the same problem document.
            at = next(
                (
                    i
                    for i, (x, y) in enumerate(zip(victim_text, random_text, strict=False))
                    if x != y
                ),
                min(len(victim_text), len(random_text)),
            )
            start = max(at - 120, 0)
            self._fail(
                attempt,
                f"an oracle: the answer differs from the one for random ids at char {at}:\n"
                f"      victim: …{victim_text[start : at + 200]}\n"
                f"      random: …{random_text[start : at + 200]}",
            )


def minimum_routes(actor: Actor) -> set[tuple[str, str]]:
    """Routes this actor must have attempted, whatever the seed holds."""
    if actor.group == "public":
        return {r.key for r in ROUTES if r.kind == "public" and r.method != "MOUNT"}
    if actor.group in ("credential", "cross_tenant"):
        return {r.key for r in ROUTES if r.kind != "public"}
    return {
        r.key
        for r in ROUTES
        if r.kind == "platform"
        or (r.permission is not None and r.permission not in actor.permissions)
        or actor.role in r.refused
        or (r.kind == "tenant" and r.method == "GET")
    }


async def _walk(
    actor: Actor, iso: Iso, http: AsyncClient, db: Database, record: Callable[[str, Any], None]
) -> None:
    walk = Walk(http, db, iso)
    await walk.start()
    attempts = plan(actor, ROUTES)
    for attempt in attempts:
        await walk.run(attempt)
    must = minimum_routes(actor)
    record(STATS_KEY, (actor.name, walk.attempts, walk.controls, len(must)))
    print(f"\n{actor.name}: {walk.attempts} attempts, {walk.controls} random-id controls")
    missing = [
        f"[{actor.name}] {method} {path}: never attempted"
        + (
            f" (no seeded {route.target!r} in tenant A: add a @seeder in seed.py)"
            if (route := by_key()[(method, path)]).target and not iso.a.objects.get(route.target)
            else ""
        )
        for method, path in sorted(must - walk.routes_attempted)
    ]
    problems = missing + walk.failures
    assert not problems, (
        f"{len(problems)} problems in {walk.attempts} attempts by {actor.name}:\n"
        + "\n".join(problems)
    )
    # Every route the actor must try, at least once each (more with queries and variants).
    assert walk.attempts >= len(must)


@pytest.mark.parametrize("actor_name", ACTOR_NAMES)
async def test_no_actor_crosses_a_wall(
    actor_name: str,
    iso: Iso,
    iso_http: AsyncClient,
    db: Database,
    record_property: Callable[[str, Any], None],
) -> None:
    await _walk(iso.actors[actor_name], iso, iso_http, db, record_property)


async def test_public_routes_give_tenant_b_nothing_of_tenant_a(
    iso: Iso,
    iso_http: AsyncClient,
    db: Database,
    record_property: Callable[[str, Any], None],
) -> None:
    await _walk(iso.actors["public"], iso, iso_http, db, record_property)
