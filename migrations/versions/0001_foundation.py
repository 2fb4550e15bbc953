"""Foundation: extensions, the three roles and their default privileges.

Roles (see docs/adr/0001-rls-and-roles.md):

* the owner — whoever runs this migration (DATABASE_URL); owns every object;
* the application role (API, worker): LOGIN, NOSUPERUSER, NOBYPASSRLS, owns
  nothing, DML on tables only (revoked per table where a table is append-only);
* the admin role: BYPASSRLS, for platform administration and cron fan-out.

Roles are cluster-wide: they are created when missing (creating a BYPASSRLS
role needs a superuser; on managed servers a DBA creates them first, see
README) and dropped on downgrade only when this migration created them and
nothing else still depends on them.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

from migrations.rls import admin_role, settings

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MARK = "created by callpact migration 0001"


def _ensure_role(name: str, attributes: str, password: str | None) -> None:
    conn = op.get_bind()
    exists = conn.execute(text("select 1 from pg_roles where rolname = :n"), {"n": name}).first()
    if exists is None:
        op.execute(f'create role "{name}" login {attributes}')
        op.execute(f"comment on role \"{name}\" is '{MARK}'")
    if password is not None:
        # ALTER ROLE takes no bind parameters: let the server quote the literal.
        statement = conn.execute(
            text("select format('alter role %I password %L', cast(:n as text), cast(:p as text))"),
            {"n": name, "p": password},
        ).scalar_one()
        conn.exec_driver_sql(statement)


def upgrade() -> None:
    cfg = settings()
    app, admin = cfg.app_role, admin_role()
    op.execute("create extension if not exists btree_gist")
    _ensure_role(
        app,
        "nosuperuser nobypassrls nocreatedb nocreaterole noreplication",
        cfg.app_password.get_secret_value() if cfg.app_password else None,
    )
    _ensure_role(
        admin,
        "nosuperuser bypassrls nocreatedb nocreaterole noreplication",
        cfg.admin_password.get_secret_value() if cfg.admin_password else None,
    )
    # Refuse to run with an application role that would defeat row-level security.
    op.execute(
        f"""
        do $$ begin
          if exists (select 1 from pg_roles where rolname = '{app}' and (rolsuper or rolbypassrls)) then
            raise exception 'application role {app} must be NOSUPERUSER NOBYPASSRLS';
          end if;
        end $$
        """
    )
    op.execute("revoke create on schema public from public")
    for role in (app, admin):
        op.execute(
            "do $$ begin execute format('grant connect on database %I to %I',"
            f" current_database(), '{role}'); end $$"
        )
        op.execute(f'grant usage on schema public to "{role}"')
        op.execute(
            f'alter default privileges in schema public grant select, insert, update, delete on tables to "{role}"'
        )
        op.execute(
            f'alter default privileges in schema public grant usage, select on sequences to "{role}"'
        )
        op.execute(f'grant select on alembic_version to "{role}"')


def downgrade() -> None:
    cfg = settings()
    for role in (cfg.app_role, cfg.admin_role):
        op.execute(f'revoke select on alembic_version from "{role}"')
        op.execute(
            f'alter default privileges in schema public revoke usage, select on sequences from "{role}"'
        )
        op.execute(
            f'alter default privileges in schema public revoke select, insert, update, delete on tables from "{role}"'
        )
        op.execute(f'revoke usage on schema public from "{role}"')
        op.execute(
            f"do $$ begin execute format('revoke connect on database %I from %I', current_database(), '{role}'); end $$"
        )
        op.execute(
            f"""
            do $$ begin
              if shobj_description((select oid from pg_roles where rolname = '{role}'), 'pg_authid') = '{MARK}' then
                begin
                  execute format('drop role %I', '{role}');
                exception when dependent_objects_still_exist then
                  raise notice 'role {role} still used elsewhere; kept';
                end;
              end if;
            end $$
            """
        )
    op.execute("drop extension if exists btree_gist")
