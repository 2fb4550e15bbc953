"""Schedule rows in and out, no I/O: parsing an import (JSON rows or CSV
text) into typed rows and per-row problems, and writing CSV that a
spreadsheet opens without running anything.

Row numbers are 1-based data rows (the CSV header is not counted); for CSV
the `line` where the record starts is given too (the header is line 1).
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import IO, Any

from service.core.time import supported_year
from service.shifts.intervals import MAX_SHIFT, Span, find_overlaps
from service.shifts.models import ACTIVITIES

MAX_ROWS = 50_000
COLUMNS = ("agent", "project", "start", "end", "activity", "note", "external_id")
REQUIRED = ("agent", "project", "start", "end", "activity")
MAX_NOTE = 1000
MAX_EXTERNAL_ID = 200


@dataclass(slots=True)
class RowProblem:
    row: int
    code: str
    message: str
    field: str | None = None
    line: int | None = None
    other_row: int | None = None
    shift_id: uuid.UUID | None = None
    shift_start: datetime | None = None
    shift_end: datetime | None = None
    project_id: uuid.UUID | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"row": self.row, "code": self.code, "message": self.message}
        for key in ("field", "line", "other_row"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.shift_id is not None:
            out["shift"] = {
                "id": str(self.shift_id),
                "project_id": str(self.project_id) if self.project_id else None,
                "start": self.shift_start.isoformat() if self.shift_start else None,
                "end": self.shift_end.isoformat() if self.shift_end else None,
            }
        return out


@dataclass(slots=True)
class ImportRow:
    row: int
    line: int | None
    agent_ref: str
    agent_id: uuid.UUID | None  # set when the reference is an id, or once resolved
    project_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime
    activity: str
    note: str | None
    external_id: str | None


@dataclass
class Parsed:
    rows: list[ImportRow] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    total: int = 0


class FileProblem(ValueError):
    """The file as a whole cannot be read (not a row of it)."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.extra = extra


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _timestamp(value: str, name: str, row: int, line: int | None) -> datetime | RowProblem:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return RowProblem(
            row, "invalid_timestamp", f"{name}: not an ISO 8601 timestamp.", name, line
        )
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        return RowProblem(
            row,
            "naive_timestamp",
            f"{name}: give an offset or Z (e.g. 2026-03-08T08:00:00-05:00).",
            name,
            line,
        )
    try:
        supported_year(parsed, name)
    except ValueError as exc:
        return RowProblem(row, "invalid_timestamp", f"{exc}.", name, line)
    return parsed


def parse_row(
    values: Mapping[str, Any], row: int, line: int | None = None
) -> ImportRow | list[RowProblem]:
    """One row from its cells (strings, or None for empty)."""
    problems: list[RowProblem] = []
    cells: dict[str, str | None] = {}
    for key, value in values.items():
        if key not in COLUMNS:
            problems.append(RowProblem(row, "unknown_field", f"Unknown column {key!r}.", key, line))
            continue
        if value is None:
            cells[key] = None
        elif isinstance(value, str):
            if "\x00" in value:
                # PostgreSQL text cannot hold U+0000.
                problems.append(
                    RowProblem(row, "invalid_value", f"{key}: contains a NUL character.", key, line)
                )
                continue
            cells[key] = value.strip() or None
        else:
            problems.append(
                RowProblem(row, "invalid_value", f"{key}: expected a string.", key, line)
            )
    for name in REQUIRED:
        if cells.get(name) is None and not any(p.field == name for p in problems):
            problems.append(RowProblem(row, "missing_value", f"{name} is required.", name, line))
    if problems:
        return problems
    agent_ref = cells["agent"] or ""
    project_text = cells["project"] or ""
    project_id = _uuid(project_text)
    if project_id is None:
        problems.append(
            RowProblem(row, "invalid_project", "project: not a project id.", "project", line)
        )
    start = _timestamp(cells["start"] or "", "start", row, line)
    end = _timestamp(cells["end"] or "", "end", row, line)
    for value in (start, end):
        if isinstance(value, RowProblem):
            problems.append(value)
    activity = cells["activity"] or ""
    if activity not in ACTIVITIES:
        problems.append(
            RowProblem(
                row,
                "unknown_activity",
                f"activity: one of {', '.join(ACTIVITIES)}.",
                "activity",
                line,
            )
        )
    note, external_id = cells.get("note"), cells.get("external_id")
    if note is not None and len(note) > MAX_NOTE:
        problems.append(
            RowProblem(row, "note_too_long", f"note: at most {MAX_NOTE} characters.", "note", line)
        )
    if external_id is not None and len(external_id) > MAX_EXTERNAL_ID:
        problems.append(
            RowProblem(
                row,
                "external_id_too_long",
                f"external_id: at most {MAX_EXTERNAL_ID} characters.",
                "external_id",
                line,
            )
        )
    if isinstance(start, datetime) and isinstance(end, datetime):
        problem = range_problem(start, end, row, line)
        if problem is not None:
            problems.append(problem)
    if (
        problems
        or project_id is None
        or not isinstance(start, datetime)
        or not isinstance(end, datetime)
    ):
        return problems
    return ImportRow(
        row=row,
        line=line,
        agent_ref=agent_ref,
        agent_id=_uuid(agent_ref),
        project_id=project_id,
        starts_at=start,
        ends_at=end,
        activity=activity,
        note=note,
        external_id=external_id,
    )


def range_problem(
    start: datetime, end: datetime, row: int, line: int | None = None
) -> RowProblem | None:
    if end <= start:
        return RowProblem(row, "invalid_range", "end must be after start.", "end", line)
    if end - start > MAX_SHIFT:
        return RowProblem(row, "shift_too_long", "A shift lasts at most 24 hours.", "end", line)
    return None


def _collect(parsed: Parsed, result: ImportRow | list[RowProblem]) -> None:
    if isinstance(result, ImportRow):
        parsed.rows.append(result)
    else:
        parsed.problems.extend(result)


def parse_json_rows(rows: Sequence[Mapping[str, Any]]) -> Parsed:
    if len(rows) > MAX_ROWS:
        raise FileProblem("too_many_rows", f"At most {MAX_ROWS} rows per import.", limit=MAX_ROWS)
    parsed = Parsed(total=len(rows))
    for number, values in enumerate(rows, start=1):
        _collect(parsed, parse_row(values, number))
    return parsed


def parse_csv(binary: IO[bytes]) -> Parsed:
    """Rows of a CSV file with a header naming the columns (any order;
    `note` and `external_id` optional)."""
    # utf-8-sig: a spreadsheet's byte-order mark is not part of the first column's name.
    text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
    try:
        return _parse_csv_text(text)
    except UnicodeDecodeError as exc:
        raise FileProblem("invalid_encoding", "The file is not UTF-8 text.") from exc
    finally:
        text.detach()  # the caller owns the binary file


def _parse_csv_text(text: IO[str]) -> Parsed:
    reader = csv.reader(text, strict=True)
    try:
        header = next(reader)
    except StopIteration as exc:
        raise FileProblem("empty_file", "The file is empty: a header row is required.") from exc
    except csv.Error as exc:
        raise FileProblem("invalid_csv", f"Line 1: {exc}.", line=1) from exc
    names = [h.strip().lower() for h in header]
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise FileProblem(
            "unknown_column",
            f"Unknown column(s): {', '.join(map(repr, unknown))}.",
            columns=COLUMNS,
        )
    missing = [n for n in REQUIRED if n not in names]
    if missing:
        raise FileProblem(
            "missing_column", f"Missing column(s): {', '.join(missing)}.", columns=COLUMNS
        )
    if len(set(names)) != len(names):
        raise FileProblem("duplicate_column", "A column appears twice in the header.")
    parsed = Parsed()
    number = 0
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise FileProblem(
                "invalid_csv", f"Line {reader.line_num}: {exc}.", line=reader.line_num
            ) from exc
        if not any(c.strip() for c in cells):
            continue  # blank lines, as spreadsheets leave at the end
        number += 1
        if number > MAX_ROWS:
            raise FileProblem(
                "too_many_rows", f"At most {MAX_ROWS} rows per import.", limit=MAX_ROWS
            )
        if len(cells) != len(names):
            parsed.problems.append(
                RowProblem(
                    number,
                    "wrong_column_count",
                    f"{len(cells)} cells where the header has {len(names)}.",
                    None,
                    line,
                )
            )
            continue
        _collect(parsed, parse_row(dict(zip(names, cells, strict=True)), number, line))
    parsed.total = number
    return parsed


# --- CSV out ---------------------------------------------------------------------

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def safe_cell(value: Any) -> str | int | float | Decimal:
    """A cell a spreadsheet shows as text instead of running: text starting
    with `= + - @`, tab or CR gets a leading `'`. Numbers, and text that is
    just a number (`-2.5`), stay numbers."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float | Decimal):
        return value
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    if text.startswith(_TRIGGERS) and not _PLAIN_NUMBER.match(text):
        return "'" + text
    return text


def write_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([safe_cell(h) for h in header])
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
    return out.getvalue()


# --- checks of a file against itself --------------------------------------------------

MAX_PARTNERS = 10  # other rows named per row: enough to act on, bounded for a pathological file


def in_file_problems(rows: Sequence[ImportRow]) -> list[RowProblem]:
    """Rows that repeat an external id, and rows of one agent that overlap
    each other (both rows of each pair are reported)."""
    return duplicate_problems(rows) + overlap_problems(rows)


def duplicate_problems(rows: Sequence[ImportRow]) -> list[RowProblem]:
    problems: list[RowProblem] = []
    # One dict entry per id and a list only for an id seen twice: a list per
    # row is 100 000 allocations (and the garbage collections they trigger)
    # for a file with no duplicate at all.
    first: dict[str, ImportRow] = {}
    repeated: dict[str, list[ImportRow]] = {}
    for r in rows:
        if r.external_id is not None:
            seen = first.setdefault(r.external_id, r)
            if seen is not r:
                repeated.setdefault(r.external_id, [seen]).append(r)
    for same in repeated.values():
        for dup in same:
            twin = same[1] if dup is same[0] else same[0]
            problems.append(
                RowProblem(
                    dup.row,
                    "duplicate_external_id",
                    f"external_id {dup.external_id!r} is also in row {twin.row}.",
                    "external_id",
                    dup.line,
                    other_row=twin.row,
                )
            )
    return problems


def overlap_problems(rows: Sequence[ImportRow]) -> list[RowProblem]:
    problems: list[RowProblem] = []
    by_row = {r.row: r for r in rows}
    spans = [Span(r.row, r.agent_id, r.starts_at, r.ends_at) for r in rows if r.agent_id]
    named: dict[int, int] = {}
    for a, b in find_overlaps(spans, limit=MAX_PARTNERS):
        for this, other in ((b, a), (a, b)):
            if named.get(this, 0) >= MAX_PARTNERS:
                continue
            named[this] = named.get(this, 0) + 1
            mine, clash = by_row[this], by_row[other]
            problems.append(
                RowProblem(
                    this,
                    "overlaps_row",
                    f"The agent is also booked in row {other} "
                    f"[{clash.starts_at.isoformat()}, {clash.ends_at.isoformat()}).",
                    "start",
                    mine.line,
                    other_row=other,
                )
            )
    return problems
