"""`callpact tenant …`, `callpact keys …` and what `callpact up` tells the
platform admin — as real processes against the test database, checked
through the API (in process) and the admin engine."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from httpx import AsyncClient
from sqlalchemy import select
from sqlmodel import col

from service.cli import _bootstrap
from service.core.config import AuthSettings, DatabaseSettings, Environment, Settings
from service.core.db import Database
from tenants.models import AuditEntry, SigningKey, Tenant
from tests.conftest import Server, create_database, drop_database
from tests.factories import PASSWORD, bearer, make_tenant
from tests.tenants.test_tokens import token_header


def _env(**overrides: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "REDIS_", "SMTP_", "API_", "CALLPACT_", "AUTH_"))
    }
    env.update(overrides)
    return env


@pytest.fixture
def cli_env(db_settings: DatabaseSettings, tmp_path: Path) -> dict[str, str]:
    """The test database, as an operator's shell would name it."""
    return _env(
        DATABASE_URL=db_settings.owner_dsn(),
        DATABASE_APP_ROLE=db_settings.app_role,
        DATABASE_ADMIN_ROLE=db_settings.admin_role,
        CALLPACT_VAR_DIR=str(tmp_path),
        LOG_LEVEL="WARNING",
    )


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def callpact(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = await asyncio.to_thread(run_cli, env, *args)
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    return result


def new_slug() -> str:
    return f"cli-{secrets.token_hex(4)}"


async def login(client: AsyncClient, slug: str, email: str, password: str) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/token", json={"tenant": slug, "email": email, "password": password}
    )


async def tenant_by_slug(db: Database, slug: str) -> Tenant | None:
    async with db.admin_transaction() as admin:
        return (
            await admin.execute(select(Tenant).where(col(Tenant.slug) == slug))
        ).scalar_one_or_none()


# --- tenant create --------------------------------------------------------------------


async def test_create_generates_a_strong_password_that_logs_in(
    cli_env: dict[str, str], client: AsyncClient, db: Database
) -> None:
    slug = new_slug()
    email = f"Admin@{slug}.example.com"
    result = await callpact(
        cli_env, "tenant", "create", "--slug", slug, "--name", "Acme [BPO]", "--admin-email", email
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"^password\s+(\S+)\s*$", result.stdout, re.MULTILINE)
    assert match, result.stdout
    password = match.group(1)
    assert len(password) >= 20
    assert "shown once" in result.stdout

    tenant = await tenant_by_slug(db, slug)
    assert tenant is not None
    assert tenant.name == "Acme [BPO]"  # rich markup in a name is printed, not interpreted
    assert str(tenant.id) in result.stdout
    assert "Acme [BPO]" in result.stdout

    response = await login(client, slug, email.lower(), password)
    assert response.status_code == 200, response.text
    me = await client.get("/api/v1/me", headers=bearer(response.json()["access_token"]))
    assert me.json()["role"] == "tenant_admin"
    assert me.json()["tenant"]["slug"] == slug

    # Provisioning is audited as the platform admin's act, like the API's.
    async with db.admin_transaction() as admin:
        entries = (
            (await admin.execute(select(AuditEntry).where(col(AuditEntry.tenant_id) == tenant.id)))
            .scalars()
            .all()
        )
    creates = {e.action: e.actor_type for e in entries}
    assert creates["tenants.create"] == "platform_admin"
    assert creates["users.create"] == "platform_admin"
    assert all(password not in json.dumps(e.summary) for e in entries)


async def test_create_with_a_given_password_does_not_echo_it(
    cli_env: dict[str, str], client: AsyncClient
) -> None:
    slug = new_slug()
    email = f"boss@{slug}.example.com"
    password = "a given password " + secrets.token_hex(4)
    result = await callpact(
        {**cli_env, "CALLPACT_ADMIN_PASSWORD": password},
        "tenant",
        "create",
        "--slug",
        slug,
        "--name",
        "Given BPO",
        "--admin-email",
        email,
        "--time-zone",
        "Europe/Istanbul",
        "--locale",
        "tr",
    )
    assert result.returncode == 0, result.stderr
    assert password not in result.stdout + result.stderr
    assert not re.search(r"^password", result.stdout, re.MULTILINE)
    response = await login(client, slug, email, password)
    assert response.status_code == 200, response.text
    tenant = await client.get("/api/v1/tenant", headers=bearer(response.json()["access_token"]))
    assert tenant.json()["time_zone"] == "Europe/Istanbul"
    assert tenant.json()["locale"] == "tr"


async def test_create_refuses_bad_input_naming_the_option(
    cli_env: dict[str, str], db: Database
) -> None:
    slug = new_slug()
    base = ["tenant", "create", "--name", "X", "--admin-email", f"a@{slug}.example.com"]
    cases = [
        (["--slug", "Not A Slug!"], "--slug"),
        (["--slug", slug, "--admin-password", "short"], "--admin-password"),
        (["--slug", slug, "--admin-email", "not-an-email"], "--admin-email"),
        (["--slug", slug, "--time-zone", "Mars/Olympus"], "--time-zone"),
    ]
    results = await asyncio.gather(*(callpact(cli_env, *base, *extra) for extra, _ in cases))
    for (extra, option), result in zip(cases, results, strict=True):
        assert result.returncode == 2, (extra, result.stdout, result.stderr)
        assert option in result.stderr, (extra, result.stderr)
    assert await tenant_by_slug(db, slug) is None


async def test_create_refuses_a_taken_slug(cli_env: dict[str, str], db: Database) -> None:
    slug = new_slug()
    args = ["tenant", "create", "--slug", slug, "--name", "First", "--admin-email", "a@x.example"]
    assert (await callpact(cli_env, *args)).returncode == 0
    again = await callpact(cli_env, *args[:-3], "Second", "--admin-email", "b@x.example")
    assert again.returncode == 1
    assert "slug" in again.stderr
    assert "taken" in again.stderr
    tenant = await tenant_by_slug(db, slug)
    assert tenant is not None
    assert tenant.name == "First"


# --- tenant list, suspend, activate --------------------------------------------------------


async def test_list_shows_every_tenant(
    cli_env: dict[str, str], client: AsyncClient, settings: Settings
) -> None:
    seeds = [await make_tenant(client, settings) for _ in range(2)]
    as_json = await callpact(cli_env, "tenant", "list", "--json")
    assert as_json.returncode == 0, as_json.stderr
    listed = {t["slug"]: t for t in json.loads(as_json.stdout)}
    for seed in seeds:
        assert listed[seed.slug]["id"] == str(seed.id)
        assert listed[seed.slug]["status"] == "active"

    table = await callpact(cli_env, "tenant", "list")
    assert table.returncode == 0, table.stderr
    for seed in seeds:
        line = next(line for line in table.stdout.splitlines() if seed.slug in line)
        assert str(seed.id) in line  # whole, never cut by the table
        assert "active" in line


async def test_suspend_and_activate_take_effect_at_once(
    cli_env: dict[str, str], client: AsyncClient, settings: Settings
) -> None:
    seed = await make_tenant(client, settings)
    assert (await client.get("/api/v1/me", headers=bearer(seed.admin_token))).status_code == 200

    suspended = await callpact(cli_env, "tenant", "suspend", seed.slug)
    assert suspended.returncode == 0, suspended.stderr
    assert "suspended" in suspended.stdout
    refused = await client.get("/api/v1/me", headers=bearer(seed.admin_token))
    assert refused.status_code == 401
    assert refused.json()["code"] == "tenant_suspended"
    relogin = await login(client, seed.slug, seed.admin_email, PASSWORD)
    assert relogin.status_code == 401

    again = await callpact(cli_env, "tenant", "suspend", seed.slug)
    assert again.returncode == 0
    assert "already suspended" in again.stdout

    listed = json.loads((await callpact(cli_env, "tenant", "list", "--json")).stdout)
    assert next(t for t in listed if t["slug"] == seed.slug)["status"] == "suspended"

    activated = await callpact(cli_env, "tenant", "activate", seed.slug)
    assert activated.returncode == 0, activated.stderr
    assert (await client.get("/api/v1/me", headers=bearer(seed.admin_token))).status_code == 200


async def test_suspend_of_an_unknown_slug_fails(cli_env: dict[str, str]) -> None:
    slug = new_slug()
    result = await callpact(cli_env, "tenant", "suspend", slug)
    assert result.returncode == 1
    assert f"No tenant with the slug '{slug}'" in result.stderr


async def test_commands_name_an_unreachable_database_without_a_traceback(
    tmp_path: Path,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    env = _env(
        DATABASE_URL=f"postgresql://nobody:pw@127.0.0.1:{dead}/nothing",
        CALLPACT_VAR_DIR=str(tmp_path),
    )
    for args in (("tenant", "list"), ("keys", "rotate")):
        result = await callpact(env, *args)
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"127.0.0.1:{dead}" in result.stderr
        assert ":pw@" not in result.stderr  # the password is redacted


# --- keys ------------------------------------------------------------------------------


async def test_keys_rotate_is_idempotent_unless_forced(
    cli_env: dict[str, str], client: AsyncClient, settings: Settings, db: Database
) -> None:
    seed = await make_tenant(client, settings)
    old_kid = token_header(seed.admin_token)["kid"]

    async def kids() -> list[str]:
        async with db.admin_transaction() as admin:
            return list((await admin.execute(select(col(SigningKey.kid)))).scalars())

    before = await kids()
    calm = await callpact(cli_env, "keys", "rotate")
    assert calm.returncode == 0, calm.stderr
    assert "Nothing to do" in calm.stdout
    assert await kids() == before

    forced = await callpact(cli_env, "keys", "rotate", "--force")
    assert forced.returncode == 0, forced.stderr
    match = re.search(r"New signing key (\w+)", forced.stdout)
    assert match, forced.stdout
    new_kid = match.group(1)
    assert set(await kids()) == {*before, new_kid}

    listing = await callpact(cli_env, "keys", "list")
    rows = {line.split()[1]: line for line in listing.stdout.splitlines() if "│" in line}
    assert "signing" in rows[new_kid]
    assert "verifying only" in rows[old_kid]
    # Tokens of the old key keep working; the API signs with the new one after a reload.
    assert (await client.get("/api/v1/me", headers=bearer(seed.admin_token))).status_code == 200


# --- what `callpact up` prints -----------------------------------------------------------


def test_bootstrap_in_production_names_where_the_token_comes_from() -> None:
    token = secrets.token_urlsafe(40)
    settings = Settings(
        _env_file=None,
        env="production",
        auth=AuthSettings(platform_admin_token=token, secret_key=secrets.token_urlsafe(40)),
    )
    lines = _bootstrap(settings)
    assert lines
    assert all(token not in line for line in lines)
    assert any("AUTH_PLATFORM_ADMIN_TOKEN" in line for line in lines)


async def test_bootstrap_in_development_prints_a_curl_that_creates_a_tenant(
    client: AsyncClient, settings: Settings
) -> None:
    """The printed command, replayed exactly as curl sends it, provisions a tenant."""
    development = settings.model_copy(update={"env": Environment.development})
    lines = _bootstrap(development)
    token = settings.auth.platform_admin_token.get_secret_value()
    assert any(line.startswith("Admin token") and token in line for line in lines)
    argv = shlex.split(next(line for line in lines if "curl" in line).split("curl", 1)[1])
    assert argv[:2] == ["-sS", "-X"]
    method, url = argv[2], argv[3]
    headers = dict(argv[i + 1].split(": ", 1) for i, arg in enumerate(argv) if arg == "-H")
    body = json.loads(argv[argv.index("-d") + 1])
    assert url == f"http://{settings.api.host}:{settings.api.port}/api/v1/platform/tenants"
    body["slug"] = new_slug()  # the example's slug, unique for this run
    response = await client.request(
        method, url.split(str(settings.api.port), 1)[1], json=body, headers=headers
    )
    assert response.status_code == 201, response.text
    admin = await login(client, body["slug"], body["admin"]["email"], body["admin"]["password"])
    assert admin.status_code == 200, admin.text
    # A fresh example password each start: never a well-known one.
    again = _bootstrap(development)
    assert again[1] != lines[1]


@pytest_asyncio.fixture
async def up_database(pg_server: Server, run_id: str) -> AsyncIterator[str]:
    name = f"callpact_cliup_{run_id}"
    dsn = await create_database(pg_server, name)
    yield dsn
    await drop_database(pg_server, name)


def test_up_prints_the_admin_token_and_a_curl_that_works(
    up_database: str, db_settings: DatabaseSettings, redis_url: str, tmp_path: Path
) -> None:
    """The real thing: `callpact up` in development, its printed curl run by a shell."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_urlsafe(32)
    overrides = {
        "API_PORT": str(port),
        "CALLPACT_VAR_DIR": str(tmp_path / "var"),
        "LOG_LEVEL": "WARNING",
        "AUTH_PLATFORM_ADMIN_TOKEN": token,
    }
    if os.environ.get("DATABASE_URL"):
        overrides |= {
            "DATABASE_URL": up_database,
            "DATABASE_APP_ROLE": db_settings.app_role,
            "DATABASE_ADMIN_ROLE": db_settings.admin_role,
        }
    if os.environ.get("REDIS_URL"):
        overrides["REDIS_URL"] = redis_url
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "up"],
        env=_env(**overrides),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any("Press Ctrl-C" in x for x in lines):
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            lines.append(line.rstrip("\n"))
        token_line = next(x for x in lines if x.startswith("Admin token"))
        assert token in token_line
        curl = next(x for x in lines if x.startswith("New tenant")).split(None, 2)[2]
        assert curl.startswith("curl ")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            while time.monotonic() < deadline:
                try:
                    if http.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.3)
            created = subprocess.run(
                ["bash", "-c", curl], capture_output=True, text=True, timeout=30, check=False
            )
            assert created.returncode == 0, created.stderr
            body = json.loads(created.stdout)
            assert body["tenant"]["slug"] == "demo", body
            payload = json.loads(shlex.split(curl)[-1])
            login_response = http.post(
                "/api/v1/auth/token",
                json={
                    "tenant": "demo",
                    "email": payload["admin"]["email"],
                    "password": payload["admin"]["password"],
                },
            )
            assert login_response.status_code == 200, login_response.text
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)  # a hang guard (see test_cli._run_up)
    output = "\n".join(lines) + rest
    assert proc.returncode == 0, output
    assert output.index("Migrations  at head") < output.index("Admin token")
