"""API contracts of the projects domain: business hours, holidays, queue keys."""

from __future__ import annotations

import itertools
import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, field_validator, model_validator

from tenants.schemas import Name, NoNul, ReadModel, TimeZone, WriteModel, not_null

Channel = Literal["voice", "chat", "email", "social"]
ProjectStatus = Literal["active", "inactive"]
Clock = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$"),
]
QueueKey = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), NoNul
]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_QUEUE_KEYS = 500


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


class Span(WriteModel):
    """Open from `start` to `end` (half-open, local time of the project); `end` may be 24:00."""

    start: Clock
    end: Clock

    @field_validator("end")
    @classmethod
    def _after_start(cls, end: str, info: Any) -> str:
        start = info.data.get("start")
        if start is not None and _minutes(end) <= _minutes(start):
            raise ValueError("must be after start (a span runs inside one day, 00:00-24:00)")
        return end


def _day(spans: list[Span]) -> list[Span]:
    ordered = sorted(spans, key=lambda s: _minutes(s.start))
    for before, after in itertools.pairwise(ordered):
        if _minutes(after.start) < _minutes(before.end):
            raise ValueError(
                f"spans {before.start}-{before.end} and {after.start}-{after.end} overlap"
            )
    return ordered


class BusinessHours(WriteModel):
    """Opening hours per weekday, several spans a day (e.g. 08:00-12:00 and 13:00-18:00)."""

    mon: list[Span] = Field(default_factory=list, max_length=24)
    tue: list[Span] = Field(default_factory=list, max_length=24)
    wed: list[Span] = Field(default_factory=list, max_length=24)
    thu: list[Span] = Field(default_factory=list, max_length=24)
    fri: list[Span] = Field(default_factory=list, max_length=24)
    sat: list[Span] = Field(default_factory=list, max_length=24)
    sun: list[Span] = Field(default_factory=list, max_length=24)

    @field_validator(*WEEKDAYS)
    @classmethod
    def _no_overlaps(cls, spans: list[Span]) -> list[Span]:
        return _day(spans)

    def is_empty(self) -> bool:
        return not any(getattr(self, d) for d in WEEKDAYS)


class Holiday(WriteModel):
    """A closed day or an inclusive range of days; a plain date string is accepted too."""

    start: date
    end: date | None = Field(default=None, description="Inclusive; empty: one day.")
    name: Annotated[str, StringConstraints(max_length=200), NoNul] | None = None

    @model_validator(mode="before")
    @classmethod
    def _plain_date(cls, data: Any) -> Any:
        return {"start": data} if isinstance(data, str | date) else data

    @field_validator("end")
    @classmethod
    def _not_before_start(cls, end: date | None, info: Any) -> date | None:
        start = info.data.get("start")
        if end is not None and start is not None:
            if end < start:
                raise ValueError("must not be before start")
            if (end - start).days > 366:
                raise ValueError("a holiday range spans at most a year")
        return end


def _channels(values: list[str]) -> list[str]:
    return [c for c in ("voice", "chat", "email", "social") if c in values]


def _queue_keys(values: list[str]) -> list[str]:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"queue key '{value}' is listed twice")
        seen.add(value)
    return values


def holidays_json(holidays: list[Holiday]) -> list[dict[str, Any]]:
    ordered = sorted(holidays, key=lambda h: (h.start, h.end or h.start))
    return [
        {"start": h.start.isoformat(), "end": (h.end or h.start).isoformat(), "name": h.name}
        for h in ordered
    ]


def business_hours_json(hours: BusinessHours | None) -> dict[str, Any]:
    """`{}` when no business hours are set (every hour counts)."""
    if hours is None or hours.is_empty():
        return {}
    return hours.model_dump(mode="json")


class ProjectCreate(WriteModel):
    client_id: uuid.UUID
    name: Name
    channels: list[Channel] = Field(default=["voice"], min_length=1)
    time_zone: TimeZone | None = Field(default=None, description="Default: the client's.")
    business_hours: BusinessHours | None = Field(
        default=None, description="Empty: no business hours (every hour counts)."
    )
    holidays: list[Holiday] = Field(default_factory=list, max_length=500)
    queue_keys: list[QueueKey] = Field(
        default_factory=list,
        max_length=MAX_QUEUE_KEYS,
        description="Raw telephony queue names/ids that feed this project; one queue maps to "
        "one project per tenant.",
    )
    status: ProjectStatus = "active"

    @field_validator("channels")
    @classmethod
    def _order_channels(cls, value: list[str]) -> list[str]:
        return _channels(value)

    @field_validator("queue_keys")
    @classmethod
    def _unique_keys(cls, value: list[str]) -> list[str]:
        return _queue_keys(value)


class ProjectUpdate(WriteModel):
    """Every field optional; `business_hours: null` clears them. The client cannot change."""

    name: Name | None = None
    channels: list[Channel] | None = Field(default=None, min_length=1)
    time_zone: TimeZone | None = None
    business_hours: BusinessHours | None = None
    holidays: list[Holiday] | None = Field(default=None, max_length=500)
    queue_keys: list[QueueKey] | None = Field(default=None, max_length=MAX_QUEUE_KEYS)
    status: ProjectStatus | None = None

    _present = not_null("name", "channels", "time_zone", "holidays", "queue_keys", "status")

    @field_validator("channels")
    @classmethod
    def _order_channels(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _channels(value)

    @field_validator("queue_keys")
    @classmethod
    def _unique_keys(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _queue_keys(value)


class HolidayRead(BaseModel):
    start: date
    end: date
    name: str | None


class ProjectRead(ReadModel):
    id: uuid.UUID
    client_id: uuid.UUID
    name: str
    channels: list[str]
    time_zone: str
    business_hours: BusinessHours | None
    holidays: list[HolidayRead]
    queue_keys: list[str]
    status: str
    version: int
    created_at: datetime
    updated_at: datetime

    @field_validator("business_hours", mode="before")
    @classmethod
    def _none_when_empty(cls, value: Any) -> Any:
        return value or None


class UserProjectsUpdate(WriteModel):
    project_ids: list[uuid.UUID] = Field(max_length=1000)


class UserProjectsRead(BaseModel):
    user_id: uuid.UUID
    project_ids: list[uuid.UUID]
