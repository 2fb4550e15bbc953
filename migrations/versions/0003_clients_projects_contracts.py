"""Clients (operations fields), projects, supervisor assignments, contracts.

* `projects`: a client's queue or campaign. `client_id` is immutable and part
  of a unique key, so children (contracts, queue keys) carry it in a composite
  foreign key and get the RESTRICTIVE client policy without a join.
* `project_queue_keys`: one row per raw telephony queue key, unique per
  tenant — one queue maps to one project. The API edits `projects.queue_keys`;
  a trigger mirrors the array into this table in the same statement, so the
  unique key holds for every writer and a race ends in a unique violation,
  never in a queue mapped twice. (An exclusion constraint on the array would
  need GiST support for `text[] &&`, which stock PostgreSQL lacks.)
* `user_projects`: the projects a supervisor is assigned to; a supervisor sees
  only these. An assignment has its own id so the audit log's entry for its
  removal names the assignment whose creation entry says user and project.
  (The application sets UUIDv7 ids; the default serves raw SQL seeding.)
* `contracts`: one row per contract version. Versions of one project never
  overlap: a GiST exclusion constraint on (tenant, project, effective dates),
  so two concurrent editors cannot both win.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

from migrations.rls import create_tenant_table_sql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

CHANNELS = "array['voice', 'chat', 'email', 'social']::text[]"


def upgrade() -> None:
    create_tenant_table_sql(
        "projects",
        f"""
        tenant_id uuid not null references tenants(id),
        id uuid not null,
        client_id uuid not null,
        name text not null check (length(name) between 1 and 200),
        channels text[] not null default '{{voice}}'
          check (cardinality(channels) >= 1 and channels <@ {CHANNELS}),
        time_zone text not null default 'UTC',
        business_hours jsonb not null default '{{}}' check (jsonb_typeof(business_hours) = 'object'),
        holidays jsonb not null default '[]' check (jsonb_typeof(holidays) = 'array'),
        queue_keys text[] not null default '{{}}',
        status text not null default 'active' check (status in ('active', 'inactive')),
        version int not null default 1,
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now(),
        primary key (tenant_id, id),
        unique (tenant_id, client_id, id),
        foreign key (tenant_id, client_id) references clients (tenant_id, id)
        """,
        client_column="client_id",
    )
    op.execute(
        "create unique index projects_name_key on projects (tenant_id, client_id, lower(name))"
    )

    create_tenant_table_sql(
        "project_queue_keys",
        """
        tenant_id uuid not null,
        queue_key text not null check (length(queue_key) between 1 and 200),
        client_id uuid not null,
        project_id uuid not null,
        primary key (tenant_id, queue_key),
        foreign key (tenant_id, client_id, project_id)
          references projects (tenant_id, client_id, id) on delete cascade
        """,
        client_column="client_id",
    )
    op.execute(
        "create index project_queue_keys_project on project_queue_keys (tenant_id, project_id)"
    )
    # SECURITY INVOKER (the default): the mirror is written under the caller's
    # row-level security, with the project's own tenant and client.
    op.execute(
        """
        create function sync_project_queue_keys() returns trigger
        language plpgsql set search_path = public as $$
        begin
          delete from project_queue_keys where tenant_id = new.tenant_id and project_id = new.id;
          insert into project_queue_keys (tenant_id, queue_key, client_id, project_id)
            select new.tenant_id, k, new.client_id, new.id from unnest(new.queue_keys) as k;
          return null;
        end $$
        """
    )
    op.execute(
        "create trigger projects_queue_keys after insert or update of queue_keys on projects "
        "for each row execute function sync_project_queue_keys()"
    )

    create_tenant_table_sql(
        "user_projects",
        """
        tenant_id uuid not null,
        id uuid not null default gen_random_uuid(),
        user_id uuid not null,
        project_id uuid not null,
        created_at timestamptz not null default now(),
        primary key (tenant_id, id),
        unique (tenant_id, user_id, project_id),
        foreign key (tenant_id, user_id) references users (tenant_id, id) on delete cascade,
        foreign key (tenant_id, project_id) references projects (tenant_id, id) on delete cascade
        """,
    )
    op.execute("create index user_projects_project on user_projects (tenant_id, project_id)")

    create_tenant_table_sql(
        "contracts",
        """
        tenant_id uuid not null references tenants(id),
        id uuid not null,
        client_id uuid not null,
        project_id uuid not null,
        version_number int not null check (version_number >= 1),
        effective_from date not null,
        effective_to date,
        reference text check (length(reference) <= 200),
        targets jsonb not null default '[]' check (jsonb_typeof(targets) = 'array'),
        short_abandon_s int not null default 5 check (short_abandon_s between 0 and 600),
        timeouts_count_as_abandons boolean not null default false,
        fcr_window_days int not null default 7 check (fcr_window_days between 1 and 90),
        measurement_period text not null default 'month'
          check (measurement_period in ('day', 'week', 'month', 'quarter')),
        interval_minutes int not null default 15 check (interval_minutes in (15, 30, 60)),
        volume_variance_margin numeric(6, 4)
          check (volume_variance_margin >= 0 and volume_variance_margin <= 10),
        monthly_fee numeric(14, 2) check (monthly_fee >= 0),
        currency char(3) check (currency ~ '^[A-Z]{3}$'),
        service_credits jsonb check (jsonb_typeof(service_credits) = 'object'),
        version int not null default 1,
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now(),
        primary key (tenant_id, id),
        unique (tenant_id, project_id, version_number),
        foreign key (tenant_id, client_id, project_id)
          references projects (tenant_id, client_id, id),
        constraint contracts_dates check (effective_to is null or effective_to >= effective_from),
        constraint contracts_fee_currency check (monthly_fee is null or currency is not null),
        constraint contracts_no_overlap exclude using gist (
          tenant_id with =,
          project_id with =,
          daterange(effective_from, effective_to, '[]') with &&
        )
        """,
        client_column="client_id",
    )


def downgrade() -> None:
    op.execute('drop table if exists "contracts"')
    op.execute('drop table if exists "user_projects"')
    op.execute("drop trigger if exists projects_queue_keys on projects")
    op.execute('drop table if exists "project_queue_keys"')
    op.execute("drop function if exists sync_project_queue_keys()")
    op.execute('drop table if exists "projects"')
