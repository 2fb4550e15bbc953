"""Bulk schedule imports (JSON and CSV): every clash and every bad row is
reported by row; all_or_nothing writes nothing, valid_rows exactly the good
rows; re-imports are idempotent on external_id."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from httpx import ASGITransport, AsyncClient
from sqlalchemy import text

from service.app import create_app
from service.core.config import Settings
from service.core.db import Database
from service.core.time import new_id
from tests.factories import bearer, user_token
from tests.service.agents.factories import Floor, make_agent, make_project, seed_pool

START = date(2026, 1, 5)


async def insert_shift(
    db: Database,
    floor: Floor,
    agent_id: uuid.UUID,
    start: datetime,
    end: datetime,
    *,
    project: Any = None,
    external_id: str | None = None,
) -> uuid.UUID:
    project = project or floor.project_a
    shift_id = new_id()
    async with db.admin_transaction() as admin:
        await admin.execute(
            text(
                "insert into shifts (tenant_id, id, agent_id, project_id, client_id, starts_at,"
                " ends_at, activity, external_id) values (:t, :id, :a, :p, :c, :s, :e,"
                " 'training', :x)"
            ),
            {
                "t": floor.seed.id,
                "id": shift_id,
                "a": agent_id,
                "p": project.id,
                "c": project.client_id,
                "s": start,
                "e": end,
                "x": external_id,
            },
        )
    return shift_id


async def stored(
    db: Database, floor: Floor
) -> dict[str, tuple[str, datetime, datetime, str | None]]:
    """external id → (agent, start, end, note) of the tenant's shifts that have one."""
    async with db.admin_engine.connect() as conn:
        rows = await conn.execute(
            text(
                "select external_id, agent_id, starts_at, ends_at, note from shifts"
                " where tenant_id = :t and external_id is not null"
            ),
            {"t": floor.seed.id},
        )
        return {r[0]: (str(r[1]), r[2], r[3], r[4]) for r in rows}


async def count_shifts(db: Database, floor: Floor) -> int:
    async with db.admin_engine.connect() as conn:
        found = await conn.execute(
            text("select count(*) from shifts where tenant_id = :t"), {"t": floor.seed.id}
        )
        return int(found.scalar_one())


def at(day: int, hour: float) -> datetime:
    return datetime(START.year, START.month, START.day, tzinfo=UTC) + timedelta(
        days=day, hours=hour
    )


def row(
    agent: str, project: Any, start: datetime, end: datetime, external_id: str, **extra: Any
) -> dict[str, Any]:
    return {
        "agent": agent,
        "project": str(project),
        "start": start.isoformat(),
        "end": end.isoformat(),
        "activity": "on_queue",
        "external_id": external_id,
        **extra,
    }


def problems(body: dict[str, Any]) -> set[tuple[int, str, Any]]:
    out = set()
    for e in body["errors"]:
        other = e.get("other_row") or (e["shift"]["id"] if "shift" in e else None)
        out.add((e["row"], e["code"], other))
    return out


async def test_a_10000_row_import_reports_every_problem_and_writes_nothing(
    client: AsyncClient, db: Database, floor: Floor
) -> None:
    pool = await seed_pool(db, floor.seed.id, 40, [floor.project_a, floor.project_b])
    uncertified = await make_project(db, floor.seed.id, floor.client_a)
    inactive = await make_agent(client, floor.token, status="inactive")

    def ref(k: int) -> str:
        agent_id, external = pool[k]
        return str(agent_id) if k % 2 == 0 else external

    rows: list[dict[str, Any]] = []
    index: dict[tuple[int, int, int], int] = {}  # (agent, day, half) → row number
    for k in range(40):
        for d in range(125):
            for half, (a, b, project) in enumerate(
                ((8, 12, floor.project_a.id), (13, 17, floor.project_b.id))
            ):
                rows.append(row(ref(k), project, at(d, a), at(d, b), f"imp-{k}-{d}-{half}"))
                index[(k, d, half)] = len(rows)
    assert len(rows) == 10_000
    expected: set[tuple[int, str, Any]] = set()

    # Against the database: five training shifts at 11:00-13:00 clash with the
    # morning rows; one at 16:00-18:00 with an afternoon row; one at
    # 12:00-13:00 sits back to back between both and clashes with neither.
    for k in range(5):
        sid = await insert_shift(db, floor, pool[k][0], at(10, 11), at(10, 13))
        expected.add((index[(k, 10, 0)], "overlaps_shift", str(sid)))
    sid = await insert_shift(db, floor, pool[5][0], at(20, 16), at(20, 18))
    expected.add((index[(5, 20, 1)], "overlaps_shift", str(sid)))
    await insert_shift(db, floor, pool[6][0], at(30, 12), at(30, 13))

    # Inside the file: a pair, and a triple where one row overlaps two others.
    r1, r2 = index[(10, 40, 0)], index[(10, 40, 1)]
    rows[r2 - 1]["start"] = at(40, 11.5).isoformat()
    expected |= {(r2, "overlaps_row", r1), (r1, "overlaps_row", r2)}
    t1, t2, t3 = index[(13, 44, 0)], index[(13, 44, 1)], index[(13, 45, 0)]
    rows[t2 - 1]["start"] = at(44, 11).isoformat()
    rows[t3 - 1].update(start=at(44, 9).isoformat(), end=at(44, 10).isoformat())
    expected |= {
        (t2, "overlaps_row", t1),
        (t1, "overlaps_row", t2),
        (t3, "overlaps_row", t1),
        (t1, "overlaps_row", t3),
    }
    # The same external id twice.
    d1, d2 = index[(14, 50, 0)], index[(14, 50, 1)]
    rows[d2 - 1]["external_id"] = rows[d1 - 1]["external_id"]
    expected |= {(d1, "duplicate_external_id", d2), (d2, "duplicate_external_id", d1)}

    # Rows that are wrong on their own.
    def spoil(k: int, day: int, code: str, **change: Any) -> None:
        number = index[(k, day, 0)]
        rows[number - 1].update(change)
        expected.add((number, code, None))

    spoil(20, 60, "naive_timestamp", start="2026-03-06T08:00:00")
    spoil(21, 61, "unknown_agent", agent="Agent/nobody")
    spoil(22, 62, "not_certified", project=str(uncertified.id))
    spoil(23, 63, "invalid_range", end=rows[index[(23, 63, 0)] - 1]["start"])
    spoil(24, 64, "unknown_activity", activity="lunch")
    spoil(25, 65, "unknown_project", project=str(uuid.uuid4()))
    spoil(26, 66, "agent_inactive", agent=inactive["id"])
    spoil(27, 67, "missing_value", end=None)
    spoil(28, 68, "unknown_field", colour="red")

    before = await count_shifts(db, floor)
    response = await client.post("/api/v1/shifts:batch", json={"rows": rows}, headers=floor.headers)
    assert response.status_code == 422, response.text[:2000]
    body = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert body["code"] == "import_rejected"
    assert body["written"] is False
    assert body["rows"] == 10_000
    assert problems(body) == expected
    rejected = {p[0] for p in expected}
    assert body["rejected"] == len(rejected)
    assert body["valid"] == 10_000 - len(rejected)
    assert body["inserted"] == body["updated"] == 0
    assert await count_shifts(db, floor) == before
    naive = next(e for e in body["errors"] if e["code"] == "naive_timestamp")
    assert naive["field"] == "start"
    clash = next(e for e in body["errors"] if e["code"] == "overlaps_shift")
    assert clash["shift"]["project_id"] == str(floor.project_a.id)

    # valid_rows writes exactly the good rows.
    partial = await client.post(
        "/api/v1/shifts:batch", json={"rows": rows, "mode": "valid_rows"}, headers=floor.headers
    )
    assert partial.status_code == 200, partial.text[:2000]
    report = partial.json()
    assert report["written"] is True
    assert problems(report) == expected
    assert report["inserted"] == 10_000 - len(rejected)
    assert report["updated"] == report["unchanged"] == 0
    good = {r["external_id"] for n, r in enumerate(rows, start=1) if n not in rejected}
    saved = await stored(db, floor)
    assert set(saved) == good
    assert await count_shifts(db, floor) == before + len(good)
    sample = rows[index[(1, 3, 1)] - 1]
    assert saved[sample["external_id"]] == (str(pool[1][0]), at(3, 13), at(3, 17), None)

    # The same file again changes nothing; a changed row updates its shift.
    again = await client.post(
        "/api/v1/shifts:batch", json={"rows": rows, "mode": "valid_rows"}, headers=floor.headers
    )
    assert again.status_code == 200, again.text[:2000]
    assert (again.json()["inserted"], again.json()["updated"]) == (0, 0)
    assert again.json()["unchanged"] == len(good)
    assert problems(again.json()) == expected
    assert await stored(db, floor) == saved

    good_rows = [r for n, r in enumerate(rows, start=1) if n not in rejected]
    good_rows[0] = {**good_rows[0], "note": "moved", "start": at(0, 7).isoformat()}
    changed = await client.post(
        "/api/v1/shifts:batch", json={"rows": good_rows}, headers=floor.headers
    )
    assert changed.status_code == 200, changed.text[:2000]
    assert changed.json()["errors"] == []
    assert (changed.json()["inserted"], changed.json()["updated"]) == (0, 1)
    assert changed.json()["unchanged"] == len(good) - 1
    after = await stored(db, floor)
    assert after[good_rows[0]["external_id"]][1:] == (at(0, 7), at(0, 12), "moved")


async def test_an_import_may_swap_two_shifts_of_an_agent(
    client: AsyncClient, db: Database, floor: Floor
) -> None:
    [(agent, external)] = await seed_pool(db, floor.seed.id, 1, [floor.project_a])
    await insert_shift(db, floor, agent, at(0, 8), at(0, 12), external_id="swap-a")
    await insert_shift(db, floor, agent, at(0, 12), at(0, 16), external_id="swap-b")
    rows = [
        row(external, floor.project_a.id, at(0, 12), at(0, 16), "swap-a"),
        row(external, floor.project_a.id, at(0, 8), at(0, 12), "swap-b"),
    ]
    response = await client.post("/api/v1/shifts:batch", json={"rows": rows}, headers=floor.headers)
    assert response.status_code == 200, response.text
    assert response.json()["updated"] == 2
    saved = await stored(db, floor)
    assert saved["swap-a"][1:3] == (at(0, 12), at(0, 16))
    assert saved["swap-b"][1:3] == (at(0, 8), at(0, 12))


async def test_valid_rows_keeps_a_shift_whose_replacement_was_rejected(
    client: AsyncClient, db: Database, floor: Floor
) -> None:
    [(agent, external)] = await seed_pool(db, floor.seed.id, 1, [floor.project_a])
    uncertified = await make_project(db, floor.seed.id, floor.client_a)
    kept = await insert_shift(db, floor, agent, at(0, 8), at(0, 12), external_id="keep")
    rows = [
        # Would move "keep" away, but the agent is not certified there: rejected.
        row(external, uncertified.id, at(0, 13), at(0, 14), "keep"),
        # Fits only if "keep" moves away; it stays, so this row clashes with it.
        row(external, floor.project_a.id, at(0, 9), at(0, 10), "new-1"),
        row(external, floor.project_a.id, at(0, 14), at(0, 15), "new-2"),
    ]
    strict = await client.post("/api/v1/shifts:batch", json={"rows": rows}, headers=floor.headers)
    assert problems(strict.json()) == {(1, "not_certified", None)}
    response = await client.post(
        "/api/v1/shifts:batch", json={"rows": rows, "mode": "valid_rows"}, headers=floor.headers
    )
    assert response.status_code == 200, response.text
    assert problems(response.json()) == {
        (1, "not_certified", None),
        (2, "overlaps_shift", str(kept)),
    }
    assert response.json()["inserted"] == 1
    assert set(await stored(db, floor)) == {"keep", "new-2"}


CSV_HEADER = "agent,project,start,end,activity,note,external_id\r\n"


async def test_csv_upload_streamed_or_as_a_form(
    client: AsyncClient, db: Database, floor: Floor
) -> None:
    (a, x), (b, _) = await seed_pool(db, floor.seed.id, 2, [floor.project_a])
    p = floor.project_a.id
    body = (
        "\ufeff"
        + CSV_HEADER
        + f"{x},{p},2026-02-02T08:00:00Z,2026-02-02T12:00:00Z,on_queue,,csv-1\r\n"
        + f'{b},{p},2026-02-02T08:00:00+01:00,2026-02-02T12:00:00+01:00,on_queue,"two\nlines",csv-2\r\n'
        + f"{a},{p},2026-02-02T11:00:00Z,2026-02-02T13:00:00Z,on_queue,,csv-3\r\n"
        + f"{b},{p},2026-02-02 13:00,2026-02-02T14:00:00Z,break,,csv-4\r\n"
        + "\r\n"
    )
    response = await client.post(
        "/api/v1/shifts/uploads",
        content=body.encode(),
        headers={**floor.headers, "Content-Type": "text/csv"},
    )
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert {(e["row"], e["line"], e["code"], e.get("other_row")) for e in errors} == {
        (1, 2, "overlaps_row", 3),
        (3, 5, "overlaps_row", 1),
        (4, 6, "naive_timestamp", None),
    }
    form = await client.post(
        "/api/v1/shifts/uploads",
        params={"mode": "valid_rows"},
        files={"file": ("schedule.csv", body.encode(), "text/csv")},
        headers=floor.headers,
    )
    assert form.status_code == 200, form.text
    assert form.json()["inserted"] == 1
    assert (await stored(db, floor))["csv-2"][3] == "two\nlines"


async def test_external_agent_ids_resolve_per_system(
    client: AsyncClient, db: Database, floor: Floor
) -> None:
    [(a, _)] = await seed_pool(
        db, floor.seed.id, 1, [floor.project_a], prefix="X", system="asterisk"
    )
    [(b, _)] = await seed_pool(
        db, floor.seed.id, 1, [floor.project_a], prefix="X", system="genesys"
    )
    rows = [row("X1000", floor.project_a.id, at(0, 8), at(0, 12), "sys-1")]
    ambiguous = await client.post(
        "/api/v1/shifts:batch", json={"rows": rows}, headers=floor.headers
    )
    assert problems(ambiguous.json()) == {(1, "ambiguous_agent", None)}
    resolved = await client.post(
        "/api/v1/shifts:batch",
        json={"rows": rows, "agent_system": "genesys"},
        headers=floor.headers,
    )
    assert resolved.status_code == 200, resolved.text
    assert (await stored(db, floor))["sys-1"][0] == str(b)
    assert a != b


async def test_files_that_cannot_be_read(client: AsyncClient, floor: Floor) -> None:
    url = "/api/v1/shifts/uploads"
    csv_headers = {**floor.headers, "Content-Type": "text/csv"}
    for content, reason in (
        (b"", "empty_file"),
        (b"agent,project,start,end,activity,colour\r\n", "unknown_column"),
        (b"agent,project,start\r\n", "missing_column"),
        (b"agent,project,start,end,activity,agent\r\n", "duplicate_column"),
        ("agent,project,start,end,activity\r\nä,b,c,d,e\r\n".encode("latin-1"), "invalid_encoding"),
        (CSV_HEADER.encode() + b'x,"unclosed\r\n', "invalid_csv"),
    ):
        response = await client.post(url, content=content, headers=csv_headers)
        assert response.status_code == 422, (reason, response.text)
        assert response.json()["code"] == "invalid_import_file"
        assert response.json()["reason"] == reason
    too_many = CSV_HEADER + "a,b,c,d,e,,\r\n" * 50_001
    response = await client.post(url, content=too_many.encode(), headers=csv_headers)
    assert response.status_code == 422
    assert response.json()["reason"] == "too_many_rows"
    json_body = await client.post(url, json={"rows": []}, headers=floor.headers)
    assert json_body.status_code == 415
    assert json_body.json()["code"] == "unsupported_media_type"
    no_file = await client.post(url, files={"other": ("a.csv", b"x")}, headers=floor.headers)
    assert no_file.json()["reason"] == "missing_file"
    not_rows = await client.post("/api/v1/shifts:batch", json={"rows": [1]}, headers=floor.headers)
    assert not_rows.status_code == 422
    assert not_rows.json()["code"] == "validation_failed"
    assert not_rows.json()["errors"][0]["field"] == "rows.0"
    broken = await client.post(
        "/api/v1/shifts:batch",
        content=b"{",
        headers={**floor.headers, "Content-Type": "application/json"},
    )
    assert broken.status_code == 422


async def test_a_supervisor_imports_into_its_projects_only(
    client: AsyncClient, db: Database, floor: Floor
) -> None:
    [(agent, external)] = await seed_pool(db, floor.seed.id, 1, [floor.project_a, floor.project_b])
    await insert_shift(
        db, floor, agent, at(1, 8), at(1, 12), project=floor.project_b, external_id="theirs"
    )
    user, token = await user_token(client, db, floor.seed, "supervisor")
    async with db.admin_transaction() as admin:
        await admin.execute(
            text("insert into user_projects (tenant_id, user_id, project_id) values (:t, :u, :p)"),
            {"t": floor.seed.id, "u": user.id, "p": floor.project_a.id},
        )
    rows = [
        row(external, floor.project_b.id, at(0, 8), at(0, 12), "sup-1"),
        row(external, floor.project_a.id, at(2, 8), at(2, 12), "theirs"),
        row(external, floor.project_a.id, at(1, 10), at(1, 11), "sup-2"),
        row(external, floor.project_a.id, at(3, 8), at(3, 12), "sup-3"),
    ]
    response = await client.post(
        "/api/v1/shifts:batch", json={"rows": rows, "mode": "valid_rows"}, headers=bearer(token)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert {(e["row"], e["code"]) for e in body["errors"]} == {
        (1, "unknown_project"),
        (2, "external_id_taken"),
        (3, "overlaps_shift"),
    }
    hidden = next(e for e in body["errors"] if e["code"] == "overlaps_shift")
    assert hidden["shift"]["project_id"] is None
    assert body["inserted"] == 1
    assert set(await stored(db, floor)) == {"theirs", "sup-3"}


async def test_a_schedule_file_past_the_batch_limit_is_413(
    settings: Settings, db: Database, redis: object, floor: Floor
) -> None:
    small = settings.model_copy(
        update={"api": settings.api.model_copy(update={"max_batch_bytes": 2048})}
    )
    app = create_app(small, db=db, redis=redis)
    body = (CSV_HEADER + "a,b,c,d,e,,\r\n" * 300).encode()

    async def chunks() -> AsyncIterator[bytes]:
        # No Content-Length: the limit is found while the body streams.
        yield body[:1000]
        yield body[1000:]

    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http,
    ):
        streamed = await http.post(
            "/api/v1/shifts/uploads",
            content=chunks(),
            headers={**floor.headers, "Content-Type": "text/csv"},
        )
        assert streamed.status_code == 413
        assert streamed.json()["code"] == "payload_too_large"
        form = await http.post(
            "/api/v1/shifts/uploads",
            files={"file": ("s.csv", body, "text/csv")},
            headers=floor.headers,
        )
        assert form.status_code == 413


async def test_an_agent_deleted_while_an_import_writes_is_409_not_500(
    client: AsyncClient, db: Database, floor: Floor
) -> None:
    agent = await make_agent(client, floor.token)
    body = {
        "rows": [
            {
                **row(agent["id"], floor.project_a.id, at(0, 8), at(0, 12), "del-1"),
                "activity": "training",
            }
        ]
    }
    async with db.admin_transaction() as admin:
        # Deleted (no history yet) while the import runs: its checks still see
        # the agent, its insert waits on the foreign key until this commits.
        await admin.execute(
            text("delete from agents where tenant_id = :t and id = :a"),
            {"t": floor.seed.id, "a": agent["id"]},
        )
        importing = asyncio.create_task(
            client.post("/api/v1/shifts:batch", json=body, headers=floor.headers)
        )
        await asyncio.sleep(0.5)
        assert not importing.done()
    response = await importing
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "schedule_changed"
    assert await count_shifts(db, floor) == 0


async def test_a_reimport_is_idempotent_after_an_agent_left_or_a_project_closed(
    client: AsyncClient, db: Database, floor: Floor
) -> None:
    """The same rows again change nothing, so they are not booked anew: an agent
    deactivated, a certification ended or a project closed since does not
    refuse them. A row that changes something is checked as a booking."""
    (a, _), (b, _) = await seed_pool(db, floor.seed.id, 2, [floor.project_a, floor.project_b])
    p, q = floor.project_a.id, floor.project_b.id
    rows = [
        row(str(a), p, at(0, 8), at(0, 12), "idem-a"),
        row(str(b), p, at(0, 8), at(0, 12), "idem-b"),
        row(str(b), q, at(1, 8), at(1, 12), "idem-q"),
    ]
    first = await client.post("/api/v1/shifts:batch", json={"rows": rows}, headers=floor.headers)
    assert first.status_code == 200, first.text
    assert first.json()["inserted"] == 3

    left = await client.patch(
        f"/api/v1/agents/{a}",
        json={"status": "inactive"},
        headers={**floor.headers, "If-Match": "*"},
    )
    assert left.status_code == 200, left.text
    ended = await client.patch(
        f"/api/v1/agents/{b}/certifications/{p}",
        json={"certified_until": "2025-12-31"},
        headers=floor.headers,
    )
    assert ended.status_code == 200, ended.text
    async with db.admin_transaction() as admin:
        await admin.execute(
            text("update projects set status = 'inactive' where tenant_id = :t and id = :p"),
            {"t": floor.seed.id, "p": q},
        )

    again = await client.post("/api/v1/shifts:batch", json={"rows": rows}, headers=floor.headers)
    assert again.status_code == 200, again.text
    assert (again.json()["unchanged"], again.json()["inserted"], again.json()["updated"]) == (
        3,
        0,
        0,
    )

    changed = [
        row(str(a), p, at(0, 8), at(0, 13), "idem-a"),
        row(str(b), p, at(0, 8), at(0, 13), "idem-b"),
        row(str(b), q, at(1, 8), at(1, 13), "idem-q"),
    ]
    refused = await client.post(
        "/api/v1/shifts:batch", json={"rows": changed}, headers=floor.headers
    )
    assert refused.status_code == 422, refused.text
    assert problems(refused.json()) == {
        (1, "agent_inactive", None),
        (2, "not_certified", None),
        (3, "project_inactive", None),
    }


async def test_an_imported_night_shift_needs_the_certification_on_its_second_day(
    client: AsyncClient, db: Database, floor: Floor
) -> None:
    pool = await seed_pool(db, floor.seed.id, 2, [floor.project_a])
    for agent, _ in pool:
        ended = await client.patch(
            f"/api/v1/agents/{agent}/certifications/{floor.project_a.id}",
            json={"certified_until": at(0, 0).date().isoformat()},
            headers=floor.headers,
        )
        assert ended.status_code == 200, ended.text
    (_, first), (_, second) = pool
    rows = [
        # Its last instant is on the certified day.
        row(first, floor.project_a.id, at(0, 16), at(1, 0), "until-midnight"),
        # Runs into the next day, when the certification has ended.
        row(second, floor.project_a.id, at(0, 22), at(1, 6), "overnight"),
    ]
    response = await client.post(
        "/api/v1/shifts:batch", json={"rows": rows, "mode": "valid_rows"}, headers=floor.headers
    )
    assert response.status_code == 200, response.text
    assert problems(response.json()) == {(2, "not_certified", None)}
    assert set(await stored(db, floor)) == {"until-midnight"}


async def audited_imports(db: Database, floor: Floor) -> int:
    async with db.admin_engine.connect() as conn:
        found = await conn.execute(
            text(
                "select count(*) from audit_log where tenant_id = :t and action = 'shifts.import'"
            ),
            {"t": floor.seed.id},
        )
        return int(found.scalar_one())


async def test_a_dry_run_answers_as_the_import_would_and_stores_nothing(
    client: AsyncClient, db: Database, floor: Floor
) -> None:
    (a, x), (_, y) = await seed_pool(db, floor.seed.id, 2, [floor.project_a])
    await insert_shift(db, floor, a, at(1, 8), at(1, 12), external_id="held")
    p = floor.project_a.id
    rows = [
        row(x, p, at(0, 8), at(0, 12), "d-1"),
        row(y, p, at(0, 8), at(0, 12), "d-2"),
        row(x, p, at(1, 8), at(1, 12), "held", note="moved nowhere, a note added"),
    ]
    before = await stored(db, floor)
    trial = await client.post(
        "/api/v1/shifts:batch", json={"rows": rows, "dry_run": True}, headers=floor.headers
    )
    assert trial.status_code == 200, trial.text
    body = trial.json()
    assert (body["dry_run"], body["written"]) == (True, False)
    assert (body["inserted"], body["updated"], body["unchanged"]) == (2, 1, 0)
    assert await stored(db, floor) == before
    assert await audited_imports(db, floor) == 0
    # The real import then does what the trial said.
    real = await client.post("/api/v1/shifts:batch", json={"rows": rows}, headers=floor.headers)
    assert real.status_code == 200, real.text
    assert (real.json()["dry_run"], real.json()["written"]) == (False, True)
    assert (real.json()["inserted"], real.json()["updated"]) == (2, 1)
    assert await audited_imports(db, floor) == 1
    assert (await stored(db, floor))["held"][3] == "moved nowhere, a note added"

    # A clash is refused as the import refuses it (422, every problem), nothing stored.
    clash = [row(y, p, at(0, 10), at(0, 14), "d-3")]
    for dry_run in (True, False):
        refused = await client.post(
            "/api/v1/shifts:batch",
            json={"rows": clash, "dry_run": dry_run},
            headers=floor.headers,
        )
        assert refused.status_code == 422, refused.text
        assert {e["code"] for e in refused.json()["errors"]} == {"overlaps_shift"}
    assert "d-3" not in await stored(db, floor)

    # A CSV upload takes it as a query parameter; valid_rows reports the good rows it
    # would write.
    csv = (
        CSV_HEADER
        + f"{x},{p},{at(2, 8).isoformat()},{at(2, 12).isoformat()},on_queue,,d-4\r\n"
        + f"{y},{p},{at(0, 9).isoformat()},{at(0, 10).isoformat()},on_queue,,d-5\r\n"
    )
    upload = await client.post(
        "/api/v1/shifts/uploads",
        params={"mode": "valid_rows", "dry_run": "true"},
        content=csv.encode(),
        headers={**floor.headers, "Content-Type": "text/csv"},
    )
    assert upload.status_code == 200, upload.text
    assert (upload.json()["inserted"], upload.json()["rejected"]) == (1, 1)
    assert upload.json()["dry_run"] is True
    assert not {"d-4", "d-5"} & set(await stored(db, floor))
    assert await audited_imports(db, floor) == 1
