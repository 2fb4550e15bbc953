"""Long raw reads split over connections that share one snapshot (`snapshot_readers`).

A tenant's year of raw contacts is read in parts of its time range at once;
the parts must add up to exactly what one statement reads (same groups, the
same histogram cells and maxima, the same FCR repeats), see one snapshot,
carry the caller's tenant and client scope, and step aside when the caller's
transaction has written rows the other connections could not see.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from httpx import AsyncClient
from sqlalchemy import text

from service.contacts.ingest import ingest_records
from service.contacts.records import ContactRecord
from service.core.config import Settings
from service.core.db import SCOPE_KEY, Database, DbScope, create_engine, snapshot_readers
from service.kpis.repository import SPLIT_FROM, _split, raw_sums
from service.kpis.sums import FINAL_OUTCOMES
from tests.service.ingest.conftest import Site, make_site, scope

START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2026, 3, 1, tzinfo=UTC)


def contacts(site: Site, prefix: str, n: int) -> list[ContactRecord]:
    """`n` contacts spread over [START, END), odd minutes so that some share a quarter
    hour; every third answered with FCR judged by repeat (customers call back)."""
    span = (END - START) / n
    out = []
    for i in range(n):
        at = START + span * i + timedelta(minutes=i % 13)
        answered = i % 4 != 3
        wait = float(i % 97)
        out.append(
            ContactRecord(
                source="test",
                queue_key=site.queue,
                external_id=f"{prefix}-{i}",
                channel="voice" if i % 5 else "chat",
                queued_at=at,
                outcome="answered" if answered else "abandoned",
                wait_s=wait,
                answered_at=at + timedelta(seconds=wait) if answered else None,
                abandoned_at=None if answered else at + timedelta(seconds=wait),
                talk_s=60.0 + i % 50 if answered else None,
                agent_key=site.agent_key if answered else None,
                customer_key=f"cust-{i % 17}",
                csat=1 + i % 5 if i % 3 == 0 else None,
                raw_ref=f"test:{i}",
            )
        )
    return out


def contacts_in(buckets: dict) -> int:  # type: ignore[type-arg]
    every = [s.count(o) for s in buckets.values() for o in FINAL_OUTCOMES]
    return int(sum(every)) + sum(int(s.in_queue) for s in buckets.values())


async def ingest(db: Database, site: Site, records: list[ContactRecord]) -> None:
    async with db.transaction(scope(site)) as session:
        receipt = await ingest_records(session, site.seed.id, list(enumerate(records, 1)))
    assert receipt.accepted == len(records), receipt.as_dict(5)


async def read(db: Database, site: Site, *, per_interval: bool, group: str = "none") -> dict:  # type: ignore[type-arg]
    async with db.transaction(scope(site)) as session:
        return await raw_sums(
            session,
            site.seed.id,
            [site.project_id],
            START,
            END,
            per_interval=per_interval,
            group=group,  # type: ignore[arg-type]
        )


def test_split_points_are_whole_quarter_hours_covering_the_range() -> None:
    start = datetime(2026, 1, 1, 0, 7, tzinfo=UTC)
    end = datetime(2026, 12, 31, 23, 53, tzinfo=UTC)
    for n in (2, 3, 5):
        bounds = _split(start, end, n)
        assert (bounds[0], bounds[-1], len(bounds)) == (start, end, n + 1)
        assert bounds == sorted(bounds)
        for cut in bounds[1:-1]:
            assert cut == cut.replace(minute=cut.minute // 15 * 15, second=0, microsecond=0)


async def test_split_read_equals_one_statement(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    await ingest(db, site, contacts(site, "c", 600))
    assert END - START >= SPLIT_FROM
    serial = Database(db.settings.model_copy(update={"read_parallelism": 1}))
    try:
        for per_interval, group in (
            (False, "none"),
            (True, "none"),
            (False, "channel"),
            (False, "agent"),
        ):
            split = await read(db, site, per_interval=per_interval, group=group)
            one = await read(serial, site, per_interval=per_interval, group=group)
            assert split == one
            assert contacts_in(split) == 600
        # The split read used the readers' pool; the serial one never made it.
        assert db._reader_engine is not None
        assert serial._reader_engine is None
    finally:
        await serial.dispose()


async def test_readers_share_the_snapshot_and_the_scope(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    other = await make_site(client, settings, db)
    await ingest(db, site, contacts(site, "a", 40))
    await ingest(db, other, contacts(other, "b", 30))
    count = text("select count(*) from contacts")
    async with db.transaction(scope(site)) as session, snapshot_readers(session) as readers:
        assert len(readers) == db.settings.read_parallelism >= 2
        # Rows committed after the snapshot was taken are seen by none of them.
        await ingest(db, site, contacts(site, "late", 20))
        for reader in readers:
            # Row-level security with the session's tenant: the other tenant's 30 are not there.
            assert (await reader.execute(count)).scalar() == 40
        # Read-only: a reader cannot write.
        failed = False
        try:
            await readers[0].execute(text("create temp table nope (x int)"))
        except Exception as exc:
            failed = "read-only" in str(exc)
        assert failed
    # A client viewer's scope goes with it: another client of the tenant sees none of them.
    viewer = DbScope(tenant_id=site.seed.id, client_id=uuid.uuid4())
    async with db.transaction(viewer) as session, snapshot_readers(session) as readers:
        assert readers
        assert [(await r.execute(count)).scalar() for r in readers] == [0] * len(readers)


async def test_no_split_after_the_transaction_wrote(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    await ingest(db, site, contacts(site, "w", 50))
    more = contacts(site, "x", 25)
    async with db.transaction(scope(site)) as session:
        await ingest_records(session, site.seed.id, list(enumerate(more, 1)))
        async with snapshot_readers(session) as readers:
            assert readers == []
        # Its own uncommitted rows are in the read: it was not split.
        got = await raw_sums(
            session, site.seed.id, [site.project_id], START, END, per_interval=False
        )
        assert contacts_in(got) == 75
        await session.rollback()


async def test_one_split_read_at_a_time_the_next_reads_alone(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    await ingest(db, site, contacts(site, "s", 30))
    async with db.transaction(scope(site)) as first, snapshot_readers(first) as readers:
        assert readers
        async with db.transaction(scope(site)) as second:
            async with snapshot_readers(second) as none:
                assert none == []
            # …and still answers, on its own session.
            got = await raw_sums(
                second, site.seed.id, [site.project_id], START, END, per_interval=False
            )
            assert contacts_in(got) == 30


async def test_readers_out_of_reach_the_read_goes_on_alone(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    await ingest(db, site, contacts(site, "u", 40))
    cut_off = Database(db.settings)
    # Nothing listens on port 1: the readers' pool cannot connect.
    cut_off._reader_engine = create_engine("postgresql://nobody@127.0.0.1:1/none", db.settings)
    try:
        async with cut_off.transaction(scope(site)) as session:
            async with snapshot_readers(session) as readers:
                assert readers == []
            got = await raw_sums(
                session, site.seed.id, [site.project_id], START, END, per_interval=False
            )
        assert contacts_in(got) == 40
        assert not cut_off.readers_busy
    finally:
        await cut_off.dispose()


async def test_a_repeatable_read_caller_reads_its_own_snapshot_in_parts(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """The readers take the session's snapshot, not one of their own: a REPEATABLE
    READ transaction that took its snapshot before other rows were committed reads,
    split, what it reads alone."""
    site = await make_site(client, settings, db)
    await ingest(db, site, contacts(site, "r", 40))
    async with db.session() as session, session.begin():
        session.info[SCOPE_KEY] = scope(site)
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        count = text("select count(*) from contacts")
        assert (await session.execute(count)).scalar() == 40  # the snapshot is taken
        await ingest(db, site, contacts(site, "later", 20))  # committed after it
        async with snapshot_readers(session) as readers:
            assert len(readers) == db.settings.read_parallelism >= 2
            assert [(await r.execute(count)).scalar() for r in readers] == [40] * len(readers)
        got = await raw_sums(
            session, site.seed.id, [site.project_id], START, END, per_interval=False
        )
        assert contacts_in(got) == 40


async def test_no_split_inside_a_savepoint(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """PostgreSQL exports no snapshot from a subtransaction: inside a savepoint the
    read goes on alone, and the transaction is not harmed."""
    site = await make_site(client, settings, db)
    await ingest(db, site, contacts(site, "p", 30))
    async with db.transaction(scope(site)) as session:
        async with session.begin_nested():
            async with snapshot_readers(session) as readers:
                assert readers == []
            got = await raw_sums(
                session, site.seed.id, [site.project_id], START, END, per_interval=False
            )
            assert contacts_in(got) == 30
        assert (await session.execute(text("select count(*) from contacts"))).scalar() == 30
