"""Interval arithmetic without I/O: the sort-and-sweep, local days and coverage."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from service.shifts.intervals import (
    Span,
    coverage,
    day_window,
    find_overlaps,
    local_midnight,
    overlaps,
    seconds_per_day,
)

T0 = datetime(2026, 4, 6, tzinfo=UTC)


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def test_half_open_ranges_touching_do_not_overlap() -> None:
    assert not overlaps(h(8), h(12), h(12), h(16))
    assert overlaps(h(8), h(12), h(11.99), h(16))
    assert find_overlaps([Span(1, "a", h(8), h(12)), Span(2, "a", h(12), h(16))]) == []


def test_sweep_finds_non_adjacent_overlaps_per_owner() -> None:
    spans = [
        Span(1, "a", h(8), h(16)),
        Span(2, "a", h(9), h(10)),
        Span(3, "a", h(11), h(12)),  # its neighbour 2 ended; 1 has not
        Span(4, "b", h(9), h(10)),  # another agent: no clash
        Span(5, "a", h(16), h(17)),
    ]
    assert sorted(find_overlaps(spans)) == [(1, 2), (1, 3)]


spans_strategy = st.lists(
    st.tuples(
        st.sampled_from("abc"),
        st.integers(min_value=0, max_value=40),
        st.integers(min_value=1, max_value=12),
    ),
    max_size=40,
)


def _spans(raw: list[tuple[str, int, int]]) -> list[Span]:
    return [Span(i, owner, h(s / 2), h((s + n) / 2)) for i, (owner, s, n) in enumerate(raw)]


def _brute(spans: list[Span]) -> set[frozenset[int]]:
    return {
        frozenset((a.key, b.key))
        for a in spans
        for b in spans
        if a.key < b.key and a.owner == b.owner and overlaps(a.start, a.end, b.start, b.end)
    }


@settings(max_examples=300, deadline=None)
@given(spans_strategy)
def test_sweep_equals_brute_force(raw: list[tuple[str, int, int]]) -> None:
    spans = _spans(raw)
    found = find_overlaps(spans)
    assert len(found) == len(set(found))
    assert {frozenset(p) for p in found} == _brute(spans)


@settings(max_examples=300, deadline=None)
@given(spans_strategy, st.integers(min_value=1, max_value=3))
def test_a_limited_sweep_still_names_every_clashing_span(
    raw: list[tuple[str, int, int]], limit: int
) -> None:
    spans = _spans(raw)
    truth = _brute(spans)
    found = {frozenset(p) for p in find_overlaps(spans, limit=limit)}
    assert found <= truth
    assert set().union(*found) == set().union(*truth) if truth else not found


def test_a_pathological_file_stays_linear() -> None:
    spans = [Span(i, "a", h(8), h(12)) for i in range(20_000)]
    pairs = find_overlaps(spans, limit=10)
    assert len(pairs) <= 10 * len(spans)
    assert {k for pair in pairs for k in pair} == set(range(20_000))


def test_local_days_across_dst_and_half_hour_offsets() -> None:
    ny = ZoneInfo("America/New_York")
    start, end = day_window(date(2026, 3, 8), date(2026, 3, 8), ny)
    assert end - start == timedelta(hours=23)
    start, end = day_window(date(2026, 11, 1), date(2026, 11, 1), ny)
    assert end - start == timedelta(hours=25)
    tehran = ZoneInfo("Asia/Tehran")
    assert local_midnight(date(2026, 6, 1), tehran).astimezone(UTC) == datetime(
        2026, 5, 31, 20, 30, tzinfo=UTC
    )
    start, end = day_window(date(2026, 3, 21), date(2026, 3, 22), tehran)
    assert end - start == timedelta(hours=48)
    # Santiago skips midnight itself (00:00 → 01:00 on 2026-09-06): the day starts at 01:00.
    santiago = ZoneInfo("America/Santiago")
    first = local_midnight(date(2026, 9, 6), santiago)
    assert (first.hour, first.minute) == (1, 0)


def test_coverage_partial_and_full_intervals() -> None:
    tz = ZoneInfo("UTC")
    start, end = h(8), h(10)
    intervals = coverage(
        [[(h(8), h(9)), (h(8 + 5 / 60), h(8 + 20 / 60))], [(h(7), h(12))]], start, end, tz
    )
    assert len(intervals) == 8
    assert [i.seconds[0] for i in intervals] == [900 + 600, 900 + 300, 900, 900, 0, 0, 0, 0]
    assert all(i.seconds[1] == 900 for i in intervals)
    assert intervals[0].start == h(8)
    assert intervals[-1].end == h(10)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=-60, max_value=300), st.integers(min_value=1, max_value=400)
        ),
        max_size=20,
    )
)
def test_coverage_equals_minute_by_minute_count(raw: list[tuple[int, int]]) -> None:
    ranges = [(h(s / 60), h((s + n) / 60)) for s, n in raw]
    window_start, window_end = h(0), h(4)
    [intervals] = [coverage([ranges], window_start, window_end, ZoneInfo("UTC"))]
    for interval in intervals:
        expected = sum(
            max(0, (min(e, interval.end) - max(s, interval.start)).total_seconds())
            for s, e in ranges
        )
        assert interval.seconds[0] == expected


def test_seconds_per_day_splits_at_local_midnight() -> None:
    istanbul = ZoneInfo("Europe/Istanbul")
    days = seconds_per_day(
        [(h(19), h(23), "on_queue"), (h(30), h(31), "training")],
        date(2026, 4, 6),
        date(2026, 4, 7),
        istanbul,
    )
    assert days == {
        date(2026, 4, 6): {"on_queue": 7200},
        date(2026, 4, 7): {"on_queue": 7200, "training": 3600},
    }
