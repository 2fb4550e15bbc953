"""Interval arithmetic of schedules: no I/O, tested directly.

* Ranges are half-open `[start, end)`: back-to-back shifts do not overlap.
* `find_overlaps` is a sort-and-sweep per agent: O(n log n + k) for n rows
  and k clashing pairs, so a 50 000-row import with a few clashes costs one
  sort.
* Coverage intervals are 15 minutes (or 30, 60) of **absolute** time counted
  from the local midnight of the first day in the project's time zone, and
  labelled in local time: a spring-forward day has 92 quarter-hours, a
  fall-back day 100, and a zone at UTC+3:30 still gets intervals starting on
  its own local quarter-hours.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MAX_SHIFT = timedelta(hours=24)


def overlaps(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> bool:
    """Whether `[a_start, a_end)` and `[b_start, b_end)` share an instant."""
    return a_start < b_end and b_start < a_end


@dataclass(frozen=True, slots=True)
class Span:
    key: int  # the caller's id for the span (a row number)
    owner: Hashable  # spans of one owner (an agent) must not overlap
    start: datetime
    end: datetime


def find_overlaps(spans: Iterable[Span], limit: int | None = None) -> list[tuple[int, int]]:
    """Pairs `(a, b)` of keys, `a` before `b` in start order, whose spans
    overlap and share an owner. Sort-and-sweep: per owner, spans sorted by
    start, with a heap of the spans still open at each start.

    With `limit`, a span is paired with at most `limit` of the spans open
    when it starts (plus any open span not yet in a pair), so a pathological
    input (thousands of copies of one shift) stays linear while every
    overlapping span still appears in at least one pair."""
    by_owner: dict[Hashable, list[Span]] = defaultdict(list)
    for span in spans:
        by_owner[span.owner].append(span)
    pairs: list[tuple[int, int]] = []
    for owned in by_owner.values():
        if len(owned) < 2:
            continue
        owned.sort(key=lambda s: (s.start, s.key))
        open_spans: list[tuple[datetime, int]] = []  # (end, key), a min-heap on end
        unpaired: list[tuple[datetime, int]] = []  # open spans in no pair yet
        for span in owned:
            while open_spans and open_spans[0][0] <= span.start:
                heapq.heappop(open_spans)
            partners = {key for _, key in (open_spans if limit is None else open_spans[:limit])}
            # An unpaired span that ended before this start can overlap nothing later.
            partners.update(key for end, key in unpaired if end > span.start)
            pairs.extend((key, span.key) for key in sorted(partners))
            # Every unpaired span is now paired or over; this one waits for a partner.
            unpaired = [] if partners else [(span.end, span.key)]
            heapq.heappush(open_spans, (span.end, span.key))
    return pairs


# --- local days ------------------------------------------------------------------


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The instant a local day starts (the transition instant when midnight is skipped)."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC).astimezone(tz)


def day_window(first: date, last: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The instants from the start of `first` to the end of `last` (inclusive days)."""
    return (
        local_midnight(first, tz).astimezone(UTC),
        local_midnight(last + timedelta(days=1), tz).astimezone(UTC),
    )


def local_date(instant: datetime, tz: ZoneInfo) -> date:
    return instant.astimezone(tz).date()


# --- coverage --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Interval:
    start: datetime  # aware, in the local zone
    end: datetime
    seconds: list[int]  # busy seconds per series


def coverage(
    series: Sequence[Sequence[tuple[datetime, datetime]]],
    window_start: datetime,
    window_end: datetime,
    tz: ZoneInfo,
    step: timedelta = timedelta(minutes=15),
) -> list[Interval]:
    """Busy seconds of each series of ranges in each `step` of absolute time
    from `window_start` (clipped to the window). Divide by the step's seconds
    for heads: 3 agents for a whole quarter-hour give 2700 s, i.e. 3.0.

    Linear in ranges + intervals: partial first and last intervals are added
    directly, full ones through a difference array."""
    step_s = int(step.total_seconds())
    total_s = int((window_end - window_start).total_seconds())
    n = max(0, -(-total_s // step_s))
    busy = [[0] * n for _ in series]
    for which, ranges in enumerate(series):
        seconds = busy[which]
        full = [0] * (n + 1)
        for start, end in ranges:
            s = max(0, int((start - window_start).total_seconds()))
            e = min(total_s, int((end - window_start).total_seconds()))
            if e <= s:
                continue
            i0, i1 = s // step_s, (e - 1) // step_s
            if i0 == i1:
                seconds[i0] += e - s
                continue
            seconds[i0] += (i0 + 1) * step_s - s
            seconds[i1] += e - i1 * step_s
            if i1 > i0 + 1:
                full[i0 + 1] += 1
                full[i1] -= 1
        running = 0
        for i in range(n):
            running += full[i]
            seconds[i] += running * step_s
    out = []
    for i in range(n):
        start = window_start + i * step
        end = min(window_start + (i + 1) * step, window_end)
        out.append(
            Interval(start.astimezone(tz), end.astimezone(tz), [series_[i] for series_ in busy])
        )
    return out


def seconds_per_day(
    ranges: Iterable[tuple[datetime, datetime, str]], first: date, last: date, tz: ZoneInfo
) -> dict[date, dict[str, int]]:
    """Seconds of each kind (an activity) per local day; a range across
    midnight counts on both days."""
    days: dict[date, dict[str, int]] = {}
    bounds = []
    day = first
    while day <= last:
        start, end = day_window(day, day, tz)
        bounds.append((day, start, end))
        days[day] = {}
        day += timedelta(days=1)
    for start, end, kind in ranges:
        for day, day_start, day_end in bounds:
            part = (min(end, day_end) - max(start, day_start)).total_seconds()
            if part > 0:
                days[day][kind] = days[day].get(kind, 0) + int(part)
    return days
