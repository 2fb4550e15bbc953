"""The composition root of the command line: the only place that wires commands."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from service.core.config import Settings, get_settings

app = typer.Typer(
    name="callpact",
    help="callpact: contracts, SLAs, staffing and client reports for outsourced contact centers.",
    no_args_is_help=True,
    add_completion=False,
)
migrate_app = typer.Typer(help="Apply, revert or show database migrations (runs as DATABASE_URL).")
app.add_typer(migrate_app, name="migrate")

console = Console(stderr=False, highlight=False)
err = Console(stderr=True, highlight=False)


def _settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        for e in exc.errors():
            err.print(
                f"[red]config[/red]  {'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
            )
        raise typer.Exit(2) from None


def _bootstrap(settings: Settings) -> list[str]:
    """Lines `callpact up` prints after migrating (the tenancy layer adds the admin's credentials)."""
    return []


@app.command()
def up() -> None:
    """Run everything on this machine: embedded stores where their URLs are unset,
    migrations, the worker and the API. Ctrl-C stops it all."""
    from service.core.migrate import upgrade
    from service.core.supervisor import Supervisor

    settings = _settings()
    supervisor = Supervisor(settings, say=lambda line: console.print(line, markup=False))
    raise typer.Exit(supervisor.run(lambda s: upgrade(s.database), _bootstrap))


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default API_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default API_PORT).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Uvicorn worker processes.")] = 1,
) -> None:
    """Serve the HTTP API only (uvicorn)."""
    import uvicorn

    settings = _settings()
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=host or settings.api.host,
        port=port or settings.api.port,
        workers=workers,
        log_config=None,
        proxy_headers=True,
        timeout_graceful_shutdown=10,
    )


@app.command()
def worker(
    check: Annotated[
        bool, typer.Option("--check", help="Health check: exit 0 if a worker is alive.")
    ] = False,
) -> None:
    """Run the arq job worker only."""
    from service import worker as worker_root

    settings = _settings()
    if check:
        raise typer.Exit(worker_root.check(settings))
    worker_root.run(settings)


@migrate_app.command("upgrade")
def migrate_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Upgrade the schema (default: to head)."""
    from service.core.migrate import upgrade

    upgrade(_settings().database, revision)
    console.print(f"Migrated to {revision}.")


@migrate_app.command("downgrade")
def migrate_downgrade(
    revision: Annotated[str, typer.Argument(help="Target, e.g. -1 or base.")],
) -> None:
    """Revert the schema to REVISION."""
    from service.core.migrate import downgrade

    downgrade(_settings().database, revision)
    console.print(f"Downgraded to {revision}.")


@migrate_app.command("current")
def migrate_current() -> None:
    """Show the schema's revision and the code's head."""
    from sqlalchemy import text

    from service.core.db import create_engine
    from service.core.migrate import head_revision

    settings = _settings()

    async def current() -> str | None:
        engine = create_engine(settings.database.owner_dsn(), settings.database, pool_size=1)
        try:
            async with engine.connect() as conn:
                value: str | None = (
                    await conn.execute(text("select version_num from alembic_version"))
                ).scalar()
                return value
        finally:
            await engine.dispose()

    console.print(f"database: {asyncio.run(current()) or 'empty'}   code head: {head_revision()}")


@app.command()
def doctor() -> None:
    """Check configuration, PostgreSQL (version, btree_gist, roles, migrations),
    Redis, fonts and mail; print one line per finding; exit 1 on any problem."""
    from service.core.doctor import run_checks

    settings = _settings()
    findings = asyncio.run(run_checks(settings))
    for f in findings:
        mark = "[green]ok  [/green]" if f.ok else "[red]FAIL[/red]"
        console.print(f"{mark} {f.topic:<11} {f.message}")
    if not all(f.ok for f in findings):
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
