"""CSV files through `POST /contacts/uploads` with a column mapping: bad rows named by record,
line and field while every good row lands; BOM, CRLF and quoted newlines; a 20 MB body
streamed in chunks; the upload limit; mappings refused naming the setting."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from httpx import ASGITransport, AsyncClient

from service.app import create_app
from service.core.config import Settings
from service.core.db import Database
from tests.service.uploads.conftest import UPLOADS, contact_rows, make_center, scalar, upload

MAPPING: dict[str, Any] = {
    "columns": {
        "external_id": "Call ID",
        "queue_key": "Queue",
        "queued_at": "Start",
        "answered_at": "Answered",
        "abandoned_at": "Abandoned",
        "outcome": "Result",
        "agent_key": "Agent",
        "talk_s": "Talk",
        "csat": "CSAT",
    },
    "channel": "voice",
}
HEADER = "Call ID,Queue,Start,Answered,Abandoned,Result,Agent,Talk,CSAT,Notes"
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def good_row(i: int, notes: str = "") -> dict[str, str]:
    start = T0 + timedelta(seconds=30 * i)
    answered = i % 2 == 0
    return {
        "Call ID": f"call-{i}",
        "Queue": "IT",
        "Start": iso(start),
        "Answered": iso(start + timedelta(seconds=12)) if answered else "",
        "Abandoned": "" if answered else iso(start + timedelta(seconds=40)),
        "Result": "answered" if answered else "abandoned",
        "Agent": "Agent/1127" if answered else "",
        "Talk": str(100 + i % 50) if answered else "",
        "CSAT": str(i % 5 + 1) if answered else "",
        "Notes": notes,
    }


def csv_line(row: dict[str, str]) -> str:
    cells = []
    for name in HEADER.split(","):
        value = row[name]
        if any(c in value for c in ',"\n\r'):
            value = '"' + value.replace('"', '""') + '"'
        cells.append(value)
    return ",".join(cells)


# (our field, how the row is broken): one fault per bad row, each on a field.
FAULTS: list[tuple[str, dict[str, str]]] = [
    ("queued_at", {"Start": "2026-13-45T00:00:00Z"}),
    ("queued_at", {"Start": "2026-03-02T08:00:00"}),  # naive, and the mapping names no zone
    ("outcome", {"Result": "vanished"}),
    ("csat", {"CSAT": "9"}),
    ("talk_s", {"Talk": "-5"}),
    ("external_id", {"Call ID": ""}),
    ("answered_at", {"Answered": "2026-03-01T08:00:00Z"}),  # before the start
    ("talk_s", {"Talk": "abc"}),
    ("csat", {"CSAT": "4.5"}),
    ("queue_key", {"Queue": ""}),
]


async def test_one_percent_bad_rows_each_named_and_every_good_row_lands(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    center = await make_center(client, settings, db)
    lines = [HEADER]
    physical = 1  # the header's line
    planted: dict[int, tuple[int, str]] = {}  # record -> (line, field)
    good: set[str] = set()
    for record in range(1, 1001):
        # Every 100th row carries a note over two physical lines, so lines and records drift.
        row = good_row(record, "two\nlines" if record % 100 == 0 else "")
        start_line = physical + 1
        if record % 100 == 50:
            field, change = FAULTS[record // 100]
            row = {**row, **change}
            if field == "talk_s" or field == "csat":  # on an answered row
                assert row["Result"] == "answered"
            planted[record] = (start_line, field)
        else:
            good.add(row["Call ID"])
        text = csv_line(row)
        lines.append(text)
        physical += text.count("\n") + 1
    data = ("\n".join(lines) + "\n").encode()
    response = await upload(client, center, data, "csv", mapping=MAPPING, source="crm")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["stats"]["items"] == 1000
    assert body["stats"]["malformed"] == 10
    assert (body["received"], body["accepted"], body["rejected_count"]) == (990, 990, 0)
    found = {p["record"]: (p["line"], p["field"].split(" ")[0]) for p in body["problems"]}
    assert found == planted
    assert all(p["stage"] == "parse" and p["reason"] for p in body["problems"])
    rows = await contact_rows(db, center.seed.id)
    assert set(rows) == good
    # Record 2 by hand: answered 12 s after 08:01:00, talk 102 s, CSAT 3, agent 1127 mapped.
    two = rows["call-2"]
    assert (two["outcome"], two["wait_ms"], two["talk_ms"], two["agent_key"]) == (
        "answered",
        12_000,
        102_000,
        "Agent/1127",
    )
    assert body["unmapped_agents"] == {}


async def test_bom_crlf_and_a_quoted_newline(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    center = await make_center(client, settings, db)
    rows = [
        good_row(1, 'she said "call me back"\r\nthen hung up'),
        good_row(2, "=HYPERLINK(x)"),
        {**good_row(4), "Result": "lost"},
    ]
    data = ("\ufeff" + HEADER + "\r\n" + "\r\n".join(csv_line(r) for r in rows) + "\r\n").encode()
    response = await upload(client, center, data, "csv", mapping=MAPPING)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 2
    # Record 1 spans lines 2-3, record 2 is line 4, record 3 (the bad one) line 5.
    assert [(p["record"], p["line"], p["field"]) for p in body["problems"]] == [
        (3, 5, "outcome ('Result')")
    ]
    landed = await contact_rows(db, center.seed.id)
    assert set(landed) == {"call-1", "call-2"}  # the BOM did not eat the first header
    assert landed["call-1"]["abandoned_at"] == T0 + timedelta(seconds=70)


async def _chunks(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_a_20_mb_file_streams_through(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    center = await make_center(client, settings, db)
    note = "x" * 960
    body_lines = [HEADER] + [csv_line(good_row(i, note)) for i in range(1, 21_001)]
    data = ("\n".join(body_lines) + "\n").encode()
    assert len(data) > 20 * 1024 * 1024
    response = await upload(client, center, _chunks(data), "csv", mapping=MAPPING, source="big")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["bytes"], body["accepted"], body["problems_count"]) == (len(data), 21_000, 0)
    assert (
        await scalar(db, "select count(*) from contacts where tenant_id = :t", t=center.seed.id)
        == 21_000
    )


async def test_over_the_upload_limit_is_413_and_writes_nothing(
    settings: Settings, db: Database, redis: object, client: AsyncClient
) -> None:
    center = await make_center(client, settings, db)
    small = settings.model_copy(
        update={"api": settings.api.model_copy(update={"max_upload_bytes": 4096})}
    )
    app = create_app(small, db=db, redis=redis)
    data = ("\n".join([HEADER] + [csv_line(good_row(i)) for i in range(1, 200)]) + "\n").encode()
    assert len(data) > 4096
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://test") as http:
            params = {"format": "csv", "mapping": json.dumps(MAPPING)}
            declared = await http.post(UPLOADS, params=params, content=data, headers=center.headers)
            streamed = await http.post(
                UPLOADS, params=params, content=_chunks(data, 1024), headers=center.headers
            )
            fits = await http.post(
                UPLOADS,
                params=params,
                content=data[:3000].rsplit(b"\n", 1)[0] + b"\n",
                headers=center.headers,
            )
    for response in (declared, streamed):
        assert response.status_code == 413, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == "payload_too_large"
    assert fits.status_code == 200, fits.text
    # Only the small file landed; the refused ones left nothing (and no temporary file).
    assert (
        await scalar(db, "select count(*) from contacts where tenant_id = :t", t=center.seed.id)
        == fits.json()["accepted"]
        > 0
    )


async def test_invalid_mappings_are_refused_naming_the_setting(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    center = await make_center(client, settings, db)
    data = (HEADER + "\n" + csv_line(good_row(2)) + "\n").encode()
    columns = MAPPING["columns"]
    cases: list[tuple[Any, str]] = [
        (None, "mapping"),
        ("{not json", "mapping"),
        ({"columns": columns}, "mapping.channel"),  # neither a channel column nor a channel
        ({"columns": {**columns, "mood": "Notes"}, "channel": "voice"}, "mapping.columns"),
        (
            {"columns": {"queue_key": "Queue", "queued_at": "Start"}, "channel": "voice"},
            "mapping.columns",
        ),
        ({**MAPPING, "colour": "red"}, "mapping.colour"),
        ({**MAPPING, "time_zone": "Mars/Olympus"}, "mapping.time_zone"),
        ({**MAPPING, "timestamp_format": "%d/%m/%Y %H:%M"}, "mapping.time_zone"),
        ({**MAPPING, "encoding": "klingon"}, "mapping.encoding"),
        ({**MAPPING, "delimiter": "ab"}, "mapping.delimiter"),
        ({**MAPPING, "outcome_values": {"lost": "gone"}}, "mapping.outcome_values"),
    ]
    for mapping, setting in cases:
        params: dict[str, Any] = {} if mapping is None else {"mapping": mapping}
        response = await upload(client, center, data, "csv", **params)
        assert response.status_code == 422, (setting, response.text)
        problem = response.json()
        assert (problem["code"], problem["field"]) == ("upload_option_invalid", setting), problem
    # A mapping for another format is refused too.
    other = await upload(client, center, b"", "amazon_connect", mapping=MAPPING)
    assert (other.status_code, other.json()["field"]) == (422, "mapping")
    # A header without a mapped column refuses the file, naming the field; nothing lands.
    headless = (HEADER.replace("Result", "Outcome") + "\n" + csv_line(good_row(2)) + "\n").encode()
    refused = await upload(client, center, headless, "csv", mapping=MAPPING)
    assert refused.status_code == 422
    assert (refused.json()["code"], refused.json()["field"]) == ("upload_refused", "outcome")
    assert await contact_rows(db, center.seed.id) == {}


async def test_an_overlong_key_is_one_refused_row_never_a_500(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """A key of thousands of characters (no index holds it) is named by record, line and
    field, as the JSON API names it, while the other rows land."""
    center = await make_center(client, settings, db)
    # Incompressible text: PostgreSQL cannot squeeze it under its index row limit.
    huge = "".join(chr(0x4E00 + (i * 7919) % 20_000) for i in range(20_000))
    rows = [
        good_row(1),
        {**good_row(2), "Call ID": huge},
        {**good_row(3), "Queue": huge},
        {**good_row(4), "Agent": "A" * 201},
        good_row(5),
    ]
    data = (HEADER + "\n" + "\n".join(csv_line(r) for r in rows) + "\n").encode()
    response = await upload(client, center, data, "csv", mapping=MAPPING)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["rejected_count"]) == (2, 3)
    assert [(p["record"], p["line"], p["field"]) for p in body["problems"]] == [
        (2, 3, "external_id"),
        (3, 4, "queue_key"),
        (4, 5, "agent_key"),
    ]
    assert all("200 characters" in p["reason"] for p in body["problems"])
    assert set(await contact_rows(db, center.seed.id)) == {"call-1", "call-5"}


async def test_a_stray_byte_refuses_one_row_and_the_file_lands(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    center = await make_center(client, settings, db)
    lines = [HEADER.encode()]
    for i in range(1, 301):
        line = csv_line(good_row(i)).encode()
        if i == 2:
            line = line.replace(b"IT", b"I\xfcT")  # Latin-1 in a UTF-8 file, in a key
        if i == 3:
            line += b"M\xfcller"  # in the notes, which nothing reads
        lines.append(line)
    response = await upload(client, center, b"\n".join(lines) + b"\n", "csv", mapping=MAPPING)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["received"], body["accepted"]) == (299, 299)
    (problem,) = body["problems"]
    assert (problem["record"], problem["line"], problem["field"]) == (2, 3, "queue_key ('Queue')")
    assert problem["excerpt"] == "I\\udcfcT"
    assert len(await contact_rows(db, center.seed.id)) == 299


async def test_an_unreadable_header_is_refused_with_a_readable_detail(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    center = await make_center(client, settings, db)
    unreadable = await upload(
        client, center, ('"' + "h" * 200_000 + '",Queue\n').encode(), "csv", mapping=MAPPING
    )
    assert unreadable.status_code == 422
    problem = unreadable.json()
    assert (problem["code"], problem["line"]) == ("upload_refused", 1)
    assert problem["detail"].startswith("unreadable CSV header")  # it began "None: "
