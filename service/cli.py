"""The composition root of the command line: the only place that wires commands."""

from __future__ import annotations

import asyncio
import json
import secrets
import shlex
from collections.abc import Awaitable, Callable
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from service.core.config import DEV_SECRET, Environment, Settings, get_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")

app = typer.Typer(
    name="callpact",
    help="callpact: contracts, SLAs, staffing and client reports for outsourced contact centers.",
    no_args_is_help=True,
    add_completion=False,
)
migrate_app = typer.Typer(help="Apply, revert or show database migrations (runs as DATABASE_URL).")
app.add_typer(migrate_app, name="migrate")
tenant_app = typer.Typer(
    help="Create, list, suspend and reactivate tenants (BPOs), as the admin role.",
    no_args_is_help=True,
)
app.add_typer(tenant_app, name="tenant")
keys_app = typer.Typer(help="The JWT signing keys (platform-wide).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

console = Console(stderr=False, highlight=False)
err = Console(stderr=True, highlight=False)


def _settings() -> Settings:
    try:
        settings = get_settings()
    except ValidationError as exc:
        for e in exc.errors():
            err.print(
                f"[red]config[/red]  {'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
            )
        raise typer.Exit(2) from None
    from tenants.security import configure_password_hashing

    configure_password_hashing(settings.auth)
    return settings


def _bootstrap(settings: Settings) -> list[str]:
    """Lines `callpact up` prints after migrating: how the platform admin gets in.
    The token itself only in development; elsewhere where it comes from."""
    host = settings.api.host if settings.api.host not in ("0.0.0.0", "::") else "127.0.0.1"
    base = f"http://{host}:{settings.api.port}"
    if settings.env is not Environment.development:
        return [
            "Admin token from AUTH_PLATFORM_ADMIN_TOKEN (not printed outside development)",
            "New tenant  callpact tenant create --slug SLUG --name NAME --admin-email EMAIL",
        ]
    token = settings.auth.platform_admin_token.get_secret_value()
    note = (
        "   (the development default; set AUTH_PLATFORM_ADMIN_TOKEN)" if token == DEV_SECRET else ""
    )
    # A fresh password per start, so a pasted example never makes a guessable account.
    body = {
        "slug": "demo",
        "name": "Demo Contact Center",
        "admin": {"email": "admin@demo.example.com", "password": secrets.token_urlsafe(12)},
    }
    curl = " ".join(
        [
            "curl -sS -X POST",
            shlex.quote(f"{base}/api/v1/platform/tenants"),
            "-H",
            shlex.quote(f"Authorization: Bearer {token}"),
            "-H 'Content-Type: application/json' -d",
            shlex.quote(json.dumps(body, separators=(",", ":"))),
        ]
    )
    return [f"Admin token {token}{note}", f"New tenant  {curl}"]


@app.command()
def up() -> None:
    """Run everything on this machine: embedded stores where their URLs are unset,
    migrations, the worker and the API. Ctrl-C stops it all."""
    from service.core.migrate import upgrade
    from service.core.supervisor import Supervisor

    settings = _settings()
    # soft_wrap: a long line (the curl example) stays one line, copyable as printed.
    supervisor = Supervisor(
        settings, say=lambda line: console.print(line, markup=False, soft_wrap=True)
    )
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


# --- tenants and keys (admin role: platform administration) -------------------------------


class _Refused(Exception):
    """A command's own refusal: printed as one line, exit 1."""


def _admin(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one committed admin-role transaction, audited as the platform admin;
    refusals and an unreachable database become one line and exit 1, never a traceback."""
    from sqlalchemy.exc import SQLAlchemyError

    from service.core.config import redact
    from service.core.db import Database
    from service.core.errors import AppError
    from tenants.audit import ACTOR_KEY

    async def run() -> T:
        db = Database(settings.database)
        try:
            async with db.admin_transaction() as admin:
                admin.info[ACTOR_KEY] = ("platform_admin", None)
                return await work(admin)
        finally:
            await db.dispose()

    try:
        return asyncio.run(run())
    except (AppError, _Refused) as exc:
        field = getattr(exc, "extra", {}).get("field")
        err.print(f"[red]error[/red]  {escape(f'{field}: ' if field else '')}{escape(str(exc))}")
        raise typer.Exit(1) from None
    except (SQLAlchemyError, OSError) as exc:
        where = redact(settings.database.admin_dsn()) if settings.database.url else "unset"
        reason = getattr(exc, "orig", None) or exc
        err.print(
            f"[red]error[/red]  database {escape(where)}: {escape(type(reason).__name__)}: "
            f"{escape(str(reason).splitlines()[0] if str(reason) else '')}"
        )
        raise typer.Exit(1) from None


def _invalid(exc: ValidationError) -> typer.Exit:
    options = {"admin.email": "--admin-email", "admin.password": "--admin-password"}
    for e in exc.errors():
        loc = ".".join(str(p) for p in e["loc"])
        option = options.get(loc, "--" + loc.replace("_", "-"))
        err.print(f"[red]invalid[/red]  {escape(option)}: {escape(e['msg'])}")
    return typer.Exit(2)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"


@tenant_app.command("create")
def tenant_create(
    slug: Annotated[str, typer.Option(help="URL-safe id, e.g. acme-bpo (the login's tenant).")],
    name: Annotated[str, typer.Option(help="Display name of the BPO.")],
    admin_email: Annotated[str, typer.Option(help="E-mail of the first tenant admin.")],
    admin_password: Annotated[
        str | None,
        typer.Option(
            envvar="CALLPACT_ADMIN_PASSWORD",
            help="12+ characters. Default: a strong generated one, printed once.",
        ),
    ] = None,
    time_zone: Annotated[str, typer.Option(help="IANA time zone.")] = "UTC",
    locale: Annotated[str, typer.Option(help="en, tr, fa or zh.")] = "en",
) -> None:
    """Provision a tenant (a BPO) and its first tenant admin."""
    from tenants import schemas
    from tenants.service import create_tenant

    generated = admin_password is None
    password = admin_password if admin_password is not None else secrets.token_urlsafe(18)
    try:
        data = schemas.TenantCreate.model_validate(
            {
                "slug": slug,
                "name": name,
                "time_zone": time_zone,
                "locale": locale,
                "admin": {"email": admin_email, "password": password},
            }
        )
    except ValidationError as exc:
        raise _invalid(exc) from None
    settings = _settings()

    async def work(admin: AsyncSession) -> tuple[str, str]:
        tenant, user = await create_tenant(admin, data)
        return str(tenant.id), str(user.id)

    tenant_id, user_id = _admin(settings, work)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("tenant", escape(tenant_id))
    grid.add_row("slug", escape(data.slug))
    grid.add_row("name", escape(data.name))
    grid.add_row("admin", escape(f"{data.admin.email} ({user_id}, tenant_admin)"))
    if generated:
        grid.add_row("password", escape(password))
    console.print("[green]Tenant created.[/green]")
    console.print(grid)
    if generated:
        console.print("The password is shown once; only its hash is stored.")


@tenant_app.command("list")
def tenant_list(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array, for scripts.")] = False,
) -> None:
    """Every tenant on the platform."""
    from tenants.service import list_tenants

    async def work(admin: AsyncSession) -> list[dict[str, Any]]:
        return [
            {
                "id": str(t.id),
                "slug": t.slug,
                "name": t.name,
                "status": t.status,
                "created_at": t.created_at.isoformat(),
            }
            for t in await list_tenants(admin)
        ]

    rows = _admin(_settings(), work)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print("No tenants yet: callpact tenant create --help")
        return
    table = Table(title=f"{len(rows)} tenant(s)", title_justify="left")
    for column in ("slug", "name", "status", "id", "created"):
        table.add_column(column, no_wrap=column in ("slug", "id", "status"))
    for row in rows:
        status = row["status"] if row["status"] == "active" else f"[red]{row['status']}[/red]"
        table.add_row(
            escape(row["slug"]), escape(row["name"]), status, row["id"], row["created_at"][:10]
        )
    # Not a terminal (a pipe, a log): wide enough that ids are never cut.
    out = console if console.is_terminal else Console(width=160, highlight=False)
    out.print(table)


def _set_status(slug: str, status: str) -> None:
    from sqlalchemy import select
    from sqlmodel import col

    from tenants.models import Tenant
    from tenants.service import set_tenant_status

    async def work(admin: AsyncSession) -> str:
        tenant = (
            await admin.execute(select(Tenant).where(col(Tenant.slug) == slug))
        ).scalar_one_or_none()
        if tenant is None:
            raise _Refused(f"No tenant with the slug '{slug}'.")
        if tenant.status == status:
            return "unchanged"
        await set_tenant_status(admin, tenant.id, status)
        return "changed"

    outcome = _admin(_settings(), work)
    if outcome == "unchanged":
        console.print(f"Tenant {escape(slug)} is already {status}.")
    elif status == "suspended":
        console.print(
            f"Tenant {escape(slug)} suspended: its tokens and API tokens are refused from the "
            "next request on."
        )
    else:
        console.print(f"Tenant {escape(slug)} active again.")


@tenant_app.command("suspend")
def tenant_suspend(slug: Annotated[str, typer.Argument(help="The tenant's slug.")]) -> None:
    """Suspend a tenant: its users and API tokens are refused at once."""
    _set_status(slug, "suspended")


@tenant_app.command("activate")
def tenant_activate(slug: Annotated[str, typer.Argument(help="The tenant's slug.")]) -> None:
    """Lift a tenant's suspension."""
    _set_status(slug, "active")


@keys_app.command("rotate")
def keys_rotate(
    force: Annotated[
        bool, typer.Option("--force", help="Rotate now, even if the current key signs on.")
    ] = False,
) -> None:
    """Add the next signing key when the current one stops signing within a day (the
    worker does this daily); --force rotates now. Older keys keep verifying the tokens
    they signed; running processes pick the new key up within five minutes."""
    from sqlalchemy import select
    from sqlmodel import col

    from tenants.keys import rotate_keys
    from tenants.models import SigningKey

    settings = _settings()
    secret = settings.auth.secret_key.get_secret_value()

    async def work(admin: AsyncSession) -> tuple[str | None, str | None, datetime | None]:
        kid = await rotate_keys(admin, secret, force=force)
        latest = (
            await admin.execute(
                select(SigningKey).order_by(col(SigningKey.sign_until).desc()).limit(1)
            )
        ).scalar_one_or_none()
        return kid, latest.kid if latest else None, latest.sign_until if latest else None

    kid, current, until = _admin(settings, work)
    if kid is not None:
        console.print(f"New signing key {kid}; it signs until {_when(until)}.")
    else:
        console.print(
            f"Nothing to do: key {current} signs until {_when(until)}. Use --force to rotate now."
        )


@keys_app.command("list")
def keys_list() -> None:
    """The signing keys that still verify tokens, newest last."""
    from sqlalchemy import select
    from sqlmodel import col

    from service.core.time import utcnow
    from tenants.models import SigningKey

    async def work(admin: AsyncSession) -> list[tuple[str, datetime, datetime, datetime]]:
        rows = (
            await admin.execute(
                select(SigningKey)
                .where(col(SigningKey.verify_until) > utcnow())
                .order_by(col(SigningKey.created_at))
            )
        ).scalars()
        return [(r.kid, r.created_at, r.sign_until, r.verify_until) for r in rows]

    rows = _admin(_settings(), work)
    now = datetime.now().astimezone()
    table = Table(title="Signing keys", title_justify="left")
    for column in ("kid", "created", "signs until", "verifies until", "state"):
        table.add_column(column, no_wrap=True)
    signing = max((r for r in rows if r[2] > now), key=lambda r: r[1], default=None)
    for kid, created, sign_until, verify_until in rows:
        state = "signing" if signing and kid == signing[0] else "verifying only"
        table.add_row(kid, _when(created), _when(sign_until), _when(verify_until), state)
    out = console if console.is_terminal else Console(width=160, highlight=False)
    out.print(table)


# --- imports (application role, under the tenant's scope) -----------------------------------

import_app = typer.Typer(
    help="Import contact data and agent states from files into one tenant, as the "
    "application role under the tenant's row-level security.",
    no_args_is_help=True,
)
app.add_typer(import_app, name="import")


class ContactFormat(StrEnum):
    csv = "csv"
    queue_log = "queue_log"
    queue_log_extended_csv = "queue_log_extended_csv"
    queue_log_mysql = "queue_log_mysql"
    queue_log_psql = "queue_log_psql"
    amazon_connect = "amazon_connect"


class AgentStateFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


_IMPORT_OPTIONS = {
    "source": "--source",
    "time_zone": "--time-zone",
    "format": "--format",
    "filename": "FILE",
}


def _tenant_scope(settings: Settings, slug: str) -> Any:
    """The tenant's id for a slug, looked up with the admin engine; refusals exit 1."""
    from sqlalchemy import select
    from sqlmodel import col

    from tenants.models import Tenant

    async def work(admin: AsyncSession) -> Any:
        tenant = (
            await admin.execute(select(Tenant).where(col(Tenant.slug) == slug))
        ).scalar_one_or_none()
        if tenant is None:
            raise _Refused(f"No tenant with the slug '{slug}'.")
        if tenant.status != "active":
            raise _Refused(f"Tenant '{slug}' is {tenant.status}; activate it first.")
        return tenant.id

    return _admin(settings, work)


def _run_import(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run `work(db)`; refusals and an unreachable database become one line and exit 1."""
    from sqlalchemy.exc import SQLAlchemyError

    from service.core.config import redact
    from service.core.db import Database
    from service.core.errors import AppError

    async def run() -> T:
        db = Database(settings.database)
        try:
            return await work(db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(run())
    except AppError as exc:
        extra = exc.extra
        name = str(extra.get("field") or "")
        option = "--mapping" if name.startswith("mapping") else _IMPORT_OPTIONS.get(name, name)
        err.print(
            f"[red]error[/red]  {escape(f'{option}: ' if option else '')}{escape(exc.detail)}"
        )
        for problem in extra.get("problems", [])[:20]:
            err.print("  " + escape(_where(problem)))
        raise typer.Exit(1) from None
    except (SQLAlchemyError, OSError) as exc:
        where = redact(settings.database.app_dsn()) if settings.database.url else "unset"
        reason = getattr(exc, "orig", None) or exc
        err.print(
            f"[red]error[/red]  database {escape(where)}: {escape(type(reason).__name__)}: "
            f"{escape(str(reason).splitlines()[0] if str(reason) else '')}"
        )
        raise typer.Exit(1) from None


def _where(problem: dict[str, Any]) -> str:
    parts = []
    for key in ("record", "line", "column"):
        if problem.get(key) is not None:
            parts.append(f"{key} {problem[key]}")
    if problem.get("field"):
        parts.append(f"field {problem['field']}")
    head = ", ".join(parts) or "file"
    tail = f" ({problem['excerpt']})" if problem.get("excerpt") else ""
    return f"{head}: {problem['reason']}{tail}"


def _progress() -> Any:
    """Bytes of the file read, on stderr (stdout keeps the receipt)."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


def _print_receipt(
    title: str, rows: list[tuple[str, Any]], problems: list[dict[str, Any]], count: int
) -> None:
    grid = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for label, value in rows:
        grid.add_row(escape(label), escape(str(value)))
    console.print(grid)
    if count:
        console.print(
            f"[yellow]{count} problem(s)[/yellow]" + (" (first 20)" if count > 20 else "")
        )
        for problem in problems[:20]:
            console.print("  " + escape(_where(problem)), soft_wrap=True)


def _counts(values: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(values.items(), key=lambda kv: -kv[1])) or "-"


@import_app.command("contacts")
def import_contacts(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="The file.")
    ],
    tenant: Annotated[str, typer.Option(help="The tenant's slug.")],
    format: Annotated[ContactFormat, typer.Option(help="How the file is written.")],
    source: Annotated[
        str | None,
        typer.Option(
            help="The source's name (a PBX, an export job). Required for queue_log formats: "
            "the next file of the same source continues where this one ends."
        ),
    ] = None,
    mapping: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="CSV: the column mapping, a JSON file."),
    ] = None,
    time_zone: Annotated[
        str | None,
        typer.Option(help="queue_log_mysql/_psql: the IANA zone of the table's times."),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option(
            min=100,
            max=100_000,
            help="Records per batch. Each batch is committed on its own: an interrupted "
            "import keeps what it committed, and running it again is safe (what landed "
            "counts as duplicates).",
        ),
    ] = 10_000,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the receipt as JSON (for scripts).")
    ] = False,
) -> None:
    """Import a contact file (CSV with a column mapping, Asterisk queue_log or its table
    exports, Amazon Connect contact trace records) into a tenant. Streams the file,
    commits every --batch-size records, shows the bytes read, prints the receipt."""
    from service.contacts.uploads import UploadImport, UploadResult, source_lock, upload_spec
    from service.core.db import Database, DbScope
    from service.core.errors import AppError

    settings = _settings()
    try:
        mapping_json = mapping.read_bytes() if mapping is not None else None
        spec = upload_spec(
            format.value,
            file_name=file.name,
            source=source,
            mapping=mapping_json,
            time_zone=time_zone,
        )
    except AppError as exc:
        name = exc.extra.get("field", "")
        option = "--mapping" if name.startswith("mapping") else _IMPORT_OPTIONS.get(name, name)
        err.print(f"[red]invalid[/red]  {escape(option)}: {escape(exc.detail)}")
        raise typer.Exit(2) from None
    tenant_id = _tenant_scope(settings, tenant)
    size = file.stat().st_size

    async def work(db: Database) -> UploadResult:
        scope = DbScope(tenant_id=tenant_id)
        job = UploadImport(tenant_id, spec, batch_size=batch_size)
        async with source_lock(db.engine, tenant_id, spec):
            async with db.transaction(scope) as session:
                await job.start(session, lock=False)
            job.open(file, size)
            try:
                with _progress() as progress:
                    task = progress.add_task(escape(file.name), total=size)
                    while True:
                        async with db.transaction(scope) as session:
                            more = await job.step(session)
                        progress.update(task, completed=job.position or size)
                        if not more:
                            break
                    async with db.transaction(scope) as session:
                        result = await job.finish(session)
                    progress.update(task, completed=size)
            finally:
                await job.close()
        return result

    result = _run_import(settings, work)
    data = result.as_dict()
    if as_json:
        print(json.dumps(data, indent=2, default=str))
        return
    stats = data["stats"]
    agents = data["agent_states"]
    rows: list[tuple[str, Any]] = [
        ("file", f"{data['file']} ({data['bytes']} bytes, {stats['items']} items)"),
        ("records", data["received"]),
        ("accepted", data["accepted"]),
        ("duplicates", data["duplicates"]),
        ("updated", data["updated"]),
        ("stale", data["stale"]),
        ("rejected", data["rejected_count"]),
        ("unmapped queues", _counts(data["unmapped_queues"])),
        ("unmapped agents", _counts(data["unmapped_agents"])),
    ]
    if spec.kind == "queue_log":
        rows += [
            ("events used", _counts(stats["used"])),
            ("ignored", _counts(stats["ignored"])),
            ("unknown", _counts(stats["unknown"])),
            ("malformed", stats["malformed"]),
            ("already imported", stats["skipped_overlap"]),
            ("calls still open", data["open_calls"]),
            (
                "agent states",
                f"{agents['accepted']} accepted, {agents['duplicates']} duplicates, "
                f"{agents['unmapped']} of unmapped agents",
            ),
        ]
    else:
        rows.append(("malformed", stats["malformed"]))
    _print_receipt("Import receipt", rows, data["problems"], data["problems_count"])


@import_app.command("agent-states")
def import_agent_states(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="The file.")
    ],
    tenant: Annotated[str, typer.Option(help="The tenant's slug.")],
    format: Annotated[
        AgentStateFormat,
        typer.Option(
            help="csv: header agent_key,state,at[,reason][,queue_key]; jsonl: one JSON object "
            "per line with those fields (as POST /agent-states:batch)."
        ),
    ] = AgentStateFormat.csv,
    batch_size: Annotated[
        int,
        typer.Option(
            min=100,
            max=100_000,
            help="Events per batch. Each batch is committed on its own; running the file "
            "again is safe (what landed counts as duplicates).",
        ),
    ] = 10_000,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the receipt as JSON (for scripts).")
    ] = False,
) -> None:
    """Import agent-state events (login, available, on_contact, acw, not_ready with a
    reason, logged_out) into a tenant. Agents are matched by their telephony ids; events of
    unknown agents are counted as unmapped. Commits every --batch-size events, shows the
    bytes read, prints the receipt."""
    from service.contacts.agent_states import (
        AgentStateFile,
        AgentStateReceipt,
        ingest_agent_states,
    )
    from service.contacts.records import ParseIssue
    from service.core.db import Database, DbScope

    settings = _settings()
    tenant_id = _tenant_scope(settings, tenant)
    size = file.stat().st_size
    problems: list[dict[str, Any]] = []

    async def work(db: Database) -> tuple[AgentStateReceipt, int]:
        scope = DbScope(tenant_id=tenant_id)
        reader = AgentStateFile(file, format.value, file.name)
        total = AgentStateReceipt()
        row = 0
        issues = 0
        try:
            with _progress() as progress:
                task = progress.add_task(escape(file.name), total=size)
                while True:
                    batch, position = await asyncio.to_thread(reader.read, batch_size)
                    if not batch:
                        break
                    events = []
                    for item in batch:
                        if isinstance(item, ParseIssue):
                            issues += 1
                            problems.append(
                                {
                                    "line": item.line,
                                    "record": item.record,
                                    "column": item.column,
                                    "field": item.field,
                                    "reason": item.reason,
                                    "excerpt": item.excerpt,
                                }
                            )
                        else:
                            row += 1
                            events.append((row, item))
                    async with db.transaction(scope) as session:
                        receipt = await ingest_agent_states(session, tenant_id, events)
                    total.merge(receipt)
                    progress.update(task, completed=position or size)
                progress.update(task, completed=size)
        finally:
            await asyncio.to_thread(reader.close)
        return total, issues

    receipt, issues = _run_import(settings, work)
    data = receipt.as_dict()
    if as_json:
        print(json.dumps({**data, "malformed": issues, "problems": problems[:1000]}, indent=2))
        return
    rows: list[tuple[str, Any]] = [
        ("file", f"{file.name} ({size} bytes)"),
        ("events", data["received"]),
        ("accepted", data["accepted"]),
        ("duplicates", data["duplicates"]),
        ("unmapped", f"{data['unmapped']} ({_counts(data['unmapped_agents'])})"),
        ("rejected", data["rejected_count"]),
        ("unmapped queues", _counts(data["unmapped_queues"])),
        ("malformed", issues),
    ]
    listed = problems + [
        {"record": p["row"], "field": p["field"], "reason": p["reason"]} for p in data["rejected"]
    ]
    _print_receipt("Agent-state import receipt", rows, listed, issues + data["rejected_count"])


def main() -> None:
    app()


if __name__ == "__main__":
    main()
