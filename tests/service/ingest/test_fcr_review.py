"""Review of FCR by repeat and the KPI query's new inputs: boundaries (ties, exactly
90 days, DST), corrections, re-imports, and bad query input."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from httpx import AsyncClient
from sqlalchemy import text

from service.contacts.ingest import ingest_records
from service.contacts.records import ContactRecord
from service.core.config import DatabaseSettings, Settings
from service.core.db import Database
from service.core.migrate import upgrade_async
from service.kpis.rollups import rebuild_rollups
from tests.conftest import Server, create_database, drop_database
from tests.factories import bearer
from tests.service.ingest.conftest import Site, add_contract, make_site, scope
from tests.service.ingest.test_fcr_repeat import call, fcr, figure, push, record_of
from tests.service.uploads.conftest import QUEUE_LOG, make_center, upload

VOIP = QUEUE_LOG / "voipreports1.queue_log"

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


async def stored_days(db: Database, site: Site) -> dict[str, tuple[int | None, int | None]]:
    """external_id -> (contacts.repeat_days, contact_keys.repeat_days)."""
    async with db.admin_transaction() as admin:
        rows = (
            await admin.execute(
                text(
                    "select c.external_id, c.repeat_days, k.repeat_days from contacts c"
                    " join contact_keys k on k.tenant_id = c.tenant_id"
                    " and k.project_id = c.project_id and k.external_id = c.external_id"
                    " where c.tenant_id = :t"
                ),
                {"t": site.seed.id},
            )
        ).all()
    return {r[0]: (r[1], r[2]) for r in rows}


async def repeats_table(db: Database, site: Site) -> dict[tuple[str, int], int]:
    async with db.admin_transaction() as admin:
        rows = (
            await admin.execute(
                text(
                    "select local_day::text, repeat_days, n from kpi_daily_repeats"
                    " where tenant_id = :t and n <> 0"
                ),
                {"t": site.seed.id},
            )
        ).all()
    return {(r[0], r[1]): r[2] for r in rows}


async def test_exactly_90_days_apart_in_either_arrival_order_and_moved_past_it(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    later = call(site, "x2", "abandoned", T0 + timedelta(days=90), "X")
    first = call(site, "x1", "answered", T0, "X")
    await push(client, site, [later])
    await push(client, site, [first])
    assert (await stored_days(db, site))["x1"] == (90, 90)
    assert figure(await fcr(client, site, fcr_window_days=90)) == (0, 1)
    assert figure(await fcr(client, site, fcr_window_days=89)) == (1, 1)
    # One second later: no repeat within any window.
    moved = call(site, "x2", "abandoned", T0 + timedelta(days=90, seconds=1), "X")
    moved["source_version"] = 2
    assert (await push(client, site, [moved]))["updated"] == 1
    assert (await stored_days(db, site))["x1"] == (None, None)
    assert figure(await fcr(client, site, fcr_window_days=90)) == (1, 1)
    assert await repeats_table(db, site) == {}


async def test_reimporting_the_same_file_changes_nothing(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    rows = [
        call(site, "a1", "answered", T0, "A"),
        call(site, "a2", "answered", T0 + timedelta(days=2), "A"),
        call(site, "a3", "abandoned", T0 + timedelta(days=3), "A"),
    ]
    await push(client, site, rows)
    before = (await stored_days(db, site), await repeats_table(db, site))
    body = await push(client, site, rows)
    assert body["duplicates"] == 3
    assert (await stored_days(db, site), await repeats_table(db, site)) == before
    assert before[1] == {("2026-03-02", 2): 1, ("2026-03-04", 1): 1}


async def test_customer_removed_and_outcome_changed_by_corrections(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    await push(
        client,
        site,
        [
            call(site, "a1", "answered", T0, "A"),
            call(site, "a2", "answered", T0 + timedelta(days=1), "A"),
            call(site, "a3", "answered", T0 + timedelta(days=5), "A"),
        ],
    )
    assert figure(await fcr(client, site, end="2026-03-10")) == (1, 3)
    # a2 loses its customer: a1's next is a3 (5 days), a2 is judged by nothing.
    gone = call(site, "a2", "answered", T0 + timedelta(days=1), None, source_version=2)
    assert (await push(client, site, [gone]))["updated"] == 1
    assert (await stored_days(db, site))["a1"] == (5, 5)
    assert figure(await fcr(client, site, end="2026-03-10")) == (1, 2)
    assert figure(await fcr(client, site, end="2026-03-10", fcr_window_days=4)) == (2, 2)
    # a1 abandoned after all: it leaves the judged ones, still a contact of A's.
    abandoned = call(site, "a1", "abandoned", T0, "A", source_version=2)
    assert (await push(client, site, [abandoned]))["updated"] == 1
    assert figure(await fcr(client, site, end="2026-03-10")) == (1, 1)
    assert await repeats_table(db, site) == {}
    # and answered again: judged by repeat once more.
    again = call(site, "a1", "answered", T0, "A", source_version=3)
    assert (await push(client, site, [again]))["updated"] == 1
    assert figure(await fcr(client, site, end="2026-03-10")) == (1, 2)
    before = await repeats_table(db, site)
    async with db.transaction(scope(site)) as session:
        await rebuild_rollups(session, site.seed.id)
    assert await repeats_table(db, site) == before == {("2026-03-02", 5): 1}


async def test_dst_zone_days_are_elapsed_days(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """New York springs forward on 8 March 2026: noon to noon a week later is 7 days
    on the wall clock, 6 days 23 hours elapsed (repeat_days 7); the repeat counts on
    the first contact's local day."""
    site = await make_site(client, settings, db, time_zone="America/New_York")
    noon = datetime(2026, 3, 6, 17, 0, tzinfo=UTC)  # 12:00 EST
    week = datetime(2026, 3, 13, 16, 0, tzinfo=UTC)  # 12:00 EDT
    # 23:30 local on 6 March is 04:30 UTC on the 7th: its local day is the 6th.
    late = datetime(2026, 3, 7, 4, 30, tzinfo=UTC)
    await push(
        client,
        site,
        [
            call(site, "n1", "answered", noon, "N"),
            call(site, "n2", "answered", week, "N"),
            call(site, "l1", "answered", late, "L"),
            call(site, "l2", "answered", late + timedelta(hours=1), "L"),
        ],
    )
    assert (await stored_days(db, site))["n1"] == (7, 7)
    assert await repeats_table(db, site) == {("2026-03-06", 7): 1, ("2026-03-06", 1): 1}
    body = await fcr(client, site, start="2026-03-06", end="2026-03-07")
    assert figure(body) == (0, 2)
    assert figure(
        await fcr(client, site, start="2026-03-06", end="2026-03-07", fcr_window_days=6)
    ) == (1, 2)


@pytest.mark.parametrize(
    "bad",
    [
        '{"a": ' + "[" * 5000 + "]" * 5000 + "}",
        '{"threshold_s": 3601}',
        '{"threshold_s": 1e999}',
        '{"threshold_s": ' + "9" * 5000 + "}",
        '{"denominator": [["answered"]]}',
        '{"preset": ["SL1"]}',
        '{"preset": {"a": 1}}',
        '{"numerator": {"a": 1}}',
        '{"aggregation": ["ratio_of_sums"]}',
        '{"short_abandon_s": -1}',
        '{"threshold_s": NaN}',
        "\ufeff{}",
    ],
)
async def test_bad_sl_objects_are_a_422_naming_sl(
    client: AsyncClient, settings: Settings, db: Database, bad: str
) -> None:
    site = await make_site(client, settings, db)
    response = await client.get(
        f"/api/v1/projects/{site.project_id}/kpis",
        params={"from": "2026-03-02", "to": "2026-03-03", "sl": bad},
        headers=bearer(site.seed.admin_token),
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == "sl", response.text


async def _repeat_state(db: Database, tenant_id: Any) -> tuple[dict[str, Any], dict[Any, int]]:
    async with db.admin_transaction() as admin:
        days = dict(
            (
                await admin.execute(
                    text(
                        "select c.external_id, (c.repeat_days, k.repeat_days, k.customer_key)::text"
                        " from contacts c join contact_keys k on k.tenant_id = c.tenant_id"
                        " and k.project_id = c.project_id and k.external_id = c.external_id"
                        " where c.tenant_id = :t"
                    ),
                    {"t": tenant_id},
                )
            ).all()
        )
        counts = dict(
            (
                await admin.execute(
                    text(
                        "select (local_day, channel, repeat_days)::text, n from kpi_daily_repeats"
                        " where tenant_id = :t and n <> 0"
                    ),
                    {"t": tenant_id},
                )
            ).all()
        )
    return days, counts


@pytest.mark.parametrize("cut", [15, 19, 600])
async def test_queue_log_in_pieces_and_again_gives_the_repeats_of_the_whole(
    client: AsyncClient, settings: Settings, db: Database, cut: int
) -> None:
    """voipreports1 has callers who call back (15550115113 seven times): a file cut while
    a call is open (completed by the next import) or in overlapping pieces, and the whole
    file imported twice, store the same repeat_days and daily repeat counts."""
    data = VOIP.read_bytes()
    lines = data.splitlines(keepends=True)
    whole = await make_center(client, settings, db)
    for _ in range(2):
        response = await upload(client, whole, data, "queue_log", source="pbx")
        assert response.status_code == 200, response.text
    want = await _repeat_state(db, whole.seed.id)
    assert any(n for n in want[1].values()), "the sample has call backs"
    pieces = await make_center(client, settings, db)
    start = cut - 100 if cut == 600 else cut + 1
    for part in (lines[:cut], lines[start - 1 :]):
        response = await upload(client, pieces, b"".join(part), "queue_log", source="pbx")
        assert response.status_code == 200, response.text
    assert await _repeat_state(db, pieces.seed.id) == want


@pytest.mark.parametrize(
    ("zone", "minutes", "day", "calls", "want"),
    [
        # Kathmandu (+05:45): local 10:00-11:00 is 04:15-05:15 UTC. {within, late} then
        # {within, within}: (1/2 + 1) / 2; UTC hours would give (1 + 2/3) / 2.
        (
            "Asia/Kathmandu",
            60,
            "2026-05-04",
            [("04:20", 10), ("05:10", 30), ("05:20", 10), ("05:25", 10)],
            0.75,
        ),
        # Kathmandu, 30 minutes: 10:00-10:30 local is 04:15-04:45 UTC.
        (
            "Asia/Kathmandu",
            30,
            "2026-05-04",
            [("04:20", 10), ("04:40", 30), ("04:50", 10), ("05:10", 10)],
            0.75,
        ),
        # Tehran (+03:30), 60 minutes: 10:00-11:00 local is 06:30-07:30 UTC.
        (
            "Asia/Tehran",
            60,
            "2026-05-04",
            [("06:35", 10), ("07:25", 30), ("07:35", 10), ("07:40", 10)],
            0.75,
        ),
        # New York falls back on 1 November: 01:00-02:00 EDT (05:00 UTC) and 01:00-02:00
        # EST (06:00 UTC) are two intervals: (1 + 1/2) / 2, not one of 2/3.
        (
            "America/New_York",
            60,
            "2026-11-01",
            [("05:10", 10), ("06:10", 10), ("06:20", 30)],
            0.75,
        ),
    ],
)
async def test_a_mean_of_interval_ratios_in_the_contracts_local_intervals(
    client: AsyncClient,
    settings: Settings,
    db: Database,
    zone: str,
    minutes: int,
    day: str,
    calls: list[tuple[str, int]],
    want: float,
) -> None:
    site = await make_site(client, settings, db, time_zone=zone)
    await add_contract(
        client,
        site,
        {
            "effective_from": "2026-01-01",
            "interval_minutes": minutes,
            "targets": [
                {
                    "kpi": "service_level",
                    "formula": {"aggregation": "mean_of_intervals", "short_abandon_s": 0},
                    "threshold_s": 20,
                    "target": 0.8,
                }
            ],
        },
    )
    rows = []
    for i, (hhmm, wait) in enumerate(calls):
        queued = datetime.fromisoformat(f"{day}T{hhmm}:00+00:00")
        row = call(site, f"s{i}", "answered", queued, None, wait_s=wait)
        row["answered_at"] = (queued + timedelta(seconds=wait)).isoformat()
        rows.append(row)
    await push(client, site, rows)
    nxt = (datetime.fromisoformat(day) + timedelta(days=1)).date().isoformat()
    for params in ({}, {"group_by": "agent"}, {"granularity": "60min"}, {"group_by": "channel"}):
        response = await client.get(
            f"/api/v1/projects/{site.project_id}/kpis",
            params={"from": day, "to": nxt, "kpis": "service_level", **params},
            headers=bearer(site.seed.admin_token),
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["terms"]["interval_minutes"] == minutes
        assert body["total"]["service_level"]["value"] == pytest.approx(want), params


async def test_migration_0014_fills_the_repeats_of_the_contacts_held(
    pg_server: Server, db_settings: DatabaseSettings, run_id: str
) -> None:
    """Upgrading from 0013 with contacts held: customer keys copied to the keys,
    repeat_days of every contact, fcr_repeat_known and the daily repeat counts, per
    tenant and project (a customer's contacts on another project are no repeat)."""
    name = f"callpact_mig14_{run_id}"
    dsn = await create_database(pg_server, name)
    settings = db_settings.model_copy(update={"url": dsn})
    t1, t2, p1, p2, c1 = (uuid.uuid4() for _ in range(5))
    # (tenant, project, external id, customer, queued_at, outcome, flag)
    held = [
        (t1, p1, "a1", "A", T0, "answered", None),  # A again after 2 days
        (t1, p1, "a2", "A", T0 + timedelta(days=2), "abandoned", None),
        (t1, p1, "a3", "A", T0 + timedelta(days=92, hours=1), "answered", None),  # > 90
        (t1, p2, "a4", "A", T0 + timedelta(hours=1), "answered", None),  # another project
        (t1, p1, "b1", "B", T0, "answered", True),  # flagged: stored, not counted
        (t1, p1, "b2", "B", T0 + timedelta(days=90), "answered", None),  # exactly 90 days
        (t1, p1, "n1", None, T0, "answered", None),
        (t2, p1, "a1", "A", T0 + timedelta(hours=5), "answered", None),  # another tenant
    ]
    try:
        await upgrade_async(settings, "0013")
        conn = await asyncpg.connect(dsn)
        try:
            for t, p, ext, cust, at, outcome, flag in held:
                cid = uuid.uuid4()
                await conn.execute(
                    "insert into contacts (tenant_id, id, project_id, client_id, channel,"
                    " external_id, source, customer_key, queued_at, outcome,"
                    " resolved_first_contact, bucket_start, local_day)"
                    " values ($1, $2, $3, $4, 'voice', $5, 'test', $6, $7, $8, $9, $7, $10)",
                    t, cid, p, c1, ext, cust, at, outcome, flag, at.date(),
                )  # fmt: skip
                await conn.execute(
                    "insert into contact_keys (tenant_id, project_id, external_id, client_id,"
                    " contact_id, queued_at, content_hash) values ($1, $2, $3, $4, $5, $6, 0)",
                    t, p, ext, c1, cid, at,
                )  # fmt: skip
                await conn.execute(
                    "insert into kpi_daily_sums (tenant_id, project_id, client_id, channel,"
                    " local_day, n_answered) values ($1, $2, $3, 'voice', $4, 1)"
                    " on conflict (tenant_id, project_id, local_day, channel) do update"
                    " set n_answered = kpi_daily_sums.n_answered + 1",
                    t, p, c1, at.date(),
                )  # fmt: skip
        finally:
            await conn.close()
        await upgrade_async(settings)
        conn = await asyncpg.connect(dsn)
        try:
            days = {
                (r[0] == t1, r[1] == p1, r[2]): (r[3], r[4], r[5])
                for r in await conn.fetch(
                    "select c.tenant_id, c.project_id, c.external_id, c.repeat_days,"
                    " k.repeat_days, k.customer_key from contacts c join contact_keys k"
                    " on k.tenant_id = c.tenant_id and k.project_id = c.project_id"
                    " and k.external_id = c.external_id"
                )
            }
            known = {
                (r[0] == t1, r[1] == p1, r[2]): r[3]
                for r in await conn.fetch(
                    "select tenant_id, project_id, local_day, fcr_repeat_known"
                    " from kpi_daily_sums where fcr_repeat_known <> 0"
                )
            }
            repeats = {
                (r[0] == t1, r[1] == p1, r[2], r[3]): r[4]
                for r in await conn.fetch(
                    "select tenant_id, project_id, local_day, repeat_days, n from kpi_daily_repeats"
                )
            }
        finally:
            await conn.close()
    finally:
        await drop_database(pg_server, name)
    day0 = T0.date()
    assert days == {
        (True, True, "a1"): (2, 2, "A"),
        (True, True, "a2"): (None, None, "A"),
        (True, True, "a3"): (None, None, "A"),
        (True, False, "a4"): (None, None, "A"),
        (True, True, "b1"): (90, 90, "B"),
        (True, True, "b2"): (None, None, "B"),
        (True, True, "n1"): (None, None, None),
        (False, True, "a1"): (None, None, "A"),
    }
    assert known == {
        (True, True, day0): 1,
        (True, True, (T0 + timedelta(days=92)).date()): 1,
        (True, False, day0): 1,
        (True, True, (T0 + timedelta(days=90)).date()): 1,
        (False, True, day0): 1,
    }
    assert repeats == {(True, True, day0, 2): 1}


@pytest.mark.parametrize("bad", ["", "1.5", "-1", "9" * 5000, "7 days", "NaN", "true", "0x7"])
async def test_bad_fcr_window_days_is_a_422_naming_it(
    client: AsyncClient, settings: Settings, db: Database, bad: str
) -> None:
    site = await make_site(client, settings, db)
    for path in (f"projects/{site.project_id}", f"clients/{site.client_id}"):
        response = await client.get(
            f"/api/v1/{path}/kpis",
            params={"from": "2026-03-02", "to": "2026-03-03", "fcr_window_days": bad},
            headers=bearer(site.seed.admin_token),
        )
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert "fcr_window_days" in response.text


async def test_versions_in_one_batch_and_ties_at_one_instant(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    body = await push(
        client,
        site,
        [
            call(site, "v1", "answered", T0, "A", source_version=2),
            call(site, "v1", "answered", T0, "B", source_version=3),  # wins: customer B
            call(site, "v2", "answered", T0 + timedelta(days=1), "A"),
            call(site, "t1", "answered", T0, "T"),
            call(site, "t2", "answered", T0, "T"),
        ],
    )
    assert body["accepted"] == 4
    days = await stored_days(db, site)
    assert days["v1"] == (None, None)
    # Two contacts of one customer at one instant: one of them is the other's repeat.
    assert sorted((days["t1"], days["t2"]), key=str) == [(1, 1), (None, None)]
    before = (days, await repeats_table(db, site))
    async with db.transaction(scope(site)) as session:
        await rebuild_rollups(session, site.seed.id)
    assert (await stored_days(db, site), await repeats_table(db, site)) == before
    # The older version arriving late is stale: v1 stays B's.
    assert (await push(client, site, [call(site, "v1", "answered", T0, "A", source_version=2)]))[
        "stale"
    ] == 1
    assert (await stored_days(db, site), await repeats_table(db, site)) == before


async def test_an_sl_object_replaces_only_the_fields_it_names(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """The contract says SL3 (A_T / A), T = 20 s. `sl={"threshold_s": 30}` names only the
    threshold: the contract's numerator and denominator stay, as with `t=30` (it answered
    SL1, A_T / (A + Ab)). An object naming a preset replaces the shape."""
    site = await make_site(client, settings, db)
    await add_contract(
        client,
        site,
        {
            "effective_from": "2026-03-01",
            "short_abandon_s": 0,
            "targets": [
                {"kpi": "service_level", "formula": "SL3", "threshold_s": 20, "target": 0.8}
            ],
        },
    )

    async def terms(**params: str | int) -> dict[str, Any]:
        response = await client.get(
            f"/api/v1/projects/{site.project_id}/kpis",
            params={"from": "2026-03-02", "to": "2026-03-03", **params},
            headers=bearer(site.seed.admin_token),
        )
        assert response.status_code == 200, response.text
        got: dict[str, Any] = response.json()["terms"]
        return got

    by_t = await terms(t=30)
    by_object = await terms(sl='{"threshold_s": 30}')
    assert by_object["expression"] == by_t["expression"] == "A_T / A"
    assert by_object["service_level"] == by_t["service_level"]
    assert (await terms(sl='{"aggregation": "mean_of_intervals"}'))["expression"] == "A_T / A"
    named = await terms(sl='{"preset": "SL1", "threshold_s": 30}')
    assert named["expression"] == "A_T / (A + Ab)"
    assert named["service_level"]["short_abandon_s"] == 0
    numerator = await terms(
        sl='{"numerator": "handled_within", "denominator": ["answered",'
        ' "abandoned_after_t", "abandoned_within_t"]}'
    )
    assert numerator["expression"] == "(A_T + Ab_T) / (A + Ab)"


async def test_concurrent_imports_and_corrections_of_shared_customers_stay_exact(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """Four imports at once, each correcting contacts of customers the others add to
    (and holding its transaction open a moment): every one lands, and what they leave
    is what a rebuild from the raw rows gives."""
    site = await make_site(client, settings, db)
    base = [
        call(site, f"{c}{i}", "answered", T0 + timedelta(days=3 * i, hours=k), c)
        for k, c in enumerate("QRS")
        for i in range(4)
    ]
    await push(client, site, base)

    def batch(n: int) -> list[ContactRecord]:
        rows = [
            # a correction moving one of Q's, R's, S's contacts a day later
            call(site, f"{c}{n}", "answered", T0 + timedelta(days=3 * n + 1, hours=k), c,
                 source_version=2)
            for k, c in enumerate("QRS")
        ] + [
            # and a new contact of each, between the others
            call(site, f"{c}new{n}", "answered", T0 + timedelta(days=3 * n + 2), c)
            for c in "QRS"
        ]  # fmt: skip
        return [ContactRecord(**record_of(site, r)) for r in rows]

    async def one(n: int) -> None:
        async with db.transaction(scope(site)) as session:
            receipt = await ingest_records(session, site.seed.id, list(enumerate(batch(n), 1)))
            assert (receipt.accepted, receipt.updated) == (3, 3)
            await asyncio.sleep(0.2)

    await asyncio.gather(*(one(n) for n in range(4)))
    before = (await stored_days(db, site), await repeats_table(db, site))
    assert all(k == c for c, k in before[0].values())
    month = {"start": "2026-03-01", "end": "2026-05-01"}
    figures = [figure(await fcr(client, site, **month, fcr_window_days=w)) for w in (1, 2, 3)]
    raw = [
        figure(await fcr(client, site, **month, granularity="interval", fcr_window_days=w))
        for w in (1, 2, 3)
    ]
    assert figures == raw
    async with db.transaction(scope(site)) as session:
        await rebuild_rollups(session, site.seed.id)
    assert (await stored_days(db, site), await repeats_table(db, site)) == before
    assert figures == [
        figure(await fcr(client, site, **month, fcr_window_days=w)) for w in (1, 2, 3)
    ]
