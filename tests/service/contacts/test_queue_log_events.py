"""queue_log semantics on small logs written from FORMAT.md: traps, multi-queue calls, bad lines."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from hypothesis import example, given, settings
from hypothesis import strategies as st

from service.contacts.parsers.queue_log import QueueLogParser
from service.contacts.records import AgentStateEvent, ContactRecord, ParsedItem, ParseIssue

T = 1_700_000_000  # 2023-11-14 22:13:20 UTC


def at(offset: float) -> datetime:
    return datetime.fromtimestamp(T + offset, UTC)


def log(*rows: str) -> list[str]:
    """Rows written with offsets from T: `"+5|callid|queue|agent|EVENT|data"`."""
    out = []
    for row in rows:
        offset, rest = row.split("|", 1)
        out.append(f"{T + int(offset)}|{rest}\n")
    return out


def parse(lines: list[str], **options: float) -> tuple[list[ParsedItem], QueueLogParser]:
    parser = QueueLogParser(**options)  # type: ignore[arg-type]
    return list(parser.parse(lines, "t.log")), parser


def contacts(items: list[ParsedItem]) -> list[ContactRecord]:
    return [i for i in items if isinstance(i, ContactRecord)]


def newest(items: list[ParsedItem]) -> dict[str, ContactRecord]:
    """What ingestion keeps: per external id the highest source_version."""
    kept: dict[str, ContactRecord] = {}
    for r in contacts(items):
        old = kept.get(r.external_id)
        if old is None or (r.source_version or 0) > (old.source_version or 0):
            kept[r.external_id] = r
    return kept


def issues(items: list[ParsedItem]) -> list[ParseIssue]:
    return [i for i in items if isinstance(i, ParseIssue)]


def test_holdtime_is_queue_wait_never_customer_hold_and_ring_units_do_not_leak() -> None:
    items, _ = parse(
        log(
            "0|1.1|q|NONE|ENTERQUEUE||555|1",
            "15|1.1|q|SIP/1|RINGNOANSWER|15000",  # milliseconds
            "40|1.1|q|SIP/2|CONNECT|40|1.2|9",  # holdtime 40 s, ring 9 s
            "100|1.1|q|SIP/2|COMPLETECALLER|40|60|1",
        )
    )
    (r,) = contacts(items)
    assert (r.wait_s, r.talk_s, r.hold_s, r.hold_count) == (40.0, 60.0, None, None)
    assert r.answered_at == at(40)


def test_a_call_moving_on_while_waiting_is_one_record_per_queue() -> None:
    items, _ = parse(
        log(
            "0|2.1|sales|NONE|ENTERQUEUE||555|1",
            "25|2.1|support|NONE|ENTERQUEUE||555|1",  # no exit line in sales
            "30|2.1|support|SIP/1|CONNECT|5|2.2|1",
            "90|2.1|support|SIP/1|COMPLETEAGENT|5|60|1",
        )
    )
    found = newest(items)
    assert set(found) == {"2.1@sales", "2.1@support"}
    sales, support = found["2.1@sales"], found["2.1@support"]
    assert (sales.outcome, sales.ended_at, sales.wait_s, sales.answered_at) == (
        "overflow",
        at(25),
        25.0,
        None,
    )
    assert (support.outcome, support.queued_at, support.wait_s) == ("answered", at(25), 5.0)


def test_timeout_followed_by_another_queue_becomes_overflow_by_a_newer_version() -> None:
    items, parser = parse(
        log(
            "0|3.1|sales|NONE|ENTERQUEUE||555|1",
            "60|3.1|sales|NONE|EXITWITHTIMEOUT|1|1|60",
            "61|3.1|support|NONE|ENTERQUEUE||555|1",
            "70|3.1|support|NONE|ABANDON|1|1|9",
        )
    )
    emitted = [(r.external_id, r.outcome) for r in contacts(items)]
    assert emitted == [
        ("3.1@sales", "timeout"),
        ("3.1@sales", "overflow"),
        ("3.1@support", "abandoned"),
    ]
    sales = newest(items)["3.1@sales"]
    assert (sales.outcome, sales.wait_s, sales.ended_at) == ("overflow", 60.0, at(60))
    assert sales.raw_ref == "t.log:1,2,3"
    assert parser.stats.corrections == 1
    assert parser.stats.records == 3


def test_exit_key_then_requeue_is_transferred_out_and_late_requeue_changes_nothing() -> None:
    items, parser = parse(
        log(
            "0|4.1|sales|NONE|ENTERQUEUE||555|1",
            "10|4.1|sales|NONE|EXITWITHKEY|1|1|1|10",  # key | position | origposition | waittime
            "20|4.1|vip|NONE|ENTERQUEUE||555|1",
            "0|4.9|sales|NONE|ENTERQUEUE||556|1",
            "30|4.9|sales|NONE|EXITEMPTY|1|1|30",
            "400|4.9|sales|NONE|ENTERQUEUE||556|1",  # 370 s later: beyond the 300 s window
        ),
        overflow_window_s=300,
    )
    found = newest(items)
    assert found["4.1@sales"].outcome == "transferred_out"
    assert found["4.1@sales"].wait_s == 10.0
    assert found["4.9@sales"].outcome == "exit_empty"
    # The same call entering the same queue again is a second offer with its own id.
    assert {(r.external_id, r.queued_at) for r in parser.open_records()} == {
        ("4.1@vip", at(20)),
        ("4.9@sales#2", at(400)),
    }


def test_withdraw_and_wazo_diverts() -> None:
    items, parser = parse(
        log(
            "0|5.1|q|NONE|ENTERQUEUE||555|1",
            "8|5.1|q|NONE|WITHDRAW|1|1|8|callback",
            "10|5.2|q|NONE|FULL",
            "11|5.3|q|NONE|CLOSED",
            "12|5.4|q|NONE|DIVERT_HOLDTIME",
            "13|5.5|q|NONE|ENTERQUEUE||557|1",
            "19|5.5|q|NONE|LEAVEEMPTY",
        )
    )
    found = newest(items)
    assert {k: (r.outcome, r.wait_s) for k, r in found.items()} == {
        "5.1@q": ("transferred_out", 8.0),
        "5.2@q": ("overflow", 0.0),
        "5.3@q": ("overflow", 0.0),
        "5.4@q": ("overflow", 0.0),
        "5.5@q": ("exit_empty", 6.0),
    }
    assert parser.stats.balanced()


def test_attended_transfer_link_carries_an_extra_field_in_the_middle() -> None:
    items, _ = parse(
        log(
            "0|6.1|q|NONE|ENTERQUEUE||555|1",
            "12|6.1|q|SIP/1|CONNECT|12|6.2|3",
            "100|6.1|q|SIP/1|ATTENDEDTRANSFER|LINK|SIP/1-0001|SIP/9-0002|12|88|1",
        )
    )
    (r,) = contacts(items)
    assert (r.wait_s, r.talk_s, r.transferred, r.outcome) == (12.0, 88.0, True, "answered")


def test_transfers_are_read_by_position_whatever_trails_them() -> None:
    """holdtime and calltime are the 3rd and 4th fields (one further right after LINK's two
    channels). A TRANSFER without origposition (Asterisk 1.4 wrote none) or a line with a
    trailing '|' must not shift them: read from the right, calltime became the holdtime."""
    items, _ = parse(
        log(
            "0|7.1|q|NONE|ENTERQUEUE||555|1",
            "12|7.1|q|SIP/1|CONNECT|12|7.2|3",
            "100|7.1|q|SIP/1|TRANSFER|200|from-internal|12|88",
            "0|7.3|q|NONE|ENTERQUEUE||555|1",
            "12|7.3|q|SIP/1|CONNECT|12|7.4|3",
            "100|7.3|q|SIP/1|BLINDTRANSFER|200|from-internal|12|88|1|",
            "0|7.5|q|NONE|ENTERQUEUE||555|1",
            "12|7.5|q|SIP/1|CONNECT|12|7.6|3",
            "100|7.5|q|SIP/1|ATTENDEDTRANSFER|BRIDGE|4bd9|12|88|1|",
            "0|7.7|q|NONE|ENTERQUEUE||555|1",
            "12|7.7|q|SIP/1|CONNECT|12|7.8|3",
            "100|7.7|q|SIP/1|ATTENDEDTRANSFER|LINK|SIP/1-0001|SIP/9-0002|12|88",
        )
    )
    found = {r.external_id: (r.wait_s, r.talk_s, r.transferred) for r in contacts(items)}
    assert found == {f"7.{n}@q": (12.0, 88.0, True) for n in (1, 3, 5, 7)}
    assert issues(items) == []


def test_log_cut_mid_call_is_rebuilt_from_logged_durations() -> None:
    items, parser = parse(
        log(
            "100|7.1|q|SIP/1|COMPLETECALLER|20|50|1",  # answered at 50, queued at 30
            "100|7.2|q|NONE|ABANDON|2|3|45",  # queued at 55
            "100|7.3|q|SIP/2|CONNECT|15|7.4|2",  # queued at 85, still talking
        )
    )
    found = newest(items)
    done = found["7.1@q"]
    assert (done.queued_at, done.answered_at, done.ended_at) == (at(30), at(50), at(100))
    assert (done.wait_s, done.talk_s, done.customer_key) == (20.0, 50.0, None)
    assert found["7.2@q"].queued_at == at(55)
    (talking,) = parser.open_records()
    assert (talking.queued_at, talking.answered_at) == (at(85), at(100))
    assert parser.stats.reconstructed == 3


def test_duplicated_and_impossible_lines_are_rejected_with_issues() -> None:
    items, parser = parse(
        log(
            "0|8.1|q|NONE|ENTERQUEUE||555|1",
            "0|8.1|q|NONE|ENTERQUEUE||555|1",  # the same line twice
            "5|8.1|q|SIP/1|CONNECT|5|8.2|1",
            "9|8.1|q|NONE|ABANDON|1|1|9",  # after the answer
            "60|8.1|q|SIP/1|COMPLETEAGENT|5|55|1",
            "60|8.1|q|SIP/1|COMPLETEAGENT|5|55|1",  # again: the call already ended
            "61|NONE|NONE|NONE|CONNECT|1|2|3",  # no call id
        )
    )
    assert len(contacts(items)) == 1
    assert parser.stats.rejected == Counter(
        {"ENTERQUEUE": 1, "ABANDON": 1, "COMPLETEAGENT": 1, "CONNECT": 1}
    )
    assert [i.line for i in issues(items)] == [2, 4, 6, 7]
    assert "already ended" in issues(items)[2].reason
    assert parser.stats.balanced()


def test_malformed_and_blank_lines_are_issues_with_line_numbers() -> None:
    lines = [
        f"{T}|9.1|q|NONE|ENTERQUEUE||555|1\r\n",  # CRLF is fine
        "\n",
        "garbage without pipes\n",
        "yesterday|9.1|q|NONE|ABANDON|1|1|3\n",
        "99999999999|9.1|q|NONE|ABANDON|1|1|3\n",  # year 5138
        f"{T + 3}|9.1|q|NONE|ABANDON|1|1|abc\n",  # bad waittime: timestamps used
        f"{T + 4}|NONE|NONE|NONE|MYCUSTOM|x\n",
        f"{T + 5}|NONE|NONE|NONE|MYCUSTOM|y\n",
    ]
    items, parser = parse(lines)
    s = parser.stats
    assert (s.items, s.blank, s.malformed) == (8, 1, 3)
    assert s.used == Counter({"ENTERQUEUE": 1, "ABANDON": 1})
    assert s.unknown == Counter({"MYCUSTOM": 2})
    assert s.balanced()
    found = issues(items)
    assert [(i.line, i.field) for i in found] == [
        (3, None),
        (4, "time"),
        (5, "time"),
        (6, "data3 (waittime)"),
        (7, "event"),  # reported once for the two MYCUSTOM lines
    ]
    (r,) = contacts(items)
    assert (r.outcome, r.wait_s) == ("abandoned", 3.0)


def test_agent_states_from_members_pauses_and_calls() -> None:
    items, _ = parse(
        log(
            "0|NONE|q|SIP/1|ADDMEMBER|",
            "1|NONE|q|SIP/2|ADDMEMBER|PAUSED",
            "5|NONE|q|SIP/1|PAUSE|coaching",
            "9|NONE|q|SIP/1|UNPAUSE|",
            "10|1.1|q|NONE|ENTERQUEUE||555|1",
            "12|1.1|q|SIP/1|CONNECT|2|1.2|1",
            "30|1.1|q|SIP/1|COMPLETECALLER|2|18|1",
            "40|NONE|NONE|SIP/1|PAUSEALL|break",
            "50|NONE|NONE|SIP/1|UNPAUSEALL|",
            "60|NONE|q|SIP/1|REMOVEMEMBER|",
            "61|NONE|NONE|Agent/7|AGENTLOGIN|SIP/7",
            "62|NONE|NONE|Agent/7|AGENTLOGOFF|SIP/7|100",
        )
    )
    events = [i for i in items if isinstance(i, AgentStateEvent)]
    assert [(e.agent_key, e.state, e.reason, e.queue_key, e.at) for e in events] == [
        ("SIP/1", "available", None, "q", at(0)),
        ("SIP/2", "not_ready", None, "q", at(1)),
        ("SIP/1", "not_ready", "coaching", "q", at(5)),
        ("SIP/1", "available", None, "q", at(9)),
        ("SIP/1", "on_contact", None, "q", at(12)),
        ("SIP/1", "available", None, "q", at(30)),
        ("SIP/1", "not_ready", "break", None, at(40)),
        ("SIP/1", "available", None, None, at(50)),
        ("SIP/1", "logged_out", None, "q", at(60)),
        ("Agent/7", "available", None, None, at(61)),
        ("Agent/7", "logged_out", None, None, at(62)),
    ]


LINE = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "ENTERQUEUE",
                "CONNECT",
                "COMPLETECALLER",
                "ABANDON",
                "EXITWITHKEY",
                "PAUSE",
                "FULL",
                "X",
            ]
        ),
        st.text(alphabet="0123456789.|abNONE-", max_size=12),
    ),
    min_size=0,
    max_size=9,
)


@settings(max_examples=300, deadline=None)
# Durations so large that the rebuilt start would fall outside any calendar (found by this test).
@example([(0, "1.1", ["ABANDON", "|", "1E19"])])
@example([(0, "1.1", ["ABANDON", "|", "1E11"])])
@example([(0, "1.1", ["COMPLETEAGENT", "1", "9E9"])])
@given(
    st.lists(
        st.tuples(st.integers(-5, 400), st.sampled_from(["1.1", "1.2", "NONE", ""]), LINE),
        max_size=40,
    )
)
def test_any_input_is_accounted_for_and_never_raises(
    rows: list[tuple[int, str, list[str]]],
) -> None:
    lines = []
    for offset, callid, rest in rows:
        fields = [str(T + offset), callid, "q" if rest else "NONE", "SIP/1", *rest]
        lines.append("|".join(fields) + "\n")
    items, parser = parse(lines)
    assert parser.stats.balanced()
    assert parser.stats.items == len(lines)
    for r in contacts(items):
        assert r.queued_at.tzinfo is UTC
        assert r.wait_s is None or r.wait_s >= 0
        if r.outcome == "answered":
            assert r.answered_at is not None


def test_site_custom_events_can_be_declared_ignored_on_purpose() -> None:
    lines = log("0|1.1|NONE|SIP/1|OUTDIAL|555", "1|1.1|NONE|SIP/1|OUTANSWER|555|COMPLETEAGENT")
    items, parser = parse(lines, ignore_events=["OUTDIAL", "OUTANSWER"])  # type: ignore[arg-type]
    assert parser.stats.ignored == Counter({"OUTDIAL": 1, "OUTANSWER": 1})
    assert not parser.stats.unknown
    assert items == []


def test_an_agent_removed_from_one_queue_stays_logged_in_on_the_others() -> None:
    items, _ = parse(
        log(
            "0|NONE|sales|SIP/1|ADDMEMBER|",
            "1|NONE|support|SIP/1|ADDMEMBER|",
            "5|NONE|sales|SIP/1|PAUSE|coaching",
            "10|NONE|support|SIP/1|REMOVEMEMBER|",  # still in sales: paused there
            "20|1.1|sales|NONE|ENTERQUEUE||555|1",
            "21|NONE|sales|SIP/1|UNPAUSE|",
            "22|1.1|sales|SIP/1|CONNECT|2|1.2|1",
            "25|NONE|support|SIP/1|ADDMEMBER|",  # during the call: no state of its own
            "30|1.1|sales|SIP/1|COMPLETECALLER|2|8|1",
            "40|NONE|sales|SIP/1|REMOVEMEMBER|",  # still in support
            "50|NONE|support|SIP/1|REMOVEMEMBER|",  # in no queue now
        )
    )
    events = [i for i in items if isinstance(i, AgentStateEvent)]
    assert [(e.state, e.reason, e.queue_key, e.at) for e in events] == [
        ("available", None, "sales", at(0)),
        ("available", None, "support", at(1)),
        ("not_ready", "coaching", "sales", at(5)),
        ("not_ready", "coaching", "sales", at(10)),
        ("available", None, "sales", at(21)),
        ("on_contact", None, "sales", at(22)),
        ("available", None, "sales", at(30)),
        ("available", None, "support", at(40)),
        ("logged_out", None, "support", at(50)),
    ]
