"""Booking shifts through the API: overlaps, certifications, time zones,
optimistic concurrency and visibility."""

from __future__ import annotations

import asyncio
from typing import Any

from httpx import AsyncClient

from service.core.config import Settings
from service.core.db import Database
from tests.factories import bearer, make_tenant, user_token
from tests.service.agents.factories import Floor, certify, make_agent


def shift(
    agent: dict[str, Any], project_id: Any, start: str, end: str, **extra: Any
) -> dict[str, Any]:
    return {
        "agent_id": agent["id"],
        "project_id": str(project_id),
        "start": start,
        "end": end,
        **extra,
    }


async def certified_agent(client: AsyncClient, floor: Floor, **fields: Any) -> dict[str, Any]:
    agent = await make_agent(client, floor.token, **fields)
    await certify(client, floor.token, agent["id"], floor.project_a.id)
    await certify(client, floor.token, agent["id"], floor.project_b.id)
    return agent


async def test_book_and_read_a_shift(client: AsyncClient, floor: Floor) -> None:
    agent = await certified_agent(client, floor)
    created = await client.post(
        "/api/v1/shifts",
        json=shift(
            agent, floor.project_a.id, "2026-04-06T08:00:00Z", "2026-04-06T12:00:00Z", note="early"
        ),
        headers=floor.headers,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["client_id"] == str(floor.client_a)
    assert body["activity"] == "on_queue"
    assert created.headers["etag"] == 'W/"1"'
    read = await client.get(f"/api/v1/shifts/{body['id']}", headers=floor.headers)
    assert read.status_code == 200
    assert read.json() == body


async def test_back_to_back_shifts_do_not_clash(client: AsyncClient, floor: Floor) -> None:
    agent = await certified_agent(client, floor)
    first = await client.post(
        "/api/v1/shifts",
        json=shift(agent, floor.project_a.id, "2026-04-06T08:00:00Z", "2026-04-06T12:00:00Z"),
        headers=floor.headers,
    )
    second = await client.post(
        "/api/v1/shifts",
        json=shift(agent, floor.project_b.id, "2026-04-06T12:00:00Z", "2026-04-06T16:00:00Z"),
        headers=floor.headers,
    )
    assert first.status_code == 201, first.text
    assert second.status_code == 201, second.text


async def test_an_overlap_on_another_project_is_409_naming_the_shift(
    client: AsyncClient, floor: Floor
) -> None:
    agent = await certified_agent(client, floor)
    first = await client.post(
        "/api/v1/shifts",
        json=shift(agent, floor.project_a.id, "2026-04-06T08:00:00Z", "2026-04-06T12:00:00Z"),
        headers=floor.headers,
    )
    clash = await client.post(
        "/api/v1/shifts",
        json=shift(agent, floor.project_b.id, "2026-04-06T11:59:00+00:00", "2026-04-06T13:00:00Z"),
        headers=floor.headers,
    )
    assert clash.status_code == 409
    assert clash.headers["content-type"] == "application/problem+json"
    problem = clash.json()
    assert problem["code"] == "shift_overlaps"
    assert problem["clashing_shift"]["id"] == first.json()["id"]
    assert problem["clashing_shift"]["project_id"] == str(floor.project_a.id)
    assert problem["clashing_shift"]["start"] == "2026-04-06T08:00:00+00:00"
    assert problem["clashing_shift"]["end"] == "2026-04-06T12:00:00+00:00"


async def test_two_concurrent_bookings_one_wins(client: AsyncClient, floor: Floor) -> None:
    agent = await certified_agent(client, floor)
    for _ in range(3):
        day = f"2026-05-{10 + _:02d}"
        responses = await asyncio.gather(
            client.post(
                "/api/v1/shifts",
                json=shift(agent, floor.project_a.id, f"{day}T08:00:00Z", f"{day}T12:00:00Z"),
                headers=floor.headers,
            ),
            client.post(
                "/api/v1/shifts",
                json=shift(agent, floor.project_b.id, f"{day}T10:00:00Z", f"{day}T14:00:00Z"),
                headers=floor.headers,
            ),
        )
        codes = sorted(r.status_code for r in responses)
        assert codes == [201, 409], [r.text for r in responses]
        winner = next(r for r in responses if r.status_code == 201).json()
        loser = next(r for r in responses if r.status_code == 409).json()
        assert loser["code"] == "shift_overlaps"
        assert loser["clashing_shift"]["id"] == winner["id"]
