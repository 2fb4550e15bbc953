"""Reading import rows and writing safe CSV, without I/O."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime

import pytest

from service.shifts.rows import (
    FileProblem,
    ImportRow,
    duplicate_problems,
    in_file_problems,
    parse_csv,
    parse_json_rows,
    parse_row,
    safe_cell,
    write_csv,
)

PROJECT = str(uuid.uuid4())


def good(**change: object) -> dict[str, object]:
    return {
        "agent": "Agent/1",
        "project": PROJECT,
        "start": "2026-03-08T08:00:00-05:00",
        "end": "2026-03-08T12:00:00-04:00",
        "activity": "on_queue",
        **change,
    }


def codes(result: ImportRow | list[object]) -> list[str]:
    assert isinstance(result, list)
    return sorted(p.code for p in result)  # type: ignore[attr-defined]


def test_a_good_row() -> None:
    result = parse_row(good(note="  hi ", external_id="x-1"), 1)
    assert isinstance(result, ImportRow)
    assert result.agent_id is None
    assert result.starts_at == datetime(2026, 3, 8, 13, tzinfo=UTC)
    assert (
        result.ends_at - result.starts_at == datetime(2026, 3, 8, 16, tzinfo=UTC) - result.starts_at
    )
    assert result.note == "hi"
    agent = uuid.uuid4()
    by_id = parse_row(good(agent=str(agent)), 1)
    assert isinstance(by_id, ImportRow)
    assert by_id.agent_id == agent


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"start": "2026-03-08T08:00:00"}, ["naive_timestamp"]),
        ({"start": "8am"}, ["invalid_timestamp"]),
        ({"end": "2026-03-08T07:00:00-05:00"}, ["invalid_range"]),
        ({"end": "2026-03-09T09:01:00-04:00"}, ["shift_too_long"]),
        ({"activity": "lunch"}, ["unknown_activity"]),
        ({"project": "P-1"}, ["invalid_project"]),
        ({"agent": " "}, ["missing_value"]),
        ({"note": "x" * 1001}, ["note_too_long"]),
        ({"external_id": "x" * 201}, ["external_id_too_long"]),
        ({"colour": "red"}, ["unknown_field"]),
        ({"agent": 12}, ["invalid_value"]),
        (
            {"start": "2026-03-08T08:00:00", "activity": "nap"},
            ["naive_timestamp", "unknown_activity"],
        ),
    ],
)
def test_bad_rows_name_their_problems(change: dict[str, object], expected: list[str]) -> None:
    assert codes(parse_row(good(**change), 7)) == expected


def test_json_rows_are_numbered_from_one() -> None:
    parsed = parse_json_rows([good(), good(activity="nap"), good()])
    assert parsed.total == 3
    assert [r.row for r in parsed.rows] == [1, 3]
    assert [(p.row, p.field) for p in parsed.problems] == [(2, "activity")]


def test_csv_header_order_bom_blank_lines_and_line_numbers() -> None:
    data = (
        "\ufeffEnd,Start,Agent,Project,Activity,Note\r\n"
        f'2026-03-08T12:00:00Z,2026-03-08T08:00:00Z,A1,{PROJECT},break,"multi\nline"\r\n'
        "\r\n"
        f"2026-03-08T12:00:00Z,2026-03-08T08:00:00,A2,{PROJECT},break,\r\n"
        f"2026-03-08T12:00:00Z,2026-03-08T08:00:00Z,A3,{PROJECT}\r\n"
    ).encode()
    parsed = parse_csv(io.BytesIO(data))
    assert parsed.total == 3
    assert [(r.row, r.line, r.agent_ref, r.note) for r in parsed.rows] == [
        (1, 2, "A1", "multi\nline")
    ]
    assert [(p.row, p.line, p.code) for p in parsed.problems] == [
        (2, 5, "naive_timestamp"),
        (3, 6, "wrong_column_count"),
    ]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty_file"),
        (b"agent,project,start,end\r\n", "missing_column"),
        (b"agent,project,start,end,activity,shoe\r\n", "unknown_column"),
        (b"agent,project,start,end,activity,start\r\n", "duplicate_column"),
        (b"agent,project,start,end,activity\r\n\xff\xfe,b,c,d,e\r\n", "invalid_encoding"),
    ],
)
def test_unreadable_files(data: bytes, code: str) -> None:
    with pytest.raises(FileProblem) as raised:
        parse_csv(io.BytesIO(data))
    assert raised.value.code == code


def test_in_file_duplicates_and_overlaps() -> None:
    agent = uuid.uuid4()

    def row(n: int, start: str, end: str, external_id: str | None = None) -> ImportRow:
        return ImportRow(
            n,
            n + 1,
            "a",
            agent,
            uuid.UUID(PROJECT),
            datetime.fromisoformat(start),
            datetime.fromisoformat(end),
            "on_queue",
            None,
            external_id,
        )

    rows = [
        row(1, "2026-03-08T08:00Z", "2026-03-08T12:00Z", "x"),
        row(2, "2026-03-08T12:00Z", "2026-03-08T16:00Z", "x"),
        row(3, "2026-03-08T15:00Z", "2026-03-08T17:00Z"),
    ]
    found = {(p.row, p.code, p.other_row, p.line) for p in in_file_problems(rows)}
    assert found == {
        (1, "duplicate_external_id", 2, 2),
        (2, "duplicate_external_id", 1, 3),
        (2, "overlaps_row", 3, 3),
        (3, "overlaps_row", 2, 4),
    }


def test_every_repeat_of_an_external_id_is_reported() -> None:
    def row(n: int, external_id: str | None) -> ImportRow:
        start = datetime(2026, 3, 2, n, tzinfo=UTC)
        return ImportRow(
            n,
            None,
            "a",
            uuid.uuid4(),
            uuid.UUID(PROJECT),
            start,
            start,
            "on_queue",
            None,
            external_id,
        )

    rows = [row(1, "x"), row(2, "y"), row(3, "x"), row(4, None), row(5, None), row(6, "x")]
    found = {(p.row, p.code, p.other_row) for p in duplicate_problems(rows)}
    # The first row names its first repeat; every repeat names the first row.
    assert found == {
        (1, "duplicate_external_id", 3),
        (3, "duplicate_external_id", 1),
        (6, "duplicate_external_id", 1),
    }
    assert duplicate_problems([row(1, "x"), row(2, "y"), row(3, None), row(4, None)]) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+1 555", "'+1 555"),
        ("-cmd|' /C calc'!A0", "'-cmd|' /C calc'!A0"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("-2.5", "-2.5"),
        ("+3", "+3"),
        ("1e-3", "1e-3"),
        ("plain", "plain"),
        (-2.5, -2.5),
        (4, 4),
        (None, ""),
        ("a=b", "a=b"),
    ],
)
def test_safe_cells(value: object, expected: object) -> None:
    assert safe_cell(value) == expected


def test_written_csv_round_trips_with_quotes() -> None:
    text = write_csv(["name", "hours"], [['=HYPERLINK("x")', 4.5], ["a,b", -1]])
    assert text == 'name,hours\r\n"\'=HYPERLINK(""x"")",4.5\r\n"a,b",-1\r\n'
