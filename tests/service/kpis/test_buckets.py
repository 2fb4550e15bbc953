"""Time buckets: DST days, odd offsets, calendar periods, tiling in any zone."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.kpis.buckets import (
    Bucket,
    Granularity,
    NaiveDatetime,
    bucket_of,
    day_start,
    iter_buckets,
)

NY = ZoneInfo("America/New_York")


def day_buckets(day: date, g: str, zone: ZoneInfo) -> list[Bucket]:
    return list(
        iter_buckets(day_start(day, zone), day_start(day + timedelta(days=1), zone), g, zone)
    )


def test_spring_forward_day_has_92_quarter_hours() -> None:
    quarters = day_buckets(date(2026, 3, 8), "15min", NY)
    assert len(quarters) == 92  # 23 h, 4 per hour
    labels = [b.label for b in quarters]
    # 01:45 EST is followed by 03:00 EDT: 02:00-03:00 does not exist
    i = labels.index("2026-03-08T01:45:00-05:00")
    assert labels[i + 1] == "2026-03-08T03:00:00-04:00"
    assert quarters[i].end == quarters[i + 1].start == datetime(2026, 3, 8, 7, tzinfo=UTC)
    day = bucket_of(datetime(2026, 3, 8, 12, tzinfo=UTC), "day", NY)
    assert day.duration == timedelta(hours=23)
    assert len(day_buckets(date(2026, 3, 8), "60min", NY)) == 23


def test_fall_back_day_has_100_quarter_hours_and_two_distinct_one_oclocks() -> None:
    quarters = day_buckets(date(2026, 11, 1), "15min", NY)
    assert len(quarters) == 100  # 25 h, 4 per hour
    ones = [b for b in quarters if b.local_start.hour == 1 and b.local_start.minute == 0]
    assert [b.label for b in ones] == ["2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00"]
    # 05:00 and 06:00 UTC: one hour apart, distinct
    assert [b.start for b in ones] == [
        datetime(2026, 11, 1, 5, tzinfo=UTC),
        datetime(2026, 11, 1, 6, tzinfo=UTC),
    ]
    assert len({b.start for b in quarters}) == 100
    assert bucket_of(datetime(2026, 11, 1, 12, tzinfo=UTC), "day", NY).duration == timedelta(
        hours=25
    )
    hours = day_buckets(date(2026, 11, 1), "60min", NY)
    assert len(hours) == 25
    assert len(day_buckets(date(2026, 11, 1), "30min", NY)) == 50


def test_half_and_quarter_hour_offsets() -> None:
    # Tehran +03:30: local hours start at :30 UTC
    h = bucket_of(datetime(2026, 6, 1, 10, 10, tzinfo=UTC), "60min", "Asia/Tehran")
    assert h.label == "2026-06-01T13:00:00+03:30"
    assert (h.start, h.end) == (
        datetime(2026, 6, 1, 9, 30, tzinfo=UTC),
        datetime(2026, 6, 1, 10, 30, tzinfo=UTC),
    )
    # Kathmandu +05:45: 10:10 UTC is 15:55 local → the 15:45 quarter-hour, the 15:00 hour
    q = bucket_of(datetime(2026, 6, 1, 10, 10, tzinfo=UTC), "15min", "Asia/Kathmandu")
    assert q.label == "2026-06-01T15:45:00+05:45"
    assert q.start == datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
    h = bucket_of(datetime(2026, 6, 1, 10, 10, tzinfo=UTC), "60min", "Asia/Kathmandu")
    assert (h.start, h.end) == (
        datetime(2026, 6, 1, 9, 15, tzinfo=UTC),
        datetime(2026, 6, 1, 10, 15, tzinfo=UTC),
    )
    # the Kathmandu day starts at 18:15 UTC the day before
    d = bucket_of(datetime(2026, 6, 1, 10, 10, tzinfo=UTC), "day", "Asia/Kathmandu")
    assert d.start == datetime(2026, 5, 31, 18, 15, tzinfo=UTC)


def test_half_hour_dst_shift_cuts_the_hour() -> None:
    # Lord Howe falls back 30 min at 02:00 (+11:00 → +10:30) on 2026-04-05: the
    # wall clock repeats 01:30-02:00, so the 01:00 hour is followed by a 30-min
    # interval 01:30+10:30 before the 02:00 hour; nothing overlaps.
    z = "Australia/Lord_Howe"
    hours = list(
        iter_buckets(
            datetime(2026, 4, 4, 14, tzinfo=UTC), datetime(2026, 4, 4, 17, tzinfo=UTC), "60min", z
        )
    )
    assert [(b.label, b.duration) for b in hours] == [
        ("2026-04-05T01:00:00+11:00", timedelta(hours=1)),
        ("2026-04-05T01:30:00+10:30", timedelta(minutes=30)),
        ("2026-04-05T02:00:00+10:30", timedelta(hours=1)),
        ("2026-04-05T03:00:00+10:30", timedelta(hours=1)),
    ]
    # the day: 24 h 30 min
    assert bucket_of(datetime(2026, 4, 5, 3, tzinfo=UTC), "day", z).duration == timedelta(
        hours=24, minutes=30
    )


def test_missing_midnight_starts_the_day_at_the_change() -> None:
    # Santiago springs forward at 00:00 → 01:00 on 2026-09-06: the day starts
    # at 01:00 -03 (04:00 UTC) and lasts 23 h.
    d = bucket_of(datetime(2026, 9, 6, 12, tzinfo=UTC), "day", "America/Santiago")
    assert d.label == "2026-09-06T01:00:00-03:00"
    assert d.start == datetime(2026, 9, 6, 4, tzinfo=UTC)
    assert d.duration == timedelta(hours=23)


def test_calendar_periods() -> None:
    instant = datetime(2026, 11, 1, 12, tzinfo=UTC)  # a Sunday, the fall-back day in NY
    week = bucket_of(instant, Granularity.WEEK, NY)
    assert week.label == "2026-10-26T00:00:00-04:00"  # ISO week starts Monday
    assert week.local_end.isoformat() == "2026-11-02T00:00:00-05:00"
    assert week.duration == timedelta(days=7, hours=1)
    month = bucket_of(instant, "month", NY)
    assert (month.label, month.local_end.isoformat()) == (
        "2026-11-01T00:00:00-04:00",
        "2026-12-01T00:00:00-05:00",
    )
    assert month.duration == timedelta(days=30, hours=1)
    quarter = bucket_of(instant, "quarter", NY)
    assert (quarter.label, quarter.local_end.isoformat()) == (
        "2026-10-01T00:00:00-04:00",
        "2027-01-01T00:00:00-05:00",
    )
    year = bucket_of(instant, "year", NY)
    assert year.label == "2026-01-01T00:00:00-05:00"
    assert year.duration == timedelta(days=365)  # the DST hour lost in March comes back
    # ISO week 1 of 2027 starts on Monday 2027-01-04; 2027-01-01 is in week 53 of 2026
    assert bucket_of(datetime(2027, 1, 1, 12, tzinfo=UTC), "week", NY).label == (
        "2026-12-28T00:00:00-05:00"
    )
    # a month of quarter-hours: March 2026 in New York has 31 days of 96 less the 4 skipped = 2 972
    march = bucket_of(datetime(2026, 3, 15, tzinfo=UTC), "month", NY)
    assert len(list(iter_buckets(march.start, march.end, "15min", NY))) == 2972


def test_contact_spanning_midnight_belongs_to_the_interval_it_queued_in() -> None:
    queued = datetime(2026, 6, 1, 23, 59, 50, tzinfo=NY)  # answered 00:00:20 the next day
    assert bucket_of(queued, "day", NY).label == "2026-06-01T00:00:00-04:00"
    assert bucket_of(queued, "15min", NY).label == "2026-06-01T23:45:00-04:00"
    # half-open: the last microsecond is in, midnight itself starts the next bucket
    last = datetime(2026, 6, 1, 23, 59, 59, 999_999, tzinfo=NY)
    assert bucket_of(last, "day", NY).label == "2026-06-01T00:00:00-04:00"
    midnight = datetime(2026, 6, 2, tzinfo=NY)
    assert bucket_of(midnight, "15min", NY).label == "2026-06-02T00:00:00-04:00"
    assert midnight in bucket_of(midnight, "day", NY)
    assert midnight not in bucket_of(last, "day", NY)


def test_any_offset_in_any_zone() -> None:
    # the same instant given with +05:30 or in UTC lands in the same bucket
    a = datetime(2026, 6, 1, 9, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert bucket_of(a, "15min", NY) == bucket_of(a.astimezone(UTC), "15min", NY)
    assert bucket_of(a, "15min", NY).start.tzinfo is UTC


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(NaiveDatetime):
        bucket_of(datetime(2026, 6, 1, 9), "15min", NY)
    with pytest.raises(NaiveDatetime):
        list(iter_buckets(datetime(2026, 6, 1), datetime(2026, 6, 2, tzinfo=UTC), "day", NY))
    with pytest.raises(ValueError, match="5min"):
        bucket_of(datetime(2026, 6, 1, tzinfo=UTC), "5min", NY)
    assert (
        list(
            iter_buckets(
                datetime(2026, 6, 2, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC), "day", NY
            )
        )
        == []
    )


# ---- tiling in any zone ---------------------------------------------------------------------

TRICKY = [
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "Asia/Tehran",
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "America/Santiago",
    "Pacific/Apia",  # skipped 2011-12-30 entirely
    "America/St_Johns",
    "Antarctica/Troll",
    "Africa/Casablanca",
    "UTC",
]
zones = st.one_of(st.sampled_from(TRICKY), st.sampled_from(sorted(available_timezones())))
instants = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2037, 12, 1), timezones=st.just(UTC)
)


def check_tiling(start: datetime, end: datetime, g: Granularity, zone: str) -> None:
    buckets = list(iter_buckets(start, end, g, zone))
    assert buckets[0].start <= start < buckets[0].end
    assert buckets[-1].start < end <= buckets[-1].end
    tz = ZoneInfo(zone)
    for prev, cur in itertools.pairwise(buckets):
        assert prev.end == cur.start  # no gap, no overlap
    for b in buckets:
        assert b.start < b.end
        assert b.start.tzinfo is UTC
        assert bucket_of(b.start, g, zone) == b
        assert bucket_of(b.end - timedelta(microseconds=1), g, zone) == b
        local = b.local_start
        changed = (b.start - timedelta(microseconds=1)).astimezone(
            tz
        ).utcoffset() != local.utcoffset()
        if g.minutes is not None:
            assert b.duration <= timedelta(minutes=g.minutes)
            # aligned on the local wall clock, unless cut by an offset change
            assert changed or (
                local.minute % g.minutes == 0 and local.second == 0 == local.microsecond
            )
        else:
            assert changed or local.time() == datetime.min.time()


@settings(max_examples=300, deadline=None)
@given(instants, st.integers(0, 3 * 24 * 60), st.sampled_from(["15min", "30min", "60min"]), zones)
def test_intervals_tile_any_range_in_any_zone(
    start: datetime, minutes: int, g: str, zone: str
) -> None:
    check_tiling(start, start + timedelta(minutes=minutes, microseconds=1), Granularity(g), zone)


@settings(max_examples=150, deadline=None)
@given(
    instants,
    st.integers(0, 800),
    st.sampled_from(["day", "week", "month", "quarter", "year"]),
    zones,
)
def test_calendar_periods_tile_any_range_in_any_zone(
    start: datetime, days: int, g: str, zone: str
) -> None:
    check_tiling(start, start + timedelta(days=days, microseconds=1), Granularity(g), zone)


@settings(max_examples=200, deadline=None)
@given(instants, zones)
def test_every_instant_is_in_its_bucket(instant: datetime, zone: str) -> None:
    for g in Granularity:
        assert instant in bucket_of(instant, g, zone)
