"""Adversarial input to the ingestion, shift-import and KPI routes. The house rule: bad
input gets a 4xx `application/problem+json` with a stable `code` naming the field or row;
nothing half-written, nothing valid lost, never a 500 from anything a client can send.

Each test is a regression test of a defect found by this review (a 500 or a silently
wrong write) or pins a refusal that matters (status, code, and what was written)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import text

from service.core.config import Settings
from service.core.db import Database
from tests.conftest import SHARED_DATA
from tests.factories import bearer
from tests.service.agents.factories import Floor, certify, make_agent, make_floor
from tests.service.ingest.conftest import Site, make_site
from tests.service.uploads.conftest import Center, make_center, upload

PROBLEM = "application/problem+json"
BATCH = "/api/v1/contacts:batch"
STATES = "/api/v1/agent-states:batch"
CONNECT = SHARED_DATA / "contact_records" / "amazon_connect"


def problem_of(response: Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM, response.headers
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


async def count(db: Database, table: str, tenant_id: uuid.UUID) -> int:
    async with db.admin_transaction() as admin:
        return int(
            (
                await admin.execute(
                    text(f"select count(*) from {table} where tenant_id = :t"), {"t": tenant_id}
                )
            ).scalar_one()
        )


def contact(site: Site, external_id: str, **kw: Any) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "queue_key": site.queue,
        "queued_at": "2026-05-04T08:00:00Z",
        "outcome": "answered",
        "answered_at": "2026-05-04T08:00:12Z",
        "talk_s": 60,
        **kw,
    }


async def post_batch(client: AsyncClient, site: Site, body: bytes, url: str = BATCH) -> Response:
    headers = {**bearer(site.seed.admin_token), "content-type": "application/json"}
    return await client.post(url, content=body, headers=headers)


def rejected(response: Response) -> list[tuple[int, str]]:
    assert response.status_code == 200, response.text
    return [(p["row"], p["field"]) for p in response.json()["rejected"]]


# ---- POST /contacts:batch -------------------------------------------------------------


@pytest.fixture
async def site(client: AsyncClient, settings: Settings, db: Database) -> Site:
    return await make_site(client, settings, db)


async def test_values_the_database_cannot_hold_are_named_per_row_and_the_rest_lands(
    client: AsyncClient, db: Database, site: Site
) -> None:
    """Each of these was a 500 that lost the whole batch: a NUL character (PostgreSQL text
    cannot hold U+0000), a source_version beyond bigint, a time at the end of the years
    Python can move to UTC. Now each row is named with its field; the valid one lands."""
    records = [
        contact(site, "ok"),
        contact(site, "nul\u0000id"),
        contact(site, "nul-agent", agent_key="Agent/\u00001"),
        contact(site, "nul-customer", customer_key="\u0000"),
        contact(site, "nul-source", source="s\u0000"),
        contact(site, "version-high", source_version=2**63),
        contact(site, "version-low", source_version=-(2**63) - 1),
        contact(
            site,
            "year-1",
            queued_at="0001-01-01T00:00:00+14:00",
            answered_at="0001-01-01T00:00:10+14:00",
        ),
        contact(
            site,
            "year-9999",
            queued_at="9999-12-31T23:59:00-14:00",
            answered_at="9999-12-31T23:59:10-14:00",
        ),
    ]
    response = await post_batch(client, site, json.dumps({"records": records}).encode())
    assert rejected(response) == [
        (2, "external_id"),
        (3, "agent_key"),
        (4, "customer_key"),
        (5, "source"),
        (6, "source_version"),
        (7, "source_version"),
        (8, "queued_at"),
        (9, "queued_at"),
    ]
    assert response.json()["accepted"] == 1
    assert await count(db, "contacts", site.seed.id) == 1


async def test_times_outside_the_supported_years_and_out_of_order_are_refused(
    client: AsyncClient, db: Database, site: Site
) -> None:
    """A contact of year 1 or 9999 in UTC used to land in the default partition, where
    no KPI query can reach it (those windows are refused); an answer before the queue
    was only caught when the wait was derived from the times, not when `wait_s` was given."""
    records = [
        contact(site, "y1", queued_at="0001-01-01T00:00:00Z", answered_at="0001-01-01T00:00:10Z"),
        contact(site, "y9", queued_at="9999-12-31T23:00:00Z", answered_at="9999-12-31T23:00:10Z"),
        contact(site, "early", answered_at="2026-05-04T07:00:00Z", wait_s=3),
        contact(site, "early-end", ended_at="2026-05-04T07:59:59Z", wait_s=3),
        contact(site, "fine", queued_at="2200-01-01T00:00:00Z", answered_at="2200-01-01T00:00:09Z"),
    ]
    response = await post_batch(client, site, json.dumps({"records": records}).encode())
    assert rejected(response) == [
        (1, "queued_at"),
        (2, "queued_at"),
        (3, "answered_at"),
        (4, "ended_at"),
    ]
    assert await count(db, "contacts", site.seed.id) == 1


async def test_a_body_that_is_no_utf8_json_is_422_and_says_why(
    client: AsyncClient, db: Database, site: Site
) -> None:
    """Invalid UTF-8 was a 500 (msgspec's UnicodeDecodeError); the refusal of a body now
    carries the JSON error, not only the expected shape."""
    bad = await post_batch(client, site, b'{"records":[{"external_id":"\xff"}]}')
    assert "UTF-8" in problem_of(bad, 422, "batch_invalid")["detail"] or "unicode" in bad.text
    for body in (b"", b"[]", b'{"records": null}', b'{"records":[{"external_id":"\\ud800"}]}'):
        problem_of(await post_batch(client, site, body), 422, "batch_invalid")
    deep = b'{"records":' + b"[" * 5000 + b"]" * 5000 + b"}"
    problem_of(await post_batch(client, site, deep), 422, "batch_invalid")
    assert await count(db, "contacts", site.seed.id) == 0


async def test_a_repeated_list_key_is_refused_not_half_read(
    client: AsyncClient, db: Database, site: Site
) -> None:
    """`{"records": [a], "records": []}` answered 200 with nothing received: both JSON
    readers keep the last member, so the first list was dropped without a word."""
    one = json.dumps([contact(site, "first")]).encode()
    body = b'{"records":' + one + b',"records":[]}'
    problem_of(await post_batch(client, site, body), 422, "batch_invalid")
    events = b'{"events":[],"events":[]}'
    problem_of(await post_batch(client, site, events, STATES), 422, "batch_invalid")
    # A record may itself say "records": no false alarm.
    fine = json.dumps({"records": [contact(site, "records"), contact(site, "records-2")]})
    assert (await post_batch(client, site, fine.encode())).json()["accepted"] == 2
    assert await count(db, "contacts", site.seed.id) == 2


async def test_batch_limits_and_scales(client: AsyncClient, db: Database, site: Site) -> None:
    """10 001 records is 413 with the limit; numbers off the scales, NaN and Infinity and
    overlong strings are named per row."""
    many = {"records": [contact(site, f"n{i}") for i in range(10_001)]}
    body = problem_of(
        await post_batch(client, site, json.dumps(many).encode()), 413, "batch_too_large"
    )
    assert body["limit"] == 10_000
    records = [
        contact(site, "csat", csat=6),
        contact(site, "nps", nps=-1),
        contact(site, "sentiment", sentiment=2),
        contact(site, "holds", hold_count=2**40),
        contact(site, "wait", wait_s=1e300),
        contact(site, "x" * 300_000),
    ]
    raw = json.dumps({"records": records}).encode()
    raw = raw.replace(b'"talk_s": 60', b'"talk_s": NaN', 1)
    response = await post_batch(client, site, raw)
    assert rejected(response) == [
        (1, "talk_s"),
        (1, "csat"),
        (2, "nps"),
        (3, "sentiment"),
        (4, "hold_count"),
        (5, "wait_s"),
        (6, "external_id"),
    ]
    assert await count(db, "contacts", site.seed.id) == 0


async def test_idempotency_key_edge_cases(client: AsyncClient, db: Database, site: Site) -> None:
    body = json.dumps({"records": [contact(site, "idem")]}).encode()
    headers = {**bearer(site.seed.admin_token), "content-type": "application/json"}
    for key in ("k" * 256, " \t", "a\x7fb"):
        response = await client.post(
            BATCH, content=body, headers={**headers, "Idempotency-Key": key}
        )
        problem_of(response, 400, "invalid_idempotency_key")
    first = await client.post(
        BATCH, content=body, headers={**headers, "Idempotency-Key": "k" * 255}
    )
    assert first.status_code == 200, first.text
    other = json.dumps({"records": [contact(site, "other")]}).encode()
    reused = await client.post(
        BATCH, content=other, headers={**headers, "Idempotency-Key": "k" * 255}
    )
    problem_of(reused, 422, "idempotency_key_reused")
    assert await count(db, "contacts", site.seed.id) == 1


# ---- POST /agent-states:batch --------------------------------------------------------


async def test_agent_state_times_at_the_end_of_the_calendar_are_named_not_500(
    client: AsyncClient, db: Database, site: Site
) -> None:
    """A time that leaves years 1-9999 when moved to UTC raised OverflowError while the
    events were built (a 500); now the row is named and the others land."""
    events = [
        {"agent_key": site.agent_key, "state": "available", "at": "2026-05-04T08:00:00Z"},
        {"agent_key": site.agent_key, "state": "acw", "at": "0001-01-01T00:00:00+01:00"},
        {"agent_key": site.agent_key, "state": "acw", "at": "9999-12-31T23:59:59-05:00"},
        {"agent_key": "A\u0000", "state": "acw", "at": "2026-05-04T08:01:00Z"},
    ]
    response = await post_batch(client, site, json.dumps({"events": events}).encode(), STATES)
    assert rejected(response) == [(2, "at"), (3, "at"), (4, "agent_key")]
    assert response.json()["accepted"] == 1
    bad = await post_batch(client, site, b'{"events":[{"agent_key":"\xff"}]}', STATES)
    problem_of(bad, 422, "batch_invalid")


# ---- POST /contacts/uploads ----------------------------------------------------------

CSV_MAPPING: dict[str, Any] = {
    "columns": {
        "external_id": "id",
        "queue_key": "q",
        "queued_at": "t",
        "outcome": "o",
        "wait_s": "w",
        "source_version": "v",
    },
    "channel": "voice",
}
CSV_HEADER = "id,q,t,o,w,v\r\n"


@pytest.fixture
async def center(client: AsyncClient, settings: Settings, db: Database) -> Center:
    return await make_center(client, settings, db)


def problems(response: Response) -> list[tuple[int | None, str | None]]:
    assert response.status_code == 200, response.text
    return [(p["record"], p["field"]) for p in response.json()["problems"]]


async def test_csv_values_out_of_range_are_named_and_the_rest_lands(
    client: AsyncClient, db: Database, center: Center
) -> None:
    """A source_version beyond bigint and a time at the calendar's ends were 500s (an
    OverflowError in the COPY and in the UTC conversion); a 19-digit version was read
    through a float and lost its last digits."""
    rows = [
        "ok,IT,2026-03-02T08:00:00Z,abandoned,5,1700000000000123457",
        "big,IT,2026-03-02T08:01:00Z,abandoned,5,99999999999999999999999",
        "y1,IT,0001-01-01T00:00:00+05:00,abandoned,5,1",
        "y9,IT,9999-12-31T23:00:00-05:00,abandoned,5,1",
        "nul\x00,IT,2026-03-02T08:02:00Z,abandoned,5,1",
        "=cmd|' /C calc'!A0,IT,2026-03-02T08:03:00Z,abandoned,5,1",
    ]
    body = (CSV_HEADER + "\r\n".join(rows) + "\r\n").encode()
    response = await upload(client, center, body, "csv", mapping=CSV_MAPPING)
    assert problems(response) == [
        (2, "source_version ('v')"),
        (3, "queued_at ('t')"),
        (4, "queued_at ('t')"),
        (5, "external_id ('id')"),
    ]
    assert response.json()["accepted"] == 2  # a formula-looking id is data, kept as text
    async with db.admin_transaction() as admin:
        version = (
            await admin.execute(
                text(
                    "select source_version from contacts where tenant_id = :t and external_id = 'ok'"
                ),
                {"t": center.seed.id},
            )
        ).scalar_one()
    assert version == 1700000000000123457


async def test_csv_encodings_that_are_not_text_are_refused(
    client: AsyncClient, center: Center
) -> None:
    """`rot13` (a str-to-str codec) and UTF-16 without its BOM were 500s."""
    body = (CSV_HEADER + "a,IT,2026-03-02T08:00:00Z,abandoned,5,1\r\n").encode()
    refused = await upload(
        client, center, body, "csv", mapping={**CSV_MAPPING, "encoding": "rot13"}
    )
    assert problem_of(refused, 422, "upload_option_invalid")["field"] == "mapping.encoding"
    utf16 = await upload(client, center, body, "csv", mapping={**CSV_MAPPING, "encoding": "utf-16"})
    assert utf16.status_code == 200, utf16.text
    assert utf16.json()["accepted"] == 0
    assert "not utf-16 text" in utf16.json()["problems"][0]["reason"]


async def test_csv_file_shapes(client: AsyncClient, center: Center) -> None:
    """A missing mapped column or the wrong delimiter refuses the file (nothing read);
    a 0-byte file imports nothing; a truncated last line is named; a binary file is
    refused (its first line is no header with the mapped columns: undecodable bytes make
    a row invalid, they no longer stop the file)."""
    good = "a,IT,2026-03-02T08:00:00Z,abandoned,5,1\r\n"
    missing = await upload(client, center, b"id,q,t,o,w\r\n", "csv", mapping=CSV_MAPPING)
    assert problem_of(missing, 422, "upload_refused")["field"] == "source_version"
    semicolons = (CSV_HEADER + good).replace(",", ";").encode()
    problem_of(
        await upload(client, center, semicolons, "csv", mapping=CSV_MAPPING), 422, "upload_refused"
    )
    empty = await upload(client, center, b"", "csv", mapping=CSV_MAPPING)
    assert (empty.status_code, empty.json()["received"]) == (200, 0)
    truncated = await upload(
        client, center, (CSV_HEADER + good + "b,IT,2026-03-0").encode(), "csv", mapping=CSV_MAPPING
    )
    assert (problems(truncated), truncated.json()["accepted"]) == ([(2, None)], 1)
    binary = await upload(client, center, bytes(range(256)) * 40, "csv", mapping=CSV_MAPPING)
    problem_of(binary, 422, "upload_refused")
    unknown = await upload(
        client,
        center,
        (CSV_HEADER + good).encode(),
        "csv",
        mapping={**CSV_MAPPING, "columns": {**CSV_MAPPING["columns"], "bogus": "x"}},
    )
    assert problem_of(unknown, 422, "upload_option_invalid")["field"] == "mapping.columns"


def ctr(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((CONNECT / "ctr_case1_inbound_transfer.json").read_text())
    for path, value in changes.items():
        node = record
        *parents, leaf = path.split("__")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return record


async def test_connect_files_the_parser_could_not_read_are_refused_whole(
    client: AsyncClient, db: Database, center: Center
) -> None:
    """Each of these was a 500: a file that is not UTF-8 (binary, a stray byte), JSON
    nested deeper than Python's stack, and a lone surrogate escape (it reached the JSON
    answer, which cannot encode it)."""
    for body in (bytes(range(256)) * 40, b'{"ContactId":"\xff"}', b"[" * 100_000 + b"]" * 100_000):
        refused = problem_of(
            await upload(client, center, body, "amazon_connect"), 422, "upload_refused"
        )
        assert None not in (refused["line"], refused["column"]), refused
    surrogate = await upload(client, center, b'{"ContactId":"\\ud800"}', "amazon_connect")
    assert surrogate.status_code == 200, surrogate.text
    assert surrogate.json()["problems"][0]["field"] == "ContactId"
    for name in sorted(p.name for p in CONNECT.glob("*.INVALID_JSON.txt")):
        invalid = await upload(client, center, (CONNECT / name).read_bytes(), "amazon_connect")
        problem_of(invalid, 422, "upload_refused")
    assert await count(db, "contacts", center.seed.id) == 0


async def test_connect_values_out_of_range_are_named(
    client: AsyncClient, db: Database, center: Center
) -> None:
    """A Queue.Duration of 1e308 overflowed the bigint milliseconds (500); NaN (which
    Python's json reads), a hold count past int and times at the calendar's ends too."""
    cases = {
        "Queue.Duration": ctr(Queue__Duration=1e308),
        "Agent.NumberOfHolds": ctr(Agent__NumberOfHolds=2**40),
        "Queue.EnqueueTimestamp": ctr(Queue__EnqueueTimestamp="0001-01-01T00:00:00+05:00"),
        "LastUpdateTimestamp": ctr(LastUpdateTimestamp="9999-12-31T23:00:00-05:00"),
    }
    body = "\n".join(json.dumps(c) for c in cases.values()).replace("1e+308", "1e308")
    response = await upload(client, center, body.encode(), "amazon_connect")
    assert sorted(f for _, f in problems(response)) == sorted(cases)
    nan = json.dumps(ctr(Queue__Duration=0)).replace('"Duration": 0', '"Duration": NaN')
    assert problems(await upload(client, center, nan.encode(), "amazon_connect")) == [
        (1, "Queue.Duration")
    ]
    assert await count(db, "contacts", center.seed.id) == 0


async def test_queue_log_garbage_is_counted_never_500(client: AsyncClient, center: Center) -> None:
    lines = [
        b"abc|c1|IT|NONE|ENTERQUEUE||123|1",  # non-numeric epoch
        b"99999999999999999999|c2|IT|NONE|ENTERQUEUE||123|1",  # epoch out of range
        b"1543500000|c3|IT|NONE|FROBNICATE|x",  # unknown event
        b"1543500000|c\x004|IT|NONE|ENTERQUEUE||123|1",  # NUL
        b"1543500000|c5|IT|Agent/1127|CONN",  # truncated
    ]
    response = await upload(client, center, b"\n".join(lines), "queue_log", source="attack")
    assert response.status_code == 200, response.text
    assert [p["line"] for p in response.json()["problems"]] == [1, 2, 3, 4, 5]
    binary = await upload(client, center, bytes(range(256)) * 40, "queue_log", source="binary")
    assert (binary.status_code, binary.json()["received"]) == (200, 0)
    problem_of(await upload(client, center, b"x", "queue_log"), 422, "upload_option_invalid")


# ---- shifts ---------------------------------------------------------------------------


@pytest.fixture
async def floor(client: AsyncClient, settings: Settings, db: Database) -> Floor:
    return await make_floor(client, settings, db)


async def test_shift_texts_with_nul_and_times_at_the_calendar_ends_are_422(
    client: AsyncClient, db: Database, floor: Floor
) -> None:
    """NUL in a note or external id was a 500 from the database on create and update; a
    start near 0001 or 9999 overflowed computing its local date (500), and listing with
    such a window overflowed `start - MAX_SHIFT` (500)."""
    agent = await make_agent(client, floor.token)
    await certify(client, floor.token, agent["id"], floor.project_a.id)

    def shift(start: str, end: str, **kw: Any) -> dict[str, Any]:
        return {
            "agent_id": agent["id"],
            "project_id": str(floor.project_a.id),
            "start": start,
            "end": end,
            **kw,
        }

    cases = [
        (shift("2026-04-06T08:00:00Z", "2026-04-06T09:00:00Z", note="a\u0000b"), "note"),
        (
            shift("2026-04-06T08:00:00Z", "2026-04-06T09:00:00Z", external_id="\u0000"),
            "external_id",
        ),
        (shift("0001-01-01T00:00:00+05:00", "0001-01-01T04:00:00+05:00"), "start"),
        (shift("9999-12-31T18:00:00Z", "9999-12-31T23:00:00Z"), "start"),
    ]
    for body, field in cases:
        response = await client.post("/api/v1/shifts", json=body, headers=floor.headers)
        assert problem_of(response, 422, "validation_failed")["errors"][0]["field"] == field
    created = await client.post(
        "/api/v1/shifts",
        json=shift("2026-04-07T08:00:00Z", "2026-04-07T09:00:00Z"),
        headers=floor.headers,
    )
    assert created.status_code == 201, created.text
    url = f"/api/v1/shifts/{created.json()['id']}"
    patch = await client.patch(
        url, json={"note": "\u0000"}, headers={**floor.headers, "If-Match": "*"}
    )
    problem_of(patch, 422, "validation_failed")
    garbage = await client.patch(
        url, json={"note": "x"}, headers={**floor.headers, "If-Match": "garbage"}
    )
    problem_of(garbage, 412, "precondition_failed")
    listing = await client.get(
        "/api/v1/shifts",
        params={"from": "0001-01-01T00:00:00+05:00", "to": "9999-12-31T23:00:00-05:00"},
        headers=floor.headers,
    )
    problem_of(listing, 422, "validation_failed")
    assert await count(db, "shifts", floor.seed.id) == 1


async def test_schedule_views_of_days_at_the_calendar_ends_are_422(
    client: AsyncClient, floor: Floor
) -> None:
    """`?from=0001-01-01` or `9999-12-31` overflowed building the local window (500)."""
    agent = await make_agent(client, floor.token)
    for path in (
        f"/api/v1/projects/{floor.project_a.id}/schedule",
        f"/api/v1/projects/{floor.project_a.id}/schedule.csv",
        f"/api/v1/agents/{agent['id']}/schedule",
        f"/api/v1/agents/{agent['id']}/schedule.csv",
    ):
        for day in ("0001-01-01", "9999-12-31"):
            response = await client.get(path, params={"from": day}, headers=floor.headers)
            body = problem_of(response, 422, "validation_failed")
            assert body["errors"][0]["field"] == "from", body


async def test_shift_imports_name_nul_and_out_of_range_rows_and_write_nothing(
    client: AsyncClient, db: Database, floor: Floor
) -> None:
    """A NUL in a CSV cell was a 500 from the database; now it is a named row problem,
    as in JSON, and all_or_nothing writes nothing."""
    agent = await make_agent(client, floor.token)
    await certify(client, floor.token, agent["id"], floor.project_a.id)
    project = str(floor.project_a.id)
    csv_body = (
        "agent,project,start,end,activity,note\n"
        f"{agent['id']},{project},2026-04-08T08:00:00Z,2026-04-08T09:00:00Z,on_queue,fine\n"
        f"{agent['id']},{project},2026-04-08T10:00:00Z,2026-04-08T11:00:00Z,on_queue,a\x00b\n"
        f"{agent['id']},{project},0001-01-01T00:00:00+05:00,0001-01-01T02:00:00+05:00,on_queue,\n"
    )
    response = await client.post(
        "/api/v1/shifts/uploads",
        content=csv_body.encode(),
        headers={**floor.headers, "content-type": "text/csv"},
    )
    body = problem_of(response, 422, "import_rejected")
    assert [(e["row"], e["field"]) for e in body["errors"]] == [
        (2, "note"),
        (3, "start"),
        (3, "end"),
    ]
    rows = [
        {
            "agent": agent["id"],
            "project": project,
            "start": s,
            "end": e,
            "activity": "on_queue",
            **kw,
        }
        for s, e, kw in [
            ("2026-04-08T08:00:00Z", "2026-04-08T09:00:00Z", {"external_id": "e\u0000"}),
            ("9999-12-31T20:00:00-05:00", "9999-12-31T22:00:00-05:00", {}),
        ]
    ]
    json_import = await client.post(
        "/api/v1/shifts:batch", json={"rows": rows}, headers=floor.headers
    )
    body = problem_of(json_import, 422, "import_rejected")
    assert [(e["row"], e["field"]) for e in body["errors"]] == [
        (1, "external_id"),
        (2, "start"),
        (2, "end"),
    ]
    too_many = await client.post(
        "/api/v1/shifts:batch", json={"rows": [rows[0]] * 50_001}, headers=floor.headers
    )
    problem_of(too_many, 422, "validation_failed")
    assert await count(db, "shifts", floor.seed.id) == 0


# ---- KPI and operations windows -------------------------------------------------------


async def test_query_windows_at_the_calendar_ends_are_422_not_500(
    client: AsyncClient, floor: Floor
) -> None:
    """Every KPI and operations route overflowed (500) on a bound near 0001 or 9999 (a
    local date moved to UTC, or a bucket start a week or quarter before)."""
    agent = await make_agent(client, floor.token)
    kpi_routes = [
        f"/api/v1/projects/{floor.project_a.id}/kpis",
        f"/api/v1/clients/{floor.client_a}/kpis",
        "/api/v1/tenant/kpis",
    ]
    ops_routes = [
        f"/api/v1/agents/{agent['id']}/kpis",
        f"/api/v1/projects/{floor.project_a.id}/agent-kpis",
        "/api/v1/double-bookings",
        "/api/v1/data-quality",
    ]
    windows = [
        {"from": "0001-01-01", "to": "9999-12-31", "granularity": "year"},
        {"from": "0001-01-01T00:00:00+05:00", "to": "0001-01-02T00:00:00+05:00"},
        {"from": "2026-01-01", "to": "9999-12-31T20:00:00-05:00"},
    ]
    for routes, code in (
        (kpi_routes, "kpi_query_invalid"),
        (ops_routes, "operations_query_invalid"),
    ):
        for path in routes:
            for params in windows:
                response = await client.get(path, params=params, headers=floor.headers)
                body = problem_of(response, 422, code)
                assert body["field"] in ("from", "to"), body


async def test_kpi_query_refusals(client: AsyncClient, floor: Floor) -> None:
    path = f"/api/v1/projects/{floor.project_a.id}/kpis"
    day = {"from": "2026-04-01", "to": "2026-04-02"}
    cases = [
        ({"from": "2026-05-01", "to": "2026-04-01"}, "kpi_query_invalid", "to"),
        ({"from": "1950-01-01", "to": "2050-01-01"}, "kpi_query_invalid", "granularity"),
        ({**day, "t": "-1"}, "kpi_query_invalid", "t"),
        ({**day, "t": "9" * 30}, "kpi_query_invalid", "t"),
        ({**day, "sl": "SL9"}, "kpi_query_invalid", "sl"),
        ({**day, "kpis": "nope"}, "kpi_query_invalid", "kpis"),
        (
            {"from": "2026-04-01T00:00:00", "to": "2026-04-02T00:00:00Z"},
            "kpi_query_invalid",
            "from",
        ),
    ]
    for params, code, field in cases:
        body = problem_of(await client.get(path, params=params, headers=floor.headers), 422, code)
        assert body["field"] == field, body
    for params, field in [
        ({**day, "t": "1e308"}, "t"),
        ({**day, "short_abandon_s": "999999999999"}, "short_abandon_s"),
        ({**day, "granularity": "fortnight"}, "granularity"),
        ({**day, "channel": "fax"}, "channel"),
        ({**day, "group_by": "queue"}, "group_by"),
    ]:
        body = problem_of(
            await client.get(path, params=params, headers=floor.headers), 422, "validation_failed"
        )
        assert body["errors"][0]["field"] == field, body
    bad_id = await client.get("/api/v1/projects/not-a-uuid/kpis", params=day, headers=floor.headers)
    problem_of(bad_id, 422, "validation_failed")
