"""The composition root of the job worker: the only place that lists every
arq job and cron entry.

Jobs take ids and primitives (JSON serializer, never pickle) and are
idempotent, because arq may run a job more than once. What must not be lost
goes through an outbox table; jobs deliver from it.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import asdict
from typing import Any, ClassVar

import structlog
from arq import cron, func
from arq.cron import CronJob
from arq.worker import Function, run_worker
from sqlalchemy import text

from service.core.config import Settings, get_settings
from service.core.db import Database
from service.core.logging import configure_logging
from service.core.mail import DELIVER_JOB, deliver_outbox, purge_outbox
from service.core.metrics import JOB_COUNTS_KEY
from service.core.redis import arq_settings, deserialize_job, serialize_job
from tenants.keys import rotate_keys

log = structlog.get_logger("callpact.worker")


async def ping(ctx: dict[str, Any], token: str) -> str:
    """`system.ping`: proves the worker, Redis and the database answer end to end."""
    async with ctx["db"].engine.connect() as conn:
        await conn.execute(text("select 1"))
    return token


async def rotate_signing_keys(ctx: dict[str, Any]) -> str | None:
    """`tenants.rotate_keys`: add the next JWT signing key a day before the
    current one stops signing. Idempotent: a run that finds a key still
    signing beyond tomorrow adds nothing, so a repeated or doubled run is free.
    Signing keys are platform-wide, hence the admin engine."""
    settings: Settings = ctx["settings"]
    db: Database = ctx["db"]
    async with db.admin_transaction() as admin:
        kid = await rotate_keys(admin, settings.auth.secret_key.get_secret_value())
    if kid is not None:
        log.info("signing_key_added", kid=kid)
    return kid


async def deliver_mail(ctx: dict[str, Any]) -> dict[str, int]:
    """`mail.deliver`: send the due mails of `mail_outbox` (service/core/mail.py).
    Enqueued by a request after it committed a mail, and run every minute by
    cron for retries and for mail queued while Redis or the worker was down.
    Concurrent runs are safe: each mail is claimed by one run."""
    report = await deliver_outbox(ctx["db"], ctx["settings"])
    if report.sent or report.failed:
        log.info("mail_delivered", **asdict(report))
    return asdict(report)


async def purge_mail(ctx: dict[str, Any]) -> int:
    """`mail.purge`: delete mail sent or given up on more than 30 days ago, so the
    outbox does not grow without bound. Idempotent."""
    deleted = await purge_outbox(ctx["db"])
    if deleted:
        log.info("mail_purged", deleted=deleted)
    return deleted


FUNCTIONS: list[Function] = [
    func(ping, name="system.ping"),
    func(deliver_mail, name=DELIVER_JOB, timeout=300),
]

CRON_JOBS: list[CronJob] = [
    # Daily, and once at startup: a worker that was down at 03:17 catches up
    # when it comes back, before the current key's last signing day ends.
    cron(
        rotate_signing_keys,
        name="tenants.rotate_keys",
        hour={3},
        minute={17},
        run_at_startup=True,
        timeout=60,
    ),
    # Every minute, and at startup: retries, and what no enqueue announced.
    cron(deliver_mail, name="mail.deliver_due", run_at_startup=True, timeout=300),
    # Daily.
    cron(purge_mail, name="mail.purge", hour={4}, minute={41}, timeout=300),
]


async def _startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx.get("settings") or get_settings()
    ctx["settings"] = settings
    ctx["db"] = Database(settings.database)
    log.info(
        "worker_started",
        jobs=[f.name for f in FUNCTIONS],
        cron=[c.name for c in CRON_JOBS],
    )


async def _shutdown(ctx: dict[str, Any]) -> None:
    db: Database | None = ctx.get("db")
    if db is not None:
        await db.dispose()


async def _count(ctx: dict[str, Any], outcome: str) -> None:
    name = ctx.get("job_name") or "unknown"
    await ctx["redis"].hincrby(JOB_COUNTS_KEY, f"{name}|{outcome}", 1)


async def _job_start(ctx: dict[str, Any]) -> None:
    await _count(ctx, "started")


async def _job_end(ctx: dict[str, Any]) -> None:
    await _count(ctx, "finished")


class WorkerSettings:
    functions: ClassVar[list[Function]] = FUNCTIONS
    cron_jobs: ClassVar[list[CronJob]] = CRON_JOBS
    on_startup = _startup
    on_shutdown = _shutdown
    on_job_start = _job_start
    after_job_end = _job_end
    job_serializer = serialize_job
    job_deserializer = deserialize_job
    max_tries = 5
    job_timeout = 600
    health_check_interval = 30
    # Per process: with a shared key, one live worker would vouch for a dead one.
    health_check_key = f"callpact:worker:health:{socket.gethostname()}"
    # On SIGTERM, let running jobs finish (under the pod's 60 s grace period).
    job_completion_wait = 50


def run(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    configure_logging(settings.log.level, settings.log.format)
    run_worker(WorkerSettings, redis_settings=arq_settings(settings.redis))  # type: ignore[arg-type]


def check(settings: Settings | None = None) -> int:
    """Exit code of the worker's health check (for Kubernetes probes)."""
    settings = settings or get_settings()
    from arq.worker import async_check_health

    return int(
        asyncio.run(
            async_check_health(arq_settings(settings.redis), WorkerSettings.health_check_key, None)
        )
    )
