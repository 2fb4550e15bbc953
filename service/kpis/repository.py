"""Reading rollups back as `KpiSums`: all SQL of the KPI read path.

Hot path: plain Core statements, one round trip for the sums and one for the
wait histograms of a range; rows are folded into one `KpiSums` per bucket
(`KpiSums.from_row` checks every invariant on the way). A histogram row whose
maximum became inexact after a correction gets its maximum recomputed from
raw contacts of that bucket, so every reported figure stays exact.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date, datetime
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.kpis.rollups import SUM_COLUMNS
from service.kpis.sums import FINAL_OUTCOMES, GRID_VERSION, KpiSums

Grain = Literal["interval", "daily"]
Bucket = datetime | date
_BUCKET = {"interval": "bucket_start", "daily": "local_day"}


def _row(
    sums: dict[str, Any] | None, waits: list[tuple[int, int, int, int, int | None, bool]]
) -> dict[str, Any]:
    row: dict[str, Any] = {"grid_version": GRID_VERSION}
    base = sums or {}
    for c in SUM_COLUMNS:
        if not c.startswith(("csat_", "nps_")):
            row[c] = int(base.get(c, 0))
    row["csat_counts"] = [int(base.get(f"csat_{k}", 0)) for k in range(1, 6)]
    row["nps_counts"] = [int(base.get(f"nps_{k}", 0)) for k in range(11)]
    waits.sort()
    row["wait_outcome"] = [w[0] for w in waits]
    row["wait_edge_s"] = [w[1] for w in waits]
    row["wait_count"] = [w[2] for w in waits]
    row["wait_sum_ms"] = [w[3] for w in waits]
    maxes = [-1] * len(FINAL_OUTCOMES)
    exact = [True] * len(FINAL_OUTCOMES)
    top: dict[int, int] = {}
    for code, edge, _n, _s, max_ms, is_exact in waits:
        if edge >= top.get(code, -1):
            top[code] = edge
            maxes[code] = int(max_ms) if max_ms is not None else edge * 1000
            exact[code] = bool(is_exact) and max_ms is not None
    row["wait_max_ms"] = maxes
    row["wait_max_exact"] = exact
    return row


async def read_sums(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    project_ids: list[uuid.UUID],
    grain: Grain,
    start: Bucket,
    end: Bucket,
    channel: str | None = None,
) -> dict[Bucket, KpiSums]:
    """One `KpiSums` per non-empty bucket in [start, end) over the given projects."""
    bucket = _BUCKET[grain]
    where = f"tenant_id = :t and project_id = any(:p) and {bucket} >= :start and {bucket} < :end"
    if channel is not None:
        where += " and channel = :ch"
    params = {"t": tenant_id, "p": project_ids, "start": start, "end": end, "ch": channel}
    sums_sql = f"select {bucket} as b, {', '.join(f'sum({c})::bigint as {c}' for c in SUM_COLUMNS)} from kpi_{grain}_sums where {where} group by 1"
    waits_sql = (
        f"select {bucket} as b, outcome, edge_s, sum(n)::bigint, sum(sum_ms)::bigint, max(max_ms), bool_and(max_exact)"
        f" from kpi_{grain}_waits where {where} and n > 0 group by 1, 2, 3"
    )
    conn = await session.connection()
    sums_rows = {r.b: dict(r._mapping) for r in await conn.execute(text(sums_sql), params)}
    waits: dict[Bucket, list[tuple[int, int, int, int, int | None, bool]]] = defaultdict(list)
    for b, outcome, edge, n, s, mx, exact in await conn.execute(text(waits_sql), params):
        waits[b].append((int(outcome), int(edge), int(n), int(s), mx, bool(exact)))
    await _exact_maxima(session, tenant_id, project_ids, grain, waits, channel)
    out: dict[Bucket, KpiSums] = {}
    for b in sorted(set(sums_rows) | set(waits)):
        out[b] = KpiSums.from_row(_row(sums_rows.get(b), waits.get(b, [])))
    return out


async def _exact_maxima(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    project_ids: list[uuid.UUID],
    grain: Grain,
    waits: dict[Bucket, list[tuple[int, int, int, int, int | None, bool]]],
    channel: str | None,
) -> None:
    """Recompute from raw rows the maxima that a correction made inexact (rare)."""
    bucket = _BUCKET[grain]
    for b, rows in waits.items():
        tops: dict[int, int] = {}
        for code, edge, *_ in rows:
            tops[code] = max(tops.get(code, -1), edge)
        for i, (code, edge, n, s, _mx, exact) in enumerate(rows):
            if exact or tops[code] != edge:
                continue
            value = (
                await session.execute(
                    text(
                        f"select max(wait_ms) from contacts where tenant_id = :t and project_id = any(:p)"
                        f" and {bucket} = :b and outcome = :o and kpi_wait_edge(wait_ms) = :e"
                        + (" and channel = :ch" if channel else "")
                    ),
                    {
                        "t": tenant_id,
                        "p": project_ids,
                        "b": b,
                        "o": FINAL_OUTCOMES[code].value,
                        "e": edge,
                        "ch": channel,
                    },
                )
            ).scalar()
            rows[i] = (code, edge, n, s, value, value is not None)
