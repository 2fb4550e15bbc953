"""Time helpers: aware datetimes only, UUIDv7 ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import uuid6


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    """A UUIDv7: time-ordered, so B-tree inserts stay local; never a serial in a URL."""
    return uuid.UUID(bytes=uuid6.uuid7().bytes)
