"""Routes of tenancy and identity: platform administration, authentication,
the tenant's own settings, users, invitations, API tokens and the audit log."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, BackgroundTasks, Depends, File, Request, Response, UploadFile, status
from sqlalchemy import select
from sqlmodel import col

from service.core.config import Settings
from service.core.db import Database, SessionDep
from service.core.mail import build_message, enqueue_delivery, queue_message
from service.core.pagination import Page, paginate
from tenants import schemas, service
from tenants.branding import MAX_LOGO_BYTES, sanitize_logo
from tenants.context import ROLE_PERMISSIONS, TenantContext, scoped
from tenants.deps import AdminSessionDep, CurrentContext, PlatformAdmin, require
from tenants.errors import InvalidLogo
from tenants.keys import KeyStore
from tenants.models import AuditEntry, Tenant

platform_router = APIRouter(prefix="/platform", tags=["platform"])
auth_router = APIRouter(prefix="/auth", tags=["auth"])
tenant_router = APIRouter(tags=["tenant"])
wellknown_router = APIRouter(tags=["auth"])
log = structlog.get_logger(__name__)

TenantAdmin = Annotated[TenantContext, Depends(require("tenant:admin"), scope="function")]
UsersAdmin = Annotated[TenantContext, Depends(require("users:admin"), scope="function")]
AuditReader = Annotated[TenantContext, Depends(require("audit:read"), scope="function")]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _keys(request: Request) -> KeyStore:
    keys: KeyStore = request.app.state.keys
    return keys


def _tenant_read(tenant: Tenant) -> schemas.TenantRead:
    read = schemas.TenantRead.model_validate(tenant)
    read.has_logo = tenant.logo is not None
    return read


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# --- platform ------------------------------------------------------------------


@platform_router.post(
    "/tenants", status_code=status.HTTP_201_CREATED, response_model=schemas.TenantCreated
)
async def create_tenant(
    data: schemas.TenantCreate, admin: AdminSessionDep, _: PlatformAdmin
) -> schemas.TenantCreated:
    """Provision a tenant (a BPO) and its first tenant admin."""
    tenant, user = await service.create_tenant(admin, data)
    return schemas.TenantCreated(tenant=_tenant_read(tenant), admin_user_id=user.id)


@platform_router.get("/tenants", response_model=list[schemas.TenantRead])
async def list_tenants(admin: AdminSessionDep, _: PlatformAdmin) -> list[schemas.TenantRead]:
    """Every tenant on the platform."""
    return [_tenant_read(t) for t in await service.list_tenants(admin)]


@platform_router.get("/tenants/{tenant_id}", response_model=schemas.TenantRead)
async def get_tenant(
    tenant_id: uuid.UUID, admin: AdminSessionDep, _: PlatformAdmin
) -> schemas.TenantRead:
    """One tenant."""
    return _tenant_read(await service.get_tenant_admin(admin, tenant_id))


@platform_router.post("/tenants/{tenant_id}/suspend", response_model=schemas.TenantRead)
async def suspend_tenant(
    tenant_id: uuid.UUID, admin: AdminSessionDep, _: PlatformAdmin
) -> schemas.TenantRead:
    """Suspend a tenant: its users' tokens and API tokens are refused from the next request on."""
    return _tenant_read(await service.set_tenant_status(admin, tenant_id, "suspended"))


@platform_router.post("/tenants/{tenant_id}/activate", response_model=schemas.TenantRead)
async def activate_tenant(
    tenant_id: uuid.UUID, admin: AdminSessionDep, _: PlatformAdmin
) -> schemas.TenantRead:
    """Lift a suspension."""
    return _tenant_read(await service.set_tenant_status(admin, tenant_id, "active"))


# --- authentication --------------------------------------------------------------


@auth_router.post("/token", response_model=schemas.TokenPair)
async def login(
    data: schemas.LoginRequest, request: Request, session: SessionDep, admin: AdminSessionDep
) -> schemas.TokenPair:
    """Log in with tenant slug, e-mail and password: a 15-minute access token and a rotating refresh token.
    Every failure is the same 401 `invalid_credentials`; repeated failures answer 429."""
    _, pair = await service.login(
        admin,
        session,
        request.app.state.redis,
        _keys(request),
        _settings(request).api.public_url,
        data,
        _client_address(request),
    )
    return pair


@auth_router.post("/refresh", response_model=schemas.TokenPair)
async def refresh(
    data: schemas.RefreshRequest, request: Request, session: SessionDep
) -> schemas.TokenPair:
    """Trade a refresh token for a new pair. Each refresh token works once; reuse revokes the whole login."""
    db: Database = request.app.state.db
    return await service.refresh(
        session, db, _keys(request), _settings(request).api.public_url, data.refresh_token
    )


@auth_router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(data: schemas.RefreshRequest, session: SessionDep) -> Response:
    """Revoke the refresh token and every token of the same login."""
    await service.logout(session, data.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@auth_router.post("/password-reset", status_code=status.HTTP_202_ACCEPTED)
async def request_password_reset(
    data: schemas.PasswordResetRequest, request: Request, background: BackgroundTasks
) -> dict[str, str]:
    """Mail a one-hour reset link if the account exists; the answer is the same either way.
    The account is looked up after the answer is sent, so its timing says nothing either
    (writing the token and the mail first made an existing account's answer twice as slow)."""
    background.add_task(
        _mail_password_reset,
        request.app.state.db,
        _settings(request),
        request.app.state.redis,
        data,
    )
    return {"status": "If the account exists, a reset link was sent."}


async def _mail_password_reset(
    db: Database, settings: Settings, redis: Any, data: schemas.PasswordResetRequest
) -> None:
    """The reset token and its mail, in one transaction of their own; then wake the worker."""
    try:
        async with db.admin_transaction() as admin, db.transaction() as session:
            found = await service.request_password_reset(admin, session, data)
            if found is not None:
                user, token = found
                link = f"{settings.api.public_url}/portal/reset?token={token}"
                await queue_message(
                    session,
                    build_message(
                        settings,
                        user.email,
                        "Reset your callpact password",
                        f"Open this link within an hour to choose a new password:\n\n{link}\n\nIf you did not ask for it, ignore this mail.",
                    ),
                    tenant_id=user.tenant_id,
                )
    except Exception:  # after the answer: nobody to tell but the log
        log.exception("password_reset_failed")
        return
    if found is not None:
        await enqueue_delivery(redis)


@auth_router.post("/password-reset/confirm", status_code=status.HTTP_204_NO_CONTENT)
async def confirm_password_reset(
    data: schemas.PasswordResetConfirm, session: SessionDep
) -> Response:
    """Set a new password with a reset token; every open login of the account is revoked."""
    await service.confirm_password_reset(session, data)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@auth_router.post(
    "/invitations/accept", status_code=status.HTTP_201_CREATED, response_model=schemas.UserRead
)
async def accept_invitation(data: schemas.InvitationAccept, session: SessionDep) -> Any:
    """Accept an invitation: creates the user with the invited role and a password."""
    return await service.accept_invitation(session, data)


@wellknown_router.get("/.well-known/jwks.json")
async def jwks(request: Request) -> dict[str, Any]:
    """The public keys that verify callpact access tokens (current and still-valid retired keys)."""
    return await _keys(request).jwks()


# --- the tenant's own settings --------------------------------------------------------


@tenant_router.get("/me", response_model=schemas.MeRead)
async def me(ctx: CurrentContext, session: SessionDep) -> schemas.MeRead:
    """Who the caller is: user, tenant, role and permissions."""
    tenant = await service.get_own_tenant(session, ctx)
    user = await service.get_user(session, ctx, ctx.actor_id) if ctx.actor_type == "user" else None
    return schemas.MeRead(
        user=schemas.UserRead.model_validate(user) if user else None,
        tenant=_tenant_read(tenant),
        role=ctx.role,
        permissions=sorted(ctx.permissions),
    )


@tenant_router.get("/tenant", response_model=schemas.TenantRead)
async def get_own_tenant(ctx: CurrentContext, session: SessionDep) -> schemas.TenantRead:
    """The caller's tenant."""
    return _tenant_read(await service.get_own_tenant(session, ctx))


@tenant_router.patch("/tenant", response_model=schemas.TenantRead)
async def update_tenant(
    data: schemas.TenantUpdate, ctx: TenantAdmin, session: SessionDep
) -> schemas.TenantRead:
    """Change the tenant's name, time zone, locale and report branding."""
    return _tenant_read(await service.update_tenant(session, ctx, data))


@tenant_router.put("/tenant/logo", response_model=schemas.TenantRead)
async def put_logo(
    ctx: TenantAdmin, session: SessionDep, logo: UploadFile = File(...)
) -> schemas.TenantRead:
    """Upload the report logo (PNG or SVG, at most 512 KiB; sanitized before storage)."""
    data = await logo.read(MAX_LOGO_BYTES + 1)
    if len(data) > MAX_LOGO_BYTES:
        raise InvalidLogo(f"The logo is larger than {MAX_LOGO_BYTES} bytes.", field="logo")
    clean, media_type = sanitize_logo(data, logo.content_type or "")
    return _tenant_read(await service.set_tenant_logo(session, ctx, clean, media_type))


@tenant_router.get("/tenant/logo", response_class=Response)
async def get_logo(ctx: CurrentContext, session: SessionDep) -> Response:
    """The tenant's logo as stored (sanitized)."""
    tenant = await service.get_own_tenant(session, ctx)
    if tenant.logo is None:
        from service.core.errors import NotFound

        raise NotFound("This tenant has no logo.")
    return Response(
        tenant.logo,
        media_type=tenant.logo_media_type or "application/octet-stream",
        headers={
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            "X-Content-Type-Options": "nosniff",
        },
    )


# --- users and invitations ----------------------------------------------------------


@tenant_router.get("/users", response_model=list[schemas.UserRead])
async def list_users(ctx: UsersAdmin, session: SessionDep) -> Any:
    """The tenant's users."""
    return await service.list_users(session, ctx)


@tenant_router.get("/users/{user_id}", response_model=schemas.UserRead)
async def get_user(user_id: uuid.UUID, ctx: UsersAdmin, session: SessionDep) -> Any:
    """One user."""
    return await service.get_user(session, ctx, user_id)


@tenant_router.patch("/users/{user_id}", response_model=schemas.UserRead)
async def update_user(
    user_id: uuid.UUID, data: schemas.UserUpdate, ctx: UsersAdmin, session: SessionDep
) -> Any:
    """Change a user's name, role (and client, for client viewers) or status."""
    return await service.update_user(session, ctx, user_id, data)


@tenant_router.post(
    "/invitations", status_code=status.HTTP_201_CREATED, response_model=schemas.InvitationRead
)
async def create_invitation(
    data: schemas.InvitationCreate,
    request: Request,
    ctx: UsersAdmin,
    session: SessionDep,
    background: BackgroundTasks,
) -> Any:
    """Invite a person by e-mail with a role (client viewers: and a client). The link expires."""
    invitation, token = await service.create_invitation(session, ctx, data)
    settings = _settings(request)
    tenant = await service.get_own_tenant(session, ctx)
    link = f"{settings.api.public_url}/portal/invitation?token={token}"
    await queue_message(
        session,
        build_message(
            settings,
            invitation.email,
            f"You are invited to {tenant.name} on callpact",
            f"{tenant.name} invites you to callpact as {invitation.role.replace('_', ' ')}.\n\nAccept before {invitation.expires_at:%Y-%m-%d %H:%M} UTC:\n\n{link}\n",
        ),
        tenant_id=ctx.tenant_id,
    )
    # After the response is sent, so after the commit: the worker delivers at once.
    background.add_task(enqueue_delivery, request.app.state.redis)
    return invitation


@tenant_router.get("/invitations", response_model=list[schemas.InvitationRead])
async def list_invitations(ctx: UsersAdmin, session: SessionDep) -> Any:
    """Invitations sent, open or not."""
    return await service.list_invitations(session, ctx)


@tenant_router.delete("/invitations/{invitation_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_invitation(
    invitation_id: uuid.UUID, ctx: UsersAdmin, session: SessionDep
) -> Response:
    """Revoke an invitation; its link stops working."""
    await service.revoke_invitation(session, ctx, invitation_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- API tokens ----------------------------------------------------------------------


@tenant_router.post(
    "/api-tokens", status_code=status.HTTP_201_CREATED, response_model=schemas.ApiTokenCreated
)
async def create_api_token(
    data: schemas.ApiTokenCreate, ctx: UsersAdmin, session: SessionDep
) -> schemas.ApiTokenCreated:
    """Create a scoped API token for a service account (e.g. a telephony integration). The token is shown once."""
    row, token = await service.create_api_token(session, ctx, data)
    return schemas.ApiTokenCreated(
        **schemas.ApiTokenRead.model_validate(row).model_dump(), token=token
    )


@tenant_router.get("/api-tokens", response_model=list[schemas.ApiTokenRead])
async def list_api_tokens(ctx: UsersAdmin, session: SessionDep) -> Any:
    """API tokens with their scopes, expiry and last use (never the token)."""
    return await service.list_api_tokens(session, ctx)


@tenant_router.delete("/api-tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_api_token(token_id: uuid.UUID, ctx: UsersAdmin, session: SessionDep) -> Response:
    """Revoke an API token at once."""
    await service.revoke_api_token(session, ctx, token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- audit log -----------------------------------------------------------------------


@tenant_router.get("/audit-log", response_model=Page[schemas.AuditEntryRead])
async def audit_log(
    ctx: AuditReader,
    session: SessionDep,
    limit: int = 50,
    cursor: str | None = None,
    action: schemas.Text | None = None,
    actor_id: uuid.UUID | None = None,
) -> Page[schemas.AuditEntryRead]:
    """Every write and authorization denial of the tenant, newest first; filter by action or actor."""
    stmt = scoped(AuditEntry, ctx)
    if action:
        stmt = stmt.where(col(AuditEntry.action) == action)
    if actor_id:
        stmt = stmt.where(col(AuditEntry.actor_id) == actor_id)
    rows, next_cursor = await paginate(
        session,
        stmt,
        sort=col(AuditEntry.at),
        id_column=col(AuditEntry.id),
        limit=limit,
        cursor=cursor,
        descending=True,
    )
    return Page(
        items=[schemas.AuditEntryRead.model_validate(r) for r in rows], next_cursor=next_cursor
    )


__all__ = [
    "ROLE_PERMISSIONS",
    "auth_router",
    "platform_router",
    "select",
    "tenant_router",
    "wellknown_router",
]
