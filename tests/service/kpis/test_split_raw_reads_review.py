"""Adversarial review of split raw reads (`snapshot_readers`, `raw_sums` in parts).

What a split read must keep: the exact answer of one statement (whatever the
range, its bounds, the bucket keys and groups, FCR however judged), the walls
of row-level security of the session it reads for (and nothing but them), and
the readers' pool and the process's flag intact whatever happens to a part.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.contacts.records import ContactRecord
from service.core.config import Settings
from service.core.db import Database, DbScope, set_scope, snapshot_readers
from service.kpis import repository
from service.kpis.repository import _split, raw_sums, read_sums
from service.kpis.sums import KpiSums
from tests.factories import make_client
from tests.service.ingest.conftest import Site, make_project, make_site, scope
from tests.service.kpis.test_split_raw_reads import contacts_in, ingest

T0 = datetime(2026, 4, 1, tzinfo=UTC)


def mixed(site: Site, prefix: str, start: datetime, end: datetime, n: int) -> list[ContactRecord]:
    """`n` contacts over [start, end) with every kind of FCR: flagged resolved or not
    (answered or abandoned), judged by repeat (customers calling back after hours,
    days or never), answered without a customer, still in queue; and one each just
    before, on and after every point a range of [start, end) is cut at."""
    span = (end - start) / n
    at = [start + span * i + timedelta(seconds=i * 7 % 900) for i in range(n)]
    for parts in (2, 3):
        for cut in _split(start, end, parts)[1:-1]:
            at += [cut - timedelta(microseconds=1000), cut, cut + timedelta(microseconds=1000)]
    out = []
    for i, when in enumerate(sorted(a for a in at if start <= a < end)):
        kind = i % 7
        outcome = [
            "answered",
            "answered",
            "answered",
            "abandoned",
            "answered",
            "in_queue",
            "answered",
        ][kind]
        answered = outcome == "answered"
        wait = float(i % 113) + 0.25
        rfc = {0: True, 1: False, 3: i % 2 == 0}.get(kind)
        out.append(
            ContactRecord(
                source="test",
                queue_key=site.queue,
                external_id=f"{prefix}-{i}",
                channel="voice" if i % 3 else "email",
                queued_at=when,
                outcome=outcome,  # type: ignore[arg-type]
                wait_s=None if outcome == "in_queue" else wait,
                answered_at=when + timedelta(seconds=wait) if answered else None,
                abandoned_at=when + timedelta(seconds=wait) if outcome == "abandoned" else None,
                talk_s=30.0 + i % 40 if answered else None,
                hold_s=float(i % 4) if answered else None,
                transferred=i % 5 == 0 if answered else None,
                agent_key=site.agent_key if answered and i % 2 else None,
                customer_key=None if kind == 4 else f"cust-{i % 23}",
                resolved_first_contact=rfc,
                csat=1 + i % 5 if i % 4 == 0 and outcome != "in_queue" else None,
                nps=i % 11 if i % 6 == 0 and outcome != "in_queue" else None,
                raw_ref=f"test:{i}",
            )
        )
    return out


def serial_of(db: Database) -> Database:
    return Database(db.settings.model_copy(update={"read_parallelism": 1}))


async def both(
    db: Database, serial: Database, sc: DbScope, *args: Any, **kwargs: Any
) -> tuple[dict[Any, KpiSums], dict[Any, KpiSums]]:
    async with db.transaction(sc) as session:
        split = await raw_sums(session, *args, **kwargs)
    async with serial.transaction(sc) as session:
        one = await raw_sums(session, *args, **kwargs)
    return split, one


# --- correctness ----------------------------------------------------------------------


async def test_split_equals_one_statement_on_every_shape(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    start, end = T0 + timedelta(minutes=7), T0 + timedelta(days=9, hours=13, minutes=53)
    records = mixed(site, "m", start, end, 400)
    await ingest(db, site, records)
    serial = serial_of(db)
    triple = Database(db.settings.model_copy(update={"read_parallelism": 3}))
    try:
        for lo, hi in (
            (start, end),
            # Just above a week; a bound on a cut's instant; the range's own bounds unaligned.
            (start, start + repository.SPLIT_FROM + timedelta(microseconds=1)),
            (T0, T0 + timedelta(days=8)),
            (start - timedelta(days=30), start + timedelta(days=7)),  # one part is empty
            (end - timedelta(days=1), end + timedelta(days=40)),  # most parts are empty
        ):
            for per_interval in (True, False):
                for group in ("none", "channel", "agent"):
                    for channel in (None, "email"):
                        args = (site.seed.id, [site.project_id], lo, hi, channel)
                        kw = {"group": group, "per_interval": per_interval}
                        split, one = await both(db, serial, scope(site), *args, **kw)
                        assert split == one, (lo, hi, per_interval, group, channel)
                        async with triple.transaction(scope(site)) as session:
                            assert await raw_sums(session, *args, **kw) == one  # type: ignore[arg-type]
        split, _ = await both(db, serial, scope(site), site.seed.id, [site.project_id], start, end)
        assert contacts_in(split) == len(records)
    finally:
        await serial.dispose()
        await triple.dispose()


async def test_split_fcr_equals_the_rollups(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """fcr_known, fcr_resolved, fcr_repeat_known and the repeat days of a split read
    of whole UTC days are those of the daily rollups (one bucket each way)."""
    site = await make_site(client, settings, db)
    start, end = T0 + timedelta(days=20), T0 + timedelta(days=34)
    await ingest(db, site, mixed(site, "f", start, end, 500))
    async with db.transaction(scope(site)) as session:
        split = await raw_sums(
            session, site.seed.id, [site.project_id], start, end, per_interval=False
        )
        rolled = await read_sums(
            session,
            site.seed.id,
            [site.project_id],
            "daily",
            start.date(),
            end.date(),
            one_bucket=True,
        )
    (raw,) = split.values()
    (daily,) = rolled.values()
    assert raw.fcr_known > 0
    assert raw.fcr_repeat_known > 0
    assert raw.fcr_repeats
    assert raw == daily


# --- isolation ------------------------------------------------------------------------


async def test_client_viewer_split_sees_only_its_client(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    other_client = await make_client(db, site.seed.id, "Other")
    other_queue = f"{site.queue}-b"
    other_project = await make_project(db, site.seed.id, other_client.id, [other_queue])
    start, end = T0, T0 + timedelta(days=10)
    await ingest(db, site, mixed(site, "v", start, end, 120))
    other_site = Site(
        site.seed, other_client.id, other_project, other_queue, site.agent_id, site.agent_key
    )
    await ingest(db, other_site, mixed(other_site, "o", start, end, 80))
    serial = serial_of(db)
    try:
        both_projects = [site.project_id, other_project]
        for sc, expected in (
            (scope(site), None),
            (DbScope(site.seed.id, site.client_id), [site.project_id]),
            (DbScope(site.seed.id, other_client.id), [other_project]),
        ):
            for per_interval in (True, False):
                split, one = await both(
                    db,
                    serial,
                    sc,
                    site.seed.id,
                    both_projects,
                    start,
                    end,
                    per_interval=per_interval,
                )
                assert split == one
                if expected is not None:
                    _, alone = await both(
                        db,
                        serial,
                        scope(site),
                        site.seed.id,
                        expected,
                        start,
                        end,
                        per_interval=per_interval,
                    )
                    assert split == alone
    finally:
        await serial.dispose()


async def test_scope_changed_mid_transaction_goes_with_the_readers(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    a = await make_site(client, settings, db)
    b = await make_site(client, settings, db)
    start, end = T0, T0 + timedelta(days=8)
    ra, rb = mixed(a, "a", start, end, 50), mixed(b, "b", start, end, 70)
    await ingest(db, a, ra)
    await ingest(db, b, rb)
    async with db.transaction(scope(a)) as session:
        got_a = await raw_sums(session, a.seed.id, [a.project_id], start, end, per_interval=False)
        await set_scope(session, scope(b))
        got_b = await raw_sums(session, b.seed.id, [b.project_id], start, end, per_interval=False)
        # a's rows under b's scope: none, as on the session itself.
        none = await raw_sums(session, a.seed.id, [a.project_id], start, end, per_interval=False)
    assert (contacts_in(got_a), contacts_in(got_b), none) == (len(ra), len(rb), {})


async def test_admin_session_split_reads_what_the_admin_session_reads(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """An admin session (BYPASSRLS) sees every tenant's rows; readers of the
    application role would see only the tenant its settings name. A split read
    for an admin session must not answer differently from its own statement."""
    a = await make_site(client, settings, db)
    b = await make_site(client, settings, db)
    start, end = T0, T0 + timedelta(days=8)
    await ingest(db, a, mixed(a, "x", start, end, 40))
    rb = mixed(b, "y", start, end, 60)
    await ingest(db, b, rb)
    async with db.admin_transaction() as admin:
        # Unscoped: the admin's own statement.
        unscoped = await raw_sums(admin, b.seed.id, [b.project_id], start, end, per_interval=False)
        await set_scope(admin, scope(a))
        scoped = await raw_sums(admin, b.seed.id, [b.project_id], start, end, per_interval=False)
    assert contacts_in(unscoped) == len(rb)
    assert scoped == unscoped


# --- robustness -----------------------------------------------------------------------


def _slow_second_part(monkeypatch: pytest.MonkeyPatch, *, first_fails: bool) -> dict[str, Any]:
    """The readers' second part sleeps a second before its statement; the first
    fails at once when `first_fails`."""
    seen: dict[str, Any] = {}
    real = snapshot_readers

    class Failing:
        def __init__(self, conn: Any) -> None:
            self.conn = conn

        async def execute(self, *a: Any, **k: Any) -> Any:
            raise RuntimeError("part failed")

    class Slow:
        def __init__(self, conn: Any) -> None:
            self.conn = conn

        async def execute(self, *a: Any, **k: Any) -> Any:
            seen["slow_started"] = True
            await self.conn.execute(text("select pg_sleep(1)"))
            got = await self.conn.execute(*a, **k)
            seen["slow_finished"] = True
            return got

    @asynccontextmanager
    async def wrapped(session: AsyncSession, **settings: str) -> AsyncIterator[list[Any]]:
        async with real(session, **settings) as readers:
            seen["readers"] = list(readers)
            if len(readers) == 2:
                first: Any = Failing(readers[0]) if first_fails else readers[0]
                yield [first, Slow(readers[1])]
            else:
                yield readers

    monkeypatch.setattr(repository, "snapshot_readers", wrapped)
    return seen


async def _pool_is_clean(db: Database) -> None:
    pool: Any = db.reader_engine.pool
    assert pool.checkedout() == 0
    assert not db.readers_busy


async def test_a_failing_part_stops_the_others_and_its_error_is_the_one_raised(
    client: AsyncClient, settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A part that fails (a statement timeout, a lost connection) while another still
    runs: the read raises that part's error (not one of closing a busy connection),
    and no part goes on on a reader connection that went back to the pool."""
    site = await make_site(client, settings, db)
    start, end = T0, T0 + timedelta(days=8)
    records = mixed(site, "e", start, end, 60)
    await ingest(db, site, records)
    seen = _slow_second_part(monkeypatch, first_fails=True)
    with pytest.raises(RuntimeError, match="part failed"):
        async with db.transaction(scope(site)) as session:
            await raw_sums(session, site.seed.id, [site.project_id], start, end, per_interval=False)
    assert seen["slow_started"]
    assert not seen.get("slow_finished")
    await _pool_is_clean(db)
    await asyncio.sleep(1.5)
    assert not seen.get("slow_finished"), "a part went on after the read failed"
    await _pool_is_clean(db)
    monkeypatch.undo()
    # The next read is split again, and whole.
    async with db.transaction(scope(site)) as session:
        async with snapshot_readers(session) as readers:
            assert len(readers) == db.settings.read_parallelism
        got = await raw_sums(
            session, site.seed.id, [site.project_id], start, end, per_interval=False
        )
    assert contacts_in(got) == len(records)


async def test_a_cancelled_read_returns_its_readers(
    client: AsyncClient, settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = await make_site(client, settings, db)
    start, end = T0, T0 + timedelta(days=8)
    records = mixed(site, "k", start, end, 60)
    await ingest(db, site, records)
    seen = _slow_second_part(monkeypatch, first_fails=False)

    async def read() -> Any:
        async with db.transaction(scope(site)) as session:
            return await raw_sums(session, site.seed.id, [site.project_id], start, end)

    task = asyncio.create_task(read())
    for _ in range(500):
        if seen.get("slow_started"):
            break
        await asyncio.sleep(0.01)
    assert seen.get("slow_started")
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _pool_is_clean(db)
    monkeypatch.undo()
    # The readers that went back are not in a transaction: the next split read works
    # and sees rows committed since.
    await ingest(db, site, mixed(site, "k2", start, end, 10))
    async with db.transaction(scope(site)) as session:
        got = await raw_sums(
            session, site.seed.id, [site.project_id], start, end, per_interval=False
        )
    assert contacts_in(got) == len(records) + len(mixed(site, "k2", start, end, 10))


async def test_two_reads_at_once_in_one_process(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    start, end = T0, T0 + timedelta(days=8)
    records = mixed(site, "p", start, end, 200)
    await ingest(db, site, records)

    async def read() -> dict[Any, KpiSums]:
        async with db.transaction(scope(site)) as session:
            return await raw_sums(session, site.seed.id, [site.project_id], start, end)

    results = await asyncio.gather(*(read() for _ in range(6)))
    assert all(r == results[0] for r in results)
    assert contacts_in(results[0]) == len(records)
    await _pool_is_clean(db)
