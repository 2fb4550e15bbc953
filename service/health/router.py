"""Operations endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from sqlalchemy import text

from service.core.config import Settings
from service.core.errors import NotFound, Unauthorized, problem
from service.core.metrics import JOB_COUNTS_KEY, REGISTRY
from service.core.migrate import head_revision

router = APIRouter(tags=["operations"])

_CHECK_TIMEOUT_S = 3.0


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    """The process is alive and serving; checks nothing else."""
    return {"status": "ok"}


async def _check_database(request: Request) -> str | None:
    async with request.app.state.db.engine.connect() as conn:
        revision = (await conn.execute(text("select version_num from alembic_version"))).scalar()
    head = head_revision()
    if revision != head:
        return f"database schema at {revision}, code expects {head}: run `callpact migrate upgrade`"
    return None


async def _check_redis(request: Request) -> str | None:
    await request.app.state.redis.ping()
    return None


@router.get(
    "/readyz",
    summary="Readiness",
    responses={503: {"description": "Not ready", "content": {"application/problem+json": {}}}},
)
async def readyz(request: Request) -> Response:
    """Ready when PostgreSQL and Redis answer and the schema is at the migrations' head."""
    checks: dict[str, Any] = {}
    for name, check in (("database", _check_database), ("redis", _check_redis)):
        try:
            failure = await asyncio.wait_for(check(request), _CHECK_TIMEOUT_S)
        except Exception as exc:  # a readiness probe reports every failure, whatever it is
            failure = f"{type(exc).__name__}: unreachable"
        checks[name] = failure or "ok"
    if all(v == "ok" for v in checks.values()):
        return JSONResponse({"status": "ready", "checks": checks})
    failing = ", ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok")
    return problem(503, "not_ready", "Not ready", failing, {"checks": checks})


class MetricsTokenInvalid(Unauthorized):
    code = "metrics_token_invalid"
    title = "Metrics token missing or wrong"


def _from_loopback(request: Request) -> bool:
    host = request.client.host if request.client is not None else None
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _metrics_allowed(request: Request) -> None:
    """Metrics tell an outsider the routes, traffic and tenants' activity: with METRICS_TOKEN
    set they need it as a bearer token; without, only a loopback peer (a sidecar, `curl` on
    the host) gets them and everyone else a 404, as if there were no such route."""
    settings: Settings = request.app.state.settings
    expected = settings.metrics.bearer
    if expected is None:
        if not _from_loopback(request):
            raise NotFound("Not found.")
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), expected.encode()
    ):
        raise MetricsTokenInvalid("GET /metrics needs the METRICS_TOKEN as a bearer token.")


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    dependencies=[Depends(_metrics_allowed)],
    responses={
        401: {"description": "Token missing or wrong", "content": {"application/problem+json": {}}},
        404: {"description": "No token set and not from loopback"},
    },
)
async def metrics(request: Request) -> Response:
    """Request counts and latencies by route template; job counts by name and outcome.
    Needs `Authorization: Bearer <METRICS_TOKEN>`; with no token configured, served to
    loopback only."""
    body = generate_latest(REGISTRY)
    try:
        counts = await asyncio.wait_for(request.app.state.redis.hgetall(JOB_COUNTS_KEY), 1.0)
    except Exception:  # metrics must render even when Redis is down
        counts = {}
    jobs = CollectorRegistry()
    counter = Counter(
        "callpact_jobs",
        "Jobs run by the worker, by name and outcome.",
        ["job", "outcome"],
        registry=jobs,
    )
    for key, value in counts.items():
        job, _, outcome = (key.decode() if isinstance(key, bytes) else key).partition("|")
        counter.labels(job, outcome).inc(int(value))
    return Response(body + generate_latest(jobs), media_type=CONTENT_TYPE_LATEST)
