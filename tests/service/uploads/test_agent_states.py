"""POST /agent-states:batch: set-wise, idempotent per event and per request, unmapped agents
reported (not fatal), queues mapped only within the caller's tenant."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient

from service.core.config import Settings
from service.core.db import Database
from tests.factories import bearer, user_token
from tests.service.uploads.conftest import Center, make_center, scalar, upload

BATCH = "/api/v1/agent-states:batch"


def event(agent: str, state: str, at: str, **kw: Any) -> dict[str, Any]:
    return {"agent_key": agent, "state": state, "at": at, **kw}


SHIFT = [
    event("Agent/1127", "available", "2026-03-02T08:00:00Z", queue_key="IT"),
    event("Agent/1127", "on_contact", "2026-03-02T08:05:00Z", queue_key="IT"),
    event("Agent/1127", "acw", "2026-03-02T08:09:00+01:00", queue_key="IT"),
    event("Agent/1127", "not_ready", "2026-03-02T08:10:00Z", reason="lunch"),
    event("Agent/9999", "available", "2026-03-02T08:00:00Z"),  # no such agent in the pool
    event("Agent/9999", "logged_out", "2026-03-02T09:00:00Z"),
    event("PJSIP/400", "available", "2026-03-02T08:00:00Z", queue_key="nowhere"),
    event("Agent/1127", "logged_out", "2026-03-02T17:00:00Z"),
]


async def events_of(db: Database, center: Center) -> list[tuple[Any, ...]]:
    async with db.admin_transaction() as admin:
        from sqlalchemy import text

        rows = await admin.execute(
            text(
                "select agent_id, state, reason, queue_key, project_id, at, source "
                "from agent_state_events where tenant_id = :t order by at, state"
            ),
            {"t": center.seed.id},
        )
        return [tuple(r) for r in rows]


async def test_a_batch_lands_mapped_agents_and_reports_the_rest(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    center = await make_center(client, settings, db)
    response = await client.post(BATCH, json={"events": SHIFT}, headers=center.headers)
    assert response.status_code == 200, response.text
    receipt = response.json()
    assert receipt == {
        "received": 8,
        "accepted": 6,
        "duplicates": 0,
        "unmapped": 2,
        "rejected_count": 0,
        "rejected": [],
        "unmapped_agents": {"Agent/9999": 2},
        "unmapped_queues": {"nowhere": 1},
    }
    rows = await events_of(db, center)
    assert len(rows) == 6
    by_state = {(r[0], r[1]): r for r in rows}
    on_call = by_state[(center.agent_1127, "on_contact")]
    assert on_call[4] == center.projects["IT"]  # queue IT -> the IT project
    assert str(by_state[(center.agent_1127, "acw")][5]) == "2026-03-02 07:09:00+00:00"
    assert by_state[(center.agent_1127, "not_ready")][2] == "lunch"
    assert by_state[(center.agent_400, "available")][3:5] == ("nowhere", None)
    # Data quality remembers who was unmapped.
    assert (
        await scalar(
            db,
            "select occurrences from ingest_issues where tenant_id = :t and source = 'agent_states' "
            "and kind = 'unmapped_agent' and subject = 'Agent/9999'",
            t=center.seed.id,
        )
        == 2
    )


async def test_resending_is_all_duplicates_and_idempotency_key_replays(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    center = await make_center(client, settings, db)
    body = {"events": SHIFT}
    first = (await client.post(BATCH, json=body, headers=center.headers)).json()
    again = (await client.post(BATCH, json=body, headers=center.headers)).json()
    assert (first["accepted"], again["accepted"], again["duplicates"], again["unmapped"]) == (
        6,
        0,
        6,
        2,
    )
    # The same event twice inside one batch is one row too.
    doubled = await client.post(
        BATCH,
        json={
            "events": [SHIFT[0], SHIFT[0], event("Agent/1127", "available", "2026-03-03T08:00:00Z")]
        },
        headers=center.headers,
    )
    assert (doubled.json()["accepted"], doubled.json()["duplicates"]) == (1, 2)
    assert len(await events_of(db, center)) == 7

    headers = {**center.headers, "Idempotency-Key": "states-0001"}
    body2 = {"events": [event("Agent/1127", "available", "2026-03-04T08:00:00Z")]}
    one = await client.post(BATCH, json=body2, headers=headers)
    replay = await client.post(BATCH, json=body2, headers=headers)
    assert one.status_code == replay.status_code == 200
    assert replay.content == one.content  # the first answer, not "1 duplicate"
    assert replay.headers["idempotent-replayed"] == "true"
    other = await client.post(BATCH, json={"events": SHIFT[:1]}, headers=headers)
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")
    assert len(await events_of(db, center)) == 8


async def test_bad_rows_are_named_and_the_rest_lands(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    center = await make_center(client, settings, db)
    events = [
        event("Agent/1127", "available", "2026-03-02T08:00:00"),  # naive
        event("Agent/1127", "sleeping", "2026-03-02T08:00:00Z"),
        {**event("Agent/1127", "acw", "2026-03-02T08:00:00Z"), "agent_id": "x"},
        event("", "available", "2026-03-02T08:00:00Z"),
        event("Agent/1127", "available", "2026-03-02T08:00:00Z", reason="a\x00b"),
        event("Agent/1127", "on_contact", "2026-03-02T08:01:00Z"),
    ]
    response = await client.post(BATCH, json={"events": events}, headers=center.headers)
    assert response.status_code == 200, response.text
    receipt = response.json()
    assert [(p["row"], p["field"]) for p in receipt["rejected"]] == [
        (1, "at"),
        (2, "state"),
        (3, "agent_id"),
        (4, "agent_key"),
        (5, "reason"),
    ]
    assert (receipt["received"], receipt["accepted"]) == (6, 1)
    assert len(await events_of(db, center)) == 1


async def test_malformed_and_oversized_bodies(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    center = await make_center(client, settings, db)
    headers = {**center.headers, "content-type": "application/json"}
    not_json = await client.post(BATCH, content=b"{nope", headers=headers)
    assert (not_json.status_code, not_json.json()["code"]) == (422, "batch_invalid")
    wrong = await client.post(BATCH, json={"records": []}, headers=headers)
    assert (wrong.status_code, wrong.json()["field"]) == (422, "records")
    too_many = await client.post(BATCH, json={"events": [{"x": 1}] * 10_001}, headers=headers)
    assert (too_many.status_code, too_many.json()["code"]) == (413, "batch_too_large")


async def test_who_may_push_agent_states(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    center = await make_center(client, settings, db)
    _, analyst = await user_token(client, db, center.seed, "analyst")
    body = {"events": SHIFT[:1]}
    assert (await client.post(BATCH, json=body, headers=bearer(analyst))).status_code == 403
    # A supervisor of the Support project only: an event naming queue IT is refused.
    supervisor, token = await user_token(client, db, center.seed, "supervisor")
    assigned = await client.put(
        f"/api/v1/users/{supervisor.id}/projects",
        json={"project_ids": [str(center.projects["Support"])]},
        headers=center.headers,
    )
    assert assigned.status_code == 200, assigned.text
    scoped = await client.post(
        BATCH,
        json={
            "events": [
                event("Agent/1127", "available", "2026-03-02T08:00:00Z", queue_key="IT"),
                event("Agent/1127", "available", "2026-03-02T08:00:00Z", queue_key="Support"),
            ]
        },
        headers=bearer(token),
    )
    assert scoped.status_code == 200, scoped.text
    assert scoped.json()["accepted"] == 1
    assert scoped.json()["rejected"] == [
        {"row": 1, "field": "queue_key", "reason": "no project maps queue 'IT'"}
    ]


async def test_another_tenant_cannot_map_into_these_queues_or_agents(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """Tenant B sends A's queue names and agent keys: they mean nothing in B."""
    victim = await make_center(client, settings, db)
    attacker_seed = await make_center(client, settings, db)
    # B has no project mapping `IT` and no agent `Agent/1141` — A does not have one either,
    # but A has `Agent/1127` and the IT project; B deletes its own mappings to be a stranger.
    async with db.admin_transaction() as admin:
        from sqlalchemy import text

        await admin.execute(
            text("delete from agent_external_ids where tenant_id = :t"),
            {"t": attacker_seed.seed.id},
        )
        await admin.execute(
            text("update projects set queue_keys = '{}' where tenant_id = :t"),
            {"t": attacker_seed.seed.id},
        )
    before = await events_of(db, victim)
    states = await client.post(
        BATCH,
        json={"events": [event("Agent/1127", "available", "2026-03-02T08:00:00Z", queue_key="IT")]},
        headers=attacker_seed.headers,
    )
    assert states.json()["unmapped_agents"] == {"Agent/1127": 1}
    assert states.json()["accepted"] == 0
    log = (
        b"1675555753|1675555752.0|IT|NONE|ENTERQUEUE||200|1\n"
        b"1675555761|1675555752.0|IT|Agent/1127|CONNECT|8|1675555753.1|7\n"
        b"1675555766|1675555752.0|IT|Agent/1127|COMPLETEAGENT|8|5|1\n"
    )
    uploaded = await upload(client, attacker_seed, log, "queue_log", source="pbx")
    assert uploaded.status_code == 200, uploaded.text
    body = uploaded.json()
    assert (body["accepted"], body["rejected_count"], body["unmapped_queues"]) == (0, 1, {"IT": 1})
    assert body["problems"][0]["reason"] == "no project maps queue 'IT'"
    assert body["problems"][0]["line"] == 1
    assert body["agent_states"]["unmapped_agents"] == {"Agent/1127": 2}
    assert await events_of(db, victim) == before
    assert (
        await scalar(db, "select count(*) from contacts where tenant_id = :t", t=victim.seed.id)
        == 0
    )
