"""The audit log: every write and every authorization denial.

Writes are recorded by one mechanism rather than by each service: a
`before_flush` listener adds an `AuditEntry` for every inserted, updated or
deleted tenant-owned row in the same flush — so in the same transaction as
the write, and rolled back with it. The actor comes from the session's
`TenantContext` (or the platform admin). Models opt out with
`__audit__ = False` (the log itself, rotating refresh tokens); secrets are
never copied into the summary.

Denials happen in a request that is about to fail and roll back, so they are
written in a transaction of their own.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import structlog
from fastapi import Request
from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, UOWTransaction

from service.core.db import Database
from tenants.context import TenantContext
from tenants.models import AuditEntry

CONTEXT_KEY = "callpact.ctx"
ACTOR_KEY = "callpact.actor"  # (actor_type, actor_id) when there is no TenantContext
_SECRET_FIELDS = ("password", "secret", "token", "hash", "private", "logo")


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, uuid.UUID | datetime | date | Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def _summary(obj: Any, *, changed_only: bool) -> dict[str, Any]:
    state = inspect(obj)
    out: dict[str, Any] = {}
    for attr in state.mapper.column_attrs:
        name = attr.key
        if name in ("tenant_id",) or any(s in name for s in _SECRET_FIELDS):
            if (
                any(s in name for s in _SECRET_FIELDS)
                and state.attrs[name].history.has_changes()
                and getattr(obj, name) is not None
            ):
                out[name] = "changed"
            continue
        hist = state.attrs[name].history
        if changed_only and not hist.has_changes():
            continue
        out[name] = _plain(getattr(obj, name))
    return out


def _deleted_summary(obj: Any) -> dict[str, Any]:
    """What a deleted row held, from the values already loaded (no query in a flush)."""
    state = inspect(obj)
    loaded = state.dict
    return {
        attr.key: _plain(loaded[attr.key])
        for attr in state.mapper.column_attrs
        if attr.key in loaded
        and attr.key != "tenant_id"
        and not any(s in attr.key for s in _SECRET_FIELDS)
    }


def _object_id(obj: Any) -> str | None:
    value = getattr(obj, "id", None) or getattr(obj, "kid", None)
    return str(value) if value is not None else None


def _actor(session: Session) -> tuple[str, uuid.UUID | None, uuid.UUID | None]:
    ctx: TenantContext | None = session.info.get(CONTEXT_KEY)
    if ctx is not None:
        return ctx.actor_type, ctx.actor_id, ctx.tenant_id
    actor_type, actor_id = session.info.get(ACTOR_KEY, ("system", None))
    return actor_type, actor_id, None


@event.listens_for(Session, "before_flush")
def _audit_writes(session: Session, flush_context: UOWTransaction, instances: Any) -> None:
    actor_type, actor_id, _ = _actor(session)
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    entries = []
    for verb, objects in (
        ("create", session.new),
        ("update", session.dirty),
        ("delete", session.deleted),
    ):
        for obj in list(objects):
            if isinstance(obj, AuditEntry) or not getattr(type(obj), "__audit__", True):
                continue
            tenant_id = getattr(obj, "tenant_id", None)
            if tenant_id is None and type(obj).__tablename__ == "tenants":
                tenant_id = getattr(obj, "id", None)
            if tenant_id is None:
                continue
            if verb == "update" and not session.is_modified(obj, include_collections=False):
                continue
            entries.append(
                AuditEntry(
                    tenant_id=tenant_id,
                    actor_type=actor_type,
                    actor_id=actor_id,
                    action=f"{type(obj).__tablename__}.{verb}",
                    object_type=type(obj).__tablename__,
                    object_id=_object_id(obj),
                    request_id=request_id,
                    summary=_summary(obj, changed_only=verb == "update")
                    if verb != "delete"
                    else _deleted_summary(obj),
                )
            )
    for entry in entries:
        session.add(entry)


def set_actor(session: Any, ctx: TenantContext) -> None:
    session.info[CONTEXT_KEY] = ctx


async def record_event(
    session: Any, ctx: TenantContext, action: str, object_type: str, object_id: Any, **summary: Any
) -> None:
    """An audited event that is not a row write (login, logout, token use)."""
    session.add(
        AuditEntry(
            tenant_id=ctx.tenant_id,
            actor_type=ctx.actor_type,
            actor_id=ctx.actor_id,
            action=action,
            object_type=object_type,
            object_id=str(object_id) if object_id is not None else None,
            request_id=structlog.contextvars.get_contextvars().get("request_id"),
            summary=_plain(summary),
        )
    )


async def record_denial(request: Request, ctx: TenantContext, permission: str) -> None:
    db: Database = request.app.state.db
    route = request.scope.get("route")
    # The request is about to fail and roll back: the denial gets its own transaction.
    async with db.admin_transaction() as session:
        session.add(
            AuditEntry(
                tenant_id=ctx.tenant_id,
                actor_type=ctx.actor_type,
                actor_id=ctx.actor_id,
                action="authorization.denied",
                object_type="route",
                object_id=f"{request.method} {getattr(route, 'path', request.url.path)}",
                outcome="denied",
                request_id=structlog.contextvars.get_contextvars().get("request_id"),
                summary={"permission": permission, "path": request.url.path},
            )
        )
