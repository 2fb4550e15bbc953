"""Idempotent contact ingestion: nothing lost, nothing doubled.

Every importer (JSON batch API, CSV upload, Asterisk `queue_log`, Amazon
Connect) ends here with normalized `ContactRecord`s. One batch is handled
set-wise, in the caller's transaction and under its tenant scope:

1. The records are COPYed into a temporary staging table (row-level
   security forbids COPY into tenant tables), with durations as whole
   milliseconds rounded up (service/kpis/sums.py) and a content hash.
2. One SQL pass maps queue keys to projects (unmapped → the row is
   rejected and the queue reported) and agent keys to pool agents (unmapped
   → the contact is kept without an agent and the key reported), keeps the
   newest version of a contact repeated inside the batch, and classifies
   each row against `contact_keys`: **new**, **duplicate** (same content),
   **stale** (an older version arriving late: changes nothing) or
   **update** (a newer version: a correction).
3. New rows are inserted; updated rows replace the old ones and record
   what changed in `contact_corrections`.
4. The rollups move in the same transaction: the old version of a corrected
   contact is subtracted from its buckets, every new version added.

Decision rule for "newer": both versions carry a `source_version` → the
higher wins (equal and different content: the later arrival wins);
otherwise a different content is a correction.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.contacts.records import ContactRecord
from service.kpis.rollups import apply_ingest_delta
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
  raw_ref text
) on commit drop
"""


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


def stage_row(
    row_no: int, record: ContactRecord, project_hint: uuid.UUID | None = None
) -> tuple[Any, ...]:
    """The staging tuple of one record (raises ValueError naming the field)."""
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
    values = (
        record.queue_key,
        project_hint,
        record.external_id,
        record.channel,
        record.source,
        record.customer_key,
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
    )
    return (row_no, *values)


async def _driver(session: AsyncSession) -> Any:
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    return raw.driver_connection


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
    for item in rows:
        row_no, record = item[0], item[1]
        hint = item[2] if len(item) > 2 else None
        receipt.received += 1
        try:
            staged.append(stage_row(row_no, record, hint))
        except ValueError as exc:
            field_name, _, reason = str(exc).partition(": ")
            receipt.rejected.append(
                RowProblem(row_no, field_name if reason else "record", reason or str(exc))
            )
    if not staged:
        return receipt
    apg = await _driver(session)
    await apg.execute(_CREATE_STAGE)
    await apg.execute("truncate stage_contacts")
    await apg.copy_records_to_table("stage_contacts", records=staged, columns=list(STAGE_COLUMNS))
    # A fresh temp table has no statistics: without them the joins are planned as nested loops.
    await apg.execute("analyze stage_contacts")
    params = {"t": tenant_id, "projects": list(projects) if projects is not None else None}
    for statement in PIPELINE[:CLASSIFIED]:
        await session.execute(text(statement), params)
    corrections = bool(
        (
            await session.execute(
                text("select exists (select 1 from stage_verdicts where verdict = 'update')")
            )
        ).scalar()
    )
    for statement in PIPELINE[CLASSIFIED:]:
        if corrections or statement not in CORRECTION_ONLY:
            await session.execute(text(statement), params)
    await apply_ingest_delta(session, tenant_id, corrections=corrections)
    result = await session.execute(text(VERDICTS), params)
    issues: Counter[tuple[str, str, str]] = Counter()  # (feed, kind, subject)
    for row in result.mappings():
        verdict = row["verdict"]
        if verdict == "new":
            receipt.accepted += 1
        elif verdict == "duplicate":
            receipt.duplicates += 1
        elif verdict == "stale":
            receipt.stale += 1
        elif verdict == "update":
            receipt.updated += 1
        elif verdict == "superseded":
            receipt.duplicates += 1  # an older copy inside the same batch
        elif verdict == "queue_out_of_scope":
            # Mapped, but to a project the caller (a supervisor) is not assigned:
            # answered like an unmapped queue, and not a data-quality issue of the tenant.
            receipt.rejected.append(
                RowProblem(
                    row["row_no"], "queue_key", f"no project maps queue {row['queue_key']!r}"
                )
            )
            receipt.unmapped_queues[row["queue_key"] or ""] += 1
        elif verdict == "unmapped_queue":
            receipt.rejected.append(
                RowProblem(
                    row["row_no"], "queue_key", f"no project maps queue {row['queue_key']!r}"
                )
            )
            receipt.unmapped_queues[row["queue_key"] or ""] += 1
            issues[(row["source"], "unmapped_queue", row["queue_key"] or "")] += 1
        elif verdict == "unknown_project":
            receipt.rejected.append(RowProblem(row["row_no"], "project_id", "no such project"))
        if row["agent_unmapped"] and verdict in ("new", "update"):
            receipt.unmapped_agents[row["agent_key"]] += 1
            issues[(row["source"], "unmapped_agent", row["agent_key"])] += 1
    await _record_unmapped(session, tenant_id, issues)
    return receipt


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


# ---- the set-wise pipeline -------------------------------------------------------
# Statements run in order in the caller's transaction; every table they touch
# is under row-level security with the tenant's scope, and `:t` repeats the
# tenant so the planner uses the (tenant_id, …) keys.

PIPELINE: tuple[str, ...] = (
    "drop table if exists stage_mapped",
    """
    create temp table stage_mapped on commit drop as
    select s.*,
           callpact_uuid7() as new_id,
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
    """,
    "drop table if exists stage_verdicts",
    """
    create temp table stage_verdicts on commit drop as
    with ranked as (
      select m.*, row_number() over (
               partition by m.project_id, m.external_id
               order by m.source_version desc nulls last, m.row_no desc) as rank_in_batch
      from stage_mapped m where m.problem is null
    )
    select r.*, k.contact_id as old_id, k.queued_at as old_queued_at,
           case
             when r.rank_in_batch > 1 then 'superseded'
             when k.contact_id is null then 'new'
             when k.content_hash = r.content_hash then 'duplicate'
             when k.source_version is not null and r.source_version is not null
                  and r.source_version < k.source_version then 'stale'
             else 'update'
           end as verdict
    from ranked r
    left join contact_keys k
      on k.tenant_id = :t and k.project_id = r.project_id and k.external_id = r.external_id
    """,
    # The old versions of corrected contacts: leave the table, keep for rollups and the record of changes.
    "drop table if exists stage_old",
    """
    create temp table stage_old on commit drop as  -- corrections only
    with gone as (
      delete from contacts c using stage_verdicts v
      where v.verdict = 'update' and c.tenant_id = :t and c.id = v.old_id
        and c.queued_at = v.old_queued_at
      returning c.*
    )
    select * from gone
    """,
    """
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
      date_bin('15 minutes', v.queued_at, timestamptz '2000-01-01 00:00+00'),
      (v.queued_at at time zone v.time_zone)::date
    from stage_verdicts v where v.verdict in ('new', 'update')
    """,
    """
    insert into contact_keys (tenant_id, project_id, external_id, client_id, contact_id,
      queued_at, source_version, content_hash)
    select :t, v.project_id, v.external_id, v.client_id, coalesce(v.old_id, v.new_id),
      v.queued_at, v.source_version, v.content_hash
    from stage_verdicts v where v.verdict in ('new', 'update')
    on conflict (tenant_id, project_id, external_id) do update
      set contact_id = excluded.contact_id, queued_at = excluded.queued_at,
          source_version = excluded.source_version, content_hash = excluded.content_hash
    """,
    """
    insert into contact_corrections (tenant_id, id, contact_id, project_id, client_id,  -- corrections only
      external_id, old_version, new_version, changes)
    select :t, v.new_id, o.id, o.project_id, o.client_id, o.external_id, o.source_version,
      v.source_version,
      coalesce((
        select jsonb_object_agg(n.key, jsonb_build_object('old', b.value, 'new', n.value))
        from jsonb_each(to_jsonb(o)) b
        join jsonb_each(to_jsonb(c)) n using (key)
        where b.value is distinct from n.value
          and n.key not in ('ingested_at', 'updated_at', 'raw_ref', 'source_version')
      ), '{}'::jsonb)
    from stage_old o
    join stage_verdicts v on v.old_id = o.id and v.verdict = 'update'
    join contacts c on c.tenant_id = :t and c.id = o.id and c.queued_at = v.queued_at
    """,
)

VERDICTS = """
select m.row_no, m.source, m.queue_key, m.agent_key, m.agent_unmapped,
       coalesce(m.problem, v.verdict) as verdict
from stage_mapped m
left join stage_verdicts v on v.row_no = m.row_no
"""

# Statements up to the classification; the rest only when a verdict is 'update'
# (a corrected contact) if they are marked so — the partition-wide DELETE and the
# corrections record cost ~0.3 s a batch even with nothing to correct.
CLASSIFIED = (
    next(i for i, st in enumerate(PIPELINE) if "create temp table stage_verdicts" in st) + 1
)
CORRECTION_ONLY = frozenset(st for st in PIPELINE if "-- corrections only" in st)
