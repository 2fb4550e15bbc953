"""Tenancy and identity tables.

Every tenant-owned table has `tenant_id` leading its primary key, its unique
keys and its (composite) foreign keys; row-level security is added by the
migration that creates it (`migrations/rls.py`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    Column,
    DateTime,
    ForeignKeyConstraint,
    LargeBinary,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from service.core.time import new_id, utcnow


def _ts(nullable: bool = False, default: bool = True) -> Any:
    return Field(
        default_factory=utcnow if default else None,
        sa_column=Column(
            DateTime(timezone=True),
            nullable=nullable,
            server_default=func.now() if default else None,
        ),
    )


class Tenant(SQLModel, table=True):
    __tablename__ = "tenants"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    slug: str = Field(sa_column=Column(String(63), nullable=False, unique=True))
    name: str
    status: str = "active"
    time_zone: str = "UTC"
    locale: str = "en"
    brand_primary: str = "#1f4e79"
    brand_accent: str = "#f28c28"
    report_footer: str = ""
    logo: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    logo_media_type: str | None = None
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class Client(SQLModel, table=True):
    """A BPO's customer (the employer). Its operations fields live with the clients domain."""

    __tablename__ = "clients"
    __client_column__ = "id"  # a client viewer sees its own client only (scoped())

    tenant_id: uuid.UUID = Field(primary_key=True, foreign_key="tenants.id")
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    name: str
    legal_name: str | None = None
    report_emails: list[str] = Field(
        default_factory=list, sa_column=Column(ARRAY(Text), nullable=False, server_default="{}")
    )
    locale: str = "en"
    time_zone: str = "UTC"
    email_domains: list[str] = Field(
        default_factory=list, sa_column=Column(ARRAY(Text), nullable=False, server_default="{}")
    )
    status: str = "active"
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class User(SQLModel, table=True):
    __tablename__ = "users"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "client_id"], ["clients.tenant_id", "clients.id"]),
    )

    tenant_id: uuid.UUID = Field(primary_key=True, foreign_key="tenants.id")
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    email: str
    display_name: str = ""
    role: str
    client_id: uuid.UUID | None = None
    password_hash: str | None = None
    status: str = "active"
    idp_id: uuid.UUID | None = None
    idp_subject: str | None = None
    created_at: datetime = _ts()
    last_login_at: datetime | None = _ts(nullable=True, default=False)


class RefreshToken(SQLModel, table=True):
    __tablename__ = "refresh_tokens"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "user_id"], ["users.tenant_id", "users.id"]),
    )
    __audit__ = False  # rotates on every refresh; logins and logouts are audited instead

    tenant_id: uuid.UUID = Field(primary_key=True)
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    user_id: uuid.UUID
    family_id: uuid.UUID
    token_hash: str
    expires_at: datetime = _ts(default=False)
    used_at: datetime | None = _ts(nullable=True, default=False)
    revoked_at: datetime | None = _ts(nullable=True, default=False)
    created_at: datetime = _ts()


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_tokens"

    tenant_id: uuid.UUID = Field(primary_key=True, foreign_key="tenants.id")
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    name: str
    token_hash: str
    scopes: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    expires_at: datetime | None = _ts(nullable=True, default=False)
    last_used_at: datetime | None = _ts(nullable=True, default=False)
    revoked_at: datetime | None = _ts(nullable=True, default=False)
    created_by: uuid.UUID | None = None
    created_at: datetime = _ts()


class Invitation(SQLModel, table=True):
    __tablename__ = "invitations"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "client_id"], ["clients.tenant_id", "clients.id"]),
    )

    tenant_id: uuid.UUID = Field(primary_key=True, foreign_key="tenants.id")
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    email: str
    role: str
    client_id: uuid.UUID | None = None
    token_hash: str
    expires_at: datetime = _ts(default=False)
    accepted_at: datetime | None = _ts(nullable=True, default=False)
    revoked_at: datetime | None = _ts(nullable=True, default=False)
    created_by: uuid.UUID | None = None
    created_at: datetime = _ts()


class PasswordReset(SQLModel, table=True):
    __tablename__ = "password_resets"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "user_id"], ["users.tenant_id", "users.id"]),
    )

    tenant_id: uuid.UUID = Field(primary_key=True)
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    user_id: uuid.UUID
    token_hash: str
    expires_at: datetime = _ts(default=False)
    used_at: datetime | None = _ts(nullable=True, default=False)
    created_at: datetime = _ts()


class IdentityProvider(SQLModel, table=True):
    """An OIDC provider for the tenant's staff (client_id NULL) or for one client's staff."""

    __tablename__ = "identity_providers"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "client_id"], ["clients.tenant_id", "clients.id"]),
    )

    tenant_id: uuid.UUID = Field(primary_key=True, foreign_key="tenants.id")
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    client_id: uuid.UUID | None = None
    name: str
    issuer: str
    oauth_client_id: str
    client_secret_enc: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    allowed_domains: list[str] = Field(
        default_factory=list, sa_column=Column(ARRAY(Text), nullable=False, server_default="{}")
    )
    role_claim: str | None = None
    role_map: dict[str, str] = Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default="{}")
    )
    default_role: str = "analyst"
    enabled: bool = True
    created_at: datetime = _ts()


class AuditEntry(SQLModel, table=True):
    """Append-only: the application role may insert and read, never update or delete."""

    __tablename__ = "audit_log"
    __audit__ = False

    tenant_id: uuid.UUID = Field(primary_key=True)
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    at: datetime = _ts()
    actor_type: str
    actor_id: uuid.UUID | None = None
    action: str
    object_type: str
    object_id: str | None = None
    outcome: str = "ok"
    request_id: str | None = None
    summary: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default="{}")
    )


class SigningKey(SQLModel, table=True):
    """JWT signing keys (platform-wide, not tenant data). The application role reads them."""

    __tablename__ = "signing_keys"
    __audit__ = False

    kid: str = Field(primary_key=True)
    private_jwk_enc: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    public_jwk: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    created_at: datetime = _ts()
    sign_until: datetime = _ts(default=False)
    verify_until: datetime = _ts(default=False)
