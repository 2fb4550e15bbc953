"""Contact data in, KPIs out: 1 000 000 contacts (`BENCH_CONTACTS` to change) of
500 projects in six time zones over the 12 months of 2025.

The data has a contact center's shape: project sizes follow a long tail
(the biggest project takes ~4 % of the volume), calls arrive along a
working-day curve in the project's own zone, ~85 % are answered, ~10 %
abandoned (a third of those within 5 s), the rest time out, overflow or
leave by key; waits are mostly under a minute with a long tail (e-mail
projects wait hours), talk, hold (a quarter of the calls), ACW, transfer
and FCR flags, CSAT and NPS from a minority; 1 % of the answered calls name
one of five agents nobody mapped yet. It is generated chunk by chunk from a
seeded generator (one chunk in memory at a time), outside every timer, in
time order as exports deliver it: each 50 000-record batch covers the next
stretch of days for every project (18 days at 1 M, under 2 at 10 M); the
JSON batches are live data of the year's last week, on top of the import.

Figures, each against a baseline measured in this run, close in time
(baseline and subject interleaved per chunk or per round; medians):

1. internal bulk import (`ingest_records`, 50 000 records a transaction
   under the tenant's scope, as an import job does it) vs a raw binary
   COPY (`copy_records_to_table`) of the same rows into an unconstrained
   table with the contacts' columns — target ≥ 0.5x; and the same records
   again (all duplicates). Per chunk with them, the *floor*: the least any
   idempotent design must do under the issue's constraints, in one
   transaction as the application role under the tenant's scope — COPY into
   a temporary staging table (row-level security forbids COPY into tenant
   tables), then one `INSERT … SELECT` into a twin of `contact_keys` (the
   natural key lives in a non-partitioned table written in the same
   transaction) and one into a twin of `contacts` (the same partitions,
   indexes, policies and privileges); no classification, rollups, repeats
   or receipt. A floor below 0.5x the raw COPY proves the target out of
   reach of every design that honours those constraints;
2. `POST /api/v1/contacts:batch` with 10 000 records a request
   (pre-serialized JSON) to one uvicorn worker (`callpact serve` in a
   subprocess) vs the COPY of the same 10 000 rows — target ≥ 0.25x;
3. the KPIs of one project for one month (`kpi_report`, in-process, one
   transaction a call) for SL1 T=20, SL3 T=30 without short abandons,
   SL4 T=15 and a 4-hour threshold — target p99 ≤ 10 ms; baseline:
   `count(*)` of that project-month's raw contacts;
4. a whole year of the tenant from raw rows (`raw_sums` over every
   project, then `compute_all`) vs a `count(*)` of the same rows —
   target ≤ 5x;
5. `GET /api/v1/projects/{id}/kpis?from=…&to=…` (one month, default
   granularity) on the same worker with 32 keep-alive connections vs
   `GET /healthz` driven the same way — targets: ≥ 0.35x the requests per
   second, p99 ≤ 20 ms. The load comes from a separate process (this
   module's `loadgen` command: raw asyncio streams, so the client costs far
   less than the server), bounded in time and count, to 127.0.0.1 only.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python -m bench contacts

`BENCH_CONTACTS=200000` makes a smaller world; `BENCH_PARTS=import,load` takes only
some figures (the import always runs: the others read its data).
"""

from __future__ import annotations

import asyncio
import bisect
import json
import math
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
from asyncpg.pgproto.pgproto import UUID as PgUUID
from sqlalchemy import text

from bench.harness import Report, median, percentile, scratch_database
from service.contacts.ingest import ingest_records
from service.contacts.records import ContactRecord
from service.core.config import DatabaseSettings
from service.core.db import CUSTOM_PLANS, Database, planner_settings
from service.kpis.formulas import DEFAULT_TERMS, compute_all
from service.kpis.repository import raw_sums
from service.kpis.schemas import KpiQuery
from service.kpis.service import kpi_report
from service.kpis.sums import KpiSums
from tenants.context import ROLE_PERMISSIONS, TenantContext

ROOT = Path(__file__).resolve().parent.parent

N_CONTACTS = int(os.environ.get("BENCH_CONTACTS", "1000000"))
PROJECTS = 500
CLIENTS = 50
AGENTS = 2_000
AGENTS_PER_PROJECT = 32
YEAR = 2025
DAYS = (date(YEAR + 1, 1, 1) - date(YEAR, 1, 1)).days
ZONES = (
    "UTC",
    "Europe/Istanbul",
    "America/New_York",
    "Asia/Tehran",
    "Asia/Kolkata",
    "America/Los_Angeles",
)
CHUNK = 50_000
HTTP_BATCH = 10_000
HTTP_REQUESTS = int(os.environ.get("BENCH_HTTP_BATCHES", "8"))
REIMPORT_EVERY = 4  # re-import every 4th chunk (all duplicates)
KPI_CALLS = 60
YEAR_ROUNDS = 3
YEAR_BUDGET_S = 45.0  # fewer rounds when one takes long
LOAD_SECONDS = 4.0
LOAD_ROUNDS = 3
LOAD_CONNECTIONS = 32
LOAD_MAX_REQUESTS = 200_000
# Which figures to take (the import always runs: the others read its data), e.g.
# BENCH_PARTS=import,load. Default: all of them.
PARTS = frozenset(
    x.strip()
    for x in os.environ.get("BENCH_PARTS", "import,http,month,year,load").split(",")
    if x.strip()
)
MONTH = 3  # March: New York and Los Angeles change to summer time inside it
SEED = 20250301

COPY_COLUMNS = (
    "tenant_id", "id", "project_id", "client_id", "channel", "external_id", "source",
    "queue_key", "customer_key", "queued_at", "answered_at", "ended_at", "abandoned_at",
    "outcome", "agent_id", "agent_key", "wait_ms", "talk_ms", "hold_ms", "hold_count",
    "acw_ms", "transferred", "resolved_first_contact", "csat", "nps", "sentiment",
    "source_version", "raw_ref", "bucket_start", "local_day",
)  # fmt: skip

_COPY_COLUMN_TYPES = """
  tenant_id uuid, id uuid, project_id uuid, client_id uuid, channel text, external_id text,
  source text, queue_key text, customer_key text, queued_at timestamptz,
  answered_at timestamptz, ended_at timestamptz, abandoned_at timestamptz, outcome text,
  agent_id uuid, agent_key text, wait_ms bigint, talk_ms bigint, hold_ms bigint,
  hold_count int, acw_ms bigint, transferred boolean, resolved_first_contact boolean,
  csat smallint, nps smallint, sentiment real, source_version bigint, raw_ref text,
  bucket_start timestamptz, local_day date
"""

RAW_TABLE = f"""
create table bench_raw_contacts ({_COPY_COLUMN_TYPES},
  ingested_at timestamptz default now(), updated_at timestamptz default now()
)
"""

# The floor (figure 1): twins of `contact_keys` and `contacts`, made from the catalog
# so they follow the migrations: columns, checks, defaults, keys and indexes (LIKE …
# INCLUDING ALL), the same month partitions, row-level security and privileges.
FLOOR_KEYS = "bench_floor_keys"
FLOOR_CONTACTS = "bench_floor_contacts"
FLOOR_STAGE = f"create temp table floor_stage ({_COPY_COLUMN_TYPES}) on commit drop"
FLOOR_INSERT_KEYS = f"""
insert into {FLOOR_KEYS} (tenant_id, project_id, external_id, client_id, contact_id, queued_at,
  source_version, content_hash, customer_key)
select tenant_id, project_id, external_id, client_id, id, queued_at, source_version, 0, customer_key
from floor_stage
"""
FLOOR_INSERT_CONTACTS = (
    f"insert into {FLOOR_CONTACTS} ({', '.join(COPY_COLUMNS)})"
    f" select {', '.join(COPY_COLUMNS)} from floor_stage"
)


# ---- the world: projects, agents and the shape of the traffic ---------------------------


@dataclass(frozen=True, slots=True)
class ProjectSpec:
    index: int
    id: uuid.UUID
    client_id: uuid.UUID
    zone: str
    zone_index: int
    channel: str
    queue_key: str


@dataclass
class World:
    tenant_id: uuid.UUID
    projects: list[ProjectSpec]
    agent_ids: list[uuid.UUID]
    cum_weights: list[float]
    midnights: list[list[int]]  # [zone][day of year] → epoch seconds of local midnight
    local_days: list[date]

    def share(self, index: int) -> float:
        prev = self.cum_weights[index - 1] if index else 0.0
        return (self.cum_weights[index] - prev) / self.cum_weights[-1]


def _world(tenant_id: uuid.UUID) -> World:
    rng = random.Random(SEED)
    clients = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(CLIENTS)]
    projects = [
        ProjectSpec(
            index=i,
            id=uuid.UUID(int=rng.getrandbits(128), version=4),
            client_id=clients[i % CLIENTS],
            zone=ZONES[i % len(ZONES)],
            zone_index=i % len(ZONES),
            channel="voice" if i % 10 < 7 else "chat" if i % 10 < 9 else "email",
            queue_key=f"q-{i:03d}",
        )
        for i in range(PROJECTS)
    ]
    agents = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(AGENTS)]
    # A long tail of project sizes: weight 1/(rank + 5), the biggest ~4 % of the volume.
    cum: list[float] = []
    total = 0.0
    for i in range(PROJECTS):
        total += 1.0 / (i + 5)
        cum.append(total)
    first = date(YEAR, 1, 1)
    local_days = [first + timedelta(days=d) for d in range(DAYS)]
    midnights = [
        [int(datetime.combine(d, datetime.min.time(), ZoneInfo(z)).timestamp()) for d in local_days]
        for z in ZONES
    ]
    return World(tenant_id, projects, agents, cum, midnights, local_days)


def _pool(rng: random.Random, draw: Callable[[], float], size: int = 4096) -> list[float]:
    """Whole seconds (as floats, the importers' precision) drawn once, indexed per row."""
    return [float(max(0, int(draw()))) for _ in range(size)]


@dataclass
class Pools:
    seconds_of_day: list[int]
    answered_wait: dict[str, list[float]]
    abandoned_wait: dict[str, list[float]]
    exit_wait: list[float]
    talk: dict[str, list[float]]
    hold: list[float]
    acw: list[float]


def _pools() -> Pools:
    rng = random.Random(SEED + 1)
    # Calls by local hour: a working-day curve, quiet at night, nothing after 23:00
    # (so that the local day of every contact is the day it was drawn for, DST days included).
    by_hour = [1, 1, 1, 1, 1, 2, 4, 8, 14, 18, 20, 19, 16, 17, 19, 18, 16, 13, 10, 8, 6, 4, 2, 0]
    hours = rng.choices(range(24), weights=by_hour, k=8192)
    seconds_of_day = [h * 3600 + rng.randrange(3600) for h in hours]
    lognorm, expo = rng.lognormvariate, rng.expovariate

    def answered_live() -> float:
        u = rng.random()
        if u < 0.55:
            return expo(1 / 6)
        if u < 0.85:
            return 10 + expo(1 / 20)
        return min(3600.0, lognorm(math.log(90), 0.9))

    def abandoned_live() -> float:
        if rng.random() < 0.3:
            return rng.randrange(6)  # short abandons
        return min(1800.0, 6 + expo(1 / 45))

    def email_wait() -> float:
        return min(3 * 86400.0, lognorm(math.log(5400), 1.0))

    answered = {"voice": _pool(rng, answered_live), "email": _pool(rng, email_wait)}
    answered["chat"] = answered["voice"]
    abandoned = {"voice": _pool(rng, abandoned_live), "email": _pool(rng, email_wait)}
    abandoned["chat"] = abandoned["voice"]
    return Pools(
        seconds_of_day=seconds_of_day,
        answered_wait=answered,
        abandoned_wait=abandoned,
        exit_wait=_pool(rng, lambda: 5 + expo(1 / 60)),
        talk={
            "voice": _pool(rng, lambda: 5 + lognorm(math.log(200), 0.6)),
            "chat": _pool(rng, lambda: 10 + lognorm(math.log(420), 0.5)),
            "email": _pool(rng, lambda: 30 + lognorm(math.log(300), 0.7)),
        },
        hold=_pool(rng, lambda: 1 + expo(1 / 50)),
        acw=_pool(rng, lambda: expo(1 / 25)),
    )


# ---- chunks of contacts ----------------------------------------------------------------


def _chunk(
    world: World,
    pools: Pools,
    start: int,
    n: int,
    prefix: str,
    *,
    of: int,
    days: tuple[int, int] = (0, DAYS),
) -> tuple[list[ContactRecord], list[tuple[Any, ...]]]:
    """Contacts `start … start+n-1` of `of` spread in time order over the local
    `days` (as exports and integrations deliver them: a batch covers a stretch of
    days, every project of the tenant): the `ContactRecord`s an importer hands to
    ingestion and the same rows as tuples of the contacts' columns (for COPY).
    Deterministic per (prefix, start): the same call gives the same contacts."""
    rng = random.Random(f"{SEED}:{prefix}:{start}")
    rand, bits = rng.random, rng.getrandbits
    fts = datetime.fromtimestamp
    cum, total = world.cum_weights, world.cum_weights[-1]
    projects, agents = world.projects, world.agent_ids
    midnights, local_days = world.midnights, world.local_days
    sod = pools.seconds_of_day
    day0, per_contact = days[0], (days[1] - days[0]) / of
    exit_wait, hold_pool, acw_pool = pools.exit_wait, pools.hold, pools.acw
    tenant = PgUUID(world.tenant_id.bytes)
    pg_projects = [(PgUUID(p.id.bytes), PgUUID(p.client_id.bytes)) for p in projects]
    pg_agents = [PgUUID(a.bytes) for a in agents]
    id_bytes = rng.randbytes(16 * n)
    out_records: list[ContactRecord] = []
    out_rows: list[tuple[Any, ...]] = []
    add_record, add_row = out_records.append, out_rows.append
    for k in range(n):
        idx = start + k
        p = bisect.bisect(cum, rand() * total)
        if p >= PROJECTS:
            p = PROJECTS - 1
        spec = projects[p]
        channel = spec.channel
        day = day0 + int((idx + rand()) * per_contact)
        ts = midnights[spec.zone_index][day] + sod[bits(13)]
        queued = fts(ts, UTC)
        u = rand()
        answered_at = ended_at = abandoned_at = None
        talk = hold = acw = None
        hold_count = None
        agent_key = None
        agent_id = None
        transferred = rfc = None
        if u < 0.85:
            outcome = "answered"
            wait = pools.answered_wait[channel][bits(12)]
            talk = pools.talk[channel][bits(12)]
            acw = acw_pool[bits(12)]
            if rand() < 0.25:
                hold = hold_pool[bits(12)]
                hold_count = 1 if rand() < 0.8 else 2
            else:
                hold, hold_count = 0.0, 0
            answered_at = fts(ts + wait, UTC)
            ended_at = fts(ts + wait + talk + hold, UTC)
            a = (p * 7 + bits(5)) % AGENTS
            if rand() < 0.01:
                agent_key = f"Agent/{9000 + a % 5}"  # five new hires nobody mapped yet
            else:
                agent_key = f"Agent/{a}"
                agent_id = pg_agents[a]
            transferred = rand() < 0.06
            v = rand()
            rfc = None if v < 0.3 else v < 0.85
        elif u < 0.95:
            outcome = "abandoned"
            wait = pools.abandoned_wait[channel][bits(12)]
            abandoned_at = ended_at = fts(ts + wait, UTC)
        else:
            outcome = (
                "timeout"
                if u < 0.965
                else "overflow"
                if u < 0.98
                else "exit_key"
                if u < 0.99
                else "transferred_out"
                if u < 0.997
                else "exit_empty"
            )
            wait = 300.0 if outcome == "timeout" else exit_wait[bits(12)]
            ended_at = fts(ts + wait, UTC)
        csat = nps = None
        if outcome != "exit_empty":
            s = rand()
            if s < 0.12:
                c = rand()
                csat = 1 if c < 0.05 else 2 if c < 0.1 else 3 if c < 0.2 else 4 if c < 0.5 else 5
            elif s < 0.2:
                nps = min(10, int(11 * rand() ** 0.45))
        external_id = f"{prefix}{idx}"
        customer_key = f"cust-{bits(18)}"
        raw_ref = f"import-{YEAR}.csv:#{idx}"
        wait_ms = int(wait) * 1000
        add_record(
            ContactRecord(
                source="csv:bench",
                queue_key=spec.queue_key,
                external_id=external_id,
                channel=channel,  # type: ignore[arg-type]
                queued_at=queued,
                outcome=outcome,  # type: ignore[arg-type]
                raw_ref=raw_ref,
                customer_key=customer_key,
                answered_at=answered_at,
                ended_at=ended_at,
                abandoned_at=abandoned_at,
                agent_key=agent_key,
                wait_s=wait,
                talk_s=talk,
                hold_s=hold,
                hold_count=hold_count,
                acw_s=acw,
                transferred=transferred,
                resolved_first_contact=rfc,
                csat=csat,
                nps=nps,
            )
        )
        pid, cid = pg_projects[p]
        add_row(
            (
                tenant,
                PgUUID(id_bytes[16 * k : 16 * k + 16]),
                pid,
                cid,
                channel,
                external_id,
                "csv:bench",
                spec.queue_key,
                customer_key,
                queued,
                answered_at,
                ended_at,
                abandoned_at,
                outcome,
                agent_id,
                agent_key,
                wait_ms,
                None if talk is None else int(talk) * 1000,
                None if hold is None else int(hold) * 1000,
                hold_count,
                None if acw is None else int(acw) * 1000,
                transferred,
                rfc,
                csat,
                nps,
                None,
                None,
                raw_ref,
                fts(ts - ts % 900, UTC),
                local_days[day],
            )
        )
    return out_records, out_rows


def _json_body(records: Sequence[Any]) -> bytes:
    """A batch body as an integration sends it (only the fields a record has)."""
    out = []
    for r in records:
        item: dict[str, Any] = {
            "external_id": r.external_id,
            "queue_key": r.queue_key,
            "channel": r.channel,
            "source": r.source,
            "queued_at": r.queued_at.isoformat(),
            "outcome": r.outcome,
            "customer_key": r.customer_key,
            "wait_s": r.wait_s,
        }
        for name in ("answered_at", "ended_at", "abandoned_at"):
            value = getattr(r, name)
            if value is not None:
                item[name] = value.isoformat()
        for name in (
            "agent_key", "talk_s", "hold_s", "hold_count", "acw_s", "transferred",
            "resolved_first_contact", "csat", "nps",
        ):  # fmt: skip
            value = getattr(r, name)
            if value is not None:
                item[name] = value
        out.append(item)
    return json.dumps({"records": out}, separators=(",", ":")).encode()


# ---- the API server and the load generator ---------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One uvicorn worker (`callpact serve`) on the scratch database, in a subprocess."""

    def __init__(self, settings: DatabaseSettings, workdir: Path) -> None:
        self.port = _free_port()
        self.admin_token = secrets.token_urlsafe(32)
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(
                ("DATABASE_", "REDIS_", "SMTP_", "API_", "CALLPACT_", "AUTH_", "LOG_")
            )
        }
        env.update(
            DATABASE_URL=settings.owner_dsn(),
            DATABASE_APP_ROLE=settings.app_role,
            DATABASE_ADMIN_ROLE=settings.admin_role,
            DATABASE_STATEMENT_TIMEOUT_MS=str(settings.statement_timeout_ms),
            CALLPACT_VAR_DIR=str(workdir),
            AUTH_PLATFORM_ADMIN_TOKEN=self.admin_token,
            AUTH_SECRET_KEY=secrets.token_urlsafe(32),
            API_PUBLIC_URL=self.base,
        )
        if os.environ.get("REDIS_URL"):
            env["REDIS_URL"] = os.environ["REDIS_URL"]
        self.log_path = workdir / "server.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service.cli",
                "serve",
                *("--host", "127.0.0.1"),
                *("--port", str(self.port)),
            ],
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    async def ready(self, http: httpx.AsyncClient) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the API exited early:\n{self.tail()}")
            try:
                response = await http.get(f"{self.base}/readyz")
                if response.status_code == 200:
                    return
            except httpx.TransportError:  # not listening yet
                pass
            await asyncio.sleep(0.3)
        raise RuntimeError(f"the API never became ready:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        self._log.flush()
        logged = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(logged[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


async def _loadgen(spec: dict[str, Any]) -> dict[str, Any]:
    """Closed-loop load: `connections` keep-alive HTTP/1.1 connections, each sending
    the next request as soon as the previous answer is read, for `seconds` (after
    `warmup` seconds not counted) or at most `max_requests` requests."""
    host, port = "127.0.0.1", int(spec["port"])
    auth = f"Authorization: Bearer {spec['token']}\r\n" if spec.get("token") else ""
    requests = [
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}Accept: application/json\r\n\r\n".encode()
        for path in spec["paths"]
    ]
    connections = int(spec["connections"])
    started = time.perf_counter()
    measure_from = started + float(spec["warmup"])
    stop_at = measure_from + float(spec["seconds"])
    budget = [int(spec["max_requests"])]
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    last_done = [measure_from]

    once = bool(spec.get("once"))  # every path exactly once, split between the connections

    async def worker(offset: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        i = offset
        try:
            while budget[0] > 0:
                begin = time.perf_counter()
                if begin >= stop_at or (once and i >= len(requests)):
                    break
                budget[0] -= 1
                writer.write(requests[i % len(requests)])
                i += connections if once else 1
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                at = head.lower().find(b"\r\ncontent-length:")
                if at < 0:
                    raise RuntimeError(f"no content-length: {head[:200]!r}")
                length = int(head[at + 17 : head.index(b"\r\n", at + 2)])
                await reader.readexactly(length)
                done = time.perf_counter()
                if begin >= measure_from:
                    latencies.append(done - begin)
                    statuses[status] += 1
                    last_done[0] = max(last_done[0], done)
        finally:
            writer.close()

    await asyncio.gather(*(worker(j if once else j * 7) for j in range(connections)))
    latencies.sort()
    n = len(latencies)
    elapsed = last_done[0] - measure_from
    return {
        "requests": n,
        "seconds": elapsed,
        "rps": n / elapsed if elapsed > 0 else 0.0,
        "p50_ms": latencies[n // 2] * 1000 if n else None,
        "p99_ms": latencies[min(n - 1, round(0.99 * (n - 1)))] * 1000 if n else None,
        "statuses": {str(k): v for k, v in statuses.items()},
    }


async def _drive(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the load generator in its own process; its JSON result."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
        path = f.name
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.bench_contacts",
            "loadgen",
            path,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        timeout = float(spec["warmup"]) + float(spec["seconds"]) + 120
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        os.unlink(path)
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed: {err.decode(errors='replace')[-2000:]}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


# ---- the run ---------------------------------------------------------------------------


async def run(report: Report) -> None:
    async with scratch_database() as settings:
        db = Database(settings)
        workdir = Path(tempfile.mkdtemp(prefix="bench-contacts-"))
        server = Server(settings, workdir)
        http = httpx.AsyncClient(timeout=600)
        owner = await asyncpg.connect(settings.owner_dsn())
        try:
            await server.ready(http)
            bench = await Bench.start(report, db, owner, server, http)
            await bench.bulk_import()
            if "http" in PARTS:
                await bench.http_batches()
            await owner.execute("vacuum analyze")
            if "month" in PARTS:
                await bench.project_month()
            if "year" in PARTS:
                await bench.tenant_year()
            if "load" in PARTS:
                await bench.under_load()
        finally:
            await owner.close()
            await http.aclose()
            server.stop()
            await db.dispose()
            shutil.rmtree(workdir, ignore_errors=True)


async def _seed(db: Database, world: World) -> None:
    """Clients, projects (with their queue keys) and the agent pool, as the admin role."""
    async with db.admin_transaction() as admin:
        clients = sorted({(p.client_id, p.index % CLIENTS) for p in world.projects})
        await admin.execute(
            text("insert into clients (tenant_id, id, name) values (:t, :id, :n)"),
            [{"t": world.tenant_id, "id": c, "n": f"Client {i}"} for c, i in clients],
        )
        await admin.execute(
            text(
                "insert into projects (tenant_id, id, client_id, name, channels, time_zone,"
                " queue_keys) values (:t, :id, :c, :n, :ch, :tz, :q)"
            ),
            [
                {
                    "t": world.tenant_id,
                    "id": p.id,
                    "c": p.client_id,
                    "n": f"Project {p.index}",
                    "ch": [p.channel],
                    "tz": p.zone,
                    "q": [p.queue_key],
                }
                for p in world.projects
            ],
        )
        await admin.execute(
            text("insert into agents (tenant_id, id, name) values (:t, :id, :n)"),
            [
                {"t": world.tenant_id, "id": a, "n": f"Agent {i}"}
                for i, a in enumerate(world.agent_ids)
            ],
        )
        await admin.execute(
            text(
                "insert into agent_external_ids (tenant_id, agent_id, system, external_id)"
                " values (:t, :a, 'asterisk', :e)"
            ),
            [
                {"t": world.tenant_id, "a": a, "e": f"Agent/{i}"}
                for i, a in enumerate(world.agent_ids)
            ],
        )


async def _create_floor_tables(owner: asyncpg.Connection, app_role: str) -> None:
    """Twins of `contact_keys` and `contacts` (`FLOOR_KEYS`, `FLOOR_CONTACTS`) as the
    owner makes them: LIKE … INCLUDING ALL, `contacts`' partitions, and what the
    catalog says of each original: row-level security (enabled, forced), its policies
    and the application role's privileges. Not the change-notification trigger: one
    notification a statement, and it would tell the API's caches of changes there aren't."""
    parts = await owner.fetch(
        "select c.relname, pg_get_expr(c.relpartbound, c.oid) as bound from pg_inherits i"
        " join pg_class c on c.oid = i.inhrelid where i.inhparent = 'contacts'::regclass"
        " order by c.relname"
    )
    twins = {"contact_keys": FLOOR_KEYS, "contacts": FLOOR_CONTACTS}
    for part in parts:
        twins[part["relname"]] = FLOOR_CONTACTS + part["relname"].removeprefix("contacts")
    sql = [
        f"create table {FLOOR_KEYS} (like contact_keys including all)",
        f"create table {FLOOR_CONTACTS} (like contacts including all)"
        " partition by range (queued_at)",
        *(
            f"create table {twins[part['relname']]} partition of {FLOOR_CONTACTS} {part['bound']}"
            for part in parts
        ),
    ]
    names = list(twins)
    for rel in await owner.fetch(
        "select relname, relrowsecurity, relforcerowsecurity from pg_class"
        " where relnamespace = 'public'::regnamespace and relname = any($1::text[])",
        names,
    ):
        if rel["relrowsecurity"]:
            sql.append(f"alter table {twins[rel['relname']]} enable row level security")
        if rel["relforcerowsecurity"]:
            sql.append(f"alter table {twins[rel['relname']]} force row level security")
    for pol in await owner.fetch(
        "select tablename, policyname, permissive, roles, cmd, qual, with_check from pg_policies"
        " where schemaname = 'public' and tablename = any($1::text[])",
        names,
    ):
        roles = ", ".join(r if r == "public" else f'"{r}"' for r in pol["roles"])
        sql.append(
            f'create policy "{pol["policyname"]}" on {twins[pol["tablename"]]}'
            f" as {pol['permissive']} for {pol['cmd']} to {roles}"
            + (f" using ({pol['qual']})" if pol["qual"] is not None else "")
            + (f" with check ({pol['with_check']})" if pol["with_check"] is not None else "")
        )
    granted: dict[str, list[str]] = {name: [] for name in names}
    for grant in await owner.fetch(
        "select table_name, privilege_type from information_schema.table_privileges"
        " where grantee = $1 and table_schema = 'public' and table_name = any($2::text[])",
        app_role,
        names,
    ):
        granted[grant["table_name"]].append(grant["privilege_type"])
    for name, privileges in granted.items():
        # The default privileges of migration 0001 gave the twins more than some originals have.
        sql.append(f'revoke all on {twins[name]} from "{app_role}"')
        if privileges:
            sql.append(f'grant {", ".join(privileges)} on {twins[name]} to "{app_role}"')
    async with owner.transaction():
        await owner.execute(";\n".join(sql))


def _month_bounds(spec: ProjectSpec) -> tuple[datetime, datetime]:
    zone = ZoneInfo(spec.zone)
    nxt = date(YEAR + (MONTH == 12), MONTH % 12 + 1, 1)
    return (
        datetime.combine(date(YEAR, MONTH, 1), datetime.min.time(), zone),
        datetime.combine(nxt, datetime.min.time(), zone),
    )


@dataclass
class Bench:
    report: Report
    db: Database
    owner: asyncpg.Connection
    server: Server
    http: httpx.AsyncClient
    world: World
    pools: Pools
    ctx: TenantContext
    slug: str
    email: str
    password: str

    @classmethod
    async def start(
        cls,
        report: Report,
        db: Database,
        owner: asyncpg.Connection,
        server: Server,
        http: httpx.AsyncClient,
    ) -> Bench:
        """The tenant through the platform API (the real path), the rest as the admin role."""
        slug = f"bench-{secrets.token_hex(4)}"
        email = f"admin@{slug}.example.com"
        password = secrets.token_urlsafe(16)
        created = await http.post(
            f"{server.base}/api/v1/platform/tenants",
            json={
                "slug": slug,
                "name": "Bench BPO",
                "admin": {"email": email, "password": password},
            },
            headers={"Authorization": f"Bearer {server.admin_token}"},
        )
        assert created.status_code == 201, created.text
        tenant_id = uuid.UUID(created.json()["tenant"]["id"])
        world = _world(tenant_id)
        await _seed(db, world)
        ctx = TenantContext(
            tenant_id=tenant_id,
            actor_type="user",
            actor_id=uuid.UUID(created.json()["admin_user_id"]),
            permissions=ROLE_PERMISSIONS["tenant_admin"],
            role="tenant_admin",
        )
        await owner.execute(RAW_TABLE)
        report.note(
            f"{N_CONTACTS:,} contacts, {PROJECTS} projects in {len(ZONES)} zones, {YEAR};"
            f" the biggest project has {world.share(0):.1%} of the volume"
        )
        return cls(report, db, owner, server, http, world, _pools(), ctx, slug, email, password)

    async def login(self) -> str:
        response = await self.http.post(
            f"{self.server.base}/api/v1/auth/token",
            json={"tenant": self.slug, "email": self.email, "password": self.password},
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    async def copy(self, rows: list[tuple[Any, ...]]) -> float:
        """Seconds to COPY `rows` into the unconstrained table (emptied afterwards, untimed)."""
        started = time.perf_counter()
        async with self.owner.transaction():
            await self.owner.copy_records_to_table(
                "bench_raw_contacts", records=rows, columns=COPY_COLUMNS
            )
        elapsed = time.perf_counter() - started
        await self.owner.execute("truncate bench_raw_contacts")
        return elapsed

    async def ingest(self, records: list[Any], expect: str) -> float:
        """Seconds to ingest `records` in one transaction under the tenant's scope."""
        started = time.perf_counter()
        async with self.db.transaction(self.ctx.db_scope()) as session:
            receipt = await ingest_records(session, self.ctx.tenant_id, enumerate(records, 1))
        elapsed = time.perf_counter() - started
        got = receipt.accepted if expect == "new" else receipt.duplicates
        assert got == len(records), receipt.as_dict(max_rejected=5)
        return elapsed

    async def floor(self, rows: list[tuple[Any, ...]]) -> float:
        """Seconds for the least any idempotent import does under the issue's constraints,
        in one transaction under the tenant's scope: COPY into a temporary staging table
        (row-level security forbids COPY into tenant tables), the natural keys into the
        non-partitioned keys' twin and the rows into the partitioned contacts' twin, one
        INSERT … SELECT each. Nothing else: no classification, rollups, repeats, receipt."""
        started = time.perf_counter()
        async with self.db.transaction(self.ctx.db_scope()) as session:
            conn = await session.connection()
            apg = (await conn.get_raw_connection()).driver_connection
            assert apg is not None
            await apg.execute(FLOOR_STAGE)
            await apg.copy_records_to_table("floor_stage", records=rows, columns=COPY_COLUMNS)
            keys = await apg.execute(FLOOR_INSERT_KEYS)
            contacts = await apg.execute(FLOOR_INSERT_CONTACTS)
        elapsed = time.perf_counter() - started
        assert keys == contacts == f"INSERT 0 {len(rows)}", (keys, contacts)
        return elapsed

    # ---- 1. bulk import --------------------------------------------------------------

    async def bulk_import(self) -> None:
        n = N_CONTACTS
        chunks = math.ceil(n / CHUNK)
        gen_s = copy_total = import_total = floor_total = 0.0
        copy_rates, import_rates, again_rates, ratios = [], [], [], []
        floor_rates, floor_ratios = [], []
        await _create_floor_tables(self.owner, self.db.settings.app_role)
        for c in range(chunks):
            start = c * CHUNK
            size = min(CHUNK, n - start)
            t0 = time.perf_counter()
            records, rows = _chunk(self.world, self.pools, start, size, "c", of=n)
            gen_s += time.perf_counter() - t0
            # Alternate the order, so none always meets a warmer cache.
            if c % 2 == 0:
                copy_s = await self.copy(rows)
                floor_s = await self.floor(rows)
                import_s = await self.ingest(records, "new")
            else:
                import_s = await self.ingest(records, "new")
                floor_s = await self.floor(rows)
                copy_s = await self.copy(rows)
            copy_total += copy_s
            import_total += import_s
            floor_total += floor_s
            copy_rates.append(size / copy_s)
            import_rates.append(size / import_s)
            floor_rates.append(size / floor_s)
            ratios.append(copy_s / import_s)
            floor_ratios.append(copy_s / floor_s)
            line = (
                f"    chunk {c + 1}/{chunks}: COPY {size / copy_s:,.0f}/s,"
                f" floor {size / floor_s:,.0f}/s, import {size / import_s:,.0f}/s"
            )
            if c % REIMPORT_EVERY == 0:
                again_s = await self.ingest(records, "duplicate")
                again_rates.append(size / again_s)
                line += f", again {size / again_s:,.0f}/s"
            print(line, flush=True)
        copy_rate, ratio = median(copy_rates), median(ratios)
        self.report.add("raw COPY, unconstrained table (median of chunks)", copy_rate, "rows/s")
        self.report.add(
            f"bulk import, {CHUNK:,} a transaction (median of {chunks} chunks)",
            median(import_rates),
            "rows/s",
            baseline_name="raw COPY",
            baseline=copy_rate,
            ratio=ratio,
            target=">= 0.5x raw COPY",
            ok=ratio >= 0.5,
        )
        self.report.add(
            "floor: stage + key insert + contacts insert, no checks (median of chunks)",
            median(floor_rates),
            "rows/s",
            baseline_name="raw COPY",
            baseline=copy_rate,
            ratio=median(floor_ratios),
        )
        self.report.add(
            f"re-import, all duplicates (median of {len(again_rates)} chunks)",
            median(again_rates),
            "rows/s",
            baseline_name="raw COPY",
            baseline=copy_rate,
        )
        self.report.note(
            f"bulk totals: COPY {copy_total:.1f} s, floor {floor_total:.1f} s,"
            f" import {import_total:.1f} s; generating the data {gen_s:.1f} s (untimed)"
        )
        # The other figures read `contacts`: the twins' data would only crowd the cache.
        await self.owner.execute(f"drop table {FLOOR_CONTACTS}, {FLOOR_KEYS}")

    # ---- 2. JSON batches over HTTP ---------------------------------------------------

    async def http_batches(self) -> None:
        bodies, batches = [], []
        for j in range(HTTP_REQUESTS):
            records, rows = _chunk(
                self.world,
                self.pools,
                j * HTTP_BATCH,
                HTTP_BATCH,
                "h",
                of=HTTP_REQUESTS * HTTP_BATCH,
                days=(DAYS - 7, DAYS),  # live data: the year's last week, on top of the import
            )
            bodies.append(_json_body(records))
            batches.append(rows)
        headers = {
            "Authorization": f"Bearer {await self.login()}",
            "Content-Type": "application/json",
        }
        url = f"{self.server.base}/api/v1/contacts:batch"
        post_rates, copy_rates, ratios = [], [], []
        for j, (body, rows) in enumerate(zip(bodies, batches, strict=True)):
            if j % 2:
                copy_s = await self.copy(rows)
            started = time.perf_counter()
            response = await self.http.post(url, content=body, headers=headers)
            post_s = time.perf_counter() - started
            assert response.status_code == 200, response.text[:2000]
            assert response.json()["accepted"] == HTTP_BATCH, response.text[:2000]
            if not j % 2:
                copy_s = await self.copy(rows)
            post_rates.append(HTTP_BATCH / post_s)
            copy_rates.append(HTTP_BATCH / copy_s)
            ratios.append(copy_s / post_s)
        ratio = median(ratios)
        self.report.add(
            f"POST contacts:batch, {HTTP_BATCH:,} a request, 1 worker (median of {HTTP_REQUESTS})",
            median(post_rates),
            "rows/s",
            baseline_name=f"raw COPY of the same {HTTP_BATCH:,}",
            baseline=median(copy_rates),
            ratio=ratio,
            target=">= 0.25x raw COPY",
            ok=ratio >= 0.25,
        )
        self.report.note(
            f"a batch body is {len(bodies[0]) / 1e6:.1f} MB of JSON ({HTTP_BATCH:,} records)"
        )

    # ---- 3. one project-month in-process ---------------------------------------------

    async def project_month(self) -> None:
        biggest = self.world.projects[0]
        email = next(p for p in self.world.projects if p.channel == "email")
        cases: list[tuple[str, ProjectSpec, dict[str, Any], bool]] = [
            ("SL1 T=20", biggest, {"sl": "SL1", "t": 20}, True),
            ("SL3 T=30 short abandons kept", biggest, {"sl": "SL3", "t": 30, "short_abandon_s": 0}, True),
            ("SL4 T=15", biggest, {"sl": "SL4", "t": 15}, True),
            ("SL1 T=4 h, e-mail project", email, {"sl": "SL1", "t": 4 * 3600}, True),
            ("SL1 T=20 by day (31 buckets)", biggest, {"sl": "SL1", "t": 20, "granularity": "day"}, False),
        ]  # fmt: skip
        scope = self.ctx.db_scope()
        first, after = date(YEAR, MONTH, 1), date(YEAR + (MONTH == 12), MONTH % 12 + 1, 1)

        async def report(spec: ProjectSpec, variant: dict[str, Any]) -> None:
            q = KpiQuery(**{"start": first, "end": after, "granularity": "month", **variant})
            async with self.db.transaction(scope) as session:
                out = await kpi_report(session, self.ctx, "project", spec.id, q)
            assert out.total["offered"].value, out.total["offered"]

        async def count(spec: ProjectSpec) -> int:
            lo, hi = _month_bounds(spec)
            async with self.db.transaction(scope) as session:
                got = await session.execute(
                    text(
                        "select count(*) from contacts where tenant_id = :t and project_id = :p"
                        " and queued_at >= :s and queued_at < :e"
                    ),
                    {"t": self.ctx.tenant_id, "p": spec.id, "s": lo, "e": hi},
                )
                return int(got.scalar_one())

        for _, spec, variant, _ in cases:  # warm up
            for _ in range(5):
                await report(spec, variant)
                await count(spec)
        took: dict[str, list[float]] = {name: [] for name, *_ in cases}
        counted: dict[str, list[float]] = {name: [] for name, *_ in cases}
        for _ in range(KPI_CALLS):
            for name, spec, variant, _ in cases:
                t0 = time.perf_counter()
                await report(spec, variant)
                t1 = time.perf_counter()
                await count(spec)
                took[name].append(t1 - t0)
                counted[name].append(time.perf_counter() - t1)
        for name, spec, _, targeted in cases:
            rows = await count(spec)
            self.report.add(
                f"project-month KPIs, {name}: p50 ({rows:,} contacts)",
                percentile(took[name], 50) * 1000,
                "ms",
                baseline_name="count(*) p50",
                baseline=percentile(counted[name], 50) * 1000,
            )
            p99 = percentile(took[name], 99) * 1000
            self.report.add(
                f"project-month KPIs, {name}: p99 of {KPI_CALLS}",
                p99,
                "ms",
                baseline_name="count(*) p99",
                baseline=percentile(counted[name], 99) * 1000,
                target="<= 10 ms" if targeted else None,
                ok=p99 <= 10 if targeted else None,
            )

    # ---- 4. a tenant's year from raw rows --------------------------------------------

    async def tenant_year(self) -> None:
        ids = [p.id for p in self.world.projects]
        y0, y1 = datetime(YEAR, 1, 1, tzinfo=UTC), datetime(YEAR + 1, 1, 1, tzinfo=UTC)
        scope, tenant = self.ctx.db_scope(), self.ctx.tenant_id

        async def year() -> int:
            async with self.db.transaction(scope) as session:
                buckets = await raw_sums(session, tenant, ids, y0, y1, per_interval=False)
            values = compute_all(KpiSums.merge(list(buckets.values())), DEFAULT_TERMS)
            return int(values["offered"].value or 0)

        async def count() -> int:
            # Planned for its ids, as the year's own statement (see service.core.db.CUSTOM_PLANS).
            async with (
                self.db.transaction(scope) as session,
                planner_settings(session, plan_cache_mode=CUSTOM_PLANS),
            ):
                got = await session.execute(
                    text(
                        "select count(*) from contacts where tenant_id = :t"
                        " and project_id = any(:p) and queued_at >= :s and queued_at < :e"
                    ),
                    {"t": tenant, "p": ids, "s": y0, "e": y1},
                )
                return int(got.scalar_one())

        rows = await count()  # also warms the cache for both
        took: list[float] = []
        counted: list[float] = []
        spent = 0.0
        while len(took) < YEAR_ROUNDS and (not took or spent < YEAR_BUDGET_S):
            t0 = time.perf_counter()
            await count()
            t1 = time.perf_counter()
            offered = await year()
            t2 = time.perf_counter()
            counted.append(t1 - t0)
            took.append(t2 - t1)
            spent += t2 - t0
        t0 = time.perf_counter()
        await count()
        counted.append(time.perf_counter() - t0)
        ratio = median(took) / median(counted)
        self.report.add(
            f"tenant year from raw rows ({rows:,} contacts, {offered:,} offered; median of {len(took)})",
            median(took) * 1000,
            "ms",
            baseline_name="count(*) same rows",
            baseline=median(counted) * 1000,
            target="<= 5x count(*)",
            ok=ratio <= 5,
        )

    # ---- 5. the KPI route under load -------------------------------------------------

    async def under_load(self) -> None:
        token = await self.login()
        paths = [
            f"/api/v1/projects/{p.id}/kpis?from={YEAR}-{m:02d}-01&to="
            + (f"{YEAR}-{m + 1:02d}-01" if m < 12 else f"{YEAR + 1}-01-01")
            for p in self.world.projects[:40]
            for m in range(1, 13)
        ]
        random.Random(SEED).shuffle(paths)
        probe = await self.http.get(
            f"{self.server.base}{paths[0]}", headers={"Authorization": f"Bearer {token}"}
        )
        assert probe.status_code == 200, probe.text[:2000]
        spec = {
            "port": self.server.port,
            "token": token,
            "connections": LOAD_CONNECTIONS,
            "warmup": 1.0,
            "seconds": LOAD_SECONDS,
            "max_requests": LOAD_MAX_REQUESTS,
        }
        # The first read of each project-month computes it (the answer cache is empty):
        # every path once, then the rounds read what the cache holds, as dashboards do.
        cold = await _drive({**spec, "paths": paths, "once": True, "warmup": 0, "seconds": 120})
        assert set(cold["statuses"]) == {"200"}, cold
        assert cold["requests"] == len(paths), cold
        self.report.add(
            f"GET project KPIs, first read of each of {len(paths)} project-months (computed),"
            f" {LOAD_CONNECTIONS} connections: p50",
            cold["p50_ms"],
            "ms",
            baseline_name="p99",
            baseline=cold["p99_ms"],
        )
        hello: list[dict[str, Any]] = []
        route: list[dict[str, Any]] = []
        for _ in range(LOAD_ROUNDS):
            hello.append(await _drive({**spec, "paths": ["/healthz"]}))
            route.append(await _drive({**spec, "paths": paths}))
        for result in hello + route:
            assert set(result["statuses"]) == {"200"}, result
        hello_rps = median([r["rps"] for r in hello])
        route_rps = median([r["rps"] for r in route])
        self.report.add(
            f"GET project KPIs (a month by day), {LOAD_CONNECTIONS} connections, 1 worker",
            route_rps,
            "req/s",
            baseline_name="GET /healthz",
            baseline=hello_rps,
            target=">= 0.35x /healthz",
            ok=route_rps >= 0.35 * hello_rps,
        )
        route_p99 = median([r["p99_ms"] for r in route])
        self.report.add(
            f"GET project KPIs, {LOAD_CONNECTIONS} connections: p99 (median of {LOAD_ROUNDS} rounds)",
            route_p99,
            "ms",
            baseline_name="/healthz p99",
            baseline=median([r["p99_ms"] for r in hello]),
            target="<= 20 ms",
            ok=route_p99 <= 20,
        )
        scraped = (await self.http.get(f"{self.server.base}/metrics")).text
        counts = {
            line.split("{")[0]: float(line.rsplit(" ", 1)[1])
            for line in scraped.splitlines()
            if line.startswith(("callpact_cache_hits_total", "callpact_cache_misses_total"))
            and 'cache="kpi_answers"' in line
        }
        self.report.note(
            f"KPI answer cache after the load: {counts.get('callpact_cache_hits_total', 0):,.0f} hits,"
            f" {counts.get('callpact_cache_misses_total', 0):,.0f} misses (computed answers);"
            f" the first reads: {cold['rps']:.0f} req/s, p50/p99 {cold['p50_ms']:.1f}/{cold['p99_ms']:.1f} ms"
        )
        self.report.note(
            f"KPI route: {len(paths)} project-months of the 40 biggest projects in turn, an answer"
            f" ~{len(probe.content) / 1000:.0f} kB; rounds of {LOAD_SECONDS:.0f} s (req/s,"
            " p50/p99 ms): healthz "
            + ", ".join(f"{r['rps']:.0f} {r['p50_ms']:.1f}/{r['p99_ms']:.1f}" for r in hello)
            + "; kpis "
            + ", ".join(f"{r['rps']:.0f} {r['p50_ms']:.1f}/{r['p99_ms']:.1f}" for r in route)
        )


def _main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[0] != "loadgen":
        raise SystemExit("usage: python -m bench.bench_contacts loadgen SPEC.json")
    spec = json.loads(Path(argv[1]).read_text())
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(_loadgen(spec))
    else:
        result = uvloop.run(_loadgen(spec))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    _main(sys.argv[1:])
