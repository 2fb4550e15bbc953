"""Time helpers: aware datetimes only, UUIDv7 ids."""

from __future__ import annotations

import os
import time
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


def id_prefix() -> str:
    """The first 26 hex digits of the ids of one batch of rows made in SQL (UUIDv7,
    RFC 9562): the Unix time in ms, the version, 50 random bits with the variant.
    Each row's ordinal in the batch fills the last 6 digits (a counter in
    `rand_b`, RFC 9562 6.2): `BATCH_ID_SQL`. Ids made set-wise without a random
    draw per row (`gen_random_uuid()` reads the kernel's random source each time:
    ~2.4 s per million rows here)."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(8), "big")
    rand_a = rand >> 52  # 12 bits
    rand_b = (rand >> 14) & ((1 << 38) - 1)  # 38 bits, then the 24-bit counter
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | (rand_b << 24)
    return f"{value:032x}"[:26]


MAX_BATCH_IDS: Final = 1 << 24
"""Rows one `id_prefix` can number (6 hex digits)."""
BATCH_ID_SQL: Final = "cast(cast({prefix} as text) || lpad(to_hex({seq}), 6, '0') as uuid)"
"""The id of the row numbered `seq` (0 <= seq < MAX_BATCH_IDS) of a batch with `prefix`."""
