"""Contracts: one row per version. Versions of a project never overlap (a GiST
exclusion constraint in migration 0003); `client_id` is denormalized from the
project (composite foreign key) so the client policy applies without a join."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, DateTime, ForeignKeyConstraint, Numeric, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from service.core.time import new_id, utcnow


def _ts() -> Any:
    return Field(
        default_factory=utcnow,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class Contract(SQLModel, table=True):
    __tablename__ = "contracts"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "client_id", "project_id"],
            ["projects.tenant_id", "projects.client_id", "projects.id"],
        ),
    )
    __client_column__ = "client_id"
    __project_column__ = "project_id"

    tenant_id: uuid.UUID = Field(primary_key=True, foreign_key="tenants.id")
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    client_id: uuid.UUID
    project_id: uuid.UUID
    version_number: int
    """1, 2, 3 … per project, in order of creation."""
    effective_from: date
    effective_to: date | None = None
    """Inclusive; empty: open-ended."""
    reference: str | None = None
    targets: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False, server_default="[]")
    )
    short_abandon_s: int = 5
    timeouts_count_as_abandons: bool = False
    fcr_window_days: int = 7
    measurement_period: str = "month"
    interval_minutes: int = 15
    volume_variance_margin: Decimal | None = Field(
        default=None, sa_column=Column(Numeric(6, 4), nullable=True)
    )
    monthly_fee: Decimal | None = Field(
        default=None, sa_column=Column(Numeric(14, 2), nullable=True)
    )
    currency: str | None = None
    service_credits: dict[str, Any] | None = Field(
        # none_as_null: an absent table is SQL NULL, not the JSON value null.
        default=None,
        sa_column=Column(JSONB(none_as_null=True), nullable=True),
    )
    version: int = 1
    """Row version for ETag / If-Match."""
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
