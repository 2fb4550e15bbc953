"""Idempotent contact ingestion: nothing lost, nothing doubled.

Every importer (JSON batch API, CSV upload, Asterisk `queue_log`, Amazon
Connect) ends here with normalized `ContactRecord`s. One batch is handled
set-wise, in the caller's transaction and under its tenant scope:

1. The records are COPYed into a temporary staging table (row-level
   security forbids COPY into tenant tables), with durations as whole
   milliseconds rounded up (service/kpis/sums.py).
2. ONE statement maps queue keys to projects (unmapped → the row is
   rejected and the queue reported) and agent keys to pool agents (unmapped
   → the contact is kept without an agent and the key reported), hashes the
   content, keeps the newest version of a contact repeated inside the batch
   (ranked only when an external id repeats) and classifies each row against
   `contact_keys`, which holds what classification needs (content hash,
   version, where the contact lives), so it never reads `contacts`: **new**,
   **duplicate** (same content), **stale** (an older version arriving late:
   changes nothing) or **update** (a newer version: a correction).
3. New keys are inserted into `contact_keys` first, with a plain INSERT: a
   key another transaction inserted since the classification fails the
   insert, the batch's savepoint is rolled back and the batch classified
   again (it then sees that key). The same happens when a key to update has
   changed since (a concurrent correction). ON CONFLICT would guard each row
   with a speculative insertion, which measured 1.7x the cost of the insert.
4. New rows are inserted into `contacts`; updated rows replace the old ones
   and record what changed in `contact_corrections`.
5. The rollups move in the same transaction: the old version of a corrected
   contact is subtracted from its buckets, every new version added.
6. FCR by repeat: the contacts of the batch's customers within reach (the
   longest FCR window) get their `repeat_days` recomputed, and the daily
   repeat counts move by what changed (`service/kpis/rollups.py`).

Decision rule for "newer": both versions carry a `source_version` → the
higher wins (equal and different content: the later arrival wins);
otherwise a different content is a correction. A duplicate (same content)
with a higher version than the key's moves the key's version on: a version
older than the newest one seen is stale even when the newest only repeated
the facts. Inside a batch, rows that lose to another row of the same contact
count as duplicates when they repeat its facts, as stale otherwise.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from service.contacts.errors import ConcurrentImport
from service.contacts.records import ContactRecord
from service.core.db import violation_of
from service.core.time import BATCH_ID_SQL, MAX_BATCH_IDS, id_prefix
from service.kpis.rollups import apply_ingest_delta, apply_repeat_changes
from service.kpis.sums import InvalidContact, duration_ms

STAGE_COLUMNS = (
    "row_no",
    "queue_key",
    "project_hint",
    "external_id",
    "channel",
    "source",
    "customer_key",
    "queued_at",
    "answered_at",
    "ended_at",
    "abandoned_at",
    "outcome",
    "agent_key",
    "wait_ms",
    "talk_ms",
    "hold_ms",
    "hold_count",
    "acw_ms",
    "transferred",
    "resolved_first_contact",
    "csat",
    "nps",
    "sentiment",
    "source_version",
    "raw_ref",
    "seq",
)

_CREATE_STAGE = """
create temp table if not exists stage_contacts (
  row_no int not null,
  queue_key text,
  project_hint uuid,
  external_id text not null,
  channel text not null,
  source text not null,
  customer_key text,
  queued_at timestamptz not null,
  answered_at timestamptz,
  ended_at timestamptz,
  abandoned_at timestamptz,
  outcome text not null,
  agent_key text,
  wait_ms bigint,
  talk_ms bigint,
  hold_ms bigint,
  hold_count int,
  acw_ms bigint,
  transferred boolean,
  resolved_first_contact boolean,
  csat smallint,
  nps smallint,
  sentiment real,
  source_version bigint,
  raw_ref text,
  seq int not null
) on commit drop
"""

# A batch whose savepoint lost a race (a key inserted or corrected by a concurrent
# import since it was classified) is classified and written again; each retry
# follows another transaction's commit, so this bounds only pathological churn.
ATTEMPTS = 5
_UNIQUE_VIOLATION = "23505"
_DEADLOCK_DETECTED = "40P01"
_KEYS_PKEY = "contact_keys_pkey"
WORK_MEM = "32MB"


@dataclass
class RowProblem:
    row: int
    field: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "reason": self.reason}


@dataclass
class Receipt:
    """What happened to every record of a batch."""

    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    updated: int = 0
    stale: int = 0
    rejected: list[RowProblem] = field(default_factory=list)
    unmapped_queues: Counter[str] = field(default_factory=Counter)
    unmapped_agents: Counter[str] = field(default_factory=Counter)

    def merge(self, other: Receipt) -> None:
        self.received += other.received
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.updated += other.updated
        self.stale += other.stale
        self.rejected.extend(other.rejected)
        self.unmapped_queues.update(other.unmapped_queues)
        self.unmapped_agents.update(other.unmapped_agents)

    def as_dict(self, max_rejected: int = 1000) -> dict[str, Any]:
        return {
            "received": self.received,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "updated": self.updated,
            "stale": self.stale,
            "rejected_count": len(self.rejected),
            "rejected": [p.as_dict() for p in self.rejected[:max_rejected]],
            "unmapped_queues": dict(self.unmapped_queues),
            "unmapped_agents": dict(self.unmapped_agents),
        }


def _ms(value: float | None, name: str) -> int | None:
    if value is None:
        return None
    # Fast path for whole seconds (what Asterisk and Amazon Connect give).
    if type(value) is float and value.is_integer() and 0 <= value < 1e12:
        return int(value) * 1000
    if type(value) is int and value >= 0:
        return value * 1000
    try:
        return duration_ms(value)
    except InvalidContact as exc:
        raise ValueError(f"{name}: {exc}") from exc


MAX_KEY_CHARS = 200
"""The longest external id, queue, agent or customer key, as the JSON API's contract
says: they are indexed (`contact_keys`, `ingest_issues`), and a B-tree entry of a few
kB of incompressible text fails the whole statement (a 500), not one row."""
_KEY_FIELDS = ("external_id", "queue_key", "agent_key", "customer_key")


def _check_keys(record: ContactRecord) -> None:
    if (
        len(record.external_id) > MAX_KEY_CHARS
        or len(record.queue_key) > MAX_KEY_CHARS
        or (record.agent_key is not None and len(record.agent_key) > MAX_KEY_CHARS)
        or (record.customer_key is not None and len(record.customer_key) > MAX_KEY_CHARS)
    ):
        name = next(n for n in _KEY_FIELDS if len(getattr(record, n) or "") > MAX_KEY_CHARS)
        raise ValueError(f"{name}: longer than {MAX_KEY_CHARS} characters")


def stage_row(
    row_no: int, record: ContactRecord, project_hint: uuid.UUID | None = None, seq: int = 0
) -> tuple[Any, ...]:
    """The staging tuple of one record (raises ValueError naming the field); `seq`
    numbers the staged rows of a batch from 0 (it makes the new contact ids)."""
    _check_keys(record)
    wait_ms = _ms(record.wait_s, "wait_s")
    if wait_ms is None and record.outcome != "in_queue":
        # A wait the source did not give is the time between the queue and the exit.
        end = record.answered_at or record.abandoned_at or record.ended_at
        if end is not None:
            if end < record.queued_at:
                raise ValueError("answered_at/ended_at: before queued_at")
            wait_ms = _ms((end - record.queued_at).total_seconds(), "wait_s")
        if wait_ms is None:
            raise ValueError("wait_s: unknown (no wait and no answer, abandon or end time)")
    return (
        row_no,
        record.queue_key,
        project_hint,
        record.external_id,
        record.channel,
        record.source,
        customer_key_of(record.customer_key),
        record.queued_at,
        record.answered_at,
        record.ended_at,
        record.abandoned_at,
        record.outcome,
        record.agent_key,
        wait_ms,
        _ms(record.talk_s, "talk_s"),
        _ms(record.hold_s, "hold_s"),
        record.hold_count,
        _ms(record.acw_s, "acw_s"),
        record.transferred,
        record.resolved_first_contact,
        record.csat,
        record.nps,
        record.sentiment,
        record.source_version,
        record.raw_ref,
        seq,
    )


# What telephony systems log for a caller they cannot name (a withheld or unknown
# number). Kept as a customer, all such calls would be one customer, and every one
# of them but the last a repeat in FCR by repeat.
ANONYMOUS_CALLERS = frozenset(
    {
        "anonymous",
        "unknown",
        "<unknown>",
        "restricted",
        "private",
        "unavailable",
        "withheld",
        "blocked",
        "unknown caller",
        "anonymous caller",
    }
)


def customer_key_of(value: str | None) -> str | None:
    """The customer key a contact is stored with: none for a blank or anonymous caller."""
    if value is None:
        return None
    stripped = value.strip()
    if not stripped or stripped.lower() in ANONYMOUS_CALLERS:
        return None
    return value


MAX_BATCH_ROWS = MAX_BATCH_IDS  # `seq` makes the ids (service.core.time.id_prefix)


async def _driver(session: AsyncSession) -> Any:
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    return raw.driver_connection


class _Raced(Exception):
    """A key this batch corrects was changed by a concurrent import meanwhile."""


async def ingest_records(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    rows: Iterable[tuple[int, ContactRecord] | tuple[int, ContactRecord, uuid.UUID | None]],
    *,
    projects: frozenset[uuid.UUID] | None = None,
) -> Receipt:
    """Ingest one batch of records (row numbers are the caller's, for the receipt).

    `projects` limits the batch to those projects (a supervisor's); rows of
    other projects are refused as unknown. The session must carry the
    tenant's scope (row-level security applies to every statement).
    """
    receipt = Receipt()
    staged: list[tuple[Any, ...]] = []
    add = staged.append
    external_ids: set[str] = set()
    seen = external_ids.add
    for item in rows:
        row_no, record = item[0], item[1]
        hint = item[2] if len(item) > 2 else None
        receipt.received += 1
        try:
            add(stage_row(row_no, record, hint, len(staged)))
        except ValueError as exc:
            field_name, _, reason = str(exc).partition(": ")
            receipt.rejected.append(
                RowProblem(row_no, field_name if reason else "record", reason or str(exc))
            )
            continue
        seen(record.external_id)
    if not staged:
        return receipt
    if len(staged) > MAX_BATCH_ROWS:
        raise ValueError(f"at most {MAX_BATCH_ROWS} records in one ingest batch")
    apg = await _driver(session)
    await apg.execute(_CREATE_STAGE)
    await apg.execute("truncate stage_contacts")
    await apg.copy_records_to_table("stage_contacts", records=staged, columns=list(STAGE_COLUMNS))
    # Statistics for the join keys only: without them the joins are planned as
    # nested loops; the whole table's (25 columns) cost a third of a second a batch.
    await apg.execute("analyze stage_contacts (queue_key, project_hint, agent_key)")
    params = {
        "t": tenant_id,
        "projects": list(projects) if projects is not None else None,
    }
    # An external id repeated inside the batch may be two versions of one contact:
    # only then is the batch ranked (a sort of every row).
    classify = CLASSIFY_RANKED if len(external_ids) < len(staged) else CLASSIFY
    # The rollup aggregates of a 50 000-row batch spilled to disk at the default 4 MB;
    # raised for this batch's statements only, then put back. JIT off likewise: the
    # classification's estimated cost crosses jit_above_cost, and compiling its
    # expressions took longer (~35 ms a batch) than the rows they are run on.
    saved = await apg.fetchrow("select current_setting('work_mem'), current_setting('jit')")
    await apg.execute(
        f"select set_config('work_mem', '{WORK_MEM}', true), set_config('jit', 'off', true)"
    )
    verdicts: list[Any] = []
    for attempt in range(1, ATTEMPTS + 1):
        try:
            async with session.begin_nested():
                verdicts = await _write(session, classify, {**params, "ids": id_prefix()})
            break
        except _Raced:
            if attempt == ATTEMPTS:
                raise ConcurrentImport() from None
        except DBAPIError as exc:
            violation = violation_of(exc)
            raced = (
                violation.sqlstate == _UNIQUE_VIOLATION and violation.constraint == _KEYS_PKEY
            ) or violation.sqlstate == _DEADLOCK_DETECTED
            if not raced:
                raise
            if attempt == ATTEMPTS:
                raise ConcurrentImport() from exc
    await apg.execute(
        "select set_config('work_mem', $1, true), set_config('jit', $2, true)", *saved
    )
    await _fill_receipt(session, tenant_id, receipt, verdicts)
    return receipt


async def _write(session: AsyncSession, classify: str, params: dict[str, Any]) -> list[Any]:
    """Classify the staged batch and write it: keys, contacts, corrections, rollups.
    Returns the receipt's rows (what the classification decided)."""
    await session.execute(text("drop table if exists stage_verdicts"))
    await session.execute(text(classify), params)
    # A temporary table has no statistics until analyzed: the verdict filter was
    # estimated at 0.5 % of the rows, so the rollups sorted a batch to group it.
    await session.execute(text("analyze stage_verdicts (verdict)"))
    # The receipt's counts, read now, also say whether anything is corrected (a
    # separate count was another scan of the batch).
    verdicts = list(await session.execute(text(RECEIPT)))
    updates = sum(n for kind, verdict, *_, n in verdicts if kind == "count" and verdict == "update")
    ahead = sum(n for kind, *_, n in verdicts if kind == "ahead")
    await session.execute(text(INSERT_KEYS), params)
    if ahead:
        bumped = await session.execute(text(BUMP_KEYS), params)
        if bumped.rowcount != ahead:  # type: ignore[attr-defined]
            raise _Raced()
        await session.execute(text(BUMP_CONTACTS), params)
    if updates:
        changed = await session.execute(text(UPDATE_KEYS), params)
        if changed.rowcount != updates:  # type: ignore[attr-defined]
            raise _Raced()
        await session.execute(text("drop table if exists stage_old"))
        await session.execute(text(TAKE_OLD), params)
    await session.execute(text(INSERT_CONTACTS), params)
    if updates:
        await session.execute(text(RECORD_CORRECTIONS), params)
    await apply_ingest_delta(session, params["t"], corrections=bool(updates))
    await apply_repeat_changes(session, params["t"], corrections=bool(updates))
    return verdicts


async def _fill_receipt(
    session: AsyncSession, tenant_id: uuid.UUID, receipt: Receipt, verdicts: list[Any]
) -> None:
    """Counts per verdict, every rejected row, unmapped queues and agents (`RECEIPT`)."""
    issues: Counter[tuple[str, str, str]] = Counter()  # (feed, kind, subject)
    for kind, verdict, row_no, source, key, n in verdicts:
        if kind == "count":
            if verdict == "new":
                receipt.accepted += n
            elif verdict in ("duplicate", "superseded"):
                # superseded: a copy of the row that wins inside the same batch
                receipt.duplicates += n
            elif verdict in ("stale", "outdated"):
                # outdated: another version of a contact whose newer row is in the batch
                receipt.stale += n
            elif verdict == "update":
                receipt.updated += n
        elif kind == "ahead":
            continue
        elif kind == "agent":
            receipt.unmapped_agents[key] += n
            issues[(source, "unmapped_agent", key)] += n
        elif verdict == "unknown_project":
            receipt.rejected.append(RowProblem(row_no, "project_id", "no such project"))
        else:
            # unmapped_queue, or queue_out_of_scope: mapped, but to a project the caller (a
            # supervisor) is not assigned; answered like an unmapped queue, and not a
            # data-quality issue of the tenant.
            receipt.rejected.append(
                RowProblem(row_no, "queue_key", f"no project maps queue {key!r}")
            )
            receipt.unmapped_queues[key or ""] += 1
            if verdict == "unmapped_queue":
                issues[(source, "unmapped_queue", key or "")] += 1
    receipt.rejected.sort(key=lambda p: p.row)
    await _record_unmapped(session, tenant_id, issues)


async def _record_unmapped(
    session: AsyncSession, tenant_id: uuid.UUID, issues: Counter[tuple[str, str, str]]
) -> None:
    """Data quality: remember unmapped queues and agents per feed, with counts."""
    for (source, kind, subject), n in issues.items():
        await session.execute(
            text(
                "insert into ingest_issues (tenant_id, id, source, kind, subject, occurrences) "
                "values (:t, :id, :src, :k, :s, :n) "
                "on conflict (tenant_id, source, kind, subject) do update "
                "set occurrences = ingest_issues.occurrences + excluded.occurrences, last_seen = now()"
            ),
            {"t": tenant_id, "id": uuid.uuid4(), "src": source, "k": kind, "s": subject, "n": n},
        )


# ---- the set-wise statements -----------------------------------------------------
# They run in order in the caller's transaction; every table they touch is under
# row-level security with the tenant's scope, and `:t` repeats the tenant so the
# planner uses the (tenant_id, …) keys.

_CLASSIFY = """
create temp table stage_verdicts on commit drop as
with mapped as (
  select s.*,
         -- The facts without the version and the provenance: a re-sent record from
         -- another file, or with a bumped version but identical facts, is a duplicate.
         hashtextextended(row(s.external_id, s.channel, s.customer_key, s.queued_at, s.answered_at,
           s.ended_at, s.abandoned_at, s.outcome, s.agent_key, s.wait_ms, s.talk_ms, s.hold_ms,
           s.hold_count, s.acw_ms, s.transferred, s.resolved_first_contact, s.csat, s.nps,
           s.sentiment)::text, 0) as content_hash,
         p.id as project_id, p.client_id, p.time_zone,
         ax.agent_id,
         case
           when s.project_hint is not null and p.id is null then 'unknown_project'
           when s.project_hint is null and p.id is null then 'unmapped_queue'
           when cast(:projects as uuid[]) is not null and p.id <> all(cast(:projects as uuid[])) then
             case when s.project_hint is null then 'queue_out_of_scope' else 'unknown_project' end
         end as problem,
         (s.agent_key is not null and ax.agent_id is null) as agent_unmapped
  from stage_contacts s
  left join project_queue_keys qk
    on s.project_hint is null and qk.tenant_id = :t and qk.queue_key = s.queue_key
  left join projects p
    on p.tenant_id = :t and p.id = coalesce(s.project_hint, qk.project_id)
  -- One lookup per distinct agent key, not a probe per row (a per-row
  -- `order by system limit 1` walked the tenant's whole id list each time).
  left join (
    select distinct on (e.external_id) e.external_id, e.agent_id
    from agent_external_ids e
    where e.tenant_id = :t
      and e.external_id in (select distinct agent_key from stage_contacts where agent_key is not null)
    order by e.external_id, e.system
  ) ax on ax.external_id = s.agent_key
),
-- OFFSET 0 keeps this a subquery the planner does not flatten: flattened, every
-- reference to `content_hash` below (the stored column, the verdict, the version
-- check, the winner) ran the row-to-text hash again (+0.15 s a 50 000-row batch).
ranked as (
  select m.*, {rank} as rank_in_batch, {winner} as winner_hash from mapped m {window}
  offset 0
)
select r.*,
       {new_id} as new_id,
       (r.queued_at at time zone r.time_zone)::date as local_day,
       k.contact_id as old_id, k.queued_at as old_queued_at, k.content_hash as old_hash,
       k.source_version as old_version,
       case
         when r.problem is not null then r.problem
         -- Another row of the batch wins: an identical copy of it is a duplicate, another
         -- version (older, or equal and earlier in the batch) changes nothing, like a stale one.
         when r.rank_in_batch > 1 then
           case when r.content_hash = r.winner_hash then 'superseded' else 'outdated' end
         when k.contact_id is null then 'new'
         when k.content_hash = r.content_hash then 'duplicate'
         when k.source_version is not null and r.source_version is not null
              and r.source_version < k.source_version then 'stale'
         else 'update'
       end as verdict,
       -- A duplicate that carries a newer version than the key's: the facts stay, the
       -- version moves on, so that an older version arriving later is stale (`BUMP_*`).
       (r.problem is null and r.rank_in_batch = 1 and k.content_hash = r.content_hash
        and r.source_version is not null
        and (k.source_version is null or r.source_version > k.source_version)) as version_ahead
from ranked r
-- A probe of the key per row (LIMIT 1: the key is unique; it keeps the probe a
-- nested loop): a hash join read every key of the tenant, a cost that grew with
-- the table (measured at 1 M keys: twice the time of the probes for 50 000 rows).
left join lateral (
  select k.contact_id, k.queued_at, k.content_hash, k.source_version
  from contact_keys k
  where r.problem is null and k.tenant_id = :t and k.project_id = r.project_id
    and k.external_id = r.external_id
  limit 1
) k on true
"""
_NEW_ID = BATCH_ID_SQL.format(prefix=":ids", seq="r.seq")
CLASSIFY = _CLASSIFY.format(rank="1", winner="m.content_hash", window="", new_id=_NEW_ID)
CLASSIFY_RANKED = _CLASSIFY.format(
    new_id=_NEW_ID,
    rank="row_number() over w",
    winner="first_value(m.content_hash) over w",
    window="window w as (partition by m.problem is null, m.project_id, m.external_id"
    " order by m.source_version desc nulls last, m.row_no desc, m.seq desc)",
)

INSERT_KEYS = """
insert into contact_keys (tenant_id, project_id, external_id, client_id, contact_id,
  queued_at, source_version, content_hash, customer_key)
select :t, v.project_id, v.external_id, v.client_id, v.new_id, v.queued_at, v.source_version,
  v.content_hash, v.customer_key
from stage_verdicts v where v.verdict = 'new'
"""

# Only where the key is still what the batch was classified against: a row lock
# taken here serializes concurrent corrections of one contact, and a key changed
# meanwhile leaves the count short (the batch is classified again).
_KEY_UNCHANGED = """
from stage_verdicts v
where {rows} and k.tenant_id = :t and k.project_id = v.project_id
  and k.external_id = v.external_id and k.contact_id = v.old_id
  and k.content_hash = v.old_hash and k.source_version is not distinct from v.old_version
"""
UPDATE_KEYS = """
update contact_keys k
set queued_at = v.queued_at, source_version = v.source_version, content_hash = v.content_hash,
  customer_key = v.customer_key, repeat_days = null
""" + _KEY_UNCHANGED.format(rows="v.verdict = 'update'")

# Duplicates with a newer version: the key and the stored row take the version (nothing
# else changes, the rollups neither). Guarded like UPDATE_KEYS: a key changed since the
# classification leaves the count short and the batch is classified again.
BUMP_KEYS = """
update contact_keys k
set source_version = v.source_version
""" + _KEY_UNCHANGED.format(rows="v.version_ahead")

BUMP_CONTACTS = """
update contacts c
set source_version = v.source_version
from stage_verdicts v
where v.version_ahead and c.tenant_id = :t and c.project_id = v.project_id
  and c.queued_at = v.old_queued_at and c.id = v.old_id
"""

# The old versions of corrected contacts leave the table; kept for the rollups and
# the record of changes.
TAKE_OLD = """
create temp table stage_old on commit drop as
with gone as (
  delete from contacts c using stage_verdicts v
  where v.verdict = 'update' and c.tenant_id = :t and c.project_id = v.project_id
    and c.queued_at = v.old_queued_at and c.id = v.old_id
  returning c.*
)
select * from gone
"""

INSERT_CONTACTS = """
insert into contacts (tenant_id, id, project_id, client_id, channel, external_id, source,
  queue_key, customer_key, queued_at, answered_at, ended_at, abandoned_at, outcome,
  agent_id, agent_key, wait_ms, talk_ms, hold_ms, hold_count, acw_ms, transferred,
  resolved_first_contact, csat, nps, sentiment, source_version, raw_ref,
  bucket_start, local_day)
select :t, coalesce(v.old_id, v.new_id), v.project_id, v.client_id, v.channel, v.external_id,
  v.source, v.queue_key, v.customer_key, v.queued_at, v.answered_at, v.ended_at,
  v.abandoned_at, v.outcome, v.agent_id, v.agent_key, v.wait_ms, v.talk_ms, v.hold_ms,
  v.hold_count, v.acw_ms, v.transferred, v.resolved_first_contact, v.csat, v.nps,
  v.sentiment, v.source_version, v.raw_ref,
  date_bin('15 minutes', v.queued_at, timestamptz '2000-01-01 00:00+00'), v.local_day
from stage_verdicts v where v.verdict in ('new', 'update')
"""

RECORD_CORRECTIONS = """
insert into contact_corrections (tenant_id, id, contact_id, project_id, client_id,
  external_id, old_version, new_version, changes)
select :t, v.new_id, o.id, o.project_id, o.client_id, o.external_id, o.source_version,
  v.source_version,
  coalesce((
    select jsonb_object_agg(n.key, jsonb_build_object('old', b.value, 'new', n.value))
    from jsonb_each(to_jsonb(o)) b
    join jsonb_each(to_jsonb(c)) n using (key)
    where b.value is distinct from n.value
      and n.key not in ('ingested_at', 'updated_at', 'raw_ref', 'source_version', 'repeat_days')
  ), '{}'::jsonb)
from stage_old o
join stage_verdicts v on v.old_id = o.id and v.verdict = 'update'
join contacts c on c.tenant_id = :t and c.project_id = v.project_id
 and c.queued_at = v.queued_at and c.id = o.id
"""

# What the receipt needs, not a row per record: counts per verdict, the rejected
# rows and the unmapped agents of the rows that landed.
RECEIPT = """
select 'count' as kind, verdict, null::int as row_no, null::text as source, null::text as key,
       count(*)::int as n
from stage_verdicts
where verdict in ('new', 'duplicate', 'superseded', 'outdated', 'stale', 'update')
group by verdict
union all
select 'ahead', null, null, null, null, count(*)::int
from stage_verdicts
where version_ahead
having count(*) > 0
union all
select 'agent', null, null, source, agent_key, count(*)::int
from stage_verdicts
where agent_unmapped and verdict in ('new', 'update')
group by source, agent_key
union all
select 'rejected', verdict, row_no, source, queue_key, 1
from stage_verdicts
where problem is not null
"""
