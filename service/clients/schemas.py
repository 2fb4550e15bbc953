"""API contracts of the clients domain."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, EmailStr, Field, StringConstraints, field_validator

from tenants.schemas import Locale, Name, NoNul, ReadModel, TimeZone, WriteModel, not_null


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


Domain = Annotated[
    str,
    BeforeValidator(_lower),
    StringConstraints(max_length=253, pattern=r"^[a-z0-9.-]+\.[a-z]{2,}$"),
]
LegalName = Annotated[str, StringConstraints(min_length=1, max_length=300), NoNul]
ClientStatus = Literal["active", "inactive"]
NOT_NULL = ("name", "report_emails", "locale", "time_zone", "email_domains", "status")


def _unique_lower(values: list[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        if v.lower() not in out:
            out.append(v.lower())
    return out


class ClientCreate(WriteModel):
    name: Name
    legal_name: LegalName | None = None
    report_emails: list[EmailStr] = Field(
        default_factory=list, max_length=50, description="Who receives the client's reports."
    )
    locale: Locale = "en"
    time_zone: TimeZone | None = Field(default=None, description="Default: the tenant's.")
    email_domains: list[Domain] = Field(
        default_factory=list,
        max_length=50,
        description="The client's own e-mail domains (for portal sign-in).",
    )

    @field_validator("report_emails", "email_domains")
    @classmethod
    def _dedupe(cls, values: list[str]) -> list[str]:
        return _unique_lower([str(v) for v in values])


class ClientUpdate(WriteModel):
    """Every field optional; `status: inactive` deactivates the client."""

    name: Name | None = None
    legal_name: LegalName | None = None
    report_emails: list[EmailStr] | None = Field(default=None, max_length=50)
    locale: Locale | None = None
    time_zone: TimeZone | None = None
    email_domains: list[Domain] | None = Field(default=None, max_length=50)
    status: ClientStatus | None = None

    _present = not_null(*NOT_NULL)

    @field_validator("report_emails", "email_domains")
    @classmethod
    def _dedupe(cls, values: list[str] | None) -> list[str] | None:
        return None if values is None else _unique_lower([str(v) for v in values])


class ClientRead(ReadModel):
    id: uuid.UUID
    name: str
    legal_name: str | None
    report_emails: list[str]
    locale: str
    time_zone: str
    email_domains: list[str]
    status: str
    created_at: datetime
    updated_at: datetime
