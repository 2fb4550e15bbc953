"""Fixtures of the shifts tests: a tenant floor with two clients and a
project each, and a helper to book through the API."""

from __future__ import annotations

import pytest_asyncio
from httpx import AsyncClient

from service.core.config import Settings
from service.core.db import Database
from tests.service.agents.factories import Floor, make_floor


@pytest_asyncio.fixture
async def floor(client: AsyncClient, settings: Settings, db: Database) -> Floor:
    return await make_floor(client, settings, db)
