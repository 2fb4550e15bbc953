"""How an upload behaves around the file: a slow client does not lose the request's
transaction, imports of one source run one at a time, an unreadable saved state is set
aside, temporary files never outlive the request."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text

from service.app import create_app
from service.contacts import service as contacts_service
from service.contacts import uploads
from service.core.config import DatabaseSettings, Settings
from service.core.db import Database
from tests.service.uploads.conftest import (
    QUEUE_LOG,
    UPLOADS,
    contact_rows,
    make_center,
    scalar,
    upload,
)

MALARIA = (QUEUE_LOG / "malariapbx.queue_log").read_bytes()


async def test_a_slow_client_keeps_the_transaction_alive(
    client: AsyncClient,
    settings: Settings,
    db_settings: DatabaseSettings,
    redis: object,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The request's transaction is open (authentication read in it) while the body
    arrives; PostgreSQL ends a transaction idle for 4 x statement_timeout. A body that takes
    longer than that still lands, because the upload pings its transaction."""
    quick = Database(db_settings.model_copy(update={"statement_timeout_ms": 1000}))
    app = create_app(settings, db=quick, redis=redis)
    monkeypatch.setattr(uploads, "KEEPALIVE_S", 1.0)
    try:
        async with quick.transaction() as session:
            idle = (
                await session.execute(text("show idle_in_transaction_session_timeout"))
            ).scalar_one()
        assert idle == "4s"
        center = await make_center(client, settings, quick)
        lines = MALARIA.splitlines(keepends=True)

        async def slowly() -> AsyncIterator[bytes]:
            for index in range(0, len(lines), 8):
                yield b"".join(lines[index : index + 8])
                await asyncio.sleep(0.5)  # 11 chunks: about 5.5 s in all

        async with app.router.lifespan_context(app):
            transport = ASGITransport(app=app, raise_app_exceptions=False)
            async with AsyncClient(transport=transport, base_url="http://test") as http:
                started = asyncio.get_running_loop().time()
                response = await http.post(
                    UPLOADS,
                    params={"format": "queue_log", "source": "slow"},
                    content=slowly(),
                    headers=center.headers,
                )
                took = asyncio.get_running_loop().time() - started
        assert response.status_code == 200, response.text
        assert took > 4.5
        assert response.json()["accepted"] == 8
        assert len(await contact_rows(quick, center.seed.id)) == 8
    finally:
        await quick.dispose()


async def test_one_import_per_source_at_a_time(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    center = await make_center(client, settings, db)
    reading = asyncio.Event()
    release = asyncio.Event()

    async def held() -> AsyncIterator[bytes]:
        reading.set()  # the first import has its lock and reads the body
        await release.wait()
        yield MALARIA

    first = asyncio.ensure_future(upload(client, center, held(), "queue_log", source="pbx"))
    await asyncio.wait_for(reading.wait(), 30)
    second = await upload(client, center, MALARIA, "queue_log", source="pbx")
    other_source = await upload(client, center, MALARIA, "queue_log", source="pbx-2")
    release.set()
    done = await first
    assert second.status_code == 409, second.text
    assert (second.json()["code"], second.json()["field"]) == ("import_source_busy", "source")
    assert other_source.status_code == 200  # another source is not held up
    assert done.status_code == 200
    assert (done.json()["duplicates"], done.json()["accepted"]) == (8, 0)  # pbx-2 came first
    # After the first ends, the same source imports again (all overlap now).
    after = await upload(client, center, MALARIA, "queue_log", source="pbx")
    assert (after.status_code, after.json()["stats"]["skipped_overlap"]) == (200, 85)


async def test_an_unreadable_saved_state_is_set_aside(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    center = await make_center(client, settings, db)
    assert (await upload(client, center, MALARIA, "queue_log", source="pbx")).status_code == 200
    async with db.admin_transaction() as admin:
        await admin.execute(
            text("update ingest_sources set state = '{\"version\": 99}' where tenant_id = :t"),
            {"t": center.seed.id},
        )
    again = await upload(client, center, MALARIA, "queue_log", source="pbx")
    assert again.status_code == 200, again.text
    body = again.json()
    assert body["problems"][0]["field"] == "source"
    assert "could not be read" in body["problems"][0]["reason"]
    # Read afresh: every call again, each a duplicate; the state is usable again.
    assert (body["received"], body["duplicates"], body["stats"]["skipped_overlap"]) == (8, 8, 0)
    assert (
        await scalar(
            db,
            "select state->>'version' from ingest_sources where tenant_id = :t",
            t=center.seed.id,
        )
        == "1"
    )


async def test_temporary_files_do_not_outlive_the_request(
    client: AsyncClient,
    settings: Settings,
    db: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The uploads spool into a folder this test owns (the system temp folder is shared
    with other processes and test workers) and leave nothing in it, accepted or refused."""
    monkeypatch.setattr(uploads, "SPOOL_DIR", str(tmp_path))
    spooled: list[Path] = []
    real_spool = contacts_service.spool

    async def recording_spool(*args: Any, **kwargs: Any) -> tuple[Path, int]:
        path, size = await real_spool(*args, **kwargs)
        spooled.append(path)
        return path, size

    monkeypatch.setattr(contacts_service, "spool", recording_spool)
    center = await make_center(client, settings, db)
    ok = await upload(client, center, MALARIA, "queue_log", source="pbx")
    refused = await upload(client, center, b'{"ContactId": 1,}', "amazon_connect")
    assert (ok.status_code, refused.status_code) == (200, 422)
    assert [path.parent for path in spooled] == [tmp_path, tmp_path]
    assert os.listdir(tmp_path) == []
