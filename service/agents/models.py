"""The tenant's shared agent pool, the agents' telephony ids and their
certifications (which projects an agent is trained for, from when)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, DateTime, ForeignKeyConstraint, Numeric, Text, func
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from service.core.time import new_id, utcnow


def _ts() -> Any:
    return Field(
        default_factory=utcnow,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class Agent(SQLModel, table=True):
    """An agent of the tenant's pool. Agents with history (shifts, later
    contacts) are never deleted: they are made inactive."""

    __tablename__ = "agents"

    tenant_id: uuid.UUID = Field(primary_key=True, foreign_key="tenants.id")
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    name: str
    email: str | None = None
    status: str = "active"
    hire_date: date | None = None
    skills: list[str] = Field(
        default_factory=list, sa_column=Column(ARRAY(Text), nullable=False, server_default="{}")
    )
    languages: list[str] = Field(
        default_factory=list, sa_column=Column(ARRAY(Text), nullable=False, server_default="{}")
    )
    weekly_hours: Decimal | None = Field(default=None, sa_column=Column(Numeric(5, 2)))
    version: int = 1
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class AgentExternalId(SQLModel, table=True):
    """One agent id of one telephony system (`asterisk`: `Agent/1101`)."""

    __tablename__ = "agent_external_ids"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "agent_id"], ["agents.tenant_id", "agents.id"], ondelete="CASCADE"
        ),
    )

    tenant_id: uuid.UUID = Field(primary_key=True)
    system: str = Field(primary_key=True)
    external_id: str = Field(primary_key=True)
    agent_id: uuid.UUID


class Certification(SQLModel, table=True):
    """An agent is trained for a project from `certified_from` (until
    `certified_until`, inclusive, when set)."""

    __tablename__ = "agent_certifications"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "agent_id"], ["agents.tenant_id", "agents.id"], ondelete="CASCADE"
        ),
        ForeignKeyConstraint(
            ["tenant_id", "client_id", "project_id"],
            ["projects.tenant_id", "projects.client_id", "projects.id"],
        ),
    )
    __client_column__ = "client_id"
    __project_column__ = "project_id"

    tenant_id: uuid.UUID = Field(primary_key=True)
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    agent_id: uuid.UUID
    project_id: uuid.UUID
    client_id: uuid.UUID
    certified_from: date
    certified_until: date | None = None
    note: str | None = None
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
