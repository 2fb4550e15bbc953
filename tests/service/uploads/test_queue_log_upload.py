"""Asterisk queue_log files through `POST /contacts/uploads`: the real samples, every line
accounted for; flat file and table exports alike; re-imports, split files and rotated logs
change nothing beyond the whole file.

Expectations come from reading the files (line numbers are the files' own): event names are
the fifth `|` field, counted here straight from the text; calls were followed by hand.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from httpx import AsyncClient

from service.core.config import Settings
from service.core.db import Database
from tests.service.uploads.conftest import (
    QUEUE_LOG,
    contact_rows,
    make_center,
    scalar,
    upload,
)

VOIP = QUEUE_LOG / "voipreports1.queue_log"
MALARIA = QUEUE_LOG / "malariapbx.queue_log"


def at(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def event_lines(data: bytes) -> Counter[str]:
    """Event name (fifth field) per line, read straight off the file."""
    return Counter(line.split("|")[4] for line in data.decode().splitlines() if line.strip())


def accounted(stats: dict[str, Any]) -> Counter[str]:
    return Counter(stats["used"]) + Counter(stats["ignored"]) + Counter(stats["unknown"])


async def ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_voipreports1_flat_file_lands_every_call_and_accounts_for_every_line(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    center = await make_center(client, settings, db)
    data = VOIP.read_bytes()
    body = await ok(
        await upload(client, center, data, "queue_log", source="pbx", filename="voip.log")
    )
    stats = body["stats"]
    # 1000 lines, each an event: used + ignored on purpose + unknown by name = the file.
    assert stats["items"] == 1000
    assert accounted(stats) == event_lines(data)
    assert (stats["malformed"], stats["blank"], stats["skipped_overlap"]) == (0, 0, 0)
    # Ring events are ignored on purpose; the dialplan's outbound events are unknown.
    assert set(stats["ignored"]) == {"RINGNOANSWER", "CONFIGRELOAD", "QUEUESTART"}
    assert set(stats["unknown"]) == {
        "OUTDIAL",
        "OUTANSWER",
        "OUTCANCEL",
        "OUTCHANUNAVAIL",
        "OUTCONGESTION",
        "OUTTRANSFER",
    }
    # Each unknown event is reported once, at its first line.
    lines = data.decode().splitlines()
    first = {}
    for number, line in enumerate(lines, 1):
        first.setdefault(line.split("|")[4], number)
    unknown = [p for p in body["problems"] if p["field"] == "event"]
    assert sorted(p["line"] for p in unknown) == sorted(first[e] for e in stats["unknown"])
    assert all(p["stage"] == "parse" for p in unknown)

    # 108 ENTERQUEUE, all in queue IT: one contact each. Still open at line 1000: calls
    # 2194 and 2226 talking (CONNECT at 968 and 970, no end), 2389 and 2438 waiting.
    assert body["open_calls"] == 4
    assert (body["received"], body["accepted"], body["rejected_count"]) == (108, 108, 0)
    rows = await contact_rows(db, center.seed.id)
    assert len(rows) == 108
    assert Counter(r["outcome"] for r in rows.values()) == Counter(
        {"answered": 93, "abandoned": 12, "timeout": 1, "in_queue": 2}
    )  # 93 = the CONNECT lines
    assert {r["queue_key"] for r in rows.values()} == {"IT"}
    # Lines 13, 19, 20 by hand: queued 1543602677, CONNECT holdtime 76, COMPLETECALLER 847 s.
    call = rows["1543602660.197@IT"]
    assert (call["queued_at"], call["answered_at"], call["ended_at"]) == (
        at(1543602677),
        at(1543602753),
        at(1543603600),
    )
    assert (call["wait_ms"], call["talk_ms"], call["agent_key"], call["customer_key"]) == (
        76_000,
        847_000,
        "Agent/1127",
        "15558792758",
    )
    waiting = rows["1543942788.2389@IT"]  # line 992, then only rings
    assert (waiting["outcome"], waiting["queued_at"]) == ("in_queue", at(1543942799))
    # The live figures see the two waiting calls "in queue".
    in_queue = await scalar(
        db,
        "select coalesce(sum(n_in_queue), 0) from kpi_daily_sums where tenant_id = :t",
        t=center.seed.id,
    )
    assert in_queue == 2

    # Contacts of agents other than 1127 keep their key, reported as unmapped.
    agents_on_calls = {line.split("|")[3] for line in lines if line.split("|")[4] == "CONNECT"} - {
        "Agent/1127"
    }
    assert set(body["unmapped_agents"]) == agents_on_calls
    assert body["unmapped_queues"] == {}

    # Agent states: Agent/1127 has 18 CONNECT, 17 COMPLETE* (its 18th call is still talking
    # at line 968), 3 logins, 2 logoffs; Local/1127@callback-agent 5 ADDMEMBER, 2 REMOVEMEMBER:
    # 47 events of the one pool agent both keys map to.
    assert (
        await scalar(
            db,
            "select count(*) from agent_state_events where tenant_id = :t and agent_id = :a",
            t=center.seed.id,
            a=center.agent_1127,
        )
        == 18 + 17 + 3 + 2 + 5 + 2
    )
    agents = body["agent_states"]
    assert agents["accepted"] == 47
    assert agents["received"] == agents["accepted"] + agents["duplicates"] + agents["unmapped"]
    assert "Agent/1141" in agents["unmapped_agents"]
    assert "Agent/1127" not in agents["unmapped_agents"]


async def test_malariapbx_by_hand(client: AsyncClient, settings: Settings, db: Database) -> None:
    center = await make_center(client, settings, db)
    data = MALARIA.read_bytes()
    body = await ok(await upload(client, center, data, "queue_log", source="malaria"))
    assert body["stats"]["items"] == 85
    assert accounted(body["stats"]) == event_lines(data)
    assert body["problems"] == []
    # 8 ENTERQUEUE (7 Support, 1 sales): 2 answered by PJSIP/400, 5 ABANDON, 1 EXITWITHTIMEOUT.
    rows = await contact_rows(db, center.seed.id)
    assert Counter((r["queue_key"], r["outcome"]) for r in rows.values()) == Counter(
        {
            ("Support", "answered"): 2,
            ("Support", "abandoned"): 4,
            ("Support", "timeout"): 1,
            ("sales", "abandoned"): 1,
        }
    )
    assert body["open_calls"] == 0
    # Lines 23-25: ABANDON 1|1|11 — Asterisk's own waittime (11 s), not the timestamps' 12.
    assert rows["1675909448.3@Support"]["wait_ms"] == 11_000
    # PJSIP/400: on_contact at each CONNECT, available at each end (lines 11, 12, 20, 21).
    assert (
        await scalar(
            db,
            "select count(*) from agent_state_events where tenant_id = :t and agent_id = :a",
            t=center.seed.id,
            a=center.agent_400,
        )
        == 4
    )


async def test_no_calls_and_documented_samples(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    center = await make_center(client, settings, db)
    data = (QUEUE_LOG / "no_calls.queue_log").read_bytes()
    body = await ok(await upload(client, center, data, "queue_log", source="quiet"))
    assert body["stats"]["items"] == 12
    assert (
        accounted(body["stats"])
        == event_lines(data)
        == Counter({"QUEUESTART": 8, "CONFIGRELOAD": 4})
    )
    assert (body["received"], body["problems"]) == (0, [])


async def test_the_table_exports_give_the_same_contacts_as_the_flat_files(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    flat = await make_center(client, settings, db)
    exported = await make_center(client, settings, db)
    await ok(await upload(client, flat, VOIP.read_bytes(), "queue_log", source="pbx"))
    await ok(await upload(client, flat, MALARIA.read_bytes(), "queue_log", source="malaria"))
    extended = await ok(
        await upload(
            client,
            exported,
            (QUEUE_LOG / "voipreports1_extended_table.csv").read_bytes(),
            "queue_log_extended_csv",
            source="pbx",
        )
    )
    assert extended["stats"]["items"] == 1000  # data rows of the export
    assert extended["open_calls"] == 4
    mysql = await ok(
        await upload(
            client,
            exported,
            (QUEUE_LOG / "malariapbx_realtime_table.sql").read_bytes(),
            "queue_log_mysql",
            source="malaria",
            time_zone="UTC",
        )
    )
    assert mysql["stats"]["items"] == 85
    flat_rows = await contact_rows(db, flat.seed.id)
    assert len(flat_rows) == 108 + 8
    assert await contact_rows(db, exported.seed.id) == flat_rows
    # Problems of table rows name the record (the export's uid), not a line.
    assert {p["record"] is not None for p in extended["problems"]} == {True}

    # The same PBX's export under another source name in the same tenant: all duplicates.
    again = await ok(
        await upload(
            client,
            flat,
            (QUEUE_LOG / "voipreports1_extended_table.csv").read_bytes(),
            "queue_log_extended_csv",
            source="pbx-export",
        )
    )
    assert (again["received"], again["duplicates"], again["accepted"], again["updated"]) == (
        108,
        108,
        0,
        0,
    )
    assert await contact_rows(db, flat.seed.id) == flat_rows


async def test_importing_the_same_file_twice_changes_nothing(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    center = await make_center(client, settings, db)
    data = VOIP.read_bytes()
    first = await ok(await upload(client, center, data, "queue_log", source="pbx"))
    rows = await contact_rows(db, center.seed.id)
    events = await scalar(
        db, "select count(*) from agent_state_events where tenant_id = :t", t=center.seed.id
    )
    second = await ok(await upload(client, center, data, "queue_log", source="pbx"))
    # Every line was imported before: skipped; the calls still open are re-sent, unchanged.
    assert second["stats"]["skipped_overlap"] == 1000
    assert (second["received"], second["duplicates"], second["accepted"]) == (4, 4, 0)
    assert second["agent_states"]["received"] == 0
    assert await contact_rows(db, center.seed.id) == rows
    assert (
        await scalar(
            db, "select count(*) from agent_state_events where tenant_id = :t", t=center.seed.id
        )
        == events
    )
    assert first["accepted"] == 108


def _lines(data: bytes, first: int, last: int) -> bytes:
    return b"".join(data.splitlines(keepends=True)[first - 1 : last])


@pytest.mark.parametrize(
    ("chunks", "label"),
    [
        (((1, 15), (16, 1000)), "split while call 197 waits (ENTERQUEUE at 13, CONNECT at 19)"),
        (((1, 19), (20, 1000)), "split while call 197 talks (CONNECT at 19, COMPLETE at 20)"),
        (((1, 600), (500, 1000)), "a rotated log repeating lines 500-600"),
    ],
)
async def test_a_file_in_pieces_gives_the_same_contacts_as_the_whole(
    client: AsyncClient,
    settings: Settings,
    db: Database,
    chunks: tuple[tuple[int, int], ...],
    label: str,
) -> None:
    data = VOIP.read_bytes()
    whole = await make_center(client, settings, db)
    await ok(await upload(client, whole, data, "queue_log", source="pbx"))
    pieces = await make_center(client, settings, db)
    (a, b), (c, d) = chunks
    await ok(await upload(client, pieces, _lines(data, a, b), "queue_log", source="pbx"))
    held = (await contact_rows(db, pieces.seed.id)).get("1543602660.197@IT")
    if b in (15, 19):
        # The call open at the cut is in the figures already, provisionally.
        assert held is not None
        assert held["outcome"] == ("in_queue" if b == 15 else "answered")
        assert held["ended_at"] is None
    second = await ok(await upload(client, pieces, _lines(data, c, d), "queue_log", source="pbx"))
    if b in (15, 19):
        assert second["updated"] >= 1  # the held call's end replaced its provisional record
    else:
        assert second["stats"]["skipped_overlap"] == 101
    assert await contact_rows(db, pieces.seed.id) == await contact_rows(db, whole.seed.id), label
    event_sql = "select count(*) from agent_state_events where tenant_id = :t and agent_id = :a"
    assert await scalar(db, event_sql, t=pieces.seed.id, a=pieces.agent_1127) == await scalar(
        db, event_sql, t=whole.seed.id, a=whole.agent_1127
    )


async def test_queue_log_options_are_checked_before_the_body_is_read(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    center = await make_center(client, settings, db)
    no_source = await upload(client, center, b"", "queue_log")
    assert no_source.status_code == 422
    assert (no_source.json()["code"], no_source.json()["field"]) == (
        "upload_option_invalid",
        "source",
    )
    no_zone = await upload(client, center, b"", "queue_log_mysql", source="x")
    assert no_zone.json()["field"] == "time_zone"
    bad_zone = await upload(
        client, center, b"", "queue_log_mysql", source="x", time_zone="Mars/Base"
    )
    assert (bad_zone.status_code, bad_zone.json()["field"]) == (422, "time_zone")
    bad_format = await upload(client, center, b"", "excel", source="x")
    assert bad_format.status_code == 422
    assert bad_format.json()["errors"][0]["field"] == "format"


async def test_garbage_lines_are_named_and_the_rest_lands(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    center = await make_center(client, settings, db)
    data = (
        b"1675555753|1675555752.0|Support|NONE|ENTERQUEUE||200|1\n"
        b"not a queue_log line\n"
        b"\n"
        b"99999999999|x|Support|NONE|ENTERQUEUE||200|1\n"
        b"1675555761|1675555752.0|Support|PJSIP/400|CONNECT|8|1675555753.1|7\n"
        b"\xff\xfe|1|2|3\n"
        b"1675555766|1675555752.0|Support|PJSIP/400|COMPLETEAGENT|8|5|1\n"
    )
    body = await ok(await upload(client, center, data, "queue_log", source="messy"))
    assert [(p["line"], p["field"]) for p in body["problems"]] == [
        (2, None),
        (4, "time"),
        (6, None),
    ]
    assert body["stats"]["malformed"] == 3
    assert body["stats"]["blank"] == 1
    assert body["accepted"] == 1
    rows = await contact_rows(db, center.seed.id)
    assert rows["1675555752.0@Support"]["outcome"] == "answered"


async def test_wazo_documented_rows_as_psql_tables(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """The Wazo documentation prints queue_log rows as psql tables in local time; the call
    ids' epoch prefixes (1341401601.24 = 11:33:21 UTC, entered at 07:33:21) say UTC-4,
    America/Montreal in summer."""
    center = await make_center(client, settings, db)
    data = (QUEUE_LOG / "wazo_doc_samples.rst").read_bytes()
    rows_in_file = [
        [cell.strip() for cell in line.split("|")]
        for line in data.decode().splitlines()
        if line.strip()[:4] == "2012" and "|" in line
    ]
    body = await ok(
        await upload(
            client,
            center,
            data,
            "queue_log_psql",
            source="wazo",
            time_zone="America/Montreal",
        )
    )
    assert body["stats"]["items"] == len(rows_in_file) == 12
    assert accounted(body["stats"]) == Counter(row[4] for row in rows_in_file)
    # JOINEMPTY, FULL, CLOSED, an ABANDON and a COMPLETEAGENT whose start is not in the
    # excerpt (rebuilt from its durations), and ENTERQUEUE + CONNECT still talking.
    rows = await contact_rows(db, center.seed.id)
    assert {k: r["outcome"] for k, r in rows.items()} == {
        "1341401275.9@q1": "exit_empty",
        "1341401601.24@q1": "answered",
        "1341401851.34@q1": "answered",
        "1341402016.44@q1": "overflow",
        "1341402482.49@q1": "overflow",
        "1341402586.51@q1": "abandoned",
    }
    assert body["open_calls"] == 1
    completed = rows["1341401851.34@q1"]  # COMPLETEAGENT 2|12|1 at 07:37:46.601754 EDT
    assert completed["ended_at"] == datetime(2012, 7, 4, 11, 37, 46, 601754, tzinfo=UTC)
    assert (completed["wait_ms"], completed["talk_ms"]) == (2_000, 12_000)
    assert body["problems"] == []  # every row read and used


async def test_an_endless_line_is_reported_not_held(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    center = await make_center(client, settings, db)
    lines = MALARIA.read_bytes().splitlines(keepends=True)
    # After the file's first 12 lines, a 13th of 3 MB (an ENTERQUEUE with an endless field).
    huge = b"1675555753|x|Support|NONE|ENTERQUEUE||" + b"9" * (3 << 20) + b"\n"
    data = b"".join(lines[:12]) + huge + b"".join(lines[12:])
    body = await ok(await upload(client, center, data, "queue_log", source="pbx"))
    assert body["stats"]["items"] == 86
    assert body["stats"]["malformed"] == 1
    assert [(p["line"], p["reason"][:23]) for p in body["problems"]] == [
        (13, "a line longer than 6553")
    ]
    assert len(await contact_rows(db, center.seed.id)) == 8


async def test_an_overlong_call_id_or_queue_is_one_refused_call_never_a_500(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    center = await make_center(client, settings, db)
    huge = "".join(chr(0x4E00 + (i * 7919) % 20_000) for i in range(5_000))
    data = (
        f"1675555753|{huge}|Support|NONE|ENTERQUEUE||200|1\n"
        f"1675555760|{huge}|Support|NONE|ABANDON|1|1|7\n"
        f"1675555753|1675555752.1|{huge}|NONE|ENTERQUEUE||200|1\n"
        f"1675555760|1675555752.1|{huge}|NONE|ABANDON|1|1|7\n"
        "1675555753|1675555752.0|Support|NONE|ENTERQUEUE||200|1\n"
        "1675555761|1675555752.0|Support|PJSIP/400|CONNECT|8|1675555753.1|7\n"
        "1675555766|1675555752.0|Support|PJSIP/400|COMPLETEAGENT|8|5|1\n"
    ).encode()
    body = await ok(await upload(client, center, data, "queue_log", source="long"))
    assert body["accepted"] == 1
    assert [(p["line"], p["field"]) for p in body["problems"]] == [
        (1, "external_id"),
        (3, "external_id"),
    ]
    assert set(await contact_rows(db, center.seed.id)) == {"1675555752.0@Support"}
