"""GET …/kpis: figures from rollups equal hand-computed ones; variants, zones, walls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient

from service.core.config import Settings
from service.core.db import Database
from tests.factories import bearer, make_client, user_token
from tests.service.ingest.conftest import Site, add_contract, make_project, make_site

# 2026-03-02 09:00 in New York is 14:00 UTC.
NY_MORNING = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def contact(
    site: Site, n: int, outcome: str, wait: float, queued: datetime, **kw: Any
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "external_id": f"k-{n}",
        "queue_key": site.queue,
        "queued_at": queued.isoformat(),
        "outcome": outcome,
        "wait_s": wait,
    }
    if outcome == "answered":
        row |= {
            "answered_at": (queued + timedelta(seconds=wait)).isoformat(),
            "talk_s": 100,
            "acw_s": 20,
            "agent_key": site.agent_key,
        }
    return row | kw


async def push(client: AsyncClient, site: Site, rows: list[dict[str, Any]]) -> None:
    response = await client.post(
        "/api/v1/contacts:batch", json={"records": rows}, headers=bearer(site.seed.admin_token)
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == len(rows), response.text


@pytest.fixture
async def site(client: AsyncClient, settings: Settings, db: Database) -> Site:
    site = await make_site(client, settings, db, time_zone="America/New_York")
    await push(
        client,
        site,
        [
            contact(site, 1, "answered", 10, NY_MORNING),
            contact(site, 2, "answered", 25, NY_MORNING + timedelta(minutes=3)),
            contact(site, 3, "abandoned", 3, NY_MORNING + timedelta(minutes=20)),  # a short abandon
            contact(site, 4, "abandoned", 40, NY_MORNING + timedelta(minutes=50)),
            contact(site, 5, "in_queue", None, NY_MORNING + timedelta(hours=1), wait_s=None),
        ],
    )
    return site


async def kpis(client: AsyncClient, site: Site, **params: Any) -> dict[str, Any]:
    query = {"from": "2026-03-02", "to": "2026-03-03", **params}
    response = await client.get(
        f"/api/v1/projects/{site.project_id}/kpis",
        params=query,
        headers=bearer(site.seed.admin_token),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_default_formula_is_sl1_and_figures_are_exact(
    client: AsyncClient, site: Site
) -> None:
    body = await kpis(client, site)
    assert body["time_zone"] == "America/New_York"
    assert body["terms"]["expression"] == "A_T / (A + Ab)"
    assert body["terms"]["source"] == "default"
    total = body["total"]
    # O = 2 answered + 1 abandoned (the 3 s abandon is short and leaves O and Ab); in_queue enters nothing.
    assert total["offered"]["value"] == 3
    assert total["short_abandons"]["value"] == 1
    assert total["service_level"]["value"] == pytest.approx(1 / 3)  # A_T = 1 (10 s), A + Ab = 3
    assert total["answer_rate"]["value"] == pytest.approx(2 / 3)
    assert total["abandonment_rate"]["value"] == pytest.approx(1 / 3)
    assert total["asa"]["value"] == pytest.approx(17.5)  # (10 + 25) / 2
    assert total["aht"]["value"] == pytest.approx(120)  # talk 100 + acw 20
    assert total["longest_wait"]["value"] == pytest.approx(40)
    assert total["csat"]["value"] is None  # no responses: no data, never 0 %
    assert "T = 20 s" in total["service_level"]["formula"]
    assert [b["label"][:10] for b in body["buckets"]] == ["2026-03-02"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"sl": "SL1"}, 1 / 3),
        ({"sl": "SL2"}, 1 / 3),  # A_T / (A + Ab - Ab_T): Ab_T = 0 (the 40 s abandon is after T)
        ({"sl": "SL3"}, 1 / 2),  # A_T / A
        ({"sl": "SL4"}, 1 / 3),  # (A_T + Ab_T) / (A + Ab)
        ({"sl": "SL1", "short_abandon_s": 0}, 1 / 4),  # the 3 s abandon counts: A + Ab = 4
        ({"sl": "SL4", "short_abandon_s": 0}, 2 / 4),  # Ab_T = 1 now
        ({"sl": "SL1", "t": 25}, 2 / 3),  # exactly T is within T
        ({"sl": "SL1", "t": 24}, 1 / 3),
    ],
)
async def test_every_variant_from_the_same_rollups(
    client: AsyncClient, site: Site, params: dict[str, Any], expected: float
) -> None:
    body = await kpis(client, site, **params)
    assert body["total"]["service_level"]["value"] == pytest.approx(expected)
    assert body["terms"]["source"] == "query"


async def test_interval_granularity_on_a_dst_day_has_92_quarter_hours(
    client: AsyncClient, site: Site
) -> None:
    body = await kpis(
        client,
        site,
        **{"from": "2026-03-08", "to": "2026-03-09", "granularity": "interval", "kpis": "offered"},
    )
    assert len(body["buckets"]) == 92
    assert all(
        b["kpis"]["offered"]["value"] is None or b["kpis"]["offered"]["value"] == 0
        for b in body["buckets"]
    )
    quarter = await kpis(client, site, granularity="interval", kpis="offered,service_level")
    busy = [b for b in quarter["buckets"] if b["kpis"]["offered"]["value"]]
    assert [b["label"] for b in busy] == ["2026-03-02T09:00:00-05:00", "2026-03-02T09:45:00-05:00"]


async def test_client_and_tenant_scopes_add_projects_up(
    client: AsyncClient, settings: Settings, db: Database, site: Site
) -> None:
    second_queue = "second-q"
    other_project = await make_project(
        db, site.seed.id, site.client_id, [second_queue], "America/New_York"
    )
    await push(client, site, [contact(site, 9, "answered", 5, NY_MORNING, queue_key=second_queue)])
    params = {
        "from": "2026-03-02T00:00:00-05:00",
        "to": "2026-03-03T00:00:00-05:00",
        "kpis": "offered,service_level",
    }
    per_client = await client.get(
        f"/api/v1/clients/{site.client_id}/kpis",
        params=params,
        headers=bearer(site.seed.admin_token),
    )
    assert per_client.status_code == 200, per_client.text
    assert per_client.json()["total"]["offered"]["value"] == 4
    assert per_client.json()["total"]["service_level"]["value"] == pytest.approx(2 / 4)
    tenant = await client.get(
        "/api/v1/tenant/kpis", params=params, headers=bearer(site.seed.admin_token)
    )
    assert tenant.json()["total"]["offered"]["value"] == 4
    alone = await client.get(
        f"/api/v1/projects/{other_project}/kpis",
        params=params,
        headers=bearer(site.seed.admin_token),
    )
    assert alone.json()["total"]["offered"]["value"] == 1


async def test_group_by_agent_and_channel(client: AsyncClient, site: Site) -> None:
    by_agent = await kpis(client, site, group_by="agent", kpis="offered,asa")
    groups = {b["group"]: b["kpis"] for b in by_agent["buckets"]}
    assert groups[str(site.agent_id)]["asa"]["value"] == pytest.approx(17.5)
    by_channel = await kpis(client, site, group_by="channel", kpis="offered")
    assert {b["group"] for b in by_channel["buckets"]} == {"voice"}


async def test_walls_and_bad_queries(
    client: AsyncClient, settings: Settings, db: Database, site: Site
) -> None:
    stranger = await make_site(client, settings, db)
    url = f"/api/v1/projects/{site.project_id}/kpis"
    params = {"from": "2026-03-02", "to": "2026-03-03"}
    assert (
        await client.get(url, params=params, headers=bearer(stranger.seed.admin_token))
    ).status_code == 404
    other_client = await make_client(db, site.seed.id, "Other")
    _, viewer = await user_token(client, db, site.seed, "client_viewer", client_id=other_client.id)
    assert (await client.get(url, params=params, headers=bearer(viewer))).status_code == 404
    _, own_viewer = await user_token(
        client, db, site.seed, "client_viewer", client_id=site.client_id
    )
    assert (await client.get(url, params=params, headers=bearer(own_viewer))).status_code == 200
    for bad, field in (
        ({"t": 3601}, "t"),
        # With a preset too, the 422 still names T, the field that is off the grid.
        ({"sl": "SL2", "t": 3601}, "t"),
        ({"sl": "SL1", "t": 86_430}, "t"),
        ({"from": "2026-03-02T00:00:00"}, "from"),
        ({"to": "2026-03-01"}, "to"),
        ({"sl": "SL9"}, "sl"),
        ({"kpis": "happiness"}, "kpis"),
        ({"shortabandon_s": "5"}, "shortabandon_s"),  # misspelt: not silently ignored
    ):
        response = await client.get(
            url, params={**params, **bad}, headers=bearer(site.seed.admin_token)
        )
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["field"] == field


async def test_projects_in_other_zones_add_up_in_one_bucket_and_in_many(
    client: AsyncClient, settings: Settings, db: Database, site: Site
) -> None:
    # The tenant reports in UTC; the site's project is in New York, this one in Tehran.
    tehran_queue = "tehran-q"
    await make_project(db, site.seed.id, site.client_id, [tehran_queue], "Asia/Tehran")
    await push(
        client, site, [contact(site, 20, "answered", 12, NY_MORNING, queue_key=tehran_queue)]
    )
    headers = bearer(site.seed.admin_token)
    year = await client.get(
        "/api/v1/tenant/kpis",
        params={
            "from": "2026-01-01",
            "to": "2027-01-01",
            "granularity": "year",
            "kpis": "offered,asa",
        },
        headers=headers,
    )
    assert year.status_code == 200, year.text
    assert len(year.json()["buckets"]) == 1
    assert (
        year.json()["total"]["offered"]["value"] == 4
    )  # 3 in New York (one short abandon out) + 1
    assert year.json()["total"]["asa"]["value"] == pytest.approx((10 + 25 + 12) / 3)
    by_day = await client.get(
        "/api/v1/tenant/kpis",
        params={"from": "2026-03-01", "to": "2026-03-05", "granularity": "day", "kpis": "offered"},
        headers=headers,
    )
    assert by_day.json()["total"]["offered"]["value"] == 4
    assert [b["kpis"]["offered"]["value"] for b in by_day.json()["buckets"]] == [0, 4, 0, 0]


async def test_a_query_variant_replaces_only_what_it_names(client: AsyncClient, site: Site) -> None:
    """The contract says SL3, T = 20 s, short abandons kept (0 s); a query naming only
    `t` or only `sl` keeps the rest of the contract's terms."""
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
    body = await kpis(client, site, t=30)
    assert body["terms"]["source"] == "query"
    assert body["terms"]["expression"] == "A_T / A"
    assert body["terms"]["service_level"]["threshold_s"] == 30
    assert body["terms"]["service_level"]["short_abandon_s"] == 0
    # SL3, T = 30: both answers (10 s, 25 s) within T of A = 2; O keeps the 3 s abandon.
    assert body["total"]["service_level"]["value"] == pytest.approx(1.0)
    assert body["total"]["offered"]["value"] == 4
    body = await kpis(client, site, sl="SL1")
    assert body["terms"]["service_level"]["threshold_s"] == 20
    # SL1, T = 20, short abandons kept: A_T = 1 (10 s) of A + Ab = 2 + 2.
    assert body["total"]["service_level"]["value"] == pytest.approx(1 / 4)


async def test_a_mean_of_interval_ratios_by_channel_totals_one_ratio_per_interval(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    site = await make_site(client, settings, db)
    await add_contract(
        client,
        site,
        {
            "effective_from": "2026-05-01",
            "targets": [
                {
                    "kpi": "service_level",
                    "formula": {"aggregation": "mean_of_intervals"},
                    "threshold_s": 20,
                    "target": 0.8,
                }
            ],
        },
    )
    nine = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
    await push(
        client,
        site,
        [
            # 09:00-09:15: one voice call within T, three chats after it: 1/4.
            contact(site, 1, "answered", 10, nine, channel="voice"),
            *(contact(site, n, "answered", 30, nine, channel="chat") for n in (2, 3, 4)),
            # 09:15-09:30: one voice abandon after T: 0/1.
            contact(site, 5, "abandoned", 40, nine + timedelta(minutes=15), channel="voice"),
        ],
    )
    for group_by in (None, "channel", "agent"):
        params = {"from": "2026-05-04", "to": "2026-05-05"}
        if group_by:
            params["group_by"] = group_by
        response = await client.get(
            f"/api/v1/projects/{site.project_id}/kpis",
            params=params,
            headers=bearer(site.seed.admin_token),
        )
        assert response.status_code == 200, response.text
        total = response.json()["total"]["service_level"]["value"]
        assert total == pytest.approx((1 / 4 + 0) / 2), group_by


async def test_a_mean_of_interval_ratios_averages_the_contracts_intervals(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    """The contract's intervals are 30 minutes: 09:00-09:30 holds one call within T and
    one after it (1/2), 09:30-10:00 one within T (1/1): the mean is 3/4, where a mean of
    quarter hours would be (1 + 0 + 1) / 3."""
    site = await make_site(client, settings, db)
    await add_contract(
        client,
        site,
        {
            "effective_from": "2026-05-01",
            "interval_minutes": 30,
            "targets": [
                {
                    "kpi": "service_level",
                    "formula": {"aggregation": "mean_of_intervals"},
                    "threshold_s": 20,
                    "target": 0.8,
                }
            ],
        },
    )
    nine = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
    await push(
        client,
        site,
        [
            contact(site, 1, "answered", 10, nine),
            contact(site, 2, "answered", 30, nine + timedelta(minutes=20)),
            contact(site, 3, "answered", 5, nine + timedelta(minutes=40)),
        ],
    )
    for params in ({}, {"group_by": "agent"}, {"granularity": "interval"}):
        response = await client.get(
            f"/api/v1/projects/{site.project_id}/kpis",
            params={"from": "2026-05-04", "to": "2026-05-05", **params},
            headers=bearer(site.seed.admin_token),
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["terms"]["interval_minutes"] == 30
        assert body["total"]["service_level"]["value"] == pytest.approx(3 / 4), params
    # By quarter hour, each bucket is the part of its interval inside it.
    quarters = [
        b["kpis"]["service_level"]["value"]
        for b in body["buckets"]
        if b["kpis"]["service_level"]["value"] is not None
    ]
    assert quarters == [1.0, 0.0, 1.0]


async def test_sl_may_be_a_formula_object(client: AsyncClient, site: Site) -> None:
    """KPIS.md: the API accepts a preset's name or the full object. Here handled within
    T over A + Ab with short abandons kept: (1 answer within 20 s + 1 abandon within 20 s)
    of 2 answers + 2 abandons."""
    formula = '{"numerator": "handled_within", "short_abandon_s": 0}'
    body = await kpis(client, site, sl=formula)
    assert body["terms"]["source"] == "query"
    assert body["terms"]["expression"] == "(A_T + Ab_T) / (A + Ab)"
    assert body["total"]["service_level"]["value"] == pytest.approx(2 / 4)
    for bad in ('{"numerator": "nonsense"}', "[1, 2]", "{not json"):
        response = await client.get(
            f"/api/v1/projects/{site.project_id}/kpis",
            params={"from": "2026-03-02", "to": "2026-03-03", "sl": bad},
            headers=bearer(site.seed.admin_token),
        )
        assert response.status_code == 422, bad
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["field"] == "sl", response.text
