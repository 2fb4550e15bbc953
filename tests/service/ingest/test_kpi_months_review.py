"""Review of the monthly wait histograms (migration 0011) and the month read
path: walls on the new project-and-contract statement, months emptied or
filled by corrections across a local midnight (Tehran, +03:30), months of
in-queue contacts only, client scopes mixing zones, `from` as an instant,
channel splits and filters, and inexact maxima in months of several rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from httpx import AsyncClient
from sqlalchemy import text

from service.core.config import Settings
from service.core.db import Database
from tests.factories import bearer, make_client, user_token
from tests.service.ingest.conftest import Site, make_project, make_site
from tests.service.ingest.test_kpi_api import contact, push
from tests.service.ingest.test_kpi_months import VARIANTS, figures

# Local midnight of 1 April 2026 in Tehran (+03:30, no DST since 2022) is 20:30 UTC on 31 March.
TEHRAN_APRIL = datetime(2026, 3, 31, 20, 30, tzinfo=UTC)
# Local midnight of 1 April 2026 in New York is 04:00 UTC (EDT).
NY_APRIL = datetime(2026, 4, 1, 4, 0, tzinfo=UTC)


async def get(
    client: AsyncClient, url: str, token: str, status: int = 200, **params: Any
) -> dict[str, Any]:
    response = await client.get(url, params=params, headers=bearer(token))
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def correct(client: AsyncClient, site: Site, rows: list[dict[str, Any]]) -> None:
    response = await client.post(
        "/api/v1/contacts:batch", json={"records": rows}, headers=bearer(site.seed.admin_token)
    )
    assert response.status_code == 200, response.text
    assert response.json()["updated"] == len(rows), response.text


def project_url(project_id: uuid.UUID) -> str:
    return f"/api/v1/projects/{project_id}/kpis"


async def months_equal_days(
    client: AsyncClient, url: str, token: str, start: str, end: str, granularity: str, **kw: Any
) -> dict[str, Any]:
    """Every bucket and the total of a report of months equal the same spans read day by day."""
    months = await get(
        client, url, token, **{"from": start, "to": end}, granularity=granularity, **kw
    )
    for bucket in months["buckets"]:
        lo = max(bucket["start"], months["start"])
        hi = min(bucket["end"], months["end"])
        extra = {"channel": bucket["group"]} if bucket["group"] is not None else {}
        days = await get(
            client,
            url,
            token,
            **{"from": lo, "to": hi},
            granularity="day",
            **{k: v for k, v in kw.items() if k != "group_by"},
            **extra,
        )
        assert figures(bucket["kpis"]) == figures(days["total"]), (bucket["label"], kw)
    days = await get(
        client,
        url,
        token,
        **{"from": start, "to": end},
        granularity="day",
        **{k: v for k, v in kw.items() if k != "group_by"},
    )
    if "group_by" not in kw:
        assert figures(months["total"]) == figures(days["total"]), kw
    return months


async def test_a_correction_across_tehran_midnight_empties_and_fills_months(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """March's only waited contact (23:59 local on 31 March, 20:29 UTC) moves to
    00:01 on 1 April: March's monthly row is left with no cells, April's gains one;
    then back again."""
    site = await make_site(client, settings, db, time_zone="Asia/Tehran")
    token = site.seed.admin_token
    url = project_url(site.project_id)
    late = TEHRAN_APRIL - timedelta(minutes=1)
    early = TEHRAN_APRIL + timedelta(minutes=1)
    await push(
        client,
        site,
        [
            contact(site, 1, "answered", 42, late),
            contact(site, 2, "in_queue", None, late - timedelta(hours=2), wait_s=None),
            contact(site, 3, "abandoned", 8, early + timedelta(days=3)),
        ],
    )
    march = await get(
        client, url, token, **{"from": "2026-03-01", "to": "2026-04-01"}, granularity="month"
    )
    assert march["total"]["longest_wait"]["value"] == 42
    for version, queued, march_offered in ((2, early, 0), (3, late, 1), (4, early, 0)):
        await correct(
            client, site, [contact(site, 1, "answered", 42, queued, source_version=version)]
        )
        march = await months_equal_days(client, url, token, "2026-03-01", "2026-04-01", "month")
        assert march["total"]["offered"]["value"] == march_offered, version
        april = await months_equal_days(client, url, token, "2026-03-01", "2026-05-01", "month")
        assert april["total"]["offered"]["value"] == 2
        for variant in VARIANTS:
            await months_equal_days(
                client, url, token, "2026-03-01", "2026-05-01", "month", **variant
            )
            await months_equal_days(
                client, url, token, "2026-01-01", "2027-01-01", "year", **variant
            )
    # The monthly rows: March's has no cells left, April's holds both contacts' waits.
    async with db.admin_transaction() as admin:
        rows = (
            await admin.execute(
                text(
                    "select local_month, n from kpi_monthly_waits where tenant_id = :t"
                    " order by local_month"
                ),
                {"t": site.seed.id},
            )
        ).all()
    assert [(str(r.local_month), sum(r.n)) for r in rows] == [("2026-03-01", 0), ("2026-04-01", 2)]


async def test_a_month_of_in_queue_contacts_only_and_an_empty_month(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db, time_zone="America/New_York")
    token = site.seed.admin_token
    url = project_url(site.project_id)
    await push(
        client,
        site,
        [
            contact(site, 1, "in_queue", None, NY_APRIL + timedelta(days=2), wait_s=None),
            contact(site, 2, "in_queue", None, NY_APRIL + timedelta(days=40), wait_s=None),
            contact(site, 3, "answered", 5, NY_APRIL + timedelta(days=70)),
            # June: chat has in-queue contacts only, voice a wait.
            contact(
                site,
                4,
                "in_queue",
                None,
                NY_APRIL + timedelta(days=71),
                wait_s=None,
                channel="chat",
            ),
        ],
    )
    report = await months_equal_days(client, url, token, "2026-03-01", "2026-07-01", "month")
    assert [b["kpis"]["offered"]["value"] for b in report["buckets"]] == [0, 0, 0, 1]
    for variant in VARIANTS:
        await months_equal_days(
            client, url, token, "2026-03-10", "2026-06-20", "quarter", **variant
        )
        for start, end, granularity in (
            ("2026-06-01", "2026-07-01", "month"),
            ("2026-03-01", "2026-07-01", "month"),
        ):
            split = await months_equal_days(
                client, url, token, start, end, granularity, group_by="channel", **variant
            )
            june = {b["group"]: b["kpis"] for b in split["buckets"] if b["label"][:7] == "2026-06"}
            assert june["chat"]["offered"]["value"] == 0
            assert june["voice"]["offered"]["value"] == 1


async def test_client_scope_mixes_the_monthly_rows_of_its_zone_with_other_zones(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """A client reporting in New York: its New York projects' months come from the
    monthly rows, its Tehran project's from raw rows; a supervisor of one project
    and a viewer of another client see none of the rest."""
    site = await make_site(client, settings, db, time_zone="America/New_York")
    token = site.seed.admin_token
    async with db.admin_transaction() as admin:
        await admin.execute(
            text("update clients set time_zone = 'America/New_York' where id = :c"),
            {"c": site.client_id},
        )
    ny2 = await make_project(db, site.seed.id, site.client_id, ["ny2-q"], "America/New_York")
    tehran = await make_project(db, site.seed.id, site.client_id, ["teh-q"], "Asia/Tehran")
    other = await make_client(db, site.seed.id, "Other")
    elsewhere = await make_project(db, site.seed.id, other.id, ["else-q"], "America/New_York")
    rows = []
    for i, (queue, hours, outcome, wait) in enumerate(
        [
            (site.queue, -0.5, "answered", 11),  # 31 March, 23:30 in New York
            (site.queue, 0.5, "abandoned", 33),
            (site.queue, 24 * 20, "answered", 700),
            ("ny2-q", -1, "answered", 3),
            ("ny2-q", 24 * 10, "timeout", 90),
            ("teh-q", -4.25, "answered", 7),  # 23:45 UTC on 31 March: 1 April in Tehran
            ("teh-q", 24 * 35, "abandoned", 50),
            ("else-q", 1, "answered", 9999),
        ]
    ):
        rows.append(
            contact(site, i, outcome, wait, NY_APRIL + timedelta(hours=hours), queue_key=queue)
        )
    rows.append(
        contact(
            site,
            90,
            "answered",
            2,
            NY_APRIL + timedelta(days=10),
            queue_key="ny2-q",
            channel="chat",
        )
    )
    await push(client, site, rows)
    client_url = f"/api/v1/clients/{site.client_id}/kpis"
    for variant in VARIANTS:
        for start, end, granularity in (
            ("2026-03-01", "2026-06-01", "month"),
            ("2026-03-20", "2026-05-10", "month"),
            ("2026-01-01", "2027-01-01", "year"),
        ):
            await months_equal_days(client, client_url, token, start, end, granularity, **variant)
    year = await get(
        client, client_url, token, **{"from": "2026-01-01", "to": "2027-01-01"}, granularity="year"
    )
    assert year["total"]["offered"]["value"] == 8
    assert year["total"]["longest_wait"]["value"] == 700
    split = await months_equal_days(
        client, client_url, token, "2026-03-01", "2026-06-01", "month", group_by="channel"
    )
    assert {b["group"] for b in split["buckets"]} == {"chat", "voice"}
    chat = await get(
        client,
        client_url,
        token,
        **{"from": "2026-01-01", "to": "2027-01-01"},
        granularity="year",
        channel="chat",
    )
    assert chat["total"]["offered"]["value"] == 1

    # A supervisor of the second New York project sees its figures only.
    supervisor, supervisor_token = await user_token(client, db, site.seed, "supervisor")
    async with db.admin_transaction() as admin:
        await admin.execute(
            text("insert into user_projects (tenant_id, user_id, project_id) values (:t, :u, :p)"),
            {"t": site.seed.id, "u": supervisor.id, "p": ny2},
        )
    seen = await get(
        client,
        client_url,
        supervisor_token,
        **{"from": "2026-01-01", "to": "2027-01-01"},
        granularity="year",
    )
    assert seen["total"]["offered"]["value"] == 3
    assert seen["total"]["longest_wait"]["value"] == 3  # timeouts are not abandons by default
    await get(
        client,
        project_url(ny2),
        supervisor_token,
        **{"from": "2026-04-01", "to": "2026-05-01"},
        granularity="month",
    )
    for hidden in (site.project_id, tehran, elsewhere):
        await get(
            client,
            project_url(hidden),
            supervisor_token,
            404,
            **{"from": "2026-04-01", "to": "2026-05-01"},
            granularity="month",
        )
    # A viewer of the other client: not this client's projects, nor the client.
    _, viewer = await user_token(client, db, site.seed, "client_viewer", client_id=other.id)
    for hidden in (site.project_id, ny2, tehran):
        await get(
            client,
            project_url(hidden),
            viewer,
            404,
            **{"from": "2026-04-01", "to": "2026-05-01"},
            granularity="month",
        )
    await get(client, client_url, viewer, 404, **{"from": "2026-04-01", "to": "2026-05-01"})
    own = await get(
        client,
        project_url(elsewhere),
        viewer,
        **{"from": "2026-04-01", "to": "2026-05-01"},
        granularity="month",
    )
    assert own["total"]["offered"]["value"] == 1
    tenant = await get(
        client,
        "/api/v1/tenant/kpis",
        viewer,
        **{"from": "2026-01-01", "to": "2027-01-01"},
        granularity="year",
    )
    assert tenant["total"]["offered"]["value"] == 1
    # Another tenant sees none of it.
    stranger = await make_site(client, settings, db, time_zone="America/New_York")
    for hidden in (site.project_id, ny2):
        await get(
            client,
            project_url(hidden),
            stranger.seed.admin_token,
            404,
            **{"from": "2026-04-01", "to": "2026-05-01"},
            granularity="month",
        )


async def test_inexact_maxima_of_months_of_several_rows_and_instant_bounds(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """April has a voice and a chat row in two projects of one zone; corrections
    leave maxima inexact in both. Read by month, quarter (one and several buckets),
    split by channel or filtered, with bounds given as instants at local midnight."""
    site = await make_site(client, settings, db, time_zone="America/New_York")
    token = site.seed.admin_token
    url = project_url(site.project_id)
    rows = [
        contact(site, 1, "answered", 600.9, NY_APRIL + timedelta(days=2)),
        contact(site, 2, "answered", 600.5, NY_APRIL + timedelta(days=3)),
        contact(site, 3, "answered", 30.7, NY_APRIL + timedelta(days=4), channel="chat"),
        contact(site, 4, "answered", 30.2, NY_APRIL + timedelta(days=5), channel="chat"),
        contact(site, 5, "abandoned", 90, NY_APRIL - timedelta(days=5)),
        contact(site, 6, "abandoned", 95, NY_APRIL + timedelta(days=50)),
    ]
    await push(client, site, rows)
    await correct(
        client,
        site,
        [
            contact(site, 1, "answered", 4, NY_APRIL + timedelta(days=2), source_version=2),
            contact(
                site,
                3,
                "answered",
                5,
                NY_APRIL + timedelta(days=4),
                channel="chat",
                source_version=2,
            ),
        ],
    )
    async with db.admin_transaction() as admin:
        exact = (
            await admin.execute(
                text(
                    "select channel, max_exact from kpi_monthly_waits where tenant_id = :t"
                    " and local_month = '2026-04-01' order by channel"
                ),
                {"t": site.seed.id},
            )
        ).all()
    assert [(r.channel, all(r.max_exact)) for r in exact] == [("chat", False), ("voice", False)]
    for variant in VARIANTS:
        for start, end, granularity in (
            ("2026-04-01", "2026-05-01", "month"),
            ("2026-03-01", "2026-06-01", "month"),
            ("2026-04-01", "2026-07-01", "quarter"),
            ("2026-03-15", "2026-07-01", "quarter"),
        ):
            await months_equal_days(client, url, token, start, end, granularity, **variant)
            await months_equal_days(
                client, url, token, start, end, granularity, group_by="channel", **variant
            )
    april = await get(
        client, url, token, **{"from": "2026-04-01", "to": "2026-05-01"}, granularity="month"
    )
    assert april["total"]["longest_wait"]["value"] == 600.5
    assert april["total"]["longest_wait"]["upper_bound"] is False
    chat = await get(
        client,
        url,
        token,
        **{"from": "2026-04-01", "to": "2026-05-01"},
        granularity="month",
        channel="chat",
        group_by="channel",
    )
    assert [b["group"] for b in chat["buckets"]] == ["chat"]
    assert chat["total"]["longest_wait"]["value"] == 30.2
    # The same months given as instants (local midnights, EST then EDT) read the same.
    as_instants = await get(
        client,
        url,
        token,
        **{"from": "2026-03-01T05:00:00+00:00", "to": "2026-06-01T00:00:00-04:00"},
        granularity="month",
    )
    as_dates = await get(
        client, url, token, **{"from": "2026-03-01", "to": "2026-06-01"}, granularity="month"
    )
    assert as_instants["buckets"] == as_dates["buckets"]
    assert as_instants["total"] == as_dates["total"]


async def test_bounds_inside_a_local_day_count_that_part_of_the_day_only(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """`from` or `to` given as instants that are not local midnights: the part of
    the day inside the range counts, the rest does not (the daily rows hold whole
    days only). Found dropping all of the first day and adding all of the last."""
    site = await make_site(client, settings, db, time_zone="America/New_York")
    token = site.seed.admin_token
    url = project_url(site.project_id)
    await push(
        client,
        site,
        [
            contact(site, 1, "answered", 10, NY_APRIL + timedelta(hours=6)),  # 1 April, 06:00
            contact(site, 2, "answered", 20, NY_APRIL + timedelta(hours=14)),  # 1 April, 14:00
            contact(site, 3, "abandoned", 30, NY_APRIL + timedelta(days=40)),  # 11 May
            contact(site, 4, "answered", 40, NY_APRIL + timedelta(days=60, hours=8)),  # 31 May
            contact(site, 5, "answered", 50, NY_APRIL + timedelta(days=60, hours=20)),
            contact(site, 6, "answered", 60, NY_APRIL + timedelta(days=61, hours=1)),  # 1 June
        ],
    )
    for start, end, expected in (
        ("2026-04-01T12:00:00-04:00", "2026-06-01", {20, 30, 40, 50}),
        ("2026-04-01", "2026-05-31T12:00:00-04:00", {10, 20, 30, 40}),
        ("2026-04-01T12:00:00-04:00", "2026-05-31T12:00:00-04:00", {20, 30, 40}),
        ("2026-04-01T05:00:00-04:00", "2026-04-01T13:00:00-04:00", {10}),
        ("2026-05-31T07:59:00-04:00", "2026-06-02T00:00:00+03:30", {40, 50, 60}),
    ):
        for granularity in ("day", "week", "month", "quarter", "year", "60min"):
            body = await get(
                client, url, token, **{"from": start, "to": end}, granularity=granularity
            )
            assert body["total"]["offered"]["value"] == len(expected), (start, end, granularity)
            assert body["total"]["longest_wait"]["value"] == max(expected), (start, granularity)
            assert sum(b["kpis"]["offered"]["value"] for b in body["buckets"]) == len(expected)


async def test_a_correction_across_new_yorks_october_end_that_changes_channel(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """23:59 EDT on 31 October (03:59 UTC) becomes 00:01 on 1 November, the day
    DST ends, and voice becomes chat: October's voice row and November's chat row
    move, each read as the only row of its bucket or merged with others."""
    site = await make_site(client, settings, db, time_zone="America/New_York")
    token = site.seed.admin_token
    url = project_url(site.project_id)
    october_end = datetime(2026, 11, 1, 3, 59, tzinfo=UTC)
    await push(
        client,
        site,
        [
            contact(site, 1, "answered", 77, october_end),
            contact(site, 2, "abandoned", 12, october_end - timedelta(days=3)),
            contact(site, 3, "answered", 6, october_end + timedelta(days=5), channel="chat"),
        ],
    )
    await correct(
        client,
        site,
        [
            contact(
                site,
                1,
                "answered",
                77,
                october_end + timedelta(minutes=2),
                channel="chat",
                source_version=2,
            )
        ],
    )
    for variant in VARIANTS:
        for kw in ({}, {"group_by": "channel"}, {"channel": "chat"}, {"channel": "voice"}):
            await months_equal_days(
                client, url, token, "2026-10-01", "2026-12-01", "month", **kw, **variant
            )
            await months_equal_days(
                client, url, token, "2026-10-15", "2027-01-01", "quarter", **kw, **variant
            )
    by_month = await get(
        client, url, token, **{"from": "2026-10-01", "to": "2026-12-01"}, granularity="month"
    )
    assert [b["kpis"]["longest_wait"]["value"] for b in by_month["buckets"]] == [12, 77]
    assert [b["label"] for b in by_month["buckets"]] == [
        "2026-10-01T00:00:00-04:00",
        "2026-11-01T00:00:00-04:00",
    ]
