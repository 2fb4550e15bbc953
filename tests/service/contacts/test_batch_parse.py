"""The two readers of a JSON batch agree: whatever the fast (msgspec) pass accepts,
the exact (pydantic) pass reads as the same records; what it refuses goes to the
exact pass, which names each bad row."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from service.contacts.service import _parse_fast, parse_json_batch, parse_json_batch_exactly

BASE: dict[str, Any] = {
    "external_id": "c-1",
    "queue_key": "sales",
    "queued_at": "2026-03-02T09:00:00Z",
    "outcome": "answered",
    "answered_at": "2026-03-02T14:45:12.250+05:45",  # 09:00:12.25Z
    "ended_at": "2026-03-02T09:05:00+00:00",
    "agent_key": "Agent/1",
    "wait_s": 12,
    "talk_s": 280.5,
    "hold_s": 0,
    "hold_count": 0,
    "acw_s": 7.25,
    "transferred": False,
    "resolved_first_contact": None,
    "csat": 4,
    "nps": 10,
    "sentiment": -0.5,
    "source_version": 3,
}

ACCEPTED = [
    BASE,
    {"external_id": "c-2", "queue_key": "q", "queued_at": "2026-03-02 09:00:00z", "outcome": "in_queue"},
    {"external_id": "c-3", "project_id": str(uuid.UUID(int=7)), "queued_at": "2026-03-02T09:00:00.123456-03:30",
     "outcome": "abandoned", "abandoned_at": "2026-03-02T09:01:00-03:30", "channel": "chat", "source": "crm"},
]  # fmt: skip

# Each is valid for the contract but outside the fast pass's strict reading.
LAX = [
    {**BASE, "wait_s": "12.5"},
    {**BASE, "queued_at": "2026-03-02T09:00:00.1234567Z"},  # 7 decimals: truncated
    {**BASE, "queued_at": "2026-03-02T09:00Z"},
    {**BASE, "hold_count": 1.0},
    {**BASE, "transferred": "yes"},
]

INVALID = [
    {**BASE, "queued_at": "2026-03-02T09:00:00"},  # naive
    {**BASE, "csat": 6},
    {**BASE, "project_id": None},
    {**BASE, "colour": "red"},
    {k: v for k, v in BASE.items() if k != "queue_key"},  # neither project nor queue
    {**BASE, "external_id": ""},
]


def body(*records: dict[str, Any]) -> bytes:
    return json.dumps({"records": list(records)}).encode()


def test_the_fast_pass_reads_what_the_exact_pass_reads() -> None:
    raw = body(*ACCEPTED)
    fast = _parse_fast(raw)
    assert fast is not None
    assert fast == parse_json_batch_exactly(raw)
    rows, problems, n = fast
    assert (len(rows), problems, n) == (3, [], 3)


@pytest.mark.parametrize("record", LAX)
def test_what_the_fast_pass_refuses_the_exact_pass_reads(record: dict[str, Any]) -> None:
    raw = body(BASE, record)
    assert _parse_fast(raw) is None
    rows, problems, n = parse_json_batch(raw)
    assert (len(rows), problems, n) == (2, [], 2)
    assert parse_json_batch(raw) == parse_json_batch_exactly(raw)


def test_seven_decimals_are_truncated_whichever_row_carries_them() -> None:
    rows, _, _ = parse_json_batch(body(BASE, LAX[1]))
    assert rows[1][1].queued_at.microsecond == 123456


@pytest.mark.parametrize("record", INVALID)
def test_a_bad_row_is_named_and_the_others_land(record: dict[str, Any]) -> None:
    rows, problems, n = parse_json_batch(body(BASE, record, {**BASE, "external_id": "c-9"}))
    assert n == 3
    assert [r[0] for r in rows] == [1, 3]
    assert problems
    assert {p.row for p in problems} == {2}
    assert all(p.field and p.reason for p in problems)
