"""Time buckets in a project's time zone, as half-open UTC ranges.

A contact belongs to the bucket in which it entered the queue, in the
project's time zone (KPIS.md). Every bucket is `[start, end)` with aware UTC
instants; consecutive buckets tile time without gap or overlap in any zone.

* **Intervals** (15, 30, 60 minutes) follow the local wall clock: they start
  where the local time is a multiple of the interval since local midnight,
  and an interval never straddles a UTC-offset change (it is cut there).
  So the repeated 01:00-02:00 of a fall-back day gives two sets of distinct
  intervals with distinct UTC starts, labelled with their offsets, and the
  skipped hour of a spring-forward day gives none: America/New_York has 92
  quarter-hours on 2026-03-08 and 100 on 2026-11-01. A zone whose DST shift
  is not a whole interval (Australia/Lord_Howe moves by 30 minutes) yields
  one shorter interval at the change instead of a longer one or an overlap.
  Zones with half- and quarter-hour offsets (Asia/Tehran +03:30,
  Asia/Kathmandu +05:45) start their hours at :30 and :15 UTC.
* **Calendar periods** (day, ISO week starting Monday, month, quarter, year)
  run from the first instant of their first local day to the first instant
  of the next period's; a day is 23, 24 or 25 hours long. When local
  midnight does not exist (a DST change at midnight) the day starts at the
  change.
* Naive datetimes are refused (`NaiveDatetime`).

The algorithm assumes a zone changes its UTC offset at most once within an
interval or a local day, which holds for every tzdata zone since 1970.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo

_EPSILON: Final = timedelta(microseconds=1)
_SECOND: Final = timedelta(seconds=1)


class Granularity(StrEnum):
    MIN15 = "15min"
    MIN30 = "30min"
    MIN60 = "60min"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"

    @property
    def minutes(self) -> int | None:
        """The interval length, or None for a calendar period."""
        return _MINUTES.get(self)


_MINUTES: Final = {Granularity.MIN15: 15, Granularity.MIN30: 30, Granularity.MIN60: 60}


class NaiveDatetime(ValueError):
    """A datetime without an offset: refused (KPIS.md)."""


def _zone(zone: ZoneInfo | str) -> ZoneInfo:
    return zone if isinstance(zone, ZoneInfo) else ZoneInfo(zone)


def to_utc(instant: datetime, name: str = "instant") -> datetime:
    """The same instant in UTC; naive datetimes are refused."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise NaiveDatetime(f"{name} {instant.isoformat()} has no UTC offset")
    return instant.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Bucket:
    """`[start, end)` in UTC, in a zone and at a granularity."""

    start: datetime
    end: datetime
    zone: ZoneInfo
    granularity: Granularity

    @property
    def local_start(self) -> datetime:
        return self.start.astimezone(self.zone)

    @property
    def local_end(self) -> datetime:
        return self.end.astimezone(self.zone)

    @property
    def label(self) -> str:
        """Local start with its offset: distinct for the repeated hour of fall-back."""
        return self.local_start.isoformat()

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    def __contains__(self, instant: object) -> bool:
        if not isinstance(instant, datetime):
            return False
        return self.start <= to_utc(instant) < self.end


def _offset(zone: ZoneInfo, utc: datetime) -> timedelta:
    offset = utc.astimezone(zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _whole_seconds(instant: datetime, *, up: bool) -> int:
    """Seconds since the epoch, floored or ceiled (exact integer arithmetic)."""
    delta = instant - _EPOCH
    seconds = delta // _SECOND
    return seconds + 1 if up and delta % _SECOND else seconds


def _at(seconds: int) -> datetime:
    return _EPOCH + timedelta(seconds=seconds)


def _first_change(zone: ZoneInfo, lo: datetime, hi: datetime) -> datetime:
    """The first instant in (lo, hi] whose offset differs from lo's.

    Requires offset(lo) != offset(hi) and one change between them; tzdata
    changes offsets on whole seconds, so a search over seconds is exact.
    """
    base = _offset(zone, lo)
    a = _whole_seconds(lo, up=False)  # offset(a) == base: no change inside a second
    b = _whole_seconds(hi, up=True)  # offset(b) != base
    while b - a > 1:
        mid = (a + b) // 2
        if _offset(zone, _at(mid)) == base:
            a = mid
        else:
            b = mid
    return _at(b)


def _interval(instant: datetime, minutes: int, zone: ZoneInfo) -> tuple[datetime, datetime]:
    step = timedelta(minutes=minutes)
    off = _offset(zone, instant)
    wall = instant.replace(tzinfo=None) + off
    midnight = wall.replace(hour=0, minute=0, second=0, microsecond=0)
    wall_start = midnight + (wall - midnight) // step * step
    # Within one offset regime wall time is UTC + off: cut at the regime's ends.
    start = (wall_start - off).replace(tzinfo=UTC)
    end = start + step
    if _offset(zone, start) != off:
        start = _first_change(zone, start, instant)
    if _offset(zone, end - _EPSILON) != off:
        end = _first_change(zone, instant, end - _EPSILON)
    return start, end


def day_start(day: date, zone: ZoneInfo | str) -> datetime:
    """The first instant (UTC) whose local date is `day`."""
    return _day_start(day, _zone(zone))


@functools.lru_cache(maxsize=65_536)  # pure; a report asks for the same days many times
def _day_start(day: date, tz: ZoneInfo) -> datetime:
    wall = datetime(day.year, day.month, day.day)
    candidates = [wall.replace(tzinfo=tz, fold=fold).astimezone(UTC) for fold in (0, 1)]
    for c in sorted(candidates):
        if c.astimezone(tz).date() == day and (c - _EPSILON).astimezone(tz).date() < day:
            return c
    # Midnight skipped by a change that is not at midnight: find the first instant.
    a = _whole_seconds(min(candidates) - timedelta(days=1), up=False)
    b = _whole_seconds(max(candidates) + timedelta(days=1), up=True)
    while b - a > 1:
        mid = (a + b) // 2
        if _at(mid).astimezone(tz).date() >= day:
            b = mid
        else:
            a = mid
    return _at(b)


def _period_first_day(day: date, granularity: Granularity) -> tuple[date, date]:
    """(first day, first day of the next period)."""
    if granularity is Granularity.DAY:
        return day, day + timedelta(days=1)
    if granularity is Granularity.WEEK:
        first = day - timedelta(days=day.weekday())
        return first, first + timedelta(days=7)
    if granularity is Granularity.MONTH:
        first = day.replace(day=1)
        y, m = (first.year + 1, 1) if first.month == 12 else (first.year, first.month + 1)
        return first, date(y, m, 1)
    if granularity is Granularity.QUARTER:
        m = (day.month - 1) // 3 * 3 + 1
        first = date(day.year, m, 1)
        nxt = date(day.year + 1, 1, 1) if m == 10 else date(day.year, m + 3, 1)
        return first, nxt
    if granularity is Granularity.YEAR:
        return date(day.year, 1, 1), date(day.year + 1, 1, 1)
    raise ValueError(f"{granularity} is not a calendar period")


def bucket_of(instant: datetime, granularity: Granularity | str, zone: ZoneInfo | str) -> Bucket:
    """The bucket containing `instant` (aware; any offset) in `zone`."""
    g = Granularity(granularity)
    tz = _zone(zone)
    utc = to_utc(instant)
    minutes = g.minutes
    if minutes is not None:
        start, end = _interval(utc, minutes, tz)
        return Bucket(start, end, tz, g)
    first, nxt = _period_first_day(utc.astimezone(tz).date(), g)
    return Bucket(day_start(first, tz), day_start(nxt, tz), tz, g)


def iter_buckets(
    start: datetime, end: datetime, granularity: Granularity | str, zone: ZoneInfo | str
) -> Iterator[Bucket]:
    """The buckets that overlap `[start, end)`, in order, tiling it."""
    lo, hi = to_utc(start, "start"), to_utc(end, "end")
    if hi <= lo:
        return
    bucket = bucket_of(lo, granularity, zone)
    yield bucket
    while bucket.end < hi:
        bucket = bucket_of(bucket.end, granularity, zone)
        yield bucket
