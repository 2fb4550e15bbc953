"""Property: after every ingest step, the rollups equal the raw contact rows.

Random contacts (every outcome including `in_queue`, waits that are
fractional, exactly on a threshold or a grid edge, or derived from the
timestamps; talk/hold/ACW, surveys, four channels) for three projects in
America/New_York, Asia/Tehran (+03:30) and Asia/Kathmandu (+05:45), around
New York's spring-forward or fall-back day (the latter also crosses a month
partition of `contacts`), are ingested through `ingest_records` in random
batches. The events include corrections (a newer `source_version` that
changes the outcome, the wait or `queued_at`, moving the contact to another
interval, local day or month), stale older versions, re-sent duplicates and
several versions of one contact inside one batch. Contacts belong to one of
two customers (or none), so FCR by repeat sees customers coming back within
1 to 3 days, callbacks that move, change customer or gain a flag; the test
computes each contact's `repeat_days` from the raw rows itself.

After each batch:

* the raw `contacts` rows are exactly the versions a small model of the
  documented rules keeps (newest version wins; same content is a duplicate;
  an older version is stale, also when the newest version seen only repeated
  the facts; without versions a different content corrects);
* for each project and for all projects together, and at both grains, the
  `KpiSums` read from the rollups (`read_sums`) equal `KpiSums.from_contacts`
  over the raw rows, grouped by buckets computed here from `queued_at` and
  the project's zone (not from the stored bucket columns);
* every KPI of `QUEUE_KPIS` agrees, per bucket and for the whole range, under
  random contract terms (T on the grid, short_abandon_s, SL presets, timeouts
  as abandons, ratio of sums or mean of intervals).

Each example uses a fresh tenant, so examples never see each other's rows.
"""

from __future__ import annotations

import itertools
import secrets
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.contacts.ingest import ingest_records
from service.contacts.records import ContactRecord
from service.core.db import Database, DbScope
from service.kpis.formulas import QUEUE_KPIS, ContractTerms, ServiceLevelFormula, compute_all
from service.kpis.repository import Grain, read_sums
from service.kpis.sums import ContactFacts, KpiSums, duration_ms
from tests.factories import make_client
from tests.service.ingest.conftest import make_project

ZONES = ("America/New_York", "Asia/Tehran", "Asia/Kathmandu")
# New York springs forward at 2026-03-08 07:00 UTC and falls back at 2026-11-01 06:00 UTC.
ANCHORS = (datetime(2026, 3, 8, 7, 0, tzinfo=UTC), datetime(2026, 11, 1, 6, 0, tzinfo=UTC))
SPAN_MS = 30 * 3_600_000  # contacts within ±30 h of the anchor
GRAINS: tuple[Grain, ...] = ("interval", "daily", "monthly")
KEYS = 6  # distinct contacts per example (external ids)
CHANNELS = ("voice", "chat", "email", "social")
OUTCOMES = (
    "answered",
    "abandoned",
    "timeout",
    "exit_key",
    "exit_empty",
    "overflow",
    "transferred_out",
    "in_queue",
)
# Waits on and around thresholds and grid edges (seconds); 5.0004 s is 5 001 ms (rounded up).
EDGE_WAITS = (
    0.0,
    0.001,
    1.0,
    4.999,
    5.0,
    5.0004,
    5.001,
    19.999,
    20.0,
    20.0001,
    20.001,
    30.0,
    59.5,
    60.0,
    3599.999,
    3600.0,
    3600.001,
    3660.0,
    86400.0,
    86400.5,
    90000.0,
    2678400.0,
    2678400.001,
    3000000.0,
)


# ---- what the test generates -------------------------------------------------------------


@dataclass(frozen=True)
class Content:
    """The facts of one version of a contact (the key and version are the event's)."""

    outcome: str
    offset_ms: int  # queued_at - anchor
    wait_s: float | None
    wait_from_times: bool  # no wait_s: ingestion derives it from answered_at/abandoned_at
    channel: str
    talk_s: float | None = None
    hold_s: float | None = None
    hold_count: int | None = None
    acw_s: float | None = None
    transferred: bool | None = None
    fcr: bool | None = None
    csat: int | None = None
    nps: int | None = None
    customer: str | None = None


@dataclass(frozen=True)
class Event:
    key: int  # contact n of the example; its project is n % len(ZONES)
    version: int | None
    content: Content


@dataclass(frozen=True)
class Scenario:
    anchor: datetime
    batches: list[list[Event]]
    terms: list[ContractTerms]


offsets = st.one_of(
    # exactly on quarter hours (local midnights of all three zones among them)
    st.integers(-SPAN_MS // 900_000, SPAN_MS // 900_000).map(lambda q: q * 900_000),
    st.integers(-SPAN_MS, SPAN_MS),
)
waits = st.one_of(
    st.sampled_from(EDGE_WAITS),
    st.integers(0, 120_000).map(lambda ms: ms / 1000),
    st.integers(0, 40 * 86_400).map(float),
)
seconds = st.none() | st.integers(0, 3_000_000).map(lambda ms: ms / 1000)


@st.composite
def contents(draw: st.DrawFn) -> Content:
    # answered three times as often as each other outcome: the handling figures and
    # FCR by repeat need answered contacts of one customer
    outcome = draw(st.sampled_from((*OUTCOMES, "answered", "answered")))
    base: dict[str, Any] = {
        "outcome": outcome,
        "offset_ms": draw(offsets),
        "channel": draw(st.sampled_from(CHANNELS)),
        "csat": draw(st.none() | st.integers(1, 5)),
        "nps": draw(st.none() | st.integers(0, 10)),
        "customer": draw(st.sampled_from((None, "cust-x", "cust-y", "cust-x", "cust-x"))),
    }
    if outcome == "in_queue":
        return Content(wait_s=None, wait_from_times=False, **base)
    from_times = draw(st.booleans()) if outcome in ("answered", "abandoned") else False
    wait = draw(waits)
    if outcome != "answered":
        return Content(wait_s=None if from_times else wait, wait_from_times=from_times, **base)
    hold = draw(st.none() | st.just(0.0) | st.integers(1, 600_000).map(lambda ms: ms / 1000))
    return Content(
        wait_s=None if from_times else wait,
        wait_from_times=from_times,
        talk_s=draw(seconds),
        hold_s=hold,
        hold_count=draw(st.none() | st.integers(0, 3)),
        acw_s=draw(seconds),
        transferred=draw(st.none() | st.booleans()),
        fcr=draw(st.none() | st.booleans()),
        **base,
    )


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    pool = draw(st.lists(contents(), min_size=1, max_size=6))
    # A later event may reuse an earlier content (a duplicate, or the same facts with
    # another version), change one field of it (a correction moving queued_at, the
    # outcome or the wait), or bring new facts.
    events: list[Event] = []
    for _ in range(draw(st.integers(1, 16))):
        key = draw(st.integers(0, KEYS - 1))
        version = draw(st.none() | st.integers(1, 4))
        how = draw(st.sampled_from(("pool", "pool", "moved", "rewaited", "fresh", "callback")))
        if how == "callback":
            # An answered contact without a flag, and the same customer again on the
            # same project (key + 3) up to 30 h later: FCR by repeat. Without versions,
            # so that they replace what the keys held (unless a later event does).
            first = replace(
                draw(contents().filter(lambda c: c.outcome == "answered")),
                fcr=None,
                customer="cust-x",
            )
            later = min(SPAN_MS, first.offset_ms + draw(st.integers(0, 30 * 3_600_000)))
            again = replace(draw(st.sampled_from(pool)), customer="cust-x", offset_ms=later)
            events += [Event(key, None, first), Event((key + 3) % KEYS, None, again)]
            continue
        content = draw(st.sampled_from(pool))
        if how == "moved":
            content = replace(content, offset_ms=draw(offsets))
        elif how == "rewaited" and content.wait_s is not None:
            content = replace(content, wait_s=draw(waits))
        elif how == "fresh":
            content = draw(contents())
        events.append(Event(key, version, content))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(events) - 1)), max_size=4)))
    bounds = [0, *[c for c in cuts if c < len(events)], len(events)]
    batches = [events[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    terms = [
        ContractTerms(
            service_level=ServiceLevelFormula.preset(
                draw(st.sampled_from(("SL1", "SL2", "SL3", "SL4"))),
                threshold_s=draw(
                    st.one_of(
                        st.sampled_from((0, 5, 20, 30, 60, 3600, 3660, 86400, 90000, 2678400)),
                        st.integers(0, 3600),
                        st.integers(61, 1440).map(lambda m: m * 60),
                        st.integers(25, 744).map(lambda h: h * 3600),
                    )
                ),
                short_abandon_s=draw(st.sampled_from((0, 5)) | st.integers(0, 60)),
                aggregation=draw(st.sampled_from(("ratio_of_sums", "mean_of_intervals"))),
            ),
            timeouts_as_abandons=draw(st.booleans()),
            fcr_window_days=draw(st.integers(1, 3) | st.just(7)),
        )
        for _ in range(2)
    ]
    return Scenario(draw(st.sampled_from(ANCHORS)), batches, terms)


# ---- the world of one example ----------------------------------------------------------------


@dataclass
class World:
    tenant_id: uuid.UUID
    projects: list[uuid.UUID]
    queues: list[str]

    @property
    def scope(self) -> DbScope:
        return DbScope(tenant_id=self.tenant_id)


async def make_world(db: Database) -> World:
    tenant_id = uuid.uuid4()
    async with db.admin_transaction() as admin:
        await admin.execute(
            text("insert into tenants (id, slug, name) values (:id, :slug, 'Property BPO')"),
            {"id": tenant_id, "slug": f"prop-{secrets.token_hex(6)}"},
        )
    client = await make_client(db, tenant_id, "Property client")
    queues = [f"q{i}-{secrets.token_hex(3)}" for i in range(len(ZONES))]
    projects = [
        await make_project(db, tenant_id, client.id, [queue], zone)
        for queue, zone in zip(queues, ZONES, strict=True)
    ]
    return World(tenant_id, projects, queues)


def to_record(world: World, anchor: datetime, event: Event) -> ContactRecord:
    c = event.content
    queued = anchor + timedelta(milliseconds=c.offset_ms)
    values: dict[str, Any] = {
        "source": "property",
        "queue_key": world.queues[event.key % len(ZONES)],
        "external_id": f"contact-{event.key}",
        "channel": c.channel,
        "queued_at": queued,
        "outcome": c.outcome,
        "raw_ref": f"property:{event.key}:{event.version}",
        "source_version": event.version,
        "wait_s": c.wait_s,
        "csat": c.csat,
        "nps": c.nps,
        "customer_key": c.customer,
    }
    # A derived wait: a timestamp a fractional number of seconds after queued_at.
    derived = timedelta(milliseconds=(c.offset_ms % 97_000) + 0.4)
    if c.outcome == "answered":
        values |= {
            "answered_at": queued + (derived if c.wait_from_times else timedelta(seconds=0)),
            "talk_s": c.talk_s,
            "hold_s": c.hold_s,
            "hold_count": c.hold_count,
            "acw_s": c.acw_s,
            "transferred": c.transferred,
            "resolved_first_contact": c.fcr,
        }
        if not c.wait_from_times:
            values["answered_at"] = queued + timedelta(seconds=c.wait_s or 0)
    elif c.outcome == "abandoned" and c.wait_from_times:
        values["abandoned_at"] = queued + derived
    return ContactRecord(**values)


# ---- the model of the ingest rules -------------------------------------------------------------


@dataclass(frozen=True)
class Kept:
    version: int | None
    content: tuple[Any, ...]
    record: ContactRecord


def content_key(record: ContactRecord) -> tuple[Any, ...]:
    """Same content or not, as ingestion decides it: the facts without the
    version and the provenance (source, raw_ref), durations in whole ms."""

    def ms(value: float | None) -> int | None:
        return None if value is None else duration_ms(value)

    return (
        record.channel,
        record.customer_key,
        record.queued_at,
        record.answered_at,
        record.ended_at,
        record.abandoned_at,
        record.outcome,
        record.agent_key,
        expected_wait_ms(record),
        ms(record.talk_s),
        ms(record.hold_s),
        record.hold_count,
        ms(record.acw_s),
        record.transferred,
        record.resolved_first_contact,
        record.csat,
        record.nps,
        record.sentiment,
    )


def apply_rules(model: dict[int, Kept], batch: list[tuple[Event, ContactRecord]]) -> None:
    """Module docstring of service/contacts/ingest.py: the newest version inside the
    batch (highest version, then the last row), then new / duplicate / stale / update."""
    winners: dict[int, tuple[tuple[bool, int, int], Event, ContactRecord]] = {}
    for row_no, (ev, record) in enumerate(batch, start=1):
        rank = (ev.version is not None, ev.version or 0, row_no)
        if ev.key not in winners or rank > winners[ev.key][0]:
            winners[ev.key] = (rank, ev, record)
    for key, (_, ev, record) in winners.items():
        incoming = Kept(ev.version, content_key(record), record)
        current = model.get(key)
        if current is None:
            model[key] = incoming
        elif current.content == incoming.content:
            # A duplicate: the facts stay; a newer version becomes the bar for later ones.
            if incoming.version is not None and (
                current.version is None or incoming.version > current.version
            ):
                model[key] = Kept(incoming.version, current.content, current.record)
            continue
        elif (
            current.version is not None
            and incoming.version is not None
            and incoming.version < current.version
        ):
            continue  # stale
        else:
            model[key] = incoming


def expected_wait_ms(record: ContactRecord) -> int | None:
    if record.outcome == "in_queue":
        return None
    if record.wait_s is not None:
        return duration_ms(record.wait_s)
    end = record.answered_at or record.abandoned_at
    assert end is not None
    return duration_ms(end - record.queued_at)


# ---- raw rows and rollups ------------------------------------------------------------------------


@dataclass(frozen=True)
class RawRow:
    project_id: uuid.UUID
    external_id: str
    queued_at: datetime
    outcome: str
    wait_ms: int | None
    facts: ContactFacts


def next_contact_days(rows: Sequence[Any]) -> dict[uuid.UUID, int | None]:
    """Per contact id with a customer: whole days (rounded up, at least 1) until that
    customer's next contact on the project, in (queued_at, id) order; None if none
    within 90 days. KPIS.md's repeat rule, computed here from the raw rows alone."""
    by_customer: dict[tuple[uuid.UUID, str], list[tuple[datetime, uuid.UUID]]] = defaultdict(list)
    for r in rows:
        if r.customer_key is not None:
            by_customer[r.project_id, r.customer_key].append((r.queued_at, r.id))
    out: dict[uuid.UUID, int | None] = {}
    day_us = 86_400 * 10**6
    for contacts in by_customer.values():
        contacts.sort()
        for (at, cid), nxt in itertools.zip_longest(contacts, contacts[1:]):
            if nxt is None:
                out[cid] = None
                continue
            gap = nxt[0] - at
            us = (gap.days * 86_400 + gap.seconds) * 10**6 + gap.microseconds
            days = max(1, -(-us // day_us))
            out[cid] = days if days <= 90 else None
    return out


async def raw_rows(session: AsyncSession, world: World) -> list[RawRow]:
    result = await session.execute(
        text(
            "select id, project_id, external_id, queued_at, outcome, wait_ms, talk_ms, hold_ms,"
            " hold_count, acw_ms, transferred, resolved_first_contact, csat, nps, customer_key,"
            " repeat_days from contacts where tenant_id = :t"
        ),
        {"t": world.tenant_id},
    )
    rows = result.all()
    repeats = next_contact_days(rows)
    # The stored column agrees with the rule (the rollups are checked against it below).
    assert {r.id: r.repeat_days for r in rows if r.customer_key is not None} == repeats
    out = []
    for r in rows:
        answered = r.outcome == "answered"

        def ms(value: int | None, keep: bool = answered) -> timedelta:
            return timedelta(milliseconds=value or 0) if keep else timedelta(0)

        facts = ContactFacts(
            outcome=r.outcome,
            wait_s=None if r.outcome == "in_queue" else ms(r.wait_ms, True),
            talk_s=ms(r.talk_ms),
            hold_s=ms(r.hold_ms),
            hold_count=(r.hold_count or 0) if answered else 0,
            acw_s=ms(r.acw_ms),
            transferred=bool(r.transferred) if answered else False,
            resolved_first_contact=r.resolved_first_contact if answered else None,
            csat=r.csat,
            nps=r.nps,
            fcr_repeat=(repeats[r.id] or 0)
            if answered and r.resolved_first_contact is None and r.customer_key is not None
            else None,
        )
        out.append(RawRow(r.project_id, r.external_id, r.queued_at, r.outcome, r.wait_ms, facts))
    return out


def interval_of(instant: datetime) -> datetime:
    """The UTC quarter hour holding `instant` (every zone used is whole quarter hours from UTC)."""
    utc = instant.astimezone(UTC)
    return utc.replace(minute=utc.minute - utc.minute % 15, second=0, microsecond=0)


def raw_buckets(
    world: World, rows: list[RawRow], projects: Sequence[uuid.UUID], grain: Grain
) -> dict[datetime | date, KpiSums]:
    zones = {p: ZoneInfo(z) for p, z in zip(world.projects, ZONES, strict=True)}
    grouped: dict[datetime | date, list[ContactFacts]] = defaultdict(list)
    for row in rows:
        if row.project_id not in projects:
            continue
        bucket: datetime | date
        if grain == "interval":
            bucket = interval_of(row.queued_at)
        else:
            bucket = row.queued_at.astimezone(zones[row.project_id]).date()
            if grain == "monthly":
                bucket = bucket.replace(day=1)
        grouped[bucket].append(row.facts)
    return {b: KpiSums.from_contacts(facts) for b, facts in grouped.items()}


async def rollup_buckets(
    session: AsyncSession,
    world: World,
    anchor: datetime,
    projects: Sequence[uuid.UUID],
    grain: Grain,
) -> dict[datetime | date, KpiSums]:
    start: datetime | date
    end: datetime | date
    if grain == "interval":
        start, end = anchor - timedelta(days=3), anchor + timedelta(days=3)
    elif grain == "daily":
        start, end = (anchor - timedelta(days=3)).date(), (anchor + timedelta(days=3)).date()
    else:  # the months around every day the scenarios use
        start = (anchor - timedelta(days=40)).date().replace(day=1)
        end = (anchor + timedelta(days=40)).date().replace(day=1)
    rows = await read_sums(session, world.tenant_id, list(projects), grain, start, end)
    assert all(channel is None for _, channel in rows)
    return {b: sums for (b, _), sums in rows.items()}


def figures(
    sums: KpiSums, terms: ContractTerms, intervals: list[KpiSums]
) -> dict[str, tuple[Any, ...]]:
    values = compute_all(sums, terms, intervals or [sums])
    assert set(values) == set(QUEUE_KPIS)
    return {
        k: (v.value, v.numerator, v.denominator, v.upper_bound, v.formula)
        for k, v in values.items()
    }


def check_equal(
    rolled: dict[datetime | date, KpiSums],
    raw: dict[datetime | date, KpiSums],
    terms: list[ContractTerms],
    where: str,
) -> None:
    empty = KpiSums()
    for bucket in sorted(set(rolled) | set(raw), key=str):
        got, want = rolled.get(bucket, empty), raw.get(bucket, empty)
        assert got == want, f"{where} {bucket}: rollup {got} != raw {want}"
        for t in terms:
            assert figures(got, t, [got]) == figures(want, t, [want]), f"{where} {bucket}"
    # The whole range: one total (and the list of buckets for a mean of interval ratios).
    keys = sorted(set(rolled) | set(raw), key=str)
    got_parts = [rolled.get(k, empty) for k in keys]
    want_parts = [raw.get(k, empty) for k in keys]
    for t in terms:
        assert figures(KpiSums.merge(got_parts), t, got_parts) == figures(
            KpiSums.merge(want_parts), t, want_parts
        ), f"{where} total"


# ---- the property ----------------------------------------------------------------------------------


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenario=scenarios())
async def test_rollups_equal_raw_rows_after_every_ingest_step(
    db: Database, scenario: Scenario
) -> None:
    world = await make_world(db)
    model: dict[int, Kept] = {}
    for batch in scenario.batches:
        pairs = [(e, to_record(world, scenario.anchor, e)) for e in batch]
        async with db.transaction(world.scope) as session:
            receipt = await ingest_records(
                session, world.tenant_id, enumerate((r for _, r in pairs), start=1)
            )
        assert receipt.rejected == []
        assert (
            receipt.accepted + receipt.duplicates + receipt.updated + receipt.stale
            == receipt.received
            == len(batch)
        )
        for kind in ("updated", "stale", "duplicates"):
            if getattr(receipt, kind):
                event(f"a batch with {kind}")
        apply_rules(model, pairs)

        async with db.transaction(world.scope) as session:
            rows = await raw_rows(session, world)
            groups = [[p] for p in world.projects] + [list(world.projects)]
            rolled = {
                (i, grain): await rollup_buckets(session, world, scenario.anchor, projects, grain)
                for i, projects in enumerate(groups)
                for grain in GRAINS
            }
        # The raw table holds exactly the versions the rules keep.
        assert sorted(
            (r.project_id, r.external_id, r.queued_at, r.outcome, r.wait_ms) for r in rows
        ) == sorted(
            (
                world.projects[key % len(ZONES)],
                f"contact-{key}",
                kept.record.queued_at,
                kept.record.outcome,
                expected_wait_ms(kept.record),
            )
            for key, kept in model.items()
        )

        if any(r.facts.fcr_repeat for r in rows):
            event("a contact judged by repeat whose customer came back")
        for (i, grain), got in rolled.items():
            want = raw_buckets(world, rows, groups[i], grain)
            check_equal(got, want, scenario.terms, f"{grain}, project group {i}")
