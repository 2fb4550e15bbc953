"""Contacts, agent states, KPI rollups, ingestion bookkeeping.

* `contacts`: one row per contact offered to a queue, partitioned by month
  of `queued_at` (declarative range partitioning; a DEFAULT partition catches
  the rest) so a year of a large BPO stays fast and old months can be
  detached. A partitioned table cannot hold a unique key without its
  partition column, so the natural key `(tenant_id, project_id,
  external_id)` lives in the non-partitioned `contact_keys`, written in the
  same statement batch; it also remembers the version and a content hash, so
  a re-sent record is recognised without touching the partitions. Neither
  table has a foreign key to `projects`: a per-row FK check doubled the cost
  of an import, and the only writer (service/contacts/ingest.py) takes every
  project id from a join on `projects` under the tenant's row-level
  security, so a row cannot name another tenant's project.
  Durations are whole milliseconds rounded up (see service/kpis/sums.py):
  every figure is exact and the same from raw rows and from rollups.
* `contact_corrections`: what a newer version of a contact changed.
* `kpi_daily_sums` / `kpi_daily_waits`: the rollups, per project x channel
  x local day. Additive columns only, so ingestion maintains them with
  set-wise `INSERT … ON CONFLICT DO UPDATE SET x = x + excluded.x` in the
  same transaction (a correction adds the new version and subtracts the
  old). Wait histograms are long-format rows (outcome, grid edge) with exact
  counts and millisecond sums: any contract threshold on the grid is exact.
  There is no 15-minute rollup on purpose: measured, a project has well
  under one contact per quarter hour on average, so a 15-minute rollup
  holds about a row per contact and costs more to maintain than it saves;
  interval figures are aggregated from the raw rows (indexed by project
  and time), whose `bucket_start` column names the UTC-aligned quarter hour
  (every zone in use is a whole number of quarter hours from UTC).
* `agent_state_events`: state changes as the sources report them; spans are
  derived (each state lasts until the agent's next event).
* `ingest_sources`: per tenant and source, the continuation state of a
  streaming parser (a call still waiting at the end of a queue_log file).
* `idempotency_keys`: cached answers of `Idempotency-Key` requests (24 h).
* `ingest_issues`: what data-quality checks found (unmapped queues/agents,
  gaps, skew, duplicates, late records), per tenant and source.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

from migrations.rls import create_tenant_table_sql, enable_rls

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

FIRST_YEAR, LAST_YEAR = 2015, 2032
OUTCOMES = "('answered', 'abandoned', 'timeout', 'exit_key', 'exit_empty', 'overflow', 'transferred_out', 'in_queue')"
CHANNELS = "('voice', 'chat', 'email', 'social')"

SUM_COLUMNS = """
  n_answered int not null default 0,
  n_abandoned int not null default 0,
  n_timeout int not null default 0,
  n_exit_key int not null default 0,
  n_exit_empty int not null default 0,
  n_overflow int not null default 0,
  n_transferred_out int not null default 0,
  n_in_queue int not null default 0,
  talk_ms bigint not null default 0,
  hold_ms bigint not null default 0,
  acw_ms bigint not null default 0,
  held int not null default 0,
  hold_count int not null default 0,
  transferred int not null default 0,
  fcr_resolved int not null default 0,
  fcr_known int not null default 0,
  csat_1 int not null default 0, csat_2 int not null default 0, csat_3 int not null default 0,
  csat_4 int not null default 0, csat_5 int not null default 0,
  nps_0 int not null default 0, nps_1 int not null default 0, nps_2 int not null default 0,
  nps_3 int not null default 0, nps_4 int not null default 0, nps_5 int not null default 0,
  nps_6 int not null default 0, nps_7 int not null default 0, nps_8 int not null default 0,
  nps_9 int not null default 0, nps_10 int not null default 0
"""


def _month_partitions() -> list[tuple[str, str, str]]:
    out = []
    for year in range(FIRST_YEAR, LAST_YEAR + 1):
        for month in range(1, 13):
            nxt = (year + (month == 12), month % 12 + 1)
            out.append(
                (
                    f"contacts_{year}_{month:02d}",
                    f"{year}-{month:02d}-01",
                    f"{nxt[0]}-{nxt[1]:02d}-01",
                )
            )
    return out


def upgrade() -> None:
    # The wait-histogram grid of service/kpis/sums.py (GRID_VERSION 1): the
    # bucket (its inclusive upper edge, seconds) of a wait in whole ms. Pure
    # arithmetic over its argument, no table access. Not STRICT, so that the
    # planner inlines it (a STRICT CASE function is called per row: 4x slower).
    op.execute(
        """
        create function kpi_wait_edge(ms bigint) returns int
        language sql immutable parallel safe as $$
          select case
            when ms is null then null
            when ms <= 3600000 then ((ms + 999) / 1000)::int
            when ms <= 86400000 then (((ms + 59999) / 60000) * 60)::int
            when ms <= 2678400000 then (((ms + 3599999) / 3600000) * 3600)::int
            else 2147483647
          end
        $$
        """
    )
    # UUIDv7 (RFC 9562) for rows created set-wise in SQL: 48-bit Unix ms, then
    # gen_random_uuid()'s randomness with the version nibble set to 7. Works on
    # PostgreSQL 14-17, which lack uuidv7().
    op.execute(
        """
        create function callpact_uuid7() returns uuid
        language sql volatile parallel safe as $$
          select overlay(encode(overlay(uuid_send(gen_random_uuid())
                   placing substring(int8send((date_part('epoch', clock_timestamp()) * 1000)::bigint) from 3)
                   from 1 for 6), 'hex') placing '7' from 13 for 1)::uuid
        $$
        """
    )
    op.execute(
        f"""
        create table contacts (
          tenant_id uuid not null,
          id uuid not null,
          project_id uuid not null,
          client_id uuid not null,
          channel text not null check (channel in {CHANNELS}),
          external_id text not null,
          source text not null,
          queue_key text,
          customer_key text,
          queued_at timestamptz not null,
          answered_at timestamptz,
          ended_at timestamptz,
          abandoned_at timestamptz,
          outcome text not null check (outcome in {OUTCOMES}),
          agent_id uuid,
          agent_key text,
          wait_ms bigint check (wait_ms >= 0),
          talk_ms bigint check (talk_ms >= 0),
          hold_ms bigint check (hold_ms >= 0),
          hold_count int check (hold_count >= 0),
          acw_ms bigint check (acw_ms >= 0),
          transferred boolean,
          resolved_first_contact boolean,
          csat smallint check (csat between 1 and 5),
          nps smallint check (nps between 0 and 10),
          sentiment real check (sentiment between -1 and 1),
          source_version bigint,
          raw_ref text,
          bucket_start timestamptz not null,
          local_day date not null,
          ingested_at timestamptz not null default now(),
          updated_at timestamptz not null default now(),
          primary key (tenant_id, id, queued_at)
        ) partition by range (queued_at)
        """
    )
    enable_rls("contacts", client_column="client_id")
    for name, start, end in _month_partitions():
        op.execute(
            f"create table {name} partition of contacts for values from ('{start}') to ('{end}')"
        )
        # Partitions are tables of their own: the same walls if queried directly.
        enable_rls(name, client_column="client_id")
    op.execute("create table contacts_default partition of contacts default")
    enable_rls("contacts_default", client_column="client_id")
    op.execute("create index contacts_project_time on contacts (tenant_id, project_id, queued_at)")
    op.execute(
        "create index contacts_agent_time on contacts (tenant_id, agent_id, queued_at) where agent_id is not null"
    )
    op.execute(
        "create index contacts_customer on contacts (tenant_id, project_id, customer_key, queued_at) where customer_key is not null"
    )

    create_tenant_table_sql(
        "contact_keys",
        """
        tenant_id uuid not null,
        project_id uuid not null,
        external_id text not null,
        client_id uuid not null,
        contact_id uuid not null,
        queued_at timestamptz not null,
        source_version bigint,
        content_hash bigint not null,
        primary key (tenant_id, project_id, external_id)
        """,
        client_column="client_id",
    )

    create_tenant_table_sql(
        "contact_corrections",
        """
        tenant_id uuid not null,
        id uuid not null,
        contact_id uuid not null,
        project_id uuid not null,
        client_id uuid not null,
        external_id text not null,
        corrected_at timestamptz not null default now(),
        old_version bigint,
        new_version bigint,
        changes jsonb not null,
        primary key (tenant_id, id)
        """,
        client_column="client_id",
    )
    op.execute(
        "create index contact_corrections_contact on contact_corrections (tenant_id, contact_id)"
    )

    create_tenant_table_sql(
        "kpi_daily_sums",
        f"""
        tenant_id uuid not null,
        project_id uuid not null,
        client_id uuid not null,
        channel text not null,
        local_day date not null,
        {SUM_COLUMNS},
        primary key (tenant_id, project_id, local_day, channel)
        """,
        client_column="client_id",
    )
    # One row per project x day x channel; the histogram is parallel arrays
    # (outcome, grid edge, count, Σ ms, max ms, max exact), sorted by
    # (outcome, edge). A long-format row per edge measured ~1 row per contact
    # on realistic (sparse) projects; arrays keep it to one row per day.
    create_tenant_table_sql(
        "kpi_daily_waits",
        """
        tenant_id uuid not null,
        project_id uuid not null,
        client_id uuid not null,
        channel text not null,
        local_day date not null,
        outcome smallint[] not null,
        edge_s int[] not null,
        n int[] not null,
        sum_ms bigint[] not null,
        max_ms bigint[] not null,
        max_exact boolean[] not null,
        primary key (tenant_id, project_id, local_day, channel)
        """,
        client_column="client_id",
    )
    # Merge two histograms (a stored one and a signed delta). Counts and sums
    # add; a maximum cannot be subtracted, so an entry whose removed waits
    # reach its maximum keeps the maximum of what was added and is marked
    # inexact (readers recompute it from raw rows). Entries that drop to zero
    # disappear. Pure: it reads no table.
    op.execute(
        """
        create function kpi_merge_hist(
          o1 smallint[], e1 int[], n1 int[], s1 bigint[], m1 bigint[], x1 boolean[],
          o2 smallint[], e2 int[], n2 int[], s2 bigint[], m2 bigint[], x2 boolean[],
          out outcome smallint[], out edge_s int[], out n int[], out sum_ms bigint[],
          out max_ms bigint[], out max_exact boolean[])
        language sql immutable parallel safe as $$
          select coalesce(array_agg(g.o order by g.o, g.e), '{}'),
                 coalesce(array_agg(g.e order by g.o, g.e), '{}'),
                 coalesce(array_agg(g.n order by g.o, g.e), '{}'),
                 coalesce(array_agg(g.s order by g.o, g.e), '{}'),
                 coalesce(array_agg(g.m order by g.o, g.e), '{}'),
                 coalesce(array_agg(g.x order by g.o, g.e), '{}')
          from (
            select u.o, u.e, sum(u.n)::int as n, sum(u.s)::bigint as s,
                   coalesce(max(u.m) filter (where u.n > 0), max(u.m)) as m,
                   coalesce(bool_and(u.x) filter (where u.n > 0), false)
                     and coalesce(max(u.m) filter (where u.n < 0) < max(u.m) filter (where u.n > 0), true) as x
            from (
              select * from unnest(o1, e1, n1, s1, m1, x1) as a(o, e, n, s, m, x)
              union all
              select * from unnest(o2, e2, n2, s2, m2, x2) as b(o, e, n, s, m, x)
            ) u
            group by u.o, u.e
            having sum(u.n) <> 0
          ) g
        $$
        """
    )

    create_tenant_table_sql(
        "agent_state_events",
        """
        tenant_id uuid not null,
        id uuid not null,
        agent_id uuid not null,
        at timestamptz not null,
        state text not null check (state in ('logged_out', 'available', 'on_contact', 'acw', 'not_ready')),
        reason text,
        queue_key text,
        project_id uuid,
        source text not null,
        raw_ref text,
        ingested_at timestamptz not null default now(),
        primary key (tenant_id, id),
        foreign key (tenant_id, agent_id) references agents (tenant_id, id)
        """,
    )
    # Idempotent on what the source said: the same event twice is one row.
    op.execute(
        "create unique index agent_state_events_natural on agent_state_events "
        "(tenant_id, agent_id, at, state, coalesce(queue_key, ''))"
    )

    create_tenant_table_sql(
        "ingest_sources",
        """
        tenant_id uuid not null,
        id uuid not null,
        kind text not null check (kind in ('queue_log', 'amazon_connect', 'csv', 'json')),
        name text not null,
        state jsonb not null default '{}',
        last_import_at timestamptz,
        last_event_at timestamptz,
        primary key (tenant_id, id),
        unique (tenant_id, kind, name)
        """,
    )

    create_tenant_table_sql(
        "idempotency_keys",
        """
        tenant_id uuid not null,
        actor_id uuid not null,
        key text not null,
        request_hash bytea not null,
        state text not null check (state in ('in_flight', 'done')),
        response_status int,
        response_body bytea,
        created_at timestamptz not null default now(),
        expires_at timestamptz not null,
        primary key (tenant_id, actor_id, key)
        """,
    )

    create_tenant_table_sql(
        "ingest_issues",
        """
        tenant_id uuid not null,
        id uuid not null,
        source text not null,
        kind text not null,
        subject text not null,
        project_id uuid,
        first_seen timestamptz not null default now(),
        last_seen timestamptz not null default now(),
        occurrences bigint not null default 1,
        detail jsonb not null default '{}',
        primary key (tenant_id, id),
        unique (tenant_id, source, kind, subject)
        """,
    )


def downgrade() -> None:
    for table in (
        "ingest_issues",
        "idempotency_keys",
        "ingest_sources",
        "agent_state_events",
        "kpi_daily_waits",
        "kpi_daily_sums",
        "contact_corrections",
        "contact_keys",
        "contacts",
    ):
        op.execute(f'drop table if exists "{table}" cascade')
    op.execute("drop function if exists kpi_wait_edge(bigint)")
    op.execute("drop function if exists callpact_uuid7()")
    op.execute(
        "drop function if exists kpi_merge_hist(smallint[], int[], int[], bigint[], bigint[], boolean[],"
        " smallint[], int[], int[], bigint[], bigint[], boolean[])"
    )
