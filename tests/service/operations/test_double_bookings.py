"""GET /double-bookings: planted cases of each kind, and the non-cases next to them.

One agent, 2026-03-03 (UTC). Shifts back to back: S1 on P1 09:00-12:00, S2 on P2
12:00-15:00.

    contacts  P1 09:30-09:40                within its shift: nothing
              P1 10:00-10:10 + P2 10:05-10:15  both at once: cross_project_contacts
                                            [10:05, 10:10); and the P2 one is outside any
                                            P2 shift, inside S1: contact_outside_shift
                                            [10:05, 10:15) naming P1 and S1
              P1 11:55-12:00, P2 12:00-12:05  back to back, each in its shift: nothing
              P2 14:58-15:02                outside its shift from 15:00, no other shift:
                                            contact_outside_shift [15:00, 15:02)
              P1 16:00-16:10 (ACW 4 min)    outside every shift: [16:00, 16:14)
    states    08:55 available on P1, 12:00 logged_out      on P1 during S1: nothing
              12:30 available on queue q1 (P1), 12:40 on_contact on P1, 12:45 logged_out:
                                            logged_in_other_project [12:30, 12:45), S2
              13:00 available without a queue, 13:10 logged_out: no project, nothing
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient

from service.contacts.records import ContactRecord
from service.core.config import Settings
from service.core.db import Database
from tests.factories import bearer, user_token
from tests.service.operations.conftest import (
    Floor,
    add_event,
    add_shift,
    contact_ids,
    ingest,
    make_floor,
)

DAY = datetime(2026, 3, 3, tzinfo=UTC)
WINDOW = {"from": "2026-03-03", "to": "2026-03-04"}


def at(hh: int, mm: int = 0) -> datetime:
    return DAY + timedelta(hours=hh, minutes=mm)


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def contact(floor: Floor, name: str, queue: str, start: datetime, minutes: float, acw: float = 0):  # type: ignore[no-untyped-def]
    return ContactRecord(
        source="test",
        queue_key=queue,
        external_id=name,
        channel="voice",
        queued_at=start - timedelta(seconds=30),
        answered_at=start,
        outcome="answered",
        raw_ref=f"test:{name}",
        agent_key=floor.agent_key,
        wait_s=30,
        talk_s=minutes * 60,
        acw_s=acw * 60,
    )


class Planted:
    def __init__(self, floor: Floor) -> None:
        self.floor = floor
        self.s1 = self.s2 = uuid.UUID(int=0)
        self.contacts: dict[str, uuid.UUID] = {}
        self.events: dict[str, uuid.UUID] = {}


@pytest.fixture
async def planted(client: AsyncClient, settings: Settings, db: Database) -> Planted:
    floor = await make_floor(client, settings, db)
    p = Planted(floor)
    p.s1 = await add_shift(db, floor, floor.p1, at(9), at(12))
    p.s2 = await add_shift(db, floor, floor.p2, at(12), at(15))
    receipt = await ingest(
        db,
        floor,
        [
            contact(floor, "p1-0930", floor.q1, at(9, 30), 10),
            contact(floor, "p1-1000", floor.q1, at(10), 10),
            contact(floor, "p2-1005", floor.q2, at(10, 5), 10),
            contact(floor, "p1-1155", floor.q1, at(11, 55), 5),
            contact(floor, "p2-1200", floor.q2, at(12), 5),
            contact(floor, "p2-1458", floor.q2, at(14, 58), 4),
            contact(floor, "p1-1600", floor.q1, at(16), 10, acw=4),
        ],
    )
    assert receipt.accepted == 7
    p.contacts = await contact_ids(db, floor)
    await add_event(db, floor, at(8, 55), "available", project=floor.p1)
    await add_event(db, floor, at(12), "logged_out", project=floor.p1)
    p.events["1230"] = await add_event(db, floor, at(12, 30), "available", queue_key=floor.q1)
    p.events["1240"] = await add_event(db, floor, at(12, 40), "on_contact", project=floor.p1)
    await add_event(db, floor, at(12, 45), "logged_out", project=floor.p1)
    await add_event(db, floor, at(13), "available")
    await add_event(db, floor, at(13, 10), "logged_out")
    return p


def expected(p: Planted) -> list[dict[str, Any]]:
    f, c = p.floor, p.contacts

    def involved(*pairs: tuple[uuid.UUID, uuid.UUID]) -> list[dict[str, str]]:
        return [{"id": str(i), "project_id": str(project)} for i, project in pairs]

    def finding(
        kind: str,
        project: uuid.UUID,
        other: uuid.UUID | None,
        start: datetime,
        end: datetime,
        contacts: list[dict[str, str]],
        shifts: list[dict[str, str]],
        events: list[uuid.UUID] | None = None,
    ) -> dict[str, Any]:
        return {
            "kind": kind,
            "agent_id": str(f.agent),
            "project_id": str(project),
            "other_project_id": str(other) if other else None,
            "other_project_hidden": False,
            "start": iso(start),
            "end": iso(end),
            "seconds": (end - start).total_seconds(),
            "contacts": contacts,
            "shifts": shifts,
            "state_events": [str(e) for e in events or []],
        }

    return [
        finding(
            "contact_outside_shift",
            f.p2,
            f.p1,
            at(10, 5),
            at(10, 15),
            involved((c["p2-1005"], f.p2)),
            involved((p.s1, f.p1)),
        ),
        finding(
            "cross_project_contacts",
            f.p1,
            f.p2,
            at(10, 5),
            at(10, 10),
            involved((c["p1-1000"], f.p1), (c["p2-1005"], f.p2)),
            [],
        ),
        finding(
            "logged_in_other_project",
            f.p1,
            f.p2,
            at(12, 30),
            at(12, 45),
            [],
            involved((p.s2, f.p2)),
            [p.events["1230"], p.events["1240"]],
        ),
        finding(
            "contact_outside_shift",
            f.p2,
            None,
            at(15),
            at(15, 2),
            involved((c["p2-1458"], f.p2)),
            [],
        ),
        finding(
            "contact_outside_shift",
            f.p1,
            None,
            at(16),
            at(16, 14),
            involved((c["p1-1600"], f.p1)),
            [],
        ),
    ]


def normalized(body: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for finding in body["findings"]:
        finding = dict(finding)
        for key in ("start", "end"):
            finding[key] = iso(datetime.fromisoformat(finding[key]).astimezone(UTC))
        out.append(finding)
    return out


async def bookings(
    client: AsyncClient, headers: dict[str, str], **params: Any
) -> tuple[int, dict[str, Any]]:
    response = await client.get(
        "/api/v1/double-bookings", params={**WINDOW, **params}, headers=headers
    )
    return response.status_code, response.json()


async def test_every_kind_is_found_and_nothing_else(client: AsyncClient, planted: Planted) -> None:
    status, body = await bookings(client, planted.floor.headers)
    assert status == 200, body
    assert normalized(body) == expected(planted)
    assert body["counts"] == {
        "cross_project_contacts": 1,
        "contact_outside_shift": 3,
        "logged_in_other_project": 1,
    }
    assert body["truncated"] is False


async def test_filters_by_project_and_agent(
    client: AsyncClient, db: Database, planted: Planted
) -> None:
    f = planted.floor
    _, body = await bookings(client, f.headers, project_id=str(f.p2))
    assert normalized(body) == expected(planted)[:4]  # every finding but P1's alone at 16:00
    _, body = await bookings(client, f.headers, agent_id=str(f.agent))
    assert normalized(body) == expected(planted)
    # Another agent of the pool did nothing wrong.
    from tests.service.ingest.conftest import make_agent

    idle = await make_agent(db, f.seed.id, "asterisk", "Agent/idle")
    _, body = await bookings(client, f.headers, agent_id=str(idle))
    assert body["findings"] == []


async def test_the_window_cuts_the_overlap(client: AsyncClient, planted: Planted) -> None:
    _, body = await bookings(
        client,
        planted.floor.headers,
        **{"from": "2026-03-03T10:07:00Z", "to": "2026-03-03T10:12:00Z"},
    )
    assert [(f["kind"], f["start"][11:16], f["end"][11:16]) for f in body["findings"]] == [
        ("contact_outside_shift", "10:07", "10:12"),
        ("cross_project_contacts", "10:07", "10:10"),
    ]


async def test_limit_truncates(client: AsyncClient, planted: Planted) -> None:
    _, body = await bookings(client, planted.floor.headers, limit=2)
    assert normalized(body) == expected(planted)[:2]
    assert body["truncated"] is True
    assert sum(body["counts"].values()) == 5


async def test_client_viewers_get_403(client: AsyncClient, db: Database, planted: Planted) -> None:
    f = planted.floor
    _, token = await user_token(client, db, f.seed, "client_viewer", client_id=f.client_1)
    status, body = await bookings(client, bearer(token))
    assert status == 403
    assert body["code"] == "client_viewer_excluded"
    assert str(f.p2) not in str(body)


async def test_a_supervisor_sees_their_projects_side_only(
    client: AsyncClient, db: Database, planted: Planted
) -> None:
    f = planted.floor
    user, token = await user_token(client, db, f.seed, "supervisor")
    assigned = await client.put(
        f"/api/v1/users/{user.id}/projects",
        json={"project_ids": [str(f.p1)]},
        headers=f.headers,
    )
    assert assigned.status_code == 200, assigned.text
    status, body = await bookings(client, bearer(token))
    assert status == 200, body
    found = normalized(body)
    # P2's own finding at 15:00 is gone; the others are told from P1's side, P2 blanked.
    assert [(x["kind"], x["start"][11:16]) for x in found] == [
        ("contact_outside_shift", "10:05"),
        ("cross_project_contacts", "10:05"),
        ("logged_in_other_project", "12:30"),
        ("contact_outside_shift", "16:00"),
    ]
    assert str(f.p2) not in str(body)
    assert str(planted.contacts["p2-1005"]) not in str(body)
    assert str(planted.s2) not in str(body)
    outside = found[0]
    assert outside["project_id"] == str(f.p1)
    assert (outside["other_project_id"], outside["other_project_hidden"]) == (None, True)
    assert outside["shifts"] == [{"id": str(planted.s1), "project_id": str(f.p1)}]
    logged = found[2]
    assert logged["state_events"] == [str(planted.events["1230"]), str(planted.events["1240"])]
    # A project that is not theirs does not exist for them.
    status, _ = await bookings(client, bearer(token), project_id=str(f.p2))
    assert status == 404


async def test_another_tenants_agent_is_404(
    client: AsyncClient, settings: Settings, db: Database, planted: Planted
) -> None:
    other = await make_floor(client, settings, db)
    status, body = await bookings(client, other.headers, agent_id=str(planted.floor.agent))
    assert status == 404
    status, body = await bookings(client, other.headers)
    assert (status, body["findings"]) == (200, [])
