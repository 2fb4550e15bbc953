"""`callpact doctor` says when invitations and password resets are stuck in the
mail outbox (the worker down, SMTP refusing), and counts mail given up on."""

from __future__ import annotations

import asyncpg

from service.core.config import DatabaseSettings, Settings
from service.core.doctor import run_checks
from service.core.mail import MAX_ATTEMPTS
from service.core.migrate import upgrade_async
from tests.conftest import Server, create_database, drop_database


async def test_doctor_names_mail_stuck_in_the_outbox(
    pg_server: Server, db_settings: DatabaseSettings, settings: Settings, run_id: str
) -> None:
    name = f"callpact_doc_{run_id}"
    dsn = await create_database(pg_server, name)
    db = db_settings.model_copy(update={"url": dsn})
    checked = settings.model_copy(update={"database": db})
    try:
        await upgrade_async(db)

        async def outbox() -> tuple[bool, str]:
            found = [f for f in await run_checks(checked) if f.topic == "outbox"]
            assert len(found) == 1, found
            return found[0].ok, found[0].message

        assert await outbox() == (True, "0 mail(s) waiting")
        conn = await asyncpg.connect(dsn)
        try:
            insert = (
                "insert into mail_outbox (id, recipient, subject, message, created_at, attempts,"
                " last_error) values (gen_random_uuid(), 'a@example.com', 's', 'm',"
                " now() - make_interval(mins => $1), $2, $3)"
            )
            await conn.execute(insert, 5, 1, None)  # just queued: not late
            await conn.execute(insert, 600, MAX_ATTEMPTS, "550 no such user")  # given up
            ok, message = await outbox()
            assert ok, message
            assert message == f"1 mail(s) waiting; 1 given up after {MAX_ATTEMPTS} attempts"
            await conn.execute(insert, 90, 4, "421 try again later")
        finally:
            await conn.close()
        ok, message = await outbox()
        assert not ok
        assert message.startswith("1 mail(s) undelivered for over 1 hour"), message
        assert "421 try again later" in message
        assert "callpact worker" in message
    finally:
        await drop_database(pg_server, name)
