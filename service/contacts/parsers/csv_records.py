"""Contact records from any CSV export, through a column mapping.

The mapping names, for each of our fields, the column of theirs that holds
it (`{"external_id": "Call ID", "queued_at": "Start", …}`), how timestamps
are written and in which time zone. Timestamps must carry a UTC offset, or
the mapping must name the zone they were written in; a naive timestamp is
never guessed (the row is refused, naming the field). A local time that a
DST change makes ambiguous (the repeated hour) or impossible (the skipped
hour) is refused too, unless the mapping says to take the earlier or later
reading of the repeated hour.

Streamed: a binary file object wrapped in a text reader (UTF-8; a BOM is
dropped), read by the csv module (quoted fields may hold newlines and
commas; CRLF or LF). Every issue names the data record (1 = the first row
after the header), the physical line the record starts on, and the field.
Invalid rows are reported one by one while every valid row is produced; a
byte the encoding cannot read makes its row invalid if a mapped cell holds
it (cells the mapping does not read are never looked at).
Cell values are data: a cell that looks like a spreadsheet formula
(`=1+2`, `+49…`, `@SUM(…)`) is kept as text, never evaluated or stripped.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from math import isfinite
from typing import IO, Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from service.contacts.parsers._common import ImportStats
from service.contacts.records import (
    CHANNELS,
    OUTCOMES,
    Channel,
    ContactRecord,
    Outcome,
    ParseIssue,
    excerpt,
)
from service.core.time import supported_year

TEXT_FIELDS = ("queue_key", "external_id", "customer_key", "agent_key")
TIME_FIELDS = ("queued_at", "answered_at", "ended_at", "abandoned_at")
DURATION_FIELDS = ("wait_s", "talk_s", "hold_s", "acw_s")
BOOL_FIELDS = ("transferred", "resolved_first_contact")
INT_FIELDS = {
    # The bounds of the database columns (hold_count int, source_version bigint) where the
    # scale has none, the same as the JSON API's.
    "hold_count": (0, 10_000),
    "csat": (1, 5),
    "nps": (0, 10),
    "source_version": (-(2**63), 2**63 - 1),
}
MAPPABLE = frozenset(
    (
        *TEXT_FIELDS,
        *TIME_FIELDS,
        *DURATION_FIELDS,
        *BOOL_FIELDS,
        *INT_FIELDS,
        "channel",
        "outcome",
        "sentiment",
    )
)
REQUIRED = ("external_id", "queue_key", "queued_at")
TRUE = frozenset({"true", "t", "yes", "y", "1"})
FALSE = frozenset({"false", "f", "no", "n", "0"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ESCAPED = re.compile("[\udc80-\udcff]")
"""An undecodable byte, as the `surrogateescape` error handler hands it over."""
MAX_DURATION_S = 366 * 86_400


@dataclass(frozen=True)
class CsvMapping:
    """How to read one kind of export. Invalid mappings raise `ValueError` naming the setting."""

    source: str
    """Goes into `ContactRecord.source`, e.g. `csv:genesys`."""
    columns: Mapping[str, str]
    """Our field -> their column header."""
    timestamp_format: str = "iso8601"
    """`iso8601`, `epoch` (seconds), `epoch_ms`, or a `strptime` format."""
    time_zone: str | None = None
    """IANA zone of timestamps written without an offset; None: such timestamps are refused."""
    ambiguous_times: Literal["refuse", "earlier", "later"] = "refuse"
    outcome_values: Mapping[str, str] = field(default_factory=dict)
    """Their outcome value -> ours (case-insensitive); our own names are always understood."""
    channel: str | None = None
    """The channel of every row when no column holds it."""
    duration_unit: Literal["s", "ms"] = "s"
    delimiter: str = ","
    encoding: str = "utf-8-sig"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.columns) - MAPPABLE)
        if unknown:
            raise ValueError(f"columns: unknown fields {unknown} (known: {sorted(MAPPABLE)})")
        missing = [f for f in REQUIRED if f not in self.columns]
        if missing:
            raise ValueError(f"columns: required fields not mapped: {missing}")
        if not {"outcome", "answered_at", "abandoned_at"} & set(self.columns):
            raise ValueError("columns: map outcome, or answered_at/abandoned_at to derive it")
        if "channel" not in self.columns and self.channel not in CHANNELS:
            raise ValueError(f"channel: map a channel column or set one of {sorted(CHANNELS)}")
        if self.time_zone is not None:
            try:
                ZoneInfo(self.time_zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"time_zone: unknown time zone {self.time_zone!r}") from None
        fmt = self.timestamp_format
        if (
            fmt not in ("iso8601", "epoch", "epoch_ms")
            and "%z" not in fmt
            and self.time_zone is None
        ):
            raise ValueError(
                "time_zone: the timestamp format has no %z (UTC offset) and no time zone is named; "
                "naive timestamps are refused"
            )
        bad = {k: v for k, v in self.outcome_values.items() if v not in OUTCOMES}
        if bad:
            raise ValueError(f"outcome_values: {bad} map to no outcome of {sorted(OUTCOMES)}")
        if self.duration_unit not in ("s", "ms"):
            raise ValueError("duration_unit: 's' or 'ms'")
        if self.ambiguous_times not in ("refuse", "earlier", "later"):
            raise ValueError("ambiguous_times: 'refuse', 'earlier' or 'later'")


class _FieldError(Exception):
    pass


class CsvRecordParser:
    """`parse(fp, name)` yields `ContactRecord` and `ParseIssue`; then `stats` holds the counts."""

    def __init__(self, mapping: CsvMapping) -> None:
        self.mapping = mapping
        self.stats = ImportStats(file="")
        self._zone = ZoneInfo(mapping.time_zone) if mapping.time_zone else None
        self._outcomes = {k.strip().lower(): v for k, v in mapping.outcome_values.items()}
        self._scale = 0.001 if mapping.duration_unit == "ms" else 1.0

    def parse(self, fp: IO[bytes], name: str) -> Iterator[ContactRecord | ParseIssue]:
        stats = self.stats = ImportStats(file=name)
        # surrogateescape: a byte the encoding cannot read becomes a lone surrogate in its
        # cell, so it refuses that row (naming the field) instead of the rest of the file.
        text = io.TextIOWrapper(
            fp, encoding=self.mapping.encoding, errors="surrogateescape", newline=""
        )
        try:
            yield from self._rows(text, name, stats)
        except UnicodeError as error:
            # UnicodeDecodeError, or the UnicodeError of a UTF-16 file without its BOM.
            why = (
                f"{error.reason} at a byte near {error.start} of the current block"
                if isinstance(error, UnicodeDecodeError)
                else str(error)
            )
            stats.items += 1  # the unreadable rest, as one item
            stats.malformed += 1
            yield ParseIssue(
                file=name,
                reason=f"not {self.mapping.encoding} text ({why}): the rest of the file was not read",
            )
        finally:
            text.detach()

    def _rows(
        self, text: io.TextIOWrapper, name: str, stats: ImportStats
    ) -> Iterator[ContactRecord | ParseIssue]:
        reader = csv.reader(text, delimiter=self.mapping.delimiter)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            return
        except csv.Error as error:
            yield ParseIssue(file=name, line=1, reason=f"unreadable CSV header: {error}")
            return
        if header:  # a BOM left by an encoding other than utf-8-sig
            header[0] = header[0].lstrip("\ufeff")
        positions: dict[str, int] = {}
        refused = False
        for ours, theirs in self.mapping.columns.items():
            found = [i for i, h in enumerate(header) if h == theirs]
            if len(found) != 1:
                refused = True
                yield ParseIssue(
                    file=name,
                    line=1,
                    field=ours,
                    reason=(
                        f"column {theirs!r} is not in the header"
                        if not found
                        else f"column {theirs!r} appears {len(found)} times in the header"
                    ),
                    excerpt=excerpt(self.mapping.delimiter.join(header)),
                )
            else:
                positions[ours] = found[0]
        if refused:
            return
        width = len(header)
        number = 0
        previous = reader.line_num
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as error:
                number += 1
                stats.items += 1
                stats.malformed += 1
                yield ParseIssue(
                    file=name, record=number, line=previous + 1, reason=f"unreadable CSV: {error}"
                )
                if reader.line_num == previous:
                    break
                previous = reader.line_num
                continue
            start, previous = previous + 1, reader.line_num
            number += 1
            stats.items += 1
            if not row:
                stats.blank += 1
                continue
            if len(row) != width:
                stats.malformed += 1
                yield ParseIssue(
                    file=name,
                    record=number,
                    line=start,
                    reason=f"{len(row)} fields where the header has {width}",
                    excerpt=excerpt(self.mapping.delimiter.join(row)),
                )
                continue
            ref = f"{name}:{start}" if start == previous else f"{name}:{start}-{previous}"
            values: dict[str, Any] = {}
            errors: list[tuple[str, str, str]] = []
            for ours, index in positions.items():
                cell = row[index]
                try:
                    values[ours] = self._convert(ours, cell)
                except _FieldError as error:
                    errors.append((ours, str(error), cell))
            record = None if errors else self._record(values, ref, errors)
            if record is None:
                stats.malformed += 1
                for ours, reason, cell in errors:
                    column = self.mapping.columns.get(ours)
                    yield ParseIssue(
                        file=name,
                        record=number,
                        line=start,
                        field=f"{ours} ({column!r})" if column else ours,
                        reason=reason,
                        excerpt=excerpt(cell),
                    )
                continue
            stats.used["row"] += 1
            stats.records += 1
            yield record

    # -------------------------------------------------------------- fields

    def _convert(self, ours: str, cell: str) -> Any:
        if not cell.isascii():
            bad = _ESCAPED.search(cell)
            if bad is not None:
                raise _FieldError(
                    f"not {self.mapping.encoding} text (byte 0x{ord(bad.group()) - 0xDC00:02x})"
                )
        value = cell.strip()
        if not value:
            if ours in REQUIRED:
                raise _FieldError("required, but empty")
            return None
        if ours in TEXT_FIELDS:
            if "\x00" in value:
                raise _FieldError("contains a NUL character (no database text can hold it)")
            return value
        if ours in TIME_FIELDS:
            return self._timestamp(value)
        if ours in DURATION_FIELDS:
            return self._duration(value)
        if ours in BOOL_FIELDS:
            lowered = value.lower()
            if lowered in TRUE:
                return True
            if lowered in FALSE:
                return False
            raise _FieldError("not a yes/no value (true/false, yes/no, y/n, 1/0)")
        if ours in INT_FIELDS:
            return self._integer(value, *INT_FIELDS[ours])
        if ours == "sentiment":
            number = self._number(value)
            if not -1.0 <= number <= 1.0:
                raise _FieldError("sentiment must be between -1 and 1")
            return number
        if ours == "channel":
            lowered = value.lower()
            if lowered not in CHANNELS:
                raise _FieldError(f"not a channel of {sorted(CHANNELS)}")
            return lowered
        if ours == "outcome":
            lowered = value.lower()
            outcome = self._outcomes.get(lowered, lowered)
            if outcome not in OUTCOMES:
                raise _FieldError(
                    f"unknown outcome (map it in outcome_values to one of {sorted(OUTCOMES)})"
                )
            return outcome
        raise AssertionError(ours)  # pragma: no cover - MAPPABLE is checked by the mapping

    @staticmethod
    def _number(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise _FieldError("not a number") from None
        if not isfinite(number):
            raise _FieldError("not a finite number")
        return number

    def _integer(self, value: str, low: int | None, high: int | None) -> int:
        try:
            # Exactly, when written as an integer: through a float, a 19-digit
            # source_version would lose its last digits.
            result = int(value)
        except ValueError:
            number = self._number(value)
            if not number.is_integer():
                raise _FieldError("not a whole number") from None
            result = int(number)
        if (low is not None and result < low) or (high is not None and result > high):
            bounds = f"{low if low is not None else '…'}-{high if high is not None else '…'}"
            raise _FieldError(f"{result} is outside {bounds}")
        return result

    def _duration(self, value: str) -> float:
        if ":" in value:  # [H:]MM:SS
            parts = value.split(":")
            if len(parts) > 3 or not all(p.strip().isdigit() for p in parts[:-1]):
                raise _FieldError("not a duration ([H:]MM:SS or seconds)")
            seconds = self._number(parts[-1])
            # A clock's seconds, and its minutes after hours, are 0-59: `1:-30` is not
            # 30 s and `1:75` no duration, but broken cells.
            if not 0 <= seconds < 60 or (len(parts) == 3 and int(parts[1]) >= 60):
                raise _FieldError("not a duration ([H:]MM:SS with minutes and seconds 0-59)")
            total = 0.0
            for part in parts[:-1]:
                total = total * 60 + int(part)
            result = total * 60 + seconds
        else:
            result = self._number(value) * self._scale
        if result < 0:
            raise _FieldError("a duration cannot be negative")
        if result > MAX_DURATION_S:
            raise _FieldError("longer than a year: not a contact's duration")
        return result

    def _timestamp(self, value: str) -> datetime:
        fmt = self.mapping.timestamp_format
        try:
            if fmt == "iso8601":
                moment = datetime.fromisoformat(value)
            elif fmt in ("epoch", "epoch_ms"):
                seconds = self._number(value) / (1000 if fmt == "epoch_ms" else 1)
                moment = _EPOCH + timedelta(seconds=seconds)
            else:
                moment = datetime.strptime(value, fmt)
        except (ValueError, OverflowError):
            expected = "ISO 8601" if fmt == "iso8601" else repr(fmt)
            raise _FieldError(f"not a timestamp in the format {expected}") from None
        try:
            supported_year(moment, "timestamp")
        except ValueError as exc:
            raise _FieldError(str(exc).partition(": ")[2]) from None
        if moment.tzinfo is None:
            moment = self._localize(moment)
        return moment.astimezone(UTC)

    def _localize(self, naive: datetime) -> datetime:
        zone = self._zone
        if zone is None:
            raise _FieldError(
                "timestamp has no UTC offset and the mapping names no time zone (naive timestamps are refused)"
            )
        first = naive.replace(tzinfo=zone, fold=0)
        second = naive.replace(tzinfo=zone, fold=1)
        if first.utcoffset() == second.utcoffset():
            return first
        if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive:
            raise _FieldError(
                f"{naive.isoformat()} does not exist in {zone.key} (skipped by a DST change)"
            )
        choice = self.mapping.ambiguous_times
        if choice == "refuse":
            raise _FieldError(
                f"{naive.isoformat()} happens twice in {zone.key} (DST change); "
                "set ambiguous_times to 'earlier' or 'later' to accept it"
            )
        return first if choice == "earlier" else second

    # -------------------------------------------------------------- record

    def _record(
        self, v: dict[str, Any], ref: str, errors: list[tuple[str, str, str]]
    ) -> ContactRecord | None:
        queued_at: datetime = v["queued_at"]
        answered_at: datetime | None = v.get("answered_at")
        abandoned_at: datetime | None = v.get("abandoned_at")
        wait_s: float | None = v.get("wait_s")
        outcome = v.get("outcome")
        if outcome is None:
            if answered_at is not None:
                outcome = "answered"
            elif abandoned_at is not None:
                outcome = "abandoned"
            else:
                errors.append(
                    ("outcome", "no outcome, answered_at or abandoned_at in this row", "")
                )
                return None
        if outcome == "answered" and answered_at is None:
            errors.append(("answered_at", "an answered contact needs answered_at", ""))
        if outcome == "abandoned" and abandoned_at is None:
            if wait_s is None:
                errors.append(
                    ("abandoned_at", "an abandoned contact needs abandoned_at or wait_s", "")
                )
            else:
                abandoned_at = queued_at + timedelta(seconds=wait_s)
        for name in ("answered_at", "ended_at", "abandoned_at"):
            moment = v.get(name)
            if moment is not None and moment < queued_at:
                errors.append(
                    (name, f"{moment.isoformat()} is before queued_at {queued_at.isoformat()}", "")
                )
        if errors:
            return None
        if wait_s is None:
            if outcome == "answered" and answered_at is not None:
                wait_s = (answered_at - queued_at).total_seconds()
            elif outcome == "abandoned" and abandoned_at is not None:
                wait_s = (abandoned_at - queued_at).total_seconds()
        return ContactRecord(
            source=self.mapping.source,
            queue_key=v["queue_key"],
            external_id=v["external_id"],
            channel=cast(Channel, v.get("channel") or self.mapping.channel),
            queued_at=queued_at,
            outcome=cast(Outcome, outcome),
            raw_ref=ref,
            customer_key=v.get("customer_key"),
            answered_at=answered_at,
            ended_at=v.get("ended_at"),
            abandoned_at=abandoned_at if outcome == "abandoned" else None,
            agent_key=v.get("agent_key"),
            wait_s=wait_s,
            talk_s=v.get("talk_s"),
            hold_s=v.get("hold_s"),
            hold_count=v.get("hold_count"),
            acw_s=v.get("acw_s"),
            transferred=v.get("transferred"),
            resolved_first_contact=v.get("resolved_first_contact"),
            csat=v.get("csat"),
            nps=v.get("nps"),
            sentiment=v.get("sentiment"),
            source_version=v.get("source_version"),
        )
