"""The change feed against a real PostgreSQL: committed writes to watched tables
reach every listener with their tenant, rollbacks and unwatched columns do not,
and a lost listening connection makes every cached value unreachable."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from httpx import AsyncClient
from sqlalchemy import text

from service.core.changes import ChangeFeed, TenantCache
from service.core.config import Settings
from service.core.db import Database, DbScope
from tests.factories import kill_change_listeners, make_client, make_tenant, make_user

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def feed(db: Database) -> AsyncIterator[ChangeFeed]:
    changes = ChangeFeed(db.settings.app_dsn(), ping_every_s=0.2, retry_after_s=0.05)
    await changes.start()
    assert changes.live
    yield changes
    await changes.stop()


async def until(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def settle(feed: ChangeFeed) -> None:
    """Until no notification arrived for 150 ms (the seeding's own are in)."""
    while True:
        seen = feed.received
        await asyncio.sleep(0.15)
        if feed.received == seen:
            return


async def rename_client(db: Database, tenant_id: uuid.UUID, client_id: uuid.UUID) -> None:
    async with db.transaction(DbScope(tenant_id=tenant_id)) as session:
        await session.execute(
            text("update clients set name = name || '!' where tenant_id = :t and id = :id"),
            {"t": tenant_id, "id": client_id},
        )


async def test_a_committed_write_names_its_tenant_to_every_listener(
    client: AsyncClient, settings: Settings, db: Database, feed: ChangeFeed
) -> None:
    seed = await make_tenant(client, settings)
    acme = await make_client(db, seed.id, "Acme")
    other = uuid.uuid4()
    await settle(feed)
    before, other_before = feed.epoch(seed.id), feed.epoch(other)
    assert before is not None
    await rename_client(db, seed.id, acme.id)
    await until(lambda: feed.epoch(seed.id) != before)
    epoch = feed.epoch(seed.id)
    assert epoch is not None
    assert epoch[0] == before[0]
    assert epoch[1] == before[1] + 1
    assert feed.epoch(other) == other_before  # another tenant's entries stay good


async def test_a_rolled_back_write_and_an_unwatched_column_say_nothing(
    client: AsyncClient, settings: Settings, db: Database, feed: ChangeFeed
) -> None:
    seed = await make_tenant(client, settings)
    acme = await make_client(db, seed.id, "Acme")
    user = await make_user(db, seed.id, "tenant_admin")
    await settle(feed)
    before = feed.epoch(seed.id)

    async def rename_then_fail() -> None:
        async with db.transaction(DbScope(tenant_id=seed.id)) as session:
            await session.execute(
                text("update clients set name = 'x' where tenant_id = :t and id = :id"),
                {"t": seed.id, "id": acme.id},
            )
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        await rename_then_fail()
    async with db.transaction(DbScope(tenant_id=seed.id)) as session:
        await session.execute(
            text("update users set last_login_at = now() where tenant_id = :t and id = :id"),
            {"t": seed.id, "id": user.id},
        )
    # A later watched write proves the feed is delivering: only it counted.
    await rename_client(db, seed.id, acme.id)
    await until(lambda: feed.epoch(seed.id) != before)
    await settle(feed)
    after = feed.epoch(seed.id)
    assert before is not None
    assert after is not None
    assert after[1] - before[1] == 1


async def test_this_process_sees_its_own_commit_before_the_notification(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    seed = await make_tenant(client, settings)
    acme = await make_client(db, seed.id, "Acme")
    seen: list[str] = []
    db.change_listeners.append(seen.append)
    try:
        await rename_client(db, seed.id, acme.id)
        # Synchronously, on commit: no waiting for the notification.
        assert seen == [str(seed.id)]
        async with db.transaction(DbScope(tenant_id=seed.id)) as session:
            await session.execute(text("select 1 from clients"))
        assert seen == [str(seed.id)]  # a read announces nothing
        async with db.admin_transaction() as admin:
            await admin.execute(
                text("update clients set name = name where tenant_id = :t"), {"t": seed.id}
            )
        assert seen == [str(seed.id), "*"]  # an unscoped write: every tenant
    finally:
        db.change_listeners.remove(seen.append)


async def test_the_cache_keeps_nothing_that_a_change_raced(
    client: AsyncClient, settings: Settings, db: Database, feed: ChangeFeed
) -> None:
    seed = await make_tenant(client, settings)
    acme = await make_client(db, seed.id, "Acme")
    cache: TenantCache[str] = TenantCache(feed, max_entries=10, ttl_s=60)
    stamp = cache.stamp(seed.id)
    assert cache.put(seed.id, "k", "v1", stamp)
    assert cache.get(seed.id, "k") == "v1"
    assert cache.get(uuid.uuid4(), "k") is None  # another tenant never sees it

    stale = cache.stamp(seed.id)  # a computation starts…
    await rename_client(db, seed.id, acme.id)  # …a change commits meanwhile…
    await until(lambda: cache.stamp(seed.id) != stale)
    assert cache.get(seed.id, "k") is None  # the old entry is gone
    assert not cache.put(seed.id, "k", "v2", stale)  # …and its result is not kept
    assert cache.get(seed.id, "k") is None
    assert cache.put(seed.id, "k", "v3", cache.stamp(seed.id))
    assert cache.get(seed.id, "k") == "v3"


async def test_the_cache_is_bounded_by_entries_and_size(db: Database, feed: ChangeFeed) -> None:
    tenant = uuid.uuid4()
    cache: TenantCache[bytes] = TenantCache(feed, max_entries=3, max_size=100, ttl_s=60)
    for i in range(5):
        assert cache.put(tenant, i, b"x", cache.stamp(tenant), size=10)
    assert len(cache) == 3
    assert cache.get(tenant, 0) is None
    assert cache.get(tenant, 4) == b"x"
    assert cache.put(tenant, "big", b"y", cache.stamp(tenant), size=90)
    assert len(cache) == 2  # 10 + 90: the least recently used went
    assert not cache.put(tenant, "huge", b"z", cache.stamp(tenant), size=101)


async def test_a_lost_listener_serves_nothing_until_it_listens_again(db: Database) -> None:
    # Slow to retry, so that the test sees the gap.
    feed = ChangeFeed(db.settings.app_dsn(), ping_every_s=0.2, retry_after_s=1.0)
    await feed.start()
    try:
        await _lose_and_regain(db, feed)
    finally:
        await feed.stop()


async def _lose_and_regain(db: Database, feed: ChangeFeed) -> None:
    tenant = uuid.uuid4()
    cache: TenantCache[str] = TenantCache(feed, max_entries=10, ttl_s=60)
    assert cache.put(tenant, "k", "v", cache.stamp(tenant))
    await kill_change_listeners(db.settings)
    await until(lambda: not feed.live)
    assert cache.get(tenant, "k") is None
    assert not cache.put(tenant, "k", "v", cache.stamp(tenant))
    await until(lambda: feed.live)
    # A new generation: what was cached before the gap stays unreachable.
    assert cache.get(tenant, "k") is None
    assert cache.put(tenant, "k", "w", cache.stamp(tenant))
    assert cache.get(tenant, "k") == "w"
