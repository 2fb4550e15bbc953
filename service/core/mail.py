"""Outgoing mail, through a durable outbox.

Invariants held here:

* **A mail exists if and only if the transaction that caused it commits.**
  `queue_message` inserts the whole RFC 5322 message into `mail_outbox` in the
  caller's transaction; nothing is sent inside a request, so a rolled-back
  invitation sends no dead link and a slow SMTP server slows no request.
* **Each mail is sent once per claim, by one worker.** `deliver_outbox` claims
  one due row at a time with `FOR UPDATE SKIP LOCKED` and, in the same short
  transaction, counts the attempt and leases the row (`next_attempt_at` moves
  past the time a send may take). The send happens outside any transaction;
  a second transaction marks it sent, or records the error and backs off
  exponentially. Two workers therefore never send one mail twice; a worker
  that dies between sending and marking leaves the mail to be sent again when
  the lease ends (SMTP offers no better than at least once).
* After `MAX_ATTEMPTS` failed attempts a mail is no longer tried; it stays in
  the table, with its last error, for an operator (docs/operations.md).

Transport (`send_message`): SMTP when `SMTP_URL` is set, otherwise `.eml`
files in `var/outbox/` that a person can open. The application role may only
insert into the outbox; delivery reads and updates it as the admin role.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import make_msgid
from pathlib import Path
from urllib.parse import unquote, urlsplit

import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.core.config import Settings
from service.core.db import Database
from service.core.time import new_id, utcnow

log = structlog.get_logger("callpact.mail")

DELIVER_JOB = "mail.deliver"
MAX_ATTEMPTS = 10
FIRST_BACKOFF_S = 60
MAX_BACKOFF_S = 3600
# A claimed row is not due again before this many seconds: longer than a send
# may take (the SMTP timeout applies per operation, a few per mail).
MIN_LEASE_S = 300
_MAX_ERROR_CHARS = 2000


def build_message(
    settings: Settings, to: str, subject: str, text: str, html: str | None = None
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.smtp.sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="callpact.localhost")
    message["Date"] = utcnow().strftime("%a, %d %b %Y %H:%M:%S +0000")
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message


async def send_message(settings: Settings, message: EmailMessage) -> str:
    """Deliver `message` now; return where it went (a file path or the SMTP host).
    The transport of `deliver_outbox`: requests queue mail, they never send it."""
    if settings.smtp.url is None:
        outbox = settings.outbox_dir
        name = f"{utcnow().strftime('%Y%m%dT%H%M%S%f')}-{message['Message-ID'].strip('<>').split('@')[0]}.eml"

        def write() -> Path:
            outbox.mkdir(parents=True, exist_ok=True)
            path = outbox / name
            path.write_bytes(bytes(message))
            return path

        return str(await asyncio.to_thread(write))
    import aiosmtplib

    parts = urlsplit(settings.smtp.url)
    await aiosmtplib.send(
        message,
        hostname=parts.hostname or "localhost",
        port=parts.port or (465 if parts.scheme == "smtps" else 25),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        use_tls=parts.scheme == "smtps",
        start_tls=None,
        timeout=settings.smtp.timeout_s,
    )
    return parts.hostname or "localhost"


_QUEUE = text(
    "insert into mail_outbox (id, tenant_id, recipient, subject, message)"
    " values (:id, :tenant_id, :recipient, :subject, :message)"
)


async def queue_message(
    session: AsyncSession, message: EmailMessage, tenant_id: uuid.UUID | None = None
) -> uuid.UUID:
    """Queue `message` in the session's transaction: it is delivered if and
    only if that transaction commits. No RETURNING: the application role may
    not read the outbox."""
    mail_id = new_id()
    await session.execute(
        _QUEUE,
        {
            "id": mail_id,
            "tenant_id": tenant_id,
            "recipient": str(message["To"]),
            "subject": str(message["Subject"]),
            "message": bytes(message),
        },
    )
    return mail_id


async def enqueue_delivery(redis: ArqRedis) -> None:
    """Ask the worker to deliver now (after the queuing transaction committed).
    Best effort: while Redis is down the worker's cron delivers within a minute."""
    try:
        await redis.enqueue_job(DELIVER_JOB)
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("mail_delivery_not_enqueued", error=f"{type(exc).__name__}: {exc}")


def backoff_s(attempts: int) -> int:
    """Seconds before the next attempt after `attempts` failed ones: 1, 2, 4 … 60 minutes."""
    return int(min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    abandoned: int = 0


_CLAIM = text(
    """
    update mail_outbox set attempts = attempts + 1,
                           next_attempt_at = now() + make_interval(secs => :lease)
    where id = (
        select id from mail_outbox
        where sent_at is null and next_attempt_at <= now() and attempts < :max_attempts
        order by next_attempt_at
        limit 1
        for update skip locked
    )
    returning id, tenant_id, message, attempts
    """
)
_SENT = text("update mail_outbox set sent_at = now() where id = :id")
_FAILED = text(
    "update mail_outbox set last_error = :error,"
    " next_attempt_at = now() + make_interval(secs => :delay) where id = :id"
)


async def deliver_outbox(db: Database, settings: Settings, *, limit: int = 100) -> DeliveryReport:
    """Send up to `limit` due mails of the outbox, as the admin role. Safe to
    run concurrently and repeatedly (see the module docstring)."""
    lease = max(MIN_LEASE_S, int(settings.smtp.timeout_s * 10))
    sent = failed = abandoned = 0
    for _ in range(limit):
        async with db.admin_transaction() as admin:
            row = (
                await admin.execute(_CLAIM, {"lease": lease, "max_attempts": MAX_ATTEMPTS})
            ).one_or_none()
        if row is None:
            break
        # The default policy parses into an EmailMessage, as `build_message` made it.
        message = message_from_bytes(row.message, policy=default_policy)
        try:
            await send_message(settings, message)
        except Exception as exc:  # any transport failure (SMTP, socket, disk) is retried later
            error = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]
            async with db.admin_transaction() as admin:
                await admin.execute(
                    _FAILED, {"id": row.id, "error": error, "delay": backoff_s(row.attempts)}
                )
            failed += 1
            if row.attempts >= MAX_ATTEMPTS:
                abandoned += 1
                log.error(
                    "mail_abandoned",
                    mail_id=str(row.id),
                    tenant_id=str(row.tenant_id) if row.tenant_id else None,
                    attempts=row.attempts,
                    error=error,
                )
            else:
                log.warning(
                    "mail_delivery_failed",
                    mail_id=str(row.id),
                    attempts=row.attempts,
                    retry_in_s=backoff_s(row.attempts),
                    error=error,
                )
            continue
        async with db.admin_transaction() as admin:
            await admin.execute(_SENT, {"id": row.id})
        sent += 1
    return DeliveryReport(sent=sent, failed=failed, abandoned=abandoned)


# Sent mail is kept this long (what went out, to whom, when), then deleted;
# mail given up on is kept for an operator until it is this old too.
KEEP_DAYS = 30
_PURGE = text(
    "delete from mail_outbox where coalesce(sent_at, created_at) < now() - make_interval(days => :days)"
    " and (sent_at is not null or attempts >= :max_attempts)"
)


async def purge_outbox(db: Database, *, keep_days: int = KEEP_DAYS) -> int:
    """Delete mail sent (or given up on) more than `keep_days` ago; mail still
    being tried is never deleted. Returns the number of rows deleted."""
    async with db.admin_transaction() as admin:
        result = await admin.execute(_PURGE, {"days": keep_days, "max_attempts": MAX_ATTEMPTS})
    return int(getattr(result, "rowcount", 0) or 0)
