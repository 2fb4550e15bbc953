"""Amazon Connect contact trace records (CTR) → contact records.

Input: one CTR, a JSON list of CTRs, JSON lines, or CTRs written back to
back (Kinesis Firehose concatenates them without a separator). The file is
read whole (a Firehose object is bounded; a JSON list cannot be split
without a streaming JSON library), records are then handled one by one.

* **At-least-once delivery**: per `ContactId` the record with the newest
  `LastUpdateTimestamp` wins (ties: the later in the input);
  `source_version` is that timestamp in milliseconds, so ingestion can keep
  the newest across files as well. `stats.superseded` counts the rest.
* **Outcome**: connected to an agent (`Agent.ConnectedToAgentTimestamp`) →
  `answered`; queued (`Queue.EnqueueTimestamp`) and not connected →
  `abandoned` (KPIS.md), except a contact that moved on to a next contact
  (`NextContactId`: queue transfer, queued callback) or out of Connect
  (`TransferCompletedTimestamp`) → `transferred_out`, one ended by the
  queue flow (`DisconnectReason` CONTACT_FLOW_DISCONNECT) or expired
  (EXPIRED) → `timeout`, and one with no `DisconnectTimestamp` yet →
  `in_queue`.
* **Durations**: wait = `Queue.Duration`; talk =
  `Agent.AgentInteractionDuration`; hold = `Agent.CustomerHoldDuration`,
  `hold_count` = `Agent.NumberOfHolds`; acw =
  `Agent.AfterContactWorkDuration` (whole seconds, as Connect logs them).
* `transferred` (after answer): `TransferCompletedTimestamp` or
  `NextContactId` set on an answered contact. `ended_at` is when the
  contact left the agent: the transfer, else the disconnect.
* Queue key: `Queue.Name`, else `Queue.ARN`; agent key: `Agent.Username`,
  else `Agent.ARN`; customer key: `CustomerEndpoint.Address`.
* Ignored on purpose (counted): contacts never queued (outbound, IVR only),
  TASK contacts (no matching channel), contact *events* (EventBridge
  `eventType` payloads: live signals, not records).
* Invalid JSON is refused with issues naming line and column and why: a
  comment (`//`, `/* */`) or a trailing comma is named as such; the reader
  resumes at the next line that starts a top-level value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from service.contacts.parsers._common import ImportStats
from service.contacts.records import Channel, ContactRecord, Outcome, ParseIssue, excerpt
from service.core.time import supported_year

SOURCE = "amazon_connect"
_CHANNELS: dict[str, Channel] = {"VOICE": "voice", "CHAT": "chat", "EMAIL": "email"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_S = 366 * 86_400
"""The longest duration taken (as for CSV): more is a corrupt record, and would not fit
the database's milliseconds."""
MAX_COUNT = 10_000
_MILLISECOND = timedelta(milliseconds=1)
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_NEXT_TOP_LEVEL = re.compile(r"\n(?=[\[{])")


@dataclass
class ConnectImport:
    """What one file gave: the newest version of each contact, issues and counts."""

    records: list[ContactRecord] = field(default_factory=list)
    issues: list[ParseIssue] = field(default_factory=list)
    stats: ImportStats = field(default_factory=lambda: ImportStats(file=""))


class _Invalid(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def parse_ctr(fp: IO[bytes] | IO[str], name: str, *, source: str = SOURCE) -> ConnectImport:
    """Parse a file of contact trace records."""
    raw = fp.read()
    result = ConnectImport(stats=ImportStats(file=name))
    try:
        text = (
            raw.decode("utf-8-sig", errors="strict")
            if isinstance(raw, bytes)
            else raw.lstrip("\ufeff")
        )
    except UnicodeDecodeError as error:
        # JSON is UTF-8 (RFC 8259): a file that is not is refused whole, naming the byte.
        assert isinstance(raw, bytes)
        before = raw[: error.start]
        result.stats.items += 1
        result.stats.malformed += 1
        result.issues.append(
            ParseIssue(
                file=name,
                record=1,
                line=before.count(b"\n") + 1,
                column=error.start - (before.rfind(b"\n") + 1) + 1,
                reason=f"not UTF-8 text ({error.reason})",
            )
        )
        return result
    newest: dict[str, tuple[int, ContactRecord]] = {}
    for number, line, value in _values(text, name, result):
        elements = value if isinstance(value, list) else [value]
        for index, element in enumerate(elements):
            if isinstance(value, list):
                result.stats.items += 1
                ref = f"{name}:{line}[{index}]"
            else:
                ref = f"{name}:{line}"
            _one(element, number, line, ref, source, result, newest)
    result.records = [record for _, record in newest.values()]
    result.stats.records = len(result.records)
    return result


def _values(text: str, name: str, result: ConnectImport) -> Iterator[tuple[int, int, Any]]:
    """(value number, start line, value) for each top-level JSON value; invalid ones reported."""
    decoder = json.JSONDecoder()
    pos = _WHITESPACE.match(text, 0).end()  # type: ignore[union-attr]
    line = 1 + text.count("\n", 0, pos)
    number = 0
    while pos < len(text):
        number += 1
        try:
            value, end = decoder.raw_decode(text, pos)
        except RecursionError:
            # Nested deeper than Python's stack: no contact trace record is; nothing after
            # it can be found reliably, so the rest of the file is one malformed value.
            result.stats.items += 1
            result.stats.malformed += 1
            at_line, column = _position(text, pos)
            result.issues.append(
                ParseIssue(
                    file=name,
                    record=number,
                    line=at_line,
                    column=column,
                    reason="JSON nested too deeply (not a contact trace record)",
                )
            )
            return
        except json.JSONDecodeError as error:
            resume = _NEXT_TOP_LEVEL.search(text, pos + 1)
            stop = resume.start() + 1 if resume else len(text)
            result.stats.items += 1
            result.stats.malformed += 1
            found = _diagnose(text, pos, stop, name, number)
            if not found:
                found = [
                    ParseIssue(
                        file=name,
                        record=number,
                        line=error.lineno,
                        column=error.colno,
                        reason=f"invalid JSON: {error.msg}",
                        excerpt=excerpt(_line_at(text, error.pos)),
                    )
                ]
            result.issues.extend(found)
            line += text.count("\n", pos, stop)
            pos = stop
        else:
            if not isinstance(value, list):
                result.stats.items += 1
            yield number, line, value
            line += text.count("\n", pos, end)
            pos = end
        after = _WHITESPACE.match(text, pos).end()  # type: ignore[union-attr]
        line += text.count("\n", pos, after)
        pos = after


def _line_at(text: str, pos: int) -> str:
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    return text[start : end if end >= 0 else len(text)]


def _position(text: str, pos: int) -> tuple[int, int]:
    return text.count("\n", 0, pos) + 1, pos - text.rfind("\n", 0, pos)


def _diagnose(text: str, start: int, stop: int, name: str, number: int) -> list[ParseIssue]:
    """The comments and trailing commas between start and stop (outside strings), in order."""
    issues = []
    i = start
    in_string = False
    while i < stop:
        c = text[i]
        if in_string:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c == "/" and i + 1 < stop and text[i + 1] in "/*":
            line, column = _position(text, i)
            kind = "//" if text[i + 1] == "/" else "/* */"
            issues.append(
                ParseIssue(
                    file=name,
                    record=number,
                    line=line,
                    column=column,
                    reason=f"comment ({kind}): JSON has no comments",
                    excerpt=excerpt(_line_at(text, i).strip()),
                )
            )
            if kind == "//":
                newline = text.find("\n", i)
                i = newline if newline >= 0 else stop
            else:
                close = text.find("*/", i + 2)
                i = close + 2 if close >= 0 else stop
            continue
        elif c == ",":
            j = i + 1
            while j < stop:  # skip whitespace and comments to the next token
                if text[j] in " \t\r\n":
                    j += 1
                elif text.startswith("//", j):
                    newline = text.find("\n", j)
                    j = newline if newline >= 0 else stop
                elif text.startswith("/*", j):
                    close = text.find("*/", j + 2)
                    j = close + 2 if close >= 0 else stop
                else:
                    break
            if j < stop and text[j] in "}]":
                line, column = _position(text, i)
                closer = "object" if text[j] == "}" else "list"
                issues.append(
                    ParseIssue(
                        file=name,
                        record=number,
                        line=line,
                        column=column,
                        reason=f"trailing comma before the end of an {closer}: JSON does not allow it",
                        excerpt=excerpt(_line_at(text, i).strip()),
                    )
                )
        i += 1
    return issues


# ------------------------------------------------------------------ records


def _get(obj: dict[str, Any], path: str) -> Any:
    value: Any = obj
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _time(obj: dict[str, Any], path: str) -> datetime | None:
    value = _get(obj, path)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _Invalid(path, f"expected an ISO 8601 timestamp, got {type(value).__name__}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _Invalid(path, f"not an ISO 8601 timestamp: {value!r}") from None
    if moment.tzinfo is None:
        raise _Invalid(
            path, f"timestamp {value!r} has no UTC offset (naive timestamps are refused)"
        )
    try:
        supported_year(moment, path)
    except ValueError as exc:
        raise _Invalid(path, str(exc).partition(": ")[2]) from None
    return moment.astimezone(UTC)


def _seconds(obj: dict[str, Any], path: str) -> float | None:
    value = _get(obj, path)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_S:
        # `not 0 <= value` also refuses NaN (Python's json reads the literal NaN).
        raise _Invalid(
            path, f"expected a number of seconds from 0 to {MAX_S} (a year), got {value!r}"
        )
    return float(value)


def _count(obj: dict[str, Any], path: str) -> int | None:
    value = _get(obj, path)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise _Invalid(path, f"expected an integer from 0 to {MAX_COUNT}, got {value!r}")
    return value


def _text_field(obj: dict[str, Any], path: str) -> str | None:
    value = _get(obj, path)
    if not isinstance(value, str) or not value:
        return None
    if "\x00" in value:
        raise _Invalid(path, "contains a NUL character (no database text can hold it)")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            # A lone surrogate (`"\ud800"`): valid JSON escapes, but no UTF-8 text.
            raise _Invalid(path, "contains a lone surrogate (not Unicode text)") from None
    return value


def _one(
    element: Any,
    number: int,
    line: int,
    ref: str,
    source: str,
    result: ConnectImport,
    newest: dict[str, tuple[int, ContactRecord]],
) -> None:
    stats = result.stats
    if not isinstance(element, dict):
        stats.unknown[f"json {type(element).__name__}"] += 1
        result.issues.append(
            ParseIssue(
                file=result.stats.file,
                record=number,
                line=line,
                reason=f"expected a contact trace record (a JSON object), got {type(element).__name__}",
            )
        )
        return
    if "ContactId" not in element:
        if "eventType" in element or "detail-type" in element:
            stats.ignored["contact event"] += 1
            return
        stats.unknown["object without ContactId"] += 1
        result.issues.append(
            ParseIssue(
                file=stats.file,
                record=number,
                line=line,
                field="ContactId",
                reason="not an Amazon Connect contact trace record (no ContactId)",
                excerpt=excerpt(", ".join(list(element)[:8])),
            )
        )
        return
    try:
        record = _record(element, ref, source)
    except _Invalid as invalid:
        stats.rejected["contact trace record"] += 1
        result.issues.append(
            ParseIssue(
                file=stats.file,
                record=number,
                line=line,
                field=invalid.field,
                reason=invalid.reason,
                excerpt=excerpt(str(element.get("ContactId"))),
            )
        )
        return
    if isinstance(record, str):
        stats.ignored[record] += 1
        return
    stats.used["contact trace record"] += 1
    version = record.source_version or 0
    previous = newest.get(record.external_id)
    if previous is not None:
        stats.superseded += 1
        if previous[0] > version:
            return
    newest[record.external_id] = (version, record)


def _record(ctr: dict[str, Any], ref: str, source: str) -> ContactRecord | str:
    """The record, or the name of the reason it is ignored on purpose."""
    contact_id = _text_field(ctr, "ContactId")
    if contact_id is None:
        raise _Invalid("ContactId", "ContactId must be a non-empty string")
    updated = _time(ctr, "LastUpdateTimestamp")
    if updated is None:
        raise _Invalid("LastUpdateTimestamp", "missing (needed to keep the newest copy)")
    raw_channel = ctr.get("Channel")
    if raw_channel == "TASK":
        return "TASK contact"
    channel = _CHANNELS.get(raw_channel) if isinstance(raw_channel, str) else None
    if channel is None:
        raise _Invalid("Channel", f"unknown channel {raw_channel!r}")
    queued_at = _time(ctr, "Queue.EnqueueTimestamp")
    if queued_at is None:
        return "not queued"
    queue_key = _text_field(ctr, "Queue.Name") or _text_field(ctr, "Queue.ARN")
    if queue_key is None:
        raise _Invalid("Queue.Name", "queued contact without Queue.Name or Queue.ARN")
    dequeued_at = _time(ctr, "Queue.DequeueTimestamp")
    answered_at = _time(ctr, "Agent.ConnectedToAgentTimestamp")
    disconnected_at = _time(ctr, "DisconnectTimestamp")
    transfer_at = _time(ctr, "TransferCompletedTimestamp")
    next_contact = _text_field(ctr, "NextContactId")
    wait_s = _seconds(ctr, "Queue.Duration")
    reason = ctr.get("DisconnectReason")

    outcome: Outcome
    abandoned_at = None
    transferred = None
    if answered_at is not None:
        outcome = "answered"
        transferred = transfer_at is not None or next_contact is not None
        ended_at = transfer_at or disconnected_at
        if wait_s is None:
            wait_s = (answered_at - queued_at).total_seconds()
    else:
        ended_at = dequeued_at or disconnected_at
        if next_contact is not None or transfer_at is not None:
            outcome = "transferred_out"
        elif disconnected_at is None and dequeued_at is None:
            outcome = "in_queue"
        elif reason in ("CONTACT_FLOW_DISCONNECT", "EXPIRED"):
            outcome = "timeout"
        else:
            outcome = "abandoned"
            abandoned_at = ended_at
        if wait_s is None and ended_at is not None:
            wait_s = (ended_at - queued_at).total_seconds()
    for name, moment in (("Agent.ConnectedToAgentTimestamp", answered_at), ("end", ended_at)):
        if moment is not None and moment < queued_at:
            raise _Invalid(name, f"{moment.isoformat()} is before Queue.EnqueueTimestamp")

    return ContactRecord(
        source=source,
        queue_key=queue_key,
        external_id=contact_id,
        channel=channel,
        queued_at=queued_at,
        outcome=outcome,
        raw_ref=ref,
        customer_key=_text_field(ctr, "CustomerEndpoint.Address"),
        answered_at=answered_at,
        ended_at=ended_at,
        abandoned_at=abandoned_at,
        agent_key=(
            (_text_field(ctr, "Agent.Username") or _text_field(ctr, "Agent.ARN"))
            if answered_at is not None
            else None
        ),
        wait_s=wait_s,
        talk_s=_seconds(ctr, "Agent.AgentInteractionDuration"),
        hold_s=_seconds(ctr, "Agent.CustomerHoldDuration"),
        hold_count=_count(ctr, "Agent.NumberOfHolds"),
        acw_s=_seconds(ctr, "Agent.AfterContactWorkDuration"),
        transferred=transferred,
        source_version=(updated - _EPOCH) // _MILLISECOND,
    )
