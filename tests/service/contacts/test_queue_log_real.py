"""The real `queue_log` samples: every line accounted for, calls checked by hand.

Expectations were read off the files (line numbers are the files' own), not
copied from the parser's output. Event counts per name come from counting
the fifth field of each file.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.contacts.parsers.queue_log import QueueLogParser
from service.contacts.parsers.queue_log_tables import psql_table_rows
from service.contacts.records import AgentStateEvent, ContactRecord, ParsedItem, ParseIssue

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "queue_log"


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def parse(name: str) -> tuple[QueueLogParser, list[ParsedItem]]:
    parser = QueueLogParser()
    with (DATA / name).open(encoding="utf-8", newline="") as fp:
        items = list(parser.parse(fp, name))
    return parser, items


def records(items: list[ParsedItem]) -> dict[str, ContactRecord]:
    found = [i for i in items if isinstance(i, ContactRecord)]
    by_id = {r.external_id: r for r in found}
    assert len(by_id) == len(found), "one record per call and queue"
    return by_id


def agent_events(items: list[ParsedItem]) -> list[AgentStateEvent]:
    return [i for i in items if isinstance(i, AgentStateEvent)]


# ----------------------------------------------------------------- voipreports1


@pytest.fixture(scope="module")
def voip() -> tuple[QueueLogParser, list[ParsedItem]]:
    return parse("voipreports1.queue_log")


def test_voipreports1_every_line_is_accounted_for(
    voip: tuple[QueueLogParser, list[ParsedItem]],
) -> None:
    parser, _ = voip
    s = parser.stats
    assert s.items == 1000
    assert s.used == Counter(
        {
            "ENTERQUEUE": 108,
            "CONNECT": 93,
            "COMPLETEAGENT": 51,
            "COMPLETECALLER": 38,
            "ABANDON": 12,
            "EXITWITHTIMEOUT": 1,
            "ATTENDEDTRANSFER": 1,
            "BLINDTRANSFER": 1,
            "ADDMEMBER": 26,
            "REMOVEMEMBER": 10,
            "AGENTCALLBACKLOGIN": 14,
            "AGENTCALLBACKLOGOFF": 10,
        }
    )
    assert s.ignored == Counter({"RINGNOANSWER": 360, "CONFIGRELOAD": 11, "QUEUESTART": 7})
    # Custom outbound events written by the dialplan (queue NONE): not queue contacts.
    assert s.unknown == Counter(
        {
            "OUTDIAL": 128,
            "OUTANSWER": 77,
            "OUTCANCEL": 24,
            "OUTCHANUNAVAIL": 18,
            "OUTCONGESTION": 9,
            "OUTTRANSFER": 1,
        }
    )
    assert s.events == 1000
    assert (s.malformed, s.blank, s.skipped_overlap, sum(s.rejected.values())) == (0, 0, 0, 0)
    assert s.balanced()


def test_voipreports1_calls_and_outcomes(voip: tuple[QueueLogParser, list[ParsedItem]]) -> None:
    parser, items = voip
    found = records(items)
    # 108 ENTERQUEUE: 89 COMPLETE* + 2 transfers answered and ended, 12 ABANDON,
    # 1 EXITWITHTIMEOUT; 2 answered calls still talking and 2 still waiting at line 1000.
    assert Counter(r.outcome for r in found.values()) == Counter(
        {"answered": 91, "abandoned": 12, "timeout": 1}
    )
    assert parser.stats.records == 104
    assert parser.stats.calls_open == 4
    assert parser.stats.reconstructed == 0
    assert all(r.queue_key == "IT" and r.channel == "voice" for r in found.values())
    # queue_log knows nothing of customer hold or wrap-up: unknown, not zero.
    assert all(r.hold_s is None and r.acw_s is None for r in found.values())
    assert sum(1 for r in found.values() if r.transferred) == 2


def test_voipreports1_answered_call_by_hand(voip: tuple[QueueLogParser, list[ParsedItem]]) -> None:
    # 13: 1543602677|1543602660.197|IT|NONE|ENTERQUEUE||15558792758|1
    # 14-18: five RINGNOANSWER (ms) - not part of the record
    # 19: 1543602753|…|Agent/1127|CONNECT|76|1543602746.232|6   (holdtime 76 = queue wait, ring 6 s)
    # 20: 1543603600|…|Agent/1127|COMPLETECALLER|76|847|1
    r = records(voip[1])["1543602660.197@IT"]
    assert r.queued_at == at(1543602677)
    assert r.answered_at == at(1543602753)
    assert r.ended_at == at(1543603600)
    assert (r.wait_s, r.talk_s, r.hold_s) == (76.0, 847.0, None)
    assert (r.outcome, r.agent_key, r.customer_key) == ("answered", "Agent/1127", "15558792758")
    assert r.transferred is False
    assert r.abandoned_at is None
    assert r.raw_ref == "voipreports1.queue_log:13,19,20"


def test_voipreports1_transfers_by_hand(voip: tuple[QueueLogParser, list[ParsedItem]]) -> None:
    found = records(voip[1])
    # 174 ENTERQUEUE 1543833617, 175 CONNECT 1543833623 Agent/1128 holdtime 6,
    # 177 ATTENDEDTRANSFER 1543833653 with fields ||6|30|1 (read from the right).
    attended = found["1543833609.335@IT"]
    assert (attended.outcome, attended.transferred) == ("answered", True)
    assert (attended.wait_s, attended.talk_s) == (6.0, 30.0)
    assert attended.ended_at == at(1543833653)
    assert attended.agent_key == "Agent/1128"
    assert attended.customer_key == "15559563060"
    # 926 ENTERQUEUE 1543938919, 927 CONNECT 1543938925, 928 BLINDTRANSFER 1142|transfer|6|38|1
    blind = found["1543938872.1743@IT"]
    assert (blind.outcome, blind.transferred, blind.wait_s, blind.talk_s) == (
        "answered",
        True,
        6.0,
        38.0,
    )
    assert (blind.answered_at, blind.ended_at) == (at(1543938925), at(1543938963))
    assert blind.raw_ref == "voipreports1.queue_log:926,927,928"


def test_voipreports1_unanswered_calls_by_hand(
    voip: tuple[QueueLogParser, list[ParsedItem]],
) -> None:
    found = records(voip[1])
    # 292 ENTERQUEUE 1543852119 (position 2), 295 ABANDON 1|2|197 at 1543852316
    abandoned = found["1543852103.1644@IT"]
    assert abandoned.outcome == "abandoned"
    assert abandoned.queued_at == at(1543852119)
    assert abandoned.abandoned_at == abandoned.ended_at == at(1543852316)
    assert abandoned.wait_s == 197.0
    assert (abandoned.answered_at, abandoned.agent_key, abandoned.talk_s) == (None, None, None)
    assert abandoned.transferred is None
    # 500 ENTERQUEUE 1543860463, 526 EXITWITHTIMEOUT 1|2|300 at 1543860763
    timeout = found["1543860451.3324@IT"]
    assert (timeout.outcome, timeout.wait_s, timeout.abandoned_at) == ("timeout", 300.0, None)
    assert timeout.ended_at == at(1543860763)


def test_voipreports1_calls_open_at_the_end(voip: tuple[QueueLogParser, list[ParsedItem]]) -> None:
    parser, items = voip
    assert not {
        "1543942189.2194@IT",
        "1543942358.2226@IT",
        "1543942788.2389@IT",
        "1543942842.2438@IT",
    } & set(records(items))
    provisional = {r.external_id: r for r in parser.open_records()}
    assert set(provisional) == {
        "1543942189.2194@IT",
        "1543942358.2226@IT",
        "1543942788.2389@IT",
        "1543942842.2438@IT",
    }
    # 967 ENTERQUEUE 1543942200, 968 CONNECT 1543942206 Agent/1127 holdtime 6: talking.
    talking = provisional["1543942189.2194@IT"]
    assert (talking.outcome, talking.answered_at, talking.ended_at) == (
        "answered",
        at(1543942206),
        None,
    )
    assert (talking.wait_s, talking.agent_key) == (6.0, "Agent/1127")
    # 992 ENTERQUEUE 1543942799, then only RINGNOANSWER lines: still waiting.
    waiting = provisional["1543942788.2389@IT"]
    assert (waiting.outcome, waiting.queued_at, waiting.wait_s) == (
        "in_queue",
        at(1543942799),
        None,
    )
    assert waiting.customer_key == "15559952549"


def test_voipreports1_agent_states_by_hand(voip: tuple[QueueLogParser, list[ParsedItem]]) -> None:
    events = agent_events(voip[1])
    # ADDMEMBER 26 + REMOVEMEMBER 10 + logins 14 + logoffs 10 + CONNECT 93 + 91 call ends,
    # less two ends whose agent had logged off during the call (line 405: Agent/1141 logs
    # off, its call ends at line 410; line 892: Agent/1144, call ends at line 904).
    assert len(events) == 26 + 10 + 14 + 10 + 93 + 91 - 2
    by_ref = {e.raw_ref: e for e in events}
    member = by_ref["voipreports1.queue_log:5"]
    assert (member.agent_key, member.state, member.queue_key) == (
        "Local/1127@callback-agent",
        "available",
        "IT",
    )
    login = by_ref["voipreports1.queue_log:6"]
    assert (login.agent_key, login.state, login.queue_key, login.at) == (
        "Agent/1127",
        "available",
        None,
        at(1543598990),
    )
    assert (
        by_ref["voipreports1.queue_log:19"].state,
        by_ref["voipreports1.queue_log:20"].state,
    ) == (
        "on_contact",
        "available",
    )
    logoff = by_ref["voipreports1.queue_log:405"]
    assert (logoff.agent_key, logoff.state, logoff.at) == (
        "Agent/1141",
        "logged_out",
        at(1543856965),
    )
    assert "voipreports1.queue_log:410" not in by_ref
    assert by_ref["voipreports1.queue_log:404"].state == "logged_out"  # REMOVEMEMBER


def test_voipreports1_unknown_events_reported_once_each(
    voip: tuple[QueueLogParser, list[ParsedItem]],
) -> None:
    issues = [i for i in voip[1] if isinstance(i, ParseIssue)]
    assert [(i.line, i.field) for i in issues] == [
        (9, "event"),  # OUTDIAL
        (10, "event"),  # OUTCANCEL
        (12, "event"),  # OUTANSWER
        (62, "event"),  # OUTCHANUNAVAIL
        (113, "event"),  # OUTTRANSFER
        (278, "event"),  # OUTCONGESTION
    ]
    assert "'OUTDIAL'" in issues[0].reason


# ------------------------------------------------------------------- malariapbx


def test_malariapbx_every_line_and_call() -> None:
    parser, items = parse("malariapbx.queue_log")
    s = parser.stats
    assert s.items == 85
    assert s.used == Counter(
        {
            "ENTERQUEUE": 8,
            "CONNECT": 2,
            "COMPLETEAGENT": 1,
            "COMPLETECALLER": 1,
            "ABANDON": 5,
            "EXITWITHTIMEOUT": 1,
        }
    )
    assert s.ignored == Counter(
        {"CONFIGRELOAD": 46, "QUEUESTART": 18, "RINGNOANSWER": 2, "RINGCANCELED": 1}
    )
    assert not s.unknown
    assert s.balanced()
    assert not [i for i in items if isinstance(i, ParseIssue)]
    found = records(items)
    assert Counter(r.outcome for r in found.values()) == Counter(
        {"answered": 2, "abandoned": 5, "timeout": 1}
    )
    assert parser.stats.calls_open == 0
    # Queue names are case-sensitive strings: `sales` stays `sales`.
    assert {r.queue_key for r in found.values()} == {"Support", "sales"}

    # 19-21: ENTERQUEUE 1675720967, CONNECT 1675720971 holdtime 5 (timestamps say 4: Asterisk's
    # own measure is kept), COMPLETECALLER 5|104|1 at 1675721075.
    answered = found["1675720966.3@Support"]
    assert (answered.queued_at, answered.answered_at, answered.ended_at) == (
        at(1675720967),
        at(1675720971),
        at(1675721075),
    )
    assert (answered.wait_s, answered.talk_s, answered.agent_key) == (5.0, 104.0, "PJSIP/400")
    assert answered.customer_key == "200"
    # 23-25: ENTERQUEUE 1675909448, RINGCANCELED 11193 ms, ABANDON 1|1|11 at 1675909460 (12 s
    # by the timestamps; the logged waittime 11 is kept).
    abandoned = found["1675909448.3@Support"]
    assert (abandoned.outcome, abandoned.wait_s, abandoned.abandoned_at) == (
        "abandoned",
        11.0,
        at(1675909460),
    )
    assert abandoned.raw_ref == "malariapbx.queue_log:23,25"
    assert found["1677019401.9@Support"].outcome == "timeout"
    assert found["1677019488.11@sales"].wait_s == 9.0
    events = agent_events(items)
    assert [(e.state, e.at) for e in events] == [
        ("on_contact", at(1675555761)),
        ("available", at(1675555766)),
        ("on_contact", at(1675720971)),
        ("available", at(1675721075)),
    ]


def test_no_calls_log_is_all_housekeeping() -> None:
    parser, items = parse("no_calls.queue_log")
    assert parser.stats.items == 12
    assert parser.stats.ignored == Counter({"QUEUESTART": 8, "CONFIGRELOAD": 4})
    assert not parser.stats.used
    assert not parser.stats.unknown
    assert parser.stats.balanced()
    assert items == []
    assert parser.open_records() == []


# --------------------------------------------------------------- wazo samples


def test_wazo_documented_rows() -> None:
    # The psql excerpts print local time. The call ids' epoch prefixes say which zone:
    # callid 1341401601.24 (2012-07-04 11:33:21 UTC) entered at "07:33:21.165823" -> UTC-4,
    # i.e. Wazo's home, America/Montreal in summer.
    parser = QueueLogParser()
    with (DATA / "wazo_doc_samples.rst").open("rb") as fp:
        items = list(
            parser.parse_rows(
                psql_table_rows(fp, "wazo.rst", time_zone="America/Montreal"),
                "wazo.rst",
                refs="line",
            )
        )
    s = parser.stats
    assert s.items == 12
    assert s.used == Counter(
        {
            "AGENTCALLBACKLOGIN": 1,
            "AGENTCALLBACKLOGOFF": 1,
            "UNPAUSEALL": 1,
            "UNPAUSE": 2,
            "JOINEMPTY": 1,
            "ENTERQUEUE": 1,
            "CONNECT": 1,
            "COMPLETEAGENT": 1,
            "FULL": 1,
            "CLOSED": 1,
            "ABANDON": 1,
        }
    )
    assert s.balanced()
    found = records(items)
    assert {k: r.outcome for k, r in found.items()} == {
        "1341401275.9@q1": "exit_empty",  # JOINEMPTY
        "1341401851.34@q1": "answered",  # COMPLETEAGENT alone: rebuilt
        "1341402016.44@q1": "overflow",  # FULL
        "1341402482.49@q1": "overflow",  # CLOSED
        "1341402586.51@q1": "abandoned",  # ABANDON alone: rebuilt
    }
    assert s.reconstructed == 2
    # COMPLETEAGENT 2|12|1 at 07:37:46.601754 EDT (11:37:46.601754 UTC): answered 12 s
    # earlier, queued 2 s before that.
    completed = found["1341401851.34@q1"]
    assert completed.ended_at == datetime(2012, 7, 4, 11, 37, 46, 601754, tzinfo=UTC)
    assert completed.answered_at == datetime(2012, 7, 4, 11, 37, 34, 601754, tzinfo=UTC)
    assert completed.queued_at == datetime(2012, 7, 4, 11, 37, 32, 601754, tzinfo=UTC)
    assert (completed.wait_s, completed.talk_s, completed.agent_key) == (2.0, 12.0, "Agent/3001")
    abandon = found["1341402586.51@q1"]
    assert abandon.wait_s == 6.0
    assert abandon.abandoned_at == datetime(2012, 7, 4, 11, 49, 52, 939802, tzinfo=UTC)
    full = found["1341402016.44@q1"]
    assert (full.wait_s, full.queued_at) == (
        0.0,
        datetime(2012, 7, 4, 11, 40, 17, 339945, tzinfo=UTC),
    )
    # ENTERQUEUE + CONNECT (holdtime 2) and no end: still talking.
    (talking,) = parser.open_records()
    assert (talking.external_id, talking.outcome, talking.wait_s, talking.customer_key) == (
        "1341401601.24@q1",
        "answered",
        2.0,
        "1000",
    )
    events = agent_events(items)
    # Login, logoff (reason CommandLogoff); the UNPAUSE rows after the logoff change no
    # state; CONNECT and COMPLETEAGENT.
    assert [(e.state, e.reason, e.queue_key) for e in events] == [
        ("available", None, None),
        ("logged_out", "CommandLogoff", None),
        ("on_contact", None, "q1"),
        ("available", None, "q1"),
    ]
    assert events[0].at == datetime(2012, 7, 3, 19, 27, 23, 896208, tzinfo=UTC)
