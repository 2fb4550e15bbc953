"""API contracts of shifts, schedule imports and schedule views.

Times are RFC 3339 with an offset; naive timestamps are refused (422)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

from service.core.time import supported_year
from service.shifts.models import Shift
from service.shifts.rows import MAX_ROWS
from tenants.schemas import WriteModel

Activity = Literal["on_queue", "training", "coaching", "meeting", "break"]
ImportMode = Literal["all_or_nothing", "valid_rows"]


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold U+0000: a 422 naming the field, not a database error.
    if "\x00" in value:
        raise ValueError("contains a NUL character (no database text can hold it)")
    return value


_When = TypeVar("_When", bound=date)


def _in_years(value: _When) -> _When:
    try:
        supported_year(value, "time")
    except ValueError as exc:
        raise ValueError(str(exc).partition(": ")[2]) from None
    return value


Note = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=1000), AfterValidator(_no_nul)
]
ExternalId = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_no_nul),
]
Instant = Annotated[AwareDatetime, AfterValidator(_in_years)]
"""A time with an offset, in the supported years (near 0001 or 9999 the local date
of a shift overflows)."""
Day = Annotated[date, AfterValidator(_in_years)]
"""A local day of a schedule view, in the supported years."""
SystemKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_]{0,39}$")]


class ShiftCreate(WriteModel):
    agent_id: uuid.UUID
    project_id: uuid.UUID
    start: Instant
    end: Instant
    activity: Activity = "on_queue"
    note: Note | None = None
    external_id: ExternalId | None = None


class ShiftUpdate(WriteModel):
    agent_id: uuid.UUID | None = None
    project_id: uuid.UUID | None = None
    start: Instant | None = None
    end: Instant | None = None
    activity: Activity | None = None
    note: Note | None = None
    external_id: ExternalId | None = None


class ShiftRead(BaseModel):
    id: uuid.UUID
    agent_id: uuid.UUID
    project_id: uuid.UUID
    client_id: uuid.UUID
    start: datetime
    end: datetime
    activity: str
    note: str | None
    external_id: str | None
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, shift: Shift, **extra: Any) -> Any:
        return cls(
            id=shift.id,
            agent_id=shift.agent_id,
            project_id=shift.project_id,
            client_id=shift.client_id,
            start=shift.starts_at,
            end=shift.ends_at,
            activity=shift.activity,
            note=shift.note,
            external_id=shift.external_id,
            version=shift.version,
            created_at=shift.created_at,
            updated_at=shift.updated_at,
            **extra,
        )


class ScheduledShift(ShiftRead):
    """A shift in a schedule view: times in the view's time zone, with names."""

    agent_name: str
    project_name: str
    hours: float


class CoverageInterval(BaseModel):
    start: datetime = Field(description="Local time with its offset")
    end: datetime
    label: str = Field(description="Local wall-clock time, HH:MM")
    on_queue: float = Field(description="Agents on queue (time-weighted over the interval)")
    scheduled: float = Field(description="Agents on any shift activity")


class WindowRead(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    time_zone: str
    from_: date = Field(alias="from")
    to: date


class ProjectSchedule(WindowRead):
    project_id: uuid.UUID
    interval_minutes: int
    shifts: list[ScheduledShift]
    coverage: list[CoverageInterval]


class DayTotal(BaseModel):
    date: date
    scheduled_minutes: float
    minutes_by_activity: dict[str, float]


class AgentSchedule(WindowRead):
    agent_id: uuid.UUID
    shifts: list[ScheduledShift]
    days: list[DayTotal]


class ShiftBatch(WriteModel):
    """A schedule import as JSON. Each row has the CSV's columns: `agent`
    (agent id or external id), `project` (id), `start`, `end`, `activity`,
    `note`, `external_id`; bad rows are reported by row number (1-based)."""

    mode: ImportMode = "all_or_nothing"
    agent_system: SystemKey | None = Field(
        default=None, description="Resolve external agent ids in this telephony system only"
    )
    dry_run: bool = Field(
        default=False,
        description="Check and write, then roll the write back: the answer the import would"
        " give, with nothing stored",
    )
    rows: list[dict[str, Any]] = Field(max_length=MAX_ROWS)


class ImportReport(BaseModel):
    mode: ImportMode
    rows: int
    valid: int
    rejected: int
    inserted: int
    updated: int
    unchanged: int
    written: bool
    dry_run: bool = False
    """A trial: `inserted`, `updated` and `unchanged` are what the import would do."""
    errors: list[dict[str, Any]]
    timings_ms: dict[str, float] = Field(
        default_factory=dict, description="Milliseconds per phase: prepare, stage, check, write"
    )
