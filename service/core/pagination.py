"""Cursor pagination with sorting: keyset on (sort column, id), so pages stay
stable while rows are added and never need OFFSET scans.

A cursor is opaque to clients (base64 of the last row's sort value and id);
a tampered cursor is a 422 naming the `cursor` parameter.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, date, datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import Select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from service.core.errors import InvalidInput

T = TypeVar("T")
MAX_LIMIT = 500
DEFAULT_LIMIT = 50


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class BadCursor(InvalidInput):
    code = "invalid_cursor"
    title = "Invalid cursor"


def _encode(value: Any, id_: Any) -> str:
    raw = json.dumps(
        [
            value.isoformat()
            if isinstance(value, datetime | date)
            else str(value)
            if isinstance(value, uuid.UUID)
            else value,
            str(id_),
        ]
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(cursor: str, column: ColumnElement[Any]) -> tuple[Any, uuid.UUID]:
    try:
        value, id_ = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        python_type = column.type.python_type
        if value is not None and python_type is datetime:
            value = datetime.fromisoformat(value)
            # Issued cursors carry an aware time; one at the edge of Python's years
            # (0001-01-01T00:00+14:00) cannot be moved to UTC to be sent to the database.
            if value.tzinfo is None:
                raise ValueError("not an aware time")
            value.astimezone(UTC)
        elif value is not None and python_type is date:
            value = date.fromisoformat(value)
        elif value is not None and python_type is uuid.UUID:
            value = uuid.UUID(value)
        elif value is not None and python_type in (str, object):
            # Text columns (SQLModel's AutoString says `object`): only a string is one
            # this API issued, and only one the database can hold.
            if not isinstance(value, str) or "\x00" in value:
                raise ValueError("not a text value")
            value.encode()  # a lone surrogate raises UnicodeEncodeError
        elif value is not None and not isinstance(value, python_type):
            value = python_type(value)
        return value, uuid.UUID(id_)
    except (ValueError, TypeError, NotImplementedError, OverflowError) as exc:
        raise BadCursor("The cursor is not one this API issued.", field="cursor") from exc


async def paginate(
    session: AsyncSession,
    stmt: Select[Any],
    *,
    sort: Any,
    id_column: Any,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
    descending: bool = False,
) -> tuple[list[Any], str | None]:
    """Rows of `stmt` after `cursor`, ordered by (sort, id); and the next cursor."""
    limit = max(1, min(limit, MAX_LIMIT))
    if cursor:
        value, last_id = _decode(cursor, sort)
        key = tuple_(sort, id_column)
        stmt = stmt.where(key < (value, last_id) if descending else key > (value, last_id))
    order = (sort.desc(), id_column.desc()) if descending else (sort.asc(), id_column.asc())
    rows = list((await session.execute(stmt.order_by(*order).limit(limit + 1))).scalars().all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = _encode(getattr(last, str(sort.key)), getattr(last, str(id_column.key)))
    return rows, next_cursor
