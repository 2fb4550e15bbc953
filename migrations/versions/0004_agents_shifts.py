"""Agent pool, certifications and shifts (no double booking).

* `agents` belong to the tenant's shared pool, not to a project;
  `agent_external_ids` maps each telephony system's agent id to one agent
  (unique per tenant, system and external id).
* `agent_certifications`: which projects an agent is trained for, from
  which date. Client-scoped like the project it names.
* `shifts`: agent x project x `[starts_at, ends_at)`. `during` is a stored
  generated `tstzrange`, and the GiST exclusion constraint
  `(tenant_id =, agent_id =, during &&)` makes a planned double booking
  impossible to store, even under concurrent writes. It is DEFERRABLE
  (initially immediate) so that a bulk import may swap two shifts of an
  agent in one statement and have the constraint checked at its end.
  `client_id` is denormalized, with a composite foreign key to
  `projects (tenant_id, client_id, id)`, so the RESTRICTIVE client policy
  applies to shifts too.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

from migrations.rls import create_tenant_table_sql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ACTIVITIES = "('on_queue', 'training', 'coaching', 'meeting', 'break')"


def upgrade() -> None:
    create_tenant_table_sql(
        "agents",
        """
        tenant_id uuid not null references tenants(id),
        id uuid not null,
        name text not null check (length(name) between 1 and 200),
        email text check (email like '%_@_%'),
        status text not null default 'active' check (status in ('active', 'inactive')),
        hire_date date,
        skills text[] not null default '{}',
        languages text[] not null default '{}',
        weekly_hours numeric(5, 2) check (weekly_hours between 0 and 168),
        version int not null default 1,
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now(),
        primary key (tenant_id, id)
        """,
    )
    op.execute(
        "create unique index agents_email_key on agents (tenant_id, lower(email)) where email is not null"
    )
    op.execute("create index agents_name on agents (tenant_id, name, id)")

    create_tenant_table_sql(
        "agent_external_ids",
        """
        tenant_id uuid not null,
        agent_id uuid not null,
        system text not null check (system ~ '^[a-z0-9][a-z0-9_]{0,39}$'),
        external_id text not null check (length(external_id) between 1 and 200),
        primary key (tenant_id, system, external_id),
        unique (tenant_id, agent_id, system),
        foreign key (tenant_id, agent_id) references agents (tenant_id, id) on delete cascade
        """,
    )
    # Imports name agents by external id without saying the system.
    op.execute(
        "create index agent_external_ids_lookup on agent_external_ids (tenant_id, external_id)"
    )

    create_tenant_table_sql(
        "agent_certifications",
        """
        tenant_id uuid not null,
        id uuid not null,
        agent_id uuid not null,
        project_id uuid not null,
        client_id uuid not null,
        certified_from date not null,
        certified_until date,
        note text check (length(note) <= 1000),
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now(),
        primary key (tenant_id, id),
        unique (tenant_id, agent_id, project_id),
        foreign key (tenant_id, agent_id) references agents (tenant_id, id) on delete cascade,
        foreign key (tenant_id, client_id, project_id)
          references projects (tenant_id, client_id, id),
        check (certified_until is null or certified_until >= certified_from)
        """,
        client_column="client_id",
    )
    op.execute(
        "create index agent_certifications_project on agent_certifications (tenant_id, project_id)"
    )

    create_tenant_table_sql(
        "shifts",
        f"""
        tenant_id uuid not null,
        id uuid not null,
        agent_id uuid not null,
        project_id uuid not null,
        client_id uuid not null,
        starts_at timestamptz not null,
        ends_at timestamptz not null,
        during tstzrange not null generated always as (tstzrange(starts_at, ends_at, '[)')) stored,
        activity text not null check (activity in {ACTIVITIES}),
        note text check (length(note) <= 1000),
        external_id text check (length(external_id) between 1 and 200),
        version int not null default 1,
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now(),
        primary key (tenant_id, id),
        unique (tenant_id, external_id),
        foreign key (tenant_id, agent_id) references agents (tenant_id, id),
        foreign key (tenant_id, client_id, project_id)
          references projects (tenant_id, client_id, id),
        check (ends_at > starts_at and ends_at - starts_at <= interval '24 hours'),
        constraint shifts_no_double_booking
          exclude using gist (tenant_id with =, agent_id with =, during with &&)
          deferrable initially immediate
        """,
        client_column="client_id",
    )
    # Schedules by project. An agent's shifts are found through the exclusion
    # constraint's GiST index (tenant_id, agent_id, during): one index fewer to
    # maintain on every write.
    op.execute("create index shifts_project_start on shifts (tenant_id, project_id, starts_at)")


def downgrade() -> None:
    for table in ("shifts", "agent_certifications", "agent_external_ids", "agents"):
        op.execute(f'drop table if exists "{table}"')
