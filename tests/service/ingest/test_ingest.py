"""Idempotent ingestion and rollups that always equal the raw rows."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from httpx import AsyncClient
from sqlalchemy import text

from service.contacts.ingest import ingest_records
from service.contacts.records import ContactRecord
from service.core.config import Settings
from service.core.db import Database
from service.kpis.repository import read_sums
from service.kpis.rollups import rebuild_rollups
from service.kpis.sums import ContactFacts, KpiSums
from tests.service.ingest.conftest import Site, make_site, scope

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def record(site: Site, n: int, outcome: str, wait: float, **kw: object) -> ContactRecord:
    values: dict[str, object] = {
        "source": "test",
        "queue_key": site.queue,
        "external_id": f"call-{n}",
        "channel": "voice",
        "queued_at": T0 + timedelta(minutes=7 * n),
        "outcome": outcome,
        "raw_ref": f"test:{n}",
        "wait_s": wait,
    }
    if outcome == "answered":
        values |= {
            "agent_key": site.agent_key,
            "answered_at": values["queued_at"] + timedelta(seconds=wait),
            "talk_s": 100.0 + n,
            "acw_s": 10.0,
        }  # type: ignore[operator]
    values |= kw
    return ContactRecord(**values)  # type: ignore[arg-type]


def facts(r: ContactRecord) -> ContactFacts:
    answered = r.outcome == "answered"
    return ContactFacts(
        outcome=r.outcome,
        wait_s=r.wait_s,
        talk_s=(r.talk_s or 0) if answered else 0,
        hold_s=(r.hold_s or 0) if answered else 0,
        hold_count=(r.hold_count or 0) if answered else 0,
        acw_s=(r.acw_s or 0) if answered else 0,
        transferred=bool(r.transferred) if answered else False,
        resolved_first_contact=r.resolved_first_contact if answered else None,
        csat=r.csat,
        nps=r.nps,
    )


async def ingest(db: Database, site: Site, records: list[ContactRecord]):  # type: ignore[no-untyped-def]
    async with db.transaction(scope(site)) as session:
        return await ingest_records(session, site.seed.id, list(enumerate(records, start=1)))


async def rolled_up(db: Database, site: Site) -> KpiSums:
    async with db.transaction(scope(site)) as session:
        buckets = await read_sums(
            session,
            site.seed.id,
            [site.project_id],
            "interval",
            T0 - timedelta(days=1),
            T0 + timedelta(days=2),
        )
        daily = await read_sums(
            session,
            site.seed.id,
            [site.project_id],
            "daily",
            (T0 - timedelta(days=1)).date(),
            (T0 + timedelta(days=2)).date(),
        )
        monthly = await read_sums(
            session,
            site.seed.id,
            [site.project_id],
            "monthly",
            (T0 - timedelta(days=40)).date().replace(day=1),
            (T0 + timedelta(days=40)).date().replace(day=1),
        )
    total = KpiSums.merge(buckets.values())
    # Every grain agrees (raw intervals, days, months).
    assert KpiSums.merge(daily.values()) == total
    assert KpiSums.merge(monthly.values()) == total
    return total


async def test_ingest_is_idempotent_and_rollups_equal_raw(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    batch = [
        record(site, 1, "answered", 12.0, csat=5),
        record(site, 2, "answered", 20.0, hold_s=30.0, hold_count=1, transferred=True),
        record(site, 3, "abandoned", 4.0, abandoned_at=T0 + timedelta(minutes=21, seconds=4)),
        record(site, 4, "abandoned", 45.5, abandoned_at=T0 + timedelta(minutes=28, seconds=45.5)),
        record(site, 5, "timeout", 300.0),
        record(site, 6, "in_queue", None),
    ]
    first = await ingest(db, site, batch)
    assert (first.accepted, first.duplicates, first.updated, first.rejected) == (6, 0, 0, [])
    expected = KpiSums.from_contacts(facts(r) for r in batch)
    assert await rolled_up(db, site) == expected

    again = await ingest(db, site, batch)
    assert (again.accepted, again.duplicates, again.updated) == (0, 6, 0)
    assert await rolled_up(db, site) == expected
    async with db.admin_transaction() as admin:
        count = (
            await admin.execute(
                text("select count(*) from contacts where tenant_id = :t"), {"t": site.seed.id}
            )
        ).scalar()
    assert count == 6


async def test_newer_version_corrects_and_older_changes_nothing(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    waiting = record(site, 1, "in_queue", None, source_version=1)
    other = record(site, 2, "answered", 8.0, source_version=1)
    await ingest(db, site, [waiting, other])
    # The call that was still waiting at the end of the last file was answered after 65 s.
    answered = dataclasses.replace(record(site, 1, "answered", 65.0), source_version=2)
    receipt = await ingest(db, site, [answered])
    assert (receipt.accepted, receipt.updated) == (0, 1)
    assert await rolled_up(db, site) == KpiSums.from_contacts([facts(answered), facts(other)])
    late = await ingest(db, site, [waiting])  # the old version arrives again, late
    assert (late.stale, late.updated) == (1, 0)
    assert await rolled_up(db, site) == KpiSums.from_contacts([facts(answered), facts(other)])
    async with db.admin_transaction() as admin:
        changes = (
            (
                await admin.execute(
                    text("select changes from contact_corrections where tenant_id = :t"),
                    {"t": site.seed.id},
                )
            )
            .scalars()
            .all()
        )
    assert len(changes) == 1
    assert changes[0]["outcome"] == {"old": "in_queue", "new": "answered"}
    assert changes[0]["wait_ms"] == {"old": None, "new": 65000}


async def test_newest_copy_inside_one_batch_wins(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    v1 = record(site, 1, "abandoned", 30.0, source_version=1)
    v3 = record(site, 1, "answered", 31.0, source_version=3)
    v2 = record(site, 1, "answered", 29.0, source_version=2)
    receipt = await ingest(db, site, [v1, v3, v2])
    # v1 and v2 are other versions, not copies of v3: stale, not duplicates.
    assert (receipt.accepted, receipt.duplicates, receipt.stale) == (1, 0, 2)
    again = await ingest(db, site, [v3, v3])
    assert (again.accepted, again.duplicates, again.stale) == (0, 2, 0)
    assert await rolled_up(db, site) == KpiSums.from_contacts([facts(v3)])


async def test_unmapped_queue_is_refused_and_unmapped_agent_is_kept(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    stray = record(site, 1, "answered", 5.0, queue_key="nobody-maps-this")
    stranger = record(site, 2, "answered", 5.0, agent_key="Agent/9999")
    receipt = await ingest(db, site, [stray, stranger])
    assert receipt.accepted == 1
    assert [(p.row, p.field) for p in receipt.rejected] == [(1, "queue_key")]
    assert dict(receipt.unmapped_queues) == {"nobody-maps-this": 1}
    assert dict(receipt.unmapped_agents) == {"Agent/9999": 1}
    async with db.admin_transaction() as admin:
        issues = (
            await admin.execute(
                text(
                    "select kind, subject, occurrences from ingest_issues where tenant_id = :t order by kind"
                ),
                {"t": site.seed.id},
            )
        ).all()
    assert [tuple(i) for i in issues] == [
        ("unmapped_agent", "Agent/9999", 1),
        ("unmapped_queue", "nobody-maps-this", 1),
    ]


async def test_queue_keys_of_another_tenant_never_map(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    victim = await make_site(client, settings, db)
    attacker = await make_site(client, settings, db)
    receipt = await ingest(
        db, attacker, [record(attacker, 1, "answered", 3.0, queue_key=victim.queue)]
    )
    assert receipt.accepted == 0
    assert receipt.rejected[0].field == "queue_key"
    assert await rolled_up(db, victim) == KpiSums()


async def test_rebuild_from_raw_gives_the_same_rollups(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    batch = [
        record(site, n, "answered" if n % 3 else "abandoned", float(n * 7 % 50))
        for n in range(1, 40)
    ]
    await ingest(db, site, batch)
    await ingest(
        db,
        site,
        [
            dataclasses.replace(
                batch[0],
                outcome="abandoned",
                answered_at=None,
                agent_key=None,
                talk_s=None,
                acw_s=None,
            )
        ],
    )
    before = await rolled_up(db, site)
    async with db.transaction(scope(site)) as session:
        read = await rebuild_rollups(session, site.seed.id)
    assert read == 39
    assert await rolled_up(db, site) == before


async def test_invalid_record_is_refused_with_row_and_field(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    bad = record(site, 1, "abandoned", None)  # no wait, no abandon time
    receipt = await ingest(db, site, [bad, record(site, 2, "answered", 1.0)])
    assert receipt.accepted == 1
    assert [(p.row, p.field) for p in receipt.rejected] == [(1, "wait_s")]
