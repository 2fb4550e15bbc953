"""The pure agent-KPI core (service/kpis/agents.py) and business-hour windows
(service/operations/windows.py), by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from service.kpis.agents import (
    HandledContact,
    ScheduledShift,
    StateEvent,
    StateSpan,
    asked_for,
    project_figures,
    reason_matches,
    state_spans,
    total_figures,
)
from service.operations.windows import bound, business_windows

T = datetime(2026, 3, 2, tzinfo=UTC)


def h(hours: float) -> datetime:
    return T + timedelta(hours=hours)


def test_each_state_lasts_until_the_next_event_and_is_clipped() -> None:
    events = [
        StateEvent(h(7), "available"),  # before the window: the state it opens in
        StateEvent(h(9), "not_ready", "break"),
        StateEvent(h(9), "on_contact"),  # same instant: the earlier one lasts 0 s
        StateEvent(h(10), "logged_out"),
        StateEvent(h(11), "acw"),  # the last one lasts until the window's end
    ]
    spans = state_spans(events, h(8), h(12))
    assert spans == [
        StateSpan(h(8), h(9), "available"),
        StateSpan(h(9), h(10), "on_contact"),
        StateSpan(h(10), h(11), "logged_out"),
        StateSpan(h(11), h(12), "acw"),
    ]


@pytest.mark.parametrize(
    ("activity", "reason", "asked"),
    [
        ("break", None, True),
        ("break", "Lunch", True),
        ("break", "lunch-break", True),
        ("break", "training", False),
        ("training", "Training: product X", True),
        ("training", "technical", False),
        ("meeting", "", True),
        ("coaching", "1:1 coaching", True),
    ],
)
def test_a_not_ready_reason_must_fit_the_activity_when_given(
    activity: str, reason: str | None, asked: bool
) -> None:
    assert reason_matches(activity, reason) is asked
    assert asked_for(activity, StateSpan(h(0), h(1), "not_ready", reason)) is asked
    assert asked_for(activity, StateSpan(h(0), h(1), "available")) is False


@pytest.mark.parametrize(
    ("state", "asked"),
    [("available", True), ("on_contact", True), ("acw", True), ("not_ready", False)],
)
def test_an_on_queue_shift_asks_for_ready_states(state: str, asked: bool) -> None:
    assert asked_for("on_queue", StateSpan(h(0), h(1), state)) is asked
    assert asked_for("on_queue", StateSpan(h(0), h(1), "logged_out")) is False


def test_total_and_per_project_figures() -> None:
    """Logged in 9:00-12:00. P1 on_queue 9-10:30, P2 on_queue 10:30-12.
    States: available 9-9:30, on_contact 9:30-10 (a P1 contact, 25 min talk + 5 ACW),
    available 10-11, not_ready "coaching" 11-12 (P2 asked for on_queue)."""
    events = [
        StateEvent(h(9), "available"),
        StateEvent(h(9.5), "on_contact"),
        StateEvent(h(10), "available"),
        StateEvent(h(11), "not_ready", "coaching"),
        StateEvent(h(12), "logged_out"),
    ]
    shifts = [
        ScheduledShift(h(9), h(10.5), "on_queue", "P1"),
        ScheduledShift(h(10.5), h(12), "on_queue", "P2"),
    ]
    contacts = [HandledContact(h(9.5), h(9.5) + timedelta(minutes=25), h(10), "P1")]
    total = total_figures(events, shifts, contacts, h(8), h(13))
    assert (total.time.available_s, total.time.on_contact_s, total.time.not_ready_s) == (
        5400,
        1800,
        3600,
    )
    assert (total.scheduled_s, total.in_scheduled_state_s, total.handled) == (10800, 7200, 1)
    kpis = total.kpis()
    assert kpis["schedule_adherence"].value == pytest.approx(2 / 3)
    assert kpis["shrinkage"].value == pytest.approx(1 - 7200 / 10800)
    assert kpis["contacts_per_hour"].value == pytest.approx(1 / 3)

    p1 = project_figures("P1", events, shifts, contacts, h(8), h(13))
    # available 9-9:30 and 10-10:30 while scheduled on P1; 25 min on the contact, 5 ACW.
    assert (p1.time.available_s, p1.time.on_contact_s, p1.time.acw_s, p1.time.not_ready_s) == (
        3600,
        1500,
        300,
        0,
    )
    assert (p1.scheduled_s, p1.in_scheduled_state_s, p1.handled) == (5400, 5400, 1)
    p2 = project_figures("P2", events, shifts, contacts, h(8), h(13))
    assert (p2.time.available_s, p2.time.on_contact_s, p2.time.not_ready_s) == (1800, 0, 3600)
    assert (p2.scheduled_s, p2.in_scheduled_state_s, p2.handled) == (5400, 1800, 0)
    assert p2.kpis()["occupancy"].value == 0
    assert p2.kpis()["contacts_per_hour"].value == 0


def test_adherence_never_exceeds_one_with_odd_microseconds() -> None:
    start = T + timedelta(microseconds=1)
    events = [StateEvent(start, "available")]
    shifts = [ScheduledShift(start, start + timedelta(seconds=1 / 3), "on_queue", "P")]
    figures = total_figures(events, shifts, [], T, T + timedelta(seconds=1))
    assert figures.kpis()["schedule_adherence"].value == 1.0


NY = ZoneInfo("America/New_York")
HOURS = {"mon": [["09:00", "17:00"]], "sun": [{"start": "01:00", "end": "04:00"}]}


def test_business_windows_follow_the_local_clock_across_dst() -> None:
    # Sunday 2026-03-08 springs forward at 02:00 local: 01:00-04:00 lasts two hours.
    windows = business_windows(
        HOURS, [], NY, datetime(2026, 3, 7, tzinfo=UTC), datetime(2026, 3, 10, tzinfo=UTC)
    )
    assert windows == [
        (datetime(2026, 3, 8, 6, tzinfo=UTC), datetime(2026, 3, 8, 8, tzinfo=UTC)),
        (datetime(2026, 3, 9, 13, tzinfo=UTC), datetime(2026, 3, 9, 21, tzinfo=UTC)),
    ]


def test_business_windows_skip_holidays_merge_midnight_and_clip() -> None:
    hours = {"mon": [["20:00", "24:00"]], "tue": [["00:00", "02:00"], ["09:00", "10:00"]]}
    windows = business_windows(
        hours,
        [{"start": "2026-03-09", "end": "2026-03-09"}, "2026-03-17"],
        ZoneInfo("UTC"),
        datetime(2026, 3, 2, 21, tzinfo=UTC),
        datetime(2026, 3, 17, 12, tzinfo=UTC),
    )
    assert windows == [
        (datetime(2026, 3, 2, 21, tzinfo=UTC), datetime(2026, 3, 3, 2, tzinfo=UTC)),
        (datetime(2026, 3, 3, 9, tzinfo=UTC), datetime(2026, 3, 3, 10, tzinfo=UTC)),
        # Monday 9 March is a holiday; Tuesday's 00:00-02:00 stays open.
        (datetime(2026, 3, 10, 0, tzinfo=UTC), datetime(2026, 3, 10, 2, tzinfo=UTC)),
        (datetime(2026, 3, 10, 9, tzinfo=UTC), datetime(2026, 3, 10, 10, tzinfo=UTC)),
        (datetime(2026, 3, 16, 20, tzinfo=UTC), datetime(2026, 3, 17, 0, tzinfo=UTC)),
    ]


def test_a_date_bound_is_local_midnight_and_naive_timestamps_are_refused() -> None:
    assert bound(date(2026, 3, 2), NY) == datetime(2026, 3, 2, 5, tzinfo=UTC)
    with pytest.raises(ValueError, match="offset"):
        bound(datetime(2026, 3, 2, 5), NY)
