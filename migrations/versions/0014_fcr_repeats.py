"""FCR by repeat: how soon each customer came back, and its daily rollup.

KPIS.md judges first-contact resolution by the contact's flag where the
source gives one, "otherwise by repeat: the same customer key has no further
contact on the same project within `fcr_window`". Asterisk and Amazon Connect
give no flag, so without this their FCR was "no data".

* `contact_keys.customer_key` and an index on (tenant, project, customer,
  time): the contacts of a customer around an arriving one, found with one
  probe of one B-tree (on the partitioned `contacts`, whose customer index
  migration 0007 dropped, it would be a probe per month partition in reach).
* `repeat_days` on `contact_keys` (maintained there) and on `contacts` (for
  raw reads): whole days, rounded up and at least 1, from the contact to the
  customer's next contact on the project; null when there is none within 90
  days, the longest window a contract may set.
* `kpi_daily_sums.fcr_repeat_known`: answered contacts without a flag, with a
  customer key (the ones judged by repeat).
* `kpi_daily_repeats`: per project x channel x local day x repeat_days, how
  many of those came back that soon. A window of W days counts the rows with
  repeat_days <= W, so any contract window is exact without a raw scan.

The data already held is filled in: repeat_days from the keys, the counts
from the raw contacts.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

from migrations.rls import create_tenant_table_sql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# service.kpis.rollups.REPEAT_DAYS_SQL and FCR_BY_REPEAT, as of this revision.
_REPEAT_DAYS = (
    "case when next_at - queued_at <= interval '90 days'"
    " then greatest(1, ceil(date_part('epoch', next_at - queued_at) / 86400))::smallint end"
)
_BY_REPEAT = "outcome = 'answered' and resolved_first_contact is null and customer_key is not null"


def _forced(names: list[str]) -> list[str]:
    """Of `contacts`, its partitions and `names`: those whose row-level security is forced."""
    rows = op.get_bind().execute(
        text(
            "select c.relname from pg_class c where c.relforcerowsecurity and ("
            " c.oid in (select inhrelid from pg_inherits where inhparent = 'contacts'::regclass)"
            " or c.relname = any(:names)) and c.relnamespace = current_schema()::regnamespace"
        ),
        {"names": ["contacts", *names]},
    )
    return [r[0] for r in rows]


def upgrade() -> None:
    op.execute("alter table contacts add column repeat_days smallint")
    op.execute(
        "alter table contact_keys add column customer_key text,"
        " add column repeat_days smallint check (repeat_days between 1 and 90)"
    )
    op.execute(
        "create index contact_keys_customer on contact_keys"
        " (tenant_id, project_id, customer_key, queued_at) where customer_key is not null"
    )
    op.execute("alter table kpi_daily_sums add column fcr_repeat_known integer not null default 0")
    create_tenant_table_sql(
        "kpi_daily_repeats",
        """
        tenant_id uuid not null,
        project_id uuid not null,
        client_id uuid not null,
        channel text not null,
        local_day date not null,
        repeat_days smallint not null check (repeat_days between 1 and 90),
        n integer not null check (n >= 0),
        primary key (tenant_id, project_id, local_day, channel, repeat_days)
        """,
        client_column="client_id",
    )
    # What a cached KPI report is computed from (migration 0006).
    op.execute(
        'create trigger "kpi_daily_repeats_notify_change" after insert or update or delete'
        ' or truncate on "kpi_daily_repeats" for each statement'
        " execute function callpact_notify_change()"
    )

    # Fill: every tenant's rows at once (the owner is exempt from row-level
    # security while it is not forced, for these statements only).
    tables = _forced(["contact_keys", "kpi_daily_sums", "kpi_daily_repeats"])
    for table in tables:
        op.execute(f'alter table "{table}" no force row level security')
    op.execute(
        """
        update contact_keys k set customer_key = c.customer_key
        from contacts c
        where c.tenant_id = k.tenant_id and c.id = k.contact_id and c.queued_at = k.queued_at
          and c.customer_key is not null
        """
    )
    op.execute(
        f"""
        with seq as (
          select tenant_id, project_id, external_id, contact_id, queued_at,
                 lead(queued_at) over (partition by tenant_id, project_id, customer_key
                                       order by queued_at, contact_id) as next_at
          from contact_keys where customer_key is not null
        ),
        days as (
          select tenant_id, project_id, external_id, contact_id, queued_at,
                 {_REPEAT_DAYS} as d
          from seq
        ),
        keys as (
          update contact_keys k set repeat_days = days.d
          from days
          where days.d is not null and k.tenant_id = days.tenant_id
            and k.project_id = days.project_id and k.external_id = days.external_id
        )
        update contacts c set repeat_days = days.d
        from days
        where days.d is not null and c.tenant_id = days.tenant_id and c.id = days.contact_id
          and c.queued_at = days.queued_at
        """
    )
    op.execute(
        f"""
        update kpi_daily_sums s set fcr_repeat_known = x.n
        from (
          select tenant_id, project_id, channel, local_day, count(*) as n
          from contacts where {_BY_REPEAT}
          group by 1, 2, 3, 4
        ) x
        where s.tenant_id = x.tenant_id and s.project_id = x.project_id
          and s.channel = x.channel and s.local_day = x.local_day
        """
    )
    op.execute(
        f"""
        insert into kpi_daily_repeats (tenant_id, project_id, client_id, channel, local_day,
                                       repeat_days, n)
        select tenant_id, project_id, client_id, channel, local_day, repeat_days, count(*)
        from contacts where {_BY_REPEAT} and repeat_days is not null
        group by 1, 2, 3, 4, 5, 6
        """
    )
    for table in tables:
        op.execute(f'alter table "{table}" force row level security')


def downgrade() -> None:
    op.execute('drop table if exists "kpi_daily_repeats"')
    op.execute("alter table kpi_daily_sums drop column if exists fcr_repeat_known")
    op.execute("drop index if exists contact_keys_customer")
    op.execute(
        "alter table contact_keys drop column if exists repeat_days,"
        " drop column if exists customer_key"
    )
    op.execute("alter table contacts drop column if exists repeat_days")
