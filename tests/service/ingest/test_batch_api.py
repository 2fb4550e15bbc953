"""POST /contacts:batch: one-pass validation, per-row receipts, Idempotency-Key."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from httpx import AsyncClient
from sqlalchemy import text

from service.core.config import Settings
from service.core.db import Database
from tests.factories import bearer, user_token
from tests.service.ingest.conftest import Site, make_site

T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)


def row(site: Site, n: int, **kw: Any) -> dict[str, Any]:
    queued = T0 + timedelta(minutes=n)
    base: dict[str, Any] = {
        "external_id": f"c-{n}",
        "queue_key": site.queue,
        "queued_at": queued.isoformat(),
        "outcome": "answered",
        "answered_at": (queued + timedelta(seconds=15)).isoformat(),
        "talk_s": 120,
        "agent_key": site.agent_key,
    }
    base.update(kw)
    return base


async def contacts_of(db: Database, site: Site) -> int:
    async with db.admin_transaction() as admin:
        return int(
            (
                await admin.execute(
                    text("select count(*) from contacts where tenant_id = :t"), {"t": site.seed.id}
                )
            ).scalar_one()
        )


async def test_batch_lands_valid_rows_and_names_each_bad_one(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    records = [row(site, n) for n in range(1, 101)]
    records[9]["queued_at"] = "2026-05-04T08:10:00"  # naive
    records[19]["csat"] = 9  # off the 1-5 scale
    records[29]["outcome"] = "vanished"
    records[39] = {**records[39], "tenant_id": str(uuid.uuid4())}  # server-owned / unknown field
    response = await client.post(
        "/api/v1/contacts:batch", json={"records": records}, headers=bearer(site.seed.admin_token)
    )
    assert response.status_code == 200, response.text
    receipt = response.json()
    assert receipt["received"] == 100
    assert receipt["accepted"] == 96
    assert [(p["row"], p["field"]) for p in receipt["rejected"]] == [
        (10, "queued_at"),
        (20, "csat"),
        (30, "outcome"),
        (40, "tenant_id"),
    ]
    assert await contacts_of(db, site) == 96


async def test_resending_a_batch_duplicates_nothing(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    body = {"records": [row(site, n) for n in range(1, 21)]}
    first = (
        await client.post(
            "/api/v1/contacts:batch", json=body, headers=bearer(site.seed.admin_token)
        )
    ).json()
    second = (
        await client.post(
            "/api/v1/contacts:batch", json=body, headers=bearer(site.seed.admin_token)
        )
    ).json()
    assert (first["accepted"], second["accepted"], second["duplicates"]) == (20, 0, 20)
    assert await contacts_of(db, site) == 20


async def test_idempotency_key_replays_the_first_answer(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    headers = {**bearer(site.seed.admin_token), "Idempotency-Key": "batch-0001"}
    body = {"records": [row(site, n) for n in range(1, 6)]}
    first = await client.post("/api/v1/contacts:batch", json=body, headers=headers)
    replay = await client.post("/api/v1/contacts:batch", json=body, headers=headers)
    assert first.status_code == replay.status_code == 200
    assert replay.content == first.content  # identical, not "5 duplicates"
    assert replay.headers["idempotent-replayed"] == "true"
    other = await client.post(
        "/api/v1/contacts:batch", json={"records": [row(site, 99)]}, headers=headers
    )
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    assert await contacts_of(db, site) == 5


async def test_idempotency_key_in_flight_is_409(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    body = {"records": [row(site, 1)]}
    headers = {**bearer(site.seed.admin_token), "Idempotency-Key": "slow-one"}
    # Two identical requests at once: one runs, the other finds it in flight or replays it.
    a, b = await asyncio.gather(
        client.post("/api/v1/contacts:batch", json=body, headers=headers),
        client.post("/api/v1/contacts:batch", json=body, headers=headers),
    )
    statuses = sorted([a.status_code, b.status_code])
    assert statuses in ([200, 200], [200, 409])
    if statuses == [200, 409]:
        assert (
            next(r for r in (a, b) if r.status_code == 409).json()["code"]
            == "idempotency_in_flight"
        )
    assert await contacts_of(db, site) == 1


async def test_another_tenants_project_is_refused(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    victim = await make_site(client, settings, db)
    attacker = await make_site(client, settings, db)
    body = {
        "records": [{**row(attacker, 1), "queue_key": None, "project_id": str(victim.project_id)}]
    }
    body["records"][0].pop("queue_key")
    response = await client.post(
        "/api/v1/contacts:batch", json=body, headers=bearer(attacker.seed.admin_token)
    )
    assert response.status_code == 200
    assert response.json()["rejected"] == [
        {"row": 1, "field": "project_id", "reason": "no such project"}
    ]
    assert await contacts_of(db, victim) == 0


async def test_who_may_push_contacts(client: AsyncClient, settings: Settings, db: Database) -> None:
    site = await make_site(client, settings, db)
    _, analyst = await user_token(client, db, site.seed, "analyst")
    body = {"records": [row(site, 1)]}
    assert (
        await client.post("/api/v1/contacts:batch", json=body, headers=bearer(analyst))
    ).status_code == 403
    created = await client.post(
        "/api/v1/api-tokens",
        json={"name": "pbx", "scopes": ["contacts:write"]},
        headers=bearer(site.seed.admin_token),
    )
    token = created.json()["token"]
    ok = await client.post("/api/v1/contacts:batch", json=body, headers=bearer(token))
    assert ok.status_code == 200
    assert ok.json()["accepted"] == 1


async def test_malformed_bodies_are_4xx(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    auth = {**bearer(site.seed.admin_token), "content-type": "application/json"}
    not_json = await client.post("/api/v1/contacts:batch", content=b"{nope", headers=auth)
    assert not_json.status_code == 422
    assert not_json.json()["code"] == "batch_invalid"
    wrong_shape = await client.post("/api/v1/contacts:batch", json={"rows": []}, headers=auth)
    assert wrong_shape.status_code == 422
    too_many = await client.post(
        "/api/v1/contacts:batch", json={"records": [{"x": 1}] * 10_001}, headers=auth
    )
    assert too_many.status_code == 413
    assert too_many.json()["code"] == "batch_too_large"


async def test_a_body_declared_as_anything_but_json_is_415(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    body = b'{"records": [{"external_id": "c-1"}]}'
    for path in ("/api/v1/contacts:batch", "/api/v1/agent-states:batch"):
        for media in ("text/plain", "application/x-www-form-urlencoded", "text/csv"):
            refused = await client.post(
                path,
                content=body,
                headers={**bearer(site.seed.admin_token), "content-type": media},
            )
            assert refused.status_code == 415, (path, media, refused.text)
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["code"] == "unsupported_media_type"
            assert refused.json()["field"] == "Content-Type"
    # JSON with parameters, a +json type and no declared type at all are read as JSON.
    records = {"records": [row(site, 1)]}
    for media in ("application/json; charset=utf-8", "application/vnd.callpact+json", None):
        headers = bearer(site.seed.admin_token)
        if media:
            headers["content-type"] = media
        ok = await client.post(
            "/api/v1/contacts:batch", content=json.dumps(records).encode(), headers=headers
        )
        assert ok.status_code == 200, (media, ok.text)
    assert await contacts_of(db, site) == 1


async def stored(db: Database, site: Site) -> list[tuple[str, int, int | None]]:
    async with db.admin_transaction() as admin:
        rows = await admin.execute(
            text(
                "select external_id, talk_ms, source_version from contacts where tenant_id = :t"
                " order by external_id"
            ),
            {"t": site.seed.id},
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_an_older_version_after_an_identical_newer_copy_changes_nothing(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """v1 lands; v3 repeats its facts (a duplicate) yet is the newest version seen; v2,
    with other facts, arrives late: it is older than v3 and must change nothing."""
    site = await make_site(client, settings, db)
    auth = bearer(site.seed.admin_token)

    async def send(record: dict[str, Any]) -> dict[str, Any]:
        response = await client.post(
            "/api/v1/contacts:batch", json={"records": [record]}, headers=auth
        )
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    assert (await send(row(site, 1, source_version=1)))["accepted"] == 1
    assert (await send(row(site, 1, source_version=3)))["duplicates"] == 1
    late = await send(row(site, 1, source_version=2, talk_s=999))
    assert (late["stale"], late["updated"]) == (1, 0)
    assert await stored(db, site) == [("c-1", 120_000, 3)]
    # The newest version seen is the bar from now on, for newer copies too.
    newer = await send(row(site, 1, source_version=4, talk_s=130))
    assert newer["updated"] == 1
    async with db.admin_transaction() as admin:
        versions = (
            await admin.execute(
                text(
                    "select old_version, new_version from contact_corrections where tenant_id = :t"
                ),
                {"t": site.seed.id},
            )
        ).all()
    assert [tuple(v) for v in versions] == [(3, 4)]


async def test_two_versions_of_one_contact_in_one_batch_receipt(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """The newest version inside a batch wins; an older one with other facts is counted as
    stale (it changes nothing), never as a duplicate (a re-sent identical record)."""
    site = await make_site(client, settings, db)
    auth = bearer(site.seed.admin_token)
    newer, older = row(site, 1, source_version=2, talk_s=200), row(site, 1, source_version=1)
    first = (
        await client.post("/api/v1/contacts:batch", json={"records": [newer, older]}, headers=auth)
    ).json()
    assert (first["accepted"], first["duplicates"], first["stale"], first["updated"]) == (
        1,
        0,
        1,
        0,
    )
    assert await stored(db, site) == [("c-1", 200_000, 2)]
    # The same record twice in one batch is one contact and one duplicate.
    twice = (
        await client.post(
            "/api/v1/contacts:batch", json={"records": [row(site, 2), row(site, 2)]}, headers=auth
        )
    ).json()
    assert (twice["accepted"], twice["duplicates"], twice["stale"]) == (1, 1, 0)


async def test_an_answered_contact_without_answered_at_is_refused(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """KPIS.md: answered means `answered_at` set (the CSV import refuses such a row too);
    otherwise it would count as answered in queue KPIs and be missing from agent KPIs."""
    site = await make_site(client, settings, db)
    queued = T0 + timedelta(minutes=1)
    bad = row(site, 1, answered_at=None, ended_at=(queued + timedelta(minutes=3)).isoformat())
    missing = row(site, 2, wait_s=10)
    missing.pop("answered_at")
    response = await client.post(
        "/api/v1/contacts:batch",
        json={"records": [bad, missing, row(site, 3)]},
        headers=bearer(site.seed.admin_token),
    )
    assert response.status_code == 200
    receipt = response.json()
    assert receipt["accepted"] == 1
    assert [(p["row"], p["field"]) for p in receipt["rejected"]] == [
        (1, "answered_at"),
        (2, "answered_at"),
    ]


async def test_more_keyed_batches_at_once_than_pooled_connections_all_land(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """A keyed request took a second pooled connection (for the key's claim) while its own
    transaction held one: as many keyed requests at once as the pool has connections each
    held one and waited for a second, and every one of them answered 503 after the pool's
    timeout. The key is claimed on the request's own connection now."""
    site = await make_site(client, settings, db)
    n = settings.database.pool_size + 2
    responses = await asyncio.gather(
        *(
            client.post(
                "/api/v1/contacts:batch",
                json={"records": [row(site, i)]},
                headers={**bearer(site.seed.admin_token), "Idempotency-Key": f"pbx-{i}"},
            )
            for i in range(n)
        )
    )
    assert [r.status_code for r in responses] == [200] * n, [r.text for r in responses]
    assert await contacts_of(db, site) == n


async def test_a_key_whose_request_failed_is_free_at_once(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    headers = {**bearer(site.seed.admin_token), "Idempotency-Key": "retry-me"}
    refused = await client.post(
        "/api/v1/contacts:batch", json={"records": [{"x": 1}] * 10_001}, headers=headers
    )
    assert refused.status_code == 413
    # The same key with a corrected body: a new request, not a reuse of the key.
    body = {"records": [row(site, 1)]}
    first = await client.post("/api/v1/contacts:batch", json=body, headers=headers)
    assert (first.status_code, first.json()["accepted"]) == (200, 1)
    replay = await client.post("/api/v1/contacts:batch", json=body, headers=headers)
    assert replay.content == first.content
    assert replay.headers["idempotent-replayed"] == "true"
    # Per actor: an API token of the same tenant with the same key runs its own request.
    created = await client.post(
        "/api/v1/api-tokens",
        json={"name": "pbx", "scopes": ["contacts:write"]},
        headers=bearer(site.seed.admin_token),
    )
    token_headers = {**bearer(created.json()["token"]), "Idempotency-Key": "retry-me"}
    other = await client.post("/api/v1/contacts:batch", json=body, headers=token_headers)
    assert other.status_code == 200
    assert other.json()["duplicates"] == 1
    assert "idempotent-replayed" not in other.headers
