"""Idempotent agent-state ingestion: every event once, unmapped agents reported.

Agent-state events (`AgentStateEvent`: an agent entered a state at a time)
come from the JSON batch API, from `queue_log` uploads (the parser emits
them) and from the command line (CSV or JSON Lines files). One batch is
handled set-wise, in the caller's transaction and under its tenant scope:

1. The events are COPYed into a temporary staging table (row-level
   security forbids COPY into tenant tables).
2. One SQL pass maps `agent_key` to a pool agent through
   `agent_external_ids` (any system, as contact ingestion does) and
   `queue_key` to a project through `project_queue_keys`.
3. `INSERT … ON CONFLICT DO NOTHING` on the natural unique index
   `(tenant_id, agent_id, at, state, coalesce(queue_key, ''))`: the same
   event sent twice — in one batch, two batches or two files — is one row.

An event whose agent is not in the pool cannot be stored (the row needs
the agent) and is **unmapped**: counted per key in the receipt and in
`ingest_issues`, never an error of the batch. An event whose queue maps
to no project is stored without a project (the agent was in that state
all the same) and its queue is reported. For a caller limited to some
projects (a supervisor), an event naming a queue of another project is
rejected as an unknown queue, exactly like a queue no project maps.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import IO, Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.contacts.ingest import RowProblem
from service.contacts.records import AGENT_STATES, AgentStateEvent, ParseIssue, excerpt
from service.core.time import new_id

STAGE_COLUMNS = (
    "row_no",
    "new_id",
    "agent_key",
    "state",
    "reason",
    "queue_key",
    "at",
    "source",
    "raw_ref",
)

_CREATE_STAGE = """
create temp table if not exists stage_agent_states (
  row_no int not null,
  new_id uuid not null,
  agent_key text not null,
  state text not null,
  reason text,
  queue_key text,
  at timestamptz not null,
  source text not null,
  raw_ref text
) on commit drop
"""

_MAP = """
create temp table stage_agent_mapped on commit drop as
select s.*, ax.agent_id, qk.project_id,
       case
         when ax.agent_id is null then 'unmapped_agent'
         when cast(:projects as uuid[]) is not null and s.queue_key is not null
              and (qk.project_id is null or qk.project_id <> all(cast(:projects as uuid[])))
           then 'unknown_queue'
       end as problem
from stage_agent_states s
left join lateral (
  select e.agent_id from agent_external_ids e
  where e.tenant_id = :t and e.external_id = s.agent_key
  order by e.system limit 1
) ax on true
left join project_queue_keys qk on qk.tenant_id = :t and qk.queue_key = s.queue_key
"""

_INSERT = """
with inserted as (
  insert into agent_state_events
    (tenant_id, id, agent_id, at, state, reason, queue_key, project_id, source, raw_ref)
  select :t, m.new_id, m.agent_id, m.at, m.state, m.reason, m.queue_key, m.project_id,
         m.source, m.raw_ref
  from stage_agent_mapped m
  where m.problem is null
  order by m.row_no
  on conflict (tenant_id, agent_id, at, state, coalesce(queue_key, '')) do nothing
  returning id
)
select m.row_no, m.agent_key, m.queue_key, m.problem,
       (i.id is not null) as inserted,
       (m.queue_key is not null and m.project_id is null) as queue_unmapped
from stage_agent_mapped m
left join inserted i on i.id = m.new_id
"""

MAX_TEXT = 200


@dataclass
class AgentStateReceipt:
    """What happened to every event of a batch (rows are the caller's numbers)."""

    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: list[RowProblem] = field(default_factory=list)
    unmapped_agents: Counter[str] = field(default_factory=Counter)
    """Events not stored because no pool agent has the key (per key)."""
    unmapped_queues: Counter[str] = field(default_factory=Counter)
    """Events stored without a project: no project maps their queue (per queue)."""

    @property
    def unmapped(self) -> int:
        return sum(self.unmapped_agents.values())

    def merge(self, other: AgentStateReceipt) -> None:
        self.received += other.received
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.rejected.extend(other.rejected)
        self.unmapped_agents.update(other.unmapped_agents)
        self.unmapped_queues.update(other.unmapped_queues)

    def as_dict(self, max_rejected: int = 1000) -> dict[str, Any]:
        return {
            "received": self.received,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "unmapped": self.unmapped,
            "rejected_count": len(self.rejected),
            "rejected": [p.as_dict() for p in self.rejected[:max_rejected]],
            "unmapped_agents": dict(self.unmapped_agents),
            "unmapped_queues": dict(self.unmapped_queues),
        }


def _stage_row(row_no: int, event: AgentStateEvent) -> tuple[Any, ...]:
    """The staging tuple (raises ValueError naming the field)."""
    if event.state not in AGENT_STATES:
        raise ValueError(f"state: {event.state!r} is not one of {sorted(AGENT_STATES)}")
    for name in ("agent_key", "queue_key", "reason"):
        value = getattr(event, name)
        if value is None:
            continue
        if not value or len(value) > MAX_TEXT:
            raise ValueError(f"{name}: must be 1-{MAX_TEXT} characters")
        if "\x00" in value:
            raise ValueError(f"{name}: contains a NUL character")
    return (
        row_no,
        new_id(),
        event.agent_key,
        event.state,
        event.reason,
        event.queue_key,
        event.at,
        event.source,
        event.raw_ref,
    )


async def _driver(session: AsyncSession) -> Any:
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    return raw.driver_connection


async def ingest_agent_states(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    rows: Iterable[tuple[int, AgentStateEvent]],
    *,
    projects: frozenset[uuid.UUID] | None = None,
) -> AgentStateReceipt:
    """Ingest one batch of agent-state events (row numbers are the caller's, for the receipt).

    The session must carry the tenant's scope; `projects` limits the queues
    an event may name (a supervisor's projects). Flushes nothing itself and
    never commits: the rows are written in the caller's transaction.
    """
    receipt = AgentStateReceipt()
    staged: list[tuple[Any, ...]] = []
    for row_no, event in rows:
        receipt.received += 1
        try:
            staged.append(_stage_row(row_no, event))
        except ValueError as exc:
            field_name, _, reason = str(exc).partition(": ")
            receipt.rejected.append(RowProblem(row_no, field_name, reason))
    if not staged:
        return receipt
    apg = await _driver(session)
    await apg.execute(_CREATE_STAGE)
    await apg.execute("truncate stage_agent_states")
    await apg.copy_records_to_table(
        "stage_agent_states", records=staged, columns=list(STAGE_COLUMNS)
    )
    params = {"t": tenant_id, "projects": list(projects) if projects is not None else None}
    await session.execute(text("drop table if exists stage_agent_mapped"))
    await session.execute(text(_MAP), params)
    result = await session.execute(text(_INSERT), params)
    for row in result.mappings():
        problem = row["problem"]
        if problem == "unmapped_agent":
            receipt.unmapped_agents[row["agent_key"]] += 1
        elif problem == "unknown_queue":
            receipt.rejected.append(
                RowProblem(
                    row["row_no"], "queue_key", f"no project maps queue {row['queue_key']!r}"
                )
            )
        elif row["inserted"]:
            receipt.accepted += 1
            if row["queue_unmapped"]:
                receipt.unmapped_queues[row["queue_key"]] += 1
        else:
            receipt.duplicates += 1
    receipt.rejected.sort(key=lambda p: p.row)
    await _record_unmapped(session, tenant_id, receipt)
    return receipt


async def _record_unmapped(
    session: AsyncSession, tenant_id: uuid.UUID, receipt: AgentStateReceipt
) -> None:
    """Data quality: remember unmapped agents and queues of agent states, with counts."""
    items = [("unmapped_agent", k, n) for k, n in receipt.unmapped_agents.items()] + [
        ("unmapped_queue", k, n) for k, n in receipt.unmapped_queues.items()
    ]
    for kind, subject, n in items:
        await session.execute(
            text(
                "insert into ingest_issues (tenant_id, id, source, kind, subject, occurrences) "
                "values (:t, :id, 'agent_states', :k, :s, :n) "
                "on conflict (tenant_id, source, kind, subject) do update "
                "set occurrences = ingest_issues.occurrences + excluded.occurrences, last_seen = now()"
            ),
            {"t": tenant_id, "id": uuid.uuid4(), "k": kind, "s": subject, "n": n},
        )


# ---- files of agent states (the command line) ---------------------------------------

FILE_FIELDS = ("agent_key", "state", "at", "reason", "queue_key")


def _event(values: dict[str, Any], source: str, ref: str) -> AgentStateEvent:
    """An event from loosely typed values; ValueError names the field."""
    agent_key = values.get("agent_key")
    if not isinstance(agent_key, str) or not agent_key.strip():
        raise ValueError("agent_key: required")
    state = values.get("state")
    if not isinstance(state, str) or state not in AGENT_STATES:
        raise ValueError(f"state: not one of {sorted(AGENT_STATES)}")
    at_raw = values.get("at")
    if not isinstance(at_raw, str) or not at_raw.strip():
        raise ValueError("at: required (ISO 8601 with an offset)")
    try:
        at = datetime.fromisoformat(at_raw.strip())
    except ValueError:
        raise ValueError("at: not an ISO 8601 timestamp") from None
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("at: naive timestamp (an offset or Z is required)")
    optional: dict[str, str | None] = {}
    for name in ("reason", "queue_key"):
        value = values.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name}: must be text")
        optional[name] = (value.strip() or None) if isinstance(value, str) else None
    return AgentStateEvent(
        source=source,
        agent_key=agent_key.strip(),
        state=state,  # type: ignore[arg-type]
        at=at,
        raw_ref=ref,
        reason=optional["reason"],
        queue_key=optional["queue_key"],
    )


def parse_agent_state_csv(
    fp: IO[bytes], name: str, *, source: str = "csv"
) -> Iterator[AgentStateEvent | ParseIssue]:
    """Rows of a CSV with the header `agent_key,state,at[,reason][,queue_key]` (UTF-8, BOM
    allowed, quoted fields may span lines); issues name the record, line and field."""
    text_fp = io.TextIOWrapper(fp, encoding="utf-8-sig", newline="")
    try:
        reader = csv.reader(text_fp)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            return
        missing = [c for c in ("agent_key", "state", "at") if c not in header]
        unknown = [c for c in header if c not in FILE_FIELDS]
        if missing or unknown:
            yield ParseIssue(
                file=name,
                line=1,
                field=", ".join(missing or unknown),
                reason=(
                    "required columns missing from the header"
                    if missing
                    else f"unknown columns (known: {', '.join(FILE_FIELDS)})"
                ),
                excerpt=excerpt(",".join(header)),
            )
            return
        number = 0
        previous = reader.line_num
        for row in reader:
            number += 1
            start, previous = previous + 1, reader.line_num
            if not row:
                continue
            if len(row) != len(header):
                yield ParseIssue(
                    file=name,
                    record=number,
                    line=start,
                    reason=f"{len(row)} fields where the header has {len(header)}",
                    excerpt=excerpt(",".join(row)),
                )
                continue
            try:
                yield _event(dict(zip(header, row, strict=True)), source, f"{name}:{start}")
            except ValueError as exc:
                field_name, _, reason = str(exc).partition(": ")
                yield ParseIssue(
                    file=name,
                    record=number,
                    line=start,
                    field=field_name,
                    reason=reason,
                    excerpt=excerpt(",".join(row)),
                )
    finally:
        text_fp.detach()


def parse_agent_state_jsonl(
    fp: IO[bytes], name: str, *, source: str = "jsonl"
) -> Iterator[AgentStateEvent | ParseIssue]:
    """JSON Lines: one object per line with the fields of `POST /agent-states:batch`."""
    text_fp = io.TextIOWrapper(fp, encoding="utf-8-sig", newline="")
    try:
        for number, line in enumerate(text_fp, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                yield ParseIssue(
                    file=name,
                    record=number,
                    line=number,
                    column=error.colno,
                    reason=f"invalid JSON: {error.msg}",
                    excerpt=excerpt(line),
                )
                continue
            if not isinstance(value, dict):
                yield ParseIssue(
                    file=name, record=number, line=number, reason="expected a JSON object"
                )
                continue
            extra = sorted(set(value) - set(FILE_FIELDS))
            if extra:
                yield ParseIssue(
                    file=name,
                    record=number,
                    line=number,
                    field=extra[0],
                    reason=f"unknown field (known: {', '.join(FILE_FIELDS)})",
                )
                continue
            try:
                yield _event(value, source, f"{name}:{number}")
            except ValueError as exc:
                field_name, _, reason = str(exc).partition(": ")
                yield ParseIssue(
                    file=name, record=number, line=number, field=field_name, reason=reason
                )
    finally:
        text_fp.detach()


AgentStateFileFormat = Literal["csv", "jsonl"]


class AgentStateFile:
    """An agent-state file read a batch at a time. Every method blocks (file I/O and
    parsing): call them through `asyncio.to_thread`, one at a time."""

    def __init__(self, path: Path, format: AgentStateFileFormat, name: str) -> None:
        self.path = path
        self.format = format
        self.name = name
        self._fp: IO[bytes] | None = None
        self._items: Iterator[AgentStateEvent | ParseIssue] | None = None

    def read(self, size: int) -> tuple[list[AgentStateEvent | ParseIssue], int]:
        """Up to `size` items (empty at the end) and the bytes of the file read so far."""
        if self._items is None:
            self._fp = self.path.open("rb")
            parse = parse_agent_state_csv if self.format == "csv" else parse_agent_state_jsonl
            self._items = parse(self._fp, self.name, source=self.format)
        batch = list(islice(self._items, size))
        return batch, self._fp.tell() if self._fp is not None and not self._fp.closed else 0

    def close(self) -> None:
        if self._items is not None and hasattr(self._items, "close"):
            self._items.close()
        if self._fp is not None:
            self._fp.close()
