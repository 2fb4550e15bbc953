"""Time helpers: aware datetimes only, UUIDv7 ids."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Final

import uuid6

MIN_YEAR: Final = 1900
MAX_YEAR: Final = 2999
"""The years a time the API accepts may fall in (shifts, query windows, contacts).
Python's datetime ends at 0001 and 9999: a time near either end overflows when it is
moved to UTC, to a local zone or to the start of its week or quarter. Contact-center
data outside these years is a typo or a corrupt feed, never a real contact."""


def supported_year(value: date, name: str) -> None:
    """Raise ValueError naming `name` unless `value` (a date or datetime) falls in the
    supported years (a datetime's own year, before any conversion)."""
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"{name}: {value.isoformat()} is outside the years {MIN_YEAR}-{MAX_YEAR}")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    """A UUIDv7: time-ordered, so B-tree inserts stay local; never a serial in a URL."""
    return uuid.UUID(bytes=uuid6.uuid7().bytes)
