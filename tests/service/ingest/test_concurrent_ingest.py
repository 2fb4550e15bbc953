"""Two imports of the same contacts at once: each contact lands once, the rollups
still equal the raw rows. The second import is held on the first one's
uncommitted keys (observed in pg_locks, not by sleeping), so it must
classify its batch again after the first commits."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from httpx import AsyncClient
from sqlalchemy import text

from service.contacts.ingest import Receipt, ingest_records
from service.contacts.records import ContactRecord
from service.core.config import Settings
from service.core.db import Database
from service.kpis.sums import KpiSums
from tests.service.ingest.conftest import Site, make_site, scope
from tests.service.ingest.test_ingest import facts, ingest, record, rolled_up


async def _waited_for(db: Database, xid: str) -> None:
    """Until some transaction waits for transaction `xid` to end (at most ~60 s)."""
    for _ in range(600):
        async with db.admin_transaction() as admin:
            waiting = (
                await admin.execute(
                    text(
                        "select count(*) from pg_locks where locktype = 'transactionid'"
                        " and not granted and transactionid::text = :x"
                    ),
                    {"x": xid},
                )
            ).scalar_one()
        if waiting:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the second import never waited for the first one's rows")


async def _concurrently(
    db: Database, site: Site, first: list[ContactRecord], second: list[ContactRecord]
) -> tuple[Receipt, Receipt]:
    """`first` ingested and held uncommitted while `second` runs into its rows."""
    async with db.transaction(scope(site)) as session:
        a = await ingest_records(session, site.seed.id, list(enumerate(first, start=1)))
        xid = (await session.execute(text("select pg_current_xact_id()::text"))).scalar_one()
        later = asyncio.create_task(ingest(db, site, second))
        await _waited_for(db, xid)
    b: Receipt = await later
    return a, b


async def _rows(db: Database, site: Site, sql: str) -> list[Any]:
    async with db.admin_transaction() as admin:
        return list((await admin.execute(text(sql), {"t": site.seed.id})).all())


async def test_the_same_new_contacts_from_two_imports_land_once(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    batch = [record(site, n, "answered", 10.0 + n) for n in range(1, 6)]
    a, b = await _concurrently(db, site, batch, batch)
    assert (a.accepted, a.duplicates) == (5, 0)
    assert (b.accepted, b.duplicates, b.updated) == (0, 5, 0)
    contacts = await _rows(db, site, "select external_id from contacts where tenant_id = :t")
    keys = await _rows(db, site, "select external_id from contact_keys where tenant_id = :t")
    assert (
        sorted(r[0] for r in contacts)
        == sorted(r[0] for r in keys)
        == [f"call-{n}" for n in range(1, 6)]
    )
    assert await rolled_up(db, site) == KpiSums.from_contacts(facts(r) for r in batch)


async def test_two_corrections_of_one_contact_at_once_keep_the_newest(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    v1 = record(site, 1, "in_queue", None, source_version=1)
    other = record(site, 2, "abandoned", 7.0, source_version=1)
    await ingest(db, site, [v1, other])
    v2 = dataclasses.replace(record(site, 1, "abandoned", 40.0), source_version=2)
    v3 = dataclasses.replace(record(site, 1, "answered", 25.0), source_version=3)
    # v3 is classified against v1 too, then finds v2 committed: it corrects v2.
    a, b = await _concurrently(db, site, [v2], [v3])
    assert (a.updated, b.updated, b.stale) == (1, 1, 0)
    assert await rolled_up(db, site) == KpiSums.from_contacts([facts(v3), facts(other)])
    rows = await _rows(
        db,
        site,
        "select outcome, source_version from contacts where tenant_id = :t and external_id = 'call-1'",
    )
    assert [tuple(r) for r in rows] == [("answered", 3)]
    corrections = await _rows(
        db,
        site,
        "select old_version, new_version from contact_corrections where tenant_id = :t"
        " order by new_version",
    )
    assert [tuple(r) for r in corrections] == [(1, 2), (2, 3)]

    # And an older version racing a newer one changes nothing once the newer is in.
    v5 = dataclasses.replace(record(site, 1, "answered", 26.0), source_version=5)
    v4 = dataclasses.replace(record(site, 1, "abandoned", 50.0), source_version=4)
    a, b = await _concurrently(db, site, [v5], [v4])
    assert (a.updated, b.updated, b.stale) == (1, 0, 1)
    assert await rolled_up(db, site) == KpiSums.from_contacts([facts(v5), facts(other)])


async def test_different_contacts_of_one_day_from_two_imports_both_count(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """The rollup rows of a day are merged by both imports: the second reads the
    first's committed histogram (the same wait cell and others), never its own
    stale copy, whether the day was held before or is new to both."""
    site = await make_site(client, settings, db)
    first = [record(site, 2, "answered", 12.0), record(site, 3, "abandoned", 40.0)]
    second = [record(site, 4, "answered", 12.0), record(site, 5, "answered", 95.0)]
    a, b = await _concurrently(db, site, first, second)
    assert (a.accepted, b.accepted) == (2, 2)
    assert await rolled_up(db, site) == KpiSums.from_contacts(facts(r) for r in [*first, *second])

    held = [record(site, 6, "answered", 12.0), record(site, 7, "timeout", 300.0)]
    more = [record(site, 8, "answered", 12.0), record(site, 9, "abandoned", 40.0)]
    a, b = await _concurrently(db, site, held, more)
    assert (a.accepted, b.accepted) == (2, 2)
    assert await rolled_up(db, site) == KpiSums.from_contacts(
        facts(r) for r in [*first, *second, *held, *more]
    )


async def test_a_newer_identical_copy_racing_an_older_correction_keeps_the_newest(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """v3 repeats v1's facts (a duplicate that only moves the version on); v2 corrects v1
    with other facts. Whichever commits first, the older v2 ends stale or overwritten by v3."""
    site = await make_site(client, settings, db)
    v1 = record(site, 1, "abandoned", 30.0, source_version=1)
    await ingest(db, site, [v1])
    v3 = dataclasses.replace(v1, source_version=3)
    v2 = dataclasses.replace(record(site, 1, "answered", 12.0), source_version=2)
    a, b = await _concurrently(db, site, [v3], [v2])
    assert (a.duplicates, b.stale, b.updated) == (1, 1, 0)

    w1 = record(site, 2, "abandoned", 30.0, source_version=1)
    await ingest(db, site, [w1])
    w2 = dataclasses.replace(record(site, 2, "answered", 12.0), source_version=2)
    w3 = dataclasses.replace(w1, source_version=3)
    # w3 is classified as a duplicate of w1, then finds w2 committed: it corrects w2 back.
    a, b = await _concurrently(db, site, [w2], [w3])
    assert (a.updated, b.updated) == (1, 1)
    rows = await _rows(
        db,
        site,
        "select external_id, outcome, source_version from contacts where tenant_id = :t"
        " order by external_id",
    )
    assert [tuple(r) for r in rows] == [("call-1", "abandoned", 3), ("call-2", "abandoned", 3)]
    assert await rolled_up(db, site) == KpiSums.from_contacts([facts(v3), facts(w3)])
