"""Rules of shifts, schedule imports and schedule views. Functions flush,
never commit.

* No agent holds two overlapping shifts, on any projects: the exclusion
  constraint decides, so two concurrent bookings cannot both win; the loser
  gets 409 `shift_overlaps` naming the shift it clashes with (id and range;
  its project only when the caller may see that project).
* A shift on a project the agent is not certified for (on the shift's local
  start date) is refused, unless it is training.
* Imports check every row against the database and against the other rows
  of the file, and report every problem by row. `all_or_nothing` writes
  nothing if any row fails; `valid_rows` writes exactly the rows without a
  problem (both rows of an in-file overlap are rejected: neither is known
  to be the right one). Rows are idempotent on `external_id`.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import IO, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from service.agents.errors import UnknownProject
from service.core.concurrency import check_if_match
from service.core.db import violation_of
from service.core.errors import NotFound, PayloadTooLarge
from service.core.time import utcnow
from service.projects.models import Project
from service.shifts import repository as repo
from service.shifts.errors import (
    AgentInactive,
    AgentNotCertified,
    ImportRejected,
    InvalidImportFile,
    InvalidShiftRange,
    InvalidWindow,
    ProjectInactive,
    ScheduleChanged,
    ShiftExternalIdTaken,
    ShiftOverlaps,
    UnknownAgent,
)
from service.shifts.intervals import coverage, day_window, local_date, seconds_per_day
from service.shifts.models import Shift
from service.shifts.repository import Clash
from service.shifts.rows import (
    FileProblem,
    Parsed,
    RowProblem,
    duplicate_problems,
    overlap_problems,
    parse_csv,
    parse_json_rows,
    range_problem,
    write_csv,
)
from service.shifts.schemas import (
    AgentSchedule,
    CoverageInterval,
    DayTotal,
    ImportMode,
    ImportReport,
    ProjectSchedule,
    ScheduledShift,
    ShiftBatch,
    ShiftCreate,
    ShiftUpdate,
)
from tenants.audit import record_event
from tenants.context import TenantContext, ensure_visible

EXCLUSION_VIOLATION = "23P01"
DEADLOCK_DETECTED = "40P01"
DEADLOCK_RETRIES = 3
UNIQUE_VIOLATION = "23505"
# Projects are never deleted; an agent without history may be, while it is being booked.
FOREIGN_KEY_VIOLATION = "23503"
MAX_WINDOW_DAYS = 62
INTERVALS = (15, 30, 60)
# Parsing and sweeping this many rows takes long enough to matter to the event loop.
THREAD_ROWS = 2_000


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _may_see(ctx: TenantContext, project_id: uuid.UUID, client_id: uuid.UUID) -> bool:
    if ctx.client_id is not None and client_id != ctx.client_id:
        return False
    return ctx.project_ids is None or project_id in ctx.project_ids


def clash_view(ctx: TenantContext, clash: Clash) -> dict[str, Any]:
    """The clashing shift as the caller may see it: id and range always
    (tenant staff), the project only when visible to the caller."""
    return {
        "id": str(clash.id),
        "project_id": str(clash.project_id)
        if _may_see(ctx, clash.project_id, clash.client_id)
        else None,
        "start": clash.starts_at.isoformat(),
        "end": clash.ends_at.isoformat(),
    }


# --- single shifts ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Booking:
    agent_id: uuid.UUID
    project: Project
    starts_at: datetime
    ends_at: datetime
    activity: str


async def _check_booking(
    session: AsyncSession, ctx: TenantContext, booking: _Booking, *, agent_changed: bool = True
) -> None:
    problem = range_problem(booking.starts_at, booking.ends_at, 0)
    if problem is not None:
        raise InvalidShiftRange(problem.message, field=problem.field)
    agent = await repo.get_agent(session, ctx, booking.agent_id)
    if agent is None:
        raise UnknownAgent("No such agent.", field="agent_id")
    if agent.status != "active" and agent_changed:
        raise AgentInactive("The agent is inactive.", field="agent_id")
    if booking.activity == "training":
        return
    tz = zone(booking.project.time_zone)
    on = local_date(booking.starts_at, tz)
    last = local_date(booking.ends_at - timedelta(microseconds=1), tz)
    if not await repo.is_certified(session, ctx, agent.id, booking.project.id, on, last):
        days = on.isoformat() if last == on else f"{on.isoformat()} to {last.isoformat()}"
        raise AgentNotCertified(
            f"The agent is not certified for this project on {days} (only training may be booked).",
            field="project_id",
            date=on.isoformat(),
        )


async def _visible_project(
    session: AsyncSession, ctx: TenantContext, project_id: uuid.UUID, *, new: bool = True
) -> Project:
    project = await repo.get_project(session, ctx, project_id)
    if project is None:
        raise UnknownProject("No such project.", field="project_id")
    if new and project.status != "active":
        raise ProjectInactive("The project is inactive.", field="project_id")
    return project


async def _save_booking(
    session: AsyncSession,
    ctx: TenantContext,
    booking: _Booking,
    shift: Shift,
    values: dict[str, Any],
    *,
    new: bool,
) -> None:
    """Write the shift in a savepoint; the exclusion constraint is the judge
    of overlaps. Two bookings that clash can each wait for the other inside
    the constraint check; PostgreSQL then aborts one with a deadlock, which is
    retried here: the retry waits for the other to commit and gets the clash
    (and its shift) like any other loser."""
    shift_id = shift.id  # a rolled-back savepoint expires the object's attributes
    for attempt in range(DEADLOCK_RETRIES):
        try:
            # Changes go inside: opening a savepoint flushes what is pending.
            async with session.begin_nested():
                for key, value in values.items():
                    setattr(shift, key, value)
                if new:
                    session.add(shift)
                await session.flush()
        except DBAPIError as exc:
            sqlstate = violation_of(exc).sqlstate
            if sqlstate == DEADLOCK_DETECTED and attempt + 1 < DEADLOCK_RETRIES:
                continue
            if sqlstate == EXCLUSION_VIOLATION:
                clashes = await repo.clashing_shifts(
                    session,
                    ctx,
                    booking.agent_id,
                    booking.starts_at,
                    booking.ends_at,
                    exclude=None if new else shift_id,
                )
                raise _overlaps(ctx, clashes) from exc
            if sqlstate == UNIQUE_VIOLATION:
                raise ShiftExternalIdTaken(
                    "Another shift of this tenant has this external_id.", field="external_id"
                ) from exc
            if sqlstate == FOREIGN_KEY_VIOLATION:
                raise UnknownAgent(
                    "No such agent (it was deleted meanwhile).", field="agent_id"
                ) from exc
            raise
        if attempt and not new:
            # The rolled-back savepoint expired what the retry did not set again.
            await session.refresh(shift)
        return


def _overlaps(ctx: TenantContext, clashes: list[Clash]) -> ShiftOverlaps:
    if not clashes:
        # The other shift went away between the constraint's verdict and our look: retryable.
        return ShiftOverlaps(
            "The agent was booked concurrently for this time; retry.", field="start"
        )
    first = clashes[0]
    return ShiftOverlaps(
        f"The agent already has shift {first.id} from {first.starts_at.isoformat()} "
        f"to {first.ends_at.isoformat()}.",
        field="start",
        clashing_shift=clash_view(ctx, first),
        clashes=[clash_view(ctx, c) for c in clashes],
    )


async def create_shift(session: AsyncSession, ctx: TenantContext, data: ShiftCreate) -> Shift:
    project = await _visible_project(session, ctx, data.project_id)
    booking = _Booking(data.agent_id, project, data.start, data.end, data.activity)
    await _check_booking(session, ctx, booking)
    shift = Shift(
        tenant_id=ctx.tenant_id,
        agent_id=data.agent_id,
        project_id=project.id,
        client_id=project.client_id,
        starts_at=data.start,
        ends_at=data.end,
        activity=data.activity,
        note=data.note,
        external_id=data.external_id,
    )
    await _save_booking(session, ctx, booking, shift, {}, new=True)
    return shift


async def get_shift(session: AsyncSession, ctx: TenantContext, shift_id: uuid.UUID) -> Shift:
    return ensure_visible(await repo.get_shift(session, ctx, shift_id), "shift")


async def list_shifts(
    session: AsyncSession, ctx: TenantContext, **filters: Any
) -> tuple[list[Shift], str | None]:
    start, end = filters.get("start"), filters.get("end")
    if start is not None and end is not None and end <= start:
        raise InvalidWindow("'to' must be after 'from'.", field="to")
    return await repo.list_shifts(session, ctx, **filters)


async def update_shift(
    session: AsyncSession,
    ctx: TenantContext,
    shift_id: uuid.UUID,
    data: ShiftUpdate,
    if_match: str | None,
) -> Shift:
    shift = ensure_visible(await repo.get_shift(session, ctx, shift_id, for_update=True), "shift")
    check_if_match(if_match, shift.version)
    changes = data.model_dump(exclude_unset=True)
    for key in ("agent_id", "project_id", "start", "end", "activity"):
        if key in changes and changes[key] is None:
            raise InvalidShiftRange(f"{key} cannot be removed.", field=key)
    project_changed = changes.get("project_id", shift.project_id) != shift.project_id
    project = await _visible_project(
        session, ctx, changes.get("project_id", shift.project_id), new=project_changed
    )
    agent_id = changes.get("agent_id", shift.agent_id)
    booking = _Booking(
        agent_id,
        project,
        changes.get("start", shift.starts_at),
        changes.get("end", shift.ends_at),
        changes.get("activity", shift.activity),
    )
    # Compared by value: a client that resends the booking unchanged (to edit the note)
    # is not booking anew, so a certification that ended since does not refuse it.
    rebooked = (agent_id, project.id, booking.starts_at, booking.ends_at, booking.activity) != (
        shift.agent_id,
        shift.project_id,
        shift.starts_at,
        shift.ends_at,
        shift.activity,
    )
    if rebooked:
        await _check_booking(session, ctx, booking, agent_changed=agent_id != shift.agent_id)
    values: dict[str, Any] = {
        "agent_id": agent_id,
        "project_id": project.id,
        "client_id": project.client_id,
        "starts_at": booking.starts_at,
        "ends_at": booking.ends_at,
        "activity": booking.activity,
        "version": shift.version + 1,
        "updated_at": utcnow(),
    }
    values.update({k: changes[k] for k in ("note", "external_id") if k in changes})
    await _save_booking(session, ctx, booking, shift, values, new=False)
    return shift


async def delete_shift(
    session: AsyncSession, ctx: TenantContext, shift_id: uuid.UUID, if_match: str | None
) -> None:
    shift = ensure_visible(await repo.get_shift(session, ctx, shift_id, for_update=True), "shift")
    if if_match is not None:
        check_if_match(if_match, shift.version)
    await session.delete(shift)
    await session.flush()


# --- imports -----------------------------------------------------------------------

_MESSAGES = {
    "unknown_agent": ("agent", "No such agent."),
    "agent_inactive": ("agent", "The agent is inactive."),
    "unknown_project": ("project", "No such project."),
    "project_inactive": ("project", "The project is inactive."),
    "not_certified": (
        "project",
        "The agent is not certified for this project on the shift's date (only training may be booked).",
    ),
}


_BOOKING_STATE = frozenset({"agent_inactive", "project_inactive", "not_certified"})


async def import_shifts(
    session: AsyncSession,
    ctx: TenantContext,
    parsed: Parsed,
    *,
    mode: ImportMode,
    agent_system: str | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Check every row against the database and the file, then write (see
    the module docstring). Raises `ImportRejected` (422, with every problem)
    when `all_or_nothing` finds any. A `dry_run` writes in a savepoint and rolls
    it back: the same answer (the write's own checks included), nothing stored,
    nothing audited."""
    rows = parsed.rows
    problems = list(parsed.problems)
    clock = _Clock()

    refs = sorted({r.agent_ref for r in rows if r.agent_id is None})
    owners = await repo.resolve_external_agents(session, ctx, refs, agent_system)
    for r in rows:
        if r.agent_id is not None:
            continue
        found = owners.get(r.agent_ref, [])
        if len(found) == 1:
            r.agent_id = found[0]
        elif not found:
            problems.append(
                RowProblem(
                    r.row, "unknown_agent", "No agent has this id or external id.", "agent", r.line
                )
            )
        else:
            problems.append(
                RowProblem(
                    r.row,
                    "ambiguous_agent",
                    "Several agents have this external id in different systems; pass agent_system.",
                    "agent",
                    r.line,
                )
            )

    projects = await repo.import_projects(session, ctx, sorted({r.project_id for r in rows}))
    for r in rows:
        project = projects.get(r.project_id)
        if project is None or project.status != "active":
            code = "unknown_project" if project is None else "project_inactive"
            field, message = _MESSAGES[code]
            problems.append(RowProblem(r.row, code, message, field, r.line))
    problems += duplicate_problems(rows)
    lines: dict[int, int | None] = {}

    def line_of(row_no: int) -> int | None:
        # Built when a problem needs it: a clean file never pays for it.
        if not lines:
            lines.update((r.row, r.line) for r in rows)
        return lines[row_no]

    clock.mark("prepare")
    await repo.stage_rows(session, rows, projects)
    clock.mark("stage")
    overlapping = set(await repo.stage_overlapping_agents(session))
    if overlapping:
        suspects = [r for r in rows if r.agent_id in overlapping]
        if len(suspects) > THREAD_ROWS:
            problems += await asyncio.to_thread(overlap_problems, suspects)
        else:
            problems += overlap_problems(suspects)
    for row_no, code in await repo.stage_problems(session, ctx):
        field, message = _MESSAGES[code]
        problems.append(RowProblem(row_no, code, message, field, line_of(row_no)))
    # A row that repeats its stored shift exactly changes nothing, so it is no new
    # booking (as a PATCH resending it): an agent, certification or project that
    # changed state since does not refuse it, and a re-import stays idempotent.
    state_rows = {p.row for p in problems if p.code in _BOOKING_STATE}
    unchanged = await repo.stage_unchanged(session, ctx, sorted(state_rows))
    if unchanged:
        problems[:] = [p for p in problems if not (p.code in _BOOKING_STATE and p.row in unchanged)]
    # External ids are unique per tenant: a row may not take over a shift the
    # caller cannot see (a supervisor's other projects).
    scoped_caller = ctx.project_ids is not None or ctx.client_id is not None
    for row_no, project_id, client_id in (
        await repo.stage_external_ids(session, ctx) if scoped_caller else []
    ):
        if not _may_see(ctx, project_id, client_id):
            problems.append(
                RowProblem(
                    row_no,
                    "external_id_taken",
                    "Another shift of this tenant has this external_id.",
                    "external_id",
                    line_of(row_no),
                )
            )
    seen_clashes: set[tuple[int, uuid.UUID]] = set()

    def add_clashes(found: list[tuple[int, Clash]]) -> int:
        added = 0
        for row_no, clash in found:
            if (row_no, clash.id) in seen_clashes:
                continue
            seen_clashes.add((row_no, clash.id))
            view = clash_view(ctx, clash)
            problems.append(
                RowProblem(
                    row_no,
                    "overlaps_shift",
                    f"The agent already has shift {clash.id} [{view['start']}, {view['end']}).",
                    "start",
                    line_of(row_no),
                    shift_id=clash.id,
                    shift_start=clash.starts_at,
                    shift_end=clash.ends_at,
                    project_id=uuid.UUID(view["project_id"]) if view["project_id"] else None,
                )
            )
            added += 1
        return added

    add_clashes(await repo.stage_clashes(session, ctx, only_ok=False))

    rejected_rows = {p.row for p in problems}
    clock.mark("check")
    if problems and mode == "all_or_nothing":
        raise ImportRejected(
            f"{len(rejected_rows)} of {parsed.total} rows have problems; nothing was written.",
            **_report(
                parsed, mode, problems, rejected_rows, 0, 0, written=False, timings=clock.laps
            ).model_dump(),
        )
    if mode == "valid_rows":
        # A rejected row that would have replaced a stored shift (same external id)
        # leaves that shift in place, and the rows still to be written may clash with it.
        marked: set[int] = set()
        while True:
            await repo.mark_rejected(session, sorted(rejected_rows - marked))
            marked |= rejected_rows
            if not add_clashes(await repo.stage_clashes(session, ctx, only_ok=True)):
                break
            rejected_rows = {p.row for p in problems}
        clock.mark("check")

    try:
        if dry_run:
            async with session.begin_nested() as trial:
                inserted, updated = await repo.write_staged(session, ctx)
                await trial.rollback()
        else:
            inserted, updated = await repo.write_staged(session, ctx)
    except DBAPIError as exc:
        if violation_of(exc).sqlstate in {
            EXCLUSION_VIOLATION,
            DEADLOCK_DETECTED,
            UNIQUE_VIOLATION,
            FOREIGN_KEY_VIOLATION,
        }:
            raise ScheduleChanged(
                "A shift booked (or an external id taken, or an agent deleted) while this import"
                " ran clashes with it; nothing was written. Retry.",
            ) from exc
        raise
    await repo.drop_stage(session)
    clock.mark("write")
    report = _report(
        parsed, mode, problems, rejected_rows, inserted, updated, written=True, timings=clock.laps
    )
    if dry_run:
        return report.model_copy(update={"written": False, "dry_run": True})
    await record_event(
        session,
        ctx,
        "shifts.import",
        "shifts",
        None,
        mode=mode,
        rows=report.rows,
        inserted=inserted,
        updated=updated,
        unchanged=report.unchanged,
        rejected=report.rejected,
    )
    return report


class _Clock:
    """Milliseconds spent in each phase of an import (a slow import says where)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def mark(self, phase: str) -> None:
        now = time.perf_counter()
        self.laps[phase] = round(self.laps.get(phase, 0.0) + (now - self._last) * 1000, 1)
        self._last = now


def _report(
    parsed: Parsed,
    mode: ImportMode,
    problems: list[RowProblem],
    rejected_rows: set[int],
    inserted: int,
    updated: int,
    *,
    written: bool,
    timings: dict[str, float],
) -> ImportReport:
    valid = parsed.total - len(rejected_rows)
    problems.sort(key=lambda p: (p.row, p.code, p.other_row or 0, str(p.shift_id or "")))
    return ImportReport(
        mode=mode,
        rows=parsed.total,
        valid=valid,
        rejected=len(rejected_rows),
        inserted=inserted,
        updated=updated,
        unchanged=valid - inserted - updated if written else 0,
        written=written,
        errors=[p.as_dict() for p in problems],
        timings_ms=timings,
    )


# --- schedule views ---------------------------------------------------------------


def _check_window(first: date, last: date) -> None:
    if last < first:
        raise InvalidWindow("'to' is before 'from'.", field="to")
    if (last - first).days + 1 > MAX_WINDOW_DAYS:
        raise InvalidWindow(f"At most {MAX_WINDOW_DAYS} days at once.", field="to")


def _scheduled(shift: Shift, agent_name: str, project_name: str, tz: ZoneInfo) -> ScheduledShift:
    view: ScheduledShift = ScheduledShift.of(
        shift,
        agent_name=agent_name,
        project_name=project_name,
        hours=round((shift.ends_at - shift.starts_at).total_seconds() / 3600, 4),
    )
    view.start, view.end = shift.starts_at.astimezone(tz), shift.ends_at.astimezone(tz)
    return view


async def project_schedule(
    session: AsyncSession,
    ctx: TenantContext,
    project_id: uuid.UUID,
    first: date,
    last: date,
    interval_minutes: int = 15,
) -> ProjectSchedule:
    """A project's shifts and its coverage per interval, in its own time zone."""
    _check_window(first, last)
    if interval_minutes not in INTERVALS:
        raise InvalidWindow("interval: 15, 30 or 60 minutes.", field="interval")
    project = await repo.get_project(session, ctx, project_id)
    if project is None:
        raise NotFound("No such project.")
    tz = zone(project.time_zone)
    start, end = day_window(first, last, tz)
    found = await repo.shifts_in_window(session, ctx, start, end, project_id=project.id)
    step = timedelta(minutes=interval_minutes)
    on_queue = [(s.starts_at, s.ends_at) for s, _, _ in found if s.activity == "on_queue"]
    every = [(s.starts_at, s.ends_at) for s, _, _ in found]
    intervals = coverage([on_queue, every], start, end, tz, step)
    step_s = step.total_seconds()
    return ProjectSchedule(
        project_id=project.id,
        time_zone=project.time_zone,
        from_=first,
        to=last,
        interval_minutes=interval_minutes,
        shifts=[_scheduled(s, a, p, tz) for s, a, p in found],
        coverage=[
            CoverageInterval(
                start=i.start,
                end=i.end,
                label=i.start.strftime("%H:%M"),
                on_queue=round(i.seconds[0] / step_s, 2),
                scheduled=round(i.seconds[1] / step_s, 2),
            )
            for i in intervals
        ],
    )


async def agent_schedule(
    session: AsyncSession,
    ctx: TenantContext,
    agent_id: uuid.UUID,
    first: date,
    last: date,
    time_zone: str | None = None,
) -> AgentSchedule:
    """An agent's shifts across projects and minutes per local day (the
    tenant's time zone unless another is asked for)."""
    _check_window(first, last)
    agent = await repo.get_agent(session, ctx, agent_id)
    if agent is None:
        raise NotFound("No such agent.")
    name = time_zone or await repo.tenant_time_zone(session, ctx)
    tz = zone(name)
    start, end = day_window(first, last, tz)
    found = await repo.shifts_in_window(session, ctx, start, end, agent_id=agent.id)
    per_day = seconds_per_day(
        [(s.starts_at, s.ends_at, s.activity) for s, _, _ in found], first, last, tz
    )
    return AgentSchedule(
        agent_id=agent.id,
        time_zone=name,
        from_=first,
        to=last,
        shifts=[_scheduled(s, a, p, tz) for s, a, p in found],
        days=[
            DayTotal(
                date=day,
                scheduled_minutes=sum(kinds.values()) / 60,
                minutes_by_activity={k: v / 60 for k, v in sorted(kinds.items())},
            )
            for day, kinds in per_day.items()
        ],
    )


SHIFT_COLUMNS = (
    "shift_id",
    "agent_id",
    "agent_name",
    "project_id",
    "project_name",
    "date",
    "start",
    "end",
    "hours",
    "activity",
    "note",
    "external_id",
)


def _shift_rows(shifts: list[ScheduledShift]) -> list[list[Any]]:
    return [
        [
            s.id,
            s.agent_id,
            s.agent_name,
            s.project_id,
            s.project_name,
            s.start.date().isoformat(),
            s.start.isoformat(),
            s.end.isoformat(),
            s.hours,
            s.activity,
            s.note,
            s.external_id,
        ]
        for s in shifts
    ]


async def schedule_csv(schedule: ProjectSchedule | AgentSchedule, view: str = "shifts") -> str:
    """A schedule as CSV (cells neutralized against formula injection)."""
    if view == "coverage" and isinstance(schedule, ProjectSchedule):
        header: tuple[str, ...] = ("start", "end", "label", "on_queue", "scheduled")
        rows: list[list[Any]] = [
            [c.start.isoformat(), c.end.isoformat(), c.label, c.on_queue, c.scheduled]
            for c in schedule.coverage
        ]
    else:
        header, rows = SHIFT_COLUMNS, _shift_rows(schedule.shifts)
    return await asyncio.to_thread(write_csv, header, rows)


# --- reading imports ------------------------------------------------------------------


def parse_batch(body: bytes) -> tuple[ShiftBatch, Parsed]:
    """A JSON import body (blocking: call it in a thread)."""
    try:
        batch = ShiftBatch.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from exc
    return batch, _file(parse_json_rows, batch.rows)


def _file(parse: Callable[[Any], Parsed], source: Any) -> Parsed:
    try:
        return parse(source)
    except FileProblem as exc:
        raise InvalidImportFile(str(exc), reason=exc.code, **exc.extra) from exc


async def parse_csv_stream(chunks: AsyncIterator[bytes], max_bytes: int) -> Parsed:
    """A CSV body as it streams in: spooled (memory, then disk past 8 MiB)
    and parsed in a thread."""
    with tempfile.SpooledTemporaryFile(max_size=8 << 20) as spool:
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(
                    f"A schedule file is at most {max_bytes} bytes.", limit_bytes=max_bytes
                )
            await asyncio.to_thread(spool.write, chunk)
        await asyncio.to_thread(spool.seek, 0)
        return await asyncio.to_thread(_file, parse_csv, spool)


async def parse_csv_file(binary: IO[bytes]) -> Parsed:
    return await asyncio.to_thread(_file, parse_csv, binary)
