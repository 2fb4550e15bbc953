"""Contracts: versioned terms per project, no overlapping versions (409 naming
the clash, also under concurrency), versions from a date, ETag/If-Match,
validation naming fields, visibility and permissions."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from service.core.config import Settings
from service.core.db import Database, DbScope
from tenants.models import AuditEntry
from tests.factories import bearer, user_token
from tests.service.projects.factories import API, World, create_project, make_world

SL = {"kpi": "service_level", "formula": "SL1", "threshold_s": 20, "target": 0.8}
TERMS: dict[str, Any] = {
    "reference": "MSA-2020-7",
    "targets": [
        SL,
        {"kpi": "answer_rate", "target": 0.9, "granularity": "month"},
        {"kpi": "abandonment_rate", "target": 0.05},
        {"kpi": "asa", "target": 30, "granularity": "day"},
    ],
    "monthly_fee": "12000.00",
    "currency": "eur",
    "volume_variance_margin": 0.15,
    "service_credits": {"percent_of_fee_per_point": 2, "cap_percent": 10, "earn_back_periods": 3},
}


async def create_contract(
    client: AsyncClient, token: str, project_id: str, **fields: Any
) -> dict[str, Any]:
    body = {**TERMS, "project_id": project_id, "effective_from": "2020-01-01", **fields}
    response = await client.post(f"{API}/contracts", json=body, headers=bearer(token))
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def test_create_expands_presets_and_names_them(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    world = await make_world(client, settings)
    response = await client.post(
        f"{API}/contracts",
        json={**TERMS, "project_id": world.project_a["id"], "effective_from": "2020-01-01"},
        headers=bearer(world.token),
    )
    assert response.status_code == 201, response.text
    assert response.headers["etag"] == 'W/"1"'
    body = response.json()
    assert body["client_id"] == world.client_a["id"]
    assert body["version_number"] == 1
    assert (body["effective_from"], body["effective_to"]) == ("2020-01-01", None)
    sl, answer, abandon, asa = body["targets"]
    assert sl["formula"] == {
        "threshold_s": 20,
        "numerator": "answered_within",
        "denominator": {
            "answered": True,
            "abandoned_after_t": True,
            "abandoned_within_t": True,
            "other_exits": False,
        },
        "short_abandon_s": 5,
        "aggregation": "ratio_of_sums",
        "preset": "SL1",
        "expression": "A_T / (A + Ab)",
    }
    assert (sl["comparator"], sl["target"], sl["granularity"]) == (">=", 0.8, "month")
    assert (answer["comparator"], answer["formula"], answer["threshold_s"]) == (">=", None, None)
    assert abandon["comparator"] == "<="
    assert (asa["comparator"], asa["target"], asa["granularity"]) == ("<=", 30, "day")
    assert body["short_abandon_s"] == 5
    assert body["timeouts_count_as_abandons"] is False
    assert body["fcr_window_days"] == 7
    assert body["measurement_period"] == "month"
    assert body["monthly_fee"] == "12000.00"
    assert body["currency"] == "EUR"
    assert body["volume_variance_margin"] == 0.15
    assert body["service_credits"] == {
        "percent_of_fee_per_point": 2.0,
        "cap_percent": 10.0,
        "earn_back_periods": 3,
    }

    got = await client.get(f"{API}/contracts/{body['id']}", headers=bearer(world.token))
    assert got.status_code == 200
    assert got.json() == body

    async with db.admin_transaction() as admin:
        actions = (
            await admin.execute(
                select(col(AuditEntry.action)).where(
                    col(AuditEntry.tenant_id) == world.seed.id,
                    col(AuditEntry.object_id) == body["id"],
                )
            )
        ).scalars()
        assert list(actions) == ["contracts.create"]


async def test_minimal_contract_takes_the_defaults(client: AsyncClient, settings: Settings) -> None:
    world = await make_world(client, settings)
    response = await client.post(
        f"{API}/contracts",
        json={
            "project_id": world.project_b["id"],
            "effective_from": "2099-01-01",
            "targets": [{"kpi": "answer_rate", "target": 0.9}],
        },
        headers=bearer(world.token),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["monthly_fee"], body["currency"], body["service_credits"]) == (None, None, None)
    assert (body["volume_variance_margin"], body["reference"]) == (None, None)
    assert (body["short_abandon_s"], body["fcr_window_days"], body["interval_minutes"]) == (
        5,
        7,
        15,
    )
    assert body["targets"] == [
        {
            "kpi": "answer_rate",
            "formula": None,
            "threshold_s": None,
            "comparator": ">=",
            "target": 0.9,
            "granularity": "month",
            "channel": None,
            "business_hours_only": False,
        }
    ]
    # Terms of a version not yet in force may be added and removed again.
    headers = {**bearer(world.token), "If-Match": 'W/"1"'}
    url = f"{API}/contracts/{body['id']}"
    priced = await client.patch(
        url,
        json={
            "monthly_fee": "900.5",
            "currency": "try",
            "service_credits": {"percent_of_fee_per_point": 1.5, "cap_percent": 12},
        },
        headers=headers,
    )
    assert priced.status_code == 200, priced.text
    assert (priced.json()["monthly_fee"], priced.json()["currency"]) == ("900.50", "TRY")
    assert priced.json()["service_credits"]["earn_back_periods"] is None
    cleared = await client.patch(
        url,
        json={"monthly_fee": None, "currency": None, "service_credits": None},
        headers={**headers, "If-Match": priced.headers["etag"]},
    )
    assert cleared.status_code == 200, cleared.text
    reread = await client.get(url, headers=bearer(world.token))
    assert (reread.json()["monthly_fee"], reread.json()["service_credits"]) == (None, None)


async def test_full_formula_objects_are_named_when_they_match(
    client: AsyncClient, settings: Settings
) -> None:
    world = await make_world(client, settings)
    body = await create_contract(
        client,
        world.token,
        world.project_a["id"],
        short_abandon_s=0,
        targets=[
            {
                "kpi": "service_level",
                "formula": {"threshold_s": 30, "denominator": {"abandoned_within_t": False}},
                "target": 0.85,
                "granularity": "interval",
            },
            {
                "kpi": "service_level",
                "formula": {"threshold_s": 60, "denominator": {"other_exits": True}},
                "target": 0.9,
                "channel": "chat",
            },
        ],
    )
    first, second = body["targets"]
    assert (first["formula"]["preset"], first["threshold_s"]) == ("SL2", 30)
    assert first["formula"]["short_abandon_s"] == 0
    assert second["formula"]["preset"] is None
    assert second["formula"]["expression"] == "A_T / (A + Ab + X)"


async def _problem(response: Any, status: int = 422) -> tuple[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    return body["code"], str(body.get("field") or body["errors"][0]["field"])


async def test_validation_names_the_field(client: AsyncClient, settings: Settings) -> None:
    world = await make_world(client, settings)  # project_a: voice + chat, no business hours
    base = {"project_id": world.project_a["id"], "effective_from": "2020-01-01"}
    cases: list[tuple[dict[str, Any], str, str]] = [
        (
            {"targets": [{"kpi": "answer_rate", "comparator": "<=", "target": 0.9}]},
            "validation_failed",
            "targets.0.comparator",
        ),
        (
            {"targets": [SL, {"kpi": "abandonment_rate", "comparator": ">=", "target": 0.05}]},
            "validation_failed",
            "targets.1.comparator",
        ),
        ({"targets": [{**SL, "target": 80}]}, "validation_failed", "targets.0.target"),
        ({"targets": [{**SL, "target": 1.01}]}, "validation_failed", "targets.0.target"),
        # NaN compares false with both bounds: it must not slip past the range check.
        ({"targets": [{**SL, "target": "NaN"}]}, "validation_failed", "targets.0.target"),
        (
            {"targets": [{"kpi": "asa", "target": "nan"}]},
            "validation_failed",
            "targets.0.target",
        ),
        ({"targets": [{**SL, "threshold_s": 0}]}, "validation_failed", "targets.0.threshold_s"),
        # Off the wait histograms' grid (whole minutes past an hour): never reportable.
        ({"targets": [{**SL, "threshold_s": 3601}]}, "validation_failed", "targets.0.threshold_s"),
        (
            {"targets": [{**SL, "threshold_s": None, "formula": {"threshold_s": 86_430}}]},
            "validation_failed",
            "targets.0.threshold_s",
        ),
        ({"targets": [{**SL, "formula": "SL7"}]}, "validation_failed", "targets.0.formula"),
        ({"targets": [{"kpi": "speed", "target": 1}]}, "validation_failed", "targets.0.kpi"),
        ({"targets": []}, "validation_failed", "targets"),
        ({"targets": [SL], "effective_to": "2019-12-31"}, "validation_failed", "effective_to"),
        ({"targets": [SL], "short_abandon_s": -1}, "validation_failed", "short_abandon_s"),
        (
            {"targets": [SL], "currency": "EURO", "monthly_fee": "1"},
            "validation_failed",
            "currency",
        ),
        (
            {"targets": [SL], "monthly_fee": "1.001", "currency": "EUR"},
            "validation_failed",
            "monthly_fee",
        ),
        (
            {
                "targets": [SL],
                "service_credits": {"percent_of_fee_per_point": 0, "cap_percent": 10},
            },
            "validation_failed",
            "service_credits.percent_of_fee_per_point",
        ),
        (
            {"targets": [SL], "measurement_period": "fortnight"},
            "validation_failed",
            "measurement_period",
        ),
        ({"targets": [SL], "monthly_fee": "100.00"}, "invalid_terms", "currency"),
        (
            {
                "targets": [SL],
                "service_credits": {"percent_of_fee_per_point": 2, "cap_percent": 10},
            },
            "invalid_terms",
            "monthly_fee",
        ),
        ({"targets": [SL, {**SL, "channel": "email"}]}, "invalid_terms", "targets.1.channel"),
        (
            {"targets": [{**SL, "business_hours_only": True}]},
            "invalid_terms",
            "targets.0.business_hours_only",
        ),
        (
            {"targets": [{**SL, "granularity": "month"}], "measurement_period": "week"},
            "invalid_terms",
            "targets.0.granularity",
        ),
        ({"targets": [SL, SL]}, "invalid_terms", "targets.1"),
    ]
    for extra, code, field in cases:
        response = await client.post(
            f"{API}/contracts", json={**base, **extra}, headers=bearer(world.token)
        )
        assert await _problem(response) == (code, field), (extra, response.json())

    unknown = await client.post(
        f"{API}/contracts",
        json={**base, "project_id": str(uuid.uuid4()), "targets": [SL]},
        headers=bearer(world.token),
    )
    assert await _problem(unknown) == ("unknown_project", "project_id")
    listed = await client.get(f"{API}/contracts", headers=bearer(world.token))
    assert listed.json()["items"] == []  # nothing half-written


async def test_overlapping_versions_are_409_naming_the_clash(
    client: AsyncClient, settings: Settings
) -> None:
    world = await make_world(client, settings)
    first = await create_contract(
        client, world.token, world.project_a["id"], effective_to="2020-12-31"
    )
    # The day after ends is free (inclusive dates).
    second = await create_contract(
        client, world.token, world.project_a["id"], effective_from="2021-01-01"
    )
    assert second["version_number"] == 2

    for dates, clash in (
        ({"effective_from": "2020-06-01", "effective_to": "2020-06-30"}, first),
        ({"effective_from": "2019-01-01", "effective_to": "2020-01-01"}, first),
        ({"effective_from": "2030-01-01"}, second),  # second is open-ended
    ):
        response = await client.post(
            f"{API}/contracts",
            json={**TERMS, "project_id": world.project_a["id"], **dates},
            headers=bearer(world.token),
        )
        assert response.status_code == 409, response.text
        problem = response.json()
        assert problem["code"] == "contract_overlaps"
        assert problem["clashing_contract_id"] == clash["id"]
        assert problem["clashing_version_number"] == clash["version_number"]
        assert problem["clashing_effective_from"] == clash["effective_from"]

    # Other projects are independent.
    await create_contract(client, world.token, world.project_b["id"])


async def test_database_refuses_overlaps_whatever_the_writer(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    world = await make_world(client, settings)
    contract = await create_contract(client, world.token, world.project_a["id"])
    insert = text(
        "insert into contracts (tenant_id, id, client_id, project_id, version_number, "
        "effective_from, effective_to) values (:t, :id, :c, :p, :n, :f, :to)"
    )
    row = {
        "t": world.seed.id,
        "c": uuid.UUID(world.client_a["id"]),
        "p": uuid.UUID(world.project_a["id"]),
        "f": date(2024, 1, 1),
        "to": date(2024, 2, 1),
    }
    with pytest.raises(IntegrityError) as info:
        async with db.transaction(DbScope(tenant_id=world.seed.id)) as session:
            await session.execute(insert, {**row, "id": uuid.uuid4(), "n": 99})
    assert "contracts_no_overlap" in str(info.value)

    # Two raw writers racing for overlapping ranges after closing the first version:
    # the exclusion constraint lets exactly one commit.
    async with db.transaction(DbScope(tenant_id=world.seed.id)) as session:
        await session.execute(
            text("update contracts set effective_to = '2023-12-31' where id = :id"),
            {"id": uuid.UUID(contract["id"])},
        )

    async def race(n: int) -> bool:
        try:
            async with db.transaction(DbScope(tenant_id=world.seed.id)) as session:
                await session.execute(insert, {**row, "id": uuid.uuid4(), "n": 100 + n})
                await asyncio.sleep(0.05)
        except IntegrityError:
            return False
        return True

    results = await asyncio.gather(race(1), race(2), race(3))
    assert sorted(results) == [False, False, True]


async def _etag(client: AsyncClient, token: str, contract_id: str) -> str:
    response = await client.get(f"{API}/contracts/{contract_id}", headers=bearer(token))
    return response.headers["etag"]


async def test_new_version_from_a_date_closes_the_current_one(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    world = await make_world(client, settings)
    base = await create_contract(client, world.token, world.project_a["id"])
    url = f"{API}/contracts/{base['id']}/versions"
    change = {
        "effective_from": "2024-07-01",
        "targets": [{**SL, "formula": "SL3", "target": 0.85}],
        "short_abandon_s": 3,
    }

    missing = await client.post(url, json=change, headers=bearer(world.token))
    assert missing.status_code == 428
    stale = await client.post(
        url, json=change, headers={**bearer(world.token), "If-Match": 'W/"9"'}
    )
    assert stale.status_code == 412

    response = await client.post(
        url, json=change, headers={**bearer(world.token), "If-Match": base_etag(base)}
    )
    assert response.status_code == 201, response.text
    new = response.json()
    assert response.headers["etag"] == 'W/"1"'
    assert (new["version_number"], new["effective_from"], new["effective_to"]) == (
        2,
        "2024-07-01",
        None,
    )
    assert new["targets"][0]["formula"]["preset"] == "SL3"
    assert new["targets"][0]["formula"]["short_abandon_s"] == 3
    assert new["short_abandon_s"] == 3
    # Carried over: everything not in the change.
    assert (new["monthly_fee"], new["currency"], new["reference"]) == (
        "12000.00",
        "EUR",
        "MSA-2020-7",
    )
    assert new["service_credits"] == base["service_credits"]

    closed = await client.get(f"{API}/contracts/{base['id']}", headers=bearer(world.token))
    assert closed.json()["effective_to"] == "2024-06-30"
    assert closed.json()["targets"] == base["targets"]  # history unchanged
    assert closed.headers["etag"] == 'W/"2"'

    history = await client.get(
        f"{API}/projects/{world.project_a['id']}/contracts", headers=bearer(world.token)
    )
    assert [(c["version_number"], c["effective_to"]) for c in history.json()["items"]] == [
        (1, "2024-06-30"),
        (2, None),
    ]
    for day, expected in (
        ("2024-06-30", base["id"]),
        ("2024-07-01", new["id"]),
        ("2020-01-01", base["id"]),
    ):
        current = await client.get(
            f"{API}/projects/{world.project_a['id']}/contracts/current?at={day}",
            headers=bearer(world.token),
        )
        assert current.status_code == 200
        assert current.json()["id"] == expected, day
    today = await client.get(
        f"{API}/projects/{world.project_a['id']}/contracts/current", headers=bearer(world.token)
    )
    assert today.json()["id"] == new["id"]
    before = await client.get(
        f"{API}/projects/{world.project_a['id']}/contracts/current?at=2019-12-31",
        headers=bearer(world.token),
    )
    assert before.status_code == 404
    assert before.json()["code"] == "no_contract_in_force"

    async with db.admin_transaction() as admin:
        actions = (
            await admin.execute(
                select(col(AuditEntry.action), col(AuditEntry.object_id)).where(
                    col(AuditEntry.tenant_id) == world.seed.id,
                    col(AuditEntry.object_type) == "contracts",
                )
            )
        ).all()
        assert sorted(actions) == sorted(
            [
                ("contracts.create", base["id"]),
                ("contracts.update", base["id"]),
                ("contracts.create", new["id"]),
            ]
        )


def base_etag(contract: dict[str, Any]) -> str:
    return f'W/"{contract["version"]}"'


async def test_version_dates_are_checked(client: AsyncClient, settings: Settings) -> None:
    world = await make_world(client, settings)
    base = await create_contract(
        client, world.token, world.project_a["id"], effective_to="2020-12-31"
    )
    url = f"{API}/contracts/{base['id']}/versions"
    headers = {**bearer(world.token), "If-Match": base_etag(base)}
    for body, field in (
        ({"effective_from": "2020-01-01"}, "effective_from"),
        ({"effective_from": "2019-06-01"}, "effective_from"),
        ({"effective_from": "2021-01-01"}, "effective_from"),
        ({"effective_from": "2020-06-01", "effective_to": "2020-05-01"}, "effective_to"),
        (
            {"effective_from": "2020-06-01", "targets": [{**SL, "channel": "social"}]},
            "targets.0.channel",
        ),
    ):
        response = await client.post(url, json=body, headers=headers)
        assert response.status_code == 422, response.text
        assert response.json()["field"] == field, body
    # Nothing was closed by the refused attempts.
    assert (await client.get(f"{API}/contracts/{base['id']}", headers=bearer(world.token))).json()[
        "effective_to"
    ] == "2020-12-31"

    # A later version exists: a new version may not run into it.
    await create_contract(client, world.token, world.project_a["id"], effective_from="2021-01-01")
    clash = await client.post(
        url, json={"effective_from": "2020-06-01", "effective_to": None}, headers=headers
    )
    assert clash.status_code == 409
    assert clash.json()["clashing_version_number"] == 2
    unchanged = await client.get(f"{API}/contracts/{base['id']}", headers=bearer(world.token))
    assert unchanged.json()["effective_to"] == "2020-12-31"  # atomic: the close rolled back
    assert unchanged.json()["version"] == 1


async def test_concurrent_versions_cannot_overlap(client: AsyncClient, settings: Settings) -> None:
    world = await make_world(client, settings)
    base = await create_contract(client, world.token, world.project_a["id"])
    etag = base_etag(base)

    async def attempt(month: int) -> int:
        response = await client.post(
            f"{API}/contracts/{base['id']}/versions",
            json={"effective_from": f"2024-{month:02d}-01"},
            headers={**bearer(world.token), "If-Match": etag},
        )
        assert response.status_code in (201, 409, 412), response.text
        return response.status_code

    codes = await asyncio.gather(*(attempt(m) for m in range(1, 9)))
    assert codes.count(201) == 1
    history = (
        await client.get(
            f"{API}/projects/{world.project_a['id']}/contracts", headers=bearer(world.token)
        )
    ).json()["items"]
    assert len(history) == 2
    ranges = [
        (
            date.fromisoformat(c["effective_from"]),
            date.fromisoformat(c["effective_to"]) if c["effective_to"] else date.max,
        )
        for c in history
    ]
    (_, a_to), (b_from, _) = ranges
    assert a_to < b_from
    assert a_to + timedelta(days=1) == b_from  # no gap either


async def test_patch_rules_for_future_and_in_force_versions(
    client: AsyncClient, settings: Settings
) -> None:
    world = await make_world(client, settings)
    in_force = await create_contract(
        client, world.token, world.project_a["id"], effective_to="2098-12-31"
    )
    future = await create_contract(
        client, world.token, world.project_a["id"], effective_from="2099-01-01"
    )
    headers = bearer(world.token)

    missing = await client.patch(
        f"{API}/contracts/{future['id']}", json={"reference": "x"}, headers=headers
    )
    assert missing.status_code == 428

    edited = await client.patch(
        f"{API}/contracts/{future['id']}",
        json={
            "targets": [{"kpi": "csat", "target": 0.85}],
            "monthly_fee": "15000",
            "effective_from": "2099-02-01",
        },
        headers={**headers, "If-Match": base_etag(future)},
    )
    assert edited.status_code == 200, edited.text
    assert edited.headers["etag"] == 'W/"2"'
    assert [t["kpi"] for t in edited.json()["targets"]] == ["csat"]
    assert edited.json()["monthly_fee"] == "15000.00"

    stale = await client.patch(
        f"{API}/contracts/{future['id']}",
        json={"reference": "y"},
        headers={**headers, "If-Match": base_etag(future)},
    )
    assert stale.status_code == 412

    frozen = await client.patch(
        f"{API}/contracts/{in_force['id']}",
        json={"targets": [{"kpi": "csat", "target": 0.5}]},
        headers={**headers, "If-Match": base_etag(in_force)},
    )
    assert frozen.status_code == 409
    assert frozen.json()["code"] == "contract_in_force"
    assert frozen.json()["field"] == "targets"

    # Resending the same terms is not a change; the end date and reference may change.
    extended = await client.patch(
        f"{API}/contracts/{in_force['id']}",
        json={"targets": TERMS["targets"], "effective_to": "2099-01-31", "reference": "MSA-2"},
        headers={**headers, "If-Match": base_etag(in_force)},
    )
    assert extended.status_code == 200, extended.text
    assert (extended.json()["effective_to"], extended.json()["reference"]) == (
        "2099-01-31",
        "MSA-2",
    )

    overlap = await client.patch(
        f"{API}/contracts/{in_force['id']}",
        json={"effective_to": None},
        headers={**headers, "If-Match": extended.headers["etag"]},
    )
    assert overlap.status_code == 409
    assert overlap.json()["code"] == "contract_overlaps"
    assert overlap.json()["clashing_contract_id"] == future["id"]

    bad = await client.patch(
        f"{API}/contracts/{future['id']}",
        json={"targets": [{"kpi": "answer_rate", "comparator": "<=", "target": 0.9}]},
        headers={**headers, "If-Match": 'W/"2"'},
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "targets.0.comparator"
    null = await client.patch(
        f"{API}/contracts/{future['id']}",
        json={"targets": None},
        headers={**headers, "If-Match": 'W/"2"'},
    )
    assert null.status_code == 422
    assert null.json()["errors"][0]["field"] == "targets"


async def test_a_version_whose_project_changed_since_can_still_be_ended(
    client: AsyncClient, settings: Settings
) -> None:
    """A project may drop its business hours or a channel after a version's
    targets named them: that version's end date and reference stay editable
    (its terms are history, not re-checked); a new version must fit the project."""
    world = await make_world(client, settings)
    headers = bearer(world.token)
    project = await create_project(
        client,
        world.token,
        world.client_a["id"],
        channels=["voice", "email"],
        business_hours={"mon": [{"start": "09:00", "end": "17:00"}]},
    )
    contract = await create_contract(
        client,
        world.token,
        project["id"],
        targets=[{**SL, "business_hours_only": True}, {**SL, "channel": "email"}],
    )
    changed = await client.patch(
        f"{API}/projects/{project['id']}",
        json={"business_hours": None, "channels": ["voice"]},
        headers={**headers, "If-Match": 'W/"1"'},
    )
    assert changed.status_code == 200, changed.text

    ended = await client.patch(
        f"{API}/contracts/{contract['id']}",
        json={"effective_to": "2025-12-31", "reference": "MSA-closed"},
        headers={**headers, "If-Match": base_etag(contract)},
    )
    assert ended.status_code == 200, ended.text
    assert (ended.json()["effective_to"], ended.json()["reference"]) == (
        "2025-12-31",
        "MSA-closed",
    )
    assert ended.json()["targets"] == contract["targets"]  # history unchanged

    # Resending the stored terms is still no change.
    resent = await client.patch(
        f"{API}/contracts/{contract['id']}",
        json={"targets": [{**SL, "business_hours_only": True}, {**SL, "channel": "email"}]},
        headers={**headers, "If-Match": ended.headers["etag"]},
    )
    assert resent.status_code == 200, resent.text

    carried = await client.post(
        f"{API}/contracts/{contract['id']}/versions",
        json={"effective_from": "2025-07-01"},
        headers={**headers, "If-Match": resent.headers["etag"]},
    )
    assert await _problem(carried) == ("invalid_terms", "targets.0.business_hours_only")
    replaced = await client.post(
        f"{API}/contracts/{contract['id']}/versions",
        json={"effective_from": "2025-07-01", "targets": [SL]},
        headers={**headers, "If-Match": resent.headers["etag"]},
    )
    assert replaced.status_code == 201, replaced.text


async def test_lists_filter_by_project_client_and_day(
    client: AsyncClient, settings: Settings
) -> None:
    world = await make_world(client, settings)
    a1 = await create_contract(
        client, world.token, world.project_a["id"], effective_to="2022-12-31"
    )
    a2 = await create_contract(
        client, world.token, world.project_a["id"], effective_from="2023-01-01"
    )
    b1 = await create_contract(client, world.token, world.project_b["id"])
    headers = bearer(world.token)

    async def ids(query: str) -> list[str]:
        response = await client.get(f"{API}/contracts?{query}", headers=headers)
        assert response.status_code == 200, response.text
        return [c["id"] for c in response.json()["items"]]

    assert await ids(f"project_id={world.project_a['id']}") == [a1["id"], a2["id"]]
    assert await ids(f"project_id={world.project_a['id']}&sort=-effective_from") == [
        a2["id"],
        a1["id"],
    ]
    assert await ids(f"client_id={world.client_b['id']}") == [b1["id"]]
    assert set(await ids("at=2022-06-01")) == {a1["id"], b1["id"]}
    page = (await client.get(f"{API}/contracts?limit=2", headers=headers)).json()
    rest = (
        await client.get(f"{API}/contracts?limit=2&cursor={page['next_cursor']}", headers=headers)
    ).json()
    assert len(page["items"]) == 2
    assert len(rest["items"]) == 1
    assert rest["next_cursor"] is None


async def _seed_contracts(
    client: AsyncClient, world: World
) -> tuple[dict[str, Any], dict[str, Any]]:
    a = await create_contract(client, world.token, world.project_a["id"])
    b = await create_contract(client, world.token, world.project_b["id"])
    return a, b


async def test_another_tenants_contracts_do_not_exist(
    client: AsyncClient, settings: Settings
) -> None:
    mine = await make_world(client, settings)
    theirs = await make_world(client, settings)
    contract, _ = await _seed_contracts(client, theirs)
    headers = {**bearer(mine.token), "If-Match": "*"}
    project = theirs.project_a["id"]
    calls = [
        client.get(f"{API}/contracts/{contract['id']}", headers=headers),
        client.patch(f"{API}/contracts/{contract['id']}", json={"reference": "x"}, headers=headers),
        client.post(
            f"{API}/contracts/{contract['id']}/versions",
            json={"effective_from": "2024-01-01"},
            headers=headers,
        ),
        client.get(f"{API}/projects/{project}/contracts", headers=headers),
        client.get(f"{API}/projects/{project}/contracts/current", headers=headers),
    ]
    for call in calls:
        response = await call
        assert response.status_code == 404, response.text
    created = await client.post(
        f"{API}/contracts",
        json={**TERMS, "project_id": project, "effective_from": "2030-01-01"},
        headers=headers,
    )
    assert created.status_code == 422
    assert created.json()["field"] == "project_id"
    assert (await client.get(f"{API}/contracts", headers=headers)).json()["items"] == []
    untouched = await client.get(f"{API}/contracts/{contract['id']}", headers=bearer(theirs.token))
    assert untouched.json() == contract


async def test_client_viewer_reads_own_clients_contracts_only(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    world = await make_world(client, settings)
    a, b = await _seed_contracts(client, world)
    _, token = await user_token(
        client, db, world.seed, "client_viewer", client_id=uuid.UUID(world.client_a["id"])
    )
    headers = {**bearer(token), "If-Match": "*"}
    assert (await client.get(f"{API}/contracts/{a['id']}", headers=headers)).status_code == 200
    assert [
        c["id"] for c in (await client.get(f"{API}/contracts", headers=headers)).json()["items"]
    ] == [a["id"]]
    current = await client.get(
        f"{API}/projects/{world.project_a['id']}/contracts/current", headers=headers
    )
    assert current.json()["id"] == a["id"]
    for call in (
        client.get(f"{API}/contracts/{b['id']}", headers=headers),
        client.get(f"{API}/projects/{world.project_b['id']}/contracts", headers=headers),
    ):
        assert (await call).status_code == 404
    for call in (
        client.post(
            f"{API}/contracts",
            json={**TERMS, "project_id": world.project_a["id"], "effective_from": "2030-01-01"},
            headers=headers,
        ),
        client.patch(f"{API}/contracts/{a['id']}", json={"reference": "x"}, headers=headers),
        client.post(
            f"{API}/contracts/{a['id']}/versions",
            json={"effective_from": "2024-01-01"},
            headers=headers,
        ),
    ):
        response = await call
        assert response.status_code == 403, response.text


async def test_analyst_reads_but_cannot_write(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    world = await make_world(client, settings)
    a, _ = await _seed_contracts(client, world)
    _, token = await user_token(client, db, world.seed, "analyst")
    headers = {**bearer(token), "If-Match": base_etag(a)}
    assert (await client.get(f"{API}/contracts/{a['id']}", headers=headers)).status_code == 200
    for call in (
        client.post(
            f"{API}/contracts",
            json={**TERMS, "project_id": world.project_a["id"], "effective_from": "2030-01-01"},
            headers=headers,
        ),
        client.patch(f"{API}/contracts/{a['id']}", json={"reference": "x"}, headers=headers),
        client.post(
            f"{API}/contracts/{a['id']}/versions",
            json={"effective_from": "2024-01-01"},
            headers=headers,
        ),
    ):
        response = await call
        assert response.status_code == 403, response.text
    assert (await client.get(f"{API}/contracts/{a['id']}", headers=headers)).json() == a


async def test_supervisor_works_on_assigned_projects_only(
    client: AsyncClient, settings: Settings, db: Database
) -> None:
    world = await make_world(client, settings)
    a, b = await _seed_contracts(client, world)
    supervisor, token = await user_token(client, db, world.seed, "supervisor")
    await client.put(
        f"{API}/users/{supervisor.id}/projects",
        json={"project_ids": [world.project_a["id"]]},
        headers=bearer(world.token),
    )
    headers = bearer(token)
    assert [
        c["id"] for c in (await client.get(f"{API}/contracts", headers=headers)).json()["items"]
    ] == [a["id"]]
    hidden = await client.get(f"{API}/contracts/{b['id']}", headers=headers)
    assert hidden.status_code == 404
    version = await client.post(
        f"{API}/contracts/{a['id']}/versions",
        json={"effective_from": "2025-01-01", "reference": "v2"},
        headers={**headers, "If-Match": base_etag(a)},
    )
    assert version.status_code == 201, version.text
    other = await create_project(client, world.token, world.client_a["id"])
    refused = await client.post(
        f"{API}/contracts",
        json={**TERMS, "project_id": other["id"], "effective_from": "2030-01-01"},
        headers=headers,
    )
    assert refused.status_code == 422
    assert refused.json()["field"] == "project_id"
