"""Generic CSV import through a column mapping: encodings, quoting, time zones, bad rows."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.contacts.parsers.csv_records import CsvMapping, CsvRecordParser
from service.contacts.records import ContactRecord, ParseIssue

COLUMNS = {
    "external_id": "Call ID",
    "queue_key": "Queue",
    "queued_at": "Start",
    "answered_at": "Answered",
    "abandoned_at": "Abandoned",
    "ended_at": "Ended",
    "outcome": "Result",
    "customer_key": "Caller",
    "agent_key": "Agent",
    "talk_s": "Talk",
    "csat": "CSAT",
}
HEADER = "Call ID,Queue,Start,Answered,Abandoned,Ended,Result,Caller,Agent,Talk,CSAT,Notes"


def mapping(**changes: object) -> CsvMapping:
    options: dict[str, object] = {"source": "csv:test", "columns": COLUMNS, "channel": "voice"}
    options.update(changes)
    return CsvMapping(**options)  # type: ignore[arg-type]


def parse(
    data: bytes, m: CsvMapping | None = None
) -> tuple[list[ContactRecord], list[ParseIssue], CsvRecordParser]:
    parser = CsvRecordParser(m or mapping())
    items = list(parser.parse(io.BytesIO(data), "t.csv"))
    return (
        [i for i in items if isinstance(i, ContactRecord)],
        [i for i in items if isinstance(i, ParseIssue)],
        parser,
    )


def test_bom_crlf_quoted_newlines_and_formula_looking_cells() -> None:
    data = (
        "\ufeff" + HEADER + "\r\n"
        # A note spanning two physical lines (2-3), a caller that looks like a formula.
        "c1,Sales,2024-03-01T09:00:00+01:00,2024-03-01T09:00:15+01:00,,2024-03-01T09:05:15+01:00,"
        'answered,=1+2,@agent,0:05:00,5,"first line\r\nsecond, with a comma"\r\n'
        'c2,Sales,2024-03-01T09:01:00Z,,2024-03-01T09:01:30Z,2024-03-01T09:01:30Z,abandoned,+4915112345678,,,,"say ""hi"""\r\n'
        "c3,Sales,2024-03-01T09:02:00Z,2024-03-01T09:02:04Z,,,answered,-SUM(A1),a2,75.5,4,\r\n"
    ).encode()
    found, issues, parser = parse(data)
    assert issues == []
    c1, c2, c3 = found
    assert c1.external_id == "c1"  # no BOM glued to the first header or value
    assert c1.queued_at == datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
    assert c1.answered_at == datetime(2024, 3, 1, 8, 0, 15, tzinfo=UTC)
    assert (c1.wait_s, c1.talk_s, c1.csat) == (15.0, 300.0, 5)
    assert (c1.customer_key, c1.agent_key) == ("=1+2", "@agent")
    assert c1.raw_ref == "t.csv:2-3"
    assert (c2.outcome, c2.wait_s, c2.customer_key) == ("abandoned", 30.0, "+4915112345678")
    assert c2.abandoned_at == datetime(2024, 3, 1, 9, 1, 30, tzinfo=UTC)
    assert c2.raw_ref == "t.csv:4"
    assert (c3.customer_key, c3.talk_s, c3.raw_ref) == ("-SUM(A1)", 75.5, "t.csv:5")
    assert parser.stats.items == 3
    assert parser.stats.used["row"] == 3
    assert parser.stats.balanced()


BAD_ROWS = [
    # (our field named in the issue or None for the row, the row's cells before Notes)
    ("queued_at", "x,Q,2024-13-01T00:00:00Z,2024-03-01T10:00:05Z,,,answered,,,,"),
    ("queued_at", "x,Q,2024-03-01 10:00:00,2024-03-01T10:00:05Z,,,answered,,,,"),  # no offset
    ("csat", "x,Q,2024-03-01T10:00:00Z,2024-03-01T10:00:05Z,,,answered,,,,6"),
    (None, "x,Q,2024-03-01T10:00:00Z,2024-03-01T10:00:05Z,,,answered,,,,,extra"),
    ("outcome", "x,Q,2024-03-01T10:00:00Z,,,,lost,,,,"),
    ("answered_at", "x,Q,2024-03-01T10:00:00Z,,,,answered,,,,"),
    ("external_id", ",Q,2024-03-01T10:00:00Z,2024-03-01T10:00:05Z,,,answered,,,,"),
    ("talk_s", "x,Q,2024-03-01T10:00:00Z,2024-03-01T10:00:05Z,,,answered,,,-5,"),
    ("csat", "x,Q,2024-03-01T10:00:00Z,2024-03-01T10:00:05Z,,,answered,,,,=5"),
    ("answered_at", "x,Q,2024-03-01T10:00:00Z,2024-03-01T09:59:00Z,,,answered,,,,"),
]


def test_one_percent_bad_rows_are_each_reported_and_every_good_row_kept() -> None:
    lines = [HEADER]
    physical = 1  # the header's line
    expected: list[tuple[int, int, str | None]] = []
    good_ids = []
    bad_at = {100 * k + 37: k for k in range(10)}  # records 37, 137, …, 937
    for record in range(1, 1001):
        start = physical + 1
        # Every 7th row carries a two-line note, so lines and records drift apart.
        note = '"line one\nline two"' if record % 7 == 0 else "plain"
        if record in bad_at:
            field, cells = BAD_ROWS[bad_at[record]]
            cells = cells.replace("x,", f"bad{record},", 1)
            expected.append((record, start, field))
        else:
            cells = (
                f"id{record},Sales,2024-03-01T10:00:00Z,2024-03-01T10:00:{record % 60:02d}Z,,,"
                f"answered,caller{record},agent,60,4"
            )
            good_ids.append(f"id{record}")
        lines.append(f"{cells},{note}")
        physical = start + (1 if record % 7 == 0 else 0)
    data = ("\n".join(lines) + "\n").encode()

    found, issues, parser = parse(data)
    assert [r.external_id for r in found] == good_ids
    assert len(found) == 990
    assert [(i.record, i.line) for i in issues] == [(r, line) for r, line, _ in expected]
    assert [i.field.split(" ")[0] if i.field else None for i in issues] == [
        f for _, _, f in expected
    ]
    assert "no UTC offset" in issues[1].reason
    assert parser.stats.items == 1000
    assert parser.stats.malformed == 10
    assert parser.stats.balanced()


def test_issue_names_our_field_and_their_column() -> None:
    data = (HEADER + "\n" + BAD_ROWS[2][1] + ",n\n").encode()
    _, (issue,), _ = parse(data)
    assert issue.field == "csat ('CSAT')"
    assert issue.excerpt == "6"
    assert str(issue) == "t.csv record 1 line 2, field csat ('CSAT'): 6 is outside 1-5: '6'"


def zoned_rows(*starts: str) -> bytes:
    rows = [f"z{i},Q,{s},,{s},,abandoned,,,,,n" for i, s in enumerate(starts)]
    return (HEADER + "\n" + "\n".join(rows) + "\n").encode()


def test_naive_timestamps_take_the_named_zone_and_dst_gaps_are_refused() -> None:
    data = zoned_rows("2024-07-01 12:00:00", "2024-03-31 02:30:00", "2024-10-27 02:30:00")
    found, issues, _ = parse(data, mapping(time_zone="Europe/Berlin"))
    (summer,) = found
    assert summer.queued_at == datetime(2024, 7, 1, 10, 0, tzinfo=UTC)  # CEST = UTC+2
    assert [(i.record, i.field) for i in issues] == [
        (2, "queued_at ('Start')"),
        (2, "abandoned_at ('Abandoned')"),
        (3, "queued_at ('Start')"),
        (3, "abandoned_at ('Abandoned')"),
    ]
    assert "does not exist" in issues[0].reason  # 02:00 -> 03:00 on 31 March
    assert "happens twice" in issues[2].reason  # 03:00 -> 02:00 on 27 October


@pytest.mark.parametrize(("choice", "hour"), [("earlier", 0), ("later", 1)])
def test_the_repeated_hour_can_be_accepted_explicitly(choice: str, hour: int) -> None:
    found, issues, _ = parse(
        zoned_rows("2024-10-27 02:30:00"),
        mapping(time_zone="Europe/Berlin", ambiguous_times=choice),
    )
    assert issues == []
    assert found[0].queued_at == datetime(2024, 10, 27, hour, 30, tzinfo=UTC)


def test_explicit_formats_epochs_and_durations() -> None:
    columns = {
        "external_id": "id",
        "queue_key": "q",
        "queued_at": "t",
        "answered_at": "a",
        "talk_s": "talk",
        "hold_s": "hold",
    }
    data = b"id,q,t,a,talk,hold\n1,Q,1709287200000,1709287212500,1500,1:02:03\n"
    (r,), issues, _ = parse(
        data,
        CsvMapping(
            source="s",
            columns=columns,
            timestamp_format="epoch_ms",
            duration_unit="ms",
            channel="chat",
        ),
    )
    assert issues == []
    # 1709287200 = 2024-03-01 10:00:00 UTC; the answer is 12.5 s later; outcome derived.
    assert (r.queued_at, r.wait_s, r.outcome) == (
        datetime(2024, 3, 1, 10, 0, tzinfo=UTC),
        12.5,
        "answered",
    )
    assert (r.talk_s, r.hold_s, r.channel) == (1.5, 3723.0, "chat")
    data = b"id,q,t,a,talk,hold\n1,Q,01/03/2024 10:00,01/03/2024 10:01,,\n"
    (r,), _, _ = parse(
        data,
        CsvMapping(
            source="s",
            columns=columns,
            timestamp_format="%d/%m/%Y %H:%M",
            time_zone="America/New_York",
            channel="voice",
        ),
    )
    assert r.queued_at == datetime(2024, 3, 1, 15, 0, tzinfo=UTC)  # EST = UTC-5


@pytest.mark.parametrize(
    ("cell", "seconds"),
    [("1:02:03", 3723.0), ("02:03", 123.0), ("125:30", 7530.0), ("0:00:07.5", 7.5)],
)
def test_clock_durations(cell: str, seconds: float) -> None:
    data = f"id,q,t,a,talk\n1,Q,2024-03-01T10:00:00Z,2024-03-01T10:00:05Z,{cell}\n"
    columns = {"external_id": "id", "queue_key": "q", "queued_at": "t", "answered_at": "a"}
    (r,), issues, _ = parse(
        data.encode(),
        CsvMapping(source="s", columns={**columns, "talk_s": "talk"}, channel="voice"),
    )
    assert (issues, r.talk_s) == ([], seconds)


@pytest.mark.parametrize("cell", ["1:-30", "0:-5", "1:75", "1:60:00", "1:-1:00"])
def test_clock_durations_with_a_negative_or_overflowing_part_are_refused(cell: str) -> None:
    """`1:-30` read as 60 - 30 = 30 s: a negative part is a broken cell, not a duration."""
    data = f"id,q,t,a,talk\n1,Q,2024-03-01T10:00:00Z,2024-03-01T10:00:05Z,{cell}\n"
    columns = {"external_id": "id", "queue_key": "q", "queued_at": "t", "answered_at": "a"}
    found, issues, _ = parse(
        data.encode(),
        CsvMapping(source="s", columns={**columns, "talk_s": "talk"}, channel="voice"),
    )
    assert found == []
    assert [(i.record, i.field) for i in issues] == [(1, "talk_s ('talk')")]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"timestamp_format": "%d/%m/%Y %H:%M"}, "naive timestamps are refused"),
        ({"time_zone": "Mars/Olympus"}, "unknown time zone"),
        ({"columns": {**COLUMNS, "mood": "Mood"}}, "unknown fields"),
        ({"columns": {"queue_key": "Queue", "queued_at": "Start", "outcome": "R"}}, "external_id"),
        ({"channel": None}, "channel"),
        ({"outcome_values": {"ANS": "won"}}, "outcome_values"),
    ],
)
def test_unusable_mappings_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mapping(**changes)


def test_a_mapped_column_missing_from_the_header_refuses_the_file() -> None:
    data = b"Call ID,Queue,Start\nc1,Q,2024-03-01T10:00:00Z\n"
    found, issues, parser = parse(data)
    assert found == []
    assert {i.field for i in issues} == {
        "answered_at",
        "abandoned_at",
        "ended_at",
        "outcome",
        "customer_key",
        "agent_key",
        "talk_s",
        "csat",
    }
    assert all(i.line == 1 for i in issues)
    assert parser.stats.items == 0


def test_outcome_values_are_translated_case_insensitively() -> None:
    data = (HEADER + "\nc1,Q,2024-03-01T10:00:00Z,,2024-03-01T10:00:09Z,,ABN,,,,,n\n").encode()
    (r,), _, _ = parse(data, mapping(outcome_values={"abn": "abandoned"}))
    assert (r.outcome, r.wait_s) == ("abandoned", 9.0)


def test_nul_oversized_fields_and_undecodable_bytes_are_reported_not_raised() -> None:
    good = "c1,Q,2024-03-01T10:00:00Z,2024-03-01T10:00:05Z,,,answered,,,,,n"
    rows = [
        good,
        good.replace("c1", "c\x002"),  # NUL: no database text can hold it
        good.replace(",n", ',"' + "x" * 200_000 + '"').replace("c1", "c3"),  # csv field limit
        good.replace("c1", "c4"),
    ]
    found, issues, parser = parse((HEADER + "\n" + "\n".join(rows) + "\n").encode())
    assert [r.external_id for r in found] == ["c1", "c4"]
    assert [(i.record, i.line, i.field) for i in issues] == [
        (2, 3, "external_id ('Call ID')"),
        (3, 4, None),
    ]
    assert "NUL" in issues[0].reason
    assert "field larger than field limit" in issues[1].reason
    assert parser.stats.balanced()
    _, issues, parser = parse(HEADER.encode() + b"\n\xff\xfe,bad\n")
    (issue,) = issues
    assert (issue.record, issue.line) == (1, 2)
    assert parser.stats.balanced()


def test_an_undecodable_byte_refuses_its_row_and_every_other_row_is_read() -> None:
    """One stray byte (a Latin-1 'ü' in a UTF-8 export) is one bad row, named by record,
    line and field; the rows before it in the same block and every row after it land.
    A stray byte in a column the mapping does not read harms nothing."""
    good = b"c1,Q,2024-03-01T10:00:00Z,2024-03-01T10:00:05Z,,,answered,,,,,n"
    rows = [
        good,
        good.replace(b"c1", b"c2").replace(b",,,,,n", b",,M\xfcller,,,n"),  # Agent
        good.replace(b"c1", b"c3").replace(b",n", b",M\xfcller"),  # Notes: not mapped
        *(good.replace(b"c1", b"c%d" % n) for n in range(4, 400)),
    ]
    found, issues, parser = parse(HEADER.encode() + b"\n" + b"\n".join(rows) + b"\n")
    assert [r.external_id for r in found] == ["c1", "c3", *(f"c{n}" for n in range(4, 400))]
    assert [(i.record, i.line, i.field) for i in issues] == [(2, 3, "agent_key ('Agent')")]
    assert "not utf-8-sig text" in issues[0].reason
    assert "0xfc" in issues[0].reason
    assert parser.stats.balanced()
    assert parser.stats.malformed == 1


CELL = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(CELL, min_size=1, max_size=5))
def test_any_cell_text_comes_back_as_written(callers: list[str]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(HEADER.split(","))
    for i, caller in enumerate(callers):
        writer.writerow(
            [
                f"c{i}",
                "Q",
                "2024-03-01T10:00:00Z",
                "2024-03-01T10:00:05Z",
                "",
                "",
                "answered",
                caller,
                "",
                "",
                "",
                "note",
            ]
        )
    found, issues, _ = parse(buffer.getvalue().encode("utf-8"))
    assert issues == []
    assert [r.customer_key for r in found] == [c.strip() or None for c in callers]


FUZZ = st.text(alphabet='0123456789:-+.TZ eE,"\n=abnsweredlo', max_size=25)
VALID = [
    "c1",
    "Q",
    "2024-03-01T10:00:00Z",
    "2024-03-01T10:00:05Z",
    "",
    "",
    "answered",
    "x",
    "a",
    "60",
    "4",
]
ROW = st.tuples(*(st.one_of(st.just(v), FUZZ) for v in VALID)).map(list)


@settings(max_examples=300, deadline=None)
@given(st.lists(ROW, min_size=1, max_size=4))
def test_any_cells_are_accounted_for_and_never_raise(rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(HEADER.split(","))
    for cells in rows:
        writer.writerow([*cells, "note"])
    found, issues, parser = parse(buffer.getvalue().encode(), mapping(time_zone="Europe/Berlin"))
    assert parser.stats.balanced()
    assert parser.stats.items == len(rows)
    assert len(found) + parser.stats.malformed == len(rows)
    assert all(i.record is not None and i.line is not None for i in issues)
    for r in found:
        assert r.queued_at.tzinfo is UTC
        assert r.wait_s is None or r.wait_s >= 0


def test_an_unreadable_header_refuses_the_file_with_an_issue() -> None:
    data = ('"' + "h" * 200_000 + '",Queue\nc1,Q\n').encode()
    found, issues, parser = parse(data)
    assert found == []
    (issue,) = issues
    assert issue.line == 1
    assert "unreadable CSV header" in issue.reason
    assert parser.stats.items == 0
    assert parser.stats.balanced()
