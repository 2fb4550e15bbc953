"""API contracts of contact ingestion.

A batch body is validated in ONE pass straight from the raw JSON bytes. The
contract is the pydantic TypedDicts below (`BATCH`, also the OpenAPI
schema); a valid body is decoded by msgspec (`FAST_BATCH`: the same fields
and bounds, strict types), measured about 10x faster than pydantic-core for a
10 000-record batch. msgspec accepts a subset of what pydantic accepts (strict
JSON types, RFC 3339 times) with equal values, so anything it refuses is
validated again by pydantic, which names every bad row and field while the
valid rows go on.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, NotRequired

import msgspec
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)
from typing_extensions import TypedDict

from service.contacts.records import ContactRecord
from service.core.time import supported_year

MAX_BATCH = 10_000
# `source_version` is a PostgreSQL bigint.
MIN_VERSION = -(2**63)
MAX_VERSION = 2**63 - 1


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold U+0000: refused here, naming the field, rather than
    # failing the whole batch in the database.
    if "\x00" in value:
        raise ValueError("contains a NUL character (no database text can hold it)")
    return value


Text = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_no_nul)]
Version = Annotated[int, Field(ge=MIN_VERSION, le=MAX_VERSION)]
Seconds = Annotated[float, Field(ge=0, le=31 * 86400, allow_inf_nan=False)]
Outcome = Literal[
    "answered",
    "abandoned",
    "timeout",
    "exit_key",
    "exit_empty",
    "overflow",
    "transferred_out",
    "in_queue",
]
Channel = Literal["voice", "chat", "email", "social"]
_FORBID = ConfigDict(extra="forbid")


class ContactIn(TypedDict):
    __pydantic_config__ = _FORBID  # type: ignore[misc]

    external_id: Text
    queued_at: AwareDatetime
    outcome: Outcome
    project_id: NotRequired[uuid.UUID]
    queue_key: NotRequired[Text]
    channel: NotRequired[Channel]
    source: NotRequired[Annotated[str, Field(min_length=1, max_length=40), AfterValidator(_no_nul)]]
    customer_key: NotRequired[Text | None]
    answered_at: NotRequired[AwareDatetime | None]
    ended_at: NotRequired[AwareDatetime | None]
    abandoned_at: NotRequired[AwareDatetime | None]
    agent_key: NotRequired[Text | None]
    wait_s: NotRequired[Seconds | None]
    talk_s: NotRequired[Seconds | None]
    hold_s: NotRequired[Seconds | None]
    hold_count: NotRequired[Annotated[int, Field(ge=0, le=10_000)] | None]
    acw_s: NotRequired[Seconds | None]
    transferred: NotRequired[bool | None]
    resolved_first_contact: NotRequired[bool | None]
    csat: NotRequired[Annotated[int, Field(ge=1, le=5)] | None]
    nps: NotRequired[Annotated[int, Field(ge=0, le=10)] | None]
    sentiment: NotRequired[Annotated[float, Field(ge=-1, le=1)] | None]
    source_version: NotRequired[Version | None]


class ContactBatch(TypedDict):
    __pydantic_config__ = _FORBID  # type: ignore[misc]

    records: Annotated[list[ContactIn], Field(max_length=MAX_BATCH)]


BATCH = TypeAdapter(ContactBatch)
ROW = TypeAdapter(ContactIn)
RAW_BATCH = TypeAdapter(dict[str, list[Any]])


# ---- the fast decoder: the same contract, strict JSON types -----------------------

_FastText = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
_FastSeconds = Annotated[float, msgspec.Meta(ge=0, le=31 * 86400)]
_FastTime = Annotated[datetime, msgspec.Meta(tz=True)]


class FastContactIn(msgspec.Struct, forbid_unknown_fields=True):
    """`ContactIn` for msgspec. Fields that `ContactIn` lets be absent but not null
    default to UNSET (a null is refused, as pydantic refuses it)."""

    external_id: _FastText
    queued_at: _FastTime
    outcome: Outcome
    project_id: uuid.UUID | msgspec.UnsetType = msgspec.UNSET
    queue_key: _FastText | msgspec.UnsetType = msgspec.UNSET
    channel: Channel | msgspec.UnsetType = msgspec.UNSET
    source: Annotated[str, msgspec.Meta(min_length=1, max_length=40)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    customer_key: _FastText | None = None
    answered_at: _FastTime | None = None
    ended_at: _FastTime | None = None
    abandoned_at: _FastTime | None = None
    agent_key: _FastText | None = None
    wait_s: _FastSeconds | None = None
    talk_s: _FastSeconds | None = None
    hold_s: _FastSeconds | None = None
    hold_count: Annotated[int, msgspec.Meta(ge=0, le=10_000)] | None = None
    acw_s: _FastSeconds | None = None
    transferred: bool | None = None
    resolved_first_contact: bool | None = None
    csat: Annotated[int, msgspec.Meta(ge=1, le=5)] | None = None
    nps: Annotated[int, msgspec.Meta(ge=0, le=10)] | None = None
    sentiment: Annotated[float, msgspec.Meta(ge=-1, le=1)] | None = None
    source_version: Annotated[int, msgspec.Meta(ge=MIN_VERSION, le=MAX_VERSION)] | None = None


class FastContactBatch(msgspec.Struct, forbid_unknown_fields=True):
    records: Annotated[list[FastContactIn], msgspec.Meta(max_length=MAX_BATCH)]


FAST_BATCH = msgspec.json.Decoder(FastContactBatch)


def fast_to_record(row: FastContactIn) -> tuple[ContactRecord, uuid.UUID | None]:
    """`to_record` of a msgspec row (the same defaults and the same refusal)."""
    project = row.project_id
    queue_key = row.queue_key
    if project is msgspec.UNSET and queue_key is msgspec.UNSET:
        raise ValueError("queue_key: give project_id or queue_key")
    source = row.source
    channel = row.channel
    record = ContactRecord(
        source="api" if source is msgspec.UNSET else source,
        queue_key="" if queue_key is msgspec.UNSET else queue_key,
        external_id=row.external_id,
        channel="voice" if channel is msgspec.UNSET else channel,
        queued_at=row.queued_at,
        outcome=row.outcome,
        raw_ref="api",
        customer_key=row.customer_key,
        answered_at=row.answered_at,
        ended_at=row.ended_at,
        abandoned_at=row.abandoned_at,
        agent_key=row.agent_key,
        wait_s=row.wait_s,
        talk_s=row.talk_s,
        hold_s=row.hold_s,
        hold_count=row.hold_count,
        acw_s=row.acw_s,
        transferred=row.transferred,
        resolved_first_contact=row.resolved_first_contact,
        csat=row.csat,
        nps=row.nps,
        sentiment=row.sentiment,
        source_version=row.source_version,
    )
    _in_order(record)
    return record, None if project is msgspec.UNSET else project


def _in_order(record: ContactRecord) -> None:
    """A contact enters the queue in the supported years (service/core/time.py; a KPI
    query could never reach it otherwise), is answered with a time if answered, and
    leaves the queue after it entered. Checked for
    every row, not only where ingestion derives the wait from the times: a row that gives
    `wait_s` and an `answered_at` before `queued_at` would land answered before it called."""
    queued = record.queued_at
    supported_year(queued, "queued_at")
    if record.outcome == "answered" and record.answered_at is None:
        # KPIS.md: answered is `answered_at` set; without it the contact would count as
        # answered in the queue KPIs and be missing from the agent KPIs (CSV refuses it too).
        raise ValueError("answered_at: an answered contact needs answered_at")
    for name in ("answered_at", "abandoned_at", "ended_at"):
        moment = getattr(record, name)
        if moment is not None and moment < queued:
            raise ValueError(f"{name}: {moment.isoformat()} is before queued_at")


class ReceiptProblem(BaseModel):
    row: int
    field: str
    reason: str


class ReceiptRead(BaseModel):
    """What happened to every record of a batch (rows count from 1)."""

    model_config = ConfigDict(json_schema_extra={"description": "Per-batch receipt"})

    received: int
    accepted: int
    duplicates: int
    updated: int
    stale: int
    rejected_count: int
    rejected: list[ReceiptProblem]
    unmapped_queues: dict[str, int]
    unmapped_agents: dict[str, int]


def to_record(row: ContactIn) -> tuple[ContactRecord, uuid.UUID | None]:
    """A validated row as a normalized record (and its explicit project, if named)."""
    if "project_id" not in row and "queue_key" not in row:
        raise ValueError("queue_key: give project_id or queue_key")
    record = ContactRecord(
        source=row.get("source") or "api",
        queue_key=row.get("queue_key") or "",
        external_id=row["external_id"],
        channel=row.get("channel") or "voice",
        queued_at=row["queued_at"],
        outcome=row["outcome"],
        raw_ref="api",
        customer_key=row.get("customer_key"),
        answered_at=row.get("answered_at"),
        ended_at=row.get("ended_at"),
        abandoned_at=row.get("abandoned_at"),
        agent_key=row.get("agent_key"),
        wait_s=row.get("wait_s"),
        talk_s=row.get("talk_s"),
        hold_s=row.get("hold_s"),
        hold_count=row.get("hold_count"),
        acw_s=row.get("acw_s"),
        transferred=row.get("transferred"),
        resolved_first_contact=row.get("resolved_first_contact"),
        csat=row.get("csat"),
        nps=row.get("nps"),
        sentiment=row.get("sentiment"),
        source_version=row.get("source_version"),
    )
    _in_order(record)
    return record, row.get("project_id")


def error_field(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "record"


__all__ = [
    "BATCH",
    "RAW_BATCH",
    "ROW",
    "ContactBatch",
    "ContactIn",
    "ReceiptRead",
    "ValidationError",
    "to_record",
]


def inline_schema(adapter: TypeAdapter[Any]) -> dict[str, Any]:
    """The adapter's JSON schema with its `$defs` inlined, for `openapi_extra`."""
    schema = adapter.json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


# ---- agent states and uploads ------------------------------------------------------

AgentStateName = Literal["logged_out", "available", "on_contact", "acw", "not_ready"]


class AgentStateIn(TypedDict):
    __pydantic_config__ = _FORBID  # type: ignore[misc]

    agent_key: Text
    state: AgentStateName
    at: AwareDatetime
    reason: NotRequired[Text | None]
    queue_key: NotRequired[Text | None]


class AgentStateBatch(TypedDict):
    __pydantic_config__ = _FORBID  # type: ignore[misc]

    events: Annotated[list[AgentStateIn], Field(max_length=MAX_BATCH)]


AGENT_STATE_BATCH = TypeAdapter(AgentStateBatch)
AGENT_STATE_ROW = TypeAdapter(AgentStateIn)


class AgentStateReceiptRead(BaseModel):
    """What happened to every event of a batch (rows count from 1). `unmapped`: events of
    agents no pool agent has the key of (not stored, reported per key); `unmapped_queues`:
    stored events whose queue no project maps."""

    received: int
    accepted: int
    duplicates: int
    unmapped: int
    rejected_count: int
    rejected: list[ReceiptProblem]
    unmapped_agents: dict[str, int]
    unmapped_queues: dict[str, int]


class CsvMappingIn(TypedDict):
    """The `mapping` of a CSV upload (see service/contacts/parsers/csv_records.py)."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]

    columns: dict[str, Annotated[str, Field(min_length=1, max_length=200)]]
    source: NotRequired[Annotated[str, Field(min_length=1, max_length=40)]]
    timestamp_format: NotRequired[Annotated[str, Field(min_length=1, max_length=100)]]
    time_zone: NotRequired[Annotated[str, Field(min_length=1, max_length=64)] | None]
    ambiguous_times: NotRequired[Literal["refuse", "earlier", "later"]]
    outcome_values: NotRequired[dict[str, Annotated[str, Field(max_length=200)]]]
    channel: NotRequired[Channel | None]
    duration_unit: NotRequired[Literal["s", "ms"]]
    delimiter: NotRequired[Literal[",", ";", "\t", "|"]]
    encoding: NotRequired[Annotated[str, Field(min_length=1, max_length=40)]]


CSV_MAPPING = TypeAdapter(CsvMappingIn)


class UploadProblem(BaseModel):
    """Something of the file that was not imported: where (`line` and/or `record`, 1-based;
    `column` for JSON), which `field`, why. `stage`: `parse` (the file) or `ingest` (the
    data, e.g. a queue no project maps)."""

    stage: Literal["parse", "ingest"]
    line: int | None
    record: int | None
    column: int | None
    field: str | None
    reason: str
    excerpt: str


class UploadAgentStates(BaseModel):
    received: int
    accepted: int
    duplicates: int
    unmapped: int
    rejected_count: int
    unmapped_agents: dict[str, int]
    unmapped_queues: dict[str, int]


class UploadStats(BaseModel):
    """The parser's count of every item of the file (`items` = blank + used + ignored +
    unknown + rejected + malformed + skipped_overlap), by event name or record kind."""

    file: str
    items: int
    blank: int
    used: dict[str, int]
    ignored: dict[str, int]
    unknown: dict[str, int]
    rejected: dict[str, int]
    malformed: int
    skipped_overlap: int
    records: int
    corrections: int
    superseded: int
    agent_events: int
    calls_open: int
    reconstructed: int
    dropped_stale: int


class UploadRead(BaseModel):
    """The merged receipt of every batch of the file, the parser's statistics and the
    problems (at most 1000 listed; `problems_count` counts them all)."""

    format: str
    source: str | None
    file: str
    bytes: int
    received: int
    accepted: int
    duplicates: int
    updated: int
    stale: int
    rejected_count: int
    unmapped_queues: dict[str, int]
    unmapped_agents: dict[str, int]
    open_calls: int
    agent_states: UploadAgentStates
    stats: UploadStats
    problems_count: int
    problems: list[UploadProblem]
