"""Redis: one arq pool per process, used both to enqueue jobs and as a plain
async Redis client. Jobs are serialized as JSON, never pickle: a job's
arguments are ids and primitives."""

from __future__ import annotations

import json
from typing import Any

from arq.connections import ArqRedis
from arq.connections import RedisSettings as ArqRedisSettings
from redis.asyncio import ConnectionPool

from service.core.config import RedisSettings


def serialize_job(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode()


def deserialize_job(data: bytes) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(data)
    return result


def arq_settings(settings: RedisSettings) -> ArqRedisSettings:
    if settings.url is None:
        raise RuntimeError("REDIS_URL is unset and no embedded Redis was started")
    conf = ArqRedisSettings.from_dsn(settings.url)
    conf.conn_timeout = max(1, int(settings.socket_timeout_s))
    conf.conn_retries = 1
    return conf


async def create_redis(settings: RedisSettings) -> ArqRedis:
    """A lazily connecting client: the API starts (and `/readyz` says why it is
    not ready) even while Redis is down. Socket timeouts keep a hung Redis from
    hanging a request."""
    if settings.url is None:
        raise RuntimeError("REDIS_URL is unset and no embedded Redis was started")
    pool = ConnectionPool.from_url(
        settings.url,
        socket_timeout=settings.socket_timeout_s,
        socket_connect_timeout=settings.socket_timeout_s,
    )
    client = ArqRedis(pool, job_serializer=serialize_job, job_deserializer=deserialize_job)
    client.auto_close_connection_pool = True  # aclose() closes the pool we made
    return client
