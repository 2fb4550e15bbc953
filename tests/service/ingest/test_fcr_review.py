"""Review of FCR by repeat and the KPI query's new inputs: boundaries (ties, exactly
90 days, DST), corrections, re-imports, and bad query input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from httpx import AsyncClient
from sqlalchemy import text

from service.core.config import Settings
from service.core.db import Database
from service.kpis.rollups import rebuild_rollups
from tests.factories import bearer
from tests.service.ingest.conftest import Site, make_site, scope
from tests.service.ingest.test_fcr_repeat import call, fcr, figure, push

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
