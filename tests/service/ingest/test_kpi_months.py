"""Reports made of whole local months read the monthly wait histograms
(migration 0011) and the days around them from the daily rows: every figure,
with its numerator and denominator, equals the same range read day by day,
across month ends that are not UTC's, DST, a correction that moves a contact
to another month and one that makes a histogram's maximum inexact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from httpx import AsyncClient

from service.core.config import Settings
from service.core.db import Database
from tests.factories import bearer
from tests.service.ingest.conftest import Site, add_contract, make_site
from tests.service.ingest.test_kpi_api import contact, push

# Local midnight of 1 April 2026 in New York is 04:00 UTC (EDT since 8 March).
NY_APRIL = datetime(2026, 4, 1, 4, 0, tzinfo=UTC)
VARIANTS: tuple[dict[str, Any], ...] = (
    {},
    {"sl": "SL3", "t": 30, "short_abandon_s": 0},
    {"sl": "SL4", "t": 7},
    {"sl": "SL1", "t": 4 * 3600},
)


async def report(client: AsyncClient, site: Site, **params: Any) -> dict[str, Any]:
    response = await client.get(
        f"/api/v1/projects/{site.project_id}/kpis",
        params=params,
        headers=bearer(site.seed.admin_token),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def figures(kpis: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    return {k: (v["value"], v["numerator"], v["denominator"]) for k, v in kpis.items()}


async def seed(client: AsyncClient, settings: Settings, db: Database) -> Site:
    site = await make_site(client, settings, db, time_zone="America/New_York")
    rows = []
    # Around the local end of March (UTC has turned April 4 h before), in February
    # and mid-May; waits from 0 s to 5 h.
    for i, (offset_h, outcome, wait) in enumerate(
        [
            (-3, "answered", 4),
            (-1, "answered", 19),
            (-0.5, "abandoned", 3),  # 31 March, 23:30 local: 1 April UTC
            (0.25, "answered", 21),
            (2, "abandoned", 45),
            (3, "answered", 18_000),
            (-24 * 40, "answered", 12),  # 20 February
            (-24 * 40 + 1, "timeout", 300),
            (24 * 45, "answered", 9),  # 15 May
            (24 * 45 + 2, "abandoned", 61),
            (24 * 9, "answered", 600.2),  # 10 April: two waits in the 601 s cell
            (24 * 9 + 1, "answered", 600.9),
        ]
    ):
        rows.append(contact(site, i, outcome, wait, NY_APRIL + timedelta(hours=offset_h)))
    # A chat contact in March and one in April: those months have two rows.
    rows.append(contact(site, 50, "answered", 7, NY_APRIL - timedelta(days=3), channel="chat"))
    rows.append(contact(site, 51, "abandoned", 33, NY_APRIL + timedelta(days=3), channel="chat"))
    await push(client, site, rows)
    return site


async def test_month_reads_equal_day_reads_for_every_variant(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await seed(client, settings, db)
    march = await report(
        client, site, **{"from": "2026-03-01", "to": "2026-04-01", "granularity": "month"}
    )
    assert march["granularity"] == "month"
    # Two voice calls (the 3 s abandon is short) and a chat.
    assert march["total"]["offered"]["value"] == 3
    assert march["total"]["service_level"]["denominator"] == 3

    async def same_as_days(start: str, end: str, granularity: str, **variant: Any) -> None:
        months = await report(
            client, site, **{"from": start, "to": end, "granularity": granularity, **variant}
        )
        for bucket in months["buckets"]:
            days = await report(
                client,
                site,
                **{"from": bucket["start"], "to": bucket["end"], "granularity": "day", **variant},
            )
            assert figures(bucket["kpis"]) == figures(days["total"]), (bucket["label"], variant)
        days = await report(
            client, site, **{"from": start, "to": end, "granularity": "day", **variant}
        )
        assert figures(months["total"]) == figures(days["total"]), variant

    for variant in VARIANTS:
        await same_as_days("2026-03-01", "2026-04-01", "month", **variant)
        # Days before the first whole month and after the last one, several buckets.
        await same_as_days("2026-02-15", "2026-05-20", "month", **variant)
        await same_as_days("2026-01-01", "2027-01-01", "quarter", **variant)
    split = await report(
        client,
        site,
        **{"from": "2026-02-01", "to": "2026-06-01", "granularity": "month", "group_by": "channel"},
    )
    assert {b["group"] for b in split["buckets"]} == {"chat", "voice"}
    for bucket in split["buckets"]:
        days = await report(
            client,
            site,
            **{"from": bucket["start"], "to": bucket["end"], "granularity": "day"},
            channel=bucket["group"],
        )
        assert figures(bucket["kpis"]) == figures(days["total"]), (bucket["label"], bucket["group"])
    year = await report(
        client, site, **{"from": "2026-01-01", "to": "2027-01-01", "granularity": "year"}
    )
    assert year["total"]["offered"]["value"] == 13
    assert year["total"]["longest_wait"]["value"] == 18_000


async def test_corrections_move_the_monthly_histograms(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await seed(client, settings, db)
    before = await report(
        client, site, **{"from": "2026-04-01", "to": "2026-05-01", "granularity": "month"}
    )
    assert before["total"]["longest_wait"]["value"] == 18_000
    # The 5-hour wait becomes 30 s, the 600.9 s one 10 s, and the 19 s answer of
    # 31 March moves to 2 April.
    corrected = await client.post(
        "/api/v1/contacts:batch",
        json={
            "records": [
                contact(site, 5, "answered", 30, NY_APRIL + timedelta(hours=3), source_version=2),
                contact(
                    site,
                    11,
                    "answered",
                    10,
                    NY_APRIL + timedelta(hours=24 * 9 + 1),
                    source_version=2,
                ),
                contact(
                    site, 1, "answered", 19, NY_APRIL + timedelta(days=1, hours=5), source_version=2
                ),
            ]
        },
        headers=bearer(site.seed.admin_token),
    )
    assert corrected.status_code == 200, corrected.text
    assert corrected.json()["updated"] == 3, corrected.text
    april = await report(
        client, site, **{"from": "2026-04-01", "to": "2026-05-01", "granularity": "month"}
    )
    march = await report(
        client, site, **{"from": "2026-03-01", "to": "2026-04-01", "granularity": "month"}
    )
    assert april["total"]["offered"]["value"] == before["total"]["offered"]["value"] + 1
    assert march["total"]["offered"]["value"] == 2
    # The 601 s cell's maximum left with the 600.9 s wait: read again from raw rows.
    assert april["total"]["longest_wait"]["value"] == 600.2
    for variant in VARIANTS:
        for month, start, end in (
            (april, "2026-04-01", "2026-05-01"),
            (march, "2026-03-01", "2026-04-01"),
        ):
            days = await report(
                client, site, **{"from": start, "to": end, "granularity": "day", **variant}
            )
            got = (
                await report(
                    client, site, **{"from": start, "to": end, "granularity": "month", **variant}
                )
                if variant
                else month
            )
            assert figures(got["total"]) == figures(days["total"]), (start, variant)


async def test_the_contract_in_force_on_the_first_local_day_gives_the_formula(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """Read with the project in one statement: the version in force on the
    project's local day of `from`, whether `from` is a date or an instant."""
    site = await seed(client, settings, db)
    await add_contract(
        client,
        site,
        {
            "effective_from": "2026-04-01",
            "targets": [
                {"kpi": "service_level", "formula": "SL3", "threshold_s": 30, "target": 0.8}
            ],
        },
    )
    for start, source in (
        ("2026-03-31", "default"),
        ("2026-04-01", "contract"),
        ("2026-04-01T03:59:00+00:00", "default"),  # 23:59 on 31 March in New York
        ("2026-04-01T04:00:00+00:00", "contract"),  # midnight, 1 April
    ):
        body = await report(client, site, **{"from": start, "to": "2026-04-03"})
        assert body["terms"]["source"] == source, start
        assert (body["terms"]["expression"] == "A_T / A") is (source == "contract"), start


async def test_a_tenant_report_by_month_buckets_other_zones_by_its_own_months(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """The tenant reports in UTC; its New York project's months are not UTC's,
    so its contacts are grouped by the tenant's months from raw rows: every
    bucket of a report by month equals that month read as a single bucket."""
    site = await seed(client, settings, db)
    headers = bearer(site.seed.admin_token)

    async def tenant(**params: Any) -> dict[str, Any]:
        response = await client.get("/api/v1/tenant/kpis", params=params, headers=headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    by_month = await tenant(**{"from": "2026-02-01", "to": "2026-06-01", "granularity": "month"})
    assert by_month["time_zone"] == "UTC"
    labels = [b["label"] for b in by_month["buckets"]]
    assert len(labels) == 4, labels
    # 31 March after 20:00 in New York is April in UTC: only the chat of 29 March
    # is March's (the project's own March holds three calls).
    assert [b["kpis"]["offered"]["value"] for b in by_month["buckets"]] == [2, 1, 8, 2]
    for bucket in by_month["buckets"]:
        alone = await tenant(
            **{"from": bucket["start"], "to": bucket["end"], "granularity": "month"}
        )
        assert figures(bucket["kpis"]) == figures(alone["total"]), bucket["label"]
    days = await tenant(**{"from": "2026-02-01", "to": "2026-06-01", "granularity": "day"})
    assert figures(days["total"]) == figures(by_month["total"])
