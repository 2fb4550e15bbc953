"""GET /agents/{id}/kpis and /projects/{id}/agent-kpis: hand-computed figures for
one agent of the shared pool working on two projects in one day.

The day (UTC, 2026-03-02), window 08:00-18:00:

    shifts   P1 on_queue 09:00-12:00 | P1 break 12:00-12:30 | P2 on_queue 12:30-14:00
    states   07:00 logged_out (before the window)
             08:50 available, 09:10 on_contact, 09:20 acw, 09:25 available,
             11:50 not_ready "Lunch", 12:35 available, 13:00 on_contact,
             13:30 available, 14:00 logged_out
    contacts P1 answered 09:10, talk 10 min, ACW 5 min
             P2 answered 13:00, talk 30 min

Total: available 20 + 145 + 25 + 30 = 220 min, on contact 10 + 30 = 40, ACW 5,
not ready 45 (11:50-12:35): logged in 310 min (08:50-14:00). Scheduled 300.
In the asked state: P1 on_queue 09:00-11:50 = 170, the break 12:00-12:30 in
"Lunch" = 30, P2 on_queue from 12:35 = 85 (12:30-12:35 still at lunch): 285.

P1 (scheduled 09:00-12:30): available 10 + 145 = 155 min, its contact 10 + 5,
not ready 11:50-12:30 = 40: logged in 210; in the asked state 170 + 30 = 200.
P2 (scheduled 12:30-14:00): available 25 + 30 = 55, its contact 30, not ready
12:30-12:35 = 5: logged in 90; in the asked state 85.
"""

from __future__ import annotations

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
    certify,
    ingest,
    make_floor,
)

DAY = datetime(2026, 3, 2, tzinfo=UTC)
WINDOW = {"from": "2026-03-02T08:00:00+00:00", "to": "2026-03-02T18:00:00+00:00"}
MIN = 60.0


def at(hh: int, mm: int = 0) -> datetime:
    return DAY + timedelta(hours=hh, minutes=mm)


def answered(floor: Floor, queue: str, n: int, when: datetime, talk: float, acw: float = 0):  # type: ignore[no-untyped-def]
    return ContactRecord(
        source="test",
        queue_key=queue,
        external_id=f"c-{n}",
        channel="voice",
        queued_at=when - timedelta(seconds=20),
        answered_at=when,
        outcome="answered",
        raw_ref=f"test:{n}",
        agent_key=floor.agent_key,
        wait_s=20,
        talk_s=talk,
        acw_s=acw,
    )


@pytest.fixture
async def floor(client: AsyncClient, settings: Settings, db: Database) -> Floor:
    floor = await make_floor(client, settings, db)
    await add_shift(db, floor, floor.p1, at(9), at(12))
    await add_shift(db, floor, floor.p1, at(12), at(12, 30), "break")
    await add_shift(db, floor, floor.p2, at(12, 30), at(14))
    for when, state, reason in [
        (at(7), "logged_out", None),
        (at(8, 50), "available", None),
        (at(9, 10), "on_contact", None),
        (at(9, 20), "acw", None),
        (at(9, 25), "available", None),
        (at(11, 50), "not_ready", "Lunch"),
        (at(12, 35), "available", None),
        (at(13), "on_contact", None),
        (at(13, 30), "available", None),
        (at(14), "logged_out", None),
    ]:
        await add_event(db, floor, when, state, reason=reason)
    receipt = await ingest(
        db,
        floor,
        [
            answered(floor, floor.q1, 1, at(9, 10), talk=600, acw=300),
            answered(floor, floor.q2, 2, at(13), talk=1800),
        ],
    )
    assert receipt.accepted == 2
    assert not receipt.unmapped_agents
    return floor


def values(figures: dict[str, Any]) -> dict[str, Any]:
    return {name: k["value"] for name, k in figures["kpis"].items()}


TOTAL_TIME = {
    "logged_in_s": 310 * MIN,
    "available_s": 220 * MIN,
    "on_contact_s": 40 * MIN,
    "acw_s": 5 * MIN,
    "not_ready_s": 45 * MIN,
    "scheduled_s": 300 * MIN,
    "in_scheduled_state_s": 285 * MIN,
    "handled": 2,
}
TOTAL = {
    "logged_in_time": 310 * MIN,
    "occupancy": 45 / 265,
    "utilization": 45 / 310,
    "schedule_adherence": 285 / 300,
    "conformance": 310 / 300,
    "shrinkage": 1 - 265 / 300,
    "contacts_per_hour": 2 / (310 / 60),
}
P1_TIME = {
    "logged_in_s": 210 * MIN,
    "available_s": 155 * MIN,
    "on_contact_s": 10 * MIN,
    "acw_s": 5 * MIN,
    "not_ready_s": 40 * MIN,
    "scheduled_s": 210 * MIN,
    "in_scheduled_state_s": 200 * MIN,
    "handled": 1,
}
P1 = {
    "logged_in_time": 210 * MIN,
    "occupancy": 15 / 170,
    "utilization": 15 / 210,
    "schedule_adherence": 200 / 210,
    "conformance": 1.0,
    "shrinkage": 1 - 170 / 210,
    "contacts_per_hour": 1 / (210 / 60),
}
P2_TIME = {
    "logged_in_s": 90 * MIN,
    "available_s": 55 * MIN,
    "on_contact_s": 30 * MIN,
    "acw_s": 0.0,
    "not_ready_s": 5 * MIN,
    "scheduled_s": 90 * MIN,
    "in_scheduled_state_s": 85 * MIN,
    "handled": 1,
}
P2 = {
    "logged_in_time": 90 * MIN,
    "occupancy": 30 / 85,
    "utilization": 30 / 90,
    "schedule_adherence": 85 / 90,
    "conformance": 1.0,
    "shrinkage": 1 - 85 / 90,
    "contacts_per_hour": 1 / 1.5,
}


async def test_agent_kpis_in_total_and_per_project(client: AsyncClient, floor: Floor) -> None:
    response = await client.get(
        f"/api/v1/agents/{floor.agent}/kpis", params=WINDOW, headers=floor.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["start"].startswith("2026-03-02T08:00")
    assert body["end"].startswith("2026-03-02T18:00")
    assert body["total"]["project_id"] is None
    assert body["total"]["time"] == pytest.approx(TOTAL_TIME)
    assert values(body["total"]) == pytest.approx(TOTAL)
    by_project = {p["project_id"]: p for p in body["projects"]}
    assert set(by_project) == {str(floor.p1), str(floor.p2)}
    assert by_project[str(floor.p1)]["time"] == pytest.approx(P1_TIME)
    assert values(by_project[str(floor.p1)]) == pytest.approx(P1)
    assert by_project[str(floor.p2)]["time"] == pytest.approx(P2_TIME)
    assert values(by_project[str(floor.p2)]) == pytest.approx(P2)
    # Each figure names its formula and carries its exact terms.
    adherence = body["total"]["kpis"]["schedule_adherence"]
    assert (adherence["numerator"], adherence["denominator"]) == (285 * MIN, 300 * MIN)
    assert "scheduled" in adherence["formula"]


async def test_one_project_only(client: AsyncClient, floor: Floor) -> None:
    response = await client.get(
        f"/api/v1/agents/{floor.agent}/kpis",
        params={**WINDOW, "project_id": str(floor.p2)},
        headers=floor.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [p["project_id"] for p in body["projects"]] == [str(floor.p2)]
    assert values(body["projects"][0]) == pytest.approx(P2)


async def test_the_project_view_lists_its_agents(client: AsyncClient, floor: Floor) -> None:
    response = await client.get(
        f"/api/v1/projects/{floor.p1}/agent-kpis", params=WINDOW, headers=floor.headers
    )
    assert response.status_code == 200, response.text
    [row] = response.json()["agents"]
    assert row["agent_id"] == str(floor.agent)
    assert values(row["project"]) == pytest.approx(P1)
    assert values(row["total"]) == pytest.approx(TOTAL)


async def test_a_window_inside_the_day_clips_spans_and_shifts(
    client: AsyncClient, floor: Floor
) -> None:
    """10:00-12:15: available 10:00-11:50 (110), not ready 11:50-12:15 (25); scheduled
    on_queue 10:00-12:00 (120) + break 12:00-12:15 (15); in the asked state 110 + 15."""
    response = await client.get(
        f"/api/v1/agents/{floor.agent}/kpis",
        params={"from": "2026-03-02T10:00:00Z", "to": "2026-03-02T12:15:00Z"},
        headers=floor.headers,
    )
    total = response.json()["total"]
    assert total["time"] == pytest.approx(
        {
            "logged_in_s": 135 * MIN,
            "available_s": 110 * MIN,
            "on_contact_s": 0.0,
            "acw_s": 0.0,
            "not_ready_s": 25 * MIN,
            "scheduled_s": 135 * MIN,
            "in_scheduled_state_s": 125 * MIN,
            "handled": 0,
        }
    )
    assert values(total)["occupancy"] == 0.0
    assert values(total)["contacts_per_hour"] == 0.0


async def test_no_data_is_null_never_zero(client: AsyncClient, floor: Floor) -> None:
    response = await client.get(
        f"/api/v1/agents/{floor.agent}/kpis",
        params={"from": "2026-03-05", "to": "2026-03-06"},
        headers=floor.headers,
    )
    total = response.json()["total"]
    assert total["time"]["logged_in_s"] == 0
    assert {k: v for k, v in values(total).items() if k != "logged_in_time"} == dict.fromkeys(
        (
            "occupancy",
            "utilization",
            "schedule_adherence",
            "conformance",
            "shrinkage",
            "contacts_per_hour",
        )
    )
    assert response.json()["projects"] == []


async def test_the_trailing_state_lasts_until_now(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    floor = await make_floor(client, settings, db)
    now = datetime.now(UTC)
    await add_event(db, floor, now - timedelta(hours=2), "available")
    response = await client.get(
        f"/api/v1/agents/{floor.agent}/kpis",
        params={
            "from": (now - timedelta(hours=3)).isoformat(),
            "to": (now + timedelta(days=1)).isoformat(),
        },
        headers=floor.headers,
    )
    body = response.json()
    assert 2 * 3600 <= body["total"]["time"]["available_s"] < 2 * 3600 + 120
    assert datetime.fromisoformat(body["end"]) < now + timedelta(minutes=2)


async def test_a_client_viewer_sees_its_project_only_and_no_total(
    client: AsyncClient, db: Database, floor: Floor
) -> None:
    await certify(db, floor, floor.p1)
    _, token = await user_token(client, db, floor.seed, "client_viewer", client_id=floor.client_1)
    response = await client.get(
        f"/api/v1/agents/{floor.agent}/kpis", params=WINDOW, headers=bearer(token)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] is None
    assert [p["project_id"] for p in body["projects"]] == [str(floor.p1)]
    assert values(body["projects"][0]) == pytest.approx(P1)
    assert str(floor.p2) not in response.text
    # The other client's project does not exist for them.
    other = await client.get(
        f"/api/v1/agents/{floor.agent}/kpis",
        params={**WINDOW, "project_id": str(floor.p2)},
        headers=bearer(token),
    )
    assert other.status_code == 404
    assert (
        await client.get(
            f"/api/v1/projects/{floor.p2}/agent-kpis", params=WINDOW, headers=bearer(token)
        )
    ).status_code == 404
    rows = (
        await client.get(
            f"/api/v1/projects/{floor.p1}/agent-kpis", params=WINDOW, headers=bearer(token)
        )
    ).json()["agents"]
    assert [(r["agent_id"], r["total"]) for r in rows] == [(str(floor.agent), None)]


async def test_another_tenants_agent_is_404(
    client: AsyncClient, settings: Settings, db: Database, floor: Floor
) -> None:
    other = await make_floor(client, settings, db)
    response = await client.get(
        f"/api/v1/agents/{floor.agent}/kpis", params=WINDOW, headers=other.headers
    )
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-03-02", "to": "2026-03-01"}, "to"),
        ({"from": "yesterday", "to": "2026-03-01"}, "from"),
        ({"from": "2026-03-02T08:00:00", "to": "2026-03-03"}, "from"),
        ({"from": "2026-01-01", "to": "2026-06-01"}, "to"),
    ],
)
async def test_bad_windows_are_422_naming_the_field(
    client: AsyncClient, floor: Floor, params: dict[str, str], field: str
) -> None:
    response = await client.get(
        f"/api/v1/agents/{floor.agent}/kpis", params=params, headers=floor.headers
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


async def test_a_contact_answered_at_the_windows_first_instant_is_handled(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """A call connected at 08:00:00 and hung up at once (talk 0 s, no ACW: the agent
    spent no time on it) is still a contact handled in a window from 08:00: 1, not 0."""
    floor = await make_floor(client, settings, db)
    await add_shift(db, floor, floor.p1, at(8), at(9))
    await add_event(db, floor, at(8), "available")
    receipt = await ingest(db, floor, [answered(floor, floor.q1, 1, at(8), talk=0)])
    assert receipt.accepted == 1
    response = await client.get(
        f"/api/v1/agents/{floor.agent}/kpis",
        params={"from": "2026-03-02T08:00:00Z", "to": "2026-03-02T09:00:00Z"},
        headers=floor.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"]["time"]["handled"] == 1
    assert [p["project_id"] for p in body["projects"]] == [str(floor.p1)]
    assert body["projects"][0]["time"]["handled"] == 1
    assert values(body["projects"][0])["contacts_per_hour"] == pytest.approx(1.0)
