"""Who is calling, for which tenant, and what they may see: the TenantContext.

Resolved once per request by `get_context` (bearer JWT, API token or portal
session cookie), put on the request's session as its `DbScope` — so row-level
security sees the tenant (and client) in every transaction — and passed to
services. Repositories start every query from `scoped(Model, ctx)`.

Visibility and permission are two different answers: an object outside the
caller's tenant, client or projects does not exist for them (404); a
forbidden action on a visible object is 403.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from sqlalchemy import Select, select

from service.core.db import DbScope
from service.core.errors import NotFound

Role = Literal["tenant_admin", "supervisor", "analyst", "client_viewer"]
ROLES: tuple[Role, ...] = ("tenant_admin", "supervisor", "analyst", "client_viewer")

# Permissions are "area:verb". Roles grant sets of them; API tokens carry a subset as scopes.
PERMISSIONS = (
    "tenant:admin",  # tenant settings, branding, identity providers
    "users:admin",  # users, invitations, API tokens
    "audit:read",
    "ops:read",  # clients, projects, contracts, agents, shifts, KPIs, SLA
    "ops:write",
    "contacts:read",
    "contacts:write",  # ingestion
    "reports:read",
    "reports:admin",
)
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "tenant_admin": frozenset(PERMISSIONS),
    "supervisor": frozenset(
        {"ops:read", "ops:write", "contacts:read", "contacts:write", "reports:read"}
    ),
    "analyst": frozenset({"ops:read", "contacts:read", "reports:read"}),
    "client_viewer": frozenset({"ops:read", "reports:read"}),
}
API_TOKEN_SCOPES = frozenset(PERMISSIONS) - {"tenant:admin", "users:admin"}


@dataclass(frozen=True)
class TenantContext:
    tenant_id: uuid.UUID
    actor_type: Literal["user", "api_token"]
    actor_id: uuid.UUID
    permissions: frozenset[str]
    role: str | None = None
    client_id: uuid.UUID | None = None
    project_ids: frozenset[uuid.UUID] | None = None
    """None: every project of the tenant (or of the client); a set: only these (supervisors)."""
    request_id: str | None = field(default=None, compare=False)

    def db_scope(self) -> DbScope:
        return DbScope(tenant_id=self.tenant_id, client_id=self.client_id)

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    @property
    def is_client_viewer(self) -> bool:
        return self.client_id is not None


M = TypeVar("M")


def scoped(model: type[M], ctx: TenantContext) -> Select[M]:
    """`select(model)` limited to what `ctx` may see: its tenant, its client
    (models name the column in `__client_column__`) and its projects
    (`__project_column__`). Every repository read starts here."""
    stmt: Select[M] = select(model).where(model.tenant_id == ctx.tenant_id)  # type: ignore[attr-defined]
    return scope_statement(stmt, model, ctx)


def scope_statement(stmt: Select[Any], model: type[Any], ctx: TenantContext) -> Select[Any]:
    client_column = getattr(model, "__client_column__", None)
    if ctx.client_id is not None and client_column is not None:
        stmt = stmt.where(getattr(model, client_column) == ctx.client_id)
    project_column = getattr(model, "__project_column__", None)
    if ctx.project_ids is not None and project_column is not None:
        stmt = stmt.where(getattr(model, project_column).in_(ctx.project_ids))
    return stmt


def ensure_visible(obj: M | None, what: str) -> M:
    if obj is None:
        raise NotFound(f"No such {what}.")
    return obj
