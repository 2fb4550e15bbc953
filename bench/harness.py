"""What every benchmark shares: the report table and a scratch database.

A benchmark module is `bench/bench_<name>.py` with `async def run(report:
Report) -> None`. It records figures with `report.add(...)`; each figure
names the baseline it is compared with (measured in the same run) and,
when there is one, its target.

The scratch database: with `DATABASE_URL` set, a fresh database on that
server (the URL's role must be able to create databases and roles);
otherwise an embedded PostgreSQL in `var/bench-pg`. It is migrated to head
with its own application and admin roles, and dropped with them afterwards
(`BENCH_KEEP=1` keeps them and prints the database's URL, for looking at
plans on the benchmark's data; drop it by hand when done).
"""

from __future__ import annotations

import os
import secrets
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from service.core.config import DatabaseSettings
from service.core.embedded import EmbeddedPostgres
from service.core.migrate import upgrade_async

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Figure:
    bench: str
    name: str
    value: float
    unit: str
    baseline_name: str | None = None
    baseline: float | None = None
    ratio: float | None = None
    target: str | None = None
    ok: bool | None = None


@dataclass
class Report:
    current: str = ""
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(
        self,
        name: str,
        value: float,
        unit: str,
        *,
        baseline_name: str | None = None,
        baseline: float | None = None,
        ratio: float | None = None,
        target: str | None = None,
        ok: bool | None = None,
    ) -> Figure:
        if ratio is None and baseline:
            ratio = value / baseline
        figure = Figure(self.current, name, value, unit, baseline_name, baseline, ratio, target, ok)
        self.figures.append(figure)
        print(f"  {name}: {_num(value)} {unit}", flush=True)
        return figure

    def note(self, text: str) -> None:
        self.notes.append(f"[{self.current}] {text}")
        print(f"  {text}", flush=True)

    @property
    def missed(self) -> list[Figure]:
        return [f for f in self.figures if f.ok is False]

    def table(self) -> str:
        header = ("bench", "figure", "value", "baseline", "ratio", "target", "")
        rows = [
            (
                f.bench,
                f.name,
                f"{_num(f.value)} {f.unit}",
                f"{f.baseline_name}: {_num(f.baseline)}" if f.baseline is not None else "",
                f"{f.ratio:.3g}x" if f.ratio is not None else "",
                f.target or "",
                {True: "ok", False: "MISS", None: ""}[f.ok],
            )
            for f in self.figures
        ]
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        line = "  ".join("-" * w for w in widths)
        out = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)), line]
        out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        return "\n".join([*out, "", *self.notes])


def _num(value: float | None) -> str:
    if value is None:
        return ""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """`with stopwatch() as t: …` then `t[0]` is the elapsed seconds."""
    out: list[float] = []
    start = time.perf_counter()
    try:
        yield out
    finally:
        out.append(time.perf_counter() - start)


async def timed(fn: Callable[[], Awaitable[object]], repeat: int) -> list[float]:
    """Seconds per call of `fn`, `repeat` times."""
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - start)
    return out


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    return statistics.median(values)


def _plain_dsn(dsn: str) -> str:
    return dsn.replace("postgresql+asyncpg://", "postgresql://", 1)


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


@asynccontextmanager
async def scratch_database() -> AsyncIterator[DatabaseSettings]:
    """A fresh, migrated database with its own roles; dropped afterwards."""
    embedded: EmbeddedPostgres | None = None
    server = os.environ.get("DATABASE_URL")
    if not server:
        embedded = EmbeddedPostgres(ROOT / "var" / "bench-pg", database="postgres")
        server = embedded.start()
    run = secrets.token_hex(4)
    name = f"callpact_bench_{run}"
    settings = DatabaseSettings(
        url=_with_database(server, name),
        app_role=f"cpb_{run}_app",
        admin_role=f"cpb_{run}_admin",
        statement_timeout_ms=120_000,
        pool_size=4,
    )
    conn = await asyncpg.connect(_plain_dsn(server))
    try:
        await conn.execute(f'create database "{name}"')
    finally:
        await conn.close()
    if os.environ.get("BENCH_KEEP"):
        await upgrade_async(settings)
        yield settings
        print(f"BENCH_KEEP: kept {settings.url} (roles {settings.app_role}, {settings.admin_role})")
        return
    try:
        await upgrade_async(settings)
        yield settings
    finally:
        conn = await asyncpg.connect(_plain_dsn(server))
        try:
            await conn.execute(f'drop database if exists "{name}" with (force)')
            for role in (settings.app_role, settings.admin_role):
                await conn.execute(f'drop role if exists "{role}"')
        finally:
            await conn.close()
        if embedded is not None:
            embedded.stop()
