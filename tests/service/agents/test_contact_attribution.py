"""Contacts that landed with an agent key no agent held are attributed to the
agent that is given the key later (migration 0013, `attribute_contacts`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from httpx import AsyncClient
from sqlalchemy import text

from service.core.config import Settings
from service.core.db import Database
from tests.factories import bearer
from tests.service.agents.factories import make_agent
from tests.service.ingest.conftest import Site, make_site

T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)


async def land(client: AsyncClient, site: Site, agent_key: str, n: int) -> dict[str, Any]:
    records = []
    for i in range(n):
        queued = T0 + timedelta(minutes=i)
        records.append(
            {
                "external_id": f"{agent_key}-{i}",
                "queue_key": site.queue,
                "queued_at": queued.isoformat(),
                "outcome": "answered",
                "answered_at": (queued + timedelta(seconds=10)).isoformat(),
                "talk_s": 60,
                "agent_key": agent_key,
            }
        )
    response = await client.post(
        "/api/v1/contacts:batch", json={"records": records}, headers=bearer(site.seed.admin_token)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def agents_of(db: Database, tenant_id: uuid.UUID, agent_key: str) -> list[str | None]:
    async with db.admin_transaction() as admin:
        rows = await admin.execute(
            text(
                "select agent_id from contacts where tenant_id = :t and agent_key = :k"
                " order by external_id"
            ),
            {"t": tenant_id, "k": agent_key},
        )
        return [str(r[0]) if r[0] else None for r in rows]


async def test_a_new_agent_takes_the_contacts_its_key_landed_without(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    other = await make_site(client, settings, db)  # another tenant, the same key
    receipt = await land(client, site, "SIP/77", 3)
    assert receipt["accepted"] == 3
    assert await agents_of(db, site.seed.id, "SIP/77") == [None, None, None]
    await land(client, other, "SIP/77", 2)

    agent = await make_agent(client, site.seed.admin_token, external_ids={"asterisk": "SIP/77"})

    assert await agents_of(db, site.seed.id, "SIP/77") == [agent["id"]] * 3
    assert await agents_of(db, other.seed.id, "SIP/77") == [None, None]
    # A contact sent again is a duplicate and keeps its agent.
    again = await land(client, site, "SIP/77", 3)
    assert again["duplicates"] == 3
    assert await agents_of(db, site.seed.id, "SIP/77") == [agent["id"]] * 3


async def test_an_id_added_to_an_agent_takes_its_contacts_and_no_one_elses(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    await land(client, site, "SIP/78", 2)
    await land(client, site, "SIP/79", 1)
    agent = await make_agent(client, site.seed.admin_token)
    patched = await client.patch(
        f"/api/v1/agents/{agent['id']}",
        json={"external_ids": {"asterisk": "SIP/78"}},
        headers={**bearer(site.seed.admin_token), "If-Match": "*"},
    )
    assert patched.status_code == 200, patched.text
    assert await agents_of(db, site.seed.id, "SIP/78") == [agent["id"]] * 2
    assert await agents_of(db, site.seed.id, "SIP/79") == [None]
    # The site's own agent keeps the contacts it had when they landed.
    await land(client, site, site.agent_key, 1)
    assert await agents_of(db, site.seed.id, site.agent_key) == [str(site.agent_id)]
