"""`callpact import contacts|agent-states` as real processes against the test database:
the receipt printed, batches committed, re-runs idempotent, refusals as one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from httpx import AsyncClient

from service.core.config import DatabaseSettings, Settings
from service.core.db import Database
from tests.service.test_cli_tenancy import callpact
from tests.service.uploads.conftest import QUEUE_LOG, contact_rows, make_center, scalar, upload


@pytest.fixture
def cli_env(db_settings: DatabaseSettings, tmp_path: Path) -> dict[str, str]:
    from tests.service.test_cli_tenancy import _env

    return _env(
        DATABASE_URL=db_settings.owner_dsn(),
        DATABASE_APP_ROLE=db_settings.app_role,
        DATABASE_ADMIN_ROLE=db_settings.admin_role,
        CALLPACT_VAR_DIR=str(tmp_path),
        LOG_LEVEL="WARNING",
        COLUMNS="200",
    )


async def test_import_a_queue_log_prints_the_receipt(
    client: AsyncClient,
    settings: Settings,
    db: Database,
    cli_env: dict[str, str],
) -> None:
    center = await make_center(client, settings, db)
    log = QUEUE_LOG / "voipreports1.queue_log"
    args = ("import", "contacts", str(log), "--tenant", center.seed.slug)
    done = await callpact(
        cli_env, *args, "--format", "queue_log", "--source", "pbx", "--batch-size", "100"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Import receipt" in out
    # 108 calls: 104 ended in the file + 4 still open at its end.
    for label, value in (
        ("records", "108"),
        ("accepted", "108"),
        ("duplicates", "0"),
        ("calls still open", "4"),
    ):
        assert any(
            line.split() and " ".join(line.split()[:-1]) == label and line.split()[-1] == value
            for line in out.splitlines()
        ), (label, out)
    assert "OUTDIAL 128" in out  # unknown events, by name, counted off the file
    assert "RINGNOANSWER 360" in out
    assert "voipreports1.queue_log" in done.stderr  # the progress bar, on stderr
    # The same as the HTTP upload of the same file into another tenant.
    other = await make_center(client, settings, db)
    response = await upload(client, other, log.read_bytes(), "queue_log", source="pbx")
    assert response.status_code == 200
    assert await contact_rows(db, center.seed.id) == await contact_rows(db, other.seed.id)

    # Again, as JSON: the state kept per source makes it all overlap; nothing changes.
    again = await callpact(cli_env, *args, "--format", "queue_log", "--source", "pbx", "--json")
    assert again.returncode == 0, again.stderr
    receipt = json.loads(again.stdout)
    assert (receipt["stats"]["skipped_overlap"], receipt["accepted"], receipt["duplicates"]) == (
        1000,
        0,
        4,
    )
    assert (
        await scalar(db, "select count(*) from contacts where tenant_id = :t", t=center.seed.id)
        == 108
    )


async def test_import_a_csv_with_a_mapping_file_and_agent_states(
    client: AsyncClient,
    settings: Settings,
    db: Database,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    center = await make_center(client, settings, db)
    mapping = tmp_path / "mapping.json"
    mapping.write_text(
        json.dumps(
            {
                "columns": {
                    "external_id": "id",
                    "queue_key": "queue",
                    "queued_at": "start",
                    "abandoned_at": "gone",
                },
                "channel": "chat",
            }
        )
    )
    data = tmp_path / "chats.csv"
    data.write_text(
        "id,queue,start,gone\n"
        "c1,Support,2026-03-02T08:00:00Z,2026-03-02T08:00:09Z\n"
        "c2,Support,2026-03-02T08:01:00Z,yesterday\n"
        "c3,Nowhere,2026-03-02T08:02:00Z,2026-03-02T08:02:30Z\n"
    )
    done = await callpact(
        cli_env,
        "import", "contacts", str(data), "--tenant", center.seed.slug,
        "--format", "csv", "--mapping", str(mapping), "--batch-size", "100",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 problem(s)" in done.stdout
    assert "record 2, line 3, field abandoned_at ('gone')" in done.stdout
    assert "record 3, line 4, field queue_key: no project maps queue 'Nowhere'" in done.stdout
    rows = await contact_rows(db, center.seed.id)
    assert set(rows) == {"c1"}
    assert (rows["c1"]["channel"], rows["c1"]["wait_ms"]) == ("chat", 9_000)

    states = tmp_path / "states.csv"
    states.write_text(
        "agent_key,state,at,reason,queue_key\n"
        "Agent/1127,available,2026-03-02T08:00:00Z,,IT\n"
        "Agent/1127,not_ready,2026-03-02T09:00:00+01:00,lunch,\n"
        "Agent/7777,available,2026-03-02T08:00:00Z,,\n"
        "Agent/1127,dancing,2026-03-02T08:00:00Z,,\n"
    )
    args = ("import", "agent-states", str(states), "--tenant", center.seed.slug)
    first = await callpact(cli_env, *args)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Agent-state import receipt" in first.stdout
    assert "Agent/7777 1" in first.stdout
    assert "record 4, line 5, field state" in first.stdout
    second = await callpact(cli_env, *args, "--json")
    receipt = json.loads(second.stdout)
    assert (
        receipt["received"],
        receipt["accepted"],
        receipt["duplicates"],
        receipt["unmapped"],
    ) == (
        3,
        0,
        2,
        1,
    )
    assert (
        await scalar(
            db,
            "select count(*) from agent_state_events where tenant_id = :t and agent_id = :a",
            t=center.seed.id,
            a=center.agent_1127,
        )
        == 2
    )


async def test_refusals_are_one_line(
    client: AsyncClient,
    settings: Settings,
    db: Database,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    center = await make_center(client, settings, db)
    log = str(QUEUE_LOG / "malariapbx.queue_log")
    unknown = await callpact(
        cli_env, "import", "contacts", log, "--tenant", "no-such-bpo", "--format", "queue_log",
        "--source", "x",
    )  # fmt: skip
    assert unknown.returncode == 1
    assert "No tenant with the slug 'no-such-bpo'" in unknown.stderr
    no_source = await callpact(
        cli_env, "import", "contacts", log, "--tenant", center.seed.slug, "--format", "queue_log"
    )
    assert no_source.returncode == 2
    assert "--source" in no_source.stderr
    broken = tmp_path / "broken.json"
    broken.write_text('{"ContactId": "x",}\n')
    refused = await callpact(
        cli_env, "import", "contacts", str(broken), "--tenant", center.seed.slug,
        "--format", "amazon_connect",
    )  # fmt: skip
    assert refused.returncode == 1
    assert "line 1, column 18" in refused.stderr
    assert "Nothing was imported" in refused.stderr
