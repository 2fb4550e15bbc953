"""API contracts of the KPI endpoints."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel

GranularityName = Literal[
    "interval", "15min", "30min", "60min", "day", "week", "month", "quarter", "year"
]
GroupBy = Literal["channel", "agent"]


class KpiRead(BaseModel):
    value: float | None
    unit: str
    numerator: float | None = None
    denominator: float | None = None
    formula: str
    upper_bound: bool = False


@dataclass(frozen=True, slots=True)
class FigureRead:
    """One KPI of one bucket: its unit and formula are those named in the report's `total`.
    A plain dataclass (a report holds hundreds; pydantic serializes it as a model)."""

    value: float | None
    numerator: float | None = None
    denominator: float | None = None
    upper_bound: bool = False


class BucketRead(BaseModel):
    start: datetime
    end: datetime
    label: str
    group: str | None = None
    kpis: dict[str, FigureRead]


class TermsRead(BaseModel):
    service_level: dict[str, Any]
    expression: str
    short_abandon_s: int
    timeouts_as_abandons: bool
    fcr_window_days: int
    interval_minutes: int
    source: Literal["query", "contract", "default"]


class KpiReport(BaseModel):
    scope: Literal["project", "client", "tenant"]
    scope_id: uuid.UUID
    time_zone: str
    start: datetime
    end: datetime
    granularity: str
    group_by: GroupBy | None
    terms: TermsRead
    buckets: list[BucketRead]
    total: dict[str, KpiRead]
    """Every KPI over the whole range, with its unit and formula (the buckets' too)."""
    fcr_final_after: datetime
    """`end` plus the FCR window: until then FCR by repeat is provisional (a contact whose
    customer has not come back yet counts as resolved, and may still be called back)."""


class KpiQuery(BaseModel):
    """Parsed query parameters (validated in the router)."""

    start: date | datetime
    end: date | datetime
    granularity: GranularityName = "day"
    channel: str | None = None
    group_by: GroupBy | None = None
    sl: str | None = None
    t: int | None = None
    short_abandon_s: int | None = None
    timeouts_as_abandons: bool | None = None
    fcr_window_days: int | None = None
    kpis: list[str] | None = None
