from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from pydantic import SecretStr

from service.app import create_app
from service.core.config import MetricsSettings, RedisSettings, Settings
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


METRICS_TOKEN = "metrics-token-for-the-scraper-only-0123456789"


@pytest_asyncio.fixture
async def local(app: FastAPI) -> AsyncIterator[AsyncClient]:
    """A client connecting from loopback, as `curl` on the host or a sidecar would."""
    transport = ASGITransport(app=app, raise_app_exceptions=False, client=("127.0.0.1", 40001))
    async with AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def _scrape(
    settings: Settings, db: Database, redis: object, peer: str, headers: dict[str, str]
) -> Response:
    """GET /metrics of an app whose METRICS_TOKEN is set, from `peer`."""
    configured = settings.model_copy(
        update={"metrics": MetricsSettings(token=SecretStr(METRICS_TOKEN))}
    )
    app = create_app(configured, db=db, redis=redis)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, raise_app_exceptions=False, client=(peer, 40002))
        async with AsyncClient(transport=transport, base_url="http://test") as http:
            return await http.get("/metrics", headers=headers)


def _is_prometheus_text(response: Response) -> bool:
    return (
        response.status_code == 200
        and response.headers["content-type"].startswith("text/plain; version=")
        and "# TYPE callpact_http_requests_total counter" in response.text
    )


async def test_metrics_count_requests_by_route_template(
    client: AsyncClient, local: AsyncClient
) -> None:
    await client.get("/healthz")
    await client.get("/api/v1/does-not-exist")
    text = (await local.get("/metrics")).text
    assert 'callpact_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'route="<unmatched>",status="404"' in text
    assert "callpact_http_request_duration_seconds_bucket" in text


async def test_metrics_use_the_route_template_not_the_path(
    client: AsyncClient, local: AsyncClient
) -> None:
    # Ids in paths would make one time series per object; the template keeps one per route.
    await client.get("/api/v1/users/0192f000-0000-7000-8000-000000000000")
    text = (await local.get("/metrics")).text
    assert 'route="/api/v1/users/{user_id}",status="401"' in text
    assert "0192f000-0000-7000-8000-000000000000" not in text


async def test_without_a_token_metrics_are_served_to_loopback_only(
    client: AsyncClient, local: AsyncClient
) -> None:
    outside = await client.get("/metrics")  # the test client calls from 10.x.y.z
    assert outside.status_code == 404
    assert outside.headers["content-type"].startswith("application/problem+json")
    assert outside.json()["code"] == "not_found"
    assert "callpact_" not in outside.text
    assert _is_prometheus_text(await local.get("/metrics"))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {METRICS_TOKEN}x"},
        {"Authorization": f"Basic {METRICS_TOKEN}"},
        {"Authorization": METRICS_TOKEN},
    ],
    ids=["none", "wrong", "longer", "basic", "no-scheme"],
)
@pytest.mark.parametrize("peer", ["10.9.8.7", "127.0.0.1"])
async def test_with_a_token_metrics_need_it_from_everywhere(
    settings: Settings, db: Database, redis: object, peer: str, headers: dict[str, str]
) -> None:
    refused = await _scrape(settings, db, redis, peer, headers)
    assert refused.status_code == 401
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.headers["www-authenticate"] == "Bearer"
    assert refused.json()["code"] == "metrics_token_invalid"
    assert "callpact_" not in refused.text


async def test_with_the_token_metrics_are_served(
    settings: Settings, db: Database, redis: object
) -> None:
    headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    assert _is_prometheus_text(await _scrape(settings, db, redis, "10.9.8.7", headers))
