"""Booking shifts through the API: overlaps, certifications, time zones,
optimistic concurrency and visibility."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from httpx import AsyncClient
from sqlalchemy import text

from service.core.config import Settings
from service.core.db import Database
from tests.factories import bearer, make_tenant, user_token
from tests.service.agents.factories import Floor, certify, make_agent, make_floor


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
    # Clashing bookings may also deadlock inside the constraint check; either
    # way the outcome must be one 201 and one 409 naming the winner.
    for n in range(6):
        day = f"2026-05-{10 + n:02d}"
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


async def test_a_shift_needs_a_certification_on_its_local_start_date(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    floor = await make_floor(client, settings, db, time_zone_a="Asia/Tehran")
    agent = await make_agent(client, floor.token)
    await certify(client, floor.token, agent["id"], floor.project_a.id, "2026-04-07")
    # 20:00Z is 23:30 on the 6th in Tehran (UTC+3:30): before the certification.
    early = await client.post(
        "/api/v1/shifts",
        json=shift(agent, floor.project_a.id, "2026-04-06T20:00:00Z", "2026-04-06T23:00:00Z"),
        headers=floor.headers,
    )
    assert early.status_code == 422
    assert early.json()["code"] == "agent_not_certified"
    assert early.json()["date"] == "2026-04-06"
    # 21:00Z is 00:30 on the 7th in Tehran.
    ok = await client.post(
        "/api/v1/shifts",
        json=shift(agent, floor.project_a.id, "2026-04-06T21:00:00Z", "2026-04-06T23:00:00Z"),
        headers=floor.headers,
    )
    assert ok.status_code == 201, ok.text
    uncertified = await client.post(
        "/api/v1/shifts",
        json=shift(agent, floor.project_b.id, "2026-04-08T08:00:00Z", "2026-04-08T12:00:00Z"),
        headers=floor.headers,
    )
    assert uncertified.status_code == 422
    assert uncertified.json()["field"] == "project_id"
    training = await client.post(
        "/api/v1/shifts",
        json=shift(
            agent,
            floor.project_b.id,
            "2026-04-08T08:00:00Z",
            "2026-04-08T12:00:00Z",
            activity="training",
        ),
        headers=floor.headers,
    )
    assert training.status_code == 201, training.text


async def test_an_ended_certification_does_not_count(client: AsyncClient, floor: Floor) -> None:
    agent = await make_agent(client, floor.token)
    await certify(
        client,
        floor.token,
        agent["id"],
        floor.project_a.id,
        "2026-01-01",
        certified_until="2026-03-31",
    )
    after = await client.post(
        "/api/v1/shifts",
        json=shift(agent, floor.project_a.id, "2026-04-01T08:00:00Z", "2026-04-01T12:00:00Z"),
        headers=floor.headers,
    )
    assert after.status_code == 422
    assert after.json()["code"] == "agent_not_certified"


async def test_a_night_shift_needs_the_certification_on_its_second_day_too(
    client: AsyncClient, floor: Floor
) -> None:
    agent = await make_agent(client, floor.token)
    await certify(
        client,
        floor.token,
        agent["id"],
        floor.project_a.id,
        "2026-01-01",
        certified_until="2026-03-31",
    )
    # 22:00 on the last certified day until 06:00 the next day (project in UTC).
    overnight = await client.post(
        "/api/v1/shifts",
        json=shift(agent, floor.project_a.id, "2026-03-31T22:00:00Z", "2026-04-01T06:00:00Z"),
        headers=floor.headers,
    )
    assert overnight.status_code == 422, overnight.text
    assert overnight.json()["code"] == "agent_not_certified"
    assert "2026-03-31 to 2026-04-01" in overnight.json()["detail"]
    # Ending at midnight, its last instant is still on the certified day.
    until_midnight = await client.post(
        "/api/v1/shifts",
        json=shift(agent, floor.project_a.id, "2026-03-31T16:00:00Z", "2026-04-01T00:00:00Z"),
        headers=floor.headers,
    )
    assert until_midnight.status_code == 201, until_midnight.text


async def test_bad_times_and_references_are_422(client: AsyncClient, floor: Floor) -> None:
    agent = await certified_agent(client, floor)
    cases = [
        (
            shift(agent, floor.project_a.id, "2026-04-06T08:00:00", "2026-04-06T12:00:00Z"),
            "validation_failed",
        ),
        (
            shift(agent, floor.project_a.id, "2026-04-06T08:00:00Z", "2026-04-06T12:00:00"),
            "validation_failed",
        ),
        (
            shift(agent, floor.project_a.id, "2026-04-06T12:00:00Z", "2026-04-06T12:00:00Z"),
            "invalid_range",
        ),
        (
            shift(agent, floor.project_a.id, "2026-04-06T12:00:00Z", "2026-04-06T08:00:00Z"),
            "invalid_range",
        ),
        (
            shift(agent, floor.project_a.id, "2026-04-06T00:00:00Z", "2026-04-07T00:00:01Z"),
            "invalid_range",
        ),
        (
            shift(
                {"id": str(uuid.uuid4())},
                floor.project_a.id,
                "2026-04-06T08:00:00Z",
                "2026-04-06T09:00:00Z",
            ),
            "unknown_agent",
        ),
        (
            shift(agent, uuid.uuid4(), "2026-04-06T08:00:00Z", "2026-04-06T09:00:00Z"),
            "unknown_project",
        ),
        (
            {
                **shift(agent, floor.project_a.id, "2026-04-06T08:00:00Z", "2026-04-06T09:00:00Z"),
                "activity": "lunch",
            },
            "validation_failed",
        ),
        (
            {
                **shift(agent, floor.project_a.id, "2026-04-06T08:00:00Z", "2026-04-06T09:00:00Z"),
                "version": 3,
            },
            "validation_failed",
        ),
    ]
    for body, code in cases:
        response = await client.post("/api/v1/shifts", json=body, headers=floor.headers)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["code"] == code, (body, response.text)


async def test_an_inactive_agent_cannot_be_booked(client: AsyncClient, floor: Floor) -> None:
    agent = await certified_agent(client, floor)
    await client.patch(
        f"/api/v1/agents/{agent['id']}",
        json={"status": "inactive"},
        headers={**floor.headers, "If-Match": "*"},
    )
    response = await client.post(
        "/api/v1/shifts",
        json=shift(agent, floor.project_a.id, "2026-04-06T08:00:00Z", "2026-04-06T12:00:00Z"),
        headers=floor.headers,
    )
    assert response.status_code == 422
    assert response.json()["code"] == "agent_inactive"


async def test_an_agent_deleted_while_being_booked_is_422_not_500(
    client: AsyncClient, floor: Floor, db: Database
) -> None:
    agent = await certified_agent(client, floor)
    async with db.admin_transaction() as admin:
        # The agent (no history yet) is being deleted: the booking reads it
        # still there, and its insert waits on the foreign key until this commits.
        await admin.execute(
            text("delete from agents where tenant_id = :t and id = :a"),
            {"t": floor.seed.id, "a": agent["id"]},
        )
        booking = asyncio.create_task(
            client.post(
                "/api/v1/shifts",
                json=shift(
                    agent, floor.project_a.id, "2026-04-06T08:00:00Z", "2026-04-06T12:00:00Z"
                ),
                headers=floor.headers,
            )
        )
        await asyncio.sleep(0.5)
        assert not booking.done()
    response = await booking
    assert response.status_code == 422, response.text
    assert (response.json()["code"], response.json()["field"]) == ("unknown_agent", "agent_id")


async def test_resending_a_shifts_booking_unchanged_is_no_rebooking(
    client: AsyncClient, floor: Floor
) -> None:
    """A form that PATCHes every field to change the note is not a new booking:
    a certification that ended since does not refuse it (only a move does)."""
    agent = await certified_agent(client, floor)
    booked = await client.post(
        "/api/v1/shifts",
        json=shift(agent, floor.project_a.id, "2026-04-06T08:00:00Z", "2026-04-06T12:00:00Z"),
        headers=floor.headers,
    )
    assert booked.status_code == 201, booked.text
    ended = await client.patch(
        f"/api/v1/agents/{agent['id']}/certifications/{floor.project_a.id}",
        json={"certified_until": "2026-03-31"},
        headers=floor.headers,
    )
    assert ended.status_code == 200, ended.text
    url = f"/api/v1/shifts/{booked.json()['id']}"
    same = shift(agent, floor.project_a.id, "2026-04-06T10:00:00+02:00", "2026-04-06T12:00:00Z")
    noted = await client.patch(
        url,
        json={**same, "activity": "on_queue", "note": "bring headset"},
        headers={**floor.headers, "If-Match": booked.headers["etag"]},
    )
    assert noted.status_code == 200, noted.text
    assert noted.json()["note"] == "bring headset"
    moved = await client.patch(
        url,
        json={"end": "2026-04-06T13:00:00Z"},
        headers={**floor.headers, "If-Match": noted.headers["etag"]},
    )
    assert moved.status_code == 422, moved.text
    assert moved.json()["code"] == "agent_not_certified"


async def test_a_deleted_shift_is_in_the_audit_log_with_what_it_held(
    client: AsyncClient, floor: Floor
) -> None:
    agent = await certified_agent(client, floor)
    booked = await client.post(
        "/api/v1/shifts",
        json={
            **shift(agent, floor.project_a.id, "2026-04-07T08:00:00Z", "2026-04-07T12:00:00Z"),
            "note": "cover for Ana",
        },
        headers=floor.headers,
    )
    assert booked.status_code == 201, booked.text
    shift_id = booked.json()["id"]
    deleted = await client.delete(
        f"/api/v1/shifts/{shift_id}", headers={**floor.headers, "If-Match": 'W/"1"'}
    )
    assert deleted.status_code == 204
    log = await client.get("/api/v1/audit-log", headers=floor.headers)
    assert log.status_code == 200, log.text
    entry = next(
        i
        for i in log.json()["items"]
        if i["action"] == "shifts.delete" and i["object_id"] == shift_id
    )
    summary = entry["summary"]
    assert summary["agent_id"] == agent["id"]
    assert summary["project_id"] == str(floor.project_a.id)
    assert summary["starts_at"].startswith("2026-04-07 08:00:00")
    assert summary["note"] == "cover for Ana"
    assert "tenant_id" not in summary


async def test_update_with_etag_and_overlap_rules(client: AsyncClient, floor: Floor) -> None:
    agent = await certified_agent(client, floor)
    first = (
        await client.post(
            "/api/v1/shifts",
            json=shift(agent, floor.project_a.id, "2026-04-06T08:00:00Z", "2026-04-06T12:00:00Z"),
            headers=floor.headers,
        )
    ).json()
    second = (
        await client.post(
            "/api/v1/shifts",
            json=shift(agent, floor.project_b.id, "2026-04-06T13:00:00Z", "2026-04-06T17:00:00Z"),
            headers=floor.headers,
        )
    ).json()
    url = f"/api/v1/shifts/{second['id']}"
    missing = await client.patch(url, json={"note": "x"}, headers=floor.headers)
    assert missing.status_code == 428
    stale = await client.patch(
        url, json={"note": "x"}, headers={**floor.headers, "If-Match": 'W/"9"'}
    )
    assert stale.status_code == 412
    # Overlapping its own old range is no clash.
    moved = await client.patch(
        url,
        json={"start": "2026-04-06T12:00:00Z", "end": "2026-04-06T16:00:00Z"},
        headers={**floor.headers, "If-Match": 'W/"1"'},
    )
    assert moved.status_code == 200, moved.text
    assert moved.headers["etag"] == 'W/"2"'
    assert moved.json()["start"] == "2026-04-06T12:00:00Z"
    clash = await client.patch(
        url,
        json={"start": "2026-04-06T11:00:00Z"},
        headers={**floor.headers, "If-Match": 'W/"2"'},
    )
    assert clash.status_code == 409
    assert clash.json()["clashing_shift"]["id"] == first["id"]
    unchanged = await client.get(url, headers=floor.headers)
    assert unchanged.json()["start"] == "2026-04-06T12:00:00Z"
    assert unchanged.headers["etag"] == 'W/"2"'
    deleted = await client.delete(
        f"/api/v1/shifts/{first['id']}", headers={**floor.headers, "If-Match": 'W/"1"'}
    )
    assert deleted.status_code == 204
    now_free = await client.patch(
        url,
        json={"start": "2026-04-06T11:00:00Z"},
        headers={**floor.headers, "If-Match": 'W/"2"'},
    )
    assert now_free.status_code == 200, now_free.text


async def test_list_filters_sorts_and_paginates(client: AsyncClient, floor: Floor) -> None:
    one = await certified_agent(client, floor)
    two = await certified_agent(client, floor)
    made = []
    for day in range(6, 11):
        for agent, project, activity in (
            (one, floor.project_a.id, "on_queue"),
            (two, floor.project_b.id, "training"),
        ):
            response = await client.post(
                "/api/v1/shifts",
                json=shift(
                    agent,
                    project,
                    f"2026-04-{day:02d}T08:00:00Z",
                    f"2026-04-{day:02d}T12:00:00Z",
                    activity=activity,
                ),
                headers=floor.headers,
            )
            assert response.status_code == 201, response.text
            made.append(response.json())

    async def ids(**params: str) -> list[str]:
        found: list[str] = []
        cursor = None
        while True:
            query = {**params, "limit": "3", **({"cursor": cursor} if cursor else {})}
            page = await client.get("/api/v1/shifts", params=query, headers=floor.headers)
            assert page.status_code == 200, page.text
            found += [s["id"] for s in page.json()["items"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                return found

    by_start = sorted(made, key=lambda s: (s["start"], s["id"]))
    assert await ids() == [s["id"] for s in by_start]
    assert await ids(order="desc") == [s["id"] for s in reversed(by_start)]
    assert await ids(agent_id=one["id"]) == [
        s["id"] for s in by_start if s["agent_id"] == one["id"]
    ]
    assert await ids(project_id=str(floor.project_b.id), activity="training") == [
        s["id"] for s in by_start if s["agent_id"] == two["id"]
    ]
    window = await ids(**{"from": "2026-04-07T11:00:00Z", "to": "2026-04-09T08:00:00Z"})
    assert window == [s["id"] for s in by_start if "2026-04-07" <= s["start"][:10] <= "2026-04-08"]
    naive = await client.get(
        "/api/v1/shifts", params={"from": "2026-04-07T11:00:00"}, headers=floor.headers
    )
    assert naive.status_code == 422


async def test_another_tenants_shift_does_not_exist(
    client: AsyncClient, settings: Settings, db: Database, floor: Floor
) -> None:
    agent = await certified_agent(client, floor)
    mine = (
        await client.post(
            "/api/v1/shifts",
            json=shift(agent, floor.project_a.id, "2026-04-06T08:00:00Z", "2026-04-06T12:00:00Z"),
            headers=floor.headers,
        )
    ).json()
    other = await make_tenant(client, settings)
    theirs = bearer(other.admin_token)
    url = f"/api/v1/shifts/{mine['id']}"
    assert (await client.get(url, headers=theirs)).status_code == 404
    assert (
        await client.patch(url, json={"note": "x"}, headers={**theirs, "If-Match": "*"})
    ).status_code == 404
    assert (await client.delete(url, headers=theirs)).status_code == 404
    listed = await client.get("/api/v1/shifts", headers=theirs)
    assert listed.json()["items"] == []
    booked = await client.post(
        "/api/v1/shifts",
        json=shift(agent, floor.project_a.id, "2026-04-07T08:00:00Z", "2026-04-07T12:00:00Z"),
        headers=theirs,
    )
    assert booked.status_code == 422
    assert booked.json()["code"] == "unknown_project"
    schedule = await client.get(
        f"/api/v1/projects/{floor.project_a.id}/schedule",
        params={"from": "2026-04-06"},
        headers=theirs,
    )
    assert schedule.status_code == 404
    agent_schedule = await client.get(
        f"/api/v1/agents/{agent['id']}/schedule", params={"from": "2026-04-06"}, headers=theirs
    )
    assert agent_schedule.status_code == 404


async def test_client_viewers_see_their_client_only_and_cannot_write(
    client: AsyncClient, db: Database, floor: Floor
) -> None:
    agent = await certified_agent(client, floor)
    on_a = (
        await client.post(
            "/api/v1/shifts",
            json=shift(agent, floor.project_a.id, "2026-04-06T08:00:00Z", "2026-04-06T12:00:00Z"),
            headers=floor.headers,
        )
    ).json()
    on_b = (
        await client.post(
            "/api/v1/shifts",
            json=shift(agent, floor.project_b.id, "2026-04-06T12:00:00Z", "2026-04-06T16:00:00Z"),
            headers=floor.headers,
        )
    ).json()
    _, viewer = await user_token(client, db, floor.seed, "client_viewer", client_id=floor.client_a)
    headers = bearer(viewer)
    listed = await client.get("/api/v1/shifts", headers=headers)
    assert [s["id"] for s in listed.json()["items"]] == [on_a["id"]]
    assert (await client.get(f"/api/v1/shifts/{on_b['id']}", headers=headers)).status_code == 404
    own = await client.get(f"/api/v1/shifts/{on_a['id']}", headers=headers)
    assert own.status_code == 200
    foreign = await client.get(
        f"/api/v1/projects/{floor.project_b.id}/schedule",
        params={"from": "2026-04-06"},
        headers=headers,
    )
    assert foreign.status_code == 404
    day = await client.get(
        f"/api/v1/agents/{agent['id']}/schedule", params={"from": "2026-04-06"}, headers=headers
    )
    assert [s["id"] for s in day.json()["shifts"]] == [on_a["id"]]
    write = await client.patch(
        f"/api/v1/shifts/{on_a['id']}", json={"note": "x"}, headers={**headers, "If-Match": "*"}
    )
    assert write.status_code == 403
    book = await client.post(
        "/api/v1/shifts",
        json=shift(agent, floor.project_a.id, "2026-04-07T08:00:00Z", "2026-04-07T12:00:00Z"),
        headers=headers,
    )
    assert book.status_code == 403
    _, analyst = await user_token(client, db, floor.seed, "analyst")
    batch = await client.post("/api/v1/shifts:batch", json={"rows": []}, headers=bearer(analyst))
    assert batch.status_code == 403


async def test_a_supervisor_is_told_of_a_clash_on_a_project_it_cannot_see(
    client: AsyncClient, db: Database, floor: Floor
) -> None:
    agent = await certified_agent(client, floor)
    on_b = (
        await client.post(
            "/api/v1/shifts",
            json=shift(agent, floor.project_b.id, "2026-04-06T08:00:00Z", "2026-04-06T12:00:00Z"),
            headers=floor.headers,
        )
    ).json()
    user, token = await user_token(client, db, floor.seed, "supervisor")
    async with db.admin_transaction() as admin:
        await admin.execute(
            text("insert into user_projects (tenant_id, user_id, project_id) values (:t, :u, :p)"),
            {"t": floor.seed.id, "u": user.id, "p": floor.project_a.id},
        )
    headers = bearer(token)
    assert (await client.get(f"/api/v1/shifts/{on_b['id']}", headers=headers)).status_code == 404
    clash = await client.post(
        "/api/v1/shifts",
        json=shift(agent, floor.project_a.id, "2026-04-06T10:00:00Z", "2026-04-06T14:00:00Z"),
        headers=headers,
    )
    assert clash.status_code == 409
    seen = clash.json()["clashing_shift"]
    assert seen == {
        "id": on_b["id"],
        "project_id": None,
        "start": "2026-04-06T08:00:00+00:00",
        "end": "2026-04-06T12:00:00+00:00",
    }
