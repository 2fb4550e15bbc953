"""Table exports of `queue_log` → the flat event lines `QueueLogParser.parse_rows` reads.

Each adapter yields `(row id, line)` where `line` is the row written as the
flat file would have it (`epoch|callid|queue|agent|event|data…`), so the
same calls give the same records whichever form the PBX stored them in
(tests compare both forms of the same PBX). Rows that cannot be rendered
are yielded as `ParseIssue` (counted as malformed).

* `extended_table_rows`: the "extended" SQL table export
  `uid,date_time,callid,queue_name,type,event,param1,param2,param3,entpos,
  expos,htime,ttime,time` (sample voipreports1): `type` is the agent,
  `date_time` the UTC epoch (`time` is local and ignored), holdtime and
  talk time moved to `htime`/`ttime`, the caller id to `param1`, positions
  to `entpos`/`expos`. The per-event placement below reproduces the flat
  file of the same PBX line for line.
* `mysql_dump_rows`: Asterisk's realtime table (`time, callid, queuename,
  agent, event, data1..data5`, or one `data` column) in a MySQL dump;
  `time` is a DATETIME without zone, so the caller must name the zone the
  PBX wrote it in (naive timestamps are refused, never guessed). Streamed:
  the dump is tokenized chunk by chunk, never read whole.
* `psql_table_rows`: `psql` aligned output of the same table (the Wazo
  documentation samples); rows are sorted by time because such excerpts
  are often printed newest first. Reads the whole table (psql output is
  for people, not for bulk).

A `|` inside a field would shift the flat fields; it is replaced by `_`, as
Asterisk itself does for caller names.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import datetime
from typing import IO
from zoneinfo import ZoneInfo

from service.contacts.records import ParseIssue, excerpt

Row = tuple[int, str] | ParseIssue

_CALL_END = frozenset({"COMPLETECALLER", "COMPLETEAGENT"})
_EXITS = frozenset({"ABANDON", "EXITWITHTIMEOUT", "EXITEMPTY", "WITHDRAW"})
_TRANSFERS = frozenset({"TRANSFER", "BLINDTRANSFER", "ATTENDEDTRANSFER"})
_RINGS = frozenset({"RINGNOANSWER", "RINGCANCELED"})
_EXTENDED_COLUMNS = (
    "date_time",
    "callid",
    "queue_name",
    "type",
    "event",
    "param1",
    "param2",
    "param3",
    "entpos",
    "expos",
    "htime",
    "ttime",
)


def _flat(value: str) -> str:
    return value.replace("|", "_") if "|" in value else value


def _trimmed(data: list[str]) -> list[str]:
    """Trailing empty parameters dropped, at least one kept (`…|EVENT|` as Asterisk writes it)."""
    end = len(data)
    while end > 1 and not data[end - 1]:
        end -= 1
    return data[:end] if data else [""]


def _line(epoch: str, callid: str, queue: str, agent: str, event: str, data: list[str]) -> str:
    return "|".join(
        [epoch, _flat(callid), _flat(queue), _flat(agent), _flat(event), *map(_flat, data)]
    )


def _epoch_text(moment: datetime) -> str:
    ts = moment.timestamp()
    return str(int(ts)) if ts.is_integer() else repr(ts)


def _text(fp: IO[bytes], encoding: str) -> io.TextIOWrapper:
    return io.TextIOWrapper(fp, encoding=encoding, errors="strict", newline="")


# ------------------------------------------------------------------ extended


def _extended_data(event: str, r: dict[str, str]) -> list[str]:
    if event == "ENTERQUEUE":  # url | callerid | origposition
        return ["", r["param1"], r["entpos"]]
    if event == "CONNECT":  # holdtime | bridged channel | ringtime
        return [r["htime"], r["param2"], r["param3"]]
    if event in _CALL_END:  # holdtime | calltime | origposition
        return [r["htime"], r["ttime"], r["entpos"]]
    if event in _EXITS:  # position | origposition | waittime
        return [r["expos"], r["entpos"], r["htime"]]
    if event == "EXITWITHKEY":  # key | position | origposition | waittime (key: not in the sample)
        return [r["param2"], r["expos"], r["entpos"], r["htime"]]
    if event in _RINGS:  # ringtime (ms)
        return [r["htime"]]
    if event in _TRANSFERS:  # extension/method | context/data | holdtime | calltime | origposition
        return [r["param2"], r["param3"], r["htime"], r["ttime"], r["entpos"]]
    return _trimmed([r["param1"], r["param2"], r["param3"]])


def extended_table_rows(fp: IO[bytes], name: str) -> Iterator[Row]:
    """Rows of an extended `queue_log` CSV export (binary file object, UTF-8, BOM allowed)."""
    text = _text(fp, "utf-8-sig")
    try:
        yield from _extended_rows(text, name)
    except UnicodeDecodeError as error:
        yield ParseIssue(
            file=name, reason=f"not UTF-8 text ({error.reason}): the rest was not read"
        )
    finally:
        text.detach()


def _extended_rows(text: IO[str], name: str) -> Iterator[Row]:
    reader = csv.reader(text)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return
    except csv.Error as error:
        yield ParseIssue(file=name, line=1, reason=f"unreadable CSV header: {error}")
        return
    missing = [c for c in _EXTENDED_COLUMNS if c not in header]
    if missing:
        yield ParseIssue(
            file=name,
            line=1,
            field=", ".join(missing),
            reason="not an extended queue_log export: columns missing from the header",
            excerpt=excerpt(",".join(header)),
        )
        return
    width = len(header)
    number = 0
    previous_line = reader.line_num
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            number += 1
            yield ParseIssue(
                file=name, record=number, line=previous_line + 1, reason=f"unreadable CSV: {error}"
            )
            if reader.line_num == previous_line:
                return
            previous_line = reader.line_num
            continue
        number += 1
        start, previous_line = previous_line + 1, reader.line_num
        if len(row) != width:
            yield ParseIssue(
                file=name,
                record=number,
                line=start,
                reason=f"{len(row)} fields where the header has {width}",
                excerpt=excerpt(",".join(row)),
            )
            continue
        r = dict(zip(header, row, strict=True))
        uid = r.get("uid", "")
        ref = int(uid) if uid.isdigit() else number
        event = r["event"]
        yield (
            ref,
            _line(
                r["date_time"],
                r["callid"],
                r["queue_name"],
                r["type"],
                event,
                _extended_data(event, r),
            ),
        )


# --------------------------------------------------------------------- MySQL

_STATEMENT = re.compile(
    r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?`?(?P<create>\w+)`?\s*\("
    r"|INSERT\s+(?:IGNORE\s+)?INTO\s+`?(?P<insert>\w+)`?\s*(?:\((?P<columns>[^)]*)\)\s*)?VALUES\s*",
    re.IGNORECASE,
)
_COLUMN_DEF = re.compile(r"^\s*`(\w+)`\s+\w", re.MULTILINE)
_TUPLE_START = re.compile(r"\s*\(")
_VALUE = re.compile(
    r"\s*(?:'(?P<s>(?:[^'\\]|\\.|'')*)'|(?P<null>NULL)|(?P<n>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?))"
    r"\s*(?P<end>[,)])",
    re.IGNORECASE | re.DOTALL,
)
_TUPLE_END = re.compile(r"\s*(?P<end>[,;])")
_ESCAPES = {"0": "\0", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a"}
_ESCAPE = re.compile(r"\\(.)|''", re.DOTALL)
_REALTIME_COLUMNS = ["time", "callid", "queuename", "agent", "event"] + [
    f"data{i}" for i in range(1, 6)
]
_CHUNK = 1 << 16
_MAX_WINDOW = 1 << 22  # no queue_log row or statement header is longer: stop reading ahead


def _unescape(value: str) -> str:
    if "\\" not in value and "''" not in value:
        return value
    return _ESCAPE.sub(
        lambda m: "'" if m.group(1) is None else _ESCAPES.get(m.group(1), m.group(1)), value
    )


class _Buffer:
    """A sliding window over a text stream for regex tokenizing without reading it whole."""

    def __init__(self, text: IO[str]) -> None:
        self.text = text
        self.buf = ""
        self.pos = 0
        self.eof = False

    def more(self) -> bool:
        if self.eof or len(self.buf) - self.pos > _MAX_WINDOW:
            return False
        chunk = self.text.read(_CHUNK)
        if not chunk:
            self.eof = True
            return False
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0
        return True

    def match(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        """`pattern` at the position, reading more while the window is too short to decide."""
        while True:
            m = pattern.match(self.buf, self.pos)
            if m is not None and (m.end() < len(self.buf) or self.eof):
                return m
            if not self.more():
                return pattern.match(self.buf, self.pos)

    def search(self, pattern: re.Pattern[str], keep: int = 512) -> re.Match[str] | None:
        while True:
            m = pattern.search(self.buf, self.pos)
            if m is not None and (m.end() < len(self.buf) or self.eof):
                return m
            if m is None:
                self.pos = max(self.pos, len(self.buf) - keep)
            if not self.more():
                return pattern.search(self.buf, self.pos)

    def find(self, needle: str) -> int:
        while True:
            i = self.buf.find(needle, self.pos)
            if i >= 0:
                return i
            if not self.more():
                return -1


def mysql_dump_rows(
    fp: IO[bytes], name: str, *, time_zone: str, table: str = "queue_log"
) -> Iterator[Row]:
    """Rows of the `queue_log` table in a MySQL dump; `time_zone` is the zone of its DATETIMEs."""
    zone = ZoneInfo(time_zone)
    text = _text(fp, "utf-8")
    try:
        yield from _dump_rows(text, name, zone, table)
    except UnicodeDecodeError as error:
        yield ParseIssue(
            file=name, reason=f"not UTF-8 text ({error.reason}): the rest was not read"
        )
    finally:
        text.detach()


def _dump_rows(text: IO[str], name: str, zone: ZoneInfo, table: str) -> Iterator[Row]:
    buf = _Buffer(text)
    columns: list[str] | None = None
    number = 0
    while True:
        m = buf.search(_STATEMENT)
        if m is None:
            return
        buf.pos = m.end()
        if m.group("create") is not None:
            end = buf.find(";")
            body = buf.buf[buf.pos : end if end >= 0 else len(buf.buf)]
            if m.group("create").lower() == table.lower():
                columns = _COLUMN_DEF.findall(body)
            buf.pos = end + 1 if end >= 0 else len(buf.buf)
            continue
        if m.group("insert").lower() != table.lower():
            continue
        names = columns
        if m.group("columns"):
            names = [c.strip().strip("`") for c in m.group("columns").split(",")]
        while True:  # one tuple per row, up to ';'
            start = buf.match(_TUPLE_START)
            if start is None:
                yield ParseIssue(
                    file=name,
                    record=number + 1,
                    reason="expected '(' starting a row of VALUES",
                    excerpt=excerpt(buf.buf[buf.pos : buf.pos + 80]),
                )
                return
            buf.pos = start.end()
            values: list[str | None] = []
            while True:
                v = buf.match(_VALUE)
                if v is None:
                    yield ParseIssue(
                        file=name,
                        record=number + 1,
                        reason="unreadable SQL value (expected a quoted string, NULL or a number)",
                        excerpt=excerpt(buf.buf[buf.pos : buf.pos + 80]),
                    )
                    return
                buf.pos = v.end()
                if v.group("null") is not None:
                    values.append(None)
                elif v.group("n") is not None:
                    values.append(v.group("n"))
                else:
                    values.append(_unescape(v.group("s")))
                if v.group("end") == ")":
                    break
            number += 1
            yield _realtime_row(name, number, names, values, zone)
            after = buf.match(_TUPLE_END)
            if after is None:
                yield ParseIssue(
                    file=name,
                    record=number,
                    reason="expected ',' or ';' after a row of VALUES",
                    excerpt=excerpt(buf.buf[buf.pos : buf.pos + 80]),
                )
                return
            buf.pos = after.end()
            if after.group("end") == ";":
                break


def _realtime_row(
    name: str, number: int, names: list[str] | None, values: list[str | None], zone: ZoneInfo
) -> Row:
    if names is None:  # no CREATE TABLE and no column list: Asterisk's layout, with or without id
        names = (["id"] if len(values) == len(_REALTIME_COLUMNS) + 1 else []) + _REALTIME_COLUMNS
    if len(names) != len(values):
        return ParseIssue(
            file=name,
            record=number,
            reason=f"{len(values)} values where the table has {len(names)} columns",
        )
    r = {k.lower(): ("" if v is None else v) for k, v in zip(names, values, strict=True)}
    ident = r.get("id", "")
    ref = int(ident) if ident.isdigit() else number
    missing = [c for c in ("time", "callid", "queuename", "agent", "event") if c not in r]
    if missing:
        return ParseIssue(
            file=name, record=ref, field=", ".join(missing), reason="columns missing from the table"
        )
    epoch = _realtime_epoch(r["time"], zone)
    if epoch is None:
        return ParseIssue(
            file=name,
            record=ref,
            field="time",
            reason="not a DATETIME (YYYY-MM-DD HH:MM:SS) or UNIX epoch",
            excerpt=excerpt(r["time"]),
        )
    if "data1" in r:
        data = _trimmed([r.get(f"data{i}", "") for i in range(1, 6)])
        return ref, _line(epoch, r["callid"], r["queuename"], r["agent"], r["event"], data)
    # Older single `data` column: already '|'-separated as in the flat file.
    head = _line(epoch, r["callid"], r["queuename"], r["agent"], r["event"], [])
    return ref, f"{head}|{r.get('data', '')}"


def _realtime_epoch(value: str, zone: ZoneInfo) -> str | None:
    value = value.strip()
    if value.isdigit():
        return value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        # An hour repeated at the end of DST cannot be told apart here: the first one (fold=0).
        moment = moment.replace(tzinfo=zone)
    return _epoch_text(moment)


# ---------------------------------------------------------------------- psql

_PSQL_SEPARATOR = re.compile(r"^\s*-+(?:\+-+)+\s*$")


def psql_table_rows(fp: IO[bytes], name: str, *, time_zone: str) -> Iterator[Row]:
    """Rows of `queue_log` tables printed by psql (aligned format) anywhere in a text file."""
    zone = ZoneInfo(time_zone)
    text = _text(fp, "utf-8-sig")
    rows: list[tuple[float, int, str]] = []
    issues: list[ParseIssue] = []
    try:
        header: list[str] | None = None
        for number, raw in enumerate(text, 1):
            line = raw.rstrip("\r\n")
            cells = [c.strip() for c in line.split("|")]
            if header is None:
                if len(cells) >= 5 and cells[0] == "time" and "event" in cells:
                    header = cells
                continue
            if _PSQL_SEPARATOR.match(line):
                continue
            if len(cells) != len(header):
                header = None  # the table ended
                continue
            r = dict(zip(header, cells, strict=True))
            epoch = _realtime_epoch(r["time"], zone)
            if epoch is None:
                issues.append(
                    ParseIssue(
                        file=name,
                        line=number,
                        field="time",
                        reason="not a timestamp",
                        excerpt=excerpt(line),
                    )
                )
                continue
            data = _trimmed([r.get(f"data{i}", "") for i in range(1, 6)])
            flat = _line(
                epoch,
                r.get("callid", ""),
                r.get("queuename", ""),
                r.get("agent", ""),
                r.get("event", ""),
                data,
            )
            rows.append((float(epoch), number, flat))
    except UnicodeDecodeError as error:
        issues.append(
            ParseIssue(file=name, reason=f"not UTF-8 text ({error.reason}): the rest was not read")
        )
    finally:
        text.detach()
    yield from issues
    rows.sort(key=lambda row: (row[0], row[1]))
    for _, number, flat in rows:
        yield number, flat
