"""Amazon Connect contact trace records: fields, newest copy wins, invalid JSON refused clearly."""

from __future__ import annotations

import copy
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from service.contacts.parsers.amazon_connect import parse_ctr

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "contact_records"
CONNECT = DATA / "amazon_connect"
CASE1 = json.loads((CONNECT / "ctr_case1_inbound_transfer.json").read_text(encoding="utf-8"))


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def ms(text: str) -> int:
    return int(utc(text).timestamp()) * 1000


def parse_text(text: str, name: str = "t.json") -> Any:
    return parse_ctr(io.BytesIO(text.encode()), name)


@pytest.mark.parametrize("path", sorted(p for p in DATA.glob("*/*") if not p.name.endswith(".md")))
def test_every_sample_file_is_accounted_for(path: Path) -> None:
    with path.open("rb") as fp:
        result = parse_ctr(fp, path.name)
    assert result.stats.items >= 1
    assert result.stats.balanced()


def test_inbound_call_transferred_out_by_hand() -> None:
    with (CONNECT / "ctr_case1_inbound_transfer.json").open("rb") as fp:
        result = parse_ctr(fp, "case1.json")
    assert result.issues == []
    (r,) = result.records
    assert r.external_id == "6fe40d2a-1a89-4d73-bfcf-5d9c33894f47"
    assert (r.source, r.channel, r.queue_key) == ("amazon_connect", "voice", "TCC Refrig AC LLA")
    assert r.queued_at == utc("2022-01-05T17:14:46Z")
    assert r.answered_at == utc("2022-01-05T17:20:32Z")
    # The agent transferred the caller out at 17:28:12 (then ACW); the caller stayed on the
    # transferred line until 17:47:28. The contact left our agent at the transfer.
    assert r.ended_at == utc("2022-01-05T17:28:12Z")
    assert (r.outcome, r.transferred, r.abandoned_at) == ("answered", True, None)
    # Queue.Duration 346 = 17:20:32 - 17:14:46.
    assert (r.wait_s, r.talk_s, r.hold_s, r.hold_count, r.acw_s) == (346.0, 239.0, 221.0, 2, 5.0)
    assert (r.agent_key, r.customer_key) == ("agent.one", "+190011112222")
    assert r.source_version == ms("2022-01-05T17:48:35Z")
    assert r.raw_ref == "case1.json:1"
    assert result.stats.used["contact trace record"] == 1


def version(updated: str, acw: int) -> dict[str, Any]:
    ctr = copy.deepcopy(CASE1)
    ctr["LastUpdateTimestamp"] = updated
    ctr["Agent"]["AfterContactWorkDuration"] = acw
    return ctr


COPIES = [
    version("2022-01-05T17:48:35Z", 5),
    version("2022-01-05T17:50:00Z", 9),  # the newest, delivered in the middle
    version("2022-01-05T17:30:00Z", 0),  # an early copy delivered last
]


@pytest.mark.parametrize(
    "text",
    [
        "\n".join(json.dumps(c) for c in COPIES),  # JSON lines
        json.dumps(COPIES, indent=2),  # a list
        "".join(json.dumps(c) for c in COPIES),  # Firehose: back to back
        "\n".join(json.dumps(c, indent=4) for c in COPIES),  # pretty-printed one after another
    ],
    ids=["json-lines", "list", "concatenated", "pretty"],
)
def test_the_newest_copy_of_a_contact_wins(text: str) -> None:
    result = parse_text(text)
    (r,) = result.records
    assert r.acw_s == 9.0
    assert r.source_version == ms("2022-01-05T17:50:00Z")
    assert result.stats.superseded == 2
    assert result.stats.used["contact trace record"] == 3
    assert result.stats.items == 3
    assert result.stats.balanced()


def test_abandoned_contact_is_queued_and_never_connected() -> None:
    ctr = copy.deepcopy(CASE1)
    del ctr["Agent"]
    ctr["Queue"]["DequeueTimestamp"] = "2022-01-05T17:16:00Z"
    ctr["Queue"]["Duration"] = 74
    ctr["DisconnectTimestamp"] = "2022-01-05T17:16:00Z"
    ctr["TransferCompletedTimestamp"] = None
    ctr["TransferredToEndpoint"] = None
    (r,) = parse_text(json.dumps(ctr)).records
    assert r.outcome == "abandoned"
    assert r.abandoned_at == r.ended_at == utc("2022-01-05T17:16:00Z")
    assert (r.wait_s, r.answered_at, r.agent_key, r.talk_s, r.transferred) == (
        74.0,
        None,
        None,
        None,
        None,
    )


def test_queued_callback_example_from_the_docs() -> None:
    # queued_callback_example.docs.md: record-1 is queued 11:35, leaves for a callback at
    # 11:37 (NextContactId -> record-2); record-2 is queued in CallbackQueue at 11:38:39,
    # accepted at 11:39:00, connected to the agent at 11:39:25, ends at 11:45.
    inbound = {
        "ContactId": "record-1",
        "Channel": "VOICE",
        "InitiationMethod": "INBOUND",
        "LastUpdateTimestamp": "2024-01-02T11:37:05Z",
        "NextContactId": "record-2",
        "Queue": {
            "Name": "InboundQueue",
            "EnqueueTimestamp": "2024-01-02T11:35:00Z",
            "DequeueTimestamp": "2024-01-02T11:37:00Z",
            "Duration": 120,
        },
        "DisconnectTimestamp": "2024-01-02T11:37:00Z",
        "DisconnectReason": "CONTACT_FLOW_DISCONNECT",
    }
    callback = {
        "ContactId": "record-2",
        "Channel": "VOICE",
        "InitiationMethod": "CALLBACK",
        "LastUpdateTimestamp": "2024-01-02T11:46:00Z",
        "PreviousContactId": "record-1",
        "Queue": {
            "Name": "CallbackQueue",
            "EnqueueTimestamp": "2024-01-02T11:38:39Z",
            "DequeueTimestamp": "2024-01-02T11:39:00Z",
            "Duration": 120,
        },
        "Agent": {"ConnectedToAgentTimestamp": "2024-01-02T11:39:25Z", "Username": "a1"},
        "DisconnectTimestamp": "2024-01-02T11:45:00Z",
    }
    result = parse_text(json.dumps(inbound) + "\n" + json.dumps(callback))
    found = {r.external_id: r for r in result.records}
    # The caller was not lost in InboundQueue: moved to a callback, not an abandon.
    assert found["record-1"].outcome == "transferred_out"
    assert found["record-1"].abandoned_at is None
    assert found["record-2"].outcome == "answered"
    assert found["record-2"].queue_key == "CallbackQueue"
    assert found["record-2"].ended_at == utc("2024-01-02T11:45:00Z")
    # Connect's own Queue.Duration is kept as the wait (the doc's 120 s include the 99 s delay).
    assert found["record-2"].wait_s == 120.0


def test_trailing_comma_is_named_with_line_and_column() -> None:
    with (CONNECT / "contact_event_disconnected.docs.INVALID_JSON.txt").open("rb") as fp:
        result = parse_ctr(fp, "disconnected.txt")
    assert result.records == []
    (issue,) = result.issues
    # Line 36: `"greetingEndTimestamp":"2021-08-04T17:29:22.000Z",` then `}` on line 37.
    assert (issue.line, issue.column) == (36, 61)
    assert "trailing comma" in issue.reason
    assert "greetingEndTimestamp" in issue.excerpt
    assert result.stats.malformed == 1
    assert result.stats.balanced()


def test_comments_are_named_each_with_line_and_column() -> None:
    with (CONNECT / "agent_event_stream_sample.docs.INVALID_JSON.txt").open("rb") as fp:
        result = parse_ctr(fp, "agent.txt")
    assert result.records == []
    comments = [(i.line, i.column) for i in result.issues if "comment" in i.reason]
    commas = [(i.line, i.column) for i in result.issues if "trailing comma" in i.reason]
    # 14 lines hold a `//`; line 7's starts at column 35.
    assert [line for line, _ in comments] == [7, 8, 12, 13, 14, 25, 26, 28, 31, 33, 39, 50, 51, 59]
    assert comments[0] == (7, 35)
    # Line 14 ends with `",   //…` and line 15 closes the object: a trailing comma at column 60.
    assert commas == [(14, 60)]
    assert str(result.issues[0]).startswith("agent.txt record 1 line 7 column 35: comment (//)")


def test_a_bad_line_among_json_lines_spares_the_others() -> None:
    good = json.dumps(CASE1)
    other = copy.deepcopy(CASE1)
    other["ContactId"] = "second"
    text = good + "\n" + '{"ContactId": "broken",}' + "\n" + json.dumps(other) + "\n"
    result = parse_text(text)
    assert sorted(r.external_id for r in result.records) == [
        "6fe40d2a-1a89-4d73-bfcf-5d9c33894f47",
        "second",
    ]
    (issue,) = result.issues
    assert (issue.line, issue.column, issue.record) == (2, 23, 2)
    assert {r.raw_ref for r in result.records} == {"t.json:1", "t.json:3"}


def test_naive_and_missing_timestamps_are_refused_naming_the_field() -> None:
    naive = copy.deepcopy(CASE1)
    naive["Queue"]["EnqueueTimestamp"] = "2022-01-05T17:14:46"
    unversioned = copy.deepcopy(CASE1)
    unversioned["ContactId"] = "x"
    del unversioned["LastUpdateTimestamp"]
    result = parse_text(json.dumps(naive) + "\n" + json.dumps(unversioned))
    assert result.records == []
    assert [(i.field, i.line) for i in result.issues] == [
        ("Queue.EnqueueTimestamp", 1),
        ("LastUpdateTimestamp", 2),
    ]
    assert "naive" in result.issues[0].reason
    assert result.stats.rejected["contact trace record"] == 2


def test_contacts_that_were_never_queued_or_are_tasks_are_ignored_on_purpose() -> None:
    outbound = copy.deepcopy(CASE1)
    outbound["Queue"] = None
    task = copy.deepcopy(CASE1)
    task["Channel"] = "TASK"
    result = parse_text(json.dumps(outbound) + "\n" + json.dumps(task))
    assert result.records == []
    assert result.issues == []
    assert dict(result.stats.ignored) == {"not queued": 1, "TASK contact": 1}


def test_contact_events_and_foreign_json_are_told_apart() -> None:
    with (CONNECT / "contact_event_connected_to_agent.docs.json").open("rb") as fp:
        event = parse_ctr(fp, "event.json")
    assert (event.records, event.issues) == ([], [])
    assert dict(event.stats.ignored) == {"contact event": 1}
    with (DATA / "twilio" / "call_resource_fetch_completed_inbound.json").open("rb") as fp:
        twilio = parse_ctr(fp, "twilio.json")
    assert twilio.records == []
    (issue,) = twilio.issues
    assert issue.field == "ContactId"
    assert "not an Amazon Connect contact trace record" in issue.reason


def test_queue_and_agent_fall_back_to_their_arns() -> None:
    ctr = copy.deepcopy(CASE1)
    ctr["Queue"]["Name"] = None
    del ctr["Agent"]["Username"]
    (r,) = parse_text(json.dumps(ctr)).records
    assert r.queue_key == CASE1["Queue"]["ARN"]
    assert r.queue_key.endswith("/queue/078ccbaa-ae69-4bf9-84bc-5c60ca9b1478")
    assert r.agent_key == CASE1["Agent"]["ARN"]
