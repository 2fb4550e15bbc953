"""The KPI read path: rollups (or raw rows for per-agent figures) → `KpiSums`
per bucket → the formulas of KPIS.md under the contract's (or the query's)
terms. Every response names the formula it used."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import Row, Select, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from service.core.errors import InvalidInput, NotFound
from service.kpis import repository
from service.kpis.buckets import Bucket, Granularity, bucket_of, day_start, iter_buckets, to_utc
from service.kpis.formulas import (
    DEFAULT_TERMS,
    QUEUE_KPIS,
    ContractTerms,
    FormulaError,
    KpiValue,
    ServiceLevelFormula,
    compute_all,
)
from service.kpis.schemas import (
    BucketRead,
    FigureRead,
    KpiQuery,
    KpiRead,
    KpiReport,
    TermsRead,
)
from service.kpis.sums import KpiSums
from service.projects.models import Project
from tenants.context import TenantContext, scoped
from tenants.models import Client, Tenant

MAX_BUCKETS = 10_000
Scope = Literal["project", "client", "tenant"]


class KpiQueryInvalid(InvalidInput):
    code = "kpi_query_invalid"
    title = "Invalid KPI query"


def _read(value: KpiValue) -> KpiRead:
    return KpiRead(
        value=value.value,
        unit=value.unit.value,
        numerator=value.numerator,
        denominator=value.denominator,
        formula=value.formula,
        upper_bound=value.upper_bound,
    )


class ContractKpiTerms(NamedTuple):
    """What a contract in force says about computing KPIs (None: not said)."""

    service_level: dict[str, object] | None = None
    timeouts_as_abandons: bool | None = None
    fcr_window_days: int | None = None
    interval_minutes: int | None = None


def terms_from_query(q: KpiQuery, contract: ContractKpiTerms) -> tuple[ContractTerms, str]:
    """The contract's formula (else the default: SL1, 20 s, 5 s) with what the query
    names in its place: `sl` a preset's numerator and denominator, `t` the threshold,
    `short_abandon_s` the short-abandon bound. What the query does not name stays the
    contract's (asking for T = 30 s keeps the contract's preset and short abandons).
    `fcr_window_days` likewise replaces the contract's FCR window (default 7 days).
    `sl` is a preset's name or a formula object (JSON), as KPIS.md has it."""
    contract_sl = contract.service_level
    source = (
        "query"
        if any(v is not None for v in (q.sl, q.t, q.short_abandon_s, q.fcr_window_days))
        else ("contract" if contract != ContractKpiTerms() else "default")
    )
    try:
        spec: dict[str, object] = dict(contract_sl) if contract_sl else {"preset": "SL1"}
        if q.sl is not None:
            given = _sl_spec(q.sl)
            # What it names replaces the contract's: a preset the whole shape (preset,
            # numerator, denominator), a numerator or denominator only itself (and the
            # preset's name, which no longer says what the shape is).
            replaced = set(given)
            if "preset" in given:
                replaced |= {"numerator", "denominator"}
            elif replaced & {"numerator", "denominator"}:
                replaced.add("preset")
            spec = {k: v for k, v in spec.items() if k not in replaced} | given
        if q.t is not None:
            spec["threshold_s"] = q.t
        if q.short_abandon_s is not None:
            spec["short_abandon_s"] = q.short_abandon_s
        formula = ServiceLevelFormula.from_mapping(spec)
    except (FormulaError, ValueError) as exc:
        raise KpiQueryInvalid(
            str(exc), field="sl" if q.sl else ("t" if q.t is not None else "short_abandon_s")
        ) from exc
    timeouts = (
        q.timeouts_as_abandons
        if q.timeouts_as_abandons is not None
        else bool(contract.timeouts_as_abandons)
    )
    window = q.fcr_window_days or contract.fcr_window_days or DEFAULT_TERMS.fcr_window_days
    terms = ContractTerms(
        service_level=formula,
        timeouts_as_abandons=timeouts,
        fcr_window_days=window,
        interval_minutes=contract.interval_minutes or DEFAULT_TERMS.interval_minutes,
    )
    return terms, source


def _sl_spec(sl: str) -> dict[str, object]:
    """`sl=`: a preset's name, or a formula object in JSON (its fields replace the
    contract's; a field it leaves out, e.g. the threshold, stays the contract's)."""
    if not sl.lstrip().startswith("{"):
        return {"preset": sl}
    try:
        spec = json.loads(sl)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise FormulaError(f"sl is neither a preset name nor a JSON object: {exc}") from exc
    if not isinstance(spec, dict):
        raise FormulaError("sl is neither a preset name nor a JSON object")
    return spec


def _instant(value: date | datetime, zone: ZoneInfo, name: str) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise KpiQueryInvalid(f"{name} needs a UTC offset (or give a date).", field=name)
        return to_utc(value)
    return day_start(value, zone)


# Buckets made of whole local months.
_OF_MONTHS = frozenset({Granularity.MONTH, Granularity.QUARTER, Granularity.YEAR})


def _whole_months(first: date, end: date) -> tuple[date, date] | None:
    """The whole months inside the days [first, end): (the first one's 1st day,
    the 1st day after the last one), or None if there is no whole month."""
    lo = first if first.day == 1 else (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    hi = end.replace(day=1)
    return (lo, hi) if lo < hi else None


def _granularity(name: str) -> Granularity:
    return Granularity.MIN15 if name == "interval" else Granularity(name)


class ScopeProject(NamedTuple):
    id: uuid.UUID
    time_zone: str


async def _scope_projects(
    session: AsyncSession,
    ctx: TenantContext,
    scope: str,
    scope_id: uuid.UUID,
    start: date | datetime,
) -> tuple[list[ScopeProject], str, Row[Any] | None]:
    """The visible projects of the scope, the zone its buckets are drawn in and,
    for a project, the contract version in force on the local day `start` is in
    (None if none), read with the project in one statement.

    Columns, not entities, on the session's connection: loading ORM objects cost
    a project-month read more than its rollup query (the walls are the same
    `scoped` statements)."""
    conn = await session.connection()

    def projects_of(stmt: Select[Any]) -> Select[uuid.UUID, str]:
        return stmt.with_only_columns(col(Project.id), col(Project.time_zone))

    if scope == "project":
        # Text, not a Core construct: building and keying the lateral select cost
        # 1 ms a read, five times what PostgreSQL takes to run it. The walls are
        # `scoped`'s (tenant, client, projects), and the contract is the project's.
        walls = "".join(
            (
                " and p.client_id = :client" if ctx.client_id is not None else "",
                " and p.id = any(:projects)" if ctx.project_ids is not None else "",
            )
        )
        on_day = (
            "(cast(:start as timestamptz) at time zone p.time_zone)::date"
            if isinstance(start, datetime)
            else "cast(:start as date)"
        )
        got = (
            await conn.execute(
                text(
                    "select p.id, p.time_zone, c.effective_to, c.targets, c.short_abandon_s,"
                    " c.timeouts_count_as_abandons, c.fcr_window_days, c.interval_minutes"
                    " from projects p left join lateral (select effective_to, targets,"
                    " short_abandon_s, timeouts_count_as_abandons, fcr_window_days,"
                    " interval_minutes"
                    " from contracts c where c.tenant_id = p.tenant_id and c.project_id = p.id"
                    f" and c.effective_from <= {on_day} order by c.effective_from desc limit 1"
                    f") c on true where p.tenant_id = :t and p.id = :id{walls}"
                ),
                {
                    "t": ctx.tenant_id,
                    "id": scope_id,
                    "start": start,
                    "client": ctx.client_id,
                    "projects": list(ctx.project_ids or ()),
                },
            )
        ).one_or_none()
        if got is None:
            raise NotFound("No such project.")
        return [ScopeProject(got.id, got.time_zone)], got.time_zone, got
    if scope == "client":
        stmt = select(col(Client.time_zone)).where(
            col(Client.tenant_id) == ctx.tenant_id, col(Client.id) == scope_id
        )
        if ctx.client_id is not None:
            stmt = stmt.where(col(Client.id) == ctx.client_id)
        zone = (await conn.execute(stmt)).scalar_one_or_none()
        if zone is None:
            raise NotFound("No such client.")
        rows = await conn.execute(
            projects_of(scoped(Project, ctx).where(col(Project.client_id) == scope_id))
        )
        return [ScopeProject(r.id, r.time_zone) for r in rows], zone, None
    zone = (
        await conn.execute(select(col(Tenant.time_zone)).where(col(Tenant.id) == ctx.tenant_id))
    ).scalar_one()
    rows = await conn.execute(projects_of(scoped(Project, ctx)))
    return [ScopeProject(r.id, r.time_zone) for r in rows], zone, None


def _contract_terms(contract: Row[Any] | None, at: date) -> ContractKpiTerms:
    """The service-level formula, timeout rule, FCR window and interval of the contract
    row read with the project (`_scope_projects`), if it is in force on `at`."""
    if contract is None or (contract.effective_to is not None and contract.effective_to < at):
        return ContractKpiTerms()
    rest = (
        contract.timeouts_count_as_abandons,
        contract.fcr_window_days,
        contract.interval_minutes,
    )
    for target in contract.targets or []:
        if target.get("kpi") == "service_level" and isinstance(target.get("formula"), dict):
            stored = dict(target["formula"])
            denominator = stored.get("denominator") or {}
            formula: dict[str, object] = {
                "numerator": stored.get("numerator", "answered_within"),
                # The contract stores the denominator as flags; the formula reads a list of terms.
                "denominator": [
                    term
                    for term, default in (
                        ("answered", True),
                        ("abandoned_after_t", True),
                        ("abandoned_within_t", True),
                        ("other_exits", False),
                    )
                    if denominator.get(term, default)
                ],
                "aggregation": stored.get("aggregation", "ratio_of_sums"),
                "short_abandon_s": stored.get("short_abandon_s")
                if stored.get("short_abandon_s") is not None
                else contract.short_abandon_s,
            }
            threshold = stored.get("threshold_s") or target.get("threshold_s")
            if threshold is not None:
                formula["threshold_s"] = threshold
            return ContractKpiTerms(formula, *rest)
    return ContractKpiTerms(None, *rest)


async def kpi_report(
    session: AsyncSession, ctx: TenantContext, scope: Scope, scope_id: uuid.UUID, q: KpiQuery
) -> KpiReport:
    projects, zone_name, contract = await _scope_projects(session, ctx, scope, scope_id, q.start)
    zone = ZoneInfo(zone_name)
    start, end = _instant(q.start, zone, "from"), _instant(q.end, zone, "to")
    if end <= start:
        raise KpiQueryInvalid("'to' must be after 'from'.", field="to")
    granularity = _granularity(q.granularity)
    buckets = list(_buckets(start, end, granularity, zone))
    if len(buckets) > MAX_BUCKETS:
        raise KpiQueryInvalid(
            f"{len(buckets)} buckets: at most {MAX_BUCKETS}; choose a coarser granularity.",
            field="granularity",
        )
    in_force = (
        _contract_terms(contract, start.astimezone(zone).date())
        if scope == "project"
        else ContractKpiTerms()
    )
    terms, source = terms_from_query(q, in_force)
    if q.kpis:
        unknown = sorted(set(q.kpis) - set(QUEUE_KPIS))
        if unknown:
            raise KpiQueryInvalid(
                f"Unknown KPI(s): {', '.join(unknown)}.", field="kpis", known=list(QUEUE_KPIS)
            )

    # Read: whole local days from daily rollups where the project's zone is the
    # report's zone and the buckets are days or longer; 15-minute rollups otherwise.
    per_group: dict[str | None, dict[Bucket, list[KpiSums]]] = defaultdict(
        lambda: defaultdict(list)
    )
    # A mean of interval ratios averages one ratio per interval: its total merges the
    # groups' sums of each interval first (read where intervals are read, below).
    by_interval: dict[datetime, list[KpiSums]] = defaultdict(list)
    # Quarter hours read from raw rows, placed in the contract's intervals (15, 30 or
    # 60 minutes, in the report's zone) within each bucket: a mean of interval ratios
    # averages one ratio per contract interval.
    quarters: dict[tuple[str | None, Bucket], dict[datetime, list[KpiSums]]] = defaultdict(
        lambda: defaultdict(list)
    )
    interval = Granularity(f"{terms.interval_minutes}min")

    def place(group: str | None, instant: datetime, sums: KpiSums) -> None:
        at = instant if interval is Granularity.MIN15 else bucket_of(instant, interval, zone).start
        quarters[group, bucket_of(instant, granularity, zone)][at].append(sums)
        by_interval[at].append(sums)

    ids = [p.id for p in projects]
    if ids and q.group_by == "agent":
        raw = await repository.raw_sums(
            session, ctx.tenant_id, ids, start, end, q.channel, group="agent"
        )
        for (instant, agent), sums in raw.items():
            place(str(agent) if agent else None, instant, sums)
    elif ids:
        # A mean of interval ratios needs the intervals themselves.
        daily_ok = (
            granularity.minutes is None and terms.service_level.aggregation == "ratio_of_sums"
        )
        same_zone = [p.id for p in projects if p.time_zone == zone_name] if daily_ok else []
        other = [p.id for p in projects if p.id not in set(same_zone)]
        first_day, last_day = start.astimezone(zone).date(), end.astimezone(zone).date()
        whole_days = day_start(first_day, zone) == start and day_start(last_day, zone) == end
        if same_zone and whole_days:
            # Whole local months from the monthly histograms when every bucket is
            # made of months; the days before the first and after the last from
            # the daily rows. One bucket (a month, a year): each read adds its
            # rows up in SQL.
            months = _whole_months(first_day, last_day) if granularity in _OF_MONTHS else None
            spans: list[tuple[repository.Grain, date, date]] = (
                [("daily", first_day, last_day)]
                if months is None
                else [
                    ("daily", first_day, months[0]),
                    ("monthly", *months),
                    ("daily", months[1], last_day),
                ]
            )
            for grain, lo, hi in spans:
                if lo >= hi:
                    continue
                rows = await repository.read_sums(
                    session,
                    ctx.tenant_id,
                    same_zone,
                    grain,
                    lo,
                    hi,
                    q.channel,
                    by_channel=q.group_by == "channel",
                    one_bucket=len(buckets) == 1,
                )
                for (day, channel), sums in rows.items():
                    bucket = (
                        buckets[0]
                        if len(buckets) == 1
                        else bucket_of(day_start(day, zone), granularity, zone)
                    )
                    per_group[channel][bucket].append(sums)
        elif same_zone:
            # A bound inside a local day: the whole days between the bounds from
            # the daily rows, the parts of days at either end from raw rows (a
            # daily row is a whole day: neither dropped nor counted whole).
            lo_day = first_day if day_start(first_day, zone) == start else first_day + timedelta(1)
            hi_day = max(last_day, lo_day)
            if lo_day < hi_day:
                rows = await repository.read_sums(
                    session,
                    ctx.tenant_id,
                    same_zone,
                    "daily",
                    lo_day,
                    hi_day,
                    q.channel,
                    by_channel=q.group_by == "channel",
                )
                for (day, channel), sums in rows.items():
                    per_group[channel][bucket_of(day_start(day, zone), granularity, zone)].append(
                        sums
                    )
            for lo, hi in (
                (start, min(day_start(lo_day, zone), end)),
                (max(day_start(hi_day, zone), start), end),
            ):
                if lo >= hi:
                    continue
                rows = await repository.raw_sums(
                    session,
                    ctx.tenant_id,
                    same_zone,
                    lo,
                    hi,
                    q.channel,
                    group="channel" if q.group_by == "channel" else "none",
                )
                for (instant, channel), sums in rows.items():
                    per_group[channel][bucket_of(instant, granularity, zone)].append(sums)
        if other and len(buckets) == 1 and daily_ok:
            # One bucket (a month, a year): no need to place each interval.
            rows = await repository.raw_sums(
                session,
                ctx.tenant_id,
                other,
                start,
                end,
                q.channel,
                group="channel" if q.group_by == "channel" else "none",
                per_interval=False,
            )
            for (_, channel), sums in rows.items():
                per_group[channel][buckets[0]].append(sums)
        elif other and daily_ok:
            # The report's buckets are not these projects' days: each bucket from
            # raw rows by itself, as one bucket above. Grouping a year's rows by
            # bucket in one statement sorted them on disk (PostgreSQL cannot
            # estimate the groups of a computed key and will not hash what it
            # thinks is 12 M groups: 24 s for a tenant's year by month at 10 M
            # contacts); placing each quarter hour in Python took 80 s.
            for bucket in buckets:
                rows = await repository.raw_sums(
                    session,
                    ctx.tenant_id,
                    other,
                    max(bucket.start, start),
                    min(bucket.end, end),
                    q.channel,
                    group="channel" if q.group_by == "channel" else "none",
                    per_interval=False,
                )
                for (_, channel), sums in rows.items():
                    per_group[channel][bucket].append(sums)
        elif other:
            rows = await repository.read_sums(
                session,
                ctx.tenant_id,
                other,
                "interval",
                start,
                end,
                q.channel,
                by_channel=q.group_by == "channel",
            )
            for (instant, channel), sums in rows.items():
                place(channel, instant, sums)
    for (group, bucket), at in quarters.items():
        per_group[group][bucket].extend(
            parts[0] if len(parts) == 1 else KpiSums.merge(parts) for _, parts in sorted(at.items())
        )

    wanted = q.kpis or list(QUEUE_KPIS)

    def values(sums: KpiSums, intervals: Sequence[KpiSums] | None) -> dict[str, KpiValue]:
        try:
            return compute_all(sums, terms, intervals)
        except FormulaError as exc:
            raise KpiQueryInvalid(str(exc), field="sl") from exc

    computed: list[dict[str, KpiValue]] = []

    def figures(sums: KpiSums, intervals: Sequence[KpiSums]) -> dict[str, FigureRead]:
        got = values(sums, intervals)
        computed.append(got)
        return {
            k: FigureRead(
                value=got[k].value,
                numerator=got[k].numerator,
                denominator=got[k].denominator,
                upper_bound=got[k].upper_bound,
            )
            for k in wanted
        }

    groups = sorted(per_group, key=lambda g: (g is not None, g or "")) or [None]
    out: list[BucketRead] = []
    for group in groups:
        data = per_group.get(group, {})
        for bucket in buckets:
            parts = data.get(bucket, [])
            sums = KpiSums.merge(parts)
            out.append(
                BucketRead.model_construct(  # not validated: built from the rows above
                    start=bucket.start,
                    end=bucket.end,
                    label=bucket.label,
                    group=group,
                    kpis=figures(sums, parts or [sums]),
                )
            )
    everything = [s for g in per_group.values() for parts in g.values() for s in parts]
    intervals = (
        [KpiSums.merge(parts) for _, parts in sorted(by_interval.items())]
        if by_interval and terms.service_level.aggregation == "mean_of_intervals"
        else everything
    )
    # One bucket of one group (a month): the total is that bucket, computed once.
    overall = (
        computed[0]
        if len(computed) == 1
        else values(KpiSums.merge(everything), intervals or [KpiSums()])
    )
    total = {k: _read(overall[k]) for k in wanted}
    sl = terms.service_level
    return KpiReport(
        scope=scope,
        scope_id=scope_id,
        time_zone=zone_name,
        start=start,
        end=end,
        granularity=granularity.value,
        group_by=q.group_by,
        terms=TermsRead(
            service_level=dict(sl.to_mapping()),
            expression=sl.expression(),
            short_abandon_s=terms.short_abandon_s,
            timeouts_as_abandons=terms.timeouts_as_abandons,
            fcr_window_days=terms.fcr_window_days,
            interval_minutes=terms.interval_minutes,
            source=source,
        ),
        buckets=out,
        total=total,
        fcr_final_after=end + timedelta(days=terms.fcr_window_days),
    )


def _buckets(
    start: datetime, end: datetime, granularity: Granularity, zone: ZoneInfo
) -> list[Bucket]:
    return list(iter_buckets(start, end, granularity, zone))
