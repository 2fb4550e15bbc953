"""API contracts of the contracts domain. Terms are validated here (per
target, see `terms.py`) and against the project in the service."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    StringConstraints,
    field_validator,
)

from service.contracts.models import Contract
from service.contracts.terms import (
    MeasurementPeriod,
    ServiceCredits,
    Target,
    TargetRead,
    expand_targets,
)
from tenants.schemas import NoNul, WriteModel, not_null


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


Currency = Annotated[str, BeforeValidator(_upper), StringConstraints(pattern=r"^[A-Z]{3}$")]
Reference = Annotated[str, StringConstraints(min_length=1, max_length=200), NoNul]


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"))


Money = Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2), AfterValidator(_cents)]
Margin = Annotated[float, Field(ge=0, le=10)]
IntervalMinutes = Literal[15, 30, 60]

TERM_FIELDS = (
    "reference",
    "targets",
    "short_abandon_s",
    "timeouts_count_as_abandons",
    "fcr_window_days",
    "measurement_period",
    "interval_minutes",
    "volume_variance_margin",
    "monthly_fee",
    "currency",
    "service_credits",
)
NOT_NULL = (
    "targets",
    "short_abandon_s",
    "timeouts_count_as_abandons",
    "fcr_window_days",
    "measurement_period",
    "interval_minutes",
)


class ContractTerms(WriteModel):
    """What a contract version promises and what it costs."""

    reference: Reference | None = Field(default=None, description="The client's contract number.")
    targets: list[Target] = Field(min_length=1, max_length=50)
    short_abandon_s: int = Field(
        default=5, ge=0, le=600, description="Abandons within this wait leave every KPI; 0: none."
    )
    timeouts_count_as_abandons: bool = False
    fcr_window_days: int = Field(default=7, ge=1, le=90)
    measurement_period: MeasurementPeriod = "month"
    interval_minutes: IntervalMinutes = 15
    volume_variance_margin: Margin | None = Field(
        default=None,
        description="Excuse intervals whose offered volume exceeds the forecast by more than this "
        "share (0.15 = +15 %); empty: no clause.",
    )
    monthly_fee: Money | None = None
    currency: Currency | None = Field(default=None, description="ISO 4217, e.g. EUR.")
    service_credits: ServiceCredits | None = None


class ContractCreate(ContractTerms):
    project_id: uuid.UUID
    effective_from: date
    effective_to: date | None = Field(default=None, description="Inclusive; empty: open-ended.")

    @field_validator("effective_to")
    @classmethod
    def _not_before_start(cls, value: date | None, info: Any) -> date | None:
        start = info.data.get("effective_from")
        if value is not None and start is not None and value < start:
            raise ValueError("must not be before effective_from")
        return value


class ContractUpdate(WriteModel):
    """Every field optional. A version in force (or past) only takes `effective_to` and
    `reference`: other changes start a new version (`POST /contracts/{id}/versions`)."""

    effective_from: date | None = None
    effective_to: date | None = None
    reference: Reference | None = None
    targets: list[Target] | None = Field(default=None, min_length=1, max_length=50)
    short_abandon_s: int | None = Field(default=None, ge=0, le=600)
    timeouts_count_as_abandons: bool | None = None
    fcr_window_days: int | None = Field(default=None, ge=1, le=90)
    measurement_period: MeasurementPeriod | None = None
    interval_minutes: IntervalMinutes | None = None
    volume_variance_margin: Margin | None = None
    monthly_fee: Money | None = None
    currency: Currency | None = None
    service_credits: ServiceCredits | None = None

    _present = not_null("effective_from", *NOT_NULL)


class ContractVersionCreate(ContractUpdate):
    """A new version from `effective_from`: the current one closes the day before.
    Fields left out are carried over from the version it replaces."""

    effective_from: date


class ContractRead(BaseModel):
    id: uuid.UUID
    project_id: uuid.UUID
    client_id: uuid.UUID
    version_number: int
    effective_from: date
    effective_to: date | None
    reference: str | None
    targets: list[TargetRead]
    short_abandon_s: int
    timeouts_count_as_abandons: bool
    fcr_window_days: int
    measurement_period: str
    interval_minutes: int
    volume_variance_margin: float | None
    monthly_fee: Decimal | None
    currency: str | None
    service_credits: ServiceCredits | None
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Contract) -> ContractRead:
        return cls(
            id=row.id,
            project_id=row.project_id,
            client_id=row.client_id,
            version_number=row.version_number,
            effective_from=row.effective_from,
            effective_to=row.effective_to,
            reference=row.reference,
            targets=expand_targets(row.targets, row.short_abandon_s),
            short_abandon_s=row.short_abandon_s,
            timeouts_count_as_abandons=row.timeouts_count_as_abandons,
            fcr_window_days=row.fcr_window_days,
            measurement_period=row.measurement_period,
            interval_minutes=row.interval_minutes,
            volume_variance_margin=(
                float(row.volume_variance_margin)
                if row.volume_variance_margin is not None
                else None
            ),
            monthly_fee=row.monthly_fee,
            currency=row.currency,
            service_credits=(
                ServiceCredits.model_validate(row.service_credits)
                if row.service_credits is not None
                else None
            ),
            version=row.version,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
