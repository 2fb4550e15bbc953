"""Tenancy and identity rules: plain async functions `verb_noun(session, …)`.
They flush, never commit."""

from __future__ import annotations

import uuid
from datetime import timedelta

from redis.asyncio import Redis
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from service.core.db import Database
from service.core.errors import NotFound
from service.core.time import utcnow
from tenants import schemas
from tenants.audit import record_event
from tenants.context import API_TOKEN_SCOPES, TenantContext, ensure_visible, scoped
from tenants.errors import (
    EmailTaken,
    InvalidCredentials,
    InvalidRoleBinding,
    InvalidScope,
    LinkExpired,
    SlugTaken,
    TooManyAttempts,
)
from tenants.keys import KeyStore
from tenants.models import ApiToken, Client, Invitation, PasswordReset, RefreshToken, Tenant, User
from tenants.security import hash_password, token_digest, verify_password
from tenants.tokens import (
    ACCESS_TTL_S,
    REFRESH_TTL_S,
    InvalidToken,
    issue_access_token,
    new_opaque_token,
    opaque_token_tenant,
)

REFRESH_PREFIX = "cpr"
API_TOKEN_PREFIX = "cpk"
LOGIN_WINDOW_S = 15 * 60
LOGIN_MAX_PER_ACCOUNT = 5
LOGIN_MAX_PER_ADDRESS = 30


# --- tenants (platform admin, admin session) ----------------------------------------


async def create_tenant(admin: AsyncSession, data: schemas.TenantCreate) -> tuple[Tenant, User]:
    taken = (
        await admin.execute(select(col(Tenant.id)).where(col(Tenant.slug) == data.slug))
    ).first()
    if taken is not None:
        raise SlugTaken(f"The slug '{data.slug}' is taken.", field="slug")
    tenant = Tenant(slug=data.slug, name=data.name, time_zone=data.time_zone, locale=data.locale)
    admin.add(tenant)
    await admin.flush()
    user = User(
        tenant_id=tenant.id,
        email=str(data.admin.email).lower(),
        display_name=data.admin.display_name,
        role="tenant_admin",
        password_hash=await hash_password(data.admin.password),
    )
    admin.add(user)
    await admin.flush()
    return tenant, user


async def list_tenants(admin: AsyncSession) -> list[Tenant]:
    return list((await admin.execute(select(Tenant).order_by(col(Tenant.created_at)))).scalars())


async def get_tenant_admin(admin: AsyncSession, tenant_id: uuid.UUID) -> Tenant:
    return ensure_visible(await admin.get(Tenant, tenant_id), "tenant")


async def set_tenant_status(admin: AsyncSession, tenant_id: uuid.UUID, status: str) -> Tenant:
    tenant = await get_tenant_admin(admin, tenant_id)
    tenant.status = status
    tenant.updated_at = utcnow()
    await admin.flush()
    return tenant


async def get_own_tenant(session: AsyncSession, ctx: TenantContext) -> Tenant:
    tenant = (
        await session.execute(select(Tenant).where(col(Tenant.id) == ctx.tenant_id))
    ).scalar_one()
    return tenant


async def update_tenant(
    session: AsyncSession, ctx: TenantContext, data: schemas.TenantUpdate
) -> Tenant:
    tenant = await get_own_tenant(session, ctx)
    for key, value in data.model_dump(exclude_unset=True).items():
        if value is not None:
            setattr(tenant, key, value)
    tenant.updated_at = utcnow()
    await session.flush()
    return tenant


async def set_tenant_logo(
    session: AsyncSession, ctx: TenantContext, data: bytes, media_type: str
) -> Tenant:
    tenant = await get_own_tenant(session, ctx)
    tenant.logo, tenant.logo_media_type = data, media_type
    tenant.updated_at = utcnow()
    await session.flush()
    return tenant


# --- login, refresh, logout -------------------------------------------------------


async def _rate_limit(redis: Redis, *keys: tuple[str, int]) -> None:
    for key, limit in keys:
        count = await redis.get(key)
        if count is not None and int(count) >= limit:
            raise TooManyAttempts(
                "Too many failed attempts; try again later.", retry_after_s=LOGIN_WINDOW_S
            )


async def _count_failure(redis: Redis, *keys: str) -> None:
    for key in keys:
        pipe = redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, LOGIN_WINDOW_S)
        await pipe.execute()


async def _issue_pair(
    session: AsyncSession, keys: KeyStore, issuer: str, user: User, family: uuid.UUID | None = None
) -> schemas.TokenPair:
    refresh = new_opaque_token(REFRESH_PREFIX, user.tenant_id)
    session.add(
        RefreshToken(
            tenant_id=user.tenant_id,
            user_id=user.id,
            family_id=family or uuid.uuid4(),
            token_hash=token_digest(refresh),
            expires_at=utcnow() + timedelta(seconds=REFRESH_TTL_S),
        )
    )
    await session.flush()
    access = await issue_access_token(
        keys,
        issuer,
        tenant_id=user.tenant_id,
        user_id=user.id,
        role=user.role,
        client_id=user.client_id,
    )
    return schemas.TokenPair(access_token=access, expires_in=ACCESS_TTL_S, refresh_token=refresh)


async def login(
    admin: AsyncSession,
    session: AsyncSession,
    redis: Redis,
    keys: KeyStore,
    issuer: str,
    data: schemas.LoginRequest,
    address: str,
) -> tuple[User, schemas.TokenPair]:
    """Password login. Every failure is the same 401, whatever failed; failures
    are counted per account and per client address."""
    from service.core.db import DbScope, set_scope

    email = str(data.email).lower()
    account_key = f"callpact:login:acct:{data.tenant}:{email}"
    address_key = f"callpact:login:addr:{address}"
    await _rate_limit(
        redis, (account_key, LOGIN_MAX_PER_ACCOUNT), (address_key, LOGIN_MAX_PER_ADDRESS)
    )
    tenant = (
        await admin.execute(select(Tenant).where(col(Tenant.slug) == data.tenant))
    ).scalar_one_or_none()
    user = None
    if tenant is not None and tenant.status == "active":
        await set_scope(session, DbScope(tenant_id=tenant.id))
        user = (
            await session.execute(
                select(User).where(
                    col(User.tenant_id) == tenant.id, func.lower(col(User.email)) == email
                )
            )
        ).scalar_one_or_none()
    ok = await verify_password(user.password_hash if user else None, data.password)
    if user is None or not ok or user.status != "active":
        await _count_failure(redis, account_key, address_key)
        raise InvalidCredentials("The tenant, e-mail or password is wrong.")
    await redis.delete(account_key)
    user.last_login_at = utcnow()
    ctx = TenantContext(user.tenant_id, "user", user.id, frozenset(), role=user.role)
    await record_event(session, ctx, "auth.login", "users", user.id, method="password")
    return user, await _issue_pair(session, keys, issuer, user)


async def refresh(
    session: AsyncSession, db: Database, keys: KeyStore, issuer: str, token: str
) -> schemas.TokenPair:
    """Rotate a refresh token. A token used twice means it was stolen: the
    whole family (every token descended from that login) is revoked, in a
    transaction of its own so the revocation outlives the 401."""
    from service.core.db import DbScope, set_scope

    tenant_id = opaque_token_tenant(REFRESH_PREFIX, token)
    await set_scope(session, DbScope(tenant_id=tenant_id))
    digest, now = token_digest(token), utcnow()
    # One atomic claim: of two concurrent refreshes with one token, one wins.
    row = (
        await session.execute(
            update(RefreshToken)
            .where(
                col(RefreshToken.tenant_id) == tenant_id,
                col(RefreshToken.token_hash) == digest,
                col(RefreshToken.used_at).is_(None),
                col(RefreshToken.revoked_at).is_(None),
                col(RefreshToken.expires_at) > now,
            )
            .values(used_at=now)
            .returning(RefreshToken)
        )
    ).scalar_one_or_none()
    if row is None:
        spent = (
            await session.execute(
                select(RefreshToken).where(
                    col(RefreshToken.tenant_id) == tenant_id, col(RefreshToken.token_hash) == digest
                )
            )
        ).scalar_one_or_none()
        if spent is not None and spent.used_at is not None:
            async with db.admin_transaction() as admin:
                await admin.execute(
                    update(RefreshToken)
                    .where(
                        col(RefreshToken.tenant_id) == tenant_id,
                        col(RefreshToken.family_id) == spent.family_id,
                    )
                    .values(revoked_at=now)
                )
            raise ReplayedRefreshToken(
                "The refresh token was already used; every session of that login is revoked."
            )
        raise InvalidToken("The refresh token is unknown, revoked or expired.")
    tenant = (
        await session.execute(select(Tenant).where(col(Tenant.id) == tenant_id))
    ).scalar_one_or_none()
    user = (
        await session.execute(
            select(User).where(col(User.tenant_id) == tenant_id, col(User.id) == row.user_id)
        )
    ).scalar_one_or_none()
    if tenant is None or tenant.status != "active" or user is None or user.status != "active":
        raise InvalidToken("The account or tenant is not active.")
    return await _issue_pair(session, keys, issuer, user, family=row.family_id)


class ReplayedRefreshToken(InvalidToken):
    code = "refresh_token_reused"
    title = "Refresh token reused"


async def logout(session: AsyncSession, token: str) -> None:
    from service.core.db import DbScope, set_scope

    tenant_id = opaque_token_tenant(REFRESH_PREFIX, token)
    await set_scope(session, DbScope(tenant_id=tenant_id))
    row = (
        await session.execute(
            select(RefreshToken).where(
                col(RefreshToken.tenant_id) == tenant_id,
                col(RefreshToken.token_hash) == token_digest(token),
            )
        )
    ).scalar_one_or_none()
    if row is not None:
        await session.execute(
            update(RefreshToken)
            .where(
                col(RefreshToken.tenant_id) == tenant_id,
                col(RefreshToken.family_id) == row.family_id,
            )
            .values(revoked_at=utcnow())
        )


# --- users ---------------------------------------------------------------------


async def _check_binding(
    session: AsyncSession, ctx: TenantContext, role: str, client_id: uuid.UUID | None
) -> None:
    if (role == "client_viewer") != (client_id is not None):
        raise InvalidRoleBinding(
            "A client viewer needs a client_id; other roles must not have one.", field="client_id"
        )
    if client_id is not None:
        found = (
            await session.execute(scoped(Client, ctx).where(col(Client.id) == client_id))
        ).scalar_one_or_none()
        if found is None:
            raise InvalidRoleBinding("No such client.", field="client_id")


async def list_users(session: AsyncSession, ctx: TenantContext) -> list[User]:
    return list((await session.execute(scoped(User, ctx).order_by(col(User.created_at)))).scalars())


async def get_user(session: AsyncSession, ctx: TenantContext, user_id: uuid.UUID) -> User:
    user = (
        await session.execute(scoped(User, ctx).where(col(User.id) == user_id))
    ).scalar_one_or_none()
    return ensure_visible(user, "user")


async def update_user(
    session: AsyncSession, ctx: TenantContext, user_id: uuid.UUID, data: schemas.UserUpdate
) -> User:
    user = await get_user(session, ctx, user_id)
    changes = data.model_dump(exclude_unset=True)
    role = changes.get("role", user.role)
    client_id = (
        changes.get("client_id", user.client_id)
        if "client_id" in changes or role == "client_viewer"
        else None
    )
    if "role" in changes or "client_id" in changes:
        await _check_binding(session, ctx, role, client_id)
        user.role, user.client_id = role, client_id
    if changes.get("display_name") is not None:
        user.display_name = changes["display_name"]
    if changes.get("status") is not None:
        user.status = changes["status"]
    await session.flush()
    return user


# --- invitations and password resets --------------------------------------------------


async def create_invitation(
    session: AsyncSession, ctx: TenantContext, data: schemas.InvitationCreate
) -> tuple[Invitation, str]:
    await _check_binding(session, ctx, data.role, data.client_id)
    email = str(data.email).lower()
    exists = (
        await session.execute(scoped(User, ctx).where(func.lower(col(User.email)) == email))
    ).first()
    if exists is not None:
        raise EmailTaken("A user with this e-mail exists in this tenant.", field="email")
    token = new_opaque_token("cpi", ctx.tenant_id)
    invitation = Invitation(
        tenant_id=ctx.tenant_id,
        email=email,
        role=data.role,
        client_id=data.client_id,
        token_hash=token_digest(token),
        expires_at=utcnow() + timedelta(hours=data.expires_in_hours),
        created_by=ctx.actor_id,
    )
    session.add(invitation)
    await session.flush()
    return invitation, token


async def list_invitations(session: AsyncSession, ctx: TenantContext) -> list[Invitation]:
    return list(
        (
            await session.execute(scoped(Invitation, ctx).order_by(col(Invitation.created_at)))
        ).scalars()
    )


async def revoke_invitation(
    session: AsyncSession, ctx: TenantContext, invitation_id: uuid.UUID
) -> None:
    invitation = ensure_visible(
        (
            await session.execute(
                scoped(Invitation, ctx).where(col(Invitation.id) == invitation_id)
            )
        ).scalar_one_or_none(),
        "invitation",
    )
    invitation.revoked_at = invitation.revoked_at or utcnow()
    await session.flush()


async def accept_invitation(session: AsyncSession, data: schemas.InvitationAccept) -> User:
    from service.core.db import DbScope, set_scope

    try:
        tenant_id = opaque_token_tenant("cpi", data.token)
    except InvalidToken as exc:
        raise LinkExpired("This invitation link is not valid.") from exc
    await set_scope(session, DbScope(tenant_id=tenant_id))
    invitation = (
        await session.execute(
            select(Invitation)
            .where(
                col(Invitation.tenant_id) == tenant_id,
                col(Invitation.token_hash) == token_digest(data.token),
            )
            .with_for_update()
        )
    ).scalar_one_or_none()
    if (
        invitation is None
        or invitation.accepted_at
        or invitation.revoked_at
        or invitation.expires_at <= utcnow()
    ):
        raise LinkExpired("This invitation link is not valid any more.")
    exists = (
        await session.execute(
            select(col(User.id)).where(
                col(User.tenant_id) == tenant_id, func.lower(col(User.email)) == invitation.email
            )
        )
    ).first()
    if exists is not None:
        raise EmailTaken("A user with this e-mail exists in this tenant.", field="email")
    user = User(
        tenant_id=tenant_id,
        email=invitation.email,
        display_name=data.display_name,
        role=invitation.role,
        client_id=invitation.client_id,
        password_hash=await hash_password(data.password),
    )
    session.add(user)
    invitation.accepted_at = utcnow()
    await session.flush()
    return user


async def request_password_reset(
    admin: AsyncSession, session: AsyncSession, data: schemas.PasswordResetRequest
) -> tuple[User, str] | None:
    """A reset token for the account, or None — the caller answers the same either way."""
    from service.core.db import DbScope, set_scope

    tenant = (
        await admin.execute(
            select(Tenant).where(col(Tenant.slug) == data.tenant, col(Tenant.status) == "active")
        )
    ).scalar_one_or_none()
    if tenant is None:
        return None
    await set_scope(session, DbScope(tenant_id=tenant.id))
    user = (
        await session.execute(
            select(User).where(
                col(User.tenant_id) == tenant.id,
                func.lower(col(User.email)) == str(data.email).lower(),
                col(User.status) == "active",
            )
        )
    ).scalar_one_or_none()
    if user is None:
        return None
    token = new_opaque_token("cpw", tenant.id)
    session.add(
        PasswordReset(
            tenant_id=tenant.id,
            user_id=user.id,
            token_hash=token_digest(token),
            expires_at=utcnow() + timedelta(hours=1),
        )
    )
    await session.flush()
    return user, token


async def confirm_password_reset(session: AsyncSession, data: schemas.PasswordResetConfirm) -> None:
    from service.core.db import DbScope, set_scope

    try:
        tenant_id = opaque_token_tenant("cpw", data.token)
    except InvalidToken as exc:
        raise LinkExpired("This reset link is not valid.") from exc
    await set_scope(session, DbScope(tenant_id=tenant_id))
    reset = (
        await session.execute(
            select(PasswordReset)
            .where(
                col(PasswordReset.tenant_id) == tenant_id,
                col(PasswordReset.token_hash) == token_digest(data.token),
            )
            .with_for_update()
        )
    ).scalar_one_or_none()
    if reset is None or reset.used_at is not None or reset.expires_at <= utcnow():
        raise LinkExpired("This reset link is not valid any more.")
    reset.used_at = utcnow()
    user = (
        await session.execute(
            select(User).where(col(User.tenant_id) == tenant_id, col(User.id) == reset.user_id)
        )
    ).scalar_one()
    user.password_hash = await hash_password(data.password)
    # A new password ends every session opened with the old one.
    await session.execute(
        update(RefreshToken)
        .where(
            col(RefreshToken.tenant_id) == tenant_id,
            col(RefreshToken.user_id) == user.id,
            col(RefreshToken.revoked_at).is_(None),
        )
        .values(revoked_at=utcnow())
    )
    await session.flush()


# --- API tokens ------------------------------------------------------------------


async def create_api_token(
    session: AsyncSession, ctx: TenantContext, data: schemas.ApiTokenCreate
) -> tuple[ApiToken, str]:
    unknown = sorted(set(data.scopes) - API_TOKEN_SCOPES)
    if unknown:
        raise InvalidScope(
            f"Scopes not grantable to an API token: {', '.join(unknown)}.",
            field="scopes",
            allowed=sorted(API_TOKEN_SCOPES),
        )
    if data.expires_at is not None and (
        data.expires_at.tzinfo is None or data.expires_at <= utcnow()
    ):
        raise InvalidScope(
            "expires_at must be an aware timestamp in the future.", field="expires_at"
        )
    token = new_opaque_token(API_TOKEN_PREFIX, ctx.tenant_id)
    row = ApiToken(
        tenant_id=ctx.tenant_id,
        name=data.name,
        token_hash=token_digest(token),
        scopes=sorted(set(data.scopes)),
        expires_at=data.expires_at,
        created_by=ctx.actor_id,
    )
    session.add(row)
    await session.flush()
    return row, token


async def list_api_tokens(session: AsyncSession, ctx: TenantContext) -> list[ApiToken]:
    return list(
        (await session.execute(scoped(ApiToken, ctx).order_by(col(ApiToken.created_at)))).scalars()
    )


async def revoke_api_token(session: AsyncSession, ctx: TenantContext, token_id: uuid.UUID) -> None:
    row = (
        await session.execute(scoped(ApiToken, ctx).where(col(ApiToken.id) == token_id))
    ).scalar_one_or_none()
    if row is None:
        raise NotFound("No such API token.")
    row.revoked_at = row.revoked_at or utcnow()
    await session.flush()
