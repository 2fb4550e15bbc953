"""The record shapes guard their invariants: aware UTC timestamps, known outcomes, scales."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.contacts.records import (
    OUTCOMES,
    AgentStateEvent,
    ContactRecord,
    ParseIssue,
    excerpt,
    record_from_json,
    record_to_json,
)

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def record(**changes: object) -> ContactRecord:
    base = ContactRecord(
        source="test",
        queue_key="Sales",
        external_id="c1",
        channel="voice",
        queued_at=T0,
        outcome="answered",
        raw_ref="f:1",
        answered_at=T0 + timedelta(seconds=15),
        ended_at=T0 + timedelta(seconds=75),
        wait_s=15.0,
        talk_s=60.0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_naive_timestamps_are_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="queued_at: naive"):
        record(queued_at=datetime(2024, 3, 1, 9, 0))
    with pytest.raises(ValueError, match="ended_at: naive"):
        record(ended_at=datetime(2024, 3, 1, 9, 1))
    with pytest.raises(ValueError, match="at: naive"):
        AgentStateEvent(
            source="t", agent_key="a", state="available", at=datetime(2024, 1, 1), raw_ref="f:1"
        )


def test_aware_timestamps_in_another_zone_become_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    r = record(queued_at=datetime(2024, 3, 1, 11, 0, tzinfo=plus_two))
    assert r.queued_at == T0
    assert r.queued_at.tzinfo is UTC


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("outcome", "hung_up", "outcome"),
        ("channel", "fax", "channel"),
        ("csat", 0, "csat"),
        ("csat", 6, "csat"),
        ("nps", 11, "nps"),
        ("nps", -1, "nps"),
        ("sentiment", 1.5, "sentiment"),
    ],
)
def test_out_of_range_values_are_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        record(**{field: value})


def test_scale_ends_are_accepted() -> None:
    r = record(csat=5, nps=0, sentiment=-1.0)
    assert (r.csat, r.nps, r.sentiment) == (5, 0, -1.0)


@given(
    outcome=st.sampled_from(sorted(OUTCOMES)),
    wait=st.none() | st.floats(min_value=0, max_value=1e6, allow_nan=False),
    offset=st.integers(min_value=0, max_value=10**9),
    customer=st.none() | st.text(max_size=20),
)
def test_json_round_trip(
    outcome: str, wait: float | None, offset: int, customer: str | None
) -> None:
    r = record(
        outcome=outcome,
        wait_s=wait,
        queued_at=T0 + timedelta(microseconds=offset),
        customer_key=customer,
    )
    data = json.loads(json.dumps(record_to_json(r)))
    assert record_from_json(data) == r


def test_issue_text_names_file_record_line_column_and_field() -> None:
    issue = ParseIssue(
        file="x.csv", record=7, line=9, column=3, field="csat", reason="bad", excerpt="=1+2"
    )
    assert str(issue) == "x.csv record 7 line 9 column 3, field csat: bad: '=1+2'"


def test_excerpt_is_bounded() -> None:
    assert len(excerpt("x" * 10_000)) == 200
    assert excerpt("a|b\r\n") == "a|b"
