"""Table exports of the same PBX give the same calls as the flat file."""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import pytest

from service.contacts.parsers import queue_log_tables
from service.contacts.parsers.queue_log import QueueLogParser
from service.contacts.parsers.queue_log_tables import (
    extended_table_rows,
    mysql_dump_rows,
    psql_table_rows,
)
from service.contacts.records import ParsedItem, ParseIssue

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "queue_log"


def lines_of(rows: Iterable[tuple[int, str] | ParseIssue]) -> list[str]:
    out = []
    for row in rows:
        assert not isinstance(row, ParseIssue), str(row)
        out.append(row[1])
    return out


def flat_lines(name: str) -> list[str]:
    return (DATA / name).read_text(encoding="utf-8").splitlines()


def without_refs(items: list[ParsedItem]) -> list[object]:
    return [replace(i, raw_ref="") for i in items if not isinstance(i, ParseIssue)]


def test_extended_table_renders_the_flat_file_line_for_line() -> None:
    with (DATA / "voipreports1_extended_table.csv").open("rb") as fp:
        rendered = lines_of(extended_table_rows(fp, "x"))
    assert rendered == flat_lines("voipreports1.queue_log")


def test_mysql_dump_renders_the_flat_file_line_for_line() -> None:
    # SOURCES.md: the flat file was written from this table reading `time` as UTC.
    with (DATA / "malariapbx_realtime_table.sql").open("rb") as fp:
        rendered = lines_of(mysql_dump_rows(fp, "x", time_zone="UTC"))
    assert rendered == flat_lines("malariapbx.queue_log")


@pytest.mark.parametrize(
    ("flat", "table"),
    [
        ("voipreports1.queue_log", "voipreports1_extended_table.csv"),
        ("malariapbx.queue_log", "malariapbx_realtime_table.sql"),
    ],
)
def test_flat_file_and_table_export_give_the_same_records(flat: str, table: str) -> None:
    from_flat = QueueLogParser()
    with (DATA / flat).open(encoding="utf-8", newline="") as fp:
        flat_items = list(from_flat.parse(fp, flat))
    from_table = QueueLogParser()
    with (DATA / table).open("rb") as fp:
        rows = (
            extended_table_rows(fp, table)
            if table.endswith(".csv")
            else mysql_dump_rows(fp, table, time_zone="UTC")
        )
        table_items = list(from_table.parse_rows(rows, table))
    assert without_refs(table_items) == without_refs(flat_items)
    assert len(without_refs(table_items)) > 10
    assert without_refs(from_table.open_records()) == without_refs(from_flat.open_records())
    for attribute in ("items", "used", "ignored", "unknown", "records", "calls_open"):
        assert getattr(from_table.stats, attribute) == getattr(from_flat.stats, attribute)
    assert from_table.stats.balanced()


def test_table_records_point_at_row_ids() -> None:
    parser = QueueLogParser()
    with (DATA / "malariapbx_realtime_table.sql").open("rb") as fp:
        items = list(
            parser.parse_rows(mysql_dump_rows(fp, "dump.sql", time_zone="UTC"), "dump.sql")
        )
    refs = {i.external_id: i.raw_ref for i in items if hasattr(i, "external_id")}
    # Rows (10, …), (11, …), (12, …) hold the first call.
    assert refs["1675555752.0@Support"] == "dump.sql:#10,#11,#12"


def dump(body: str) -> io.BytesIO:
    return io.BytesIO(body.encode())


def test_mysql_values_escapes_nulls_and_column_lists() -> None:
    sql = (
        "INSERT INTO `other` VALUES (1,'x');\n"
        "INSERT INTO `queue_log` (`time`,`callid`,`queuename`,`agent`,`event`,`data1`,`data2`,"
        "`data3`,`data4`,`data5`) VALUES "
        "('2024-01-02 03:04:05','1.1','q','NONE','ENTERQUEUE','','O\\'Brien|x','1',NULL,NULL),"
        "('2024-01-02 03:04:06','1.1','q','SIP/1','PAUSE','it''s \\\\ lunch',NULL,NULL,NULL,NULL);\n"
    )
    rows = list(mysql_dump_rows(dump(sql), "d", time_zone="UTC"))
    # 2024-01-02 03:04:05 UTC = 1704164645; '|' inside a value becomes '_'; row numbers count rows.
    assert rows == [
        (1, "1704164645|1.1|q|NONE|ENTERQUEUE||O'Brien_x|1"),
        (2, "1704164646|1.1|q|SIP/1|PAUSE|it's \\ lunch"),
    ]


def test_mysql_without_create_table_uses_the_realtime_layout_and_a_named_zone() -> None:
    sql = (
        "INSERT INTO queue_log VALUES "
        "(7,'2023-07-01 12:00:00','NONE','NONE','NONE','QUEUESTART','','','','','');"
    )
    # Berlin in July is UTC+2: 10:00 UTC = 1688205600.
    assert list(mysql_dump_rows(dump(sql), "d", time_zone="Europe/Berlin")) == [
        (7, "1688205600|NONE|NONE|NONE|QUEUESTART|")
    ]


def test_mysql_dump_is_tokenized_across_small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queue_log_tables, "_CHUNK", 7)
    with (DATA / "malariapbx_realtime_table.sql").open("rb") as fp:
        rendered = lines_of(mysql_dump_rows(fp, "x", time_zone="UTC"))
    assert rendered == flat_lines("malariapbx.queue_log")


def test_mysql_bad_time_and_broken_values_are_issues() -> None:
    sql = (
        "INSERT INTO `queue_log` VALUES "
        "(1,'yesterday','1.1','q','NONE','ENTERQUEUE','','','1','',''),"
        "(2,'2024-01-02 03:04:05','1.1','q','NONE','ABANDON','1','1',oops);"
    )
    rows = list(mysql_dump_rows(dump(sql), "d", time_zone="UTC"))
    assert len(rows) == 2
    first, second = rows
    assert isinstance(first, ParseIssue)
    assert (first.record, first.field) == (1, "time")
    assert isinstance(second, ParseIssue)
    assert second.record == 2
    assert "unreadable SQL value" in second.reason


def test_extended_table_with_a_short_row_reports_record_and_line() -> None:
    header = "uid,date_time,callid,queue_name,type,event,param1,param2,param3,entpos,expos,htime,ttime,time"
    text = (
        header
        + "\r\n"
        + "1,1543527289,NONE,NONE,NONE,QUEUESTART,,,,0,0,0,0,2018-11-29 16:34:49\r\n"
        + '2,1543527290,NONE,"NO\r\nNE",NONE\r\n'
        + "3,1543527291,NONE,NONE,NONE,CONFIGRELOAD,,,,0,0,0,0,2018-11-29 16:34:51\r\n"
    )
    parser = QueueLogParser()
    items = list(
        parser.parse_rows(extended_table_rows(io.BytesIO(text.encode()), "t.csv"), "t.csv")
    )
    (issue,) = items
    assert isinstance(issue, ParseIssue)
    assert (issue.record, issue.line) == (2, 3)
    assert parser.stats.ignored["QUEUESTART"] == 1
    assert parser.stats.ignored["CONFIGRELOAD"] == 1
    assert parser.stats.malformed == 1
    assert parser.stats.balanced()


def test_psql_rows_are_sorted_by_time() -> None:
    text = (
        "  time | callid | queuename | agent | event | data1 | data2 | data3 | data4 | data5\n"
        " ------+--------+-----------+-------+-------+-------+-------+-------+-------+------\n"
        " 2012-07-04 07:33:23.5 | 1.2 | q1 | SIP/1 | CONNECT | 2 | 1.3 | 1 |  |\n"
        " 2012-07-04 07:33:21.5 | 1.2 | q1 | NONE | ENTERQUEUE |  | 1000 | 1 |  |\n"
        "\n"
        "Prose with a | pipe is not a row.\n"
    )
    rows = list(psql_table_rows(io.BytesIO(text.encode()), "p", time_zone="UTC"))
    # 2012-07-04 07:33:21.5 UTC = 1341387201.5
    assert rows == [
        (4, "1341387201.5|1.2|q1|NONE|ENTERQUEUE||1000|1"),
        (3, "1341387203.5|1.2|q1|SIP/1|CONNECT|2|1.3|1"),
    ]


EXTENDED_HEADER = (
    "uid,date_time,callid,queue_name,type,event,param1,param2,param3,entpos,expos,htime,ttime,time"
)


def test_unreadable_table_exports_are_issues_not_exceptions() -> None:
    huge = '2,1543527290,NONE,NONE,NONE,"' + "x" * 200_000 + '",,,,0,0,0,0,t\n'
    text = EXTENDED_HEADER + "\n" + huge + "3,1543527291,NONE,NONE,NONE,QUEUESTART,,,,0,0,0,0,t\n"
    rows = list(extended_table_rows(io.BytesIO(text.encode()), "t.csv"))
    assert isinstance(rows[0], ParseIssue)
    assert (rows[0].record, rows[0].line) == (1, 2)
    assert "field larger than field limit" in rows[0].reason
    assert rows[1] == (3, "1543527291|NONE|NONE|NONE|QUEUESTART|")
    for read in (
        lambda fp: extended_table_rows(fp, "t"),
        lambda fp: mysql_dump_rows(fp, "t", time_zone="UTC"),
        lambda fp: psql_table_rows(fp, "t", time_zone="UTC"),
    ):
        (issue,) = list(read(io.BytesIO(b"\xff\xfe\xfa" * 10)))
        assert isinstance(issue, ParseIssue)
        assert "not UTF-8" in issue.reason
