"""Clients (operations fields), projects, supervisor assignments, contracts.

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
        business_hours jsonb not null default '{{}}',
        holidays jsonb not null default '[]',
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


def downgrade() -> None:
    op.execute('drop table if exists "projects"')
