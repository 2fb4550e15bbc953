"""Agent KPIs from agent-state events, shifts and handled contacts (KPIS.md,
"Agent KPIs"): pure computation, no I/O; `service/operations/agent_kpis.py`
reads the rows.

The rules this module holds:

* **States are spans.** Each event starts a state that lasts until the
  agent's next event (whatever its queue); the last one lasts until the
  end of the measured window, which the caller has already cut at "now".
  Spans are clipped to the window `[start, end)`; the caller passes the
  last event before `start` too, so the state the agent was in when the
  window opened counts. Events at the same instant keep the caller's order
  (the earlier ones last zero seconds).
* **Scheduled time** is the agents' shifts, clipped to the window; every
  shift is paid time (shrinkage's "scheduled paid time").
* **Schedule adherence**: seconds in the state the schedule asked for /
  scheduled seconds. An `on_queue` shift asks for `available`,
  `on_contact` or `acw`; any other activity (training, coaching, meeting,
  break) asks for `not_ready`, and when the event names a reason, the reason
  must match the activity (a word of the reason equals the activity or a
  synonym: "lunch" is a break). A not-ready without a reason counts.
* **Conformance** = logged-in time / scheduled time; **shrinkage** = 1 -
  (available + on_contact + acw) / scheduled time.
* **Per project** (an agent of the shared pool): the time on that
  project's contacts comes from the contacts themselves — on the contact
  from `answered_at` until `ended_at` (else `answered_at` + talk + hold),
  then ACW — clipped to the window, each instant once (two chats at once
  are one agent's time, not two); available and not-ready time count for
  the project while the agent was scheduled on it. Handled contacts are the
  project's answered contacts with `answered_at` in the window. The same
  formulas then apply to these figures: an `on_queue` shift of the project
  is met by available time or time on *this project's* contacts, never by
  work on another project's contact (else adherence could exceed the
  project's own logged-in time).
* **In total**: every state span of the window, every shift, every handled
  contact.

Durations are added as `timedelta`s (exact microseconds) and turned into
float seconds once, at the end, so adherence never exceeds 100 % by a
rounding.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from service.kpis.formulas import (
    AgentTime,
    KpiValue,
    conformance,
    contacts_per_hour,
    logged_in_time,
    occupancy,
    schedule_adherence,
    shrinkage,
    utilization,
)

STATES: Final = ("logged_out", "available", "on_contact", "acw", "not_ready")
READY_STATES: Final = frozenset({"available", "on_contact", "acw"})
ON_QUEUE: Final = "on_queue"
# Reason words that satisfy a scheduled activity besides the activity's own name.
SYNONYMS: Final[dict[str, frozenset[str]]] = {
    "break": frozenset({"break", "lunch", "meal", "rest"}),
    "training": frozenset({"training", "course"}),
    "coaching": frozenset({"coaching", "feedback"}),
    "meeting": frozenset({"meeting", "huddle", "briefing"}),
}
AGENT_KPIS: Final = (
    "logged_in_time",
    "occupancy",
    "utilization",
    "schedule_adherence",
    "conformance",
    "shrinkage",
    "contacts_per_hour",
)
_ZERO: Final = timedelta(0)
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True, slots=True)
class StateEvent:
    """The agent entered `state` at `at` (`reason`: the not-ready reason code)."""

    at: datetime
    state: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class StateSpan:
    start: datetime
    end: datetime
    state: str
    reason: str | None = None

    @property
    def logged_in(self) -> bool:
        return self.state != "logged_out"


@dataclass(frozen=True, slots=True)
class ScheduledShift:
    start: datetime
    end: datetime
    activity: str
    project: Hashable = None


@dataclass(frozen=True, slots=True)
class HandledContact:
    """An answered contact of the agent: on it `[answered_at, talk_end)`, then
    ACW `[talk_end, busy_end)`."""

    answered_at: datetime
    talk_end: datetime
    busy_end: datetime
    project: Hashable = None


def _overlap(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> timedelta:
    return max(_ZERO, min(a_end, b_end) - max(a_start, b_start))


def state_spans(events: Sequence[StateEvent], start: datetime, end: datetime) -> list[StateSpan]:
    """The spans of `events` (in order) clipped to `[start, end)`; empty spans dropped."""
    spans: list[StateSpan] = []
    for i, event in enumerate(events):
        until = events[i + 1].at if i + 1 < len(events) else end
        s, e = max(event.at, start), min(until, end)
        if s < e:
            spans.append(StateSpan(s, e, event.state, event.reason))
    return spans


def _merged(windows: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    out: list[tuple[datetime, datetime]] = []
    for s, e in sorted(w for w in windows if w[0] < w[1]):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _time_in(
    spans: Iterable[StateSpan],
    windows: list[tuple[datetime, datetime]] | None,
    keep: Callable[[StateSpan], bool],
) -> timedelta:
    total = _ZERO
    for span in spans:
        if not keep(span):
            continue
        if windows is None:
            total += span.end - span.start
        else:
            total += sum((_overlap(span.start, span.end, s, e) for s, e in windows), _ZERO)
    return total


def reason_matches(activity: str, reason: str | None) -> bool:
    """Whether a not-ready reason fits a scheduled activity (no reason: it does)."""
    if reason is None or not reason.strip():
        return True
    words = set(_WORD.findall(reason.lower()))
    return bool(words & SYNONYMS.get(activity, frozenset({activity})))


def asked_for(activity: str, span: StateSpan) -> bool:
    """Whether the agent is in the state a shift of `activity` asks for."""
    if activity == ON_QUEUE:
        return span.state in READY_STATES
    return span.state == "not_ready" and reason_matches(activity, span.reason)


def clipped(
    shifts: Iterable[ScheduledShift], start: datetime, end: datetime
) -> list[ScheduledShift]:
    out = []
    for shift in shifts:
        s, e = max(shift.start, start), min(shift.end, end)
        if s < e:
            out.append(ScheduledShift(s, e, shift.activity, shift.project))
    return out


def scheduled_time(shifts: Iterable[ScheduledShift]) -> timedelta:
    return sum((s.end - s.start for s in shifts), _ZERO)


def adherent_time(
    spans: Sequence[StateSpan],
    shifts: Iterable[ScheduledShift],
    on_queue: list[tuple[datetime, datetime]] | None = None,
) -> timedelta:
    """Time inside shifts spent in the state each shift asked for. `on_queue`, when
    given, is the (merged) time that meets an `on_queue` shift instead of the ready
    state spans (one project's: its available time and its contacts)."""
    total = _ZERO
    for shift in shifts:
        if shift.activity == ON_QUEUE and on_queue is not None:
            total += sum((_overlap(s, e, shift.start, shift.end) for s, e in on_queue), _ZERO)
            continue
        for span in spans:
            if asked_for(shift.activity, span):
                total += _overlap(span.start, span.end, shift.start, shift.end)
    return total


def _length(windows: Iterable[tuple[datetime, datetime]]) -> timedelta:
    return sum((e - s for s, e in windows), _ZERO)


def contact_windows(
    contacts: Iterable[HandledContact], start: datetime, end: datetime
) -> tuple[list[tuple[datetime, datetime]], list[tuple[datetime, datetime]]]:
    """(on a contact, on a contact or its ACW) as merged windows clipped to `[start, end)`:
    overlapping contacts (concurrent chats) count each instant once."""
    contacts = list(contacts)
    talk = _merged((max(c.answered_at, start), min(c.talk_end, end)) for c in contacts)
    busy = _merged((max(c.answered_at, start), min(c.busy_end, end)) for c in contacts)
    return talk, busy


def _s(value: timedelta) -> float:
    return value / timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class AgentFigures:
    """What the agent KPIs of one scope (the total, or one project) are computed from."""

    time: AgentTime
    scheduled_s: float
    in_scheduled_state_s: float
    handled: int

    def kpis(self) -> dict[str, KpiValue]:
        t = self.time
        return {
            "logged_in_time": logged_in_time(t),
            "occupancy": occupancy(t),
            "utilization": utilization(t),
            "schedule_adherence": schedule_adherence(self.in_scheduled_state_s, self.scheduled_s),
            "conformance": conformance(t.logged_in_s, self.scheduled_s),
            "shrinkage": shrinkage(t, self.scheduled_s),
            "contacts_per_hour": contacts_per_hour(self.handled, t.logged_in_s),
        }


def _handled(contacts: Iterable[HandledContact], start: datetime, end: datetime) -> int:
    return sum(1 for c in contacts if start <= c.answered_at < end)


def total_figures(
    events: Sequence[StateEvent],
    shifts: Sequence[ScheduledShift],
    contacts: Sequence[HandledContact],
    start: datetime,
    end: datetime,
) -> AgentFigures:
    """The agent across every project over `[start, end)` (`end` already cut at now)."""
    spans = state_spans(events, start, end)
    own = clipped(shifts, start, end)

    def state(name: str) -> float:
        return _s(_time_in(spans, None, lambda sp: sp.state == name))

    return AgentFigures(
        time=AgentTime(
            available_s=state("available"),
            on_contact_s=state("on_contact"),
            acw_s=state("acw"),
            not_ready_s=state("not_ready"),
        ),
        scheduled_s=_s(scheduled_time(own)),
        in_scheduled_state_s=_s(adherent_time(spans, own)),
        handled=_handled(contacts, start, end),
    )


def project_figures(
    project: Hashable,
    events: Sequence[StateEvent],
    shifts: Sequence[ScheduledShift],
    contacts: Sequence[HandledContact],
    start: datetime,
    end: datetime,
) -> AgentFigures:
    """The agent on one project: its contacts' time, and available and not-ready
    time while scheduled on it (see the module docstring)."""
    spans = state_spans(events, start, end)
    own = clipped((s for s in shifts if s.project == project), start, end)
    windows = _merged((s.start, s.end) for s in own)
    mine = [c for c in contacts if c.project == project]
    talk_windows, busy_windows = contact_windows(mine, start, end)
    talk = _length(talk_windows)
    acw = _length(busy_windows) - talk
    # What meets this project's on_queue shifts: available, or on its own contacts.
    ready = _merged([(sp.start, sp.end) for sp in spans if sp.state == "available"] + busy_windows)

    def state(name: str) -> float:
        return _s(_time_in(spans, windows, lambda sp: sp.state == name))

    return AgentFigures(
        time=AgentTime(
            available_s=state("available"),
            on_contact_s=_s(talk),
            acw_s=_s(acw),
            not_ready_s=state("not_ready"),
        ),
        scheduled_s=_s(scheduled_time(own)),
        in_scheduled_state_s=_s(adherent_time(spans, own, ready)),
        handled=_handled(mine, start, end),
    )
