from __future__ import annotations

import pytest
from httpx import ASGITransport, AsyncClient

from service.app import create_app
from service.core.config import RedisSettings, Settings
from service.core.db import Database
from service.core.migrate import head_revision
from service.core.redis import create_redis


async def test_healthz(client: AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_when_everything_answers(client: AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": "ok", "redis": "ok"}


async def test_readyz_is_503_when_redis_is_down(settings: Settings, db: Database) -> None:
    dead = settings.model_copy(
        update={"redis": RedisSettings(url="redis://127.0.0.1:1/0", socket_timeout_s=0.5)}
    )
    redis = await create_redis(dead.redis)
    app = create_app(dead, db=db, redis=redis)
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http,
    ):
        response = await http.get("/readyz")
    await redis.aclose()
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "not_ready"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"] != "ok"


async def test_readyz_is_503_when_schema_is_behind_the_code(
    client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The code ships a migration the database has not had yet.
    monkeypatch.setattr("service.health.router.head_revision", lambda: "9999_future")
    response = await client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert "callpact migrate upgrade" in body["checks"]["database"]
    assert head_revision() in body["checks"]["database"]


async def test_metrics_count_requests_by_route_template(client: AsyncClient) -> None:
    await client.get("/healthz")
    await client.get("/api/v1/does-not-exist")
    text = (await client.get("/metrics")).text
    assert 'callpact_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'route="<unmatched>",status="404"' in text
    assert "callpact_http_request_duration_seconds_bucket" in text


async def test_metrics_use_the_route_template_not_the_path(client: AsyncClient) -> None:
    # Ids in paths would make one time series per object; the template keeps one per route.
    await client.get("/api/v1/users/0192f000-0000-7000-8000-000000000000")
    text = (await client.get("/metrics")).text
    assert 'route="/api/v1/users/{user_id}",status="401"' in text
    assert "0192f000-0000-7000-8000-000000000000" not in text
