"""Time windows of the operations checks: the queried range and a project's
business hours as UTC ranges. Pure: no I/O.

* A query bound is a local date (the first instant of that day in the
  scope's time zone; `to` is exclusive) or a timestamp with an offset.
* Business hours are `{"mon": [["09:00", "17:00"], …], …}` (pairs) or
  `{"mon": [{"start": "09:00", "end": "17:00"}], …}` (what the projects API
  stores), in the project's local time; `24:00` ends a day. Holidays
  (`[{"start": "2026-12-25", "end": "2026-12-26"}]`, inclusive, or plain
  dates) have no business hours. A local time the clock skips on a DST day
  means the instant the clock jumps to, so a window never invents or drops
  an hour. Windows that touch (22:00-24:00 and 00:00-02:00 of the next day)
  are merged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from service.kpis.buckets import day_start

WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Window = tuple[datetime, datetime]


class BadHours(ValueError):
    """Stored business hours or holidays this module cannot read."""


def bound(value: date | datetime, zone: ZoneInfo) -> datetime:
    """A query bound as a UTC instant (a date: its first local instant)."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("a timestamp needs a UTC offset")
        return value.astimezone(UTC)
    return day_start(value, zone)


def _clock(value: object) -> timedelta:
    if not isinstance(value, str) or len(value) != 5 or value[2] != ":":
        raise BadHours(f"not a clock time: {value!r}")
    hours, minutes = int(value[:2]), int(value[3:])
    if not (0 <= hours <= 24 and 0 <= minutes < 60) or (hours == 24 and minutes):
        raise BadHours(f"not a clock time: {value!r}")
    return timedelta(hours=hours, minutes=minutes)


def _span(item: object) -> tuple[timedelta, timedelta]:
    if isinstance(item, Mapping):
        return _clock(item.get("start")), _clock(item.get("end"))
    if isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 2:
        return _clock(item[0]), _clock(item[1])
    raise BadHours(f"not a span: {item!r}")


def _local(day: date, offset: timedelta, zone: ZoneInfo) -> datetime:
    """The instant of local wall time `day + offset` (skipped times: where the clock lands)."""
    if offset >= timedelta(days=1):
        return day_start(day + timedelta(days=1), zone)
    wall = datetime.combine(day, time(0)) + offset
    late = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if late.astimezone(zone).replace(tzinfo=None) == wall:
        return late
    # Skipped: `fold=0` reads it with the offset before the jump, which lands as far
    # past the jump as the wall time is into the gap. The jump lies between the two
    # readings; local time is past `wall` from the jump on (tzdata changes are on
    # whole seconds).
    lo = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    hi = int(late.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, UTC).astimezone(zone).replace(tzinfo=None) > wall:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def _holidays(holidays: Iterable[object]) -> list[tuple[date, date]]:
    out = []
    for h in holidays:
        try:
            if isinstance(h, str):
                d = date.fromisoformat(h)
                out.append((d, d))
            elif isinstance(h, Mapping):
                first = date.fromisoformat(str(h["start"]))
                last = date.fromisoformat(str(h.get("end") or h["start"]))
                out.append((first, last))
        except (KeyError, ValueError) as exc:
            raise BadHours(f"not a holiday: {h!r}") from exc
    return out


def merge(windows: Iterable[Window]) -> list[Window]:
    out: list[Window] = []
    for s, e in sorted(w for w in windows if w[0] < w[1]):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def business_windows(
    hours: Mapping[str, Any],
    holidays: Iterable[object],
    zone: ZoneInfo,
    start: datetime,
    end: datetime,
) -> list[Window]:
    """The project's business hours inside `[start, end)` as merged UTC windows."""
    closed = _holidays(holidays)
    spans = {day: [_span(item) for item in hours.get(day) or []] for day in WEEKDAYS}
    first = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date() + timedelta(days=1)
    found: list[Window] = []
    day = first
    while day <= last:
        if not any(a <= day <= b for a, b in closed):
            for open_at, close_at in spans[WEEKDAYS[day.weekday()]]:
                s = max(_local(day, open_at, zone), start)
                e = min(_local(day, close_at, zone), end)
                found.append((s, e))
        day += timedelta(days=1)
    return merge(found)
