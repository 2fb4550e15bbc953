"""Schedule views: coverage per interval in the project's time zone (DST
days of 23 and 25 hours, half-hour offsets), agent day totals and CSV export."""

from __future__ import annotations

import csv
import io
from typing import Any

from httpx import AsyncClient

from service.core.config import Settings
from service.core.db import Database
from tests.service.agents.factories import Floor, certify, make_agent, make_floor


async def book(
    client: AsyncClient,
    floor: Floor,
    agent: dict[str, Any],
    project: Any,
    start: str,
    end: str,
    **extra: Any,
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/shifts",
        json={
            "agent_id": agent["id"],
            "project_id": str(project),
            "start": start,
            "end": end,
            **extra,
        },
        headers=floor.headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def schedule(
    client: AsyncClient, floor: Floor, project: Any, **params: Any
) -> dict[str, Any]:
    response = await client.get(
        f"/api/v1/projects/{project}/schedule", params=params, headers=floor.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def on_queue_labels(body: dict[str, Any]) -> list[str]:
    return [c["start"] for c in body["coverage"] if c["on_queue"]]


async def test_tehran_and_istanbul_intervals_follow_local_quarter_hours(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    floor = await make_floor(
        client, settings, db, time_zone_a="Asia/Tehran", time_zone_b="Europe/Istanbul"
    )
    agent = await make_agent(client, floor.token)
    for project in (floor.project_a, floor.project_b):
        await certify(client, floor.token, agent["id"], project.id)
    # 08:00-12:00 in Tehran (UTC+3:30, no DST since 2022, so also in June).
    await book(
        client,
        floor,
        agent,
        floor.project_a.id,
        "2026-06-01T08:00:00+03:30",
        "2026-06-01T12:00:00+03:30",
    )
    # 14:00-16:00 in Istanbul (UTC+3).
    await book(
        client, floor, agent, floor.project_b.id, "2026-06-01T11:00:00Z", "2026-06-01T13:00:00Z"
    )

    tehran = await schedule(client, floor, floor.project_a.id, **{"from": "2026-06-01"})
    assert tehran["time_zone"] == "Asia/Tehran"
    assert len(tehran["coverage"]) == 96
    assert tehran["coverage"][0]["start"] == "2026-06-01T00:00:00+03:30"
    assert tehran["coverage"][-1]["end"] == "2026-06-02T00:00:00+03:30"
    on = on_queue_labels(tehran)
    assert len(on) == 16
    assert on[0] == "2026-06-01T08:00:00+03:30"
    assert on[-1] == "2026-06-01T11:45:00+03:30"
    assert tehran["coverage"][32]["label"] == "08:00"
    assert tehran["shifts"][0]["start"] == "2026-06-01T08:00:00+03:30"
    assert tehran["shifts"][0]["hours"] == 4.0

    istanbul = await schedule(client, floor, floor.project_b.id, **{"from": "2026-06-01"})
    assert len(istanbul["coverage"]) == 96
    assert istanbul["coverage"][0]["start"] == "2026-06-01T00:00:00+03:00"
    on = on_queue_labels(istanbul)
    assert on == [f"2026-06-01T{h:02d}:{m:02d}:00+03:00" for h in (14, 15) for m in (0, 15, 30, 45)]
    # Tehran's former DST start (21/22 March) brings no change any more.
    march = await schedule(
        client, floor, floor.project_a.id, **{"from": "2026-03-21", "to": "2026-03-23"}
    )
    assert len(march["coverage"]) == 3 * 96
    assert {c["start"][-6:] for c in march["coverage"]} == {"+03:30"}


async def test_new_york_spring_forward_day_has_92_intervals(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    floor = await make_floor(client, settings, db, time_zone_a="America/New_York")
    agent = await make_agent(client, floor.token)
    await certify(client, floor.token, agent["id"], floor.project_a.id)
    # 01:00 EST to 04:00 EDT on 2026-03-08: two hours of absolute time.
    await book(
        client,
        floor,
        agent,
        floor.project_a.id,
        "2026-03-08T01:00:00-05:00",
        "2026-03-08T04:00:00-04:00",
    )
    day = await schedule(client, floor, floor.project_a.id, **{"from": "2026-03-08"})
    assert len(day["coverage"]) == 92
    labels = [c["label"] for c in day["coverage"]]
    assert "02:00" not in labels
    assert labels[7:9] == ["01:45", "03:00"]
    assert on_queue_labels(day) == [
        "2026-03-08T01:00:00-05:00",
        "2026-03-08T01:15:00-05:00",
        "2026-03-08T01:30:00-05:00",
        "2026-03-08T01:45:00-05:00",
        "2026-03-08T03:00:00-04:00",
        "2026-03-08T03:15:00-04:00",
        "2026-03-08T03:30:00-04:00",
        "2026-03-08T03:45:00-04:00",
    ]
    assert day["coverage"][-1]["end"] == "2026-03-09T00:00:00-04:00"
    assert day["shifts"][0]["hours"] == 2.0
    week = await schedule(
        client, floor, floor.project_a.id, **{"from": "2026-03-02", "to": "2026-03-08"}
    )
    assert len(week["coverage"]) == 7 * 96 - 4
    hourly = await schedule(
        client, floor, floor.project_a.id, **{"from": "2026-03-08", "interval": "60"}
    )
    assert len(hourly["coverage"]) == 23
    assert hourly["interval_minutes"] == 60


async def test_new_york_fall_back_day_has_100_intervals(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    floor = await make_floor(client, settings, db, time_zone_a="America/New_York")
    agent = await make_agent(client, floor.token)
    await certify(client, floor.token, agent["id"], floor.project_a.id)
    # 00:30 EDT to 02:30 EST on 2026-11-01: three hours of absolute time.
    await book(
        client, floor, agent, floor.project_a.id, "2026-11-01T04:30:00Z", "2026-11-01T07:30:00Z"
    )
    day = await schedule(client, floor, floor.project_a.id, **{"from": "2026-11-01"})
    assert len(day["coverage"]) == 100
    labels = [c["label"] for c in day["coverage"]]
    assert labels.count("01:00") == 2
    assert labels.count("01:45") == 2
    starts = [c["start"] for c in day["coverage"]]
    assert "2026-11-01T01:00:00-04:00" in starts
    assert "2026-11-01T01:00:00-05:00" in starts
    on = on_queue_labels(day)
    assert len(on) == 12
    assert on[0] == "2026-11-01T00:30:00-04:00"
    assert on[-1] == "2026-11-01T02:15:00-05:00"


async def test_coverage_counts_heads_on_queue_time_weighted(
    client: AsyncClient, floor: Floor
) -> None:
    agents = [await make_agent(client, floor.token) for _ in range(3)]
    for agent in agents:
        await certify(client, floor.token, agent["id"], floor.project_a.id)
    await book(
        client, floor, agents[0], floor.project_a.id, "2026-04-06T08:00:00Z", "2026-04-06T09:00:00Z"
    )
    await book(
        client, floor, agents[1], floor.project_a.id, "2026-04-06T08:05:00Z", "2026-04-06T08:20:00Z"
    )
    await book(
        client,
        floor,
        agents[2],
        floor.project_a.id,
        "2026-04-06T08:00:00Z",
        "2026-04-06T08:30:00Z",
        activity="training",
    )
    day = await schedule(client, floor, floor.project_a.id, **{"from": "2026-04-06"})
    by_label = {c["label"]: c for c in day["coverage"]}
    assert by_label["08:00"]["on_queue"] == 1.67
    assert by_label["08:00"]["scheduled"] == 2.67
    assert by_label["08:15"]["on_queue"] == 1.33
    assert by_label["08:30"]["on_queue"] == 1.0
    assert by_label["08:30"]["scheduled"] == 1.0
    assert by_label["09:00"]["on_queue"] == 0.0
    # Ordered by start, then agent name.
    first_two = sorted([agents[0]["name"], agents[2]["name"]])
    assert [s["agent_name"] for s in day["shifts"]] == [*first_two, agents[1]["name"]]


async def test_agent_schedule_totals_per_local_day(client: AsyncClient, floor: Floor) -> None:
    agent = await make_agent(client, floor.token)
    await certify(client, floor.token, agent["id"], floor.project_a.id)
    # 22:00-02:00 in Istanbul across midnight, then a training hour.
    await book(
        client, floor, agent, floor.project_a.id, "2026-04-06T19:00:00Z", "2026-04-06T23:00:00Z"
    )
    await book(
        client,
        floor,
        agent,
        floor.project_b.id,
        "2026-04-07T06:00:00Z",
        "2026-04-07T07:00:00Z",
        activity="training",
    )
    response = await client.get(
        f"/api/v1/agents/{agent['id']}/schedule",
        params={"from": "2026-04-06", "to": "2026-04-07", "tz": "Europe/Istanbul"},
        headers=floor.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["time_zone"] == "Europe/Istanbul"
    assert body["days"] == [
        {
            "date": "2026-04-06",
            "scheduled_minutes": 120.0,
            "minutes_by_activity": {"on_queue": 120.0},
        },
        {
            "date": "2026-04-07",
            "scheduled_minutes": 180.0,
            "minutes_by_activity": {"on_queue": 120.0, "training": 60.0},
        },
    ]
    assert [s["start"] for s in body["shifts"]] == [
        "2026-04-06T22:00:00+03:00",
        "2026-04-07T09:00:00+03:00",
    ]
    bad_tz = await client.get(
        f"/api/v1/agents/{agent['id']}/schedule",
        params={"from": "2026-04-06", "tz": "Mars/Olympus"},
        headers=floor.headers,
    )
    assert bad_tz.status_code == 422
    default = await client.get(
        f"/api/v1/agents/{agent['id']}/schedule",
        params={"from": "2026-04-06"},
        headers=floor.headers,
    )
    assert default.json()["time_zone"] == "UTC"


async def test_windows_are_checked(client: AsyncClient, floor: Floor) -> None:
    url = f"/api/v1/projects/{floor.project_a.id}/schedule"
    for params, code in (
        ({"from": "2026-04-06", "to": "2026-04-05"}, "invalid_window"),
        ({"from": "2026-01-01", "to": "2026-03-31"}, "invalid_window"),
        ({"from": "2026-04-06", "interval": "20"}, "invalid_window"),
        ({"from": "2026-04-06", "interval": "x"}, "validation_failed"),
        ({"to": "2026-04-06"}, "validation_failed"),
        ({"from": "yesterday"}, "validation_failed"),
    ):
        response = await client.get(url, params=params, headers=floor.headers)
        assert response.status_code == 422, params
        assert response.json()["code"] == code


async def test_csv_export_neutralizes_formulas_and_keeps_numbers(
    client: AsyncClient, floor: Floor
) -> None:
    evil = await make_agent(client, floor.token, '=HYPERLINK("http://evil.example","x")')
    plain = await make_agent(client, floor.token, "@Plain")
    for agent in (evil, plain):
        await certify(client, floor.token, agent["id"], floor.project_a.id)
    await book(
        client,
        floor,
        evil,
        floor.project_a.id,
        "2026-04-06T08:00:00Z",
        "2026-04-06T12:30:00Z",
        note="+1 555 0100",
    )
    await book(
        client,
        floor,
        plain,
        floor.project_a.id,
        "2026-04-06T09:00:00Z",
        "2026-04-06T10:00:00Z",
        note="-2.5",
    )
    await book(
        client,
        floor,
        plain,
        floor.project_a.id,
        "2026-04-06T10:00:00Z",
        "2026-04-06T11:00:00Z",
        note="-cmd|' /C calc'!A0",
    )
    response = await client.get(
        f"/api/v1/projects/{floor.project_a.id}/schedule.csv",
        params={"from": "2026-04-06"},
        headers=floor.headers,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["agent_name"] for r in rows] == [
        '\'=HYPERLINK("http://evil.example","x")',
        "'@Plain",
        "'@Plain",
    ]
    assert [r["note"] for r in rows] == ["'+1 555 0100", "-2.5", "'-cmd|' /C calc'!A0"]
    assert [r["hours"] for r in rows] == ["4.5", "1.0", "1.0"]
    assert rows[0]["start"] == "2026-04-06T08:00:00+00:00"
    for row in rows:
        for cell in row.values():
            assert not cell.startswith(("=", "+", "@", "\t", "\r")), cell

    coverage = await client.get(
        f"/api/v1/projects/{floor.project_a.id}/schedule.csv",
        params={"from": "2026-04-06", "view": "coverage"},
        headers=floor.headers,
    )
    lines = list(csv.reader(io.StringIO(coverage.text)))
    assert lines[0] == ["start", "end", "label", "on_queue", "scheduled"]
    assert len(lines) == 1 + 96
    assert lines[1 + 4 * 9][2:] == ["09:00", "2.0", "2.0"]

    agent_csv = await client.get(
        f"/api/v1/agents/{evil['id']}/schedule.csv",
        params={"from": "2026-04-06"},
        headers=floor.headers,
    )
    assert agent_csv.status_code == 200
    first = next(iter(csv.DictReader(io.StringIO(agent_csv.text))))
    assert first["agent_name"].startswith("'=")
