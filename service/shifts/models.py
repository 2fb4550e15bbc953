"""Shifts: agent x project x `[starts_at, ends_at)`.

The table's `during` column (a stored generated `tstzrange`) carries the GiST
exclusion constraint that makes a planned double booking impossible to store;
it is read-only, so it is declared on the table but not mapped."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Computed, DateTime, ForeignKeyConstraint, Table, func
from sqlalchemy.dialects.postgresql import TSTZRANGE
from sqlmodel import Field, SQLModel

from service.core.time import new_id, utcnow

ACTIVITIES = ("on_queue", "training", "coaching", "meeting", "break")


def _ts(default: bool = True) -> Any:
    return Field(
        default_factory=utcnow if default else None,
        sa_column=Column(
            DateTime(timezone=True), nullable=False, server_default=func.now() if default else None
        ),
    )


class Shift(SQLModel, table=True):
    __tablename__ = "shifts"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "agent_id"], ["agents.tenant_id", "agents.id"]),
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
    starts_at: datetime = _ts(default=False)
    ends_at: datetime = _ts(default=False)
    activity: str
    note: str | None = None
    external_id: str | None = None
    version: int = 1
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


SHIFTS: Table = Shift.__table__  # type: ignore[attr-defined]
SHIFTS.append_column(
    Column("during", TSTZRANGE, Computed("tstzrange(starts_at, ends_at, '[)')"), nullable=False)
)
DURING = SHIFTS.c.during
