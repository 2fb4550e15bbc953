"""Amazon Connect contact trace records through `POST /contacts/uploads`: the valid samples
land, the samples that are not valid JSON as published are refused whole, naming line and
column, and nothing of such a file is written."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from httpx import AsyncClient

from service.contacts import uploads
from service.core.config import Settings
from service.core.db import Database
from tests.service.uploads.conftest import CONNECT, contact_rows, make_center, scalar, upload

CTR = CONNECT / "ctr_case1_inbound_transfer.json"


def line_of(text: str, number: int) -> str:
    return text.splitlines()[number - 1]


async def test_the_inbound_transfer_record_lands_as_the_file_says(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    center = await make_center(client, settings, db)
    response = await upload(client, center, CTR.read_bytes(), "amazon_connect", source="connect")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["received"], body["accepted"], body["problems"]) == (1, 1, [])
    assert body["stats"]["used"] == {"contact trace record": 1}
    assert body["unmapped_agents"] == {}  # agent.one is in the pool
    row = (await contact_rows(db, center.seed.id))["6fe40d2a-1a89-4d73-bfcf-5d9c33894f47"]
    # Read off the record: Queue.EnqueueTimestamp 17:14:46, ConnectedToAgentTimestamp 17:20:32,
    # TransferCompletedTimestamp 17:28:12 (the contact left the agent), Queue.Duration 346,
    # AgentInteractionDuration 239, CustomerHoldDuration 221, AfterContactWorkDuration 5.
    assert row["queue_key"] == "TCC Refrig AC LLA"
    assert (row["queued_at"], row["answered_at"], row["ended_at"]) == (
        datetime(2022, 1, 5, 17, 14, 46, tzinfo=UTC),
        datetime(2022, 1, 5, 17, 20, 32, tzinfo=UTC),
        datetime(2022, 1, 5, 17, 28, 12, tzinfo=UTC),
    )
    assert (row["wait_ms"], row["talk_ms"], row["hold_ms"], row["acw_ms"]) == (
        346_000,
        239_000,
        221_000,
        5_000,
    )
    assert (row["outcome"], row["transferred"], row["agent_key"]) == (
        "answered",
        True,
        "agent.one",
    )
    # The same record again (Connect delivers at least once): a duplicate.
    again = (
        await upload(client, center, CTR.read_bytes(), "amazon_connect", source="connect")
    ).json()
    assert (again["received"], again["duplicates"], again["accepted"]) == (1, 1, 0)
    assert (
        await scalar(
            db,
            "select last_import_at is not null from ingest_sources where tenant_id = :t "
            "and kind = 'amazon_connect' and name = 'connect'",
            t=center.seed.id,
        )
        is True
    )


async def test_a_contact_event_is_ignored_on_purpose(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    center = await make_center(client, settings, db)
    data = (CONNECT / "contact_event_connected_to_agent.docs.json").read_bytes()
    body = (await upload(client, center, data, "amazon_connect")).json()
    assert body["stats"]["ignored"] == {"contact event": 1}
    assert (body["received"], body["problems"]) == (0, [])


async def test_the_invalid_json_samples_are_refused_naming_line_and_column(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    center = await make_center(client, settings, db)
    # contact_event_disconnected: line 36 ends in a comma before the closing brace (line 37).
    disconnected = (CONNECT / "contact_event_disconnected.docs.INVALID_JSON.txt").read_text()
    comma = line_of(disconnected, 36).rindex(",") + 1
    response = await upload(client, center, disconnected.encode(), "amazon_connect")
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "upload_refused"
    assert (problem["line"], problem["column"]) == (36, comma)
    assert comma == 61
    assert "line 36, column 61" in problem["detail"]
    assert "trailing comma" in problem["problems"][0]["reason"]

    # agent_event_stream_sample: `//` comments from line 7 on.
    stream = (CONNECT / "agent_event_stream_sample.docs.INVALID_JSON.txt").read_text()
    response = await upload(client, center, stream.encode(), "amazon_connect")
    assert response.status_code == 422
    problems = response.json()["problems"]
    first_comment = next(n for n, line in enumerate(stream.splitlines(), 1) if "//" in line)
    assert first_comment == 7
    assert (problems[0]["line"], problems[0]["column"]) == (7, line_of(stream, 7).index("//") + 1)
    assert "comment" in problems[0]["reason"]
    commented = [n for n, line in enumerate(stream.splitlines(), 1) if "//" in line]
    assert {p["line"] for p in problems if "comment" in p["reason"]} == set(commented)


async def test_nothing_of_a_refused_file_is_written(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """A valid record followed by an invalid one (line 1, then the broken event from line 2):
    the file is refused as a whole; the valid record does not land either."""
    center = await make_center(client, settings, db)
    broken = (CONNECT / "contact_event_disconnected.docs.INVALID_JSON.txt").read_bytes()
    data = CTR.read_bytes().rstrip(b"\n") + b"\n" + broken
    response = await upload(client, center, data, "amazon_connect", source="connect")
    assert response.status_code == 422
    assert response.json()["line"] == 37  # 36 of the broken file, one line down
    assert await contact_rows(db, center.seed.id) == {}
    assert (
        await scalar(
            db, "select count(*) from ingest_sources where tenant_id = :t", t=center.seed.id
        )
        == 0
    )


async def test_a_connect_file_too_big_to_read_whole_is_refused(
    client: AsyncClient, settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    center = await make_center(client, settings, db)
    monkeypatch.setattr(uploads, "MAX_CONNECT_BYTES", 1024)
    data = CTR.read_bytes()
    assert len(data) > 1024
    response = await upload(client, center, data, "amazon_connect")
    assert response.status_code == 413
    assert (response.json()["code"], response.json()["limit_bytes"]) == (
        "upload_too_large_for_format",
        1024,
    )
    assert await contact_rows(db, center.seed.id) == {}
