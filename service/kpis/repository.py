"""Reading rollups back as `KpiSums`: all SQL of the KPI read path.

Hot path: plain Core statements, one round trip for the sums and one for the
wait histograms of a range; rows are folded into one `KpiSums` per bucket
(`KpiSums.from_row` checks every invariant on the way). A histogram row whose
maximum became inexact after a correction gets its maximum recomputed from
raw contacts of that bucket, so every reported figure stays exact.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Awaitable, Iterable
from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.core.db import CUSTOM_PLANS, planner_settings, snapshot_readers
from service.kpis.rollups import FCR_BY_REPEAT, LOCAL_MONTH_SQL, SUM_COLUMNS
from service.kpis.sums import FINAL_OUTCOMES, GRID_VERSION, KpiSums

Grain = Literal["interval", "daily", "monthly"]
Bucket = datetime | date
# Per grain: the sums table, its bucket column, the bucket as an expression of
# it; the histogram table and its bucket column. A month's sums are its days'
# (migration 0011); its histogram is kept whole.
_SUMS_OF: dict[str, tuple[str, str, str]] = {
    "daily": ("kpi_daily_sums", "local_day", "local_day"),
    "monthly": ("kpi_daily_sums", "local_day", LOCAL_MONTH_SQL.format(day="local_day")),
}
_WAITS_OF: dict[str, tuple[str, str]] = {
    "daily": ("kpi_daily_waits", "local_day"),
    "monthly": ("kpi_monthly_waits", "local_month"),
}


def _row(
    sums: dict[str, Any] | None, cells: Cells | None, repeats: Repeats | None = None
) -> dict[str, Any]:
    row: dict[str, Any] = {"grid_version": GRID_VERSION}
    base = sums or {}
    for c in SUM_COLUMNS:
        if not c.startswith(("csat_", "nps_")):
            row[c] = int(base.get(c, 0))
    row["csat_counts"] = [int(base.get(f"csat_{k}", 0)) for k in range(1, 6)]
    row["nps_counts"] = [int(base.get(f"nps_{k}", 0)) for k in range(11)]
    codes, edges, counts, sums_ms, max_ms, max_exact = cells or ([], [], [], [], [], [])
    row["wait_outcome"], row["wait_edge_s"] = codes, edges
    row["wait_count"], row["wait_sum_ms"] = counts, sums_ms
    maxes = [-1] * len(FINAL_OUTCOMES)
    exact = [True] * len(FINAL_OUTCOMES)
    for i in _tops(codes):  # the top cell of each outcome holds its maximum
        code, m = codes[i], max_ms[i]
        maxes[code] = int(m) if m is not None else edges[i] * 1000
        exact[code] = bool(max_exact[i]) and m is not None
    row["wait_max_ms"] = maxes
    row["wait_max_exact"] = exact
    row["fcr_repeat_days"], row["fcr_repeat_count"] = repeats or ([], [])
    return row


def _tops(codes: list[int]) -> list[int]:
    """Index of the last cell of each outcome's run (cells are sorted by outcome, edge)."""
    return [bisect_right(codes, code) - 1 for code in sorted(set(codes))]


Key = tuple[Any, Any]
WaitRow = tuple[int, int, int, int, int | None, bool]
# A bucket's histogram as six parallel lists sorted by (outcome, edge): outcome
# code, edge (s), count, sum of waits (ms), max wait (ms), whether that max is exact.
Cells = tuple[list[int], list[int], list[int], list[int], list[int | None], list[bool]]
# A bucket's FCR repeats: repeat_days ascending, and the contacts of each.
Repeats = tuple[list[int], list[int]]


def _cells(rows: list[WaitRow]) -> Cells:
    rows.sort()
    codes, edges, counts, sums, maxes, exact = (list(c) for c in zip(*rows, strict=True))
    return codes, edges, counts, sums, maxes, exact


def _fold(
    sums_rows: dict[Key, dict[str, Any]],
    waits: dict[Key, Cells],
    repeats: dict[Key, Repeats] | None = None,
) -> dict[Key, KpiSums]:
    reps = repeats or {}
    return {
        k: KpiSums.from_row(_row(sums_rows.get(k), waits.get(k), reps.get(k)))
        for k in set(sums_rows) | set(waits)
    }


async def read_sums(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    project_ids: list[uuid.UUID],
    grain: Grain,
    start: Bucket,
    end: Bucket,
    channel: str | None = None,
    *,
    by_channel: bool = False,
    one_bucket: bool = False,
) -> dict[Key, KpiSums]:
    """One `KpiSums` per non-empty (bucket, channel or None) in [start, end) over the projects:
    local days from the daily rollups, 15-minute intervals from raw rows."""
    if grain == "interval":
        if not (isinstance(start, datetime) and isinstance(end, datetime)):
            raise TypeError("interval sums need datetime bounds")
        return await raw_sums(
            session,
            tenant_id,
            project_ids,
            start,
            end,
            channel,
            group="channel" if by_channel else "none",
        )
    sums_table, sums_column, sums_bucket = _SUMS_OF[grain]
    waits_table, waits_column = _WAITS_OF[grain]
    scope = "tenant_id = :t and project_id = any(:p)" + (
        " and channel = :ch" if channel is not None else ""
    )

    def where(column: str) -> str:
        return f"{scope} and {column} >= :start and {column} < :end"

    # One bucket (a month, a year): add the rows up in SQL, fold one row in Python.
    label = "cast(:start as date)" if one_bucket else None
    group = "channel" if by_channel else "null::text"
    params = {"t": tenant_id, "p": project_ids, "start": start, "end": end, "ch": channel}
    sums_sql = (
        f"select {label or sums_bucket} as b, {group} as g,"
        f" {', '.join(f'sum({c})::bigint as {c}' for c in SUM_COLUMNS)}"
        f" from {sums_table} where {where(sums_column)} group by 1, 2"
    )
    # The six parallel arrays are unnested in the select list, where set-returning
    # functions run in lockstep: half the time of `FROM unnest(a, b, …)`, which
    # materializes each function's rows before zipping them (measured on a
    # project-month of 36 000 contacts, 7 600 histogram cells: 2.5 ms against 7.8).
    # The merged cells come back as arrays per bucket, decoded by the driver (a
    # Python loop over a month's 1 000 cells cost more than the query). One sort
    # orders the cells for both the grouping by bucket and the arrays (an ORDER BY
    # in each array_agg is six sorts: twice the time); `KpiSums.from_row` refuses
    # cells out of order, so a plan that broke the order could not go unnoticed.
    # Keys that are constants (one bucket; no channel split) are not grouped by:
    # hashing two columns fewer per cell took a fifth off a month (6.3 -> 4.9 ms).
    keys = ("b, " if not one_bucket else "") + ("g, " if by_channel else "")

    def merged(rows: str) -> str:
        """The cells of `rows` (columns b, g and the six arrays) merged per bucket."""
        return (
            f"select {'b' if not one_bucket else label} as b, {'g' if by_channel else group} as g,"
            " array_agg(o) as o, array_agg(e) as e, array_agg(n) as n, array_agg(s) as s,"
            " array_agg(m) as m, array_agg(x) as x"
            f" from (select {keys}o, e, sum(n)::bigint as n, sum(s)::bigint as s, max(m) as m,"
            " bool_and(x) as x from (select b, g, unnest(outcome) as o, unnest(edge_s) as e,"
            " unnest(n) as n, unnest(sum_ms) as s, unnest(max_ms) as m, unnest(max_exact) as x"
            f" from {rows}) u where n > 0 group by {keys}o, e order by {keys}o, e) c"
            + (f" group by {keys.rstrip(', ')}" if keys else "")
        )

    rows = (
        f"(select {label or waits_column} as b, {group} as g, outcome, edge_s, n, sum_ms, max_ms,"
        f" max_exact from {waits_table} where {where(waits_column)}) r"
    )
    if grain == "monthly":
        # A bucket of one row (a project's month, on one channel or on the only
        # one it has) is that row as stored: the writer keeps its cells sorted,
        # and merging ~1 000 cells with nothing took a millisecond. Buckets of
        # several rows are merged.
        alone = ", ".join(
            ([] if one_bucket else [waits_column]) + (["channel"] if by_channel else [])
        )
        rows = (
            f"(select {label or waits_column} as b, {group} as g, outcome, edge_s, n, sum_ms,"
            f" max_ms, max_exact, count(*) over (partition by {alone or 'true'}) as k"
            f" from {waits_table} where {where(waits_column)}) r"
        )
        waits_sql = (
            "select * from (select b, g, outcome as o, edge_s as e, n::bigint[] as n,"
            f" sum_ms as s, max_ms as m, max_exact as x from {rows} where k = 1"
            f" union all {merged(rows.removesuffix(' r') + ' r where k > 1')}) w"
            " where o is not null"
        )
    else:
        waits_sql = merged(rows)
    # FCR repeats per bucket (rows only for contacts judged by repeat that came
    # back within 90 days; each is counted in its day's sums row too).
    reps_sql = (
        "select b, g, array_agg(d order by d) as rd, array_agg(n order by d) as rn from ("
        f" select {label or sums_bucket} as b, {group} as g, repeat_days as d, sum(n)::int as n"
        f" from kpi_daily_repeats where {where(sums_column)} group by 1, 2, 3"
        " having sum(n) <> 0) r group by b, g"
    )
    # All in one round trip: a bucket has sums, cells, or both. (Without a GROUP
    # BY, no cells still make one row, of NULL arrays; a channel may be NULL.)
    both_sql = (
        f"with sums as ({sums_sql}), waits as ({waits_sql}), reps as ({reps_sql})"
        " select coalesce(sums.b, waits.b) as b, coalesce(sums.g, waits.g) as g,"
        f" {', '.join(f'sums.{c}' for c in SUM_COLUMNS)}, waits.o as w_o, waits.e as w_e,"
        " waits.n as w_n, waits.s as w_s, waits.m as w_m, waits.x as w_x,"
        " reps.rd as r_d, reps.rn as r_n"
        " from sums full join waits"
        " on sums.b = waits.b and coalesce(sums.g, '') = coalesce(waits.g, '')"
        " left join reps on reps.b = sums.b and coalesce(reps.g, '') = coalesce(sums.g, '')"
    )
    conn = await session.connection()
    if grain == "monthly":
        # A month's histogram is one row of ~1 000 cells: however it is planned,
        # it is read in about a millisecond, and two set_config round trips are
        # not worth saving anything of that.
        got = (await conn.execute(text(both_sql), params)).all()
    else:
        # Hashing the cells, not sorting them: the planner, told 3 rows for the
        # 7 600 cells of a project-month's days, sorts (measured 4.8 against 3.7 ms
        # a read, the two set_config round trips included). No JIT: the sort that
        # is left (the buckets, a few) is then costed as disabled, over the JIT
        # threshold, and compiling took 320 ms. Planned for its project ids.
        async with planner_settings(
            session, enable_sort="off", jit="off", plan_cache_mode=CUSTOM_PLANS
        ):
            got = (await conn.execute(text(both_sql), params)).all()
    sums_rows: dict[Key, dict[str, Any]] = {}
    waits: dict[Key, Cells] = {}
    repeats: dict[Key, Repeats] = {}
    for r in got:
        m = r._mapping
        key = (r.b, r.g)
        if m["n_answered"] is not None:
            sums_rows[key] = {c: m[c] for c in SUM_COLUMNS}
        if m["w_o"] is not None:
            waits[key] = (m["w_o"], m["w_e"], m["w_n"], m["w_s"], m["w_m"], m["w_x"])
        if m["r_d"] is not None:
            repeats[key] = (m["r_d"], m["r_n"])
    await _exact_maxima(
        session,
        tenant_id,
        project_ids,
        grain,
        waits,
        channel,
        by_channel,
        (start, end) if one_bucket else None,
    )
    return _fold(sums_rows, waits, repeats)


# Raw rows are read in one scan with two grouping sets: the handling figures per
# (outcome, csat, nps, held, transferred, FCR) and the wait histogram per
# (outcome, grid edge). A few thousand groups a year, folded here into the
# columns of the rollups — measured 2.6x a count(*) of the rows, where one
# FILTER aggregate per rollup column took 5x (and is what the rollups
# themselves use: the property tests hold the two formulations equal).
_RAW_SQL = """
select {b_out} as b, {g_out} as g, grouping(csat, edge) as kind, outcome, csat, nps, held,
       transferred, fcr, edge, count(*) as n, sum(talk_ms) as talk, sum(hold_ms) as hold,
       sum(acw_ms) as acw, sum(hold_count) as hold_count, sum(wait_ms) as wait,
       max(wait_ms) as longest
from (
  select {b} as b, {g} as g, outcome, csat, nps, hold_ms > 0 as held, transferred,
         {fcr} as fcr, talk_ms, hold_ms, acw_ms, hold_count, wait_ms,
         case when outcome <> 'in_queue' and wait_ms is not null then kpi_wait_edge(wait_ms) end as edge
  from contacts where {where}
) c
group by grouping sets (({keys}outcome, csat, nps, held, transferred, fcr), ({keys}outcome, edge))
"""
# FCR in one key of the handling set: the source's flag (-1 resolved, -2 not), or
# for a contact judged by repeat its repeat_days (0: no call back within 90 days),
# null for the others. A third grouping set of its own (one more hash table every
# row goes into) took a tenant's year from 4.8-5.5x to 7.1-7.6x a count; as
# another key of the handling set, next to the flag, it multiplied that set's
# estimated groups until the planner sorted a year of 10 M rows on disk (17.6 s).
# In place of the flag the estimate stays small: a contact has one or the other.
_FCR_CODE = (
    "case when resolved_first_contact then -1 when not resolved_first_contact then -2"
    f" when {FCR_BY_REPEAT} then coalesce(repeat_days, 0) end"
)
_RESOLVED = -1  # and -2: not resolved
# grouping(csat, edge): which set a row of the result belongs to.
_WAITS = 2  # 1: the handling set
RAW_WORK_MEM = "32MB"
# One bucket (a tenant's year) has a few thousand groups (11 MB of hash tables at
# 2 M contacts), but the planner multiplies the keys' distinct counts, ~190 000
# groups with the FCR code, and above work_mem it sorts the rows instead
# (2 M contacts: 7.8 s against 3.2 s hashed). Only the estimate needs the room.
ONE_BUCKET_WORK_MEM = "256MB"
# The reads that pass a tenant's project ids are planned for their values every time
# (`CUSTOM_PLANS`): the driver prepares a statement once per connection, and from its
# sixth run PostgreSQL may keep a generic plan, blind to `project_id = any($n)` — a
# tenant's 500 projects then searched row by row, not hashed: a year's count(*) went
# from 1.2 s past the 15 s statement timeout. Not for every statement: the per-row
# foreign-key checks of an import are cached plans too, and planning them again for
# each row made a shift import 1.6x slower.
_OUTCOME_CODE = {o.value: i for i, o in enumerate(FINAL_OUTCOMES)}


def _add_handling(row: dict[str, int], r: Any) -> None:
    """One group of contacts into the rollup columns (see `rollups._SUMS`)."""
    n = int(r.n)
    outcome = r.outcome
    if outcome == "in_queue":
        row["n_in_queue"] += n
        return
    if f"n_{outcome}" in row:
        row[f"n_{outcome}"] += n
    if outcome == "answered":
        row["talk_ms"] += int(r.talk or 0)
        row["hold_ms"] += int(r.hold or 0)
        row["acw_ms"] += int(r.acw or 0)
        row["hold_count"] += int(r.hold_count or 0)
        row["held"] += n if r.held else 0
        row["transferred"] += n if r.transferred else 0
        if r.fcr is not None and r.fcr < 0:
            row["fcr_known"] += n
            row["fcr_resolved"] += n if r.fcr == _RESOLVED else 0
    if r.csat is not None and f"csat_{r.csat}" in row:
        row[f"csat_{r.csat}"] += n
    if r.nps is not None and f"nps_{r.nps}" in row:
        row[f"nps_{r.nps}"] += n


async def raw_sums(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    project_ids: list[uuid.UUID],
    start: datetime,
    end: datetime,
    channel: str | None = None,
    *,
    group: Literal["none", "channel", "agent"] = "none",
    per_interval: bool = True,
) -> dict[Key, KpiSums]:
    """Per (15-minute interval, group) sums computed from raw contacts: interval
    figures, per-agent figures and the reference the rollups are checked against.
    `per_interval=False` folds the whole range into one bucket keyed by `start`."""
    where = "tenant_id = :t and project_id = any(:p) and queued_at >= :start and queued_at < :end"
    if channel is not None:
        where += " and channel = :ch"
    g = {"none": "null::text", "channel": "channel", "agent": "agent_id::text"}[group]
    params = {
        "t": tenant_id,
        "p": project_ids,
        "start": start,
        "end": end,
        "bucket": start,  # the whole range's key, whichever part a row is read in
        "ch": channel,
    }
    b = "bucket_start" if per_interval else "cast(:bucket as timestamptz)"
    # A constant bucket or group is no grouping key (two columns fewer to hash per
    # row and set: 6.5 -> 5.9 s for a year of 10 M contacts); it is added outside.
    keys = ("b, " if per_interval else "") + ("g, " if group != "none" else "")
    sql = _RAW_SQL.format(
        fcr=_FCR_CODE,
        b=b,
        g=g,
        b_out="b" if per_interval else b,
        g_out="g" if group != "none" else g,
        keys=keys,
        where=where,
    )
    sums_rows: dict[Key, dict[str, int]] = {}
    wait_rows: dict[Key, dict[tuple[int, int], list[int]]] = defaultdict(dict)
    repeat_rows: dict[Key, dict[int, int]] = defaultdict(dict)
    # Both grouping sets in hash tables (a few thousand groups), not one of them
    # sorted: with the default 4 MB the planner sorts the 10 M rows of a year on
    # disk for the histogram set (measured 20 s against 11 s; count(*) 2.4 s).
    settings = {
        "work_mem": RAW_WORK_MEM if per_interval else ONE_BUCKET_WORK_MEM,
        "plan_cache_mode": CUSTOM_PLANS,
    }
    parts: list[Any] = []
    split: AbstractAsyncContextManager[list[Any]] = (
        snapshot_readers(session, **settings) if end - start >= SPLIT_FROM else nullcontext([])
    )
    async with split as readers:
        if len(readers) > 1:
            # Parts of the range at once, one snapshot (`snapshot_readers`); their
            # groups of one key are added up below.
            bounds = _split(start, end, len(readers))
            parts = await _all_parts(
                r.execute(text(sql), {**params, "start": lo, "end": hi})
                for r, (lo, hi) in zip(readers, itertools.pairwise(bounds), strict=True)
            )
            parts = [list(p) for p in parts]
    if not parts:
        conn = await session.connection()
        async with planner_settings(session, **settings):
            parts = [await conn.execute(text(sql), params)]
    for r in itertools.chain.from_iterable(parts):
        key = (r.b, r.g)
        if r.kind == _WAITS:
            if r.edge is not None:
                cell = wait_rows[key].get((_OUTCOME_CODE[r.outcome], int(r.edge)))
                if cell is None:
                    wait_rows[key][(_OUTCOME_CODE[r.outcome], int(r.edge))] = [
                        int(r.n),
                        int(r.wait),
                        r.longest,
                    ]
                else:
                    cell[0] += int(r.n)
                    cell[1] += int(r.wait)
                    cell[2] = max(cell[2], r.longest)
            continue
        row = sums_rows.get(key)
        if row is None:
            row = sums_rows[key] = dict.fromkeys(SUM_COLUMNS, 0)
        _add_handling(row, r)
        if r.fcr is not None and r.fcr >= 0:
            row["fcr_repeat_known"] += int(r.n)
            if r.fcr:
                days = repeat_rows[key]
                days[r.fcr] = days.get(r.fcr, 0) + int(r.n)
    return _fold(
        sums_rows,
        {
            k: _cells([(code, edge, n, w, m, True) for (code, edge), (n, w, m) in v.items()])
            for k, v in wait_rows.items()
        },
        {k: (sorted(v), [v[d] for d in sorted(v)]) for k, v in repeat_rows.items() if v},
    )


# A range this long or longer is read in parts at once (`snapshot_readers`): a
# tenant's year of 10 M contacts, or a month of intervals; shorter ones are not
# worth two more round trips and a snapshot export.
SPLIT_FROM = timedelta(days=7)
_QUARTER = timedelta(minutes=15)
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # the origin of the 15-minute buckets (`date_bin`)


def _split(start: datetime, end: datetime, n: int) -> list[datetime]:
    """`n` consecutive ranges covering [start, end), split on whole quarter hours (a
    15-minute bucket is never in two parts): the n + 1 bounds."""
    bounds = [start]
    for i in range(1, n):
        cut = start + (end - start) * i / n
        cut = EPOCH + (cut - EPOCH) // _QUARTER * _QUARTER
        bounds.append(min(max(cut, bounds[-1]), end))
    bounds.append(end)
    return bounds


async def _all_parts(parts: Iterable[Awaitable[Any]]) -> list[Any]:
    """The results of `parts`, run at once; if one fails, the others are cancelled
    and waited for before its error is raised. (`asyncio.gather` raises the first
    error and leaves the others running: the readers were then closed under a
    running statement, that close's "another operation is in progress" replaced the
    part's error — a statement timeout answered as "database unavailable" — and
    the connection went back to the pool mid-statement.)"""
    tasks = [asyncio.ensure_future(p) for p in parts]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _exact_maxima(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    project_ids: list[uuid.UUID],
    grain: Grain,
    waits: dict[Key, Cells],
    channel: str | None,
    by_channel: bool,
    bounds: tuple[Bucket, Bucket] | None = None,
) -> None:
    """Recompute from raw rows the maxima that a correction made inexact (rare)."""
    # Raw contacts carry the local day; a month bucket is its days.
    day = _SUMS_OF[grain][2]
    where_bucket = "local_day >= :lo and local_day < :hi" if bounds else f"{day} = :b"
    for (b, g), (codes, edges, _n, _s, maxes, exact) in waits.items():
        for i in _tops(codes):
            if exact[i]:
                continue
            code, edge = codes[i], edges[i]
            value = (
                await session.execute(
                    text(
                        f"select max(wait_ms) from contacts where tenant_id = :t and project_id = any(:p)"
                        f" and {where_bucket} and outcome = :o and kpi_wait_edge(wait_ms) = :e"
                        + (" and channel = :ch" if channel or by_channel else "")
                    ),
                    {
                        "t": tenant_id,
                        "p": project_ids,
                        "b": b,
                        "lo": bounds[0] if bounds else None,
                        "hi": bounds[1] if bounds else None,
                        "o": FINAL_OUTCOMES[code].value,
                        "e": edge,
                        "ch": g if by_channel else channel,
                    },
                )
            ).scalar()
            maxes[i], exact[i] = value, value is not None
