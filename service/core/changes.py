"""Which tenants' data changed, and caches that never serve what a change made stale.

PostgreSQL says it: the triggers of migration 0006 send the tenant of every
committed write to KPI inputs or identities on the `callpact_changes`
channel (`*` for an unscoped admin write). A `ChangeFeed` keeps one
connection LISTENing and counts, per tenant, the changes it has seen: an
*epoch*. Writes committed by this process bump their tenant's epoch at once,
without waiting for the notification (`Database` calls `changed` after a
commit that wrote), so a caller reads its own writes.

A `TenantCache` stamps every entry with the epoch current when its
computation *started*, and stores it only if no change arrived meanwhile;
an entry whose stamp is no longer current is a miss. So there is no
invalidation to forget: a change to a tenant makes every older entry of
that tenant unreachable, and a change racing a computation keeps its
result out of the cache. While the listening connection is down, every
epoch is unknown (`None`): nothing is served from a cache or stored in it,
and the reconnect starts a new generation, so nothing computed before the
gap is ever served after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncpg
import structlog

log = structlog.get_logger(__name__)

CHANNEL = "callpact_changes"
ALL_TENANTS = "*"

Epoch = tuple[int, int]
V = TypeVar("V")


class ChangeFeed:
    """Per-tenant change counters fed by LISTEN `callpact_changes`."""

    def __init__(
        self,
        dsn: str,
        *,
        connect_timeout_s: float = 5.0,
        ping_every_s: float = 10.0,
        retry_after_s: float = 1.0,
    ) -> None:
        self._dsn = dsn
        self._connect_timeout_s = connect_timeout_s
        self._ping_every_s = ping_every_s
        self._retry_after_s = retry_after_s
        self._generation = 0
        self._epochs: dict[str, int] = {}
        self._live = False
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self.received = 0  # notifications seen (for tests and metrics)

    @property
    def live(self) -> bool:
        return self._live

    def epoch(self, tenant_id: uuid.UUID | str) -> Epoch | None:
        """The tenant's current epoch, or None while changes cannot be seen."""
        if not self._live:
            return None
        return (self._generation, self._epochs.get(str(tenant_id), 0))

    def changed(self, tenant: uuid.UUID | str) -> None:
        """Record a change of `tenant` (or of every tenant: `*`)."""
        key = str(tenant)
        if key == ALL_TENANTS:
            self._generation += 1
        else:
            self._epochs[key] = self._epochs.get(key, 0) + 1

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.received += 1
        self.changed(payload or ALL_TENANTS)

    async def start(self) -> None:
        """Start listening; returns once the first LISTEN is in place (or failed once)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="change-feed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._connected.wait(), self._connect_timeout_s + 1)

    async def stop(self) -> None:
        self._live = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self._dsn,
                    timeout=self._connect_timeout_s,
                    server_settings={"application_name": "callpact-changes"},
                )
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, self._notified)
                # Whatever was computed before this LISTEN may have missed a change.
                self._generation += 1
                self._live = True
                self._connected.set()
                log.info("change_feed.listening")
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), self._ping_every_s)
                    if not lost.is_set():
                        await conn.fetchval("select 1", timeout=self._connect_timeout_s)
                raise ConnectionError("listening connection closed")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: stop trusting caches, retry
                self._live = False
                self._connected.set()
                log.warning("change_feed.down", error=repr(exc))
                await asyncio.sleep(self._retry_after_s)
            finally:
                self._live = False
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), self._connect_timeout_s)


@dataclass(slots=True)
class _Entry(Generic[V]):
    value: V
    stamp: Epoch
    size: int
    expires: float


class TenantCache(Generic[V]):
    """An LRU of per-tenant values, each valid while its tenant's epoch is unchanged.

    `stamp(tenant)` before computing, `put(tenant, key, value, stamp)` after:
    the value is kept only if no change of the tenant arrived in between.
    Bounded by entry count and by total `size` (bytes, for responses), with
    a time-to-live as a last line of defence."""

    def __init__(
        self, feed: ChangeFeed, *, max_entries: int, max_size: int | None = None, ttl_s: float
    ) -> None:
        self._feed = feed
        self._entries: OrderedDict[tuple[str, Any], _Entry[V]] = OrderedDict()
        self._max_entries = max_entries
        self._max_size = max_size
        self._ttl_s = ttl_s
        self._size = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        return self._size

    def stamp(self, tenant_id: uuid.UUID) -> Epoch | None:
        return self._feed.epoch(tenant_id)

    def get(self, tenant_id: uuid.UUID, key: Any) -> V | None:
        full = (str(tenant_id), key)
        entry = self._entries.get(full)
        if entry is not None:
            if entry.stamp == self._feed.epoch(tenant_id) and entry.expires > time.monotonic():
                self._entries.move_to_end(full)
                self.hits += 1
                return entry.value
            self._drop(full)
        self.misses += 1
        return None

    def peek(self, tenant_id: uuid.UUID, key: Any) -> V | None:
        """`get` that counts a hit but not a miss (a first look that another
        lookup follows on a miss)."""
        entry = self._entries.get((str(tenant_id), key))
        if entry is None:
            return None
        value = self.get(tenant_id, key)
        if value is None:
            self.misses -= 1
        return value

    def put(
        self, tenant_id: uuid.UUID, key: Any, value: V, stamp: Epoch | None, size: int = 1
    ) -> bool:
        """Keep `value` if `stamp` is still the tenant's epoch; whether it was kept."""
        if stamp is None or stamp != self._feed.epoch(tenant_id):
            return False
        if self._max_size is not None and size > self._max_size:
            return False
        full = (str(tenant_id), key)
        if full in self._entries:
            self._drop(full)
        self._entries[full] = _Entry(value, stamp, size, time.monotonic() + self._ttl_s)
        self._size += size
        while len(self._entries) > self._max_entries or (
            self._max_size is not None and self._size > self._max_size
        ):
            self._drop(next(iter(self._entries)))
        return True

    def _drop(self, full: tuple[str, Any]) -> None:
        entry = self._entries.pop(full, None)
        if entry is not None:
            self._size -= entry.size
