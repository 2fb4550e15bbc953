"""Row-level security helpers for migrations.

Every tenant-owned table is created with `create_tenant_table`, which adds
its policies in the same migration, so no table can forget them (a test
fails for any table with a `tenant_id` column that lacks them):

* `ENABLE` and `FORCE ROW LEVEL SECURITY` (FORCE: the owner obeys too);
* a permissive policy `tenant_isolation`: `tenant_id` equals the
  transaction's `app.tenant_id`. The setting is read through a sub-select so
  PostgreSQL evaluates it once per query, and `nullif(…, '')` makes an unset
  setting NULL: no setting, no rows (fail closed);
* for client-owned rows a RESTRICTIVE policy `client_isolation`: when the
  transaction carries an `app.client_id` (a client viewer), only that
  client's rows. Restrictive, because permissive policies are OR-ed and a
  permissive one would fail open. Its "no client set" test is a boolean
  sub-select (`CLIENT_UNSET`), not `… is null`: the planner guesses a
  boolean parameter true half the time but a parameter `is null` 0.5 % of
  the time, so the old form made it expect ~2 % of a tenant's rows in every
  scan of a client-owned table (migration 0012).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import context, op

from service.core.config import DatabaseSettings

TENANT_SETTING = "(select nullif(current_setting('app.tenant_id', true), '')::uuid)"
CLIENT_SETTING = "(select nullif(current_setting('app.client_id', true), '')::uuid)"
CLIENT_UNSET = "(select coalesce(current_setting('app.client_id', true), '') = '')"


def client_policy_sql(column: str) -> str:
    """The `client_isolation` condition on `column`: no client set, or that client's rows."""
    return f"{CLIENT_UNSET} or {column} = {CLIENT_SETTING}"


def settings() -> DatabaseSettings:
    value: DatabaseSettings = context.config.attributes["database_settings"]
    return value


def app_role() -> str:
    return settings().app_role


def admin_role() -> str:
    return settings().admin_role


def enable_rls(table: str, *, client_column: str | None = None) -> None:
    op.execute(f'alter table "{table}" enable row level security')
    op.execute(f'alter table "{table}" force row level security')
    op.execute(
        f'create policy tenant_isolation on "{table}" '
        f"using (tenant_id = {TENANT_SETTING}) with check (tenant_id = {TENANT_SETTING})"
    )
    if client_column is not None:
        condition = client_policy_sql(client_column)
        op.execute(
            f'create policy client_isolation on "{table}" as restrictive '
            f"using ({condition}) with check ({condition})"
        )


def create_tenant_table(
    name: str, *columns: Any, client_column: str | None = None, **kw: Any
) -> sa.Table:
    """`op.create_table` plus the table's RLS policies, in one step."""
    table = op.create_table(name, *columns, **kw)
    enable_rls(name, client_column=client_column)
    return table


def drop_tenant_table(name: str) -> None:
    op.drop_table(name)  # policies go with the table


def append_only(table: str) -> None:
    """The application role may insert and read, never update or delete."""
    op.execute(f'revoke update, delete, truncate on "{table}" from "{app_role()}"')


def create_tenant_table_sql(name: str, body: str, *, client_column: str | None = None) -> None:
    """`create table name (body)` plus its RLS policies: for tables whose
    PostgreSQL-specific constraints read better in SQL."""
    op.execute(f'create table "{name}" ({body})')
    enable_rls(name, client_column=client_column)
