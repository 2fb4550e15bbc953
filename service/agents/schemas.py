"""API contracts of the agent pool and certifications."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, field_validator

from tenants.schemas import Name, NoNul, WriteModel, not_null

AgentStatus = Literal["active", "inactive"]
SystemKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_]{0,39}$")]
ExternalId = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), NoNul
]
Skill = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60), NoNul]
Language = Annotated[
    str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$", max_length=35)
]
Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000), NoNul]
WeeklyHours = Annotated[Decimal, Field(ge=0, le=168, max_digits=5, decimal_places=2)]


def _dedupe(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


class AgentCreate(WriteModel):
    name: Name
    email: EmailStr | None = None
    status: AgentStatus = "active"
    hire_date: date | None = None
    skills: list[Skill] = Field(default_factory=list, max_length=100)
    languages: list[Language] = Field(default_factory=list, max_length=50)
    weekly_hours: WeeklyHours | None = None
    external_ids: dict[SystemKey, ExternalId] = Field(
        default_factory=dict,
        max_length=20,
        description='Agent ids per telephony system, e.g. {"asterisk": "Agent/1101"}.',
    )

    _skills = field_validator("skills", "languages")(_dedupe)


class AgentUpdate(WriteModel):
    name: Name | None = None
    email: EmailStr | None = None
    status: AgentStatus | None = None
    hire_date: date | None = None
    skills: list[Skill] | None = Field(default=None, max_length=100)
    languages: list[Language] | None = Field(default=None, max_length=50)
    weekly_hours: WeeklyHours | None = None
    external_ids: dict[SystemKey, ExternalId] | None = Field(
        default=None, max_length=20, description="Replaces the whole map when given."
    )

    _present = not_null("name", "status", "skills", "languages", "external_ids")

    @field_validator("skills", "languages")
    @classmethod
    def _unique(cls, values: list[str] | None) -> list[str] | None:
        return None if values is None else _dedupe(values)


class AgentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    email: str | None
    status: str
    hire_date: date | None
    skills: list[str]
    languages: list[str]
    weekly_hours: float | None
    external_ids: dict[str, str] = Field(default_factory=dict)
    version: int
    created_at: datetime
    updated_at: datetime


class CertificationCreate(WriteModel):
    project_id: uuid.UUID
    certified_from: date
    certified_until: date | None = None
    note: Note | None = None


class CertificationUpdate(WriteModel):
    """`certified_until: null` makes it open-ended, `note: null` clears the note."""

    certified_from: date | None = None
    certified_until: date | None = None
    note: Note | None = None

    _present = not_null("certified_from")


class CertificationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    agent_id: uuid.UUID
    project_id: uuid.UUID
    client_id: uuid.UUID
    certified_from: date
    certified_until: date | None
    note: str | None
    created_at: datetime
    updated_at: datetime
