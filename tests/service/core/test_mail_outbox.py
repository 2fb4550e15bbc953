"""The mail outbox: a mail exists if and only if its transaction commits, the
worker's delivery sends each once, and failures are retried with back-off.

The outbox table is shared by the tests of a run, so every test writes to a
fresh recipient and counts only its own rows and `.eml` files. Delivery writes
into a per-test outbox folder (SMTP_URL is unset in tests)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from service.core import mail
from service.core.config import Settings
from service.core.db import Database
from service.core.mail import MAX_ATTEMPTS, build_message, deliver_outbox, queue_message
from tests.factories import bearer, make_tenant


@pytest.fixture
def mail_settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(update={"var_dir": tmp_path})


def _recipient() -> str:
    return f"to-{secrets.token_hex(6)}@example.com"


def _delivered_to(settings: Settings, recipient: str) -> list[EmailMessage]:
    mails = (
        message_from_bytes(path.read_bytes(), policy=default)
        for path in sorted(settings.outbox_dir.glob("*.eml"))
    )
    return [m for m in mails if m["To"] == recipient]


async def _queue(db: Database, settings: Settings, recipient: str) -> uuid.UUID:
    """Queue one mail as the application role, in a committed transaction."""
    async with db.transaction() as session:
        return await queue_message(
            session, build_message(settings, recipient, "Outbox test", "hello")
        )


async def _rows(db: Database, recipient: str) -> list[Any]:
    async with db.admin_transaction() as admin:
        result = await admin.execute(
            text(
                "select id, tenant_id, subject, message, attempts, sent_at, last_error,"
                " next_attempt_at, next_attempt_at > now() as later"
                " from mail_outbox where recipient = :r order by created_at"
            ),
            {"r": recipient},
        )
        return list(result.all())


async def _make_due(db: Database, mail_id: uuid.UUID) -> None:
    """Stand in for the passing of the back-off time."""
    async with db.admin_transaction() as admin:
        await admin.execute(
            text("update mail_outbox set next_attempt_at = now() where id = :id"), {"id": mail_id}
        )


async def test_committed_invitation_is_queued_then_delivered_once(
    client: AsyncClient,
    settings: Settings,
    mail_settings: Settings,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen_at_enqueue: list[int] = []

    async def record_enqueue(redis: object) -> None:
        # The route asks the worker to deliver only once the mail is committed.
        seen_at_enqueue.append(len(await _rows(db, recipient)))

    monkeypatch.setattr("tenants.router.enqueue_delivery", record_enqueue)
    seed = await make_tenant(client, settings)
    recipient = _recipient()
    invited = await client.post(
        "/api/v1/invitations",
        json={"email": recipient, "role": "analyst"},
        headers=bearer(seed.admin_token),
    )
    assert invited.status_code == 201, invited.text
    assert seen_at_enqueue == [1]
    [row] = await _rows(db, recipient)
    assert row.sent_at is None
    assert row.attempts == 0
    assert row.tenant_id == seed.id
    assert row.subject == f"You are invited to BPO {seed.slug} on callpact"
    assert "token=" in message_from_bytes(row.message, policy=default).get_body().get_content()  # type: ignore[union-attr]
    assert _delivered_to(mail_settings, recipient) == []  # nothing is sent inside the request

    report = await deliver_outbox(db, mail_settings)
    assert report.sent >= 1
    [delivered] = _delivered_to(mail_settings, recipient)
    assert "token=" in delivered.get_body().get_content()  # type: ignore[union-attr]
    [row] = await _rows(db, recipient)
    assert row.sent_at is not None
    assert row.attempts == 1

    await deliver_outbox(db, mail_settings)  # a second run sends nothing again
    assert len(_delivered_to(mail_settings, recipient)) == 1


async def test_password_reset_queues_mail_only_for_an_existing_account(
    client: AsyncClient, settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueued: list[object] = []

    async def record_enqueue(redis: object) -> None:
        enqueued.append(redis)

    monkeypatch.setattr("tenants.router.enqueue_delivery", record_enqueue)
    seed = await make_tenant(client, settings)
    unknown = f"nobody-{secrets.token_hex(4)}@{seed.slug}.example.com"
    answers = []
    for email in (seed.admin_email, unknown):
        response = await client.post(
            "/api/v1/auth/password-reset", json={"tenant": seed.slug, "email": email}
        )
        answers.append((response.status_code, response.json()))
    assert answers[0] == answers[1]
    assert answers[0][0] == 202
    [row] = await _rows(db, seed.admin_email)
    assert row.subject == "Reset your callpact password"
    assert row.tenant_id == seed.id
    assert await _rows(db, unknown) == []
    assert len(enqueued) == 1


async def test_rolled_back_transaction_leaves_no_mail(db: Database, settings: Settings) -> None:
    recipient = _recipient()

    class Abort(Exception):
        pass

    async def queue_then_fail() -> None:
        async with db.transaction() as session:
            await queue_message(session, build_message(settings, recipient, "Never", "x"))
            raise Abort

    with pytest.raises(Abort):
        await queue_then_fail()
    assert await _rows(db, recipient) == []


async def test_failed_send_is_recorded_backed_off_and_retried_once(
    db: Database, mail_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipient = _recipient()
    mail_id = await _queue(db, mail_settings, recipient)
    real_send = mail.send_message

    async def refusing(settings: Settings, message: EmailMessage) -> str:
        if message["To"] == recipient:
            raise ConnectionRefusedError(111, "Connection refused")
        return await real_send(settings, message)

    monkeypatch.setattr(mail, "send_message", refusing)
    report = await deliver_outbox(db, mail_settings)
    assert report.failed >= 1
    [row] = await _rows(db, recipient)
    assert row.sent_at is None
    assert row.attempts == 1
    assert row.last_error is not None
    assert "ConnectionRefusedError" in row.last_error
    assert row.later  # backed off: not due again yet

    # Not due: another run leaves it alone even with a working transport.
    monkeypatch.setattr(mail, "send_message", real_send)
    await deliver_outbox(db, mail_settings)
    [row] = await _rows(db, recipient)
    assert row.sent_at is None
    assert row.attempts == 1
    assert _delivered_to(mail_settings, recipient) == []

    await _make_due(db, mail_id)
    await deliver_outbox(db, mail_settings)
    await deliver_outbox(db, mail_settings)
    [row] = await _rows(db, recipient)
    assert row.sent_at is not None
    assert row.attempts == 2
    assert len(_delivered_to(mail_settings, recipient)) == 1


async def test_back_off_doubles_and_is_capped() -> None:
    delays = [mail.backoff_s(n) for n in range(1, MAX_ATTEMPTS + 1)]
    assert delays[:4] == [60, 120, 240, 480]
    assert max(delays) == mail.MAX_BACKOFF_S
    assert delays == sorted(delays)


async def test_mail_is_abandoned_after_the_last_attempt(
    db: Database, mail_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipient = _recipient()
    mail_id = await _queue(db, mail_settings, recipient)
    async with db.admin_transaction() as admin:
        await admin.execute(
            text("update mail_outbox set attempts = :n where id = :id"),
            {"n": MAX_ATTEMPTS - 1, "id": mail_id},
        )
    real_send = mail.send_message

    async def refusing(settings: Settings, message: EmailMessage) -> str:
        if message["To"] == recipient:
            raise TimeoutError("SMTP timed out")
        return await real_send(settings, message)

    monkeypatch.setattr(mail, "send_message", refusing)
    report = await deliver_outbox(db, mail_settings)
    assert report.abandoned >= 1
    monkeypatch.setattr(mail, "send_message", real_send)
    await _make_due(db, mail_id)
    await deliver_outbox(db, mail_settings)
    [row] = await _rows(db, recipient)
    assert row.attempts == MAX_ATTEMPTS
    assert row.sent_at is None
    assert row.last_error == "TimeoutError: SMTP timed out"
    assert _delivered_to(mail_settings, recipient) == []


async def test_two_concurrent_deliveries_send_each_mail_once(
    db: Database, mail_settings: Settings
) -> None:
    recipients = [_recipient() for _ in range(12)]
    for recipient in recipients:
        await _queue(db, mail_settings, recipient)
    # Two workers: two processes' engines, not one pool.
    first, second = Database(db.settings), Database(db.settings)
    try:
        reports = await asyncio.gather(
            deliver_outbox(first, mail_settings), deliver_outbox(second, mail_settings)
        )
    finally:
        await first.dispose()
        await second.dispose()
    assert sum(r.sent for r in reports) >= len(recipients)
    for recipient in recipients:
        assert len(_delivered_to(mail_settings, recipient)) == 1, recipient
        [row] = await _rows(db, recipient)
        assert row.sent_at is not None
        assert row.attempts == 1


async def test_a_mail_locked_by_another_delivery_is_skipped(
    db: Database, mail_settings: Settings
) -> None:
    locked, free = _recipient(), _recipient()
    locked_id = await _queue(db, mail_settings, locked)
    await _queue(db, mail_settings, free)
    async with db.admin_transaction() as other:
        # Another worker's claim, still open.
        await other.execute(
            text("select id from mail_outbox where id = :id for update"), {"id": locked_id}
        )
        await deliver_outbox(db, mail_settings)
        assert len(_delivered_to(mail_settings, free)) == 1
        assert _delivered_to(mail_settings, locked) == []
    [row] = await _rows(db, locked)
    assert row.attempts == 0
    await deliver_outbox(db, mail_settings)
    assert len(_delivered_to(mail_settings, locked)) == 1


async def test_application_role_may_queue_but_not_read_or_change_mail(
    db: Database, settings: Settings
) -> None:
    recipient = _recipient()
    mail_id = await _queue(db, settings, recipient)  # INSERT as the application role works
    for sql in (
        "select count(*) from mail_outbox",
        "update mail_outbox set sent_at = now() where id = :id",
        "delete from mail_outbox where id = :id",
    ):
        with pytest.raises(DBAPIError) as refused:
            async with db.engine.connect() as conn:
                await conn.execute(text(sql), {"id": mail_id})
        assert getattr(refused.value.orig, "sqlstate", None) == "42501", sql
    [row] = await _rows(db, recipient)
    assert row.sent_at is None


async def test_purge_deletes_only_mail_long_sent_or_given_up(
    db: Database, mail_settings: Settings
) -> None:
    recipient = _recipient()
    ids = {name: await _queue(db, mail_settings, recipient) for name in "ABCD"}
    async with db.admin_transaction() as admin:
        for name, sql in (
            ("A", "sent_at = now() - interval '40 days'"),  # long sent: purged
            ("B", "sent_at = now() - interval '1 day'"),  # sent lately: kept
            # Still being tried, however old: kept.
            ("C", "created_at = now() - interval '40 days', attempts = 2"),
            # Given up on long ago: purged.
            ("D", f"created_at = now() - interval '40 days', attempts = {MAX_ATTEMPTS}"),
        ):
            await admin.execute(
                text(f"update mail_outbox set {sql} where id = :id"), {"id": ids[name]}
            )
    assert await mail.purge_outbox(db, keep_days=30) >= 2
    left = {row.id for row in await _rows(db, recipient)}
    assert left == {ids["B"], ids["C"]}
    await mail.purge_outbox(db, keep_days=30)  # again: nothing more of these goes
    assert {row.id for row in await _rows(db, recipient)} == {ids["B"], ids["C"]}
