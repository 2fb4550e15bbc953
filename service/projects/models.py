"""Projects (a client's queue or campaign) and supervisor assignments."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, ForeignKeyConstraint, Text, func
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field, SQLModel

from service.core.time import new_id, utcnow


def _ts() -> Any:
    return Field(
        default_factory=utcnow,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class Project(SQLModel, table=True):
    """A client's queue or campaign: channels, time zone, business hours, queue keys.

    `queue_keys` is the list the API edits; the database mirrors it into
    `project_queue_keys` (a trigger), whose unique key makes one raw telephony
    queue map to one project per tenant."""

    __tablename__ = "projects"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "client_id"], ["clients.tenant_id", "clients.id"]),
    )
    __client_column__ = "client_id"
    __project_column__ = "id"

    tenant_id: uuid.UUID = Field(primary_key=True, foreign_key="tenants.id")
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    client_id: uuid.UUID
    name: str
    channels: list[str] = Field(
        default_factory=lambda: ["voice"], sa_column=Column(ARRAY(Text), nullable=False)
    )
    time_zone: str = "UTC"
    business_hours: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default="{}")
    )
    holidays: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False, server_default="[]")
    )
    queue_keys: list[str] = Field(
        default_factory=list, sa_column=Column(ARRAY(Text), nullable=False, server_default="{}")
    )
    status: str = "active"
    version: int = 1
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class ProjectQueueKey(SQLModel, table=True):
    """Mirror of `projects.queue_keys`, written by a database trigger; read-only here."""

    __tablename__ = "project_queue_keys"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "client_id", "project_id"],
            ["projects.tenant_id", "projects.client_id", "projects.id"],
            ondelete="CASCADE",
        ),
    )
    __client_column__ = "client_id"
    __project_column__ = "project_id"
    __audit__ = False  # written by the trigger; the project's own audit entry names the keys

    tenant_id: uuid.UUID = Field(primary_key=True)
    queue_key: str = Field(primary_key=True)
    client_id: uuid.UUID
    project_id: uuid.UUID


class UserProject(SQLModel, table=True):
    """A supervisor's assignment to a project (unique per user and project)."""

    __tablename__ = "user_projects"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "user_id"], ["users.tenant_id", "users.id"]),
        ForeignKeyConstraint(["tenant_id", "project_id"], ["projects.tenant_id", "projects.id"]),
    )

    tenant_id: uuid.UUID = Field(primary_key=True)
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    user_id: uuid.UUID
    project_id: uuid.UUID
    created_at: datetime = _ts()
