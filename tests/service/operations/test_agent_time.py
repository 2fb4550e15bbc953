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


def test_per_project_adherence_is_not_met_by_another_projects_contact() -> None:
    """P1 on_queue 9-10. States: available 9:00, on_contact 9:20, acw 9:40, available
    9:50, logged_out 10:00 — but the contact (9:20, talk to 9:40, ACW to 9:50) is P2's.

    On P1 the agent was available 9:00-9:20 and 9:50-10:00 (30 min) and did no P1
    work: logged in 30 of 60 scheduled minutes, shrinkage 50 %. The 30 minutes on
    P2's contact do not meet P1's schedule either: adherence on P1 is 30/60, not 60/60
    (which would claim more time in P1's asked state than P1 time at all). In total
    the agent was on queue all hour: 60/60."""
    events = [
        StateEvent(h(9), "available"),
        StateEvent(h(9 + 20 / 60), "on_contact"),
        StateEvent(h(9 + 40 / 60), "acw"),
        StateEvent(h(9 + 50 / 60), "available"),
        StateEvent(h(10), "logged_out"),
    ]
    shifts = [ScheduledShift(h(9), h(10), "on_queue", "P1")]
    contacts = [HandledContact(h(9 + 20 / 60), h(9 + 40 / 60), h(9 + 50 / 60), "P2")]
    p1 = project_figures("P1", events, shifts, contacts, h(8), h(11))
    assert (p1.time.logged_in_s, p1.scheduled_s) == (1800, 3600)
    assert p1.in_scheduled_state_s == 1800
    kpis = p1.kpis()
    assert kpis["schedule_adherence"].value == pytest.approx(0.5)
    assert kpis["shrinkage"].value == pytest.approx(0.5)
    assert kpis["conformance"].value == pytest.approx(0.5)
    total = total_figures(events, shifts, contacts, h(8), h(11))
    assert total.kpis()["schedule_adherence"].value == 1.0


def test_concurrent_contacts_count_their_time_once_per_project() -> None:
    """Two P1 chats at once: 9:00 (talk to 9:25, ACW to 9:30) and 9:05 (talk to 9:20,
    ACW to 9:25). States: on_contact 9:00, available 9:30, logged_out 10:00; P1
    on_queue 9-10.

    The agent was on P1's contacts 9:00-9:25 (25 min) and in their ACW 9:25-9:30
    (5 min), available 30 min: logged in 60 minutes of a 60-minute hour, as in total
    (not 40 + 10 + 30 = 80 minutes, nor conformance 4/3 and shrinkage -1/3)."""
    events = [
        StateEvent(h(9), "on_contact"),
        StateEvent(h(9.5), "available"),
        StateEvent(h(10), "logged_out"),
    ]
    shifts = [ScheduledShift(h(9), h(10), "on_queue", "P1")]
    m = timedelta(minutes=1)
    contacts = [
        HandledContact(h(9), h(9) + 25 * m, h(9) + 30 * m, "P1"),
        HandledContact(h(9) + 5 * m, h(9) + 20 * m, h(9) + 25 * m, "P1"),
    ]
    p1 = project_figures("P1", events, shifts, contacts, h(8), h(11))
    assert (p1.time.on_contact_s, p1.time.acw_s, p1.time.available_s) == (1500, 300, 1800)
    assert p1.time.logged_in_s == 3600
    assert p1.handled == 2
    kpis = p1.kpis()
    assert kpis["conformance"].value == 1.0
    assert kpis["shrinkage"].value == 0.0
    assert kpis["occupancy"].value == pytest.approx(0.5)
    assert kpis["schedule_adherence"].value == 1.0
    total = total_figures(events, shifts, contacts, h(8), h(11))
    assert total.time.logged_in_s == p1.time.logged_in_s


TEHRAN = ZoneInfo("Asia/Tehran")


def utc(year: int, month: int, day: int, hh: int, mm: int = 0) -> datetime:
    return datetime(year, month, day, hh, mm, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "day", "span", "expected"),
    [
        # New York springs forward 02:00 EST -> 03:00 EDT (07:00 UTC) on Sunday 2026-03-08:
        # a span from 02:30 starts at the jump, one that ends at 02:30 ends there.
        (NY, "sun", ["02:30", "04:00"], (utc(2026, 3, 8, 7), utc(2026, 3, 8, 8))),
        (NY, "sun", ["00:00", "02:30"], (utc(2026, 3, 8, 5), utc(2026, 3, 8, 7))),
        # Tehran sprang forward at midnight (00:00 +03:30 -> 01:00 +04:30, 20:30 UTC) on
        # Tuesday 2022-03-22: 00:30-02:00 local is 01:00-02:00 IRDT, one hour.
        (TEHRAN, "tue", ["00:30", "02:00"], (utc(2022, 3, 21, 20, 30), utc(2022, 3, 21, 21, 30))),
    ],
)
def test_a_skipped_local_time_is_the_instant_the_clock_jumps_to(
    zone: ZoneInfo, day: str, span: list[str], expected: tuple[datetime, datetime]
) -> None:
    start, end = expected
    windows = business_windows(
        {day: [span]}, [], zone, start - timedelta(days=1), end + timedelta(days=1)
    )
    assert windows == [(start, end)]


def test_local_days_of_dst_changes_are_23_and_25_hours_of_state_time() -> None:
    """An agent available from the day before until the day after: a local day's window
    holds 23 h on New York's spring-forward day and 25 h on its fall-back day."""
    events = [StateEvent(datetime(2026, 1, 1, tzinfo=UTC), "available")]
    for first, hours in ((date(2026, 3, 8), 23), (date(2026, 11, 1), 25)):
        start, end = bound(first, NY), bound(first + timedelta(days=1), NY)
        figures = total_figures(events, [], [], start, end)
        assert figures.time.available_s == hours * 3600
