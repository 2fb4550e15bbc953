"""API contracts of the operations routes."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from service.kpis.schemas import KpiRead


class WindowQuery(BaseModel):
    """`from`/`to` as given: local dates (in the scope's zone) or timestamps with offset."""

    start: date | datetime
    end: date | datetime


# ---- agent KPIs --------------------------------------------------------------------


class AgentTimeRead(BaseModel):
    """Seconds in each state, scheduled seconds, and contacts handled."""

    logged_in_s: float
    available_s: float
    on_contact_s: float
    acw_s: float
    not_ready_s: float
    scheduled_s: float
    in_scheduled_state_s: float
    handled: int


class AgentFiguresRead(BaseModel):
    project_id: uuid.UUID | None = Field(
        description="The project these figures are for; null: the total across projects."
    )
    time: AgentTimeRead
    kpis: dict[str, KpiRead]


class AgentKpiReport(BaseModel):
    agent_id: uuid.UUID
    time_zone: str
    start: datetime
    end: datetime = Field(description="Exclusive; the requested end, or now if that is earlier.")
    total: AgentFiguresRead | None = Field(
        description="Across every project; null for client viewers (it includes other clients' work)."
    )
    projects: list[AgentFiguresRead]


class ProjectAgentRow(BaseModel):
    agent_id: uuid.UUID
    name: str
    project: AgentFiguresRead
    total: AgentFiguresRead | None


class ProjectAgentKpis(BaseModel):
    project_id: uuid.UUID
    time_zone: str
    start: datetime
    end: datetime
    agents: list[ProjectAgentRow]


# ---- double bookings -------------------------------------------------------------------

FindingKind = Literal["cross_project_contacts", "contact_outside_shift", "logged_in_other_project"]


class Involved(BaseModel):
    id: uuid.UUID
    project_id: uuid.UUID


class DoubleBookingRead(BaseModel):
    kind: FindingKind
    agent_id: uuid.UUID
    project_id: uuid.UUID = Field(description="The project whose work the agent did.")
    other_project_id: uuid.UUID | None = Field(
        description="The other project: of the overlapping contact, or the one the agent was "
        "scheduled on; null when there is none, or when the caller may not see it."
    )
    other_project_hidden: bool = False
    start: datetime
    end: datetime
    seconds: float
    contacts: list[Involved]
    shifts: list[Involved]
    state_events: list[uuid.UUID]


class DoubleBookingReport(BaseModel):
    start: datetime
    end: datetime
    findings: list[DoubleBookingRead]
    counts: dict[str, int]
    truncated: bool


# ---- data quality ------------------------------------------------------------------------


class IssueRead(BaseModel):
    source: str
    kind: str
    subject: str
    project_id: uuid.UUID | None
    first_seen: datetime
    last_seen: datetime
    occurrences: int
    detail: dict[str, Any]


class FeedGapRead(BaseModel):
    project_id: uuid.UUID
    start: datetime
    end: datetime
    hours: float


class SkewRead(BaseModel):
    contact_id: uuid.UUID
    project_id: uuid.UUID
    source: str
    external_id: str
    problem: str
    queued_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    abandoned_at: datetime | None
    ingested_at: datetime


class LateDayRead(BaseModel):
    project_id: uuid.UUID
    source: str
    local_day: date
    late_contacts: int
    last_ingested_at: datetime


class CorrectionRead(BaseModel):
    id: uuid.UUID
    contact_id: uuid.UUID
    project_id: uuid.UUID
    external_id: str
    queued_at: datetime = Field(description="When the contact was queued (its current version).")
    corrected_at: datetime
    old_version: int | None
    new_version: int | None
    changed: list[str]
    changes: dict[str, Any]


class DataQualityReport(BaseModel):
    start: datetime
    end: datetime
    source: str | None
    summary: dict[str, int]
    issues: list[IssueRead]
    feed_gaps: list[FeedGapRead]
    clock_skew: list[SkewRead]
    late_days: list[LateDayRead]
    corrections: list[CorrectionRead]
    not_recorded: list[str] = Field(
        description="Checks the stored data cannot answer (ingestion counts these per batch only)."
    )
    truncated: bool
