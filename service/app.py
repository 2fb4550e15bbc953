"""The composition root of the API: `create_app()` is the only place that
mounts every router and middleware."""

from __future__ import annotations

import gc
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI

from service.agents import router as agents
from service.clients import router as clients
from service.contacts import router as contacts
from service.contracts import router as contracts
from service.core import metrics
from service.core.answers import CachedAnswer, CachedAnswerMiddleware
from service.core.changes import ChangeFeed, TenantCache
from service.core.config import ApiSettings, Settings, get_settings
from service.core.db import Database
from service.core.errors import install_error_handlers
from service.core.logging import configure_logging
from service.core.middleware import BodyLimitMiddleware, RequestContextMiddleware, RouteTemplates
from service.core.redis import create_redis
from service.health.router import router as health_router
from service.kpis import router as kpis
from service.operations import router as operations
from service.projects import router as projects
from service.shifts import router as shifts
from tenants.context import TenantContext
from tenants.deps import known_caller
from tenants.keys import open_key_store
from tenants.oidc import idp_router, oidc_router
from tenants.router import auth_router, platform_router, tenant_router, wellknown_router
from tenants.security import configure_password_hashing

API_PREFIX = "/api/v1"
# GET routes whose answers `CachedAnswerMiddleware` may serve before routing.
CACHEABLE = re.compile(rf"^{API_PREFIX}/(?:(?:projects|clients)/[^/]+|tenant)/kpis$")


def body_limit_for(api: ApiSettings) -> Any:
    """Route classes and their body limits: uploads stream, batches are big, the rest small."""

    def limit_for(path: str) -> int:
        if path.endswith("/uploads") or "/uploads/" in path:
            return api.max_upload_bytes
        if path.endswith(":batch"):
            return api.max_batch_bytes
        return api.max_body_bytes

    return limit_for


def api_router() -> APIRouter:
    router = APIRouter(prefix=API_PREFIX)
    # First the hot reads: this FastAPI matches included routers in order, twice
    # per level (measured: a third of a cached KPI answer's time when they came last).
    router.include_router(kpis.router)
    router.include_router(platform_router)
    router.include_router(auth_router)
    router.include_router(tenant_router)
    router.include_router(idp_router)
    router.include_router(oidc_router)
    for domain in (clients, projects, contracts, agents, shifts, contacts, operations):
        router.include_router(domain.router)
    return router


def create_app(
    settings: Settings | None = None,
    *,
    db: Database | None = None,
    redis: Any | None = None,
) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_db = db is None
        own_redis = redis is None
        app.state.db = db or Database(settings.database)
        app.state.redis = redis or await create_redis(settings.redis)
        app.state.keys = await open_key_store(
            app.state.db, settings.auth.secret_key.get_secret_value()
        )
        changes = ChangeFeed(
            settings.database.app_dsn(), connect_timeout_s=settings.database.connect_timeout_s
        )
        await changes.start()
        app.state.db.change_listeners.append(changes.changed)
        app.state.changes = changes
        app.state.callers = TenantCache[TenantContext](changes, max_entries=50_000, ttl_s=300)
        app.state.kpi_answers = TenantCache[CachedAnswer](
            changes,
            max_entries=100_000,
            max_size=settings.api.kpi_cache_mb << 20,
            ttl_s=3600,
        )
        if settings.api.gc_freeze:
            # Everything start-up made lives as long as the process: keep it out of
            # the collector's full passes, which otherwise stall every request.
            gc.collect()
            gc.freeze()
        metrics.watch("changes", changes)
        metrics.watch("callers", app.state.callers)
        metrics.watch("kpi_answers", app.state.kpi_answers)
        try:
            yield
        finally:
            app.state.db.change_listeners.remove(changes.changed)
            await changes.stop()
            if own_redis:
                await app.state.redis.aclose()
            if own_db:
                await app.state.db.dispose()

    configure_logging(settings.log.level, settings.log.format)
    configure_password_hashing(settings.auth)
    app = FastAPI(
        title="callpact",
        version="0.1.0",
        summary="Contracts, SLAs, staffing and client reports for outsourced contact centers.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    # Innermost: KPI answers the process holds go out before routing (see answers.py).
    app.add_middleware(CachedAnswerMiddleware, cacheable=CACHEABLE, caller=known_caller)
    app.add_middleware(BodyLimitMiddleware, limit_for=body_limit_for(settings.api))
    templates = RouteTemplates(
        lambda: [*app.openapi()["paths"], "/docs", "/openapi.json", "/redoc"]
    )
    app.add_middleware(
        RequestContextMiddleware, templates=templates
    )  # outermost: ids and logs every response
    app.include_router(health_router)
    app.include_router(wellknown_router)
    app.include_router(api_router())
    return app
