"""The command line as a person runs it: real processes, real servers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
import psutil
import pytest

from service.core.config import DatabaseSettings, Settings
from service.core.migrate import upgrade_async
from tests.conftest import Server, create_database, drop_database

T = TypeVar("T")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**overrides: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "REDIS_", "SMTP_", "API_", "CALLPACT_"))
    }
    env.update(overrides)
    return env


def _callpact(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_doctor_names_each_broken_dependency(tmp_path: Path) -> None:
    dead_pg, dead_redis = _free_port(), _free_port()
    result = _callpact(
        "doctor",
        env=_env(
            DATABASE_URL=f"postgresql://nobody@127.0.0.1:{dead_pg}/nothing",
            REDIS_URL=f"redis://127.0.0.1:{dead_redis}/0",
            CALLPACT_VAR_DIR=str(tmp_path),
        ),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    failures = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert any("database" in line and f"127.0.0.1:{dead_pg}" in line for line in failures), (
        result.stdout
    )
    assert any("redis" in line and f"127.0.0.1:{dead_redis}" in line for line in failures), (
        result.stdout
    )
    assert "Traceback" not in result.stdout + result.stderr


async def test_doctor_passes_on_a_migrated_database(
    db_settings: DatabaseSettings, redis_url: str, tmp_path: Path, smoke_database: str
) -> None:
    # A database of its own: the shared one holds other tests' mail, some of it
    # queued "hours ago" on purpose, which doctor rightly reports.
    fresh = db_settings.model_copy(update={"url": smoke_database})
    await upgrade_async(fresh)
    result = _callpact(
        "doctor",
        env=_env(
            DATABASE_URL=fresh.owner_dsn(),
            DATABASE_APP_ROLE=db_settings.app_role,
            DATABASE_ADMIN_ROLE=db_settings.admin_role,
            REDIS_URL=redis_url,
            CALLPACT_VAR_DIR=str(tmp_path),
        ),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    topics = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("ok")}
    assert {"database", "extensions", "roles", "migrations", "redis", "mail"} <= topics


def test_doctor_refuses_default_secrets_in_production(tmp_path: Path) -> None:
    result = _callpact(
        "doctor", env=_env(CALLPACT_ENV="production", CALLPACT_VAR_DIR=str(tmp_path))
    )
    assert result.returncode == 2
    assert "AUTH_PLATFORM_ADMIN_TOKEN" in result.stderr + result.stdout


@pytest.fixture
async def smoke_database(pg_server: Server, run_id: str) -> str:
    name = f"callpact_smoke_{run_id}"
    dsn = await create_database(pg_server, name)
    yield dsn  # type: ignore[misc]
    await drop_database(pg_server, name)


def _run_up(
    env: dict[str, str], port: int, action: Callable[[httpx.Client], T]
) -> tuple[T, str, list[psutil.Process]]:
    """Start `callpact up`, wait for /readyz, run `action`, stop it with SIGINT."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    descendants: list[psutil.Process] = []
    try:
        ready = None
        deadline = time.monotonic() + 90
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    ready = http.get("/readyz")
                    if ready.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.3)
            assert ready is not None, "the API never answered"
            assert ready.status_code == 200, ready.text
            descendants = psutil.Process(proc.pid).children(recursive=True)
            result = action(http)
    finally:
        proc.send_signal(signal.SIGINT)
        # A guard against a hang, not a speed target: a loaded machine's checkpoint
        # at shutdown has taken most of a minute.
        output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    return result, output, descendants


def test_up_serves_ready_stops_cleanly_and_keeps_its_data(
    smoke_database: str, db_settings: DatabaseSettings, tmp_path: Path
) -> None:
    """`callpact up` over real TCP, twice on the same data. With DATABASE_URL/
    REDIS_URL set (CI's second run) it uses those servers; otherwise it starts
    the embedded ones in its own var folder."""
    port = _free_port()
    overrides = {
        "API_PORT": str(port),
        "CALLPACT_VAR_DIR": str(tmp_path / "var"),
        "LOG_LEVEL": "WARNING",
    }
    if os.environ.get("DATABASE_URL"):
        overrides |= {
            "DATABASE_URL": smoke_database,
            "DATABASE_APP_ROLE": db_settings.app_role,
            "DATABASE_ADMIN_ROLE": db_settings.admin_role,
        }
    if os.environ.get("REDIS_URL"):
        overrides["REDIS_URL"] = os.environ["REDIS_URL"]
    env = _env(**overrides)
    platform = {
        "Authorization": f"Bearer {Settings(_env_file=None).auth.platform_admin_token.get_secret_value()}"
    }

    def first(http: httpx.Client) -> str:
        assert http.get("/docs").status_code == 200
        created = http.post(
            "/api/v1/platform/tenants",
            json={
                "slug": "smoke-bpo",
                "name": "Smoke BPO",
                "admin": {"email": "admin@smoke.example.com", "password": "correct horse battery"},
            },
            headers=platform,
        )
        assert created.status_code == 201, created.text
        return str(created.json()["tenant"]["id"])

    tenant_id, output, descendants = _run_up(env, port, first)
    assert "API" in output
    assert f"127.0.0.1:{port}" in output
    assert "Stopped." in output
    assert len(descendants) >= 2  # API and worker
    time.sleep(0.5)
    assert not [p for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    if not os.environ.get("DATABASE_URL"):
        # The embedded PostgreSQL was stopped too, and its data stays for the next run.
        assert not (tmp_path / "var" / "pg" / "postmaster.pid").exists()
        assert (tmp_path / "var" / "pg" / "PG_VERSION").exists()
    if not os.environ.get("REDIS_URL"):
        assert not (tmp_path / "var" / "redis" / "redis.sock").exists()

    def second(http: httpx.Client) -> list[str]:
        listed = http.get("/api/v1/platform/tenants", headers=platform)
        assert listed.status_code == 200
        login = http.post(
            "/api/v1/auth/token",
            json={
                "tenant": "smoke-bpo",
                "email": "admin@smoke.example.com",
                "password": "correct horse battery",
            },
        )
        assert login.status_code == 200, login.text
        return [t["id"] for t in listed.json()]

    ids, _, _ = _run_up(env, port, second)
    assert tenant_id in ids


def test_doctor_in_an_api_pod_checks_the_application_role(
    db_settings: DatabaseSettings, redis_url: str, tmp_path: Path
) -> None:
    """API and worker pods get only DATABASE_APP_URL: doctor checks that role, not an embedded server."""
    result = _callpact(
        "doctor",
        env=_env(
            DATABASE_APP_URL=db_settings.app_dsn(),
            REDIS_URL=redis_url,
            CALLPACT_VAR_DIR=str(tmp_path),
        ),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "embedded" not in result.stdout
    assert any(line.startswith("ok") and "app role" in line for line in result.stdout.splitlines())
    owner_as_app = _callpact(
        "doctor",
        env=_env(
            DATABASE_APP_URL=db_settings.owner_dsn(),
            REDIS_URL=redis_url,
            CALLPACT_VAR_DIR=str(tmp_path),
        ),
    )
    assert owner_as_app.returncode == 1
    assert "bypasses row-level security" in owner_as_app.stdout
