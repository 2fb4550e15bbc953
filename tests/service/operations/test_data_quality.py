"""GET /data-quality: planted issues of every kind, each found where it was planted.

Projects in America/New_York; Monday 2026-03-02 (EST, UTC-5). P1 has business
hours Mon-Fri 09:00-17:00 local and contacts at 09:10, 09:40, 11:00, 11:30 and
16:30 local: contact-free runs of an hour or more are 09:40-11:00 (80 min) and
11:30-16:30 (5 h); 09:00-09:10 and 16:30-17:00 are shorter. P2 has the same
hours and no contact at all: its whole business day is a gap. An inactive
project and one without business hours have no gaps.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient

from service.contacts.records import ContactRecord
from service.core.config import Settings
from service.core.db import Database
from tests.factories import bearer, user_token
from tests.service.ingest.conftest import make_project
from tests.service.operations.conftest import Floor, admin_sql, ingest, make_floor

NY_MIDNIGHT = datetime(2026, 3, 2, 5, tzinfo=UTC)  # 2026-03-02 00:00 EST
WINDOW = {"from": "2026-03-02T00:00:00-05:00", "to": "2026-03-03T00:00:00-05:00"}
HOURS = {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}


def local(hh: int, mm: int = 0) -> datetime:
    return NY_MIDNIGHT + timedelta(hours=hh, minutes=mm)


def abandoned(queue: str, name: str, when: datetime, **kw: Any) -> ContactRecord:
    values: dict[str, Any] = {
        "source": "test",
        "queue_key": queue,
        "external_id": name,
        "channel": "voice",
        "queued_at": when,
        "outcome": "abandoned",
        "raw_ref": f"test:{name}",
        "wait_s": 12,
    }
    return ContactRecord(**(values | kw))


async def set_hours(db: Database, floor: Floor, project: uuid.UUID, **columns: Any) -> None:
    sets = ", ".join(f"{k} = cast(:{k} as {'jsonb' if k != 'status' else 'text'})" for k in columns)
    params = {k: json.dumps(v) if k != "status" else v for k, v in columns.items()}
    await admin_sql(
        db,
        f"update projects set {sets} where tenant_id = :t and id = :p",
        {"t": floor.seed.id, "p": project, **params},
    )


@pytest.fixture
async def floor(client: AsyncClient, settings: Settings, db: Database) -> Floor:
    floor = await make_floor(client, settings, db, time_zone="America/New_York")
    await set_hours(db, floor, floor.p1, business_hours=HOURS)
    await set_hours(db, floor, floor.p2, business_hours=HOURS)
    inactive = await make_project(db, floor.seed.id, floor.client_1, [], "America/New_York")
    await set_hours(db, floor, inactive, business_hours=HOURS, status="inactive")
    await make_project(db, floor.seed.id, floor.client_1, [], "America/New_York")  # no hours
    receipt = await ingest(
        db,
        floor,
        [
            abandoned(floor.q1, "a-0910", local(9, 10), source_version=1),
            abandoned(floor.q1, "a-0940", local(9, 40)),
            abandoned(floor.q1, "a-1100", local(11)),
            abandoned(floor.q1, "a-1130", local(11, 30)),
            abandoned(floor.q1, "a-1630", local(16, 30)),
            # Clock skew: answered a minute before it was queued (the source gave a wait).
            ContactRecord(
                source="test",
                queue_key=floor.q1,
                external_id="skewed",
                channel="voice",
                queued_at=local(20),
                answered_at=local(19, 59),
                outcome="answered",
                raw_ref="test:skewed",
                wait_s=3,
                agent_key=floor.agent_key,
            ),
            abandoned(floor.q1, "from-the-future", local(21)),
            # Unmapped: a queue no project has, and an agent not in the pool.
            abandoned("nobody-maps-this", "lost", local(10)),
            ContactRecord(
                source="test",
                queue_key=floor.q1,
                external_id="stranger",
                channel="voice",
                queued_at=local(22),
                answered_at=local(22, 0) + timedelta(seconds=5),
                outcome="answered",
                raw_ref="test:stranger",
                agent_key="Agent/unknown",
            ),
        ],
    )
    assert receipt.accepted == 8, receipt.as_dict()
    # A correction: the 09:10 contact was in fact answered (a newer version).
    corrected = await ingest(
        db,
        floor,
        [
            dataclasses.replace(
                abandoned(floor.q1, "a-0910", local(9, 10)),
                outcome="answered",
                answered_at=local(9, 10) + timedelta(seconds=12),
                source_version=2,
            )
        ],
    )
    assert corrected.updated == 1
    # Stored times: "from-the-future" was stored 10 minutes before the time it says it
    # was queued; the contacts of 16:30 and of 20:00 arrived on their own day (not late).
    await admin_sql(
        db,
        "update contacts set ingested_at = case external_id"
        " when 'from-the-future' then queued_at - interval '10 minutes'"
        " else queued_at + interval '1 minute' end"
        " where tenant_id = :t and external_id in ('from-the-future', 'a-1630', 'skewed')",
        {"t": floor.seed.id},
    )
    return floor


async def quality(
    client: AsyncClient, headers: dict[str, str], **params: Any
) -> tuple[int, dict[str, Any]]:
    response = await client.get(
        "/api/v1/data-quality", params={**WINDOW, **params}, headers=headers
    )
    return response.status_code, response.json()


def utc(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


async def test_every_planted_issue_is_reported(client: AsyncClient, floor: Floor) -> None:
    status, body = await quality(client, floor.headers)
    assert status == 200, body

    gaps = [
        (g["project_id"], utc(g["start"]), utc(g["end"]), g["hours"]) for g in body["feed_gaps"]
    ]
    assert sorted(gaps) == sorted(
        [
            (str(floor.p1), local(9, 40), local(11), 80 / 60),
            (str(floor.p1), local(11, 30), local(16, 30), 5.0),
            (str(floor.p2), local(9), local(17), 8.0),
        ]
    )

    skew = {(s["external_id"], s["problem"]) for s in body["clock_skew"]}
    assert skew == {("skewed", "answered_before_queued"), ("from-the-future", "queued_in_future")}

    issues = {(i["kind"], i["subject"], i["occurrences"]) for i in body["issues"]}
    assert issues == {
        ("unmapped_queue", "nobody-maps-this", 1),
        ("unmapped_agent", "Agent/unknown", 1),
    }

    [correction] = body["corrections"]
    assert correction["external_id"] == "a-0910"
    assert (correction["old_version"], correction["new_version"]) == (1, 2)
    assert "outcome" in correction["changed"]
    assert correction["changes"]["outcome"] == {"old": "abandoned", "new": "answered"}

    # Stored after their local day ended: every contact but the three re-stamped above
    # (the corrected 09:10 contact counts once, as its current version).
    assert [(d["project_id"], d["local_day"], d["late_contacts"]) for d in body["late_days"]] == [
        (str(floor.p1), "2026-03-02", 5)
    ]

    assert body["summary"] == {
        "unmapped_queues": 1,
        "unmapped_agents": 1,
        "feed_gaps": 3,
        "clock_skew": 2,
        "late_contacts": 5,
        "corrections": 1,
    }
    assert body["not_recorded"] == ["duplicates", "stale_versions"]
    assert body["truncated"] is False


async def test_a_source_filter_counts_only_that_feed(client: AsyncClient, floor: Floor) -> None:
    status, body = await quality(client, floor.headers, source="some-other-feed")
    assert status == 200, body
    # Nothing came from that feed: P1's whole business day is a gap too.
    assert {(g["project_id"], g["hours"]) for g in body["feed_gaps"]} == {
        (str(floor.p1), 8.0),
        (str(floor.p2), 8.0),
    }
    assert body["clock_skew"] == []
    assert body["corrections"] == []
    assert body["late_days"] == []


async def test_a_client_viewer_sees_its_projects_only(
    client: AsyncClient, db: Database, floor: Floor
) -> None:
    _, token = await user_token(client, db, floor.seed, "client_viewer", client_id=floor.client_2)
    status, body = await quality(client, bearer(token))
    assert status == 200, body
    assert [g["project_id"] for g in body["feed_gaps"]] == [str(floor.p2)]
    assert body["issues"] == []
    assert body["clock_skew"] == []
    assert body["corrections"] == []
    assert str(floor.p1) not in json.dumps(body)


async def test_limit_truncates_and_says_so(client: AsyncClient, floor: Floor) -> None:
    status, body = await quality(client, floor.headers, limit=1)
    assert status == 200, body
    assert len(body["clock_skew"]) == 1
    assert body["summary"]["clock_skew"] == 2
    assert body["truncated"] is True


async def test_skew_that_bends_agent_time_is_reported(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """Two contacts whose times the agent KPIs and double bookings cannot trust:
    one queued at 10:04:30 that ended at 10:04:50, before it was answered at 10:05 —
    the agent's time on it is taken as 0 — and one whose ended_at is two days after the row was stored — the
    agent is "on it" until the end of any window. Both are clock skew to report."""
    floor = await make_floor(client, settings, db, time_zone="America/New_York")

    def contact(name: str, answered: datetime, ended: datetime) -> ContactRecord:
        return ContactRecord(
            source="test",
            queue_key=floor.q1,
            external_id=name,
            channel="voice",
            queued_at=answered - timedelta(seconds=30),
            answered_at=answered,
            ended_at=ended,
            outcome="answered",
            raw_ref=f"test:{name}",
            wait_s=30,
            agent_key=floor.agent_key,
        )

    receipt = await ingest(
        db,
        floor,
        [
            contact("backwards", local(10, 5), local(10, 5) - timedelta(seconds=10)),
            contact("endless", local(11), local(11) + timedelta(days=2)),
            contact("fine", local(12), local(12, 10)),
        ],
    )
    assert receipt.accepted == 3
    await admin_sql(
        db,
        "update contacts set ingested_at = queued_at + interval '1 hour' where tenant_id = :t",
        {"t": floor.seed.id},
    )
    status, body = await quality(client, floor.headers)
    assert status == 200, body
    assert {(s["external_id"], s["problem"]) for s in body["clock_skew"]} == {
        ("backwards", "ended_before_answered"),
        ("endless", "ended_in_future"),
    }
    assert body["summary"]["clock_skew"] == 2
