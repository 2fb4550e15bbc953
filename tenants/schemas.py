"""API contracts of tenancy and identity. Write schemas forbid unknown and
server-owned fields (`tenant_id`, `id`, `role` where the caller may not set
it); responses always go through a `…Read` schema."""

from __future__ import annotations

import uuid
import zoneinfo
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
)

Role = Literal["tenant_admin", "supervisor", "analyst", "client_viewer"]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]
Colour = Annotated[str, StringConstraints(pattern=r"^#[0-9a-fA-F]{6}$")]
Locale = Literal["en", "tr", "fa", "zh"]


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold U+0000: a 422 naming the field, not a database error.
    if "\x00" in value:
        raise ValueError("contains a NUL character (no database text can hold it)")
    return value


NoNul = AfterValidator(_no_nul)
"""For every text that is stored or searched: refuses U+0000, naming the field."""
Text = Annotated[str, NoNul]
"""A stored or searched text without further constraints."""
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), NoNul]
Password = Annotated[str, StringConstraints(min_length=12, max_length=256)]


def _zone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


TimeZone = Annotated[str, AfterValidator(_zone)]
# Lower-cased before the pattern is checked: "Acme.Example" is normalised, not refused.
EmailDomain = Annotated[
    str,
    BeforeValidator(lambda v: v.strip().lower() if isinstance(v, str) else v),
    StringConstraints(pattern=r"^[a-z0-9.-]+\.[a-z]{2,}$", max_length=253),
]


class WriteModel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _refuse_null(value: Any) -> Any:
    if value is None:
        raise ValueError("may not be null")
    return value


def not_null(*fields: str) -> Any:
    """An update model's validator: `fields` may be left out (unchanged), not sent
    as null (a field that cannot be empty; null would be a mistake, not a no-op)."""
    return field_validator(*fields, mode="before")(_refuse_null)


class ReadModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- tenants ---------------------------------------------------------------


class FirstAdmin(WriteModel):
    email: EmailStr
    password: Password
    display_name: Text = ""


class TenantCreate(WriteModel):
    slug: Slug
    name: Name
    time_zone: TimeZone = "UTC"
    locale: Locale = "en"
    admin: FirstAdmin


class TenantUpdate(WriteModel):
    name: Name | None = None
    time_zone: TimeZone | None = None
    locale: Locale | None = None
    brand_primary: Colour | None = None
    brand_accent: Colour | None = None
    report_footer: Annotated[str, StringConstraints(max_length=500), NoNul] | None = None


class TenantRead(ReadModel):
    id: uuid.UUID
    slug: str
    name: str
    status: str
    time_zone: str
    locale: str
    brand_primary: str
    brand_accent: str
    report_footer: str
    has_logo: bool = False
    created_at: datetime


class TenantCreated(BaseModel):
    tenant: TenantRead
    admin_user_id: uuid.UUID


# --- auth ------------------------------------------------------------------


class LoginRequest(WriteModel):
    tenant: Slug
    email: EmailStr
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class RefreshRequest(WriteModel):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=512)]


class TokenPair(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    refresh_token: str


class PasswordResetRequest(WriteModel):
    tenant: Slug
    email: EmailStr


class PasswordResetConfirm(WriteModel):
    token: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    password: Password


class InvitationAccept(WriteModel):
    token: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    password: Password
    display_name: Text = ""


# --- users and invitations -----------------------------------------------------


class UserRead(ReadModel):
    id: uuid.UUID
    email: str
    display_name: str
    role: str
    client_id: uuid.UUID | None
    status: str
    created_at: datetime
    last_login_at: datetime | None


class UserUpdate(WriteModel):
    """Every field optional; `client_id: null` unbinds the user from a client."""

    display_name: Text | None = None
    role: Role | None = None
    client_id: uuid.UUID | None = None
    status: Literal["active", "disabled"] | None = None

    _present = not_null("role")


class MeRead(BaseModel):
    user: UserRead | None
    tenant: TenantRead
    role: str | None
    permissions: list[str]


class InvitationCreate(WriteModel):
    email: EmailStr
    role: Role
    client_id: uuid.UUID | None = None
    expires_in_hours: int = Field(default=72, ge=1, le=24 * 30)


class InvitationRead(ReadModel):
    id: uuid.UUID
    email: str
    role: str
    client_id: uuid.UUID | None
    expires_at: datetime
    accepted_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime


# --- API tokens ------------------------------------------------------------


class ApiTokenCreate(WriteModel):
    name: Name
    scopes: list[str] = Field(min_length=1)
    expires_at: datetime | None = None


class ApiTokenRead(ReadModel):
    id: uuid.UUID
    name: str
    scopes: list[str]
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime


class ApiTokenCreated(ApiTokenRead):
    token: str = Field(description="Shown once; only its digest is stored.")


# --- identity providers ------------------------------------------------------


class IdentityProviderCreate(WriteModel):
    name: Name
    client_id: uuid.UUID | None = Field(
        default=None,
        description="The client whose staff log in with it; empty for the tenant's own staff.",
    )
    issuer: Annotated[str, StringConstraints(pattern=r"^https?://", max_length=500), NoNul]
    oauth_client_id: Annotated[str, StringConstraints(min_length=1, max_length=500), NoNul]
    oauth_client_secret: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    allowed_domains: list[EmailDomain] = Field(min_length=1)
    role_claim: Text | None = None
    role_map: dict[Text, Role] = Field(default_factory=dict)
    default_role: Role = "analyst"
    enabled: bool = True


class IdentityProviderUpdate(WriteModel):
    name: Name | None = None
    oauth_client_secret: Annotated[str, StringConstraints(min_length=1, max_length=2000)] | None = (
        None
    )
    allowed_domains: list[EmailDomain] | None = None
    role_claim: Text | None = None
    role_map: dict[Text, Role] | None = None
    default_role: Role | None = None
    enabled: bool | None = None


class IdentityProviderRead(ReadModel):
    id: uuid.UUID
    name: str
    client_id: uuid.UUID | None
    issuer: str
    oauth_client_id: str
    allowed_domains: list[str]
    role_claim: str | None
    role_map: dict[str, str]
    default_role: str
    enabled: bool
    created_at: datetime


# --- audit -------------------------------------------------------------------


class AuditEntryRead(ReadModel):
    id: uuid.UUID
    at: datetime
    actor_type: str
    actor_id: uuid.UUID | None
    action: str
    object_type: str
    object_id: str | None
    outcome: str
    request_id: str | None
    summary: dict[str, object]
