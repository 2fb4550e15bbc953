"""Tenancy and identity: tenants, clients, users, tokens, invitations,
identity providers, audit log, signing keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

from migrations.rls import (
    TENANT_SETTING,
    admin_role,
    app_role,
    append_only,
    create_tenant_table_sql,
)

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ROLES = ("tenant_admin", "supervisor", "analyst", "client_viewer")
ROLE_CHECK = "role in ('tenant_admin', 'supervisor', 'analyst', 'client_viewer')"


def upgrade() -> None:
    # Tenants are not owned by a tenant: each tenant sees its own row only.
    op.execute(
        """
        create table tenants (
          id uuid primary key,
          slug varchar(63) not null unique check (slug ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
          name text not null check (length(name) between 1 and 200),
          status text not null default 'active' check (status in ('active', 'suspended')),
          time_zone text not null default 'UTC',
          locale text not null default 'en',
          brand_primary text not null default '#1f4e79',
          brand_accent text not null default '#f28c28',
          report_footer text not null default '',
          logo bytea,
          logo_media_type text,
          created_at timestamptz not null default now(),
          updated_at timestamptz not null default now()
        )
        """
    )
    op.execute("alter table tenants enable row level security")
    op.execute("alter table tenants force row level security")
    op.execute(
        f"create policy tenant_self on tenants using (id = {TENANT_SETTING}) with check (id = {TENANT_SETTING})"
    )
    op.execute(f'revoke insert, delete, truncate on tenants from "{app_role()}"')

    create_tenant_table_sql(
        "clients",
        """
        tenant_id uuid not null references tenants(id),
        id uuid not null,
        name text not null check (length(name) between 1 and 200),
        legal_name text,
        report_emails text[] not null default '{}',
        locale text not null default 'en',
        time_zone text not null default 'UTC',
        email_domains text[] not null default '{}',
        status text not null default 'active' check (status in ('active', 'inactive')),
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now(),
        primary key (tenant_id, id)
        """,
        client_column="id",
    )
    op.execute("create unique index clients_name_key on clients (tenant_id, lower(name))")

    create_tenant_table_sql(
        "users",
        f"""
        tenant_id uuid not null references tenants(id),
        id uuid not null,
        email text not null check (email like '%_@_%'),
        display_name text not null default '',
        role text not null check ({ROLE_CHECK}),
        client_id uuid,
        password_hash text,
        status text not null default 'active' check (status in ('active', 'disabled')),
        idp_id uuid,
        idp_subject text,
        created_at timestamptz not null default now(),
        last_login_at timestamptz,
        primary key (tenant_id, id),
        foreign key (tenant_id, client_id) references clients (tenant_id, id),
        check ((role = 'client_viewer') = (client_id is not null))
        """,
        client_column="client_id",
    )
    op.execute("create unique index users_email_key on users (tenant_id, lower(email))")
    op.execute(
        "create unique index users_idp_subject_key on users (tenant_id, idp_id, idp_subject) where idp_subject is not null"
    )

    create_tenant_table_sql(
        "refresh_tokens",
        """
        tenant_id uuid not null,
        id uuid not null,
        user_id uuid not null,
        family_id uuid not null,
        token_hash text not null,
        expires_at timestamptz not null,
        used_at timestamptz,
        revoked_at timestamptz,
        created_at timestamptz not null default now(),
        primary key (tenant_id, id),
        foreign key (tenant_id, user_id) references users (tenant_id, id) on delete cascade,
        unique (tenant_id, token_hash)
        """,
    )
    op.execute("create index refresh_tokens_family on refresh_tokens (tenant_id, family_id)")

    create_tenant_table_sql(
        "api_tokens",
        """
        tenant_id uuid not null references tenants(id),
        id uuid not null,
        name text not null check (length(name) between 1 and 200),
        token_hash text not null,
        scopes text[] not null,
        expires_at timestamptz,
        last_used_at timestamptz,
        revoked_at timestamptz,
        created_by uuid,
        created_at timestamptz not null default now(),
        primary key (tenant_id, id),
        unique (tenant_id, token_hash)
        """,
    )

    create_tenant_table_sql(
        "invitations",
        f"""
        tenant_id uuid not null references tenants(id),
        id uuid not null,
        email text not null,
        role text not null check ({ROLE_CHECK}),
        client_id uuid,
        token_hash text not null,
        expires_at timestamptz not null,
        accepted_at timestamptz,
        revoked_at timestamptz,
        created_by uuid,
        created_at timestamptz not null default now(),
        primary key (tenant_id, id),
        foreign key (tenant_id, client_id) references clients (tenant_id, id),
        unique (tenant_id, token_hash),
        check ((role = 'client_viewer') = (client_id is not null))
        """,
        client_column="client_id",
    )

    create_tenant_table_sql(
        "password_resets",
        """
        tenant_id uuid not null,
        id uuid not null,
        user_id uuid not null,
        token_hash text not null,
        expires_at timestamptz not null,
        used_at timestamptz,
        created_at timestamptz not null default now(),
        primary key (tenant_id, id),
        foreign key (tenant_id, user_id) references users (tenant_id, id) on delete cascade,
        unique (tenant_id, token_hash)
        """,
    )

    create_tenant_table_sql(
        "identity_providers",
        f"""
        tenant_id uuid not null references tenants(id),
        id uuid not null,
        client_id uuid,
        name text not null,
        issuer text not null check (issuer ~ '^https?://'),
        oauth_client_id text not null,
        client_secret_enc bytea not null,
        allowed_domains text[] not null default '{{}}',
        role_claim text,
        role_map jsonb not null default '{{}}',
        default_role text not null default 'analyst' check (default_role in {ROLES!r}),
        enabled boolean not null default true,
        created_at timestamptz not null default now(),
        primary key (tenant_id, id),
        foreign key (tenant_id, client_id) references clients (tenant_id, id)
        """,
        client_column="client_id",
    )

    create_tenant_table_sql(
        "audit_log",
        # No foreign key to tenants: the log is written in the same flush as the
        # tenant it records, and it must outlive anything it names.
        """
        tenant_id uuid not null,
        id uuid not null,
        at timestamptz not null default now(),
        actor_type text not null,
        actor_id uuid,
        action text not null,
        object_type text not null,
        object_id text,
        outcome text not null default 'ok' check (outcome in ('ok', 'denied')),
        request_id text,
        summary jsonb not null default '{}',
        primary key (tenant_id, id)
        """,
    )
    append_only("audit_log")
    op.execute(f'revoke update, delete, truncate on audit_log from "{admin_role()}"')

    # Platform-wide, not tenant data: no tenant_id, no RLS. The app role only reads.
    op.execute(
        """
        create table signing_keys (
          kid text primary key,
          private_jwk_enc bytea not null,
          public_jwk jsonb not null,
          created_at timestamptz not null default now(),
          sign_until timestamptz not null,
          verify_until timestamptz not null
        )
        """
    )
    op.execute(f'revoke insert, update, delete, truncate on signing_keys from "{app_role()}"')


def downgrade() -> None:
    for table in (
        "signing_keys",
        "audit_log",
        "identity_providers",
        "password_resets",
        "invitations",
        "api_tokens",
        "refresh_tokens",
        "users",
        "clients",
        "tenants",
    ):
        op.execute(f'drop table if exists "{table}"')
