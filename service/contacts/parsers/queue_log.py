"""Asterisk `queue_log` → contact records and agent-state events, streaming.

Input: lines `epoch|callid|queue|agent|event|data1|…` (FORMAT.md), from a
file object iterated line by line, so a 1 GB log is never in memory. The
table exports (`queue_log_tables.py`) render their rows as the same lines.

Contacts (KPIS.md "a contact offered to a queue")
-------------------------------------------------
* One `ContactRecord` per call **and queue**: `external_id` is
  `callid@queue`, and `callid@queue#2`, `#3` … when the same call enters the
  same queue again. Deterministic, so a re-import gives the same ids.
* A call that enters queue B while still waiting in queue A (no exit line
  in A) ends in A as `overflow` at that moment. A call that left A by
  timeout, empty queue or exit key and enters a queue within
  `overflow_window_s` (default 300 s) was not lost: its A record, already
  emitted as `timeout`/`exit_empty`/`exit_key`, is emitted again as
  `overflow` (`transferred_out` for an exit key: the caller chose to leave)
  with a higher `source_version` — newer version wins downstream.
* `wait_s` is Asterisk's own holdtime/waittime (CONNECT data1, ABANDON and
  EXIT* waittime): the time the caller waited **in the queue**, never
  customer hold. `hold_s`, `hold_count` and `acw_s` stay `None`: queue_log
  does not record customer hold or wrap-up. `talk_s` is COMPLETE*/TRANSFER
  calltime (from the answer to the end; it includes any hold).
* TRANSFER / BLINDTRANSFER / ATTENDEDTRANSFER end an answered call with
  `transferred=True`; holdtime and calltime are the 3rd and 4th fields
  (ATTENDEDTRANSFER LINK carries one more field in the middle), whatever
  follows them (origposition, absent before Asterisk 1.6, or a stray `|`).
* Wazo's FULL / CLOSED / DIVERT_* (caller never entered: diverted) become
  records with outcome `overflow` and zero wait; JOINEMPTY and LEAVEEMPTY
  `exit_empty`.
* A call whose start lies before the input (the log was cut) is rebuilt
  from the logged durations (queued_at = event time - calltime - holdtime)
  and counted in `stats.reconstructed`; an event for a call that already
  ended (a duplicated line) is rejected with a `ParseIssue`.
* Ring events are ignored on purpose: RINGNOANSWER/RINGCANCELED carry ring
  time in milliseconds (CONNECT's ring time is seconds) and describe offers
  to members, which `ContactRecord` does not model.

Agent states
------------
AGENTLOGIN / AGENTCALLBACKLOGIN → available; AGENTLOGOFF /
AGENTCALLBACKLOGOFF → logged_out (reason: the logoff reason); ADDMEMBER →
available (not_ready when added paused), REMOVEMEMBER → logged_out when it
leaves the agent in no queue the log has added it to (otherwise its state
again, for a queue it is still in: an agent stays logged in while it is a
member of any queue); PAUSE / PAUSEALL → not_ready with the reason; UNPAUSE /
UNPAUSEALL → available; CONNECT → on_contact; the end of the call →
available, or not_ready when the agent paused during it (acw is never
emitted: queue_log does not record wrap-up). A pause during a call, or an
unpause after logoff, changes no state by itself. Agent keys are the raw
member strings: `Local/1127@callback-agent` (ADDMEMBER) and `Agent/1127`
(CONNECT) are different keys here; mapping them to one agent is the agent
directory's job.

Incremental import
------------------
The parser's state (open calls, recent call ids, agents' pause flags and
the last processed time with the lines processed at that second) is a JSON
object: `state()` after one file, `QueueLogParser(state=...)` before the
next. Calls still open at the end of a file are completed by the next one.
A rotated log that repeats the tail of the last import produces each
record once: lines before the saved second are skipped
(`stats.skipped_overlap`), and lines of that second as long as they repeat,
in order, the lines imported for it. Content cannot tell a repeat from a
new identical line in that same second (voipreports1 lines 766-770 repeat
OUTDIAL/OUTCONGESTION); only events that can recur identically (rings,
custom events, pause toggles) can be written so, and call events repeated
anyway (a log copied twice) are rejected as duplicates, never counted
twice. `open_records()` gives provisional records (`in_queue`, or
answered and still talking) for live views. A call open for more than
`stale_after_s` (24 h) is dropped with a `ParseIssue` so the state cannot
grow without bound.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Literal

from service.contacts.parsers._common import MAX_EPOCH, MIN_EPOCH, ImportStats
from service.contacts.records import (
    AgentState,
    AgentStateEvent,
    ContactRecord,
    Outcome,
    ParsedItem,
    ParseIssue,
    excerpt,
    record_from_json,
    record_to_json,
)

SOURCE = "asterisk"
STATE_VERSION = 1
MAX_DURATION_S = 7 * 86_400  # no queue wait or call lasts a week: a larger value is corrupt

# event -> (outcome, index of waittime in the data fields)
_EXITS: dict[str, tuple[Outcome, int]] = {
    "ABANDON": ("abandoned", 2),
    "EXITWITHTIMEOUT": ("timeout", 2),
    "EXITEMPTY": ("exit_empty", 2),
    "EXITWITHKEY": ("exit_key", 3),
    "WITHDRAW": ("transferred_out", 2),
}
# Wazo: the caller never entered the queue (or left it empty), no data fields.
_DIVERTS: dict[str, Outcome] = {
    "FULL": "overflow",
    "CLOSED": "overflow",
    "DIVERT_CA_RATIO": "overflow",
    "DIVERT_HOLDTIME": "overflow",
    "JOINEMPTY": "exit_empty",
}
# An exit that is corrected when the same call enters a queue again soon after.
_REQUEUED: dict[str, Outcome] = {
    "timeout": "overflow",
    "exit_empty": "overflow",
    "exit_key": "transferred_out",
}
IGNORED_EVENTS = frozenset(
    {
        "QUEUESTART",
        "CONFIGRELOAD",
        "RINGNOANSWER",
        "RINGCANCELED",
        "PENALTY",
        "RINGINUSE",
        "AGENTDUMP",
        "SYSCOMPAT",
    }
)
_NONE = "NONE"


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _since(start: float, end: float) -> float:
    """Seconds from start to end; 0 when a clock step wrote the lines out of order."""
    return float(end - start) if end > start else 0.0


def _version(last_t: float, events: int) -> int:
    return int(last_t) * 1000 + min(events, 999)


def _add_ref(raw_ref: str, name: str, token: str) -> str:
    """`a:1,2` + (a, 3) -> `a:1,2,3`; + (b, 1) -> `a:1,2;b:1` (file names may contain ':')."""
    last_file = raw_ref[raw_ref.rfind(";") + 1 :].rpartition(":")[0]
    return f"{raw_ref},{token}" if last_file == name else f"{raw_ref};{name}:{token}"


class _Call:
    """A call waiting or talking in one queue."""

    __slots__ = (
        "agent",
        "answered_t",
        "callid",
        "customer_key",
        "events",
        "external_id",
        "key",
        "last_t",
        "queue",
        "queued_t",
        "raw_ref",
        "ref_file",
        "wait_s",
    )

    def __init__(
        self,
        callid: str,
        queue: str,
        external_id: str,
        queued_t: float,
        customer_key: str | None,
        name: str,
        token: str,
        t: float,
    ) -> None:
        self.callid = callid
        self.queue = queue
        self.key = f"{callid}@{queue}"
        self.external_id = external_id
        self.queued_t = queued_t
        self.customer_key = customer_key
        self.answered_t: float | None = None
        self.agent: str | None = None
        self.wait_s: float | None = None
        self.raw_ref = f"{name}:{token}"
        self.ref_file = name
        self.events = 1
        self.last_t = t

    def to_json(self) -> dict[str, Any]:
        return {
            "callid": self.callid,
            "queue": self.queue,
            "external_id": self.external_id,
            "queued_t": self.queued_t,
            "customer_key": self.customer_key,
            "answered_t": self.answered_t,
            "agent": self.agent,
            "wait_s": self.wait_s,
            "raw_ref": self.raw_ref,
            "ref_file": self.ref_file,
            "events": self.events,
            "last_t": self.last_t,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Call:
        call = cls(
            str(data["callid"]),
            str(data["queue"]),
            str(data["external_id"]),
            data["queued_t"],
            data["customer_key"],
            str(data["ref_file"]),
            "",
            data["last_t"],
        )
        call.answered_t = data["answered_t"]
        call.agent = data["agent"]
        call.wait_s = data["wait_s"]
        call.raw_ref = str(data["raw_ref"])
        call.events = int(data["events"])
        return call


class _Agent:
    __slots__ = ("paused", "queues", "reason", "state")

    def __init__(
        self,
        state: str | None = None,
        paused: bool = False,
        reason: str | None = None,
        queues: list[str] | None = None,
    ):
        self.state = state
        self.paused = paused
        self.reason = reason
        # Queues ADDMEMBER put the agent in, oldest first (REMOVEMEMBER and logoff take
        # them out): an agent removed from one queue is still logged in on the others.
        self.queues: list[str] = queues or []


_Handler = Callable[[float, str, str, str, str, list[str], str], bool]


class QueueLogParser:
    """Stateful `queue_log` reader; one instance per PBX, fed file after file.

    `parse(lines, name)` yields `ContactRecord`, `AgentStateEvent` and
    `ParseIssue` items in input order; afterwards `stats` describes that
    input and `state()` is what the next import passes back in.
    """

    def __init__(
        self,
        state: dict[str, Any] | None = None,
        *,
        source: str = SOURCE,
        overflow_window_s: float = 300.0,
        stale_after_s: float = 86_400.0,
        ignore_events: Iterable[str] = (),
    ) -> None:
        """`ignore_events`: a site's custom events (dialplan `QueueLog()`) declared as ignored
        on purpose rather than unknown, e.g. voipreports1's OUTDIAL/OUTANSWER."""
        self.source = source
        self.ignored_events = IGNORED_EVENTS | frozenset(ignore_events)
        self.overflow_window_s = overflow_window_s
        self.stale_after_s = stale_after_s
        self.stats = ImportStats(file="")
        self._calls: dict[str, dict[str, _Call]] = {}
        # callid@queue -> [entries, last event time, time of the last entry]
        self._seen: dict[str, list[float]] = {}
        self._exits: dict[str, tuple[float, ContactRecord]] = {}  # callid -> (exit time, record)
        self._agents: dict[str, _Agent] = {}
        self._wm_t: float | None = None
        self._wm_lines: list[str] = []
        self._out: list[ParsedItem] = []
        self._name = ""
        self._row_refs = False
        self._unknown_reported: set[str] = set()
        self._handlers: dict[str, _Handler] = {
            "ENTERQUEUE": self._enterqueue,
            "CONNECT": self._connect,
            "COMPLETECALLER": self._complete,
            "COMPLETEAGENT": self._complete,
            "TRANSFER": self._transfer,
            "BLINDTRANSFER": self._transfer,
            "ATTENDEDTRANSFER": self._transfer,
            "LEAVEEMPTY": self._leaveempty,
            "AGENTLOGIN": self._agent_login,
            "AGENTCALLBACKLOGIN": self._agent_login,
            "AGENTLOGOFF": self._agent_logoff,
            "AGENTCALLBACKLOGOFF": self._agent_logoff,
            "ADDMEMBER": self._addmember,
            "REMOVEMEMBER": self._removemember,
            "PAUSE": self._pause,
            "PAUSEALL": self._pause,
            "UNPAUSE": self._unpause,
            "UNPAUSEALL": self._unpause,
        }
        for event in _EXITS:
            self._handlers[event] = self._exit
        for event in _DIVERTS:
            self._handlers[event] = self._divert
        if state is not None:
            self._load(state)

    # ------------------------------------------------------------------ input

    def parse(self, lines: Iterable[str], name: str) -> Iterator[ParsedItem]:
        """Lines of a flat `queue_log` (a text file object will do); `name` goes into `raw_ref`.

        Consume the iterator to the end before reading `stats` or `state()`.
        """
        return self._run(enumerate(lines, 1), name, row_refs=False)

    def parse_rows(
        self,
        rows: Iterable[tuple[int, str] | ParseIssue],
        name: str,
        *,
        refs: Literal["row", "line"] = "row",
    ) -> Iterator[ParsedItem]:
        """`(ref, flat line)` pairs from a table adapter; its issues pass through as malformed.

        `refs="row"`: the numbers are row ids (`raw_ref` `file:#10`); `"line"`: physical lines.
        """
        return self._run(rows, name, row_refs=refs == "row")

    def _run(
        self, rows: Iterable[tuple[int, str] | ParseIssue], name: str, *, row_refs: bool
    ) -> Iterator[ParsedItem]:
        stats = self.stats = ImportStats(file=name)
        self._name = name
        self._row_refs = row_refs
        self._unknown_reported = set()
        out = self._out
        out.clear()
        handlers = self._handlers
        ignored_events = self.ignored_events
        used, ignored, unknown, rejected = stats.used, stats.ignored, stats.unknown, stats.rejected
        low, high = MIN_EPOCH, MAX_EPOCH
        # Overlap with the last import: skip lines up to its last second.
        wm_t = self._wm_t
        catching_up = wm_t is not None
        # The lines of that second, in order: the new input's lines of that second must repeat
        # them as a prefix (a rotated log repeats a tail); the first difference is new data,
        # even an identical line (PBXs write identical lines within one second).
        pending = self._wm_lines
        matched = 0
        cur_t: float = wm_t if wm_t is not None else float("-inf")
        cur_lines = list(self._wm_lines)
        since_housekeeping = 0
        prefix = "#" if row_refs else ""
        items = blank = malformed = skipped = 0
        try:
            for item in rows:
                items += 1
                if item.__class__ is ParseIssue:
                    malformed += 1
                    yield item
                    continue
                ref, raw = item  # type: ignore[misc]
                line = raw.rstrip("\r\n")
                if not line or line.isspace():
                    blank += 1
                    continue
                if "\x00" in line:
                    malformed += 1
                    yield self._issue(ref, "contains a NUL character (a corrupt line)", line)
                    continue
                parts = line.split("|")
                if len(parts) < 5:
                    malformed += 1
                    yield self._issue(
                        ref,
                        "expected at least 5 '|'-separated fields (time|callid|queue|agent|event)",
                        line,
                    )
                    continue
                try:
                    t: float = int(parts[0])
                except ValueError:
                    try:
                        t = float(parts[0])
                    except ValueError:
                        t = float("nan")
                if not low <= t < high:  # also false for NaN
                    malformed += 1
                    yield self._issue(ref, "time is not a plausible UNIX epoch", line, field="time")
                    continue
                if catching_up:
                    if t < cur_t:  # cur_t == wm_t while catching up
                        skipped += 1
                        continue
                    if t == cur_t and matched < len(pending) and pending[matched] == line:
                        matched += 1
                        skipped += 1
                        continue
                    catching_up = False
                event = parts[4]
                handler = handlers.get(event)
                if handler is not None:
                    if handler(
                        t, parts[1], parts[2], parts[3], event, parts[5:], prefix + str(ref)
                    ):
                        used[event] += 1
                    else:
                        rejected[event] += 1
                elif event in ignored_events:
                    ignored[event] += 1
                else:
                    unknown[event] += 1
                    if event not in self._unknown_reported:
                        self._unknown_reported.add(event)
                        out.append(
                            self._issue(
                                ref,
                                f"unknown event {event!r} counted and skipped (first of its kind)",
                                line,
                                field="event",
                            )
                        )
                if t > cur_t:
                    cur_t = t
                    cur_lines = [line]
                elif t == cur_t:
                    cur_lines.append(line)
                if out:
                    yield from out
                    out.clear()
                since_housekeeping += 1
                if since_housekeeping >= 65_536:
                    since_housekeeping = 0
                    self._housekeeping(cur_t)
                    if out:
                        yield from out
                        out.clear()
        finally:
            stats.items += items
            stats.blank += blank
            stats.malformed += malformed
            stats.skipped_overlap += skipped

        if cur_t != float("-inf"):
            self._wm_t = cur_t
            self._wm_lines = cur_lines
            self._housekeeping(cur_t)
        stats.calls_open = sum(len(by_queue) for by_queue in self._calls.values())
        if out:
            yield from out
            out.clear()

    # ------------------------------------------------------------------ state

    def state(self) -> dict[str, Any]:
        """JSON-serializable; pass to the next parser for the next file."""
        return {
            "version": STATE_VERSION,
            "source": self.source,
            "watermark": {"time": self._wm_t, "lines": list(self._wm_lines)},
            "calls": [c.to_json() for by_queue in self._calls.values() for c in by_queue.values()],
            "seen": {key: list(value) for key, value in self._seen.items()},
            "exits": {
                callid: {"t": t, "record": record_to_json(record)}
                for callid, (t, record) in self._exits.items()
            },
            "agents": {k: [a.state, a.paused, a.reason, a.queues] for k, a in self._agents.items()},
        }

    def _load(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"queue_log parser state version {state.get('version')!r} is not {STATE_VERSION}"
            )
        watermark = state["watermark"]
        self._wm_t = watermark["time"]
        self._wm_lines = [str(line) for line in watermark["lines"]]
        for data in state["calls"]:
            call = _Call.from_json(data)
            self._calls.setdefault(call.callid, {})[call.queue] = call
        self._seen = {str(k): [v[0], v[1], v[2]] for k, v in state["seen"].items()}
        self._exits = {
            str(callid): (value["t"], record_from_json(value["record"]))
            for callid, value in state["exits"].items()
        }
        # A state saved before queues were tracked has three entries: no queue known.
        self._agents = {
            str(k): _Agent(v[0], bool(v[1]), v[2], [str(q) for q in v[3]] if len(v) > 3 else [])
            for k, v in state["agents"].items()
        }

    def open_records(self) -> list[ContactRecord]:
        """Provisional records of calls still open: `in_queue`, or answered and talking."""
        records = []
        for by_queue in self._calls.values():
            for call in by_queue.values():
                answered = call.answered_t is not None
                records.append(
                    ContactRecord(
                        source=self.source,
                        queue_key=call.queue,
                        external_id=call.external_id,
                        channel="voice",
                        queued_at=_dt(call.queued_t),
                        outcome="answered" if answered else "in_queue",
                        raw_ref=call.raw_ref,
                        customer_key=call.customer_key,
                        answered_at=_dt(call.answered_t) if call.answered_t is not None else None,
                        agent_key=call.agent,
                        wait_s=call.wait_s,
                        source_version=_version(call.last_t, call.events),
                    )
                )
        return records

    def _housekeeping(self, now: float) -> None:
        horizon = now - self.stale_after_s
        for callid in [
            c for c, q in self._calls.items() if any(x.last_t < horizon for x in q.values())
        ]:
            by_queue = self._calls[callid]
            for queue in [q for q, x in by_queue.items() if x.last_t < horizon]:
                call = by_queue.pop(queue)
                self.stats.dropped_stale += 1
                self._out.append(
                    ParseIssue(
                        file=self._name,
                        reason=(
                            f"call {call.external_id} still open {self.stale_after_s:.0f} s after its "
                            f"last event ({_dt(call.last_t).isoformat()}, {call.raw_ref}): "
                            "dropped without an outcome"
                        ),
                        field="callid",
                    )
                )
            if not by_queue:
                del self._calls[callid]
        for key in [k for k, v in self._seen.items() if v[1] < horizon]:
            callid = key.partition("@")[0]  # call ids never contain '@'; queue names might
            if callid not in self._calls:
                del self._seen[key]
        window = now - self.overflow_window_s
        for callid in [c for c, (t, _) in self._exits.items() if t < window]:
            del self._exits[callid]

    # ---------------------------------------------------------------- helpers

    def _issue(self, ref: int, reason: str, line: str, *, field: str | None = None) -> ParseIssue:
        if self._row_refs:
            return ParseIssue(
                file=self._name, record=ref, field=field, reason=reason, excerpt=excerpt(line)
            )
        return ParseIssue(
            file=self._name, line=ref, field=field, reason=reason, excerpt=excerpt(line)
        )

    def _ref_issue(self, ref: str, reason: str, *, field: str | None = None) -> ParseIssue:
        number = int(ref.lstrip("#"))
        if self._row_refs:
            return ParseIssue(file=self._name, record=number, field=field, reason=reason)
        return ParseIssue(file=self._name, line=number, field=field, reason=reason)

    def _duration(self, data: list[str], index: int, what: str, ref: str) -> float | None:
        """data[index] as non-negative seconds; None when absent or invalid (invalid is reported)."""
        if index < 0:
            index += len(data)
            if index < 0:
                return None
        if index >= len(data):
            return None
        text = data[index]
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not 0 <= value <= MAX_DURATION_S:  # also false for NaN
            self._out.append(
                self._ref_issue(
                    ref,
                    f"{what} {text!r} is not a number of seconds up to a week; "
                    "using the timestamps instead",
                    field=f"data{index + 1} ({what})",
                )
            )
            return None
        return value

    def _new_call(
        self, callid: str, queue: str, queued_t: float, customer: str | None, ref: str, t: float
    ) -> _Call:
        key = f"{callid}@{queue}"
        seen = self._seen.get(key)
        if seen is None:
            self._seen[key] = [1, t, queued_t]
            external_id = key
        else:
            seen[0] += 1
            seen[1] = t
            seen[2] = queued_t
            external_id = f"{key}#{int(seen[0])}"
        return _Call(callid, queue, external_id, queued_t, customer, self._name, ref, t)

    def _open(self, call: _Call) -> None:
        self._calls.setdefault(call.callid, {})[call.queue] = call

    def _find(self, callid: str, queue: str) -> _Call | None:
        by_queue = self._calls.get(callid)
        return by_queue.get(queue) if by_queue else None

    def _touch(self, call: _Call, t: float, ref: str) -> None:
        if call.ref_file == self._name:
            call.raw_ref += "," + ref
        else:
            call.raw_ref += f";{self._name}:{ref}"
            call.ref_file = self._name
        call.events += 1
        if t > call.last_t:
            call.last_t = t
        seen = self._seen.get(call.key)
        if seen is not None and t > seen[1]:
            seen[1] = t

    def _close(
        self,
        call: _Call,
        outcome: Outcome,
        end_t: float,
        *,
        talk_s: float | None = None,
        transferred: bool | None = None,
    ) -> ContactRecord:
        by_queue = self._calls.get(call.callid)
        if by_queue is not None and by_queue.get(call.queue) is call:
            del by_queue[call.queue]
            if not by_queue:
                del self._calls[call.callid]
        answered_t = call.answered_t
        wait_s = call.wait_s
        if wait_s is None:
            wait_s = _since(call.queued_t, end_t if answered_t is None else answered_t)
        ended_at = _dt(end_t)
        record = ContactRecord(
            source=self.source,
            queue_key=call.queue,
            external_id=call.external_id,
            channel="voice",
            queued_at=_dt(call.queued_t),
            outcome=outcome,
            raw_ref=call.raw_ref,
            customer_key=call.customer_key,
            answered_at=None if answered_t is None else _dt(answered_t),
            ended_at=ended_at,
            abandoned_at=ended_at if outcome == "abandoned" else None,
            agent_key=call.agent,
            wait_s=wait_s,
            talk_s=talk_s,
            transferred=None if answered_t is None else transferred,
            source_version=_version(call.last_t, call.events),
        )
        self._out.append(record)
        self.stats.records += 1
        return record

    def _already_ended(self, callid: str, queue: str, event: str, ref: str) -> bool:
        if f"{callid}@{queue}" in self._seen:
            self._out.append(
                self._ref_issue(
                    ref,
                    f"{event} for call {callid} in queue {queue}, which is not open there "
                    "(it already ended: a duplicated or late line)",
                    field="callid",
                )
            )
            return True
        return False

    def _call_key_ok(self, callid: str, queue: str, event: str, ref: str) -> bool:
        if callid in ("", _NONE) or queue in ("", _NONE):
            self._out.append(
                self._ref_issue(ref, f"{event} without a call id or queue", field="callid")
            )
            return False
        return True

    # ------------------------------------------------------------ call events

    def _enterqueue(
        self, t: float, callid: str, queue: str, agent: str, event: str, data: list[str], ref: str
    ) -> bool:
        if not self._call_key_ok(callid, queue, event, ref):
            return False
        # A call cannot enter the same queue twice in one second: the same line again
        # (a log copied twice around a rotation), whether the call is still open or not.
        seen = self._seen.get(f"{callid}@{queue}")
        if seen is not None and seen[2] == t:
            self._out.append(
                self._ref_issue(ref, f"duplicate ENTERQUEUE for call {callid}", field="event")
            )
            return False
        by_queue = self._calls.get(callid)
        if by_queue:
            for other in list(by_queue.values()):
                # Entered a queue (this one again, or another) while still waiting: it moved
                # on. An answered call stays open in another queue (the agent may still be
                # talking, e.g. an attended transfer), not in this one.
                if other.answered_t is None:
                    self._touch(other, t, ref)
                    self._close(other, "overflow", t)
                elif other.queue == queue:
                    self._touch(other, t, ref)
                    self._close(other, "answered", t, talk_s=_since(other.answered_t, t))
        exit_ = self._exits.pop(callid, None)
        if exit_ is not None:
            exit_t, previous = exit_
            corrected = _REQUEUED.get(previous.outcome)
            if corrected is not None and t - exit_t <= self.overflow_window_s:
                record = ContactRecord(
                    **{
                        **record_to_dict(previous),
                        "outcome": corrected,
                        "abandoned_at": None,
                        "raw_ref": _add_ref(previous.raw_ref, self._name, ref),
                        "source_version": max(_version(t, 1), (previous.source_version or 0) + 1),
                    }
                )
                self._out.append(record)
                self.stats.records += 1
                self.stats.corrections += 1
        customer = data[1] if len(data) > 1 and data[1] else None
        self._open(self._new_call(callid, queue, t, customer, ref, t))
        return True

    def _connect(
        self, t: float, callid: str, queue: str, agent: str, event: str, data: list[str], ref: str
    ) -> bool:
        if not self._call_key_ok(callid, queue, event, ref):
            return False
        hold = self._duration(data, 0, "holdtime", ref)
        call = self._find(callid, queue)
        if call is None:
            if self._already_ended(callid, queue, event, ref):
                return False
            if hold is None:
                self._out.append(
                    self._ref_issue(
                        ref, "CONNECT of a call not seen entering the queue, without holdtime"
                    )
                )
                return False
            call = self._new_call(callid, queue, t - hold, None, ref, t)
            self._open(call)
            self.stats.reconstructed += 1
        else:
            if call.answered_t is not None:
                self._out.append(
                    self._ref_issue(
                        ref, f"second CONNECT for call {callid} in {queue}", field="event"
                    )
                )
                return False
            self._touch(call, t, ref)
        call.answered_t = t
        call.agent = None if agent == _NONE else agent
        call.wait_s = hold if hold is not None else _since(call.queued_t, t)
        if call.agent is not None:
            self._agent_call_start(call.agent, queue, t, ref)
        return True

    def _end_answered(
        self,
        t: float,
        callid: str,
        queue: str,
        agent: str,
        event: str,
        ref: str,
        hold: float | None,
        talk: float | None,
        transferred: bool,
    ) -> bool:
        if not self._call_key_ok(callid, queue, event, ref):
            return False
        call = self._find(callid, queue)
        if call is None:
            if self._already_ended(callid, queue, event, ref):
                return False
            if hold is None or talk is None:
                self._out.append(
                    self._ref_issue(
                        ref,
                        f"{event} of a call not seen entering the queue, without holdtime and calltime",
                    )
                )
                return False
            call = self._new_call(callid, queue, t - talk - hold, None, ref, t)
            call.answered_t = t - talk
            call.wait_s = hold
            self._open(call)
            self.stats.reconstructed += 1
        else:
            self._touch(call, t, ref)
            if call.answered_t is None:  # the CONNECT line is missing
                call.answered_t = t - talk if talk is not None else t
                call.wait_s = hold
        if agent != _NONE:
            call.agent = agent
        if talk is None:
            talk = 0.0 if call.answered_t is None else _since(call.answered_t, t)
        self._close(call, "answered", t, talk_s=talk, transferred=transferred)
        if call.agent is not None:
            self._agent_call_end(call.agent, queue, t, ref)
        return True

    def _complete(
        self, t: float, callid: str, queue: str, agent: str, event: str, data: list[str], ref: str
    ) -> bool:
        hold = self._duration(data, 0, "holdtime", ref)
        talk = self._duration(data, 1, "calltime", ref)
        return self._end_answered(t, callid, queue, agent, event, ref, hold, talk, False)

    def _transfer(
        self, t: float, callid: str, queue: str, agent: str, event: str, data: list[str], ref: str
    ) -> bool:
        # extension|context|holdtime|calltime[|origposition] (Asterisk 1.4 wrote no
        # origposition); ATTENDEDTRANSFER: method|data|holdtime|…, LINK with two data
        # fields. Read by position: from the right, a missing origposition or a trailing
        # '|' made calltime the holdtime.
        at = 3 if event == "ATTENDEDTRANSFER" and data and data[0] == "LINK" else 2
        hold = self._duration(data, at, "holdtime", ref)
        talk = self._duration(data, at + 1, "calltime", ref)
        return self._end_answered(t, callid, queue, agent, event, ref, hold, talk, True)

    def _exit(
        self, t: float, callid: str, queue: str, agent: str, event: str, data: list[str], ref: str
    ) -> bool:
        if not self._call_key_ok(callid, queue, event, ref):
            return False
        outcome, index = _EXITS[event]
        wait = self._duration(data, index, "waittime", ref)
        call = self._find(callid, queue)
        if call is None:
            if self._already_ended(callid, queue, event, ref):
                return False
            if wait is None:
                self._out.append(
                    self._ref_issue(
                        ref, f"{event} of a call not seen entering the queue, without waittime"
                    )
                )
                return False
            call = self._new_call(callid, queue, t - wait, None, ref, t)
            self.stats.reconstructed += 1
        else:
            if call.answered_t is not None:
                self._out.append(
                    self._ref_issue(
                        ref, f"{event} for call {callid} after it was answered", field="event"
                    )
                )
                return False
            self._touch(call, t, ref)
        call.wait_s = wait if wait is not None else _since(call.queued_t, t)
        record = self._close(call, outcome, t)
        if outcome in _REQUEUED:
            self._exits[callid] = (t, record)
        return True

    def _leaveempty(
        self, t: float, callid: str, queue: str, agent: str, event: str, data: list[str], ref: str
    ) -> bool:
        if not self._call_key_ok(callid, queue, event, ref):
            return False
        call = self._find(callid, queue)
        if call is None or call.answered_t is not None:
            self._out.append(
                self._ref_issue(ref, f"{event} for call {callid}, which is not waiting in {queue}")
            )
            return False
        self._touch(call, t, ref)
        record = self._close(call, "exit_empty", t)
        self._exits[callid] = (t, record)
        return True

    def _divert(
        self, t: float, callid: str, queue: str, agent: str, event: str, data: list[str], ref: str
    ) -> bool:
        if not self._call_key_ok(callid, queue, event, ref):
            return False
        outcome = _DIVERTS[event]
        call = self._find(callid, queue)
        if call is None:
            call = self._new_call(callid, queue, t, None, ref, t)
            call.wait_s = 0.0
        elif call.answered_t is not None:
            self._out.append(
                self._ref_issue(
                    ref, f"{event} for call {callid} after it was answered", field="event"
                )
            )
            return False
        else:
            self._touch(call, t, ref)
        self._close(call, outcome, t)
        return True

    # ----------------------------------------------------------- agent events

    def _agent_event(
        self,
        agent: str,
        state: AgentState,
        t: float,
        ref: str,
        queue: str | None,
        reason: str | None,
    ) -> None:
        self._out.append(
            AgentStateEvent(
                source=self.source,
                agent_key=agent,
                state=state,
                at=_dt(t),
                raw_ref=f"{self._name}:{ref}",
                reason=reason,
                queue_key=None if queue in (None, "", _NONE) else queue,
            )
        )
        self.stats.agent_events += 1

    def _agent(self, agent: str) -> _Agent:
        found = self._agents.get(agent)
        if found is None:
            found = self._agents[agent] = _Agent()
        return found

    def _agent_call_start(self, agent: str, queue: str, t: float, ref: str) -> None:
        self._agent(agent).state = "on_contact"
        self._agent_event(agent, "on_contact", t, ref, queue, None)

    def _agent_call_end(self, agent: str, queue: str, t: float, ref: str) -> None:
        a = self._agent(agent)
        if a.state == "logged_out":
            return
        if a.paused:
            a.state = "not_ready"
            self._agent_event(agent, "not_ready", t, ref, queue, a.reason)
        else:
            a.state = "available"
            self._agent_event(agent, "available", t, ref, queue, None)

    def _agent_ok(self, agent: str, event: str, ref: str) -> bool:
        if agent in ("", _NONE):
            self._out.append(self._ref_issue(ref, f"{event} without an agent", field="agent"))
            return False
        return True

    def _agent_login(
        self, t: float, callid: str, queue: str, agent: str, event: str, data: list[str], ref: str
    ) -> bool:
        if not self._agent_ok(agent, event, ref):
            return False
        a = self._agent(agent)
        a.state, a.paused, a.reason = "available", False, None
        self._agent_event(agent, "available", t, ref, queue, None)
        return True

    def _agent_logoff(
        self, t: float, callid: str, queue: str, agent: str, event: str, data: list[str], ref: str
    ) -> bool:
        if not self._agent_ok(agent, event, ref):
            return False
        # AGENTCALLBACKLOGOFF: exten@context | logintime | reason
        reason = data[2] if event == "AGENTCALLBACKLOGOFF" and len(data) > 2 and data[2] else None
        a = self._agent(agent)
        a.state, a.paused, a.reason, a.queues = "logged_out", False, None, []
        self._agent_event(agent, "logged_out", t, ref, queue, reason)
        return True

    def _addmember(
        self, t: float, callid: str, queue: str, agent: str, event: str, data: list[str], ref: str
    ) -> bool:
        if not self._agent_ok(agent, event, ref):
            return False
        a = self._agent(agent)
        if queue not in a.queues:
            a.queues.append(queue)
        a.paused = bool(data) and data[0] == "PAUSED"
        a.reason = None
        if a.state == "on_contact":
            return True  # the call's end sets the state
        a.state = "not_ready" if a.paused else "available"
        self._agent_event(agent, "not_ready" if a.paused else "available", t, ref, queue, None)
        return True

    def _removemember(
        self, t: float, callid: str, queue: str, agent: str, event: str, data: list[str], ref: str
    ) -> bool:
        if not self._agent_ok(agent, event, ref):
            return False
        a = self._agent(agent)
        if queue in a.queues:
            a.queues.remove(queue)
        if a.queues:
            # Still a member elsewhere: logged in, now for the queue it joined last.
            if a.state not in (None, "logged_out", "on_contact"):
                self._agent_event(agent, a.state, t, ref, a.queues[-1], a.reason)  # type: ignore[arg-type]
            return True
        a.state, a.paused, a.reason = "logged_out", False, None
        self._agent_event(agent, "logged_out", t, ref, queue, None)
        return True

    def _pause(
        self, t: float, callid: str, queue: str, agent: str, event: str, data: list[str], ref: str
    ) -> bool:
        if not self._agent_ok(agent, event, ref):
            return False
        a = self._agent(agent)
        a.paused = True
        a.reason = data[0] if data and data[0] else None
        if a.state not in ("logged_out", "on_contact"):
            a.state = "not_ready"
            self._agent_event(agent, "not_ready", t, ref, queue, a.reason)
        return True

    def _unpause(
        self, t: float, callid: str, queue: str, agent: str, event: str, data: list[str], ref: str
    ) -> bool:
        if not self._agent_ok(agent, event, ref):
            return False
        a = self._agent(agent)
        a.paused, a.reason = False, None
        if a.state not in ("logged_out", "on_contact"):
            a.state = "available"
            self._agent_event(agent, "available", t, ref, queue, None)
        return True


def record_to_dict(record: ContactRecord) -> dict[str, Any]:
    """The record's fields as a dict of Python values (not JSON: datetimes stay)."""
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


def parse_path(
    path: str, state: dict[str, Any] | None = None
) -> tuple[list[ParsedItem], QueueLogParser]:
    """Convenience for scripts and tests: the whole file's items and the parser (stats, state)."""
    parser = QueueLogParser(state)
    with open(path, encoding="utf-8", errors="replace", newline="") as fp:
        items = list(parser.parse(fp, path.rpartition("/")[2]))
    return items, parser
