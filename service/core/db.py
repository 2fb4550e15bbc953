"""Engines, sessions and the per-transaction tenant scope.

Invariants held here, and only here:

* **One request or job = one transaction.** `get_session` (a FastAPI
  dependency with `scope="function"`) commits after the route returns and
  before the response is sent, and rolls back on any error. Services flush,
  never commit.
* **The tenant is set per transaction**, never per connection:
  `set_config('app.tenant_id', …, true)` (and `app.client_id`) runs on every
  `after_begin` of a session that carries a `DbScope`, so a pooled connection
  can never carry one tenant's setting into another's request. Row-level
  security policies read these settings and fail closed when they are unset.
* The API and worker connect as the application role (no BYPASSRLS); the
  admin engine (BYPASSRLS) is for platform administration and cron fan-out
  and is imported only by `tenants/`, `service/worker.py` and `service/cli.py`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import structlog
from fastapi import Depends, Request
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, SessionTransaction

from service.core.config import DatabaseSettings

log = structlog.get_logger(__name__)

SCOPE_KEY = "callpact.scope"
DB_KEY = "callpact.db"  # the Database a session belongs to
_BEGAN_KEY = "callpact.began"  # a transaction of this session holds a connection
_CHANGED_KEY = "callpact.changed"  # tenant (or "*") whose watched tables it wrote

_SET_SCOPE = text(
    "select set_config('app.tenant_id', :tenant_id, true),"
    " set_config('app.client_id', :client_id, true)"
)


@dataclass(frozen=True, slots=True)
class DbScope:
    """What the row-level security policies of one transaction see."""

    tenant_id: uuid.UUID | None = None
    client_id: uuid.UUID | None = None

    def params(self) -> dict[str, str]:
        return {
            "tenant_id": str(self.tenant_id) if self.tenant_id else "",
            "client_id": str(self.client_id) if self.client_id else "",
        }


@event.listens_for(Session, "after_begin")
def _apply_scope(session: Session, transaction: SessionTransaction, connection: Connection) -> None:
    scope: DbScope | None = session.info.get(SCOPE_KEY)
    if scope is not None:
        connection.execute(_SET_SCOPE, scope.params())
    session.info[_BEGAN_KEY] = True


# Changes this process commits are announced to its own caches at once (the
# other processes learn them from the notification): the triggers of migration
# 0006 leave the written tenant in `callpact.changed`, read just before COMMIT.
_READ_CHANGED = text("select current_setting('callpact.changed', true)")


@event.listens_for(Session, "before_commit")
def _read_changed(session: Session) -> None:
    db: Database | None = session.info.get(DB_KEY)
    if db is None or not db.change_listeners or session.in_nested_transaction():
        return
    if session.info.pop(_BEGAN_KEY, False):
        changed = session.execute(_READ_CHANGED).scalar()
        if changed:
            session.info[_CHANGED_KEY] = changed


@event.listens_for(Session, "after_commit")
def _announce_changed(session: Session) -> None:
    changed = session.info.pop(_CHANGED_KEY, None)
    db: Database | None = session.info.get(DB_KEY)
    if changed and db is not None:
        for listener in db.change_listeners:
            listener(changed)


@event.listens_for(Session, "after_rollback")
def _forget_changed(session: Session) -> None:
    if not session.in_nested_transaction():
        session.info.pop(_BEGAN_KEY, None)
        session.info.pop(_CHANGED_KEY, None)


async def set_scope(session: AsyncSession, scope: DbScope) -> None:
    """Scope this session's transactions to a tenant (and client), now and on every begin."""
    session.info[SCOPE_KEY] = scope
    if session.in_transaction():
        await session.execute(_SET_SCOPE, scope.params())


# Planned for their values every time: the driver prepares a statement once per
# connection, and from its sixth run PostgreSQL may keep a generic plan, blind to
# `project_id = any($n)` or to the bounds that prune partitions (with
# `planner_settings(..., plan_cache_mode=CUSTOM_PLANS)`; see service/kpis/repository.py).
CUSTOM_PLANS = "force_custom_plan"


@asynccontextmanager
async def planner_settings(session: AsyncSession, **settings: str) -> AsyncIterator[None]:
    """Planner settings for the statements inside the block, restored after it.

    For the few statements whose plan PostgreSQL gets wrong because row-level
    security and array parameters leave it guessing at row counts (a read of
    7 600 histogram cells estimated at 3 rows; a year of 10 M contacts at 200 k):
    `set_config(…, true)` is transaction-local, and the previous values come
    back in the same round trip, so nothing leaks into later statements."""
    names = list(settings)
    conn = await session.connection()
    olds = ", ".join(f"current_setting(:n{i}) as old{i}" for i in range(len(names)))
    news = ", ".join(f"set_config(:n{i}, :v{i}, true)" for i in range(len(names)))
    got = await conn.execute(
        # The old values are read (the CTE's row) before the new ones are set.
        text(f"with o as materialized (select {olds}) select o.*, {news} from o"),
        {
            **{f"n{i}": n for i, n in enumerate(names)},
            **{f"v{i}": settings[n] for i, n in enumerate(names)},
        },
    )
    old = got.one()
    yield
    # Not on an error: the transaction is failed then, and rolling it (or the
    # savepoint) back undoes the settings anyway.
    await conn.execute(
        text("select " + ", ".join(f"set_config(:n{i}, :o{i}, true)" for i in range(len(names)))),
        {
            **{f"n{i}": n for i, n in enumerate(names)},
            **{f"o{i}": old[i] for i in range(len(names))},
        },
    )


# What the session's transaction has written, its scope, its role, and its
# snapshot exported for the readers (valid while the transaction lasts).
_SESSION_STATE = text(
    "select pg_current_xact_id_if_assigned() is not null,"
    " current_setting('app.tenant_id', true), current_setting('app.client_id', true),"
    " current_user::text, pg_export_snapshot()"
)
_SNAPSHOT_ID = re.compile(r"^[0-9A-F]+-[0-9A-F]+(-[0-9]+)?$")


@asynccontextmanager
async def snapshot_readers(
    session: AsyncSession, **settings: str
) -> AsyncIterator[list[AsyncConnection]]:
    """Connections that read, together, what one statement of `session` would read.

    PostgreSQL does not split an aggregate with grouping sets between parallel
    workers, so a tenant's year of raw contacts is read on one core. These
    connections (`DATABASE_READ_PARALLELISM` of them, from a pool of their own)
    let the caller split such a read by time and run the parts at once. The
    session exports its snapshot (`pg_export_snapshot`) and every reader
    imports it, so all parts see the committed rows the session's next
    statement would see: those of its transaction's snapshot under REPEATABLE
    READ, those committed by now under READ COMMITTED. Each carries the tenant
    and client settings the session's transaction has now (row-level security
    applies as in the session) and `settings` (planner settings); all are
    read-only.

    Yields no connection (the caller reads on the session) when splitting could
    be wrong or wait: the session's transaction has written (the readers would
    not see its own rows), it is inside a savepoint (PostgreSQL exports no
    snapshot from a subtransaction), it has no tenant set, it runs as another
    role than the readers (an admin session bypasses row-level security, the
    readers do not), parallelism is 1, another split read of this process holds
    the readers, or they cannot be had now.

    The body must have no statement running on a reader when it leaves (cancel and
    await them on an error): a connection closed mid-statement goes back dirty."""
    db: Database | None = session.info.get(DB_KEY)
    if (
        db is None
        or db.settings.read_parallelism < 2
        or db.readers_busy
        or session.in_nested_transaction()
    ):
        yield []
        return
    # The scope the session's statements run under, as row-level security reads it.
    wrote, tenant, client, role, snapshot = (await session.execute(_SESSION_STATE)).one()
    if wrote or not tenant or db.readers_busy:
        yield []
        return
    if not _SNAPSHOT_ID.match(snapshot):
        raise RuntimeError(f"unexpected snapshot id {snapshot!r}")
    db.readers_busy = True
    try:
        async with AsyncExitStack() as stack:
            try:
                readers = await _open_readers(
                    db, stack, snapshot, [tenant, client or ""], settings, role
                )
            except (SQLAlchemyError, OSError) as exc:
                log.warning("split_read_unavailable", error=str(exc))
                readers = []
            if not readers:
                await stack.aclose()  # not held while the session reads alone
            yield readers
    finally:
        db.readers_busy = False


async def _open_readers(
    db: Database,
    stack: AsyncExitStack,
    snapshot: str,
    scope: list[str],
    settings: dict[str, str],
    role: str,
) -> list[AsyncConnection]:
    """The readers, in `snapshot`, or none if they would run as another role than
    `role` (the session's): row-level security would not be the session's."""
    names = ["app.tenant_id", "app.client_id", *settings]
    values = [*scope, *settings.values()]
    configure = text(
        "select current_user::text, "
        + ", ".join(f"set_config(:n{i}, :v{i}, true)" for i in range(len(names)))
    )
    params = {
        **{f"n{i}": n for i, n in enumerate(names)},
        **{f"v{i}": v for i, v in enumerate(values)},
    }
    readers: list[AsyncConnection] = []
    for _ in range(db.settings.read_parallelism):
        conn = await stack.enter_async_context(db.reader_engine.connect())
        # The transaction's first statement; it takes no parameter.
        await conn.execute(text(f"set transaction snapshot '{snapshot}'"))
        if (await conn.execute(configure, params)).scalar() != role:
            log.info("split_read_other_role", role=role)
            return []
        readers.append(conn)
    return readers


def asyncpg_url(dsn: str) -> str:
    """`postgresql://…` → `postgresql+asyncpg://…`; libpq-only query options dropped."""
    parts = urlsplit(dsn)
    scheme = "postgresql+asyncpg"
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in {"sslmode", "options"}]
    sslmode = dict(parse_qsl(parts.query)).get("sslmode")
    if sslmode in {"require", "verify-ca", "verify-full"}:
        query.append(("ssl", sslmode))
    return urlunsplit((scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def create_engine(
    dsn: str, settings: DatabaseSettings, *, pool_size: int | None = None, **options: Any
) -> AsyncEngine:
    return create_async_engine(
        asyncpg_url(dsn),
        **options,
        pool_size=pool_size or settings.pool_size,
        max_overflow=0,
        pool_timeout=settings.pool_timeout_s,
        pool_recycle=1800,
        connect_args={
            "timeout": settings.connect_timeout_s,
            "command_timeout": settings.statement_timeout_ms / 1000 + 5,
            "server_settings": {
                "application_name": "callpact",
                # Timestamps rendered as text (content hashes, logs) never depend on the server's zone.
                "timezone": "UTC",
                "statement_timeout": str(settings.statement_timeout_ms),
                "idle_in_transaction_session_timeout": str(settings.statement_timeout_ms * 4),
            },
        },
    )


class Database:
    """The engines and session factories of one process."""

    def __init__(self, settings: DatabaseSettings) -> None:
        self.settings = settings
        self.engine = create_engine(settings.app_dsn(), settings)
        self.sessionmaker = async_sessionmaker(
            self.engine, expire_on_commit=False, info={DB_KEY: self}
        )
        self._admin_engine: AsyncEngine | None = None
        self._reader_engine: AsyncEngine | None = None
        self.readers_busy = False  # one split read at a time per process (`snapshot_readers`)
        # Called with the tenant (or "*") after a commit that wrote what the
        # change triggers watch (see service/core/changes.py).
        self.change_listeners: list[Callable[[str], None]] = []

    @property
    def admin_engine(self) -> AsyncEngine:
        if self._admin_engine is None:
            self._admin_engine = create_engine(
                self.settings.admin_dsn(), self.settings, pool_size=2
            )
        return self._admin_engine

    @property
    def reader_engine(self) -> AsyncEngine:
        """The pool of `snapshot_readers`: read-only REPEATABLE READ transactions of the
        application role, apart from the request pool (a request holding one of those
        never waits here for a second)."""
        if self._reader_engine is None:
            self._reader_engine = create_engine(
                self.settings.app_dsn(),
                self.settings,
                pool_size=self.settings.read_parallelism,
                isolation_level="REPEATABLE READ",
                execution_options={"postgresql_readonly": True},
            )
        return self._reader_engine

    def session(self) -> AsyncSession:
        return self.sessionmaker()

    def admin_session(self) -> AsyncSession:
        return AsyncSession(self.admin_engine, expire_on_commit=False, info={DB_KEY: self})

    @asynccontextmanager
    async def transaction(self, scope: DbScope | None = None) -> AsyncIterator[AsyncSession]:
        """One unit of work outside a request (jobs, CLI): commit or roll back."""
        async with self.session() as session:
            if scope is not None:
                session.info[SCOPE_KEY] = scope
            async with session.begin():
                yield session

    @asynccontextmanager
    async def admin_transaction(self) -> AsyncIterator[AsyncSession]:
        async with self.admin_session() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._reader_engine is not None:
            await self._reader_engine.dispose()
        if self._admin_engine is not None:
            await self._admin_engine.dispose()


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's one session and transaction: commit on success, roll back on error."""
    db = get_db(request)
    async with db.session() as session:
        try:
            yield session
            if session.in_transaction():  # a request served from caches never began one
                await session.commit()
        except BaseException:
            await session.rollback()
            raise


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


# --- guarded writes -----------------------------------------------------------------
# A write inside a SAVEPOINT whose constraint violation comes back as a value,
# so a service can answer 409 naming the clash while the request's transaction
# stays usable. One mechanism for every domain (and for reading the SQLSTATE
# of any database error).


@dataclass(frozen=True)
class Violation:
    """What the database refused: SQLSTATE, constraint name and (server-side)
    detail. The detail is for the service to read, never to send to a client."""

    sqlstate: str | None
    constraint: str | None
    detail: str | None


def violation_of(exc: DBAPIError) -> Violation:
    """The SQLSTATE, constraint and detail of an error raised through asyncpg.
    SQLAlchemy's adapter carries the SQLSTATE; the asyncpg error under it
    (`__cause__`) carries the constraint name and detail."""
    orig: Any = exc.orig
    cause: Any = getattr(orig, "__cause__", None)
    return Violation(
        sqlstate=getattr(orig, "sqlstate", None) or getattr(cause, "sqlstate", None),
        constraint=getattr(cause, "constraint_name", None)
        or getattr(orig, "constraint_name", None),
        detail=getattr(cause, "detail", None) or getattr(orig, "detail", None),
    )


async def write_guarded(
    session: AsyncSession, apply: Callable[[], object], *, expected: Collection[str]
) -> Violation | None:
    """Run `apply` (adds, attribute changes, deletes) and flush inside a savepoint.
    A violation of an `expected` constraint (by name or SQLSTATE) rolls the
    savepoint back and is returned; any other is a bug and propagates."""
    try:
        async with session.begin_nested():
            apply()
            await session.flush()
    except IntegrityError as exc:
        violation = violation_of(exc)
        if violation.constraint in expected or violation.sqlstate in expected:
            return violation
        raise
    return None


async def insert_guarded(
    session: AsyncSession, obj: Any, *, expected: Collection[str]
) -> Violation | None:
    return await write_guarded(session, lambda: session.add(obj), expected=expected)


def update_from(obj: Any, changes: dict[str, Any]) -> Callable[[], None]:
    def apply() -> None:
        for key, value in changes.items():
            setattr(obj, key, value)

    return apply
