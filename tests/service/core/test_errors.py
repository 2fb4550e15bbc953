"""Every error path answers application/problem+json with a stable code."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import APIRouter, FastAPI
from httpx import AsyncClient
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text

from service.core.db import SessionDep
from service.core.errors import PROBLEM_JSON, Conflict

probe = APIRouter(prefix="/api/v1/_probe")


class Thing(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    size: int = Field(ge=0)


@probe.post("/things", status_code=201)
async def make_thing(thing: Thing) -> Thing:
    return thing


@probe.post("/conflict")
async def conflict() -> None:
    raise Conflict("that name is taken", field="name")


@probe.get("/boom")
async def boom() -> None:
    raise RuntimeError("secret internals: password=hunter2")


@probe.get("/slow")
async def slow(session: SessionDep) -> None:
    await session.execute(text("set local statement_timeout = 50"))
    await session.execute(text("select pg_sleep(2)"))


@probe.post("/things:batch")
async def batch(body: list[Thing]) -> dict[str, int]:
    return {"count": len(body)}


@pytest.fixture
def app(app: FastAPI) -> FastAPI:
    app.include_router(probe)
    return app


def assert_problem(response, status: int, code: str) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"].endswith(code.replace("_", "-"))
    assert body["title"]
    assert body["detail"]
    return body


async def test_unknown_route_is_404_problem(client: AsyncClient) -> None:
    assert_problem(await client.get("/api/v1/nothing-here"), 404, "not_found")


async def test_wrong_method_is_405_problem(client: AsyncClient) -> None:
    assert_problem(await client.delete("/healthz"), 405, "method_not_allowed")


async def test_validation_error_names_every_field(client: AsyncClient) -> None:
    body = assert_problem(
        await client.post("/api/v1/_probe/things", json={"name": "", "size": -1, "tenant_id": "x"}),
        422,
        "validation_failed",
    )
    fields = {e["field"] for e in body["errors"]}
    assert fields == {"name", "size", "tenant_id"}
    assert all(e["in"] == "body" for e in body["errors"])


async def test_malformed_json_is_422_problem(client: AsyncClient) -> None:
    response = await client.post(
        "/api/v1/_probe/things", content=b'{"name": ', headers={"content-type": "application/json"}
    )
    assert_problem(response, 422, "validation_failed")


async def test_app_error_carries_code_and_extra(client: AsyncClient) -> None:
    body = assert_problem(await client.post("/api/v1/_probe/conflict"), 409, "conflict")
    assert body["field"] == "name"


async def test_unexpected_error_is_500_without_internals(client: AsyncClient) -> None:
    response = await client.get("/api/v1/_probe/boom")
    body = assert_problem(response, 500, "internal_error")
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text
    assert "Traceback" not in response.text
    assert response.headers["x-request-id"]
    assert body["detail"]


async def test_statement_timeout_is_503_problem(client: AsyncClient) -> None:
    response = await client.get("/api/v1/_probe/slow")
    assert_problem(response, 503, "database_timeout")
    assert "pg_sleep" not in response.text
    assert "canceling" not in response.text


async def test_body_over_limit_by_content_length_is_413(client: AsyncClient, app: FastAPI) -> None:
    limit = app.state.settings.api.max_body_bytes
    response = await client.post(
        "/api/v1/_probe/things",
        content=b"x" * (limit + 1),
        headers={"content-type": "application/json"},
    )
    body = assert_problem(response, 413, "payload_too_large")
    assert body["limit_bytes"] == limit


async def test_chunked_body_over_limit_is_413(client: AsyncClient, app: FastAPI) -> None:
    limit = app.state.settings.api.max_body_bytes

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    response = await client.post(
        "/api/v1/_probe/things", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "payload_too_large")


async def test_batch_routes_have_their_own_larger_limit(client: AsyncClient, app: FastAPI) -> None:
    limit = app.state.settings.api.max_body_bytes
    items = [{"name": "n" * 100, "size": 1}] * (limit // 100)
    response = await client.post("/api/v1/_probe/things:batch", json=items)
    assert response.status_code == 200, response.text
    assert response.json() == {"count": len(items)}


async def test_request_id_is_echoed_or_generated(client: AsyncClient) -> None:
    echoed = await client.get("/healthz", headers={"x-request-id": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = await client.get("/healthz", headers={"x-request-id": "bad id with spaces"})
    assert generated.headers["x-request-id"] not in ("", "bad id with spaces")
    assert len(generated.headers["x-request-id"]) == 32
