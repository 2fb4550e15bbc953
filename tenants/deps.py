"""FastAPI dependencies that resolve the caller: `CurrentContext`,
`require(permission)` and `PlatformAdmin`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Hashable
from typing import Annotated, Any

import structlog
from fastapi import Depends, Request
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col
from starlette.types import Scope

from service.core.answers import Caller
from service.core.changes import TenantCache
from service.core.db import Database, SessionDep, set_scope
from service.core.errors import Forbidden, Unauthorized
from service.core.time import utcnow
from tenants.audit import ACTOR_KEY, record_denial, set_actor
from tenants.context import API_TOKEN_SCOPES, ROLE_PERMISSIONS, TenantContext
from tenants.keys import KeyStore
from tenants.models import ApiToken, Tenant, User
from tenants.portal_session import current_session
from tenants.security import constant_time_equals, token_digest
from tenants.tokens import (
    InvalidToken,
    opaque_token_tenant,
    remembered_access_token,
    verify_access_token,
)

API_TOKEN_PREFIX = "cpk"


class MissingCredentials(Unauthorized):
    code = "missing_credentials"
    title = "Authentication required"


class TenantSuspended(Unauthorized):
    code = "tenant_suspended"
    title = "Tenant suspended"


class AccountDisabled(Unauthorized):
    code = "account_disabled"
    title = "Account disabled"


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidToken("Use 'Authorization: Bearer <token>'.")
        return token.strip()
    return None


async def _active_tenant(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    status = (
        await session.execute(select(col(Tenant.status)).where(col(Tenant.id) == tenant_id))
    ).scalar_one_or_none()
    if status is None:
        raise InvalidToken("The token's tenant does not exist.")
    if status != "active":
        raise TenantSuspended("This tenant is suspended.")


async def project_scope(
    session: AsyncSession, ctx_role: str | None, tenant_id: uuid.UUID, user_id: uuid.UUID
) -> frozenset[uuid.UUID] | None:
    """Supervisors see the projects assigned to them; everyone else every project."""
    if ctx_role != "supervisor":
        return None
    # A Core table clause, not the ORM model: `tenants` imports no domain package.
    from sqlalchemy import column, table

    assignments = table(
        "user_projects", column("tenant_id"), column("user_id"), column("project_id")
    )
    rows = await session.execute(
        select(assignments.c.project_id).where(
            assignments.c.tenant_id == tenant_id, assignments.c.user_id == user_id
        )
    )
    return frozenset(rows.scalars())


def view_of(ctx: TenantContext) -> Hashable:
    """What a caller may see: an answer computed for one caller serves every caller
    of the same tenant with the same view (see service/core/answers.py)."""
    return (ctx.permissions, ctx.client_id, ctx.project_ids)


def known_caller(scope: Scope) -> Caller | None:
    """The tenant and view of the request's caller when this process has resolved
    that caller and verified that token already — from memory, no I/O; else None
    (the request then goes through the route's dependencies)."""
    state = scope["app"].state
    callers: TenantCache[TenantContext] | None = getattr(state, "callers", None)
    keys: KeyStore | None = getattr(state, "keys", None)
    if callers is None or keys is None:
        return None
    header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
    if header is None:
        return None
    scheme, _, token = header.decode("latin-1").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or token.startswith(API_TOKEN_PREFIX + "_"):
        return None
    claims = remembered_access_token(keys, state.settings.api.public_url, token)
    if claims is None:
        return None
    ctx = callers.peek(claims.tenant_id, ("user", claims.user_id))
    if ctx is None:
        return None
    structlog.contextvars.bind_contextvars(tenant_id=str(ctx.tenant_id))
    return ctx.tenant_id, view_of(ctx)


def _callers(request: Request) -> TenantCache[TenantContext] | None:
    """The process's cache of resolved callers (absent outside the API)."""
    return getattr(request.app.state, "callers", None)


async def _context_for_user(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    callers: TenantCache[TenantContext] | None = None,
) -> TenantContext:
    # Role, client, projects and the tenant's status are read from the database
    # (a demotion takes effect at once); the cache holds them only until the
    # next committed change to the tenant's users, projects or status.
    stamp = None
    if callers is not None:
        cached = callers.get(tenant_id, ("user", user_id))
        if cached is not None:
            return cached
        stamp = callers.stamp(tenant_id)
    ctx = await _read_user_context(session, tenant_id, user_id)
    if callers is not None:
        callers.put(tenant_id, ("user", user_id), ctx, stamp)
    return ctx


async def _read_user_context(
    session: AsyncSession, tenant_id: uuid.UUID, user_id: uuid.UUID
) -> TenantContext:
    await set_scope(session, TenantContext(tenant_id, "user", user_id, frozenset()).db_scope())
    await _active_tenant(session, tenant_id)
    user = (
        await session.execute(
            select(User).where(col(User.tenant_id) == tenant_id, col(User.id) == user_id)
        )
    ).scalar_one_or_none()
    if user is None:
        raise InvalidToken("The token's user does not exist.")
    if user.status != "active":
        raise AccountDisabled("This account is disabled.")
    # Role and client come from the database, not the token: a demotion takes effect at once.
    return TenantContext(
        tenant_id=user.tenant_id,
        actor_type="user",
        actor_id=user.id,
        permissions=ROLE_PERMISSIONS[user.role],
        role=user.role,
        client_id=user.client_id,
        project_ids=await project_scope(session, user.role, user.tenant_id, user.id),
    )


async def _context_from_api_token(session: AsyncSession, token: str) -> TenantContext:
    tenant_id = opaque_token_tenant(API_TOKEN_PREFIX, token)
    await set_scope(
        session, TenantContext(tenant_id, "api_token", tenant_id, frozenset()).db_scope()
    )
    row = (
        await session.execute(
            select(ApiToken).where(
                col(ApiToken.tenant_id) == tenant_id,
                col(ApiToken.token_hash) == token_digest(token),
            )
        )
    ).scalar_one_or_none()
    now = utcnow()
    if row is None or row.revoked_at is not None:
        raise InvalidToken("The API token is unknown or revoked.")
    if row.expires_at is not None and row.expires_at <= now:
        raise InvalidToken("The API token has expired.")
    await _active_tenant(session, tenant_id)
    # last_used_at: bounded to one write a minute per token, outside the audit log.
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        await session.execute(
            update(ApiToken)
            .where(col(ApiToken.tenant_id) == tenant_id, col(ApiToken.id) == row.id)
            .values(last_used_at=now)
        )
    return TenantContext(
        tenant_id=tenant_id,
        actor_type="api_token",
        actor_id=row.id,
        permissions=frozenset(row.scopes) & API_TOKEN_SCOPES,
    )


async def resolve_context(request: Request, session: AsyncSession) -> TenantContext:
    token = bearer_token(request)
    if token is not None and token.startswith(API_TOKEN_PREFIX + "_"):
        ctx = await _context_from_api_token(session, token)
    elif token is not None:
        keys: KeyStore = request.app.state.keys
        claims = await verify_access_token(keys, request.app.state.settings.api.public_url, token)
        ctx = await _context_for_user(session, claims.tenant_id, claims.user_id, _callers(request))
    else:
        portal = await current_session(request)
        if portal is None:
            raise MissingCredentials("Send 'Authorization: Bearer <token>'.")
        ctx = await _context_for_user(session, portal.tenant_id, portal.user_id, _callers(request))
    await set_scope(session, ctx.db_scope())
    set_actor(session, ctx)
    request.state.ctx = ctx
    structlog.contextvars.bind_contextvars(tenant_id=str(ctx.tenant_id))
    return ctx


async def get_context(request: Request, session: SessionDep) -> TenantContext:
    """The caller's TenantContext: bearer JWT, API token, or portal cookie session."""
    return await resolve_context(request, session)


CurrentContext = Annotated[TenantContext, Depends(get_context, scope="function")]


def require(permission: str) -> Callable[..., Coroutine[Any, Any, TenantContext]]:
    """A dependency: the caller's context, or 403 (audited) without `permission`."""

    async def dependency(request: Request, ctx: CurrentContext) -> TenantContext:
        if not ctx.can(permission):
            await record_denial(request, ctx, permission)
            raise Forbidden(f"This needs the '{permission}' permission.", permission=permission)
        return ctx

    return dependency


async def get_admin_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A BYPASSRLS session for platform administration, one transaction like any request."""
    db: Database = request.app.state.db
    async with db.admin_session() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


AdminSessionDep = Annotated[AsyncSession, Depends(get_admin_session, scope="function")]


async def get_platform_admin(request: Request, session: AdminSessionDep) -> str:
    token = bearer_token(request)
    if token is None:
        raise MissingCredentials("Send 'Authorization: Bearer <platform admin token>'.")
    expected = request.app.state.settings.auth.platform_admin_token.get_secret_value()
    if not constant_time_equals(token, expected):
        raise InvalidToken("Not a platform admin token.")
    session.info[ACTOR_KEY] = ("platform_admin", None)
    return "platform_admin"


PlatformAdmin = Annotated[str, Depends(get_platform_admin, scope="function")]
