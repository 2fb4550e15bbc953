"""Normalized, source-independent contact data: what every importer produces.

Invariants (relied on by ingestion and by the KPI formulas of KPIS.md):

* **Timestamps are aware and in UTC.** A naive datetime is refused with
  `ValueError`; an aware one in another zone is converted to UTC. Parsers
  refuse naive source values earlier, naming the field.
* **Durations are seconds as `float`.** Sources differ in precision
  (Asterisk and Amazon Connect log whole seconds, CSV exports and timestamp
  differences carry fractions); a float holds all of them, and whole seconds
  stay exact (integers up to 2**53 are exact in a double), so sums of
  Asterisk durations are exact. `None` means "the source does not say",
  which is not 0: Asterisk's `queue_log` has no customer hold and no
  after-contact work, and "average hold" only counts contacts with hold > 0.
* `wait_s` is the source's own measure of time in queue where it gives one
  (Asterisk `holdtime`/`waittime`, Connect `Queue.Duration`), which is what
  the PBX's own reports use; it can differ by a second from the difference
  of the timestamps because sources log whole seconds.
* **One record per contact offered to a queue.** A call that moves between
  queues is one record per queue, identified by `external_id`; the earlier
  queue's record ends as `overflow` or `transferred_out`.
* **Newer version wins.** An importer may emit a record again with the same
  `external_id` and a higher `source_version` (Amazon Connect re-delivers
  updated records; the `queue_log` parser corrects an exit to `overflow`
  when the same call enters another queue). Ingestion keeps, per
  `external_id`, the record with the highest `source_version`.

These are slotted dataclasses, not pydantic models: bulk imports build
hundreds of thousands per second, and the parsers validate field by field
before construction (so errors name the source field); `__post_init__` only
guards the invariants above. `ContactRecord` is not `frozen`: a frozen
dataclass assigns each of its 23 fields through `object.__setattr__`, which
made construction cost 4 us instead of 0.8 us (measured), most of the
budget of a 500 k rows/s import (`AgentStateEvent` likewise). Treat records as values: copy with
`dataclasses.replace`, never mutate one that was handed out.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Literal, get_args

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
"""How the contact left the queue.

`answered`: connected to an agent (`answered_at` set). `abandoned`: the
customer left before an answer. `timeout`, `exit_key` (caller pressed an
exit digit), `exit_empty` (no agents to serve the queue), `overflow` (moved
to another queue or diverted because the queue was full or closed),
`transferred_out` (moved out of the queue by the system or the caller's
choice before an answer): the "other exits" X of KPIS.md. `in_queue`: still
waiting when the data ended; it enters no KPI until a newer version says
how it ended.
"""

AgentState = Literal["logged_out", "available", "on_contact", "acw", "not_ready"]
Channel = Literal["voice", "chat", "email", "social"]

OUTCOMES: frozenset[str] = frozenset(get_args(Outcome))
AGENT_STATES: frozenset[str] = frozenset(get_args(AgentState))
CHANNELS: frozenset[str] = frozenset(get_args(Channel))


def _utc(name: str, value: datetime) -> datetime:
    tz = value.tzinfo
    if tz is UTC:
        return value
    if tz is None or value.utcoffset() is None:
        raise ValueError(
            f"{name}: naive timestamp {value.isoformat()} (an offset or UTC is required)"
        )
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # 0001-01-01 with a positive offset, 9999-12-31 with a negative one.
        raise ValueError(
            f"{name}: {value.isoformat()} is outside the years 1-9999 in UTC"
        ) from None


@dataclass(slots=True, kw_only=True)
class ContactRecord:
    """One contact offered to one queue."""

    source: str
    """Importer and system, e.g. `asterisk`, `amazon_connect`, `csv:genesys`."""
    queue_key: str
    """The source's queue name (or ARN), case kept; mapped to a project downstream."""
    external_id: str
    """Deterministic per contact and queue: re-importing gives the same id."""
    channel: Channel
    queued_at: datetime
    outcome: Outcome
    raw_ref: str
    """Where it came from: `file:line,line,...` (`file:#row` for table exports)."""
    customer_key: str | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    """When the contact left the queue or the agent (hang-up, transfer, exit)."""
    abandoned_at: datetime | None = None
    agent_key: str | None = None
    """The source's agent identifier (`Agent/1127`, `PJSIP/400`, a user name)."""
    wait_s: float | None = None
    talk_s: float | None = None
    hold_s: float | None = None
    """Customer on hold while connected to the agent (never queue wait)."""
    hold_count: int | None = None
    acw_s: float | None = None
    transferred: bool | None = None
    """Transferred by the agent after the answer."""
    resolved_first_contact: bool | None = None
    csat: int | None = None
    """1-5."""
    nps: int | None = None
    """0-10."""
    sentiment: float | None = None
    """-1 (negative) to 1 (positive)."""
    source_version: int | None = None
    """Higher is newer for the same `external_id` (Connect: LastUpdateTimestamp in ms)."""

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome: {self.outcome!r} is not one of {sorted(OUTCOMES)}")
        if self.channel not in CHANNELS:
            raise ValueError(f"channel: {self.channel!r} is not one of {sorted(CHANNELS)}")
        if self.queued_at.tzinfo is not UTC:
            self.queued_at = _utc("queued_at", self.queued_at)
        if self.answered_at is not None and self.answered_at.tzinfo is not UTC:
            self.answered_at = _utc("answered_at", self.answered_at)
        if self.ended_at is not None and self.ended_at.tzinfo is not UTC:
            self.ended_at = _utc("ended_at", self.ended_at)
        if self.abandoned_at is not None and self.abandoned_at.tzinfo is not UTC:
            self.abandoned_at = _utc("abandoned_at", self.abandoned_at)
        if self.csat is not None and not 1 <= self.csat <= 5:
            raise ValueError(f"csat: {self.csat} is outside 1-5")
        if self.nps is not None and not 0 <= self.nps <= 10:
            raise ValueError(f"nps: {self.nps} is outside 0-10")
        if self.sentiment is not None and not -1.0 <= self.sentiment <= 1.0:
            raise ValueError(f"sentiment: {self.sentiment} is outside -1..1")


@dataclass(slots=True, kw_only=True)
class AgentStateEvent:
    """An agent entered `state` at `at` (the state lasts until the next event).

    `queue_key` set: the change concerns that queue only (queue membership,
    a per-queue pause); `None`: the agent as a whole.
    """

    source: str
    agent_key: str
    state: AgentState
    at: datetime
    raw_ref: str
    reason: str | None = None
    """Not-ready/pause reason code or logoff reason, as the source wrote it."""
    queue_key: str | None = None

    def __post_init__(self) -> None:
        if self.state not in AGENT_STATES:
            raise ValueError(f"state: {self.state!r} is not one of {sorted(AGENT_STATES)}")
        if self.at.tzinfo is not UTC:
            self.at = _utc("at", self.at)


EXCERPT_CHARS = 200


def excerpt(raw: str) -> str:
    """A raw source fragment short enough for an error report."""
    raw = raw.rstrip("\r\n")
    if not raw.isascii():
        # A lone surrogate (from a JSON escape) cannot be encoded in the JSON answer.
        raw = raw.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw if len(raw) <= EXCERPT_CHARS else raw[: EXCERPT_CHARS - 1] + "…"


@dataclass(frozen=True, slots=True, kw_only=True)
class ParseIssue:
    """Something in the input that was not imported, or imported with a caveat.

    `line` is the physical line (1-based) where the offending record starts,
    `record` the record's number in its file (data rows of a CSV from 1, the
    header excluded; row ids of table exports; top-level values of JSON).
    """

    reason: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    record: int | None = None
    field: str | None = None
    excerpt: str = ""

    def __str__(self) -> str:
        where = [self.file or "input"]
        if self.record is not None:
            where.append(f"record {self.record}")
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.column is not None:
            where.append(f"column {self.column}")
        head = " ".join(where)
        if self.field:
            head += f", field {self.field}"
        tail = f": {self.excerpt!r}" if self.excerpt else ""
        return f"{head}: {self.reason}{tail}"


ParsedItem = ContactRecord | AgentStateEvent | ParseIssue


_RECORD_TIMES = ("queued_at", "answered_at", "ended_at", "abandoned_at")


def record_to_json(record: ContactRecord) -> dict[str, Any]:
    """A JSON-serializable dict (timestamps as ISO 8601 with offset)."""
    out: dict[str, Any] = {}
    for f in fields(ContactRecord):
        value = getattr(record, f.name)
        out[f.name] = value.isoformat() if isinstance(value, datetime) else value
    return out


def record_from_json(data: dict[str, Any]) -> ContactRecord:
    values = dict(data)
    for name in _RECORD_TIMES:
        if values.get(name) is not None:
            values[name] = datetime.fromisoformat(values[name])
    return ContactRecord(**values)
