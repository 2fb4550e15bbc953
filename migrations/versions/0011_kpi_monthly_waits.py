"""KPI rollups: the wait histogram per project x channel x local month.

A project-month's KPIs under any contract formula need its wait histogram
(per outcome and second of wait). Merged from the month's daily rows, that is
~7 600 cells summed at every read of a big project (4-5 ms in PostgreSQL, of a
10 ms budget); kept per month, it is one row of ~1 000 cells. It is maintained
in the ingest's transaction exactly as the daily rows are (one more upsert of
the same signed delta, `service/kpis/rollups.py`), rebuilt with them, and read
for whole local months (`service/kpis/repository.py`). The sums stay daily
only: a month's 31 daily rows of scalars add up in well under a millisecond.

`local_month` is the first day of the contact's month in its project's zone
(`date_trunc('month', local_day)`), so a month here is exactly the days the
daily rows hold.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

from migrations.rls import create_tenant_table_sql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_tenant_table_sql(
        "kpi_monthly_waits",
        """
        tenant_id uuid not null,
        project_id uuid not null,
        client_id uuid not null,
        channel text not null,
        local_month date not null check (extract(day from local_month) = 1),
        outcome smallint[] not null,
        edge_s int[] not null,
        n int[] not null,
        sum_ms bigint[] not null,
        max_ms bigint[] not null,
        max_exact boolean[] not null,
        primary key (tenant_id, project_id, local_month, channel)
        """,
        client_column="client_id",
    )
    # A month of a big project is 1 000-2 500 cells, 6-70 kB of arrays: stored
    # out of line and not compressed. Every ingest batch reads and rewrites the
    # months it touches, and pglz on both sides was a third of that upsert
    # (measured at 10 M contacts: 430 -> 280-300 ms for a 50 000-contact batch).
    for column in ("outcome", "edge_s", "n", "sum_ms", "max_ms", "max_exact"):
        op.execute(f"alter table kpi_monthly_waits alter column {column} set storage external")
    # What a cached KPI report is computed from (migration 0006).
    op.execute(
        'create trigger "kpi_monthly_waits_notify_change" after insert or update or delete'
        ' or truncate on "kpi_monthly_waits" for each statement'
        " execute function callpact_notify_change()"
    )
    # The months of the daily rows already held: their cells summed, a maximum
    # exact only where every day's was (readers recompute the others from raw).
    # Every tenant's rows at once: the owner is exempt from row-level security
    # while it is not forced, for this statement only.
    for table in ("kpi_daily_waits", "kpi_monthly_waits"):
        op.execute(f'alter table "{table}" no force row level security')
    op.execute(
        """
        insert into kpi_monthly_waits (tenant_id, project_id, client_id, channel, local_month,
                                       outcome, edge_s, n, sum_ms, max_ms, max_exact)
        select tenant_id, project_id, client_id, channel, local_month,
               array_agg(o order by o, e), array_agg(e order by o, e), array_agg(n order by o, e),
               array_agg(s order by o, e), array_agg(m order by o, e), array_agg(x order by o, e)
        from (
          select w.tenant_id, w.project_id, w.client_id, w.channel,
                 date_trunc('month', w.local_day::timestamp)::date as local_month,
                 u.o, u.e, sum(u.n)::int as n, sum(u.s)::bigint as s, max(u.m) as m,
                 bool_and(u.x) as x
          from kpi_daily_waits w,
               unnest(w.outcome, w.edge_s, w.n, w.sum_ms, w.max_ms, w.max_exact)
                 as u(o, e, n, s, m, x)
          group by 1, 2, 3, 4, 5, 6, 7
          having sum(u.n) <> 0
        ) cells
        group by tenant_id, project_id, client_id, channel, local_month
        """
    )
    for table in ("kpi_daily_waits", "kpi_monthly_waits"):
        op.execute(f'alter table "{table}" force row level security')


def downgrade() -> None:
    op.execute('drop table if exists "kpi_monthly_waits"')
